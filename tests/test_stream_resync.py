"""One bad message loses at most itself.

A real server on loopback answers three pipelined requests; the middle response carries
`Content-Length: \\xb2` (Latin-1 '²': str.isdigit() said yes, int() raised, and the stream driver
threw away everything buffered in that direction, so the third response was lost too). tcpdump
captures it; the first and third responses must pair with their requests, the middle one must be
a malformed message, and tshark's view of the same file is compared. The driver's own rule (a
parser that raises loses its message, not the direction) is tested by making the parser raise as
it used to, and the TLS rule (a bad record header used to give the whole direction up) on a real
openssl capture with one record header damaged.
"""

from __future__ import annotations

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

from netdiag.protocols.dns import parser as dns
from netdiag.protocols.giop import parser as giop
from netdiag.protocols.http import parser as http
from netdiag.protocols.tls import parser as tls
from netdiag.transactions import analyze_streams

ROOT = Path(__file__).resolve().parent.parent
HAVE_TSHARK = shutil.which("tshark") is not None
LIVE = os.geteuid() == 0 and shutil.which("tcpdump") is not None

RESPONSES = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nfirst",
             b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\nContent-Type: text/plain\r\n\r\nok",
             b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\nnot found"]
PATHS = ("/a", "/b", "/c")


def _serve(listener: socket.socket, got: list[bytes]) -> None:
    """Read three pipelined requests, answer them in one write, close."""
    sock, _ = listener.accept()
    with sock:
        buf = b""
        while buf.count(b"\r\n\r\n") < 3:
            data = sock.recv(65536)
            if not data:
                break
            buf += data
        got.append(buf)
        sock.sendall(b"".join(RESPONSES))
        time.sleep(0.05)


@pytest.fixture(scope="module")
def live_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not LIVE:
        pytest.skip("capturing on loopback needs root and tcpdump")
    pcap = tmp_path_factory.mktemp("resync") / "pipelined_bad_length.pcap"
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-w", str(pcap), "-s", "0",
                             f"tcp port {port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    got: list[bytes] = []
    thread = threading.Thread(target=_serve, args=(listener, got), daemon=True)
    try:
        deadline = time.monotonic() + 10
        line = b""
        while b"listening on" not in line and time.monotonic() < deadline:
            line = dump.stderr.readline()
        assert b"listening on" in line, "tcpdump did not start"
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: epj\r\n\r\n".encode() for p in PATHS))
            received = b""
            while data := client.recv(65536):
                received += data
        assert received == b"".join(RESPONSES)
        thread.join(timeout=5)
        time.sleep(0.2)
    finally:
        listener.close()
        dump.send_signal(signal.SIGINT)
        try:
            dump.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dump.kill()
            dump.wait()
    return pcap


