"""Logons on the bundled sample capture against the peers' own logs (captures/sample/).

Expected values come from `epj-logon.truth.json` (the client's and the server's logs, written by
the lab, never by netdiag) and from tshark on the same file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from netdiag.schema import BUDGET_COLUMNS

SAMPLE = Path(__file__).resolve().parents[1] / "captures" / "sample" / "epj-logon.pcap"
TRUTH = SAMPLE.with_suffix(".truth.json")

pytestmark = pytest.mark.skipif(not SAMPLE.exists() or not TRUTH.exists(), reason="sample capture not present")


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads(TRUTH.read_text())


@pytest.fixture(scope="module")
def analysis():
    from netdiag.logons import analyze_logons

    return analyze_logons(SAMPLE)


def _pairs(analysis, truth):
    rows = analysis.logons.sort("start_ts_ns").to_dicts()
    logs = sorted(truth["logons"], key=lambda x: x["start_ts_ns"])
    assert len(rows) == len(logs) == truth["expected"]["logons"]
    return list(zip(rows, logs, strict=True))


def test_sample_logon_count_start_and_end_agree_with_the_client_log_within_5_ms(analysis, truth):
    for row, log in _pairs(analysis, truth):
        assert abs(row["start_ts_ns"] - log["start_ts_ns"]) < 5_000_000
        assert abs(row["end_ts_ns"] - log["end_ts_ns"]) < 5_000_000
        assert row["outcome"] == "completed" and log["outcome"] == "ok"


def test_sample_budget_sums_exactly_and_server_time_agrees_with_the_server_log_within_5_percent(analysis, truth):
    for row, log in _pairs(analysis, truth):
        total = 0.0
        for c in BUDGET_COLUMNS:
            total += row[c]
        assert total == row["duration_s"]
        served = [r for r in truth["server_requests"] if log["start_ts_ns"] <= r["received_ts_ns"] <= log["end_ts_ns"]]
        server_own_s = sum(r["server_time_ms"] for r in served) / 1000
        assert row["server_s"] == pytest.approx(server_own_s, rel=0.05)


def test_sample_slow_authenticate_logon_is_dominated_by_server_think(analysis, truth):
    slow = truth["injected"]["server_ops"]["authenticate"]["think_ms_sequence"]
    for (row, _log), think_ms in zip(_pairs(analysis, truth), [slow[0], slow[1], slow[0]], strict=True):
        if think_ms >= 1000:
            assert row["dominant_cause"] == "server_think"
        assert row["separation_confidence"] == "high"


def test_sample_connections_and_requests_per_logon_match_the_truth_counts(analysis, truth):
    exp = truth["expected"]
    n = exp["logons"]
    per_logon_requests = (exp["giop_requests"] + exp["giop_locate_requests"] + exp["http_requests"]) / n
    for row, _log in _pairs(analysis, truth):
        assert row["connections"] == exp["tcp_connections"] / n
        assert row["requests"] == per_logon_requests


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_sample_server_think_evidence_frames_are_authenticate_requests_and_replies_in_wireshark(analysis):
    f = analysis.findings.filter((analysis.findings["cause"] == "server_think")
                                 & (analysis.findings["severity"] == "warning")).row(0, named=True)
    assert "authenticate" in f["summary"]
    out = subprocess.run(["tshark", "-r", str(SAMPLE), "-Y", f["wireshark_filter"], "-T", "fields",
                          "-e", "frame.number", "-e", "giop.type", "-e", "giop.request_id"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    frames = {int(line.split("\t")[0]) for line in out.splitlines() if line.strip()}
    assert frames == set(f["evidence_frames"])
    ops = subprocess.run(["tshark", "-r", str(SAMPLE), "-Y", f"({f['wireshark_filter']}) && giop.type == 0",
                          "-T", "fields", "-e", "giop.request_op"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert ops and set(ops) == {"authenticate"}


def test_sample_clean_parts_raise_no_warning_other_than_the_injected_slow_authenticate(analysis):
    warn = analysis.findings.filter(analysis.findings["severity"] != "info")
    assert warn["cause"].to_list() == ["server_think"]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_sample_logon_filter_shows_exactly_the_logons_connections_in_wireshark(analysis):
    conns = analysis.connections
    for row in analysis.logons.to_dicts():
        out = subprocess.run(["tshark", "-r", str(SAMPLE), "-Y", row["wireshark_filter"], "-T", "fields",
                              "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        shown = len([line for line in out.splitlines() if line.strip()])
        mine = conns.filter(conns["conn_id"].is_in(row["conn_ids"]))
        tcp_packets = int((mine["packets_c2s"] + mine["packets_s2c"]).sum())
        # the logon's TCP connections plus its DNS exchanges (one query and one answer per name)
        assert shown >= tcp_packets
        assert shown - tcp_packets <= 8
