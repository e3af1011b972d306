"""Regenerate the real-peer captures in captures/proto/ (HTTP, TLS, DNS parser truth).

Each scenario runs inside a fresh network namespace (only its own loopback, so nothing else
on the machine ends up in the capture), starts tcpdump on that loopback, runs real peers
(python http.server, a tiny HTTP/1.1 server below, curl, a raw-socket pipelining client,
openssl s_server/s_client, dnsmasq, dig, python sockets), stops tcpdump and removes the
namespace. Needs root, tcpdump, curl, openssl, dnsmasq, dig.

    python captures/proto/make_captures.py [http|tls|dns ...]      # as root

How each capture was made is also written down in captures/proto/README.md.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAST_TCPDUMP_SUMMARY = ""  # tcpdump's closing statistics of the last scenario
JAVA_UA = "Mozilla/4.0 (Windows 10 10.0) Java/1.8.0_202"
JAVAWS_UA = "JNLP/6.0 javaws/11.202.2.08 (<internal>) Java/1.8.0_202"


# --------------------------------------------------------------------------------------------
# A tiny HTTP/1.1 server for what python's http.server does not send: chunked bodies with
# trailers, bodies that end at close, 204, 100-continue on POST.
# --------------------------------------------------------------------------------------------
class TinyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TinyEPJ/1.0"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum")
            self.end_headers()
            for part in (b"first chunk\n", b"x" * 3000, b"last\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Checksum: 1234\r\n\r\n")
        elif self.path.startswith("/close"):
            # HTTP/1.0-style: no Content-Length, the body ends when the connection closes.
            self.protocol_version = "HTTP/1.0"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(b"y" * 5000)
            self.close_connection = True
        elif self.path.startswith("/empty"):
            self.send_response(204)
            self.end_headers()
        else:
            body = b"hello from tiny\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        got = self.rfile.read(n)
        body = b"received %d bytes\n" % len(got)
        self.send_response(201)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_tiny(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), TinyHandler).serve_forever()


def pipeline_client(port: int) -> None:
    """Send three requests (GET, HEAD, GET) in one write, then read until the server is done."""
    reqs = b"".join(
        f"{m} {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {JAVA_UA}\r\n\r\n".encode()
        for m, p in (("GET", "/a.txt"), ("HEAD", "/b.bin"), ("GET", "/index.jnlp"))
    )
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(reqs + b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(TimeoutError):
            while s.recv(65536):
                pass


# --------------------------------------------------------------------------------------------
# Namespace and capture plumbing
# --------------------------------------------------------------------------------------------
class Netns:
    """A network namespace with loopback up and tcpdump on it; removed on exit."""

    def __init__(self, name: str, pcap: Path, bpf: str = "") -> None:
        self.name, self.pcap, self.bpf = name, pcap, bpf
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Netns:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        # Wire-sized segments (MSS 1448) as on an Ethernet LAN, not 64 KB loopback chunks:
        # MTU 1500 and no segmentation offloads, so messages span segments as in the field.
        self.run("ip link set lo mtu 1500 up")
        self.run("ethtool -K lo tso off gso off gro off >/dev/null 2>&1 || true")
        cmd = ["ip", "netns", "exec", self.name, "tcpdump", "-i", "lo", "--immediate-mode", "-B", "16384", "-U", "-w", str(self.pcap)]
        if self.bpf:
            cmd.append(self.bpf)
        self.tcpdump = subprocess.Popen(cmd, stderr=subprocess.PIPE)
        assert self.tcpdump.stderr is not None
        self.tcpdump.stderr.readline()  # "listening on lo ..." means it is capturing
        time.sleep(0.3)
        return self

    def run(self, cmd: str, **kw: object) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, "sh", "-c", cmd],
                              timeout=30, **kw)  # type: ignore[arg-type]

    def start(self, cmd: list[str], **kw: object) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw)  # type: ignore[arg-type]
        self.procs.append(p)
        return p

    def __exit__(self, *exc: object) -> None:
        # tcpdump loses packets still in the kernel ring when stopped at once (seen: 17 of 128
        # written); --immediate-mode plus this pause keeps them all. checked() verifies.
        time.sleep(1.0)
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        self.tcpdump.send_signal(signal.SIGINT)
        global LAST_TCPDUMP_SUMMARY
        LAST_TCPDUMP_SUMMARY = self.tcpdump.communicate(timeout=10)[1].decode(errors="replace")
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def count_syns(pcap: Path) -> int:
    """TCP connections attempted in a capture (SYN without ACK)."""
    import dpkt

    n = 0
    with open(pcap, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                n += (ip.data.flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK)) == dpkt.tcp.TH_SYN
    return n


def checked(make: object, pcap: str, connections: int) -> None:
    """Run a scenario until its capture holds every connection (tcpdump once lost some)."""
    for _ in range(3):
        make()  # type: ignore[operator]
        got = count_syns(HERE / pcap)
        if got == connections and re.search(r"(?m)^0 packets dropped by kernel", LAST_TCPDUMP_SUMMARY):
            return
        print(f"{pcap}: {got} connections captured, expected {connections} "
              f"({LAST_TCPDUMP_SUMMARY.strip()!r}); again")
    raise RuntimeError(f"{pcap}: could not capture all {connections} connections")


def wait_port(ns: Netns, port: int, proto: str = "tcp") -> None:
    flag = "-ltn" if proto == "tcp" else "-lun"
    for _ in range(50):
        out = ns.run(f"ss {flag}", capture_output=True, text=True).stdout
        if f":{port} " in out:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {proto}/{port}")


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------
def make_http() -> None:
    pcap = HERE / "http.pcap"
    with tempfile.TemporaryDirectory() as docroot, Netns(f"ndproto-http-{os.getpid()}", pcap) as ns:
        (Path(docroot) / "a.txt").write_text("alpha\n" * 50)
        (Path(docroot) / "b.bin").write_bytes(os.urandom(20000))
        (Path(docroot) / "index.jnlp").write_text('<?xml version="1.0"?><jnlp spec="1.0+"/>\n')
        old = time.time() - 86400 * 30
        os.utime(Path(docroot) / "a.txt", (old, old))
        ns.start([sys.executable, "-m", "http.server", "-p", "HTTP/1.1", "-b", "127.0.0.1",
                  "-d", docroot, "8080"], stderr=subprocess.DEVNULL)
        ns.start([sys.executable, __file__, "tiny", "8081"])
        wait_port(ns, 8080)
        wait_port(ns, 8081)
        base = "http://127.0.0.1:8080"
        curl = "curl -s -o /dev/null"
        # keep-alive: three requests on one connection, Java Web Start and Java UAs
        ns.run(f"{curl} -o /dev/null -o /dev/null -A '{JAVAWS_UA}' {base}/index.jnlp {base}/a.txt {base}/b.bin")
        ns.run(f"{curl} -I -A '{JAVA_UA}' {base}/b.bin")  # HEAD
        ns.run(f"{curl} -A '{JAVA_UA}' -H 'If-Modified-Since: Thu, 01 Jan 2037 00:00:00 GMT' {base}/a.txt")  # 304
        ns.run(f"{curl} {base}/missing.jar")  # 404
        ns.run(f"{sys.executable} {__file__} pipeline 8080")
        tiny = "http://127.0.0.1:8081"
        ns.run(f"{curl} -o /dev/null -o /dev/null {tiny}/chunked {tiny}/empty {tiny}/chunked")
        ns.run(f"{curl} -H 'Expect: 100-continue' --data-binary @{docroot}/b.bin -A '{JAVA_UA}' {tiny}/upload")
        ns.run(f"{curl} {tiny}/close")


def make_tls() -> None:
    pcap = HERE / "tls.pcap"
    with tempfile.TemporaryDirectory() as tmp, Netns(f"ndproto-tls-{os.getpid()}", pcap) as ns:
        t = Path(tmp)
        for who in ("server", "client"):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                            "-subj", f"/CN=epj-{who}.hosp.test", "-keyout", str(t / f"{who}.key"),
                            "-out", str(t / f"{who}.crt")], check=True, capture_output=True)
        srv = ["openssl", "s_server", "-quiet", "-www", "-cert", str(t / "server.crt"),
               "-key", str(t / "server.key")]
        null = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "stdin": subprocess.DEVNULL}
        ns.start([*srv, "-accept", "9443"], **null)
        ns.start([*srv, "-accept", "9402", "-Verify", "1", "-CAfile", str(t / "client.crt")], **null)
        ns.start([*srv, "-accept", "9403", "-max_send_frag", "512"], **null)
        ns.start([*srv, "-accept", "9444", "-groups", "P-256"], **null)
        for port in (9443, 9402, 9403, 9444):
            wait_port(ns, port)
        cli = "openssl s_client -connect 127.0.0.1:%d -servername epj-app.hosp.test -ign_eof"
        get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | "
        runs = [
            # TLS 1.2 full handshake, then a resumed session (session id / ticket from the first)
            ("tls1.2 full", cli % 9443 + f" -tls1_2 -sess_out {t}/s12"),
            ("tls1.2 resumed", cli % 9443 + f" -tls1_2 -sess_in {t}/s12"),
            # TLS 1.3 full handshake, then PSK resumption
            ("tls1.3 full", cli % 9443 + f" -tls1_3 -sess_out {t}/s13"),
            ("tls1.3 resumed", cli % 9443 + f" -tls1_3 -sess_in {t}/s13"),
            # TLS 1.2 with a client-certificate request and a client certificate (as on 9402)
            ("tls1.2 client cert", cli % 9402 + f" -tls1_2 -cert {t}/client.crt -key {t}/client.key"),
            # TLS 1.2 without the required client certificate: the server alerts
            ("tls1.2 no client cert", cli % 9402 + " -tls1_2"),
            # server writing at most 512-byte records: the Certificate spans two records
            ("tls1.2 512-byte records", cli % 9403 + " -tls1_2 -no_ticket"),
            # TLS 1.3 where the client's key share (X25519) is not the server's group (P-256):
            # HelloRetryRequest, then a second ClientHello after a compatibility CCS
            ("tls1.3 hello retry", cli % 9444 + " -tls1_3"),
            # the client rejects the server's certificate (not signed by the CA it trusts):
            # a fatal unknown_ca alert from the client
            ("tls1.2 client rejects cert", cli % 9443 + f" -tls1_2 -verify_return_error -CAfile {t}/client.crt"),
        ]
        log = []
        for label, cmd in runs:
            out = ns.run(get + cmd + " 2>&1", capture_output=True, text=True).stdout
            said = [ln.strip() for ln in out.splitlines()
                    if ln.startswith(("New,", "Reused,")) or "alert" in ln]
            log.append(f"{label}: {' | '.join(said)}")
        # What s_client itself said about each connection (in connection order): the truth for
        # "resumed" (Reused vs New) that tshark does not expose as a field.
        (HERE / "tls_s_client.txt").write_text("\n".join(log) + "\n")


def make_tls_coalesced() -> None:
    """tls_coalesced.pcap: the server's first flight of tls.pcap stream 0 repacked into ONE record.

    OpenSSL writes one handshake message per record; other stacks (JSSE, SChannel) put several
    in one record. This rewrites the real ServerHello, Certificate, ServerKeyExchange and
    ServerHelloDone bodies into a single record and writes the client's ClientHello and that
    record as two TCP segments of one connection (tshark is the oracle on the result).
    """
    import dpkt

    with open(HERE / "tls.pcap", "rb") as f:
        pkts = [(ts, dpkt.ethernet.Ethernet(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    client_hello = server_flight = None
    for _, eth in pkts:
        tcp = eth.data.data
        if tcp.data and tcp.dport == 9443 and client_hello is None:
            client_hello = (eth, bytes(tcp.data))
        elif tcp.data and tcp.sport == 9443 and server_flight is None:
            server_flight = (eth, bytes(tcp.data))
            break
    assert client_hello and server_flight
    body = b""
    flight = server_flight[1]
    pos = 0
    while pos < len(flight):
        n = int.from_bytes(flight[pos + 3:pos + 5], "big")
        assert flight[pos] == 22
        body += flight[pos + 5:pos + 5 + n]
        pos += 5 + n
    coalesced = b"\x16\x03\x03" + len(body).to_bytes(2, "big") + body
    with open(HERE / "tls_coalesced.pcap", "wb") as f:
        w = dpkt.pcap.Writer(f)
        for i, (eth, payload) in enumerate((client_hello, (server_flight[0], coalesced))):
            eth = dpkt.ethernet.Ethernet(bytes(eth))
            ip = eth.data
            ip.data.data = payload
            ip.data.sum = 0
            ip.sum = 0
            ip.len = len(ip.data) + ip.hl * 4
            w.writepkt(bytes(eth), ts=1_700_000_000 + i * 0.001)


def make_dns() -> None:
    pcap = HERE / "dns.pcap"
    with tempfile.TemporaryDirectory() as tmp, Netns(f"ndproto-dns-{os.getpid()}", pcap) as ns:
        hosts = Path(tmp) / "hosts"
        hosts.write_text("10.20.30.40 epj-app1.hosp.test\n10.20.30.41 epj-app2.hosp.test\n"
                         "fd00::41 epj-app2.hosp.test\n10.20.30.5 dc1.hosp.test\n")
        ns.start(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-daemon",
                  f"--addn-hosts={hosts}", "--listen-address=127.0.0.1", "--bind-interfaces",
                  "--port=53", "--local=/hosp.test/", "--local-ttl=300",
                  "--cname=epj.hosp.test,epj-app1.hosp.test",
                  "--srv-host=_ldap._tcp.hosp.test,dc1.hosp.test,389,0,100",
                  "--server=/unanswered.test/127.0.0.9", "--pid-file=", "--user=root"],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(ns, 53, "udp")
        dig = "dig @127.0.0.1 +tries=1 +time=1"
        q = " >/dev/null 2>&1"
        for args in ("epj-app1.hosp.test A", "epj-app2.hosp.test AAAA", "epj.hosp.test A",
                     "-x 10.20.30.40", "_ldap._tcp.hosp.test SRV", "nosuch.hosp.test A",
                     "www.outside.example A", "host.unanswered.test A", "+tcp epj-app2.hosp.test A",
                     "+tcp nosuch.hosp.test AAAA"):
            ns.run(f"{dig} {args}" + q)
        # A query to an address where no server listens: never answered (ICMP port unreachable).
        ns.run("dig @127.0.0.2 +tries=2 +time=1 epj-app1.hosp.test A" + q)


if __name__ == "__main__":
    if sys.argv[1:2] == ["tiny"]:
        serve_tiny(int(sys.argv[2]))
    elif sys.argv[1:2] == ["pipeline"]:
        pipeline_client(int(sys.argv[2]))
    else:
        for what in sys.argv[1:] or ["http", "tls", "tls_coalesced", "dns"]:
            {"http": lambda: checked(make_http, "http.pcap", 8),
             "tls": lambda: checked(make_tls, "tls.pcap", 9),
             "dns": lambda: checked(make_dns, "dns.pcap", 2),
             "tls_coalesced": make_tls_coalesced}[what]()
            print(f"made captures/proto/{what}.pcap")