def _http(pcap: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    a = analyze_streams(pcap)
    return (a.messages.filter(pl.col("protocol") == "http").sort("direction", "stream_offset"),
            a.transactions.filter(pl.col("protocol") == "http").sort("req_first_ts_ns", "operation"))


def test_unicode_digit_content_length_is_malformed_and_the_other_responses_pair(live_pcap: Path) -> None:
    msgs, txns = _http(live_pcap)
    rsp = msgs.filter(pl.col("direction") == 1)
    assert rsp["status"].to_list() == ["200", "200", "404"]
    assert rsp["malformed"].to_list() == [False, True, False]
    assert "invalid Content-Length" in rsp["detail"][1] and "ASCII digits" in rsp["detail"][1]
    # every response byte is in exactly one message: the bad one ends where the 404 starts
    assert rsp["size_bytes"].to_list() == [len(r) for r in RESPONSES]
    assert txns["operation"].to_list() == [f"GET {p}" for p in PATHS]
    assert txns["status"].to_list() == ["200", "200", "404"]
    assert '"response_malformed":true' in txns["detail"][1]


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_tshark_sees_the_same_first_response_and_swallows_the_third_into_the_second(live_pcap: Path) -> None:
    out = subprocess.run(["tshark", "-r", str(live_pcap), "-Y", "http.response", "-T", "fields",
                          "-E", "occurrence=f", "-e", "frame.number", "-e", "http.response.code",
                          "-e", "http.request_in", "-e", "http.file_data"],
                         capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    rows = [line.split("\t") for line in out]
    msgs, txns = _http(live_pcap)
    first = txns.row(0, named=True)
    # tshark: response 1 (200) answers the request frame we pair it with, in the frame we say
    assert rows[0][1] == "200" and int(rows[0][2]) == first["first_frame"] and int(rows[0][0]) == first["last_frame"]
    # tshark's HTTP dissector cannot delimit the '²' body either: it reads it until the FIN, so the
    # 404 ends up inside response 2's body and tshark shows two responses; we show all three
    assert len(rows) == 2 and rows[1][1] == "200" and rows[1][3].startswith("okHTTP/1.1 404 Not Found")
    assert txns.height == 3 and txns["status"][2] == "404"


def test_a_parser_that_raises_loses_only_its_own_message(live_pcap: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's rule, independent of the parser fix: make cut() raise as it did before."""
    def old_content_length(head):  # the pre-fix code path: isdigit() then int()
        values = head.all("content-length")
        return (int(values[0]), "") if values else (None, "")

    monkeypatch.setattr(http, "_content_length", old_content_length)
    msgs, txns = _http(live_pcap)
    rsp = msgs.filter(pl.col("direction") == 1)
    assert rsp.height == 3 and rsp["malformed"].to_list() == [False, True, False]
    assert "parser error in cut: ValueError" in rsp["detail"][1]
    # the bad bytes still count as the answer to GET /b (a status line starts them), so the 404
    # pairs with GET /c
    assert txns["operation"].to_list() == [f"GET {p}" for p in PATHS]
    assert txns["status"][0] == "200" and txns["status"][2] == "404"
    assert '"response_malformed":true' in txns["detail"][1]


def _damaged_tls(tmp_path: Path) -> tuple[Path, Path, int]:
    """captures/proto/tls.pcap (openssl s_server/s_client) with the content type of one server
    record in the middle of a connection overwritten (0x17 -> 0x99). Returns (original, damaged,
    frame)."""
    from scapy.all import TCP, Raw, rdpcap, wrpcap

    orig = ROOT / "captures" / "proto" / "tls.pcap"
    pkts = rdpcap(str(orig))
    frame = 51  # 9443 -> 41070: the second of two 255-byte ApplicationData records, more follow
    raw = bytes(pkts[frame - 1][Raw].load)
    assert pkts[frame - 1][TCP].sport == 9443 and raw[:3] == b"\x17\x03\x03"
    pkts[frame - 1][Raw].load = b"\x99" + raw[1:]
    damaged = tmp_path / "tls_damaged.pcap"
    wrpcap(str(damaged), pkts)
    return orig, damaged, frame


def _tshark_records(pcap: Path, port: int) -> list[str]:
    """The length of every TLS record tshark dissects from the server to client `port`."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-Y", f"tcp.srcport == 9443 && tcp.dstport == {port}",
                          "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
                          "-e", "tls.record.length"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [t for line in out.splitlines() for t in line.split(",") if t]


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_a_bad_tls_record_header_loses_that_record_only(tmp_path: Path) -> None:
    orig, damaged, frame = _damaged_tls(tmp_path)
    truth = _tshark_records(orig, 41070)  # tshark on the undamaged file: every server record
    a = analyze_streams(damaged)
    conn = a.connections.filter(pl.col("client_port") == 41070)["conn_id"].item()
    got = (a.messages.filter((pl.col("conn_id") == conn) & (pl.col("direction") == 1))
           .sort("stream_offset"))
    # one record per TLS record: the damaged one malformed, every other one decoded
    assert got.height == len(truth)
    bad = got.filter(pl.col("malformed"))
    assert bad.height == 1 and bad["first_frame"].item() == frame and "content type 153" in bad["detail"].item()
    after = got.filter(pl.col("first_frame") > frame)
    assert after.height >= 2 and not after["malformed"].any()
    # tshark on the damaged file also loses just that record (an "unknown record" in frame 51)
    assert len(_tshark_records(damaged, 41070)) == len(truth) - 1


def test_every_parser_resyncs_at_its_next_message() -> None:
    g = b"GIOP\x01\x02\x01\x05" + (0).to_bytes(4, "little")
    assert giop.resync(b"xxxx" + g, 0) == 4 and giop.resync(b"GIOPjunk", 0) == 8
    h = b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nokHTTP/1.1 404 X\r\n\r\n"
    c = http.cut(h, 0, context=http.new_context())
    assert c.status == "malformed" and h[c.length:].startswith(b"HTTP/1.1 404")
    assert http.resync(b"junk\r\nGET / HTTP/1.1\r\n\r\n", 0) == 6
    # the next status line has only begun to arrive: it is kept for the next cut
    c = http.cut(h[:-10], 0, context=http.new_context())
    assert c.status == "malformed" and h[c.length:-10] == b"HTTP/1.1"
    rec = b"\x17\x03\x03\x00\x02ab"
    assert tls.resync(b"\x99\x99" + rec + rec, 0) == 2
    ctx = dns.new_context("tcp")
    assert dns.resync(b"\x00\x0c" + bytes(12) + b"\x00\x0c", 0, context=ctx) == 14
    assert dns.resync(bytes(20), 0, context=dns.new_context("udp")) == 20


@pytest.mark.parametrize("value", ["\u00b2", "\u00b9", "\u0663", "\uff11", "+5", "5 ", "0x10", "1" * 5000])
def test_content_length_must_be_ascii_digits(value: str) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + value.strip().encode("utf-8") + b"\r\n\r\nbody"
    c = http.cut(head, 0, at_end=True, context=http.new_context())
    assert c.status == "malformed" and "Content-Length" in c.reason
    (rec,) = http.parse(head)
    assert rec.malformed and "Content-Length" in rec.reason and "parser error" not in rec.reason
