"""server_think: the server's own time, one finding with a per-operation table (docs/domain.md section 5).

Seconds: what the budget sweep gave `server_s` intervals of plain request/reply turns (last
request byte to first reply byte, less the capture-to-server round trip; the one definition is
transactions.server_rtt_s, the round trip transactions.server_think_s takes off). One row for the
whole capture, so twenty cheap operations do not make twenty findings; `operations` holds the
table: operation, calls, total seconds, p95 of one call's server time, share of logon time. Evidence: the calls of the operations that made it
a warning (a call reaching the threshold), else of the operation with the most seconds.
A warning when an operation's longest call reaches `thresholds.server_think_s`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from netdiag.logons.causes.base import Cause, FindingContext, frames_of, secs_text
from netdiag.words import fmt_pct

# docs/domain.md section 3.1 ("ORB thread pool (server): exhaustion queues requests; server think time
# rises"), section 3.2 (server-side registry slowness shows as server time on the authentication
# request) and section 5 ("Server think time ... operation names, percent of logon that is
# server-side").
ACTION = ("Ask the WebSphere team, for the slowest operation(s) named here: ORB and WebContainer thread-pool "
          "usage at those times (PMI ThreadPool ActiveCount/PoolSize, or thread dumps), an ORB/EJB trace of the "
          "call, and for authentication the registry (LDAP/AD) response times.")
TOP_OPERATIONS = 10      # rows of the per-operation table kept in the finding


def _find(ctx: FindingContext) -> None:
    srv = ctx.won(CAUSE.id).filter(pl.col("txn_row") >= 0)
    if srv.height == 0:
        return
    srv = srv.join(ctx.tx.select("txn_row", "protocol", "operation"), on="txn_row", how="left")
    # integer nanoseconds until the end: sums that do not depend on the order polars adds them in
    per_call = srv.group_by("txn_row", "protocol", "operation").agg(ns=pl.col("won_ns").sum())
    total = max(ctx.total_logon_s, 1e-12)
    per_op = (per_call.group_by("protocol", "operation")
              .agg(count=pl.len(), total_s=pl.col("ns").sum() / 1e9,
                   p95_s=pl.col("ns").sort().quantile(0.95, "linear") / 1e9, max_s=pl.col("ns").max() / 1e9)
              .with_columns(share=pl.col("total_s") / total)
              .sort("total_s", "operation", descending=[True, False], nulls_last=True))
    secs = float(ctx.per_logon(CAUSE.id).sum())
    lidx = srv["logon_idx"].unique().to_list()
    n = max(len(lidx), 1)
    worst_call = float(per_op["max_s"].max())
    sev = "warning" if worst_call >= ctx.thr.server_think_s else "info"
    top = per_op.row(0, named=True)
    slow = per_op.filter(pl.col("max_s") >= ctx.thr.server_think_s)
    named = slow if slow.height else per_op.head(1)
    ops_text = ", ".join(f"'{o}'" for o in named["operation"].to_list()[:3])
    # the table: operations with at least 1 ms in all, most seconds first
    shown = per_op.filter(pl.col("total_s") >= 0.001).head(TOP_OPERATIONS)
    table = [{"protocol": r["protocol"], "operation": r["operation"], "count": int(r["count"]),
              "total_s": float(r["total_s"]), "p95_s": float(r["p95_s"]), "share": float(r["share"])}
             for r in shown.iter_rows(named=True)]
    rest = per_op.height - shown.height
    in_named = pl.struct("protocol", "operation").is_in(named.select("protocol", "operation").to_struct().implode())
    ctx.add(CAUSE, sev, secs, lidx,
            f"The server took {secs_text(secs / n)} per logon to answer ({fmt_pct(secs / total)} of logon time); "
            f"most of it in '{top['operation']}' ({secs_text(float(top['total_s']) / n)} per logon, longest call "
            f"{secs_text(float(top['max_s']))}).",
            f"Server's own time (last request byte to first reply byte, less the capture-to-server round trip) over "
            f"{int(per_op['count'].sum())} call(s) of {per_op.height} operation(s), {secs_text(secs)} in all; per operation "
            "(calls, total, p95 of one call, share of logon time): "
            + "; ".join(f"{r['operation']} x{r['count']}, {secs_text(r['total_s'])}, p95 {secs_text(r['p95_s'])}, "
                        f"{fmt_pct(r['share'])}" for r in table)
            + (f"; {rest} more operation(s) with less in all" if rest else "") + ".",
            # evidence: the calls of the operations named (those that made it a warning, else the top one)
            frames_of(srv, in_named),
            srv["conn_id"].to_list(),
            action=ACTION.replace("the slowest operation(s) named here", f"{ops_text} on "
                                  + _servers(ctx, srv.filter(in_named))),
            operations=table)


def _servers(ctx: FindingContext, srv: pl.DataFrame) -> str:
    ids = np.unique(srv["conn_id"].drop_nulls().to_numpy()).tolist()
    t = ctx.connections.filter(pl.col("conn_id").is_in(ids))
    names = sorted({f"{a}:{p}" for a, p in t.select("server_ip", "server_port").iter_rows()})
    return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")


CAUSE = Cause("server_think", "server_s", ACTION, find=_find)
