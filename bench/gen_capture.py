#!/usr/bin/env python3
"""Generate a large synthetic pcap (default ~2 M packets) of well-formed logon-like traffic, fast, with numpy.

Why: the benchmark must time netdiag's normal path, so every message in the file is valid for
tshark's dissectors (GIOP 1.2 per CORBA 3.0 ch. 15, HTTP/1.1 per RFC 9112, DNS per RFC 1035):

* IIOP connections (ports 2809, 9100) carry GIOP 1.2 Request/Reply pairs: request ids 1, 2, 3...
  per connection, object keys and operations of a WebSphere logon (resolve, authenticate,
  getUserContext, getWorklist, getPatientList, logout, _is_a), CodeSets and CSIv2 SAS service
  contexts, 8-aligned bodies; replies from 64 bytes to 64 KB (large ones span many MSS-sized
  segments, ACKed every second segment), a few SYSTEM_EXCEPTIONs (TRANSIENT, NO_PERMISSION),
  LOCATION_FORWARDs carrying an IOR, and fragmented replies (a Reply with the more-fragments
  flag and two Fragment messages), some little-endian messages.
* HTTP connections (port 9080) carry keep-alive GET requests with Host and User-Agent
  (Java/1.8.0_x) and responses with Content-Length (200 with bodies up to 20 KB, and 304).
* DNS queries and answers over UDP (port 53), paired by id.
* TCP: handshake with MSS/SACK/window-scale/timestamp options, FIN close on both sides, and
  about 1% of server data segments retransmitted 200-400 ms later.

Messages are encoded once as a few dozen templates with the CDR writer of
captures/giop/craft.py (independent of netdiag's parser); request ids and DNS ids are then
patched into the packet bytes with vectorised numpy writes, so there are no per-packet Python
objects and 2 M packets take seconds. Addresses are 10.x; payloads are generated filler.
The output goes to bench/out/ (gitignored), never into the repository.

Usage: python bench/gen_capture.py [--packets 2000000] [--out bench/out/synthetic_2m.pcap] [--seed 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import struct
import sys
import time
from pathlib import Path

import numpy as np

MSS = 1448  # 181 * 8, so GIOP fragments of exactly one segment stay 8-aligned
HERE = Path(__file__).resolve().parent
_CRAFT = HERE.parent / "captures" / "giop" / "craft.py"


def _craft():
    spec = importlib.util.spec_from_file_location("giop_craft", _CRAFT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("giop_craft", mod)  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------------------
# Templates: each is (bytes, [(patch offset, nbytes, little-endian), ...]) - patches get the id
# --------------------------------------------------------------------------------------------
OPS = [  # (operation, object key, relative frequency)
    ("resolve", b"NameService", 3), ("_is_a", b"\x00WsnDistCosNaming", 1),
    ("authenticate", b"EPJ/LogonHome", 1), ("getUserContext", b"EPJ/UserContextHome", 2),
    ("getWorklist", b"EPJ/WorklistHome", 4), ("getPatientList", b"EPJ/PatientHome", 3),
    ("logout", b"EPJ/LogonHome", 1),
]
REPLY_SIZES = [64, 128, 200, 320, 480, 640, 1000, 1400, 2000, 2800, 4000, 8000, 12000, 16000, 32000, 48000, 64000]
REPLY_WEIGHTS = [8, 8, 8, 8, 6, 6, 5, 5, 4, 3, 3, 2, 1.5, 1, 0.5, 0.3, 0.2]
HTTP_PATHS = [("/epj/launch.jnlp", 1800), ("/epj/lib/client.jar", 20000), ("/epj/config.properties", 600),
              ("/epj/images/logo.gif", 4000)]
DNS_NAMES = ["was-node1.epj.example", "was-node2.epj.example", "epj.example", "ldap.epj.example",
             "ocsp.epj.example"]


def _filler(n: int, salt: int) -> bytes:
    return bytes((i * 7 + salt) & 0xFF for i in range(n))


def _giop_templates(c) -> tuple[list, list, list]:
    """(requests, replies, reply kinds) for GIOP 1.2; request id at offset 12 of each message."""
    requests = []
    for op, key, _ in OPS:
        for little in (False, True):
            sas = c.sc_sas(0 if op == "authenticate" else 5, 0 if op == "authenticate" else 7, little)
            if op == "resolve":  # CosNaming::Name: one NameComponent (id, kind)
                body = bytes(c.W(little).ulong(1).string("epj").string("LogonHome").buf)
            elif op == "_is_a":
                body = bytes(c.W(little).string("IDL:omg.org/CosNaming/NamingContextExt:1.0").buf)
            else:
                body = bytes(c.encap(little).string("epj-user").ulong(42).buf) + _filler(40 + 8 * len(op), len(op))
            msg = c.request(2, little, 0, op, key, scs=[c.sc_codesets(little), sas], body=body)
            requests.append((msg, [(12, 4, little)]))
    replies, kinds = [], []
    for size in REPLY_SIZES:  # NO_EXCEPTION, body = sequence<octet>
        msg = c.reply(2, False, 0, 0, lambda w, n=size: w.seq(_filler(n, n & 0xFF)))
        replies.append((msg, [(12, 4, False)]))
        kinds.append("ok")
    for little in (False, True):
        msg = c.reply(2, little, 0, 0, lambda w: w.seq(_filler(300, 3)))
        replies.append((msg, [(12, 4, little)]))
        kinds.append("ok_le" if little else "ok")
    for exc, minor in (("IDL:omg.org/CORBA/TRANSIENT:1.0", 0x49421042), ("IDL:omg.org/CORBA/NO_PERMISSION:1.0", 0x49424D01)):
        replies.append((c.reply(2, False, 0, 2, c.sysexc(exc, minor, 1)), [(12, 4, False)]))
        kinds.append("exception")
    # what tshark decodes itself: resolve returns an IOR, _is_a a boolean
    ior = lambda w: c.ior(w, "IDL:epj/LogonHome:1.0", "was-node1.epj.example", 9100, b"EPJ/LogonHome")  # noqa: E731
    replies.append((c.reply(2, False, 0, 0, ior), [(12, 4, False)]))
    kinds.append("resolve")
    replies.append((c.reply(2, False, 0, 0, lambda w: w.octet(1)), [(12, 4, False)]))
    kinds.append("is_a")
    fwd = c.reply(2, False, 0, 3, lambda w: c.ior(w, "IDL:epj/LogonHome:1.0", "was-node2.epj.example", 9101,
                                                 b"EPJ/LogonHome", components=[c.comp_alternate("10.1.0.12", 9101)]))
    replies.append((fwd, [(12, 4, False)]))
    kinds.append("forward")
    # fragmented reply: Reply (more fragments) + Fragment (more) + Fragment, each of the first two
    # exactly one segment long, so every request id sits at the start of a segment
    first = c.reply(2, False, 0, 0, more=True, tail=b"")
    body_len = (MSS - len(first)) + (MSS - 16) + 500  # the body is one sequence<octet> across the fragments
    first = c.reply(2, False, 0, 0, more=True, tail=struct.pack(">I", body_len - 4) + _filler(MSS - len(first) - 4, 9))
    f1 = c.fragment(2, False, _filler(MSS - 16, 11), rid=0, more=True)
    f2 = c.fragment(2, False, _filler(500, 13), rid=0, more=False)
    assert len(first) == len(f1) == MSS
    replies.append((first + f1 + f2, [(12, 4, False), (MSS + 12, 4, False), (2 * MSS + 12, 4, False)]))
    kinds.append("fragmented")
    return requests, replies, kinds


def _http_templates() -> tuple[list, list]:
    requests, responses = [], []
    for path, size in HTTP_PATHS:
        for minor in (45, 202, 381):
            requests.append(((f"GET {path} HTTP/1.1\r\nHost: epj.example:9080\r\nUser-Agent: Java/1.8.0_{minor}\r\n"
                              "Accept: text/html, image/gif, image/jpeg, */*; q=0.2\r\nConnection: keep-alive\r\n\r\n"
                              ).encode(), []))
        body = _filler(size, size & 0xFF)
        responses.append(((f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n"
                           "Server: WebSphere Application Server/8.5\r\n\r\n").encode() + body, []))
    responses.append((b"HTTP/1.1 304 Not Modified\r\nServer: WebSphere Application Server/8.5\r\n\r\n", []))
    return requests, responses


def _dns_templates() -> tuple[list, list]:
    queries, answers = [], []
    for i, name in enumerate(DNS_NAMES):
        q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00" + struct.pack(">HH", 1, 1)
        queries.append((struct.pack(">HHHHHH", 0, 0x0100, 1, 0, 0, 0) + q, [(0, 2, False)]))
        ans = struct.pack(">HHHIH", 0xC00C, 1, 1, 300, 4) + bytes([10, 1, 0, 10 + i])
        answers.append((struct.pack(">HHHHHH", 0, 0x8180, 1, 1, 0, 0) + q + ans, [(0, 2, False)]))
    return queries, answers


class Bank:
    """All templates in one flat uint8 array."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.patches: list[list] = []

    def add(self, items: list) -> np.ndarray:
        first = len(self.parts)
        for msg, patches in items:
            self.parts.append(msg)
            self.patches.append(patches)
        return np.arange(first, len(self.parts))

    def finish(self) -> None:
        self.length = np.array([len(p) for p in self.parts], np.int64)
        self.offset = np.concatenate([[0], np.cumsum(self.length)[:-1]])
        self.data = np.frombuffer(b"".join(self.parts), np.uint8)


