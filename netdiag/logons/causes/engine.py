"""Runs the registered causes: labels before the budget sweep, finding rows after it, ranking, noise.

Two steps around the sweep (netdiag/logons/budget.py):

1. `label_causes` asks every registered cause to name what a connect, a resend or a server
   wait really was (a connect with SYN retries is `syn_retransmission` time ...). The sweep
   carries these labels, so every second of a finding is a second of the budget, counted once.
2. `build_findings` asks every cause for its rows over the complete logons (a logon cut by the
   capture's start or end is kept out of every finding's statistics, as out of the budget
   totals), `connection_findings` for the TCP connections outside every logon. `finish_findings`
   drops the noise, ranks (capture loss first, then severity, then seconds) and numbers F001...

Noise rules: no logon finding under 1 ms per logon, except capture loss, which
costs no time by definition (findings of connections outside every logon are kept: a refused
connect costs microseconds, yet it is why a PC could not reach its server); an info finding only when its seconds
reach `thresholds.info_share` of the logon time of the complete logons.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from netdiag.logons.budget import build_intervals, cause_ids, sweep
from netdiag.logons.causes import registry
from netdiag.logons.causes.base import (
    MAX_EVIDENCE_FRAMES,
    ConnectionContext,
    FindingContext,
    LabelInput,
)
from netdiag.logons.chains import FAILED_CONNECT_STATES
from netdiag.profile import Profile
from netdiag.schema import FINDINGS, TRANSACTIONS

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
MIN_SECONDS_PER_LOGON = 0.001     # never a logon finding under 1 ms per logon
NO_TIME_CAUSES = ("capture_loss",)    # findings that cost no time by definition (exempt from the 1 ms rule)


def label_causes(connections: pl.DataFrame, transactions: pl.DataFrame, segments: pl.DataFrame | None,
                 members: pl.DataFrame, profile: Profile) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(conn_causes: conn_id, connect_cause, loss_cause; txn_causes: txn_row, cause, give_up_ts_ns).

    give_up_ts_ns: when the client asked the same operation again before this one's answer
    came; the client stopped waiting for it then.
    """
    conns = connections.filter(pl.col("transport") == "tcp")
    tx = transactions.with_row_index("txn_row").with_columns(pl.col("txn_row").cast(pl.Int64))
    lossy = conns.filter(pl.col("unseen_bytes").fill_null(0) > 0)["conn_id"].to_list()
    # the same operation again later in the same logon (timeout + retry)
    in_logon = members.filter(pl.col("txn_row") >= 0).select("logon_idx", "txn_row")
    tl = tx.join(in_logon, on="txn_row", how="left").sort("req_first_ts_ns")
    nxt = pl.col("req_first_ts_ns").shift(-1).over("logon_idx", "operation")
    tl = tl.with_columns(
        _next_same=nxt,
        _repeated=nxt.is_not_null() & pl.col("logon_idx").is_not_null(),
        # asked again before its answer came: the client gave up waiting (its own timeout)
        _retried_early=(nxt < pl.col("rsp_first_ts_ns").fill_null(2**62)).fill_null(False)
        & pl.col("logon_idx").is_not_null())
    inp = LabelInput(conns, tl, segments, profile.thresholds, lossy)

    cc = conns.select("conn_id", "server_ip", "server_port", "syn_ts_ns", "first_ts_ns", "state",
                      "synack_ts_ns", "bytes_s2c", "syn_retransmissions",
                      connect_cause=pl.lit(None, pl.String), loss_cause=pl.lit(None, pl.String))
    for c in registry.REGISTRY:
        if c.label_connections is not None:
            cc = c.label_connections(inp, cc)
    cc = cc.select("conn_id", "connect_cause", "loss_cause")

    # transactions: the last registered cause whose mask matches wins
    cause = pl.lit(None, pl.String)
    for c in registry.REGISTRY:
        if c.label_transaction is not None:
            cause = pl.when(c.label_transaction(inp)).then(pl.lit(c.id)).otherwise(cause)
    tc = tl.select("txn_row", cause=cause,
                   give_up_ts_ns=pl.when(pl.col("_retried_early")).then(pl.col("_next_same"))
                   .otherwise(pl.lit(None, pl.Int64))).filter(pl.col("cause").is_not_null())
    return cc, tc


