"""Findings detection rules on hand-built tables: what the capture shows -> which cause, how long.

Each test states a timeline (ms) with one fault; the expected cause, seconds and frames follow
from that timeline.
"""

from __future__ import annotations

import polars as pl
import pytest
from logon_tables import connection, segment, tables, transaction

from netdiag.logons import analyze_tables
from netdiag.profile import parse_profile

C, S = "10.0.0.5", "10.0.1.10"


def _clean(conn_id: int = 1, t: float = 0.0, cport: int = 50000, think: float = 20.0):
    conns = [connection(conn_id, C, cport, S, 2809, t, t + 0.2, t + 0.3, t + 100 + think, first_frame=conn_id * 100)]
    txns = [transaction(conn_id, C, S, 2809, "giop", "resolve", t + 1, t + 1, t + 3, t + 3),
            transaction(conn_id, C, S, 2809, "giop", "authenticate", t + 10, t + 10, t + 10 + think, t + 10 + think)]
    return conns, txns


def _findings(conns, txns, segs=None, profile=None):
    c, t, s = tables(conns, txns, segs)
    res = analyze_tables(c, t, s, profile)
    assert res.logons.height >= 1, res.no_logons_reason
    return res


def test_clean_logon_has_no_warning_level_findings():
    res = _findings(*_clean())
    assert res.findings.filter(pl.col("severity") != "info").height == 0


def test_dropped_syn_is_syn_retransmission_with_the_clients_rto():
    conns, txns = _clean()
    conns[0].update(syn_ts_ns=conns[0]["syn_ts_ns"] - 1_000_000_000, syn_retransmissions=1)
    segs = [segment(100, -1000, 1, 0, flags=0x02), segment(101, 0, 1, 0, flags=0x02, retransmission=True,
                                                               rto_s=1.0, rto_frame=100),
            segment(102, 0.2, 1, 1, flags=0x12), segment(103, 0.3, 1, 0)]
    res = _findings(conns, txns, segs)
    row = res.logons.row(0, named=True)
    assert row["dominant_cause"] == "syn_retransmission"
    # first SYN sent (seen at -1000 ms, half the 0.1 ms client-side RTT earlier at the client) until
    # the SYN/ACK reached the client (seen at 0.2 ms, 0.05 ms later there)
    assert row["connect_s"] == pytest.approx(1.0003, abs=1e-8)
    assert row["loss_recovery_s"] == 0.0               # a SYN resend is connect time, not loss
    f = res.findings.filter(pl.col("cause") == "syn_retransmission").row(0, named=True)
    assert f["severity"] == "warning" and f["seconds_lost"] == pytest.approx(1.0003, abs=1e-8)
    assert "1.00 s after its first SYN" in f["detail"]


def test_unanswered_connect_to_a_forwarded_address_is_connect_failure_and_the_forward_a_warning():
    conns, txns = _clean()
    txns[0].update(status="LOCATION_FORWARD", forward_host="10.0.1.99", forward_port=9100)
    conns.append(connection(2, C, 50001, "10.0.1.99", 9100, 4, None, None, 3004, state="S0", syn_retx=2,
                            first_frame=300))
    # the capture ran on after the logon (another PC's web traffic 12 s later): the unanswered
    # connect did not merely meet the capture's end, so the logon is complete, not cut
    conns.append(connection(3, "10.0.0.77", 50002, "10.0.2.2", 443, 15000, 15000.2, 15000.3, 15001,
                            first_frame=400))
    txns[1].update(req_first_ts_ns=txns[1]["req_first_ts_ns"] + 3_000_000_000,
                   req_last_ts_ns=txns[1]["req_last_ts_ns"] + 3_000_000_000,
                   rsp_first_ts_ns=txns[1]["rsp_first_ts_ns"] + 3_000_000_000,
                   rsp_last_ts_ns=txns[1]["rsp_last_ts_ns"] + 3_000_000_000)
    res = _findings(conns, txns)
    row = res.logons.row(0, named=True)
    assert row["dominant_cause"] == "connect_failure" and row["location_forwards"] == 1
    causes = dict(res.findings.select("cause", "severity").iter_rows())
    assert causes["connect_failure"] == "warning"
    assert causes["location_forward"] == "warning"     # forwarded to a target that then failed


def test_request_unanswered_then_repeated_is_request_timeout_retry():
    conns, txns = _clean()
    conns[0]["last_ts_ns"] += 20_000_000_000
    txns[1].update(rsp_first_ts_ns=None, rsp_last_ts_ns=None, status="unanswered")
    retry = transaction(1, C, S, 2809, "giop", "authenticate", 10_010, 10_010, 10_030, 10_030)
    res = _findings(conns, txns + [retry])
    row = res.logons.row(0, named=True)
    assert row["dominant_cause"] == "request_timeout_retry"
    f = res.findings.filter(pl.col("cause") == "request_timeout_retry").row(0, named=True)
    assert f["seconds_lost"] == pytest.approx(10.0, abs=0.001)
    assert "authenticate" in f["detail"]


def test_system_exception_reply_is_labelled_with_its_exception_id():
    conns, txns = _clean()
    txns[1].update(status="SYSTEM_EXCEPTION", exception_id="IDL:omg.org/CORBA/TRANSIENT:1.0")
    retry = transaction(1, C, S, 2809, "giop", "authenticate", 40, 40, 60, 60)
    res = _findings(conns, txns + [retry])
    f = res.findings.filter(pl.col("cause") == "system_exception").row(0, named=True)
    assert "TRANSIENT" in f["detail"] and f["severity"] == "warning"
    assert res.logons["exceptions"][0] == 1


