"""Waits on resends: which resent segments (and first copies lost before the capture point) cost
their receiver time, and when the client really got each answer.

`resend_waits(segments, connections)` gives one row per segment that made its receiver wait
(WAIT_SCHEMA), which netdiag.logons.budget turns into loss-recovery (or unexplained) intervals;
`delivered_answers(transactions, segments)` moves an answer's end to the resend that delivered it;
`dsack_spurious(segments)` names the resends a receiver reported as duplicates. Pure functions of
the tables (no I/O). The method is in docs/logons.md ("Loss before the capture point").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from netdiag.capture.tcp_flags import TH_SYN

# A segment that carries data (payload, no SYN): only such a segment can be resent or waited for.
DATA = (pl.col("payload_len") > 0) & ((pl.col("tcp_flags").cast(pl.Int64) & TH_SYN) == 0)
# The shortest retransmission timeout of the sender's TCP, by its initial TTL (the first of 64,
# 128, 255 at or above the TTL seen): Linux/BSD/macOS 200 ms (TCP_RTO_MIN; a loss probe for one
# outstanding segment waits as long), Windows 300 ms (MinRto; docs/domain.md section 3.2).
MIN_RTO_S_UNIX, MIN_RTO_S_WINDOWS = 0.200, 0.300
# A wait that may be a timer resend of a segment lost before the capture point: from the sender's
# minimum RTO to its RTO estimate plus this much (the sender may have waited a little before its
# first copy).
RTO_MATCH_SLACK_S = 0.100
# A resend timer fires a little after its nominal value (timer granularity; Linux's loss probe waits
# 2 x SRTT where the RTO adds 1 x): 1-15 ms in the lab. Where the wait allows, half of what is left
# after the nominal RTO, at most this much, is added to the estimate.
TIMER_LATE_MAX_S = 0.010
# IP IDs: a connection side counts as a per-socket counter (Linux for connected TCP sockets) when
# at least this share of its consecutive packets step the ID by exactly what the previous one used
# (1, or one per MSS for a packet larger than the MSS), or all but one do; a host is a global
# counter (Windows) when this share of its packets that follow one of its other connections' do.
IPID_STEP_SHARE = 0.8
IPID_GLOBAL_SHARE = 0.5

WAIT_SCHEMA = {"conn_id": pl.UInt32, "direction": pl.UInt8, "frame": pl.Int64, "ts_ns": pl.Int64, "t0": pl.Int64,
               "frame_a": pl.Int64, "kind": pl.String}


def _min_rto_s(ttl: pl.Expr) -> pl.Expr:
    return pl.when(ttl.cast(pl.Int64) > 64).then(pl.when(ttl.cast(pl.Int64) <= 128).then(MIN_RTO_S_WINDOWS)
                                                 .otherwise(MIN_RTO_S_UNIX)).otherwise(MIN_RTO_S_UNIX)


def dsack_spurious(segments: pl.DataFrame) -> pl.Series:
    """Frames of resends the receiver reported as duplicates (RFC 2883 D-SACK): for each D-SACK
    block, the latest resend before it that the block covers. The receiver had those bytes from
    an earlier copy, so the resend cost it nothing."""
    need = {"dsack_left_rel", "dsack_right_rel", "seq_rel", "next_seq_rel", "resend"}
    if not need <= set(segments.columns):
        return pl.Series("frame", [], pl.Int64)
    ds = (segments.filter(pl.col("dsack_left_rel").is_not_null())
          .select("conn_id", _d=(1 - pl.col("direction").cast(pl.Int8)).cast(pl.UInt8), _dts=pl.col("ts_ns"),
                  _dl=pl.col("dsack_left_rel"), _dr=pl.col("dsack_right_rel"), _dframe=pl.col("frame")))
    if ds.height == 0:
        return pl.Series("frame", [], pl.Int64)
    res = segments.filter(pl.col("resend") & (pl.col("payload_len") > 0)).select(
        "conn_id", "direction", "frame", "ts_ns", "seq_rel", "next_seq_rel")
    j = (res.join(ds, left_on=["conn_id", "direction"], right_on=["conn_id", "_d"], how="inner")
         .filter((pl.col("_dl") <= pl.col("seq_rel")) & (pl.col("_dr") >= pl.col("next_seq_rel"))
                 & (pl.col("ts_ns") <= pl.col("_dts"))))
    return j.sort("ts_ns", "frame").group_by("_dframe").agg(pl.col("frame").last())["frame"].unique()


def _rto_estimates(seg: pl.DataFrame, connections: pl.DataFrame, at: pl.DataFrame) -> pl.DataFrame:
    """`at` (conn_id, direction, frame, ts_ns, ip_ttl) with `rto_est_ns`: the sender's minimum RTO
    plus its smoothed RTT just before (RFC 6298 alpha 1/8, as the sender itself computes it: its
    handshake round trip first, then each ACK of its data: the capture point's ACK time plus the
    sender's side of the round trip)."""
    rtt = connections.select("conn_id", "syn_ts_ns", _rc=pl.col("rtt_client_side_ms").fill_nan(None).fill_null(0.0),
                             _rs=pl.col("rtt_server_side_ms").fill_nan(None).fill_null(0.0))
    acks = (seg.filter(pl.col("ack_rtt_s").is_not_null())
            .select("conn_id", direction=(1 - pl.col("direction").cast(pl.Int8)).cast(pl.UInt8), ts_ns="ts_ns",
                    _a=pl.col("ack_rtt_s"))
            .join(rtt, on="conn_id", how="left")
            .select("conn_id", "direction", "ts_ns",
                    _x=pl.col("_a") + pl.when(pl.col("direction") == 0).then("_rc").otherwise("_rs") / 1e3))
    hs = (rtt.filter(pl.col("syn_ts_ns").is_not_null())
          .select("conn_id", ts_ns=pl.col("syn_ts_ns"), _x=(pl.col("_rc") + pl.col("_rs")) / 1e3))
    hs = pl.concat([hs.with_columns(direction=pl.lit(d, pl.UInt8)) for d in (0, 1)]).select(acks.columns)
    smp = (pl.concat([hs, acks]).sort("conn_id", "direction", "ts_ns")
           .with_columns(_srtt=pl.col("_x").ewm_mean(alpha=0.125, adjust=False).over("conn_id", "direction")))
    out = at.sort("ts_ns").join_asof(smp.select("conn_id", "direction", "ts_ns", "_srtt").sort("ts_ns"),
                                     on="ts_ns", by=["conn_id", "direction"], strategy="backward",
                                     allow_exact_matches=False, check_sortedness=False)
    return out.with_columns(rto_est_ns=((_min_rto_s(pl.col("ip_ttl")) + pl.col("_srtt").fill_null(0.0)) * 1e9)
                            .cast(pl.Int64)).drop("_srtt")


def _per_socket_ip_ids(seg: pl.DataFrame, connections: pl.DataFrame) -> pl.DataFrame:
    """(conn_id, direction, per_socket): does this side's IP ID count its own packets one by one?

    `seg` carries `_miss`: IDs missing before each packet of its side (see resend_waits).

    Linux gives each connected TCP socket its own counter, so a missing ID between two captured
    packets of one side is a packet of that socket the capture point never saw. Windows counts per
    host: IDs jump by whatever the host sent elsewhere, and a host whose packets on one connection
    continue the ID of its last packet on another is such a counter; its gaps prove nothing."""
    s = (seg.select("conn_id", "direction", "ts_ns", "frame", pl.col("ip_id").cast(pl.Int64), "_miss")
         .join(connections.select("conn_id", "client_ip", "server_ip"), on="conn_id", how="left")
         .with_columns(host=pl.when(pl.col("direction") == 0).then("client_ip").otherwise("server_ip")))
    steps = s.group_by("conn_id", "direction", "host").agg(_share=(pl.col("_miss") == 0).mean(),
                                                            _odd=(pl.col("_miss") != 0).sum(),
                                                            _n=pl.col("_miss").count())
    # (sorted by host, each host's rows are contiguous: its previous row is the previous row when
    # that is the same host, which is shift(1).over("host") without the per-group window)
    same_host = pl.col("host").eq_missing(pl.col("host").shift(1))
    cross = (s.sort("host", "ts_ns", "frame")
             .with_columns(_pc=pl.when(same_host).then(pl.col("conn_id").shift(1)),
                           _d=(pl.col("ip_id") - pl.when(same_host).then(pl.col("ip_id").shift(1))) % 65536)
             .filter(pl.col("_pc").is_not_null() & (pl.col("_pc") != pl.col("conn_id")))
             .group_by("host").agg(_g=pl.col("_d").is_between(1, 3).mean(), _gn=pl.len()))
    return (steps.join(cross, on="host", how="left")
            .select("conn_id", "direction",
                    per_socket=((pl.col("_share").fill_null(0.0) >= IPID_STEP_SHARE) | (pl.col("_odd") <= 1))
                    & (pl.col("_n") >= 2)
                    & ~((pl.col("_gn").fill_null(0) >= 2) & (pl.col("_g").fill_null(0.0) >= IPID_GLOBAL_SHARE))))


def _previous_of_side(seg: pl.DataFrame) -> Callable[[pl.Expr], pl.Expr]:
    """`prev(expr)`: expr at the previous row of the same (conn_id, direction), in `seg`'s row
    order (null for a side's first row): what `expr.shift(1).over("conn_id", "direction")` gives,
    as one gather by row index instead of a window per group (a flood's hundreds of thousands of
    sides made the windows the slowest step of resend_waits)."""
    key = seg["conn_id"].to_numpy().astype(np.int64) * 2 + seg["direction"].to_numpy().astype(np.int64)
    order = np.argsort(key, kind="stable")   # each side's rows together, in row order
    same = np.flatnonzero(key[order][1:] == key[order][:-1]) + 1
    prev = np.full(key.size, -1, np.int64)
    prev[order[same]] = order[same - 1]
    has = pl.lit(pl.Series(prev >= 0))
    idx = pl.Series(np.maximum(prev, 0))
    return lambda expr: pl.when(has).then(expr.gather(idx))


def _after_answer(df: pl.DataFrame, seg: pl.DataFrame) -> pl.DataFrame:
    """`_lower`: when the capture point saw the peer's data that the segment acknowledges (its
    ACK number): the sender sent its first copy, which acknowledged the same, after that."""
    peer = (seg.select("conn_id", direction=(1 - pl.col("direction").cast(pl.Int8)).cast(pl.UInt8),
                       _lower=pl.col("ts_ns"), _pend=pl.col("next_seq_rel").cum_max().over("conn_id", "direction"))
            .sort("_pend"))
    return (df.sort("ack_rel").join_asof(peer, left_on="ack_rel", right_on="_pend", by=["conn_id", "direction"],
                                         strategy="forward", check_sortedness=False)
            .with_columns(_lower=pl.when(pl.col("_lower") < pl.col("ts_ns")).then("_lower"))
            .drop("_pend"))


def _timer_delay(window: pl.Expr) -> pl.Expr:
    """The resend delay (ns) when the first copy went out somewhere in the last `window` ns before
    the resend: the sender's RTO estimate plus half of what is left, at most TIMER_LATE_MAX_S; never
    more than the window (the first copy cannot predate what it answers)."""
    rto = pl.col("rto_est_ns")
    late = ((window - rto).clip(lower_bound=0) // 2).clip(upper_bound=int(TIMER_LATE_MAX_S * 1e9))
    return pl.min_horizontal(window.fill_null(rto + late.fill_null(0)), rto + late.fill_null(0))


# the segment columns resend_waits and its helpers read: its sorts and joins copy only these, not ~50
RESEND_COLUMNS = ("conn_id", "direction", "frame", "ts_ns", "payload_len", "tcp_flags", "resend", "bytes_seen_before",
                  "spurious_retransmission", "retransmission", "resend_wait_s", "rto_s", "resend_of_frame",
                  "rto_frame", "out_of_order", "lost_segment", "fast_retransmission", "seq_rel", "next_seq_rel",
                  "ack_rel", "ip_id", "ip_ttl", "dsack_left_rel", "dsack_right_rel", "ack_rtt_s")


def resend_columns(segments: pl.DataFrame) -> list[str]:
    return [c for c in RESEND_COLUMNS if c in segments.columns]


def resend_waits(segments: pl.DataFrame, connections: pl.DataFrame) -> pl.DataFrame:
    """Waits on resends, one row per segment that cost the receiver time (WAIT_SCHEMA).

    [t0, ts_ns] on the capture point's clock, `kind`:

    - `resend`: a resend of bytes the capture saw before (segments.resend), from the first copy
      still unacknowledged (`resend_of_frame`; tshark's rto_frame for a flagged retransmission
      without one) to the resend. Spurious resends cost nothing and are left out: bytes the
      receiver acknowledged before the resend (tshark's spurious retransmission; a resend of
      acknowledged bytes), or reported twice by the receiver's D-SACK afterwards.
    - `before_capture`: a first copy whose original the capture point never saw because it was
      lost before it (docs/logons.md "Loss before the capture point"). Proven when it fills a
      sequence hole that a later segment of the sender opened (the original was sent before
      that segment), or when its sender's per-socket IP ID skips just before it while its ACK
      acknowledges nothing new (the missing packet carried data: these bytes). The original's
      time is unknown: the sender's RTO estimate before the resend (`_rto_estimates`), not
      before the sender's previous captured packet; a fast retransmission (dup ACKs) from the
      segment that opened the hole.
    - `possible_before_capture`: no IP ID proof either way (a per-host counter, IDs 0, or an ID
      gap that a lost bare ACK could explain), but the first copy follows the sender's previous
      packet by a wait that matches its RTO (minimum RTO .. estimate + RTO_MATCH_SLACK_S): the
      capture cannot tell; the budget calls it unexplained, never the client's own time.
    """
    need = {"resend", "bytes_seen_before", "resend_wait_s", "seq_rel", "next_seq_rel", "ack_rel", "ip_id", "ip_ttl"}
    if segments is None or segments.height == 0:
        return pl.DataFrame(schema=WAIT_SCHEMA)
    data = DATA
    segments = segments.select(resend_columns(segments))
    # every wait below is on a data segment: connections without one (a SYN flood, bare
    # handshakes) cannot have any, and the per-direction windows below cost memory per group
    segments = segments.filter(pl.col("conn_id").is_in(segments.filter(data)["conn_id"].unique().implode()))
    if segments.height == 0:
        return pl.DataFrame(schema=WAIT_SCHEMA)
    if not need <= set(segments.columns) or segments["resend"].null_count() == segments.height:
        # a segments table without netdiag's resend columns (older, or hand-made): tshark's
        # retransmissions only, from tshark's rto_frame
        old = segments.filter(pl.col("retransmission") & ~pl.col("spurious_retransmission").fill_null(False) & data
                              & pl.col("rto_s").is_not_null())
        return old.select("conn_id", "direction", "frame", "ts_ns",
                          t0=pl.col("ts_ns") - (pl.col("rto_s") * 1e9).cast(pl.Int64), frame_a=pl.col("rto_frame"),
                          kind=pl.lit("resend")).cast(WAIT_SCHEMA)
    seg = segments.sort("conn_id", "ts_ns", "frame")
    has_lost = "lost_segment" in segments.columns
    del segments   # (only the sorted copy is read below)
    dsacked = dsack_spurious(seg)
    spurious = pl.col("spurious_retransmission").fill_null(False) | pl.col("frame").is_in(dsacked.implode())
    parts: list[pl.DataFrame] = []
    # 1. resends of captured bytes
    res = seg.filter(data & pl.col("resend") & pl.col("bytes_seen_before") & ~spurious)
    res = res.with_columns(
        t0=pl.coalesce(pl.col("ts_ns") - (pl.col("resend_wait_s") * 1e9).round().cast(pl.Int64),
                       pl.when(pl.col("retransmission")).then(pl.col("ts_ns") - (pl.col("rto_s") * 1e9).cast(pl.Int64))),
        frame_a=pl.coalesce("resend_of_frame", "rto_frame")).filter(pl.col("t0").is_not_null())
    parts.append(res.select("conn_id", "direction", "frame", "ts_ns", "t0", "frame_a", kind=pl.lit("resend")))
    # 2. first copies that fill a hole: the original went missing before the capture point
    fill = seg.filter(data & (pl.col("retransmission") | pl.col("out_of_order")) & ~pl.col("bytes_seen_before")
                      & ~spurious)
    # 3. in-order first copies after a packet of the same side the capture never saw (IP ID), or
    #    after a wait that looks like a resend timer
    # (a packet larger than the sender's MSS was cut by the NIC into MSS-sized packets with one ID
    # each, or coalesced by the receiving host: a capture on that host sees one packet for several IDs)
    mss = connections.select("conn_id", _mss0=pl.col("mss_server").cast(pl.Int64), _mss1=pl.col("mss_client").cast(pl.Int64))
    # (the MSS column joined alone, then added: a join of `seg` itself would copy all its columns)
    side = seg.with_columns(seg.select("conn_id").join(mss, on="conn_id", how="left", maintain_order="left")
                            .select("_mss0", "_mss1")).with_columns(
        _mss=pl.when(pl.col("direction") == 0).then("_mss0").otherwise("_mss1").fill_null(1460).clip(lower_bound=1)
    )
    prev = _previous_of_side(side)   # (the values of the side's previous packet: shift(1).over(conn, dir))
    side = side.with_columns(
        _pts=prev(pl.col("ts_ns")),
        _pframe=prev(pl.col("frame")),
        _pack=prev(pl.col("ack_rel")),
        _pids=prev(((pl.col("payload_len").cast(pl.Int64) + pl.col("_mss") - 1) // pl.col("_mss")).clip(lower_bound=1)),
        _dids=(pl.col("ip_id").cast(pl.Int64) - prev(pl.col("ip_id").cast(pl.Int64))) % 65536,
    ).with_columns(_miss=pl.col("_dids") - pl.col("_pids"))
    # (in order only: a first copy after a sequence jump follows bytes the capture missed, which a
    # resend fills later (a hole, above) or nobody does (the capture dropped them))
    in_order = ~pl.col("lost_segment") if has_lost else pl.lit(True)
    late = side.filter(data & ~pl.col("resend") & ~pl.col("out_of_order") & in_order & pl.col("_pts").is_not_null()
                       & ((pl.col("_miss") > 0) | (pl.col("ts_ns") - pl.col("_pts") >= int(MIN_RTO_S_UNIX * 0.95e9))))
    if fill.height + late.height == 0:
        return pl.concat(parts).cast(WAIT_SCHEMA)
    if late.height:
        # a side whose IP IDs count its own packets and skip none before the packet lost nothing
        # there: such a row gets no kind below, so it goes before the RTO estimates and the joins
        # (on a logon storm nearly all of the pauses this long are of that kind)
        ids = _per_socket_ip_ids(side, connections)
        late = (late.join(ids, on=["conn_id", "direction"], how="left")
                .with_columns(per_socket=pl.col("per_socket").fill_null(False))
                .filter((~(pl.col("per_socket") & (pl.col("_miss") == 0))).fill_null(True)))
        if fill.height + late.height == 0:
            return pl.concat([p.cast(WAIT_SCHEMA) for p in parts]).sort("conn_id", "ts_ns")
    at = pl.concat([fill.select("conn_id", "direction", "frame", "ts_ns", "ip_ttl"),
                    late.select("conn_id", "direction", "frame", "ts_ns", "ip_ttl")]).unique("frame")
    rto = _rto_estimates(seg, connections, at).select("frame", "rto_est_ns")
    if fill.height:
        # the segment that opened the hole: the sender's first one reaching past these bytes
        reach = (seg.select("conn_id", "direction", _hts=pl.col("ts_ns"), _hframe=pl.col("frame"),
                            _reach=pl.col("seq_rel").cum_max().over("conn_id", "direction"))
                 .sort("_reach"))
        fill = (fill.join(rto, on="frame", how="left").sort("next_seq_rel")
                .join_asof(reach, left_on="next_seq_rel", right_on="_reach", by=["conn_id", "direction"],
                           strategy="forward", check_sortedness=False)
                .with_columns(_hts=pl.when(pl.col("_hts") < pl.col("ts_ns")).then("_hts")))
        fill = _after_answer(fill, seg)
        timer = pl.col("ts_ns") - _timer_delay(pl.col("ts_ns") - pl.col("_lower"))
        t0 = (pl.when(pl.col("fast_retransmission") & pl.col("_hts").is_not_null()).then("_hts")
              .otherwise(pl.min_horizontal(timer, pl.col("_hts").fill_null(timer))))
        parts.append(fill.select("conn_id", "direction", "frame", "ts_ns", t0=t0,
                                 frame_a=pl.coalesce("_hframe", "rto_frame"), kind=pl.lit("before_capture")))
    if late.height:
        late = _after_answer(late.join(rto, on="frame", how="left"), seg)
        late = late.with_columns(_lower=pl.max_horizontal("_lower", "_pts"),
                                 _gap=pl.col("ts_ns") - pl.col("_pts"))
        proven = pl.col("per_socket") & (pl.col("_miss") > 0) & (pl.col("ack_rel") == pl.col("_pack"))
        no_loss = pl.col("per_socket") & (pl.col("_miss") == 0)
        timer_like = ((pl.col("_gap") >= (_min_rto_s(pl.col("ip_ttl")) * 0.95e9).cast(pl.Int64))
                      & (pl.col("_gap") <= pl.col("rto_est_ns") + int(RTO_MATCH_SLACK_S * 1e9)))
        late = late.with_columns(
            kind=pl.when(proven).then(pl.lit("before_capture"))
            .when(~no_loss & timer_like).then(pl.lit("possible_before_capture")),
            t0=pl.col("ts_ns") - _timer_delay(pl.col("ts_ns") - pl.col("_lower")))
        parts.append(late.filter(pl.col("kind").is_not_null())
                     .select("conn_id", "direction", "frame", "ts_ns", "t0", frame_a=pl.col("_pframe"), kind="kind"))
    return pl.concat([p.cast(WAIT_SCHEMA) for p in parts]).sort("conn_id", "ts_ns")


def delivered_answers(transactions: pl.DataFrame, segments: pl.DataFrame | None) -> pl.DataFrame:
    """Transactions whose `rsp_last_ts_ns` is when the client got the answer, not its first copy.

    A first copy captured and then lost after the capture point (a server-side capture) reaches
    the client with its resend: TCP hands the answer to the application only when every byte up
    to its end has arrived. So an answer ends at the last resend of bytes below its end (the
    server's highest sequence when it was complete at the capture point) that came before the
    client acknowledged that end, unless the resend was spurious (acknowledged before, or
    reported as a duplicate by a D-SACK: the client had it). Used for the logon's end and the
    client's own time after an answer; the transactions table keeps capture-point times.
    """
    need = {"resend", "bytes_seen_before", "seq_rel", "next_seq_rel", "ack_rel"}
    if segments is None or segments.height == 0 or not need <= set(segments.columns) or transactions.height == 0:
        return transactions
    data = pl.col("payload_len") > 0
    spurious = pl.col("spurious_retransmission").fill_null(False) | pl.col("frame").is_in(
        dsack_spurious(segments).implode())
    res = segments.filter((pl.col("direction") == 1) & data & pl.col("resend") & pl.col("bytes_seen_before")
                          & ~spurious).select("conn_id", _rts=pl.col("ts_ns"), _rseq=pl.col("seq_rel"))
    if res.height == 0:
        return transactions
    seg = segments.sort("ts_ns", "frame")
    high = (seg.filter(pl.col("direction") == 1)
            .select(pl.col("conn_id").cast(pl.Int64), "ts_ns",
                    _end=pl.col("next_seq_rel").cum_max().over("conn_id")))
    acked = (seg.filter(pl.col("direction") == 0)
             .select(pl.col("conn_id").cast(pl.Int64), _ats=pl.col("ts_ns"),
                     _ack=pl.col("ack_rel").cum_max().over("conn_id")).sort("_ack"))
    tx = transactions.with_row_index("_row")
    ans = (tx.filter(pl.col("rsp_last_ts_ns").is_not_null())
           .select("_row", pl.col("conn_id").cast(pl.Int64), "rsp_last_ts_ns").sort("rsp_last_ts_ns")
           .join_asof(high.sort("ts_ns"), left_on="rsp_last_ts_ns", right_on="ts_ns", by="conn_id",
                      strategy="backward", check_sortedness=False)
           .filter(pl.col("_end").is_not_null()).sort("_end")
           .join_asof(acked, left_on="_end", right_on="_ack", by="conn_id", strategy="forward",
                      check_sortedness=False))
    late = (ans.join(res.with_columns(pl.col("conn_id").cast(pl.Int64)), on="conn_id", how="inner")
            .filter((pl.col("_rts") > pl.col("rsp_last_ts_ns")) & (pl.col("_rseq") < pl.col("_end"))
                    & (pl.col("_ats").is_null() | (pl.col("_rts") < pl.col("_ats"))))
            .group_by("_row").agg(_delivered=pl.col("_rts").max()))
    if late.height == 0:
        return transactions
    return (tx.join(late, on="_row", how="left")
            .with_columns(rsp_last_ts_ns=pl.max_horizontal("rsp_last_ts_ns", "_delivered"))
            .drop("_row", "_delivered"))