def dominant_causes(cause_ns: np.ndarray, intervals: pl.DataFrame, n_logons: int
                    ) -> tuple[list[str | None], pl.Series]:
    """Per logon: the candidate cause with the most seconds and the frames that show it (a
    List(Int64) Series, sorted frames, empty when none: no Python list per logon)."""
    ids = cause_ids()
    names = list(ids)
    cand = np.array([ids[c.id] for c in registry.REGISTRY if c.dominant and c.id not in registry.NEUTRAL_LABELS])
    # ties go to the label registered first (as numpy's argmax over ascending ids)
    cand = np.sort(cand)
    # numpy's argmax over cause_ns[:, cand], a column at a time: no copy of the candidate columns
    # (cause_ns is column-major; the columns of causes no logon has are never touched)
    best = np.zeros(n_logons, dtype=np.int64)
    top = cause_ns[:, cand[0]].copy() if n_logons and cand.size else np.zeros(n_logons, dtype=np.int64)
    for i in range(1, cand.size if n_logons else 0):
        col = cause_ns[:, cand[i]]
        if col.any():
            more = col > top   # strictly more: a tie keeps the earlier column, as argmax does
            best[more] = i
            np.maximum(top, col, out=top)
    has = top > 0
    del top
    causes: list[str | None] = [names[int(cand[b])] if h else None for b, h in zip(best, has, strict=True)]
    frames = pl.Series("evidence_frames", [], dtype=pl.List(pl.Int64)).extend_constant([], n_logons)
    if intervals.height and n_logons:
        dom = pl.DataFrame({"logon_idx": np.arange(n_logons, dtype=np.int64),
                            "_dom": pl.Series(causes, dtype=pl.String)})
        ev = (intervals.filter(pl.col("won_ns") > 0).join(dom, on="logon_idx")
              .filter(pl.col("cause") == pl.col("_dom"))
              .sort(["logon_idx", "won_ns"], descending=[False, True])
              .select("logon_idx", f=pl.concat_list("frame_a", "frame_b")).explode("f").drop_nulls("f")
              .group_by("logon_idx", maintain_order=True)
              .agg(pl.col("f").unique(maintain_order=True).head(MAX_EVIDENCE_FRAMES)))
        if ev.height:
            frames = (pl.DataFrame({"logon_idx": np.arange(n_logons, dtype=np.int64)})
                      .join(ev.select(pl.col("logon_idx").cast(pl.Int64), pl.col("f").cast(pl.List(pl.Int64))
                                      .list.sort()), on="logon_idx", how="left", maintain_order="left")
                      ["f"].fill_null(pl.lit([], pl.List(pl.Int64))).alias("evidence_frames"))
    return causes, frames


