"""Make the TLS decryption captures: every cipher suite netdiag decrypts, real OpenSSL peers on loopback.

    python -m captures.tls.make_captures [--out captures/tls]        # as root (tcpdump on lo)

Writes `suites.pcap` + `suites.keys` (HTTP over TLS, one connection per case below, made with
`openssl s_server -www` and `openssl s_client -keylogfile`), and `giop_tls.pcap` +
`giop_tls.keys` + `giop_tls.server_log.json` (real GIOP messages from captures/lab/baseline.pcap sent
over Python `ssl` with a server that thinks a known time per request and logs its own receive and
send times). Each case uses its own server port (4433 + case number) so tshark can be told
`-d tcp.port==4433-4470,tls`. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE_PORT = 4433
# (name, TLS version flag, option for the suite, suite, extra s_client options)
CASES: list[tuple[str, str, str, str, list[str]]] = [
    ("tls13_aes128gcm", "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256", []),
    ("tls13_aes256gcm", "-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384", []),
    ("tls13_chacha20", "-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256", []),
    ("tls13_aes128ccm", "-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256", []),
    ("tls13_aes128ccm8", "-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_8_SHA256", []),
    ("tls13_keyupdate", "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256", ["keyupdate"]),
    ("tls12_aes128gcm", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", []),
    ("tls12_aes256gcm", "-tls1_2", "-cipher", "ECDHE-RSA-AES256-GCM-SHA384", []),
    ("tls12_chacha20", "-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305", []),
    ("tls12_cbc_sha1_etm", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA", []),
    ("tls12_cbc_sha1", "-tls1_2", "-cipher", "ECDHE-RSA-AES256-SHA", ["-no_etm"]),
    ("tls12_cbc_sha256", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256", ["-no_etm"]),
    ("tls12_cbc_sha256_etm", "-tls1_2", "-cipher", "AES256-SHA256", []),
    ("tls12_cbc_sha384", "-tls1_2", "-cipher", "ECDHE-RSA-AES256-SHA384", ["-no_etm"]),
    ("tls12_aes128ccm", "-tls1_2", "-cipher", "AES128-CCM", []),
    # two connections each: the second resumes the first's session (-sess_out / -sess_in)
    ("tls12_resumed", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256", ["resume"]),
    ("tls13_resumed", "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256", ["resume"]),
    # the client's only key share is P-256, the server wants X25519: HelloRetryRequest
    ("tls13_hrr", "-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384", ["hrr"]),
]
GIOP_PORT = BASE_PORT + 30
GIOP_THINK_MS = (40, 15, 70)


def _tcpdump(pcap: Path, filt: str) -> subprocess.Popen:
    p = subprocess.Popen(["tcpdump", "-i", "lo", "-s", "0", "-U", "--immediate-mode", "-w", str(pcap), filt],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    return p


def _stop(p: subprocess.Popen) -> None:
    time.sleep(0.5)
    p.terminate()
    p.wait(timeout=10)


# A suite netdiag does not decrypt (ARIA): the connection must be named in one warning and read
# without keys (unsupported.pcap, port 4469).
UNSUPPORTED = [("tls12_aria", "-tls1_2", "-cipher", "ECDHE-ARIA256-GCM-SHA384", [])]
UNSUPPORTED_PORT = GIOP_PORT + 6


def make_suites(out: Path, work: Path, cases: list | None = None, stem: str = "suites",
                base_port: int = BASE_PORT) -> None:
    cases = CASES if cases is None else cases
    cert, key = work / "rsa-cert.pem", work / "rsa-key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "2", "-subj", "/CN=tls.lab.test"], check=True, capture_output=True)
    keys = out / f"{stem}.keys"
    keys.unlink(missing_ok=True)
    pcap = out / f"{stem}.pcap"
    dump = _tcpdump(pcap, f"tcp portrange {base_port}-{base_port + len(cases)}")
    try:
        for i, (name, ver, opt, suite, extra) in enumerate(cases):
            port = base_port + i
            ciph = ["-ciphersuites", suite] if opt == "-ciphersuites" else ["-cipher", suite]
            opts = [e for e in extra if e.startswith("-")]
            runs = 2 if "resume" in extra else 1
            srv_groups = ["-groups", "X25519"] if "hrr" in extra else []
            cli_groups = ["-groups", "P-256:X25519"] if "hrr" in extra else []
            srv = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
                                    "-key", str(key), "-www", "-naccept", str(runs), ver, *ciph, *opts, *srv_groups],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            sess = work / f"{name}.sess"
            for run in range(runs):
                resume = (["-sess_out", str(sess)] if run == 0 else ["-sess_in", str(sess)]) if runs == 2 else []
                cli = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", ver, *ciph,
                                        "-keylogfile", str(keys), *opts, *cli_groups, *resume],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.4)
                if "keyupdate" in extra:
                    cli.stdin.write(b"K\n")   # s_client command letter: KeyUpdate, update_requested
                    cli.stdin.flush()
                    time.sleep(0.3)
                cli.stdin.write(b"GET / HTTP/1.0\r\n\r\n")
                cli.stdin.flush()
                time.sleep(0.6)
                cli.stdin.close()
                cli.wait(timeout=10)
                print(f"{name}: port {port}, client exit {cli.returncode}", file=sys.stderr)
            srv.wait(timeout=10)
    finally:
        _stop(dump)


def _giop_messages() -> list[tuple[bytes, bytes, str]]:
    """(request, reply, operation): authenticate, getUserContext and getWorklist (a 30 kB reply that
    spans TLS records) as omniORB sent them in captures/lab/baseline.pcap (tshark follows the stream)."""
    base = Path(__file__).resolve().parents[1] / "lab" / "baseline.pcap"
    stream = subprocess.run(["tshark", "-r", str(base), "-Y", "giop.request_op == \"authenticate\"", "-T", "fields",
                             "-e", "tcp.stream"], capture_output=True, text=True, check=True).stdout.split()[0]
    raw = subprocess.run(["tshark", "-r", str(base), "-q", "-z", f"follow,tcp,raw,{stream}"],
                         capture_output=True, text=True, check=True).stdout
    sides: dict[bool, bytearray] = {False: bytearray(), True: bytearray()}
    for line in raw.splitlines():
        txt = line.strip()
        if not txt or not all(c in "0123456789abcdef" for c in txt):
            continue
        sides[line.startswith("\t")].extend(bytes.fromhex(txt))

    def split(buf: bytearray) -> list[bytes]:
        out, p = [], 0
        while p + 12 <= len(buf) and buf[p:p + 4] == b"GIOP":
            n = int.from_bytes(buf[p + 8:p + 12], "little" if buf[p + 6] & 1 else "big")
            out.append(bytes(buf[p:p + 12 + n]))
            p += 12 + n
        return out

    reqs = [m for m in split(sides[False]) if m[7] == 0]     # Request
    reps: list[bytes] = []                                   # Reply and the Fragments that follow it
    for m in split(sides[True]):
        if m[7] == 1:
            reps.append(m)
        elif m[7] == 7 and reps:
            reps[-1] += m
    ops = ("authenticate", "getUserContext", "getWorklist")
    out = []
    for rq, rp in zip(reqs, reps, strict=False):
        op = next((o for o in ops if o.encode() + b"\0" in rq), None)
        if op:
            out.append((rq, rp, op))
    return out


def make_giop(out: Path, work: Path) -> None:
    cert, key = work / "ec-cert.pem", work / "ec-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=orb.lab.test"],
                   check=True, capture_output=True)
    msgs = _giop_messages()
    keys = out / "giop_tls.keys"
    keys.unlink(missing_ok=True)
    log: list[dict] = []
    cases = [("1.3", None), ("1.2", "ECDHE-ECDSA-CHACHA20-POLY1305")]
    pcap = out / "giop_tls.pcap"
    dump = _tcpdump(pcap, f"tcp portrange {GIOP_PORT}-{GIOP_PORT + len(cases)}")
    try:
        for k, (version, cipher) in enumerate(cases):
            port = GIOP_PORT + k
            sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            sctx.load_cert_chain(cert, key)
            sctx.keylog_filename = str(keys)
            lsock = socket.create_server(("127.0.0.1", port))

            def serve(lsock: socket.socket = lsock, sctx: ssl.SSLContext = sctx, version: str = version,
                      port: int = port) -> None:
                conn, _ = lsock.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s = sctx.wrap_socket(conn, server_side=True)
                for (req, rep, op), think in zip(msgs, GIOP_THINK_MS, strict=True):
                    got = b""
                    while len(got) < len(req):
                        got += s.recv(len(req) - len(got))
                    t_in = time.time_ns()
                    time.sleep(think / 1000)
                    t_out = time.time_ns()
                    s.sendall(rep)
                    log.append({"tls_version": version, "port": port, "operation": op, "received_ts_ns": t_in,
                                "reply_ts_ns": t_out, "server_time_ms": (t_out - t_in) / 1e6,
                                "think_ms_configured": think})
                s.recv(100)
                s.close()

            th = threading.Thread(target=serve)
            th.start()
            cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            cctx.check_hostname = False
            cctx.verify_mode = ssl.CERT_NONE
            v = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
            cctx.minimum_version = cctx.maximum_version = v
            if cipher:
                cctx.set_ciphers(cipher)
            c = cctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="orb.lab.test")
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for req, rep, _op in msgs:
                c.sendall(req)
                got = b""
                while len(got) < len(rep):
                    got += c.recv(65536)
                time.sleep(0.02)
            c.close()
            th.join(timeout=10)
            lsock.close()
    finally:
        _stop(dump)
    truth = {"made_by": "python -m captures.tls.make_captures (as root)",
             "server_log": log, "giop_requests": len(log),
             "operations": sorted({e["operation"] for e in log})}
    (out / "giop_tls.server_log.json").write_text(json.dumps(truth, indent=1) + "\n")


NOTICKET_PORT = GIOP_PORT + 5
NOTICKET_THINK_MS = 5


def make_no_tickets(out: Path, work: Path) -> None:
    """TLS 1.3 from a server that sends no session ticket (Python ssl, num_tickets = 0), three
    keep-alive GETs answered with responses of one size after 5 ms each (within the 20 ms ticket window): without keys the first
    answer must not be taken for a ticket (docs/tls.md, the guard)."""
    cert, key = work / "nt-cert.pem", work / "nt-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=web.lab.test"],
                   check=True, capture_output=True)
    keys = out / "no_tickets.keys"
    keys.unlink(missing_ok=True)
    body = b'{"status":"ok"}\n'
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    log: list[dict] = []
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.num_tickets = 0
    sctx.keylog_filename = str(keys)
    lsock = socket.create_server(("127.0.0.1", NOTICKET_PORT))

    def serve() -> None:
        conn, _ = lsock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = sctx.wrap_socket(conn, server_side=True)
        for _ in range(3):
            got = b""
            while not got.endswith(b"\r\n\r\n"):
                got += s.recv(1)
            t_in = time.time_ns()
            time.sleep(NOTICKET_THINK_MS / 1000)
            t_out = time.time_ns()
            s.sendall(answer)
            log.append({"path": got.split(b" ")[1].decode(), "received_ts_ns": t_in, "reply_ts_ns": t_out,
                        "server_time_ms": (t_out - t_in) / 1e6, "think_ms_configured": NOTICKET_THINK_MS})
        s.recv(100)
        s.close()

    pcap = out / "no_tickets.pcap"
    dump = _tcpdump(pcap, f"tcp port {NOTICKET_PORT}")
    try:
        th = threading.Thread(target=serve)
        th.start()
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
        cctx.minimum_version = ssl.TLSVersion.TLSv1_3
        c = cctx.wrap_socket(socket.create_connection(("127.0.0.1", NOTICKET_PORT)), server_hostname="web.lab.test")
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for path in ("/a", "/b", "/c"):
            c.sendall(f"GET {path} HTTP/1.1\r\nHost: web.lab.test\r\n\r\n".encode())
            got = b""
            while len(got) < len(answer):
                got += c.recv(4096)
            time.sleep(0.01)
        c.close()
        th.join(timeout=10)
        lsock.close()
    finally:
        _stop(dump)
    (out / "no_tickets.server_log.json").write_text(json.dumps({"made_by": "python -m captures.tls.make_captures",
                                                                 "server_log": log}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m captures.tls.make_captures", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--only", choices=["suites", "giop", "no_tickets", "unsupported"], default=None)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("error: needs root (tcpdump on lo)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "suites"):
            make_suites(args.out, Path(tmp))
        if args.only in (None, "giop"):
            make_giop(args.out, Path(tmp))
        if args.only in (None, "no_tickets"):
            make_no_tickets(args.out, Path(tmp))
        if args.only in (None, "unsupported"):
            make_suites(args.out, Path(tmp), UNSUPPORTED, "unsupported", UNSUPPORTED_PORT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
