"""jar_download: HTTP 200 for a jar the same client had already fetched earlier in the capture.

docs/domain.md section 1.2 step 1 and section 3.2 ("JWS / jar / revocation checks"): Java Web Start
re-fetches the .jnlp every time by design; a jar it already has should come back 304 (or not be
asked for). The first download of a jar and the .jnlp are not findings.
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes.base import Cause, FindingContext, LabelInput, ops_of, secs_text

JAR_RE = r"(?i)\.(jar|jnlp|pack\.gz)(\?|$|\s)"

# docs/domain.md section 1.2 step 1 (update check, 304 expected) and section 5 (JWS row: "ask for
# versioned jars and a revocation policy").
ACTION = ("Make the jars cacheable: versioned jars (the JNLP version-download protocol) or correct Last-Modified/"
          "ETag answers so Java Web Start gets 304; check that the PCs' Java cache is large enough and not "
          "cleared at logoff.")


def _refetched(tx: pl.DataFrame) -> list[int]:
    http = tx.unique("txn_row", keep="first").filter((pl.col("protocol") == "http") & pl.col("operation").str.contains(JAR_RE).fill_null(False)
                     & ~pl.col("operation").str.contains(r"(?i)\.jnlp(\?|$|\s)").fill_null(False))
    if http.height == 0:
        return []
    http = http.with_columns(url=pl.col("operation").str.replace(r"^\S+\s+", "")).sort("req_first_ts_ns")
    http = http.with_columns(_seen_before=pl.col("req_first_ts_ns").cum_count().over("client_ip", "url") > 1)
    return http.filter((pl.col("status") == "200") & pl.col("_seen_before"))["txn_row"].to_list()


def _label(inp: LabelInput) -> pl.Expr:
    return pl.col("txn_row").is_in(_refetched(inp.tx))


def _find(ctx: FindingContext) -> None:
    ctx.simple(CAUSE, lambda s, w, r: "warning" if w >= ctx.thr.jar_download_s else "info",
               lambda s, n, w, r: f"Program files were downloaded again instead of being reused from the cache: "
               f"{secs_text(s)} in {n} logon(s).",
               lambda s, n, w, r: "HTTP 200 (full download) of a jar the same client had already fetched earlier in "
               f"the capture, where a 304 (not modified) was expected: {ops_of(ctx.tx, r['txn_row'].unique().to_list())}.")


CAUSE = Cause("jar_download", "response_transfer_s", ACTION, label_transaction=_label, find=_find)