def build_findings(logons: pl.DataFrame, intervals: pl.DataFrame, cause_ns: np.ndarray,
                   connections: pl.DataFrame, transactions: pl.DataFrame, segments: pl.DataFrame | None,
                   members: pl.DataFrame, profile: Profile, extra_rows: list[dict] | None = None) -> pl.DataFrame:
    """The FINDINGS table; logons must carry budget columns, logon_id and outcome.

    `extra_rows` (from `connection_findings`: TCP connections outside every logon) are ranked
    and numbered together with the logon findings."""
    n = logons.height
    ids = logons["logon_id"].to_numpy() if n else np.array([], dtype=np.int64)
    complete = (logons["outcome"] != "incomplete").fill_null(True).to_numpy() if n and "outcome" in logons.columns \
        else np.ones(n, dtype=bool)
    lg = logons.filter(pl.Series(complete)) if n else logons
    iv = intervals.filter(_of_rows(intervals["logon_idx"], complete)) if intervals.height else intervals
    mem = members.filter(_of_rows(members["logon_idx"], complete)) if members.height else members
    total_logon_s = float(lg["duration_s"].sum()) if lg.height else 0.0
    tx = transactions.with_row_index("txn_row").with_columns(pl.col("txn_row").cast(pl.Int64))
    ctx = FindingContext(lg, iv, cause_ns, cause_ids(), connections, tx, segments, mem, profile, ids, total_logon_s,
                         complete=None if complete.all() else complete)
    if lg.height:
        for c in registry.REGISTRY:
            if c.find is not None:
                c.find(ctx)
    return finish_findings(list(extra_rows or []) + ctx.rows, total_logon_s, profile)


def _of_rows(logon_idx: pl.Series, rows: np.ndarray) -> pl.Series:
    """Whether each `logon_idx` names a logon row that `rows` (bool, by row position) keeps; an index outside
    the table is not kept. A gather, not an is_in over a list of the kept rows (a Python int each)."""
    idx = logon_idx.fill_null(-1).cast(pl.Int64).to_numpy()
    ok = (idx >= 0) & (idx < rows.size)
    out = np.zeros(idx.size, dtype=bool)
    out[ok] = rows[idx[ok]]
    return pl.Series(out)


def connection_findings(connections: pl.DataFrame, segments: pl.DataFrame | None, profile: Profile,
                        in_logons: set[int] | pl.Series, logons_known: bool) -> list[dict]:
    """Finding rows (not yet numbered) for TCP connections that belong to no logon.

    Each such connection is its own timeline, from its first packet to its last: the logon
    budget's own intervals (build_intervals: connect, resends, zero window / window full, Nagle
    x delayed ACK) and its sweep (precedence, each instant once) run on it with the
    connection as the "logon" and times at the capture point. So a second of a connection's
    finding is counted the way a logon's would be, and nagle_delayed_ack seconds equal the
    connections table's nagle_stall_s. Only connections with something to show are swept.
    `logons_affected` is 0: no logon is known to have waited for these seconds.
    """
    if connections.height == 0:
        return []
    # (in_logons as a Series: a flood's hundreds of thousands of conn_ids make no Python int each)
    ids = in_logons if isinstance(in_logons, pl.Series) else pl.Series(list(in_logons), dtype=pl.Int64)
    tcp = connections.filter((pl.col("transport") == "tcp")
                             & ~pl.col("conn_id").is_in(ids.cast(connections["conn_id"].dtype).implode()))
    failed = pl.col("syn_ts_ns").is_not_null() & pl.col("synack_ts_ns").is_null()
    nagle = pl.col("nagle_stalls").fill_null(1) > 0 if "nagle_stalls" in tcp.columns else pl.lit(True)
    trouble = tcp.filter((pl.col("syn_retransmissions").fill_null(0) > 0) | failed
                         | pl.col("state").is_in(list(FAILED_CONNECT_STATES))
                         | (pl.col("retransmitted_segments").fill_null(0) > 0)
                         | (pl.col("zero_window_events").fill_null(0) > 0)
                         | (pl.col("window_full_events").fill_null(0) > 0) | nagle)
    where = "outside any logon" if logons_known else "no logon in this capture"
    ids = cause_ids()
    iv = pl.DataFrame()
    cause_ns = np.zeros((0, len(ids)), dtype=np.int64)
    conn_of = np.array([], dtype=np.int64)
    if trouble.height:
        pseudo = trouble.select(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("logon_idx"), "conn_id",
            pl.coalesce("syn_ts_ns", "first_ts_ns").alias("start_ts_ns"),
            pl.max_horizontal(pl.col("last_ts_ns"), pl.coalesce("syn_ts_ns", "first_ts_ns") + 1).alias("end_ts_ns"),
            pl.lit(0, pl.Int64).alias("half_rtt_client_ns"))
        members = pseudo.select("logon_idx", "conn_id", kind=pl.lit("tcp"), txn_row=pl.lit(-1, pl.Int64))
        segs = segments.filter(pl.col("conn_id").is_in(trouble["conn_id"].to_list())) if segments is not None else None
        # every connection outside a logon: a listen backlog shows only against the attempts that went well
        conn_causes, _ = label_causes(tcp, TRANSACTIONS.empty(), segs, members, profile)
        iv = build_intervals(pseudo, members, connections, TRANSACTIONS.empty(), segs, conn_causes, None)
        if iv.height:
            _cat_ns, cause_ns, won = sweep(iv, pseudo)
            iv = iv.with_columns(won_ns=pl.Series(won, dtype=pl.Int64))
            conn_of = pseudo["conn_id"].to_numpy()
    if iv.height == 0:
        iv = pl.DataFrame(schema={"logon_idx": pl.Int64, "cause": pl.String, "won_ns": pl.Int64,
                                  "frame_a": pl.Int64, "frame_b": pl.Int64, "t0": pl.Int64, "t1": pl.Int64})
    targets = {int(c): f"{a}:{p}" for c, a, p in tcp.select("conn_id", "server_ip", "server_port").iter_rows()}
    ctx = ConnectionContext(iv, cause_ns, ids, conn_of, targets, tcp, segments, profile, where)
    for c in registry.REGISTRY:
        if c.find_connections is not None:
            c.find_connections(ctx)
    return ctx.rows


