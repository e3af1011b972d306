"""TLS record layer and handshake messages, without keys (RFC 5246 TLS 1.2, RFC 8446 TLS 1.3).

Why: with CSIv2 "SSL-required" the IIOP logon runs inside TLS on 9402/9403 and HTTPS carries
the jars; the handshake (SNI, versions, resumption, certificate sizes, client-certificate
requests, alerts) is what we can still see, and the record sizes after it are what the
transactions table turns into request/response turns.

Units: `cut()` frames one TLS record (5-byte header: content type, version, length).
`parse()` decodes a record into records for the messages it carries: one per handshake
message (several may share a record, one may span records: the context keeps a handshake
reassembly buffer per direction), or one for a ChangeCipherSpec, Alert, ApplicationData or
Heartbeat record. An SSLv2-format ClientHello (old Java clients send "SSLv2Hello") is framed
and decoded too.

Resumption: ServerHello detail resumed = the session id echoed from the ClientHello (TLS <=
1.2) or a pre_shared_key selected (TLS 1.3; an echoed id there is only middlebox
compatibility). A TLS <= 1.2 server ChangeCipherSpec that comes before the client's (the
abbreviated handshake) carries resumed=True too, which also catches session-ticket resumption
with an empty session id. `context.resumed` holds the latest verdict.

Record mapping: protocol "tls"; msg_type = handshake message name (ClientHello, ServerHello,
HelloRetryRequest, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone,
CertificateVerify, ClientKeyExchange, Finished, NewSessionTicket, EncryptedExtensions, ...),
"HandshakeFragment" (a record that only carries part of a handshake message: the message
itself is reported by the record that completes it, with `records` = how many records it
spanned), "ChangeCipherSpec", "Alert", "ApplicationData" or "Heartbeat"; operation = SNI on
ClientHello; status = alert description ("handshake_failure", ...; "encrypted" when the alert
is encrypted).

detail, every record: content_type, record_version ("0x0303"), record_bytes; handshake
messages add handshake_type, handshake_bytes, records (records it spanned). ClientHello: sni,
client_version, offered_versions (names, GREASE dropped), supported_versions (the extension's
raw list, None when absent), cipher_count, session_id_bytes, session_ticket_ext, psk_offered,
early_data, alpn, extension_count (SSLv2 format: sslv2_format=True). ServerHello /
HelloRetryRequest: server_version, chosen_version, supported_versions, cipher_suite,
session_id_bytes, resumed. Certificate: certificate_count, certificate_bytes.
NewSessionTicket: lifetime_hint_s, ticket_bytes. Alert: encrypted, level, description (number).
ApplicationData: data_bytes, encrypted_handshake. Encrypted Finished: encrypted=True.

What is encrypted (no keys): TLS 1.2 handshake records after that direction's
ChangeCipherSpec are reported as "Finished" with detail encrypted=True (Wireshark's
"Encrypted Handshake Message"; a renegotiation would look the same). Alerts whose body is
not 2 bytes are encrypted (every cipher adds a MAC or tag; a clear alert is 2 bytes). In TLS
1.3 the ChangeCipherSpec is only for middlebox compatibility (so is the one before a
ClientHello that answers a HelloRetryRequest) and everything after the ServerHello travels in
ApplicationData records (EncryptedExtensions, Certificate, Finished included): no Certificate
record is reported; ApplicationData records before the client's first one, and that first one
(the client's Finished), are flagged encrypted_handshake=True.

Direction: the context is per connection and keeps per-direction state, so the caller should
pass `direction=` (0 client to server, 1 server to client) to cut() and parse(). Without it the
direction is inferred from the handshake message types (ClientHello, ClientKeyExchange... come
from the client; ServerHello... from the server; a continuation belongs to the direction with
an unfinished handshake message).

Bad input and resync rule: a record header with a content type outside 20..24, a version other
than 3.x (x <= 4) or a length above 2^14 + 2048 (RFC 5246 6.2.3, the largest ciphertext) means
we lost the record boundary: `Cut("malformed", ...)` up to the next plausible record header
(a valid header followed by another valid header; at the end of the stream also one whose
record ends there or carries the direction's own record version), so one bad record loses
itself and the bytes up to the next record, not the rest of the direction (the reason names
the bad header). Until the bytes that decide it have arrived the cut waits (`need_more`, at
most `RESYNC_WAIT_BYTES`), so the result does not depend on how the stream was segmented.
A record truncated at the end of the stream is malformed. A handshake message longer than
`MAX_HANDSHAKE_BYTES` (1 MiB) gives up that direction's handshake decoding. parse() never raises.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

from netdiag.protocols import Cut, Record

PROTOCOL = "tls"
RECORD_HEADER = struct.Struct("!BHH")  # content type, version, length
MAX_RECORD_BYTES = (1 << 14) + 2048
MAX_HANDSHAKE_BYTES = 1 << 20
# After a bad record header, wait this long for the bytes that decide where the next record is.
RESYNC_WAIT_BYTES = 4 * MAX_RECORD_BYTES

CONTENT_TYPES = {20: "ChangeCipherSpec", 21: "Alert", 22: "Handshake", 23: "ApplicationData",
                 24: "Heartbeat"}

HANDSHAKE_TYPES = {
    0: "HelloRequest", 1: "ClientHello", 2: "ServerHello", 3: "HelloVerifyRequest",
    4: "NewSessionTicket", 5: "EndOfEarlyData", 8: "EncryptedExtensions", 11: "Certificate",
    12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone",
    15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished", 21: "CertificateURL",
    22: "CertificateStatus", 23: "SupplementalData", 24: "KeyUpdate", 254: "MessageHash",
}
CLIENT_ONLY_TYPES = frozenset({1, 5, 15, 16})
SERVER_ONLY_TYPES = frozenset({0, 2, 3, 4, 8, 12, 13, 14, 22})

VERSIONS = {0x0300: "SSL3.0", 0x0301: "TLS1.0", 0x0302: "TLS1.1", 0x0303: "TLS1.2",
            0x0304: "TLS1.3", 0x0002: "SSL2.0"}

ALERT_LEVELS = {1: "warning", 2: "fatal"}
ALERT_DESCRIPTIONS = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
    22: "record_overflow", 30: "decompression_failure", 40: "handshake_failure",
    41: "no_certificate", 42: "bad_certificate", 43: "unsupported_certificate",
    44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
    47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
    51: "decrypt_error", 60: "export_restriction", 70: "protocol_version",
    71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
    90: "user_canceled", 100: "no_renegotiation", 109: "missing_extension",
    110: "unsupported_extension", 111: "certificate_unobtainable", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 114: "bad_certificate_hash_value",
    115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol",
}

# Extension numbers (IANA TLS ExtensionType registry).
EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SESSION_TICKET = 35
EXT_PRE_SHARED_KEY = 41
EXT_EARLY_DATA = 42
EXT_SUPPORTED_VERSIONS = 43
EXT_KEY_SHARE = 51
EXT_RENEGOTIATION_INFO = 0xFF01

# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
GREASE = frozenset(((i << 8) | i) for i in range(0x0A, 0x100, 0x10))  # RFC 8701


@dataclass(slots=True)
class _Direction:
    records: int = 0
    record_version: int = 0  # of the last well-framed record (resync at the end of the stream)
    ccs_seen: bool = False  # TLS <= 1.2: what follows is encrypted
    app_data_seen: bool = False
    hs_buf: bytearray = field(default_factory=bytearray)
    hs_records: int = 0  # records that contributed to hs_buf
    hs_broken: bool = False


@dataclass(slots=True)
class TlsContext:
    """Per-connection state: per-direction reassembly and what the handshake agreed."""

    dirs: tuple[_Direction, _Direction] = field(default_factory=lambda: (_Direction(), _Direction()))
    client_session_id: bytes = b""
    client_offered_psk: bool = False
    version: int | None = None  # negotiated (supported_versions wins over legacy_version)
    resumed: bool | None = None
    server_hello_seen: bool = False
    hrr_seen: bool = False
    server_hello_done: bool = False
    last_direction: int = 0


def new_context() -> TlsContext:
    """A fresh per-connection context (the caller owns it)."""
    return TlsContext()


def _valid_header(ctype: int, version: int, length: int) -> str:
    """'' when a record header is plausible, else the reason."""
    if ctype not in CONTENT_TYPES:
        return f"record content type {ctype} is not 20..24"
    if version >> 8 != 3 or (version & 0xFF) > 4:
        return f"record version 0x{version:04x} is not 3.0..3.4"
    if length > MAX_RECORD_BYTES:
        return f"record length {length} above 2^14+2048"
    return ""


def _sslv2_hello_len(head: bytes) -> int:
    """Length of an SSLv2-format ClientHello at head (RFC 5246 E.2), or 0 when not one."""
    if len(head) >= 5 and head[0] & 0x80 and head[2] == 1 and head[3] in (2, 3):
        return (((head[0] & 0x7F) << 8) | head[1]) + 2
    return 0


def looks_like(head: bytes) -> bool:
    """True when the stream starts with a plausible TLS record header or an SSLv2 ClientHello.

    Any content type counts (a capture that joins a long-lived IIOP-over-TLS connection
    starts with ApplicationData); when `head` holds the whole first record, the bytes after it
    must start another plausible record header too.
    """
    if len(head) < 5:
        return False
    ctype, version, length = RECORD_HEADER.unpack_from(head)
    if not _valid_header(ctype, version, length):
        nxt = head[5 + length:10 + length]
        if len(nxt) < 5:
            return True
        return not _valid_header(*RECORD_HEADER.unpack(nxt))
    return _sslv2_hello_len(head) > 0


# --------------------------------------------------------------------------------------------
# cut
# --------------------------------------------------------------------------------------------
def cut(data: bytes, start: int = 0, *, at_end: bool = False, context: TlsContext | None = None,
        direction: int | None = None) -> Cut:
    """Where the TLS record starting at data[start] ends (see the module docstring)."""
    if context is None:
        context = TlsContext()
    avail = len(data) - start
    if avail <= 0:
        return Cut("need_more", 0)
    d = context.dirs[direction] if direction in (0, 1) else None
    if avail < 5:
        if at_end:
            return Cut("malformed", avail, f"truncated record header ({avail} bytes at end of stream)")
        return Cut("need_more", 0)
    first = d is None or d.records == 0
    if first and data[start] & 0x80:
        n = _sslv2_hello_len(data[start:start + 5])
        if n:
            if avail >= n:
                return Cut("message", n)
            return Cut("malformed", avail, "truncated SSLv2 ClientHello") if at_end else Cut("need_more", 0)
    ctype, version, length = RECORD_HEADER.unpack_from(data, start)
    bad = _valid_header(ctype, version, length)
    if bad:
        own = d.record_version if d is not None else 0
        nxt, decided = _next_record(data, start, at_end, own)
        if not decided and avail < RESYNC_WAIT_BYTES:
            return Cut("need_more", 0)  # the next header's record is not complete yet: wait
        where = "resynchronised at the next plausible record header" if nxt < len(data) else "skipped"
        return Cut("malformed", nxt - start, f"bad record header ({bad}); {nxt - start} bytes {where}")
    if avail < 5 + length:
        if at_end:
            return Cut("malformed", avail,
                       f"truncated record: length {length} but {avail - 5} bytes at end of stream")
        return Cut("need_more", 0)
    if d is not None:
        d.record_version = version
    return Cut("message", 5 + length)


_HEADER_START_RE = re.compile(rb"[\x14-\x18]\x03[\x00-\x04]")


def resync(data: bytes, start: int = 0, *, context: TlsContext | None = None,
           direction: int | None = None) -> int:
    """Offset of the next plausible record header after data[start] (len(data) when none)."""
    d = context.dirs[direction] if context is not None and direction in (0, 1) else None
    return _next_record(data, start, False, d.record_version if d is not None else 0)[0]


def _next_record(data: bytes, start: int, at_end: bool, own: int) -> tuple[int, bool]:
    """(offset of the next plausible record header after data[start], decided).

    Plausible: a valid header (content type 20..24, version 3.0..3.4, length within bounds)
    followed by another valid header; at the end of the stream also one whose record ends
    exactly there or carries the direction's own record version (`own`). Random bytes pass the
    first test once in ~10^6 offsets and the second once in ~10^12. Undecided (False) while a
    candidate's record is not complete yet (the offset is then that candidate) or, with no
    candidate, while more bytes may come (the offset then keeps a possible partial header), so
    the result does not depend on how the stream arrived.
    """
    n = len(data)
    for m in _HEADER_START_RE.finditer(data, start + 1):
        k = m.start()
        if k + 5 > n:
            break
        ctype, version, length = RECORD_HEADER.unpack_from(data, k)
        if _valid_header(ctype, version, length):
            continue
        after = k + 5 + length
        if after + 5 <= n:
            if not _valid_header(*RECORD_HEADER.unpack_from(data, after)):
                return k, True
        elif not at_end:
            return k, False
        elif after == n or version == own:
            return k, True
    if at_end:
        return n, True
    return max(start + 1, n - 4), False


# --------------------------------------------------------------------------------------------
# parse
# --------------------------------------------------------------------------------------------
def parse(message: bytes, *, context: TlsContext | None = None, direction: int | None = None) -> list[Record]:
    """Decode one record into records for what it carries (never raises)."""
    if context is None:
        context = TlsContext()
    try:
        return _parse_record(message, context, direction)
    except Exception as exc:  # a parser bug must not stop a run
        return [Record(PROTOCOL, "unknown", malformed=True, reason=f"parser error: {exc!r}")]


def _parse_record(message: bytes, ctx: TlsContext, direction: int | None) -> list[Record]:
    if len(message) < 5:
        return [Record(PROTOCOL, "unknown", malformed=True, reason=f"record of {len(message)} bytes")]
    if message[0] & 0x80 and _sslv2_hello_len(message[:5]):
        di = 0 if direction not in (0, 1) else direction
        ctx.dirs[di].records += 1
        ctx.last_direction = di
        return [_sslv2_client_hello(message, ctx)]
    ctype, version, length = RECORD_HEADER.unpack_from(message)
    body = message[5:5 + length]
    base: dict[str, Any] = {"content_type": ctype, "record_version": f"0x{version:04x}",
                            "record_bytes": len(message)}
    bad = _valid_header(ctype, version, length)
    if bad or len(body) != length:
        return [Record(PROTOCOL, CONTENT_TYPES.get(ctype, "unknown"), malformed=True,
                       reason=bad or f"record length {length} but {len(body)} bytes", detail=base)]
    di = _direction_of(ctx, direction, ctype, body)
    d = ctx.dirs[di]
    d.records += 1
    ctx.last_direction = di
    tls13 = ctx.version == 0x0304

    if ctype == 20:
        d.ccs_seen = True
        ok = body == b"\x01"
        detail = dict(base)
        if di == 1 and not tls13 and ctx.server_hello_seen and not ctx.dirs[0].ccs_seen:
            # TLS <= 1.2: the server changes cipher first only in an abbreviated (resumed)
            # handshake; catches ticket resumption with an empty session id (RFC 5077 3.4).
            detail["resumed"] = True
            ctx.resumed = True
        return [Record(PROTOCOL, "ChangeCipherSpec", malformed=not ok,
                       reason="" if ok else "ChangeCipherSpec body is not 0x01", detail=detail)]
    if ctype == 21:
        # Any cipher adds a MAC or tag, so a 2-byte alert is always in clear.
        encrypted = length != 2 or body[0] not in ALERT_LEVELS
        if encrypted:
            return [Record(PROTOCOL, "Alert", status="encrypted", detail={**base, "encrypted": True})]
        level, desc = body[0], body[1]
        name = ALERT_DESCRIPTIONS.get(desc, f"alert_{desc}")
        return [Record(PROTOCOL, "Alert", status=name,
                       detail={**base, "encrypted": False, "level": ALERT_LEVELS[level],
                               "description": desc})]
    if ctype == 23:
        detail = {**base, "data_bytes": length}
        if tls13 and not ctx.dirs[0].app_data_seen:
            # Server: EncryptedExtensions..Finished; client: its first flight is Finished.
            detail["encrypted_handshake"] = True
        d.app_data_seen = True
        return [Record(PROTOCOL, "ApplicationData", detail=detail)]
    if ctype == 24:
        return [Record(PROTOCOL, "Heartbeat", detail=base)]
    # Handshake. After a ChangeCipherSpec it is encrypted, except in TLS 1.3 (CCS is only for
    # middlebox compatibility) and for the ClientHello that answers a HelloRetryRequest.
    compat_ccs = tls13 or (ctx.hrr_seen and not ctx.server_hello_seen)
    if d.ccs_seen and not compat_ccs:
        return [Record(PROTOCOL, "Finished", detail={**base, "encrypted": True})]
    if length == 0:
        return [Record(PROTOCOL, "Handshake", malformed=True, reason="empty handshake record", detail=base)]
    if d.hs_broken:
        return [Record(PROTOCOL, "HandshakeFragment", malformed=True,
                       reason="handshake decoding given up in this direction", detail=base)]
    d.hs_records = d.hs_records + 1 if d.hs_buf else 1
    d.hs_buf += body
    out: list[Record] = []
    buf = d.hs_buf
    pos = 0
    while len(buf) - pos >= 4:
        htype = buf[pos]
        hlen = int.from_bytes(buf[pos + 1:pos + 4], "big")
        if hlen > MAX_HANDSHAKE_BYTES:
            d.hs_broken = True
            d.hs_buf = bytearray()
            out.append(Record(PROTOCOL, HANDSHAKE_TYPES.get(htype, f"Handshake{htype}"), malformed=True,
                              reason=f"handshake message length {hlen} above 1 MiB; "
                                     "handshake decoding given up in this direction", detail=base))
            return out
        if len(buf) - pos < 4 + hlen:
            break
        rec = _handshake(htype, bytes(buf[pos + 4:pos + 4 + hlen]), ctx, di)
        rec.detail = {**base, "handshake_type": htype, "handshake_bytes": 4 + hlen,
                      "records": d.hs_records if pos == 0 else 1, **rec.detail}
        out.append(rec)
        pos += 4 + hlen
    rest = bytes(buf[pos:])
    d.hs_buf = bytearray(rest)
    if not rest:
        d.hs_records = 0
    elif pos:
        d.hs_records = 1  # the unfinished message started in this record
    if not out:
        htype = rest[0]
        want = int.from_bytes(rest[1:4], "big") + 4 if len(rest) >= 4 else None
        out.append(Record(PROTOCOL, "HandshakeFragment",
                          detail={**base, "handshake_type": htype, "fragment_bytes": len(rest),
                                  "handshake_bytes": want}))
    return out


def _direction_of(ctx: TlsContext, direction: int | None, ctype: int, body: bytes) -> int:
    """The caller's direction, else a guess from handshake types and pending fragments."""
    if direction in (0, 1):
        return direction  # type: ignore[return-value]
    for di in (0, 1):
        if ctx.dirs[di].hs_buf and ctype == 22:
            return di
    if ctype == 22 and body:
        t = body[0]
        if t in CLIENT_ONLY_TYPES:
            return 0
        if t in SERVER_ONLY_TYPES:
            return 1
        if t == 11:  # Certificate: the server's comes between ServerHello and ServerHelloDone
            return 1 if ctx.server_hello_seen and not ctx.server_hello_done else 0
    return ctx.last_direction


