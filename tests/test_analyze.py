"""`netdiag analyze`: the output directory, its tables and the report's numbers, on real captures.

Ground truth: the sample capture's peers' own logs (captures/sample/epj-logon.truth.json: logon
start/end on the client, the slow `authenticate` in logon 1 of 0..2), tshark on the same file
(TCP streams, handshake times) and the `netdiag findings` command's own output path.
Captures under captures/lab/ (when present) get the same consistency checks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from netdiag.analyze import MARKER, analyze, sample_capture
from netdiag.schema import BUDGET_COLUMNS, CONNECTIONS, FINDINGS, LOGONS, TRANSACTIONS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"
TRUTH = ROOT / "captures" / "sample" / "epj-logon.truth.json"
HTTP_ONLY = ROOT / "captures" / "crafted" / "real_loopback_http.pcap"
LAB = sorted(p for p in (ROOT / "captures" / "lab").rglob("*") if p.suffix in (".pcap", ".pcapng") and p.is_file())
TABLES = {"connections": CONNECTIONS, "transactions": TRANSACTIONS, "logons": LOGONS, "findings": FINDINGS}
HAVE_TSHARK = shutil.which("tshark") is not None


def _netdiag(*args: object, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`netdiag analyze --out DIR` with no capture: the bundled sample."""
    out = tmp_path_factory.mktemp("default") / "report"
    r = _netdiag("analyze", "--out", out)
    return r, out


@pytest.fixture(scope="module")
def lab_runs(tmp_path_factory):
    runs = []
    for p in LAB:
        out = tmp_path_factory.mktemp("lab") / p.stem
        runs.append((p, analyze([p], out=out), out))
    return runs


UNIT_S = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}
SECONDS = r"([\d.,]+ (?:µs|ms|s))"


def parse_s(text: str) -> float:
    """A duration as the report writes it ("38 µs", "12.4 ms", "2.40 s") back in seconds."""
    value, unit = text.strip().rsplit(" ", 1)
    return float(value.replace(",", "")) * UNIT_S[unit]


def _md_summary(md: str) -> dict[str, float]:
    got = {"logons": int(re.search(r"^- Logons: (\d+)$", md, re.M).group(1))}
    for key, pat in (("p50", rf"^- Median \(p50\) logon time: {SECONDS}$"), ("p95", rf"^- p95 logon time: {SECONDS}$"),
                     ("max", rf"^- Slowest logon: {SECONDS} \(logon (\d+)\)$")):
        m = re.search(pat, md, re.M)
        if m:
            got[key] = parse_s(m.group(1))
            if key == "max":
                got["slowest_id"] = int(m.group(2))
    return got


# ------------------------------------------------------------------------------------------
# The default run: bundled sample
# ------------------------------------------------------------------------------------------

def test_no_capture_analyses_the_bundled_sample_and_says_so(default_run):
    r, out = default_run
    assert r.returncode == 0, r.stderr
    assert "bundled sample capture" in r.stderr
    assert "Traceback" not in r.stderr
    assert f"Report: {(out / 'report.html').resolve()}" in r.stdout
    assert r.stdout.startswith("3 logons: typical ")
    for name in ("report.html", "report.md", "findings.json", MARKER, "tables/SCHEMA.md",
                 *(f"tables/{t}.parquet" for t in TABLES)):
        assert (out / name).is_file(), name
    marker = json.loads((out / MARKER).read_text())
    assert marker["tool"] == "netdiag" and marker["sample"] is True


def test_bundled_sample_is_the_documented_sample_capture():
    assert sample_capture().read_bytes() == SAMPLE.read_bytes(), (
        "captures/sample/epj-logon.pcap was remade: cp captures/sample/epj-logon.pcap netdiag/data/")


