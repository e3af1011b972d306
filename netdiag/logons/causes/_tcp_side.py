"""Which side of a TCP connection the evidence frames were sent by, and where a loss sat.

Shared by the TCP causes' actions (nagle_delayed_ack, zero_window, loss_recovery): a next step
must name the side to change (the sender of the held segment, the slow reader) and the part of
the path to inspect, relative to the capture point (docs/domain.md section 6).
"""

from __future__ import annotations

import polars as pl


def sides(segments: pl.DataFrame | None, connections: pl.DataFrame, frames: list[int]) -> dict[str, set[str]]:
    """{'client': {ip...}, 'server': {ip:port...}} of the senders of these frames."""
    out: dict[str, set[str]] = {"client": set(), "server": set()}
    if segments is None or segments.height == 0 or not frames:
        return out
    s = (segments.filter(pl.col("frame").is_in(frames)).select("conn_id", "direction")
         .join(connections.select("conn_id", "client_ip", "server_ip", "server_port"), on="conn_id", how="left"))
    for _cid, d, cip, sip, sport in s.iter_rows():
        if d == 0:
            out["client"].add(str(cip))
        else:
            out["server"].add(f"{sip}:{sport}")
    return out


def named(side: str, addrs: set[str], limit: int = 3) -> str:
    """'the server (10.0.0.1:9100)' / 'the client (10.0.0.5)'."""
    if not addrs:
        return f"the {side}"
    a = sorted(addrs)
    return f"the {side} ({', '.join(a[:limit])}{' ...' if len(a) > limit else ''})"
