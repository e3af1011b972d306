"""Text redaction: CPR numbers and IP literals in the bytes a keeper kept.

Kept text (HTTP start lines and headers, GIOP operation names and object keys, DNS names) may
still hold a CPR number (the Danish personal id, DDMMYY-NNNN or DDMMYYNNNN with a valid day and
month) or an address in text form. CPR digits become 'X' (the dash kept); IPv4/IPv6 literals are
replaced by their Crypto-PAn mapping when it has the same length and by 'x' otherwise: payload
lengths must not change. The regexes are shared with netdiag.evidence (comments) and the report
(free text), which may change lengths and map every literal.
"""

from __future__ import annotations

import ipaddress
import re

from netdiag.sanitize.addresses import AddressMapper

# CPR: DDMMYY then 4 digits, optionally with a dash; not inside a longer digit run.
CPR_RE = re.compile(rb"(?<![0-9])(0[1-9]|[12][0-9]|3[01])(0[1-9]|1[0-2])([0-9]{2})(-?)([0-9]{4})(?![0-9])")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # Feb 29 allowed: the century is unknown
IPV4_TEXT_RE = re.compile(rb"(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                          rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?![0-9])")
IPV6_TEXT_RE = re.compile(rb"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")


def _valid_cpr(m: re.Match[bytes]) -> bool:
    return int(m.group(1)) <= _DAYS_IN_MONTH[int(m.group(2)) - 1]


def redact_text(buf: bytearray, mapper: AddressMapper) -> int:
    """CPR numbers -> 'X' digits; IPv4/IPv6 literals -> mapped (same length) or 'x'. In place.

    Runs over kept bytes only (everything else is already zero). Returns the number of CPR
    numbers redacted.
    """
    cprs = redact_cpr(buf)
    data = bytes(buf)
    for m in IPV4_TEXT_RE.finditer(data):
        a, b = m.span()
        buf[a:b] = mapper.text_address(m.group())
    if b":" in data:
        for m in IPV6_TEXT_RE.finditer(data):
            lit = m.group()
            if lit.count(b":") < 2 or (b"::" not in lit and lit.count(b":") != 7):
                continue
            try:
                ipaddress.IPv6Address(lit.decode())
            except ValueError:
                continue
            a, b = m.span()
            buf[a:b] = mapper.text_address(lit)
    return cprs


def redact_cpr(buf: bytearray) -> int:
    """CPR numbers in `buf` overwritten with 'X' digits (the dash kept), in place; returns how many."""
    data = bytes(buf)
    count = 0
    for m in CPR_RE.finditer(data):
        if _valid_cpr(m):
            a, b = m.span()
            buf[a:b] = bytes(0x2D if c == 0x2D else 0x58 for c in data[a:b])
            count += 1
    return count
