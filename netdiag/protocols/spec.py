"""What netdiag needs to know about one protocol, in one object: `ProtocolSpec`.

A protocol package (netdiag/protocols/<name>/) holds its pure parser, its pairing rules and a
`SPEC`; netdiag/protocols/registry.py keeps the list of registered specs. The stream driver
(netdiag.transactions) recognises connections, cuts and parses their bytes and pairs the
messages only through these specs, so a new protocol is its own package plus one `register`.

A spec names the parser module (the four functions of the netdiag.protocols docstring:
`looks_like`, `cut`, `parse`, `resync`, plus `new_context`), how a connection is recognised
(by the parser's `looks_like` on the first bytes, by a magic found anywhere in them, or by a
server port), the pairing function, which message kinds are requests and replies, and the kinds
of transactions the pairing makes (`TxnKind`: TLS makes 'tls' handshakes and 'turn's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl


@dataclass(frozen=True, slots=True)
class TxnKind:
    """One value of transactions.protocol and how its status column is derived.

    - `app_request`: an application request/response (the client waits on the server's answer:
      GIOP, HTTP, TLS turns); logons count these as requests and their waits as server time.
    - `status_from_reply`: an answered transaction's status is its first reply message's status
      (GIOP reply status, HTTP code, DNS rcode); otherwise the pairing's own status stays.
    - `unanswered`: a transaction without a response is 'unanswered' (or 'cancelled').
    - `answered_status`: the status of an answered transaction when the reply has none of its own.
    - `incomplete_flag`: a response whose last fragment/part never came is marked
      `response_incomplete` in detail.
    """

    name: str
    app_request: bool = False
    status_from_reply: bool = True
    unanswered: bool = True
    answered_status: str | None = None
    incomplete_flag: bool = True


@dataclass(frozen=True, slots=True)
class ProtocolColumn:
    """A TRANSACTIONS column only this protocol fills (netdiag.schema places it after `after`)."""

    name: str
    dtype: Any
    meaning: str
    after: str


# pair(messages of this protocol, PairingInput) appends Txn objects to input.out (see pairing.py)
PairFunction = Callable[[pl.DataFrame, Any], None]


@dataclass(slots=True)
class ProtocolSpec:
    """One protocol, as the stream driver, the pairing and the logons see it (module docstring).

    - `parser`: the pure parser module (looks_like, cut, parse, resync, new_context).
    - `transports`: "tcp" (byte streams) and/or "udp" (one message per datagram).
    - `ports`: server ports that identify it; with `detect="port"` a TCP connection to one of
      them is this protocol whatever its first bytes, and UDP datagrams to or from them are parsed.
    - `detect`: "looks_like" (the parser's looks_like on the first bytes of either direction) or
      "port". Parsers that detect by content are tried in `detect_order` (lowest first).
    - `magic`: bytes that, found anywhere in the first bytes of a connection nobody recognised,
      still make it this protocol (a capture that joined mid-message; GIOP's "GIOP").
    - `context_by_transport`: `new_context` takes the transport ("tcp"/"udp") as argument.
    - `pair`: the pairing function, `pair_sort`: the message order it reads (columns of the
      messages frame it is given; default connection, time, direction, offset).
    - `request_kinds` / `reply_kinds`: msg_type values that open / answer a transaction.
    - `transactions`: the TxnKinds its pairing makes (transactions.protocol values).
    - `declared_size(detail)`: a message's length by its own header (GIOP message_size, HTTP
      Content-Length), so bytes after a capture gap inside it are skipped, not re-parsed.
    - `decryptor(keylog, parsers)`: per-connection decryption when a key log is given (TLS).
    - `columns`: TRANSACTIONS columns only this protocol fills (its pairing sets them with
      `Txn.set`); netdiag.schema declares them from the built-in specs, in place.
    - `sanitize`: the field keepers of netdiag's sanitizer for this protocol; None until the
      sanitizer registers a hook (the sanitizer depends on protocols, never the reverse).
    """

    name: str
    parser: Any
    pair: PairFunction
    transactions: tuple[TxnKind, ...]
    transports: tuple[str, ...] = ("tcp",)
    ports: frozenset[int] = frozenset()
    detect: str = "looks_like"
    detect_order: int = 100
    magic: bytes | None = None
    context_by_transport: bool = False
    pair_sort: tuple[str, ...] = ("conn_id", "first_ts_ns", "direction", "stream_offset", "row")
    request_kinds: tuple[str, ...] = ()
    reply_kinds: tuple[str, ...] = ()
    declared_size: Callable[[dict[str, Any]], int | None] | None = None
    decryptor: Callable[[Any, dict[str, Any]], Any] | None = None
    sanitize: Any = None
    columns: tuple[ProtocolColumn, ...] = ()

    def new_context(self, transport: str = "tcp") -> Any:
        """A fresh per-connection (or per-flow) parsing context."""
        if self.context_by_transport:
            return self.parser.new_context(transport)
        return self.parser.new_context()
