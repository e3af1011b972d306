"""The cause registry (netdiag/logons/causes/), the next step on every warning, and the noise rules.

Ground truth: the lab's own logs (captures/lab/*.truth.json: the server's logged time per
request, the client's logged logons), tshark on the same file, and editcap to cut a capture.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from netdiag.logons import analyze_logons
from netdiag.logons.causes import registry
from netdiag.profile import Profile

LAB = Path(__file__).resolve().parent.parent / "captures" / "lab"
LAB_CAPTURES = sorted(LAB.glob("*.pcap"))
STORM = LAB / "storm.pcap"


def _truth(cap: Path) -> dict:
    return json.loads(cap.with_suffix(".truth.json").read_text())


def _analysis(cap: Path):
    keys = cap.with_suffix(".keys")
    prof = Profile(tls_keylog=keys) if keys.is_file() else None
    return analyze_logons(cap, prof)


@pytest.fixture(scope="module")
def lab() -> dict[str, object]:
    return {cap.name: _analysis(cap) for cap in LAB_CAPTURES}


# ------------------------------------------------------------------------------------------
# a toy cause: its own file plus one registration line
# ------------------------------------------------------------------------------------------
TOY = '''
"""locate_request: time the server spent answering GIOP LocateRequests (a toy cause for the test)."""
import polars as pl
from netdiag.logons.causes.base import Cause, FindingContext, LabelInput, secs_text


def _label(inp: LabelInput) -> pl.Expr:
    return (pl.col("protocol") == "giop") & (pl.col("operation") == "LocateRequest")


def _find(ctx: FindingContext) -> None:
    ctx.simple(CAUSE, lambda s, w, r: "warning",
               lambda s, n, w, r: f"LocateRequests took {secs_text(s)} in {n} logon(s).",
               lambda s, n, w, r: f"{r.height} LocateRequest server interval(s).")


CAUSE = Cause("locate_request", "server_s", "Set com.ibm.CORBA.enableLocateRequest=false on the client.",
              label_transaction=_label, find=_find)
'''


def test_a_toy_cause_in_its_own_file_with_one_registration_line_shows_in_findings_and_report(tmp_path, monkeypatch):
    cap = LAB / "slow_auth.pcap"
    from netdiag.analyze import analyze
    from netdiag.report.html import render_html
    from netdiag.report.markdown import render_markdown

    before = analyze([cap])
    (tmp_path / "toy_cause.py").write_text(TOY)
    spec = importlib.util.spec_from_file_location("toy_cause", tmp_path / "toy_cause.py")
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    monkeypatch.setattr(registry, "REGISTRY", [*registry.REGISTRY, toy.CAUSE])   # the one registration line
    a = analyze([cap])
    f = a.findings.filter(pl.col("cause") == "locate_request")
    assert f.height == 1
    row = f.row(0, named=True)
    # its seconds are the LocateRequests' server time (transactions.server_think_s, one definition);
    # over every LocateRequest tshark sees
    tx = a.transactions.filter(pl.col("operation") == "LocateRequest")
    seen = subprocess.run(["tshark", "-r", str(cap), "-Y", "giop.type == 3", "-T", "fields", "-e", "frame.number"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert tx.height == len(seen) > 0
    assert row["seconds_lost"] == pytest.approx(float(tx["server_think_s"].sum()), abs=1e-6)
    assert row["action"] == toy.CAUSE.action and row["id"].startswith("F")
    # its frames are LocateRequests and LocateReplies in Wireshark
    out = subprocess.run(["tshark", "-r", str(cap), "-Y", row["wireshark_filter"], "-T", "fields", "-e", "giop.type"],
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert out and set(out) <= {"3", "4"}
    assert f"### {row['id']} (warning): locate_request" in render_markdown(a)
    assert "LocateRequests took" in render_html(a)
    # the budget carries it as its own label: the same server_s seconds, now no longer server_think's
    assert a.logons["server_s"].sum() == pytest.approx(before.logons["server_s"].sum(), abs=1e-9)

    def think(x):
        return x.findings.filter(pl.col("cause") == "server_think")["seconds_lost"][0]

    assert think(before) - think(a) == pytest.approx(row["seconds_lost"], abs=1e-6)
    assert "locate_request" not in before.findings["cause"].to_list()


# ------------------------------------------------------------------------------------------
# a next step on every warning
# ------------------------------------------------------------------------------------------
def test_every_warning_finding_of_every_lab_capture_has_a_specific_next_step(lab):
    seen = set()
    for name, a in lab.items():
        for r in a.findings.filter(pl.col("severity") != "info").iter_rows(named=True):
            assert r["action"] and len(r["action"]) > 40, (name, r["cause"])
            assert "{" not in r["action"], (name, r["action"])      # every placeholder filled in
            seen.add(r["cause"])
    # the lab injects these; each warning names its own next step
    assert {"server_think", "syn_retransmission", "loss_recovery", "dns_delay", "nagle_delayed_ack",
            "zero_window", "request_timeout_retry", "system_exception", "capture_loss"} <= seen


def test_actions_name_the_side_the_operation_and_the_server_the_lab_injected_the_fault_at(lab):
    def action(name: str, cause: str) -> str:
        f = lab[name].findings.filter(pl.col("cause") == cause)
        assert f.height, (name, cause)
        return f["action"][0]

    # slow authenticate on the ORB port (truth: injected think on authenticate at app1:9100)
    t = _truth(LAB / "slow_auth.pcap")
    assert "'authenticate'" in action("slow_auth.pcap", "server_think")
    assert f"{t['hosts']['epj-app']['address']}:{t['ports']['orb']}" in action("slow_auth.pcap", "server_think")
    # Nagle: the server held its reply bytes (lab: server_nagle on, the client delays its ACK)
    t = _truth(LAB / "nagle_delayed_ack.pcap")
    assert t["injected"]["server_nagle"] is True
    assert "TCP_NODELAY on the server (" in action("nagle_delayed_ack.pcap", "nagle_delayed_ack")
    # zero window: the client process was stopped, the client is the slow reader
    assert action("zero_window.pcap", "zero_window").startswith("Look at the client (")
    # DNS: the resolver the client asked
    t = _truth(LAB / "slow_dns.pcap")
    assert t["hosts"]["dns"]["address"] in action("slow_dns.pcap", "dns_delay")
    # SYN retransmission: the server port whose first SYN the lab's bridge dropped
    t = _truth(LAB / "dropped_syn.pcap")
    assert [d["dst"] for d in t["impairment_log"]["frames_dropped"]] == ["10.77.1.10:9100"]
    assert "first SYN to 10.77.1.10:9100:" in action("dropped_syn.pcap", "syn_retransmission")


@pytest.mark.parametrize("name,direction,where", [
    # lab: frames dropped client->server behind a server-side capture: lost before the capture point
    ("loss_c2s.pcap", 0, "between the client and the capture point"),
    # server->client frames dropped after a server-side (sender-side) capture: after the capture point
    ("loss_s2c_sender_side.pcap", 1, "between the capture point and the client"),
])
def test_loss_action_places_the_loss_relative_to_the_capture_point_as_the_lab_dropped_it(lab, name, direction, where):
    t = _truth(LAB / name)
    dropped = t["impairment_log"]["frames_dropped"]
    assert dropped and t["capture_point"]["where"] == "server"
    assert {d["dir"] for d in dropped} == {"c2s" if direction == 0 else "s2c"}
    assert where in lab[name].findings.filter(pl.col("cause") == "loss_recovery")["action"][0]


# ------------------------------------------------------------------------------------------
# noise
# ------------------------------------------------------------------------------------------
def test_lab_storm_server_time_is_one_finding_whose_operations_match_the_servers_own_log(lab):
    a = lab["storm.pcap"]
    t = _truth(STORM)
    srv = a.findings.filter(pl.col("cause") == "server_think")
    assert srv.height == 1
    ops = {o["operation"]: o for o in srv["operations"][0]}
    logged: dict[str, list[float]] = {}
    for r in t["server_requests"]:
        if r["message_type"] == "Request":
            logged.setdefault(r["op"], []).append(r["server_time_ms"] / 1e3)
    for op, injected in t["injected"]["server_ops"].items():
        assert ops[op]["count"] == t["expected"]["giop_requests_by_op"][op] == len(logged[op])
        # never less than the server's own logged time (less 1 ms per call); more only by what 20
        # ORB processes on 2 cores delay the server's log (the lab's bound: 2 ms for 4 calls in 5,
        # captures/lab/crosscheck.py), so the median call agrees within 1 ms
        assert ops[op]["total_s"] >= sum(logged[op]) - 1e-3 * len(logged[op]), op
        assert ops[op]["p95_s"] >= float(np.percentile(logged[op], 95)) - 1e-3, op
        assert ops[op]["total_s"] >= injected["think_ms"] / 1e3 * ops[op]["count"] * 0.95
    tx = a.transactions
    for op in t["injected"]["server_ops"]:
        mine = tx.filter(pl.col("operation") == op)["server_think_s"].sort().to_numpy()
        assert abs(float(np.median(mine)) - float(np.median(logged[op]))) <= 1e-3, op
    total = float(a.logons["duration_s"].sum())
    for o in ops.values():
        assert o["share"] == pytest.approx(o["total_s"] / total)
    # the operations that share the most time come first
    shares = [o["share"] for o in srv["operations"][0]]
    assert shares == sorted(shares, reverse=True)


@pytest.mark.parametrize("name", ["baseline.pcap", "slow_auth.pcap", "nagle_delayed_ack.pcap"])
def test_server_time_per_operation_is_the_servers_own_log_within_1_ms_per_call(lab, name):
    """On an unloaded lab run the finding's per-operation totals are the server's own times."""
    t = _truth(LAB / name)
    logged: dict[str, list[float]] = {}
    for r in t["server_requests"]:
        if r["message_type"] == "Request":
            logged.setdefault(r["op"], []).append(r["server_time_ms"] / 1e3)
    ops = {o["operation"]: o for o in lab[name].findings.filter(pl.col("cause") == "server_think")["operations"][0]}
    for op in t["injected"]["server_ops"]:
        assert ops[op]["count"] == len(logged[op]), op
        assert ops[op]["total_s"] == pytest.approx(sum(logged[op]), abs=1e-3 * len(logged[op])), op


def test_no_lab_finding_is_under_1_ms_per_logon_nor_says_0_00_s_or_unknown_client(lab):
    for name, a in lab.items():
        total = float(a.logons["duration_s"].sum()) if a.logons.height else 0.0
        for r in a.findings.iter_rows(named=True):
            text = r["summary"] + " " + r["detail"]
            assert "0.00 s" not in r["summary"] and "unknown client" not in text, (name, r["summary"])
            if r["cause"] == "capture_loss":
                continue          # costs no time by definition: the recording's gaps
            if r["logons_affected"]:
                assert r["seconds_lost"] / r["logons_affected"] >= 1e-3, (name, r["cause"])
            if r["severity"] == "info" and r["logons_affected"]:
                assert r["seconds_lost"] >= Profile().thresholds.info_share * total, (name, r["cause"])


def test_info_share_threshold_comes_from_the_profile(lab):
    a = lab["storm.pcap"]
    total = float(a.logons["duration_s"].sum())
    srv = a.findings.filter(pl.col("cause") == "server_think")["seconds_lost"][0]
    # a profile asking for more than server time's share drops the (info) server finding
    from netdiag.profile import Thresholds
    strict = Profile(thresholds=Thresholds(info_share=srv / total + 0.01))
    b = analyze_logons(STORM, strict)
    assert "server_think" not in b.findings["cause"].to_list()
    assert "client_think" in b.findings["cause"].to_list()     # 53 s of 56 s: still above it


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap not installed")
def test_findings_leave_out_logons_the_capture_cut(tmp_path):
    """Cut the storm capture while logons are under way: findings count only the complete ones."""
    t = _truth(STORM)
    ends = sorted(lg["end_ts_ns"] for lg in t["logons"])
    cut_ns = (ends[9] + ends[10]) // 2        # ten logons ended (the client's log), ten still running
    cut = tmp_path / "storm_cut.pcap"
    subprocess.run(["editcap", "-B", f"{cut_ns // 10**9}.{cut_ns % 10**9:09d}", str(STORM), str(cut)], check=True)
    a = analyze_logons(cut)
    lg = a.logons
    complete = lg.filter(pl.col("outcome") != "incomplete")
    assert lg.filter(pl.col("outcome") == "incomplete").height > 0
    ended_before_cut = sum(1 for e in ends if e < cut_ns)
    assert abs(complete.height - ended_before_cut) <= 1
    ok_ids = set(complete["logon_id"].to_list())
    for r in a.findings.iter_rows(named=True):
        assert set(r["logon_ids"]) <= ok_ids, r["cause"]
        assert r["logons_affected"] <= complete.height
    ops = {o["operation"]: o for o in a.findings.filter(pl.col("cause") == "server_think")["operations"][0]}
    # one authenticate per complete logon (the cut logons' calls are left out)
    assert ops["authenticate"]["count"] == complete.height
    assert ops["authenticate"]["share"] == pytest.approx(ops["authenticate"]["total_s"]
                                                         / float(complete["duration_s"].sum()))


# ------------------------------------------------------------------------------------------
# "server time" has one definition (transactions.server_think_s = the budget's server_s)
# ------------------------------------------------------------------------------------------
def test_the_budgets_server_time_of_each_request_is_its_server_think_s_on_every_lab_capture(lab):
    """Each answered request's server_s interval is exactly transactions.server_think_s.

    Both take off the same capture-to-server round trip (transactions.server_rtt_s: the smaller of
    the handshake's and the server's quickest ACK). Before they differed by up to 0.2 ms per request
    (dropped_syn, naming_tool, https_jars, repeated_logons, tls13_tickets...: the budget took the
    handshake's round trip alone). Requests with resends inside the wait are left out: there the
    resend interval takes the instant by precedence (loss_recovery_s) and server_think_s leaves it out.
    """
    checked = 0
    for name, a in lab.items():
        if a.logons.height == 0:
            continue
        tx = a.transactions.with_row_index("txn_row").with_columns(pl.col("txn_row").cast(pl.Int64))
        # (plain server waits: a request the client gave up on is cut at its retry)
        srv = (a.intervals.filter((pl.col("category") == "server_s") & (pl.col("cause") == "server_think"))
               .group_by("txn_row").agg(len_s=(pl.col("t1") - pl.col("t0")).sum() / 1e9, n=pl.len()))
        j = srv.join(tx, on="txn_row").filter(pl.col("rsp_first_ts_ns").is_not_null()
                                             & (pl.col("retransmission_stall_s") == 0) & (pl.col("n") == 1)
                                             & pl.col("protocol").is_in(["giop", "http"]))
        for r in j.iter_rows(named=True):
            # (ns rounding of the two halves of the round trip)
            assert r["len_s"] == pytest.approx(r["server_think_s"], abs=5e-9), (name, r["operation"])
            checked += 1
    assert checked > 300


def test_report_md_and_html_show_each_findings_next_step_and_the_server_time_table():
    from netdiag.analyze import analyze
    from netdiag.report.html import render_html
    from netdiag.report.markdown import render_markdown

    a = analyze([LAB / "slow_auth.pcap"])
    md, html = render_markdown(a), render_html(a)
    from html import escape
    for r in a.findings.iter_rows(named=True):
        section = md.split(f"### {r['id']} ")[1].split("### ")[0]
        assert f"Next step: {r['action']}" in section
        assert escape(r["action"], quote=True) in html or escape(r["action"], quote=False) in html
    srv = a.findings.filter(pl.col("cause") == "server_think").row(0, named=True)
    section = md.split(f"### {srv['id']} ")[1].split("### ")[0]
    assert "| operation | calls | total | p95 of a call | share of logon time |" in section
    assert "| authenticate | 1 | 2.00 s |" in section
    assert f'data-table="findings-{srv["id"]}-operations"' in html


def test_every_cause_module_is_registered_once_with_a_category_and_an_action_reviewed_against_domain_md():
    from netdiag.schema import BUDGET_COLUMNS
    pkg = Path(registry.__file__).parent
    modules = {p.stem for p in pkg.glob("*.py")} - {"__init__", "base", "engine", "registry", "_tcp_side"}
    ids = [c.id for c in registry.REGISTRY]
    assert sorted(ids) == sorted(modules) and len(set(ids)) == len(ids)
    for c in registry.REGISTRY:
        assert c.category is None or c.category in BUDGET_COLUMNS, c.id
        assert c.action and (c.find or c.find_connections), c.id
        src = (pkg / f"{c.id}.py").read_text()
        assert "docs/domain.md section" in src.split("ACTION = ")[0], c.id   # the review's citation, beside the text
