"""Real omniORB GIOP (1.0, 1.1, 1.2) parsed by netdiag agrees 100% with tshark.

captures/giop/omniorb.pcap was recorded by captures/giop/omniorb_lab.py: an omniORB server
and three client runs (-ORBmaxGIOPVersion 1.0 / 1.1 / 1.2) on loopback, captured with
tcpdump, plus omniNames. It holds naming calls (rebind, resolve: the reply's IOR host/port
is compared with tshark's), echo calls, a 100 kB reply (sent as a first fragment plus six Fragments in
1.1 and 1.2), CORBA.TRANSIENT, a user exception, a oneway, LOCATION_FORWARD (from a servant
and from a ServantActivator's ForwardRequest), OBJECT_NOT_EXIST, omniORB's own
LocateRequests, and a hand-made LocateRequest per version.

Truth: tshark's GIOP dissector on the same file (request ids, operations, reply and locate
statuses, exception ids, minor codes, completion status, forwarded IOR host/port, sizes), with
no deviation allowed. The live test re-records the capture (root, tcpdump and omniORB needed)
and applies the same checks, so the committed file stays reproducible.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_giop_tshark import GIOP_CAPTURES, HAVE_TSHARK, compare, giop_messages, paired, tshark_giop

OMNIORB_PCAP = GIOP_CAPTURES / "omniorb.pcap"
SERVER_PORT, NAMING_PORT = 28109, 28110  # omniorb_lab.SERVER_PORT, NAMING_PORT


def _check_against_tshark(pcap: Path) -> list:
    ours = giop_messages(pcap)
    pairs = paired(ours, tshark_giop(pcap, [SERVER_PORT, NAMING_PORT]))
    diffs = [f"frame {o.frame} {o.record.msg_type} id={o.record.request_id}: {d}"
             for o, t in pairs if (d := compare(o, t))]
    assert not diffs, "\n".join(diffs)
    return ours


def _check_coverage(ours: list) -> None:
    recs = [o.record for o in ours]
    assert not [r for r in recs if r.malformed]
    assert {r.detail["version"] for r in recs} == {"1.0", "1.1", "1.2"}
    statuses = {r.status for r in recs}
    assert {"NO_EXCEPTION", "SYSTEM_EXCEPTION", "USER_EXCEPTION", "LOCATION_FORWARD", "OBJECT_HERE"} <= statuses
    exc = {r.detail.get("exception_id") for r in recs}
    assert {"IDL:omg.org/CORBA/TRANSIENT:1.0", "IDL:NDT/Nope:1.0", "IDL:omg.org/CORBA/OBJECT_NOT_EXIST:1.0"} <= exc
    transient = [r for r in recs if r.detail.get("exception_id") == "IDL:omg.org/CORBA/TRANSIENT:1.0"]
    assert {(r.detail["minor_code_hex"], r.detail["completion_status"]) for r in transient} == {
        ("0x4f4d0002", "COMPLETED_NO")}
    assert any(r.operation == "note" and r.detail["response_expected"] is False for r in recs)
    # the server listens on 127.0.0.1 and 127.0.0.2 (two -ORBendPoint): omniORB publishes the
    # second one as TAG_ALTERNATE_IIOP_ADDRESS in every IOR it hands out
    named = [r for r in recs if r.detail.get("request_operation") == "resolve"]
    assert len(named) == 3 and all(
        (r.detail["ior_type_id"], r.detail["ior_host"], r.detail["ior_port"],
         r.detail["ior_alternate_addresses"]) == (
            "IDL:NDT/Desk:1.0", "127.0.0.1", SERVER_PORT, [f"127.0.0.2:{SERVER_PORT}"]) for r in named)
    fwd = [r for r in recs if r.status == "LOCATION_FORWARD"]
    assert len(fwd) == 6 and all(
        (r.detail["forward_host"], r.detail["forward_port"], r.detail["forward_alternate_addresses"]) == (
            "127.0.0.1", SERVER_PORT, [f"127.0.0.2:{SERVER_PORT}"]) for r in fwd)


def _check_fragments(ours: list) -> None:
    """The big reply's Fragments are tied to it: 1.2 by their own id, 1.1 by the context."""
    chains: dict[tuple[int, int], list] = {}  # (stream, direction) -> [first, Fragment...]
    done = []
    for o in ours:
        key = (o.stream, o.direction)
        if o.record.msg_type == "Fragment":
            chains[key].append(o.record)
            if not o.record.detail["more_fragments"]:
                done.append(chains.pop(key))
        else:
            assert key not in chains, f"frame {o.frame}: a new message inside a fragment chain"
            if o.record.detail["more_fragments"]:
                chains[key] = [o.record]
    assert not chains
    assert {c[0].detail["version"] for c in done} == {"1.1", "1.2"}
    for first, *frags in done:
        assert first.msg_type == "Reply" and len(frags) >= 3
        assert all(f.request_id == first.request_id and f.detail["fragment_of"] == "Reply" for f in frags)
        assert [f.detail["more_fragments"] for f in frags] == [True] * (len(frags) - 1) + [False]
        # the chain carries the whole 100 kB result (plus headers, ids and padding)
        assert 100_000 <= first.detail["body_bytes"] + sum(f.detail["body_bytes"] for f in frags) < 100_200


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_omniorb_capture_agrees_with_tshark_on_every_giop_message() -> None:
    ours = _check_against_tshark(OMNIORB_PCAP)
    assert len(ours) >= 150
    _check_coverage(ours)


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_omniorb_fragments_are_tied_to_the_reply_they_continue() -> None:
    _check_fragments(giop_messages(OMNIORB_PCAP))


def _can_record() -> str | None:
    if os.geteuid() != 0:
        return "needs root for tcpdump on lo"
    if shutil.which("tcpdump") is None or not HAVE_TSHARK:
        return "tcpdump or tshark missing"
    import sys
    sys.path.insert(0, str(GIOP_CAPTURES))
    try:
        import omniorb_lab
    finally:
        sys.path.remove(str(GIOP_CAPTURES))
    if omniorb_lab.omni_env() is None:
        return "omniORB (cmeel-omniorbpy) missing"
    return None


@pytest.mark.lab
@pytest.mark.skipif(_can_record() is not None, reason=str(_can_record()))
def test_live_omniorb_traffic_agrees_with_tshark(tmp_path: Path) -> None:
    import sys
    sys.path.insert(0, str(GIOP_CAPTURES))
    try:
        import omniorb_lab
    finally:
        sys.path.remove(str(GIOP_CAPTURES))
    pcap = tmp_path / "omniorb.pcap"
    omniorb_lab.record(pcap)
    ours = _check_against_tshark(pcap)
    _check_coverage(ours)
    _check_fragments(ours)
    if os.environ.get("NETDIAG_REGEN_CAPTURES") == "1":
        shutil.copyfile(pcap, OMNIORB_PCAP)
