"""capture_loss: bytes the receiver acknowledged that the capture never saw (docs/domain.md section 6).

Detection: connections.unseen_bytes > 0, evidence segments.ack_lost_segment
(tcp.analysis.ack_lost_segment). Costs no logon time itself, but changes how every loss and
transfer figure on those connections must be read, so it is listed first. Labels unanswered
requests on such connections: their answer is probably among the frames the capture lost.
"""

from __future__ import annotations

import polars as pl

from netdiag.logons.causes.base import (
    MAX_EVIDENCE_FRAMES,
    Cause,
    ConnectionContext,
    FindingContext,
    LabelInput,
)
from netdiag.protocols.registry import request_protocols

# docs/domain.md section 6: "SPAN can drop packets: distinguish 'not captured' (ACKed data never
# seen) from real loss".
ACTION = ("Fix the recording before trusting loss figures: check the capture host's drop counter (tcpdump "
          "'dropped by kernel', dumpcap's) and the switch's mirror (SPAN) port for output drops or "
          "oversubscription; capture again with a bigger buffer (tcpdump -B) or from a TAP.")


def _label(inp: LabelInput) -> pl.Expr:
    return (pl.col("rsp_first_ts_ns").is_null() & pl.col("conn_id").is_in(inp.lossy_conns)
            & pl.col("protocol").is_in(list(request_protocols())))


def _frames(segments: pl.DataFrame | None, conn_ids: list[int]) -> list[int]:
    if segments is None or segments.height == 0:
        return []
    return segments.filter(pl.col("ack_lost_segment") & pl.col("conn_id").is_in(conn_ids))["frame"].head(
        MAX_EVIDENCE_FRAMES).to_list()


def _find(ctx: FindingContext) -> None:
    # the lossy connections first (few), then their logons: no join of the whole connections table
    cols = [c for c in ("conn_id", "unseen_bytes", "unseen_gaps") if c in ctx.connections.columns]
    lossy_conns = ctx.connections.select(cols).filter(pl.col("unseen_bytes").fill_null(0) > 0)
    if lossy_conns.height == 0:
        return
    logon_conns = ctx.members.select("logon_idx", "conn_id").filter(
        pl.col("conn_id").is_in(lossy_conns["conn_id"].implode())).unique()
    lossy = lossy_conns.join(logon_conns, on="conn_id", how="inner")
    if lossy.height == 0:
        return
    frames = _frames(ctx.segments, lossy["conn_id"].to_list())
    nbytes = int(lossy["unseen_bytes"].sum())
    ctx.add(CAUSE, "warning", 0.0, lossy["logon_idx"].to_list(),
            f"The capture itself missed {nbytes} bytes in {lossy['logon_idx'].n_unique()} logon(s); "
            "these gaps are the recording's, not the network's, so read any loss figures with care.",
            f"{nbytes} bytes were acknowledged by the receiver but never captured (ACKed unseen segments)"
            + (f" in {int(lossy['unseen_gaps'].sum())} gap(s)" if "unseen_gaps" in lossy.columns else "")
            + f" on {lossy.height} connection(s): the switch mirror or the capture host dropped frames. Retransmission "
            "and transfer times on these connections may be understated.",
            frames, lossy["conn_id"].to_list(), "tcp.analysis.ack_lost_segment" if not frames else None)


def _find_connections(ctx: ConnectionContext) -> None:
    """Capture loss on connections outside every logon (it costs no time)."""
    lossy = ctx.connections.filter(pl.col("unseen_bytes").fill_null(0) > 0)
    if lossy.height == 0:
        return
    frames = _frames(ctx.segments, lossy["conn_id"].to_list())
    nbytes = int(lossy["unseen_bytes"].sum())
    ctx.add(CAUSE, "warning", 0.0,
            f"The capture itself missed {nbytes} bytes on {lossy.height} connection(s), {ctx.where}; these gaps are "
            "the recording's, not the network's, so read any loss figures with care.",
            f"{nbytes} bytes were acknowledged by the receiver but never captured (ACKed unseen segments): the "
            "switch mirror or the capture host dropped frames.", frames, lossy["conn_id"].to_list(),
            "tcp.analysis.ack_lost_segment" if not frames else None)


CAUSE = Cause("capture_loss", None, ACTION, dominant=True, label_transaction=_label, find=_find,
              find_connections=_find_connections)
