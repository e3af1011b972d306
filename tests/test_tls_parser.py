"""TLS parser (netdiag.protocols.tls.parser) against openssl s_server/s_client captures and tshark.

captures/proto/tls.pcap (made by captures/proto/make_captures.py, see captures/proto/README.md):
tcp.stream 0 TLS 1.2 full, 1 TLS 1.2 resumed, 2 TLS 1.3 full, 3 TLS 1.3 resumed (PSK),
4 TLS 1.2 with a client-certificate request answered with a certificate, 5 the same without a
certificate (the server alerts handshake_failure), 6 TLS 1.2 server writing 512-byte records
(the Certificate spans two records), 7 TLS 1.3 with a HelloRetryRequest, 8 TLS 1.2 where the
client rejects the server's certificate (unknown_ca alert from the client). captures/proto/tls_s_client.txt is what s_client said of
each (New/Reused). captures/proto/tls_coalesced.pcap repacks stream 0's server flight into one
record (several handshake messages per record, as JSSE and SChannel send them).
"""

from __future__ import annotations

import os
import random
import shutil
import time

import pytest
from proto_streams import (
    CAPTURES,
    HAVE_TSHARK,
    cut_in_pieces,
    drive,
    field_show,
    fields_show,
    packet_ports,
    pdml_packets,
    tcp_connections,
)

from netdiag.protocols.tls import parser as tls

PCAP = CAPTURES / "tls.pcap"
COALESCED = CAPTURES / "tls_coalesced.pcap"
HEX = {v: f"0x{k:04x}" for k, v in tls.VERSIONS.items()}


def _mine(pcap, pass_direction: bool = True) -> dict[tuple[int, int], list[tuple]]:
    """(stream, direction) -> one tuple per TLS record, in the shape of _theirs()."""
    out: dict[tuple[int, int], list[tuple]] = {}
    for conn in tcp_connections(pcap):
        for c in drive(tls, conn, pass_direction=pass_direction):
            assert c.cut.status == "message", c.cut
            recs = c.records
            d0 = recs[0].detail
            types = [r.detail["handshake_type"] for r in recs
                     if "handshake_type" in r.detail and r.msg_type != "HandshakeFragment"]
            sni = [r.operation for r in recs if r.msg_type == "ClientHello" and r.operation]
            legacy = [HEX[r.detail.get("client_version") or r.detail.get("server_version")]
                      for r in recs if r.msg_type in ("ClientHello", "ServerHello", "HelloRetryRequest")]
            supported = [v for r in recs for v in (r.detail.get("supported_versions") or [])]
            alerts = [str(r.detail["description"]) for r in recs
                      if r.msg_type == "Alert" and not r.detail["encrypted"]]
            certs = [(r.detail["certificate_count"], r.detail["certificate_bytes"])
                     for r in recs if r.msg_type == "Certificate"]
            out.setdefault((conn.stream, c.direction), []).append(
                (d0["content_type"], types, sni, legacy, supported, alerts, certs))
    return out


def _theirs(pcap, client_ports: dict[int, int]) -> dict[tuple[int, int], list[tuple]]:
    out: dict[tuple[int, int], list[tuple]] = {}
    for pkt in pdml_packets(pcap, "tls"):
        sport, _, stream = packet_ports(pkt)
        d = 0 if sport == client_ports[stream] else 1
        for rec in (f for f in pkt.iter("field") if f.get("name") == "tls.record"):
            ctype = field_show(rec, "tls.record.content_type") or field_show(rec, "tls.record.opaque_type")
            lengths = [int(x) for x in fields_show(rec, "tls.handshake.certificate_length")]
            types = [int(t) for t in fields_show(rec, "tls.handshake.type")]
            out.setdefault((stream, d), []).append((
                int(ctype), types, fields_show(rec, "tls.handshake.extensions_server_name"),
                fields_show(rec, "tls.handshake.version"),
                fields_show(rec, "tls.handshake.extensions.supported_version"),
                fields_show(rec, "tls.alert_message.desc"),
                [(len(lengths), sum(lengths))] if 11 in types else []))
    return out


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
@pytest.mark.parametrize("pcap", [PCAP, COALESCED], ids=["openssl", "coalesced"])
def test_every_record_agrees_with_tshark(pcap) -> None:
    """Content type, handshake types, SNI, legacy and supported versions, alerts, certificates."""
    client_ports = {c.stream: c.client[1] for c in tcp_connections(pcap)}
    mine, theirs = _mine(pcap), _theirs(pcap, client_ports)
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert mine[key] == theirs[key], f"tcp.stream {key[0]} direction {key[1]}"
    if pcap == PCAP:
        assert sum(len(v) for v in mine.values()) > 90  # not vacuous: all 7 connections compared


