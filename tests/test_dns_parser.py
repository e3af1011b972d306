"""DNS parser (netdiag.protocols.dns.parser) against dnsmasq + dig captures and tshark.

captures/proto/dns.pcap (captures/proto/make_captures.py, see captures/proto/README.md):
dnsmasq on 127.0.0.1 with a hosts file (epj-app1.hosp.test 10.20.30.40, epj-app2 10.20.30.41
and fd00::41, dc1 10.20.30.5), --local=/hosp.test/, --local-ttl=300, a CNAME
epj.hosp.test -> epj-app1, an SRV _ldap._tcp -> dc1:389, an upstream for unanswered.test that
does not exist; dig queries over UDP and TCP, including NXDOMAIN, REFUSED (outside name, no
upstream), a query dnsmasq never answers and two tries to 127.0.0.2 where nothing listens.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time

import pytest
from proto_streams import CAPTURES, HAVE_TSHARK, cut_in_pieces, drive, tcp_connections, udp_datagrams

from netdiag.protocols.dns import parser as dns

PCAP = CAPTURES / "dns.pcap"
SAMPLE = CAPTURES.parent / "sample" / "epj-logon.pcap"  # another engineer's lab capture
TSHARK_FIELDS = ["frame.number", "dns.id", "dns.flags.response", "dns.qry.name", "dns.qry.type",
                 "dns.flags.rcode", "dns.count.answers", "dns.resp.ttl", "dns.a", "dns.aaaa",
                 "dns.cname", "dns.ptr.domain_name", "dns.srv.target", "dns.srv.port"]


def _tshark_rows(proto: str, pcap=PCAP) -> list[dict[str, str]]:
    cmd = ["tshark", "-r", str(pcap), "-Y", f"dns && {proto} && !icmp && !icmpv6", "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return [dict(zip(TSHARK_FIELDS, line.split("\t"), strict=True)) for line in out.splitlines()]


def _as_tshark(rec: dns.Record) -> dict[str, str]:
    """My record in tshark's field spelling (for an exact comparison)."""
    d = rec.detail
    by_type: dict[str, list[str]] = {}
    rrs = d["answers"] + d["authority"] + d["additional"]  # tshark's fields span all sections
    for rtype, value, _ in rrs:
        by_type.setdefault(rtype, []).append(value)
    srv = [v.split() for v in by_type.get("SRV", [])]
    type_numbers = {v: k for k, v in dns.TYPES.items()}
    return {
        "dns.id": f"0x{rec.request_id:04x}",
        "dns.flags.response": "1" if rec.msg_type == "response" else "0",
        "dns.qry.name": rec.operation or "",
        "dns.qry.type": str(type_numbers.get(d["qtype"], d["qtype"])),
        # tshark shows rcode for responses only; we set status for responses only
        "dns.flags.rcode": str({v: k for k, v in dns.RCODES.items()}[rec.status]) if rec.status else "",
        "dns.count.answers": str(d["ancount"]),
        "dns.resp.ttl": ",".join(str(t) for _, _, t in rrs),
        "dns.a": ",".join(by_type.get("A", [])),
        "dns.aaaa": ",".join(by_type.get("AAAA", [])),
        "dns.cname": ",".join(by_type.get("CNAME", [])),
        "dns.ptr.domain_name": ",".join(by_type.get("PTR", [])),
        "dns.srv.target": ",".join(s[3] for s in srv),
        "dns.srv.port": ",".join(s[2] for s in srv),
    }


def _compare_udp_with_tshark(pcap) -> int:
    theirs = {int(r.pop("frame.number")): r for r in _tshark_rows("udp", pcap)}
    mine = {}
    ctx = dns.new_context("udp")
    for frame, sport, dport, payload in udp_datagrams(pcap):
        if 53 not in (sport, dport):
            continue
        c = dns.cut(payload, 0, at_end=True, context=ctx)
        assert c == dns.Cut("message", len(payload))
        (rec,) = dns.parse(payload, context=ctx)
        assert not rec.malformed, rec.reason
        mine[frame] = _as_tshark(rec)
    assert mine == theirs
    return len(mine)


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_udp_messages_agree_with_tshark_field_by_field() -> None:
    assert _compare_udp_with_tshark(PCAP) == 18  # 21 DNS frames in tshark's list, less 3 quoted in ICMP


