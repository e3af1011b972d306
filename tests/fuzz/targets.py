"""Fuzz targets for the parsers and the capture readers: seeds, a seeded mutator and the contract checks.

Shared by the campaign runner (`run_campaign.py`), the CI subset and the regression replay
(`tests/test_fuzz.py`). Everything is deterministic: input `i` of target `t` under campaign seed
`s` is `make_input(t, s, i)`, built by `random.Random` seeded from (t, s, i) over a corpus built
from the real captures in captures/ (sorted paths, fixed windows), so a failure replays from its
three numbers as long as captures/ is unchanged, and for ever from its regression file.

Contracts checked on every input (`check(target, data)`; a violation raises `FuzzFailure`, any
other exception is a crash):

- giop, http, tls, dns: `cut()` and `parse()` never raise; a cut is "message" or "malformed"
  with 0 < length <= the bytes left (at the end of the stream), a malformed cut and a malformed
  record carry a reason, the cuts cover every byte once; fed in random pieces (a quarter of the
  inputs, chosen by the input's CRC) `need_more` never comes at the end. DNS: as a UDP datagram
  and as a TCP stream.
- cdr: decoding the bytes as an IOR (the first byte picks the byte order) raises nothing but
  `CdrError`, the parser's documented internal error type (giop.parse turns it into a malformed
  record).
- pcap, pcapng: reading the file raises nothing but `CaptureError`, which names the file; every
  warning names the file and a frame or byte offset; and at least every record before the first
  damaged one is read (counted by an independent walker of the container, below).

`MAX_INPUT_S` bounds the CPU time of one input (re-measured twice before it counts, the machine
is shared).
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
PARSERS = ("giop", "cdr", "http", "tls", "dns")
READERS = ("pcap", "pcapng")
TARGETS = PARSERS + READERS
MAX_INPUT_S = 0.050
SEED_BYTES = 4096          # stream windows handed to the parsers
CAPTURE_SEED_BYTES = 16 * 1024  # capture files handed to the readers (fewer bytes, more inputs per second)
CHUNK_PACKETS = 4096       # reader chunk size (the default 250k only sizes allocations)


class FuzzFailure(AssertionError):
    """An input broke a target's contract (not a crash: the contract said what must hold)."""


# ============================================================================================
# Corpus from the real captures
# ============================================================================================
def _streams(pcaps: list[Path]) -> list[bytes]:
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from proto_streams import tcp_connections

    out = []
    for pcap in pcaps:
        try:
            conns = tcp_connections(pcap)
        except Exception:  # a lab capture with a capture gap: the in-order walker gives up
            continue
        for conn in conns:
            for d in (0, 1):
                data = conn.data(d)
                if data:
                    out.append(data)
    return out