# --------------------------------------------------------------------------------------------
# Handshake messages
# --------------------------------------------------------------------------------------------
class _Reader:
    """Bounds-checked big-endian reads; raises ValueError on overrun (caught per message)."""

    __slots__ = ("b", "p", "end")

    def __init__(self, b: bytes, p: int = 0, end: int | None = None) -> None:
        self.b, self.p, self.end = b, p, len(b) if end is None else end

    def take(self, n: int) -> bytes:
        if n < 0 or self.p + n > self.end:
            raise ValueError(f"field of {n} bytes runs past the end at offset {self.p}")
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def vec(self, len_bytes: int) -> bytes:
        n = int.from_bytes(self.take(len_bytes), "big")
        return self.take(n)

    def left(self) -> int:
        return self.end - self.p


def _version_name(v: int) -> str:
    return VERSIONS.get(v, f"0x{v:04x}")


def _extensions(r: _Reader) -> list[tuple[int, bytes]]:
    if r.left() == 0:
        return []
    block = _Reader(r.vec(2))
    exts = []
    while block.left():
        etype = block.u16()
        exts.append((etype, block.vec(2)))
    return exts


def _handshake(htype: int, msg: bytes, ctx: TlsContext, di: int) -> Record:
    name = HANDSHAKE_TYPES.get(htype)
    if name is None:
        return Record(PROTOCOL, f"Handshake{htype}", malformed=True,
                      reason=f"unknown handshake type {htype}")
    try:
        if htype == 1:
            return _client_hello(msg, ctx)
        if htype == 2:
            return _server_hello(msg, ctx)
        detail: dict[str, Any] = {}
        if htype == 11:
            detail = _certificate(msg, ctx)
        elif htype == 4:
            r = _Reader(msg)
            detail["lifetime_hint_s"] = int.from_bytes(r.take(4), "big")
            if ctx.version == 0x0304:
                r.take(4)  # ticket_age_add
                r.vec(1)  # nonce
            detail["ticket_bytes"] = len(r.vec(2))
        elif htype == 13:
            detail["certificate_request_bytes"] = len(msg)
        elif htype == 14:
            ctx.server_hello_done = True
            if msg:
                raise ValueError("ServerHelloDone with a body")
        elif htype in (12, 16, 15, 20):
            detail["body_bytes"] = len(msg)
        return Record(PROTOCOL, name, detail=detail)
    except ValueError as exc:
        return Record(PROTOCOL, name, malformed=True, reason=f"{name}: {exc}")


