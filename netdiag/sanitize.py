"""Sanitising captures for a vendor: keyed address mapping, payload policy per protocol, CPR redaction.

Why: hospital captures carry patient data (CPR numbers, names, worklists) and the hospital's
addressing plan; IBM or the EPJ vendor must get neither, yet must be able to read the same
delays netdiag found. So everything that timing and sequence analysis needs stays (timestamps,
ports, TCP sequence/ack/window/options, frame and payload lengths), identifying bytes are
mapped with a key, and payload is kept only where a protocol's *metadata* is needed.

What happens to each frame (docs/sanitize.md has the full policy and its reasons):

- IPv4 and IPv6 addresses (IP headers, ARP, ICMPv6 neighbour discovery, IPv6 routing headers,
  DNS A/AAAA answers, IOR hosts) are mapped with Crypto-PAn
  (Xu, Fan, Ammar, Moon 2002; the maintained `yacryptopan` implementation), prefix-preserving
  and keyed: two captures sanitised with the same key map every address the same way, so
  before/after captures stay comparable. MAC addresses are pseudonymised with HMAC-SHA256 of
  the key; the result keeps the group (multicast) bit of the original and sets the locally
  administered bit; the broadcast address stays broadcast.
- Tunnels the reader decodes (MPLS incl. pseudowires, GRE incl. TEB, ERSPAN I-III, VXLAN, IP in
  IP) are followed with the reader's own walkers (decode._link_layer / decode._tunnel): every
  layer's addresses and MACs are mapped as above, the innermost payload gets the payload policy,
  GRE and VXLAN checksums are recomputed after the inner ones. An encapsulation the reader does
  not decode is zero-filled after the last understood header and warned about once per kind.
- Ports, timestamps, lengths and all TCP header fields are untouched. The IPv4 header, TCP,
  UDP, ICMP and ICMPv6 checksums are recomputed (RFC 791, 793, 768, 792, 8200 8.1) so
  Wireshark with checksum validation on flags nothing (snaplen-cut segments cannot be
  verified by anyone and keep their field).
- Payload is never truncated: every byte not explicitly kept becomes 0x00, so frame lengths,
  TCP lengths and sequence numbers stay exactly as captured. TCP payload is decided per byte
  stream (each direction reassembled by sequence number, first copy wins), cut into messages by
  netdiag's own parsers (`netdiag.protocols.*.cut`) and kept as follows:
  - GIOP (CORBA 3.0 ch. 15): the 12-byte header and every header field the GIOP parser itself
    reads (request id, response flags, target object key, operation, service-context ids and
    lengths, the CodeSets and CSIv2 discriminants, reply/locate status, exception repository id,
    minor code and completion status, IOR type id/host/port/object key of forwards and naming
    results). Bodies, principals and other service-context data are zeroed. The kept set is
    decided by running `netdiag.protocols.giop.parser`'s own decoders on a CDR reader that records
    what they read, so the policy cannot drift from the parser.
  - HTTP/1.x (RFC 9112): the request or status line (query values overwritten with 'x', names
    kept) and the headers in SAFE_HTTP_HEADERS are kept; other header values (Cookie,
    Authorization, ...) are overwritten with 'x'; bodies are zeroed (chunk-size lines kept so
    the framing still works).
  - TLS (RFC 5246/8446): record headers; in clear handshake messages their type and length,
    versions, cipher suites, compression, extension types and lengths, and the data of the
    extensions in SAFE_TLS_EXTENSIONS (SNI, ALPN, supported_versions, groups, signature
    algorithms, point formats). Randoms are zeroed (the HelloRetryRequest value is kept);
    session ids are replaced by a keyed HMAC of the same length (so resumption still shows);
    certificates keep their list and per-certificate lengths only; everything encrypted is
    zeroed except ChangeCipherSpec and clear Alerts. SNI is a server's host name, not patient
    data: it is kept (host names also appear in DNS), so the vendor sees which service it was.
  - DNS (RFC 1035) over UDP or TCP: header, question and answer names, types, classes, TTLs;
    A/AAAA data mapped with the same Crypto-PAn key (so netdiag still ties names to
    connections); name-valued data (NS, CNAME, PTR, DNAME, MX, SRV) kept; other data zeroed.
    Reverse-lookup names (in-addr.arpa, ip6.arpa) have their address labels overwritten.
  - anything else (unrecognised TCP streams, other UDP, ICMP bodies, non-IP frames after the
    link header): zeroed after the TCP/UDP/ICMP header.
- Wherever text is kept, CPR numbers (DDMMYY-NNNN and DDMMYYNNNN with a valid day and month)
  are overwritten with 'X' (the dash kept), and IPv4/IPv6 literals are replaced by their
  Crypto-PAn mapping when that has the same length and by 'x' otherwise (lengths must not
  change). IOR hosts are the exception: the IIOP profile is re-encoded with the full mapped
  address, the object key after it absorbing the length difference (`rewrite_iiop_profile`), so
  netdiag can still follow naming referrals and forwards in the sanitised file.

Keys: a key file holds 32 random bytes as 64 hex digits (`netdiag sanitize --make-key FILE`).

How (`sanitize_file`): two passes over each file in chunks of raw records (netdiag.capture's
record walkers), so memory does not grow with the capture. Frame headers of the common shapes
(Ethernet/SLL/raw + IPv4 without options or IPv6 without extension headers + TCP/UDP) are walked,
mapped (each distinct MAC and address once, through the keyed mappers), zero-filled and
checksummed by numba kernels over the whole chunk; rarer shapes (ARP, ICMP, options, fragments,
extension headers, cut headers) go through the Python walker. Pass 1 runs the payload policy over
each TCP direction as its segments arrive and keeps only the bytes the policy keeps; pass 2 lays
them over the zero-filled payloads. Memory holds one chunk, the unfinished message of each open
TCP direction (a direction whose protocol is not yet known: up to 64 KiB), 24 bytes of index a
kept run (the kept bytes are spooled to a temporary file) and a small record per 4-tuple; the
last two grow with the number of messages and connections (docs/sanitize.md, Limits). `sanitize_file_in_memory`
is the first, whole-file implementation, kept as the reference the tests compare against.

Limits: each direction is bounded by MAX_STREAM_BYTES (bytes beyond are zeroed). pcapng comments
and other options of the input are not carried over (they may hold free text).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import ipaddress
import os
import re
import secrets
import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numba import njit

from netdiag.capture.decode import MAX_TUNNEL_DEPTH, UD_NONE, UD_TOO_DEEP, _link_layer, _link_to_l3, _tunnel
from netdiag.errors import ConfigError, UsageError
from netdiag.protocols.dns import parser as dns_parser
from netdiag.protocols.giop import parser as giop_parser
from netdiag.protocols.giop.cdr import CdrError, CdrReader
from netdiag.protocols.http import parser as http_parser
from netdiag.protocols.tls import parser as tls_parser

KEY_BYTES = 32  # Crypto-PAn: 16-byte AES key + 16-byte pad
MAX_STREAM_BYTES = 256 * 1024 * 1024  # per direction; bytes beyond are zeroed, never kept

# Link types (LINKTYPE_*) and ether types used below
LINK_ETHERNET, LINK_SLL, LINK_SLL2 = 1, 113, 276
ETH_ARP = 0x0806
IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, IP_PROTO_ICMPV6 = 1, 6, 17, 58
IP_PROTO_AH = 51
IP_PROTO_GRE = 47
VXLAN_PORT = 4789
IPV6_EXT_HEADERS = (0, 43, 44, 60, IP_PROTO_AH)  # hop-by-hop, routing, fragment, destination options, AH

SAFE_HTTP_HEADERS = frozenset({
    "host", "user-agent", "content-length", "content-type", "transfer-encoding", "connection",
    "keep-alive", "accept", "accept-encoding", "accept-language", "accept-ranges", "cache-control",
    "pragma", "date", "last-modified", "if-modified-since", "if-none-match", "etag", "expires",
    "server", "upgrade", "content-encoding", "vary", "age", "expect", "te", "trailer", "via",
})
SAFE_TLS_EXTENSIONS = frozenset({0, 10, 11, 13, 16, 43, 0xFF01})  # SNI, groups, formats, sigalgs, ALPN, versions, reneg
TLS_HANDSHAKE, TLS_CCS, TLS_ALERT = 22, 20, 21

# CPR: DDMMYY then 4 digits, optionally with a dash; not inside a longer digit run.
CPR_RE = re.compile(rb"(?<![0-9])(0[1-9]|[12][0-9]|3[01])(0[1-9]|1[0-2])([0-9]{2})(-?)([0-9]{4})(?![0-9])")
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # Feb 29 allowed: the century is unknown
IPV4_TEXT_RE = re.compile(rb"(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                          rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?![0-9])")
IPV6_TEXT_RE = re.compile(rb"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")


# ------------------------------------------------------------------------------------------
# Keys
# ------------------------------------------------------------------------------------------
def make_key(path: str | Path) -> None:
    """Write a new random key (64 hex digits) to `path`, readable by the owner only."""
    path = Path(path)
    if path.exists():
        raise UsageError(f"{path}: key file exists; refusing to overwrite a key (captures sanitised "
                         "with it would no longer be comparable)")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(KEY_BYTES) + "\n")


def load_key(path: str | Path | None) -> bytes:
    """The 32-byte key from a key file; a clear message says how to create one when missing."""
    how = "create one with `netdiag sanitize --make-key KEYFILE` and keep it to sanitise later captures alike"
    if path is None:
        raise UsageError(f"no key file given (--key-file); {how}")
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: key file not found; {how}")
    text = p.read_text(errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{p}: a key file holds {KEY_BYTES * 2} hex digits ({KEY_BYTES} bytes); {how}")
    return key


# ------------------------------------------------------------------------------------------
# Address mapping
# ------------------------------------------------------------------------------------------
class AddressMapper:
    """Keyed, cached mappings: Crypto-PAn for IPv4/IPv6, HMAC pseudonyms for MACs and ids."""

    def __init__(self, key: bytes) -> None:
        from yacryptopan import CryptoPAn

        if len(key) != KEY_BYTES:
            raise ValueError(f"key must be {KEY_BYTES} bytes")
        self._cp = CryptoPAn(key)
        self._mac_key = hmac.new(key, b"netdiag mac", hashlib.sha256).digest()
        self._id_key = hmac.new(key, b"netdiag id", hashlib.sha256).digest()
        self._ip: dict[bytes, bytes] = {}
        self._mac: dict[bytes, bytes] = {}
        self._text: dict[bytes, bytes] = {}

    def ip(self, raw: bytes) -> bytes:
        """4 or 16 address bytes -> mapped bytes (prefix-preserving)."""
        out = self._ip.get(raw)
        if out is None:
            if len(raw) not in (4, 16):  # a cut-short field: nothing to map, nothing to keep
                return bytes(len(raw))
            version = 4 if len(raw) == 4 else 6
            value = self._cp.anonymize_bin(int.from_bytes(raw, "big"), version)
            out = self._ip[raw] = int(value).to_bytes(len(raw), "big")
        return out

    def ip_text(self, text: str) -> str:
        """An address in text form -> the mapped address in text form."""
        addr = ipaddress.ip_address(text)
        return str(ipaddress.ip_address(self.ip(addr.packed)))

    def mac(self, raw: bytes) -> bytes:
        """6-byte MAC -> keyed pseudonym; group bit kept, locally administered bit set."""
        if raw == b"\xff" * 6 or raw == b"\x00" * 6:
            return raw
        out = self._mac.get(raw)
        if out is None:
            h = bytearray(hmac.new(self._mac_key, raw, hashlib.sha256).digest()[:6])
            h[0] = (h[0] & 0xFC) | 0x02 | (raw[0] & 0x01)
            out = self._mac[raw] = bytes(h)
        return out

    def opaque_id(self, raw: bytes) -> bytes:
        """Keyed pseudonym of the same length (TLS session ids): equal in, equal out."""
        out = b""
        counter = 0
        while len(out) < len(raw):
            out += hmac.new(self._id_key, bytes([counter]) + raw, hashlib.sha256).digest()
            counter += 1
        return out[:len(raw)]

    def text_address(self, literal: bytes) -> bytes:
        """An IP literal found in kept text -> its mapping when the length fits, else 'x'*len."""
        out = self._text.get(literal)
        if out is None:
            try:
                mapped = self.ip_text(literal.decode("ascii")).encode()
            except ValueError:
                return literal
            out = mapped if len(mapped) == len(literal) else b"x" * len(literal)
            self._text[literal] = out
        return out


def _valid_cpr(m: re.Match[bytes]) -> bool:
    return int(m.group(1)) <= _DAYS_IN_MONTH[int(m.group(2)) - 1]


def redact_text(buf: bytearray, mapper: AddressMapper) -> int:
    """CPR numbers -> 'X' digits; IPv4/IPv6 literals -> mapped (same length) or 'x'. In place.

    Runs over kept bytes only (everything else is already zero). Returns the number of CPR
    numbers redacted.
    """
    cprs = _redact_cpr(buf)
    data = bytes(buf)
    for m in IPV4_TEXT_RE.finditer(data):
        a, b = m.span()
        buf[a:b] = mapper.text_address(m.group())
    if b":" in data:
        for m in IPV6_TEXT_RE.finditer(data):
            lit = m.group()
            if lit.count(b":") < 2 or (b"::" not in lit and lit.count(b":") != 7):
                continue
            try:
                ipaddress.IPv6Address(lit.decode())
            except ValueError:
                continue
            a, b = m.span()
            buf[a:b] = mapper.text_address(lit)
    return cprs


# ------------------------------------------------------------------------------------------
# Payload policy per protocol: message bytes -> kept ranges / replacement written into `out`
# ------------------------------------------------------------------------------------------
class _KeepReader(CdrReader):
    """A CdrReader that records the byte ranges its caller reads (GIOP's own decoders)."""

    __slots__ = ("keep", "profiles")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None, *, base: int = 0,
                 little: bool = False, keep: list[tuple[int, int]] | None = None,
                 profiles: list[tuple[int, int, bool]] | None = None) -> None:
        super().__init__(buf, pos, end, base=base, little=little)
        self.keep = keep if keep is not None else []
        self.profiles = profiles if profiles is not None else []

    def _fixed(self, codecs, what):  # noqa: ANN001, ANN202 - CdrReader's signature
        value = super()._fixed(codecs, what)
        self.keep.append((self.pos - codecs[self.little].size, self.pos))
        return value

    def octet(self, what: str = "octet") -> int:
        value = super().octet(what)
        self.keep.append((self.pos - 1, self.pos))
        return value

    def octets(self, n: int, what: str = "octets") -> bytes:
        start = self.pos
        value = super().octets(n, what)
        self.keep.append((start, self.pos))
        return value

    def encapsulation(self, what: str = "encapsulation") -> CdrReader:
        inner = super().encapsulation(what)
        self.keep.append((inner.base, inner.base + 1))  # the byte-order octet
        if what in IIOP_PROFILE_ENCAPSULATIONS:
            self.profiles.append((inner.base, inner.end - inner.base, inner.little))
        return _KeepReader(inner.buf, inner.pos, inner.end, base=inner.base, little=inner.little,
                           keep=self.keep, profiles=self.profiles)


