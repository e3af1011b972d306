"""A small, bounded CDR (Common Data Representation) reader for the GIOP parser.

Why: GIOP headers, IORs and service contexts are CDR-encoded (OMG CORBA 3.0 chapter 15.3,
"CDR Transfer Syntax"); decoding them needs exactly three rules, and nothing else of CDR:

- every primitive is aligned to its own size (octet 1, short 2, long/enum 4, long long 8)
  *relative to an alignment base*: the first byte of the GIOP header for a message (so offset 12
  is 4- but not 8-aligned), or the byte-order octet of an encapsulation (spec 15.3.3);
- byte order is per message (header flag) and per encapsulation (its first octet: 0 = big,
  1 = little endian), so a nested reader can differ from its parent;
- strings are `ulong length` (counting the trailing NUL) + bytes; sequences of octets are
  `ulong count` + bytes.

Every read is bounded by `end`: running past it raises `CdrError`, which names the field and
the offset (relative to the message start) so the parser can report "operation string at
offset 40 claims 65536 bytes, message has 96" instead of a traceback. `CdrError` is internal to
netdiag.protocols: `giop.parse()` catches it and returns a malformed record. No I/O, no state
beyond the reader's own position; nothing is copied except the small values returned.
"""

from __future__ import annotations

import struct

_U16 = (struct.Struct(">H"), struct.Struct("<H"))
_I16 = (struct.Struct(">h"), struct.Struct("<h"))
_U32 = (struct.Struct(">I"), struct.Struct("<I"))
_I32 = (struct.Struct(">i"), struct.Struct("<i"))
_U64 = (struct.Struct(">Q"), struct.Struct("<Q"))


class CdrError(ValueError):
    """A CDR read ran past the end of its buffer or met an impossible value (internal)."""


class CdrReader:
    """Sequential reader over buf[pos:end] with CDR alignment relative to `base`.

    Offsets in error messages are absolute positions in `buf` (for a GIOP message: offsets
    from the 'G' of the magic, which is what Wireshark shows as the message offset).
    """

    __slots__ = ("buf", "pos", "end", "base", "little")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None, *, base: int = 0,
                 little: bool = False) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else min(end, len(buf))
        self.base = base
        self.little = little

    # ----------------------------------------------------------------------------- basics
    def remaining(self) -> int:
        """Bytes left before `end`."""
        return self.end - self.pos

    def align(self, n: int) -> None:
        """Skip padding so that (pos - base) is a multiple of n."""
        rel = (self.pos - self.base) % n
        if rel:
            self.skip(n - rel, "alignment padding")

    def aligned_pos(self, n: int) -> int:
        """Where the next n-aligned datum would start (without moving)."""
        rel = (self.pos - self.base) % n
        return self.pos + (n - rel if rel else 0)

    def skip(self, n: int, what: str = "bytes") -> None:
        """Advance n bytes, bounded by end."""
        if n < 0 or self.pos + n > self.end:
            raise CdrError(f"{what} at offset {self.pos}: needs {n} bytes, "
                           f"only {max(0, self.end - self.pos)} left")
        self.pos += n

    def _fixed(self, codecs: tuple[struct.Struct, struct.Struct], what: str) -> int:
        codec = codecs[self.little]
        size = codec.size
        pos = self.pos
        rel = (pos - self.base) % size  # alignment inlined: this is the hot path
        if rel:
            pos += size - rel
        if pos + size > self.end:
            raise CdrError(f"{what} at offset {pos}: needs {size} bytes, "
                           f"only {max(0, self.end - pos)} left")
        self.pos = pos + size
        return codec.unpack_from(self.buf, pos)[0]

    # ----------------------------------------------------------------------------- primitives
    def octet(self, what: str = "octet") -> int:
        if self.pos >= self.end:
            raise CdrError(f"{what} at offset {self.pos}: message ends there")
        value = self.buf[self.pos]
        self.pos += 1
        return value

    def boolean(self, what: str = "boolean") -> bool:
        return self.octet(what) != 0

    def ushort(self, what: str = "ushort") -> int:
        return self._fixed(_U16, what)

    def short(self, what: str = "short") -> int:
        return self._fixed(_I16, what)

    def ulong(self, what: str = "ulong") -> int:
        return self._fixed(_U32, what)

    def long(self, what: str = "long") -> int:
        return self._fixed(_I32, what)

    def ulonglong(self, what: str = "ulonglong") -> int:
        return self._fixed(_U64, what)

    # ----------------------------------------------------------------------------- composites
    def octets(self, n: int, what: str = "octets") -> bytes:
        """n raw bytes (a copy: callers only take small fields this way)."""
        start = self.pos
        self.skip(n, what)
        return bytes(self.buf[start:self.pos])

    def seq_length(self, what: str = "sequence") -> int:
        """A sequence/string length, checked against the bytes left (a lying length fails here)."""
        at = self.aligned_pos(4)
        n = self.ulong(f"{what} length")
        if n > self.end - self.pos:
            raise CdrError(f"{what} at offset {at} claims {n} bytes, only "
                           f"{self.end - self.pos} left in the message")
        return n

    def octet_seq(self, what: str = "sequence<octet>") -> bytes:
        """sequence<octet>: ulong count then the bytes."""
        return self.octets(self.seq_length(what), what)

    def skip_octet_seq(self, what: str = "sequence<octet>") -> int:
        """Skip a sequence<octet> without copying it; returns its length."""
        n = self.seq_length(what)
        self.skip(n, what)
        return n

    def string(self, what: str = "string") -> str:
        """CDR string: ulong length including the NUL, the bytes, the NUL (decoded as Latin-1).

        A zero length (not allowed by the spec, sent by some ORBs for "") reads as "".
        """
        raw = self.octets(self.seq_length(what), what)
        if raw.endswith(b"\x00"):
            raw = raw[:-1]
        return raw.decode("latin-1")

    def encapsulation(self, what: str = "encapsulation") -> CdrReader:
        """Read a sequence<octet> holding an encapsulation; return a reader positioned after
        its byte-order octet, aligned relative to that octet, in its own byte order.

        The parent reader moves past the whole sequence.
        """
        n = self.seq_length(what)
        start = self.pos
        self.pos += n
        if n == 0:
            raise CdrError(f"{what} at offset {start}: empty (no byte-order octet)")
        flag = self.buf[start]
        if flag > 1:
            raise CdrError(f"{what} at offset {start}: byte-order octet is {flag}, not 0 or 1")
        return CdrReader(self.buf, start + 1, start + n, base=start, little=bool(flag))
