"""The wait budget on small, hand-built tables: exact sums, precedence, overlap, capture point.

The tables are built from a timeline stated in the test (what the client, the network and the
server did, in ms), so the expected seconds come from that timeline, not from netdiag.
"""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest
from logon_tables import connection, segment, tables, transaction

from netdiag.logons import analyze_tables
from netdiag.logons.budget import budget_seconds
from netdiag.schema import BUDGET_COLUMNS

C, S = "10.0.0.5", "10.0.1.10"


def _one_logon(conns, txns, segs=None):
    c, t, s = tables(conns, txns, segs)
    a = analyze_tables(c, t, s)
    assert a.logons.height == 1, a.no_logons_reason
    return a, a.logons.row(0, named=True)


def _left_to_right_sum(row: dict) -> float:
    total = 0.0
    for col in BUDGET_COLUMNS:
        total += row[col]
    return total


def _capture_view(d_c: float, d_s: float):
    """One logon seen at a point d_c ms from the client and d_s ms from the server (one way).

    True timeline (absolute ms): the client sends SYN at -50 + ..., the server thinks 800 ms on
    authenticate and 10 ms on getUserContext; the client takes 10 ms after connect() and 100 ms
    after the first reply. Connect: SYN sent at 0, SYN/ACK back at 2*(d_c+d_s).
    """
    rtt = 2 * (d_c + d_s)
    syn_sent = 0.0
    synack_at_client = syn_sent + rtt
    req1_sent = synack_at_client + 10            # client's own 10 ms
    rsp1_sent = req1_sent + d_c + d_s + 800      # server's own 800 ms
    rsp1_at_client = rsp1_sent + d_s + d_c
    req2_sent = rsp1_at_client + 100             # client's own 100 ms
    rsp2_sent = req2_sent + d_c + d_s + 10       # server's own 10 ms
    rsp2_at_client = rsp2_sent + d_s + d_c
    seen_c = lambda t: t + d_c   # noqa: E731 - client-originated packet passing the capture point
    seen_s = lambda t: t + d_s   # noqa: E731 - server-originated packet passing the capture point
    synack_sent = syn_sent + d_c + d_s
    conns = [connection(1, C, 50001, S, 9100, seen_c(syn_sent), seen_s(synack_sent), seen_c(synack_at_client),
                        seen_s(rsp2_sent) + 5)]
    txns = [transaction(1, C, S, 9100, "giop", "authenticate", seen_c(req1_sent), seen_c(req1_sent),
                        seen_s(rsp1_sent), seen_s(rsp1_sent)),
            transaction(1, C, S, 9100, "giop", "getUserContext", seen_c(req2_sent), seen_c(req2_sent),
                        seen_s(rsp2_sent), seen_s(rsp2_sent))]
    # a bootstrap connection is what starts a logon: make this one the naming port
    conns[0]["server_port"] = 2809
    for t in txns:
        t["server_port"] = 2809
    return conns, txns, rsp2_at_client - syn_sent


@pytest.mark.parametrize("d_c,d_s", [(0.0, 20.0), (20.0, 0.0), (10.0, 10.0)],
                         ids=["client_side_capture", "server_side_capture", "middle_capture"])
def test_server_and_client_time_mean_the_endpoints_own_time_wherever_the_capture_sits(d_c, d_s):
    conns, txns, true_duration_ms = _capture_view(d_c, d_s)
    _, row = _one_logon(conns, txns)
    assert row["duration_s"] == pytest.approx(true_duration_ms / 1000, abs=1e-9)
    assert row["server_s"] == pytest.approx(0.810, abs=1e-9)
    assert row["client_s"] == pytest.approx(0.110, abs=1e-9)
    # round trips: one per application turn (2 turns) at the full RTT of 40 ms
    assert row["network_rtt_s"] == pytest.approx(2 * 0.040, abs=1e-9)
    assert row["connect_s"] == pytest.approx(0.040, abs=1e-9)
    assert row["unexplained_s"] == pytest.approx(0.0, abs=1e-12)


