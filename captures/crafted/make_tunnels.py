"""Build captures/crafted/tunnels/*.pcap: real frames wrapped in the encapsulations of SPAN/TAP points.

Each file takes the first FRAMES frames of captures/sample/epj-logon.pcap (a real lab logon: DNS,
TCP handshakes, GIOP) and wraps every one of them, keeping its timestamp, in one encapsulation
built with scapy's layers: MPLS inside a VLAN, MPLS pseudowire with a control word, GRE (plain and
with checksum/key/sequence, IPv4 and IPv6 outer), GRE transparent Ethernet bridging, ERSPAN I, II,
III (with and without the platform sub-header), VXLAN, and IP in IP. `unknown.pcap` holds frames
whose encapsulation netdiag does not decode (PPPoE session, GRE carrying PPP, MPLS with an unknown
payload), each kind twice, between ordinary frames.

Deterministic: `python captures/crafted/make_tunnels.py` rewrites the same bytes. The truth for
the tests is tshark on these files (tests/test_capture_tunnels.py, tests/test_tcp_oracle.py).
"""

from __future__ import annotations

from pathlib import Path

from scapy.contrib.erspan import ERSPAN_I, ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw
from scapy.utils import PcapReader, wrpcap

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample" / "epj-logon.pcap"
OUT = Path(__file__).resolve().parent / "tunnels"
FRAMES = 40

# documentation addresses for the tunnel endpoints (RFC 5737 / RFC 3849)
OUTER = dict(src="192.0.2.1", dst="192.0.2.2")
OUTER6 = dict(src="2001:db8::1", dst="2001:db8::2")
MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _ip_of(frame: Ether):  # noqa: ANN202 - the IP layer of an Ethernet frame
    return frame.payload


def _gre(frame: Ether, **kw) -> GRE:
    """GRE carrying the frame's IP packet, protocol type by IP version."""
    return GRE(proto=0x86DD if frame.type == 0x86DD else 0x0800, **kw)


# encapsulations that carry an IP packet, not an Ethernet frame: only the sample's IP frames go in
IP_ONLY = {"mpls_in_vlan", "gre_plain", "gre_options", "gre_ipv6_outer", "ip_in_ip"}


WRAPS = {
    # MPLS inside a VLAN: two labels, IPv4 after the bottom of the stack
    "mpls_in_vlan": lambda f: Ether(**MACS) / Dot1Q(vlan=42) / MPLS(label=100, s=0) / MPLS(label=200, s=1)
    / _ip_of(f),
    # MPLS pseudowire: label, control word (4 zero bytes), the original Ethernet frame
    "mpls_pw_cw": lambda f: Ether(**MACS) / MPLS(label=300, s=1) / Raw(b"\x00\x00\x00\x00") / f,
    "gre_plain": lambda f: Ether(**MACS) / IP(**OUTER) / _gre(f) / _ip_of(f),
    "gre_options": lambda f: Ether(**MACS) / IP(**OUTER)
    / _gre(f, chksum_present=1, key_present=1, seqnum_present=1, key=7, seqence_number=1) / _ip_of(f),
    "gre_ipv6_outer": lambda f: Ether(**MACS) / IPv6(**OUTER6) / _gre(f) / _ip_of(f),
    "gre_teb": lambda f: Ether(**MACS) / IP(**OUTER) / GRE(proto=0x6558, key_present=1, key=9) / f,
    "erspan_1": lambda f: Ether(**MACS) / IP(**OUTER) / GRE(proto=0x88BE) / ERSPAN_I() / f,
    "erspan_2": lambda f: Ether(**MACS) / IP(**OUTER) / GRE(proto=0x88BE, seqnum_present=1, seqence_number=5)
    / ERSPAN_II(session_id=1, vlan=42) / f,
    "erspan_3": lambda f: Ether(**MACS) / IP(**OUTER) / GRE(proto=0x22EB, seqnum_present=1)
    / ERSPAN_III(session_id=2, o=0) / f,
    "erspan_3_platform": lambda f: Ether(**MACS) / IP(**OUTER) / GRE(proto=0x22EB, seqnum_present=1)
    / ERSPAN_III(session_id=3, o=1) / ERSPAN_PlatformSpecific(platf_id=3) / f,
    "vxlan": lambda f: Ether(**MACS) / IP(**OUTER) / UDP(sport=49152, dport=4789) / VXLAN(vni=4242) / f,
    "ip_in_ip": lambda f: Ether(**MACS) / IP(proto=41 if f.type == 0x86DD else 4, **OUTER) / _ip_of(f),
}

UNDECODED = {
    "pppoe": lambda f: Ether(**MACS, type=0x8864) / PPPoE(sessionid=1) / PPP(proto=0x0021) / _ip_of(f),
    "gre_ppp": lambda f: Ether(**MACS) / IP(**OUTER) / GRE(proto=0x880B) / Raw(bytes(_ip_of(f))),
    "mpls_unknown": lambda f: Ether(**MACS) / MPLS(label=400, s=1) / Raw(b"\x70" + bytes(_ip_of(f))[1:]),
}


def _frames() -> list[Ether]:
    out = []
    with PcapReader(str(SAMPLE)) as rd:
        for pkt in rd:
            out.append(pkt)
            if len(out) == FRAMES:
                break
    return out


def build(out_dir: Path = OUT) -> list[Path]:
    """Write every tunnel capture into out_dir; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = _frames()
    paths = []
    for name, wrap in WRAPS.items():
        pkts = []
        for f in frames:
            if name in IP_ONLY and f.type not in (0x0800, 0x86DD):
                continue
            w = Ether(bytes(wrap(f)))  # build once, freeze the bytes (checksums, lengths)
            w.time = f.time
            pkts.append(w)
        path = out_dir / f"{name}.pcap"
        wrpcap(str(path), pkts)
        paths.append(path)
    pkts = []
    for i, f in enumerate(f for f in frames[:14] if f.type == 0x0800):
        kind = list(UNDECODED)[i // 2 % len(UNDECODED)] if i < 2 * len(UNDECODED) else None
        w = Ether(bytes(UNDECODED[kind](f))) if kind else Ether(bytes(f))
        w.time = f.time
        pkts.append(w)
    path = out_dir / "unknown.pcap"
    wrpcap(str(path), pkts)
    paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build():
        print(p.relative_to(ROOT.parent), p.stat().st_size)
