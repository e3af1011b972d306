#!/usr/bin/env python3
"""Generate a large synthetic pcap (default ~2 M packets) for the benchmarks, fast, with numpy.

Many TCP connections between 400 clients and 8 WebSphere-like servers (ports 2809, 9100,
9080): a handshake with MSS/SACK/window-scale/timestamp options, request/response exchanges
carrying GIOP 1.2 Requests/Replies (IIOP ports) or HTTP/1.1 GET/200 (port 9080), client ACKs,
about 1% of server segments retransmitted 200-400 ms later, and a FIN close. Connections start
spread over the capture and interleave; records are written in time order.

Every packet is laid out with vectorised numpy writes (no per-packet Python objects), so 2 M
packets take seconds. The output goes to bench/out/ (gitignored), never into the repository.

Usage: python bench/gen_capture.py [--packets 2000000] [--out bench/out/synthetic_2m.pcap] [--seed 1]
"""

from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path

import numpy as np

EXCHANGES = 12
PER_CONN = 3 + EXCHANGES * 4 + 4  # handshake, (request, reply, reply2-or-ack, ack) x N, close
MSS = 1448


def _put_be(out: np.ndarray, pos: np.ndarray, values: np.ndarray, nbytes: int) -> None:
    v = values.astype(np.uint64)
    for k in range(nbytes):
        out[pos + k] = ((v >> np.uint64(8 * (nbytes - 1 - k))) & np.uint64(0xFF)).astype(np.uint8)


