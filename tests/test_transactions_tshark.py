"""The stream driver and pairing (netdiag.transactions) driven by tshark's own TCP analysis.

Segments (relative sequence numbers, retransmission flags, rto, payload bytes) come from
`tshark -T fields` on the crafted captures in captures/streams, so these tests prove the
reassembly/cut/pairing layer independently of netdiag's reader and TCP analyzer. Truth: tshark's
GIOP and HTTP dissectors on the same files, and the schedule the generator crafted (think
times, reply order). The end-to-end tests through netdiag's own reader and analyzer are in
test_transactions.py.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from netdiag.transactions import StreamAnalysis, StreamParser, _assemble

STREAMS = Path(__file__).resolve().parent.parent / "captures" / "streams"
pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
MS = 1_000_000

FIELDS = ["frame.number", "frame.time_epoch", "tcp.stream", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport",
          "tcp.flags", "tcp.seq", "tcp.ack", "tcp.len", "tcp.analysis.retransmission", "tcp.analysis.rto",
          "tcp.analysis.ack_rtt", "tcp.payload"]


def tshark_rows(pcap: Path, fields: list[str], *opts: str, display: str | None = None) -> list[list[str]]:
    cmd = ["tshark", "-r", str(pcap), *opts, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a",
           "-E", "aggregator=,"]
    if display:
        cmd += ["-Y", display]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("|") for line in out.splitlines()]


@functools.cache
def segments_from_tshark(pcap: Path) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame, pl.DataFrame]:
    """(segments, payload buffer, packets with ports, connections) built from tshark's analysis."""
    rows = tshark_rows(pcap, FIELDS, display="tcp")
    client: dict[int, tuple[str, int]] = {}
    syn: dict[int, int] = {}
    rtt: dict[int, float] = {}
    cols: dict[str, list] = {k: [] for k in ("frame", "ts_ns", "conn_id", "direction", "tcp_flags", "seq_rel",
                                             "ack_rel", "payload_len", "payload_captured", "payload_offset",
                                             "retransmission", "rto_s", "ack_rtt_s", "src_port", "dst_port")}
    conns: dict[int, dict] = {}
    payload = bytearray()
    for fr, t, stream, src, dst, sp, dp, flags, seq, ack, ln, rex, rto, ack_rtt, data in rows:
        s, fl = int(stream), int(flags, 16)
        ts = int(Decimal(t) * 1_000_000_000)
        if s not in client:
            client[s] = (src, int(sp))
            conns[s] = {"conn_id": s, "client_ip": src, "client_port": int(sp), "server_ip": dst,
                        "server_port": int(dp), "rtt_server_side_ms": None}
        if fl & 0x12 == 0x02:
            syn[s] = ts
        if fl & 0x12 == 0x12 and s in syn and conns[s]["rtt_server_side_ms"] is None:
            conns[s]["rtt_server_side_ms"] = (ts - syn[s]) / 1e6
        d = 0 if (src, int(sp)) == client[s] else 1
        raw = bytes.fromhex(data.replace(":", "")) if data else b""
        cols["frame"].append(int(fr))
        cols["ts_ns"].append(ts)
        cols["conn_id"].append(s)
        cols["direction"].append(d)
        cols["tcp_flags"].append(fl)
        cols["seq_rel"].append(int(seq))
        cols["ack_rel"].append(int(ack))
        cols["payload_len"].append(int(ln))
        cols["payload_captured"].append(len(raw))
        cols["payload_offset"].append(len(payload) if raw else -1)
        cols["retransmission"].append(rex == "1")
        cols["rto_s"].append(float(rto) if rto else None)
        cols["ack_rtt_s"].append(float(ack_rtt) if ack_rtt else None)
        cols["src_port"].append(int(sp))
        cols["dst_port"].append(int(dp))
        payload += raw
    del rtt
    df = pl.DataFrame(cols, schema_overrides={"conn_id": pl.UInt32, "direction": pl.UInt8, "tcp_flags": pl.UInt16,
                                              "payload_len": pl.UInt32, "payload_captured": pl.UInt32,
                                              "rto_s": pl.Float64, "ack_rtt_s": pl.Float64, "src_port": pl.UInt16, "dst_port": pl.UInt16})
    connections = pl.DataFrame(list(conns.values()) or None, schema_overrides={"rtt_server_side_ms": pl.Float64})
    return df, np.frombuffer(bytes(payload), np.uint8), df.select("frame", "src_port", "dst_port"), connections