def test_several_handshake_messages_in_one_record_are_all_reported() -> None:
    conn = tcp_connections(COALESCED)[0]
    server = [c for c in drive(tls, conn) if c.direction == 1]
    assert len(server) == 1
    assert [r.msg_type for r in server[0].records] == [
        "ServerHello", "Certificate", "ServerKeyExchange", "ServerHelloDone"]


def test_certificate_split_over_two_records_is_reassembled() -> None:
    conn = tcp_connections(PCAP)[6]
    server = [r for c in drive(tls, conn) if c.direction == 1 for r in c.records]
    names = [r.msg_type for r in server]
    assert names[:4] == ["ServerHello", "HandshakeFragment", "Certificate", "ServerKeyExchange"]
    cert = server[2]
    assert cert.detail["records"] == 2 and cert.detail["certificate_count"] == 1


def test_resumed_matches_what_s_client_reported() -> None:
    said = (CAPTURES / "tls_s_client.txt").read_text().splitlines()
    truth = [line.split(": ", 1)[1].startswith("Reused") for line in said]
    mine = []
    for conn in tcp_connections(PCAP):
        sh = [r for c in drive(tls, conn) for r in c.records if r.msg_type == "ServerHello"]
        mine.append(sh[0].detail["resumed"])
    assert mine == truth == [False, True, False, True, False, False, False, False, False]
    # the abbreviated handshake's server-first ChangeCipherSpec says the same
    for conn, resumed in zip(tcp_connections(PCAP), truth, strict=True):
        ccs = [r for c in drive(tls, conn) if c.direction == 1 for r in c.records
               if r.msg_type == "ChangeCipherSpec"]
        if ccs and conn.stream in (0, 1, 4, 6):  # the TLS 1.2 connections that finished
            assert ccs[0].detail.get("resumed", False) == resumed


def test_client_certificate_request_and_the_alert_without_certificate() -> None:
    conns = tcp_connections(PCAP)
    with_cert = [r for c in drive(tls, conns[4]) for r in c.records]
    assert "CertificateRequest" in [r.msg_type for r in with_cert]
    client_certs = [r for c in drive(tls, conns[4]) if c.direction == 0 for r in c.records
                    if r.msg_type == "Certificate"]
    assert client_certs[0].detail["certificate_count"] == 1
    without = [(c.direction, r) for c in drive(tls, conns[5]) for r in c.records]
    alerts = [(d, r.status, r.detail.get("level")) for d, r in without if r.msg_type == "Alert"]
    assert alerts == [(1, "handshake_failure", "fatal")]  # s_client: "SSL alert number 40"
    empty = [r for d, r in without if d == 0 and r.msg_type == "Certificate"]
    assert empty[0].detail["certificate_count"] == 0


def test_tls13_negotiation_and_encrypted_records() -> None:
    conn = tcp_connections(PCAP)[2]
    recs = [(c.direction, r) for c in drive(tls, conn) for r in c.records]
    ch = next(r for d, r in recs if r.msg_type == "ClientHello")
    sh = next(r for d, r in recs if r.msg_type == "ServerHello")
    assert ch.operation == "epj-app.hosp.test" and "TLS1.3" in ch.detail["offered_versions"]
    assert sh.detail["chosen_version"] == "TLS1.3" and sh.detail["server_version"] == "TLS1.2"
    assert not any(r.msg_type == "Certificate" for _, r in recs)  # encrypted in 1.3
    app = [(d, r.detail.get("encrypted_handshake", False)) for d, r in recs if r.msg_type == "ApplicationData"]
    assert app[0] == (1, True)  # the server's EncryptedExtensions..Finished
    closes = [r for _, r in recs if r.msg_type == "Alert"]
    assert closes == []  # TLS 1.3 close_notify travels as ApplicationData


