"""GIOP keeper (CORBA 3.0 ch. 15): the 12-byte header and every header field GIOP's parser reads.

The kept set is decided by running `netdiag.protocols.giop`'s own decoders on a CDR reader that
records the byte ranges they read (`_KeepReader`), so the policy cannot drift from the parser:
request id, response flags, target object key, operation, service-context ids and lengths, the
CodeSets and CSIv2 discriminants, reply/locate status, exception repository id, minor code and
completion status, IOR type id/host/port/object key of forwards and naming results. Bodies,
principals and other service-context data stay zero. IOR hosts are re-encoded with the mapped
address (`rewrite_iiop_profile`) after the text pass, so forwards can still be followed.
"""

from __future__ import annotations

import struct

from netdiag.protocols.giop import parser as giop_parser
from netdiag.protocols.giop.cdr import CdrError, CdrReader
from netdiag.sanitize.addresses import AddressMapper
from netdiag.sanitize.redact import redact_cpr

Profiles = list[tuple[int, int, bool]]  # IIOP profile encapsulations read: (offset, length, little-endian)


class _KeepReader(CdrReader):
    """A CdrReader that records the byte ranges its caller reads (GIOP's own decoders)."""

    __slots__ = ("keep", "profiles")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None, *, base: int = 0,
                 little: bool = False, keep: list[tuple[int, int]] | None = None,
                 profiles: list[tuple[int, int, bool]] | None = None) -> None:
        super().__init__(buf, pos, end, base=base, little=little)
        self.keep = keep if keep is not None else []
        self.profiles = profiles if profiles is not None else []

    def _fixed(self, codecs, what):  # noqa: ANN001, ANN202 - CdrReader's signature
        value = super()._fixed(codecs, what)
        self.keep.append((self.pos - codecs[self.little].size, self.pos))
        return value

    def octet(self, what: str = "octet") -> int:
        value = super().octet(what)
        self.keep.append((self.pos - 1, self.pos))
        return value

    def octets(self, n: int, what: str = "octets") -> bytes:
        start = self.pos
        value = super().octets(n, what)
        self.keep.append((start, self.pos))
        return value

    def encapsulation(self, what: str = "encapsulation") -> CdrReader:
        inner = super().encapsulation(what)
        self.keep.append((inner.base, inner.base + 1))  # the byte-order octet
        if what in IIOP_PROFILE_ENCAPSULATIONS:
            self.profiles.append((inner.base, inner.end - inner.base, inner.little))
        return _KeepReader(inner.buf, inner.pos, inner.end, base=inner.base, little=inner.little,
                           keep=self.keep, profiles=self.profiles)


# the `what` names giop.py gives the encapsulations that hold an IIOP ProfileBody (host, port, key)
IIOP_PROFILE_ENCAPSULATIONS = frozenset({"IIOP profile", "ProfileAddr profile"})


def rewrite_iiop_profile(body: bytes, clean: bytes | bytearray, mapper: AddressMapper) -> bytes | None:
    """An IIOP ProfileBody encapsulation whose host is an IP literal, re-encoded with the mapped
    address and the same total length (CORBA 3.0 13.6.3): the object key that follows the host is
    shortened or zero-padded to absorb the difference (forwards are followed by host and port;
    the key of a referral is not used by any analysis). `body` is the original encapsulation,
    `clean` the same bytes after the payload policy: tagged components are taken from `clean`.
    None when the host is a name or it cannot fit.
    """
    n = len(body)
    if n < 8 or body[0] > 1:
        return None
    little = bool(body[0])
    try:
        r = CdrReader(body, 1, n, base=0, little=little)
        major, minor = r.octet(), r.octet()
        host = r.string("host")
        port = r.ushort("port")
        key = r.octet_seq("key")
        comps = b""
        if minor >= 1 and r.remaining() > 0:
            start = r.aligned_pos(4)
            comps = bytes(clean[start:])
        new_host = mapper.ip_text(host).encode()
    except (CdrError, ValueError):
        return None
    u32, u16 = ("<I", "<H") if little else (">I", ">H")
    w = bytearray(body[:1]) + bytes([major, minor])
    w += bytes(-len(w) % 4)
    w += struct.pack(u32, len(new_host) + 1) + new_host + b"\x00"
    w += bytes(-len(w) % 2)
    w += struct.pack(u16, port)
    w += bytes(-len(w) % 4)
    key_start = len(w) + 4
    if comps:
        room = [k for k in range(n - len(comps) - key_start, n - len(comps) - key_start - 4, -1)
                if k >= 0 and key_start + k + (-(key_start + k) % 4) + len(comps) == n]
        if not room:
            return None
        klen = room[0]
    else:
        klen = n - key_start
        if klen < 0:
            return None
    new_key = bytearray(key[:klen].ljust(klen, b"\x00"))
    redact_cpr(new_key)
    w += struct.pack(u32, klen) + new_key
    w += bytes(-len(w) % 4) if comps else b""
    w += comps
    return bytes(w) if len(w) == n else None



def giop_keep(msg: bytes, out: bytearray, ctx: giop_parser.GiopContext, direction: int
              ) -> list[tuple[int, int, bool]]:
    """Copy into `out` the GIOP header and the header fields giop.py's decoders read.

    Returns the IIOP profile encapsulations read (offset, length, little-endian) for
    `rewrite_iiop_profile`.
    """
    g = giop_parser
    if len(msg) < g.HEADER_SIZE or msg[:4] != g.MAGIC:
        return []
    out[:g.HEADER_SIZE] = msg[:g.HEADER_SIZE]
    problem, size = g._header_problem(msg, 0)
    if problem:
        return []
    minor, flags, mtype = msg[5], msg[6], msg[7]
    little = bool(flags & g.FLAG_LITTLE_ENDIAN)
    more = bool(flags & g.FLAG_MORE_FRAGMENTS) and minor >= 1
    r = _KeepReader(msg, g.HEADER_SIZE, g.HEADER_SIZE + size, base=0, little=little)
    rec = g.Record(g.PROTOCOL, g.MESSAGE_TYPES.get(mtype, "unknown"))
    detail: dict = {}
    try:
        if mtype == 0:
            g._request(r, minor, rec, detail)
        elif mtype == 1:
            asked = g._peek_reply_request(msg, r, minor, ctx, direction)
            g._reply(r, minor, rec, detail, asked)
        elif mtype == 2:
            r.ulong("request id")
        elif mtype == 3:
            g._locate_request(r, minor, rec, detail)
        elif mtype == 4:
            g._locate_reply(r, minor, rec, detail)
        elif mtype == 7:
            g._fragment(r, minor, rec, detail, ctx, direction)
    except (CdrError, ValueError, IndexError, struct.error):
        pass
    g._remember(rec, detail, ctx, direction, more)
    for a, b in r.keep:
        out[a:b] = msg[a:b]
    return r.profiles


def keep(msg: bytes, out: bytearray, ctx: giop_parser.GiopContext, _state: None, direction: int,
         _mapper: AddressMapper) -> Profiles:
    """The registry's keeper signature (see netdiag.sanitize.registry) over `giop_keep`."""
    return giop_keep(msg, out, ctx, direction)


def framed(msg: bytes) -> bool:
    """A malformed cut that still starts with a valid GIOP header (a message cut short)."""
    return msg[:4] == giop_parser.MAGIC and not giop_parser._header_problem(msg, 0)[0] if len(msg) >= 12 else False


def resync(head: bytes | bytearray) -> bool:
    """A stream joined mid-message: GIOP's cutter resynchronises on the magic anywhere in `head`."""
    return giop_parser.MAGIC in head