def _is_noise(rows: pl.DataFrame, total_logon_s: float, info_share: float) -> pl.Expr:
    # per logon; a connection outside every logon keeps its finding (a refused connect costs
    # microseconds, yet it is why a PC could not reach the server)
    per = pl.col("seconds_lost") / pl.col("logons_affected").cast(pl.Float64)
    too_small = ((pl.col("logons_affected") > 0) & (per < MIN_SECONDS_PER_LOGON)
                 & ~pl.col("cause").is_in(list(NO_TIME_CAUSES)))
    small_info = ((pl.col("severity") == "info") & (pl.col("logons_affected") > 0)
                  & (pl.col("seconds_lost") < info_share * total_logon_s))
    return too_small | small_info


def finish_findings(rows: list[dict], total_logon_s: float = 0.0, profile: Profile | None = None) -> pl.DataFrame:
    """Drop the noise (module docstring), rank (capture loss first, then severity, then seconds), number F001..."""
    if not rows:
        return FINDINGS.empty()
    info_share = (profile or Profile()).thresholds.info_share
    df = pl.DataFrame(rows, schema_overrides={"evidence_frames": pl.List(pl.Int64), "logon_ids": pl.List(pl.UInt32),
                                              "conn_ids": pl.List(pl.UInt32),
                                              "operations": FINDINGS.schema["operations"]})
    df = df.filter(~_is_noise(df, total_logon_s, info_share))
    if df.height == 0:
        return FINDINGS.empty()
    df = df.with_columns(
        _first=(pl.col("cause") != "capture_loss"),
        _sev=pl.col("severity").replace_strict(SEVERITY_ORDER, return_dtype=pl.Int64),
    ).sort(["_first", "_sev", "seconds_lost"], descending=[False, False, True], maintain_order=True)
    df = df.with_columns(id=pl.format("F{}", pl.int_range(1, df.height + 1).cast(pl.String).str.zfill(3)))
    # the display filters are filled afterwards from the tables (netdiag.filters.finding_filters)
    df = df.with_columns([pl.lit(None, pl.String).alias(c) for c in FINDINGS.names if c not in df.columns])
    return FINDINGS.conform(df)


__all__ = ["build_findings", "connection_findings", "dominant_causes", "finish_findings",
           "label_causes"]
