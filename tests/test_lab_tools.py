"""The lab's own helpers without root: the bridge's frame rules and the capture-side frame cutter.

Frames are built with scapy (an independent encoder); the cut file is read back with tshark.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from captures.lab.impair import Rule, frame_info, summary
from captures.lab.netns import LabError
from captures.lab.run import cut_frames, read_pcap

LAB = Path(__file__).resolve().parents[1] / "captures" / "lab"


def _syn(sport: int, dport: int = 9100) -> bytes:
    return bytes(Ether() / IP(src="10.77.1.20", dst="10.77.1.10") / TCP(sport=sport, dport=dport, flags="S", seq=1000))


def test_frame_info_reads_addresses_ports_flags_and_payload_length_from_scapy_frames():
    info = frame_info(bytes(Ether() / IP(src="10.77.1.20", dst="10.77.1.10") /
                            TCP(sport=40000, dport=9100, flags="PA", seq=7) / (b"GIOP" + b"\0" * 96)))
    assert (info["proto"], info["src"], info["dst"], info["sport"], info["dport"]) == \
        ("tcp", "10.77.1.20", "10.77.1.10", 40000, 9100)
    assert info["flags"] == "PA" and info["seq"] == 7 and info["payload_len"] == 100
    udp = frame_info(bytes(Ether() / IP(src="10.77.1.20", dst="10.77.1.53") / UDP(sport=5353, dport=53) / (b"x" * 30)))
    assert udp["proto"] == "udp" and udp["payload_len"] == 30
    assert summary(info) == "tcp 10.77.1.20:40000>10.77.1.10:9100 PA seq=7 len=100"
    assert frame_info(b"\x00" * 10)["proto"] == "other"   # runt: no exception


def test_rule_drops_only_the_first_syn_to_the_port_in_its_direction():
    rule = Rule({"dir": "c2s", "proto": "tcp", "dport": 9100, "syn": True, "nth": [1], "action": "drop"}, 0)
    frames = [_syn(40000), _syn(40000), _syn(40001)]
    assert [rule.decide("c2s", frame_info(f), f) for f in frames] == ["drop", None, None]
    synack = bytes(Ether() / IP() / TCP(sport=9100, dport=40000, flags="SA"))
    assert rule.decide("c2s", frame_info(synack), synack) is None
    assert rule.decide("s2c", frame_info(frames[0]), frames[0]) is None


def test_rule_contains_matches_payload_text_and_counts_only_matching_frames():
    rule = Rule({"dir": "c2s", "proto": "tcp", "contains": "authenticate", "nth": [2], "action": "drop"}, 0)
    auth = bytes(Ether() / IP() / TCP(dport=9100, flags="PA") / b"GIOP....authenticate....")
    other = bytes(Ether() / IP() / TCP(dport=9100, flags="PA") / b"GIOP....logout....")
    got = [rule.decide("c2s", frame_info(f), f) for f in (auth, other, auth, auth)]
    assert got == [None, None, "drop", None]
    with pytest.raises(ValueError, match="action"):
        Rule({"action": "reorder"}, 3)


def test_rule_drops_the_first_bare_ack_after_the_arming_frame_only():
    # lost_ack_dsack: "the client's first bare ACK after the server's 2nd reply frame"
    rule = Rule({"dir": "c2s", "proto": "tcp", "dport": 9100, "pure_ack": True, "nth": [1], "action": "drop",
                 "after": {"dir": "s2c", "proto": "tcp", "sport": 9100, "payload": True, "nth": [2]}}, 0)
    reply = bytes(Ether() / IP() / TCP(sport=9100, dport=40000, flags="PA") / (b"GIOP" + b"\0" * 40))
    ack = bytes(Ether() / IP() / TCP(sport=40000, dport=9100, flags="A"))
    data = bytes(Ether() / IP() / TCP(sport=40000, dport=9100, flags="PA") / (b"GIOP" + b"\0" * 40))
    fin = bytes(Ether() / IP() / TCP(sport=40000, dport=9100, flags="FA"))
    seq = [("c2s", ack), ("s2c", reply), ("c2s", ack), ("s2c", reply), ("c2s", data), ("c2s", fin), ("c2s", ack),
           ("c2s", ack)]
    got = []
    for d, f in seq:
        info = frame_info(f)
        got.append(rule.decide(d, info, f))
        rule.arm(d, info, f)
    assert got == [None, None, None, None, None, None, "drop", None]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_cut_frames_removes_exactly_the_chosen_frames_as_tshark_sees_it(tmp_path):
    src = LAB / "baseline.pcap"
    pcap = tmp_path / "cut.pcap"
    shutil.copyfile(src, pcap)
    _, _, before = read_pcap(src)
    removed = cut_frames(pcap, [{"every": 25}, {"contains": "getWorklist", "nth": 1}])
    numbers = [r["frame_number"] for r in removed]
    assert numbers == sorted(set(numbers))
    assert {n for n in range(25, len(before) + 1, 25)} <= set(numbers)
    assert any(r["giop_request_op"] == "getWorklist" for r in removed)
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-o", "frame.generate_md5_hash:TRUE", "-T", "fields",
                          "-e", "frame.md5_hash"], capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert len(out) == len(before) - len(removed)
    assert not {r["md5"] for r in removed} & set(out)
    # each removed record names the original frame by number, time and MD5
    for r in removed:
        _h, frame, ts = before[r["frame_number"] - 1]
        assert r["md5"] == hashlib.md5(frame).hexdigest() and r["ts_ns"] == ts


def test_read_pcap_names_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "garbage.pcap"
    bad.write_bytes(b"not a capture at all, just text....")
    with pytest.raises(LabError, match="garbage.pcap: not a classic pcap"):
        read_pcap(bad)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((LAB / "baseline.pcap").read_bytes()[:1000])
    with pytest.raises(LabError, match=r"cut.pcap: frame \d+ at offset \d+ cut short"):
        read_pcap(cut)
