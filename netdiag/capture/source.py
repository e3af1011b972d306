"""Bytes of one capture file as a sliding numpy window, read in blocks (plain or gzip).

Why not mmap the whole file: on this kind of machine (a VM) the page faults of touching every
4 KiB page of a big mapping cost more than copying, and the record walkers are bound by memory
latency. Reading a few MiB at a time into one reused buffer keeps the bytes in CPU cache while
the walker and the decoder pass over them, and keeps memory flat whatever the file size.

gzip files (detected by their magic 1F 8B, not by their name; RFC 1952; several members are
read one after another) are decompressed as a stream into the same window. A cut or corrupt
stream keeps everything decompressed before the damage and records `error`.

`refill()` drops consumed bytes but keeps a tail of recent bytes (KEEP_TAIL) so SPAN de-dup
can still compare a frame with frames seen moments before.
"""

from __future__ import annotations

import zlib

import numpy as np

GZIP_MAGIC = b"\x1f\x8b"
BLOCK = 4 << 20
KEEP_TAIL = 4 << 20  # recent bytes kept for de-dup comparison (5 ms at 1 Gbit/s is ~0.6 MB)


class Source:
    """`buf[i]` is byte `base + i` of the (decompressed) capture stream."""

    def __init__(self, path: str, *, block: int = BLOCK) -> None:
        self.path = path
        self.block = block
        self.base = 0
        self.eof = False
        self.error: str | None = None
        self._store = np.empty(block + KEEP_TAIL + (1 << 16), np.uint8)
        self._n = 0
        self._z = None
        self._fed = False
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        magic = self._f.read(2)
        self._f.seek(0)
        self.compressed = magic == GZIP_MAGIC
        if self.compressed:
            self._z = zlib.decompressobj(wbits=31)
        self._read_more()

    @property
    def buf(self) -> np.ndarray:
        return self._store[:self._n]

    def _room(self, extra: int) -> None:
        if self._n + extra > len(self._store):
            grown = np.empty(max(self._n + extra, 2 * len(self._store)), np.uint8)
            grown[:self._n] = self._store[:self._n]
            self._store = grown

    def _append(self, data: bytes) -> None:
        self._room(len(data))
        self._store[self._n:self._n + len(data)] = np.frombuffer(data, np.uint8)
        self._n += len(data)

    def _read_more(self) -> int:
        """Append about one block; returns the number of bytes added."""
        if self.eof:
            return 0
        if not self.compressed:
            self._room(self.block)
            got = self._f.readinto(memoryview(self._store)[self._n:self._n + self.block])
            got = got or 0
            self._n += got
            if got == 0:
                self.eof = True
            return got
        return self._inflate_more()

    def _inflate_more(self) -> int:
        """Decompress about one block more (several gzip members are read one after another)."""
        assert self._z is not None
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
                        self._append(piece)
                        got += len(piece)
                        continue
                raw = self._f.read(1 << 20)
                if not raw:
                    self.eof = True
                    if fed and not self._z.eof:
                        piece = self._z.flush()
                        self._append(piece)
                        got += len(piece)
                        self.error = f"gzip stream is cut short after {self.base + self._n} decompressed bytes"
                    break
                piece = self._z.decompress(raw)
                fed = True
                self._append(piece)
                got += len(piece)
        except zlib.error as exc:  # corrupt deflate data: keep what came before it
            self.eof = True
            self.error = f"gzip data is corrupt after {self.base + self._n} decompressed bytes ({exc})"
        self._fed = fed
        return got

    def refill(self, pos: int) -> int:
        """Make more bytes available after `pos` (a buf index). Returns the shift applied to buf
        indices (subtract it from positions you hold), or -1 when the stream is exhausted."""
        if self.eof:
            return -1
        drop = max(0, pos - KEEP_TAIL)
        if drop:
            keep = self._n - drop
            self._store[:keep] = self._store[drop:self._n]
            self._n = keep
            self.base += drop
        while not self.eof:
            if self._read_more():
                return drop
        return drop if drop else -1

    def close(self) -> None:
        self._store = np.empty(0, np.uint8)
        self._n = 0
        self._f.close()
