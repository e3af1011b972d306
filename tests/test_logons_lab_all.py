"""Every lab scenario against the client's own log: logon count, each logon's duration, the dominant cause.

For EVERY captures/lab/*.truth.json:

- the logon count equals the number of logons the client logged (`expected.logons`; of those,
  `expected.logons_incomplete` were cut by the capture), and the sessions that are not logons
  (a name-service tool run) are counted apart (`expected.not_logons`);
- each logon's duration is within 5 ms or 5 % of the client's own log (`logons[].start_ts_ns` /
  `end_ts_ns`, taken by the client process itself);
- where the scenario injects a wait (`expected.dominant_cause`, a budget category set in
  captures/lab/scenarios.py), netdiag's dominant cause of each affected logon falls in that
  category, and where the scenario states the injected seconds (`expected.dominant_seconds`), the
  dominant cause's seconds are within 5 % or 5 ms of them.

Our logons and the client's are paired by the least total difference of start and end (several
client processes behind one address start within a few ms of each other, so start order alone
does not say which is which). Scenarios that other branches are fixing are strict xfails here,
so the lead flips each one when that branch is merged.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import polars as pl
import pytest

LAB = Path(__file__).resolve().parents[1] / "captures" / "lab"
NAMES = sorted(p.name.removesuffix(".truth.json") for p in LAB.glob("*.truth.json"))
MS = 1_000_000

# (scenario, check) -> why it fails today and which branch fixes it
XFAIL: dict[tuple[str, str], str] = {}


def _params(check: str, names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=XFAIL[(n, check)]))
            if (n, check) in XFAIL else n for n in names]


@functools.cache
def _truth(name: str) -> dict:
    return json.loads((LAB / f"{name}.truth.json").read_text())


@functools.cache
def _analysis(name: str):
    from netdiag.logons import analyze_logons

    pcap = LAB / _truth(name).get("capture", f"{name}.pcap")
    if not pcap.exists():
        pytest.skip(f"lab capture {pcap.name} not generated")
    return analyze_logons(pcap)


def _tol_ns(expected_ns: float) -> float:
    return max(5 * MS, 0.05 * expected_ns)


@functools.cache
def _pairs(name: str) -> list[tuple[dict, dict]]:
    """(our logon row, the client's logon record), paired by least total |start| + |end| difference."""
    from scipy.optimize import linear_sum_assignment

    ours = _analysis(name).logons.sort("start_ts_ns").to_dicts()
    theirs = sorted(_truth(name)["logons"], key=lambda x: x["start_ts_ns"])
    assert len(ours) == len(theirs), f"{len(ours)} logons found, the client logged {len(theirs)}"
    if not ours:        # a scenario without logons (tcp_stalls_other_port): nothing to pair
        return []
    cost = [[abs(o["start_ts_ns"] - t["start_ts_ns"]) + abs(o["end_ts_ns"] - t["end_ts_ns"]) for t in theirs]
            for o in ours]
    rows, cols = linear_sum_assignment(cost)
    return [(ours[i], theirs[j]) for i, j in zip(rows, cols, strict=True)]


@pytest.mark.parametrize("name", _params("count", NAMES))
def test_logon_count_equals_the_clients_logons_and_tool_runs_are_counted_apart(name):
    exp = _truth(name)["expected"]
    a = _analysis(name)
    assert a.logons.height == exp["logons"], a.notes
    assert int((a.logons["outcome"] == "incomplete").sum()) == exp.get("logons_incomplete", 0)
    assert a.not_logons.height == exp.get("not_logons", 0)
    # the logons the client says went well are the ones netdiag calls completed
    assert int((a.logons["outcome"] == "completed").sum()) == exp["logons_ok"]


@pytest.mark.parametrize("name", _params("duration", NAMES))
def test_each_logon_lasts_what_the_client_logged_within_5ms_or_5_percent(name):
    for row, log in _pairs(name):
        truth_ns = log["end_ts_ns"] - log["start_ts_ns"]
        ours_ns = row["end_ts_ns"] - row["start_ts_ns"]
        assert abs(ours_ns - truth_ns) <= _tol_ns(truth_ns), (
            f"logon {row['logon_id']}: {ours_ns / 1e9:.4f} s, the client logged {truth_ns / 1e9:.4f} s "
            f"(its logon {log['logon']})")


def _dominant(name: str, row: dict) -> tuple[str | None, float]:
    """(budget category the logon's dominant cause won most time in, that cause's seconds).

    A server_think cause is per operation (one finding row per operation): its seconds are those
    of the operation with the most server time in the logon. Other causes: every second the
    intervals of that cause won in the logon.
    """
    a = _analysis(name)
    cause = row["dominant_cause"]
    if cause is None:
        return None, 0.0
    iv = a.intervals.filter((pl.col("logon_idx") == row["logon_id"] - 1) & (pl.col("cause") == cause))
    by_cat = iv.group_by("category").agg(pl.col("won_ns").sum()).sort("won_ns", descending=True)
    category = by_cat["category"][0] if by_cat.height else None
    if cause == "server_think":
        ops = a.server_seconds_by_operation().filter(pl.col("logon_id") == row["logon_id"])
        return category, float(ops["server_s"].max()) if ops.height else 0.0
    return category, float(iv["won_ns"].sum()) / 1e9


CAUSE_NAMES = [n for n in NAMES if _truth(n)["expected"].get("dominant_cause")]


@pytest.mark.parametrize("name", _params("cause", CAUSE_NAMES))
def test_dominant_cause_is_the_injected_one_with_the_injected_seconds(name):
    exp = _truth(name)["expected"]
    affected = exp.get("dominant_logons")
    checked = 0
    for row, log in _pairs(name):
        if affected is not None and log["logon"] not in affected:
            continue
        category, seconds = _dominant(name, row)
        assert category == exp["dominant_cause"], (
            f"logon {row['logon_id']}: dominant cause {row['dominant_cause']} ({category}), "
            f"expected {exp['dominant_cause']}")
        if exp.get("dominant_seconds") is not None:
            want = float(exp["dominant_seconds"])
            assert abs(seconds - want) <= max(0.005, 0.05 * want), (
                f"logon {row['logon_id']}: {row['dominant_cause']} {seconds:.4f} s, injected {want} s")
        checked += 1
    assert checked > 0
