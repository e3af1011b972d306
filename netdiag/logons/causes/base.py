"""What a cause is and what its detection reads: the `Cause` declaration and the three contexts.

A cause (one module in this package) may take part in three steps, each optional:

1. Labelling, before the budget sweep (`label_connections`, `label_transaction`): name what a
   connect, a resend or a server wait really was, so the sweep carries the label and every
   second of a finding is a second of the budget, counted once. Later causes in the registry
   win over earlier ones (for connections the function sees the labels so far and may override
   them; for transactions the last registered cause whose mask matches wins).
2. Finding rows for logons (`find`), after the sweep: sum the seconds the cause won, choose the
   evidence frames and write the texts (`FindingContext.add`).
3. Finding rows for TCP connections that belong to no logon (`find_connections`): the same
   causes a connection shows by itself (`ConnectionContext.add`).

Texts: `summary` is one sentence a hospital manager understands, `detail` says what was measured
and how, `action` is the engineer's next step (default `Cause.action`, phrased with specifics
per finding where the cause knows them: the operation, the server port, the side).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from netdiag.capture.tcp_flags import TH_SYN, TH_SYN_ACK
from netdiag.profile import Profile, Thresholds
from netdiag.words import fmt_s

MAX_EVIDENCE_FRAMES = 40


@dataclass(frozen=True)
class Cause:
    """One cause of lost logon time (see the module docstring for the steps)."""

    id: str
    category: str | None        # budget column (schema.BUDGET_COLUMNS) most of its seconds fall in; None: no time
    action: str                 # the default next step (each module cites the docs/domain.md section it follows)
    dominant: bool = True       # may be named as a logon's dominant cause
    label_connections: Callable[[LabelInput, pl.DataFrame], pl.DataFrame] | None = None
    label_transaction: Callable[[LabelInput], pl.Expr] | None = None
    find: Callable[[FindingContext], None] | None = None
    find_connections: Callable[[ConnectionContext], None] | None = None


@dataclass
class LabelInput:
    """What labelling reads: TCP connections, transactions with their logon, segments, thresholds.

    `tx` has one row per transaction (`txn_row`) with `logon_idx` (null outside logons) and the
    helper columns `_next_same` (the same operation's next request in the logon), `_repeated`
    and `_retried_early` (asked again before its answer came).
    """

    connections: pl.DataFrame        # TCP connections only
    tx: pl.DataFrame
    segments: pl.DataFrame | None
    thr: Thresholds
    lossy_conns: list[int]           # connections with bytes the capture missed

    @property
    def duration_s(self) -> pl.Expr:
        """A transaction's length: first request byte to last answer byte (or last request byte)."""
        return (pl.coalesce("rsp_last_ts_ns", "req_last_ts_ns") - pl.col("req_first_ts_ns")) / 1e9

    @property
    def wait_s(self) -> pl.Expr:
        """Last request byte to first answer byte at the capture point."""
        return (pl.col("rsp_first_ts_ns") - pl.col("req_last_ts_ns")) / 1e9


def secs_text(x: float) -> str:
    """Seconds in a sentence, in the unit that reads best (netdiag.words.fmt_s: "38 µs", "12.4 ms", "2.40 s")."""
    return fmt_s(x)


def filter_for(frames: list[int]) -> str:
    """The frame-list display filter (valid in the original capture)."""
    if not frames:
        return ""
    return "frame.number in {" + ",".join(str(f) for f in frames) + "}"


def frames_of(iv: pl.DataFrame, mask: pl.Expr | None = None) -> list[int]:
    """Evidence: the frames of the intervals that won the most time, at most MAX_EVIDENCE_FRAMES."""
    sel = iv.filter((mask if mask is not None else pl.lit(True)) & (pl.col("won_ns") > 0)).sort(
        "won_ns", descending=True)
    frames: list[int] = []
    for a, b in sel.select("frame_a", "frame_b").iter_rows():
        for f in (a, b):
            if f is not None and f not in frames:
                frames.append(int(f))
        if len(frames) >= MAX_EVIDENCE_FRAMES:
            break
    return sorted(frames[:MAX_EVIDENCE_FRAMES])


def syn_rto(segments: pl.DataFrame | None, conn_ids: list[int]) -> float | None:
    """The client's SYN retransmission timeout: the median gap between its first two SYNs."""
    if segments is None or segments.height == 0:
        return None
    syns = (segments.filter(pl.col("conn_id").is_in(conn_ids) & ((pl.col("tcp_flags") & TH_SYN_ACK) == TH_SYN))
            .sort("conn_id", "ts_ns").with_columns(gap=pl.col("ts_ns").diff().over("conn_id"))
            .filter(pl.col("gap").is_not_null()))
    if syns.height == 0:
        return None
    first_gaps = syns.group_by("conn_id").agg(pl.col("gap").first())
    return float(first_gaps["gap"].median()) / 1e9


def targets_of(connections: pl.DataFrame, conn_ids: list[int], limit: int = 5) -> str:
    """`server:port` of the given connections, at most `limit` named."""
    t = connections.filter(pl.col("conn_id").is_in(conn_ids))
    names = sorted({f"{a}:{p}" for a, p in t.select("server_ip", "server_port").iter_rows()})
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def ops_of(tx: pl.DataFrame, txn_rows: list[int]) -> str:
    """`operation xN` of the given transactions, most frequent first."""
    t = tx.filter(pl.col("txn_row").is_in(txn_rows))
    counts = t.group_by("operation").len().sort("len", descending=True)
    return ", ".join(f"{op} x{n}" for op, n in counts.head(6).iter_rows()) or "n/a"


@dataclass
class FindingContext:
    """The tables a cause reads to write its finding rows for logons (complete logons only)."""

    logons: pl.DataFrame             # complete logons, with logon_idx and budget columns
    intervals: pl.DataFrame          # their timeline intervals with won_ns
    cause_ns: np.ndarray             # [logon_idx, cause label id]: ns each cause won (all logons' rows)
    cause_id: dict[str, int]
    connections: pl.DataFrame
    tx: pl.DataFrame                 # transactions with txn_row
    segments: pl.DataFrame | None
    members: pl.DataFrame            # (logon_idx, conn_id, kind, txn_row) of complete logons
    profile: Profile
    logon_ids: np.ndarray            # logon_idx -> logon_id
    total_logon_s: float             # summed duration of the complete logons
    rows: list[dict] = field(default_factory=list)
    complete: np.ndarray | None = None   # [logon_idx] bool: False rows count 0 (None: every row counts)

    @property
    def thr(self) -> Thresholds:
        return self.profile.thresholds

    def per_logon(self, cause: str) -> np.ndarray:
        """Seconds the cause won in each logon (the sweep's: each instant once); 0 for an incomplete logon.

        The mask is applied one cause column at a time: a copy of the whole matrix with the incomplete
        rows zeroed would cost n_logons x 22 x 8 bytes (350 MB for 2 M logons)."""
        col = self.cause_ns[:, self.cause_id[cause]]
        if self.complete is not None:
            col = np.where(self.complete, col, 0)
        return col / 1e9

    def won(self, cause: str) -> pl.DataFrame:
        """The intervals labelled `cause` that won time in the sweep."""
        return self.intervals.filter((pl.col("cause") == cause) & (pl.col("won_ns") > 0))

    def in_logons(self) -> pl.DataFrame:
        """Transactions of the complete logons, with logon_idx."""
        return self.members.filter(pl.col("txn_row") >= 0).select("logon_idx", "txn_row").join(self.tx, on="txn_row")

    def add(self, cause: Cause, severity: str, seconds: float, logon_idx: list[int], summary: str, detail: str,
            frames: list[int], conn_ids: list[Any], wfilter: str | None = None, action: str | None = None,
            operations: list[dict] | None = None) -> None:
        """Append one finding row."""
        frames = sorted(set(int(f) for f in frames))[:MAX_EVIDENCE_FRAMES]
        self.rows.append({
            "cause": cause.id, "severity": severity, "seconds_lost": float(seconds),
            "logons_affected": len(set(logon_idx)), "summary": summary, "detail": detail,
            "evidence_frames": frames, "wireshark_filter": wfilter or filter_for(frames),
            "logon_ids": sorted({int(self.logon_ids[i]) for i in logon_idx}),
            "conn_ids": sorted({int(c) for c in conn_ids if c is not None}),
            "action": action or cause.action, "operations": operations})

    def simple(self, cause: Cause, severity: Callable[[float, float, pl.DataFrame], str],
               summary: Callable[[float, int, float, pl.DataFrame], str],
               detail: Callable[[float, int, float, pl.DataFrame], str],
               action: Callable[[pl.DataFrame], str] | None = None) -> None:
        """One row from the intervals the cause won: seconds, logons, evidence frames, connections.

        The callables get (seconds, logons, worst logon's seconds, won intervals)."""
        r = self.won(cause.id)
        if r.height == 0:
            return
        per = self.per_logon(cause.id)
        secs = float(per.sum())
        lidx = r["logon_idx"].unique().to_list()
        worst = float(per.max())
        self.add(cause, severity(secs, worst, r), secs, lidx, summary(secs, len(lidx), worst, r),
                 detail(secs, len(lidx), worst, r), frames_of(r), r["conn_id"].to_list(),
                 action=action(r) if action else None)


@dataclass
class ConnectionContext:
    """TCP connections outside every logon, each swept as its own timeline ("logon" = connection).

    `cause_ns` rows and `intervals.logon_idx` index `conn_of` (the connection of each timeline).
    """

    intervals: pl.DataFrame
    cause_ns: np.ndarray
    cause_id: dict[str, int]
    conn_of: np.ndarray
    targets: dict[int, str]          # conn_id -> server:port
    connections: pl.DataFrame        # the TCP connections outside every logon
    segments: pl.DataFrame | None
    profile: Profile
    where: str                       # "outside any logon" / "no logon in this capture"
    rows: list[dict] = field(default_factory=list)

    @property
    def thr(self) -> Thresholds:
        return self.profile.thresholds

    def hit(self, cause: str) -> tuple[float, float, list[int], pl.DataFrame] | None:
        """(seconds, worst connection's seconds, connections, won intervals) or None."""
        per = self.cause_ns[:, self.cause_id[cause]] / 1e9
        idx = np.flatnonzero(per > 0)
        if idx.size == 0:
            return None
        r = self.intervals.filter((pl.col("cause") == cause) & (pl.col("won_ns") > 0))
        return float(per.sum()), float(per.max()), [int(self.conn_of[i]) for i in idx], r

    def to_text(self, conns: list[int]) -> str:
        """The servers of these connections, at most five named."""
        return ", ".join(sorted({self.targets[c] for c in conns})[:5]) + (" ..." if len(set(conns)) > 5 else "")

    def add(self, cause: Cause, severity: str, seconds: float, summary: str, detail: str, frames: list[int],
            conn_ids: list[int], wfilter: str | None = None, action: str | None = None) -> None:
        """Append one finding row (no logon waited for these seconds: logons_affected 0)."""
        frames = sorted(set(int(f) for f in frames))[:MAX_EVIDENCE_FRAMES]
        self.rows.append({
            "cause": cause.id, "severity": severity, "seconds_lost": float(seconds), "logons_affected": 0,
            "summary": summary, "detail": detail, "evidence_frames": frames,
            "wireshark_filter": wfilter or filter_for(frames), "logon_ids": [],
            "conn_ids": sorted({int(c) for c in conn_ids}), "action": action or cause.action, "operations": None})
