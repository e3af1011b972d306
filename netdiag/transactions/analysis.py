"""The streams -> messages -> transactions stage: fed chunk by chunk (`StreamsStage`, what
`netdiag.pipeline` drives) or as one call over files (`analyze_streams`), and helpers over its
result (summary per operation, filters)."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netdiag.protocols.giop import FAILED_STATUSES, FORWARD_STATUSES
from netdiag.transactions.build import build_transactions
from netdiag.transactions.resend import message_resend
from netdiag.transactions.sink import StreamAnalysis
from netdiag.transactions.streams import StreamParser

# ============================================================================================
# Public API
# ============================================================================================
Source = str | Path | Sequence[str | Path]


def _paths(source: Source) -> list[str]:
    if isinstance(source, (str, Path)):
        return [str(source)]
    return [str(p) for p in source]


class StreamsStage:
    """The streams -> messages -> transactions stage, fed chunk by chunk after the TCP stage.

    `feed(segs, chunk, udp)` takes one chunk's SEGMENTS rows (from `TcpAnalyzer.feed`), the chunk
    (for its payload) and the analyzer's `last_udp` rows; `finish(connections, read_stats)`
    pairs the messages into transactions once the TCP stage has built the connections table.
    `analyze_streams` and `netdiag.pipeline.Pipeline` both drive it, so the stage is one piece of
    code whichever way the packets arrive."""

    def __init__(self, tls_keylog: Any = None) -> None:
        if tls_keylog is not None and not hasattr(tls_keylog, "secrets"):
            from netdiag.tls_keylog import read_keylog

            tls_keylog = read_keylog(tls_keylog)
        self.parser = StreamParser(keylog=tls_keylog)

    def feed(self, segs: pl.DataFrame, chunk: Any, udp: pl.DataFrame | None) -> None:
        """Reassemble and parse one chunk's TCP payload and UDP datagrams."""
        self.parser.feed(segs, chunk.payload, chunk.packets)
        self.parser.feed_udp(udp, chunk.payload)

    def finish(self, connections: pl.DataFrame, read_stats: Any = None) -> StreamAnalysis:
        """Close every stream and pair requests with responses: messages, transactions, gaps, counts."""
        return _assemble(self.parser, connections, read_stats)


def analyze_streams(source: Source, *, progress: Any = None,
                    on_segments: Callable[[pl.DataFrame], None] | None = None,
                    tls_keylog: Any = None) -> StreamAnalysis:
    """One pass over the capture(s): connections, messages, transactions, gaps and counts.

    `on_segments(segs)` is called with each chunk's SEGMENTS rows, for a caller that needs
    per-segment columns from the same pass. `tls_keylog` (a path or a
    netdiag.tls_keylog.KeyLog) decrypts TLS connections whose secrets it holds: the GIOP/HTTP
    inside is parsed like cleartext (netdiag/protocols/tls/plaintext.py); the others stay TLS turns."""
    from netdiag.capture import ReadStats, iter_chunks
    from netdiag.tcp import TcpAnalyzer

    read_stats = ReadStats()
    kwargs: dict[str, Any] = {"stats": read_stats}
    if progress is not None:
        kwargs["progress"] = progress
    analyzer = TcpAnalyzer()
    stage = StreamsStage(tls_keylog)
    with _no_cyclic_gc():
        for chunk in iter_chunks(_paths(source), **kwargs):
            segs = analyzer.feed(chunk)
            stage.feed(segs, chunk, analyzer.last_udp)
            if on_segments is not None:
                on_segments(segs)
        connections = analyzer.finish()
        return stage.finish(connections, read_stats)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The pass makes millions of short-lived objects (records, detail dicts, rows) and pairing
    keeps a few hundred thousand until the table is built; the cyclic collector would re-scan
    them again and again (measured on the storm bench: 10% of the chunk loop, 40% of
    build_transactions). Nothing here makes reference cycles, so it is off for the pass."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _assemble(sp: StreamParser, connections: pl.DataFrame, read_stats: Any = None) -> StreamAnalysis:
    with _no_cyclic_gc():
        return _assemble_tables(sp, connections, read_stats)


def _assemble_tables(sp: StreamParser, connections: pl.DataFrame, read_stats: Any = None) -> StreamAnalysis:
    sp.finish()
    msgs, events, gaps = sp.result()
    msgs = message_resend(msgs, events)
    stats = sp.stats
    txns = build_transactions(msgs, sp.sink.details, connections, events, stats, sp.min_ack_rtt_ms)
    stats.messages = msgs.height
    stats.malformed_messages = int(msgs["malformed"].sum()) if msgs.height else 0
    # capture loss: the one ACK-proven figure (connections.unseen_bytes: bytes the receiver
    # acknowledged that the capture never saw), not the parser's stream gaps, which also hold
    # holes nobody acknowledged and miss connections no parser read
    if "unseen_bytes" in connections.columns and connections.height:
        stats.gaps = int(connections["unseen_gaps"].sum()) if "unseen_gaps" in connections.columns else gaps.height
        stats.gap_bytes = int(connections["unseen_bytes"].sum())
    else:
        stats.gaps = gaps.height
        stats.gap_bytes = int(gaps["bytes"].sum()) if gaps.height else 0
    stats.by_protocol = dict(msgs.group_by("protocol").len().sort("protocol").iter_rows()) if msgs.height else {}
    stats.tls_warnings = _tls_warnings(stats.tls_not_decrypted, connections)
    if read_stats is not None and hasattr(read_stats, "warnings"):
        read_stats.warnings.extend(stats.tls_warnings)   # every command prints these lines
    return StreamAnalysis(connections, msgs, txns, gaps, stats, read_stats,
                          tls_quiet_frames=_quiet_frames(msgs, stats.tls_quiet_rows))


