"""Bytes of one capture file as a numpy window: the whole file mmapped, or a sliding gzip window.

Plain files are memory-mapped (the OS pages them in and out, so memory stays flat however big
the file). gzip files (detected by their magic 1F 8B, not by the name; RFC 1952) are
decompressed as a stream into a window of about `block` bytes: when a walker needs more,
`refill()` drops consumed bytes (keeping a short tail so SPAN de-dup can still compare recent
frames) and appends the next decompressed block.
"""

from __future__ import annotations

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
        self._gz = None
        self._z = None
        self._fed = False
        self.base = 0
        self.eof = True
        self.error: str | None = None
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            magic = f.read(2)
        self.compressed = magic == GZIP_MAGIC
        if self.compressed:
            self._gz = open(path, "rb")  # noqa: SIM115 - closed in close()
            self._z = zlib.decompressobj(wbits=31)
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
        """Decompress about one block more (several gzip members are read one after another)."""
        assert self._gz is not None and self._z is not None
        pieces: list[bytes] = []
        got = 0
        fed = self._fed
        try:
            while got < self.block:
                if self._z.eof:
                    rest = self._z.unused_data
                    self._z = zlib.decompressobj(wbits=31)
                    fed = bool(rest)
                    if rest:
                        piece = self._z.decompress(rest)
                        pieces.append(piece)
                        got += len(piece)
                        continue
                raw = self._gz.read(1 << 20)
                if not raw:
                    self.eof = True
                    if fed and not self._z.eof:
                        piece = self._z.flush()
                        pieces.append(piece)
                        got += len(piece)
                        self.error = ("gzip stream is cut short after "
                                      f"{self.base + len(self.buf) + got} decompressed bytes")
                    break
                piece = self._z.decompress(raw)
                fed = True
                pieces.append(piece)
                got += len(piece)
        except zlib.error as exc:  # corrupt deflate data: keep what came before it
            self.eof = True
            self.error = f"gzip data is corrupt after {self.base + len(self.buf) + got} decompressed bytes ({exc})"
        self._fed = fed
        data = b"".join(pieces)
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
