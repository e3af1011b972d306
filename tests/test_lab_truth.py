"""The committed lab captures (captures/lab/*.pcap) against their truth files, with tshark as the reader.

The truth files come from the real peers' and the impairing bridge's own logs (captures/lab/run.py);
tshark is an independent dissector. Nothing here runs netdiag. Each scenario test proves that the
fault the scenario injects is really visible in the file, the way Wireshark shows it; the
cross-check test runs every comparison of captures/lab/crosscheck.py and allows only the
differences it documents (crosscheck.KNOWN) with their reason.
"""

from __future__ import annotations

import functools
import json
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

from captures.lab import crosscheck
from captures.lab.scenarios import SCENARIOS

LAB = Path(__file__).resolve().parents[1] / "captures" / "lab"
pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


@functools.cache
def frames(name: str) -> tuple[dict, ...]:
    keys = LAB / f"{name}.keys"
    return tuple(crosscheck.tshark_frames(LAB / f"{name}.pcap", keys if keys.exists() else None))


@functools.cache
def truth(name: str) -> dict:
    return json.loads((LAB / f"{name}.truth.json").read_text())


def tshark_rows(name: str, display_filter: str, fields: list[str], keys: bool = False) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(LAB / f"{name}.pcap"), "-Y", display_filter, "-T", "fields"]
    if keys:
        cmd += ["-o", f"tls.keylog_file:{LAB / f'{name}.keys'}"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def test_every_scenario_has_a_committed_capture_and_truth_and_they_are_small():
    total = 0
    for name in SCENARIOS:
        pcap = LAB / f"{name}.pcap"
        assert pcap.exists() and (LAB / f"{name}.truth.json").exists(), name
        assert pcap.stat().st_size < 2_000_000, f"{name}: {pcap.stat().st_size} bytes"
        total += pcap.stat().st_size + (LAB / f"{name}.truth.json").stat().st_size
        assert truth(name)["scenario"] == name
        # every scenario runs logons, except those with no client phase (tcp_stalls_other_port: no logon by design)
        at_least = 1 if SCENARIOS[name].phases else 0
        assert truth(name)["expected"]["logons_ok"] == truth(name)["expected"]["logons"] >= at_least, name
    assert total < 30_000_000


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_tshark_agrees_with_truth_except_documented_differences(name):
    checks = crosscheck.compare(truth(name), list(frames(name)))
    bad = [f"{c.name}: truth={c.truth} tshark={c.tshark} ({c.note})" for c in checks if c.status == "DISAGREE"]
    assert not bad, "\n".join(bad)
    for c in checks:   # a documented difference must still carry its reason
        if c.status == "known":
            assert (name, c.name) in crosscheck.KNOWN and c.note == crosscheck.KNOWN[(name, c.name)]


def test_baseline_two_logons_get_200_then_304_for_the_jars_and_nothing_is_resent():
    codes = [r[0] for r in tshark_rows("baseline", "http.response", ["http.response.code"])]
    assert codes.count("200") == 5 and codes.count("304") == 3
    assert tshark_rows("baseline", "tcp.analysis.retransmission or tcp.analysis.fast_retransmission", ["frame.number"]) == []
    ops = [r[0] for r in tshark_rows("baseline", "giop.type == 0", ["giop.request_op"])]
    assert ops.count("authenticate") == 2 and ops.count("resolve") == 2


def test_added_rtt_every_handshake_takes_the_injected_50_ms():
    rtts = [float(r[0]) * 1000 for r in tshark_rows("added_rtt", "tcp.analysis.initial_rtt", ["tcp.analysis.initial_rtt"])]
    assert rtts and truth("added_rtt")["injected"]["added_rtt_ms"] == 50
    assert all(50.0 <= r < 60.0 for r in rtts), rtts


def test_dropped_syn_is_resent_about_one_second_later_and_the_first_copy_is_in_the_client_capture():
    drop = truth("dropped_syn")["impairment_log"]["frames_dropped"]
    assert len(drop) == 1 and drop[0]["tcp_flags"] == "S"
    syns = tshark_rows("dropped_syn", "tcp.flags.syn == 1 and tcp.flags.ack == 0 and tcp.dstport == 9100",
                       ["frame.time_epoch", "tcp.seq_raw", "frame.number"])
    first = [r for r in syns if r[1] == str(drop[0]["seq"])]
    assert len(first) == 2, syns   # original (captured before the bridge dropped it) and the resend
    gap = float(first[1][0]) - float(first[0][0])
    assert 0.9 < gap < 1.5, gap   # Linux initial RTO 1 s (RFC 6298 2.1)
    md5 = {fr["frame.md5_hash"] for fr in frames("dropped_syn") if fr["frame.number"] == first[0][2]}
    assert md5 == {drop[0]["md5"]}


def test_slow_dns_first_query_is_resent_after_1_s_and_the_answer_is_held_300_ms():
    rows = tshark_rows("slow_dns", "dns", ["frame.time_epoch", "dns.id", "dns.flags.response", "dns.qry.name"])
    by_id: dict[str, list] = {}
    for t, txid, resp, name in rows:
        by_id.setdefault(txid, []).append((float(t), resp, name))
    retried = [v for v in by_id.values() if sum(1 for x in v if x[1] in ("0", "False")) == 2]
    assert len(retried) == 1
    q = sorted(x[0] for x in retried[0] if x[1] in ("0", "False"))
    a = [x[0] for x in retried[0] if x[1] in ("1", "True")]
    assert 0.95 < q[1] - q[0] < 1.3           # client.py's first timeout is 1.0 s
    assert len(a) == 1 and 0.3 <= a[0] - q[1] < 0.35
    for v in by_id.values():                  # every answer was held by the bridge's delay rule
        qs = [x[0] for x in v if x[1] in ("0", "False")]
        ans = [x[0] for x in v if x[1] in ("1", "True")]
        assert ans and ans[0] - max(qs) >= 0.3


def test_slow_auth_reply_starts_2_s_after_the_request_at_the_server():
    gaps = crosscheck.request_gaps_ms(list(frames("slow_auth")))
    auth = [r for r in truth("slow_auth")["server_requests"] if r["op"] == "authenticate"]
    assert len(auth) == 1 and auth[0]["think_ms_configured"] == 2000
    g = gaps[(int(auth[0]["client"].rsplit(":", 1)[1]), auth[0]["request_id"])]
    assert 2000 <= g < 2000 + 30, g
    assert abs(g - auth[0]["server_time_ms"]) < 3


def test_loss_c2s_dropped_frames_never_reach_the_server_capture_and_their_resends_do():
    t = truth("loss_c2s")
    drops = t["impairment_log"]["frames_dropped"]
    assert len(drops) >= 2 and all(d["dir"] == "c2s" for d in drops)
    md5s = {fr["frame.md5_hash"] for fr in frames("loss_c2s")}
    for d in drops:
        assert d["md5"] not in md5s
        resend = [fr for fr in frames("loss_c2s") if fr["tcp.seq_raw"] == str(d["seq"])
                  and fr["tcp.srcport"] == d["src"].rsplit(":", 1)[1] and fr["tcp.len"] == str(d["payload_len"])]
        assert len(resend) == 1
        assert float(resend[0]["frame.time_epoch"]) * 1e9 - d["ts_in_ns"] > 5e6   # a timer, not a reorder
    assert any("authenticate" in d["reason"] or d["reason"].startswith("rule 0") for d in drops)


def test_loss_s2c_middle_capture_shows_each_dropped_frame_and_its_resend():
    drops = truth("loss_s2c")["impairment_log"]["frames_dropped"]
    assert len(drops) >= 2 and all(d["dir"] == "s2c" for d in drops)
    fr = frames("loss_s2c")
    md5s = {f["frame.md5_hash"] for f in fr}
    assert all(d["md5"] in md5s for d in drops)
    for d in drops:
        copies = [f for f in fr if f["tcp.seq_raw"] == str(d["seq"]) and f["tcp.srcport"] == d["src"].rsplit(":", 1)[1]
                  and f["tcp.len"] not in ("", "0")]
        assert len(copies) >= 2, d["summary"]


def test_tls_both_versions_and_the_key_log_decrypts_the_http_inside():
    hellos = tshark_rows("tls", "tls.handshake.type == 2", ["tls.handshake.extensions.supported_version",
                                                               "tls.handshake.version"])
    versions = sorted(r[0] or r[1] for r in hellos)
    assert versions == ["0x0303", "0x0304"]
    inside = tshark_rows("tls", "http.request and tls", ["http.request.uri"], keys=True)
    assert [r[0] for r in inside] == ["/epj/ping", "/epj/ping"]
    assert tshark_rows("tls", "http.request and tls", ["http.request.uri"]) == []   # without keys: opaque
    done = [e["version"] for e in truth("tls")["client_events"] if e["event"] == "tls_handshake_done"]
    assert sorted(done) == ["TLSv1.2", "TLSv1.3"]


def test_zero_window_is_advertised_while_the_client_process_is_stopped():
    ev = truth("zero_window")["client_events"]
    armed = next(e["ts_ns"] for e in ev if e["event"] == "slow_reader_armed") / 1e9
    paused = next(e["ts_ns"] for e in ev if e["event"] == "client_paused") / 1e9
    resumed = next(e["ts_ns"] for e in ev if e["event"] == "client_resumed") / 1e9
    zw = [float(r[0]) for r in tshark_rows("zero_window", "tcp.analysis.zero_window", ["frame.time_epoch", "tcp.srcport"])
          if r[1] != "9100"]
    assert any(paused <= t <= resumed for t in zw), (paused, resumed, zw)
    assert all(armed <= t <= resumed + 0.05 for t in zw)      # only while the small buffer was in force
    # while the process is stopped nobody reads: every client segment on the ORB connection offers
    # window 0, answering the server's backed-off resends of the segment at the window edge
    during = [(r[1], r[2]) for r in tshark_rows("zero_window", "tcp.port == 9100", ["frame.time_epoch", "tcp.srcport",
                                                                                  "tcp.window_size"])
              if min(zw) <= float(r[0]) <= resumed - 0.01]   # from the window closing to the process resuming
    client_wins = [int(w) for port, w in during if port != "9100"]
    assert len(client_wins) >= 2 and set(client_wins) == {0}
    assert sum(1 for port, _ in during if port == "9100") >= 2


def test_nagle_small_body_waits_for_the_delayed_ack_although_the_server_wrote_it_at_once():
    web = {(w["path"], w["client"]): w for w in truth("nagle_delayed_ack")["web_requests"]
           if w["writes"] == 2 and w["body_bytes"] < 1448}
    stalls = 0
    rows = tshark_rows("nagle_delayed_ack", "tcp.srcport == 9080 and tcp.len > 0",
                       ["frame.time_epoch", "tcp.dstport", "tcp.len", "http.response.code"])
    resp_frames = [(float(t), port, int(ln), code) for t, port, ln, code in rows]
    for (_path, client), w in web.items():
        write_gap_ms = (w["write_ts_ns"][1] - w["write_ts_ns"][0]) / 1e6
        assert write_gap_ms < 5
        port = client.rsplit(":", 1)[1]
        # the previous response was complete before this request was sent, so the first server frames
        # after the server read the request are this response's head and body
        mine = [f for f in resp_frames if f[1] == port and w["received_ts_ns"] / 1e9 <= f[0]]
        head, body = mine[0], mine[1]
        if body[0] - head[0] > 0.030:
            stalls += 1
    assert stalls >= 2   # Linux delayed ACK (>= 40 ms) once the client left quick-ACK mode
    assert truth("nagle_delayed_ack")["kernel_tcp_counters"]["client"]["TcpExtDelayedACKs"] >= stalls


def test_system_exception_reply_is_followed_by_a_retry_of_the_same_operation():
    rows = tshark_rows("system_exception_retry", "giop", ["giop.type", "giop.request_id", "giop.request_op",
                                                          "giop.replystatus", "tcp.stream"])
    req_op = {(r[4], r[1]): r[2] for r in rows if r[0] == "0"}
    sysexc = [r for r in rows if r[0] == "1" and r[3] == "2"]
    assert len(sysexc) == 1
    assert req_op[(sysexc[0][4], sysexc[0][1])] == "getUserContext"
    assert [r[2] for r in rows if r[0] == "0"].count("getUserContext") == 2


def test_location_forward_sends_authenticate_again_to_the_second_server():
    rows = tshark_rows("location_forward", "giop", ["giop.type", "giop.request_op", "giop.replystatus", "ip.src",
                                                    "ip.dst"])
    app, app2 = truth("location_forward")["hosts"]["epj-app"]["address"], truth("location_forward")["hosts"]["epj-app2"]["address"]
    fwd = [r for r in rows if r[0] == "1" and r[2] == "3"]
    assert len(fwd) == 1 and fwd[0][3] == app
    auth_dst = [r[4] for r in rows if r[0] == "0" and r[1] == "authenticate"]
    assert auth_dst == [app, app2]
    assert {r[4] for r in rows if r[0] == "0" and r[1] in ("getUserContext", "logout")} == {app2}


def test_request_timeout_retry_goes_out_on_a_new_connection_after_the_call_timeout():
    rows = tshark_rows("request_timeout_retry", "giop.type == 0 and giop.request_op == \"getWorklist\"",
                       ["frame.time_epoch", "tcp.stream"])
    assert len(rows) == 2
    assert rows[0][1] != rows[1][1]
    assert 1.45 < float(rows[1][0]) - float(rows[0][0]) < 2.5   # client call timeout 1.5 s
    hung = [r for r in truth("request_timeout_retry")["server_requests"] if r.get("action") == "hang"]
    assert len(hung) == 1 and hung[0]["op"] == "getWorklist"


def test_capture_drops_frames_are_gone_from_the_file_and_recorded_with_their_original_numbers():
    t = truth("capture_drops")
    removed = t["capture_drops"]
    assert len(removed) >= 3
    fr = frames("capture_drops")
    assert len(fr) == t["capture_point"]["tcpdump_counters"]["captured"] - len(removed)
    md5s = {f["frame.md5_hash"] for f in fr}
    assert not any(r["md5"] in md5s for r in removed)
    ops = [r[0] for r in tshark_rows("capture_drops", "giop.type == 0", ["giop.request_op"])]
    assert "authenticate" not in ops and t["expected"]["giop_requests_by_op"]["authenticate"] == 1
    assert [r["giop_request_op"] for r in removed if r.get("giop_request_op")] == ["authenticate"]


def test_storm_twenty_logons_overlap_and_tshark_sees_twenty_of_everything():
    t = truth("storm")
    lg = t["logons"]
    assert len(lg) == 20 and all(x["outcome"] == "ok" for x in lg)
    latest_start = max(x["start_ts_ns"] for x in lg)
    earliest_end = min(x["end_ts_ns"] for x in lg)
    assert latest_start < earliest_end   # all twenty were running at one moment
    ops = [r[0] for r in tshark_rows("storm", "giop.type == 0", ["giop.request_op"])]
    assert ops.count("authenticate") == 20 and ops.count("logout") == 20
    syn = tshark_rows("storm", "tcp.flags.syn == 1 and tcp.flags.ack == 0 and tcp.dstport == 9100", ["tcp.srcport"])
    assert len({r[0] for r in syn}) == 20
    assert statistics.median(x["duration_s"] for x in lg) < 30


def test_dropped_syn_nft_the_server_capture_sees_the_first_syn_arrive_unanswered():
    t = truth("dropped_syn_nft")
    assert t["impairment_log"]["nft"]["packets_dropped"] == 1 and t["impairment_log"]["frames_dropped"] == []
    rows = tshark_rows("dropped_syn_nft", "tcp.port == 9100 and tcp.flags.syn == 1",
                       ["frame.time_epoch", "tcp.srcport", "tcp.flags.ack"])
    syns = [r for r in rows if r[2] in ("0", "False")]
    synacks = [r for r in rows if r[2] in ("1", "True")]
    assert len(syns) == 2 and syns[0][1] == syns[1][1]            # same connection, SYN resent
    assert 0.9 < float(syns[1][0]) - float(syns[0][0]) < 1.5
    assert len(synacks) == 1 and float(synacks[0][0]) > float(syns[1][0])   # only the resend is answered
