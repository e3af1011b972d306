"""request_timeout_retry: a request unanswered, answered only after `thresholds.request_timeout_s`,
or asked again before its answer came, followed by the same operation again in the same logon.

docs/domain.md section 3.2 ("Request/Locate timeouts": ~180 s WAS default, then a retry) and
section 3.1 (RequestTimeout, requestRetriesCount). The time counts until the client gave up
(its retry), not until a late answer.
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes.base import (
    Cause,
    FindingContext,
    LabelInput,
    ops_of,
    secs_text,
    targets_of,
)
from netdiag.protocols.registry import request_protocols

# docs/domain.md section 3.2 ("The server side needs thread dumps (hung ORB threads)"), section 3.1
# (com.ibm.CORBA.RequestTimeout 180 s, requestRetriesCount) and section 5 (timeout row).
ACTION = ("Ask the WebSphere team for thread dumps (hung ORB threads) of {targets} at the frames' times, for "
          "{ops}; and check the client's com.ibm.CORBA.RequestTimeout / requestRetriesCount (WAS default 180 s, "
          "1 retry), which decide how long a logon waits before it asks again.")


def _label(inp: LabelInput) -> pl.Expr:
    return (pl.col("protocol").is_in(list(request_protocols())) & pl.col("_repeated")
            & (pl.col("rsp_first_ts_ns").is_null() | (inp.wait_s >= inp.thr.request_timeout_s)
               | pl.col("_retried_early")))


def _find(ctx: FindingContext) -> None:
    def action(r: pl.DataFrame) -> str:
        return ACTION.format(targets=targets_of(ctx.connections, r["conn_id"].unique().to_list()),
                             ops=ops_of(ctx.tx, r["txn_row"].unique().to_list()))

    ctx.simple(CAUSE, lambda s, w, r: "critical" if w >= 30 else "warning",
               lambda s, n, w, r: f"{n} logon(s) waited {secs_text(s)} for a server answer that never came, then "
               "asked again.",
               lambda s, n, w, r: f"Requests unanswered (or answered after {secs_text(ctx.thr.request_timeout_s)}) and then "
               f"repeated: {ops_of(ctx.tx, r['txn_row'].unique().to_list())}. Ask for server thread dumps at those "
               "times.", action)


CAUSE = Cause("request_timeout_retry", "server_s", ACTION, label_transaction=_label, find=_find)