def _client_hello(msg: bytes, ctx: TlsContext) -> Record:
    r = _Reader(msg)
    legacy = r.u16()
    r.take(32)
    session_id = r.vec(1)
    ciphers = r.vec(2)
    r.vec(1)  # compression methods
    exts = _extensions(r)
    detail: dict[str, Any] = {
        "client_version": _version_name(legacy), "session_id_bytes": len(session_id),
        "cipher_count": len(ciphers) // 2, "extension_count": len(exts),
    }
    sni = None
    offered = [legacy]
    supported: list[str] | None = None
    alpn: list[str] = []
    for etype, ebody in exts:
        e = _Reader(ebody)
        if etype == EXT_SERVER_NAME and ebody:
            names = _Reader(e.vec(2))
            while names.left():
                kind, value = names.u8(), names.vec(2)
                if kind == 0:
                    sni = value.decode("ascii", "replace")
        elif etype == EXT_SUPPORTED_VERSIONS:
            vs = e.vec(1)
            offered = [int.from_bytes(vs[i:i + 2], "big") for i in range(0, len(vs) - 1, 2)]
            supported = [f"0x{v:04x}" for v in offered]
            offered = [v for v in offered if v not in GREASE]
        elif etype == EXT_ALPN:
            lst = _Reader(e.vec(2))
            while lst.left():
                alpn.append(lst.vec(1).decode("ascii", "replace"))
    ext_types = {t for t, _ in exts}
    detail.update(sni=sni, offered_versions=[_version_name(v) for v in offered],
                  supported_versions=supported,
                  session_ticket_ext=EXT_SESSION_TICKET in ext_types,
                  psk_offered=EXT_PRE_SHARED_KEY in ext_types, early_data=EXT_EARLY_DATA in ext_types,
                  alpn=alpn)
    ctx.client_session_id = session_id
    ctx.client_offered_psk = EXT_PRE_SHARED_KEY in ext_types
    return Record(PROTOCOL, "ClientHello", operation=sni, detail=detail)


