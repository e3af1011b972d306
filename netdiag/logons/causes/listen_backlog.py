"""listen_backlog: the server did not accept new connections quickly enough at a busy moment.

Detection (docs/domain.md section 3.2 "Listen-backlog overflow at a login storm"): >= 3 connections
to one server port with SYN retries or resets within 10 s, at a moment with >= 10 connection
attempts to it, on a port that answers most attempts without retries. Overrides the
syn_retransmission / connect_failure labels of those connects.
"""

from __future__ import annotations

import numpy as np
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

WINDOW_NS = 10_000_000_000
MIN_PROBLEMS = 3
MIN_ATTEMPTS = 10

# docs/domain.md section 3.1 (com.ibm.CORBA.ServerSocketQueueDepth, default 50: "when full, new
# connects are refused") and section 5 (listen backlog row).
ACTION = ("Raise the listen backlog on {targets}: the WebSphere ORB's com.ibm.CORBA.ServerSocketQueueDepth "
          "(default 50) and the OS limit (Linux net.core.somaxconn and tcp_max_syn_backlog); ask the server team "
          "for `netstat -s` listen-queue overflow counters at shift start to confirm.")


def _backlog(cc: pl.DataFrame) -> set[int]:
    out: set[int] = set()
    for _key, g in cc.group_by("server_ip", "server_port"):
        g = g.with_columns(t=pl.coalesce("syn_ts_ns", "first_ts_ns")).sort("t")
        prob = g["connect_cause"].is_not_null().to_numpy()
        if prob.sum() < MIN_PROBLEMS or prob.mean() > 0.5:
            continue   # the port does not normally answer: that is a dead target, not a backlog
        t = g["t"].to_numpy()
        ids = g["conn_id"].to_numpy()
        for i in np.flatnonzero(prob):
            lo, hi = np.searchsorted(t, t[i] - WINDOW_NS), np.searchsorted(t, t[i] + WINDOW_NS, side="right")
            if prob[lo:hi].sum() >= MIN_PROBLEMS and hi - lo >= MIN_ATTEMPTS:
                out.add(int(ids[i]))
    return out


def _label(inp: LabelInput, cc: pl.DataFrame) -> pl.DataFrame:
    backlog = _backlog(cc)
    if not backlog:
        return cc
    return cc.with_columns(connect_cause=pl.when(pl.col("conn_id").is_in(list(backlog)))
                           .then(pl.lit(CAUSE.id)).otherwise(pl.col("connect_cause")))


def _find(ctx: FindingContext) -> None:
    ctx.simple(CAUSE, lambda s, w, r: "critical",
               lambda s, n, w, r: f"At busy moments the server did not accept new connections quickly enough; "
               f"{n} logon(s) lost {secs_text(s)}.",
               lambda s, n, w, r: "SYN retries or resets clustered within 10 s on a port that normally answers, "
               f"while many connections were being opened ({targets_of(ctx.connections, r['conn_id'].unique().to_list())}): "
               "the listen backlog (ServerSocketQueueDepth) was full.",
               lambda r: ACTION.format(targets=targets_of(ctx.connections, r["conn_id"].unique().to_list())))


def _find_connections(ctx: ConnectionContext) -> None:
    hit = ctx.hit(CAUSE.id)
    if hit is None:
        return
    secs, worst, conns, r = hit
    to = ctx.to_text(conns)
    ctx.add(CAUSE, "critical", secs,
            f"At busy moments the server did not accept new connections quickly enough: {secs_text(secs)} on "
            f"{len(conns)} connection(s) to {to}, {ctx.where}.",
            "SYN retries or resets clustered within 10 s on a port that normally answers, while many connections "
            "were being opened: the listen backlog was full.", frames_of(r), conns, action=ACTION.format(targets=to))


CAUSE = Cause("listen_backlog", "connect_s", ACTION, label_connections=_label, find=_find,
              find_connections=_find_connections)
