"""TLS keeper (RFC 5246/8446): record headers and clear handshake metadata; the rest zero.

Kept: record headers; in clear handshake messages their type and length, versions, cipher
suites, compression, extension types and lengths, and the data of the extensions in
SAFE_TLS_EXTENSIONS. Randoms are zeroed (the HelloRetryRequest value is kept); session ids are
replaced by a keyed HMAC of the same length (resumption still shows); certificates keep their
list and per-certificate lengths only; everything encrypted is zeroed except ChangeCipherSpec
and clear Alerts. Per connection `TlsState` says which directions are encrypted already.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netdiag.protocols.tls import parser as tls_parser
from netdiag.sanitize.addresses import AddressMapper
from netdiag.sanitize.policy import SAFE_TLS_EXTENSIONS, TLS_ALERT, TLS_CCS, TLS_HANDSHAKE


@dataclass
class TlsState:
    """Per TCP connection: which directions are encrypted already (after ChangeCipherSpec or a
    TLS 1.3 ServerHello), so their records are zeroed after the record header."""

    encrypted: list[bool] = field(default_factory=lambda: [False, False])


def tls_keep(msg: bytes, out: bytearray, state: TlsState, direction: int, mapper: AddressMapper) -> None:
    """Record header; clear handshake metadata (see the module docstring); the rest zero."""
    if len(msg) < 5 or msg[0] & 0x80:
        out[:min(len(msg), 5)] = msg[:5]
        return
    out[:5] = msg[:5]
    ctype = msg[0]
    body = msg[5:]
    if ctype == TLS_CCS:
        out[5:] = body
        state.encrypted[direction] = True
        return
    if state.encrypted[direction] and not _clear_hello_after_ccs(msg):
        return
    if ctype == TLS_ALERT and len(body) == 2:
        out[5:] = body
        return
    if ctype != TLS_HANDSHAKE:
        return
    pos = 5
    while pos + 4 <= len(msg):
        htype = msg[pos]
        hlen = int.from_bytes(msg[pos + 1:pos + 4], "big")
        out[pos:pos + 4] = msg[pos:pos + 4]
        start, end = pos + 4, min(len(msg), pos + 4 + hlen)
        try:
            if htype in (1, 2):
                _tls_hello(msg, out, start, end, htype, mapper)
                if htype == 2 and msg[start + 2:start + 34] != tls_parser.HRR_RANDOM:
                    sv = _server_hello_version(msg, start, end)
                    if sv == 0x0304:
                        state.encrypted[direction] = True  # TLS 1.3: encrypted after ServerHello
            elif htype == 11:
                _tls_certificate(msg, out, start, end)
            elif htype == 4 and end - start >= 4:
                out[start:start + 4] = msg[start:start + 4]  # ticket lifetime hint
        except IndexError:
            pass
        pos += 4 + hlen


def _clear_hello_after_ccs(msg: bytes) -> bool:
    """A TLS 1.3 client's second ClientHello follows its compatibility ChangeCipherSpec in clear
    (RFC 8446 D.4): a Handshake record holding exactly one ClientHello/ServerHello header whose
    length fills the record (an encrypted Finished matching that by chance is ~2^-32)."""
    return (len(msg) >= 11 and msg[0] == TLS_HANDSHAKE and msg[5] in (1, 2)
            and int.from_bytes(msg[6:9], "big") == len(msg) - 9 and msg[9] == 3)


def _keep(msg: bytes, out: bytearray, a: int, b: int) -> None:
    out[a:b] = msg[a:b]


def _tls_hello(msg: bytes, out: bytearray, p: int, end: int, htype: int, mapper: AddressMapper) -> None:
    _keep(msg, out, p, p + 2)  # legacy version
    if msg[p + 2:p + 34] == tls_parser.HRR_RANDOM:
        _keep(msg, out, p + 2, p + 34)
    p += 34
    sid_len = msg[p]
    _keep(msg, out, p, p + 1)
    out[p + 1:p + 1 + sid_len] = mapper.opaque_id(msg[p + 1:p + 1 + sid_len])
    p += 1 + sid_len
    if htype == 1:
        n = int.from_bytes(msg[p:p + 2], "big")
        _keep(msg, out, p, p + 2 + n)  # cipher suites
        p += 2 + n
        n = msg[p]
        _keep(msg, out, p, p + 1 + n)  # compression methods
        p += 1 + n
    else:
        _keep(msg, out, p, p + 3)  # cipher suite, compression
        p += 3
    if p + 2 > end:
        return
    _keep(msg, out, p, p + 2)
    ext_end = min(end, p + 2 + int.from_bytes(msg[p:p + 2], "big"))
    p += 2
    while p + 4 <= ext_end:
        etype = int.from_bytes(msg[p:p + 2], "big")
        elen = int.from_bytes(msg[p + 2:p + 4], "big")
        _keep(msg, out, p, p + 4)
        if etype in SAFE_TLS_EXTENSIONS or (htype == 2 and etype == tls_parser.EXT_SUPPORTED_VERSIONS):
            _keep(msg, out, p + 4, min(ext_end, p + 4 + elen))
        elif etype == tls_parser.EXT_KEY_SHARE and htype == 2 and elen >= 2:
            _keep(msg, out, p + 4, p + 6)  # the group the server chose
        p += 4 + elen


def _server_hello_version(msg: bytes, p: int, end: int) -> int:
    try:
        rec = tls_parser._server_hello(bytes(msg[p:end]), tls_parser.new_context())
    except (ValueError, IndexError):
        return 0
    return {"TLS1.3": 0x0304}.get(str(rec.detail.get("chosen_version")), 0)


def _tls_certificate(msg: bytes, out: bytearray, p: int, end: int) -> None:
    _keep(msg, out, p, p + 3)  # certificate_list length
    q = p + 3
    while q + 3 <= end:
        n = int.from_bytes(msg[q:q + 3], "big")
        _keep(msg, out, q, q + 3)
        q += 3 + n


def keep(msg: bytes, out: bytearray, _ctx: object, state: TlsState, direction: int,
         mapper: AddressMapper) -> list:
    """The registry's keeper signature (see netdiag.sanitize.registry) over `tls_keep`."""
    tls_keep(msg, out, state, direction, mapper)
    return []


def framed(msg: bytes) -> bool:
    """A malformed cut that still starts with a valid record header."""
    return len(msg) >= 5 and not tls_parser._valid_header(*tls_parser.RECORD_HEADER.unpack_from(msg))
