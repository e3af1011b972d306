"""Grouping stays near-linear when one client address opens thousands of connections.

A SYN flood or a client retrying a dead naming service from one address puts every connection
into one chain; grouping once rescanned the whole chain for every later connection (20 k SYNs
from one address: over 5 minutes). The timeline is hand-built: two bursts of unanswered SYNs to
the naming port, 5 us apart, separated by two minutes of silence: two processes (two logons),
each holding exactly its own burst.
"""

from __future__ import annotations

import time

from logon_tables import connection, tables

from netdiag.logons import analyze_tables

C, S = "10.0.0.5", "10.0.1.10"
N = 8000   # per burst; the quadratic scan took ~1 min on 2 x 8000 (the bound below leaves 10x headroom)


def test_two_bursts_of_unanswered_syns_from_one_address_group_in_near_linear_time():
    rows = []
    for burst, t0 in enumerate((0.0, 120_000.0)):
        for i in range(N):
            cid = burst * N + i + 1
            t = t0 + i * 0.005
            rows.append(connection(cid, C, 1024 + i, S, 2809, t, None, None, t, state="S0"))
    conns, txns, _ = tables(rows, [])
    t_start = time.perf_counter()
    res = analyze_tables(conns, txns)
    elapsed = time.perf_counter() - t_start
    lg = res.logons.sort("start_ts_ns")
    assert lg.height == 2
    assert lg["conn_ids"].to_list() == [list(range(1, N + 1)), list(range(N + 1, 2 * N + 1))]
    assert elapsed < 6.0, f"grouping {2 * N} connections of one address took {elapsed:.1f} s"