def _put_be(out: np.ndarray, pos: np.ndarray, values: np.ndarray, nbytes: int) -> None:
    v = np.asarray(values).astype(np.uint64)
    for k in range(nbytes):
        out[pos + k] = ((v >> np.uint64(8 * (nbytes - 1 - k))) & np.uint64(0xFF)).astype(np.uint8)


def _put_le(out: np.ndarray, pos: np.ndarray, values: np.ndarray, nbytes: int) -> None:
    v = np.asarray(values).astype(np.uint64)
    for k in range(nbytes):
        out[pos + k] = ((v >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.uint8)


def _put_bytes(out: np.ndarray, pos: np.ndarray, data: bytes) -> None:
    for k, b in enumerate(data):
        out[pos + k] = b


def _pick(rng: np.random.Generator, choices: np.ndarray, weights, n: int) -> np.ndarray:
    w = np.asarray(weights, float)
    return choices[rng.choice(len(choices), n, p=w / w.sum())]


def _group_cumsum(values: np.ndarray, group_start: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum restarting where group_start is True (rows already grouped)."""
    cs = np.cumsum(values)
    starts = np.flatnonzero(group_start)
    base = np.repeat(cs[starts] - values[starts], np.diff(np.append(starts, len(values))))
    return cs - base


def generate(n_packets: int, seed: int = 1) -> tuple[bytes, np.ndarray, dict]:
    """(pcap bytes, sorted timestamps in ns, counts) for about n_packets packets."""
    rng = np.random.default_rng(seed)
    c = _craft()
    bank = Bank()
    g_req, g_rep, g_kinds = _giop_templates(c)
    greq = bank.add(g_req)
    grep = bank.add(g_rep)
    h_req, h_rsp = _http_templates()
    hreq = bank.add(h_req)
    hrsp = bank.add(h_rsp)
    d_q, d_a = _dns_templates()
    dq = bank.add(d_q)
    da = bank.add(d_a)
    bank.finish()
    kinds = np.array(g_kinds)

    # --- connections and exchanges, cut to the packet budget ------------------------------------
    dns_pairs = max(1, n_packets // 100)
    tcp_budget = n_packets - 2 * dns_pairs
    n_conn_max = max(2, tcp_budget // 20)
    server_no = rng.integers(0, 8, n_conn_max)
    server_port = np.array([2809, 9100, 9080, 2809, 9100, 9100, 9080, 2809])[server_no]
    http = server_port == 9080
    n_ex = np.where(http, rng.integers(2, 8, n_conn_max), rng.integers(4, 24, n_conn_max))
    ex_conn = np.repeat(np.arange(n_conn_max), n_ex)
    n_ex_total = len(ex_conn)
    ex_http = http[ex_conn]
    req_w = np.repeat([w for _, _, w in OPS], 2) * np.tile([0.9, 0.1], len(OPS))
    ex_req = np.where(ex_http, rng.choice(hreq, n_ex_total), _pick(rng, greq, req_w, n_ex_total))
    rep_w = np.array(REPLY_WEIGHTS + [1.0, 0.5, 1.0, 0.5, 0.0, 0.0, 0.5, 0.5])
    h_w = np.array([3, 1, 3, 2, 4], float)
    ex_rep = np.where(ex_http, _pick(rng, hrsp, h_w, n_ex_total), _pick(rng, grep, rep_w, n_ex_total))
    # resolve gets an IOR (or now and then an exception or a forward); _is_a gets a boolean
    op_of = np.repeat(np.arange(len(OPS)), 2)[np.clip(ex_req - greq[0], 0, len(greq) - 1)]
    special = {"resolve": grep[kinds == "resolve"][0], "_is_a": grep[kinds == "is_a"][0]}
    odd = np.isin(kinds[np.clip(ex_rep - grep[0], 0, len(grep) - 1)], ["exception", "forward"])
    # tshark's Parlay heuristic decodes an `authenticate` reply body, and on the first fragment
    # of a fragmented one alone it reports a malformed TpOctetSet: keep those unfragmented
    frag = grep[kinds == "fragmented"][0]
    ex_rep = np.where((ex_rep == frag) & (op_of == [o for o, _, _ in OPS].index("authenticate")), grep[0], ex_rep)
    for i, (op, _, _) in enumerate(OPS):
        if op in special:
            ex_rep = np.where(~ex_http & (op_of == i) & ~odd, special[op], ex_rep)
    rep_len = bank.length[ex_rep]
    nseg = -(-rep_len // MSS)
    nack = -(-nseg // 2)
    ex_pk = 1 + nseg + nack
    conn_pk = 7 + np.bincount(ex_conn, weights=ex_pk, minlength=n_conn_max).astype(np.int64)
    n_conn = max(1, int(np.searchsorted(np.cumsum(conn_pk), tcp_budget, side="right")))
    keep_ex = ex_conn < n_conn
    ex_conn, ex_req, ex_rep, rep_len, nseg, nack = (a[keep_ex] for a in (ex_conn, ex_req, ex_rep, rep_len, nseg, nack))
    server_no, server_port, http = server_no[:n_conn], server_port[:n_conn], http[:n_conn]
    n_ex_total = len(ex_conn)
    ex_first = np.ones(n_ex_total, bool)
    ex_first[1:] = ex_conn[1:] != ex_conn[:-1]
    ex_no = _group_cumsum(np.ones(n_ex_total, np.int64), ex_first)  # 1, 2, 3... per connection = request id

    # --- timing ---------------------------------------------------------------------------------
    duration_ns = max(60, n_conn // 50) * 1_000_000_000
    start = np.sort(rng.integers(0, duration_ns, n_conn)) + 1_700_000_000 * 1_000_000_000
    rtt = rng.integers(200_000, 2_000_000, n_conn)  # capture point <-> server and back
    seg_gap = rng.integers(20_000, 120_000, n_ex_total)
    think_c = rng.integers(100_000, 5_000_000, n_ex_total)
    think_s = rng.integers(500_000, 20_000_000, n_ex_total)
    ex_dur = think_c + think_s + nseg * seg_gap + rtt[ex_conn]
    ex_t0 = start[ex_conn] + 2 * rtt[ex_conn] + 100_000 + _group_cumsum(ex_dur, ex_first) - ex_dur + think_c
    conn_end = start + 2 * rtt + 100_000 + np.bincount(ex_conn, weights=ex_dur, minlength=n_conn).astype(np.int64)

    # --- TCP events (pre-sort arrays) -----------------------------------------------------------
    ev = {k: [] for k in ("conn", "ts", "fc", "flags", "tmpl", "seg", "plen", "ex")}

    def add(conn, ts, fc, flags, tmpl, seg, plen, ex):
        n = len(conn)
        for k, v in (("conn", conn), ("ts", ts), ("fc", fc), ("flags", flags), ("tmpl", tmpl), ("seg", seg),
                     ("plen", plen), ("ex", ex)):
            ev[k].append(np.broadcast_to(np.asarray(v), (n,)).astype(np.int64))

    cid = np.arange(n_conn)
    none = np.full(n_conn, -1)
    add(cid, start, 1, 0x02, none, 0, 0, none)
    add(cid, start + rtt, 0, 0x12, none, 0, 0, none)
    add(cid, start + rtt + 50_000, 1, 0x10, none, 0, 0, none)
    ex_ids = np.arange(n_ex_total)
    add(ex_conn, ex_t0, 1, 0x18, ex_req, 0, bank.length[ex_req], ex_ids)
    seg_ex = np.repeat(ex_ids, nseg)
    seg_k = _group_cumsum(np.ones(len(seg_ex), np.int64), np.r_[True, seg_ex[1:] != seg_ex[:-1]]) - 1
    seg_ts = ex_t0[seg_ex] + rtt[ex_conn[seg_ex]] + think_s[seg_ex] + seg_k * seg_gap[seg_ex]
    seg_len = np.minimum(MSS, rep_len[seg_ex] - seg_k * MSS)
    add(ex_conn[seg_ex], seg_ts, 0, 0x18, ex_rep[seg_ex], seg_k, seg_len, seg_ex)
    acked = (seg_k % 2 == 1) | (seg_k == nseg[seg_ex] - 1)  # ACK every second segment and the last
    add(ex_conn[seg_ex][acked], seg_ts[acked] + 30_000, 1, 0x10, -1, 0, 0, -1)
    add(cid, conn_end, 1, 0x11, none, 0, 0, none)
    add(cid, conn_end + rtt, 0, 0x10, none, 0, 0, none)
    add(cid, conn_end + rtt + 40_000, 0, 0x11, none, 0, 0, none)
    add(cid, conn_end + rtt + 90_000, 1, 0x10, none, 0, 0, none)
    e = {k: np.concatenate(v) for k, v in ev.items()}
    # per-connection time order, then sequence and acknowledgement numbers
    o = np.lexsort((e["ts"], e["conn"]))
    e = {k: v[o] for k, v in e.items()}
    first = np.r_[True, e["conn"][1:] != e["conn"][:-1]]
    syn_fin = ((e["flags"] & 0x03) != 0).astype(np.int64)
    use = e["plen"] + syn_fin
    fc = e["fc"].astype(bool)
    cum_c = _group_cumsum(np.where(fc, use, 0), first)
    cum_s = _group_cumsum(np.where(~fc, use, 0), first)
    isn_c = rng.integers(0, 2**32, n_conn, dtype=np.int64)[e["conn"]]
    isn_s = rng.integers(0, 2**32, n_conn, dtype=np.int64)[e["conn"]]
    e["seq"] = np.where(fc, isn_c + cum_c - use, isn_s + cum_s - use) % 2**32
    e["ack"] = np.where(fc, isn_s + cum_s, isn_c + cum_c) % 2**32
    e["ack"][e["flags"] == 0x02] = 0
    e["udp"] = np.zeros(len(o), np.int64)
    e["orig"] = np.full(len(o), -1)
    n_tcp = len(o)
    # retransmissions: ~1% of server data segments resent 200-400 ms later
    data_s = np.flatnonzero(~fc & (e["plen"] > 0))
    resend = data_s[rng.random(len(data_s)) < 0.01]
    # --- DNS over UDP ---------------------------------------------------------------------------
    dns_t = rng.integers(0, duration_ns, dns_pairs) + 1_700_000_000 * 1_000_000_000
    name = rng.integers(0, len(DNS_NAMES), dns_pairs)
    dns_id = rng.integers(0, 65536, dns_pairs)
    dns_conn = rng.integers(0, n_conn, dns_pairs)  # borrows a client address
    dns_port = rng.integers(32768, 61000, dns_pairs)
    u = {
        "conn": np.r_[dns_conn, dns_conn], "ts": np.r_[dns_t, dns_t + rng.integers(300_000, 5_000_000, dns_pairs)],
        "fc": np.r_[np.ones(dns_pairs, np.int64), np.zeros(dns_pairs, np.int64)], "flags": np.zeros(2 * dns_pairs, np.int64),
        "tmpl": np.r_[dq[name], da[name]], "seg": np.zeros(2 * dns_pairs, np.int64),
        "ex": np.r_[dns_id, dns_id], "seq": np.r_[dns_port, dns_port], "ack": np.zeros(2 * dns_pairs, np.int64),
        "udp": np.ones(2 * dns_pairs, np.int64), "orig": np.full(2 * dns_pairs, -1),
    }
    u["plen"] = bank.length[u["tmpl"]]
    r = {k: v[resend] for k, v in e.items()}
    r["orig"] = resend
    r["ts"] = r["ts"] + rng.integers(200_000_000, 400_000_000, len(resend))
    allv = {k: np.concatenate([e[k], u[k], r[k]]) for k in e}
    order = np.argsort(allv["ts"], kind="stable")
    f = {k: v[order] for k, v in allv.items()}
    pos_of = np.empty(len(order), np.int64)
    pos_of[order] = np.arange(len(order))
    n = len(order)

    # --- addresses ------------------------------------------------------------------------------
    client_ip = (10 << 24) | (20 << 16) | rng.integers(1, 400, n_conn)
    server_ip = (10 << 24) | (1 << 16) | (server_no + 10)
    client_port = rng.integers(32768, 61000, n_conn)
    dns_ip = (10 << 24) | (1 << 16) | 53
    f_fc = f["fc"].astype(bool)
    f_udp = f["udp"].astype(bool)
    f_conn, f_plen = f["conn"], f["plen"]
    srv_ip = np.where(f_udp, dns_ip, server_ip[f_conn])
    srv_port = np.where(f_udp, 53, server_port[f_conn])
    cli_port = np.where(f_udp, f["seq"], client_port[f_conn])

    # --- record layout --------------------------------------------------------------------------
    synish = (f["flags"] & 0x02) != 0
    thl = np.where(f_udp, 8, np.where(synish, 40, 32))
    rec = 16 + 14 + 20 + thl + f_plen
    off = np.zeros(n + 1, np.int64)
    np.cumsum(rec, out=off[1:])
    total = 24 + int(off[-1])
    out = np.zeros(total, np.uint8)
    out[:24] = np.frombuffer(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1), np.uint8)
    p = 24 + off[:-1]
    caplen = rec - 16
    ts_sorted = f["ts"]
    _put_le(out, p, ts_sorted // 1_000_000_000, 4)
    _put_le(out, p + 4, (ts_sorted % 1_000_000_000) // 1000, 4)
    _put_le(out, p + 8, caplen, 4)
    _put_le(out, p + 12, caplen, 4)
    eth = p + 16
    cmac = np.frombuffer(b"\x02\x00\x00\x00\x00\x01", np.uint8)
    smac = np.frombuffer(b"\x02\x00\x00\x00\x00\x02", np.uint8)
    for k in range(6):
        out[eth + k] = np.where(f_fc, smac[k], cmac[k])
        out[eth + 6 + k] = np.where(f_fc, cmac[k], smac[k])
    _put_be(out, eth + 12, np.full(n, 0x0800), 2)
    ip = eth + 14
    src = np.where(f_fc, client_ip[f_conn], srv_ip)
    dst = np.where(f_fc, srv_ip, client_ip[f_conn])
    total_len = 20 + thl + f_plen
    ipid = np.arange(n) & 0xFFFF
    words = [np.full(n, 0x4500), total_len, ipid, np.full(n, 0x4000), (64 << 8) | np.where(f_udp, 17, 6),
             src >> 16, src & 0xFFFF, dst >> 16, dst & 0xFFFF]
    s = sum(w.astype(np.int64) for w in words)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    for k, w in enumerate(words[:5]):
        _put_be(out, ip + 2 * k, w, 2)
    _put_be(out, ip + 10, (~s) & 0xFFFF, 2)
    _put_be(out, ip + 12, src, 4)
    _put_be(out, ip + 16, dst, 4)
    t = ip + 20
    _put_be(out, t, np.where(f_fc, cli_port, srv_port), 2)
    _put_be(out, t + 2, np.where(f_fc, srv_port, cli_port), 2)
    ui = np.flatnonzero(f_udp)
    _put_be(out, t[ui] + 4, 8 + f_plen[ui], 2)  # UDP length; checksum 0 (none)
    ti = np.flatnonzero(~f_udp)
    tt = t[ti]
    _put_be(out, tt + 4, f["seq"][ti], 4)
    _put_be(out, tt + 8, f["ack"][ti], 4)
    _put_be(out, tt + 12, ((thl[ti] // 4) << 12) | f["flags"][ti], 2)
    _put_be(out, tt + 14, np.where(synish[ti], 64240, 1024 + (f_conn[ti] % 2000)), 2)
    tsval = (ts_sorted // 1_000_000) & 0xFFFFFFFF
    syn = ti[synish[ti]]
    other = ti[~synish[ti]]
    _put_bytes(out, t[syn] + 20, b"\x02\x04\x05\xa8\x04\x02\x08\x0a")  # MSS 1448
    _put_be(out, t[syn] + 28, tsval[syn], 4)
    _put_bytes(out, t[syn] + 36, b"\x01\x03\x03\x07")
    _put_bytes(out, t[other] + 20, b"\x01\x01\x08\x0a")
    _put_be(out, t[other] + 24, tsval[other], 4)
    _put_be(out, t[other] + 28, (tsval[other] - 1) & 0xFFFFFFFF, 4)

    # --- payloads: template bytes, then ids patched in ------------------------------------------
    pay = t + thl
    has = np.flatnonzero((f_plen > 0) & (f["orig"] < 0))
    step = 50_000  # events per gather: bounded index arrays
    for i in range(0, len(has), step):
        sel = has[i:i + step]
        ln = f_plen[sel]
        rel = np.arange(int(ln.sum())) - np.repeat(np.cumsum(ln) - ln, ln)
        out[np.repeat(pay[sel], ln) + rel] = bank.data[np.repeat(bank.offset[f["tmpl"][sel]] + f["seg"][sel] * MSS, ln) + rel]
    for ti_, patches in enumerate(bank.patches):
        for at, nbytes, little in patches:
            sel = has[(f["tmpl"][has] == ti_) & (f["seg"][has] == at // MSS)]
            if len(sel) == 0:
                continue
            udp = f_udp[sel]
            value = np.where(udp, f["ex"][sel], ex_no[np.clip(f["ex"][sel], 0, len(ex_no) - 1)])
            (_put_le if little else _put_be)(out, pay[sel] + at % MSS, value, nbytes)
    rs = np.flatnonzero(f["orig"] >= 0)
    if len(rs):
        src_ev = pos_of[f["orig"][rs]]
        ln = f_plen[rs]
        rel = np.arange(int(ln.sum())) - np.repeat(np.cumsum(ln) - ln, ln)
        out[np.repeat(pay[rs], ln) + rel] = out[np.repeat(pay[src_ev], ln) + rel]
    info = {"packets": n, "connections": n_conn, "giop_connections": int((~http).sum()),
            "exchanges": n_ex_total, "dns_pairs": dns_pairs, "retransmissions": len(resend), "bytes": total,
            "tcp_events": n_tcp}
    return out.tobytes(), ts_sorted, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "synthetic_2m.pcap")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data, _, info = generate(args.packets, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {info['packets']} packets, {info['connections']} TCP connections "
          f"({info['giop_connections']} IIOP), {info['exchanges']} request/response exchanges, "
          f"{info['dns_pairs']} DNS pairs, {info['retransmissions']} retransmissions, "
          f"{info['bytes'] / 1e6:.0f} MB in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