def _windows(mod, streams: list[bytes], ctx_factory: Callable, limit: int = 12) -> list[bytes]:
    """Per stream: its first SEED_BYTES, and windows starting at up to `limit` message boundaries."""
    out = []
    for s in streams:
        out.append(s[:SEED_BYTES])
        ctx, pos, starts = ctx_factory(), 0, []
        while pos < len(s) and len(starts) < 400:
            c = mod.cut(s, pos, at_end=True, context=ctx)
            if c.length <= 0:
                break
            starts.append(pos)
            pos += c.length
        step = max(1, len(starts) // limit)
        out.extend(s[p:p + SEED_BYTES] for p in starts[1::step][:limit])
    return [b for b in dict.fromkeys(out) if b]


def _pcaps(*globs: str) -> list[Path]:
    return sorted({p for g in globs for p in CAPTURES.glob(g)})


@cache
def corpus(target: str) -> tuple[bytes, ...]:
    """The seed inputs of a target (deterministic for a given captures/ tree)."""
    from netdiag.protocols.giop import parser as giop
    from netdiag.protocols.http import parser as http
    from netdiag.protocols.tls import parser as tls

    if target == "giop":
        streams = [s for s in _streams(_pcaps("giop/*.pcap", "lab/*.pcap", "sample/*.pcap", "streams/giop_*.pcap"))
                   if giop.MAGIC in s[:64]]
        seeds = _windows(giop, streams, giop.new_context)
    elif target == "cdr":
        seeds = _iors()
    elif target == "http":
        streams = [s for s in _streams(_pcaps("proto/http.pcap", "crafted/real_loopback_http.pcap",
                                              "streams/http_*.pcap", "streams/bad_input.pcap"))
                   if http.looks_like(s[:64])]
        seeds = _windows(http, streams, http.new_context)
    elif target == "tls":
        streams = [s for s in _streams(_pcaps("proto/tls*.pcap")) if tls.looks_like(s[:64])]
        seeds = _windows(tls, streams, tls.new_context)
    elif target == "dns":
        seeds = _dns_seeds()
    elif target == "pcap":
        seeds = _capture_seeds()[0]
    elif target == "pcapng":
        seeds = _capture_seeds()[1]
    else:
        raise ValueError(f"unknown fuzz target {target!r}")
    if not seeds:
        raise RuntimeError(f"no seeds for {target}: captures/ missing?")
    return tuple(seeds)


def _iors() -> list[bytes]:
    """IORs inside the GIOP messages of the captures: 1 byte (1 = little endian) + the IOR."""
    from netdiag.protocols.giop import parser as giop

    out = []
    for s in _streams(_pcaps("giop/*.pcap", "lab/*.pcap", "sample/*.pcap")):
        pos = 0
        while (k := s.find(giop.MAGIC, pos)) >= 0 and k + 12 <= len(s):
            little = s[k + 6] & 1
            size = int.from_bytes(s[k + 8:k + 12], "little" if little else "big")
            msg = s[k:k + 12 + min(size, 1 << 20)]
            for m in _find_all(msg, b"IDL:"):
                start = m - 4
                if start >= 12:
                    n = int.from_bytes(msg[start:start + 4], "little" if little else "big")
                    if 4 < n < 512:
                        out.append(bytes([little]) + msg[start:start + 1024])
            pos = k + 4
    return list(dict.fromkeys(out))[:400]


def _find_all(data: bytes, needle: bytes) -> list[int]:
    out, pos = [], 0
    while (k := data.find(needle, pos)) >= 0:
        out.append(k)
        pos = k + 1
    return out


def _dns_seeds() -> list[bytes]:
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from proto_streams import udp_datagrams

    out = []
    for pcap in _pcaps("proto/dns.pcap", "sample/*.pcap", "lab/baseline.pcap", "lab/slow_dns.pcap"):
        try:
            out.extend(p for _, s, d, p in udp_datagrams(pcap) if 53 in (s, d))
        except Exception:
            continue
    for s in _streams(_pcaps("proto/dns.pcap")):  # DNS over TCP: length-prefixed
        out.append(s[:SEED_BYTES])
    # a deep legal name: 40 labels reached through a chain of 20 pointers (RFC 1035 4.1.4)
    qname = b"".join(b"\x01" + bytes([97 + i % 26]) for i in range(40)) + b"\x00"
    body = bytearray(qname + b"\x00\x01\x00\x01")
    chain = bytearray()
    prev = 12
    for _ in range(20):
        off = 12 + len(body) + 12 + len(chain)
        chain += bytes([0xC0 | prev >> 8, prev & 0xFF])
        prev = off
    body += b"\xc0\x0c" + struct.pack("!HHIH", 10, 1, 60, len(chain)) + chain
    for _ in range(8):
        body += bytes([0xC0 | prev >> 8, prev & 0xFF]) + struct.pack("!HHIH", 1, 1, 300, 4) + b"\x0a\x00\x00\x01"
    out.append(struct.pack("!HHHHHH", 0x4242, 0x8180, 1, 9, 0, 0) + bytes(body))
    return list(dict.fromkeys(out))


@cache
def _capture_seeds() -> tuple[list[bytes], list[bytes]]:
    """pcap seeds: the crafted files and the first CAPTURE_SEED_BYTES of the lab/sample captures (cut
    at a record boundary); pcapng seeds: the crafted pcapng files and editcap's pcapng of every
    pcap seed (Wireshark writes them, not netdiag)."""
    pcap_seeds: list[bytes] = []
    for p in _pcaps("crafted/*.pcap", "crafted/ring/*", "sample/*.pcap", "lab/*.pcap", "proto/*.pcap",
                    "streams/*.pcap"):
        data = p.read_bytes()
        if data[:4] not in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
            continue
        pcap_seeds.append(data[:_pcap_prefix(data, CAPTURE_SEED_BYTES)])
    pcapng_seeds = [p.read_bytes()[:CAPTURE_SEED_BYTES * 2] for p in _pcaps("crafted/*.pcapng")]
    with tempfile.TemporaryDirectory() as tmp:
        for i, seed in enumerate(pcap_seeds):
            src, dst = Path(tmp) / f"{i}.pcap", Path(tmp) / f"{i}.pcapng"
            src.write_bytes(seed)
            try:
                subprocess.run(["editcap", "-F", "pcapng", str(src), str(dst)], check=True,
                               capture_output=True, timeout=60)
            except (OSError, subprocess.SubprocessError):
                continue
            pcapng_seeds.append(dst.read_bytes())
    return list(dict.fromkeys(pcap_seeds)), list(dict.fromkeys(pcapng_seeds))


def _pcap_prefix(data: bytes, limit: int) -> int:
    """Length of the longest prefix of a pcap file up to `limit` bytes that ends on a record boundary."""
    big = data[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
    pos = 24
    while pos + 16 <= len(data):
        cap = int.from_bytes(data[pos + 8:pos + 12], "big" if big else "little")
        nxt = pos + 16 + cap
        if nxt > len(data) or nxt > limit:
            break
        pos = nxt
    return pos


# ============================================================================================
# Independent container walkers: records that are intact from the start of a file
# ============================================================================================
PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}
MAX_SANE_RECORD = 256 * 1024


def intact_pcap_records(data: bytes) -> int:
    """Records from the start of a pcap file up to the first one that is cut or implausible
    (captured length above the snaplen, above 256 KiB or above the original length)."""
    order = PCAP_MAGICS.get(data[:4])
    if order is None or len(data) < 24:
        return 0
    snaplen = struct.unpack_from(order + "I", data, 16)[0]
    pos, n = 24, 0
    while pos + 16 <= len(data):
        _, _, cap, orig = struct.unpack_from(order + "IIII", data, pos)
        if cap > MAX_SANE_RECORD or (snaplen and cap > snaplen) or cap > orig or pos + 16 + cap > len(data):
            break
        pos += 16 + cap
        n += 1
    return n


def intact_pcapng_records(data: bytes) -> int:
    """Packet records (EPB, SPB, obsolete PB) from the start of a pcapng file up to the first block
    that is cut or inconsistent (length not a multiple of 4, below 12, trailer length differing, an
    unknown byte-order magic, an interface id without its IDB, a captured length beyond the block)."""
    pos, n, order, ifaces = 0, 0, None, 0
    while pos + 12 <= len(data):
        btype_raw = data[pos:pos + 4]
        if btype_raw == b"\x0a\x0d\x0d\x0a":
            magic = data[pos + 8:pos + 12]
            order = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(magic)
            if order is None:
                break
            ifaces = 0
        elif order is None:
            break
        btype, blen = struct.unpack_from(order + "II", data, pos)
        if blen < 12 or blen % 4 or pos + blen > len(data) or blen > MAX_SANE_RECORD + 64:
            break
        if struct.unpack_from(order + "I", data, pos + blen - 4)[0] != blen:
            break
        body = blen - 12
        if btype == 1:
            if body < 8:
                break
            ifaces += 1
        elif btype == 6:
            if body < 20:
                break
            iface, _, _, cap = struct.unpack_from(order + "IIII", data, pos + 8)
            if iface >= ifaces or cap > body - 20:
                break
            n += 1
        elif btype == 3:
            if body < 4 or ifaces == 0:
                break
            n += 1
        elif btype == 2:
            if body < 20:
                break
            iface = struct.unpack_from(order + "H", data, pos + 8)[0]
            cap = struct.unpack_from(order + "I", data, pos + 20)[0]
            if iface >= ifaces or cap > body - 20:
                break
            n += 1
        pos += blen
    return n


# ============================================================================================
# The mutator
# ============================================================================================
TOKENS: dict[str, tuple[bytes, ...]] = {
    "giop": (b"GIOP", b"GIOP\x01\x02\x00\x00", b"GIOP\x01\x00\x01\x01", b"GIOP\x01\x01\x02\x07", b"\xff\xff\xff\xf0",
             b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"IDL:", b"\x00\x00\x00\x02", b"NEO\x00", b"BEA\x00"),
    "cdr": (b"IDL:", b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", b"\x00\x00\x00\x03", b"\xff\xff\xff\xff",
            b"\x7f\xff\xff\xff", b"\x00\x01\x02\x00", b"\x49\x42\x4d\x0a", b"\x00\x00\x00\x21"),
    "http": (b"\r\n", b"\r\n\r\n", b"Content-Length: ", b"Content-Length: 99999999999\r\n", b"\xb2", b"\xb9",
             b"Transfer-Encoding: chunked\r\n", b"0\r\n\r\n", b"ffffffffffffffff\r\n", b"HTTP/1.1 200 OK\r\n",
             b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 101 Switching Protocols\r\n\r\n", b"HEAD / HTTP/1.1\r\n",
             b"GET / HTTP/1.1\r\n", b"CONNECT h:443 HTTP/1.1\r\n\r\n", b"HTTP/1.0 304 x\r\n", b" \t", b":"),
    "tls": (b"\x16\x03\x01", b"\x16\x03\x03", b"\x17\x03\x03", b"\x14\x03\x03\x00\x01\x01", b"\x15\x03\x03\x00\x02",
            b"\x80", b"\x01\x00\x00", b"\x02\x00\x00", b"\x0b\x00\x00", b"\x00\x2b", b"\x00\x33", b"\x00\x29",
            b"\xff\xff", b"\x00\x00", b"\x03\x04", b"\xcf\x21\xad\x74"),
    "dns": (b"\xc0\x0c", b"\xc0", b"\x3f", b"\x00\x00\x29\x10\x00", b"\x00\x01\x00\x01", b"\xff\xff", b"\x00",
            b"\x00\x05", b"\x00\x21", b"\x00\x0c", b"\x80\x00", b"\x84\x00"),
    "pcap": (b"\xff\xff\x00\x00", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x00\x00\x01\x00", b"\x08\x00",
             b"\x86\xdd", b"\x81\x00", b"\x45\x00", b"\x60\x00"),
    "pcapng": (b"\x0a\x0d\x0d\x0a", b"\x4d\x3c\x2b\x1a", b"\x06\x00\x00\x00", b"\x01\x00\x00\x00", b"\x03\x00\x00\x00",
               b"\x05\x00\x00\x00", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x09\x00\x01\x00", b"\x0c\x00"),
}
INTERESTING_INTS = (0, 1, 2, 3, 4, 7, 8, 11, 12, 16, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x4000, 0x7FFF, 0x8000, 0xFFFF,
                    0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF)


def _rng(target: str, seed: int, index: int) -> random.Random:
    return random.Random((zlib.crc32(target.encode()) << 64) ^ (seed << 40) ^ index)


def mutate(rng: random.Random, data: bytes, seeds: tuple[bytes, ...], tokens: tuple[bytes, ...]) -> bytes:
    """1-6 byte-level edits: flips, interesting values, tokens, deletions, copies, splices, cuts."""
    b = bytearray(data)
    for _ in range(1 + min(5, int(rng.expovariate(0.7)))):
        n = len(b)
        op = rng.random()
        i = rng.randrange(n) if n else 0
        if op < 0.20 and n:
            b[i] ^= 1 << rng.randrange(8)
        elif op < 0.35 and n:
            b[i] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op < 0.50 and n >= 2:
            size = rng.choice((2, 4))
            v = rng.choice(INTERESTING_INTS) & ((1 << (8 * size)) - 1)
            b[i:i + size] = v.to_bytes(size, rng.choice(("big", "little")))
        elif op < 0.65:
            b[i:i] = rng.choice(tokens)
        elif op < 0.75 and n:
            del b[i:i + rng.randint(1, 64)]
        elif op < 0.83 and n:
            j = rng.randrange(n)
            b[i:i] = b[j:j + rng.randint(1, 256)]
        elif op < 0.90:
            other = rng.choice(seeds)
            j = rng.randrange(len(other)) if other else 0
            b[i:] = other[j:j + rng.randint(1, 2048)]
        elif op < 0.97 and n:
            del b[rng.randrange(n):]
        else:
            b[i:i] = rng.randbytes(rng.randint(1, 32))
    return bytes(b)


def make_input(target: str, seed: int, index: int) -> bytes:
    """Input `index` of `target` under campaign seed `seed` (deterministic)."""
    rng = _rng(target, seed, index)
    seeds = corpus(target)
    if target in READERS and rng.random() < 0.4:  # a cut file: every byte offset is a stop point
        data = rng.choice(seeds)
        return data[:rng.randrange(len(data) + 1)]
    if target in PARSERS and rng.random() < 0.02:  # plain random bytes now and then
        return rng.randbytes(rng.randint(0, 600))
    return mutate(rng, rng.choice(seeds), seeds, TOKENS[target])


# ============================================================================================
# The checks
# ============================================================================================
def _cut_loop(mod, data: bytes, ctx, direction: int) -> None:
    pos = 0
    while pos < len(data):
        c = mod.cut(data, pos, at_end=True, context=ctx, direction=direction)
        if c.status not in ("message", "malformed") or not 0 < c.length <= len(data) - pos:
            raise FuzzFailure(f"{mod.__name__}.cut at {pos}/{len(data)} (at end) returned {c}")
        if c.status == "malformed" and not c.reason:
            raise FuzzFailure(f"{mod.__name__}.cut at {pos}: malformed without a reason")
        recs = mod.parse(data[pos:pos + c.length], context=ctx, direction=direction)
        if not recs or any(r.malformed and not r.reason for r in recs):
            raise FuzzFailure(f"{mod.__name__}.parse at {pos}: {recs!r:.200}")
        pos += c.length


def _pieces(mod, data: bytes, ctx, direction: int) -> None:
    """As the bytes would arrive: random pieces (seeded by the input), at_end with the last one."""
    rng = random.Random(zlib.crc32(data))
    pos = avail = 0
    while avail < len(data):
        avail = min(len(data), avail + rng.randint(1, 700))
        at_end = avail == len(data)
        buf = data[:avail]
        while pos < avail:
            c = mod.cut(buf, pos, at_end=at_end, context=ctx, direction=direction)
            if c.status == "need_more":
                if at_end:
                    raise FuzzFailure(f"{mod.__name__}.cut: need_more at the end of the stream ({pos}/{avail})")
                break
            if not 0 < c.length <= avail - pos or (c.status == "malformed" and not c.reason):
                raise FuzzFailure(f"{mod.__name__}.cut at {pos}/{avail} returned {c}")
            recs = mod.parse(buf[pos:pos + c.length], context=ctx, direction=direction)
            if not recs or any(r.malformed and not r.reason for r in recs):
                raise FuzzFailure(f"{mod.__name__}.parse at {pos}: {recs!r:.200}")
            pos += c.length
    if pos != len(data):
        raise FuzzFailure(f"{mod.__name__}: cuts covered {pos} of {len(data)} bytes")


def _check_stream(name: str, data: bytes) -> None:
    import importlib

    mod = importlib.import_module(f"netdiag.protocols.{name}.parser")
    direction = data[0] & 1 if data else 0
    _cut_loop(mod, data, mod.new_context(), direction)
    if zlib.crc32(data) % 4 == 0:
        _pieces(mod, data, mod.new_context(), direction)
    mod.parse(data, context=None, direction=None)  # as the driver does for bytes it skips


def _check_dns(data: bytes) -> None:
    from netdiag.protocols.dns import parser as dns

    (rec,) = dns.parse(data, context=dns.new_context("udp"))
    if rec.malformed and not rec.reason:
        raise FuzzFailure("dns.parse: malformed without a reason")
    _cut_loop(dns, data, dns.new_context("tcp"), 0)
    if zlib.crc32(data) % 4 == 0:
        _pieces(dns, data, dns.new_context("tcp"), 0)


def _check_cdr(data: bytes) -> None:
    from netdiag.protocols.giop import parser as giop
    from netdiag.protocols.giop.cdr import CdrError, CdrReader

    if not data:
        return
    try:
        info = giop._ior(CdrReader(data, 1, little=bool(data[0] & 1), base=1))
    except CdrError as exc:
        if not str(exc):
            raise FuzzFailure("CdrError without a message") from None
        return
    if not isinstance(info.get("type_id"), str):
        raise FuzzFailure(f"IOR decoded without a type id: {info!r:.200}")


def _check_capture(kind: str, data: bytes) -> None:
    from netdiag.capture import ReadStats, iter_chunks
    from netdiag.errors import CaptureError

    path = _scratch(kind)
    with open(path, "wb") as f:
        f.write(data)
    stats = ReadStats()
    try:
        for _ in iter_chunks(path, chunk_packets=CHUNK_PACKETS, stats=stats):
            pass
    except CaptureError as exc:
        if exc.path is None and path not in str(exc):
            raise FuzzFailure(f"CaptureError does not name the file: {exc}") from None
    for w in stats.warnings:
        if w.path != path or (w.frame is None and w.offset is None):
            raise FuzzFailure(f"warning without file and frame/offset: {w}")
    intact = intact_pcap_records(data) if kind == "pcap" else intact_pcapng_records(data)
    if stats.packets_read < intact:
        raise FuzzFailure(f"{stats.packets_read} records read, {intact} intact before the damage")


@cache
def _scratch(kind: str) -> str:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    d = tempfile.mkdtemp(prefix="netdiag-fuzz-", dir=base)
    atexit.register(shutil.rmtree, d, True)  # one scratch file per process, gone when it ends
    return os.path.join(d, f"input.{kind}")


def check(target: str, data: bytes) -> None:
    """Run one input through a target; FuzzFailure on a contract violation, anything else is a crash."""
    if target in ("giop", "http", "tls"):
        _check_stream(target, data)
    elif target == "dns":
        _check_dns(data)
    elif target == "cdr":
        _check_cdr(data)
    elif target in READERS:
        _check_capture(target, data)
    else:
        raise ValueError(f"unknown fuzz target {target!r}")


def timed_check(target: str, data: bytes) -> tuple[float, str | None]:
    """(CPU seconds, failure text or None). An input over MAX_INPUT_S is measured twice more and
    fails only when all three runs are over (a busy machine must not make a failure)."""
    import time
    import traceback

    best = None
    for _ in range(3):
        t0 = time.process_time()
        try:
            check(target, data)
        except FuzzFailure as exc:
            return time.process_time() - t0, f"contract: {exc}"
        except Exception as exc:  # a crash: keep where it happened
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            return time.process_time() - t0, f"crash: {exc!r} at {Path(tb.filename).name}:{tb.lineno}"
        dt = time.process_time() - t0
        best = dt if best is None else min(best, dt)
        if best <= MAX_INPUT_S:
            return best, None
    return best, f"slow: {best * 1e3:.1f} ms CPU (bound {MAX_INPUT_S * 1e3:.0f} ms)"


def regression_files(target: str) -> list[Path]:
    d = REGRESSIONS / target
    return sorted(d.glob("*.bin")) if d.is_dir() else []


def save_regression(target: str, data: bytes) -> Path:
    import hashlib

    d = REGRESSIONS / target
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{hashlib.sha1(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path
