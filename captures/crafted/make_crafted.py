#!/usr/bin/env python3
"""Write the crafted edge-case captures in captures/crafted/ (deterministic; run from anywhere).

Packets are built with scapy; the pcap and pcapng containers are written here with struct, so
every container feature (byte order, ns magic, if_tsresol as a power of 10 or 2, if_tsoffset,
several sections and interfaces, SPB/obsolete PB, corrupt lengths) is under our control.
The tests compare netdiag's decoding of these files with tshark's on the same bytes, and
`EXPECTED` (written to expected.json) records facts known by construction (link types,
how many SPAN copies were inserted) that tshark cannot tell us.

Usage: python captures/crafted/make_crafted.py
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

from scapy.all import ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6, Raw, fragment  # noqa: F401
from scapy.layers.inet import IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.ipsec import AH
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD

OUT = Path(__file__).resolve().parent
BAD = OUT / "bad"
T0 = 1_700_000_000_000_000_000  # ns
EXPECTED: dict[str, dict] = {}
MAC_C, MAC_S = "02:00:00:00:00:01", "02:00:00:00:00:02"


# ----------------------------------------------------------------------------- containers
def pcap_bytes(frames, linktype, *, big=False, nano=False, snaplen=65535) -> bytes:
    """frames: (ts_ns, data bytes, orig_len or None); data longer than snaplen is cut."""
    e = ">" if big else "<"
    out = [struct.pack(e + "IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data, orig in frames:
        orig = len(data) if orig is None else orig
        data = data[:snaplen]
        frac = ts % 10**9 if nano else (ts % 10**9) // 1000
        out.append(struct.pack(e + "IIII", ts // 10**9, frac, len(data), orig) + data)
    return b"".join(out)


def _opts(e, options) -> bytes:
    out = b""
    for code, value in options:
        out += struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)
    if options:
        out += struct.pack(e + "HH", 0, 0)
    return out


def block(e, btype, body) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def shb(e) -> bytes:
    return block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(e, link, snaplen=65535, tsresol=None, tsoffset=None) -> bytes:
    options = []
    if tsresol is not None:
        options.append((9, bytes([tsresol])))
    if tsoffset is not None:
        options.append((14, struct.pack(e + "q", tsoffset)))
    return block(e, 1, struct.pack(e + "HHI", link, 0, snaplen) + _opts(e, options))


def units(ts_ns, tsresol) -> int:
    """ns since the epoch (before if_tsoffset) in the interface's units, exactly representable."""
    if tsresol & 0x80:
        n = tsresol & 0x7F
        return (ts_ns // 10**9) * (1 << n) + ((ts_ns % 10**9) * (1 << n)) // 10**9
    return ts_ns // 10 ** (9 - tsresol) if tsresol <= 9 else ts_ns * 10 ** (tsresol - 9)


def epb(e, iface, ts_units, data, orig=None) -> bytes:
    orig = len(data) if orig is None else orig
    return block(e, 6, struct.pack(e + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data), orig) + data)


def pb(e, iface, ts_units, data) -> bytes:
    return block(e, 2, struct.pack(e + "HHIIII", iface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(data),
                                   len(data)) + data)


def spb(e, data) -> bytes:
    return block(e, 3, struct.pack(e + "I", len(data)) + data)


def isb(e, iface, ts_units) -> bytes:
    return block(e, 5, struct.pack(e + "III", iface, ts_units >> 32, ts_units & 0xFFFFFFFF))


def write(name, data, **expected) -> None:
    path = OUT / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    EXPECTED[name] = expected