def _server_hello(msg: bytes, ctx: TlsContext) -> Record:
    r = _Reader(msg)
    legacy = r.u16()
    random = r.take(32)
    session_id = r.vec(1)
    cipher = r.u16()
    r.u8()  # compression
    exts = _extensions(r)
    chosen = legacy
    supported: list[str] | None = None
    psk_selected = False
    for etype, ebody in exts:
        if etype == EXT_SUPPORTED_VERSIONS and len(ebody) == 2:
            chosen = int.from_bytes(ebody, "big")
            supported = [f"0x{chosen:04x}"]
        elif etype == EXT_PRE_SHARED_KEY:
            psk_selected = True
    hrr = random == HRR_RANDOM
    if chosen == 0x0304:
        resumed = psk_selected
    else:
        resumed = bool(session_id) and session_id == ctx.client_session_id
    detail = {"server_version": _version_name(legacy), "chosen_version": _version_name(chosen),
              "cipher_suite": f"0x{cipher:04x}", "session_id_bytes": len(session_id),
              "supported_versions": supported, "resumed": resumed, "extension_count": len(exts)}
    if hrr:
        ctx.hrr_seen = True
        detail["resumed"] = None
        return Record(PROTOCOL, "HelloRetryRequest", detail=detail)
    ctx.server_hello_seen = True
    ctx.version = chosen
    ctx.resumed = resumed
    return Record(PROTOCOL, "ServerHello", detail=detail)