@pytest.mark.skipif(not HAVE_TSHARK or not SAMPLE.exists(), reason="tshark or the sample capture missing")
def test_the_sample_logon_capture_agrees_with_tshark_too() -> None:
    """Second truth: the lab's EPJ logon capture (stdlib resolver -> dnsmasq)."""
    assert _compare_udp_with_tshark(SAMPLE) > 0


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_tcp_messages_with_length_prefix_agree_with_tshark() -> None:
    theirs = [r for r in _tshark_rows("tcp")]
    for r in theirs:
        r.pop("frame.number")
    mine = []
    for conn in tcp_connections(PCAP):
        cuts = drive(dns, conn, context=dns.new_context("tcp"))
        assert all(c.cut.status == "message" for c in cuts)
        mine += [(c.records[0], conn.segments) for c in cuts]
    assert [_as_tshark(r) for r, _ in mine] == theirs and len(theirs) == 4


def _by_name() -> dict[str, list[dns.Record]]:
    out: dict[str, list[dns.Record]] = {}
    ctx = dns.new_context()
    for _, sport, dport, payload in udp_datagrams(PCAP):
        if 53 in (sport, dport):
            (rec,) = dns.parse(payload, context=ctx)
            out.setdefault(rec.operation, []).append(rec)
    return out


def test_answers_are_what_dnsmasq_was_configured_with() -> None:
    recs = _by_name()
    rsp = {name: [r for r in rs if r.msg_type == "response"] for name, rs in recs.items()}
    assert rsp["epj-app1.hosp.test"][0].detail["answers"] == [["A", "10.20.30.40", 300]]
    assert rsp["epj-app2.hosp.test"][0].detail["answers"] == [["AAAA", "fd00::41", 300]]
    assert [a[:2] for a in rsp["epj.hosp.test"][0].detail["answers"]] == [
        ["CNAME", "epj-app1.hosp.test"], ["A", "10.20.30.40"]]
    assert rsp["40.30.20.10.in-addr.arpa"][0].detail["answers"][0][:2] == ["PTR", "epj-app1.hosp.test"]
    assert rsp["_ldap._tcp.hosp.test"][0].detail["answers"][0][:2] == ["SRV", "0 100 389 dc1.hosp.test"]
    assert rsp["epj-app1.hosp.test"][0].detail["ttl_min"] == 300
    assert rsp["nosuch.hosp.test"][0].status == "NXDOMAIN"
    assert rsp["www.outside.example"][0].status == "REFUSED"


def test_unanswered_question_and_its_retry_share_a_question_key() -> None:
    recs = _by_name()
    never = recs["host.unanswered.test"]
    # dig's query to dnsmasq and dnsmasq's own forward to the dead upstream; no response at all
    assert [r.msg_type for r in never] == ["query", "query"]
    tries = [r for r in recs["epj-app1.hosp.test"] if r.msg_type == "query"][1:]
    assert len(tries) == 2  # dig +tries=2 to 127.0.0.2, where nothing listens
    assert dns.question_key(tries[0]) == dns.question_key(tries[1]) == ("epj-app1.hosp.test", "A", "IN")
    assert tries[0].request_id == tries[1].request_id


# ---------------------------------------------------------------------------------------------
# Bad input: the rule is "drop the datagram" with a reason; never raise, never loop.
# ---------------------------------------------------------------------------------------------
HDR_RSP = bytes.fromhex("beef81800001000100000000")