UDP_BASE = 100_000  # conn ids for UDP flows (tshark numbers udp.stream apart from tcp.stream)


@functools.cache
def udp_from_tshark(pcap: Path) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame]:
    """UDP datagrams (not ICMP-quoted ones) as analyzer-like UDP rows, their payload and flows."""
    rows = tshark_rows(pcap, ["frame.number", "frame.time_epoch", "udp.stream", "ip.src", "ip.dst", "udp.srcport",
                              "udp.dstport", "udp.payload"], display="udp && !icmp && !icmpv6")
    cols: dict[str, list] = {k: [] for k in ("frame", "ts_ns", "conn_id", "src_port", "dst_port",
                                             "payload_offset", "payload_captured")}
    flows: dict[int, dict] = {}
    payload = bytearray()
    for fr, t, stream, src, dst, sp, dp, data in rows:
        raw = bytes.fromhex(data.replace(":", "")) if data else b""
        cid = UDP_BASE + int(stream)
        if cid not in flows:  # the client is the side not on the DNS port
            c_is_src = int(dp) in (53, 5353, 5355)
            flows[cid] = {"conn_id": cid, "client_ip": src if c_is_src else dst,
                          "client_port": int(sp if c_is_src else dp), "server_ip": dst if c_is_src else src,
                          "server_port": int(dp if c_is_src else sp), "rtt_server_side_ms": None}
        cols["frame"].append(int(fr))
        cols["ts_ns"].append(int(Decimal(t) * 1_000_000_000))
        cols["conn_id"].append(cid)
        cols["src_port"].append(int(sp))
        cols["dst_port"].append(int(dp))
        cols["payload_offset"].append(len(payload))
        cols["payload_captured"].append(len(raw))
        payload += raw
    df = pl.DataFrame(cols, schema_overrides={"conn_id": pl.UInt32, "src_port": pl.UInt16, "dst_port": pl.UInt16,
                                              "payload_captured": pl.UInt32})
    conns = pl.DataFrame(list(flows.values()), schema_overrides={"rtt_server_side_ms": pl.Float64})
    return df, np.frombuffer(bytes(payload), np.uint8), conns


def drive(name: str | Path, chunk_rows: int | None = None) -> StreamAnalysis:
    path = name if isinstance(name, Path) else STREAMS / name
    segs, payload, packets, connections = segments_from_tshark(path)
    sp = StreamParser()
    step = max(chunk_rows or segs.height, 1)
    for a in range(0, segs.height, step):
        sp.feed(segs.slice(a, step), payload, packets)
    udp, upay, uconns = udp_from_tshark(path)
    if udp.height:
        sp.feed_udp(udp, upay)
        connections = pl.concat([connections, uconns], how="vertical_relaxed") if connections.height else uconns
    return _assemble(sp, connections)


