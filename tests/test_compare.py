"""`netdiag compare`: verdicts on real before/after captures checked against the peers' own logs and tshark.

Ground truth:
- captures/compare (made by captures/compare/make.py with the lab's runner, real omniORB/HTTP/DNS
  peers): authenticate 800 ms -> 200 ms (12 logons a side), two runs of the same settings (A/A),
  first SYN of every logon dropped -> none (12 a side), 3 % server->client loss -> none (16 a side). Their truth files hold the server's own measured
  time per request and the client's own logon durations; tshark on the same files gives the
  retransmission waits (tcp.analysis.rto).
- captures/lab: storm (20 logons, split into halves by start time: A/A within one run), the
  one-logon dropped_syn and baseline (too few for a verdict; tshark gives the SYN's RTO).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from netdiag.analyze import MARKER, analyze
from netdiag.compare import MIN_SAMPLES, CompareError, compare
from netdiag.errors import UsageError
from netdiag.report.compare import render_html, render_markdown
from netdiag.schema import BUDGET_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
CMP = ROOT / "captures" / "compare"
LAB = ROOT / "captures" / "lab"
HTTP_ONLY = ROOT / "captures" / "crafted" / "real_loopback_http.pcap"
HAVE_TSHARK = shutil.which("tshark") is not None
MOVED = ("improved", "regressed")


def _truth(name: str) -> dict:
    return json.loads((CMP / f"{name}.truth.json").read_text())


def _netdiag(*args: object, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _tshark_rto_sum(pcap: Path, extra: str = "") -> float:
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", f"tcp.analysis.retransmission{extra}", "-T", "fields",
                          "-E", "separator=,", "-e", "tcp.analysis.rto"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return sum(float(x) for x in out.split() if x)


@pytest.fixture(scope="module")
def analyses() -> dict:
    """Each capture analysed once (the expensive part); comparisons reuse the Analysis objects."""
    names = ["cmp_auth800", "cmp_auth200", "cmp_auth200_rerun", "cmp_loss3", "cmp_noloss", "cmp_syndrop", "cmp_client"]
    out = {n: analyze(CMP / f"{n}.pcap") for n in names}
    out["storm"] = analyze(LAB / "storm.pcap")
    return out


@pytest.fixture(scope="module")
def auth(analyses) -> object:
    return compare(analyses["cmp_auth800"], analyses["cmp_auth200"])


# ------------------------------------------------------------------------------------------
# A known change is found in exactly the category that changed, with the right size
# ------------------------------------------------------------------------------------------

def test_authenticate_800_to_200_ms_improves_logon_time_by_the_clients_own_measured_amount(auth):
    d = auth.metric("logon:duration_s")
    before, after = _truth("cmp_auth800")["logons"], _truth("cmp_auth200")["logons"]
    assert d["n_before"] == len(before) == 12 and d["n_after"] == len(after) == 12
    true_diff = np.median([lg["duration_s"] for lg in after]) - np.median([lg["duration_s"] for lg in before])
    assert d["verdict"] == "improved"
    assert d["ci_low"] <= true_diff <= d["ci_high"]
    assert d["ci_high"] < 0 and d["p_value"] < 0.001 and d["cliffs_delta"] == pytest.approx(-1.0)


def test_authenticate_change_moves_server_time_by_the_servers_own_measured_amount(auth):
    s = auth.metric("budget:server_s")
    mean_server = {n: sum(r["server_time_ms"] for r in _truth(n)["server_requests"]) / 1000 / len(_truth(n)["logons"])
                   for n in ("cmp_auth800", "cmp_auth200")}
    true_diff = mean_server["cmp_auth200"] - mean_server["cmp_auth800"]          # about -0.6 s
    assert s["verdict"] == "improved"
    assert s["ci_low"] <= true_diff <= s["ci_high"]
    op = auth.resolve("authenticate")
    auth_ms = {n: np.median([r["server_time_ms"] for r in _truth(n)["server_requests"] if r["op"] == "authenticate"])
               for n in ("cmp_auth800", "cmp_auth200")}
    assert op["verdict"] == "improved"
    assert op["ci_low"] <= (auth_ms["cmp_auth200"] - auth_ms["cmp_auth800"]) / 1000 <= op["ci_high"]


def test_authenticate_change_leaves_every_other_category_and_operation_unchanged(auth):
    others = [r for r in auth.metrics if r["family"] == "budget" and r["metric"] != "server_s"]
    assert len(others) == len(BUDGET_COLUMNS) - 1
    assert {r["metric"]: r["verdict"] for r in others if r["verdict"] in MOVED} == {}
    moved_ops = [r["group"] for r in auth.metrics if r["family"] == "server_think" and r["verdict"] in MOVED]
    assert moved_ops == ["giop authenticate"]
    assert [r["metric_id"] for r in auth.metrics if r["family"] == "tcp" and r["verdict"] in MOVED] == []
    assert not auth.warnings, auth.warnings


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_three_percent_loss_to_none_improves_loss_recovery_by_tsharks_resend_waits(analyses):
    c = compare(analyses["cmp_loss3"], analyses["cmp_noloss"])
    drops = len(_truth("cmp_loss3")["impairment_log"]["frames_dropped"])
    assert drops > 0 and len(_truth("cmp_noloss")["impairment_log"]["frames_dropped"]) == 0
    r = c.metric("budget:loss_recovery_s")
    per_logon = {n: _tshark_rto_sum(CMP / f"{n}.pcap") / len(_truth(n)["logons"]) for n in ("cmp_loss3", "cmp_noloss")}
    assert r["verdict"] == "improved"
    assert r["ci_low"] <= per_logon["cmp_noloss"] - per_logon["cmp_loss3"] <= r["ci_high"]
    assert c.metric("tcp:retransmission_rate")["verdict"] == "improved"
    moved = {x["metric"] for x in c.metrics if x["family"] == "budget" and x["verdict"] in MOVED}
    assert moved == {"loss_recovery_s"}
    assert [x["group"] for x in c.metrics if x["family"] == "server_think" and x["verdict"] in MOVED] == []


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_syn_drops_to_none_improve_connect_time_by_tsharks_syn_timeouts_and_nothing_else(analyses):
    c = compare(analyses["cmp_syndrop"], analyses["cmp_client"])
    truth = _truth("cmp_syndrop")
    drops = truth["impairment_log"]["frames_dropped"]
    assert len(drops) == len(truth["logons"]) == 12 and not _truth("cmp_client")["impairment_log"]["frames_dropped"]
    syn_wait = _tshark_rto_sum(CMP / "cmp_syndrop.pcap", " && tcp.flags.syn == 1 && tcp.flags.ack == 0") / 12
    r = c.metric("budget:connect_s")
    assert r["verdict"] == "improved" and r["ci_low"] <= -syn_wait <= r["ci_high"]
    rate = c.metric("tcp:syn_retry_rate")
    assert rate["verdict"] == "improved"
    assert rate["ci_low"] <= -len(drops) / rate["n_before"] <= rate["ci_high"]
    assert {x["metric"] for x in c.metrics if x["family"] == "budget" and x["verdict"] in MOVED} == {"connect_s"}
    assert [x["group"] for x in c.metrics if x["family"] == "server_think" and x["verdict"] in MOVED] == []


# ------------------------------------------------------------------------------------------
# A/A: no significant change
# ------------------------------------------------------------------------------------------

def test_two_runs_of_the_same_settings_report_no_significant_change(analyses):
    c = compare(analyses["cmp_auth200"], analyses["cmp_auth200_rerun"])
    assert c.metric("logon:duration_s")["verdict"] == "no significant change"
    assert [r["metric_id"] for r in c.metrics if r["verdict"] in MOVED] == []
    assert not c.warnings


def test_storm_split_in_halves_by_start_time_reports_no_significant_change(analyses):
    a = analyses["storm"]
    ordered = a.logons.sort("start_ts_ns")
    half = ordered.height // 2
    first = dataclasses.replace(a, logons=ordered.head(half))
    second = dataclasses.replace(a, logons=ordered.tail(ordered.height - half))
    c = compare(first, second)
    assert (c.metric("logon:duration_s")["n_before"], c.metric("logon:duration_s")["n_after"]) == (10, 10)
    assert [r["metric_id"] for r in c.metrics if r["verdict"] in MOVED] == []


# ------------------------------------------------------------------------------------------
# Small samples: wide intervals, weak evidence, no verdict
# ------------------------------------------------------------------------------------------

def test_three_logons_a_side_give_a_wide_interval_and_weak_evidence(analyses, auth):
    b, a = analyses["cmp_auth800"], analyses["cmp_auth200"]
    small = compare(dataclasses.replace(b, logons=b.logons.head(3)), dataclasses.replace(a, logons=a.logons.head(3)))
    d, big = small.metric("logon:duration_s"), auth.metric("logon:duration_s")
    assert d["verdict"] == "weak evidence" and 3 < MIN_SAMPLES
    assert (d["ci_high"] - d["ci_low"]) > (big["ci_high"] - big["ci_low"])
    assert all(r["verdict"] == "weak evidence" for r in small.metrics if r["family"] in ("logon", "budget"))
    assert "evidence is weak" in small.headline()[0]
    assert any(w["check"] == "logon count" for w in small.warnings)


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_lab_dropped_syn_vs_baseline_shows_the_syn_timeout_but_gives_no_verdict_on_one_logon():
    c = compare(LAB / "dropped_syn.pcap", LAB / "baseline.pcap")
    r = c.metric("budget:connect_s")
    syn_rto = _tshark_rto_sum(LAB / "dropped_syn.pcap", " && tcp.flags.syn == 1 && tcp.flags.ack == 0")
    assert 0.9 < syn_rto < 1.5
    assert r["verdict"] == "weak evidence"
    assert r["difference"] == pytest.approx(-syn_rto, abs=0.02)
    assert c.metric("logon:duration_s")["verdict"] == "weak evidence"


# ------------------------------------------------------------------------------------------
# Statistics against independent computations
# ------------------------------------------------------------------------------------------

def test_cliffs_delta_equals_the_pairwise_dominance_count_on_real_durations(analyses):
    b = analyses["cmp_loss3"].logons["duration_s"].to_numpy()
    a = analyses["cmp_noloss"].logons["duration_s"].to_numpy()
    c = compare(analyses["cmp_loss3"], analyses["cmp_noloss"])
    pairwise_delta = (np.sign(a[:, None] - b[None, :])).mean()
    assert c.metric("logon:duration_s")["cliffs_delta"] == pytest.approx(pairwise_delta)
    assert c.metric("logon:duration_s")["before"]["p95"] == pytest.approx(np.percentile(b, 95))


def test_bootstrap_is_deterministic_with_the_fixed_seed_and_moves_with_another(analyses):
    b, a = analyses["cmp_loss3"], analyses["cmp_noloss"]
    one, two = compare(b, a).metric("logon:duration_s"), compare(b, a).metric("logon:duration_s")
    other = compare(b, a, seed=7).metric("logon:duration_s")
    assert (one["ci_low"], one["ci_high"]) == (two["ci_low"], two["ci_high"])
    assert (one["ci_low"], one["ci_high"]) != (other["ci_low"], other["ci_high"])


def test_benjamini_hochberg_adjusted_p_values_keep_the_raw_order_and_never_fall_below_raw(auth):
    rows = sorted((r for r in auth.metrics if r["family"] == "budget"), key=lambda r: r["p_value"])
    assert all(r["p_adjusted"] >= r["p_value"] - 1e-12 for r in rows)
    assert all(x["p_adjusted"] <= y["p_adjusted"] + 1e-12 for x, y in pairwise(rows))


# ------------------------------------------------------------------------------------------
# Analysis directories, profiles, bad input
# ------------------------------------------------------------------------------------------

def test_analysis_directory_compares_exactly_like_its_capture(tmp_path, analyses, auth):
    d = tmp_path / "before"
    analyze(CMP / "cmp_auth800.pcap", out=d)
    marker = json.loads((d / MARKER).read_text())
    assert marker["profile"]["source"] is None and len(marker["profile"]["fingerprint"]) == 16
    c = compare(d, analyses["cmp_auth200"])
    assert c.before.source == "analysis directory" and not c.warnings
    for x, y in zip(c.metrics, auth.metrics, strict=True):
        assert x["metric_id"] == y["metric_id"] and x["verdict"] == y["verdict"]
        for k in ("difference", "ci_low", "ci_high", "p_value"):
            assert x[k] == pytest.approx(y[k], abs=1e-9)
    del marker["profile"]                       # as written before netdiag recorded the profile
    (d / MARKER).write_text(json.dumps(marker))
    old = compare(d, analyses["cmp_auth200"])
    assert [w["check"] for w in old.warnings] == ["profile"] and "unknown" in old.warnings[0]["detail"]


def test_different_profiles_are_refused_with_the_reason_and_compared_only_when_allowed(tmp_path, analyses):
    prof = tmp_path / "site.toml"
    prof.write_text("[thresholds]\nslow_logon_s = 20.0\n")
    d = tmp_path / "after"
    analyze(CMP / "cmp_auth200.pcap", profile=prof, out=d)
    with pytest.raises(CompareError, match="different profiles"):
        compare(analyses["cmp_auth800"], d)
    c = compare(analyses["cmp_auth800"], d, allow_different_profiles=True)
    assert [w["check"] for w in c.warnings] == ["profile"]
    r = _netdiag("compare", CMP / "cmp_auth800.pcap", d)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "different profiles" in r.stderr and "site.toml" in r.stderr


def test_sides_without_logons_are_explained_not_compared():
    # the analysis ran and found nothing to compare: exit 0 with one line (README "Exit codes")
    r = _netdiag("compare", HTTP_ONLY, HTTP_ONLY)
    assert r.returncode == 0 and "Traceback" not in r.stderr and r.stdout == ""
    assert "neither side has any logons" in r.stderr and HTTP_ONLY.name in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _netdiag("compare", CMP / "cmp_auth200.pcap", HTTP_ONLY)
    assert r.returncode == 0 and "the after side has no logons" in r.stderr and "EPJ port" in r.stderr
    r = _netdiag("compare", CMP / "missing.pcap", HTTP_ONLY)
    assert r.returncode == 2 and "missing.pcap" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------
# CLI: terminal, JSON, reports, gate
# ------------------------------------------------------------------------------------------

def test_fail_on_regression_exits_1_only_when_that_metric_regressed(tmp_path, analyses):
    from netdiag.analyze import write_outputs

    fast, slow = tmp_path / "fast", tmp_path / "slow"       # analysis directories: the CLI reads tables only
    write_outputs(analyses["cmp_auth200"], fast)
    write_outputs(analyses["cmp_auth800"], slow)
    worse = _netdiag("compare", fast, slow, "--fail-on-regression", "duration_s")
    assert worse.returncode == 1, worse.stderr
    assert "REGRESSED" in worse.stderr and "logon duration" in worse.stdout
    better = _netdiag("compare", slow, fast, "--fail-on-regression", "duration_s", "--fail-on-regression",
                      "server_s", "--json")
    assert better.returncode == 0, better.stderr
    data = json.loads(better.stdout)
    assert {m["metric_id"]: m["verdict"] for m in data["metrics"]}["budget:server_s"] == "improved"
    unrelated = _netdiag("compare", fast, slow, "--fail-on-regression", "loss_recovery_s")
    assert unrelated.returncode == 0
    unknown = _netdiag("compare", fast, slow, "--fail-on-regression", "no_such_metric")
    assert unknown.returncode == 2 and "no metric 'no_such_metric'" in unknown.stderr


def test_html_and_markdown_reports_carry_the_ecdf_budget_and_thresholds_offline(tmp_path, auth):
    html, md = render_html(auth), render_markdown(auth)
    assert 'data-chart="compare-ecdf" data-marks-expected="2"' in html
    assert 'data-chart="compare-budget"' in html and html.count('class="mark"') >= 2 + 2
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    for text in (html, md):
        assert "Mann-Whitney" in text and "Cliff" in text and "bootstrap" in text
    assert "| server processing |" in md and "improved" in md
    data = json.loads(auth.to_json())
    assert data["thresholds"]["alpha"] == 0.05 and data["thresholds"]["min_samples_per_side"] == MIN_SAMPLES
    assert data["before"]["logons"] == 12 and "10.77." not in json.dumps(data["before"])


# ------------------------------------------------------------------------------------------
# Comparability warnings
# ------------------------------------------------------------------------------------------

def test_capture_that_lost_frames_is_flagged_as_a_possible_cause_of_the_difference():
    truth = json.loads((LAB / "capture_drops.truth.json").read_text())
    assert truth["expected"]["frames_removed_from_file"] > 0
    assert json.loads((LAB / "baseline.truth.json").read_text())["expected"]["frames_removed_from_file"] == 0
    c = compare(LAB / "capture_drops.pcap", LAB / "baseline.pcap")
    loss = next(k for k in c.checks if k["check"] == "capture loss")
    assert loss["status"] == "warning" and "0 of" not in loss["detail"].split(",")[0]
    assert "capture loss" in c.headline()[-1]


def test_logons_hours_apart_and_different_capture_points_are_flagged(analyses):
    from netdiag.analyze import CapturePoint

    b, a = analyses["cmp_auth200"], analyses["cmp_auth200_rerun"]
    six_hours_ns = 6 * 3600 * 10**9
    later = a.logons.with_columns(start_ts_ns=a.logons["start_ts_ns"] + six_hours_ns,
                                  end_ts_ns=a.logons["end_ts_ns"] + six_hours_ns)
    moved = dataclasses.replace(a, logons=later, capture_point=CapturePoint("client", "test", 0.0001, 0.02))
    base = dataclasses.replace(b, capture_point=CapturePoint("server", "test", 0.02, 0.0001))
    c = compare(base, moved)
    flagged = {k["check"]: k["detail"] for k in c.warnings}
    assert set(flagged) == {"time of day", "capture point"}
    assert "6.0 h apart" in flagged["time of day"] and "before server, after client" in flagged["capture point"]


def test_broken_analysis_directory_and_empty_directory_are_named_in_one_line(tmp_path, analyses):
    from netdiag.analyze import write_outputs

    d = tmp_path / "report"
    write_outputs(analyses["cmp_auth200"], d)
    (d / "tables" / "logons.parquet").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    for side, expect in ((d, "tables/logons.parquet is missing"), (empty, "holds neither capture files")):
        with pytest.raises(UsageError, match=expect):
            compare(side, analyses["cmp_auth200"])
    r = _netdiag("compare", d, empty)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert "logons.parquet is missing" in r.stderr