# ----------------------------------------------------------------------------- packets
def tcp_conv(ip_c, ip_s, cport, sport, *, v6=False, payload=b"GIOP\x01\x02\x01\x00\x00\x00\x00\x10" + b"x" * 16):
    """A small TCP conversation (L3 packets): handshake with every option, data, SACK, FIN."""
    L3 = IPv6 if v6 else IP

    def ip(src, dst):
        return L3(src=src, dst=dst) if v6 else IP(src=src, dst=dst, id=0x1234, ttl=61)

    c_opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1000, 0)), ("NOP", None), ("WScale", 7)]
    s_opts = [("MSS", 1400), ("NOP", None), ("NOP", None), ("SAckOK", b""), ("NOP", None), ("WScale", 2),
              ("Timestamp", (5000, 1000))]
    return [
        ip(ip_c, ip_s) / TCP(sport=cport, dport=sport, flags="S", seq=4_000_000_000, window=64240, options=c_opts),
        ip(ip_s, ip_c) / TCP(sport=sport, dport=cport, flags="SA", seq=17, ack=4_000_000_001, window=65160,
                             options=s_opts),
        ip(ip_c, ip_s) / TCP(sport=cport, dport=sport, flags="A", seq=4_000_000_001, ack=18, window=502,
                             options=[("NOP", None), ("NOP", None), ("Timestamp", (1001, 5000))]),
        ip(ip_c, ip_s) / TCP(sport=cport, dport=sport, flags="PA", seq=4_000_000_001, ack=18, window=502) / Raw(payload),
        ip(ip_s, ip_c) / TCP(sport=sport, dport=cport, flags="A", seq=18, ack=4_000_000_001, window=500,
                             options=[("NOP", None), ("NOP", None),
                                      ("SAck", (4_000_000_011, 4_000_000_021, 4_000_000_025, 4_000_000_029))]),
        ip(ip_s, ip_c) / TCP(sport=sport, dport=cport, flags="FA", seq=18, ack=4_000_000_029, window=500),
        ip(ip_c, ip_s) / TCP(sport=cport, dport=sport, flags="RA", seq=4_000_000_029, ack=19, window=0),
    ]


def udp_pkt(src, dst, v6=False):
    L3 = IPv6 if v6 else IP
    return L3(src=src, dst=dst) / UDP(sport=40000, dport=40001) / Raw(b"udp-payload-123")