# the `what` names giop.py gives the encapsulations that hold an IIOP ProfileBody (host, port, key)
IIOP_PROFILE_ENCAPSULATIONS = frozenset({"IIOP profile", "ProfileAddr profile"})


def rewrite_iiop_profile(body: bytes, clean: bytes | bytearray, mapper: AddressMapper) -> bytes | None:
    """An IIOP ProfileBody encapsulation whose host is an IP literal, re-encoded with the mapped
    address and the same total length (CORBA 3.0 13.6.3): the object key that follows the host is
    shortened or zero-padded to absorb the difference (forwards are followed by host and port;
    the key of a referral is not used by any analysis). `body` is the original encapsulation,
    `clean` the same bytes after the payload policy: tagged components are taken from `clean`.
    None when the host is a name or it cannot fit.
    """
    n = len(body)
    if n < 8 or body[0] > 1:
        return None
    little = bool(body[0])
    try:
        r = CdrReader(body, 1, n, base=0, little=little)
        major, minor = r.octet(), r.octet()
        host = r.string("host")
        port = r.ushort("port")
        key = r.octet_seq("key")
        comps = b""
        if minor >= 1 and r.remaining() > 0:
            start = r.aligned_pos(4)
            comps = bytes(clean[start:])
        new_host = mapper.ip_text(host).encode()
    except (CdrError, ValueError):
        return None
    u32, u16 = ("<I", "<H") if little else (">I", ">H")
    w = bytearray(body[:1]) + bytes([major, minor])
    w += bytes(-len(w) % 4)
    w += struct.pack(u32, len(new_host) + 1) + new_host + b"\x00"
    w += bytes(-len(w) % 2)
    w += struct.pack(u16, port)
    w += bytes(-len(w) % 4)
    key_start = len(w) + 4
    if comps:
        room = [k for k in range(n - len(comps) - key_start, n - len(comps) - key_start - 4, -1)
                if k >= 0 and key_start + k + (-(key_start + k) % 4) + len(comps) == n]
        if not room:
            return None
        klen = room[0]
    else:
        klen = n - key_start
        if klen < 0:
            return None
    new_key = bytearray(key[:klen].ljust(klen, b"\x00"))
    _redact_cpr(new_key)
    w += struct.pack(u32, klen) + new_key
    w += bytes(-len(w) % 4) if comps else b""
    w += comps
    return bytes(w) if len(w) == n else None


def _redact_cpr(buf: bytearray) -> int:
    data = bytes(buf)
    count = 0
    for m in CPR_RE.finditer(data):
        if _valid_cpr(m):
            a, b = m.span()
            buf[a:b] = bytes(0x2D if c == 0x2D else 0x58 for c in data[a:b])
            count += 1
    return count


def giop_keep(msg: bytes, out: bytearray, ctx: giop_parser.GiopContext, direction: int
              ) -> list[tuple[int, int, bool]]:
    """Copy into `out` the GIOP header and the header fields giop.py's decoders read.

    Returns the IIOP profile encapsulations read (offset, length, little-endian) for
    `rewrite_iiop_profile`.
    """
    g = giop_parser
    if len(msg) < g.HEADER_SIZE or msg[:4] != g.MAGIC:
        return []
    out[:g.HEADER_SIZE] = msg[:g.HEADER_SIZE]
    problem, size = g._header_problem(msg, 0)
    if problem:
        return []
    minor, flags, mtype = msg[5], msg[6], msg[7]
    little = bool(flags & g.FLAG_LITTLE_ENDIAN)
    more = bool(flags & g.FLAG_MORE_FRAGMENTS) and minor >= 1
    r = _KeepReader(msg, g.HEADER_SIZE, g.HEADER_SIZE + size, base=0, little=little)
    rec = g.Record(g.PROTOCOL, g.MESSAGE_TYPES.get(mtype, "unknown"))
    detail: dict = {}
    try:
        if mtype == 0:
            g._request(r, minor, rec, detail)
        elif mtype == 1:
            asked = g._peek_reply_request(msg, r, minor, ctx, direction)
            g._reply(r, minor, rec, detail, asked)
        elif mtype == 2:
            r.ulong("request id")
        elif mtype == 3:
            g._locate_request(r, minor, rec, detail)
        elif mtype == 4:
            g._locate_reply(r, minor, rec, detail)
        elif mtype == 7:
            g._fragment(r, minor, rec, detail, ctx, direction)
    except (CdrError, ValueError, IndexError, struct.error):
        pass
    g._remember(rec, detail, ctx, direction, more)
    for a, b in r.keep:
        out[a:b] = msg[a:b]
    return r.profiles


def http_keep(msg: bytes, out: bytearray) -> None:
    """Start line and safe headers kept, other header values 'x', body zero (chunk lines kept)."""
    end = http_parser._find_head_end(msg, 0)
    head_end = end if end > 0 else len(msg)
    lines = msg[:head_end].split(b"\n")
    pos = 0
    chunked = False
    for i, line in enumerate(lines):
        n = len(line) + (1 if pos + len(line) < len(msg) and i < len(lines) - 1 else 0)
        if i == 0:
            out[pos:pos + n] = _mask_query(msg[pos:pos + n])
        else:
            colon = line.find(b":")
            name = line[:colon].strip().lower() if colon > 0 else b""
            if not line.strip() or (colon > 0 and name.decode("latin-1") in SAFE_HTTP_HEADERS):
                out[pos:pos + n] = msg[pos:pos + n]
                if name == b"transfer-encoding" and b"chunked" in line.lower():
                    chunked = True
            elif colon > 0:
                out[pos:pos + colon + 1] = msg[pos:pos + colon + 1]
                value = line[colon + 1:]
                masked = bytes(c if c in b" \t\r" else 0x78 for c in value)
                out[pos + colon + 1:pos + len(line)] = masked
                out[pos + len(line):pos + n] = msg[pos + len(line):pos + n]
        pos += n
    if end > 0 and chunked:
        _keep_chunk_lines(msg, end, out)


_QUERY_PART = re.compile(rb"([?&;])([^&;=\s#]*)(=?)([^&;\s#]*)")


def _mask_query(line: bytes) -> bytes:
    """A request line with its query values overwritten with 'x' (names kept): a URL may carry a
    patient id or a name, and netdiag's operation is method + path without the query."""
    sp = line.find(b" ")
    q = line.find(b"?", sp + 1)
    end = line.find(b" ", sp + 1)
    if sp < 0 or q < 0 or (0 <= end < q):
        return line
    end = len(line) if end < 0 else end

    def part(m: re.Match[bytes]) -> bytes:
        sep, name, eq, value = m.groups()
        if not eq:  # a bare token: could be the value itself
            return sep + b"x" * len(name)
        return sep + name + eq + b"x" * len(value)

    return line[:q] + _QUERY_PART.sub(part, line[q:end]) + line[end:]


def _keep_chunk_lines(msg: bytes, pos: int, out: bytearray) -> None:
    """Chunked body (RFC 9112 7.1): keep size lines and CRLFs, zero the chunk data."""
    n = len(msg)
    while pos < n:
        eol = msg.find(b"\n", pos, pos + http_parser.MAX_CHUNK_LINE_BYTES)
        if eol < 0:
            return
        out[pos:eol + 1] = msg[pos:eol + 1]
        size_text = msg[pos:eol].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return
        pos = eol + 1
        if size == 0:
            out[pos:n] = msg[pos:n]  # trailers end the message; keep the terminating CRLF
            if msg[pos:n].strip():    # a trailer section could carry anything: blank its values
                out[pos:n] = bytes(c if c in b"\r\n" else 0x78 for c in msg[pos:n])
            return
        pos += size
        crlf_end = min(n, pos + 2)
        out[pos:crlf_end] = msg[pos:crlf_end]
        pos = crlf_end


@dataclass
class _TlsState:
    encrypted: list[bool] = field(default_factory=lambda: [False, False])


def tls_keep(msg: bytes, out: bytearray, state: _TlsState, direction: int, mapper: AddressMapper) -> None:
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


