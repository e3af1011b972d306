"""Derive tls13_ticket_nagle.pcap from the lab's tls13_tickets.pcap: the second session ticket held by Nagle.

    python -m captures.tls.make_ticket_nagle [--out captures/tls]     # no root needed

The lab's Linux/OpenSSL server sent its two TLS 1.3 tickets back to back (docs/tls.md §3), so the
stall of issue 11 item 5 (a ticket held by Nagle until the client's delayed ACK, inside the
server's own think) is not in the lab capture. This file is that capture with the HTTPS
connection (port 9443) re-timed to what Nagle x delayed ACK does, every byte otherwise as
captured (the other connections are untouched; TCP checksums recomputed by dpkt):

- the GET leaves the client before the first ticket arrives (its ACK field covers only the
  server's handshake flight), as when the client sends its request right after its Finished;
- the client ACKs the first ticket as long after it as the real capture's delayed ACK of a ticket;
- the second ticket, held by Nagle, leaves the server when that ACK arrives and reaches the
  client one round trip later (the capture's SYN -> SYN/ACK time), carrying the ACK of the GET
  (the server's own bare ACK of the GET is dropped: it is piggybacked on the ticket);
- the answer is where it was: 116 ms after the GET (server think 100 ms + the round trip).

Frames (original numbers in tls13_tickets.pcap): 10 Finished, 11 ticket 1, 12 GET, 13 ticket 2,
14 the client's delayed ACK, 15 the server's bare ACK of the GET, 16 the answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dpkt

SRC = Path(__file__).resolve().parents[1] / "lab" / "tls13_tickets.pcap"
PORT = 9443


def derive(src: Path, dst: Path) -> None:
    with open(src, "rb") as f:
        rd = dpkt.pcap.Reader(f)
        link = rd.datalink()
        frames = [(ts, bytes(buf)) for ts, buf in rd]
    conn = []
    for i, (_ts, buf) in enumerate(frames):
        eth = dpkt.ethernet.Ethernet(buf)
        if isinstance(eth.data, dpkt.ip.IP) and isinstance(eth.data.data, dpkt.tcp.TCP) \
                and PORT in (eth.data.data.sport, eth.data.data.dport):
            conn.append(i)
    # the connection's frames by their position in it: [SYN, SYN/ACK, ACK, CH, ACK, SH.., ACK, Fin, t1, GET, t2,
    # delayed ACK, server ACK, answer, ...]
    fin, t1, get, t2, dack, sack, answer = (conn[k] for k in (7, 8, 9, 10, 11, 12, 13))

    def tcp_of(i: int) -> tuple[dpkt.ethernet.Ethernet, dpkt.tcp.TCP]:
        eth = dpkt.ethernet.Ethernet(frames[i][1])
        return eth, eth.data.data

    _, t_fin = tcp_of(fin)
    e_t1, tcp_t1 = tcp_of(t1)
    e_get, tcp_get = tcp_of(get)
    e_t2, tcp_t2 = tcp_of(t2)
    e_ack, tcp_ack = tcp_of(dack)
    assert len(tcp_t1.data) == len(tcp_t2.data) and tcp_get.data.startswith(b"\x17\x03\x03")
    ts_t1 = frames[t1][0]
    rtt = frames[conn[1]][0] - frames[conn[0]][0]          # SYN -> SYN/ACK at the client
    delayed = frames[dack][0] - frames[t2][0]                # the real delayed ACK of a ticket
    out = {i: frames[i] for i in range(len(frames)) if i not in (get, t2, dack, sack)}
    tcp_get.ack = t_fin.ack                                  # sent before ticket 1 arrived
    out[get] = (ts_t1 - 0.000015, _pack(e_get))
    tcp_ack.ack = tcp_t1.seq + len(tcp_t1.data)              # the delayed ACK of ticket 1 only
    out[dack] = (ts_t1 + delayed, _pack(e_ack))
    tcp_t2.ack = tcp_get.seq + len(tcp_get.data)             # ticket 2 carries the ACK of the GET
    out[t2] = (ts_t1 + delayed + rtt, _pack(e_t2))
    rows = sorted(out.values(), key=lambda r: r[0])
    with open(dst, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=link, nano=False)
        for ts, buf in rows:
            w.writepkt(buf, ts=ts)


def _pack(eth: dpkt.ethernet.Ethernet) -> bytes:
    eth.data.data.sum = 0                                    # dpkt recomputes the TCP checksum
    eth.data.sum = 0
    return bytes(eth)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m captures.tls.make_ticket_nagle", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args(argv)
    derive(SRC, args.out / "tls13_ticket_nagle.pcap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
