"""The lab's non-CORBA servers: DNS (dnsmasq), Java Web Start over HTTP/1.1, and HTTPS (TLS 1.2/1.3).

    python -m captures.lab.servers web --config WEB.json --log WEB.jsonl     # HTTP + HTTPS in one process

- DNS: ``dnsmasq_command()`` builds a dnsmasq (Debian dnsmasq-base) command line that answers
  only the lab's names (``--address=/name/ip``), forwards nothing, and logs every query it sees
  (``--log-queries``), so the truth can count queries as the DNS server saw them (RFC 1035).
- HTTP (RFC 9110/9112): a JNLP file and a few jars of synthetic classes served from memory with a
  fixed ``Last-Modified``; ``If-Modified-Since`` at or after it gives ``304 Not Modified`` (RFC 9110
  13.1.3). Every request is logged with the client's User-Agent (Java Web Start sends
  ``Java/1.8...``) and the server's own receive and send times. Normal mode sets TCP_NODELAY and
  writes head and body in one send; ``nagle`` mode leaves Nagle on and writes the head and the body
  in two small writes (write-write-read), the pattern that stalls against a delayed ACK
  (RFC 896 x RFC 1122 4.2.3.2).
- HTTPS: the same handler behind Python's ssl (OpenSSL) accepting TLS 1.2 and 1.3 (the client
  picks the version), the handshake done in the connection's own thread; ``https_think_ms`` makes it
  wait before each answer (logged as think_ms); session secrets are written in the NSS key log format (SSLKEYLOGFILE) so
  tshark can decrypt with ``-o tls.keylog_file:FILE``. The certificate is a throw-away self-signed
  P-256 one made with openssl at start-up.
"""

from __future__ import annotations

import argparse
import email.utils
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_MTIME = 1736148600.0   # 2025-01-06 07:30:00 UTC: the jars' Last-Modified
JARS = {"epj-client.jar": 24000, "epj-common.jar": 12000, "epj-ui.jar": 36000}


def dnsmasq_command(listen: str, names: dict[str, str], log_file: Path) -> list[str]:
    """dnsmasq answering names -> addresses on listen:53, nothing else, every query logged."""
    cmd = ["dnsmasq", "--keep-in-foreground", "--no-daemon", "--no-resolv", "--no-hosts", "--no-poll",
           f"--listen-address={listen}", "--bind-interfaces", "--port=53", "--cache-size=0",
           "--log-queries", f"--log-facility={log_file}", "--pid-file=", "--user=root"]
    cmd += [f"--address=/{name}/{ip}" for name, ip in sorted(names.items())]
    return cmd


def make_jar(name: str, size: int) -> bytes:
    """A stored (uncompressed) jar of synthetic class files, about size bytes, same bytes every run."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        k = 0
        while buf.tell() < size:
            body = (f"synthetic class {name}:{k} ".encode() * 200)[:min(4000, max(100, size - 200))]
            info = zipfile.ZipInfo(f"lab/epj/C{k:03d}.class", date_time=(2025, 1, 6, 7, 30, 0))
            z.writestr(info, body)
            k += 1
    return buf.getvalue()


def make_site(codebase: str, jars: dict[str, int]) -> dict[str, tuple[bytes, str]]:
    """Path -> (body, content type) for the JNLP, the jars and /epj/ping."""
    hrefs = "\n".join(f'    <jar href="lib/{j}"/>' for j in jars)
    jnlp = f"""<?xml version="1.0" encoding="UTF-8"?>
<jnlp spec="1.0+" codebase="{codebase}/epj/" href="epj.jnlp">
  <information><title>EPJ lab client</title><vendor>netdiag lab</vendor></information>
  <update check="timeout" policy="always"/>
  <resources>
    <j2se version="1.8+"/>
{hrefs}
  </resources>
  <application-desc main-class="lab.epj.Main"/>
</jnlp>
""".encode()
    site = {"/epj/epj.jnlp": (jnlp, "application/x-java-jnlp-file"),
            "/epj/ping": (b'{"status":"ok"}\n', "application/json")}
    for j, size in jars.items():
        site[f"/epj/lib/{j}"] = (make_jar(j, size), "application/java-archive")
    return site


class WebLog:
    """Thread-safe JSON-lines log of the web servers."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lock = threading.Lock()

    def write(self, event: str, **fields: object) -> None:
        rec = {"event": event, **fields}
        rec.setdefault("ts_ns", time.time_ns())
        with self.lock:
            os.write(self.fd, (json.dumps(rec, separators=(",", ":")) + "\n").encode())


