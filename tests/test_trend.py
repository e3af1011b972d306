"""`netdiag trend`: logon time per period and what changed between periods.

Periods are real-peer lab captures analysed by `netdiag analyze` into report directories. Ground
truth: each period's p50/p95 is recomputed here from that directory's tables/logons.parquet with
polars' own quantile (linear interpolation, the rule the report documents), per period and per
ward; the direction and size of the server-time change come from the lab server's own log
(omniORB per-request receive/reply times in the truth files), not from netdiag.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import netdiag
from netdiag.analyze import analyze
from netdiag.trend import trend

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "captures" / "lab"
CMP = ROOT / "captures" / "compare"
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"
NAMES = {"baseline": LAB / "baseline.pcap", "slow_auth": LAB / "slow_auth.pcap", "added_rtt": LAB / "added_rtt.pcap",
         "auth800": CMP / "cmp_auth800.pcap", "auth200": CMP / "cmp_auth200.pcap",
         "auth200_rerun": CMP / "cmp_auth200_rerun.pcap"}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    missing = [p for p in NAMES.values() if not p.exists()]
    if missing:
        pytest.skip(f"captures missing: {missing}")
    base = tmp_path_factory.mktemp("periods")
    out = {}
    for name, cap in NAMES.items():
        out[name] = base / name
        analyze([cap], out=out[name])
    return out


def _complete(logons: pl.DataFrame) -> pl.DataFrame:
    """The logons the figures use (docs/logons.md): those the capture did not cut (outcome != incomplete)."""
    return logons.filter(pl.col("outcome") != "incomplete")


def _quantiles(logons: pl.DataFrame) -> tuple[float, float]:
    d = _complete(logons)["duration_s"]
    return d.quantile(0.5, interpolation="linear"), d.quantile(0.95, interpolation="linear")


def _server_s_per_logon(truth: Path) -> float:
    """The lab server's own time per logon, from its log (sum of per-request server time / logons)."""
    t = json.loads(truth.read_text())
    return sum(r["server_time_ms"] for r in t["server_requests"]) / 1000.0 / len(t["logons"])


def test_each_period_p50_p95_equal_the_logons_table_quantiles(dirs) -> None:
    t = trend([dirs["baseline"], dirs["slow_auth"], dirs["added_rtt"]])
    assert [p.label for p in t.periods] == ["baseline", "slow_auth", "added_rtt"]
    for p, name in zip(t.periods, ("baseline", "slow_auth", "added_rtt"), strict=True):
        lg = _complete(pl.read_parquet(dirs[name] / "tables" / "logons.parquet"))
        p50, p95 = _quantiles(lg)
        assert p.logons == lg.height == len(json.loads(NAMES[name].with_suffix(".truth.json").read_text())["logons"])
        assert p.p50_s == pytest.approx(p50, abs=1e-12) and p.p95_s == pytest.approx(p95, abs=1e-12)
        for c, v in p.budget_per_logon_s.items():          # mean seconds per logon per category
            assert v == pytest.approx(float(lg[c].mean()), abs=1e-12)
        assert sum(p.budget_per_logon_s.values()) == pytest.approx(float(lg["duration_s"].mean()), abs=1e-9)
    rows = t.table()
    assert rows["p50_s"].to_list() == [p.p50_s for p in t.periods]


def test_slow_auth_after_baseline_is_slower_and_names_server_time(dirs) -> None:
    t = trend([dirs["baseline"], dirs["slow_auth"]])
    s = t.step_of("slow_auth")
    # 2 and 1 logons: compare gives no verdict below 8 a side, but the direction and the category are shown
    assert s.verdict == "weak evidence" and s.direction == "slower"
    big = s.largest_budget_change
    assert big["category"] == "server_s"
    truth = _server_s_per_logon(LAB / "slow_auth.truth.json") - _server_s_per_logon(LAB / "baseline.truth.json")
    assert big["change_per_logon_s"] == pytest.approx(truth, rel=0.05)
    assert "weak evidence, slower" in s.words() and "server" in s.words()


