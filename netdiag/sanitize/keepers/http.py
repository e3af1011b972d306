"""HTTP/1.x keeper (RFC 9112): start line and safe headers kept, other values 'x', bodies zero.

The request or status line is kept with its query values overwritten with 'x' (names kept: a URL
may carry a patient id, and netdiag's operation is method + path without the query); headers in
SAFE_HTTP_HEADERS keep their value, others (Cookie, Authorization, ...) keep their name only;
bodies stay zero except the chunk-size lines, so the framing still works.
"""

from __future__ import annotations

import re

from netdiag.protocols.http import parser as http_parser
from netdiag.sanitize.addresses import AddressMapper
from netdiag.sanitize.policy import SAFE_HTTP_HEADERS


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


def keep(msg: bytes, out: bytearray, _ctx: object, _state: None, _direction: int,
         _mapper: AddressMapper) -> list:
    """The registry's keeper signature (see netdiag.sanitize.registry) over `http_keep`."""
    http_keep(msg, out)
    return []


def framed(msg: bytes) -> bool:
    """A malformed cut that still starts like a request or a status line."""
    return bool(http_parser._START_RE.match(msg)) or msg.startswith(b"HTTP/1.")
