"""TCP analysis: per-segment judgements (Wireshark's tcp.analysis.*) and the connections table.

API (others rely on it):

- `TcpAnalyzer(server_ports=None)`: streaming. `feed(chunk)` returns the chunk's SEGMENTS rows
  (netdiag.schema.SEGMENTS) plus trailing `payload_offset` / `payload_captured` columns (index
  into `chunk.payload`); UDP rows are not in it but in `analyzer.last_udp` (frame, ts_ns,
  conn_id, direction, src_port, dst_port, payload_offset, payload_captured, payload_len) after
  each feed. `finish()` returns the CONNECTIONS table (TCP connections and UDP flows,
  transport = 'udp'). State is carried across chunks and bounded by connections, not packets.
- `analyze(source, server_ports=None) -> TcpResult(segments, connections, stats)`,
  `connections(source)`, `segments(source)`: one call over a `Capture`, a path, a list of
  paths, or an iterable of PacketChunks.

conn_id: UInt32 in order of first appearance (TCP and UDP share the numbering); TCP connections
are split like Wireshark's tcp.stream (a SYN with a new ISN on the same 4-tuple starts a new
one). See netdiag/tcp/analysis.py for the judgement rules and where they deliberately differ
from Wireshark 4.0, and netdiag/tcp/connections.py for the Zeek state/history rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from netdiag.tcp import connections as _connections_table  # noqa: F401 - load the submodule first
from netdiag.tcp.analysis import TcpAnalyzer

# Importing the submodule netdiag.tcp.connections binds the package attribute `connections` to
# it; loading it above, before `def connections` below, leaves the name to the function.

__all__ = ["TcpAnalyzer", "TcpResult", "analyze", "connections", "segments"]


@dataclass
class TcpResult:
    """Everything one pass produced: segments, connections, and what was read."""

    segments: pl.DataFrame
    connections: pl.DataFrame
    stats: object = None            # netdiag.capture.ReadStats when read from files
    udp: pl.DataFrame = field(default_factory=pl.DataFrame)


def _chunks(source: object, stats: object, progress: object):  # noqa: ANN202 - generator of PacketChunks
    from netdiag.capture import Capture, PacketChunk, iter_chunks

    if isinstance(source, Capture):
        yield PacketChunk(source.packets, source.payload)
        return
    if isinstance(source, PacketChunk):
        yield source
        return
    if isinstance(source, (str, os.PathLike)) or (
            isinstance(source, Sequence) and all(isinstance(s, (str, os.PathLike)) for s in source)):
        kwargs = {"stats": stats}
        if progress is not None:
            kwargs["progress"] = progress
        yield from iter_chunks(source, **kwargs)  # type: ignore[arg-type]
        return
    if isinstance(source, Iterable):
        yield from source  # type: ignore[misc]
        return
    raise TypeError(f"cannot analyse {type(source).__name__}: give a Capture, path(s) or PacketChunks")


def analyze(source: object, *, server_ports: set[int] | None = None, keep_segments: bool = True,
            progress: object = None) -> TcpResult:
    """One pass: SEGMENTS rows (when keep_segments), the CONNECTIONS table and the read stats."""
    from netdiag.capture import Capture, ReadStats

    stats = source.stats if isinstance(source, Capture) else ReadStats()
    analyzer = TcpAnalyzer(server_ports)
    parts: list[pl.DataFrame] = []
    udp: list[pl.DataFrame] = []
    for chunk in _chunks(source, stats, progress):
        seg = analyzer.feed(chunk, segments=keep_segments)
        if keep_segments:
            parts.append(seg.drop("payload_offset", "payload_captured"))
            udp.append(analyzer.last_udp.drop("payload_offset", "payload_captured"))
    segs = pl.concat(parts) if parts else analyzer._empty_segments().drop("payload_offset", "payload_captured")
    return TcpResult(segs, analyzer.finish(), stats, pl.concat(udp) if udp else pl.DataFrame())


def connections(source: object, *, server_ports: set[int] | None = None) -> pl.DataFrame:
    """The CONNECTIONS table of a capture (see analyze)."""
    return analyze(source, server_ports=server_ports, keep_segments=False).connections


def segments(source: object, *, server_ports: set[int] | None = None) -> pl.DataFrame:
    """The SEGMENTS table of a capture (see analyze)."""
    return analyze(source, server_ports=server_ports).segments
