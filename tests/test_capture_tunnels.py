"""Tunnelled frames are analysed by their inner packet, as Wireshark shows them; the rest is warned about.

captures/crafted/tunnels/ (made by captures/crafted/make_tunnels.py from real frames of the bundled
sample) wraps the same frames in MPLS inside a VLAN, an MPLS pseudowire with control word, GRE
(plain, with checksum/key/sequence, IPv6 outer, transparent Ethernet bridging), ERSPAN I/II/III,
VXLAN and IP in IP. tshark decodes all of them; every frame's innermost addresses, ports, TCP
sequence number and payload length must equal tshark's. (tests/test_tcp_oracle.py runs the TCP
judgements and conversations of these files against tshark too: it globs captures/.)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from netdiag.capture import read_capture
from netdiag.capture.addresses import format_ip
from netdiag.tcp import connections

ROOT = Path(__file__).resolve().parents[1]
TUNNELS = sorted((ROOT / "captures" / "crafted" / "tunnels").glob("*.pcap"))
DECODED = [p for p in TUNNELS if p.name != "unknown.pcap"]
TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")

FIELDS = ["frame.number", "frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport",
          "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.seq_raw", "tcp.len", "vlan.id", "frame.len",
          "frame.cap_len", "_ws.expert.message"]


def tshark(path: Path, extra: list[str] | None = None) -> list[dict[str, str]]:
    cmd = [TSHARK or "tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a",
           "-E", "aggregator=,", "-o", "ip.defragment:FALSE", *(extra or [])]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return [dict(zip(FIELDS, line.split("\t") + [""] * len(FIELDS), strict=False)) for line in out.splitlines()]


def _last(v: str) -> str:
    return v.split(",")[-1] if v else ""


def innermost(f: dict[str, str]) -> dict:
    """What the packets table should hold for the innermost packet, from tshark's fields."""
    layers = f["frame.protocols"].split(":")
    ips = [x for x in layers if x in ("ip", "ipv6")]
    row: dict = {"frame": int(f["frame.number"])}
    last_eth = max(i for i, x in enumerate(layers) if x == "eth")
    if not ips or not any(x in ("ip", "ipv6") for x in layers[last_eth:]):
        return row | {"ip_version": 0}  # e.g. ARP inside ERSPAN: the mirrored frame carries no IP
    v6 = ips[-1] == "ipv6"
    row |= {"ip_version": 6 if v6 else 4,
            "src_ip": _last(f["ipv6.src" if v6 else "ip.src"]), "dst_ip": _last(f["ipv6.dst" if v6 else "ip.dst"])}
    last_l4 = [x for x in layers if x in ("tcp", "udp")]
    if last_l4 and layers.index(last_l4[-1]) > max(i for i, x in enumerate(layers) if x in ("ip", "ipv6")):
        if last_l4[-1] == "tcp":
            row |= {"src_port": int(_last(f["tcp.srcport"])), "dst_port": int(_last(f["tcp.dstport"])),
                    "tcp_seq": int(_last(f["tcp.seq_raw"])), "payload_len": int(_last(f["tcp.len"]))}
        else:
            row |= {"src_port": int(_last(f["udp.srcport"])), "dst_port": int(_last(f["udp.dstport"]))}
    return row


def ours(path: Path) -> dict[int, dict]:
    cap = read_capture(path, dedup_window_ns=0)
    pk = cap.packets.with_columns(src_ip=format_ip("src_ip_hi", "src_ip_lo"), dst_ip=format_ip("dst_ip_hi", "dst_ip_lo"))
    return {r["frame"]: r for r in pk.to_dicts()}


@pytest.mark.parametrize("path", DECODED, ids=[p.name for p in DECODED])
def test_inner_packet_fields_equal_tshark(path: Path) -> None:
    mine = ours(path)
    theirs = [innermost(f) for f in tshark(path)]
    assert len(theirs) == len(mine) > 0
    bad = []
    for f, want in zip(tshark(path), theirs, strict=True):
        if "pwethnocw" in f["frame.protocols"]:
            # Wireshark guesses whether a pseudowire has a control word (packet-pw-eth.c heuristic)
            # and guesses wrong on this frame (a multicast MAC after the CW); netdiag takes a first
            # nibble 0 as the control word (RFC 4385), which is what make_tunnels.py wrote
            continue
        got = mine[want["frame"]]
        diff = {k: (v, got[k]) for k, v in want.items() if got[k] != v}
        if diff:
            bad.append((want["frame"], diff))
    assert not bad, f"{path.name}: {bad[:5]}"
    # every frame of the sample that carries TCP is analysed by its inner 5-tuple
    assert sum(1 for w in theirs if w.get("payload_len") is not None) >= 25


