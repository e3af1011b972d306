"""Logon boundaries: several logons in one client process, tool runs that are not logons, logons cut by the capture.

Expected values come from the lab peers' own logs (captures/lab/*.truth.json: the client logs
each logon's start and end, the name-service tool each run), from tshark on the same file, or
from hand-built tables whose timeline states the answer.
"""

from __future__ import annotations

import functools
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from logon_tables import connection, tables, transaction

from netdiag.logons import analyze_logons, analyze_tables
from netdiag.profile import parse_profile

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "captures" / "lab"
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"
MS = 1_000_000
C, S, APP = "10.0.0.5", "10.0.1.10", "10.0.1.11"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


@functools.cache
def _truth(name: str) -> dict:
    return json.loads((LAB / f"{name}.truth.json").read_text())


def _client_logons(name: str, profile=None) -> tuple[list[dict], list[dict]]:
    a = analyze_logons(LAB / f"{name}.pcap", profile)
    ours = a.logons.sort("start_ts_ns").to_dicts()
    theirs = sorted(_truth(name)["logons"], key=lambda x: x["start_ts_ns"])
    return ours, theirs


# ------------------------------------------------------------------------------------------
# several logons by one client process over reused connections
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", [None, '[logon]\nend_operation = "logout"\n',
                                     '[logon]\nstart_operation = "^authenticate$"\n',
                                     '[logon]\nstart_operation = "^authenticate$"\nend_operation = "^logout$"\n'])
@pytest.mark.parametrize("name", ["repeated_logons", "switch_user"])
def test_each_logon_of_one_client_process_is_its_own_logon_with_the_clients_start_and_end(name, profile):
    prof = parse_profile(profile) if profile else None
    ours, theirs = _client_logons(name, prof)
    truth = _truth(name)
    assert truth["expected"]["client_processes"] == 1          # all logons in one process ...
    assert truth["expected"]["tcp_connections"]["orb"] == 1    # ... over one ORB connection
    assert len(ours) == len(theirs) == truth["expected"]["logons"]
    for row, log in zip(ours, theirs, strict=True):
        # start and end on the client's clock within 5 ms of the client's own log lines
        assert abs(row["start_ts_ns"] - log["start_ts_ns"]) < 5 * MS
        assert abs(row["end_ts_ns"] - log["end_ts_ns"]) < 5 * MS
        assert row["outcome"] == "completed"
    # time between logons belongs to none of them
    for a, b in zip(ours, ours[1:], strict=False):
        assert a["end_ts_ns"] < b["start_ts_ns"]


def test_repeated_logons_each_carry_their_own_800ms_authenticate():
    a = analyze_logons(LAB / "repeated_logons.pcap")
    by_op = a.server_seconds_by_operation().filter(a.server_seconds_by_operation()["operation"] == "authenticate")
    think = [r["server_time_ms"] / 1000 for r in _truth("repeated_logons")["server_requests"]
             if r["op"] == "authenticate"]
    assert len(think) == 3 and by_op.height == 3
    for ours, theirs in zip(sorted(by_op["logon_id"].to_list()), think, strict=True):
        got = float(by_op.filter(by_op["logon_id"] == ours)["server_s"][0])
        assert abs(got - theirs) < 0.002          # the server's own measurement, per logon
    assert set(a.logons["dominant_cause"].to_list()) == {"server_think"}


