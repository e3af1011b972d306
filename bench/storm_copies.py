#!/usr/bin/env python3
"""A big, realistic benchmark capture: time-shifted copies of a real lab logon storm.

`bench/gen_capture.py` writes well-formed but synthetic GIOP/HTTP/DNS; this one replays real
peers' bytes instead, a second opinion on `netdiag transactions` speed. It writes N copies of captures/lab/storm.pcap (20 concurrent logons:
GIOP, HTTP, DNS, real bytes from real peers), copy k shifted by k * --shift-s seconds and its
client address 10.77.1.20 rewritten to 10.100.(k >> 8).(k & 255), so every copy's connections
and DNS sockets are distinct and overlap in time like a busy morning. Pure numpy, no per-packet
Python objects. The output is a benchmark input, not committed.

Usage: python bench/storm_copies.py [--packets 2000000] [--shift-s 0.5] [--out /tmp/storm_2m.pcap]
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parent.parent / "captures" / "lab" / "storm.pcap"
CLIENT = bytes([10, 77, 1, 20])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--shift-s", type=float, default=0.5)
    ap.add_argument("--src", type=Path, default=SRC)
    ap.add_argument("--out", type=Path, default=Path("/tmp/storm_2m.pcap"))
    a = ap.parse_args()
    raw = a.src.read_bytes()
    magic, = struct.unpack("<I", raw[:4])
    if magic != 0xA1B2C3D4 or struct.unpack("<I", raw[20:24])[0] != 1:
        raise SystemExit(f"{a.src}: expected a little-endian microsecond Ethernet pcap")
    body = np.frombuffer(raw, np.uint8, offset=24)
    hdr_at, n = [], 0
    off = 0
    while off + 16 <= body.size:  # record offsets: one pass over the 1.7 k records of the template
        incl = int.from_bytes(body[off + 8: off + 12].tobytes(), "little")
        hdr_at.append(off)
        off += 16 + incl
        n += 1
    hdr = np.asarray(hdr_at, np.int64)
    ts = (body[hdr[:, None] + np.arange(4)].view("<u4").astype(np.int64).ravel() * 1_000_000
          + body[hdr[:, None] + 4 + np.arange(4)].view("<u4").astype(np.int64).ravel())
    ts -= ts[0]
    ip_src, ip_dst = hdr + 16 + 26, hdr + 16 + 30
    is_src = (body[ip_src[:, None] + np.arange(4)] == np.frombuffer(CLIENT, np.uint8)).all(axis=1)
    is_dst = (body[ip_dst[:, None] + np.arange(4)] == np.frombuffer(CLIENT, np.uint8)).all(axis=1)
    copies = -(-a.packets // n)
    base = int.from_bytes(raw[24:28], "little") * 1_000_000
    reclen = np.diff(np.r_[hdr, body.size])
    bodies, times = [], []
    for k in range(copies):
        b = body.copy()
        t = base + ts + int(k * a.shift_s * 1e6)
        b[hdr[:, None] + np.arange(4)] = (t // 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
        b[hdr[:, None] + 4 + np.arange(4)] = (t % 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
        addr = np.array([10, 100, (k >> 8) & 255, k & 255], np.uint8)
        b[ip_src[is_src][:, None] + np.arange(4)] = addr
        b[ip_dst[is_dst][:, None] + np.arange(4)] = addr
        bodies.append(b)
        times.append(t)
    # a capture is in time order: interleave the copies' records by timestamp (stable: file order
    # within a copy is kept)
    order = np.argsort(np.concatenate(times), kind="stable")
    views = [memoryview(b) for b in bodies]
    copy_of, rec_of = np.divmod(order, n)
    starts, lens = hdr[rec_of], reclen[rec_of]
    with a.out.open("wb") as f:
        f.write(raw[:24])
        for c, s0, ln in zip(copy_of.tolist(), starts.tolist(), lens.tolist(), strict=True):
            f.write(views[c][s0: s0 + ln])
    print(f"{a.out}: {copies} copies x {n} packets = {copies * n} packets")


if __name__ == "__main__":
    main()
