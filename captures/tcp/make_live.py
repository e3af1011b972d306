"""Real TCP captures for netdiag's TCP analysis tests: real Linux stacks, real loss and flow control.

Run as root: python captures/tcp/make_live.py   (rewrites loss_*.pcap and flow_control.pcap here)

1. loss_client_side.pcap / loss_server_side.pcap - one capture point on each side of a lossy link.
   Namespaces ndt_a (client 10.77.0.1), ndt_m (middle), ndt_b (server 10.77.0.2) joined by veth
   pairs; offloads off (ethtool) so frames are MTU-sized; no IP in ndt_m: forwarder.py bridges
   the two veths in user space (AF_PACKET), delays every frame 5 ms and drops the client's first
   SYN and the server's 15th, 16th and 40th data frames. tcpdump in ndt_m captures the client-side
   veth (loss_client_side: the dropped server frames never appear -> "previous segment not
   captured"; the SYN is seen twice) and the server-side veth (loss_server_side: the dropped frames
   appear and then their resends). Peers: python -m http.server -p HTTP/1.1 in ndt_b, curl in ndt_a
   fetching a 300 000-byte file (seeded random bytes) and then a 404 on the same keep-alive
   connection, then the directory listing on a second connection.
2. flow_control.pcap - namespace ndt_f, loopback with MTU 1500, tcpdump on lo:
   a server with SO_RCVBUF 4096 that sleeps 1.5 s before reading slowly while the client sends
   60 000 bytes (zero window, zero-window probes, window updates); an idle connection with TCP
   keep-alive every 1 s for 3.5 s (keep-alives and their ACKs); two connects to closed port 9
   (SYN answered by RST).
Every namespace is deleted at the end, whatever happens; every process is bounded by a timeout.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


def ns(name: str, *cmd: str, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
    return sh("ip", "netns", "exec", name, *cmd, **kw)


def popen_ns(name: str, *cmd: str, **kw) -> subprocess.Popen:  # noqa: ANN003
    return subprocess.Popen(["ip", "netns", "exec", name, *cmd], **kw)


def offloads_off(nsname: str, dev: str) -> None:
    ns(nsname, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off", "rx", "off",
       check=False)


def stop(p: subprocess.Popen, sig: int = 2) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def loss_scenario(out_dir: Path = HERE) -> None:
    names = ["ndt_a", "ndt_m", "ndt_b"]
    for n in names:
        sh("ip", "netns", "del", n, check=False)
    tmp = Path(tempfile.mkdtemp(prefix="ndt_loss_"))
    procs: list[subprocess.Popen] = []
    try:
        for n in names:
            sh("ip", "netns", "add", n)
            ns(n, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "vA", "netns", "ndt_a", "type", "veth", "peer", "name", "vMa", "netns", "ndt_m")
        sh("ip", "link", "add", "vB", "netns", "ndt_b", "type", "veth", "peer", "name", "vMb", "netns", "ndt_m")
        ns("ndt_a", "ip", "addr", "add", "10.77.0.1/24", "dev", "vA")
        ns("ndt_b", "ip", "addr", "add", "10.77.0.2/24", "dev", "vB")
        for n, dev in [("ndt_a", "vA"), ("ndt_b", "vB"), ("ndt_m", "vMa"), ("ndt_m", "vMb")]:
            offloads_off(n, dev)
            ns(n, "ip", "link", "set", dev, "up")
        for dev in ("vMa", "vMb"):
            ns("ndt_m", "ip", "link", "set", dev, "promisc", "on")
        www = tmp / "www"
        www.mkdir()
        (www / "big.bin").write_bytes(random.Random(2).randbytes(300_000))
        procs.append(popen_ns("ndt_b", PY, "-m", "http.server", "-p", "HTTP/1.1", "-b", "10.77.0.2", "-d", str(www), "8000",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        dumps = []
        for dev, out in [("vMa", "loss_client_side.pcap"), ("vMb", "loss_server_side.pcap")]:
            dumps.append(popen_ns("ndt_m", "tcpdump", "-i", dev, "-s", "0", "-U", "--immediate-mode", "-B", "16384",
                                  "-w", str(tmp / out), "tcp or arp", stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE))
        fwd = popen_ns("ndt_m", PY, str(HERE / "forwarder.py"), "vMa", "vMb", "--seconds", "14", "--drop-syn", "1",
                       "--drop-server-data", "15", "--drop-server-data", "16", "--drop-server-data", "40",
                       "--delay-ms", "5", stdout=subprocess.PIPE, text=True)
        procs.append(fwd)
        time.sleep(1.5)
        # keep-alive: the download and a 404 on one connection, then a second connection
        ns("ndt_a", "curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "http://10.77.0.2:8000/big.bin",
           "http://10.77.0.2:8000/missing", timeout=20)
        ns("ndt_a", "curl", "-s", "-o", "/dev/null", "http://10.77.0.2:8000/", timeout=20)
        time.sleep(0.5)
        for d in dumps:
            stop(d)
        out, _ = fwd.communicate(timeout=20)
        print(out.strip())
        for name in ("loss_client_side.pcap", "loss_server_side.pcap"):
            shutil.copy(tmp / name, out_dir / name)
            print(name, (out_dir / name).stat().st_size, "bytes")
    finally:
        for p in procs:
            stop(p, 15)
        for n in names:
            sh("ip", "netns", "del", n, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


# ---- peers for the flow-control scenario (run inside the namespace) --------------------------
def peer_slow_server() -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 9100))
    srv.listen(1)
    srv.settimeout(15)
    c, _ = srv.accept()
    time.sleep(1.5)
    got = 0
    c.settimeout(10)
    while True:
        data = c.recv(1000)
        if not data:
            break
        got += len(data)
        time.sleep(0.01)
    c.close()
    print("slow server got", got)


def peer_idle_server() -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 9101))
    srv.listen(1)
    srv.settimeout(15)
    c, _ = srv.accept()
    c.settimeout(10)
    c.recv(10)  # returns at the client's close
    c.close()


def peer_clients() -> None:
    time.sleep(0.5)
    s = socket.create_connection(("127.0.0.1", 9100), timeout=10)
    s.sendall(random.Random(3).randbytes(60_000))
    s.close()
    k = socket.create_connection(("127.0.0.1", 9101), timeout=10)
    k.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    k.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    k.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    time.sleep(3.5)
    k.close()
    for _ in range(2):
        try:
            socket.create_connection(("127.0.0.1", 9), timeout=2).close()
        except OSError:
            pass


def flow_control_scenario(out_dir: Path = HERE) -> None:
    n = "ndt_f"
    sh("ip", "netns", "del", n, check=False)
    tmp = Path(tempfile.mkdtemp(prefix="ndt_fc_"))
    procs: list[subprocess.Popen] = []
    try:
        sh("ip", "netns", "add", n)
        ns(n, "ip", "link", "set", "lo", "mtu", "1500")
        ns(n, "ip", "link", "set", "lo", "up")
        offloads_off(n, "lo")
        dump = popen_ns(n, "tcpdump", "-i", "lo", "-s", "0", "-U", "--immediate-mode", "-B", "16384", "-w",
                        str(tmp / "fc.pcap"), "tcp", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(dump)
        time.sleep(1.0)
        me = str(Path(__file__).resolve())
        servers = [popen_ns(n, PY, me, "peer", "slow_server"), popen_ns(n, PY, me, "peer", "idle_server")]
        procs += servers
        ns(n, PY, me, "peer", "clients", timeout=40)
        for p in servers:
            p.wait(timeout=30)
        time.sleep(0.5)
        stop(dump)
        shutil.copy(tmp / "fc.pcap", out_dir / "flow_control.pcap")
        print("flow_control.pcap", (out_dir / "flow_control.pcap").stat().st_size, "bytes")
    finally:
        for p in procs:
            stop(p, 15)
        sh("ip", "netns", "del", n, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "peer":
        {"slow_server": peer_slow_server, "idle_server": peer_idle_server, "clients": peer_clients}[sys.argv[2]]()
        return
    if os.geteuid() != 0:
        sys.exit("make_live.py needs root (network namespaces, tcpdump)")
    which = sys.argv[1:] or ["loss", "flow"]
    if "loss" in which:
        loss_scenario()
    if "flow" in which:
        flow_control_scenario()


if __name__ == "__main__":
    main()
