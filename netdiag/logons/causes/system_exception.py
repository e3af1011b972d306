"""system_exception: GIOP SYSTEM_EXCEPTION replies (TRANSIENT, COMM_FAILURE, NO_PERMISSION ...).

docs/domain.md section 3.2 ("System exceptions and retries") and section 2.4 (the reply body).
The reply takes no time itself; what it costs is the detour: from the exception reply to the
answer of the same operation asked again (or the logon's end). Those seconds overlap budget
categories, so they are reported as the detour's length.
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes.base import Cause, FindingContext, LabelInput, secs_text

# docs/domain.md section 3.2 (TRANSIENT / COMM_FAILURE / NO_RESPONSE / OBJECT_NOT_EXIST / NO_PERMISSION
# "(a security ContextError)"; minor codes identify the vendor) and section 5 (exception row:
# "exception ids, minor codes, completion_status, ops").
ACTION = ("Send the vendor the exception ids with their minor codes and the frames ({ids}): TRANSIENT or "
          "COMM_FAILURE point at the ORB connection or WLM routing, NO_PERMISSION at the CSIv2 security context "
          "(ContextError), OBJECT_NOT_EXIST at a stale reference; ask for the server's SystemOut/FFDC log at those "
          "times.")


def _label(inp: LabelInput) -> pl.Expr:
    return pl.col("status") == "SYSTEM_EXCEPTION"


def _find(ctx: FindingContext) -> None:
    tm = _with_logon_end(ctx)
    exc = tm.filter(pl.col("status") == "SYSTEM_EXCEPTION")
    if exc.height == 0:
        return
    ok = tm.filter(pl.col("status") == "NO_EXCEPTION").select(
        "logon_idx", "operation", pl.col("rsp_last_ts_ns").alias("_ok_ts"), pl.col("last_frame").alias("_ok_f"))
    j = (exc.join(ok, on=["logon_idx", "operation"], how="left")
         .filter(pl.col("_ok_ts").is_null() | (pl.col("_ok_ts") > pl.col("rsp_last_ts_ns")))
         .group_by("txn_row").agg(pl.all().sort_by("_ok_ts").first())
         .sort("txn_row"))     # group_by's order differs from run to run
    # integer nanoseconds summed, divided once: the seconds do not depend on the order of the rows
    j = j.with_columns(_detour_ns=(pl.col("_ok_ts").fill_null(pl.col("end_ts_ns")) - pl.col("rsp_last_ts_ns"))
                       .clip(lower_bound=0))
    ids = ", ".join(f"{op}: {ex or 'unknown'}" for op, ex in
                    j.select("operation", "exception_id").unique().sort("operation").iter_rows())
    retried = int(j["_ok_ts"].is_not_null().sum())
    secs = int(j["_detour_ns"].sum()) / 1e9
    ctx.add(CAUSE, "warning", secs, j["logon_idx"].to_list(),
            f"The server answered with an error in {j['logon_idx'].n_unique()} logon(s); getting past it took "
            f"{secs_text(secs)}.",
            f"{j.height} GIOP SYSTEM_EXCEPTION replies ({ids}); {retried} followed by a successful retry of the same "
            "operation. Seconds: from the exception reply to the successful answer (or the logon's end).",
            [f for pair in j.select("last_frame", "_ok_f").iter_rows() for f in pair if f is not None],
            j["conn_id"].to_list(), action=ACTION.format(ids=ids))


def _with_logon_end(ctx: FindingContext) -> pl.DataFrame:
    """Transactions of the logons with their server address, connection's first frame and logon end."""
    return (ctx.in_logons()
            .join(ctx.connections.select("conn_id", pl.col("server_ip").alias("_sip"),
                                         pl.col("server_port").alias("_sp"), pl.col("first_frame").alias("_cf")),
                  on="conn_id", how="left")
            .join(ctx.logons.select("logon_idx", "end_ts_ns"), on="logon_idx", how="left"))


CAUSE = Cause("system_exception", "server_s", ACTION, label_transaction=_label, find=_find)
