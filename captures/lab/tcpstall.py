"""Plain TCP peers for transport stalls on ports netdiag does not parse (scenario tcp_stalls_other_port).

    python -m captures.lab.tcpstall server --config CFG.json --log SERVER.jsonl
    python -m captures.lab.tcpstall client --config CFG.json --log CLIENT.jsonl

No GIOP, HTTP, TLS or DNS: only what TCP itself does to a small request/response service and a
bulk transfer, so the capture holds no logon, only connection-level causes.

- Nagle x delayed ACK (RFC 896 x RFC 1122 4.2.3.2), port `nagle_port`: the client keeps Nagle on
  (TCP_NODELAY cleared) and writes each request in two small pieces (write-write-read). The
  first piece leaves at once; the second is held by the client's kernel until the server ACKs
  the first. The server application answers only after the whole request, so it has nothing
  to piggyback the ACK on: once Linux has left quick-ACK mode the ACK waits for the delayed-ACK
  timer (~40 ms). The server logs the time of every recv() and its length, so the stall per
  request is the gap between the recv() that returned the first piece and the one that
  completed the request (server's own clock, no capture needed).
- Slow reader (zero window), port `bulk_port`: the client shrinks its receive buffer
  (SO_RCVBUF before connect), asks for `bulk_bytes`, then does not read for `pause_ms` (a GC-like
  pause). Its window closes while the server's sendall() blocks. The client logs the pause's
  start and end; the server logs when it started and finished sending.

Every log line is JSON with `ts_ns` (time.time_ns(), the capture's clock).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

from captures.lab.corba.jsonlog import JsonLog

DEFAULTS = {"host": "10.77.1.10", "nagle_port": 7000, "bulk_port": 7001, "requests": 14, "piece_bytes": 100,
            "reply_bytes": 60, "think_ms": 15, "bulk_bytes": 300_000, "rcvbuf": 4096, "pause_ms": 1500}


def _config(path: str) -> dict:
    cfg = dict(DEFAULTS)
    cfg.update(json.loads(Path(path).read_text()))
    return cfg


# ------------------------------------------------------------------------------------ server
def _serve_requests(conn: socket.socket, peer: str, cfg: dict, log: JsonLog) -> None:
    """Read requests of 2 x piece_bytes; answer each with reply_bytes in one write (TCP_NODELAY on)."""
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    size = 2 * int(cfg["piece_bytes"])
    n = 0
    while True:
        got = 0
        while got < size:
            data = conn.recv(size - got)
            if not data:
                log.write("nagle_conn_closed", client=peer, requests=n)
                return
            got += len(data)
            log.write("nagle_recv", client=peer, request=n, bytes=len(data), total=got)
        conn.sendall(b"R" * int(cfg["reply_bytes"]))
        log.write("nagle_reply_sent", client=peer, request=n, bytes=int(cfg["reply_bytes"]))
        n += 1


def _serve_bulk(conn: socket.socket, peer: str, log: JsonLog) -> None:
    line = b""
    while not line.endswith(b"\n"):
        data = conn.recv(64)
        if not data:
            return
        line += data
    nbytes = int(line.split()[1])
    log.write("bulk_send_start", client=peer, bytes=nbytes)
    conn.sendall(b"B" * nbytes)
    log.write("bulk_send_done", client=peer, bytes=nbytes)
    conn.shutdown(socket.SHUT_WR)
    while conn.recv(4096):
        pass


def serve(cfg: dict, log: JsonLog) -> None:
    """Listen on both ports; one thread per connection; run until killed."""
    def listener(port: int, handler) -> None:  # noqa: ANN001 - a per-connection function
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((cfg["host"], port))
        s.listen(8)
        while True:
            conn, addr = s.accept()
            peer = f"{addr[0]}:{addr[1]}"
            threading.Thread(target=lambda c=conn, p=peer: _closing(c, p, handler), daemon=True).start()

    def _closing(conn: socket.socket, peer: str, handler) -> None:  # noqa: ANN001
        try:
            handler(conn, peer)
        finally:
            conn.close()

    threads = [threading.Thread(target=listener, args=(int(cfg["nagle_port"]),
                                                       lambda c, p: _serve_requests(c, p, cfg, log)), daemon=True),
               threading.Thread(target=listener, args=(int(cfg["bulk_port"]), lambda c, p: _serve_bulk(c, p, log)),
                                daemon=True)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    log.write("server_ready", nagle_port=cfg["nagle_port"], bulk_port=cfg["bulk_port"])
    while True:
        time.sleep(3600)


# ------------------------------------------------------------------------------------ client
def run_client(cfg: dict, log: JsonLog) -> None:
    """The Nagle request/response exchange, then the slow reader, one after the other."""
    piece = int(cfg["piece_bytes"])
    s = socket.create_connection((cfg["host"], int(cfg["nagle_port"])), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)     # Nagle on (the default, said explicitly)
    me = "{}:{}".format(*s.getsockname())
    log.write("nagle_connected", local=me)
    for i in range(int(cfg["requests"])):
        if i:
            time.sleep(float(cfg["think_ms"]) / 1000)
        t1 = time.time_ns()
        s.send(b"a" * piece)
        t2 = time.time_ns()
        s.send(b"b" * piece)              # held by Nagle until the first piece is ACKed
        t3 = time.time_ns()
        got = 0
        while got < int(cfg["reply_bytes"]):
            data = s.recv(4096)
            if not data:
                raise OSError("server closed the request connection")
            got += len(data)
        log.write("nagle_request", local=me, request=i, write1_ts_ns=t1, write1_done_ts_ns=t2, write2_done_ts_ns=t3,
                  reply_ts_ns=time.time_ns())
    s.close()
    log.write("nagle_closed", local=me)

    b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(cfg["rcvbuf"]))
    b.settimeout(30)
    b.connect((cfg["host"], int(cfg["bulk_port"])))
    me = "{}:{}".format(*b.getsockname())
    b.sendall(f"SEND {int(cfg['bulk_bytes'])}\n".encode())
    log.write("reader_paused", local=me, rcvbuf=b.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    time.sleep(float(cfg["pause_ms"]) / 1000)
    log.write("reader_resumed", local=me)
    got = 0
    while True:
        data = b.recv(65536)
        if not data:
            break
        got += len(data)
    log.write("bulk_received", local=me, bytes=got)
    b.close()


def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m captures.lab.tcpstall", description=__doc__.splitlines()[0])
    ap.add_argument("role", choices=("server", "client"))
    ap.add_argument("--config", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args(argv)
    cfg = _config(args.config)
    log = JsonLog(args.log, role=args.role)
    try:
        if args.role == "server":
            serve(cfg, log)
        else:
            run_client(cfg, log)
    except OSError as exc:
        log.write("error", error=str(exc))
        print(f"tcpstall {args.role}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
