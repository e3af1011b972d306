"""Test support for the HTTP/TLS/DNS parser tests: bytes from real captures, truth from tshark.

- `tcp_connections(pcap)`: every TCP connection with its payload segments in capture order,
  taken in-order only with dpkt (no reassembly logic beyond dropping bytes already seen; the
  real reassembler is tested elsewhere). Connections are numbered like tshark's tcp.stream.
- `drive(module, conn)`: feeds both directions segment by segment in time order through
  cut()/parse() with one shared context (as the stream driver does), then at_end.
- `udp_datagrams(pcap)`: (frame, sport, dport, payload) for UDP datagrams (not ICMP-quoted ones).
- `pdml_packets(pcap)`: tshark's PDML, one element per packet, to read fields in the order
  tshark dissected them (several HTTP messages or TLS records in one frame stay separate).
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import dpkt

from netdiag.protocols import Cut, Record

CAPTURES = Path(__file__).resolve().parent.parent / "captures" / "proto"
HAVE_TSHARK = shutil.which("tshark") is not None


@dataclass
class Conn:
    stream: int  # tshark tcp.stream
    client: tuple[str, int]
    server: tuple[str, int]
    segments: list[tuple[int, int, bytes]] = field(default_factory=list)  # (frame, direction, bytes)

    def data(self, direction: int) -> bytes:
        return b"".join(b for _, d, b in self.segments if d == direction)


def _ip_str(raw: bytes) -> str:
    import ipaddress
    return str(ipaddress.ip_address(raw))


def tcp_connections(pcap: Path) -> list[Conn]:
    conns: dict[tuple, Conn] = {}
    next_seq: dict[tuple, int] = {}
    with open(pcap, "rb") as f:
        for frame, (_, buf) in enumerate(dpkt.pcap.Reader(f), start=1):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            a, b = (_ip_str(ip.src), tcp.sport), (_ip_str(ip.dst), tcp.dport)
            key = tuple(sorted((a, b)))
            conn = conns.get(key)
            if conn is None:
                # The first packet's sender is the client when it is a SYN (always, here).
                conn = conns[key] = Conn(len(conns), a, b)
            direction = 0 if a == conn.client else 1
            flow = (key, direction)
            if tcp.flags & dpkt.tcp.TH_SYN:
                next_seq[flow] = (tcp.seq + 1) & 0xFFFFFFFF
                continue
            payload = bytes(tcp.data)
            if not payload:
                continue
            expected = next_seq.get(flow, tcp.seq)
            skip = (expected - tcp.seq) & 0xFFFFFFFF
            if skip >= len(payload) or skip > 0x7FFFFFFF:
                if skip > 0x7FFFFFFF:
                    raise AssertionError(f"{pcap} frame {frame}: gap in an in-order stream")
                continue  # a retransmission of bytes already taken
            conn.segments.append((frame, direction, payload[skip:]))
            next_seq[flow] = (tcp.seq + len(payload)) & 0xFFFFFFFF
    return list(conns.values())


@dataclass
class Cutted:
    direction: int
    offset: int
    cut: Cut
    records: list[Record]


def drive(module: ModuleType, conn: Conn, *, context: Any = None, pass_direction: bool = True
          ) -> list[Cutted]:
    """Cut and parse both directions as segments arrive, then at the end of the connection."""
    ctx = context if context is not None else module.new_context()
    bufs = [b"", b""]
    pos = [0, 0]
    out: list[Cutted] = []
    kw = (lambda d: {"direction": d}) if pass_direction else (lambda d: {})

    def pump(d: int, at_end: bool) -> None:
        for _ in range(100_000):  # bounded: every non-need_more cut consumes >= 1 byte
            if pos[d] >= len(bufs[d]):
                return
            c = module.cut(bufs[d], pos[d], at_end=at_end, context=ctx, **kw(d))
            if c.status == "need_more":
                assert not at_end, f"need_more at end of stream from {module.__name__}"
                return
            assert c.length > 0, f"{module.__name__}.cut returned {c}"
            msg = bufs[d][pos[d]:pos[d] + c.length]
            out.append(Cutted(d, pos[d], c, module.parse(msg, context=ctx, **kw(d))))
            pos[d] += c.length
        raise AssertionError("cut loop did not finish")

    for _, d, payload in conn.segments:
        bufs[d] += payload
        pump(d, False)
    pump(0, True)
    pump(1, True)
    return out


def udp_datagrams(pcap: Path) -> list[tuple[int, int, int, bytes]]:
    out = []
    with open(pcap, "rb") as f:
        for frame, (_, buf) in enumerate(dpkt.pcap.Reader(f), start=1):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(ip.data, dpkt.udp.UDP):
                out.append((frame, ip.data.sport, ip.data.dport, bytes(ip.data.data)))
    return out


def pdml_packets(pcap: Path, display_filter: str = "") -> list[ET.Element]:
    cmd = ["tshark", "-r", str(pcap), "-T", "pdml"]
    if display_filter:
        cmd += ["-Y", display_filter]
    xml = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    return list(ET.fromstring(xml).iter("packet"))


def field_show(elem: ET.Element, name: str) -> str | None:
    """The `show` of the first descendant field with this name (None when absent)."""
    for f in elem.iter("field"):
        if f.get("name") == name:
            return f.get("show")
    return None


def fields_show(elem: ET.Element, name: str) -> list[str]:
    return [f.get("show") or "" for f in elem.iter("field") if f.get("name") == name]


def packet_ports(pkt: ET.Element) -> tuple[int, int, int | None]:
    """(srcport, dstport, tcp.stream) of a packet."""
    stream = field_show(pkt, "tcp.stream")
    sport = field_show(pkt, "tcp.srcport") or field_show(pkt, "udp.srcport")
    dport = field_show(pkt, "tcp.dstport") or field_show(pkt, "udp.dstport")
    return int(sport or 0), int(dport or 0), int(stream) if stream is not None else None


def cut_in_pieces(module: ModuleType, data: bytes, ctx: Any, seed: int, direction: int = 0
                  ) -> list[tuple[Cut, list[Record]]]:
    """Cut `data` as it would arrive: in random-size pieces, at_end only with the last one.

    Asserts the contract on the way: need_more never at the end, every other cut consumes
    >= 1 byte within what has arrived, and the cuts cover every byte exactly once.
    """
    import random

    rng = random.Random(seed)
    out: list[tuple[Cut, list[Record]]] = []
    pos = avail = 0
    while avail < len(data):
        avail = min(len(data), avail + rng.randint(1, 700))
        at_end = avail == len(data)
        buf = data[:avail]
        while pos < avail:
            c = module.cut(buf, pos, at_end=at_end, context=ctx, direction=direction)
            if c.status == "need_more":
                assert not at_end, f"{module.__name__}: need_more at the end"
                break
            assert 0 < c.length <= avail - pos, f"{module.__name__}: {c} at {pos}/{avail}"
            out.append((c, module.parse(buf[pos:pos + c.length], context=ctx, direction=direction)))
            pos += c.length
    assert pos == len(data)
    return out
