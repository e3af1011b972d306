"""client_think: the client's own time between an answer and its next request (docs/domain.md section 5).

Measured per logon by the budget sweep (answer delivered to the client until the client's next
action, the capture-to-client half round trip removed). One finding row per client software
version (the HTTP User-Agent's Java/x.y, where the logon fetched JNLP/jars), because the region
wants logon time per JRE version (docs/domain.md section 6). A warning when the mean per logon
reaches `thresholds.client_think_s`.
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes.base import Cause, FindingContext, frames_of, secs_text

# docs/domain.md section 5, "Client think time (old JRE, class loading, GC, UI)": evidence is the gap
# totals per client JRE version; it shows "not network".
ACTION = ("Look at the PCs, not the network: the client JRE version, CPU load and GC pauses during logon "
          "(a verbose GC log of the client JVM), antivirus scanning of the Java cache; compare logon time per "
          "JRE version before and after a change.")


def _find(ctx: FindingContext) -> None:
    cli = ctx.won(CAUSE.id)
    if cli.height == 0:
        return
    won_s = pl.col("won_ns").sum() / 1e9
    ua = (ctx.in_logons().filter(pl.col("user_agent").is_not_null()).group_by("logon_idx")
          .agg(pl.col("user_agent").first()))
    cl = (cli.group_by("logon_idx").agg(secs=won_s, conns=pl.col("conn_id").unique())
          .join(ua, on="logon_idx", how="left")
          .with_columns(pl.coalesce(pl.col("user_agent").str.extract(r"(Java/[0-9][0-9._]*)"), "user_agent")
                        .alias("user_agent"))
          .sort("logon_idx"))    # float sums below in one order, whatever order group_by gave
    for (agent,), g in cl.group_by("user_agent", maintain_order=True):
        mean = float(g["secs"].mean())
        sev = "warning" if mean >= ctx.thr.client_think_s else "info"
        sel = cli.filter(pl.col("logon_idx").is_in(g["logon_idx"].to_list()))
        who = f"PCs running '{agent}'" if agent else "The PCs (client software not seen)"
        action = ACTION if not agent else ACTION.replace("the client JRE version", f"the client JRE ({agent})")
        ctx.add(CAUSE, sev, float(g["secs"].sum()), g["logon_idx"].to_list(),
                f"{who} spent {secs_text(mean)} per logon on their own work between server answers.",
                "Client's own time (answer delivered to next request, less the capture-to-client round trip), "
                f"{g.height} logon(s), client software '{agent or 'not seen'}' (HTTP User-Agent where seen).",
                frames_of(sel), [c for cs in g["conns"].to_list() for c in cs], action=action)


CAUSE = Cause("client_think", "client_s", ACTION, find=_find)