def tshark_giop(name: str, *opts: str) -> tuple[dict, dict]:
    """tshark's GIOP view: requests {(stream, id): op} and replies {(stream, id): (status, exc, host, port, frame)}."""
    fields = ["frame.number", "tcp.stream", "giop.type", "giop.request_id", "giop.request_op",
              "giop.replystatus", "giop.exceptionid", "giop.iiop.host", "giop.iiop.port"]
    reqs: dict = {}
    reps: dict = {}
    for fr, stream, typ, rid, op, status, exc, host, port in tshark_rows(STREAMS / name, fields, *opts, display="giop"):
        types, rids = typ.split(","), rid.split(",")
        ops, stats = op.split(",") if op else [], status.split(",") if status else []
        for k, (t, r) in enumerate(zip(types, rids, strict=False)):
            if not r:  # a header tshark could not decode (the 4 GB lie)
                continue
            key = (int(stream), int(r))
            if t == "0":
                reqs[key] = ops.pop(0) if ops else None
            elif t == "1" and key not in reps:
                reps[key] = (int(stats.pop(0)) if stats else None, exc or None, host or None,
                             int(port) if port else None, int(fr))
            elif t == "7" and key in reps:
                reps[key] = (*reps[key][:4], int(fr))  # the final fragment completes the reply
            del k
    return reqs, reps


STATUS = {0: "NO_EXCEPTION", 1: "USER_EXCEPTION", 2: "SYSTEM_EXCEPTION", 3: "LOCATION_FORWARD",
          4: "LOCATION_FORWARD_PERM", 5: "NEEDS_ADDRESSING_MODE"}


def ours_giop(a: StreamAnalysis) -> tuple[dict, dict]:
    t = a.transactions.filter(pl.col("protocol") == "giop")
    reqs = {(r["conn_id"], r["request_id"]): r["operation"] for r in t.iter_rows(named=True)}
    reps = {(r["conn_id"], r["request_id"]): (r["status"], r["exception_id"], r["forward_host"], r["forward_port"],
                                             r["last_frame"])
            for r in t.filter(pl.col("rsp_first_ts_ns").is_not_null()).iter_rows(named=True)}
    return reqs, reps


OOO = ("-o", "tcp.reassemble_out_of_order:TRUE")


@pytest.mark.parametrize("name", ["giop_split_retrans.pcap", "giop_out_of_order.pcap", "giop_overlap_first_wins.pcap",
                                  "giop_many_outstanding.pcap"])
def test_giop_pairs_operations_statuses_and_reply_frames_agree_with_tshark(name: str) -> None:
    a = drive(name)
    reqs, reps = ours_giop(a)
    t_reqs, t_reps = tshark_giop(name, *OOO)
    assert reqs == t_reqs
    assert {k: (STATUS[v[0]], *v[1:]) for k, v in t_reps.items()} == reps
    assert a.stats.malformed_messages == 0


def test_many_outstanding_requests_answered_out_of_order_pair_by_id_with_crafted_think_times() -> None:
    a = drive("giop_many_outstanding.pcap")
    t = a.transactions.filter(pl.col("protocol") == "giop").sort("request_id")
    assert t["request_id"].to_list() == list(range(1, 9))
    # the generator's schedule: request k leaves at 10 + 0.1 k ms, the j-th reply (in the order
    # 8, 3, 1, 5, 2, 7, 4, 6) at 10.8 + 10 j ms; the capture-to-server round trip (SYN -> SYN/ACK) is 1 ms
    order = [8, 3, 1, 5, 2, 7, 4, 6]
    for r in t.iter_rows(named=True):
        k = r["request_id"]
        j = order.index(k) + 1
        assert r["req_last_ts_ns"] - r["req_first_ts_ns"] == 0
        assert abs(r["server_think_s"] - ((10.8 + 10 * j) - (10 + 0.1 * k) - 1.0) / 1e3) < 2e-6
    # replies arrive in the crafted order
    assert t.sort("rsp_first_ts_ns")["request_id"].to_list() == [8, 3, 1, 5, 2, 7, 4, 6]
    frag = t.filter(pl.col("request_id") == 8).row(0, named=True)
    assert frag["response_bytes"] == 1024 + 1016 + 520
    assert frag["response_transfer_s"] == pytest.approx(0.001, abs=2e-6)
    assert frag["status"] == "NO_EXCEPTION"


