"""loss_recovery: retransmission waits (RTO and fast recovery) inside logons (budget loss_recovery_s).

docs/domain.md section 3.2 ("Loss / RTO") and section 6 (one capture point; "not captured" vs real
loss). Seconds: from the first copy of the bytes (or its estimated original, when it was lost
before the capture point) to the resend. A warning when one logon lost
`thresholds.loss_recovery_s`.
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes import _tcp_side
from netdiag.logons.causes.base import Cause, ConnectionContext, FindingContext, frames_of, secs_text

# docs/domain.md section 3.2 (tcp.analysis.retransmission with backoff gaps), section 5 (loss row:
# "time lost to RTO per logon, per switch segment; retrans rate by path") and section 6 (a SPAN
# sees one point in the path).
ACTION = ("Check interface error and discard counters (CRC/FCS errors, input/output drops, queue drops) on the "
          "switch ports and links {where}, and the NIC/driver counters of that host; compare with "
          "`netstat -s` retransmission counters to confirm the loss.")


def _where(segments: pl.DataFrame | None, connections: pl.DataFrame, r: pl.DataFrame) -> str:
    """Where in the path the lost copies were, relative to the capture point."""
    resends = r["frame_b"].drop_nulls().cast(pl.Int64).to_list()
    if segments is None or segments.height == 0 or not resends:
        return "between the client and the server"
    s = segments.filter(pl.col("frame").is_in(resends))
    seen = s["bytes_seen_before"].fill_null(False) if "bytes_seen_before" in s.columns else pl.Series([False] * s.height)
    parts = []
    for d, was_seen in zip(s["direction"].to_list(), seen.to_list(), strict=True):
        sender, receiver = ("client", "server") if d == 0 else ("server", "client")
        # a first copy the capture saw was lost after the capture point, on its way to the receiver
        parts.append(f"between the capture point and the {receiver}" if was_seen
                     else f"between the {sender} and the capture point")
    ends = _tcp_side.sides(segments, connections, resends)
    counts = {p: parts.count(p) for p in parts}
    main = max(counts, key=counts.get) if counts else "between the client and the server"
    hosts = sorted(ends["client"]) + sorted(ends["server"])
    return main + (f" (resends by {', '.join(hosts[:3])})" if hosts else "")


def _find(ctx: FindingContext) -> None:
    ctx.simple(CAUSE, lambda s, w, r: "warning" if w >= ctx.thr.loss_recovery_s else "info",
               lambda s, n, w, r: f"Lost network packets had to be sent again: {secs_text(s)} in {n} logon(s).",
               lambda s, n, w, r: f"{r.height} retransmission wait(s) (from the original send to the resend, "
               f"tcp.analysis.retransmission) on {r['conn_id'].n_unique()} connection(s).",
               lambda r: ACTION.format(where=_where(ctx.segments, ctx.connections, r)))


def _find_connections(ctx: ConnectionContext) -> None:
    hit = ctx.hit(CAUSE.id)
    if hit is None:
        return
    secs, worst, conns, r = hit
    ctx.add(CAUSE, "warning" if worst >= ctx.thr.loss_recovery_s else "info", secs,
            f"Lost packets had to be sent again: {secs_text(secs)} on {len(conns)} connection(s) to "
            f"{ctx.to_text(conns)}, {ctx.where}.",
            f"{r.height} retransmission wait(s) (from the original send to the resend, "
            "tcp.analysis.retransmission).", frames_of(r), conns,
            action=ACTION.format(where=_where(ctx.segments, ctx.connections, r)))


CAUSE = Cause("loss_recovery", "loss_recovery_s", ACTION, find=_find, find_connections=_find_connections)