def test_budget_columns_sum_exactly_to_duration_on_random_timelines():
    rng = random.Random(5)
    for _ in range(30):
        t = 0.0
        conns, txns = [], []
        conns.append(connection(1, C, 50001, S, 2809, 0.0, 0.3, 0.31, 10_000, rtt_ss_ms=0.3, rtt_cs_ms=0.01))
        for k in range(rng.randint(1, 12)):
            t += rng.uniform(0.001, 50.0) + rng.random() / 7
            q1 = t + rng.uniform(0, 3.3)
            r0 = q1 + rng.uniform(0, 900.0) / 3
            r1 = r0 + rng.uniform(0, 30.0)
            # distinct operations: a process sending its first operations again after a pause is
            # its next logon (grouping), and this test is about one logon's budget
            txns.append(transaction(1, C, S, 2809, "giop", f"op{k}", t, q1, r0, r1))
            t = r1 if rng.random() < 0.7 else t   # some requests overlap the next one
        _, row = _one_logon(conns, txns)
        assert _left_to_right_sum(row) == row["duration_s"]
        assert all(row[c] >= -1e-12 for c in BUDGET_COLUMNS)


def test_budget_seconds_last_column_absorbs_float_rounding():
    rng = np.random.default_rng(7)
    cat_ns = rng.integers(0, 10**9, size=(500, len(BUDGET_COLUMNS)))
    duration_ns = cat_ns.sum(axis=1)
    secs, duration_s = budget_seconds(cat_ns, duration_ns)
    for i in range(len(duration_s)):
        total = 0.0
        for v in secs[i]:
            total += float(v)
        assert total == duration_s[i]
    assert np.allclose(secs[:, -1], cat_ns[:, -1] / 1e9, atol=1e-12)
    assert (secs >= 0).all()


def test_overlapping_connections_are_counted_once():
    # two connections waiting on the server at the same time: 500 ms + 500 ms overlapping by 300 ms
    conns = [connection(1, C, 50001, S, 2809, 0, 0, 0, 2000, rtt_ss_ms=0, rtt_cs_ms=0),
             connection(2, C, 50002, S, 9100, 1, 1, 1, 2000, rtt_ss_ms=0, rtt_cs_ms=0)]
    txns = [transaction(1, C, S, 2809, "giop", "resolve", 10, 10, 510, 510, forward=(S, 9100)),
            transaction(2, C, S, 9100, "giop", "authenticate", 210, 210, 710, 710)]
    _, row = _one_logon(conns, txns)
    assert row["server_s"] == pytest.approx(0.700, abs=1e-9)        # 10..710, not 1.0
    assert row["duration_s"] == pytest.approx(0.710, abs=1e-9)
    assert _left_to_right_sum(row) == row["duration_s"]


def test_waiting_on_a_resend_beats_response_transfer():
    # the reply's second segment is lost downstream and resent 300 ms later (frame 9 repeats frame 7)
    conns = [connection(1, C, 50001, S, 2809, 0, 0, 0, 2000, rtt_ss_ms=0, rtt_cs_ms=0, retx=1)]
    txns = [transaction(1, C, S, 2809, "giop", "getWorklist", 10, 10, 20, 320)]
    segs = [segment(5, 10, 1, 0, payload=100), segment(6, 20, 1, 1, payload=1448),
            segment(7, 20.1, 1, 1, payload=1448), segment(8, 25, 1, 0),
            segment(9, 320, 1, 1, payload=1448, retransmission=True, rto_s=0.2999, rto_frame=7)]
    _, row = _one_logon(conns, txns, segs)
    assert row["loss_recovery_s"] == pytest.approx(0.2999, abs=1e-9)
    assert row["response_transfer_s"] == pytest.approx(0.300 - 0.2999, abs=1e-9)
    assert row["retransmissions"] == 1


def test_nagle_stall_is_data_then_delayed_bare_ack_then_held_segment():
    # request in two writes: 1448 bytes go out, the 100-byte tail waits for the server's 200 ms
    # delayed ACK and leaves right after it
    conns = [connection(1, C, 50001, S, 2809, 0, 0, 0, 2000, rtt_ss_ms=0.1, rtt_cs_ms=0.1)]
    txns = [transaction(1, C, S, 2809, "giop", "authenticate", 10, 210.2, 215, 215)]
    segs = [segment(5, 10, 1, 0, payload=1448), segment(6, 210, 1, 1, ack_rtt_s=0.200, acks_frame=5),
            segment(7, 210.2, 1, 0, payload=100), segment(8, 215, 1, 1, payload=300)]
    a, row = _one_logon(conns, txns, segs)
    assert row["nagle_delayed_ack_s"] == pytest.approx(0.2002, abs=1e-6)
    assert row["dominant_cause"] == "nagle_delayed_ack"
    assert set(row["evidence_frames"]) >= {5, 7}
    f = a.findings.filter(pl.col("cause") == "nagle_delayed_ack").row(0, named=True)
    assert f["severity"] == "warning" and f["wireshark_filter"].startswith("frame.number in {")