def test_requests_between_two_logons_are_in_none_and_counted_in_a_note():
    # one process: authenticate, getUserContext; 2 s later a stray getWorklist; then the same
    # two operations again; end_operation = getUserContext ends each logon at that reply
    conns = [connection(1, C, 50000, S, 2809, 0, 0.2, 0.3, 9000),
             connection(2, C, 50001, APP, 9100, 10, 10.2, 10.3, 9000)]
    txns = [transaction(1, C, S, 2809, "giop", "resolve", 1, 1, 3, 3, forward=(APP, 9100)),
            transaction(2, C, APP, 9100, "giop", "authenticate", 11, 11, 100, 100),
            transaction(2, C, APP, 9100, "giop", "getUserContext", 110, 110, 120, 120),
            transaction(2, C, APP, 9100, "giop", "getWorklist", 2000, 2000, 2010, 2010),
            transaction(2, C, APP, 9100, "giop", "authenticate", 5000, 5000, 5100, 5100),
            transaction(2, C, APP, 9100, "giop", "getUserContext", 5110, 5110, 5120, 5120)]
    c, t, _ = tables(conns, txns)
    res = analyze_tables(c, t, profile=parse_profile('[logon]\nend_operation = "getUserContext"\n'))
    lg = res.logons.sort("start_ts_ns")
    assert lg.height == 2
    assert lg["requests"].to_list() == [3, 2]
    assert res.unassigned_requests == 1
    assert any("1 request(s) of logon client processes belong to no logon" in n for n in res.notes)


def test_a_process_whose_logon_is_one_call_logs_on_again_after_each_pause():
    # login (800 ms at the server), 100 ms pause, login, 100 ms pause, login: three logons
    conns = [connection(1, C, 50000, S, 2809, 0, 0.2, 0.3, 9000),
             connection(2, C, 50001, APP, 9100, 10, 10.2, 10.3, 9000)]
    txns = [transaction(1, C, S, 2809, "giop", "resolve", 1, 1, 3, 3, forward=(APP, 9100))]
    for t in (11.0, 911.0, 1811.0):
        txns.append(transaction(2, C, APP, 9100, "giop", "login", t, t, t + 800, t + 800))
    c, tt, _ = tables(conns, txns)
    lg = analyze_tables(c, tt).logons.sort("start_ts_ns")
    assert lg.height == 3
    # each later logon is its own login: 0.8 s at the server less the 0.2 ms server-side round trip
    assert lg["server_s"].to_list()[1:] == pytest.approx([0.8, 0.8], abs=0.001)


def test_a_first_logon_that_begins_with_a_one_off_call_still_lets_the_next_logons_be_found():
    # the process fetches its settings once, then logs on (authenticate, getUserContext) three
    # times, 2 s apart; the later logons skip the settings call
    conns = [connection(1, C, 50000, S, 2809, 0, 0.2, 0.3, 9000),
             connection(2, C, 50001, APP, 9100, 10, 10.2, 10.3, 9000)]
    txns = [transaction(1, C, S, 2809, "giop", "resolve", 1, 1, 3, 3, forward=(APP, 9100)),
            transaction(2, C, APP, 9100, "giop", "getServerSettings", 11, 11, 15, 15)]
    for t in (20.0, 2020.0, 4020.0):
        txns += [transaction(2, C, APP, 9100, "giop", "authenticate", t, t, t + 100, t + 100),
                 transaction(2, C, APP, 9100, "giop", "getUserContext", t + 110, t + 110, t + 120, t + 120)]
    c, tt, _ = tables(conns, txns)
    lg = analyze_tables(c, tt).logons.sort("start_ts_ns")
    assert lg["requests"].to_list() == [4, 2, 2]


def test_a_retry_after_an_exception_is_not_a_new_logon():
    conns = [connection(1, C, 50000, S, 2809, 0, 0.2, 0.3, 9000),
             connection(2, C, 50001, APP, 9100, 10, 10.2, 10.3, 9000)]
    txns = [transaction(1, C, S, 2809, "giop", "resolve", 1, 1, 3, 3, forward=(APP, 9100)),
            transaction(2, C, APP, 9100, "giop", "authenticate", 11, 11, 20, 20),
            transaction(2, C, APP, 9100, "giop", "getUserContext", 30, 30, 40, 40, status="SYSTEM_EXCEPTION"),
            transaction(2, C, APP, 9100, "giop", "authenticate", 2000, 2000, 2010, 2010),
            transaction(2, C, APP, 9100, "giop", "getUserContext", 2020, 2020, 2030, 2030)]
    c, tt, _ = tables(conns, txns)
    assert analyze_tables(c, tt).logons.height == 1


