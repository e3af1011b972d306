"""Method facts the report states beside the tables: where the capture was taken, and the time bucket.

Why a module of their own: the pipeline computes them for every analysis (a notebook user wants
the same facts the report shows), `netdiag.analyze` writes them into the report, and
`netdiag.compare` recomputes the capture point for an analysis directory read back from disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from netdiag.profile import Profile
from netdiag.words import fmt_s

# Time-bucket sizes tried for "logon time over time", smallest first; the first giving at most
# MAX_BUCKETS buckets over the capture's span is used.
BUCKET_CHOICES_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400)
MAX_BUCKETS = 48
# Below this round trip on both sides the capture point cannot be told from the handshakes.
CAPTURE_POINT_MIN_RTT_S = 0.001
# One side's handshake round trip below this share of the other's puts the capture on that side.
CAPTURE_POINT_RATIO = 0.2


@dataclass(frozen=True)
class CapturePoint:
    """Where the capture was taken relative to clients and servers, and how that was decided."""

    where: str                       # client, server, middle, undetermined
    how: str                         # one sentence: profile setting or the handshake evidence
    client_side_rtt_s: float | None  # median SYN/ACK -> ACK over TCP handshakes (capture point to client and back)
    server_side_rtt_s: float | None  # median SYN -> SYN/ACK (capture point to server and back)


def _median(values: pl.Series) -> float | None:
    v = values.drop_nulls()
    return float(v.median()) if v.len() else None


def capture_point(connections: pl.DataFrame, profile: Profile) -> CapturePoint:
    """Decide where the capture was taken: the profile's word, else the TCP handshake halves.

    A capture next to the client sees the client's ACK right after the SYN/ACK (client-side
    round trip ~0) while the SYN -> SYN/ACK time carries the whole network; next to the server
    it is the other way round; in the middle both are sizeable.
    """
    tcp = connections.filter(pl.col("transport") == "tcp") if connections.height else connections
    c_ms = _median(tcp["rtt_client_side_ms"]) if tcp.height else None
    s_ms = _median(tcp["rtt_server_side_ms"]) if tcp.height else None
    c_s = c_ms / 1000 if c_ms is not None else None
    s_s = s_ms / 1000 if s_ms is not None else None
    if profile.capture_point != "auto":
        return CapturePoint(profile.capture_point, f"set in the site profile ([capture] point = \"{profile.capture_point}\")",
                            c_s, s_s)
    if c_s is None or s_s is None:
        return CapturePoint("undetermined", "no complete TCP handshake was captured, so the round trip on each side "
                            "of the capture point is unknown", c_s, s_s)
    evidence = (f"median handshake round trip from the capture point: {fmt_s(c_s)} to the clients, "
                f"{fmt_s(s_s)} to the servers")
    if max(c_s, s_s) < CAPTURE_POINT_MIN_RTT_S:
        return CapturePoint("undetermined", evidence + "; both are under 1 ms (a LAN or a lab), so it makes no "
                            "measurable difference where the capture was taken", c_s, s_s)
    if c_s < CAPTURE_POINT_RATIO * s_s:
        return CapturePoint("client", evidence + "; the client side is the short one", c_s, s_s)
    if s_s < CAPTURE_POINT_RATIO * c_s:
        return CapturePoint("server", evidence + "; the server side is the short one", c_s, s_s)
    return CapturePoint("middle", evidence + "; both sides are sizeable", c_s, s_s)


def bucket_seconds(logons: pl.DataFrame) -> int:
    """The smallest time-bucket size giving at most MAX_BUCKETS buckets over the logons' span."""
    if logons.height == 0:
        return BUCKET_CHOICES_S[1]
    span_s = (int(logons["start_ts_ns"].max()) - int(logons["start_ts_ns"].min())) / 1e9
    for b in BUCKET_CHOICES_S:
        if math.floor(span_s / b) + 1 <= MAX_BUCKETS:
            return b
    return BUCKET_CHOICES_S[-1]


__all__ = ["CapturePoint", "bucket_seconds", "capture_point"]
