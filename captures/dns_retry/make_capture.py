"""Make captures/dns_retry/new_socket_retries.pcap (root): DNS resends from a new socket with a new id.

A resolver that, like the Windows DNS client's schedule (1 s, 1 s, 2 s...), resends an unanswered
question after 1 s, each try from a fresh UDP socket with a fresh id; and two askers on one address
asking the same question 5 ms apart from their own sockets (concurrent processes). Peers, all real
sockets inside a private network namespace's loopback, captured by tcpdump there:

- server: a tiny UDP DNS responder on 127.0.0.1:53 that ignores the first two queries for
  `slow.lab.test` and answers the third (A 10.77.1.10), and answers `epj-app.lab.test` at once;
- client: the resolver above, then the two concurrent askers.

Expected: `slow.lab.test` = one lookup, 3 queries (2 retries), answered; `epj-app.lab.test` =
two lookups, each answered on its own socket. tshark is the oracle for frames and pairs.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "new_socket_retries.pcap"
NS = f"ndretry{os.getpid()}"


def query(name: str, qid: int) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", 1, 1)


def answer(msg: bytes) -> bytes:
    qid = struct.unpack("!H", msg[:2])[0]
    end = msg.index(b"\0", 12) + 5
    rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([10, 77, 1, 10])
    return struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + msg[12:end] + rr


def server(stop: threading.Event) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 53))
    s.settimeout(0.1)
    seen_slow = 0
    while not stop.is_set():
        try:
            msg, peer = s.recvfrom(2048)
        except TimeoutError:
            continue
        if b"\x04slow" in msg:
            seen_slow += 1
            if seen_slow < 3:
                continue
        s.sendto(answer(msg), peer)
    s.close()


def ask(name: str, timeout: float) -> bool:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(timeout)
    try:
        c.sendto(query(name, random.randrange(1, 0xFFFF)), ("127.0.0.1", 53))
        c.recvfrom(2048)
        return True
    except TimeoutError:
        return False
    finally:
        c.close()


def child() -> None:
    stop = threading.Event()
    th = threading.Thread(target=server, args=(stop,))
    th.start()
    time.sleep(0.2)
    for _ in range(3):  # Windows-like: a new socket and id per try, 1 s timer
        if ask("slow.lab.test", 1.0):
            break
    askers = [threading.Thread(target=ask, args=("epj-app.lab.test", 1.0)) for _ in range(2)]
    for a in askers:
        a.start()
        time.sleep(0.005)
    for a in askers:
        a.join()
    stop.set()
    th.join()


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("needs root (network namespace, tcpdump)")
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        dump = subprocess.Popen(["ip", "netns", "exec", NS, "tcpdump", "-i", "lo", "-s", "0", "--immediate-mode",
                                 "-U", "-w", str(OUT), "udp port 53"], stderr=subprocess.PIPE)
        time.sleep(1.0)
        subprocess.run(["ip", "netns", "exec", NS, sys.executable, __file__, "--child"], check=True, timeout=30)
        time.sleep(0.5)
        dump.terminate()
        print(dump.communicate(timeout=10)[1].decode().strip())
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


if __name__ == "__main__":
    child() if sys.argv[1:] == ["--child"] else main()