def test_auth_800_to_200_improves_then_regresses_with_server_time_named(dirs) -> None:
    # 12 logons a period: enough for compare's verdicts
    t = trend([dirs["auth800"], dirs["auth200"], dirs["auth200_rerun"]], labels=["mon", "tue", "wed"])
    tue, wed = t.step_of("tue"), t.step_of("wed")
    assert t.step_of("mon") is None
    assert tue.verdict == "improved"
    moved = {r["metric"]: r for r in tue.budget_moved}
    assert moved["server_s"]["verdict"] == "improved"
    truth = _server_s_per_logon(CMP / "cmp_auth200.truth.json") - _server_s_per_logon(CMP / "cmp_auth800.truth.json")
    assert moved["server_s"]["ci_low"] <= truth <= moved["server_s"]["ci_high"]
    assert wed.verdict == "no significant change"            # the same settings run twice (A/A)
    assert not [r for r in wed.budget_moved if r["metric"] == "server_s"]
    back = trend([dirs["auth200"], dirs["auth800"]])
    step = back.steps[1]
    assert step.verdict == "regressed" and "server_s" in {r["metric"] for r in step.budget_moved}
    # the numbers are compare's own, unchanged
    direct = netdiag.compare(dirs["auth200"], dirs["auth800"])
    assert step.duration["difference"] == direct.metric("logon:duration_s")["difference"]
    assert step.duration["ci_low"] == direct.metric("logon:duration_s")["ci_low"]


def test_wards_come_from_the_profile(tmp_path) -> None:
    prof = tmp_path / "site.toml"
    prof.write_text('[[client_groups]]\nsubnet = "10.77.1.0/24"\ngroup = "Ward 7"\n\n'
                    '[[client_groups]]\nsubnet = "198.51.100.0/24"\ngroup = "Clinic B"\n')
    periods = []
    for name in ("baseline", "slow_auth"):            # each period: a lab capture and the sample, two wards
        out = tmp_path / name
        analyze([NAMES[name], SAMPLE], prof, out=out)
        periods.append(out)
    t = trend(periods, prof)
    for p, d in zip(t.periods, periods, strict=True):
        lg = pl.read_parquet(d / "tables" / "logons.parquet")
        assert {w["ward"] for w in p.wards} == {"Ward 7", "Clinic B"}
        for w in p.wards:
            part = _complete(lg).filter(pl.col("client_group") == w["ward"])
            p50, p95 = _quantiles(part)
            assert w["logons"] == part.height
            assert w["p50_s"] == pytest.approx(p50, abs=1e-12) and w["p95_s"] == pytest.approx(p95, abs=1e-12)
    wt = t.ward_table()
    assert wt.height == 4 and set(wt["ward"].to_list()) == {"Ward 7", "Clinic B"}
    # compare's per-client-group rows feed the ward verdicts (two wards on both sides)
    assert {r["ward"] for r in t.steps[1].to_dict()["wards"]} == {"Ward 7", "Clinic B"}


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (wireshark-common) not installed")
@pytest.mark.parametrize("split_by,shift_s", [("day", 86400), ("hour", 3600)])
def test_split_by_cuts_one_analysis_into_the_same_periods(dirs, tmp_path, split_by, shift_s) -> None:
    # one capture set of two days (or hours): the after capture's timestamps moved on by editcap
    later = tmp_path / "auth200-later.pcap"
    subprocess.run(["editcap", "-t", str(shift_s), str(NAMES["auth200"]), str(later)], check=True, timeout=60)
    out = tmp_path / "both"
    analyze([NAMES["auth800"], later], out=out)
    t = trend([out], split_by=split_by)
    assert len(t.periods) == 2
    assert t.periods[0].label.startswith("2026-11-26") and t.split_by == split_by
    separate = trend([dirs["auth800"], dirs["auth200"]])
    for cut, whole in zip(t.periods, separate.periods, strict=True):
        assert cut.logons == whole.logons == 12
        assert cut.p50_s == pytest.approx(whole.p50_s, abs=1e-9)
        assert cut.p95_s == pytest.approx(whole.p95_s, abs=1e-9)
    assert t.steps[1].verdict == "improved" and "server_s" in {r["metric"] for r in t.steps[1].budget_moved}


def _netdiag(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *args], capture_output=True, text=True,
                          timeout=180, env=env)


