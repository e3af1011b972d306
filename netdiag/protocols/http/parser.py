"""HTTP/1.0 and HTTP/1.1 message framing and header decoding (RFC 9112, RFC 9110).

Why: Java Web Start clients fetch the .jnlp and jars over HTTP, web services and LTPA logons
run over it, and the User-Agent is where the client's Java version shows (`Java/1.8.0_202`).
This module cuts one direction's byte stream into messages and decodes their heads; it never
keeps a body (only its size).

Framing follows RFC 9112 section 6.3, in this order:
1. responses to HEAD, 1xx (incl. 100-continue), 204 and 304 have no body;
2. `Transfer-Encoding: chunked` -> chunks up to the zero-size chunk and its trailer block
   (another final coding: a response runs until close, a request is malformed);
3. `Content-Length: N` -> N bytes;
4. requests without either have no body; responses without either run until the connection
   closes (`at_end`).

Record: protocol "http", msg_type "request"/"response", operation "METHOD /path" on requests
(the path without query string or scheme://host, so operations group and query strings, which
may carry patient identifiers, stay out of it), status = the status code ("200") on responses.
detail: version, header_bytes, content_length, body_bytes (chunked: the sum of chunk sizes),
chunked, connection_close, content_type; requests: method, url (full target), host,
user_agent, java_version ("1.8.0_202" from "Java/1.8.0_202"), if_modified_since,
if_none_match; responses: reason_phrase, server, last_modified, etag (presence flags).

After a 101 Switching Protocols or a 2xx answer to CONNECT the connection carries something
else (a WebSocket, TLS through a proxy): every later cut() returns what is there as one
message and parse() reports it as msg_type "tunnel" with detail data_bytes.

State: the caller keeps one `HttpContext` per connection (`new_context()`). `cut()` appends
each request's method to it and takes one off for each final (non-1xx) response, so a
response to HEAD is framed without a body, also on pipelined connections. The caller must
therefore cut a request before the response to it (time order, which is how they reach the
capture point). When no request was seen (capture started mid-connection) the method is
unknown and the response is framed by its headers, except that a response whose declared
body would start with another status line is taken to have answered a HEAD.

Bad input never raises and never waits for ever:
- a header block without its blank line within `MAX_HEADER_BYTES` (64 KiB), a start line that
  is neither a request line nor a status line, a bad chunk-size line or a bad Content-Length
  (anything but ASCII digits 0-9, RFC 9110 8.6; conflicting values)
  -> `Cut("malformed", n, reason)` where n skips to the next line that starts a request or
  status line (the resync rule), or to the end of the data when there is none; when only the
  body cannot be delimited (Content-Length, chunk line), to the next start line anywhere after
  the header block, since the next message follows the body's last byte without a line break;
- a Content-Length (or chunk) beyond the end of the stream is waited for until `at_end`; then
  the message is malformed ("truncated") and the stream resynchronises after its header
  block, so later messages on the connection are still found;
- a Content-Length above `MAX_BODY_BYTES` (1 GiB) is treated as a lie: malformed at once.
`parse()` recomputes the framing from the message bytes, so a message cut as malformed can
still be parsed into a record that carries its method/URL/status plus `malformed=True`.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from netdiag.protocols import Cut, Record

PROTOCOL = "http"
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1 << 30
MAX_CHUNK_LINE_BYTES = 1024
MAX_PENDING_REQUESTS = 4096  # pipelined requests remembered per connection

# RFC 9110 section 9 methods plus the WebDAV ones seen on application servers. Resync and
# looks_like only trust these; parse() accepts any token as a method.
METHODS: tuple[bytes, ...] = (
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT", b"PATCH",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK",
)
_START_LINE = (rb"(?:" + rb"|".join(METHODS) + rb") [\x21-\x7e]+ HTTP/1\.[01]\r?\n"
               rb"|HTTP/1\.[01] \d{3}[ \r\n]")
_START_RE = re.compile(_START_LINE)
# A start line at the beginning of a line (for resync): preceded by \n.
_START_PREFIX_RE = re.compile(rb"(?:" + rb"|".join(METHODS) + rb") (?:/|\*|https?://|[\w.-]+:\d)[\x21-\x7e]*\Z")
_RESYNC_RE = re.compile(rb"\n(?=" + _START_LINE + rb")")
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")
_REQUEST_LINE_RE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP/\d\.\d)\Z", re.ASCII)
_STATUS_LINE_RE = re.compile(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?\Z", re.ASCII)
_JAVA_VERSION_RE = re.compile(r"\bJava/(\d+(?:\.\d+)*(?:_\d+)?(?:-[0-9A-Za-z.]+)?)")
_LEADING_BLANK_RE = re.compile(rb"(?:\r?\n)*")
_HEX_RE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_DIGITS_RE = re.compile(r"[0-9]+", re.ASCII)

NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(slots=True)
class HttpContext:
    """Per-connection state: methods of requests cut so far and not yet answered."""

    # bounded: a capture holding only the client side must not grow it for ever
    pending_methods: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_PENDING_REQUESTS))
    upgraded: bool = False  # a 101 Switching Protocols (or CONNECT 2xx) ended HTTP here
    # where the walk of an unfinished chunked body stopped: ((start, head bytes), offset, body)
    chunk_resume: tuple[tuple[int, bytes], int, int] | None = None
    # the header block cut() decoded last and its decoding: parse() of the same message, given the
    # same context, reuses it when its message starts with exactly these bytes (no second decode)
    head_cache: tuple[bytes, _Head] | None = None


def new_context() -> HttpContext:
    """A fresh per-connection context (the caller owns it)."""
    return HttpContext()


def looks_like(head: bytes) -> bool:
    """True when the stream starts (after blank lines) with a request line or a status line.

    A first line longer than `head` (a long URL) is judged by its beginning: a known method,
    a space and a request target ("/", "*", "http://", or host:port for CONNECT).
    """
    head = head[_LEADING_BLANK_RE.match(head).end():]
    if _START_RE.match(head):
        return True
    return b"\n" not in head and _START_PREFIX_RE.match(head) is not None


# --------------------------------------------------------------------------------------------
# Header block
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Head:
    """A decoded start line and header block (no body)."""

    is_request: bool
    method: str = ""
    target: str = ""
    version: str = ""
    status: int = 0
    reason_phrase: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    head_len: int = 0  # bytes from the message start through the blank line
    error: str = ""

    def get(self, name: str) -> str | None:
        """First value of a header (case-insensitive name), or None."""
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


def _read_head(data: bytes, start: int, end: int) -> _Head | None:
    """Decode the start line and headers of the block data[start:end] (end = after the blank line).

    Returns a _Head with `error` set when the start line is not HTTP/1.x. Header bytes are
    decoded as Latin-1 (RFC 9110 5.5: field values are octets; obs-text stays visible).
    """
    lines = data[start:end].decode("latin-1").rstrip("\r\n").split("\n")
    first = lines[0].rstrip("\r")
    m = _REQUEST_LINE_RE.match(first)
    if m:
        head = _Head(True, method=m.group(1), target=m.group(2), version=m.group(3))
    else:
        m = _STATUS_LINE_RE.match(first)
        if not m:
            return _Head(False, head_len=end - start,
                         error=f"first line is neither a request nor a status line: {first[:40]!r}")
        if not 100 <= int(m.group(2)) <= 599:  # RFC 9110 15: status codes are 100..599
            return _Head(False, head_len=end - start, error=f"status code {m.group(2)} outside 100..599")
        head = _Head(False, version=m.group(1), status=int(m.group(2)), reason_phrase=m.group(3) or "")
    head.head_len = end - start
    headers = head.headers
    for line in lines[1:]:
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t") and headers:  # obsolete line folding (RFC 9112 5.2)
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            head.error = f"header line without a name: {line[:40]!r}"
            continue
        headers.append((name.lower(), value.strip()))
    return head


def _find_head_end(data: bytes, pos: int) -> int:
    """Offset just past the blank line ending the header block at data[pos:], or -1."""
    m = _HEAD_END_RE.search(data, pos, min(len(data), pos + MAX_HEADER_BYTES + 4))
    return m.end() if m else -1


def _content_length(head: _Head) -> tuple[int | None, str]:
    """Content-Length as int (None when absent) and an error text ('' when fine)."""
    values = head.all("content-length")
    if not values:
        return None, ""
    # RFC 9110 8.6: a list of identical values may be accepted as that value.
    parts = {p.strip() for v in values for p in v.split(",")}
    if len(parts) != 1:
        return None, f"conflicting Content-Length values {sorted(parts)}"
    (text,) = parts
    # RFC 9110 8.6: 1*DIGIT, and DIGIT is ASCII 0-9 (RFC 5234 B.1). str.isdigit() also takes
    # '\u00b2' (a Latin-1 header byte 0xB2) and other Unicode digits that int() then refuses.
    if not _DIGITS_RE.fullmatch(text):
        return None, f"invalid Content-Length {text[:20]!r} (not ASCII digits)"
    if len(text.lstrip("0")) > 18:  # int() refuses 4300+ digits; anything this long is a lie anyway
        return None, f"Content-Length of {len(text)} digits beyond the 1 GiB bound"
    return int(text), ""


def _is_chunked(head: _Head) -> bool:
    te = ",".join(head.all("transfer-encoding")).lower()
    return te.replace(" ", "").split(",")[-1:] == ["chunked"] if te else False


def _walk_chunks(data: bytes, pos: int, body: int = 0) -> tuple[str, int, int, str]:
    """Walk a chunked body at data[pos:] (`body`: chunk bytes already counted before pos).

    Returns (state, end, body_bytes, reason): state "done" (end = past the trailer block),
    "need_more" (end = start of the first chunk not complete yet, where a later walk may
    resume; body_bytes counts the complete chunks before it) or "bad" (reason says why).
    """
    n = len(data)
    while True:
        chunk_start = pos
        eol = data.find(b"\n", pos, pos + MAX_CHUNK_LINE_BYTES)
        if eol < 0:
            if n - pos >= MAX_CHUNK_LINE_BYTES:
                return "bad", pos, body, "chunk-size line longer than 1 KiB"
            return "need_more", chunk_start, body, ""
        size_text = data[pos:eol].rstrip(b"\r").split(b";", 1)[0].strip()
        if not _HEX_RE.fullmatch(size_text):
            return "bad", pos, body, f"invalid chunk size {size_text[:20]!r}"
        size = int(size_text, 16)
        pos = eol + 1
        if size == 0:
            break
        if size > MAX_BODY_BYTES:
            return "bad", pos, body, f"chunk size {size} beyond the 1 GiB bound"
        if n < pos + size:
            return "need_more", chunk_start, body, ""
        pos += size
        # CRLF after the chunk data (accept a bare LF).
        if data[pos:pos + 2] == b"\r\n":
            pos += 2
        elif data[pos:pos + 1] == b"\n":
            pos += 1
        elif data[pos:pos + 2] in (b"", b"\r"):
            return "need_more", chunk_start, body, ""
        else:
            return "bad", pos, body, "chunk data not followed by CRLF"
        body += size
    # Trailer section: header lines up to an empty line (RFC 9112 7.1.2).
    while True:
        eol = data.find(b"\n", pos, pos + MAX_HEADER_BYTES)
        if eol < 0:
            if n - pos >= MAX_HEADER_BYTES:
                return "bad", pos, body, "trailer section beyond 64 KiB"
            return "need_more", chunk_start, body, ""
        line = data[pos:eol].rstrip(b"\r")
        pos = eol + 1
        if not line:
            return "done", pos, body, ""


def _resync_pos(data: bytes, frm: int) -> int:
    """Offset of the next line (after data[frm]) that begins a request or status line, else len."""
    m = _RESYNC_RE.search(data, frm)
    return m.end() if m else len(data)


def resync(data: bytes, start: int = 0, *, context: HttpContext | None = None,
           direction: int | None = None) -> int:
    """Where the next message may start after a message at data[start] that could not be framed:
    the next request or status line after its header block (a body may end without a line
    break right before the next message); len(data) when there is none yet."""
    pos = _LEADING_BLANK_RE.match(data, start).end()
    head_end = _find_head_end(data, pos) if _START_RE.match(data, pos) else -1
    m = _START_RE.search(data, head_end if head_end > pos else start + 1)
    return m.start() if m else len(data)


_START_TOKENS = tuple(m + b" " for m in METHODS) + (b"HTTP/1.",)


def _partial_start(data: bytes, frm: int) -> int:
    """Where the last bytes of `data` (from `frm` on) could be the beginning of a start line that
    has not fully arrived (kept for the next cut), else len(data)."""
    for k in range(max(frm, len(data) - 16), len(data)):
        probe = data[k:]
        if any(tok.startswith(probe) or probe.startswith(tok) for tok in _START_TOKENS):
            return k
    return len(data)


def _malformed(data: bytes, start: int, skip_from: int, reason: str, *, in_body: bool = False) -> Cut:
    """A malformed cut that resynchronises at the first start line at or after skip_from.

    `in_body`: the header block was sound but the body cannot be delimited (a bad Content-Length
    or chunk line); the body ends who knows where, and the next message follows its last byte
    without a line break, so the next start line is searched anywhere after the header block.
    """
    if in_body:
        m = _START_RE.search(data, skip_from)
        return Cut("malformed", max(1, (m.start() if m else _partial_start(data, skip_from)) - start), reason)
    end = _resync_pos(data, max(start, skip_from - 1))
    return Cut("malformed", max(1, end - start), reason)


# --------------------------------------------------------------------------------------------
# The contract
# --------------------------------------------------------------------------------------------
def cut(data: bytes, start: int = 0, *, at_end: bool = False, context: HttpContext | None = None,
        direction: int | None = None) -> Cut:
    """Where the HTTP message starting at data[start] ends (see the module docstring).

    `direction` is accepted for a uniform parser signature and not needed: a request line or
    a status line says which side is talking.
    """
    if context is None:
        context = HttpContext()
    avail = len(data) - start
    if avail <= 0:
        return Cut("need_more", 0)
    pos = _LEADING_BLANK_RE.match(data, start).end()
    if pos == len(data):
        return Cut("malformed", avail, "blank lines only") if at_end else Cut("need_more", 0)
    if context.upgraded:
        return Cut("message", avail)  # tunnel bytes: one "tunnel" record per call, not HTTP
    first_eol = data.find(b"\n", pos, pos + MAX_HEADER_BYTES)
    if first_eol < 0:
        if len(data) - pos >= MAX_HEADER_BYTES:
            return _malformed(data, start, pos + 1, "start line longer than 64 KiB")
        if at_end:
            return Cut("malformed", avail, "truncated start line at end of stream")
        # Only wait if what we have could still become a start line.
        probe = data[pos:]
        if any(m.startswith(probe[:len(m)]) for m in METHODS + (b"HTTP/1.",)):
            return Cut("need_more", 0)
        return _malformed(data, start, pos + 1, f"not an HTTP start line: {probe[:40]!r}")
    if not _START_RE.match(data, pos):
        return _malformed(data, start, pos + 1,
                          f"not an HTTP start line: {data[pos:first_eol][:40]!r}")
    head_end = _find_head_end(data, first_eol - 1)
    if head_end < 0:
        if len(data) - pos >= MAX_HEADER_BYTES:
            return _malformed(data, start, pos + 1, "header block larger than 64 KiB")
        if at_end:
            return Cut("malformed", avail, "truncated header block at end of stream")
        return Cut("need_more", 0)
    head = _read_head(data, pos, head_end)
    assert head is not None
    if head.error and not head.method and not head.status:
        return _malformed(data, start, pos + 1, head.error)
    context.head_cache = (data[pos:head_end], head)

    body_start = head_end
    kind = _body_kind(head, context, data, body_start)
    if kind[0] == "bad":
        _remember(head, context)
        return _malformed(data, start, body_start, kind[1], in_body=True)
    if kind[0] == "none":
        _remember(head, context)
        return Cut("message", body_start - start)
    if kind[0] == "length":
        length = int(kind[1])
        if len(data) - body_start >= length:
            _remember(head, context)
            return Cut("message", body_start + length - start)
        if not at_end:
            return Cut("need_more", 0)
        _remember(head, context)
        return _malformed(data, start, body_start,
                          f"truncated: Content-Length {length} but the stream ends after "
                          f"{len(data) - body_start} body bytes")
    if kind[0] == "chunked":
        # Resume where the last need_more stopped (same message: same start, same head bytes),
        # so a large chunked body arriving segment by segment is walked once, not once per call.
        key = (start, data[start:body_start])
        resume = context.chunk_resume
        walk_from, counted = (resume[1], resume[2]) if resume and resume[0] == key else (body_start, 0)
        state, end, counted, reason = _walk_chunks(data, walk_from, counted)
        context.chunk_resume = (key, end, counted) if state == "need_more" else None
        if state == "done":
            _remember(head, context)
            return Cut("message", end - start)
        if state == "bad":
            _remember(head, context)
            return _malformed(data, start, body_start, reason, in_body=True)
        if not at_end:
            return Cut("need_more", 0)
        _remember(head, context)
        return _malformed(data, start, body_start, "truncated: chunked body unfinished at end of stream")
    # until close
    if not at_end:
        return Cut("need_more", 0)
    _remember(head, context)
    return Cut("message", avail)


def _body_kind(head: _Head, context: HttpContext, data: bytes, body_start: int) -> tuple[str, Any]:
    """How the body of this message is delimited: none / length N / chunked / close / bad."""
    if head.is_request:
        if _is_chunked(head):
            return ("chunked", None)
        if head.get("transfer-encoding") is not None:  # RFC 9112 6.3 item 4: cannot frame it
            return ("bad", "request Transfer-Encoding without final chunked")
        length, err = _content_length(head)
        if err:
            return ("bad", err)
        if length is None or length == 0:
            return ("none", None)
        if length > MAX_BODY_BYTES:
            return ("bad", f"Content-Length {length} beyond the 1 GiB bound")
        return ("length", length)
    status = head.status
    method = context.pending_methods[0] if context.pending_methods else None
    if 100 <= status < 200 or status in NO_BODY_STATUSES or method == "HEAD":
        return ("none", None)
    if method == "CONNECT" and 200 <= status < 300:
        return ("none", None)
    if _is_chunked(head):
        return ("chunked", None)
    if head.get("transfer-encoding") is not None:  # RFC 9112 6.3 item 4: read until close
        return ("close", None)
    length, err = _content_length(head)
    if err:
        return ("bad", err)
    if length is not None:
        if length > MAX_BODY_BYTES:
            return ("bad", f"Content-Length {length} beyond the 1 GiB bound")
        if method is None and length and data.startswith(b"HTTP/1.", body_start):
            return ("none", None)  # request not captured; the next status line says it was HEAD
        return ("length", length) if length else ("none", None)
    return ("close", None)


def _remember(head: _Head, context: HttpContext) -> None:
    """Advance the context for a message that was cut (request: queue its method)."""
    if head.is_request:
        context.pending_methods.append(head.method.upper())
        return
    if 100 <= head.status < 200 and head.status != 101:
        return  # interim response; the final one follows for the same request
    method = context.pending_methods.popleft() if context.pending_methods else None
    if head.status == 101 or (method == "CONNECT" and 200 <= head.status < 300):
        context.upgraded = True


def _path(target: str) -> str:
    """The path of a request target: no query or fragment, no scheme://host of absolute-form.

    Operations group by path (a query string would make every request its own operation, and
    may carry patient identifiers); the full target stays in detail["url"].
    """
    if "://" in target[:10]:
        rest = target.split("://", 1)[1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return target.split("?", 1)[0].split("#", 1)[0]


def parse(message: bytes, *, context: HttpContext | None = None, direction: int | None = None) -> list[Record]:
    """Decode one cut message into one Record (never raises; never keeps the body)."""
    if context is not None and context.upgraded and not _START_RE.match(message):
        return [Record(PROTOCOL, "tunnel", detail={"data_bytes": len(message)})]
    cached = None
    if context is not None:
        cached, context.head_cache = context.head_cache, None
    try:
        return [_parse(message, cached)]
    except Exception as exc:  # a parser bug must not stop a run; report it as malformed
        start = message[_LEADING_BLANK_RE.match(message).end():]
        kind = "response" if start.startswith(b"HTTP/") else "request" if _START_RE.match(start) else "unknown"
        return [Record(PROTOCOL, kind, malformed=True, reason=f"parser error: {exc!r}",
                       detail={"message_bytes": len(message)})]


def _parse(message: bytes, cached: tuple[bytes, _Head] | None = None) -> Record:
    pos = _LEADING_BLANK_RE.match(message).end()
    if cached is not None and message.startswith(cached[0], pos):
        # the very header block cut() decoded: its first blank line ends it here too (the search
        # for it reads no byte past that line), and decoding is a function of these bytes alone
        head_end, head = pos + len(cached[0]), cached[1]
    else:
        head_end = _find_head_end(message, pos)
        if head_end < 0:
            kind = "request" if not message.startswith(b"HTTP/", pos) else "response"
            return Record(PROTOCOL, kind, malformed=True, reason="no complete header block",
                          detail={"message_bytes": len(message)})
        head = _read_head(message, pos, head_end)
    assert head is not None
    if not head.method and not head.status:
        return Record(PROTOCOL, "unknown", malformed=True, reason=head.error,
                      detail={"message_bytes": len(message)})
    detail: dict[str, Any] = {"version": head.version, "header_bytes": head_end}
    reasons: list[str] = [head.error] if head.error else []
    length, err = _content_length(head)
    if err:
        reasons.append(err)
    chunked = _is_chunked(head)
    if chunked:
        state, _, body_bytes, why = _walk_chunks(message, head_end)
        if state != "done":
            reasons.append(why or "chunked body unfinished")
    else:
        body_bytes = len(message) - head_end
        if length is not None and body_bytes and body_bytes != length:
            reasons.append(f"Content-Length {length} but {body_bytes} body bytes")
        if length is not None and not body_bytes and length and head.is_request:
            reasons.append(f"Content-Length {length} but no body")
    detail.update(content_length=length, body_bytes=body_bytes, chunked=chunked)
    conn = (head.get("connection") or "").lower()
    detail["connection_close"] = "close" in conn or (head.version == "HTTP/1.0" and "keep-alive" not in conn)
    ctype = head.get("content-type")
    if ctype is not None:
        detail["content_type"] = ctype
    if head.is_request:
        ua = head.get("user-agent")
        detail.update(method=head.method, url=head.target, host=head.get("host"), user_agent=ua,
                      if_modified_since=head.get("if-modified-since") is not None,
                      if_none_match=head.get("if-none-match") is not None)
        m = _JAVA_VERSION_RE.search(ua or "")
        detail["java_version"] = m.group(1) if m else None
        rec = Record(PROTOCOL, "request", operation=f"{head.method} {_path(head.target)}", detail=detail)
    else:
        detail.update(reason_phrase=head.reason_phrase, server=head.get("server"),
                      last_modified=head.get("last-modified") is not None,
                      etag=head.get("etag") is not None)
        rec = Record(PROTOCOL, "response", status=str(head.status), detail=detail)
    if reasons:
        rec.malformed = True
        rec.reason = "; ".join(reasons)
    return rec