def _put_le(out: np.ndarray, pos: np.ndarray, values: np.ndarray, nbytes: int) -> None:
    v = values.astype(np.uint64)
    for k in range(nbytes):
        out[pos + k] = ((v >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.uint8)


def _put_bytes(out: np.ndarray, pos: np.ndarray, data: bytes) -> None:
    for k, b in enumerate(data):
        out[pos + k] = b


def generate(n_packets: int, seed: int = 1) -> tuple[bytes, np.ndarray, dict]:
    rng = np.random.default_rng(seed)
    n_conn = max(1, round(n_packets / (PER_CONN - 0.75 * EXCHANGES + 0.1)))  # ~3/4 of exchanges have no 2nd reply segment
    P = PER_CONN
    # --- per-packet roles within a connection (same pattern for every connection) --------------
    from_client = np.zeros(P, bool)
    kind = np.zeros(P, np.int8)  # 0 SYN, 1 SYNACK, 2 ACK, 3 request, 4 reply, 5 reply-2/ack, 6 FIN
    from_client[[0, 2]] = True
    kind[:3] = [0, 1, 2]
    for e in range(EXCHANGES):
        b = 3 + 4 * e
        from_client[b], kind[b] = True, 3
        from_client[b + 1], kind[b + 1] = False, 4
        from_client[b + 2], kind[b + 2] = False, 5
        from_client[b + 3], kind[b + 3] = True, 2
    c = 3 + 4 * EXCHANGES
    from_client[c:c + 4] = [True, False, False, True]
    kind[c:c + 4] = [6, 2, 6, 2]

    fc = np.tile(from_client, n_conn)
    kd = np.tile(kind, n_conn)
    conn = np.repeat(np.arange(n_conn), P)
    # --- sizes ---------------------------------------------------------------------------------
    plen = np.zeros(n_conn * P, np.int64)
    req = kd == 3
    plen[req] = rng.integers(80, 400, req.sum())
    rep = kd == 4
    plen[rep] = np.where(rng.random(rep.sum()) < 0.25, MSS, rng.integers(60, 700, rep.sum()))
    rep2 = kd == 5  # a second reply segment after a full one, else the server sends nothing extra
    plen[rep2] = np.where(plen[np.flatnonzero(rep2) - 1] == MSS, rng.integers(100, MSS, rep2.sum()), 0)
    # --- timestamps ----------------------------------------------------------------------------
    duration_ns = max(60, n_conn // 50) * 1_000_000_000
    start = np.sort(rng.integers(0, duration_ns, n_conn)) + 1_700_000_000 * 1_000_000_000
    gap = np.empty(n_conn * P, np.int64)
    gap[:] = rng.integers(20_000, 400_000, n_conn * P)  # network / stack gaps
    gap[kd == 4] = rng.integers(500_000, 20_000_000, rep.sum())  # server think before a reply
    gap[kd == 3] = rng.integers(100_000, 5_000_000, req.sum())  # client think before a request
    gap[np.arange(n_conn) * P] = 0
    ts = start[conn] + (np.cumsum(gap.reshape(n_conn, P), axis=1)).ravel()
    # --- sequence numbers ----------------------------------------------------------------------
    isn_c = rng.integers(0, 2**32, n_conn, dtype=np.int64)
    isn_s = rng.integers(0, 2**32, n_conn, dtype=np.int64)
    syn_fin = ((kd == 0) | (kd == 1) | (kd == 6)).astype(np.int64)
    use = plen + syn_fin
    sent_c = np.where(fc, use, 0).reshape(n_conn, P)
    sent_s = np.where(~fc, use, 0).reshape(n_conn, P)
    before_c = (np.cumsum(sent_c, axis=1) - sent_c).ravel()
    before_s = (np.cumsum(sent_s, axis=1) - sent_s).ravel()
    after_c = np.cumsum(sent_c, axis=1).ravel()
    after_s = np.cumsum(sent_s, axis=1).ravel()
    seq = np.where(fc, isn_c[conn] + before_c, isn_s[conn] + before_s) % 2**32
    ack = np.where(fc, isn_s[conn] + after_s, isn_c[conn] + after_c) % 2**32
    flags = np.full(n_conn * P, 0x10, np.int64)
    flags[kd == 0] = 0x02
    flags[kd == 1] = 0x12
    flags[(kd == 3) | (kd == 4) | ((kd == 5) & (plen > 0))] = 0x18
    flags[kd == 6] = 0x11
    ack[kd == 0] = 0
    keep = ~((kd == 5) & (plen == 0))  # no second reply segment: drop the placeholder
    # --- addresses and ports --------------------------------------------------------------------
    client_ip = (10 << 24) | (20 << 16) | rng.integers(1, 400, n_conn)
    server_no = rng.integers(0, 8, n_conn)
    server_ip = (10 << 24) | (1 << 16) | (server_no + 10)
    server_port = np.array([2809, 9100, 9080, 2809, 9100, 9100, 9080, 2809])[server_no]
    client_port = rng.integers(32768, 61000, n_conn)
    http = server_port == 9080
    # --- retransmissions: ~1% of server data segments resent 200-400 ms later ----------------
    idx = np.flatnonzero(keep)
    data_s = idx[(~fc[idx]) & (plen[idx] > 0)]
    resend = data_s[rng.random(len(data_s)) < 0.01]
    order_src = np.concatenate([idx, resend])
    ts_all = np.concatenate([ts[idx], ts[resend] + rng.integers(200_000_000, 400_000_000, len(resend))])
    order = order_src[np.argsort(ts_all, kind="stable")]
    ts_sorted = np.sort(ts_all, kind="stable")
    n = len(order)

    f_fc, f_kd, f_conn = fc[order], kd[order], conn[order]
    f_plen = plen[order]
    thl = np.where((f_kd == 0) | (f_kd == 1), 40, 32)
    rec = 16 + 14 + 20 + thl + f_plen
    off = np.zeros(n + 1, np.int64)
    np.cumsum(rec, out=off[1:])
    total = 24 + int(off[-1])
    filler = np.frombuffer(b"netdiag synthetic payload ~ IIOP/HTTP bytes 0123456789 ", np.uint8)
    out = np.resize(filler, total)
    out[:24] = np.frombuffer(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1), np.uint8)
    p = 24 + off[:-1]
    caplen = rec - 16
    _put_le(out, p, ts_sorted // 1_000_000_000, 4)
    _put_le(out, p + 4, (ts_sorted % 1_000_000_000) // 1000, 4)
    _put_le(out, p + 8, caplen, 4)
    _put_le(out, p + 12, caplen, 4)
    e = p + 16
    cmac = np.frombuffer(b"\x02\x00\x00\x00\x00\x01", np.uint8)
    smac = np.frombuffer(b"\x02\x00\x00\x00\x00\x02", np.uint8)
    for k in range(6):
        out[e + k] = np.where(f_fc, smac[k], cmac[k])
        out[e + 6 + k] = np.where(f_fc, cmac[k], smac[k])
    _put_be(out, e + 12, np.full(n, 0x0800), 2)
    ip = e + 14
    src = np.where(f_fc, client_ip[f_conn], server_ip[f_conn])
    dst = np.where(f_fc, server_ip[f_conn], client_ip[f_conn])
    total_len = 20 + thl + f_plen
    ipid = np.arange(n) & 0xFFFF
    words = [np.full(n, 0x4500), total_len, ipid, np.full(n, 0x4000), np.full(n, (64 << 8) | 6),
             src >> 16, src & 0xFFFF, dst >> 16, dst & 0xFFFF]
    s = sum(w.astype(np.int64) for w in words)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    csum = (~s) & 0xFFFF
    for k, (w, nb) in enumerate(zip(words[:5], [2, 2, 2, 2, 2], strict=True)):
        _put_be(out, ip + 2 * k, w, nb)
    _put_be(out, ip + 10, csum, 2)
    _put_be(out, ip + 12, src, 4)
    _put_be(out, ip + 16, dst, 4)
    t = ip + 20
    _put_be(out, t, np.where(f_fc, client_port[f_conn], server_port[f_conn]), 2)
    _put_be(out, t + 2, np.where(f_fc, server_port[f_conn], client_port[f_conn]), 2)
    _put_be(out, t + 4, seq[order], 4)
    _put_be(out, t + 8, ack[order], 4)
    _put_be(out, t + 12, ((thl // 4) << 12) | flags[order], 2)
    _put_be(out, t + 14, np.where(f_kd <= 1, 64240, 1024 + (f_conn % 2000)), 2)
    _put_be(out, t + 16, np.zeros(n), 4)  # checksum (not computed) and urgent pointer
    tsval = (ts_sorted // 1_000_000) & 0xFFFFFFFF
    syn = np.flatnonzero(f_kd <= 1)
    other = np.flatnonzero(f_kd > 1)
    _put_bytes(out, t[syn] + 20, b"\x02\x04\x05\xb4\x04\x02\x08\x0a")
    _put_be(out, t[syn] + 28, tsval[syn], 4)
    _put_be(out, t[syn] + 32, np.zeros(len(syn)), 4)
    _put_bytes(out, t[syn] + 36, b"\x01\x03\x03\x07")
    _put_bytes(out, t[other] + 20, b"\x01\x01\x08\x0a")
    _put_be(out, t[other] + 24, tsval[other], 4)
    _put_be(out, t[other] + 28, (tsval[other] - 1) & 0xFFFFFFFF, 4)
    # --- application headers at the start of requests and first reply segments ---------------
    pay = t + thl
    is_http = http[f_conn]
    reqs = np.flatnonzero((f_kd == 3) & ~is_http)
    reps = np.flatnonzero((f_kd == 4) & ~is_http)
    for sel, msg_type in ((reqs, 0), (reps, 1)):
        _put_bytes(out, pay[sel], b"GIOP\x01\x02\x00" + bytes([msg_type]))
        _put_be(out, pay[sel] + 8, f_plen[sel] - 12, 4)
        _put_be(out, pay[sel] + 12, (f_conn[sel] * 16 + np.arange(len(sel)) % 16) & 0x7FFFFFFF, 4)
    hreq = np.flatnonzero((f_kd == 3) & is_http)
    _put_bytes(out, pay[hreq], b"GET /epj/app.jnlp HTTP/1.1\r\nHost: epj\r\n")
    hrep = np.flatnonzero((f_kd == 4) & is_http)
    _put_bytes(out, pay[hrep], b"HTTP/1.1 200 OK\r\nContent-Length: ")
    info = {"packets": n, "connections": n_conn, "retransmissions": len(resend), "bytes": total}
    return out.tobytes(), ts_sorted, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "synthetic_2m.pcap")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data, _, info = generate(args.packets, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {info['packets']} packets, {info['connections']} connections, "
          f"{info['retransmissions']} retransmissions, {info['bytes'] / 1e6:.0f} MB "
          f"in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