def eth(l3, vlans=()):
    if l3 is None:
        return Ether(src=MAC_C, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.1.1.1", pdst="10.1.1.2")
    frame = Ether(src=MAC_C, dst=MAC_S)
    if len(vlans) == 2:
        frame = frame / Dot1AD(vlan=vlans[0]) / Dot1Q(vlan=vlans[1])
    elif len(vlans) == 1:
        frame = frame / Dot1Q(vlan=vlans[0])
    return frame / l3


def timed(frames, start=T0, step_ns=1_000_123):
    return [(start + i * step_ns, bytes(f), None) for i, f in enumerate(frames)]


# ----------------------------------------------------------------------------- files
def main() -> None:
    conv4 = tcp_conv("10.0.0.1", "10.0.0.2", 50000, 2809)
    conv6 = tcp_conv("2001:db8::1", "2001:db8::2", 50001, 9100, v6=True)

    # Ethernet: untagged, 802.1Q, QinQ, ARP (non-IP), a padded short frame (trailer not payload)
    eth_frames = [eth(p) for p in conv4[:3]] + [eth(p, (100,)) for p in conv4[3:5]]
    eth_frames += [eth(p, (200, 300)) for p in conv4[5:]] + [eth(None), eth(udp_pkt("10.0.0.1", "10.0.0.9"))]
    short = bytes(eth(IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=2809, dport=50000, flags="A", seq=19,
                                                                  ack=4_000_000_029))) + b"\0" * 6
    eth_bytes = timed(eth_frames) + [(T0 + 50_000_000, short, None)]
    eth_bytes += timed([eth(p) for p in conv6], start=T0 + 60_000_000)
    eth_bytes.append((T0 + 90_000_000, bytes(eth(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())), None))
    write("eth_vlan_qinq.pcap", pcap_bytes(eth_bytes, 1), link_type=1)

    # Linux cooked captures
    sll = [CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=b"\x02\0\0\0\0\x01\0\0", proto=0x0800) / p
           for p in conv4] + [CookedLinux(pkttype=4, lladdrtype=1, lladdrlen=6, proto=0x86DD) / p for p in conv6]
    write("sll.pcap", pcap_bytes(timed(sll), 113), link_type=113)
    sll2 = [CookedLinuxV2(proto=0x0800, ifindex=2, pkttype=0, lladdrtype=1, lladdrlen=6) / p for p in conv4]
    sll2 += [CookedLinuxV2(proto=0x86DD, ifindex=3, pkttype=4, lladdrtype=1, lladdrlen=6) / p for p in conv6]
    write("sll2.pcap", pcap_bytes(timed(sll2), 276), link_type=276)

    # raw IP in its link-type variants
    write("raw101.pcap", pcap_bytes(timed(conv4 + conv6 + [udp_pkt("10.0.0.1", "10.0.0.3")]), 101), link_type=101)
    write("raw12.pcap", pcap_bytes(timed(conv4[:3]), 12), link_type=12)
    write("raw14.pcap", pcap_bytes(timed(conv4[:3]), 14), link_type=14)
    write("raw228_ipv4.pcap", pcap_bytes(timed(conv4), 228), link_type=228)
    write("raw229_ipv6.pcap", pcap_bytes(timed(conv6), 229), link_type=229)

    # BSD loopback: NULL (host byte order family) and LOOP (network order); 30 = AF_INET6 on macOS
    null_le = [struct.pack("<I", 2) + bytes(p) for p in conv4] + [struct.pack("<I", 30) + bytes(p) for p in conv6]
    null_be = [struct.pack(">I", 2) + bytes(p) for p in conv4] + [struct.pack(">I", 24) + bytes(p) for p in conv6]
    loop = [struct.pack(">I", 2) + bytes(p) for p in conv4] + [struct.pack(">I", 24) + bytes(p) for p in conv6]
    write("null_le.pcap", pcap_bytes(timed(null_le), 0), link_type=0)
    write("null_be.pcap", pcap_bytes(timed(null_be), 0, big=True), link_type=0)
    write("loop108.pcap", pcap_bytes(timed(loop), 108), link_type=108)

    # IPv6 extension headers (and fragments: offset 0 decoded as TCP/UDP, later ones not)
    a6, b6 = "2001:db8::10", "2001:db8::20"
    big_udp = IPv6(src=a6, dst=b6) / IPv6ExtHdrFragment(id=7, m=1, offset=0, nh=17) / \
        UDP(sport=40000, dport=40001, len=8 + 2000) / Raw(b"f" * 1000)
    ext = [
        IPv6(src=a6, dst=b6) / IPv6ExtHdrHopByHop() / TCP(sport=40100, dport=9443, flags="S", options=[("MSS", 1220)]),
        IPv6(src=a6, dst=b6) / IPv6ExtHdrRouting(addresses=["2001:db8::99"]) / UDP(sport=40000, dport=40002) / Raw(b"rt"),
        IPv6(src=a6, dst=b6) / IPv6ExtHdrDestOpt() / TCP(sport=40101, dport=9443, flags="S", options=[("WScale", 8)]),
        IPv6(src=a6, dst=b6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(sport=40000, dport=40003) / Raw(b"x" * 9),
        big_udp,
        IPv6(src=a6, dst=b6) / IPv6ExtHdrFragment(id=7, m=0, offset=126, nh=17) / Raw(b"g" * 1000),
        IPv6(src=a6, dst=b6, nh=51) / AH(nh=6, payloadlen=4, spi=0x100, seq=1, icv=b"\x11" * 12) /
        TCP(sport=40102, dport=9443, flags="PA", seq=1, ack=1) / Raw(b"ah-protected"),
    ]
    write("ipv6_ext.pcap", pcap_bytes(timed([eth(p) for p in ext]), 1), link_type=1)

    # IPv4 options and fragments
    frags = fragment(IP(src="10.0.0.1", dst="10.0.0.2", id=777) / UDP(sport=40000, dport=40001) /
                     Raw(b"F" * 2500), fragsize=1000)
    tfrags = fragment(IP(src="10.0.0.1", dst="10.0.0.2", id=778) / TCP(sport=50000, dport=2809, flags="PA", seq=5,
                                                                       ack=6) / Raw(b"T" * 1500), fragsize=800)
    v4 = [IP(src="10.0.0.1", dst="10.0.0.2", options=[IPOption_RR(routers=["10.9.9.9", "0.0.0.0"]), IPOption_NOP()]) /
          TCP(sport=50000, dport=2809, flags="S", options=[("MSS", 536)]),
          IP(src="10.0.0.2", dst="10.0.0.1", options=[IPOption_NOP()] * 4) / UDP(sport=53, dport=40000) / Raw(b"opt")]
    write("ipv4_opts_frag.pcap", pcap_bytes(timed([eth(p) for p in v4 + frags + tfrags]), 1), link_type=1)

    # classic pcap: both byte orders, microsecond and nanosecond magic (odd ns on purpose)
    odd = [(T0 + i * 1_000_000_007 + 123_456_789, bytes(eth(p)), None) for i, p in enumerate(conv4)]
    write("pcap_be_us.pcap", pcap_bytes(odd, 1, big=True), link_type=1)
    write("pcap_le_ns.pcap", pcap_bytes(odd, 1, nano=True), link_type=1)
    write("pcap_be_ns.pcap", pcap_bytes(odd, 1, big=True, nano=True), link_type=1)

    # pcapng: section 1 little-endian with three interfaces (Ethernet ns, raw IP us, SLL2 2^-20 s
    # with an if_tsoffset), an ISB, an obsolete PB; section 2 big-endian with Ethernet 10^-4 s
    e = "<"
    s1 = [shb(e), idb(e, 1, tsresol=9), idb(e, 101), idb(e, 276, tsresol=0x94, tsoffset=3600)]
    t = T0 + 7
    for i, p in enumerate(conv4):
        iface = i % 3
        data = bytes(eth(p)) if iface == 0 else bytes(p) if iface == 1 else bytes(sll2[i])
        ts = t + i * 333_333_333
        res = {0: 9, 1: 6, 2: 0x94}[iface]
        tsu = units(ts - (3600 * 10**9 if iface == 2 else 0), res)
        s1.append(pb(e, 0, units(ts, 9), data) if i == 4 else epb(e, iface, tsu, data))
    s1.append(isb(e, 0, units(t + 3 * 10**9, 9)))
    e = ">"
    s2 = [shb(e), idb(e, 1, tsresol=4)]
    for i, p in enumerate(conv6):
        s2.append(epb(e, 0, units(T0 + 5 * 10**9 + i * 1_234_500, 4), bytes(eth(p))))
    write("pcapng_multi.pcapng", b"".join(s1 + s2), link_types=[1, 101, 276, 1], sections=2)

    # pcapng with a Simple Packet Block (no timestamp; interface 0 snaplen cuts)
    e = "<"
    write("pcapng_spb.pcapng", b"".join([shb(e), idb(e, 1, snaplen=60), epb(e, 0, units(T0, 6), bytes(eth(conv4[0]))[:60],
                                                                            len(bytes(eth(conv4[0])))),
                                         spb(e, bytes(eth(conv4[1]))[:60])]),
          link_type=1)

    # gzip, detected by magic (the name says .pcap)
    write("gzipped_eth.pcap", gzip.compress((OUT / "eth_vlan_qinq.pcap").read_bytes(), mtime=0), link_type=1)

    # SPAN duplicates: every frame of a conversation mirrored twice (+15 us), one three times;
    # a byte-identical resend 300 ms later (a real retransmission: kept); a near copy (kept)
    span = []
    frames = [bytes(eth(p)) for p in conv4]
    dup_count = 0
    for i, f in enumerate(frames):
        ts = T0 + i * 2_000_000
        span.append((ts, f, None))
        span.append((ts + 15_000, f, None))
        dup_count += 1
        if i == 3:
            span.append((ts + 40_000, f, None))
            dup_count += 1
    near = bytearray(frames[3])
    near[-1] ^= 0xFF
    span.append((T0 + 3 * 2_000_000 + 60_000, bytes(near), None))
    span.append((T0 + 3 * 2_000_000 + 300_000_000, frames[3], None))
    span.sort(key=lambda r: r[0])
    write("span_dups.pcap", pcap_bytes(span, 1), link_type=1, duplicates=dup_count)

    # snaplen-cut frames (snaplen 68: payload partly or not captured)
    big = [eth(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=50000, dport=2809, flags="PA", seq=1, ack=1) /
               Raw(bytes(range(256)) * 4)),
           eth(IPv6(src=a6, dst=b6) / TCP(sport=50000, dport=2809, flags="PA", seq=1, ack=1) / Raw(b"z" * 300)),
           eth(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / Raw(b"u" * 500))]
    write("snaplen68.pcap", pcap_bytes(timed(big), 1, snaplen=68), link_type=1, snaplen_cut=3)

    # several files: a ring buffer (no overlap) and two overlapping captures
    allf = timed([eth(p) for p in conv4 + conv6], step_ns=10_000_000)
    write("ring/ring_00001_20231114.pcap", pcap_bytes(allf[:7], 1), link_type=1)
    write("ring/ring_00002_20231114.pcap", pcap_bytes(allf[7:], 1), link_type=1)
    write("overlap_a.pcap", pcap_bytes(allf[0::2], 1), link_type=1)
    write("overlap_b.pcapng", b"".join([shb("<"), idb("<", 1, tsresol=9)] +
                                      [epb("<", 0, ts, d) for ts, d, _ in allf[1::2]]), link_type=1)

    # ----------------------------------------------------------------------- bad input
    good = pcap_bytes(timed([eth(p) for p in conv4]), 1)
    rec = [24]
    for _ in range(len(conv4)):
        rec.append(rec[-1] + 16 + struct.unpack("<I", good[rec[-1] + 8:rec[-1] + 12])[0])
    write("bad/truncated_last_record.pcap", good[:rec[-2] + 16 + 10], frames_ok=6, offset=rec[-2])
    write("bad/truncated_record_header.pcap", good[:rec[-2] + 7], frames_ok=6, offset=rec[-2])
    huge = bytearray(good)
    struct.pack_into("<I", huge, rec[4] + 8, 0x7FFF0000)
    write("bad/record_too_big.pcap", bytes(huge), frames_ok=4, offset=rec[4])
    over = pcap_bytes(timed([eth(p) for p in conv4[:2]]), 1, snaplen=2000)
    over = over[:16] + struct.pack("<I", 60) + over[20:]  # header says snaplen 60; records are longer
    write("bad/record_over_snaplen.pcap", over, frames_ok=2)
    e = "<"
    blocks = [shb(e), idb(e, 1)] + [epb(e, 0, units(T0 + i * 10**6, 6), bytes(eth(p))) for i, p in enumerate(conv4)]
    off = sum(len(b) for b in blocks[:5])
    corrupt = bytearray(b"".join(blocks))
    struct.pack_into("<I", corrupt, off + 4, 0x0FFF_FFF3)
    write("bad/corrupt_block_length.pcapng", bytes(corrupt), frames_ok=3, offset=off)
    unk = [shb(e), idb(e, 1), idb(e, 147)]
    for i, p in enumerate(conv4):
        unk.append(epb(e, i % 2, units(T0 + i * 10**6, 6), bytes(eth(p)) if i % 2 == 0 else b"\xde\xad" + bytes(p)))
    write("bad/unknown_link_type.pcapng", b"".join(unk), frames_ok=7, unknown_frames=3, unknown_interface=1)
    write("bad/not_a_capture.pcap", b"This is a text file, not a packet capture.\n" * 3)
    write("bad/empty.pcap", b"")
    write("bad/header_only.pcap", pcap_bytes([], 1), frames_ok=0)
    write("bad/truncated_gzip.pcap.gz", gzip.compress(good, mtime=0)[:-60], frames_ok=None)

    (OUT / "expected.json").write_text(json.dumps(EXPECTED, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
