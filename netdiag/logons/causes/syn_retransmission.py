"""syn_retransmission: a connection whose SYN was sent more than once and then answered.

docs/domain.md section 3.2 (stale target, listen backlog) and section 4 (Windows SYN retransmission:
derive the RTO from the first SYN gap). Seconds: first SYN to SYN/ACK (budget connect_s).
Critical when one logon lost `thresholds.slow_logon_s` or more to it.
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
from netdiag.logons.causes.base import syn_rto as _syn_rto

# docs/domain.md section 3.2 ("Listen-backlog overflow ... the SYN to a port that is normally alive is
# retried") and section 5 (listen backlog row: "request server netstat -s listen overflows").
ACTION = ("Find out who dropped the first SYN to {targets}: on the server, `netstat -s` listen-queue overflows "
          "and SYNs dropped (WebSphere ORB ServerSocketQueueDepth, default 50); on the path, a firewall or IPS "
          "rule or rate limit for that port (its drop log at the frames' times).")


def _label(inp: LabelInput, cc: pl.DataFrame) -> pl.DataFrame:
    retried = pl.col("syn_retransmissions").fill_null(0) > 0
    return cc.with_columns(connect_cause=pl.when(retried).then(pl.lit(CAUSE.id)).otherwise("connect_cause"))


def _find(ctx: FindingContext) -> None:
    def detail(secs: float, n: int, worst: float, r: pl.DataFrame) -> str:
        rto = _syn_rto(ctx.segments, r["conn_id"].unique().to_list())
        rto_txt = f"; the client's first SYN retransmission came {secs_text(rto)} after its first SYN (its RTO)" if rto else ""
        return (f"{r['conn_id'].n_unique()} connection(s) needed SYN retransmissions before the server answered; "
                f"{secs_text(secs)} of connect time in {n} logon(s){rto_txt}.")

    ctx.simple(CAUSE, lambda s, w, r: "critical" if w >= ctx.thr.slow_logon_s else "warning",
               lambda s, n, w, r: f"{n} logon(s) waited {secs_text(s)} in total because the first connection "
               "attempt went unanswered and the PC had to try again.",
               detail,
               lambda r: ACTION.format(targets=targets_of(ctx.connections, r["conn_id"].unique().to_list())))


def _find_connections(ctx: ConnectionContext) -> None:
    hit = ctx.hit(CAUSE.id)
    if hit is None:
        return
    secs, worst, conns, r = hit
    rto = _syn_rto(ctx.segments, conns)
    to = ctx.to_text(conns)
    ctx.add(CAUSE, "critical" if worst >= ctx.thr.slow_logon_s else "warning", secs,
            f"{len(conns)} connection(s) to {to} waited {secs_text(secs)} in total because the first connection "
            f"attempt went unanswered and the client had to try again; {ctx.where}.",
            "SYN retransmissions before the server answered; seconds from the first SYN to the SYN/ACK"
            + (f"; the client's first SYN retransmission came {secs_text(rto)} after its first SYN" if rto else "")
            + ".", frames_of(r), conns, action=ACTION.format(targets=to))


CAUSE = Cause("syn_retransmission", "connect_s", ACTION, label_connections=_label, find=_find,
              find_connections=_find_connections)