def _quiet_frames(msgs: pl.DataFrame, rows: list[int]) -> np.ndarray:
    """Frames that carry only TLS post-handshake messages or alerts (tickets, key updates,
    close_notify): the budget does not take a Nagle stall on such a frame as a wait (docs/tls.md).
    A frame that also carries bytes of any other message is not quiet."""
    if not rows:
        return np.zeros(0, np.int64)
    f = msgs.select("first_frame", "last_frame").with_row_index("row")
    mask = np.zeros(msgs.height, np.bool_)
    mask[np.asarray(rows, np.int64)] = True
    q = f.filter(pl.Series(mask))
    quiet = np.union1d(q["first_frame"].to_numpy(), q["last_frame"].to_numpy())
    other = f.filter(pl.Series(~mask))
    busy = np.union1d(other["first_frame"].to_numpy(), other["last_frame"].to_numpy())
    return np.setdiff1d(quiet, busy).astype(np.int64)


def _tls_warnings(items: list[tuple[int, str]], connections: pl.DataFrame) -> list[str]:
    """One line per TLS connection a key log was given for that stays without keys, naming it."""
    if not items:
        return []
    names = {r[0]: f"{r[1]}:{r[2]} -> {r[3]}:{r[4]}" for r in connections.filter(
        pl.col("conn_id").is_in([c for c, _ in items])).select(
        "conn_id", "client_ip", "client_port", "server_ip", "server_port").iter_rows()}
    return [f"TLS connection {cid} ({names.get(cid, '?')}) not decrypted: {why}; read without keys"
            if "rest of the connection" not in why else
            f"TLS connection {cid} ({names.get(cid, '?')}): decryption stopped: {why}" for cid, why in items]


def messages(source: Source) -> pl.DataFrame:
    """The MESSAGES table of the capture(s)."""
    return analyze_streams(source).messages


def transactions(source: Source) -> pl.DataFrame:
    """The TRANSACTIONS table of the capture(s)."""
    return analyze_streams(source).transactions


def summarize(txns: pl.DataFrame) -> pl.DataFrame:
    """Per (protocol, operation): count, p50/p95/max server think (s), errors, forwards, unanswered.

    Errors: GIOP exceptions and failed locates (netdiag.protocols.giop FAILED_STATUSES), HTTP
    4xx/5xx, DNS rcodes other than NOERROR, TLS alerts. Forwards are not errors (counted apart);
    unanswered is counted apart."""
    status = pl.col("status").fill_null("")
    err = (status.is_in(FAILED_STATUSES) | status.str.contains(r"^[45]\d\d$") | status.str.starts_with("alert:")
           | ((pl.col("protocol") == "dns") & ~status.is_in(["NOERROR", "unanswered"])))
    return (txns.group_by("protocol", "operation")
            .agg(count=pl.len(),
                 think_p50_s=pl.col("server_think_s").quantile(0.5, "nearest"),
                 think_p95_s=pl.col("server_think_s").quantile(0.95, "nearest"),
                 think_max_s=pl.col("server_think_s").max(),
                 errors=err.sum(),
                 forwards=status.is_in(FORWARD_STATUSES).sum(),
                 unanswered=(status == "unanswered").sum())
            .sort("count", "operation", descending=[True, False], nulls_last=True))


def filter_transactions(txns: pl.DataFrame, *, protocol: str | None = None, operation: str | None = None,
                        server: str | None = None) -> pl.DataFrame:
    """Rows matching a protocol, an operation regex and/or a server HOST[:PORT]."""
    if protocol:
        txns = txns.filter(pl.col("protocol") == protocol.lower())
    if operation:
        re.compile(operation)  # a bad regex raises re.error here, before polars sees it
        txns = txns.filter(pl.col("operation").fill_null("").str.contains(operation))
    if server:
        host, _, port = server.rpartition(":") if server.count(":") == 1 or server.startswith("[") else (server, "", "")
        host = host.strip("[]") or server
        if port and not port.isdigit():
            host, port = server, ""
        txns = txns.filter(pl.col("server_ip") == host)
        if port:
            txns = txns.filter(pl.col("server_port") == int(port))
    return txns


def iter_protocols(analysis: StreamAnalysis) -> Iterable[tuple[str, int]]:
    """(protocol, message count) pairs, for a one-line stderr summary."""
    return sorted(analysis.stats.by_protocol.items())