_REVERSE_SUFFIXES = (b"in-addr.arpa", b"ip6.arpa")


def dns_keep(msg: bytes, out: bytearray, mapper: AddressMapper) -> None:
    """DNS message (no TCP prefix): header, names, fixed RR fields; A/AAAA mapped; other data zero."""
    if len(msg) < 12:
        return
    out[:12] = msg[:12]
    qd, an, ns, ar = struct.unpack_from("!HHHH", msg, 4)
    pos = 12
    memo: dict = {}   # the parser's per-message suffix memo (bounds the work on pointer chains)

    def name(p: int) -> int:
        text, after = dns_parser._name(msg, p, memo)
        _keep(msg, out, p, after)
        if text.lower().endswith(("in-addr.arpa", "ip6.arpa")):
            _mask_reverse(out, p, after)
        return after

    try:
        for _ in range(qd):
            pos = name(pos)
            _keep(msg, out, pos, pos + 4)
            pos += 4
        for _ in range(an + ns + ar):
            pos = name(pos)
            rtype, _rclass, _ttl, rdlen = dns_parser.RR_FIXED.unpack_from(msg, pos)
            _keep(msg, out, pos, pos + 10)
            pos += 10
            rd = msg[pos:pos + rdlen]
            if len(rd) < rdlen:
                return  # cut short: the data stays zero
            if rtype == 1 and rdlen == 4:
                out[pos:pos + 4] = mapper.ip(rd)
            elif rtype == 28 and rdlen == 16:
                out[pos:pos + 16] = mapper.ip(rd)
            elif rtype in (2, 5, 12, 39):
                name(pos)
            elif rtype == 15 and rdlen > 2:
                _keep(msg, out, pos, pos + 2)
                name(pos + 2)
            elif rtype == 33 and rdlen > 6:
                _keep(msg, out, pos, pos + 6)
                name(pos + 6)
            pos += rdlen
    except (dns_parser._Fault, struct.error, IndexError):
        return


def _mask_reverse(out: bytearray, p: int, end: int) -> None:
    """Overwrite the address labels of a reverse name (inline labels only) with 'x'."""
    while p < end:
        n = out[p]
        if n == 0 or n >= 0xC0:
            return
        label = bytes(out[p + 1:p + 1 + n]).lower()
        if label in (b"in-addr", b"ip6", b"arpa"):
            return
        out[p + 1:p + 1 + n] = b"x" * n
        p += 1 + n


# ------------------------------------------------------------------------------------------
# Byte streams: which protocol, and the sanitised bytes of each direction
# ------------------------------------------------------------------------------------------
STREAM_PARSERS = (("giop", giop_parser), ("tls", tls_parser), ("http", http_parser))


def _framed(proto: str, msg: bytes) -> bool:
    """A malformed cut that still starts with the protocol's own header (a message the stream or
    the capture cut short): its header fields are kept like a whole message's."""
    if proto == "giop":
        return msg[:4] == giop_parser.MAGIC and not giop_parser._header_problem(msg, 0)[0] if len(msg) >= 12 else False
    if proto == "http":
        return bool(http_parser._START_RE.match(msg)) or msg.startswith(b"HTTP/1.")
    if proto == "tls":
        return len(msg) >= 5 and not tls_parser._valid_header(*tls_parser.RECORD_HEADER.unpack_from(msg))
    return False


def sanitize_stream_pair(streams: tuple[bytes, bytes], server_port: int, mapper: AddressMapper,
                         stats: SanitizeStats | None = None) -> tuple[bytearray, bytearray]:
    """Both directions of one TCP connection (0 = client to server) -> sanitised copies."""
    outs = (bytearray(len(streams[0])), bytearray(len(streams[1])))
    proto = None
    if server_port in dns_parser.PORTS:
        proto = "dns"
    else:
        for name, mod in STREAM_PARSERS:
            if any(s and mod.looks_like(s[:256]) for s in streams):
                proto = name
                break
        if proto is None and any(giop_parser.MAGIC in s[:65536] for s in streams):
            proto = "giop"  # joined mid-message: the parser resynchronises on the magic
    if proto is None:
        return outs
    mod = {"giop": giop_parser, "tls": tls_parser, "http": http_parser, "dns": dns_parser}[proto]
    ctx = dns_parser.new_context("tcp") if proto == "dns" else mod.new_context()
    tls_state = _TlsState()
    for d in (0, 1):
        data, out = streams[d], outs[d]
        pos = 0
        steps = 0
        profiles: list[tuple[int, int]] = []
        while pos < len(data) and steps <= len(data):
            steps += 1
            c = mod.cut(data, pos, at_end=True, context=ctx, direction=d)
            if c.status == "need_more" or c.length <= 0:
                break
            msg = data[pos:pos + c.length]
            if c.status == "malformed" and not _framed(proto, msg):
                pass  # bytes skipped to resynchronise: nothing in them is known to be metadata
            else:  # a message, or a malformed one that starts like one (e.g. cut by the capture end)
                view = bytearray(len(msg))
                try:
                    if proto == "giop":
                        profiles += [(pos + a, n) for a, n, _ in giop_keep(msg, view, ctx, d)]
                    elif proto == "http":
                        http_keep(msg, view)
                    elif proto == "tls":
                        tls_keep(msg, view, tls_state, d, mapper)
                    else:
                        view[:2] = msg[:2]
                        sub = bytearray(len(msg) - 2)
                        dns_keep(msg[2:], sub, mapper)
                        view[2:] = sub
                except Exception:  # noqa: BLE001 - a keeper bug must not leak bytes or stop the run
                    view = bytearray(len(msg))  # the safe default: nothing of this message kept
                    if stats is not None:
                        stats.keeper_errors += 1
                out[pos:pos + c.length] = view[:len(msg)]
            pos += c.length
        cprs = redact_text(out, mapper)
        for a, n in profiles:  # after the text pass: the mapped host must not be mapped twice
            body = rewrite_iiop_profile(data[a:a + n], out[a:a + n], mapper)
            if body is not None:
                out[a:a + n] = body
        if stats is not None:
            stats.cpr_redacted += cprs
    return outs


# ------------------------------------------------------------------------------------------
# Checksums (RFC 1071)
# ------------------------------------------------------------------------------------------
def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """16-bit one's-complement checksum of `data` (padded to even length)."""
    b = bytes(data)
    if len(b) % 2:
        b += b"\x00"
    total = int(np.frombuffer(b, dtype=">u2").sum(dtype=np.uint64)) + initial
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def _pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    if len(src) == 4:
        ph = src + dst + struct.pack("!BBH", 0, proto, length)
    else:
        ph = src + dst + struct.pack("!IxxxB", length, proto)
    return int(np.frombuffer(ph, dtype=">u2").sum(dtype=np.uint64))


# ------------------------------------------------------------------------------------------
# Frames
# ------------------------------------------------------------------------------------------
@dataclass
class _L4:
    """Where one frame's TCP/UDP payload lies (offsets into the frame) and its flow."""

    row: int
    proto: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    flags: int
    pay_start: int
    pay_end: int  # captured end (exclusive)


@dataclass
class SanitizeStats:
    """What sanitising one file did (for the command's summary line)."""

    frames: int = 0
    addresses: int = 0
    macs: int = 0
    cpr_redacted: int = 0
    streams: int = 0
    checksums_fixed: int = 0
    unverifiable: int = 0
    frames_blanked: int = 0  # frames whose IP headers could not be walked: zeroed after the link header
    keeper_errors: int = 0  # messages zeroed whole because a payload keeper failed on them
    undecoded: dict = field(default_factory=dict)  # (UD_* code, detail) -> [frames, first frame number]
    frame_base: int = 0  # frame number of row 0 of the chunk being sanitised, minus one
    warnings: list = field(default_factory=list)  # CaptureWarnings from reading (damaged files)


def sanitize_frames(link_types: np.ndarray, datas: list[bytes], mapper: AddressMapper,
                    stats: SanitizeStats | None = None) -> list[bytes]:
    """Sanitise frames (in file order); returns new frame bytes of the same lengths."""
    stats = stats if stats is not None else SanitizeStats()
    outs = [bytearray(d) for d in datas]
    l4s: list[_L4] = []
    cks: list[tuple[int, int, int, int, int, bytes, bytes, int]] = []  # row, l4, l4end, proto, ck_off, src, dst, wire_len
    frags: dict[tuple, list] = {}
    frag_firsts: list[tuple] = []
    for i, (link, frame) in enumerate(zip(link_types.tolist(), outs, strict=True)):
        _sanitize_frame(i, frame, int(link), mapper, stats, l4s, cks, frags, frag_firsts)
    _fill_payloads(outs, datas, l4s, mapper, stats)
    for row, l4, hl, proto, ck_off, src, dst, key, before_l4 in frag_firsts:
        end, complete = frags[key]
        if not complete:
            stats.unverifiable += 1
            continue
        frame = outs[row]
        frame[ck_off:ck_off + 2] = b"\x00\x00"
        ck = internet_checksum(frame[l4:l4 + hl], _pseudo_sum(src, dst, proto, end - before_l4))
        if proto == IP_PROTO_UDP and ck == 0:
            ck = 0xFFFF
        frame[ck_off:ck_off + 2] = ck.to_bytes(2, "big")  # the rest of the datagram is all zero
        stats.checksums_fixed += 1
    for row, l4, l4end, proto, ck_off, src, dst, wire_len in cks:
        frame = outs[row]
        frame[ck_off:ck_off + 2] = b"\x00\x00"
        if proto in (IP_PROTO_ICMP, IP_PROTO_GRE):
            ck = internet_checksum(frame[l4:l4end])
        else:
            ck = internet_checksum(frame[l4:l4end], _pseudo_sum(src, dst, proto, wire_len))
            if proto == IP_PROTO_UDP and ck == 0:
                ck = 0xFFFF
        frame[ck_off:ck_off + 2] = ck.to_bytes(2, "big")
        stats.checksums_fixed += 1
    return [bytes(o) for o in outs]


def _sanitize_frame(i: int, frame: bytearray, link: int, mapper: AddressMapper, stats: SanitizeStats,
                    l4s: list[_L4], cks: list, frags: dict, frag_firsts: list) -> None:
    """Headers of one frame sanitised in place (payload zeroed; TCP/UDP noted in `l4s` for the
    payload pass, checksums to compute in `cks`): the Python walker for every frame shape."""
    stats.frames += 1
    arr = np.frombuffer(bytes(frame), np.uint8)
    _map_link(frame, link, mapper, stats)
    _sanitize_l2(i, frame, arr, 0, link, mapper, stats, l4s, cks, frags, frag_firsts, 0)


def _note_undecoded(stats: SanitizeStats, i: int, why: int, detail: int) -> None:
    """Count a frame whose encapsulation is not decoded (one warning per kind names the first)."""
    key = (int(why), int(detail))
    got = stats.undecoded.get(key)
    if got is None:
        stats.undecoded[key] = [1, stats.frame_base + i + 1]
    else:
        got[0] += 1