@pytest.mark.parametrize("path", DECODED, ids=[p.name for p in DECODED])
def test_tunnelled_connections_are_the_inner_ones(path: Path, tmp_path: Path) -> None:
    """The same connections, packets, bytes, state and history as the unwrapped frames give."""
    plain = tmp_path / "plain.pcap"
    subprocess.run(["editcap", "-r", str(ROOT / "captures" / "sample" / "epj-logon.pcap"), str(plain), "1-40"],
                   check=True, capture_output=True)
    cols = ["transport", "client_ip", "client_port", "server_ip", "server_port", "packets_c2s", "packets_s2c",
            "bytes_c2s", "bytes_s2c", "ip_bytes_c2s", "ip_bytes_s2c", "state", "history"]
    want = connections(read_capture(plain, dedup_window_ns=0)).select(cols).rows()
    assert connections(read_capture(path, dedup_window_ns=0)).select(cols).rows() == want
    assert len(want) >= 2


def test_undecoded_encapsulations_are_warned_once_per_kind_with_count_and_first_frame() -> None:
    path = ROOT / "captures" / "crafted" / "tunnels" / "unknown.pcap"
    cap = read_capture(path, dedup_window_ns=0)
    theirs = tshark(path)
    protos = [f["frame.protocols"] for f in theirs]
    # by construction (make_tunnels.py): PPPoE frames 1-2, GRE carrying PPP 3-4, MPLS + unknown payload 5-6
    assert [p.split(":")[2] for p in protos[:6]] == ["pppoes", "pppoes", "ip", "ip", "mpls", "mpls"]
    assert "gre:ppp" in protos[2] and "gre:ppp" in protos[3]
    msgs = [(w.frame, w.message) for w in cap.stats.warnings]
    assert msgs == [
        (1, "2 frame(s) with ethertype 0x8864 (PPPoE session), which netdiag does not decode: counted but not analysed"),
        (3, "2 frame(s) with GRE protocol 0x880b, which netdiag does not decode; the outer IP packet is kept: "
            "counted but not analysed"),
        (5, "2 frame(s) with an MPLS label stack whose payload (first nibble 7) is neither IPv4, IPv6 nor a "
            "pseudowire control word + Ethernet: counted but not analysed"),
    ]
    assert all(w.path == str(path) for w in cap.stats.warnings)
    assert cap.stats.undecoded_frames == 6
    # the GRE frames stay as their outer IP packet (protocol 47), as far as netdiag can go
    gre = cap.packets.filter(pl.col("frame").is_in([3, 4]))
    assert gre["ip_proto"].to_list() == [47, 47]
    assert cap.packets.height == len(theirs)


def test_ip_length_beyond_the_frame_counts_what_the_frame_had(tmp_path: Path) -> None:
    """An IPv4 header claiming 65,000 bytes in a 1,530-byte frame: tcp.len as tshark gives it."""
    bogus = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2", len=65000) / TCP(sport=40000, dport=80, flags="A", seq=1) \
        / Raw(b"x" * 1476)
    fine = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="A", seq=1477) \
        / Raw(b"y" * 100)
    path = tmp_path / "bogus_len.pcap"
    wrpcap(str(path), [bogus, fine])
    cap = read_capture(path)
    theirs = tshark(path)
    assert cap.packets["payload_len"].to_list() == [int(f["tcp.len"]) for f in theirs] == [1476, 100]
    assert "IPv4 total length exceeds packet length" in theirs[0]["_ws.expert.message"]
    assert cap.packets["ip_len"].to_list() == [1516, 140]
    assert cap.stats.ip_length_clamped_frames == 1
    assert [(w.frame, "claims more bytes than the frame had" in w.message) for w in cap.stats.warnings] == [(1, True)]
    c = connections(cap).row(0, named=True)
    assert c["bytes_c2s"] == 1576 and c["ip_bytes_c2s"] == 1516 + 140


def test_snaplen_cut_tunnelled_frames_count_wire_lengths_and_flag_the_cut(tmp_path: Path) -> None:
    """editcap -s 96 on the VXLAN capture: frame.len, frame.cap_len and tcp.len as tshark reads them."""
    src = ROOT / "captures" / "crafted" / "tunnels" / "vxlan.pcap"
    cut = tmp_path / "vxlan_cut.pcap"
    subprocess.run(["editcap", "-s", "160", str(src), str(cut)], check=True, capture_output=True)
    cap = read_capture(cut, dedup_window_ns=0)
    theirs = tshark(cut)
    pk = cap.packets.sort("frame")
    assert pk["frame_len"].to_list() == [int(f["frame.len"]) for f in theirs]
    assert pk["cap_len"].to_list() == [int(f["frame.cap_len"]) for f in theirs]
    tcp_rows = [(int(f["frame.number"]), int(_last(f["tcp.len"]))) for f in theirs if f["tcp.len"]]
    got = dict(zip(pk["frame"].to_list(), pk["payload_len"].to_list(), strict=True))
    assert [(fr, got[fr]) for fr, _ in tcp_rows] == tcp_rows
    # what was captured of each payload, and the rest flagged as cut by the snap length
    assert (pk["payload_captured"] <= pk["payload_len"]).all()
    assert cap.stats.snaplen_cut_frames == int((pk["cap_len"] < pk["frame_len"]).sum()) > 0
    assert cap.stats.ip_length_clamped_frames == 0
