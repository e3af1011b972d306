"""nagle_delayed_ack: small messages held back by Nagle until the receiver's delayed ACK.

Detection (netdiag/tcp/nagle.py, shared with connections.nagle_stalls; docs/domain.md section 3.2):
segment A, the receiver's bare ACK of it 30-500 ms later than its side's round trip explains,
then the sender's small segment B right after that ACK. Seconds: [A, B) (budget
nagle_delayed_ack_s). A warning when one logon lost `thresholds.nagle_s`.
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes import _tcp_side
from netdiag.logons.causes.base import Cause, ConnectionContext, FindingContext, frames_of, secs_text

# docs/domain.md section 3.2 ("Fix: TCP_NODELAY in the ORB (some ORBs expose it; IBM ORB option
# VERIFY) or tuning delayed ACK") and section 4 (Windows delayed ACK 200 ms).
ACTION = ("Set TCP_NODELAY on {sender}'s sockets (the side that held its small segments: ask the vendor for the "
          "ORB/HTTP socket option), or shorten the delayed ACK on {receiver} (Windows: DelayedAckTimeoutMs of its "
          "TCP template, TcpDelAckTicks on older systems; 200 ms by default).")


def _action(segments: pl.DataFrame | None, connections: pl.DataFrame, r: pl.DataFrame) -> str:
    held = r["frame_b"].drop_nulls().cast(pl.Int64).to_list()
    s = _tcp_side.sides(segments, connections, held)
    if s["server"] and not s["client"]:
        return ACTION.format(sender=_tcp_side.named("server", s["server"]), receiver="the client")
    if s["client"] and not s["server"]:
        return ACTION.format(sender=_tcp_side.named("client", s["client"]), receiver="the server")
    return ACTION.format(sender="both sides", receiver="the receiving side")


def _med_ms(r: pl.DataFrame) -> float:
    return 1000 * float((r["t1"] - r["t0"]).median()) / 1e9


def _find(ctx: FindingContext) -> None:
    ctx.simple(CAUSE, lambda s, w, r: "warning" if w >= ctx.thr.nagle_s else "info",
               lambda s, n, w, r: f"Small messages were held back by a TCP setting (Nagle with delayed ACK): "
               f"{secs_text(s)} in {n} logon(s).",
               lambda s, n, w, r: f"{r.height} stall(s): a data segment, the receiver's bare ACK "
               f"{secs_text(_med_ms(r) / 1000)} later (median), then the sender's held segment right after that ACK. Ask the "
               "vendor for TCP_NODELAY on the ORB/HTTP sockets.",
               lambda r: _action(ctx.segments, ctx.connections, r))


def _find_connections(ctx: ConnectionContext) -> None:
    hit = ctx.hit(CAUSE.id)
    if hit is None:
        return
    secs, worst, conns, r = hit
    to = ctx.to_text(conns)
    ctx.add(CAUSE, "warning" if worst >= ctx.thr.nagle_s else "info", secs,
            f"Small messages were held back by a TCP setting (Nagle with delayed ACK): {r.height} stall(s), "
            f"{secs_text(secs)} on {len(conns)} connection(s) to {to}, {ctx.where}.",
            f"{r.height} stall(s) of {secs_text(_med_ms(r) / 1000)} (median): a data segment, the receiver's bare ACK of it "
            "after its delayed-ACK timer, then the sender's held small segment right after that ACK "
            "(connections.nagle_stalls). Ask the vendor for TCP_NODELAY on these sockets.", frames_of(r), conns,
            action=_action(ctx.segments, ctx.connections, r))


CAUSE = Cause("nagle_delayed_ack", "nagle_delayed_ack_s", ACTION, find=_find, find_connections=_find_connections)
