"""tls_handshake: slow or failed TLS handshakes, and full handshakes repeated without resumption.

Detection (docs/domain.md section 3.2 "TLS handshake cost"): a handshake longer than
`thresholds.tls_handshake_s` or ending in an alert (budget tls_s); and, a separate row, full
handshakes repeated to one server port within a logon (ServerHello did not resume).
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes.base import Cause, FindingContext, LabelInput, secs_text, targets_of

# docs/domain.md section 3.2 (TLS: ClientHello->ServerHello is server/network time, Certificate->
# ClientKeyExchange client CPU; full handshake on every connection; alerts then a retry with a
# lower version) and section 5 (TLS row: "ask for session reuse").
ACTION = ("For {targets}: turn on TLS session reuse (session IDs or tickets) in the client JRE and the WebSphere "
          "SSL configuration; for slow handshakes, see in the evidence whether ClientHello->ServerHello (server) or "
          "Certificate->ClientKeyExchange (client CPU, old JRE crypto) is long; for alerts, compare the protocol "
          "versions and ciphers the client JRE and the server allow.")


def _label(inp: LabelInput) -> pl.Expr:
    return (pl.col("protocol") == "tls") & ((inp.duration_s > inp.thr.tls_handshake_s)
                                            | pl.col("status").str.contains("(?i)alert").fill_null(False))


def _find(ctx: FindingContext) -> None:
    def action(r: pl.DataFrame) -> str:
        return ACTION.format(targets=targets_of(ctx.connections, r["conn_id"].unique().to_list()))

    ctx.simple(CAUSE, lambda s, w, r: "warning",
               lambda s, n, w, r: f"Setting up encrypted connections took {secs_text(s)} in {n} logon(s).",
               lambda s, n, w, r: f"TLS handshakes longer than {secs_text(ctx.thr.tls_handshake_s)} or ending in an alert "
               f"({r.height} handshake interval(s)).", action)
    _repeated(ctx)


def _repeated(ctx: FindingContext) -> None:
    """Full TLS handshakes repeated to the same server port within one logon (no session reuse)."""
    tls = (ctx.in_logons()
           .filter((pl.col("protocol") == "tls") & ~pl.col("detail").str.contains('"resumed":true').fill_null(False))
           .sort("req_first_ts_ns")
           .with_columns(_nth=pl.int_range(pl.len()).over("logon_idx", "server_ip", "server_port")))
    extra = tls.filter(pl.col("_nth") >= 1)
    if extra.height == 0:
        return
    secs = float(((extra["rsp_last_ts_ns"].fill_null(extra["req_last_ts_ns"]) - extra["req_first_ts_ns"]) / 1e9).sum())
    worst = int(tls.group_by("logon_idx", "server_ip", "server_port").len()["len"].max())
    ctx.add(CAUSE, "warning" if worst >= 3 else "info", secs, extra["logon_idx"].to_list(),
            f"Encrypted connections were set up from scratch again and again ({worst} full handshakes to one "
            f"server in a logon), costing {secs_text(secs)}.",
            f"{extra.height} full TLS handshake(s) repeated to the same server port within a logon without session "
            "resumption (ServerHello did not resume): ask for TLS session reuse on the client and server.",
            extra["first_frame"].to_list(), extra["conn_id"].to_list(),
            action=ACTION.format(targets=targets_of(ctx.connections, extra["conn_id"].unique().to_list())))


CAUSE = Cause("tls_handshake", "tls_s", ACTION, label_transaction=_label, find=_find)