def _sanitize_l2(i: int, frame: bytearray, arr: np.ndarray, off: int, link: int, mapper: AddressMapper,
                 stats: SanitizeStats, l4s: list[_L4], cks: list, frags: dict, frag_firsts: list,
                 depth: int) -> None:
    """The packet at frame[off:] with link type `link` (the outer link, or a tunnel's inner link as
    decode._tunnel names it): the offsets come from the reader's own walkers (decode._link_layer,
    decode._tunnel), so sanitize follows exactly the encapsulations netdiag decodes. `arr` holds
    the original bytes (the fields those walkers read are never changed by sanitising)."""
    n = len(frame)
    try:
        l3, kind, _vlan, why, detail = _link_layer(arr, off, n, link)
        while kind == 1:  # a pseudowire's Ethernet frame (MPLS control word + Ethernet)
            frame[l3:l3 + 6] = mapper.mac(bytes(frame[l3:l3 + 6]))
            frame[l3 + 6:l3 + 12] = mapper.mac(bytes(frame[l3 + 6:l3 + 12]))
            stats.macs += 2
            l3, kind, _vlan, why, detail = _link_layer(arr, l3, n, 1)
    except Exception:  # noqa: BLE001 - a frame the link decoder cannot read is blanked
        l3, kind, why, detail = off, 0, UD_NONE, 0
    if kind == 0:
        if why != UD_NONE:
            _note_undecoded(stats, i, why, detail)
        etype = int.from_bytes(frame[l3 - 2:l3], "big") if link == LINK_ETHERNET and l3 >= off + 14 else 0
        if etype == ETH_ARP and n >= l3 + 28 and frame[l3:l3 + 6] == b"\x00\x01\x08\x00\x06\x04":
            for o, size in ((8, 6), (14, 4), (18, 6), (24, 4)):
                a = l3 + o
                frame[a:a + size] = mapper.mac(bytes(frame[a:a + 6])) if size == 6 else mapper.ip(bytes(frame[a:a + 4]))
            frame[l3 + 28:] = bytes(n - l3 - 28)
        else:
            start = l3 if l3 > 0 else (0 if link not in (LINK_ETHERNET, LINK_SLL, LINK_SLL2) else n)
            frame[start:] = bytes(n - start)
        return
    try:
        _ip_frame(i, frame, l3, kind, mapper, stats, l4s, cks, frags, frag_firsts, arr, depth)
    except (IndexError, ValueError, struct.error):  # a header too odd to walk: keep nothing of it
        frame[l3:] = bytes(n - l3)
        stats.frames_blanked += 1


def _encapsulated(i: int, frame: bytearray, arr: np.ndarray, l3: int, l4: int, proto: int, wire_end: int,
                  src: bytes, dst: bytes, verifiable: bool, mapper: AddressMapper, stats: SanitizeStats,
                  l4s: list[_L4], cks: list, frags: dict, frag_firsts: list, depth: int) -> bool:
    """If the IP packet at l3 carries a tunnel (decode._tunnel decides, as the reader does), sanitise
    the inner packet and the tunnel header's checksum; returns False when it carries none.

    GRE headers (key, sequence), ERSPAN headers and the VXLAN header (VNI) hold no host address and
    stay. An encapsulation decode._tunnel names but does not decode is counted (`undecoded`) and
    everything after the outer IP header's understood part (the GRE header) is zeroed."""
    if proto not in (4, 41, IP_PROTO_GRE, IP_PROTO_UDP):
        return False
    n = len(frame)
    q, inner, why, detail = _tunnel(arr, l3, n, n)
    if inner >= 0 and depth >= MAX_TUNNEL_DEPTH:  # the reader stops here too (UD_TOO_DEEP)
        inner, why, detail = -1, UD_TOO_DEEP, 0
    if inner < 0:
        if why == UD_NONE:
            return False
        _note_undecoded(stats, i, why, detail)
        keep = l4
        if proto == IP_PROTO_GRE and l4 + 4 <= n:
            keep = min(n, l4 + 4 + 4 * bin(frame[l4] & 0xB0).count("1"))
        frame[keep:] = bytes(n - keep)
        if proto == IP_PROTO_GRE and frame[l4] & 0x80 and verifiable and keep >= l4 + 8:
            cks.append((i, l4, wire_end, IP_PROTO_GRE, l4 + 4, src, dst, wire_end - l4))
        return True
    _sanitize_l2(i, frame, arr, q, inner, mapper, stats, l4s, cks, frags, frag_firsts, depth + 1)
    if inner == 1 and q + 14 > n:  # no inner Ethernet header to map (cut): nothing of it stays
        frame[q:] = bytes(n - q)
    if inner == 1 and q + 12 <= n:  # _sanitize_l2 maps the outer link's MACs only for pseudowires: the inner frame's here
        frame[q:q + 6] = mapper.mac(bytes(frame[q:q + 6]))
        frame[q + 6:q + 12] = mapper.mac(bytes(frame[q + 6:q + 12]))
        stats.macs += 2
    # checksums over the tunnel payload: after the inner ones (cks runs in order)
    if proto == IP_PROTO_GRE and frame[l4] & 0x80:
        if verifiable:
            cks.append((i, l4, wire_end, IP_PROTO_GRE, l4 + 4, src, dst, wire_end - l4))
        else:
            stats.unverifiable += 1
    elif proto == IP_PROTO_UDP and frame[l4 + 6:l4 + 8] != b"\x00\x00":  # VXLAN: zero stays zero (RFC 7348)
        if verifiable:
            cks.append((i, l4, wire_end, IP_PROTO_UDP, l4 + 6, src, dst, wire_end - l4))
        else:
            stats.unverifiable += 1
    return True


def _map_link(frame: bytearray, link: int, mapper: AddressMapper, stats: SanitizeStats) -> None:
    if link == LINK_ETHERNET and len(frame) >= 12:
        frame[0:6] = mapper.mac(bytes(frame[0:6]))
        frame[6:12] = mapper.mac(bytes(frame[6:12]))
        stats.macs += 2
    elif link == LINK_SLL and len(frame) >= 14:
        alen = int.from_bytes(frame[4:6], "big")
        if alen == 6:
            frame[6:12] = mapper.mac(bytes(frame[6:12]))
            stats.macs += 1
        else:
            frame[6:14] = bytes(8)
    elif link == LINK_SLL2 and len(frame) >= 20:
        if frame[11] == 6:
            frame[12:18] = mapper.mac(bytes(frame[12:18]))
            stats.macs += 1
        else:
            frame[12:20] = bytes(8)


def _ip_frame(i: int, frame: bytearray, l3: int, kind: int, mapper: AddressMapper, stats: SanitizeStats,
              l4s: list[_L4], cks: list, frags: dict, frag_firsts: list, arr: np.ndarray | None = None,
              depth: int = 0) -> None:
    n = len(frame)
    frag_key = None
    if kind == 4:
        if n < l3 + 20:
            frame[l3:] = bytes(n - l3)
            return
        ihl = (frame[l3] & 0x0F) * 4
        total = int.from_bytes(frame[l3 + 2:l3 + 4], "big")
        src, dst = mapper.ip(bytes(frame[l3 + 12:l3 + 16])), mapper.ip(bytes(frame[l3 + 16:l3 + 20]))
        frame[l3 + 12:l3 + 16], frame[l3 + 16:l3 + 20] = src, dst
        stats.addresses += 2
        if ihl > 20 and n >= l3 + ihl:
            frame[l3 + 20:l3 + ihl] = b"\x01" * (ihl - 20)  # options may hold addresses: NOPs
        if n >= l3 + max(ihl, 20):
            frame[l3 + 10:l3 + 12] = b"\x00\x00"
            frame[l3 + 10:l3 + 12] = internet_checksum(frame[l3:l3 + ihl]).to_bytes(2, "big")
        proto = frame[l3 + 9]
        frag = int.from_bytes(frame[l3 + 6:l3 + 8], "big")
        l4 = l3 + ihl
        wire_end = l3 + (total if total >= ihl else n - l3)
        first_fragment = (frag & 0x1FFF) == 0
        whole = first_fragment and not (frag & 0x2000)
        if not whole:
            frag_key = (src, dst, bytes(frame[l3 + 4:l3 + 6]), proto)
            frag_off, frag_more, data_start = (frag & 0x1FFF) * 8, bool(frag & 0x2000), l4
        if proto == IP_PROTO_AH and first_fragment and l4 + 12 <= n:  # RFC 4302: skip AH, zero its ICV
            hlen = (frame[l4 + 1] + 2) * 4
            frame[l4 + 12:min(n, l4 + hlen)] = bytes(max(0, min(n, l4 + hlen) - l4 - 12))
            proto, l4 = frame[l4], l4 + hlen
    else:
        if n < l3 + 40:
            frame[l3:] = bytes(n - l3)
            return
        src, dst = mapper.ip(bytes(frame[l3 + 8:l3 + 24])), mapper.ip(bytes(frame[l3 + 24:l3 + 40]))
        frame[l3 + 8:l3 + 24], frame[l3 + 24:l3 + 40] = src, dst
        stats.addresses += 2
        plen = int.from_bytes(frame[l3 + 4:l3 + 6], "big")
        wire_end = l3 + 40 + plen
        proto = frame[l3 + 6]
        l4 = l3 + 40
        first_fragment = whole = True
        while proto in IPV6_EXT_HEADERS and l4 + 8 <= n:
            nxt, hlen = frame[l4], (frame[l4 + 1] + 1) * 8
            if proto == IP_PROTO_AH:
                hlen = (frame[l4 + 1] + 2) * 4
                frame[l4 + 12:min(n, l4 + hlen)] = bytes(max(0, min(n, l4 + hlen) - l4 - 12))  # the ICV
            elif proto == 44:
                hlen = 8
                fo = int.from_bytes(frame[l4 + 2:l4 + 4], "big")
                first_fragment = (fo >> 3) == 0
                whole = False
                frag_key = (src, dst, bytes(frame[l4 + 4:l4 + 8]), nxt)
                frag_off, frag_more, data_start = (fo >> 3) * 8, bool(fo & 1), l4 + 8
                if not first_fragment:
                    proto, l4 = nxt, l4 + hlen
                    break  # fragment data follows, not a header
            elif proto == 43:
                # routing header: the addresses it lists are mapped; the last one is the final
                # destination the upper-layer checksum uses (RFC 8200 8.1)
                segments_left = frame[l4 + 3]
                for a in range(l4 + 8, min(n, l4 + hlen) - 15, 16):
                    frame[a:a + 16] = mapper.ip(bytes(frame[a:a + 16]))
                    if segments_left:
                        dst = bytes(frame[a:a + 16])
            else:
                frame[l4 + 2:min(n, l4 + hlen)] = bytes(max(0, min(n, l4 + hlen) - l4 - 2))
            proto, l4 = nxt, l4 + hlen
    cap_end = min(n, wire_end)
    if frag_key is not None:
        info = frags.setdefault(frag_key, [0, False])
        info[0] = max(info[0], frag_off + wire_end - data_start)
        info[1] = info[1] or not frag_more
    if not first_fragment or l4 >= n:
        frame[min(l4, n):] = bytes(n - min(l4, n))
        return
    if frag_key is not None:
        # first fragment of a fragmented datagram: keep the TCP/UDP header, zero the data; the
        # checksum covers the reassembled datagram, so it is computed once all fragments are seen
        hl = 8 if proto == IP_PROTO_UDP else ((frame[l4 + 12] >> 4) * 4 if l4 + 13 <= n else 0)
        if proto in (IP_PROTO_TCP, IP_PROTO_UDP) and hl and l4 + hl <= n:
            frame[l4 + hl:] = bytes(n - l4 - hl)
            ck_off = l4 + (6 if proto == IP_PROTO_UDP else 16)
            frag_firsts.append((i, l4, hl, proto, ck_off, src, dst, frag_key, l4 - data_start))
        else:
            frame[l4:] = bytes(n - l4)
        return
    wire_len = wire_end - l4
    verifiable = whole and wire_end <= n
    if whole and arr is not None and _encapsulated(i, frame, arr, l3, l4, proto, wire_end, src, dst, verifiable,
                                                   mapper, stats, l4s, cks, frags, frag_firsts, depth):
        return
    if proto == IP_PROTO_TCP and cap_end >= l4 + 20:
        hl = (frame[l4 + 12] >> 4) * 4
        sport, dport = int.from_bytes(frame[l4:l4 + 2], "big"), int.from_bytes(frame[l4 + 2:l4 + 4], "big")
        seq = int.from_bytes(frame[l4 + 4:l4 + 8], "big")
        flags = int.from_bytes(frame[l4 + 12:l4 + 14], "big") & 0x1FF
        ps = min(l4 + hl, cap_end)
        l4s.append(_L4(i, IP_PROTO_TCP, src, dst, sport, dport, seq, flags, ps, cap_end))
        frame[ps:] = bytes(n - ps)  # filled from the sanitised stream later
        if verifiable:
            cks.append((i, l4, wire_end, proto, l4 + 16, src, dst, wire_len))
        else:
            stats.unverifiable += 1
    elif proto == IP_PROTO_UDP and cap_end >= l4 + 8:
        sport, dport = int.from_bytes(frame[l4:l4 + 2], "big"), int.from_bytes(frame[l4 + 2:l4 + 4], "big")
        l4s.append(_L4(i, IP_PROTO_UDP, src, dst, sport, dport, 0, 0, l4 + 8, cap_end))
        frame[l4 + 8:] = bytes(n - l4 - 8)
        if verifiable:
            cks.append((i, l4, wire_end, proto, l4 + 6, src, dst, wire_len))
        else:
            stats.unverifiable += 1
    elif proto in (IP_PROTO_ICMP, IP_PROTO_ICMPV6) and cap_end >= l4 + 8:
        body = bytes(frame[l4:cap_end])
        frame[l4 + 8:] = bytes(n - l4 - 8)  # error bodies quote the original addresses
        if proto == IP_PROTO_ICMPV6 and body[0] in ND_OPTIONS_AT:
            frame[l4:cap_end] = _neighbour_discovery(body, mapper)
        if verifiable:
            cks.append((i, l4, wire_end, proto, l4 + 2, src, dst, wire_len))
    elif proto in (IP_PROTO_TCP, IP_PROTO_UDP):
        stats.unverifiable += 1  # header cut by snaplen: the ports (and what else is there) stay
    else:
        frame[l4:] = bytes(n - l4)


