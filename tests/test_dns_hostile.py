"""Hostile DNS responses: compression-pointer chains must cost milliseconds, not seconds.

RFC 1035 4.1.4 lets every name end in a pointer to an earlier name. A response can therefore hold one
chain of thousands of pointers (each pointing two bytes back) and thousands of records whose names all
point at the top of the chain: a decoder that walks the chain once per record does quadratic work (the
59 KB response below cost 4.3 s of CPU before the bound, five of them in a capture about 27 s in
`transactions`). The parser now refuses a name that follows more than 127 pointers (a 255-byte name
holds at most 127 labels) and decodes every name suffix once per message.

Ground truth: tshark on the same bytes names every record whose name runs through the chain
"<Name contains a pointer that loops>", and decodes a legal deep name to the same text we do.
The messages are built here from a seeded generator, so a failure replays.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from netdiag.protocols.dns import parser as dns

HAVE_TSHARK = shutil.which("tshark") is not None
LOOPS = "<Name contains a pointer that loops>"  # tshark's text for a name it refuses


def _label(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def chain_response(rng: random.Random, size: int = 59_000) -> tuple[bytes, int]:
    """A response with one question, an opaque (NULL) answer whose rdata is a chain of pointers each
    pointing two bytes back (the bottom one at the question name), and as many further answers as fit
    in `size` bytes whose names point at the top of the chain. Returns (message, answer count)."""
    qname = b"".join(bytes([n]) + _label(rng, n) for n in (rng.randint(3, 10), 4)) + b"\x00"
    body = bytearray(qname + struct.pack("!HH", 1, 1))
    rr1 = len(body)
    body += b"\xc0\x0c" + struct.pack("!HHIH", 10, 1, 60, 0)  # NULL RR: rdata is opaque to everybody
    chain_start = 12 + len(body)
    chain = bytearray()
    prev = 12
    while chain_start + len(chain) + 2 <= 0x3FFF:  # a pointer reaches the first 16 KB only
        off = chain_start + len(chain)
        chain += bytes([0xC0 | (prev >> 8), prev & 0xFF])
        prev = off
    body[rr1 + 10:rr1 + 12] = struct.pack("!H", len(chain))
    body += chain
    count = 1
    while 12 + len(body) + 16 <= size:
        body += bytes([0xC0 | (prev >> 8), prev & 0xFF]) + struct.pack("!HHIH", 1, 1, rng.randint(1, 3600), 4)
        body += bytes(rng.randrange(256) for _ in range(4))
        count += 1
    ident = rng.randrange(1 << 16)
    return struct.pack("!HHHHHH", ident, 0x8180, 1, count, 0, 0) + bytes(body), count


def deep_legal_response(rng: random.Random, size: int = 59_000) -> tuple[bytes, int, str]:
    """A legal response as deep as names go: a question name of 127 one-byte labels (254 bytes), a
    chain of 126 pointers above it, and thousands of A records whose names point at the chain's top
    (127 pointers to a 254-byte name). Returns (message, answer count, the answers' owner name)."""
    labels = [_label(rng, 1) for _ in range(127)]
    qname = b"".join(b"\x01" + lab for lab in labels) + b"\x00"
    body = bytearray(qname + struct.pack("!HH", 1, 1))
    rr1 = len(body)
    body += b"\xc0\x0c" + struct.pack("!HHIH", 10, 1, 60, 0)
    chain_start = 12 + len(body)
    chain = bytearray()
    prev = 12
    for _ in range(126):
        off = chain_start + len(chain)
        chain += bytes([0xC0 | (prev >> 8), prev & 0xFF])
        prev = off
    body[rr1 + 10:rr1 + 12] = struct.pack("!H", len(chain))
    body += chain
    count = 1
    while 12 + len(body) + 16 <= size:
        body += bytes([0xC0 | (prev >> 8), prev & 0xFF]) + struct.pack("!HHIH", 1, 1, 300, 4)
        body += bytes([10, 20, rng.randrange(256), rng.randrange(1, 255)])
        count += 1
    ident = rng.randrange(1 << 16)
    name = ".".join(lab.decode() for lab in labels)
    return struct.pack("!HHHHHH", ident, 0x8180, 1, count, 0, 0) + bytes(body), count, name


def _cpu(fn, *args, **kwargs):
    t0 = time.process_time()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t0


def _write_pcap(path: Path, exchanges: list[tuple[bytes, bytes]]) -> None:
    """Each (query, response) as a UDP datagram pair on its own client port, 2 ms apart."""
    from scapy.all import IP, UDP, Ether, Raw, wrpcap

    pkts = []
    t = 1_700_000_000.0
    for i, (query, response) in enumerate(exchanges):
        for src, dst, sport, dport, payload in (("10.0.0.7", "10.0.0.53", 40000 + i, 53, query),
                                                ("10.0.0.53", "10.0.0.7", 53, 40000 + i, response)):
            p = Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload)
            p.time = t
            t += 0.002
            pkts.append(p)
    wrpcap(str(path), pkts)