def test_hello_retry_request_then_second_client_hello_in_clear() -> None:
    conn = tcp_connections(PCAP)[7]
    recs = [(c.direction, r.msg_type) for c in drive(tls, conn) for r in c.records]
    client = [m for d, m in recs if d == 0]
    server = [m for d, m in recs if d == 1]
    # after HRR the client's compatibility CCS does not encrypt its second ClientHello
    assert client[:3] == ["ClientHello", "ChangeCipherSpec", "ClientHello"]
    assert server[:3] == ["HelloRetryRequest", "ChangeCipherSpec", "ServerHello"]


def test_client_alert_when_it_rejects_the_server_certificate() -> None:
    conn = tcp_connections(PCAP)[8]
    alerts = [(c.direction, r.status, r.detail["level"]) for c in drive(tls, conn) for r in c.records
              if r.msg_type == "Alert"]
    assert alerts == [(0, "unknown_ca", "fatal")]


def test_direction_is_inferred_when_the_caller_does_not_pass_it() -> None:
    assert _mine(PCAP, pass_direction=False) == _mine(PCAP)


def test_looks_like_tells_the_real_streams_apart() -> None:
    from netdiag.protocols.dns import parser as dns
    from netdiag.protocols.http import parser as http

    tls_heads = [c.data(d)[:256] for c in tcp_connections(PCAP) for d in (0, 1)]
    http_heads = [c.data(d)[:256] for c in tcp_connections(CAPTURES / "http.pcap") for d in (0, 1)]
    giop_head = b"GIOP\x01\x02\x01\x00" + bytes(24)
    assert all(tls.looks_like(h) for h in tls_heads)
    assert all(http.looks_like(h) for h in http_heads)
    assert not any(tls.looks_like(h) for h in http_heads + [giop_head])
    assert not any(http.looks_like(h) for h in tls_heads + [giop_head])
    # a capture joining a TLS connection late starts with ApplicationData records
    late = b"".join(c.data(1) for c in tcp_connections(PCAP)[:1])
    first_app = late.index(b"\x17\x03\x03")
    assert tls.looks_like(late[first_app:first_app + 256])
    assert not dns.looks_like(b"GET / HTTP/1.1\r\n\r\n")


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def test_record_of_wrong_type_loses_itself_and_the_next_records_still_come_out() -> None:
    # a bad header used to give the whole direction up ("opaque")
    ctx = tls.new_context()
    good = b"\x15\x03\x03\x00\x02\x02\x28"
    data = good + b"\x99\x03\x03\x00\x10" + b"\x00" * 16 + good
    c1 = tls.cut(data, 0, at_end=True, context=ctx, direction=1)
    assert c1 == tls.Cut("message", 7)
    c2 = tls.cut(data, 7, at_end=True, context=ctx, direction=1)
    assert c2.status == "malformed" and "content type 153" in c2.reason and c2.length == 21
    assert tls.cut(data, 28, at_end=True, context=ctx, direction=1) == tls.Cut("message", 7)
    # a run of garbage with no header in it: all of it at the end of the stream; while more may
    # come, wait (the cut must not depend on how the bytes arrived) up to RESYNC_WAIT_BYTES, then
    # all but a possible partial header (4 bytes)
    junk = good + bytes(range(0x20, 0x60))
    assert tls.cut(junk, 7, at_end=True, context=ctx, direction=1).length == len(junk) - 7
    assert tls.cut(junk, 7, at_end=False, context=ctx, direction=1).status == "need_more"
    junk = good + bytes(range(0x20, 0x60)) * (tls.RESYNC_WAIT_BYTES // 64)
    assert tls.cut(junk, 7, at_end=False, context=ctx, direction=1).length == len(junk) - 7 - 4
    # a header-shaped run inside garbage is taken only when the record after it is framed too
    fake = b"\x17\x03\x03\x00\x03abc" + b"\xff" * 10
    data = good + b"\x99" * 3 + fake + good
    c = tls.cut(data, 7, at_end=True, context=ctx, direction=1)
    assert c.status == "malformed" and 7 + c.length == len(data) - len(good)
    # the other direction is unaffected
    assert tls.cut(good, 0, context=ctx, direction=0).status == "message"


def test_oversized_record_and_truncated_record_are_malformed() -> None:
    big = b"\x17\x03\x03" + (2**14 + 2049).to_bytes(2, "big")
    c = tls.cut(big, 0, at_end=True, context=tls.new_context(), direction=0)
    assert c.status == "malformed" and "2^14+2048" in c.reason
    # mid-stream the header is judged at once, where the next record starts only when it is seen
    c = tls.cut(big + b"\x17\x03\x03\x00\x01x" * 2, 0, at_end=False, context=tls.new_context(), direction=0)
    assert c == tls.Cut("malformed", 5, c.reason) and "2^14+2048" in c.reason
    short = b"\x17\x03\x03\x01\x00" + b"x" * 10
    assert tls.cut(short, 0, at_end=False, context=tls.new_context()).status == "need_more"
    c = tls.cut(short, 0, at_end=True, context=tls.new_context())
    assert c.status == "malformed" and "truncated" in c.reason


def test_lying_handshake_length_is_bounded() -> None:
    rec = b"\x16\x03\x03\x00\x08" + b"\x01\xff\xff\xff" + b"\x00" * 4
    out = tls.parse(rec, context=tls.new_context(), direction=0)
    assert out[0].malformed and "1 MiB" in out[0].reason


def test_sslv2_format_client_hello_is_decoded() -> None:
    # RFC 5246 E.2: msg_length, msg_type 1, version 3.1, 2 cipher specs, no session id, 16-byte challenge
    body = b"\x01\x03\x01" + (6).to_bytes(2, "big") + b"\x00\x00" + (16).to_bytes(2, "big")
    body += b"\x00\x00\x2f\x00\x00\x35" + bytes(16)
    msg = bytes([0x80 | (len(body) >> 8), len(body) & 0xFF]) + body
    ctx = tls.new_context()
    assert tls.looks_like(msg)
    assert tls.cut(msg + b"\x16", 0, context=ctx, direction=0) == tls.Cut("message", len(msg))
    (rec,) = tls.parse(msg, context=ctx, direction=0)
    assert rec.msg_type == "ClientHello" and rec.detail["sslv2_format"]
    assert rec.detail["client_version"] == "TLS1.0" and rec.detail["cipher_count"] == 2


def test_random_bytes_and_mutated_real_streams_never_raise_or_hang() -> None:
    rng = random.Random(4)
    streams = [c.data(d) for c in tcp_connections(PCAP) for d in (0, 1)]
    inputs = [rng.randbytes(rng.randint(0, 600)) for _ in range(300)]  # seeded: a failure replays
    for s in streams:
        for _ in range(20):
            b = bytearray(s[:3000])
            for _ in range(rng.randint(1, 6)):
                i = rng.randrange(len(b))
                b[i] = rng.randrange(256)
            inputs.append(bytes(b))
    deadline = time.monotonic() + 20
    for data in inputs:
        ctx = tls.new_context()
        pos = 0
        while pos < len(data):
            c = tls.cut(data, pos, at_end=True, context=ctx, direction=pos % 2)
            assert c.status in ("message", "malformed") and c.length > 0
            recs = tls.parse(data[pos:pos + c.length], context=ctx, direction=pos % 2)
            assert recs and all(r.reason for r in recs if r.malformed)
            pos += c.length
        cut_in_pieces(tls, data, tls.new_context(), seed=len(data), direction=1)
        assert time.monotonic() < deadline


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("tcpdump") or not shutil.which("openssl"),
                    reason="live recapture needs root, tcpdump and openssl")
@pytest.mark.lab
def test_live_recapture_resumption_matches_s_client(tmp_path, monkeypatch) -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_proto_captures", CAPTURES / "make_captures.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    monkeypatch.setattr(mk, "HERE", tmp_path)
    mk.checked(mk.make_tls, "tls.pcap", 9)
    said = (tmp_path / "tls_s_client.txt").read_text().splitlines()
    truth = [line.split(": ", 1)[1].startswith("Reused") for line in said]
    mine = []
    for conn in tcp_connections(tmp_path / "tls.pcap"):
        recs = [r for c in drive(tls, conn) for r in c.records]
        assert not any(r.malformed for r in recs)
        mine.append(next(r for r in recs if r.msg_type == "ServerHello").detail["resumed"])
    assert mine == truth
