"""A user-space Ethernet frame forwarder that drops chosen frames and delays the rest.

This kernel has no netem qdisc, so loss and delay for the TCP captures are made here: the
forwarder runs in a middle network namespace, reads every frame arriving on one veth with an
AF_PACKET raw socket and writes it out of the other after a fixed delay, unless a rule drops
it. It is bounded: it exits after --seconds.

Rules (counted per direction, 1-based, IPv4/TCP only):
  --drop-syn N          drop the first N SYNs from the client side (the left interface)
  --drop-server-data K  drop the K-th payload-carrying frame sent by the server side (repeatable)
  --delay-ms D          delay every forwarded frame by D ms

Usage (inside the middle namespace):
  python forwarder.py LEFT_IF RIGHT_IF --seconds 20 --drop-syn 1 --drop-server-data 15 --delay-ms 5
"""

from __future__ import annotations

import argparse
import heapq
import select
import socket
import struct
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def tcp_info(frame: bytes) -> tuple[int, int] | None:
    """(tcp flags, payload length) of an Ethernet/IPv4/TCP frame, else None."""
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    ihl = (frame[14] & 0x0F) * 4
    total = struct.unpack("!H", frame[16:18])[0]
    t = 14 + ihl
    doff = (frame[t + 12] >> 4) * 4
    return frame[t + 13], total - ihl - doff


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("left")
    ap.add_argument("right")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--drop-syn", type=int, default=0)
    ap.add_argument("--drop-server-data", type=int, action="append", default=[])
    ap.add_argument("--delay-ms", type=float, default=0.0)
    a = ap.parse_args()

    socks = {}
    for name in (a.left, a.right):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        s.bind((name, 0))
        socks[name] = s
    other = {a.left: a.right, a.right: a.left}
    queue: list[tuple[float, int, str, bytes]] = []
    syns_dropped = 0
    server_data = 0
    seq = 0
    dropped = []
    end = time.monotonic() + a.seconds
    while time.monotonic() < end:
        timeout = 0.05
        if queue:
            timeout = max(0.0, min(timeout, queue[0][0] - time.monotonic()))
        ready, _, _ = select.select(list(socks.values()), [], [], timeout)
        for s in ready:
            frame, addr = s.recvfrom(65535)
            if addr[2] == PACKET_OUTGOING:
                continue  # our own transmissions come back on the socket
            src = addr[0]
            info = tcp_info(frame)
            if info is not None:
                flags, plen = info
                if src == a.left and flags & 0x12 == 0x02 and syns_dropped < a.drop_syn:
                    syns_dropped += 1
                    dropped.append("syn")
                    continue
                if src == a.right and plen > 0:
                    server_data += 1
                    if server_data in a.drop_server_data:
                        dropped.append(f"server-data-{server_data}")
                        continue
            seq += 1
            heapq.heappush(queue, (time.monotonic() + a.delay_ms / 1000.0, seq, other[src], frame))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, dst, frame = heapq.heappop(queue)
            socks[dst].send(frame)
    print("forwarder dropped:", " ".join(dropped) or "nothing", flush=True)


if __name__ == "__main__":
    main()
