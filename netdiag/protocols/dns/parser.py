"""DNS messages over UDP and TCP (RFC 1035 sections 4.1-4.2, RFC 3596 AAAA, RFC 2782 SRV, RFC 7766).

Why: a logon starts with lookups of the bootstrap hosts, and Windows clients repeat
unanswered questions at 1, 2, 4, 8 s; slow, failing (NXDOMAIN, SERVFAIL) or never-answered
lookups are a classic hidden delay. This module decodes one message into a record; pairing
queries with answers, retries and unanswered questions belong to the transactions table
(`question_key()` below is the pure helper for that).

Transport: over UDP one datagram is one message (`cut()` returns the whole datagram); over
TCP each message has a 2-byte length prefix (RFC 1035 4.2.2). The caller says which with
`new_context(transport="udp" | "tcp")` (default "udp"); the TCP message handed to parse()
includes its prefix.

Record: protocol "dns", msg_type "query"/"response" (QR bit), request_id = DNS id, operation
= the first question's name (letter case as sent, without the trailing dot; "<root>" for
the root), status = rcode name for responses (NOERROR, NXDOMAIN, SERVFAIL, ...; None for queries),
detail: opcode, flags (aa, tc, rd, ra), qtype, qclass, question/answer/authority/additional
counts, answers (and authority, additional: e.g. the A record glued to an SRV answer) as
compact [type, value, ttl] lists (A/AAAA/CNAME/PTR/NS/MX/SRV decoded, others as
"<n bytes>"; the EDNS OPT record becomes edns_udp_size), ttl_min over the answers.

Bad input (the resync rule is "drop the datagram"): shorter than the 12-byte header, a name
running past the end, a compression pointer that does not point strictly backwards (which
also makes pointer loops impossible), a name over 255 bytes or over 128 labels, a name
following more than 127 pointers, counts that promise more records than the bytes hold -> a
record with malformed=True and the reason (with the byte offset); whatever was decoded before
the fault is kept. Over TCP a length prefix below 12 drops that one message; a message
truncated at the end of the stream is malformed.

Work per message is linear in its size: every name suffix is decoded once per message and
remembered by its offset, so thousands of records pointing into one long pointer chain cost
one walk of the chain (a 59 KB response of that shape took 2.8 s before, 1 ms now; see
tests/test_dns_hostile.py).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from netdiag.protocols import Cut, Record

PROTOCOL = "dns"
PORTS = frozenset({53, 5353, 5355})  # DNS, mDNS, LLMNR: how the caller picks this parser
HEADER = struct.Struct("!HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
MAX_NAME_BYTES = 255
MAX_LABELS = 128
# A 255-byte name holds at most 127 labels; a name needing more pointers than that is a
# chain built to make decoders work (RFC 1035 4.1.4), not a name.
MAX_POINTER_HOPS = 127
MAX_RECORDS_DECODED = 256  # answers kept in detail (counts are always exact)

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
          6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE"}
OPCODES = {0: "QUERY", 1: "IQUERY", 2: "STATUS", 4: "NOTIFY", 5: "UPDATE"}
TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
         33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 46: "RRSIG", 47: "NSEC",
         48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 252: "AXFR", 255: "ANY"}
CLASSES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}
_NAME_RDATA = frozenset({2, 5, 12, 39})  # NS, CNAME, PTR, DNAME: rdata is one domain name


@dataclass(slots=True)
class DnsContext:
    """Per-flow settings: the transport decides the framing."""

    transport: str = "udp"


def new_context(transport: str = "udp") -> DnsContext:
    """A per-flow context; transport is "udp" (datagram = message) or "tcp" (length prefix)."""
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
    return DnsContext(transport)


def _plausible_header(b: bytes) -> bool:
    if len(b) < 12:
        return False
    _, flags, qd, an, ns, ar = HEADER.unpack_from(b)
    opcode = (flags >> 11) & 0xF
    return opcode in OPCODES and qd <= 1 + (opcode == 5) * 100 and an + ns + ar < 4096


def looks_like(head: bytes) -> bool:
    """A plausible DNS header, raw (UDP) or after a TCP length prefix.

    Weak on its own (12 bytes of header are nearly arbitrary); pick DNS by port (`PORTS`)
    and use this only as a sanity check.
    """
    return _plausible_header(head) or (len(head) >= 14 and _plausible_header(head[2:]))


def cut(data: bytes, start: int = 0, *, at_end: bool = False, context: DnsContext | None = None,
        direction: int | None = None) -> Cut:
    """UDP: the whole datagram. TCP: the 2-byte length prefix plus that many bytes."""
    avail = len(data) - start
    if avail <= 0:
        return Cut("need_more", 0)
    if context is None or context.transport == "udp":
        return Cut("message", avail)
    if avail < 2:
        return Cut("malformed", avail, "truncated TCP length prefix") if at_end else Cut("need_more", 0)
    length = int.from_bytes(data[start:start + 2], "big")
    if length < 12:
        return Cut("malformed", 2 + min(length, avail - 2),
                   f"TCP length prefix {length} below the 12-byte DNS header; message dropped")
    if avail < 2 + length:
        if at_end:
            return Cut("malformed", avail,
                       f"truncated: TCP length prefix {length} but {avail - 2} bytes at end of stream")
        return Cut("need_more", 0)
    return Cut("message", 2 + length)


def resync(data: bytes, start: int = 0, *, context: DnsContext | None = None,
           direction: int | None = None) -> int:
    """Where the next message starts after data[start]: UDP, the end of the datagram; TCP, after
    the length prefix and the bytes it announces (DNS over TCP has no other boundary)."""
    if context is None or context.transport == "udp" or len(data) - start < 2:
        return len(data)
    return min(len(data), start + 2 + int.from_bytes(data[start:start + 2], "big"))


class _Fault(Exception):
    """Decoding stopped at a byte offset; the message is malformed."""


# A decoded name suffix, memoised per message by the offset it starts at: (labels joined by
# ".", "" for the root; wire bytes counted as the 255-byte limit counts them; labels; pointer
# hops; target of the first pointer after this offset, -1 when the run ends in a zero byte;
# offset just past the in-place bytes of a name starting here).
_Suffix = tuple[str, int, int, int, int, int]


def _name(msg: bytes, pos: int, memo: dict[int, _Suffix]) -> tuple[str, int]:
    """Decode a (possibly compressed) name at msg[pos]; returns (name, offset after it).

    Pointers must point strictly before the lowest offset visited so far, so decoding always
    ends; a name may follow at most `MAX_POINTER_HOPS` pointers and hold at most 255 bytes and
    128 labels. `memo` (one dict per message) keeps every suffix decoded so far by its offset:
    a response whose thousands of records all point into one long chain costs one walk of the
    chain, not one per record (RFC 1035 4.1.4 lets every name end in a pointer).
    """
    stack: list[tuple[int, str, int]] = []  # (offset, label text, label length) or (offset, "", -1 - target)
    floor = pos  # every pointer must go below the lowest offset visited so far
    total = labels = hops = 0
    size = len(msg)
    while True:
        hit = memo.get(pos)
        if hit is not None:
            first_target = hit[4]
            if first_target >= floor:
                raise _Fault(f"compression pointer to {first_target} does not point backwards (loop)")
            suffix = hit
            break
        if pos >= size:
            raise _Fault(f"name runs past the end at offset {pos}")
        n = msg[pos]
        if n == 0:
            suffix = ("", 0, 0, 0, -1, pos + 1)
            break
        top = n & 0xC0
        if top == 0xC0:
            if pos + 1 >= size:
                raise _Fault(f"truncated compression pointer at offset {pos}")
            target = ((n & 0x3F) << 8) | msg[pos + 1]
            if target >= floor:
                raise _Fault(f"compression pointer at offset {pos} to {target} does not point "
                             "backwards (loop)")
            hops += 1
            if hops > MAX_POINTER_HOPS:
                raise _Fault(f"name at offset {stack[0][0] if stack else pos} follows more than "
                             f"{MAX_POINTER_HOPS} compression pointers")
            stack.append((pos, "", -1 - target))
            pos = floor = target
            continue
        if top:
            raise _Fault(f"unsupported label type 0x{n:02x} at offset {pos}")
        if pos + 1 + n > size:
            raise _Fault(f"label runs past the end at offset {pos}")
        total += n + 1
        labels += 1
        if total > MAX_NAME_BYTES or labels > MAX_LABELS:
            raise _Fault(f"name longer than 255 bytes at offset {pos}")
        stack.append((pos, msg[pos + 1:pos + 1 + n].decode("ascii", "backslashreplace"), n))
        pos += 1 + n
    text, nbytes, nlabels, nhops, first_target, end = suffix
    if nbytes + total > MAX_NAME_BYTES or nlabels + labels > MAX_LABELS:
        raise _Fault(f"name longer than 255 bytes at offset {stack[0][0] if stack else pos}")
    if nhops + hops > MAX_POINTER_HOPS:
        raise _Fault(f"name at offset {stack[0][0] if stack else pos} follows more than "
                     f"{MAX_POINTER_HOPS} compression pointers")
    # the whole name is valid, so is every suffix of it: remember them all
    for offset, label, n in reversed(stack):
        if n < 0:  # a pointer: same text, one hop more, its own end
            first_target = -1 - n
            nhops += 1
            end = offset + 2
        else:
            text = f"{label}.{text}" if text else label
            nbytes += n + 1
            nlabels += 1
        suffix = (text, nbytes, nlabels, nhops, first_target, end)
        memo[offset] = suffix
    return text or "<root>", suffix[5]


def _rdata(msg: bytes, rtype: int, pos: int, rdlen: int, memo: dict[int, _Suffix]) -> str:
    rd = msg[pos:pos + rdlen]
    if rtype == 1 and rdlen == 4:
        return str(ipaddress.IPv4Address(rd))
    if rtype == 28 and rdlen == 16:
        return str(ipaddress.IPv6Address(rd))
    if rtype in _NAME_RDATA:
        return _name(msg, pos, memo)[0]
    if rtype == 15 and rdlen >= 3:
        return f"{int.from_bytes(rd[:2], 'big')} {_name(msg, pos + 2, memo)[0]}"
    if rtype == 33 and rdlen >= 7:
        prio, weight, port = struct.unpack_from("!HHH", rd)
        return f"{prio} {weight} {port} {_name(msg, pos + 6, memo)[0]}"
    return f"<{rdlen} bytes>"


def _resource_record(msg: bytes, pos: int, where: str, memo: dict[int, _Suffix]) -> tuple[int, int, int, str]:
    """Decode one resource record at msg[pos]: (offset after it, type, ttl, compact value)."""
    try:
        _, pos = _name(msg, pos, memo)
    except _Fault as fault:
        raise _Fault(f"{where}: {fault}") from None
    if pos + RR_FIXED.size > len(msg):
        raise _Fault(f"{where} runs past the end at offset {pos}")
    rtype, rclass, ttl, rdlen = RR_FIXED.unpack_from(msg, pos)
    pos += RR_FIXED.size
    if pos + rdlen > len(msg):
        raise _Fault(f"{where}: rdata of {rdlen} bytes runs past the end at offset {pos}")
    if rtype == 41:
        return pos + rdlen, rtype, ttl, str(rclass)
    try:
        value = _rdata(msg, rtype, pos, rdlen, memo)
    except _Fault as fault:
        raise _Fault(f"{where}: {fault}") from None
    return pos + rdlen, rtype, ttl, value


def parse(message: bytes, *, context: DnsContext | None = None, direction: int | None = None) -> list[Record]:
    """Decode one DNS message (TCP: with its length prefix) into one Record (never raises)."""
    if context is not None and context.transport == "tcp":
        message = message[2:]
    try:
        return [_parse(message)]
    except Exception as exc:  # a parser bug must not stop a run
        return [Record(PROTOCOL, "unknown", malformed=True, reason=f"parser error: {exc!r}")]


def _parse(msg: bytes) -> Record:
    if len(msg) < 12:
        return Record(PROTOCOL, "unknown", malformed=True,
                      reason=f"{len(msg)} bytes, shorter than the 12-byte DNS header; datagram dropped")
    ident, flags, qd, an, ns, ar = HEADER.unpack_from(msg)
    is_response = bool(flags & 0x8000)
    rcode = flags & 0xF
    detail: dict[str, Any] = {
        "opcode": OPCODES.get((flags >> 11) & 0xF, str((flags >> 11) & 0xF)),
        "aa": bool(flags & 0x0400), "tc": bool(flags & 0x0200), "rd": bool(flags & 0x0100),
        "ra": bool(flags & 0x0080), "qdcount": qd, "ancount": an, "nscount": ns, "arcount": ar,
        "qtype": None, "qclass": None, "answers": [], "authority": [], "additional": [],
        "ttl_min": None, "message_bytes": len(msg),
    }
    rec = Record(PROTOCOL, "response" if is_response else "query", request_id=ident,
                 status=RCODES.get(rcode, f"RCODE{rcode}") if is_response else None, detail=detail)
    pos = 12
    memo: dict[int, _Suffix] = {}  # names decoded in this message, by offset
    try:
        for i in range(qd):
            name, pos = _name(msg, pos, memo)
            if pos + 4 > len(msg):
                raise _Fault(f"question {i + 1} type/class run past the end at offset {pos}")
            qtype, qclass = struct.unpack_from("!HH", msg, pos)
            pos += 4
            if i == 0:
                rec.operation = name
                detail["qtype"] = TYPES.get(qtype, str(qtype))
                detail["qclass"] = CLASSES.get(qclass & 0x7FFF, str(qclass))
        ttls: list[int] = []
        for section, count in (("answers", an), ("authority", ns), ("additional", ar)):
            kept = detail.setdefault(section, [])
            for i in range(count):
                where = f"{section.rstrip('s')} record {i + 1}"
                pos, rtype, ttl, value = _resource_record(msg, pos, where, memo)
                if rtype == 41:  # OPT pseudo-record (EDNS): its "ttl" is flags, not a TTL
                    detail["edns_udp_size"] = int(value)
                    continue
                if len(kept) < MAX_RECORDS_DECODED:
                    kept.append([TYPES.get(rtype, str(rtype)), value, ttl])
                if section == "answers":
                    ttls.append(ttl)
        detail["ttl_min"] = min(ttls) if ttls else None
    except _Fault as fault:
        rec.malformed = True
        rec.reason = f"{fault}; datagram dropped"
    return rec


def question_key(record: Record) -> tuple[str, str, str] | None:
    """What was asked, for spotting retries and pairing: (name lower-cased, qtype, qclass).

    None for a record without a question (malformed before the question, or qdcount 0).
    Pair queries with responses by (client endpoint, server endpoint, request_id) first;
    use this key to tell a retry (same key, new or same id) from a new question.
    """
    if record.protocol != PROTOCOL or record.operation is None:
        return None
    return (record.operation.lower(), str(record.detail.get("qtype")), str(record.detail.get("qclass")))