def make_handler(site: dict, mtime: float, nagle: bool, log: WebLog, scheme: str, think_ms: float = 0.0) -> type:
    """A request handler class bound to the site, the Last-Modified time and the write mode;
    `think_ms` is slept after reading each request, before the answer is written (injected server time)."""
    last_modified = email.utils.formatdate(mtime, usegmt=True)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "lab-web/1.0"
        sys_version = ""

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0 if nagle else 1)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass   # our JSON log replaces the stderr access log

        def do_HEAD(self) -> None:
            self.do_GET(head=True)

        def do_GET(self, head: bool = False) -> None:
            received = time.time_ns()
            client = f"{self.client_address[0]}:{self.client_address[1]}"
            entry = site.get(self.path.split("?", 1)[0])
            status, body, ctype = 404, b"not found\n", "text/plain"
            if entry is not None:
                body, ctype = entry
                status = 200
                ims = self.headers.get("If-Modified-Since")
                if ims:
                    try:
                        if email.utils.parsedate_to_datetime(ims).timestamp() >= int(mtime):
                            status, body = 304, b""
                    except (TypeError, ValueError):
                        pass
            head_lines = [f"HTTP/1.1 {status} {self.responses[status][0]}",
                          f"Date: {email.utils.formatdate(usegmt=True)}", f"Server: {self.server_version}"]
            if entry is not None:
                head_lines += [f"Last-Modified: {last_modified}"]
            if status != 304:
                head_lines += [f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
            head_lines += ["Connection: keep-alive", "", ""]
            head_bytes = "\r\n".join(head_lines).encode("latin-1")
            if think_ms > 0:
                time.sleep(think_ms / 1000.0)
            out = b"" if head else body
            writes = []
            if nagle and out:
                # two small writes without TCP_NODELAY: the second waits for the ACK of the first
                self.wfile.write(head_bytes)
                writes.append(time.time_ns())
                self.wfile.write(out)
                writes.append(time.time_ns())
            else:
                self.wfile.write(head_bytes + out)
                writes.append(time.time_ns())
            log.write("http_request", scheme=scheme, client=client, method=self.command, path=self.path,
                      user_agent=self.headers.get("User-Agent"), if_modified_since=self.headers.get("If-Modified-Since"),
                      status=status, body_bytes=len(out), received_ts_ns=received, write_ts_ns=writes,
                      writes=len(writes), ts_ns=writes[-1], think_ms=think_ms)

    return Handler


def self_signed_cert(workdir: Path, cn: str) -> tuple[Path, Path]:
    """Make a throw-away P-256 certificate and key with openssl; return (cert, key)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "web-cert.pem", workdir / "web-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={cn}"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def serve_web(cfg: dict, log_path: Path) -> None:
    """Run HTTP (and HTTPS if https_port) until SIGTERM; log web_ready when both listen."""
    log = WebLog(log_path)
    mtime = float(cfg.get("mtime", DEFAULT_MTIME))
    site = make_site(cfg.get("codebase", f"http://{cfg['listen']}:{cfg['http_port']}"), cfg.get("jars", JARS))
    servers = []
    http_srv = ThreadingHTTPServer((cfg["listen"], int(cfg["http_port"])),
                                   make_handler(site, mtime, bool(cfg.get("nagle")), log, "http"))
    servers.append(http_srv)
    if cfg.get("https_port"):
        cert, key = self_signed_cert(Path(cfg["workdir"]), cfg.get("tls_name", "epj-web.lab.test"))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(cert, key)
        if cfg.get("keylog"):
            ctx.keylog_filename = str(cfg["keylog"])
        https_srv = ThreadingHTTPServer((cfg["listen"], int(cfg["https_port"])),
                                        make_handler(site, mtime, False, log, "https",
                                                     float(cfg.get("https_think_ms") or 0.0)))
        # the handshake runs in the request's own thread (on its first read), not in accept() on the
        # serving thread: the thread is up before the request arrives, so the logged receive time is
        # when the request reached the server, not when a new thread got round to reading it
        https_srv.socket = ctx.wrap_socket(https_srv.socket, server_side=True, do_handshake_on_connect=False)
        servers.append(https_srv)
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True) for s in servers]
    for t in threads:
        t.start()
    log.write("web_ready", pid=os.getpid(), listen=cfg["listen"], http_port=cfg["http_port"],
              https_port=cfg.get("https_port"), nagle=bool(cfg.get("nagle")),
              last_modified=email.utils.formatdate(mtime, usegmt=True),
              sizes={p: len(b) for p, (b, _) in site.items()})
    stop = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    stop.wait(float(cfg.get("max_runtime_s", 600)))
    for s in servers:
        s.shutdown()
    log.write("web_stop", pid=os.getpid())


def main(argv: list[str] | None = None) -> int:
    """Command line: ``web --config WEB.json --log WEB.jsonl``."""
    ap = argparse.ArgumentParser(prog="python -m captures.lab.servers", description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["web"])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--log", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        cfg = json.loads(args.config.read_text())
        serve_web(cfg, args.log)
    except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        print(f"error: lab web server ({args.config}): {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
