"""zero_window: zero-window and window-full waits, a slow reader (budget flow_control_s).

docs/domain.md section 3.2 ("Zero-window (a slow reader, e.g. a client GC pause)"). Seconds: from the
window filling up (or closing) until it reopened; a resend during a zero window is a persist
probe and counts here, not as loss. A warning when one logon lost `thresholds.flow_control_s`.
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes import _tcp_side
from netdiag.logons.causes.base import Cause, ConnectionContext, FindingContext, frames_of, secs_text

# docs/domain.md section 3.2 and section 5 (loss / RTO / zero window row: "shows network vs
# application"): the reader is the application to look at.
ACTION = ("Look at {reader}, not the network: the application there stopped reading its socket; check it for "
          "GC pauses (verbose GC log), CPU starvation or a blocked UI thread at the frames' times.")


def _action(segments: pl.DataFrame | None, connections: pl.DataFrame, r: pl.DataFrame) -> str:
    # the zero-window advertisements (the reader's own segments) are the intervals' first frames
    frames = r["frame_a"].drop_nulls().cast(pl.Int64).to_list()
    zw = (segments.filter(pl.col("frame").is_in(frames) & pl.col("zero_window"))["frame"].to_list()
          if segments is not None and segments.height else [])
    s = _tcp_side.sides(segments, connections, zw)
    if s["client"] and not s["server"]:
        return ACTION.format(reader=_tcp_side.named("client", s["client"]))
    if s["server"] and not s["client"]:
        return ACTION.format(reader=_tcp_side.named("server", s["server"]))
    return ACTION.format(reader="the receiving side (the one advertising the zero or full window)")


def _find(ctx: FindingContext) -> None:
    ctx.simple(CAUSE, lambda s, w, r: "warning" if w >= ctx.thr.flow_control_s else "info",
               lambda s, n, w, r: f"A slow reader made the other side wait: {secs_text(s)} in {n} logon(s).",
               lambda s, n, w, r: f"{r.height} zero-window / window-full wait(s) (tcp.analysis.zero_window, "
               "window_full): the receiving application did not read fast enough (e.g. a GC pause).",
               lambda r: _action(ctx.segments, ctx.connections, r))


def _find_connections(ctx: ConnectionContext) -> None:
    hit = ctx.hit(CAUSE.id)
    if hit is None:
        return
    secs, worst, conns, r = hit
    ctx.add(CAUSE, "warning" if worst >= ctx.thr.flow_control_s else "info", secs,
            f"A slow reader made the other side wait {secs_text(secs)} on {len(conns)} connection(s) to "
            f"{ctx.to_text(conns)}, {ctx.where}.",
            f"{r.height} zero-window / window-full wait(s) (tcp.analysis.zero_window, window_full): the receiving "
            "application did not read fast enough (e.g. a GC pause). Seconds: from the window filling up (or "
            "closing) until it reopened.", frames_of(r), conns, action=_action(ctx.segments, ctx.connections, r))


CAUSE = Cause("zero_window", "flow_control_s", ACTION, find=_find, find_connections=_find_connections)
