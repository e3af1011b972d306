"""What every protocol's pairing rules work with: transactions under construction and their input.

A protocol's `pair(m, inp)` (its pairing.py) walks its messages once, in the order its spec's
`pair_sort` gives, and appends `Txn` objects to `inp.out`; netdiag.transactions then turns them
into TRANSACTIONS rows column-wise (spans, sizes, statuses, think times, stalls). A `Txn` holds
the message rows of its request and of its response (`Part`), never copies of their fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy arrives with the messages table; importing it here would slow `import netdiag.schema`
    import numpy as np
    import polars as pl

# An empty detail, shared: most messages keep no decoded field the pairing reads.
EMPTY: dict[str, Any] = {}


class Part:
    """One side of a transaction: its messages (rows of the messages table)."""

    __slots__ = ("rows", "open")

    def __init__(self, row: int, more: bool = False) -> None:
        self.rows = [row]
        self.open = more  # more fragments follow


class Txn:
    """A transaction being paired: request and response parts plus the columns pairing decides."""

    __slots__ = ("conn_id", "protocol", "operation", "request_id", "status", "req", "rsp",
                 "confidence", "detail", "columns", "answered_row")

    def __init__(self, conn_id: int, protocol: str, operation: str | None, request_id: int | None,
                 req: Part | None, confidence: str = "exact") -> None:
        self.conn_id = conn_id
        self.protocol = protocol
        self.operation = operation
        self.request_id = request_id
        self.status: str | None = None
        self.req = req
        self.rsp: Part | None = None
        self.confidence = confidence
        self.detail: dict[str, Any] = {}
        # values of the protocol's own TRANSACTIONS columns (its spec's `columns`), when it has any
        self.columns: dict[str, Any] | None = None
        self.answered_row: int | None = None  # DNS: the query the answer belongs to

    def set(self, column: str, value: Any) -> None:
        """Set one of the protocol's own columns (declared in its spec's `columns`); None is no value."""
        if value is not None:
            if self.columns is None:
                self.columns = {}
            self.columns[column] = value


@dataclass
class PairingInput:
    """Everything a pairing function may read besides its own messages, and where it writes.

    `details`: per message row, the decoded fields the pairing reads (netdiag.transactions'
    PAIR_KEYS); `stats`: counters (`unmatched_responses`); `out`: the transactions, appended in
    pairing order; `quiet`: message rows that are neither requests nor answers and that nobody
    waits for (TLS tickets, alerts); `msgs`: the whole messages table (times, frames by row);
    `connections`: the connections table; `min_ack_rtt_ms`: per connection, the server's
    quickest ACK of client data."""

    details: dict[int, dict[str, Any]]
    stats: Any
    connections: pl.DataFrame
    msgs: pl.DataFrame
    min_ack_rtt_ms: dict[int, float]
    out: list[Txn] = field(default_factory=list)
    quiet: list[int] = field(default_factory=list)
    _arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def column(self, name: str) -> np.ndarray:
        """A column of the messages table as numpy, indexed by message row (computed once)."""
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = self.msgs[name].to_numpy()
        return arr


def first_of(detail: dict, *names: str) -> Any:
    """The first of `names` that `detail` holds with a value (None when none does)."""
    for n in names:
        v = detail.get(n)
        if v is not None:
            return v
    return None


def server_rtt_ms(syn_rtt_ms: float | None, ack_rtt_ms: float | None) -> float:
    """Capture point -> server -> capture point: the smaller of the handshake's SYN -> SYN/ACK and
    the server's quickest ACK of client data on the connection (a slow accept or a one-off delay
    on the handshake must not be taken off every request); 0 when neither was seen."""
    vals = [v for v in (syn_rtt_ms, ack_rtt_ms) if v is not None and v == v]
    return min(vals) if vals else 0.0
