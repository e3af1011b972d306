"""dns_delay: a DNS question answered later than `thresholds.dns_s` (resolver retries included), or never.

docs/domain.md section 3.2 ("DNS / reverse DNS") and section 4 (Windows DNS client: retries at 1, 2,
4, 8 s, give-up at 10 s). Not "retries > 0": the transactions stage folds the same question from
several processes behind one address into one transaction; a real resolver retry shows as time.
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes.base import Cause, FindingContext, LabelInput, ops_of, secs_text

# docs/domain.md section 4 (DNS client timeouts; with several servers the preferred one first) and
# section 5 (DNS row: list of names, DNS servers, failures).
ACTION = ("Ask the DNS team why {servers} answered {names} late or not at all: the server's own latency and "
          "forwarders, missing records (AAAA, PTR); and check the PCs' resolver list and timeouts (the Windows "
          "client retries after 1, 2, 4 s and gives up at 10 s; Java caches a failure only 10 s).")


def _label(inp: LabelInput) -> pl.Expr:
    return (pl.col("protocol") == "dns") & ((inp.duration_s > inp.thr.dns_s) | pl.col("rsp_last_ts_ns").is_null())


def _action(ctx: FindingContext, r: pl.DataFrame) -> str:
    t = ctx.tx.filter(pl.col("txn_row").is_in(r["txn_row"].unique().to_list()))
    servers = ", ".join(sorted({str(s) for s in t["server_ip"].drop_nulls().to_list()})[:3]) or "the DNS server"
    names = ", ".join(sorted({str(n) for n in t["operation"].drop_nulls().to_list()})[:3]) or "the names"
    return ACTION.format(servers=servers, names=names)


def _find(ctx: FindingContext) -> None:
    ctx.simple(CAUSE, lambda s, w, r: "warning",
               lambda s, n, w, r: f"Looking up server names was slow or failed: {secs_text(s)} in {n} logon(s).",
               lambda s, n, w, r: f"DNS questions answered after more than {secs_text(ctx.thr.dns_s)}, unanswered or retried: "
               f"{ops_of(ctx.tx, r['txn_row'].unique().to_list())}.",
               lambda r: _action(ctx, r))


CAUSE = Cause("dns_delay", "dns_s", ACTION, label_transaction=_label, find=_find)
