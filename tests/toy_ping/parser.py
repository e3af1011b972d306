"""Toy line protocol parser: "PING n" from the client, "PONG n" from the server, one per line.

Pure like netdiag's own parsers (netdiag.protocols docstring): bytes in, records out, never raises.
"""

from __future__ import annotations

import re
from typing import Any

from netdiag.protocols import Cut, Record

# The longest line this protocol sends ("PING " + 9 digits + CRLF); a longer line is garbage.
MAX_LINE_BYTES = 16
_LINE_RE = re.compile(rb"(PING|PONG) (\d{1,9})\r?\n\Z")


def new_context() -> None:
    """The protocol keeps no state between messages."""
    return None


def looks_like(head: bytes) -> bool:
    """True when the stream starts with a complete PING or PONG line."""
    end = head.find(b"\n")
    return 0 <= end < MAX_LINE_BYTES and _LINE_RE.match(head[: end + 1]) is not None


def cut(data: bytes, start: int, *, at_end: bool, context: Any, direction: int | None = None) -> Cut:
    """One line is one message; a line longer than MAX_LINE_BYTES is malformed up to its end."""
    end = data.find(b"\n", start, start + MAX_LINE_BYTES)
    if end >= 0:
        return Cut("message", end + 1 - start)
    if len(data) - start >= MAX_LINE_BYTES:
        return Cut("malformed", resync(data, start, context=context, direction=direction) - start, "line too long")
    return Cut("need_more")


def parse(message: bytes, *, context: Any, direction: int | None = None) -> list[Record]:
    """The line as a record: msg_type PING or PONG, its number as request id."""
    m = _LINE_RE.match(message)
    if m is None:
        return [Record("ping", "malformed", malformed=True, reason="not a PING/PONG line")]
    kind, n = m.group(1).decode(), int(m.group(2))
    return [Record("ping", kind, request_id=n, operation="ping", status="ok" if kind == "PONG" else None)]


def resync(data: bytes, start: int, *, context: Any, direction: int | None = None) -> int:
    """After the next newline (the end of the buffer when none is in sight)."""
    end = data.find(b"\n", start)
    return end + 1 if end >= 0 else len(data)