def _tshark_answer_names(pcap: Path) -> list[list[str]]:
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "dns.flags.response == 1", "-T", "fields",
                          "-E", "occurrence=a", "-E", "aggregator=\t", "-e", "dns.resp.name"],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines()]


def test_pointer_chain_response_is_malformed_in_milliseconds() -> None:
    msg, count = chain_response(random.Random(7))
    assert len(msg) > 58_000 and count > 2500
    (rec,), cpu = _cpu(dns.parse, msg)
    assert cpu < 0.05, f"{cpu:.3f} s of CPU for one {len(msg)}-byte response"
    assert rec.malformed and rec.msg_type == "response"
    assert "answer record 2" in rec.reason and "more than 127 compression pointers" in rec.reason
    # what came before the fault is kept: the question and the first (opaque) answer
    assert rec.operation and rec.detail["answers"][0][:2] == ["10", "<16340 bytes>"]  # NULL (type 10)
    assert rec.detail["ancount"] == count  # counts are the header's


def test_deep_legal_names_shared_by_thousands_of_records_decode_once() -> None:
    msg, count, name = deep_legal_response(random.Random(8))
    (rec,), cpu = _cpu(dns.parse, msg)
    assert cpu < 0.05, f"{cpu:.3f} s of CPU for one {len(msg)}-byte response"
    assert not rec.malformed, rec.reason
    assert rec.operation == name and len(name) == 253
    assert len(rec.detail["answers"]) == dns.MAX_RECORDS_DECODED  # kept; all `count` were walked
    assert rec.detail["ancount"] == count and rec.detail["ttl_min"] == 60  # the NULL record's; the A records say 300
    assert all(value.startswith("10.20.") for rtype, value, _ in rec.detail["answers"][1:] if rtype == "A")


def test_one_pointer_beyond_the_hop_bound_is_refused() -> None:
    msg, count, _ = deep_legal_response(random.Random(9), size=2000)
    # one more pointer: an additional record whose name points at the top answer's name pointer
    top_answer_name = msg.rindex(b"\x00\x01\x00\x01\x00\x00\x01\x2c") - 2
    extra = struct.pack("!H", 0xC000 | top_answer_name) + struct.pack("!HHIH", 1, 1, 300, 4) + bytes(4)
    header = bytearray(msg[:12])
    header[10:12] = struct.pack("!H", 1)
    (rec,) = dns.parse(bytes(header) + msg[12:] + extra)
    assert rec.malformed and "additional record 1" in rec.reason and "127 compression pointers" in rec.reason
    assert len(rec.detail["answers"]) == min(count, dns.MAX_RECORDS_DECODED)


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_tshark_refuses_the_same_names_and_decodes_the_deep_legal_one(tmp_path: Path) -> None:
    rng = random.Random(10)
    hostile, count = chain_response(rng)
    legal, legal_count, name = deep_legal_response(rng, size=8000)
    query = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01"
    pcap = tmp_path / "dns_hostile.pcap"
    _write_pcap(pcap, [(query, hostile), (query, legal)])
    names_hostile, names_legal = _tshark_answer_names(pcap)
    (rec,) = dns.parse(hostile)
    # tshark: the first answer decodes, every later one "loops"; we stop at answer 2 for that reason
    assert len(names_hostile) == count and names_hostile[0] != LOOPS
    assert set(names_hostile[1:]) == {LOOPS}
    assert rec.malformed and "answer record 2:" in rec.reason
    (ok,) = dns.parse(legal)
    assert not ok.malformed and names_legal == [name] * legal_count


def test_transactions_on_a_capture_of_five_hostile_responses_take_well_under_a_second(tmp_path: Path) -> None:
    from netdiag.transactions import analyze_streams

    rng = random.Random(11)
    exchanges = []
    for i in range(5):
        msg, _ = chain_response(rng)
        ident = struct.unpack_from("!H", msg)[0]
        qname_end = msg.index(b"\x00", 12) + 1
        query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + msg[12:qname_end + 4]
        exchanges.append((query, msg))
        if i == 2:  # and one legal deep response among them
            legal, _, _ = deep_legal_response(rng)
            ident = struct.unpack_from("!H", legal)[0]
            qname_end = legal.index(b"\x00", 12) + 1
            exchanges.append((struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + legal[12:qname_end + 4], legal))
    pcap = tmp_path / "five_hostile.pcap"
    _write_pcap(pcap, exchanges)
    assert pcap.stat().st_size > 290_000
    analyze_streams(pcap)  # warm-up: imports, numba caches
    result, cpu = _cpu(analyze_streams, pcap)
    assert cpu < 0.5, f"transactions took {cpu:.2f} s of CPU"
    txns = result.transactions.filter(protocol="dns")
    assert txns.height == 6 and (txns["status"] == "NOERROR").all()
    msgs = result.messages.filter(protocol="dns", msg_type="response")
    assert msgs["malformed"].sum() == 5
