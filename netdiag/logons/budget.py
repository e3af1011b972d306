"""The wait budget: every instant of a logon's timeline assigned to exactly one category.

Method (docs/logons.md has a worked example):

1. Intervals. Each thing the capture shows becomes an interval [t0, t1) with a category and
   a cause label, clipped to the logon's [start, end) and placed where the *client* lives it
   (hc / hs = half the client-side / server-side round trip; see build_intervals):
   - connect: first SYN - hc to SYN/ACK + hc (SYN retries included; a failed attempt to its
     last packet + hc).
   - tls: a TLS handshake transaction, ClientHello - hc to its last message + hc.
   - dns: query - hc to answer + hc (retries folded in); unanswered: to the process's next step.
   - per request/response transaction (GIOP, HTTP, TLS turns): request_transfer, network_rtt
     (request in flight), server (the server's own time), network_rtt (reply in flight),
     response_transfer, tiling the turn exactly.
   - client: from each answer reaching the client to the process's next action.
   - loss_recovery: each resent data segment (not SYNs: those are connect time) stands for
     [the first copy of its bytes, the resend]; a first copy whose original was lost before the
     capture point (a sequence hole it fills, a per-socket IP ID gap before it) for [its
     estimated original, it]; spurious resends (acknowledged before, or D-SACKed after) for
     nothing (`resend_waits`, docs/logons.md section 2.1). When the receiver advertised a zero
     window in that interval the resend is a persist probe: flow_control. A wait that only may
     be loss before the capture point (no IP ID evidence, timing of a resend timer) is
     unexplained, never client time.
   - flow_control: a zero window until the window reopens; a window-full segment until the
     receiver's next segment.
   - nagle_delayed_ack: segment A (the last data its sender sent), the receiver's bare ACK of it
     30-500 ms later than the receiver side's round trip explains (a delayed ACK, not ACK
     clocking), then the sender's next segment B, smaller than an MSS, within its side's round
     trip + NAGLE_SLACK_NS after that ACK: the sender held B until the ACK came, so [A, B) is
     Nagle x delayed-ACK time (netdiag/tcp/nagle.py, shared with the connections table).
2. Precedence. Where intervals overlap (several connections at once, a resend inside a
   transfer), the instant goes to the highest category in PRECEDENCE. Overlapping connections
   are therefore counted once.
3. Sweep. All interval boundaries of all logons are sorted once (numpy); between two
   consecutive boundaries the winning category is the highest-precedence interval active there
   (difference arrays + cumulative sums, one pass per rank present). An instant no interval
   covers is `unexplained`.
4. Seconds. Per logon the nanoseconds per category sum exactly to end - start; converted to
   seconds, the rightmost non-empty column (`unexplained_s` when anything is unexplained)
   absorbs float rounding, so the columns add up (left to right) to `duration_s` exactly. Where
   no value of that column can (a long column after short ones: see budget_seconds), the row is
   put on the duration's float grid, where every order of addition is exact. Empty categories are
   exactly 0.0 and no column is negative. All of this is asserted.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from netdiag.logons.causes.registry import label_names
from netdiag.logons.positional import clip_to_logons
from netdiag.logons.resends import DATA, resend_columns, resend_waits
from netdiag.protocols.registry import request_protocols
from netdiag.schema import BUDGET_COLUMNS
from netdiag.tcp.nagle import nagle_candidates, nagle_stalls

# Highest first. An instant covered by several intervals belongs to the first category here.
# `unexplained_s` ranks above `client_s` only for the explicit intervals that carry it (a wait
# that may be loss before the capture point: never the client's own time); an instant no
# interval covers is unexplained whatever its rank.
PRECEDENCE: tuple[str, ...] = (
    "loss_recovery_s", "flow_control_s", "nagle_delayed_ack_s", "connect_s", "tls_s", "dns_s",
    "server_s", "request_transfer_s", "response_transfer_s", "network_rtt_s", "unexplained_s", "client_s",
)
assert set(PRECEDENCE) == set(BUDGET_COLUMNS)
_CAT_RANK = {c: len(PRECEDENCE) - 1 - i for i, c in enumerate(PRECEDENCE)}   # higher = wins

# Cause labels carried by intervals (which finding a second of time belongs to): the neutral
# labels and the registered causes (netdiag/logons/causes/registry.py), read at each sweep so a
# cause registered later is swept like the others. Within a category a later label wins.
_NCAUSE = 64


def cause_ids() -> dict[str, int]:
    """Label -> id of every interval label (id 0 = unexplained, the default for unknown labels)."""
    names = label_names()
    assert len(names) < _NCAUSE and names[0] == "unexplained"
    return {c: i for i, c in enumerate(names)}

INTERVAL_SCHEMA = {"logon_idx": pl.Int64, "t0": pl.Int64, "t1": pl.Int64, "category": pl.String,
                   "cause": pl.String, "conn_id": pl.UInt32, "txn_row": pl.Int64, "frame_a": pl.Int64,
                   "frame_b": pl.Int64}


def _iv(df: pl.DataFrame, t0: pl.Expr, t1: pl.Expr, category: str, cause: pl.Expr | str,
        frame_a: pl.Expr | None = None, frame_b: pl.Expr | None = None) -> pl.DataFrame:
    cause_e = pl.lit(cause) if isinstance(cause, str) else cause
    return df.select(
        pl.col("logon_idx").cast(pl.Int64),
        t0.cast(pl.Int64).alias("t0"), t1.cast(pl.Int64).alias("t1"),
        pl.lit(category).alias("category"), cause_e.cast(pl.String).alias("cause"),
        (pl.col("conn_id") if "conn_id" in df.columns else pl.lit(None)).cast(pl.UInt32).alias("conn_id"),
        (pl.col("txn_row") if "txn_row" in df.columns else pl.lit(-1)).cast(pl.Int64).alias("txn_row"),
        (frame_a if frame_a is not None else pl.lit(None)).cast(pl.Int64).alias("frame_a"),
        (frame_b if frame_b is not None else pl.lit(None)).cast(pl.Int64).alias("frame_b"),
    )


def build_intervals(logons: pl.DataFrame, members: pl.DataFrame, connections: pl.DataFrame,
                    transactions: pl.DataFrame, segments: pl.DataFrame | None,
                    conn_causes: pl.DataFrame | None = None, txn_causes: pl.DataFrame | None = None
                    ) -> pl.DataFrame:
    """All timeline intervals of all logons (see module docstring), clipped to each logon.

    Times are placed where the *client* lives them: with hc = half the client-side round trip
    and hs = half the server-side one (connections.rtt_*_side_ms, measured on the handshake),
    the client sent a packet hc before the capture point saw it and received one hc after; the
    server received a request hs after the capture point saw it and replied hs before. One
    request/reply turn then tiles the timeline without gaps or double counting:

        request_transfer [q0-hc, q1-hc]  network [q1-hc, q1+hs]  server [q1+hs, r0-hs]
        network [r0-hs, r0+hc]  response_transfer [r0+hc, r1+hc]  client [r1+hc, next q0-hc]

    `conn_causes` (conn_id, connect_cause, loss_cause) and `txn_causes` (txn_row, cause) let the
    findings relabel intervals (e.g. a connect with SYN retries is syn_retransmission time).
    """
    parts: list[pl.DataFrame] = []
    lg = logons.select("logon_idx", "start_ts_ns", "end_ts_ns", "half_rtt_client_ns")
    hc = pl.col("half_rtt_client_ns")
    conn_cols = ["conn_id", "syn_ts_ns", "synack_ts_ns", "established_ts_ns", "last_ts_ns", "first_frame",
                 "last_frame", "rtt_server_side_ms", "syn_retransmissions", "state", "bytes_s2c", "transport",
                 "first_ts_ns"]
    conn_m = (members.filter(pl.col("txn_row") < 0).select("logon_idx", "conn_id").unique()
              .join(connections.select(conn_cols), on="conn_id", how="inner")
              .join(lg.select("logon_idx", "half_rtt_client_ns"), on="logon_idx", how="left"))
    if conn_causes is not None and conn_causes.height:
        conn_m = conn_m.join(conn_causes, on="conn_id", how="left")
    else:
        conn_m = conn_m.with_columns(connect_cause=pl.lit(None, pl.String), loss_cause=pl.lit(None, pl.String))

    # connect: the client's first SYN until the SYN/ACK reached it (or the failed attempt's end;
    # a SYN/ACK the capture missed on a connection that carried answers ends nothing: no wait)
    conn_m = conn_m.with_columns(_connect_end=pl.coalesce(
        "synack_ts_ns", "established_ts_ns",
        pl.when(pl.col("bytes_s2c").fill_null(0) > 0).then(pl.col("syn_ts_ns")), "last_ts_ns"))
    c = conn_m.filter(pl.col("syn_ts_ns").is_not_null())
    if c.height:
        end = pl.col("_connect_end") + hc
        parts.append(_iv(c, pl.col("syn_ts_ns") - hc, end, "connect_s",
                         pl.col("connect_cause").fill_null("connect"), pl.col("first_frame"), None))

    tx = transactions.with_row_index("txn_row").with_columns(pl.col("txn_row").cast(pl.Int64))
    tm = (members.filter(pl.col("txn_row") >= 0).select("logon_idx", "txn_row")
          .join(tx, on="txn_row", how="inner")
          .join(connections.select("conn_id", pl.col("rtt_server_side_ms").alias("_rtt_ss"),
                                   pl.col("last_ts_ns").alias("_conn_last")), on="conn_id", how="left")
          .join(lg.select("logon_idx", "end_ts_ns", "half_rtt_client_ns"), on="logon_idx", how="left"))
    if txn_causes is not None and txn_causes.height:
        tm = tm.join(txn_causes, on="txn_row", how="left")
    else:
        tm = tm.with_columns(cause=pl.lit(None, pl.String))

    # what each logon's process did next (client-originated starts, seen at the capture point)
    udp = pl.col("transport") == "udp"
    starts = pl.concat([
        tm.select("logon_idx", pl.col("req_first_ts_ns").alias("s")),
        conn_m.select("logon_idx", pl.when(udp).then(pl.col("first_ts_ns")).otherwise(pl.col("syn_ts_ns")).alias("s")),
    ]).drop_nulls().sort("logon_idx", "s")

    def next_start(df: pl.DataFrame, on: str) -> pl.DataFrame:
        return df.sort(on).join_asof(starts.sort("s"), left_on=on, right_on="s", by="logon_idx",
                                     strategy="forward", allow_exact_matches=False, check_sortedness=False)

    # tls handshakes and dns questions
    tls = tm.filter(pl.col("protocol") == "tls")
    if tls.height:
        parts.append(_iv(tls, pl.col("req_first_ts_ns") - hc,
                         pl.max_horizontal("req_last_ts_ns", pl.col("rsp_last_ts_ns").fill_null(0)) + hc, "tls_s",
                         pl.col("cause").fill_null("tls"), pl.col("first_frame"), pl.col("last_frame")))
    flows = conn_m.filter(udp)     # DNS exchanges known only as UDP flows (see grouping)
    if flows.height:
        parts.append(_iv(flows, pl.col("first_ts_ns") - hc, pl.col("last_ts_ns") + hc, "dns_s", "dns",
                         pl.col("first_frame"), pl.col("last_frame")))
    dns = tm.filter(pl.col("protocol") == "dns")
    if dns.height:
        dns = next_start(dns, "req_last_ts_ns")
        end = pl.coalesce(pl.col("rsp_last_ts_ns") + hc, pl.col("s") - hc, "end_ts_ns")
        parts.append(_iv(dns, pl.col("req_first_ts_ns") - hc, end, "dns_s", pl.col("cause").fill_null("dns"),
                         pl.col("first_frame"), pl.col("last_frame")))

    app = tm.filter(pl.col("protocol").is_in(list(request_protocols())))
    if app.height:
        # the capture-to-server round trip of transactions.server_think_s (server_rtt_s: the smaller of
        # the handshake's and the server's quickest ACK); tables built without it: the handshake's
        rtt_s = pl.coalesce(pl.col("server_rtt_s"), pl.col("_rtt_ss") / 1e3) if "server_rtt_s" in app.columns \
            else pl.col("_rtt_ss") / 1e3
        half_ss = (rtt_s.fill_null(0.0).fill_nan(0.0) * 500_000_000).cast(pl.Int64)  # s -> ns, halved
        app = app.with_columns(_hs=half_ss)
        q0, q1 = pl.col("req_first_ts_ns"), pl.col("req_last_ts_ns")
        parts.append(_iv(app, q0 - hc, q1 - hc, "request_transfer_s", pl.lit("transfer"), pl.col("first_frame"), None))
        answered = app.filter(pl.col("rsp_first_ts_ns").is_not_null())
        if answered.height:
            r0, r1 = pl.col("rsp_first_ts_ns"), pl.col("rsp_last_ts_ns")
            hs = pl.min_horizontal(pl.col("_hs"), ((r0 - q1) // 2).clip(lower_bound=0))
            parts.append(_iv(answered, q1 - hc, q1 + hs, "network_rtt_s", "network_latency"))
            parts.append(_iv(answered, q1 + hs, r0 - hs, "server_s", pl.col("cause").fill_null("server_think"),
                             pl.col("first_frame"), pl.col("last_frame")))
            parts.append(_iv(answered, r0 - hs, r0 + hc, "network_rtt_s", "network_latency"))
            parts.append(_iv(answered, r0 + hc, r1 + hc, "response_transfer_s",
                             pl.col("cause").fill_null("transfer"), None, pl.col("last_frame")))
        unanswered = app.filter(pl.col("rsp_first_ts_ns").is_null())
        if unanswered.height:
            # the client waited for an answer that never came, until it gave up (its next step)
            unanswered = next_start(unanswered, "req_last_ts_ns")
            parts.append(_iv(unanswered, q1 - hc,
                             pl.coalesce(pl.col("s") - hc, pl.min_horizontal("_conn_last", "end_ts_ns")), "server_s",
                             pl.col("cause").fill_null("server_think"), pl.col("first_frame"), None))

    # client: from each answer reaching the client to the client's next action
    deliveries = pl.concat([
        tm.filter(pl.col("rsp_last_ts_ns").is_not_null())
          .select("logon_idx", pl.col("rsp_last_ts_ns").alias("d"), pl.col("last_frame").alias("fa")),
        conn_m.select("logon_idx", pl.col("_connect_end").alias("d"), pl.col("first_frame").alias("fa")),
    ]).drop_nulls("d")
    if deliveries.height:
        gaps = next_start(deliveries, "d").join(lg, on="logon_idx", how="inner")
        parts.append(_iv(gaps, pl.col("d") + hc, pl.coalesce(pl.col("s") - hc, "end_ts_ns"), "client_s",
                         "client_think", pl.col("fa"), None))

    if segments is not None and segments.height:
        parts.extend(_segment_intervals(segments, conn_m, connections))

    iv = pl.concat([p for p in parts if p.height], how="vertical_relaxed") if parts else pl.DataFrame(
        schema=INTERVAL_SCHEMA)
    del parts   # (from here on one step's input and output at a time: a flood has 400 k intervals)
    if txn_causes is not None and "give_up_ts_ns" in txn_causes.columns:
        # a request asked again before its answer came: the client stopped waiting at the retry
        gu = (txn_causes.filter(pl.col("give_up_ts_ns").is_not_null()).select("txn_row", "give_up_ts_ns")
              .join(members.filter(pl.col("txn_row") >= 0).select("logon_idx", "txn_row"), on="txn_row")
              .join(lg.select("logon_idx", "half_rtt_client_ns"), on="logon_idx"))
        if gu.height:
            iv = (iv.join(gu.select("txn_row", "logon_idx", (pl.col("give_up_ts_ns") - hc).alias("_gu")),
                          on=["txn_row", "logon_idx"], how="left")
                  .with_columns(t1=pl.min_horizontal("t1", pl.col("_gu").fill_null(2**62))).drop("_gu"))
    if iv["t0"].null_count() or iv["t1"].null_count():
        iv = iv.filter(pl.col("t0").is_not_null() & pl.col("t1").is_not_null())   # e.g. a reply whose request was not captured
    return clip_to_logons(iv, lg).select(list(INTERVAL_SCHEMA)).cast(INTERVAL_SCHEMA)


def _segment_intervals(segments: pl.DataFrame, conn_m: pl.DataFrame, connections: pl.DataFrame
                       ) -> list[pl.DataFrame]:
    """Loss recovery, flow control and Nagle x delayed-ACK intervals from the segments table."""
    out: list[pl.DataFrame] = []
    cm = conn_m.select("logon_idx", "conn_id", "loss_cause", "half_rtt_client_ns")
    in_cm = pl.col("conn_id").is_in(cm["conn_id"].unique().implode())
    if not segments.select(in_cm.any()).item():
        return out
    # Only connections with a zero-window or window-full segment are read from `seg` below, and
    # resend waits need a data segment: each copy of the segments holds just those connections.
    flagged = pl.col("conn_id").is_in(
        segments.filter(pl.col("zero_window") | pl.col("window_full"))["conn_id"].unique().implode())
    seg = segments.filter(flagged).join(cm.drop("half_rtt_client_ns"), on="conn_id", how="inner")
    with_data = pl.col("conn_id").is_in(segments.filter(DATA)["conn_id"].unique().implode())
    waits = resend_waits(segments.select(resend_columns(segments)).filter(in_cm & with_data), connections)
    rtx = (waits.join(cm, on="conn_id", how="inner")
           # a first copy whose original was lost before the capture point: the client sent both hc
           # before the capture point saw them (its side of the round trip)
           .with_columns(_shift=pl.when((pl.col("direction") == 0) & (pl.col("kind") != "resend"))
                         .then(pl.col("half_rtt_client_ns")).otherwise(0))
           .with_columns(_t0=pl.col("t0") - pl.col("_shift"), _t1=pl.col("ts_ns") - pl.col("_shift"),
                         rto_frame=pl.col("frame_a")))
    possible = rtx.filter(pl.col("kind") == "possible_before_capture")
    if possible.height:
        out.append(_iv(possible, pl.col("_t0"), pl.col("_t1"), "unexplained_s", "unexplained",
                       pl.col("frame_a"), pl.col("frame")))
    rtx = rtx.filter(pl.col("kind") != "possible_before_capture")
    seg = seg.sort("conn_id", "ts_ns", "frame")
    if rtx.height:
        # A resend while the receiver advertised a zero window is the sender probing a full
        # receiver (persist timer), not loss: flow control. Count the receiver's zero-window
        # segments up to the original send and up to the resend.
        zw_ev = (seg.filter(pl.col("zero_window")).select("conn_id", pl.col("direction").alias("_rdir"), "ts_ns")
                 .sort("ts_ns").with_columns(_n=pl.int_range(1, pl.len() + 1).over("conn_id", "_rdir")))
        rtx = rtx.with_columns(_rdir=(1 - pl.col("direction").cast(pl.Int8)).cast(pl.UInt8))
        if zw_ev.height:
            zw_ev = zw_ev.with_columns(pl.col("_rdir").cast(pl.UInt8))
            at = lambda col, name: (rtx.sort(col).join_asof(  # noqa: E731
                zw_ev.rename({"ts_ns": "_zts"}), left_on=col, right_on="_zts", by=["conn_id", "_rdir"],
                check_sortedness=False).select("frame", pl.col("_n").fill_null(0).alias(name)))
            rtx = (rtx.join(at("_t0", "_z0"), on="frame", how="left").join(at("ts_ns", "_z1"), on="frame", how="left")
                   .with_columns(_flow=(pl.col("_z1") > pl.col("_z0"))))
        else:
            rtx = rtx.with_columns(_flow=pl.lit(False))
        loss = rtx.filter(~pl.col("_flow"))
        flow = rtx.filter(pl.col("_flow"))
        if loss.height:
            out.append(_iv(loss, pl.col("_t0"), pl.col("_t1"), "loss_recovery_s",
                           pl.col("loss_cause").fill_null("loss_recovery"), pl.col("rto_frame"), pl.col("frame")))
        if flow.height:
            out.append(_iv(flow, pl.col("_t0"), pl.col("_t1"), "flow_control_s", "zero_window",
                           pl.col("rto_frame"), pl.col("frame")))
    # zero window: until the same side advertises a window again (connections with one only)
    zw = _with_any(seg, "zero_window").with_columns(
        _open=pl.when(pl.col("window_bytes") > 0).then(pl.col("ts_ns")).shift(-1).backward_fill()
        .over("conn_id", "direction"),
        _open_frame=pl.when(pl.col("window_bytes") > 0).then(pl.col("frame")).shift(-1).backward_fill()
        .over("conn_id", "direction"),
    ).filter(pl.col("zero_window") & ~pl.col("zero_window_probe").fill_null(False))
    if zw.height:
        zw = zw.join(connections.select("conn_id", "last_ts_ns"), on="conn_id", how="left")
        out.append(_iv(zw, pl.col("ts_ns"), pl.coalesce("_open", "last_ts_ns"), "flow_control_s", "zero_window",
                       pl.col("frame"), pl.col("_open_frame")))
    # window full: until the receiver's next segment (connections with one only)
    seg2 = _with_any(seg, "window_full").with_columns(
        _t_d0=pl.when(pl.col("direction") == 0).then(pl.col("ts_ns")).shift(-1).backward_fill().over("conn_id"),
        _t_d1=pl.when(pl.col("direction") == 1).then(pl.col("ts_ns")).shift(-1).backward_fill().over("conn_id"),
    )
    wf = seg2.filter(pl.col("window_full"))
    if wf.height:
        other = pl.when(pl.col("direction") == 0).then(pl.col("_t_d1")).otherwise(pl.col("_t_d0"))
        out.append(_iv(wf, pl.col("ts_ns"), other.fill_null(pl.col("ts_ns")), "flow_control_s", "zero_window",
                       pl.col("frame"), None))
    # Nagle x delayed ACK: the rule lives in netdiag/tcp/nagle.py (the connections table counts
    # the same stalls); only connections with stalls there need their segments looked at
    stalls = _nagle_stalls(segments, connections)
    if stalls.height:
        cand = stalls.join(cm.select("logon_idx", "conn_id"), on="conn_id", how="inner")
        if "tls_quiet" in segments.columns and cand.height:
            # the held segment carries only TLS post-handshake messages or alerts (a session ticket
            # held back by Nagle): nobody waits for it, so the stall is no wait (docs/tls.md)
            quiet = segments.filter(pl.col("tls_quiet"))["frame"]
            cand = cand.filter(~pl.col("b_frame").is_in(quiet.implode()))
        if cand.height:
            out.append(_iv(cand, pl.col("a_ts_ns"), pl.col("b_ts_ns"), "nagle_delayed_ack_s", "nagle_delayed_ack",
                           pl.col("a_frame"), pl.col("b_frame")))
    return out


# a segment carrying data (a SYN's payload, TCP Fast Open, is not a resend candidate)
def _with_any(seg: pl.DataFrame, flag: str) -> pl.DataFrame:
    """The rows of the connections that have a row with `flag` set (order kept): the windows
    over a connection's rows give the others nothing, and cost memory per connection."""
    return seg.filter(pl.col("conn_id").is_in(seg.filter(pl.col(flag))["conn_id"].unique().implode()))


