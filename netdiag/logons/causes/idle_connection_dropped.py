"""idle_connection_dropped: a pooled connection silently cut by a firewall/NAT while idle.

Detection (docs/domain.md section 3.2 "Idle pooled connection killed by a firewall/NAT"): data sent
after >= `thresholds.idle_before_reuse_s` of silence was resent and never answered by the
server. Labels the connection's resend waits (budget loss_recovery_s).
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes.base import (
    Cause,
    ConnectionContext,
    FindingContext,
    LabelInput,
    frames_of,
    secs_text,
    targets_of,
)

# docs/domain.md section 3.2 (state timeout < 2 h keepalive), section 4 (Keepalive: off unless the
# application sets SO_KEEPALIVE; KeepAliveTime 2 h) and section 5 (idle row: "firewall idle
# timeout vs keepalive; ORB/OS keepalive settings").
ACTION = ("Ask the firewall/NAT team for the idle (state) timeout on the path to {targets} and make the clients "
          "notice it first: TCP keepalive below that timeout (SO_KEEPALIVE; Windows KeepAliveTime is 2 h by "
          "default) or a shorter idle lifetime for the ORB's pooled connections.")


def _dropped(segments: pl.DataFrame, idle_s: float) -> set[int]:
    """Connections whose data after a long silence was resent and never answered by the server."""
    client_rtx = pl.col("retransmission") & (pl.col("direction") == 0) & (pl.col("payload_len") > 0)
    # only the connections with a client retransmission can qualify, and only these columns are read:
    # the sort below then copies little (it copied every row and column of the segments table)
    with_rtx = segments.filter(client_rtx)["conn_id"].unique()
    if with_rtx.len() == 0:
        return set()
    s = (segments.select("conn_id", "ts_ns", "frame", "direction", "payload_len", "retransmission", "rto_frame")
         .filter(pl.col("conn_id").is_in(with_rtx.implode())).sort("conn_id", "ts_ns", "frame"))
    # (sorted by connection: the previous row is the connection's previous packet when it has the
    # same conn_id, i.e. shift(1).over("conn_id") without a window per connection)
    s = s.with_columns(_gap=pl.col("ts_ns") - pl.when(pl.col("conn_id") == pl.col("conn_id").shift(1))
                       .then(pl.col("ts_ns").shift(1)))
    first_rtx = (s.filter(client_rtx)
                 .group_by("conn_id").agg(pl.col("rto_frame").first(), pl.col("ts_ns").first().alias("rtx_ts")))
    if first_rtx.height == 0:
        return set()
    orig = s.select(pl.col("frame").alias("rto_frame"), pl.col("_gap").alias("orig_gap"),
                    pl.col("ts_ns").alias("orig_ts"))
    j = first_rtx.join(orig, on="rto_frame", how="inner").filter(pl.col("orig_gap") >= int(idle_s * 1e9))
    out: set[int] = set()
    for cid, orig_ts in j.select("conn_id", "orig_ts").iter_rows():
        answered = s.filter((pl.col("conn_id") == cid) & (pl.col("direction") == 1) & (pl.col("ts_ns") > orig_ts)
                            & (pl.col("payload_len") > 0)).height
        if not answered:
            out.add(int(cid))
    return out


def _label(inp: LabelInput, cc: pl.DataFrame) -> pl.DataFrame:
    idle = _dropped(inp.segments, inp.thr.idle_before_reuse_s) if inp.segments is not None else set()
    return cc.with_columns(loss_cause=pl.when(pl.col("conn_id").is_in(list(idle))).then(pl.lit(CAUSE.id))
                           .otherwise(pl.col("loss_cause")))


def _find(ctx: FindingContext) -> None:
    ctx.simple(CAUSE, lambda s, w, r: "critical",
               lambda s, n, w, r: f"A connection left idle was silently cut by a firewall; {n} logon(s) lost "
               f"{secs_text(s)} before reconnecting.",
               lambda s, n, w, r: f"Data sent after >= {secs_text(ctx.thr.idle_before_reuse_s)} of silence was resent and "
               "never answered, then the client gave up and reconnected: a firewall/NAT idle timeout shorter than "
               "the ORB's keep-alive.",
               lambda r: ACTION.format(targets=targets_of(ctx.connections, r["conn_id"].unique().to_list())))


def _find_connections(ctx: ConnectionContext) -> None:
    hit = ctx.hit(CAUSE.id)
    if hit is None:
        return
    secs, worst, conns, r = hit
    to = ctx.to_text(conns)
    ctx.add(CAUSE, "critical", secs,
            f"A connection left idle was silently cut by a firewall: {secs_text(secs)} on {len(conns)} "
            f"connection(s) to {to}, {ctx.where}.",
            f"Data sent after >= {secs_text(ctx.thr.idle_before_reuse_s)} of silence was resent and never answered.",
            frames_of(r), conns, action=ACTION.format(targets=to))


CAUSE = Cause("idle_connection_dropped", "loss_recovery_s", ACTION, label_connections=_label, find=_find,
              find_connections=_find_connections)