def test_a_process_repeating_its_operations_at_its_usual_pace_stays_one_logon():
    # authenticate, getUserContext, then the same two again 20 ms after each answer, as every
    # other step: no pause longer than the process's usual ones, so no new logon
    conns = [connection(1, C, 50000, S, 2809, 0, 0.2, 0.3, 900),
             connection(2, C, 50001, APP, 9100, 10, 10.2, 10.3, 900)]
    txns = [transaction(1, C, S, 2809, "giop", "resolve", 1, 1, 3, 3, forward=(APP, 9100))]
    t = 11.0
    for op in ["authenticate", "getUserContext", "getWorklist", "authenticate", "getUserContext"]:
        txns.append(transaction(2, C, APP, 9100, "giop", op, t, t, t + 30, t + 30))
        t += 50
    c, tt, _ = tables(conns, txns)
    assert analyze_tables(c, tt).logons.height == 1


# ------------------------------------------------------------------------------------------
# tool runs on the naming port are not logons
# ------------------------------------------------------------------------------------------
def test_name_service_tool_runs_are_not_logons_and_are_counted_apart():
    a = analyze_logons(LAB / "naming_tool.pcap")
    truth = _truth("naming_tool")
    assert a.logons.height == truth["expected"]["logons"] == 2
    assert a.not_logons.height == len(truth["tool_runs"]) == 2
    for row, run in zip(a.not_logons.sort("start_ts_ns").to_dicts(), truth["tool_runs"], strict=True):
        assert "naming service only" in row["reason"]
        # the tool's run lies around its connection (it logs before connecting, after closing)
        assert run["start_ts_ns"] <= row["start_ts_ns"] <= row["end_ts_ns"] <= run["end_ts_ns"] + 5 * MS
    assert any("2 session(s) on the naming port are not logons" in n for n in a.notes)
    # logon statistics count the logons only
    assert int(a.population["overall"]["logons"][0]) == 2


# ------------------------------------------------------------------------------------------
# several client addresses in wards
# ------------------------------------------------------------------------------------------
def test_logons_from_several_workstations_in_wards_are_per_address_and_per_ward():
    truth = _truth("multi_client")
    wards = {h["address"]: h["ward"] for k, h in truth["hosts"].items() if k.startswith("workstation")}
    prof = parse_profile("".join(f'[[client_groups]]\nsubnet = "{ip}/32"\ngroup = "{w}"\n' for ip, w in wards.items()))
    a = analyze_logons(LAB / "multi_client.pcap", prof)
    per_ip: dict[str, int] = {}
    for lg in truth["logons"]:
        per_ip[lg["client_ip"]] = per_ip.get(lg["client_ip"], 0) + 1
    assert dict(a.logons.group_by("client_ip").len().iter_rows()) == per_ip
    for row in a.logons.to_dicts():
        assert row["client_group"] == wards.get(row["client_ip"])
        assert row["separation_confidence"] == "high"
    groups = dict(a.population["per_client_group"].select("client_group", "logons").iter_rows())
    assert groups == {"Ward A": 2, "Ward B": 2, "(none)": 1}


