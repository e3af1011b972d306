"""DNS keeper (RFC 1035, over UDP or TCP): header, names, fixed RR fields; A/AAAA mapped.

Header, question and answer names, types, classes and TTLs are kept; A/AAAA data is mapped with
the same Crypto-PAn key as the IP headers (so netdiag still ties names to connections);
name-valued data (NS, CNAME, PTR, DNAME, MX, SRV) is kept; other data stays zero. Reverse-lookup
names (in-addr.arpa, ip6.arpa) have their address labels overwritten with 'x'. Over TCP each
message has a 2-byte length prefix (RFC 1035 4.2.2), kept as it is (`keep`).
"""

from __future__ import annotations

import struct

from netdiag.protocols.dns import parser as dns_parser
from netdiag.sanitize.addresses import AddressMapper


def _keep(msg: bytes, out: bytearray, a: int, b: int) -> None:
    out[a:b] = msg[a:b]


_REVERSE_SUFFIXES = (b"in-addr.arpa", b"ip6.arpa")


def dns_keep(msg: bytes, out: bytearray, mapper: AddressMapper) -> None:
    """DNS message (no TCP prefix): header, names, fixed RR fields; A/AAAA mapped; other data zero."""
    if len(msg) < 12:
        return
    out[:12] = msg[:12]
    qd, an, ns, ar = struct.unpack_from("!HHHH", msg, 4)
    pos = 12
    memo: dict = {}   # the parser's per-message suffix memo (bounds the work on pointer chains)

    def name(p: int) -> int:
        text, after = dns_parser._name(msg, p, memo)
        _keep(msg, out, p, after)
        if text.lower().endswith(("in-addr.arpa", "ip6.arpa")):
            _mask_reverse(out, p, after)
        return after

    try:
        for _ in range(qd):
            pos = name(pos)
            _keep(msg, out, pos, pos + 4)
            pos += 4
        for _ in range(an + ns + ar):
            pos = name(pos)
            rtype, _rclass, _ttl, rdlen = dns_parser.RR_FIXED.unpack_from(msg, pos)
            _keep(msg, out, pos, pos + 10)
            pos += 10
            rd = msg[pos:pos + rdlen]
            if len(rd) < rdlen:
                return  # cut short: the data stays zero
            if rtype == 1 and rdlen == 4:
                out[pos:pos + 4] = mapper.ip(rd)
            elif rtype == 28 and rdlen == 16:
                out[pos:pos + 16] = mapper.ip(rd)
            elif rtype in (2, 5, 12, 39):
                name(pos)
            elif rtype == 15 and rdlen > 2:
                _keep(msg, out, pos, pos + 2)
                name(pos + 2)
            elif rtype == 33 and rdlen > 6:
                _keep(msg, out, pos, pos + 6)
                name(pos + 6)
            pos += rdlen
    except (dns_parser._Fault, struct.error, IndexError):
        return


def _mask_reverse(out: bytearray, p: int, end: int) -> None:
    """Overwrite the address labels of a reverse name (inline labels only) with 'x'."""
    while p < end:
        n = out[p]
        if n == 0 or n >= 0xC0:
            return
        label = bytes(out[p + 1:p + 1 + n]).lower()
        if label in (b"in-addr", b"ip6", b"arpa"):
            return
        out[p + 1:p + 1 + n] = b"x" * n
        p += 1 + n


def keep(msg: bytes, out: bytearray, _ctx: object, _state: None, _direction: int,
         mapper: AddressMapper) -> list:
    """The registry's keeper signature (see netdiag.sanitize.registry): one DNS-over-TCP message,
    its length prefix kept and the message after it kept by `dns_keep`."""
    out[:2] = msg[:2]
    sub = bytearray(len(msg) - 2)
    dns_keep(msg[2:], sub, mapper)
    out[2:] = sub
    return []


def framed(_msg: bytes) -> bool:
    """DNS has no header to recognise a malformed cut by: nothing of it is kept."""
    return False