def _nagle_stalls(segments: pl.DataFrame, connections: pl.DataFrame) -> pl.DataFrame:
    """Nagle x delayed-ACK stalls (netdiag.tcp.nagle) on the connections the connections table flags."""
    if "nagle_stalls" in connections.columns:   # null (a table built without segments): look at all
        ids = connections.filter(pl.col("nagle_stalls").fill_null(1) > 0)["conn_id"]
        segments = segments.filter(pl.col("conn_id").is_in(ids.implode()))
    return nagle_stalls(nagle_candidates(segments), connections)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique for int64 by sorting (numpy 2's hash-based unique is ~5x slower on millions)."""
    x = np.sort(x)
    return x[np.concatenate([[True], x[1:] != x[:-1]])] if x.size else x


def sweep(intervals: pl.DataFrame, logons: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign each instant of each logon to one (category, cause).

    Returns (category_ns [n_logons, n_categories in BUDGET_COLUMNS order],
    cause_ns [n_logons, len(cause_ids())], won_ns [n_intervals]: the time each interval won, an instant
    won by several intervals of the same rank being shared equally among them).
    """
    n_logons = logons.height
    ncat = len(BUDGET_COLUMNS)
    cat_ns = np.zeros((n_logons, ncat), dtype=np.int64)
    cause_id_of = cause_ids()
    # column-major: a cause no logon has keeps its column as untouched (unmapped) zero pages, and
    # cause_ns[:, j] is one contiguous column (a flood of 200 k logons has 22 columns, 2 of them used)
    cause_ns = np.zeros((n_logons, len(cause_id_of)), dtype=np.int64, order="F")
    won = np.zeros(intervals.height, dtype=np.int64)
    if n_logons == 0:
        return cat_ns, cause_ns, won
    lstart = logons["start_ts_ns"].to_numpy().astype(np.int64)
    lend = logons["end_ts_ns"].to_numpy().astype(np.int64)
    ldur = lend - lstart
    big = int(ldur.max()) + 1
    if big * n_logons >= 2**62:
        raise OverflowError("logon timelines too long to sweep together")
    lo = intervals["logon_idx"].to_numpy().astype(np.int64)
    t0 = intervals["t0"].to_numpy().astype(np.int64) - lstart[lo] + lo * big
    t1 = intervals["t1"].to_numpy().astype(np.int64) - lstart[lo] + lo * big
    cat_rank = intervals["category"].replace_strict(_CAT_RANK, return_dtype=pl.Int64).to_numpy()
    cause_id = (intervals["cause"].replace_strict(cause_id_of, default=0, return_dtype=pl.Int64)
                .fill_null(0).to_numpy())
    rank = cat_rank * _NCAUSE + cause_id
    ranks_present = np.flatnonzero(np.bincount(rank, minlength=1))   # ascending, like np.unique
    idx = np.arange(n_logons, dtype=np.int64)
    bounds = _sorted_unique(np.concatenate([t0, t1, idx * big, idx * big + ldur]))
    seg_lo = bounds[:-1] // big
    valid = bounds[1:] <= seg_lo * big + ldur[seg_lo]   # not the gap between two logons
    seg_dur = np.where(valid, np.diff(bounds), 0)
    si = np.searchsorted(bounds, t0)
    ei = np.searchsorted(bounds, t1)
    nseg = bounds.size - 1
    unexplained = _CAT_RANK["unexplained_s"] * _NCAUSE + cause_id_of["unexplained"]
    winner = np.full(nseg, unexplained, dtype=np.int64)

    def active(m: np.ndarray) -> np.ndarray:
        """How many of the intervals `m` cover each elementary segment (a difference array summed)."""
        diff = np.bincount(si[m], minlength=nseg + 1) - np.bincount(ei[m], minlength=nseg + 1)
        return np.cumsum(diff)[:-1]

    for r in ranks_present:   # ascending: higher ranks paint over lower ones
        winner[active(rank == r) > 0] = r
    # per-interval won time: the time its rank won, shared equally among that rank's intervals
    # active at the same instant (so summing won time over intervals never counts an instant twice)
    wonf = np.zeros(intervals.height, dtype=np.float64)
    for r in ranks_present:
        m = rank == r
        cnt = active(m)
        share = np.where((winner == r) & (cnt > 0), seg_dur / np.maximum(cnt, 1), 0.0)
        csum = np.concatenate([[0.0], np.cumsum(share)])
        wonf[m] = csum[ei[m]] - csum[si[m]]
    won = np.rint(wonf).astype(np.int64)
    seg_cat = winner // _NCAUSE
    seg_cause = winner % _NCAUSE
    col_of_rank = np.full(max(_CAT_RANK.values()) + 1, -1, dtype=np.int64)   # (a rank with no column: -1)
    for c in BUDGET_COLUMNS:
        col_of_rank[_CAT_RANK[c]] = BUDGET_COLUMNS.index(c)
    seg_col = col_of_rank[seg_cat]
    assert (seg_col >= 0).all(), "every category rank has a budget column"
    np.add.at(cat_ns, (seg_lo[valid], seg_col[valid]), seg_dur[valid])
    np.add.at(cause_ns, (seg_lo[valid], seg_cause[valid]), seg_dur[valid])
    assert np.array_equal(cat_ns.sum(axis=1), ldur), "budget nanoseconds must cover each logon exactly"
    return cat_ns, cause_ns, won


def _left_to_right(secs: np.ndarray) -> np.ndarray:
    """Row sums added column by column, left to right (the order a reader adds the columns in)."""
    total = np.zeros(secs.shape[0])
    for j in range(secs.shape[1]):
        total = total + secs[:, j]
    return total


def _on_duration_grid(cat_ns: np.ndarray, duration_s: np.ndarray) -> np.ndarray:
    """Seconds per category as whole multiples of ulp(duration_s), summing to duration_s exactly.

    With u = ulp(d), every multiple of u between 0 and d is a float, so any sum of such columns
    is computed without rounding, in any order: it is D * u = d when the multiples add up to
    D = d / u. Each column is rounded to the nearest multiple of u; the few units by which they
    miss D are given to (taken from) the non-empty columns that were rounded down (up) the most.
    A column moves by at most about one u (1e-15 s on a 10 s logon); empty columns stay 0.
    """
    u = np.spacing(duration_s)[:, None]
    exact = cat_ns / 1e9 / u                                    # the column in units of u
    g = np.rint(exact).astype(np.int64)
    full = cat_ns > 0
    g = np.where(full, np.maximum(g, 1), 0)                     # a non-empty column never becomes 0
    short = np.rint(duration_s / u[:, 0]).astype(np.int64) - g.sum(axis=1)
    for i in np.flatnonzero(short):
        err = np.where(full[i], exact[i] - g[i], np.nan)       # > 0: rounded down
        for _ in range(abs(int(short[i]))):
            if short[i] > 0:
                j = int(np.nanargmax(err))
                g[i, j] += 1
                err[j] -= 1
            else:
                j = int(np.nanargmin(np.where(g[i] > 1, err, np.nan)))
                g[i, j] -= 1
                err[j] += 1
    return g * u


def budget_seconds(cat_ns: np.ndarray, duration_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seconds per category whose left-to-right sum equals duration_s exactly (asserted).

    Each column is its nanoseconds / 1e9 except the rightmost non-empty one (`unexplained_s` when
    any instant was unexplained), which absorbs the float rounding of the others. That is not
    always possible: when the absorbing column is larger than everything before it and lies in a
    higher binade, `before + x` is a rounding tie for every x and lands on even floats only, so an
    odd duration is out of reach (the 300k-packet synthetic capture had 7 such logons in 1996).
    Those rows, and any whose absorbing column would go negative, are put on the duration's own
    float grid instead (`_on_duration_grid`), where the sum is exact by construction. Either way
    no column is negative and an empty category is exactly 0.0, never float residue.
    """
    cat_ns = np.asarray(cat_ns, dtype=np.int64)
    duration_ns = np.asarray(duration_ns, dtype=np.int64)
    if (cat_ns < 0).any() or not np.array_equal(cat_ns.sum(axis=1), duration_ns):
        raise ValueError("budget nanoseconds must be non-negative and sum to each logon's duration")
    duration_s = duration_ns / 1e9
    secs = cat_ns / 1e9
    n, ncol = secs.shape
    rows = np.arange(n)
    nonzero = cat_ns > 0
    k = np.where(nonzero.any(axis=1), ncol - 1 - np.argmax(nonzero[:, ::-1], axis=1), 0)  # absorbing column
    before = np.zeros(n)
    for j in range(ncol):
        before = before + np.where(j < k, secs[:, j], 0.0)
    x = duration_s - before
    for _ in range(4):   # an ulp or two either way, where a solution exists
        total = before + x
        off = total != duration_s
        if not off.any():
            break
        x = np.where(off, np.nextafter(x, np.where(total < duration_s, np.inf, -np.inf)), x)
    secs[rows, k] = x
    bad = (x < 0) | (_left_to_right(secs) != duration_s)
    if bad.any():
        secs[bad] = _on_duration_grid(cat_ns[bad], duration_s[bad])
    assert np.array_equal(_left_to_right(secs), duration_s), "budget columns must sum exactly to duration_s"
    assert (secs >= 0).all(), "budget columns are never negative"
    assert np.array_equal(secs > 0, nonzero), "an empty category is exactly zero"
    return secs, duration_s
