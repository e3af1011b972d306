"""location_forward: LOCATION_FORWARD replies / OBJECT_FORWARD locate replies.

docs/domain.md section 3.2 ("Location-forward chains / WLM re-routing") and section 1.2 step 9.
Seconds: the detour from the forward reply to the first answer from the forwarded host:port.
A warning when the forwarded host:port then fails to connect or a logon is forwarded more than
twice.
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes.base import Cause, FindingContext, LabelInput, secs_text
from netdiag.logons.causes.system_exception import _with_logon_end
from netdiag.logons.chains import FAILED_CONNECT_STATES, FORWARD_STATUSES

# docs/domain.md section 1.2 steps 3 and 9 (bootstrap -> LSD -> member; "do not bootstrap to the
# dmgr"), section 3.2 (forwards to hosts that then fail) and section 5 (forward chain row).
ACTION = ("Check the forward chain (bootstrap -> node agent LSD -> cluster member) in the WebSphere configuration: "
          "bootstrap the clients to the cluster members, not the node agent or dmgr, so fewer forwards are needed"
          "{failed}.")


def _label(inp: LabelInput) -> pl.Expr:
    return pl.col("status").is_in(list(FORWARD_STATUSES))


def _failures(tx: pl.DataFrame, connections: pl.DataFrame) -> str:
    fw = tx.filter(pl.col("status").is_in(list(FORWARD_STATUSES)) & pl.col("forward_host").is_not_null())
    if fw.height == 0:
        return ""
    failed = connections.filter(pl.col("state").is_in(list(FAILED_CONNECT_STATES)))
    targets = {(h, int(p)) for h, p in fw.select("forward_host", "forward_port").iter_rows() if p is not None}
    bad = sorted({f"{a}:{p}" for a, p in failed.select("server_ip", "server_port").iter_rows() if (a, int(p)) in targets})
    return ", ".join(bad)


def _find(ctx: FindingContext) -> None:
    tm = _with_logon_end(ctx)
    fw = tm.filter(pl.col("status").is_in(list(FORWARD_STATUSES)))
    if fw.height == 0:
        return
    answers = tm.filter(pl.col("rsp_first_ts_ns").is_not_null()).select(
        "logon_idx", pl.col("_sip").alias("forward_host"), pl.col("_sp").cast(pl.UInt16).alias("forward_port"),
        pl.col("rsp_first_ts_ns").alias("_ans_ts"), pl.col("_cf").alias("_new_conn_frame"))
    j = (fw.with_columns(pl.col("forward_port").cast(pl.UInt16))
         .join(answers, on=["logon_idx", "forward_host", "forward_port"], how="left")
         .filter(pl.col("_ans_ts").is_null() | (pl.col("_ans_ts") > pl.col("rsp_last_ts_ns")))
         .group_by("txn_row").agg(pl.all().sort_by("_ans_ts").first())
         .sort("txn_row"))     # group_by's order differs from run to run
    # integer nanoseconds summed, divided once: the seconds do not depend on the order of the rows
    j = j.with_columns(_detour_ns=(pl.col("_ans_ts").fill_null(pl.col("end_ts_ns")) - pl.col("rsp_last_ts_ns"))
                       .clip(lower_bound=0))
    failed = _failures(ctx.tx, ctx.connections)
    per_logon = j.group_by("logon_idx").len()
    many = int(per_logon["len"].max()) > 2 if per_logon.height else False
    targets = ", ".join(sorted({f"{h}:{p}" for h, p in j.select("forward_host", "forward_port").iter_rows()
                                if h is not None}))
    secs = int(j["_detour_ns"].sum()) / 1e9
    ops = ", ".join(sorted(set(j["operation"].drop_nulls().to_list())))
    ctx.add(CAUSE, "warning" if failed or many else "info", secs, j["logon_idx"].to_list(),
            f"The server redirected {j['logon_idx'].n_unique()} logon(s) to another address"
            + (" that then failed" if failed else "") + f"; the detour took {secs_text(secs)}.",
            f"{j.height} LOCATION_FORWARD / OBJECT_FORWARD replies ({ops}) forwarding to {targets or 'n/a'}"
            + (f"; failed connects to forward targets: {failed}" if failed else "")
            + ". Seconds: from the forward reply to the first answer from the forwarded address.",
            [f for pair in j.select("last_frame", "_new_conn_frame").iter_rows() for f in pair if f is not None],
            j["conn_id"].to_list(),
            action=ACTION.format(failed=(f"; the forward target {failed} did not answer: correct that member's host "
                                         "name/port (serverindex.xml) or the NAT in front of it") if failed else ""))


CAUSE = Cause("location_forward", "server_s", ACTION, label_transaction=_label, find=_find)