def _certificate(msg: bytes, ctx: TlsContext) -> dict[str, Any]:
    r = _Reader(msg)
    if ctx.version == 0x0304:
        r.vec(1)  # certificate_request_context (seen only if a 1.3 Certificate is in clear)
    certs = _Reader(r.vec(3))
    count = 0
    total = 0
    while certs.left():
        cert = certs.vec(3)
        count += 1
        total += len(cert)
        if ctx.version == 0x0304:
            certs.vec(2)  # per-certificate extensions
    return {"certificate_count": count, "certificate_bytes": total}


def _sslv2_client_hello(message: bytes, ctx: TlsContext) -> Record:
    """SSLv2-compatible ClientHello (RFC 5246 appendix E.2)."""
    try:
        r = _Reader(message, 2)
        r.u8()  # msg_type 1
        version = r.u16()
        spec_len, sid_len, chal_len = r.u16(), r.u16(), r.u16()
        r.take(spec_len)
        sid = r.take(sid_len)
        r.take(chal_len)
    except ValueError as exc:
        return Record(PROTOCOL, "ClientHello", malformed=True, reason=f"SSLv2 ClientHello: {exc}")
    ctx.client_session_id = sid
    return Record(PROTOCOL, "ClientHello", detail={
        "sslv2_format": True, "client_version": _version_name(version),
        "offered_versions": [_version_name(version)], "cipher_count": spec_len // 3,
        "session_id_bytes": sid_len, "sni": None, "session_ticket_ext": False,
        "psk_offered": False, "alpn": [], "record_bytes": len(message)})
