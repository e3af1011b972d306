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
    """A CdrReader that records the byte ranges its caller reads (GIOP's own decoders).

    `keep` are the ranges read (what the policy keeps); `extra` bytes whose value decided
    something without being kept (an encapsulation's byte-order octet that failed the check);
    `rid_at` where the request id was read (-1: not read). The last two serve `_TraceCache`."""

    __slots__ = ("keep", "profiles", "extra", "rid_at")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None, *, base: int = 0,
                 little: bool = False, keep: list[tuple[int, int]] | None = None,
                 profiles: list[tuple[int, int, bool]] | None = None,
                 extra: list[tuple[int, int]] | None = None) -> None:
        super().__init__(buf, pos, end, base=base, little=little)
        self.keep = keep if keep is not None else []
        self.profiles = profiles if profiles is not None else []
        self.extra = extra if extra is not None else []
        self.rid_at = -1

    def _fixed(self, codecs, what):  # noqa: ANN001, ANN202 - CdrReader's signature
        value = super()._fixed(codecs, what)
        self.keep.append((self.pos - codecs[self.little].size, self.pos))
        if what == "request id":
            self.rid_at = self.pos - 4
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
        try:
            inner = super().encapsulation(what)
        except CdrError:  # the byte-order octet after the length just read may have decided it
            at = self.keep[-1][1] if self.keep else self.pos
            self.extra.append((at, at + 1))
            raise
        self.keep.append((inner.base, inner.base + 1))  # the byte-order octet
        if what in IIOP_PROFILE_ENCAPSULATIONS:
            self.profiles.append((inner.base, inner.end - inner.base, inner.little))
        return _KeepReader(inner.buf, inner.pos, inner.end, base=inner.base, little=inner.little,
                           keep=self.keep, profiles=self.profiles, extra=self.extra)


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



def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges sorted and joined where they touch or overlap."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        elif b > a:
            out.append([a, b])
    return [(a, b) for a, b in out]


class _Trace:
    """What GIOP's decoders did on one message: the bytes that decided it and what they kept."""

    __slots__ = ("spans", "data", "copy", "profiles", "rid_at", "msg_type", "operation", "detail")

    def __init__(self, msg: bytes, r: _KeepReader, rec: giop_parser.Record, detail: dict) -> None:
        rid = r.rid_at
        decided: list[tuple[int, int]] = []
        for a, b in _merged(r.keep + r.extra):  # every byte read except the request id itself
            if a <= rid < b:
                decided += [(a, rid), (rid + 4, b)]
            else:
                decided.append((a, b))
        self.spans = [(a, b) for a, b in decided if b > a]
        self.data = b"".join([msg[a:b] for a, b in self.spans])
        self.copy = _merged(r.keep)
        self.profiles = list(r.profiles)
        self.rid_at = rid
        self.msg_type, self.operation = rec.msg_type, rec.operation
        self.detail = {k: detail[k] for k in ("response_expected", "object_key") if k in detail}


class _TraceCache:
    """Memo of GIOP's decoders over Requests and Replies (most of a logon's messages).

    The decoders are deterministic: what they read decides where they read next, and nothing of
    the message is consulted except through the reader (`_KeepReader` records every read). So a
    message whose header (type, flags, size), length and reply context (the operation asked, from
    the connection's pending requests) equal a traced message's, and whose bytes at every traced
    position equal the traced bytes, is decoded exactly alike: the same ranges kept, the same
    profiles, the same record. The request id is the one value that differs from message to
    message and decides nothing; it is left out of the comparison and read from the message.
    Bounded: at most MAX_KEYS headers with MAX_TRACES traces each (then it starts afresh).
    """

    MAX_KEYS, MAX_TRACES = 4096, 4

    def __init__(self) -> None:
        self.traces: dict[tuple, list[_Trace]] = {}

    def find(self, key: tuple, msg: bytes) -> _Trace | None:
        for t in self.traces.get(key, ()):
            if b"".join([msg[a:b] for a, b in t.spans]) == t.data:
                return t
        return None

    def add(self, key: tuple, trace: _Trace) -> None:
        got = self.traces.get(key)
        if got is None:
            if len(self.traces) >= self.MAX_KEYS:
                self.traces.clear()
            got = self.traces[key] = []
        if len(got) >= self.MAX_TRACES:
            got.pop(0)
        got.append(trace)


_TRACES = _TraceCache()
_RID = (struct.Struct(">I"), struct.Struct("<I"))


def giop_keep(msg: bytes, out: bytearray, ctx: giop_parser.GiopContext, direction: int
              ) -> list[tuple[int, int, bool]]:
    """Copy into `out` the GIOP header and the header fields giop.py's decoders read.

    Returns the IIOP profile encapsulations read (offset, length, little-endian) for
    `rewrite_iiop_profile`. Requests and Replies decoded before in the same way are not decoded
    again (`_TraceCache`).
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
    key = None
    try:
        if mtype == 0 or mtype == 1:
            asked = g._peek_reply_request(msg, r, minor, ctx, direction) if mtype == 1 else None
            key = (bytes(msg[:g.HEADER_SIZE]), len(msg), asked)
            t = _TRACES.find(key, msg)
            if t is not None:
                rid = _RID[little].unpack_from(msg, t.rid_at)[0] if t.rid_at >= 0 else None
                g._remember(g.Record(g.PROTOCOL, t.msg_type, rid, t.operation), t.detail, ctx, direction, more)
                for a, b in t.copy:
                    out[a:b] = msg[a:b]
                return list(t.profiles)
            if mtype == 0:
                g._request(r, minor, rec, detail)
            else:
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
    if key is not None:
        _TRACES.add(key, _Trace(msg, r, rec, detail))
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