def test_zero_window_until_the_reader_opens_its_window_is_flow_control():
    conns = [connection(1, C, 50001, S, 2809, 0, 0, 0, 3000, rtt_ss_ms=0, rtt_cs_ms=0)]
    txns = [transaction(1, C, S, 2809, "giop", "fetchPatientList", 10, 10, 20, 1020)]
    segs = [segment(5, 10, 1, 0, payload=100), segment(6, 20, 1, 1, payload=1448),
            segment(7, 21, 1, 0, window=0, zero_window=True),
            segment(8, 1000, 1, 0, window=65535, window_update=True), segment(9, 1020, 1, 1, payload=1000)]
    _, row = _one_logon(conns, txns, segs)
    assert row["flow_control_s"] == pytest.approx(0.979, abs=1e-9)
    assert row["dominant_cause"] == "zero_window"


def test_budget_seconds_never_negative_when_nothing_is_unexplained():
    rng = np.random.default_rng(11)
    cat_ns = rng.integers(0, 10**9, size=(5000, len(BUDGET_COLUMNS)))
    cat_ns[:, -1] = 0
    secs, duration_s = budget_seconds(cat_ns, cat_ns.sum(axis=1))
    assert (secs >= 0).all() and (secs[:, -1] < 1e-12).all()   # rounding only, never below 0
    for i in range(0, 5000, 50):
        total = 0.0
        for v in secs[i]:
            total += float(v)
        assert total == duration_s[i]


# One logon of the 300k-packet synthetic capture (bench/gen_capture.py --packets 300000, seed 1):
# small connect/transfer/server columns, then 8.2 s of client time, nothing unexplained. The
# columns before client_s add up to 4.669127 s (a float in [4, 8) whose last bit is finer than
# the spacing of floats in [8, 16)), so 4.669127 + x is always a tie that rounds to an even
# float, and the duration 12.892469 s is an odd one: no client_s value can make the row sum.
_SYN300K_ROW_NS = [0, 1_381_000, 0, 2_706_500, 122_944_000, 4_526_748_500, 15_347_000, 0, 0, 0,
                   8_223_342_000, 0]


def _sums_left_to_right(secs: np.ndarray, duration_s: np.ndarray) -> bool:
    for i in range(len(duration_s)):
        total = 0.0
        for v in secs[i]:
            total += float(v)
        if total != duration_s[i]:
            return False
    return True


def test_budget_sums_exactly_when_a_large_column_follows_small_ones_with_nothing_unexplained():
    cat_ns = np.array([_SYN300K_ROW_NS], dtype=np.int64)
    duration_ns = cat_ns.sum(axis=1)
    assert duration_ns[0] == 12_892_469_000
    secs, duration_s = budget_seconds(cat_ns, duration_ns)
    assert duration_s[0] == 12.892469
    assert _sums_left_to_right(secs, duration_s)
    assert (secs >= 0).all()
    assert (secs[0] == 0).tolist() == (cat_ns[0] == 0).tolist()          # no residue in empty columns
    assert np.abs(secs[0] - cat_ns[0] / 1e9).max() <= 4 * np.spacing(12.892469)


@pytest.mark.parametrize("unexplained", ["none", "some"])
def test_budget_seconds_sum_exactly_on_logon_shaped_rows(unexplained):
    # Rows shaped like real logons: each category empty or not, magnitudes from 1 us to 60 s
    # (log-uniform), so a long client or server column often follows short ones.
    rng = np.random.default_rng(2024)
    n, k = 20_000, len(BUDGET_COLUMNS)
    cat_ns = np.rint(10 ** rng.uniform(3, 10.8, size=(n, k))).astype(np.int64)
    cat_ns[rng.random((n, k)) < 0.5] = 0
    if unexplained == "none":
        cat_ns[:, -1] = 0
    cat_ns[cat_ns.sum(axis=1) == 0, 1] = 1_000_000
    duration_ns = cat_ns.sum(axis=1)
    secs, duration_s = budget_seconds(cat_ns, duration_ns)
    assert np.array_equal(duration_s, duration_ns / 1e9)
    assert _sums_left_to_right(secs, duration_s)
    assert (secs >= 0).all()
    assert np.array_equal(secs == 0, cat_ns == 0)
    # every column stays within a few ulp of the duration of its nanoseconds
    assert (np.abs(secs - cat_ns / 1e9) <= 4 * np.spacing(duration_s)[:, None]).all()
