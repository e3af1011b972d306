"""Connection-level findings without logons on the lab's tcp_stalls_other_port capture.

Ground truth (captures/lab/tcp_stalls_other_port.truth.json, written from the peers' own logs by
captures/lab/tcpstall.py and run.py, never from netdiag):
- Nagle x delayed ACK on port 7000: the server logged the time of each recv(); the gap between
  the recv() that returned a request's first piece and the one that completed it is how long the
  client's kernel held the second piece. The server kernel's own TcpExtDelayedACKs counter gives
  the number of delayed ACKs it sent.
- zero window on port 7001: the client logged when it stopped and resumed reading, the server
  when it started sending; the sender waited from the start of sending to the reader resuming.
tshark on the same file gives the segment and ACK times (tcp.analysis.acks_frame / ack_rtt) the
connections table's Nagle columns must agree with.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from netdiag.logons import analyze_logons
from netdiag.tcp import TcpAnalyzer
from netdiag.tcp.nagle import DELAYED_ACK_MAX_S, DELAYED_ACK_MIN_S

ROOT = Path(__file__).resolve().parents[1]
PCAP = ROOT / "captures" / "lab" / "tcp_stalls_other_port.pcap"
TRUTH = json.loads((ROOT / "captures" / "lab" / "tcp_stalls_other_port.truth.json").read_text())
HAVE_TSHARK = shutil.which("tshark") is not None


def _close(got: float, want: float) -> bool:
    """Within 5 ms or 5 % of the truth (COMMON.md)."""
    return abs(got - want) <= max(0.005, 0.05 * abs(want))


@pytest.fixture(scope="module")
def analysis():
    return analyze_logons(PCAP)


def test_findings_name_the_nagle_stalls_and_the_zero_window_with_the_peers_own_seconds(analysis):
    ts = TRUTH["tcp_stalls"]
    assert TRUTH["expected"]["logons"] == 0 and analysis.logons.height == 0
    assert ts["nagle_stalls"] == TRUTH["kernel_tcp_counters"]["server"]["TcpExtDelayedACKs"] >= 10
    f = {r["cause"]: r for r in analysis.findings.to_dicts()}
    conns = analysis.connections
    port_of = dict(conns.select("conn_id", "server_port").iter_rows())

    nagle = f["nagle_delayed_ack"]
    assert _close(nagle["seconds_lost"], ts["nagle_stall_s"]), (nagle["seconds_lost"], ts["nagle_stall_s"])
    assert f"{ts['nagle_stalls']} stall(s)" in nagle["summary"]
    assert [port_of[c] for c in nagle["conn_ids"]] == [ts["ports"]["nagle"]]

    zw = f["zero_window"]
    assert _close(zw["seconds_lost"], ts["zero_window_s"]), (zw["seconds_lost"], ts["zero_window_s"])
    assert [port_of[c] for c in zw["conn_ids"]] == [ts["ports"]["bulk"]]

    assert all(r["logons_affected"] == 0 and r["logon_ids"] == [] for r in f.values())
    assert "no logon in this capture" in nagle["summary"]
    for r in f.values():     # every finding can be opened in Wireshark
        assert r["wireshark_filter"].startswith("frame.number in {")


def test_no_logons_reason_says_what_the_capture_holds_not_bootstrap_connections_it_lacks(analysis):
    reason = analysis.no_logons_reason
    assert "no connection to a naming port (2809) or known EPJ port was seen" in reason
    assert "2 TCP connection(s) analysed for transport problems" in reason
    assert "bootstrap connections" not in reason


def test_findings_cli_exits_0_with_the_causes_and_the_reason_on_stderr():
    res = subprocess.run([sys.executable, "-m", "netdiag.cli", "findings", str(PCAP), "--json"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert {"nagle_delayed_ack", "zero_window"} <= {r["cause"] for r in rows}
    assert all(r["logons_affected"] == 0 for r in rows)
    assert "no connection to a naming port (2809)" in res.stderr and "Traceback" not in res.stderr


def test_analyze_cli_exits_0_and_prints_the_connection_findings(tmp_path):
    res = subprocess.run([sys.executable, "-m", "netdiag.cli", "analyze", str(PCAP), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "No logons found: no connection to a naming port (2809)" in res.stdout
    assert "Nagle with delayed ACK" in res.stdout and "slow reader" in res.stdout
    findings = json.loads((tmp_path / "r" / "findings.json").read_text())
    rows = findings if isinstance(findings, list) else findings.get("findings", findings)
    assert {"nagle_delayed_ack", "zero_window"} <= {r["cause"] for r in rows}


def _tshark_stalls() -> dict[int, list[float]]:
    """Nagle x delayed-ACK stalls from tshark's own fields, per tcp.stream: a bare ACK of the other side's
    last data segment, 30-500 ms after it (tcp.analysis.ack_rtt), and the next frame of the stream is that
    side's data; the stall is from the acknowledged segment to that next frame."""
    out = subprocess.run(["tshark", "-r", str(PCAP), "-Y", "tcp", "-T", "fields", "-E", "separator=,",
                          "-e", "frame.number", "-e", "frame.time_epoch", "-e", "tcp.stream", "-e", "tcp.srcport",
                          "-e", "tcp.len", "-e", "tcp.flags.syn", "-e", "tcp.flags.fin", "-e", "tcp.flags.reset",
                          "-e", "tcp.analysis.acks_frame", "-e", "tcp.analysis.ack_rtt"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [r.split(",") for r in out.splitlines()]
    by_stream: dict[int, list] = {}
    for f, t, st, sport, ln, syn, fin, rst, acks, rtt in rows:
        by_stream.setdefault(int(st), []).append((int(f), float(t), int(sport), int(ln), syn in ("1", "True")
                                                  or fin in ("1", "True") or rst in ("1", "True"),
                                                  int(acks) if acks else None, float(rtt) if rtt else None))
    stalls: dict[int, list[float]] = {}
    for st, frames in by_stream.items():
        last_data: dict[int, tuple[int, float]] = {}
        for i, (f, t, sport, ln, ctl, acks, rtt) in enumerate(frames):
            if ln > 0:
                last_data[sport] = (f, t)
                continue
            other = [p for p in last_data if p != sport]
            if ctl or acks is None or rtt is None or not other or i + 1 >= len(frames):
                continue
            a_frame, a_t = last_data[other[0]]
            nxt = frames[i + 1]
            if acks == a_frame and DELAYED_ACK_MIN_S <= rtt <= DELAYED_ACK_MAX_S and nxt[2] == other[0] and nxt[3] > 0:
                stalls.setdefault(st, []).append(nxt[1] - a_t)
    return stalls


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_connections_nagle_columns_agree_with_tsharks_segment_and_ack_times(analysis):
    conns = analysis.connections.filter(pl.col("transport") == "tcp").sort("first_frame")
    stalls = _tshark_stalls()
    # tcp.stream numbers follow first appearance, as conn_id does for the TCP connections here
    for st, row in enumerate(conns.iter_rows(named=True)):
        want = stalls.get(st, [])
        assert row["nagle_stalls"] == len(want), (row["server_port"], row["nagle_stalls"], len(want))
        assert row["nagle_stall_s"] == pytest.approx(sum(want), abs=1e-5)
    nagle_row = conns.filter(pl.col("server_port") == TRUTH["tcp_stalls"]["ports"]["nagle"]).row(0, named=True)
    assert nagle_row["nagle_stalls"] == TRUTH["tcp_stalls"]["nagle_stalls"]
    assert _close(nagle_row["nagle_stall_s"], TRUTH["tcp_stalls"]["nagle_stall_s"])


def test_connections_nagle_columns_do_not_depend_on_chunk_boundaries():
    """The streaming detection carries each connection's last rows across chunks: tiny chunks, same answer."""
    from netdiag.capture import iter_chunks

    def table(path: Path, chunk: int, segments: bool) -> pl.DataFrame:
        an = TcpAnalyzer()
        for c in iter_chunks([str(path)], chunk_packets=chunk):
            an.feed(c, segments=segments)
        return an.finish().select("conn_id", "nagle_stalls", "nagle_stall_s")

    whole = table(PCAP, 1_000_000, True)
    assert int(whole["nagle_stalls"].sum()) == TRUTH["tcp_stalls"]["nagle_stalls"]
    for chunk, segments in ((1, False), (3, True), (7, False)):
        assert table(PCAP, chunk, segments).equals(whole), (chunk, segments)
    # interleaved connections (the lab's Nagle scenario at the server: web and ORB connections at once)
    other = ROOT / "captures" / "lab" / "nagle_delayed_ack.pcap"
    whole = table(other, 1_000_000, True)
    assert int(whole["nagle_stalls"].sum()) > 0
    assert table(other, 5, False).equals(whole)


def test_a_connection_outside_the_logons_gets_its_own_finding_beside_the_logon_findings():
    """A logon, and a backup agent's connection to port 5432 whose first SYN went unanswered (RTO 1 s):
    the SYN retry is reported with logons_affected 0 and 'outside any logon', and the logon's own
    findings do not count it."""
    from logon_tables import connection, segment, tables, transaction

    from netdiag.logons import analyze_tables

    C, S, APP, DB = "10.1.0.5", "10.2.0.10", "10.2.0.11", "10.3.0.7"
    conns = [connection(1, C, 50000, S, 2809, 0.0, 0.2, 0.3, 40.0, first_frame=1, last_frame=8),
             connection(2, C, 50001, APP, 9100, 10.0, 10.2, 10.3, 45.0, first_frame=3, last_frame=9),
             connection(3, "10.1.0.99", 40000, DB, 5432, 100.0, 1100.4, 1100.5, 1200.0, syn_retx=1,
                        first_frame=20, last_frame=30)]
    txns = [transaction(1, C, S, 2809, "giop", "resolve", 1, 1, 3, 3, forward=(APP, 9100)),
            transaction(2, C, APP, 9100, "giop", "authenticate", 11, 11, 40, 40)]
    segs = [segment(20, 100.0, 3, 0, flags=0x02), segment(21, 1100.0, 3, 0, flags=0x02),
            segment(22, 1100.4, 3, 1, flags=0x12), segment(23, 1100.5, 3, 0)]
    c, t, s = tables(conns, txns, segs)
    res = analyze_tables(c, t, s)
    assert res.logons.height == 1 and res.logons["conn_ids"].to_list() == [[1, 2]]
    syn = [r for r in res.findings.to_dicts() if r["cause"] == "syn_retransmission"]
    assert len(syn) == 1 and syn[0]["conn_ids"] == [3] and syn[0]["logons_affected"] == 0
    assert syn[0]["seconds_lost"] == pytest.approx(1.0004, abs=1e-6)    # first SYN to SYN/ACK
    assert "outside any logon" in syn[0]["summary"] and "10.3.0.7:5432" in syn[0]["summary"]
    assert "1.00 s" in syn[0]["detail"]                                  # the client's RTO, gap of its SYNs