# ICMPv6 neighbour discovery (RFC 4861 4.1-4.5): where the options start; target addresses at 8 (and 24)
ND_OPTIONS_AT = {133: 8, 134: 16, 135: 24, 136: 24, 137: 40}


def _neighbour_discovery(body: bytes, mapper: AddressMapper) -> bytearray:
    """ND message with its addresses mapped: targets, link-layer address and prefix options."""
    out = bytearray(len(body))
    start = ND_OPTIONS_AT[body[0]]
    out[:min(len(body), 16 if body[0] == 134 else 8)] = body[:16 if body[0] == 134 else 8]
    for a in range(8, start, 16):
        if a + 16 <= len(body):
            out[a:a + 16] = mapper.ip(body[a:a + 16])
    p = start
    while p + 2 <= len(body):
        otype, olen = body[p], body[p + 1] * 8
        out[p:p + 2] = body[p:p + 2]
        if olen == 0 or p + olen > len(body):
            break
        if otype in (1, 2) and olen == 8:
            out[p + 2:p + 8] = mapper.mac(body[p + 2:p + 8])
        elif otype == 3 and olen == 32:
            out[p + 2:p + 16] = body[p + 2:p + 16]
            out[p + 16:p + 32] = mapper.ip(body[p + 16:p + 32])
        elif otype == 5:
            out[p + 2:p + olen] = body[p + 2:p + olen]
        p += olen
    return out


def _fill_payloads(outs: list[bytearray], originals: list[bytes], l4s: list[_L4], mapper: AddressMapper,
                   stats: SanitizeStats) -> None:
    """Put the sanitised payload bytes back into each TCP/UDP frame."""
    dns_ports = dns_parser.PORTS
    flows: dict[tuple, list[_L4]] = {}
    gens: dict[tuple, list[int]] = {}
    for x in l4s:
        if x.proto == IP_PROTO_UDP:
            if (x.sport in dns_ports or x.dport in dns_ports) and x.pay_end > x.pay_start:
                msg = originals[x.row][x.pay_start:x.pay_end]
                view = bytearray(len(msg))
                dns_keep(msg, view, mapper)
                stats.cpr_redacted += redact_text(view, mapper)
                outs[x.row][x.pay_start:x.pay_end] = view
            continue
        flows.setdefault((x.src, x.sport, x.dst, x.dport, _generation(gens, x)), []).append(x)
    done: set[tuple] = set()
    for key, segs in flows.items():
        if key in done:
            continue
        rkey = (key[2], key[3], key[0], key[1], key[4])
        other = flows.get(rkey, [])
        done.add(key)
        done.add(rkey)
        # the client sent the SYN (no ACK); without one, the higher (ephemeral) port is the client
        c_key, c_segs, s_segs = key, segs, other
        if any(s.flags & 0x12 == 0x12 for s in segs) or (
                not any(s.flags & 0x12 == 0x02 for s in segs) and not any(s.flags & 0x12 == 0x12 for s in other)
                and key[1] < key[3]):
            c_key, c_segs, s_segs = rkey, other, segs
        placed = []
        streams = []
        for segs_d in (c_segs, s_segs):
            data, where = _stream_of(originals, segs_d)
            streams.append(data)
            placed.append(where)
        if not streams[0] and not streams[1]:
            continue
        stats.streams += 1
        clean = sanitize_stream_pair((streams[0], streams[1]), c_key[3], mapper, stats)
        for d in (0, 1):
            for s, off in placed[d]:
                n = s.pay_end - s.pay_start
                outs[s.row][s.pay_start:s.pay_end] = clean[d][off:off + n]


def _generation(gens: dict[tuple, list[int]], x: _L4) -> int:
    """Which use of a 4-tuple this segment belongs to: a SYN (no ACK) with a new sequence number
    starts the next connection on the same ports (ephemeral ports are reused in long captures)."""
    a, b = (x.src, x.sport), (x.dst, x.dport)
    key = (a, b) if a <= b else (b, a)
    state = gens.get(key)  # [generation, ISN of its SYN (-1: none yet)]
    if state is None:
        state = gens[key] = [0, -1]
    if x.flags & 0x12 == 0x02:
        if state[1] == -1:
            state[1] = x.seq
        elif x.seq != state[1]:
            state[0] += 1
            state[1] = x.seq
    return state[0]


