#!/usr/bin/env python3
"""Write a seeded SYN flood: N connections of one SYN each (or a SYN answered by a RST/ACK).

Why: the memory a capture costs per connection matters most when connections carry almost
nothing (a scan, a flood, a refused service retried by thousands of clients): 200 k such
connections must not need more than ~1 KB each. Each connection gets a
client address of its own by default (spoofed sources, as in a flood: 10.a.b.c -> 10.255.0.1:2809;
`--per-source K` gives each address K connections on ports 1024, 1025 ...), a random ISN and
timestamps 5 us apart; the bytes are written with numpy (one template frame, fields patched
in), so 200 k connections take about a second. Output goes to bench/out/ (gitignored).

Usage: python bench/synflood.py [--connections 200000] [--rst] [--seed 1] [--out bench/out/synflood_200k.pcap]
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ETH = bytes.fromhex("020000000002" "020000000001" "0800")
SERVER_IP = bytes([10, 255, 0, 1])
SERVER_PORT = 2809


def _ipv4_checksum(hdr: np.ndarray) -> np.ndarray:
    """One's-complement checksum of each row (20-byte IPv4 headers, checksum field zero)."""
    words = hdr.reshape(hdr.shape[0], -1, 2).astype(np.uint32)
    s = (words[:, :, 0] << 8 | words[:, :, 1]).sum(axis=1)
    while (s >> 16).any():
        s = (s & 0xFFFF) + (s >> 16)
    return (~s & 0xFFFF).astype(np.uint16)


def _tcp_checksum(src: np.ndarray, dst: np.ndarray, tcp: np.ndarray) -> np.ndarray:
    """TCP checksum with the IPv4 pseudo header (RFC 9293 3.1), rows of 20-byte headers."""
    n = tcp.shape[0]
    pseudo = np.zeros((n, 12), np.uint8)
    pseudo[:, 0:4], pseudo[:, 4:8], pseudo[:, 9], pseudo[:, 11] = src, dst, 6, tcp.shape[1]
    return _ipv4_checksum(np.concatenate([pseudo, tcp], axis=1))


def frames(n: int, seed: int, rst: bool, per_source: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(frame bytes as an (m, 54) uint8 array, timestamps in ns), SYNs and optional RST/ACKs interleaved."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n, dtype=np.int64)
    client_ip = np.zeros((n, 4), np.uint8)
    client_ip[:, 0] = 10
    per_source = max(1, min(per_source, 64000))
    host = idx // per_source + 1
    client_ip[:, 1], client_ip[:, 2], client_ip[:, 3] = (host >> 16) & 0xFF, (host >> 8) & 0xFF, host & 0xFF
    client_port = (1024 + idx % per_source).astype(np.uint16) if per_source > 1 else \
        rng.integers(1024, 65536, n).astype(np.uint16)
    isn = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    server = np.frombuffer(SERVER_IP, np.uint8)

    def build(src, dst, sport, dport, seq, ack, flags, ip_id) -> np.ndarray:
        m = len(src)
        out = np.zeros((m, 54), np.uint8)
        out[:, :14] = np.frombuffer(ETH, np.uint8)
        ip = out[:, 14:34]
        ip[:, 0], ip[:, 3], ip[:, 8], ip[:, 9] = 0x45, 40, 64, 6
        ip[:, 4], ip[:, 5] = ip_id >> 8, ip_id & 0xFF
        ip[:, 12:16], ip[:, 16:20] = src, dst
        ck = _ipv4_checksum(ip)
        ip[:, 10], ip[:, 11] = ck >> 8, ck & 0xFF
        tcp = out[:, 34:54]
        for col, val, size in ((0, sport, 2), (2, dport, 2), (4, seq, 4), (8, ack, 4)):
            v = np.asarray(val, np.uint64)
            for b in range(size):
                tcp[:, col + b] = (v >> np.uint64(8 * (size - 1 - b))) & np.uint64(0xFF)
        tcp[:, 12], tcp[:, 13], tcp[:, 14], tcp[:, 15] = 0x50, flags, 0xFA, 0xF0 if flags == 0x02 else 0
        ck = _tcp_checksum(src, dst, tcp)
        tcp[:, 16], tcp[:, 17] = ck >> 8, ck & 0xFF
        return out

    ids = (idx & 0xFFFF).astype(np.uint16)
    syn = build(client_ip, np.broadcast_to(server, (n, 4)), client_port, SERVER_PORT, isn, 0, 0x02, ids)
    ts0 = 1_700_000_000 * 10**9
    ts_syn = ts0 + idx * 5_000
    if not rst:
        return syn, ts_syn
    rsts = build(np.broadcast_to(server, (n, 4)), client_ip, SERVER_PORT, client_port, 0,
                 (isn.astype(np.uint64) + 1) & 0xFFFFFFFF, 0x14, ids)
    both = np.empty((2 * n, 54), np.uint8)
    both[0::2], both[1::2] = syn, rsts
    ts = np.empty(2 * n, np.int64)
    ts[0::2], ts[1::2] = ts_syn, ts_syn + 2_000
    return both, ts


def write_pcap(path: Path, data: np.ndarray, ts: np.ndarray) -> None:
    """Classic pcap, nanosecond magic, Ethernet: one 16-byte record header before each 54-byte frame."""
    m, flen = data.shape
    rec = np.zeros((m, 16 + flen), np.uint8)
    hdr = np.zeros(m, dtype=[("sec", "<u4"), ("nsec", "<u4"), ("cap", "<u4"), ("len", "<u4")])
    hdr["sec"], hdr["nsec"], hdr["cap"], hdr["len"] = ts // 10**9, ts % 10**9, flen, flen
    rec[:, :16] = hdr.view(np.uint8).reshape(m, 16)
    rec[:, 16:] = data
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1))
        f.write(rec.tobytes())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=200_000)
    ap.add_argument("--rst", action="store_true", help="answer every SYN with a RST/ACK (Zeek state REJ)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-source", type=int, default=1, help="connections per client address (default 1)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or HERE / "out" / f"synflood_{a.connections // 1000}k{'_rst' if a.rst else ''}.pcap"
    data, ts = frames(a.connections, a.seed, a.rst, a.per_source)
    write_pcap(out, data, ts)
    print(f"{out}: {a.connections} connections, {len(ts)} packets, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
