"""sanitize follows every encapsulation the reader decodes (captures/crafted/tunnels, built by
captures/crafted/make_tunnels.py from a real lab logon): inner and outer addresses mapped with
Crypto-PAn, inner MACs pseudonymised, inner payload under the same policy, checksums right, and an
encapsulation netdiag does not decode leaks nothing after its last understood header.

Truth: tshark on the input and the output files, and `yacryptopan` called directly here for the
expected address mapping (an implementation independent of netdiag.sanitize's use of it).
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUNNELS = ROOT / "captures" / "crafted" / "tunnels"
FILES = sorted(TUNNELS.glob("*.pcap"))
KEY_HEX = "0f1e2d3c4b5a69788796a5b4c3d2e1f0" * 2
TSHARK = shutil.which("tshark")

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")

# checksum validation on everywhere Wireshark can check one
CHECKS = ["-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]


def _tshark(path: Path, *args: str) -> list[list[str]]:
    out = subprocess.run([TSHARK, "-n", "-r", str(path), *CHECKS, *args], capture_output=True, text=True,
                         check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], str]:
    """Every tunnel capture sanitised by the CLI with the test key; (outputs by name, stderr)."""
    d = tmp_path_factory.mktemp("tun")
    key = d / "key"
    key.write_text(KEY_HEX + "\n")
    out = d / "out"
    r = subprocess.run([sys.executable, "-m", "netdiag.cli", "sanitize", "--key-file", str(key), "--out", str(out),
                        str(TUNNELS)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return {p.name: out / (p.stem + ".sanitized.pcapng") for p in FILES}, r.stderr


def test_every_tunnel_capture_is_there() -> None:
    assert len(FILES) == 13


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_no_original_address_or_mac_in_output(path: Path, sanitized) -> None:  # noqa: ANN001
    outs, _ = sanitized
    rows = _tshark(path, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "ip.src", "-e", "ip.dst",
                   "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "eth.src", "-e", "eth.dst")
    needles: set[bytes] = set()
    for row in rows:
        for k, cell in enumerate(row):
            for v in filter(None, cell.split(",")):
                if k < 4:
                    packed = ipaddress.ip_address(v).packed
                    if packed.strip(b"\x00"):
                        needles.add(packed)
                else:
                    mac = bytes.fromhex(v.replace(":", ""))
                    if mac not in (b"\xff" * 6, b"\x00" * 6):
                        needles.add(mac)
    assert needles
    data = outs[path.name].read_bytes()
    leaked = sorted(n.hex() for n in needles if n in data)
    assert not leaked, f"{path.name}: original addresses/MACs in the sanitised file: {leaked}"


def _problems(path: Path) -> dict[int, str]:
    """Frames tshark flags (bad checksum of any layer, malformed), by frame number."""
    rows = _tshark(path, "-Y", "_ws.malformed or _ws.expert.severity >= error", "-T", "fields", "-e", "frame.number",
                   "-e", "_ws.expert.message")
    return {int(r[0]): r[1] if len(r) > 1 else "" for r in rows}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_tshark_finds_no_new_bad_checksum_or_malformed_frame(path: Path, sanitized) -> None:  # noqa: ANN001
    outs, _ = sanitized
    before, after = _problems(path), _problems(outs[path.name])
    new = {f: m for f, m in after.items() if f not in before}
    assert not new, f"{path.name}: tshark flags frames of the sanitised file: {new}"
    # and the checks ran: tshark verified the checksums of the (inner) TCP segments of the output
    good = _tshark(outs[path.name], "-Y", 'tcp.checksum.status == "Good"', "-T", "fields", "-e", "frame.number")
    assert good
    if path.stem == "gre_options":  # GRE checksum present: tshark verifies it
        gre = _tshark(outs[path.name], "-T", "fields", "-e", "gre.checksum.status")
        assert gre and all(r[0] in ("1", "Good") for r in gre), gre[:3]


def _inner_tuples(path: Path) -> list[tuple]:
    """(frame, src, dst, proto, sport, dport) of the innermost IP packet of each frame, from tshark."""
    rows = _tshark(path, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.number",
                   "-e", "frame.protocols", "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
                   "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport")
    out = []
    for r in rows:
        protos = r[1].split(":")
        ips = [k for k, p in enumerate(protos) if p in ("ip", "ipv6")]
        if not ips:
            continue
        last = protos[ips[-1]]
        src, dst = (r[2], r[3]) if last == "ip" else (r[4], r[5])
        src, dst = src.split(",")[-1], dst.split(",")[-1]
        l4 = "tcp" if "tcp" in protos[ips[-1]:] else "udp" if "udp" in protos[ips[-1]:] else ""
        ports = (r[6], r[7]) if l4 == "tcp" else (r[8].split(",")[-1], r[9].split(",")[-1]) if l4 == "udp" else ("", "")
        stack = ":".join(protos[:protos.index(l4, ips[-1]) + 1] if l4 else protos[:ips[-1] + 1])
        out.append((int(r[0]), src, dst, l4, *ports, stack))  # stack: the layers up to TCP/UDP
    return out


# Wireshark guesses whether a pseudowire has a control word from the bytes after it: in the input's
# frame 1 the inner destination MAC 33:33:00:00:00:16 reads as "no control word" (the frame is
# shown as data), its pseudonym does not. The only frame whose dissection differs.
HEURISTIC_DIFFERS = {("mpls_pw_cw", 1)}


@pytest.mark.parametrize("path", [p for p in FILES if p.stem != "unknown"], ids=lambda p: p.stem)
def test_inner_five_tuples_are_the_cryptopan_mapping(path: Path, sanitized) -> None:  # noqa: ANN001
    from yacryptopan import CryptoPAn

    cp = CryptoPAn(bytes.fromhex(KEY_HEX))
    outs, _ = sanitized
    before = _inner_tuples(path)
    assert any(t[3] == "tcp" for t in before) and any(t[3] == "udp" for t in before)
    after = [t for t in _inner_tuples(outs[path.name]) if (path.stem, t[0]) not in HEURISTIC_DIFFERS]
    before = [t for t in before if (path.stem, t[0]) not in HEURISTIC_DIFFERS]
    expected = [(f, cp.anonymize(s), cp.anonymize(d), p, sp, dp, stack) for f, s, d, p, sp, dp, stack in before]
    assert after == expected
    # the tunnel endpoints are mapped too
    outer = _tshark(outs[path.name], "-T", "fields", "-E", "occurrence=f", "-e", "ip.src", "-e", "ipv6.src")
    if path.stem not in ("mpls_in_vlan", "mpls_pw_cw"):
        want = cp.anonymize("2001:db8::1" if "ipv6" in path.stem else "192.0.2.1")
        assert want in {c for r in outer for c in r}


def _connections(path: Path) -> list[dict]:
    from netdiag.capture import ReadStats, iter_chunks
    from netdiag.tcp import TcpAnalyzer

    analyzer = TcpAnalyzer(set())
    for chunk in iter_chunks([str(path)], stats=ReadStats()):
        analyzer.feed(chunk, segments=False)
    return analyzer.finish().to_dicts()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_connections_equal_modulo_the_mapping(path: Path, sanitized) -> None:  # noqa: ANN001
    from yacryptopan import CryptoPAn

    cp = CryptoPAn(bytes.fromhex(KEY_HEX))
    outs, _ = sanitized
    before, after = _connections(path), _connections(outs[path.name])
    assert before
    for row in before:
        row["client_ip"], row["server_ip"] = cp.anonymize(row["client_ip"]), cp.anonymize(row["server_ip"])
    assert after == before


def test_undecoded_encapsulation_leaves_only_zeros_after_the_outer_header(sanitized) -> None:  # noqa: ANN001
    outs, stderr = sanitized
    src = TUNNELS / "unknown.pcap"
    rows = _tshark(src, "-T", "fields", "-e", "frame.number", "-e", "frame.protocols", "-e", "ip.hdr_len")
    # where the understood headers end, by what tshark sees: Ethernet (PPPoE), Ethernet + one MPLS
    # label (unknown MPLS payload), Ethernet + outer IPv4 + 4-byte GRE header (GRE carrying PPP)
    ends: dict[int, int] = {}
    first: dict[str, int] = {}
    for frame, protos, hdr_len in rows:
        p = protos.split(":")
        if "pppoes" in p:
            ends[int(frame)], kind = 14, "0x8864"
        elif "mpls" in p:
            ends[int(frame)], kind = 18, "MPLS"
        elif "gre" in p:
            ends[int(frame)], kind = 14 + int(hdr_len.split(",")[0]) + 4, "GRE protocol 0x880b"
        else:
            continue
        first.setdefault(kind, int(frame))
    assert len(ends) == 6 and len(first) == 3
    from netdiag.evidence import read_raw_frames

    orig = read_raw_frames([str(src)]).datas
    clean = read_raw_frames([str(outs["unknown.pcap"])]).datas
    assert [len(d) for d in clean] == [len(d) for d in orig]  # lengths kept
    for frame, end in ends.items():
        data = clean[frame - 1]
        assert any(orig[frame - 1][end:]) and not any(data[end:]), f"frame {frame}: bytes after offset {end} kept"
    # one warning per kind, naming its first frame
    for kind, frame in first.items():
        lines = [ln for ln in stderr.splitlines() if "unknown.pcap" in ln and kind in ln and "warning" in ln]
        assert len(lines) == 1 and f"frame {frame}:" in lines[0] and "2 frames" in lines[0], (kind, stderr)


def test_mpls_inside_gre_and_nested_tunnels(tmp_path: Path) -> None:
    """MPLS inside GRE (decode._link_layer's bare label stack) and a VXLAN inside IP in IP: every
    layer's addresses mapped, checksums (GRE's included) good, payload zero-filled."""
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import GRE, Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.utils import wrpcap
    from yacryptopan import CryptoPAn

    macs = dict(src="00:1b:21:0a:0b:0c", dst="00:1b:21:0d:0e:0f")
    inner_macs = dict(src="00:50:56:01:02:03", dst="00:50:56:04:05:06")
    secret = b"CPR 010203-1234 patient"
    frames = [
        Ether(**macs) / IP(src="10.1.1.1", dst="10.1.1.2") / GRE(proto=0x8847, chksum_present=1)
        / MPLS(label=16, s=0) / MPLS(label=17, s=1) / IP(src="10.9.9.1", dst="10.9.9.2")
        / TCP(sport=40000, dport=9080, flags="PA", seq=1) / secret,
        Ether(**macs) / IPv6(src="fd00::1", dst="fd00::2") / GRE(proto=0x8847) / MPLS(label=18, s=1)
        / IPv6(src="fd00:9::1", dst="fd00:9::2") / UDP(sport=40001, dport=7000) / secret,
        Ether(**macs) / IP(src="10.2.2.1", dst="10.2.2.2") / IP(src="10.3.3.1", dst="10.3.3.2")
        / UDP(sport=50000, dport=4789) / VXLAN(vni=5) / Ether(**inner_macs) / IP(src="10.4.4.1", dst="10.4.4.2")
        / TCP(sport=40002, dport=9080, flags="PA", seq=1) / secret,
    ]
    src = tmp_path / "nested.pcap"
    wrpcap(str(src), [Ether(bytes(f)) for f in frames])
    key = tmp_path / "key"
    key.write_text(KEY_HEX + "\n")
    r = subprocess.run([sys.executable, "-m", "netdiag.cli", "sanitize", "--key-file", str(key), "--out",
                        str(tmp_path / "out"), str(src)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    out = tmp_path / "out" / "nested.sanitized.pcapng"
    data = out.read_bytes()
    cp = CryptoPAn(bytes.fromhex(KEY_HEX))
    originals = ["10.1.1.1", "10.1.1.2", "10.9.9.1", "10.9.9.2", "fd00::1", "fd00::2", "fd00:9::1", "fd00:9::2",
                 "10.2.2.1", "10.2.2.2", "10.3.3.1", "10.3.3.2", "10.4.4.1", "10.4.4.2"]
    for a in originals:
        assert ipaddress.ip_address(a).packed not in data, a
    for m in (*macs.values(), *inner_macs.values()):
        assert bytes.fromhex(m.replace(":", "")) not in data, m
    assert secret not in data and b"010203" not in data
    assert _inner_tuples(src)  # tshark follows all three
    expected = [(f, cp.anonymize(s), cp.anonymize(d), p, sp, dp, st) for f, s, d, p, sp, dp, st in _inner_tuples(src)]
    assert _inner_tuples(out) == expected
    assert not _problems(out)
    gre = _tshark(out, "-Y", "gre.checksum", "-T", "fields", "-e", "gre.checksum.status")
    assert gre == [["1"]] or gre == [["Good"]], gre


def test_tunnels_nested_deeper_than_the_reader_follows(tmp_path: Path) -> None:
    """Six IP-in-IP layers: the reader follows four; sanitize maps those and zero-fills what the
    fifth carries, with one warning naming the frame."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    pkt = IP(src="10.7.0.6", dst="10.7.1.6") / TCP(sport=1234, dport=9080, flags="PA") / b"secret payload"
    for k in range(5, 0, -1):
        pkt = IP(src=f"10.7.0.{k}", dst=f"10.7.1.{k}") / pkt
    frames = [Ether(src="00:1b:21:0a:0b:0c", dst="00:1b:21:0d:0e:0f") / IP(src="10.8.0.1", dst="10.8.0.2") / TCP(),
              Ether(src="00:1b:21:0a:0b:0c", dst="00:1b:21:0d:0e:0f") / pkt]
    src = tmp_path / "deep.pcap"
    wrpcap(str(src), [Ether(bytes(f)) for f in frames])
    key = tmp_path / "key"
    key.write_text(KEY_HEX + "\n")
    r = subprocess.run([sys.executable, "-m", "netdiag.cli", "sanitize", "--key-file", str(key), "--out",
                        str(tmp_path / "out"), str(src)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "frame 2:" in warnings[0] and "nested tunnels" in warnings[0], r.stderr
    from netdiag.evidence import read_raw_frames

    data = read_raw_frames([str(tmp_path / "out" / "deep.sanitized.pcapng")]).datas[1]
    assert len(data) == len(bytes(frames[1]))
    fifth = 14 + 5 * 20  # Ethernet, then the outer IP header and four followed inner ones
    assert not any(data[fifth:])
    for k in range(1, 6):
        assert ipaddress.ip_address(f"10.7.0.{k}").packed not in data
    # Wireshark follows all six layers; the zero-filled fifth inner header is what it flags, nothing else
    assert _problems(tmp_path / "out" / "deep.sanitized.pcapng") == {2: "Bogus IP version"}
