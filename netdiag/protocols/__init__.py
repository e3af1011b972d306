"""Protocols: one package per protocol (giop, http, dns, tls), registered in one list.

Each package holds a pure parser (parser.py: bytes in, records out, no I/O, no state), its
request/response pairing rules (pairing.py, on the common types of netdiag/protocols/pairing.py)
and a `SPEC` (netdiag/protocols/spec.py) in its __init__; netdiag/protocols/registry.py is the
list the stream driver (netdiag/transactions), the logons and the CLI read. This module defines
the two types every parser returns, `Cut` and `Record`.

Every parser module exposes the same functions, so the stream driver treats them alike:

- `looks_like(head: bytes) -> bool`: a cheap test on the first bytes of one direction's byte
  stream (GIOP: the magic; HTTP: a method or "HTTP/1."; TLS: a record header; DNS: by port).
- `cut(data, start, *, at_end, context) -> Cut`: where the message that starts at `data[start]`
  ends. `Cut("message", n)`: n bytes form one message. `Cut("need_more", 0)`: wait for more
  bytes (unless at_end). `Cut("malformed", n, reason)`: skip n bytes to resynchronise (GIOP
  searches the next magic). Never raises on garbage; a lying length field (a 4 GB GIOP
  message_size, a Content-Length beyond the stream) must not make the caller wait forever:
  parsers bound lengths (GIOP: 10 MB like Wireshark's giop_max_message_size) and report.
- `parse(message: bytes, *, context) -> list[Record]`: decode one cut message (a TLS record
  can carry several handshake messages, hence a list). Never raises on garbage: returns a
  Record with malformed=True and a reason.

- `resync(data, start, *, context, direction) -> int`: the offset after `start` where the next
  message may begin (len(data) when none is in sight). The driver uses it when cut() raises (a
  parser bug), so one bad message loses at most itself, not everything buffered after it.

`context` is a small mutable object the caller keeps per connection (created with the
module's `new_context()`), for what framing needs from the other direction (an HTTP response
to HEAD has no body; TLS after ChangeCipherSpec is encrypted). It is the only state, and it
belongs to the caller.

`cut` and `parse` also take an optional keyword `direction` (0 client to server, 1 server to
client, None when unknown), which the caller passes: a per-connection context keeps
per-direction state by it (TLS handshake reassembly, GIOP fragments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Cut:
    """Where the next message ends in a byte stream (see module docstring)."""

    status: Literal["message", "need_more", "malformed"]
    length: int = 0
    reason: str = ""


@dataclass(slots=True)
class Record:
    """One decoded protocol message; maps onto a row of netdiag.schema.MESSAGES."""

    protocol: str
    msg_type: str
    request_id: int | None = None
    operation: str | None = None
    status: str | None = None
    malformed: bool = False
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