def _stream_of(originals: list[bytes], segs: list[_L4]) -> tuple[bytes, list[tuple[_L4, int]]]:
    """Reassemble one direction from the original frames: (stream bytes, [(segment, offset)])."""
    if not segs:
        return b"", []
    syn = next((s for s in segs if s.flags & 0x02), None)
    data_segs = [s for s in segs if s.pay_end > s.pay_start]
    if not data_segs:
        return b"", []
    if syn is not None:
        base = (syn.seq + 1) & 0xFFFFFFFF
    else:
        first = data_segs[0].seq
        base = (min(((s.seq - first + (1 << 31)) & 0xFFFFFFFF) - (1 << 31) for s in data_segs) + first) & 0xFFFFFFFF
    placed: list[tuple[_L4, int]] = []
    end = 0
    for s in data_segs:
        off = (s.seq - base) & 0xFFFFFFFF
        if off >= (1 << 31) or off + (s.pay_end - s.pay_start) > MAX_STREAM_BYTES:
            continue  # before the SYN or beyond the bound: stays zero
        placed.append((s, off))
        end = max(end, off + s.pay_end - s.pay_start)
    buf = np.zeros(end, np.uint8)
    filled = np.zeros(end, np.bool_)
    for s, off in placed:
        n = s.pay_end - s.pay_start
        piece = np.frombuffer(originals[s.row], np.uint8, n, s.pay_start)
        hole = ~filled[off:off + n]
        buf[off:off + n][hole] = piece[hole]   # first copy wins
        filled[off:off + n] = True
    return buf.tobytes(), placed


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------
def sanitized_name(path: str | Path) -> str:
    """Output file name for an input capture: <stem>.sanitized.pcapng (.gz dropped)."""
    name = Path(path).name
    for suffix in (".gz", ".pcapng", ".pcap", ".cap"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return f"{name}.sanitized.pcapng"


def sanitize_file_in_memory(path: str | Path, out_path: str | Path, mapper: AddressMapper) -> SanitizeStats:
    """The first implementation, kept as the reference the streaming `sanitize_file` is tested
    against: read one capture whole, sanitise every frame in Python, write pcapng."""
    from netdiag.evidence import read_raw_frames
    from netdiag.pcapng_writer import OutFrame, write_pcapng

    raw = read_raw_frames([path])
    stats = SanitizeStats(warnings=list(raw.warnings))
    clean = sanitize_frames(raw.link_type, raw.datas, mapper, stats)
    write_pcapng(out_path, (OutFrame(int(lt), int(ts), d, int(ol)) for lt, ts, d, ol in
                            zip(raw.link_type.tolist(), raw.ts_ns.tolist(), clean, raw.orig_len.tolist(),
                                strict=True)), application="netdiag sanitize")
    _warn_undecoded(str(path), stats)
    return stats


# ------------------------------------------------------------------------------------------
# Streaming engine: chunks of raw records, numba kernels for frame headers, per-stream state
# ------------------------------------------------------------------------------------------
# Why two passes: a frame's payload policy depends on bytes that may come later (the protocol
# of its connection is recognised from the first 256 bytes of both directions; a message that
# starts in this frame may end many frames later). Pass 1 walks the file chunk by chunk and
# runs the payload policy over each TCP direction incrementally, keeping only (a) the partial
# message at the tail of each direction, (b) the kept bytes ("runs": metadata, tens of bytes a
# message) of recognised connections and (c) where each payload frame of a recognised
# connection sits in its stream (in a temporary file). Pass 2 reads the file again, sanitises
# the headers of a whole chunk in numba kernels, lays the kept runs over the zero-filled
# payloads, recomputes checksums and appends the chunk to the pcapng output.
CHUNK_FRAMES = 65_536
LINGER_NS = 120 * 10**9  # a closed connection is finished after this long without a segment
PENDING_LIMIT = 8 * 1024 * 1024  # out-of-order bytes held behind a hole before the hole is given up (zeros)
RUN_GAP = 32  # zero bytes that split the kept bytes of one message into separate runs

# per-frame fields written by _classify (columns of one int64 matrix)
(F_CLS, F_L3, F_VER, F_L4, F_PS, F_PE, F_WIRE_END, F_SPORT, F_DPORT, F_SEQ, F_FLAGS, F_VERIF, F_MAC0,
 F_MAC1, F_SRC, F_DST) = range(16)
N_FIELDS = 16
CLS_SLOW, CLS_TCP, CLS_UDP = 0, 1, 2


@njit(cache=True)
def _classify(b, fo, cap, link, f):  # pragma: no cover - numba
    """Walk the headers of each frame b[fo[i]:fo[i]+cap[i]]; plain Ethernet/SLL/raw + IPv4 (no
    options, not fragmented) or IPv6 (no extension header) + TCP/UDP with whole headers are
    'fast' (CLS_TCP / CLS_UDP); everything else is CLS_SLOW and goes through the Python walker."""
    for i in range(len(fo)):
        f[i, F_CLS] = CLS_SLOW
        o = fo[i]
        n = o + cap[i]
        lt = link[i]
        mac0 = -1
        mac1 = -1
        if lt == 1:
            if cap[i] < 14:
                continue
            mac0, mac1 = o, o + 6
        elif lt == 113:
            if cap[i] < 16 or b[o + 4] != 0 or b[o + 5] != 6:
                continue
            mac0 = o + 6
        elif lt == 276:
            if cap[i] < 20 or b[o + 11] != 6:
                continue
            mac0 = o + 12
        l3, kind, _vlan = _link_to_l3(b, o, n, lt)
        if kind == 4:
            if n < l3 + 20 or (b[l3] & 0x0F) != 5:
                continue
            total = (np.int64(b[l3 + 2]) << 8) | b[l3 + 3]
            frag = (np.int64(b[l3 + 6]) << 8) | b[l3 + 7]
            if frag & 0x3FFF:
                continue
            proto = b[l3 + 9]
            l4 = l3 + 20
            wire_end = l3 + total if total >= 20 else n
            src, dst = l3 + 12, l3 + 16
        elif kind == 6:
            if n < l3 + 40:
                continue
            plen = (np.int64(b[l3 + 4]) << 8) | b[l3 + 5]
            proto = b[l3 + 6]
            l4 = l3 + 40
            wire_end = l3 + 40 + plen
            src, dst = l3 + 8, l3 + 24
        else:
            continue
        if l4 >= n:
            continue
        cap_end = min(n, wire_end)
        if proto == IP_PROTO_TCP:
            if cap_end < l4 + 20:
                continue
            hl = (b[l4 + 12] >> 4) * 4
            if hl < 20:
                continue
            f[i, F_CLS] = CLS_TCP
            f[i, F_PS] = min(l4 + hl, cap_end)
            f[i, F_SEQ] = ((np.int64(b[l4 + 4]) << 24) | (np.int64(b[l4 + 5]) << 16)
                           | (np.int64(b[l4 + 6]) << 8) | b[l4 + 7])
            f[i, F_FLAGS] = ((np.int64(b[l4 + 12]) << 8) | b[l4 + 13]) & 0x1FF
        elif proto == IP_PROTO_UDP:
            if cap_end < l4 + 8 or ((np.int64(b[l4 + 2]) << 8) | b[l4 + 3]) == VXLAN_PORT:
                continue  # VXLAN goes through the Python walker, which follows the tunnel
            f[i, F_CLS] = CLS_UDP
            f[i, F_PS] = l4 + 8
            f[i, F_SEQ] = 0
            f[i, F_FLAGS] = 0
        else:
            continue
        f[i, F_L3] = l3
        f[i, F_VER] = kind
        f[i, F_L4] = l4
        f[i, F_PE] = cap_end
        f[i, F_WIRE_END] = wire_end
        f[i, F_SPORT] = (np.int64(b[l4]) << 8) | b[l4 + 1]
        f[i, F_DPORT] = (np.int64(b[l4 + 2]) << 8) | b[l4 + 3]
        f[i, F_VERIF] = 1 if wire_end <= n else 0
        f[i, F_MAC0] = mac0
        f[i, F_MAC1] = mac1
        f[i, F_SRC] = src
        f[i, F_DST] = dst


@njit(cache=True, inline="always")
def _sum16(b, a, e):  # pragma: no cover - numba
    s = np.int64(0)
    i = a
    while i + 1 < e:
        s += (np.int64(b[i]) << 8) | b[i + 1]
        i += 2
    if i < e:
        s += np.int64(b[i]) << 8
    return s


@njit(cache=True, inline="always")
def _fold(s):  # pragma: no cover - numba
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


@njit(cache=True)
def _zero_payloads(b, fo, cap, f):  # pragma: no cover - numba
    """Fast frames: zero everything after the TCP/UDP header (payload, trailer) and recompute
    the IPv4 header checksum (the addresses are already mapped)."""
    for i in range(len(fo)):
        if f[i, F_CLS] == CLS_SLOW:
            continue
        n = fo[i] + cap[i]
        for k in range(f[i, F_PS], n):
            b[k] = 0
        if f[i, F_VER] == 4:
            l3 = f[i, F_L3]
            b[l3 + 10] = 0
            b[l3 + 11] = 0
            ck = _fold(_sum16(b, l3, l3 + 20))
            b[l3 + 10] = ck >> 8
            b[l3 + 11] = ck & 0xFF


@njit(cache=True)
def _l4_checksums(b, f):  # pragma: no cover - numba
    """Fast frames whose datagram is wholly captured: TCP/UDP checksum over the sanitised bytes
    with the mapped addresses' pseudo-header (RFC 793 3.1, 768, 8200 8.1). Returns how many."""
    done = 0
    for i in range(f.shape[0]):
        c = f[i, F_CLS]
        if c == CLS_SLOW or f[i, F_VERIF] == 0:
            continue
        l4, end = f[i, F_L4], f[i, F_WIRE_END]
        alen = 4 if f[i, F_VER] == 4 else 16
        proto = IP_PROTO_TCP if c == CLS_TCP else IP_PROTO_UDP
        at = l4 + (16 if c == CLS_TCP else 6)
        b[at] = 0
        b[at + 1] = 0
        wire_len = end - l4
        s = (_sum16(b, f[i, F_SRC], f[i, F_SRC] + alen) + _sum16(b, f[i, F_DST], f[i, F_DST] + alen)
             + proto + (wire_len >> 16) + (wire_len & 0xFFFF))
        ck = _fold(s + _sum16(b, l4, end))
        if c == CLS_UDP and ck == 0:
            ck = 0xFFFF
        b[at] = ck >> 8
        b[at + 1] = ck & 0xFF
        done += 1
    return done


@njit(cache=True)
def _gather(src, off, cap, out_off, out):  # pragma: no cover - numba
    for i in range(len(off)):
        o, d = off[i], out_off[i]
        for k in range(cap[i]):
            out[d + k] = src[o + k]


def _fields_at(b: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    """Rows of `width` bytes at each position (a 2-D uint8 array)."""
    return b[pos[:, None] + np.arange(width)]


def _map_columns(b: np.ndarray, pos: np.ndarray, width: int, fn) -> np.ndarray:  # noqa: ANN001
    """Mapped bytes for the `width`-byte fields at `pos`: each distinct value mapped once."""
    if not len(pos):
        return np.empty((0, width), np.uint8)
    rows = _fields_at(b, pos, width)
    if width <= 8:  # one integer per field: a plain sort instead of a row-wise one
        keys = np.zeros((len(rows), 8), np.uint8)
        keys[:, 8 - width:] = rows
        _, first, inv = np.unique(keys.view(">u8").reshape(-1), return_index=True, return_inverse=True)
        uniq = rows[first]
    else:
        uniq, inv = np.unique(rows, axis=0, return_inverse=True)
    mapped = np.frombuffer(b"".join(fn(u.tobytes()) for u in uniq), np.uint8).reshape(-1, width)
    return mapped[inv.reshape(-1)]


def _set_at(b: np.ndarray, pos: np.ndarray, values: np.ndarray) -> None:
    if len(pos):
        b[pos[:, None] + np.arange(values.shape[1])] = values


def _map_fast_headers(b: np.ndarray, f: np.ndarray, mapper: AddressMapper, stats: SanitizeStats) -> None:
    """MACs and IP addresses of the fast frames, mapped per distinct value and written in place."""
    fast = f[:, F_CLS] != CLS_SLOW
    for col in (F_MAC0, F_MAC1):
        pos = f[fast & (f[:, col] >= 0), col]
        _set_at(b, pos, _map_columns(b, pos, 6, mapper.mac))
        stats.macs += len(pos)
    for ver, width in ((4, 4), (6, 16)):
        sel = fast & (f[:, F_VER] == ver)
        for col in (F_SRC, F_DST):
            pos = f[sel, col]
            _set_at(b, pos, _map_columns(b, pos, width, mapper.ip))
            stats.addresses += len(pos)


@dataclass
class _Dir:
    """One direction of a TCP connection while pass 1 walks it."""

    sid: int
    base: int | None = None
    buf: bytearray = field(default_factory=bytearray)  # contiguous bytes from buf_off not yet cut
    buf_off: int = 0
    pending: list = field(default_factory=list)  # (offset, bytes) beyond a hole
    pending_bytes: int = 0
    retry: int = 0  # cut again once buf holds this many bytes (a message is still incomplete)
    syn: bool = False
    synack: bool = False
    fin: bool = False

    def add(self, off: int, data: bytes) -> None:
        end = self.buf_off + len(self.buf)
        if off + len(data) <= end:
            return  # a copy of bytes we have (first copy wins)
        if off <= end:
            self.buf += data[end - off:]
            self._drain()
        else:
            self.pending.append((off, data))
            self.pending_bytes += len(data)
            if self.pending_bytes > PENDING_LIMIT:  # the hole is not coming back: zeros, like a capture gap
                self.fill_holes(first_only=True)

    def _drain(self) -> None:
        if not self.pending:
            return
        self.pending.sort(key=lambda p: p[0])
        keep = []
        for off, data in self.pending:
            end = self.buf_off + len(self.buf)
            if off <= end:
                if off + len(data) > end:
                    self.buf += data[end - off:]
            else:
                keep.append((off, data))
        self.pending = keep
        self.pending_bytes = sum(len(d) for _, d in keep)

    def fill_holes(self, first_only: bool = False) -> None:
        """Give up waiting for missing bytes: zeros up to the next piece held (all, at the end)."""
        while self.pending:
            self.pending.sort(key=lambda p: p[0])
            end = self.buf_off + len(self.buf)
            gap = self.pending[0][0] - end
            if gap > 0:
                self.buf += bytes(gap)
            self._drain()
            if first_only:
                return


class _Conn:
    """One TCP connection (one use of a 4-tuple) in pass 1: protocol, parser context, directions."""

    __slots__ = ("dirs", "first_side", "first_ports", "state", "proto", "mod", "ctx", "tls_state", "client_side",
                 "had_data", "closed", "last_ts")

    UNDECIDED, NONE, PROTO, FINAL = 0, 1, 2, 3

    def __init__(self, first_side: int, first_ports: tuple[int, int]) -> None:
        self.dirs: dict[int, _Dir] = {}
        self.first_side = first_side
        self.first_ports = first_ports
        self.state = _Conn.UNDECIDED
        self.proto: str | None = None
        self.mod = None
        self.ctx = None
        self.tls_state = _TlsState()
        self.client_side = first_side
        self.had_data = False
        self.closed = False  # FIN both ways or RST seen: finished once it lingers without segments
        self.last_ts = 0


class StreamSanitizer:
    """Pass 1: the payload policy run over every TCP direction as its segments arrive."""

    def __init__(self, mapper: AddressMapper, stats: SanitizeStats, spool: BinaryIO | None = None) -> None:
        self.mapper = mapper
        self.stats = stats
        self.tracks: dict[tuple, list] = {}  # unordered 4-tuple -> [generation, ISN, _Conn]
        # direction id -> kept runs by offset, flattened (stream offset, spool position, length);
        # the bytes themselves go to `spool` (a temporary file), so memory is 24 bytes a run
        self.runs: dict[int, array] = {}
        self.spool = spool if spool is not None else io.BytesIO()
        self.spool_pos = 0
        self.next_sid = 0
        self.closed: list[_Conn] = []  # closed connections not finished yet
        self.latest_ts = 0

    def sweep(self) -> None:
        """Finish closed connections that have had no segment for LINGER_NS of capture time
        (their memory is freed; `segment` applies the same rule, so chunking changes nothing)."""
        still = []
        for conn in self.closed:
            if self.latest_ts - conn.last_ts > LINGER_NS:
                self.finish(conn)
            elif conn.state not in (_Conn.NONE, _Conn.FINAL):
                still.append(conn)
        self.closed = still

    # -- per segment --------------------------------------------------------------------------
    def segment(self, key: tuple, side: int, ports: tuple[int, int], seq: int, flags: int, payload: bytes,
                ts_ns: int = 0) -> tuple[int, int]:
        """Feed one TCP segment; returns (direction id, stream offset) of its payload, or (-1, 0)
        when its payload stays zero."""
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = [0, -1, _Conn(side, ports)]
        if flags & 0x12 == 0x02:  # a SYN with a new ISN: the next use of these ports (_generation)
            if track[1] == -1:
                track[1] = seq
            elif seq != track[1]:
                self.finish(track[2])
                track[0] += 1
                track[1] = seq
                track[2] = _Conn(side, ports)
        conn: _Conn = track[2]
        if not payload and not flags & 0x07:
            return (-1, 0)  # a pure ACK changes nothing here (`_worth_feeding` relies on it)
        if conn.closed and ts_ns - conn.last_ts > LINGER_NS:
            self.finish(conn)  # segments long after the close are late copies: no new bytes kept
        conn.last_ts = max(conn.last_ts, ts_ns)
        self.latest_ts = max(self.latest_ts, ts_ns)
        d = conn.dirs.get(side)
        if d is None:
            d = conn.dirs[side] = _Dir(self.next_sid)
            self.next_sid += 1
        if flags & 0x02 and d.base is None:
            d.base = (seq + 1) & 0xFFFFFFFF
        if flags & 0x12 == 0x02:
            d.syn = True
        elif flags & 0x12 == 0x12:
            d.synack = True
        result = (-1, 0)
        n = len(payload)
        if n:
            if d.base is None:
                d.base = seq
            off = (seq - d.base) & 0xFFFFFFFF
            if off < (1 << 31) and off + n <= MAX_STREAM_BYTES:
                if not conn.had_data:
                    conn.had_data = True
                    self.stats.streams += 1
                if conn.state == _Conn.UNDECIDED:
                    d.add(off, payload)
                    result = (d.sid, off)
                    self._decide(conn, final=False)
                elif conn.state == _Conn.PROTO:
                    d.add(off, payload)
                    result = (d.sid, off)
                    self._process(conn, side, final=False)
                elif conn.state == _Conn.FINAL and conn.proto is not None:
                    result = (d.sid, off)  # a late copy: the runs already cut cover it
        if flags & 0x01:
            d.fin = True
        if not conn.closed and (flags & 0x04 or (len(conn.dirs) == 2 and all(x.fin for x in conn.dirs.values()))):
            conn.closed = True  # data may still follow (a server answering into RSTs): finished later
            self.closed.append(conn)
        return result

    def finish_all(self) -> None:
        for track in self.tracks.values():
            self.finish(track[2])

    def finish(self, conn: _Conn) -> None:
        """The connection ended (FIN both ways, RST, a new SYN, or the end of the file)."""
        if conn.state in (_Conn.NONE, _Conn.FINAL):
            return
        for d in conn.dirs.values():
            d.fill_holes()
        if conn.state == _Conn.UNDECIDED:
            self._decide(conn, final=True)
        if conn.state == _Conn.PROTO:
            for side in (conn.client_side, 1 - conn.client_side):
                if side in conn.dirs:
                    self._process(conn, side, final=True)
        if conn.state != _Conn.NONE:
            conn.state = _Conn.FINAL
        for d in conn.dirs.values():
            d.buf, d.pending = bytearray(), []
        conn.ctx = None

    # -- which protocol -----------------------------------------------------------------------
    def _decide(self, conn: _Conn, final: bool) -> None:
        """sanitize_stream_pair's choice, made as soon as the bytes seen settle it."""
        dirs = list(conn.dirs.values())
        first = conn.dirs.get(conn.first_side)
        other = conn.dirs.get(1 - conn.first_side)
        swap = bool(first and first.synack) or (
            not (first and first.syn) and not (other and other.synack) and conn.first_ports[0] < conn.first_ports[1])
        conn.client_side = 1 - conn.first_side if swap else conn.first_side
        server_port = conn.first_ports[0] if swap else conn.first_ports[1]
        proto = None
        if server_port in dns_parser.PORTS:
            proto = "dns"
        else:
            for name, mod in STREAM_PARSERS:
                seen = [(len(d.buf) >= 256 or final, bool(d.buf) and mod.looks_like(bytes(d.buf[:256])))
                        for d in dirs]
                if any(known and yes for known, yes in seen):
                    proto = name
                    break
                if not all(known for known, _ in seen):
                    return
            if proto is None:
                if any(giop_parser.MAGIC in d.buf[:65536] for d in dirs):
                    proto = "giop"
                elif not all(len(d.buf) >= 65536 or final for d in dirs):
                    return
        if proto is None:
            conn.state = _Conn.NONE
            for d in conn.dirs.values():
                d.buf, d.pending = bytearray(), []
            return
        conn.proto = proto
        conn.mod = {"giop": giop_parser, "tls": tls_parser, "http": http_parser, "dns": dns_parser}[proto]
        conn.ctx = dns_parser.new_context("tcp") if proto == "dns" else conn.mod.new_context()
        conn.state = _Conn.PROTO
        for side in (conn.client_side, 1 - conn.client_side):
            if side in conn.dirs:
                self._process(conn, side, final=final)

    # -- messages -----------------------------------------------------------------------------
    def _process(self, conn: _Conn, side: int, final: bool) -> None:
        """Cut the complete messages at the head of one direction and keep their runs."""
        d = conn.dirs[side]
        if not d.buf or (not final and len(d.buf) < d.retry):
            return
        direction = 0 if side == conn.client_side else 1
        data = bytes(d.buf)
        pos = 0
        mod, proto = conn.mod, conn.proto
        while pos < len(data):
            c = mod.cut(data, pos, at_end=final, context=conn.ctx, direction=direction)
            if c.status == "need_more" or c.length <= 0:
                break
            msg = data[pos:pos + c.length]
            if c.status != "malformed" or _framed(proto, msg):
                self._keep_message(conn, d, direction, msg, d.buf_off + pos)
            pos += c.length
        if pos:
            d.buf = d.buf[pos:]  # a new, exact-size buffer: `del` would keep the old capacity
            d.buf_off += pos
        d.retry = 2 * len(d.buf) if d.buf else 0

    def _keep_message(self, conn: _Conn, d: _Dir, direction: int, msg: bytes, at: int) -> None:
        view = bytearray(len(msg))
        profiles: list[tuple[int, int, bool]] = []
        try:
            if conn.proto == "giop":
                profiles = giop_keep(msg, view, conn.ctx, direction)
            elif conn.proto == "http":
                http_keep(msg, view)
            elif conn.proto == "tls":
                tls_keep(msg, view, conn.tls_state, direction, self.mapper)
            else:
                view[:2] = msg[:2]
                sub = bytearray(len(msg) - 2)
                dns_keep(msg[2:], sub, self.mapper)
                view[2:] = sub
        except Exception:  # noqa: BLE001 - a keeper bug must not leak bytes or stop the run
            view = bytearray(len(msg))
            self.stats.keeper_errors += 1
        # Text (CPR numbers, IP literals) cannot span a zero byte and always holds two digits, a
        # digit-dot-digit or a colon before a hex digit or colon: redact_text runs only on the
        # non-zero runs that hold such a candidate, which equals running it on the whole message.
        used = len(view.rstrip(b"\x00"))  # bodies are zero: the kept bytes sit before this
        done_to = -1
        for m in list(_TEXT_CANDIDATE_RE.finditer(view, 0, used)):
            if m.start() < done_to:
                continue
            a = view.rfind(b"\x00", 0, m.start()) + 1
            e = view.find(b"\x00", m.end())
            e = len(view) if e < 0 else e
            piece = view[a:e]
            self.stats.cpr_redacted += redact_text(piece, self.mapper)
            view[a:e] = piece
            done_to = e
        for a, n, _ in profiles:  # after the text pass: the mapped host must not be mapped twice
            body = rewrite_iiop_profile(msg[a:a + n], view[a:a + n], self.mapper)
            if body is not None:
                view[a:a + n] = body
        if profiles:
            used = len(view.rstrip(b"\x00"))
        runs = None
        for m in _RUN_RE.finditer(view, 0, used):
            if runs is None:
                runs = self.runs.get(d.sid)
                if runs is None:
                    runs = self.runs[d.sid] = array("q")
            blob = m.group()
            runs.extend((at + m.start(), self.spool_pos, len(blob)))
            self.spool.write(blob)
            self.spool_pos += len(blob)


_TEXT_CANDIDATE_RE = re.compile(rb"[0-9]{2}|[0-9]\.[0-9]|:[0-9A-Fa-f:]")
_RUN_RE = re.compile(rb"[^\x00]+(?:\x00{1,%d}[^\x00]+)*" % RUN_GAP)


class _RunIndex:
    """The kept runs of one direction, searchable by stream offset (pass 2)."""

    __slots__ = ("starts", "ends", "where", "read")

    def __init__(self, runs: array, read) -> None:  # noqa: ANN001 - read(position, length) -> bytes
        flat = np.frombuffer(runs, np.int64).reshape(-1, 3)
        self.starts = flat[:, 0].copy()
        self.ends = self.starts + flat[:, 2]
        self.where = flat[:, 1].copy()
        self.read = read

    def overlay(self, out: np.ndarray, at: int, off: int, n: int) -> None:
        """Write the kept bytes of stream[off:off+n] to out[at:at+n]."""
        lo = int(np.searchsorted(self.ends, off, "right"))
        hi = int(np.searchsorted(self.starts, off + n, "left"))
        for k in range(lo, hi):
            s = int(self.starts[k])
            a, e = max(s, off), min(int(self.ends[k]), off + n)
            if e > a:
                out[at + a - off:at + e - off] = np.frombuffer(self.read(int(self.where[k]) + a - s, e - a), np.uint8)


@dataclass
class _Chunk:
    """Up to CHUNK_FRAMES records of one file, copied contiguously (frame i at buf[fo[i]:])."""

    buf: np.ndarray
    fo: np.ndarray
    cap: np.ndarray
    link: np.ndarray
    ts_ns: np.ndarray
    orig_len: np.ndarray


def _read_chunks(path: str, warn, chunk_frames: int):  # noqa: ANN001, ANN202 - a generator of _Chunk
    """The file's records in order, `chunk_frames` at a time (netdiag.capture's record walkers);
    raises CaptureError naming the file when it holds no frame at all."""
    from netdiag.capture.reader import FileReader
    from netdiag.errors import CaptureError

    problems: list = []

    def note(w) -> None:  # noqa: ANN001
        problems.append(w)
        warn(w)

    reader = FileReader(path, note, frame_base=1, capacity=chunk_frames)
    reader.want = chunk_frames
    for b in reader.batches():
        n = b.n
        cap = b.cap[:n].astype(np.int64)
        fo = np.zeros(n, np.int64)
        np.cumsum(cap[:-1], out=fo[1:])
        buf = np.empty(int(cap.sum()), np.uint8)
        _gather(b.buf, b.off[:n].astype(np.int64), cap, fo, buf)
        yield _Chunk(buf, fo, cap, b.iface_link[b.iface[:n]].astype(np.int64), b.ts[:n].astype(np.int64),
                     b.length[:n].astype(np.int64))
    if not reader.ok and reader.frame_next == 1:
        detail = "; ".join(w.message for w in problems) or "no frames"
        raise CaptureError(f"cannot read frames: {detail}", path=path)


def _classified(c: _Chunk) -> np.ndarray:
    f = np.zeros((len(c.fo), N_FIELDS), np.int64)
    _classify(c.buf, c.fo, c.cap, c.link, f)
    return f


def _tcp_segments(c: _Chunk, f: np.ndarray, slow_l4s: list[_L4]) -> list[tuple]:
    """(row, src, sport, dst, dport, seq, flags, ps, pe) of the chunk's TCP segments, in frame
    order; addresses as mapped bytes (the fast frames' are mapped in c.buf already)."""
    out = []
    rows = np.flatnonzero(f[:, F_CLS] == CLS_TCP)
    if len(rows):
        g = f[rows]
        for ver, width in ((4, 4), (6, 16)):
            sel = g[:, F_VER] == ver
            if not sel.any():
                continue
            gs = g[sel]
            src = _fields_at(c.buf, gs[:, F_SRC], width)
            dst = _fields_at(c.buf, gs[:, F_DST], width)
            srcb = [x.tobytes() for x in src]
            dstb = [x.tobytes() for x in dst]
            out.extend(zip(rows[sel].tolist(), srcb, gs[:, F_SPORT].tolist(), dstb, gs[:, F_DPORT].tolist(),
                           gs[:, F_SEQ].tolist(), gs[:, F_FLAGS].tolist(), gs[:, F_PS].tolist(),
                           gs[:, F_PE].tolist(), strict=True))
    fo = c.fo
    for x in slow_l4s:
        if x.proto == IP_PROTO_TCP:
            base = int(fo[x.row])
            out.append((x.row, x.src, x.sport, x.dst, x.dport, x.seq, x.flags, base + x.pay_start, base + x.pay_end))
    out.sort(key=lambda t: t[0])
    return out


def _pass1_chunk(c: _Chunk, f: np.ndarray, mapper: AddressMapper, streams: StreamSanitizer, frags: dict
                 ) -> np.ndarray:
    """Feed a chunk's TCP segments to the stream sanitiser; returns its overlay records
    (row, direction id, stream offset, payload start within the frame, length)."""
    scratch = SanitizeStats()
    _map_fast_headers(c.buf, f, mapper, scratch)
    slow_l4s: list[_L4] = []
    for i in np.flatnonzero(f[:, F_CLS] == CLS_SLOW).tolist():
        o = int(c.fo[i])
        frame = bytearray(c.buf[o:o + int(c.cap[i])].tobytes())
        _sanitize_frame(i, frame, int(c.link[i]), mapper, scratch, slow_l4s, [], frags, [])
    segs = _tcp_segments(c, f, slow_l4s)
    if not segs:
        return np.empty((0, 5), np.int64)
    # segments that cannot change anything are skipped without Python per segment: all of a
    # connection whose bytes are dropped (no new SYN), and pure ACKs of connections already known
    keep = _worth_feeding(segs, streams)
    records = []
    buf, ts = c.buf, c.ts_ns
    streams.sweep()
    for k in keep:
        row, src, sport, dst, dport, seq, flags, ps, pe = segs[k]
        a, b = (src, sport), (dst, dport)
        key, side = ((a, b), 0) if a <= b else ((b, a), 1)
        sid, off = streams.segment(key, side, (sport, dport), seq, flags, buf[ps:pe].tobytes() if pe > ps else b"",
                                   int(ts[row]))
        if sid >= 0:
            records.append((row, sid, off, ps - int(c.fo[row]), pe - ps))
    return np.array(records, np.int64).reshape(-1, 5)


def _worth_feeding(segs: list[tuple], streams: StreamSanitizer) -> list[int]:
    """Indexes of the segments `StreamSanitizer.segment` must see (the rest are no-ops there)."""
    flags = np.fromiter((s[6] for s in segs), np.int64, len(segs))
    has_data = np.fromiter((s[8] > s[7] for s in segs), np.bool_, len(segs))
    busy = has_data | ((flags & 0x07) != 0)
    syn_only = (flags & 0x12) == 0x02
    by_conn: dict[tuple, list[int]] = {}
    for k, s in enumerate(segs):
        a, b = (s[1], s[2]), (s[3], s[4])
        by_conn.setdefault((a, b) if a <= b else (b, a), []).append(k)
    keep = np.zeros(len(segs), np.bool_)
    for key, idx in by_conn.items():
        track = streams.tracks.get(key)
        ix = np.array(idx)
        if track is None:
            keep[ix] = True
        elif track[2].state == _Conn.NONE and not syn_only[ix].any():
            continue
        else:
            keep[ix] = busy[ix]
    return np.flatnonzero(keep).tolist()


def _pass2_chunk(c: _Chunk, f: np.ndarray, records: np.ndarray, mapper: AddressMapper, stats: SanitizeStats,
                 runs: dict[int, _RunIndex], all_runs: dict[int, array], read, frags: dict) -> None:  # noqa: ANN001
    """Sanitise a chunk in place: headers, payload overlay, DNS over UDP, checksums."""
    stats.frame_base = stats.frames
    buf, fo = c.buf, c.fo
    dns_ports = dns_parser.PORTS
    # DNS over UDP (per message, from the original bytes, before payloads are zeroed)
    dns_fix: list[tuple[int, bytes]] = []
    udp = np.flatnonzero((f[:, F_CLS] == CLS_UDP) & (f[:, F_PE] > f[:, F_PS]))
    if len(udp):
        ports = np.array(sorted(dns_ports), np.int64)
        udp = udp[np.isin(f[udp, F_SPORT], ports) | np.isin(f[udp, F_DPORT], ports)]
        for i in udp.tolist():
            msg = buf[f[i, F_PS]:f[i, F_PE]].tobytes()
            view = bytearray(len(msg))
            dns_keep(msg, view, mapper)
            stats.cpr_redacted += redact_text(view, mapper)
            dns_fix.append((int(f[i, F_PS]), bytes(view)))
    fast = f[:, F_CLS] != CLS_SLOW
    stats.frames += int(fast.sum())
    _map_fast_headers(buf, f, mapper, stats)
    _zero_payloads(buf, fo, c.cap, f)
    for at, view in dns_fix:
        buf[at:at + len(view)] = np.frombuffer(view, np.uint8)
    # the Python walker for every other frame shape (ARP, ICMP, options, fragments, VLAN oddities)
    slow_l4s: list[_L4] = []
    cks: list = []
    frag_firsts: list = []
    for i in np.flatnonzero(~fast).tolist():
        o, n = int(fo[i]), int(c.cap[i])
        original = buf[o:o + n].tobytes()
        frame = bytearray(original)
        before = len(slow_l4s)
        _sanitize_frame(i, frame, int(c.link[i]), mapper, stats, slow_l4s, cks, {}, frag_firsts)
        for x in slow_l4s[before:]:
            if x.proto == IP_PROTO_UDP and (x.sport in dns_ports or x.dport in dns_ports) and x.pay_end > x.pay_start:
                msg = original[x.pay_start:x.pay_end]
                view = bytearray(len(msg))
                dns_keep(msg, view, mapper)
                stats.cpr_redacted += redact_text(view, mapper)
                frame[x.pay_start:x.pay_end] = view
        buf[o:o + n] = np.frombuffer(bytes(frame), np.uint8)
    # kept bytes of the TCP streams
    for row, sid, off, ps, n in records.tolist():
        idx = runs.get(sid)
        if idx is None:
            got = all_runs.pop(sid, None)
            if not got:
                continue
            idx = runs[sid] = _RunIndex(got, read)
        idx.overlay(buf, int(fo[row]) + ps, off, n)
    stats.checksums_fixed += int(_l4_checksums(buf, f))
    stats.unverifiable += int((fast & (f[:, F_VERIF] == 0)).sum())
    for row, l4, hl, proto, ck_off, src, dst, key, before_l4 in frag_firsts:
        end, complete = frags.get(key, (0, False))
        if not complete:
            stats.unverifiable += 1
            continue
        o = int(fo[row])
        frame = bytearray(buf[o:o + int(c.cap[row])].tobytes())
        frame[ck_off:ck_off + 2] = b"\x00\x00"
        ck = internet_checksum(frame[l4:l4 + hl], _pseudo_sum(src, dst, proto, end - before_l4))
        if proto == IP_PROTO_UDP and ck == 0:
            ck = 0xFFFF
        buf[o + ck_off:o + ck_off + 2] = np.frombuffer(ck.to_bytes(2, "big"), np.uint8)
        stats.checksums_fixed += 1
    for row, l4, l4end, proto, ck_off, src, dst, wire_len in cks:
        o = int(fo[row])
        frame = bytearray(buf[o:o + int(c.cap[row])].tobytes())
        frame[ck_off:ck_off + 2] = b"\x00\x00"
        if proto in (IP_PROTO_ICMP, IP_PROTO_GRE):
            ck = internet_checksum(frame[l4:l4end])
        else:
            ck = internet_checksum(frame[l4:l4end], _pseudo_sum(src, dst, proto, wire_len))
            if proto == IP_PROTO_UDP and ck == 0:
                ck = 0xFFFF
        buf[o + ck_off:o + ck_off + 2] = np.frombuffer(ck.to_bytes(2, "big"), np.uint8)
        stats.checksums_fixed += 1


def sanitize_file(path: str | Path, out_path: str | Path, mapper: AddressMapper, *,
                  chunk_frames: int = CHUNK_FRAMES) -> SanitizeStats:
    """Sanitise one capture into pcapng (ns timestamps, original lengths), chunk by chunk.

    Two passes over the file (see the section comment above): memory holds one chunk, the
    unfinished message of each open TCP direction and the kept metadata bytes, never the capture.
    """
    import tempfile

    from netdiag.output import StagedFile
    from netdiag.pcapng_writer import PcapngStream

    path = str(path)
    out_path = Path(out_path)
    stats = SanitizeStats()
    frags: dict = {}
    # The output is written into a private staging directory beside out_path (O_EXCL|O_NOFOLLOW)
    # and renamed in when complete: never through a symlink, never a half-written file.
    staged = StagedFile(out_path)
    with staged, tempfile.TemporaryFile(dir=staged.dir, prefix=".netdiag-sanitize-") as spool, \
            tempfile.TemporaryFile(dir=staged.dir, prefix=".netdiag-sanitize-runs-") as kept:
        streams = StreamSanitizer(mapper, stats, kept)
        chunks = 0
        for c in _read_chunks(path, stats.warnings.append, chunk_frames):
            f = _classified(c)
            np.save(spool, _pass1_chunk(c, f, mapper, streams, frags))
            chunks += 1
        streams.finish_all()
        spool.seek(0)
        kept.flush()

        def read(pos: int, n: int) -> bytes:
            return os.pread(kept.fileno(), n, pos)

        runs: dict[int, _RunIndex] = {}
        with staged.open() as fh:
            out = PcapngStream(fh, application="netdiag sanitize")
            for c in _read_chunks(path, lambda _w: None, chunk_frames):
                records = np.load(spool) if chunks else np.empty((0, 5), np.int64)
                chunks -= 1
                f = _classified(c)
                _pass2_chunk(c, f, records, mapper, stats, runs, streams.runs, read, frags)
                out.write(c.buf, c.fo, c.cap, c.ts_ns, c.orig_len, c.link)
    staged.commit()
    _warn_undecoded(path, stats)
    return stats


def _warn_undecoded(path: str, stats: SanitizeStats) -> None:
    """One warning per encapsulation kind sanitize could not follow, naming its first frame."""
    from netdiag.capture.linktypes import undecoded_kind
    from netdiag.errors import CaptureWarning

    for (why, detail), (count, first) in sorted(stats.undecoded.items(), key=lambda kv: kv[1][1]):
        stats.warnings.append(CaptureWarning(
            f"{count} frame{'s' if count != 1 else ''} with {undecoded_kind(why, detail).split(';')[0]}: everything after "
            "the last header sanitize understands was zero-filled (lengths kept)", path=path, frame=first))
