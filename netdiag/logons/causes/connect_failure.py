"""connect_failure: a SYN never answered, or answered with RST (Zeek states S0, REJ ...).

docs/domain.md section 3.2 ("Stale/dead IOR target") and section 5 (first row). Seconds: first SYN to
the attempt's last packet (budget connect_s). Overrides syn_retransmission for the same connect.
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
from netdiag.logons.chains import FAILED_CONNECT_STATES

# docs/domain.md section 3.2 (stale/dead IOR target: old member, wrong NIC, NAT address; RST = port
# closed) and section 5 (evidence: which reply delivered that IOR).
ACTION = ("Check whether {targets} should answer at all: if the address came from an IOR (a naming or forward "
          "reply), correct the member's host name/port in WebSphere (serverindex.xml, ORB listener host) or the "
          "NAT; if it should answer, check that the server process listens and that no firewall drops or resets "
          "connects to that port.")


def _label(inp: LabelInput, cc: pl.DataFrame) -> pl.DataFrame:
    failed = (pl.col("state").is_in(list(FAILED_CONNECT_STATES)) | (
        pl.col("syn_ts_ns").is_not_null() & pl.col("synack_ts_ns").is_null())) & (pl.col("bytes_s2c").fill_null(0) == 0)
    return cc.with_columns(connect_cause=pl.when(failed).then(pl.lit(CAUSE.id)).otherwise("connect_cause"))


def _find(ctx: FindingContext) -> None:
    ctx.simple(CAUSE, lambda s, w, r: "critical" if w >= ctx.thr.slow_logon_s else "warning",
               lambda s, n, w, r: f"{n} logon(s) lost {secs_text(s)} trying to reach a server address that did "
               "not answer or refused the connection.",
               lambda s, n, w, r: f"{r['conn_id'].n_unique()} connection attempt(s) got no SYN/ACK or a reset "
               f"({targets_of(ctx.connections, r['conn_id'].unique().to_list())}); dead or stale target, e.g. an "
               "address taken from a forwarded IOR.",
               lambda r: ACTION.format(targets=targets_of(ctx.connections, r["conn_id"].unique().to_list())))


def _find_connections(ctx: ConnectionContext) -> None:
    hit = ctx.hit(CAUSE.id)
    if hit is None:
        return
    secs, worst, conns, r = hit
    to = ctx.to_text(conns)
    ctx.add(CAUSE, "critical" if worst >= ctx.thr.slow_logon_s else "warning", secs,
            f"{len(conns)} connection attempt(s) to {to} got no answer or were refused; {secs_text(secs)} spent "
            f"trying, {ctx.where}.",
            "SYN without SYN/ACK, or answered by RST; seconds from the first SYN to the attempt's last packet.",
            frames_of(r), conns, action=ACTION.format(targets=to))


CAUSE = Cause("connect_failure", "connect_s", ACTION, label_connections=_label, find=_find,
              find_connections=_find_connections)