def test_split_reply_with_a_resend_is_one_reply_and_its_resend_time_is_counted() -> None:
    a = drive("giop_split_retrans.pcap")
    t = a.transactions.filter(pl.col("protocol") == "giop").sort("conn_id")
    assert t["response_bytes"].to_list() == [6000, 6000]
    captured, lost = t.row(0, named=True), t.row(1, named=True)
    # original captured: complete at the capture point with the last segment (64 ms)
    assert captured["rsp_last_ts_ns"] - captured["rsp_first_ts_ns"] == 4 * MS
    # original lost before the capture point: complete only with the resend (265 ms)
    assert lost["rsp_last_ts_ns"] - lost["rsp_first_ts_ns"] == 205 * MS
    # tshark: rto 0.203 s (original captured) and 0.202 s (since the first segment after the hole)
    assert captured["retransmission_stall_s"] == pytest.approx(0.203, abs=1e-6)
    assert lost["retransmission_stall_s"] == pytest.approx(0.202, abs=1e-6)
    m = a.messages.filter((pl.col("protocol") == "giop") & (pl.col("direction") == 1)).sort("conn_id")
    assert m["resend_s"].to_list() == pytest.approx([0.203, 0.202], abs=1e-6)
    assert a.stats.duplicate_bytes == 1200


def test_capture_gap_cuts_the_reply_short_records_the_gap_and_resyncs_on_the_next_magic() -> None:
    a = drive("giop_capture_gap.pcap")
    assert a.gaps.height == 1
    gap = a.gaps.row(0, named=True)
    assert gap["direction"] == 1 and gap["bytes"] == 1000
    msgs = a.messages.filter(pl.col("direction") == 1)
    bad = msgs.filter(pl.col("malformed"))
    assert bad.height >= 1
    first_bad = bad.row(0, named=True)
    assert first_bad["request_id"] == 2 and "capture gap" in json.loads(first_bad["detail"])["reason"]
    # what tshark decodes (without out-of-order reassembly it resyncs too): replies 1 and 3
    t_reqs, t_reps = tshark_giop("giop_capture_gap.pcap")
    reqs, reps = ours_giop(a)
    assert reqs == t_reqs
    for key, (status, exc, host, port, frame) in t_reps.items():
        assert reps[key] == (STATUS[status], exc, host, port, frame)
    good = msgs.filter(~pl.col("malformed") & (pl.col("msg_type") == "Reply"))
    assert sorted(good["request_id"].to_list()) == [1, 3]
    assert a.stats.malformed_messages == bad.height


def test_overlapping_resend_with_different_bytes_keeps_the_first_copy_like_tshark() -> None:
    a = drive("giop_overlap_first_wins.pcap")
    ops = a.transactions.filter(pl.col("protocol") == "giop")["operation"].to_list()
    assert ops == ["logonUser"]
    assert tshark_giop("giop_overlap_first_wins.pcap")[0] == {(0, 9): "logonUser"}


