"""The grouping loop's memo of "not ended yet" (netdiag.logons.ends.end_horizon) never changes a logon.

The loop asks every live chain of an address whether its logon has ended, at each new connection
of that address, and skips end_of while nothing end_of compares with lies between the last ask and
now. These tests group real captures (the lab's logons from real omniORB/HTTP peers, and copies of
its logon storm whose addresses each hold many chains) twice, once with the memo and once with
every ask recomputed, and require the same logons, members and counts. On those captures no
decision depends on the horizon (with an infinite one, their logons stay the same), so a
hand-built timeline makes one that does: a logon that ends while another process of its address
runs, and must then not take that process's next connection.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from logon_tables import connection, tables, transaction
from polars.testing import assert_frame_equal

from netdiag.logons import analyze_tables
from netdiag.logons.resends import delivered_answers
from netdiag.pipeline import run

ROOT = Path(__file__).resolve().parent.parent
LAB = sorted((ROOT / "captures" / "lab").glob("*.pcap"))
grouping = importlib.import_module("netdiag.logons.grouping")
ends = importlib.import_module("netdiag.logons.ends")


def _group_both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Group `path` with and without the memo, assert the same result; (asks the memo answered, end_of calls)."""
    a = run([path])
    tx = delivered_answers(a.transactions, a.segments)
    calls = {"end_of": 0}
    real_end_of = ends.end_of

    def counted(*args, **kw):  # noqa: ANN002, ANN003, ANN202 - end_of's own signature
        calls["end_of"] += 1
        return real_end_of(*args, **kw)

    monkeypatch.setattr(grouping, "end_of", counted)
    with_memo = grouping.group_logons(a.connections, tx, a.profile)
    memo_calls = calls["end_of"]
    # a horizon equal to the ask itself: the memo never answers, every ask runs end_of
    monkeypatch.setattr(grouping, "end_horizon", lambda ch, txs, profile, until: until)
    calls["end_of"] = 0
    without = grouping.group_logons(a.connections, tx, a.profile)
    monkeypatch.undo()
    assert_frame_equal(with_memo.logons, without.logons)
    assert_frame_equal(with_memo.members, without.members)
    assert with_memo.not_logons == without.not_logons
    assert (with_memo.orphans, with_memo.relevant_connections, with_memo.unassigned_requests,
            with_memo.unassigned_dns) == (without.orphans, without.relevant_connections,
                                          without.unassigned_requests, without.unassigned_dns)
    return calls["end_of"] - memo_calls, calls["end_of"]


@pytest.mark.parametrize("path", LAB, ids=lambda p: p.stem)
def test_memo_changes_no_logon_of_a_lab_capture(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _group_both_ways(path, monkeypatch)


def test_memo_changes_no_logon_of_the_storm_copies_and_answers_most_asks(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "storm.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "storm_copies.py"), "--packets", "40000",
                    "--shift-s", "0.3", "--out", str(path)], check=True, capture_output=True)
    saved, total = _group_both_ways(path, monkeypatch)
    # not vacuous: on a storm the memo answers most asks (76 % on 300 k packets when written)
    assert saved > total // 2, (saved, total)


def test_a_logon_that_ended_while_the_memo_held_does_not_take_the_next_connection() -> None:
    """Address C runs two processes. A logs on (resolve, authenticate: last answer at 5.1 s) and keeps
    its connections open; B starts at 8 s, when A has been quiet only 2.9 s (A not ended yet), and
    waits from 9.5 s to 23 s for getWorklist. A connection to another EPJ server at 22 s, with no
    referral, belongs to the one logon still in progress: B. (A ended at 5.1 s by the 5 s quiet
    rule; a memo that kept A's 8 s "not ended" would make A, the only idle one, take it.)"""
    c_ip, ns_ip, app, app2 = "10.0.0.5", "10.0.1.10", "10.0.1.11", "10.0.1.12"
    conns = [connection(1, c_ip, 50000, ns_ip, 2809, 0, 0.2, 0.3, 40_000),        # A: bootstrap
             connection(2, c_ip, 50001, app, 9100, 4000, 4000.2, 4000.3, 60_000),  # A: application server
             connection(3, c_ip, 50010, ns_ip, 2809, 8000, 8000.2, 8000.3, 40_000),  # B: bootstrap
             connection(4, c_ip, 50011, app, 9100, 9000, 9000.2, 9000.3, 60_000),  # B: application server
             connection(5, c_ip, 50020, app2, 9200, 22_000, 22_000.2, 22_000.3, 60_000)]
    txns = [transaction(1, c_ip, ns_ip, 2809, "giop", "resolve", 1000, 1000, 3000, 3000, forward=(app, 9100)),
            transaction(2, c_ip, app, 9100, "giop", "authenticate", 5000, 5000, 5100, 5100),
            transaction(3, c_ip, ns_ip, 2809, "giop", "resolve", 8500, 8500, 8700, 8700, forward=(app, 9100)),
            transaction(4, c_ip, app, 9100, "giop", "getWorklist", 9500, 9500, 23_000, 23_000),
            transaction(5, c_ip, app2, 9200, "giop", "getPatient", 22_500, 22_500, 22_600, 22_600)]
    c, t, _ = tables(conns, txns)
    lg = analyze_tables(c, t).logons.sort("start_ts_ns")
    assert lg["conn_ids"].to_list() == [[1, 2], [3, 4, 5]]
    assert lg["separation_confidence"][1] == "high"
