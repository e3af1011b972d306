"""A new protocol is its own package plus one registration line: the toy PING/PONG protocol.

tests/toy_ping/ holds a parser, a pairing rule and a SPEC, nothing else; this test registers it
with one line, captures real PING/PONG exchanges between sockets on loopback with tcpdump, and
checks that netdiag pairs them into transactions whose times and frames are the capture's own
(read with tshark), then unregisters it. Needs root, tcpdump and tshark; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import toy_ping

from netdiag.protocols import registry
from netdiag.transactions import analyze_streams

pytestmark = [
    pytest.mark.skipif(shutil.which("tcpdump") is None or shutil.which("tshark") is None,
                       reason="tcpdump and tshark needed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="capturing on loopback needs root"),
]

THINK_S = {1: 0.030, 2: 0.060, 3: 0.010}   # the server's delay before each PONG
UNANSWERED = 7                              # a PING the server reads and never answers


def _serve(listener: socket.socket) -> None:
    """Answer PING n with PONG n after THINK_S[n]; read PING UNANSWERED and close without answering."""
    for _ in range(2):
        conn, _ = listener.accept()
        with conn:
            buf = b""
            while True:
                data = conn.recv(1024)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    n = int(line.split()[1])
                    if n == UNANSWERED:
                        continue
                    time.sleep(THINK_S[n])
                    conn.sendall(b"PONG %d\n" % n)


def _exchange(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for n in THINK_S:
            c.sendall(b"PING %d\n" % n)
            assert c.recv(64) == b"PONG %d\n" % n
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"PING %d\n" % UNANSWERED)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def ping_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tcpdump capture of the two toy connections on loopback."""
    out = tmp_path_factory.mktemp("ping") / "ping.pcap"
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-s", "0", "-w", str(out),
                             f"tcp port {port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert dump.stderr is not None
        assert "listening on" in dump.stderr.readline()
        server = threading.Thread(target=_serve, args=(listener,), daemon=True)
        server.start()
        _exchange(port)
        server.join(5)
        time.sleep(0.3)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(10)
        listener.close()
    return out


@pytest.fixture
def toy_registered() -> Iterator[None]:
    registry.register(toy_ping.SPEC)
    try:
        yield
    finally:
        registry.unregister("ping")


def _tshark_lines(pcap: Path) -> list[tuple[int, int, str]]:
    """(frame, time in ns, line) per payload-carrying frame, as tshark reads the capture."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tcp.len > 0", "-T", "fields", "-e", "frame.number",
                          "-e", "frame.time_epoch", "-e", "tcp.payload"],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        frame, epoch, payload = line.split("\t")
        ns = int(Decimal(epoch) * 1_000_000_000)
        rows.append((int(frame), ns, bytes.fromhex(payload.replace(":", "")).decode().strip()))
    return rows


def test_unregistered_protocol_is_not_recognised(ping_pcap: Path) -> None:
    assert registry.get("ping") is None
    a = analyze_streams(ping_pcap)
    assert a.transactions.height == 0
    assert a.stats.connections_skipped == 2


def test_registered_toy_protocol_pairs_pings_with_pongs(ping_pcap: Path, toy_registered: None) -> None:
    wire = _tshark_lines(ping_pcap)
    frames = {text: (frame, ns) for frame, ns, text in wire}
    assert len(wire) == 2 * len(THINK_S) + 1  # every line in its own segment (TCP_NODELAY, one send each)

    a = analyze_streams(ping_pcap)
    tx = a.transactions.sort("req_first_ts_ns")
    assert tx["protocol"].to_list() == ["ping"] * (len(THINK_S) + 1)
    assert tx["request_id"].to_list() == [*THINK_S, UNANSWERED]
    assert tx["status"].to_list() == ["ok"] * len(THINK_S) + ["unanswered"]
    assert a.stats.by_protocol == {"ping": 2 * len(THINK_S) + 1}

    for row in tx.iter_rows(named=True):
        n = row["request_id"]
        ping_frame, ping_ns = frames[f"PING {n}"]
        assert (row["first_frame"], row["req_first_ts_ns"], row["req_last_ts_ns"]) == (ping_frame, ping_ns, ping_ns)
        if n == UNANSWERED:
            assert row["rsp_first_ts_ns"] is None and row["last_frame"] == ping_frame
            continue
        pong_frame, pong_ns = frames[f"PONG {n}"]
        assert (row["last_frame"], row["rsp_first_ts_ns"], row["rsp_last_ts_ns"]) == (pong_frame, pong_ns, pong_ns)
        assert (row["request_bytes"], row["response_bytes"]) == (len(f"PING {n}\n"), len(f"PONG {n}\n"))
        # the server's time: the capture's PING -> PONG gap less a loopback round trip (microseconds)
        gap_s = (pong_ns - ping_ns) / 1e9
        assert row["server_think_s"] <= gap_s
        assert row["server_think_s"] >= THINK_S[n]
        assert gap_s - row["server_think_s"] < 0.002


def test_unregister_restores_the_builtin_list(toy_registered: None) -> None:
    assert registry.get("ping") is toy_ping.SPEC
    assert "ping" in registry.transaction_protocols()
    registry.unregister("ping")
    assert [s.name for s in registry.specs()] == ["giop", "http", "dns", "tls"]
    assert registry.request_protocols() == ("giop", "http", "turn")


def test_giop_status_groups_name_statuses_the_parser_emits() -> None:
    """The GIOP status groups (named once, read by the summary, logons and causes) hold only
    reply/locate statuses the parser can produce, and exceptions are failures, forwards are not."""
    from netdiag.protocols.giop import EXCEPTION_STATUSES, FAILED_STATUSES, FORWARD_STATUSES
    from netdiag.protocols.giop import parser as giop

    emitted = set(giop.REPLY_STATUS.values()) | set(giop.LOCATE_STATUS.values())
    assert set(EXCEPTION_STATUSES) | set(FAILED_STATUSES) | set(FORWARD_STATUSES) <= emitted
    assert set(EXCEPTION_STATUSES) <= set(FAILED_STATUSES)
    assert not set(FORWARD_STATUSES) & set(FAILED_STATUSES)
    # what is neither failed nor forwarded is a success
    assert emitted - set(FAILED_STATUSES) - set(FORWARD_STATUSES) == {"NO_EXCEPTION", "OBJECT_HERE"}