def test_compression_pointer_loop_is_malformed_not_endless() -> None:
    loop = HDR_RSP + b"\xc0\x0c\x00\x01\x00\x01"  # the name points at itself
    (rec,) = dns.parse(loop)
    assert rec.malformed and "loop" in rec.reason and "offset 12" in rec.reason
    two = HDR_RSP + b"\x01a\xc0\x10" + b"\x01b\xc0\x0c"  # a -> b -> a
    (rec,) = dns.parse(two)
    assert rec.malformed and "loop" in rec.reason


def test_truncated_and_lying_counts_are_malformed_with_partial_fields() -> None:
    (rec,) = dns.parse(b"\x12\x34\x01")
    assert rec.malformed and "12-byte" in rec.reason
    q = HDR_RSP + b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"  # says 1 answer, has none
    (rec,) = dns.parse(q)
    assert rec.malformed and "answer record 1" in rec.reason
    assert rec.operation == "www.example.com" and rec.request_id == 0xBEEF and rec.status == "NOERROR"
    (rec,) = dns.parse(HDR_RSP + b"\x3fabc")
    assert rec.malformed and "label runs past the end" in rec.reason
    long_name = HDR_RSP + b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00\x00\x01\x00\x01"
    (rec,) = dns.parse(long_name)
    assert rec.malformed and "255" in rec.reason


def test_tcp_length_prefix_rules() -> None:
    ctx = dns.new_context("tcp")
    assert dns.cut(b"\x00\x05abcde", 0, context=ctx).status == "malformed"
    msg = bytes.fromhex("beef01000001000000000000") + b"\x00\x00\x01\x00\x01"
    framed = len(msg).to_bytes(2, "big") + msg
    assert dns.cut(framed[:10], 0, at_end=False, context=ctx).status == "need_more"
    c = dns.cut(framed[:10], 0, at_end=True, context=ctx)
    assert c.status == "malformed" and "truncated" in c.reason
    assert dns.cut(framed + framed, len(framed), context=ctx) == dns.Cut("message", len(framed))
    (rec,) = dns.parse(framed, context=ctx)
    assert rec.operation == "<root>" and rec.msg_type == "query"


def test_random_bytes_and_mutated_real_datagrams_never_raise_or_hang() -> None:
    rng = random.Random(53)
    real = [p for _, s, d, p in udp_datagrams(PCAP) if 53 in (s, d)]
    inputs = [rng.randbytes(rng.randint(0, 200)) for _ in range(500)]  # seeded: a failure replays
    for p in real:
        for _ in range(50):
            b = bytearray(p)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            inputs.append(bytes(b[:rng.randint(0, len(b))]) if rng.random() < 0.3 else bytes(b))
    deadline = time.monotonic() + 20
    for data in inputs:
        for transport in ("udp", "tcp"):
            ctx = dns.new_context(transport)
            pos = 0
            while pos < len(data):
                c = dns.cut(data, pos, at_end=True, context=ctx)
                assert c.status in ("message", "malformed") and c.length > 0
                (rec,) = dns.parse(data[pos:pos + c.length], context=ctx)
                assert rec.reason or not rec.malformed
                pos += c.length
        cut_in_pieces(dns, data, dns.new_context("tcp"), seed=len(data))
    assert time.monotonic() < deadline


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("dnsmasq") or not shutil.which("dig"),
                    reason="live recapture needs root, tcpdump, dnsmasq and dig")
@pytest.mark.lab
def test_live_recapture_answers_match_the_hosts_file(tmp_path, monkeypatch) -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_proto_captures", CAPTURES / "make_captures.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    monkeypatch.setattr(mk, "HERE", tmp_path)
    mk.checked(mk.make_dns, "dns.pcap", 2)
    answers = {}
    for _, sport, _dport, payload in udp_datagrams(tmp_path / "dns.pcap"):
        if sport == 53:
            (rec,) = dns.parse(payload)
            assert not rec.malformed
            answers[rec.operation] = (rec.status, [a[:2] for a in rec.detail["answers"]])
    assert answers["epj-app1.hosp.test"] == ("NOERROR", [["A", "10.20.30.40"]])
    assert answers["nosuch.hosp.test"] == ("NXDOMAIN", [])
    assert "host.unanswered.test" not in answers
