"""`netdiag logons` / `netdiag findings` on real captures: output options, and captures without logons."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netdiag.schema import BUDGET_COLUMNS, FINDINGS, LOGONS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"
HTTP_ONLY = ROOT / "captures" / "crafted" / "real_loopback_http.pcap"
OMNIORB = ROOT / "captures" / "giop" / "omniorb.pcap"
ONE_CLIENT = ROOT / "captures" / "logons" / "syn_seed13_one_client.pcap"


def _netdiag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample capture not present")
def test_logons_json_has_the_declared_columns_and_budgets_that_sum(tmp_path):
    r = _netdiag("logons", SAMPLE, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert len(rows) == 3 and list(rows[0]) == LOGONS.names
    for row in rows:
        total = 0.0
        for c in BUDGET_COLUMNS:
            total += row[c]
        assert total == row["duration_s"]
    pq = tmp_path / "logons.parquet"
    assert _netdiag("logons", SAMPLE, "--parquet", pq).returncode == 0
    import polars as pl

    assert pl.read_parquet(pq).height == 3


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample capture not present")
def test_logons_summary_and_findings_csv():
    r = _netdiag("logons", SAMPLE, "--summary", "--json")
    assert r.returncode == 0, r.stderr
    views = json.loads(r.stdout)
    assert {"overall", "per_time_bucket", "per_server", "per_client_group", "budget",
            "server_think_per_operation"} <= set(views)
    assert views["overall"][0]["logons"] == 3
    ops = {v["operation"] for v in views["server_think_per_operation"]}
    assert {"authenticate", "getWorklist", "logout"} <= ops
    f = _netdiag("findings", SAMPLE, "--csv")
    assert f.returncode == 0, f.stderr
    assert f.stdout.splitlines()[0].split(",") == FINDINGS.names


@pytest.mark.skipif(not HTTP_ONLY.exists() or shutil.which("tshark") is None, reason="capture or tshark missing")
def test_capture_without_epj_traffic_says_so_plainly_instead_of_an_empty_table():
    conv = subprocess.run(["tshark", "-r", str(HTTP_ONLY), "-q", "-z", "conv,tcp"], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    n_tcp = sum(1 for line in conv.splitlines() if "<->" in line)
    r = _netdiag("logons", HTTP_ONLY)
    assert r.returncode == 0 and r.stdout == ""   # the analysis ran: exit 0 (README "Exit codes")
    assert ("no logons: no connection to a naming port (2809) or known EPJ port was seen, and none carried GIOP; "
            f"{n_tcp} TCP connection(s) analysed for transport problems") in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not OMNIORB.exists(), reason="capture missing")
def test_giop_without_a_bootstrap_connection_says_no_logon_start_seen_and_start_any_finds_it(tmp_path):
    r = _netdiag("logons", OMNIORB)
    assert r.returncode == 0 and "no logon start seen" in r.stderr
    # findings still runs (connection-level causes need no logon): exit 0, the same reason on stderr
    f = _netdiag("findings", OMNIORB)
    assert f.returncode == 0 and "no logon start seen" in f.stderr and "Traceback" not in f.stderr
    prof = tmp_path / "any.toml"
    prof.write_text('[logon]\nstart = "any"\n')
    ok = _netdiag("logons", OMNIORB, "--profile", prof, "--json")
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)) >= 1


def _tshark_fields(capture: Path, display_filter: str, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(capture), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


@pytest.mark.skipif(not ONE_CLIENT.exists() or shutil.which("tshark") is None, reason="capture or tshark missing")
def test_logon_whose_client_time_outweighs_the_rest_gets_a_budget_that_sums_exactly():
    # Regression: this logon (client_s 2.84 s after 0.30 s of everything else, nothing unexplained)
    # stopped `netdiag logons` with "budget columns must sum exactly to duration_s": no value of the
    # absorbing column could make 0.302... + x round to the odd float 3.1402815.
    r = _netdiag("logons", ONE_CLIENT, "--json")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    (row,) = json.loads(r.stdout)
    total = 0.0
    for c in BUDGET_COLUMNS:
        total += row[c]
    assert total == row["duration_s"] == (row["end_ts_ns"] - row["start_ts_ns"]) / 1e9
    assert all(row[c] >= 0 for c in BUDGET_COLUMNS)
    assert row["unexplained_s"] == 0.0
    # the oracle: tshark on the same file
    syns = _tshark_fields(ONE_CLIENT, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "frame.time_epoch")
    assert row["connections"] == len(syns) == 2
    first_ns = round(float(syns[0][0]) * 1e9)
    answers = _tshark_fields(ONE_CLIENT, "tcp.srcport == 2809 && tcp.len > 0", "frame.time_epoch")
    last_answer_ns = round(float(answers[-1][0]) * 1e9)
    # start/end are on the client's clock: half a client-side round trip before/after the capture point
    assert 0 <= first_ns - row["start_ts_ns"] < 5_000_000
    assert 0 <= row["end_ts_ns"] - last_answer_ns < 5_000_000
