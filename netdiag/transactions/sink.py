"""Where one pass's messages go (`MessageSink`) and what it counts (`StreamStats`, `StreamAnalysis`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import numpy as np
import polars as pl

from netdiag.protocols import Record
from netdiag.schema import MESSAGES

JSON = json.JSONEncoder(separators=(",", ":"), default=str)
# The C encoder JSONEncoder.encode builds for every call (markers None: a detail is a tree), made
# once: the same text, without the per-call set-up (~0.7 of ~3.3 µs per message).
_C_JSON = (c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False, True)
           if c_make_encoder is not None else None)


def encode_json(obj: dict[str, Any]) -> str:
    """`JSON.encode(obj)`: compact JSON, ASCII only, str() of what JSON cannot hold."""
    return "".join(_C_JSON(obj, 0)) if _C_JSON is not None else JSON.encode(obj)


# Record.detail fields the pairing reads (everything else lives only in the JSON column).
PAIR_KEYS = frozenset({
    "more_fragments", "response_expected", "exception_id", "forward_host", "forward_port", "forward_type_id",
    "forward_tls_port", "ior_host", "ior_port", "ior_type_id", "ior_tls_port",
    "user_agent", "host", "qtype", "qclass", "answers", "sni", "chosen_version", "resumed",
    "cipher_suite", "decrypted", "plaintext_protocol", "after_capture_gap"})


class MessageSink:
    """MESSAGES rows: one tuple per row while a batch is built, flushed to compact DataFrames.

    Rows get a global index (0-based, in emission order). Timing of rows emitted in a step is
    filled in at the end of that step (`set_timings`, arrays kept beside the tuples and applied
    when the batch is flushed), so flushing between steps is safe. `details` keeps, sparsely by
    row, only the decoded fields the pairing reads (PAIR_KEYS), their strings shared (one
    User-Agent object, not one per request); everything else lives in the JSON `detail` column.
    Memory per message is then Arrow's, not Python objects'.
    """

    FLUSH_ROWS = 50_000
    # the row tuple's fields, in order, with the types they are built with (conformed after)
    ROW = (("conn_id", pl.Int64), ("direction", pl.Int64), ("protocol", pl.String), ("msg_type", pl.String),
           ("request_id", pl.Int64), ("operation", pl.String), ("status", pl.String), ("size_bytes", pl.Int64),
           ("stream_offset", pl.Int64), ("malformed", pl.Boolean), ("detail", pl.String))

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.timing: list[tuple[int, int, int, int]] = []      # per row, as emitted
        self.timed: list[tuple[np.ndarray, ...]] = []           # (rows, first_ts, last_ts, first_frame, last_frame)
        self.details: dict[int, dict[str, Any]] = {}
        self.strings: dict[str, str] = {}
        self.parts: list[pl.DataFrame] = []
        self.base = 0  # global index of the first row in self.rows

    def __len__(self) -> int:
        return self.base + len(self.rows)

    def add(self, conn_id: int, direction: int, rec: Record, size: int, offset: int | None,
            timing: tuple[int, int, int, int]) -> int:
        row = self.base + len(self.rows)
        detail = rec.detail
        if rec.malformed and rec.reason:
            detail = {**detail, "reason": rec.reason}
        self.rows.append((conn_id, direction, rec.protocol, rec.msg_type, rec.request_id, rec.operation,
                          rec.status, size, offset, bool(rec.malformed),
                          encode_json(detail) if detail else None))
        self.timing.append(timing)
        if detail:
            keep = {k: detail[k] for k in detail.keys() & PAIR_KEYS}
            # the common values need no entry: not fragmented, a response expected
            if keep.get("more_fragments") is False:
                del keep["more_fragments"]
            if keep.get("response_expected") is True:
                del keep["response_expected"]
            if keep:
                strings = self.strings
                for k, v in keep.items():
                    if type(v) is str:
                        keep[k] = strings.setdefault(v, v)
                self.details[row] = keep
        return row

    def set_timings(self, rows: np.ndarray, first_ts: np.ndarray, last_ts: np.ndarray, first_frame: np.ndarray,
                    last_frame: np.ndarray) -> None:
        """The timing of rows added since the last flush (global row indexes)."""
        self.timed.append((rows, first_ts, last_ts, first_frame, last_frame))

    def flush(self, force: bool = False) -> None:
        n = len(self.rows)
        if n and (force or n >= self.FLUSH_ROWS):
            t = np.array(self.timing, np.int64).reshape(n, 4)
            for rows, *cols in self.timed:
                for j, col in enumerate(cols):
                    t[rows - self.base, j] = col
            df = pl.DataFrame(self.rows, schema=list(self.ROW), orient="row").with_columns(
                first_ts_ns=pl.Series(t[:, 0]), last_ts_ns=pl.Series(t[:, 1]),
                first_frame=pl.Series(t[:, 2]), last_frame=pl.Series(t[:, 3]),
                resend_s=pl.lit(0.0))
            self.parts.append(MESSAGES.conform(df))
            self.rows = []
            self.timing = []
            self.timed = []
            self.base += n

    def frame(self) -> pl.DataFrame:
        self.flush(force=True)
        return pl.concat(self.parts, rechunk=True) if self.parts else MESSAGES.empty()


@dataclass
class StreamStats:
    """Counts from one analysis (what was parsed, skipped, lost)."""

    connections_parsed: int = 0
    connections_skipped: int = 0
    messages: int = 0
    malformed_messages: int = 0
    gaps: int = 0          # capture gaps: holes the receiver acknowledged past (connections.unseen_gaps)
    gap_bytes: int = 0     # bytes in them: ACKed but never captured (connections.unseen_bytes)
    duplicate_bytes: int = 0
    unmatched_responses: int = 0
    by_protocol: dict[str, int] = field(default_factory=dict)
    tls_decrypted_connections: int = 0
    # (conn_id, why) per TLS connection a key log was given for but that stayed without keys
    tls_not_decrypted: list[tuple[int, str]] = field(default_factory=list)
    tls_warnings: list[str] = field(default_factory=list)  # one line per such connection
    # message rows of TLS post-handshake messages and alerts (decrypted or inferred): nobody waits for them
    tls_quiet_rows: list[int] = field(default_factory=list, repr=False)


@dataclass
class StreamAnalysis:
    """Everything one pass produces; later stages (logons, reports) start from this."""

    connections: pl.DataFrame
    messages: pl.DataFrame
    transactions: pl.DataFrame
    gaps: pl.DataFrame
    stats: StreamStats
    read_stats: Any = None
    tls_quiet_frames: np.ndarray | None = None  # frames carrying only TLS post-handshake messages/alerts

    @property
    def malformed_messages(self) -> int:
        return self.stats.malformed_messages
