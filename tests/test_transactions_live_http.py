"""HTTP time to first byte against the server's own log: a real http.server and client on loopback.

The server (a small HTTP/1.1 keep-alive server on a real socket; client: http.client) logs, per
request, when the kernel received the segment completing the request (SO_TIMESTAMPNS) and when the
kernel sent the response (software TX timestamp), with a different think time per URL; tcpdump
captures loopback; netdiag's server_think_s must agree with the logged gap within 2 ms (at a
loopback capture the capture-to-server round trip is microseconds). Needs root and tcpdump;
skips otherwise.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from netdiag.transactions import analyze_streams

pytestmark = [
    pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="capturing on loopback needs root"),
]

THINK_MS = {"/epj/app.jnlp": 40, "/epj/lib/core.jar": 120, "/epj/lib/ui.jar": 5, "/epj/missing": 70}


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
TX_FLAGS = (1 << 1) | (1 << 4) | (1 << 11)  # SOF_TIMESTAMPING_TX_SOFTWARE | _SOFTWARE | _OPT_TSONLY


def _tx_time(sock: socket.socket) -> int | None:
    """The kernel's software transmit timestamp of the last send (from the error queue)."""
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        try:
            _, anc, _, _ = sock.recvmsg(1, 1024, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        for lvl, typ, d in anc:
            if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPING:
                return int.from_bytes(d[:8], "little") * 1_000_000_000 + int.from_bytes(d[8:16], "little")
    return None


def _serve(listener: socket.socket, log: list[dict], stop: threading.Event) -> None:
    """A small HTTP/1.1 keep-alive server that logs, per request, when the kernel received the
    segment completing the request (SO_TIMESTAMPNS) and when the kernel sent the response
    (SO_TIMESTAMPING, software TX): the server's own receive/send instants, so scheduling delay
    on a busy machine is inside the logged server time, as it is for a real server."""
    listener.settimeout(0.2)
    # set on the listener so accepted sockets inherit it before the first request arrives
    listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    while not stop.is_set():
        try:
            sock, _ = listener.accept()
        except TimeoutError:
            continue
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_FLAGS)
        buf = b""
        with sock:
            while True:
                data, anc, _, _ = sock.recvmsg(65536, 1024)
                if not data:
                    break
                buf += data
                rx_ns = next((int.from_bytes(d[:8], "little") * 1_000_000_000 + int.from_bytes(d[8:16], "little")
                              for lvl, typ, d in anc if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS), None)
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    path = head.split(b" ", 2)[1].decode()
                    time.sleep(THINK_MS.get(path, 0) / 1000)
                    status = 404 if path == "/epj/missing" else 200
                    body = bytes(3000 if status == 200 else 10)
                    out = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nServer: lab\r\n\r\n".encode()
                    sock.sendall(out + body)  # one segment on loopback: first byte = last byte sent
                    first_ns = _tx_time(sock)
                    log.append({"path": path, "status": status, "read_ns": rx_ns, "first_byte_ns": first_ns})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_server_think_matches_the_servers_logged_time_to_first_byte(tmp_path: Path) -> None:
    port = _free_port()
    pcap = tmp_path / "live_http.pcap"
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-w", str(pcap), "-s", "0",
                             f"tcp port {port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    listener = socket.create_server(("127.0.0.1", port))
    log: list[dict] = []
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(listener, log, stop), daemon=True)
    try:
        deadline = time.monotonic() + 10
        line = b""
        while b"listening on" not in line and time.monotonic() < deadline:
            line = dump.stderr.readline()
        assert b"listening on" in line, "tcpdump did not start"
        thread.start()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.connect()
        time.sleep(0.2)  # let the server accept first: data queued before accept carries no RX timestamp
        for path in THINK_MS:  # one keep-alive connection, requests in sequence
            conn.request("GET", path, headers={"User-Agent": "JNLP/6.0 javaws/11.202 Java/1.8.0_202"})
            conn.getresponse().read()
        conn.close()
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=5) if thread.is_alive() else None
        listener.close()
        dump.send_signal(signal.SIGINT)
        try:
            dump.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dump.kill()
            dump.wait()
    assert len(log) == len(THINK_MS)
    assert all(x["read_ns"] and x["first_byte_ns"] for x in log), f"kernel timestamps missing: {log}"
    t = analyze_streams(pcap).transactions.filter(pl.col("protocol") == "http").sort("request_id")
    assert t["operation"].to_list() == [f"GET {p}" for p in THINK_MS]
    for row, logged in zip(t.iter_rows(named=True), log, strict=True):
        assert row["status"] == str(logged["status"])
        server_ttfb_ms = (logged["first_byte_ns"] - logged["read_ns"]) / 1e6
        assert abs(row["server_think_s"] * 1e3 - server_ttfb_ms) <= 2.0, (row["operation"], server_ttfb_ms)
        assert row["user_agent"].endswith("Java/1.8.0_202")
