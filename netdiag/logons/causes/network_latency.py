"""network_latency: round trips paid per application turn (budget network_rtt_s; docs/domain.md section 6).

A row when round trips are at least 1 % of logon time; a warning above
`thresholds.network_share`. Evidence: the handshakes the round trips were measured on.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from netdiag.logons.causes.base import Cause, FindingContext, frames_of, secs_text
from netdiag.words import fmt_pct

# docs/domain.md section 6 (the RTT split depends on where the mirror sits) and section 5 (loss/RTO
# "shows network vs application"): fewer turns or a shorter path.
ACTION = ("Check the path between the PCs and the servers (WAN link, VPN, QoS, a far data centre) and how many "
          "request/reply turns a logon makes; compare the client-side and server-side round trips "
          "(connections.rtt_client_side_ms / rtt_server_side_ms) to see which half of the path is long.")


def _find(ctx: FindingContext) -> None:
    net = ctx.per_logon(CAUSE.id)
    share = float(net.sum()) / ctx.total_logon_s if ctx.total_logon_s > 0 else 0.0
    if share < 0.01:   # below 1 % of logon time round trips are not worth a row
        return
    sev = "warning" if share >= ctx.thr.network_share else "info"
    r = ctx.won(CAUSE.id)
    syn_frames = ctx.connections.filter(pl.col("conn_id").is_in(r["conn_id"].drop_nulls().unique().to_list())
                                        & pl.col("syn_ts_ns").is_not_null())["first_frame"].head(20).to_list()
    ctx.add(CAUSE, sev, float(net.sum()), [int(i) for i in np.flatnonzero(net > 0)],
            f"Network round trips took {fmt_pct(share)} of logon time ({secs_text(float(net.sum()))}).",
            "Round-trip propagation paid per application turn: the capture-to-server and capture-to-client "
            "round trips measured on each connection's handshake, once per request/reply turn.",
            syn_frames or frames_of(r)[:10], r["conn_id"].drop_nulls().unique().to_list())


CAUSE = Cause("network_latency", "network_rtt_s", ACTION, find=_find)