def test_capture_loss_is_listed_first_before_anything_is_blamed_on_the_network():
    conns, txns = _clean()
    conns[0]["unseen_bytes"] = 1448
    segs = [segment(150, 12, 1, 1, ack_lost_segment=True),
            segment(151, 13, 1, 0, payload=10), segment(152, 313, 1, 0, payload=10, retransmission=True,
                                                           rto_s=0.3, rto_frame=151)]
    res = _findings(conns, txns, segs)
    assert res.findings["cause"][0] == "capture_loss"
    assert res.findings["evidence_frames"][0].to_list() == [150]


def test_slow_dns_answer_is_dns_delay():
    conns, txns = _clean(t=3000)
    conns.append(connection(9, C, 40000, "10.0.9.9", 53, None, None, None, 2900, transport="udp"))
    txns.append(transaction(9, C, "10.0.9.9", 53, "dns", "epj.example", 0, 0, 2900, 2900, status="NOERROR",
                            detail='{"retries":2,"answers":[["A","10.0.1.10",60]]}'))
    res = _findings(conns, txns)
    assert res.logons["dominant_cause"][0] == "dns_delay"
    assert res.logons["dns_s"][0] == pytest.approx(2.9, abs=0.01)


def test_pooled_connection_dropped_by_a_firewall_is_idle_connection_dropped():
    conns, txns = _clean()
    # after the logon's first calls, 60 s of silence, then a request resent twice and never answered
    conns[0]["last_ts_ns"] += 70_000_000_000
    txns.append(transaction(1, C, S, 2809, "giop", "getWorklist", 60_000, 60_000, None, None))
    segs = [segment(110, 30, 1, 1, payload=10), segment(111, 60_000, 1, 0, payload=200),
            segment(112, 60_300, 1, 0, payload=200, retransmission=True, rto_s=0.3, rto_frame=111),
            segment(113, 60_900, 1, 0, payload=200, retransmission=True, rto_s=0.9, rto_frame=111),
            segment(114, 61_000, 1, 0, flags=0x04)]
    txns.append(transaction(1, C, S, 2809, "giop", "getWorklist", 61_100, 61_100, 61_120, 61_120))
    # the site says a logon ends with the worklist, so the 60 s wait at the login dialog is in it
    res = _findings(conns, txns, segs, profile=parse_profile('[logon]\nend_operation = "getWorklist"\n'))
    causes = res.findings["cause"].to_list()
    assert "idle_connection_dropped" in causes
    f = res.findings.filter(pl.col("cause") == "idle_connection_dropped").row(0, named=True)
    assert f["severity"] == "critical" and set(f["evidence_frames"]) >= {111, 113}


def test_syn_retries_clustered_on_a_busy_port_that_normally_answers_are_listen_backlog():
    conns, txns = [], []
    for k in range(12):
        lc, lt = _clean(conn_id=k + 1, t=200.0 * k, cport=50000 + k)
        if k in (3, 4, 5):
            lc[0].update(syn_ts_ns=lc[0]["syn_ts_ns"] - 1_000_000_000, syn_retransmissions=1)
        conns += lc
        txns += lt
    res = _findings(conns, txns)
    f = res.findings.filter(pl.col("cause") == "listen_backlog").row(0, named=True)
    assert f["logons_affected"] == 3 and f["severity"] == "critical"
    assert "syn_retransmission" not in res.findings["cause"].to_list()


def test_request_asked_again_before_its_late_answer_counts_only_until_the_client_gave_up():
    # getWorklist sent at 10 ms; the client's 1.5 s call timeout fires and it asks again on a new
    # connection at 1510 ms (answered at 1550); the first answer still arrives at 3010 ms
    conns, txns = _clean()
    conns[0]["last_ts_ns"] += 5_000_000_000
    txns.append(transaction(1, C, S, 2809, "giop", "getWorklist", 40, 40, 3010, 3010))
    conns.append(connection(2, C, 50001, S, 2809, 1500, 1500.2, 1500.3, 1600, first_frame=400))
    txns.append(transaction(2, C, S, 2809, "giop", "getWorklist", 1510, 1510, 1550, 1550))
    prof = parse_profile('[logon]\nend_operation = "getWorklist"\n')
    res = _findings(conns, txns, profile=prof)
    row = res.logons.row(0, named=True)
    assert row["end_ts_ns"] < conns[0]["first_ts_ns"] + 1_560_000_000      # ends with the retry's answer
    f = res.findings.filter(pl.col("cause") == "request_timeout_retry").row(0, named=True)
    # the client waited from the first request (40 ms) until it asked again (1510 ms), less the
    # 0.3 ms of the new connection's connect (connect beats server time); not until the late 3010 ms answer
    assert f["seconds_lost"] == pytest.approx(1.470 - 0.0003, abs=0.0002)
    assert row["dominant_cause"] == "request_timeout_retry"


def test_full_tls_handshakes_repeated_without_resumption_are_reported():
    conns, txns = _clean()
    for k in range(3):   # three HTTPS connections to 9443, each a full handshake
        cid = 10 + k
        t = 30.0 + 10 * k
        conns.append(connection(cid, C, 51000 + k, S, 9443, t, t + 0.2, t + 0.3, t + 8, first_frame=500 + 10 * k))
        txns.append(transaction(cid, C, S, 9443, "tls", "handshake epj", t + 1, t + 1, t + 2, t + 4, status="ok",
                                detail='{"resumed":false}', first_frame=502 + 10 * k))
    res = _findings(conns, txns)
    rep = res.findings.filter((pl.col("cause") == "tls_handshake") & pl.col("summary").str.contains("again"))
    f = rep.row(0, named=True)
    assert f["severity"] == "warning" and f["evidence_frames"] == [512, 522]
    assert f["seconds_lost"] == pytest.approx(0.006, abs=1e-9)
