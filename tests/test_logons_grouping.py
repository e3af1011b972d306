"""Grouping connections into logons: per client process, shared addresses, start and end rules.

Hand-built tables state a timeline (ms); expected logons follow from it.
"""

from __future__ import annotations

import polars as pl
import pytest
from logon_tables import T0, connection, tables, transaction

from netdiag.logons import NoLogonsError, analyze_tables
from netdiag.profile import parse_profile

C, S, APP = "10.0.0.5", "10.0.1.10", "10.0.1.11"


def _logon(conn0: int, cport: int, t: float, think: float = 5.0):
    """One process: bootstrap (resolve -> IOR APP:9100), then authenticate on APP:9100."""
    conns = [connection(conn0, C, cport, S, 2809, t, t + 0.2, t + 0.3, t + 40),
             connection(conn0 + 1, C, cport + 1, APP, 9100, t + 10, t + 10.2, t + 10.3, t + 40 + think)]
    txns = [transaction(conn0, C, S, 2809, "giop", "resolve", t + 1, t + 1, t + 3, t + 3, forward=(APP, 9100)),
            transaction(conn0 + 1, C, APP, 9100, "giop", "authenticate", t + 11, t + 11, t + 11 + think,
                        t + 11 + think)]
    return conns, txns


def test_two_overlapping_logons_from_one_address_are_told_apart_by_their_own_connections():
    a_c, a_t = _logon(1, 50000, 0.0, think=300)
    b_c, b_t = _logon(3, 50010, 5.0, think=50)
    c, t, _ = tables(a_c + b_c, a_t + b_t)
    res = analyze_tables(c, t)
    lg = res.logons.sort("start_ts_ns")
    assert lg.height == 2
    assert lg["conn_ids"].to_list() == [[1, 2], [3, 4]]
    # the first logon waits 300 ms on authenticate, the second 50 ms
    assert lg["server_s"][0] == pytest.approx(0.300 + 0.002, abs=1e-3)
    assert lg["server_s"][1] == pytest.approx(0.050 + 0.002, abs=1e-3)
    # two processes of one address: decided by the IOR referrals, not certain
    assert set(lg["separation_confidence"].to_list()) <= {"high", "medium"}
    assert "medium" in lg["separation_confidence"].to_list()


def test_a_logon_alone_on_its_address_is_separated_with_high_confidence():
    c, t, _ = tables(*_logon(1, 50000, 0.0))
    row = analyze_tables(c, t).logons.row(0, named=True)
    assert row["separation_confidence"] == "high"
    assert row["connections"] == 2 and row["requests"] == 2


def test_dns_question_joins_the_process_that_connected_to_its_answer():
    conns, txns = _logon(1, 50000, 10.0)
    conns.append(connection(9, C, 40000, "10.0.9.9", 53, None, None, None, 8, transport="udp"))
    txns.append(transaction(9, C, "10.0.9.9", 53, "dns", "epj.example", 2, 2, 8, 8, status="NOERROR",
                            detail='{"answers":[["A","10.0.1.10",60]]}'))
    c, t, _ = tables(conns, txns)
    row = analyze_tables(c, t).logons.row(0, named=True)
    assert row["start_ts_ns"] == T0 + 2_000_000 - 50_000   # the query, less half the client-side RTT
    assert row["dns_s"] == pytest.approx(0.006 + 0.0001, abs=1e-6)


def test_end_operation_rule_ends_the_logon_at_the_reply_to_that_operation():
    conns, txns = _logon(1, 50000, 0.0, think=20)
    txns.append(transaction(2, C, APP, 9100, "giop", "getWorklist", 100, 100, 200, 210))
    c, t, _ = tables(conns, txns)
    quiet = analyze_tables(c, t).logons.row(0, named=True)
    prof = parse_profile('[logon]\nend_operation = "^authenticate$"\n')
    rule = analyze_tables(c, t, profile=prof).logons.row(0, named=True)
    assert rule["end_ts_ns"] < quiet["end_ts_ns"]
    assert rule["end_ts_ns"] == T0 + int(31 * 1e6) + 50_000   # authenticate's reply + half the client RTT
    assert rule["outcome"] == "completed"


