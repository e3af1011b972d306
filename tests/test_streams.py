"""Byte-stream reassembly (netdiag.tcp.streams) on the crafted captures in captures/streams.

Segments are read with dpkt (independent of netdiag's reader and TCP analyzer), so these tests
prove the reassembly core alone. Truth: the bytes the generator put on the wire, and tshark's
reassembly of the same file (the frame a GIOP message is dissected in).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import dpkt
import numpy as np
import pytest

from netdiag.tcp.streams import StreamDir

STREAMS = Path(__file__).resolve().parent.parent / "captures" / "streams"
HAVE_TSHARK = shutil.which("tshark") is not None


@dataclass
class Seg:
    frame: int
    ts_ns: int
    direction: int
    offset: int      # stream offset: seq - ISN - 1
    data: bytes
    ack_offset: int  # the peer's stream offset this segment acknowledges (ack - peer ISN - 1)


def segments(name: str, port: int | None = None) -> list[Seg]:
    """Data and ACK segments of one connection (the client port `port`, or the first one)."""
    out: list[Seg] = []
    isn: dict[int, int] = {}
    client = None
    with open(STREAMS / name, "rb") as f:
        for frame, (ts, buf) in enumerate(dpkt.pcap.Reader(f), start=1):
            tcp = dpkt.ethernet.Ethernet(buf).data.data
            if client is None and tcp.flags & dpkt.tcp.TH_SYN and (port is None or tcp.sport == port):
                client = tcp.sport
            if client is None or client not in (tcp.sport, tcp.dport):
                continue
            d = 0 if tcp.sport == client else 1
            if tcp.flags & dpkt.tcp.TH_SYN:
                isn[d] = tcp.seq
                continue
            ack_off = tcp.ack - isn[1 - d] - 1 if tcp.flags & dpkt.tcp.TH_ACK else -1
            out.append(Seg(frame, round(ts * 1e9), d, tcp.seq - isn[d] - 1, bytes(tcp.data), ack_off))
    return out


def place(sd: StreamDir, segs: list[Seg]) -> None:
    """Feed data segments one call per segment (as chunks of one segment each)."""
    for s in segs:
        if not s.data:
            continue
        sd.place(np.array([s.offset]), np.array([len(s.data)]), np.array([0]),
                 np.frombuffer(s.data, np.uint8), np.array([s.ts_ns]), np.array([s.frame]))


def tshark_giop(name: str, *extra: str) -> list[tuple[int, int, str, str]]:
    out = subprocess.run(["tshark", "-r", str(STREAMS / name), *extra, "-T", "fields", "-e", "frame.number",
                          "-e", "giop.request_id", "-e", "giop.type", "-e", "tcp.stream",
                          "-Y", "giop"], capture_output=True, text=True, check=True, timeout=60).stdout
    rows = []
    for line in out.splitlines():
        fr, rid, typ, stream = line.split("\t")
        rows.append((int(fr), int(rid), typ, stream))
    return rows


def test_overlapping_resend_with_different_bytes_keeps_the_first_copy() -> None:
    segs = [s for s in segments("giop_overlap_first_wins.pcap") if s.direction == 0 and s.data]
    first_copy = segs[0].data + segs[1].data
    resend = segs[2]
    assert resend.offset == 0 and len(resend.data) == len(first_copy) and resend.data != first_copy
    sd = StreamDir()
    place(sd, segs)
    assert sd.frontier == len(first_copy)
    assert sd.data() == first_copy
    assert b"logonUser" in sd.data() and b"xogonUser" not in sd.data()
    assert sd.bytes_duplicate == len(first_copy)


@pytest.mark.parametrize("port,original_captured", [(50001, True), (50002, False)])
def test_retransmitted_segment_does_not_duplicate_bytes_of_a_split_reply(port: int, original_captured: bool) -> None:
    segs = [s for s in segments("giop_split_retrans.pcap", port) if s.direction == 1 and s.data]
    # the reply in sequence order, each byte once: what the receiver got
    expected = bytearray()
    for s in sorted(segs, key=lambda s: s.offset):
        if s.offset == len(expected):
            expected += s.data
    sd = StreamDir()
    place(sd, segs)
    assert sd.data() == bytes(expected)
    size = int.from_bytes(expected[8:12], "big") + 12  # GIOP header: message_size + 12
    assert size == 6000 and sd.frontier == size
    assert sd.bytes_duplicate == (1200 if original_captured else 0)


def test_out_of_order_segments_are_placed_and_complete_in_the_frame_that_fills_the_hole() -> None:
    segs = [s for s in segments("giop_out_of_order.pcap") if s.direction == 0 and s.data]
    assert [s.offset for s in segs] == [0, 2200, 1100]
    sd = StreamDir()
    place(sd, segs[:2])
    assert sd.frontier == 1100           # the hole at 1100 stops the contiguous bytes
    assert sd.hole() == (1100, 2200)
    assert not sd.hole_is_gap(final=False)  # nobody ACKed past it: wait for it
    place(sd, segs[2:])
    total = sum(len(s.data) for s in segs)
    assert sd.frontier == total
    first_ts, last_ts, first_frame, last_frame = sd.timing(np.array([0]), np.array([total]))
    assert first_frame[0] == segs[0].frame
    assert last_frame[0] == segs[2].frame
    assert last_ts[0] == segs[2].ts_ns and first_ts[0] == segs[0].ts_ns


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_message_last_frame_is_tsharks_reassembled_frame() -> None:
    """Where tshark dissects each GIOP message (its reassembled-in frame) is our last_frame."""
    for name, port in (("giop_out_of_order.pcap", None), ("giop_split_retrans.pcap", 50001),
                       ("giop_split_retrans.pcap", 50002)):
        segs = segments(name, port)
        ends: dict[int, int] = {}
        for d in (0, 1):
            sd = StreamDir()
            place(sd, [s for s in segs if s.direction == d])
            data = sd.data()
            starts, stops = [], []
            pos = 0
            while pos + 12 <= len(data):
                n = int.from_bytes(data[pos + 8:pos + 12], "big") + 12
                starts.append(pos)
                stops.append(pos + n)
                pos += n
            _, _, _, last_frame = sd.timing(np.array(starts), np.array(stops))
            for f in last_frame:
                ends[int(f)] = d
        stream = None if port is None else str(port - 50001)
        oracle = {fr for fr, _, _, st in tshark_giop(name, "-o", "tcp.reassemble_out_of_order:TRUE")
                  if stream is None or st == stream}
        assert set(ends) == oracle, name


def test_hole_becomes_a_gap_once_the_peer_acknowledges_past_it() -> None:
    segs = segments("giop_capture_gap.pcap")
    data = [s for s in segs if s.direction == 1 and s.data]
    # the hole, computed from the sequence numbers alone
    hole = None
    end = 0
    for s in sorted(data, key=lambda s: s.offset):
        if s.offset > end:
            hole = (end, s.offset)
        end = max(end, s.offset + len(s.data))
    assert hole is not None and hole[1] - hole[0] == 1000
    sd = StreamDir()
    before = [s for s in data if s.offset < hole[1]]
    place(sd, before)
    after = [s for s in data if s.offset >= hole[1]][:1]
    place(sd, after)
    assert sd.hole() == hole
    assert not sd.hole_is_gap(final=False)
    acks = [s.ack_offset for s in segs if s.direction == 0 and s.frame > after[0].frame]
    sd.acked = max(acks)
    assert sd.acked > hole[0]
    assert sd.hole_is_gap(final=False)
    sd.pos = sd.frontier
    sd.jump(hole[1], after[0].frame)
    assert sd.gaps == [(hole[0], hole[1], after[0].frame)]
    assert sd.pos == hole[1] and sd.frontier == hole[1] + len(after[0].data)


def test_consumed_bytes_are_dropped_so_memory_follows_unparsed_bytes() -> None:
    sd = StreamDir()
    msg = bytes(range(256)) * 4  # 1 KiB
    for k in range(4096):  # 4 MiB through the stream, consumed as it arrives
        sd.place(np.array([k * 1024]), np.array([1024]), np.array([0]), np.frombuffer(msg, np.uint8),
                 np.array([k]), np.array([k + 1]))
        assert sd.data() == msg
        sd.pos = sd.frontier
        sd.compact()
        assert sd.buffered_bytes <= 256 * 1024
        assert sd.p_start.size <= 1
    assert sd.frontier == 4096 * 1024


def test_first_copy_wins_against_a_byte_by_byte_reference() -> None:
    """Seeded overlapping, out-of-order, duplicated and conflicting segments placed in batches
    (as chunks bring them, also across a compact): the bytes, the pieces, the frontier and the
    byte counts equal a byte-by-byte first-copy-wins reference. Covers the placement's fast path
    for bytes above everything placed so far and its byte scan below it."""
    import random

    rng = random.Random(61226)
    for _ in range(300):
        length = rng.randint(1, 6000)
        segs = []
        for _ in range(rng.randint(1, 25)):
            off = rng.randint(0, length - 1)
            n = rng.randint(1, min(1500, length - off))
            segs.append((off, bytes(rng.randrange(256) for _ in range(n))))
        sd = StreamDir()
        ref: dict[int, int] = {}
        pieces: list[list[int]] = []   # [start, end, frame] of every run of bytes that became known
        frame = i = 0
        while i < len(segs):
            batch = segs[i: i + rng.randint(1, 5)]
            i += len(batch)
            base = sd.base                     # (bytes before it are ignored: consumed)
            sizes = [len(d) for _, d in batch]
            frames = np.arange(frame + 1, frame + 1 + len(batch), dtype=np.int64)
            frame += len(batch)
            sd.place(np.array([o for o, _ in batch], np.int64), np.array(sizes, np.int64),
                     np.cumsum([0, *sizes[:-1]]).astype(np.int64), np.frombuffer(b"".join(d for _, d in batch), np.uint8),
                     frames * 10, frames)
            for (o, d), f in zip(batch, frames.tolist(), strict=True):
                run = None
                for j, byte in enumerate(d):
                    at = o + j
                    if at < base or at in ref:
                        run = None
                        continue
                    ref[at] = byte
                    if run is not None and run[1] == at:
                        run[1] = at + 1
                    else:
                        run = [at, at + 1, f]
                        pieces.append(run)
            if rng.random() < 0.3 and sd.frontier > sd.pos:   # the parser consumed what is contiguous
                sd.pos = sd.frontier
                sd.compact()
        assert sd.bytes_placed == len(ref)
        assert sd.high == max(ref) + 1
        frontier = sd.pos
        while frontier in ref:
            frontier += 1
        assert sd.frontier == frontier
        assert sd.bytes_at(sd.pos, sd.frontier) == bytes(ref[k] for k in range(sd.pos, sd.frontier))
        got = sorted(zip(sd.p_start.tolist(), sd.p_end.tolist(), sd.p_frame.tolist(), strict=True))
        assert got == sorted(tuple(p) for p in pieces if p[1] > sd.pos)