def test_parquet_tables_read_back_with_their_declared_schemas(default_run):
    _, out = default_run
    for name, table in TABLES.items():
        df = pl.read_parquet(out / "tables" / f"{name}.parquet")
        assert df.schema == table.schema, name
    schema_md = (out / "tables" / "SCHEMA.md").read_text()
    for table in TABLES.values():
        for c in table.columns:
            assert f"| `{c.name}` |" in schema_md


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_tables_hold_what_the_peers_and_tshark_saw(default_run):
    _, out = default_run
    truth = json.loads(TRUTH.read_text())["expected"]
    conns = pl.read_parquet(out / "tables" / "connections.parquet")
    streams = subprocess.run(["tshark", "-r", str(SAMPLE), "-Y", "tcp", "-T", "fields", "-e", "tcp.stream"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert (conns["transport"] == "tcp").sum() == len(set(streams)) == truth["tcp_connections"]
    tx = pl.read_parquet(out / "tables" / "transactions.parquet")
    giop_ops = tx.filter((pl.col("protocol") == "giop") & (pl.col("operation") != "LocateRequest"))
    assert dict(giop_ops.group_by("operation").len().iter_rows()) == truth["giop_requests_by_op"]
    assert pl.read_parquet(out / "tables" / "logons.parquet").height == truth["logons"]


def test_findings_json_equals_the_findings_table(default_run):
    _, out = default_run
    rows = json.loads((out / "findings.json").read_text())
    table = pl.read_parquet(out / "tables" / "findings.parquet")
    assert rows == table.to_dicts()
    assert list(rows[0]) == FINDINGS.names
    # and the same findings the `netdiag findings` command reports for the same capture
    r = _netdiag("findings", SAMPLE, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == rows


def test_report_md_summary_agrees_with_the_logons_table_and_the_client_log(default_run):
    _, out = default_run
    got = _md_summary((out / "report.md").read_text())
    logons = pl.read_parquet(out / "tables" / "logons.parquet")
    d = logons["duration_s"].to_numpy()
    assert got["logons"] == logons.height == 3
    # shown with 2 decimals (>= 1 s): within half a unit of the last digit
    assert got["p50"] == pytest.approx(np.percentile(d, 50), abs=0.005)
    assert got["p95"] == pytest.approx(np.percentile(d, 95), abs=0.005)
    assert got["max"] == pytest.approx(d.max(), abs=0.005)
    assert got["slowest_id"] == int(logons.sort("duration_s", descending=True)["logon_id"][0])
    # the client's own log: durations within 10 ms, and the slowest is the slow-authenticate logon (index 1)
    truth = json.loads(TRUTH.read_text())["logons"]
    client = np.array([t["duration_s"] for t in truth])
    assert got["p50"] == pytest.approx(np.percentile(client, 50), abs=0.01)
    assert got["p95"] == pytest.approx(np.percentile(client, 95), abs=0.01)
    assert got["slowest_id"] == int(np.argmax(client)) + 1


def test_report_md_budget_table_matches_the_logons_budget_columns(default_run):
    _, out = default_run
    md = (out / "report.md").read_text()
    logons = pl.read_parquet(out / "tables" / "logons.parquet")
    from netdiag.report import CATEGORY_LABELS, fmt_s

    for c in BUDGET_COLUMNS:
        line = next(x for x in md.splitlines() if x.startswith(f"| {CATEGORY_LABELS[c]} |"))
        assert line.split("|")[2].strip() == fmt_s(float(logons[c].sum())), c


def test_report_html_names_each_finding_and_its_wireshark_filter(default_run):
    _, out = default_run
    html = (out / "report.html").read_text()
    from html import escape

    for f in json.loads((out / "findings.json").read_text()):
        assert escape(f["summary"], quote=True) in html
        assert escape(f["wireshark_filter"], quote=True) in html


# ------------------------------------------------------------------------------------------
# Capture point and method facts
# ------------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_capture_point_medians_match_tshark_handshake_times():
    a = analyze([SAMPLE])
    rows = subprocess.run(["tshark", "-r", str(SAMPLE), "-Y", "tcp", "-T", "fields", "-e", "tcp.stream", "-e",
                           "tcp.flags.syn", "-e", "tcp.flags.ack", "-e", "frame.time_epoch", "-e",
                           "tcp.analysis.initial_rtt"], capture_output=True, text=True, timeout=60,
                          check=True).stdout.splitlines()
    syn: dict[str, float] = {}
    synack: dict[str, float] = {}
    irtt: dict[str, float] = {}
    for line in rows:
        stream, s, ack, t, rtt = (line.split("\t") + [""])[:5]
        if s == "1" and ack == "0":
            syn[stream] = float(t)
        elif s == "1" and ack == "1":
            synack.setdefault(stream, float(t))
        if rtt and stream not in irtt:
            irtt[stream] = float(rtt)
    server_side = [synack[k] - syn[k] for k in synack]
    client_side = [irtt[k] - (synack[k] - syn[k]) for k in synack]
    cp = a.capture_point
    assert cp.server_side_rtt_s == pytest.approx(float(np.median(server_side)), abs=2e-6)
    assert cp.client_side_rtt_s == pytest.approx(float(np.median(client_side)), abs=2e-6)
    # both sides well under 1 ms on the lab veth: the capture point cannot matter, and the report says so
    assert cp.where == "undetermined" and "under 1 ms" in cp.how


def test_profile_capture_point_is_reported_as_the_profiles_word(tmp_path):
    prof = tmp_path / "site.toml"
    prof.write_text('[capture]\npoint = "server"\n\n[thresholds]\nslow_logon_s = 2\n\n'
                    '[[client_groups]]\nsubnet = "198.51.100.0/24"\ngroup = "Ward 7"\n')
    a = analyze([SAMPLE], profile=prof, out=tmp_path / "r")
    assert a.capture_point.where == "server"
    md = (tmp_path / "r" / "report.md").read_text()
    assert 'Where the capture was taken: server. Set in the site profile ([capture] point = "server")' in md
    # the profile's slow limit drives the "slow logons" count: only the slow-authenticate logon exceeds 2 s
    assert "- Logons slower than 2.00 s: 1" in md
    # the ward table: the sample's one client is in the profile's subnet
    d = a.logons["duration_s"].to_numpy()
    row = next(x for x in md.splitlines() if x.startswith("| Ward 7 |")).split("|")[2:-1]
    assert int(row[0]) == len(d) == 3
    assert [parse_s(v) for v in row[1:]] == pytest.approx(
        [np.percentile(d, 50), np.percentile(d, 90), np.percentile(d, 95), d.max()], abs=0.005)


# ------------------------------------------------------------------------------------------
# Bad input and the output directory
# ------------------------------------------------------------------------------------------

def test_existing_directory_not_written_by_netdiag_is_left_alone_without_force(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    r = _netdiag("analyze", SAMPLE, "--out", out)
    assert r.returncode == 2
    assert str(out) in r.stderr and "--force" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    r = _netdiag("analyze", SAMPLE, "--out", out, "--force")
    assert r.returncode == 0, r.stderr
    assert (out / MARKER).is_file() and (out / "notes.txt").read_text() == "keep me"
    # now it is ours: a second run overwrites without --force
    r = _netdiag("analyze", SAMPLE, "--out", out)
    assert r.returncode == 0, r.stderr


def test_out_path_that_is_a_file_and_missing_captures_are_one_line_errors(tmp_path):
    f = tmp_path / "report"
    f.write_text("x")
    r = _netdiag("analyze", SAMPLE, "--out", f)
    assert r.returncode == 2 and "is not a directory" in r.stderr and "Traceback" not in r.stderr
    missing = tmp_path / "nope.pcap"
    r = _netdiag("analyze", missing, "--out", tmp_path / "o")
    assert r.returncode == 2 and f"{missing}: no such file or directory" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not HTTP_ONLY.exists(), reason="crafted HTTP capture not present")
def test_capture_without_logons_still_gets_a_report_that_says_why(tmp_path):
    out = tmp_path / "r"
    r = _netdiag("analyze", HTTP_ONLY, "--out", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("No logons found: no connection to a naming port (2809) or known EPJ port was seen")
    md = (out / "report.md").read_text()
    assert "- Logons: 0" in md and "No logons were found in real_loopback_http.pcap" in md
    assert pl.read_parquet(out / "tables" / "logons.parquet").height == 0
    conns = pl.read_parquet(out / "tables" / "connections.parquet")
    assert f"- TCP connections: {int((conns['transport'] == 'tcp').sum())} " in md
    # the one connection-level cause in it: curl's first SYN refused by RST (tshark: frame 2 is RST/ACK)
    findings = json.loads((out / "findings.json").read_text())
    rst = subprocess.run(["tshark", "-r", str(HTTP_ONLY), "-Y", "tcp.flags.reset == 1", "-T", "fields", "-e",
                          "frame.number"], capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert [(f["cause"], f["logons_affected"]) for f in findings] == [("connect_failure", 0)]
    assert rst == ["2"] and findings[0]["evidence_frames"] == [1]


# ------------------------------------------------------------------------------------------
# Lab captures (when present): the same consistency checks
# ------------------------------------------------------------------------------------------

@pytest.mark.skipif(not LAB, reason="no lab captures under captures/lab/")
def test_lab_captures_reports_agree_with_their_tables(lab_runs):
    for path, a, out in lab_runs:
        assert json.loads((out / "findings.json").read_text()) == pl.read_parquet(
            out / "tables" / "findings.parquet").to_dicts(), path
        for name, table in TABLES.items():
            assert pl.read_parquet(out / "tables" / f"{name}.parquet").schema == table.schema
        got = _md_summary((out / "report.md").read_text())
        assert got["logons"] == a.logons.height
        if a.logons.height:
            d = a.logons["duration_s"].to_numpy()
            tol = lambda v: 0.005 if v >= 1 else 0.0005  # noqa: E731 - the md's rounding
            assert abs(got["p50"] - np.percentile(d, 50)) <= tol(got["p50"]), path
            assert abs(got["max"] - d.max()) <= tol(got["max"]), path


CRAFTED = ROOT / "captures" / "crafted"


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_a_cut_capture_is_reported_with_its_file_and_frame_and_the_frames_before_it_kept(tmp_path):
    cut = CRAFTED / "bad" / "truncated_last_record.pcap"
    out = tmp_path / "r"
    r = _netdiag("analyze", cut, "--out", out)
    assert r.returncode == 0, r.stderr
    tshark_frames = len(subprocess.run(["tshark", "-r", str(cut)], capture_output=True, text=True,
                                       timeout=60).stdout.splitlines())
    md = (out / "report.md").read_text()
    assert f"- frames read: {tshark_frames}" in md
    assert "Capture warnings: 1" in md
    warning = next(x for x in md.splitlines() if x.startswith(f"- {cut}, frame {tshark_frames + 1}"))
    assert "truncated last record" in warning
    from html import escape

    assert escape(warning[2:], quote=True) in (out / "report.html").read_text()
    assert f"netdiag: warning: {warning[2:]}" in r.stderr


def test_span_duplicates_removed_are_reported_as_the_generator_injected_them(tmp_path):
    expected = json.loads((CRAFTED / "expected.json").read_text())["span_dups.pcap"]["duplicates"]
    a = analyze([CRAFTED / "span_dups.pcap"], out=tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("- duplicate frames removed"))
    assert line.endswith(f": {expected}")
    assert a.read_stats.duplicates_removed == expected


# ------------------------------------------------------------------------------------------
# Privacy: CPR numbers in operation names never reach the report text
# ------------------------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("tcpdump") or not shutil.which("curl"),
                    reason="needs root, tcpdump and curl to capture real peers on loopback")
def test_cpr_numbers_in_http_paths_are_redacted_in_report_text_but_kept_in_the_tables(tmp_path):
    import signal
    import time

    port = _free_port()
    cap = tmp_path / "cpr.pcap"
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                              cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dump = None
    try:
        import socket

        for _ in range(100):   # bounded: the server listens within 10 s (probed before the capture starts)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        dump = subprocess.Popen(["tcpdump", "-i", "lo", "-w", str(cap), "-U", "--immediate-mode",
                                 f"tcp port {port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert "listening on" in dump.stderr.readline()   # tcpdump says so once the capture runs
        for path in ("/epj/patient/0101901234", "/epj/worklist/311299-9876"):
            subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}{path}"], timeout=10, check=True)
        time.sleep(0.3)
    finally:
        if dump is not None:
            dump.send_signal(signal.SIGINT)
            dump.wait(timeout=10)
        server.terminate()
        server.wait(timeout=10)
    prof = tmp_path / "p.toml"
    prof.write_text(f'[logon]\nstart = "any"\n\n[[servers]]\nname = "lab"\naddresses = ["127.0.0.1"]\n'
                    f'ports = {{ {port} = "http" }}\n')
    out = tmp_path / "r"
    r = _netdiag("analyze", cap, "--profile", prof, "--out", out)
    assert r.returncode == 0, r.stderr
    tx = pl.read_parquet(out / "tables" / "transactions.parquet")
    ops = set(tx["operation"].drop_nulls().to_list())
    assert {"GET /epj/patient/0101901234", "GET /epj/worklist/311299-9876"} <= ops   # the data keeps them
    for text in (r.stdout, (out / "report.md").read_text(), (out / "report.html").read_text()):
        assert "0101901234" not in text and "311299-9876" not in text
    md = (out / "report.md").read_text()
    assert "| http | GET /epj/patient/XXXXXXXXXX | 1 |" in md     # shown, with the number blanked


LAB_ADDED_RTT = ROOT / "captures" / "lab" / "added_rtt.pcap"


@pytest.mark.skipif(not LAB_ADDED_RTT.exists(), reason="lab added_rtt capture not present")
def test_capture_point_is_found_from_a_real_delay_between_client_and_capture(tmp_path):
    # The lab bridge adds its delay between the client and the capture interface (truth.json:
    # injected.added_rtt_ms; the capture sits on the server's side of the bridge).
    truth = json.loads(LAB_ADDED_RTT.with_suffix(".truth.json").read_text())
    added_s = truth["injected"]["added_rtt_ms"] / 1000
    a = analyze([LAB_ADDED_RTT], out=tmp_path / "r")
    cp = a.capture_point
    assert cp.where == "server"
    assert cp.client_side_rtt_s == pytest.approx(added_s, abs=0.005)
    assert cp.server_side_rtt_s < 0.001
    assert "Where the capture was taken: server." in (tmp_path / "r" / "report.md").read_text()