def test_end_operation_never_answered_is_an_abandoned_or_failed_logon():
    conns, txns = _logon(1, 50000, 0.0)
    txns[1]["status"] = "SYSTEM_EXCEPTION"
    txns[1]["exception_id"] = "IDL:omg.org/CORBA/NO_PERMISSION:1.0"
    c, t, _ = tables(conns, txns)
    prof = parse_profile('[logon]\nend_operation = "getUserContext"\n')
    row = analyze_tables(c, t, profile=prof).logons.row(0, named=True)
    assert row["outcome"] == "failed"
    assert row["exceptions"] == 1


def test_capture_without_server_traffic_says_so_instead_of_an_empty_table():
    c, t, _ = tables([connection(1, C, 50000, "10.9.9.9", 5432, 0, 1, 2, 10)], [])
    res = analyze_tables(c, t)
    assert res.logons.height == 0
    with pytest.raises(NoLogonsError, match="no connection to a naming port .2809. or known EPJ port was seen.*"
                       "1 TCP connection"):
        res.require_logons()


def test_capture_without_a_bootstrap_connection_says_no_logon_start_was_seen():
    conns, txns = _logon(1, 50000, 0.0)
    c, t, _ = tables(conns[1:], txns[1:])          # only the ORB connection on 9100
    res = analyze_tables(c, t)
    with pytest.raises(NoLogonsError, match="no logon start seen"):
        res.require_logons()
    prof = parse_profile('[logon]\nstart = "any"\n')
    assert analyze_tables(c, t, profile=prof).logons.height == 1


def test_profile_servers_limit_what_counts_and_client_groups_name_the_ward():
    conns, txns = _logon(1, 50000, 0.0)
    c, t, _ = tables(conns, txns)
    prof = parse_profile('[[servers]]\naddresses = ["10.0.1.0/24"]\nports = { 2809 = "bootstrap" }\n'
                         '[[client_groups]]\nsubnet = "10.0.0.0/16"\ngroup = "Hospital"\n'
                         '[[client_groups]]\nsubnet = "10.0.0.0/24"\ngroup = "Ward 4"\n')
    row = analyze_tables(c, t, profile=prof).logons.row(0, named=True)
    assert row["client_group"] == "Ward 4"
    other = parse_profile('[[servers]]\naddresses = ["192.168.0.0/16"]\n')
    with pytest.raises(NoLogonsError, match="profile's servers"):
        analyze_tables(c, t, profile=other).require_logons()


def test_population_percentiles_match_numpy_on_the_same_durations():
    import numpy as np

    conns, txns = [], []
    for k in range(7):
        lc, lt = _logon(10 * k + 1, 50000 + 10 * k, 100_000.0 * k, think=10.0 * (k + 1))
        conns += lc
        txns += lt
    c, t, _ = tables(conns, txns)
    res = analyze_tables(c, t)
    d = res.logons["duration_s"].to_numpy()
    overall = res.population["overall"].row(0, named=True)
    for q in (50, 90, 95, 99):
        assert overall[f"p{q}_s"] == pytest.approx(np.percentile(d, q))
    budget = res.population["budget"]
    assert budget.filter(pl.col("category") == "server_s")["all_logons_s"][0] == pytest.approx(
        res.logons["server_s"].sum())
    slow = budget.filter(pl.col("category") == "server_s")["slowest_s"][0]
    assert slow == pytest.approx(res.logons.sort("duration_s")["server_s"][-1])


def test_population_server_think_counts_only_transactions_inside_logons():
    conns, txns = _logon(1, 50000, 0.0, think=20)
    txns.append(transaction(2, C, APP, 9100, "giop", "getWorklist", 100, 100, 200, 210))   # after the end
    c, t, _ = tables(conns, txns)
    res = analyze_tables(c, t, profile=parse_profile('[logon]\nend_operation = "^authenticate$"\n'))
    ops = set(res.population["server_think_per_operation"]["operation"].to_list())
    assert ops == {"resolve", "authenticate"}


def test_empty_capture_tables_say_there_is_no_tcp_at_all():
    from netdiag.schema import CONNECTIONS, TRANSACTIONS

    res = analyze_tables(CONNECTIONS.empty(), TRANSACTIONS.empty())
    with pytest.raises(NoLogonsError, match="no TCP connections"):
        res.require_logons()
