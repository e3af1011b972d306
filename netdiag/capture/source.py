"""Bytes of one capture file as a numpy window: the whole file mmapped, or a sliding gzip window.

Plain files are memory-mapped (the OS pages them in and out, so memory stays flat however big
the file). gzip files (detected by their magic 1F 8B, not by the name; RFC 1952) are
decompressed as a stream into a window of about `block` bytes: when a walker needs more,
`refill()` drops consumed bytes (keeping a short tail so SPAN de-dup can still compare recent
frames) and appends the next decompressed block.
"""

from __future__ import annotations

import gzip
import mmap
import os
import zlib

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
BLOCK = 32 << 20
KEEP_TAIL = 4 << 20  # recent bytes kept for de-dup comparison (5 ms at 1 Gbit/s is ~0.6 MB)


class Source:
    """`buf[i]` is byte `base + i` of the (decompressed) capture stream."""

    def __init__(self, path: str, *, block: int = BLOCK) -> None:
        self.path = path
        self.block = block
        self._mm: mmap.mmap | None = None
        self._gz: gzip.GzipFile | None = None
        self.base = 0
        self.eof = True
        self.error: str | None = None
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            magic = f.read(2)
        self.compressed = magic == GZIP_MAGIC
        if self.compressed:
            self._gz = gzip.open(path, "rb")
            self.buf = np.empty(0, np.uint8)
            self.eof = False
            self._read_more()
        elif size == 0:
            self.buf = np.empty(0, np.uint8)
        else:
            with open(path, "rb") as f:
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.buf = np.frombuffer(self._mm, dtype=np.uint8)

    def _read_more(self) -> bytes:
        assert self._gz is not None
        try:
            data = self._gz.read(self.block)
        except (OSError, EOFError, zlib.error) as exc:  # corrupt or truncated gzip stream
            self.error = f"gzip stream ends early or is corrupt after byte {self.base + len(self.buf)} " \
                         f"of decompressed data ({exc})"
            data = b""
        if len(data) < self.block:
            self.eof = True
        if data:
            self.buf = np.concatenate([self.buf, np.frombuffer(data, np.uint8)])
        return data

    def refill(self, pos: int) -> int:
        """Make more bytes available after `pos` (a buf index). Returns the shift applied to buf
        indices (subtract it from positions you hold), or -1 when the stream is exhausted."""
        if self.eof:
            return -1
        before = len(self.buf)
        self._read_more()
        if len(self.buf) == before:
            return -1
        drop = max(0, pos - KEEP_TAIL)
        if drop:
            self.buf = self.buf[drop:]
            self.base += drop
        return drop

    def close(self) -> None:
        self.buf = np.empty(0, np.uint8)
        if self._gz is not None:
            self._gz.close()
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a view is still alive somewhere; the GC will close it
                pass