def test_cli_json_table_and_bad_input(dirs, tmp_path) -> None:
    r = _netdiag("trend", str(dirs["auth800"]), str(dirs["auth200"]), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    lg = pl.read_parquet(dirs["auth200"] / "tables" / "logons.parquet")
    assert d["periods"][1]["p95_s"] == pytest.approx(_quantiles(lg)[1], abs=1e-12)
    assert d["steps"][0] is None and d["steps"][1]["verdict"] == "improved"
    assert "server_s" in [b["category"] for b in d["steps"][1]["budget_moved"]]
    r = _netdiag("trend", str(dirs["auth800"]), str(dirs["auth200"]))         # piped: the whole table
    assert r.returncode == 0 and "improved" in r.stdout and "auth800" in r.stdout and "…" not in r.stdout
    for args, words in ((["trend", str(dirs["auth800"])], "one period gives no trend"),
                        (["trend", str(dirs["auth800"]), "--split-by", "week"], "choose hour or day"),
                        (["trend", str(dirs["auth800"]), str(tmp_path / "nope")], "no such file")):
        r = _netdiag(*args)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_api_name_is_the_function_after_the_submodule_is_imported() -> None:
    import importlib

    importlib.import_module("netdiag.trend")
    assert callable(netdiag.trend) and netdiag.trend is trend


def test_a_period_without_logons_is_shown_and_skipped(dirs) -> None:
    http = ROOT / "captures" / "crafted" / "real_loopback_http.pcap"
    t = trend([dirs["baseline"], http, dirs["slow_auth"]])
    assert [p.logons for p in t.periods] == [2, 0, 1]
    assert t.steps[1] is None and t.steps[2].before == "baseline" and t.steps[2].after == "slow_auth"
    reason = t.periods[1].side.no_logons_reason.removeprefix("no logons: ")   # the analysis' own words
    assert "5 TCP connection(s)" in reason          # tshark: 5 TCP conversations in that capture
    assert any(f"real_loopback_http has no logons ({reason})" in w for w in t.warnings)
    row = t.table().row(1, named=True)
    assert row["p50_s"] is None and row["vs_previous"] == f"no logons: {reason}"
    r = _netdiag("trend", str(http), "--split-by", "day")      # the analysis ran: exit 0, said in words
    assert r.returncode == 0 and "all has no logons" in r.stdout, r.stderr


def test_terminal_table_fits_80_columns_and_keeps_period_names_whole(dirs) -> None:
    import io

    from rich.console import Console

    from netdiag.commands.trend import DEFAULT
    from netdiag.output import print_table

    t = trend([dirs["auth800"], dirs["auth200"], dirs["auth200_rerun"]])
    for width in (80, 100, 160):
        buf = io.StringIO()
        print_table(t.table(), columns=DEFAULT, title="t",
                    console=Console(file=buf, width=width, force_terminal=True, color_system=None))
        lines = buf.getvalue().splitlines()
        assert max(len(line) for line in lines) <= width
        body = [line for line in lines if line.startswith("│")]
        assert [line.split("│")[1].strip() for line in body] == ["auth800", "auth200", "auth200_rerun"]
        assert "improved" in body[1]       # the verdict column is shown, cut before the period names


@pytest.mark.skipif(shutil.which("editcap") is None or shutil.which("tshark") is None,
                    reason="editcap/tshark (wireshark) not installed")
def test_logons_cut_by_the_capture_are_counted_but_left_out_of_the_figures(dirs, tmp_path) -> None:
    cut = tmp_path / "auth200-cut.pcap"          # the capture stops in the middle of the 11th logon
    subprocess.run(["editcap", "-r", str(NAMES["auth200"]), str(cut), "1-900"], check=True, timeout=60)
    last_ns = int(subprocess.run(["tshark", "-r", str(cut), "-T", "fields", "-e", "frame.time_epoch"],
                                 capture_output=True, text=True, check=True, timeout=60).stdout.split()[-1]
                  .replace(".", "").ljust(19, "0")[:19])
    truth = json.loads((CMP / "cmp_auth200.truth.json").read_text())["logons"]
    whole = sum(1 for lg in truth if lg["end_ts_ns"] <= last_ns)
    cut_short = sum(1 for lg in truth if lg["start_ts_ns"] <= last_ns < lg["end_ts_ns"])
    t = trend([dirs["auth800"], cut])
    p = t.periods[1]
    assert (p.logons, p.incomplete) == (whole, cut_short) == (10, 1)
    lg = _complete(netdiag.logons([cut]))
    assert p.p50_s == pytest.approx(_quantiles(lg)[0], abs=1e-12) and p.p95_s == pytest.approx(_quantiles(lg)[1], abs=1e-12)
    assert "1 more cut by the start or end of a capture" in t.headline()[0]
    assert t.steps[1].duration["n_after"] == whole    # compare leaves it out too


def test_cli_html_is_written_safely_and_an_unwritable_path_fails_before_the_work(dirs, tmp_path) -> None:
    page = tmp_path / "week.html"
    r = _netdiag("trend", str(dirs["auth800"]), str(dirs["auth200"]), "--html", str(page))
    assert r.returncode == 0, r.stderr
    assert page.read_text().startswith("<!DOCTYPE html>") and "trend-lines" in page.read_text()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _netdiag("trend", str(dirs["auth800"]), str(dirs["auth200"]), "--html", str(blocker / "week.html"))
    assert r.returncode == 2 and "cannot write here" in r.stderr and "Traceback" not in r.stderr