def test_pipelined_http_pairs_in_order_like_tshark() -> None:
    a = drive("http_pipelined.pcap")
    t = a.transactions.filter(pl.col("protocol") == "http").sort("request_id")
    ours = [(r["operation"], r["status"]) for r in t.iter_rows(named=True)]
    rows = tshark_rows(STREAMS / "http_pipelined.pcap", ["http.request.method", "http.request.uri",
                                                         "http.response.code", "http.response_for.uri"],
                       display="http")
    methods, uris, codes = [], [], []
    for method, uri, code, _for in rows:
        methods += [m for m in method.split(",") if m]
        uris += [u for u in uri.split(",") if u]
        codes += [c for c in code.split(",") if c]
    assert ours == [(f"{m} {u}", c) for m, u, c in zip(methods, uris, codes, strict=True)]
    assert t["user_agent"].to_list() == ["JNLP/1.7.0 javaws/11.0 (b1) Java/1.8.0_202"] * 3
    assert t["response_bytes"].to_list() == [1585, len(b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n'), len(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n") + 100]


@pytest.mark.parametrize("name", sorted(p.name for p in STREAMS.glob("*.pcap")))
def test_feeding_one_packet_per_chunk_gives_the_same_tables(name: str) -> None:
    whole = drive(name)
    small = drive(name, chunk_rows=1)
    assert small.messages.equals(whole.messages)
    assert small.transactions.equals(whole.transactions)
    assert small.gaps.equals(whole.gaps)


def test_lying_lengths_and_garbage_are_marked_malformed_at_their_frame_and_parsing_resyncs() -> None:
    a = drive("bad_input.pcap")
    m = a.messages
    conn_of = {r["client_port"]: r["conn_id"] for r in a.connections.iter_rows(named=True)}
    frames = {int(f): (int(sp), bytes.fromhex(p)) for f, sp, p in tshark_rows(
        STREAMS / "bad_input.pcap", ["frame.number", "tcp.srcport", "tcp.payload"], display="tcp.len > 0")}
    first_data = {sp: f for f, (sp, _) in sorted(frames.items(), reverse=True)}

    # A: the 4 GB GIOP header is malformed at its own frame; the Request after it is decoded
    giop = m.filter(pl.col("conn_id") == conn_of[50061])
    bad = giop.filter(pl.col("malformed")).row(0, named=True)
    assert bad["first_frame"] == first_data[50061]
    assert frames[bad["first_frame"]][1][8:12] == b"\xff\xff\xff\xf0"
    assert "limit" in json.loads(bad["detail"])["reason"]
    t = a.transactions.filter(pl.col("conn_id") == conn_of[50061])
    assert t.select("operation", "status").rows() == [("ping", "NO_EXCEPTION")]
    # (tshark does not resynchronise after the lie; the truth is the crafted frame itself)
    ping = t.row(0, named=True)
    assert frames[ping["first_frame"]][1].startswith(b"GIOP") and b"ping\x00" in frames[ping["first_frame"]][1]

    # B: the Content-Length beyond the stream: malformed "truncated" at the end, not a stall
    http = m.filter(pl.col("conn_id") == conn_of[50062]).row(0, named=True)
    assert http["malformed"] and "truncated" in json.loads(http["detail"])["reason"]
    assert http["first_frame"] == first_data[50062]
    assert a.transactions.filter(pl.col("conn_id") == conn_of[50062])["status"].to_list() == ["unanswered"]

    # C: a record of content type 99 gives up the direction, malformed at its frame
    tls = m.filter((pl.col("conn_id") == conn_of[50063]) & pl.col("malformed"))
    assert any("content type 99" in json.loads(d)["reason"] for d in tls["detail"].to_list())

    # D: nobody recognises random bytes: no messages, counted as skipped
    assert m.filter(pl.col("conn_id") == conn_of[50064]).height == 0
    assert a.stats.connections_skipped == 1
    assert a.stats.malformed_messages == m["malformed"].sum() >= 3


PROTO = Path(__file__).resolve().parent.parent / "captures" / "proto"


@pytest.mark.skipif(not (PROTO / "dns.pcap").exists(), reason="captures/proto/dns.pcap not present")
def test_dns_pairs_rcodes_think_times_retries_and_unanswered_questions_agree_with_tshark() -> None:
    a = drive(PROTO / "dns.pcap")
    t = a.transactions.filter(pl.col("protocol") == "dns")
    rows = tshark_rows(PROTO / "dns.pcap", ["frame.number", "tcp.stream", "dns.flags.response", "dns.qry.name",
                                            "dns.flags.rcode", "dns.response_to", "dns.time"],
                       display="dns && !icmp")
    rcode = {0: "NOERROR", 3: "NXDOMAIN", 5: "REFUSED"}
    answered_queries = {int(r[5]) for r in rows if r[2] == "1"}
    oracle = sorted((name, rcode[int(rc)], float(dt), bool(tcp)) for _, tcp, resp, name, rc, _to, dt in rows
                    if resp == "1")
    # the capture-to-server round trip taken off (TCP only): the smaller of tshark's SYN -> SYN/ACK
    # and its quickest ack_rtt of a server ACK on that connection
    syn_rtt = {r["conn_id"]: r["rtt_server_side_ms"] for r in a.connections.iter_rows(named=True)}
    ack_rtt: dict[int, float] = {}
    for stream, src_port, ack_rtt_s in tshark_rows(PROTO / "dns.pcap", ["tcp.stream", "tcp.srcport",
                                                                       "tcp.analysis.ack_rtt"], display="tcp"):
        if ack_rtt_s and src_port == "53":
            ack_rtt[int(stream)] = min(ack_rtt.get(int(stream), 1e9), float(ack_rtt_s) * 1e3)
    rtt = {c: min(v for v in (syn_rtt.get(c), ack_rtt.get(c)) if v is not None) for c in syn_rtt
           if c < UDP_BASE}
    ours = sorted((r["operation"], r["status"],
                   r["server_think_s"] + (rtt.get(r["conn_id"]) or 0.0) / 1e3, r["conn_id"] < UDP_BASE)
                  for r in t.filter(pl.col("status") != "unanswered").iter_rows(named=True))
    assert [o[:2] + o[3:] for o in ours] == [o[:2] + o[3:] for o in oracle]
    for (_, _, think, _), (_, _, dns_time, _) in zip(ours, oracle, strict=True):
        assert think == pytest.approx(dns_time, abs=1e-6)  # dns.time = query -> response at the capture
    # never answered: frame 15 (client -> dnsmasq), 16 (dnsmasq's forward to 127.0.0.9; 17 is the
    # ICMP error quoting it), 38+40 (dig +tries=2 to a dead server: same id, two source ports)
    unanswered_frames = sorted(int(r[0]) for r in rows if r[2] == "0" and int(r[0]) not in answered_queries)
    u = t.filter(pl.col("status") == "unanswered").sort("first_frame")
    assert sorted(u["first_frame"].to_list()) == [15, 16, 38]
    assert set(unanswered_frames) == {15, 16, 38, 40}
    assert [json.loads(d)["retries"] for d in u["detail"].to_list()] == [0, 0, 1]


@pytest.mark.skipif(not (PROTO / "tls.pcap").exists(), reason="captures/proto/tls.pcap not present")
def test_tls_handshakes_versions_resumption_alerts_and_turns_agree_with_tshark_and_s_client() -> None:
    a = drive(PROTO / "tls.pcap")
    hs = a.transactions.filter(pl.col("protocol") == "tls").sort("conn_id")
    rows = tshark_rows(PROTO / "tls.pcap", ["frame.number", "tcp.stream", "tcp.srcport", "tls.record.content_type",
                                            "tls.record.opaque_type", "tls.record.length", "tls.handshake.type",
                                            "tls.handshake.extensions.supported_version", "tls.handshake.version",
                                            "tls.alert_message.desc"], display="tls")
    streams = sorted({int(r[1]) for r in rows})
    assert hs["conn_id"].to_list() == streams  # one handshake per connection
    lines = (PROTO / "tls_s_client.txt").read_text().splitlines()
    labels = [line.split(":", 1)[0] for line in lines]
    truth = [line.split(":", 1)[1].split("|")[0].strip() for line in lines]
    server_port = {r["conn_id"]: r["server_port"] for r in a.connections.iter_rows(named=True)}
    for r, said, label in zip(hs.iter_rows(named=True), truth, labels, strict=True):
        s = r["conn_id"]
        mine = [x for x in rows if int(x[1]) == s]
        detail = json.loads(r["detail"])
        alerts = [x[9] for x in mine if x[9] and not any("23" in y[3].split(",") for y in mine
                                                         if int(y[0]) < int(x[0]))]
        if alerts:  # a clear alert before any application data ends the handshake
            assert r["status"] == "alert:" + {"40": "handshake_failure", "48": "unknown_ca"}[alerts[0]]
            continue
        assert detail.get("hello_retry", False) == ("hello retry" in label)
        assert r["status"] == "ok"
        assert detail["resumed"] == said.startswith("Reused")
        sh = next(x for x in mine if "2" in x[6].split(","))
        version = "TLS1.3" if "0x0304" in sh[7] else {"0x0303": "TLS1.2"}[sh[8].split(",")[0]]
        assert r["tls_version"] == version and version.replace("TLS", "TLSv") in said
        # handshake end: <= 1.2 the last handshake/CCS record before application data; 1.3 the
        # client's first encrypted record after the ServerHello (its Finished)
        server = str(server_port[s])
        if version == "TLS1.3":
            end = next(int(x[0]) for x in mine if x[2] != server and "23" in x[4].split(",")
                       and int(x[0]) > int(sh[0]))
        else:
            first_app = min(int(x[0]) for x in mine if "23" in x[3].split(","))
            end = max(int(x[0]) for x in mine if int(x[0]) < first_app and set(x[3].split(",")) & {"20", "22"})
        assert r["last_frame"] == end, (s, said)
        # TLS 1.2 turns: request/response bytes are tshark's application-data records (5-byte headers included)
        if version == "TLS1.2":
            turns = a.transactions.filter((pl.col("protocol") == "turn") & (pl.col("conn_id") == s))
            assert turns.height == 1 and turns["confidence"].to_list() == ["inferred"]
            sizes = {0: 0, 1: 0}
            for x in mine:
                for ct, ln in zip(x[3].split(","), x[5].split(","), strict=True):
                    if ct == "23":
                        sizes[0 if x[2] != server else 1] += int(ln) + 5
            assert (turns["request_bytes"][0], turns["response_bytes"][0]) == (sizes[0], sizes[1])


def test_locate_forward_cancel_and_giop_1_1_fragments_pair_like_the_crafted_bytes_and_tshark() -> None:
    a = drive("giop_locate_cancel_11.pcap")
    t = {r["request_id"]: r for r in a.transactions.iter_rows(named=True)}
    rows = tshark_rows(STREAMS / "giop_locate_cancel_11.pcap",
                       ["frame.number", "giop.type", "giop.request_id", "giop.request_op", "giop.replystatus",
                        "giop.locale_status", "giop.iiop.host", "giop.iiop.port"], display="giop")
    by_frame = {int(r[0]): r[1:] for r in rows}
    # LocateRequest 1 -> LocateReply OBJECT_FORWARD to the IOR's host:port (tshark decodes the same)
    loc = t[1]
    assert (loc["operation"], loc["status"]) == ("LocateRequest", "OBJECT_FORWARD")
    _, rid, _, _, locate_status, host, port = by_frame[loc["last_frame"]]
    assert (int(rid), int(locate_status), host, int(port)) == (1, 2, loc["forward_host"], loc["forward_port"])
    # Request 2 cancelled and never answered
    assert (t[2]["operation"], t[2]["status"]) == ("slowCall", "cancelled")
    assert by_frame[t[2]["first_frame"]][:3] == ["0", "2", "slowCall"]
    # GIOP 1.1 little-endian Reply in three pieces: 1000 + (12 + 800) + (12 + 300) bytes; complete in the
    # final Fragment's frame, where tshark shows the reassembled reply's status
    big = t[3]
    assert (big["operation"], big["status"], big["response_bytes"]) == ("getBigList", "NO_EXCEPTION", 2124)
    assert by_frame[big["last_frame"]][:2] == ["7", "3"] and by_frame[big["last_frame"]][3] == "0"
    # GIOP 1.0
    assert (t[4]["operation"], t[4]["status"]) == ("ping10", "NO_EXCEPTION")
    assert by_frame[t[4]["last_frame"]][:2] == ["1", "4"]
    assert a.stats.malformed_messages == 0 and a.stats.unmatched_responses == 0