# ------------------------------------------------------------------------------------------
# logons cut by the capture
# ------------------------------------------------------------------------------------------
def _pcap_records(path: Path) -> tuple[bytes, list[tuple[int, int, int]]]:
    """(file header, [(offset, end, ts_ns)]) of a classic little-endian microsecond pcap."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    recs, off = [], 24
    while off + 16 <= len(data):
        sec, usec, incl, _ = struct.unpack_from("<IIII", data, off)
        recs.append((off, off + 16 + incl, sec * 1_000_000_000 + usec * 1000))
        off += 16 + incl
    return data, recs


@needs_tshark
def test_truncation_sweep_of_the_sample_never_raises_and_the_cut_logon_is_incomplete(tmp_path):
    data, recs = _pcap_records(SAMPLE)
    truth = json.loads(SAMPLE.with_name("epj-logon.truth.json").read_text())
    logs = sorted(truth["logons"], key=lambda x: x["start_ts_ns"])
    # each logon's bootstrap SYN, from tshark; its last answer from the client's own call_end lines
    syn = subprocess.run(["tshark", "-r", str(SAMPLE), "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0 && tcp.dstport==2809",
                          "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, check=True)
    boot_frames = [int(x) for x in syn.stdout.split()]
    assert len(boot_frames) == len(logs)
    last_answer = [max(e["ts_ns"] for e in truth["client_events"] if e.get("logon") == lg["logon"]
                       and e["event"] == "call_end") for lg in logs]
    checked_incomplete = 0
    for n in list(range(6, len(recs), 7)) + [110]:          # cut after frame n (110: the cut first reported)
        cut = tmp_path / f"cut{n}.pcap"
        cut.write_bytes(data[:recs[n - 1][1]])
        cut_ts = recs[n - 1][2]
        a = analyze_logons(cut)                             # never raises
        rows = a.logons.sort("start_ts_ns").to_dicts()
        started = [i for i, f in enumerate(boot_frames) if f <= n]
        assert len(rows) == len(started), (n, a.no_logons_reason, a.notes)
        for i, row in zip(started, rows, strict=True):
            if cut_ts >= logs[i]["end_ts_ns"]:
                assert row["outcome"] == "completed", (n, i)
            elif cut_ts < last_answer[i] - 5 * MS:
                assert row["outcome"] == "incomplete", (n, i, row)
                checked_incomplete += 1
        if any(r["outcome"] == "incomplete" for r in rows):
            assert any("incomplete" in note for note in a.notes)
            # incomplete logons stay out of the duration percentiles
            complete = [r for r in rows if r["outcome"] != "incomplete"]
            assert int(a.population["overall"]["logons"][0]) == len(complete)
    assert checked_incomplete >= 20


def test_the_issue_repro_a_capture_ending_after_a_bootstrap_handshake_is_one_incomplete_logon(tmp_path):
    data, recs = _pcap_records(SAMPLE)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:recs[109][1]])                    # editcap -r epj-logon.pcap cut.pcap 1-110
    a = analyze_logons(cut)
    assert a.logons["outcome"].to_list() == ["incomplete"]
    assert a.logons["requests"].to_list() == [4]            # the JNLP and jars; no GIOP yet


def test_a_logon_whose_connection_began_before_the_capture_is_incomplete():
    # the bootstrap connection's SYN is not in the capture: it was the capture's first packet
    conns = [connection(1, C, 50000, S, 2809, None, None, None, 400),
             connection(2, C, 50001, APP, 9100, 10, 10.2, 10.3, 400)]
    conns[0]["first_ts_ns"] = conns[1]["first_ts_ns"] - 10 * MS    # the capture began with it
    conns[0]["state"] = "SF"
    txns = [transaction(1, C, S, 2809, "giop", "resolve", 1, 1, 3, 3, forward=(APP, 9100)),
            transaction(2, C, APP, 9100, "giop", "authenticate", 11, 11, 100, 100)]
    c, t, _ = tables(conns, txns)
    res = analyze_tables(c, t)
    assert res.logons["outcome"].to_list() == ["incomplete"]
    assert res.population["overall"]["logons"][0] == 0


def test_the_headline_counts_incomplete_logons_apart_and_leaves_them_out_of_the_figures(tmp_path):
    from netdiag.analyze import analyze
    from netdiag.report import summarize

    data, recs = _pcap_records(SAMPLE)
    cut = tmp_path / "cut300.pcap"
    cut.write_bytes(data[:recs[299][1]])                    # logon 1 whole, logon 2 under way
    a = analyze([cut])
    s = summarize(a)
    assert (s.logons, s.incomplete, s.completed) == (2, 1, 1)
    whole = a.logons.filter(a.logons["outcome"] == "completed")["duration_s"][0]
    assert s.p50_s == s.max_s == whole
    assert "1 incomplete: cut by the start or end of the capture" in s.sentences[0]


def test_connections_and_dns_questions_in_no_logon_are_counted_in_notes():
    # a JNLP download and a bootstrap connection that carried nothing, then 20 s later another
    # PC's complete logon (so the capture goes on well past the first); a DNS question nobody used
    conns = [connection(1, "10.0.0.7", 50000, S, 9080, 0, 0.2, 0.3, 50),
             connection(2, "10.0.0.7", 50001, S, 2809, 60, 60.2, 60.3, 80),
             connection(3, C, 50002, S, 2809, 20000, 20000.2, 20000.3, 20400),
             connection(4, C, 50003, APP, 9100, 20010, 20010.2, 20010.3, 20400),
             connection(9, "10.0.0.8", 40000, "10.0.9.9", 53, None, None, None, 9, transport="udp")]
    txns = [transaction(1, "10.0.0.7", S, 9080, "http", "GET /epj/epj.jnlp", 1, 1, 10, 10, status="200"),
            transaction(3, C, S, 2809, "giop", "resolve", 20001, 20001, 20003, 20003, forward=(APP, 9100)),
            transaction(4, C, APP, 9100, "giop", "authenticate", 20011, 20011, 20100, 20100),
            transaction(9, "10.0.0.8", "10.0.9.9", 53, "dns", "www.example.org", 2, 2, 8, 8, status="NOERROR",
                        detail='{"answers":[["A","192.0.2.1",60]]}')]
    c, t, _ = tables(conns, txns)
    res = analyze_tables(c, t)
    assert res.logons.height == 1 and res.logons["client_ip"][0] == C
    assert res.orphan_connections == 2
    assert any(n.startswith("2 connection(s) to EPJ servers belong to no logon") for n in res.notes)
    assert any(n.startswith("1 DNS question(s) belong to no logon") for n in res.notes)


def test_a_capture_of_only_name_service_tool_runs_has_no_logons_and_says_why():
    from netdiag.logons import NoLogonsError

    conns = [connection(1, C, 50000, S, 2809, 0, 0.2, 0.3, 50),
             connection(2, "10.0.0.9", 50001, "10.0.2.2", 445, 9000, 9000.2, 9000.3, 9500)]  # the capture goes on
    txns = [transaction(1, C, S, 2809, "giop", "_is_a", 1, 1, 3, 3),
            transaction(1, C, S, 2809, "giop", "list", 4, 4, 6, 6),
            transaction(1, C, S, 2809, "giop", "resolve", 7, 7, 9, 9, forward=(APP, 9100))]
    c, t, _ = tables(conns, txns)
    res = analyze_tables(c, t)
    assert res.logons.height == 0 and res.not_logons.height == 1
    with pytest.raises(NoLogonsError, match="1 session.s. on the naming port, none of them a logon"):
        res.require_logons()


@pytest.mark.parametrize(("status", "is_logon"), [("USER_EXCEPTION", False), ("SYSTEM_EXCEPTION", True)])
def test_a_naming_session_whose_lookup_missed_is_a_tool_run_but_one_the_naming_service_failed_is_a_logon(
        status, is_logon):
    conns = [connection(1, C, 50000, S, 2809, 0, 0.2, 0.3, 50),
             connection(2, "10.0.0.9", 50001, "10.0.2.2", 445, 9000, 9000.2, 9000.3, 9500)]  # the capture goes on
    txns = [transaction(1, C, S, 2809, "giop", "_is_a", 1, 1, 3, 3),
            transaction(1, C, S, 2809, "giop", "resolve", 7, 7, 9, 9, status=status)]
    c, t, _ = tables(conns, txns)
    res = analyze_tables(c, t)
    assert (res.logons.height, res.not_logons.height) == ((1, 0) if is_logon else (0, 1))
    if is_logon:
        assert res.logons["outcome"][0] == "failed"


@needs_tshark
def test_each_logon_filter_shows_in_wireshark_the_requests_the_client_sent_in_that_logon():
    a = analyze_logons(LAB / "repeated_logons.pcap")
    events = _truth("repeated_logons")["client_events"]
    logs = sorted(_truth("repeated_logons")["logons"], key=lambda x: x["start_ts_ns"])
    for row, log in zip(a.logons.sort("start_ts_ns").to_dicts(), logs, strict=True):
        out = subprocess.run(["tshark", "-r", str(LAB / "repeated_logons.pcap"), "-Y",
                              f"({row['wireshark_filter']}) && giop.type == 0", "-T", "fields", "-e", "giop.request_op"],
                             capture_output=True, text=True, check=True).stdout.split()
        sent = [e["op"] for e in events if e.get("logon") == log["logon"] and e["event"] == "giop_sent"
                and e.get("msg_type") == "Request"]
        assert out == sent


def test_compare_leaves_incomplete_logons_out_of_the_duration_comparison(tmp_path):
    from netdiag.compare import compare

    data, recs = _pcap_records(SAMPLE)
    cut = tmp_path / "cut300.pcap"
    cut.write_bytes(data[:recs[299][1]])                    # logon 1 whole, logon 2 under way
    row = compare(SAMPLE, cut).metric("logon:duration_s")
    assert (row["n_before"], row["n_after"]) == (3, 1)


def test_start_operation_is_a_checked_regex_in_the_profile_and_in_the_starter():
    from netdiag.errors import ConfigError
    from netdiag.profile import STARTER_PROFILE

    assert parse_profile('[logon]\nstart_operation = "^authenticate$"\n').start_operation.pattern == "^authenticate$"
    with pytest.raises(ConfigError, match=r"line 3: bad regex in 'start_operation'"):
        parse_profile('[logon]\nend_quiet_s = 5\nstart_operation = "auth("\n')
    assert 'start_operation = ""' in STARTER_PROFILE
    assert parse_profile(STARTER_PROFILE).start_operation is None


def test_a_client_running_before_the_capture_began_is_followed_with_start_any_and_start_operation():
    # both connections were open before the capture (no SYN); the process logs on three times
    conns = [connection(2, C, 50001, APP, 9100, None, None, None, 12000),
             connection(1, C, 50000, S, 2809, None, None, None, 12000)]
    conns[0]["first_ts_ns"] = conns[0]["last_ts_ns"] - 11990 * MS   # first packet at 10 ms: authenticate
    conns[1]["first_ts_ns"] = conns[1]["last_ts_ns"] - 10000 * MS   # at 2000 ms: resolve
    conns[0]["state"] = conns[1]["state"] = "OTH"
    txns = [transaction(1, C, S, 2809, "giop", "resolve", 2000, 2000, 2002, 2002, forward=(APP, 9100))]
    for t in (10.0, 2010.0, 4010.0):
        txns += [transaction(2, C, APP, 9100, "giop", "authenticate", t, t, t + 100, t + 100),
                 transaction(2, C, APP, 9100, "giop", "getUserContext", t + 110, t + 110, t + 120, t + 120)]
    c, tt, _ = tables(conns, txns)
    # by default the application connection has no logon start in the capture: counted, not followed
    default = analyze_tables(c, tt)
    assert default.orphan_connections == 1 and default.logons["requests"].to_list() == [1]
    prof = parse_profile('[logon]\nstart = "any"\nstart_operation = "^authenticate$"\n')
    lg = analyze_tables(c, tt, profile=prof).logons.sort("start_ts_ns")
    assert lg["outcome"].to_list() == ["completed"] * 3
    assert lg["requests"].to_list() == [2, 3, 2]             # the second logon's resolve is its own
