"""The one driver: packets -> connections -> streams/messages/transactions -> logons/findings.

Every command (connections, transactions, logons, findings, analyze, evidence, case, compare) and
the Python API run the capture through this module, so a stage is wired up in one place and its
results reach everyone as the same typed `Analysis`:

    from netdiag.pipeline import Stage, run
    a = run(["switch.pcapng"])                          # all stages
    a.connections, a.transactions, a.logons, a.findings, a.population["budget"]
    t = run(["switch.pcapng"], stage=Stage.TRANSACTIONS)   # stop after the transactions

Stages (`Stage`), each using the tables of the one before (netdiag.schema declares them):

- CONNECTIONS: `netdiag.tcp.TcpAnalyzer` turns each chunk of the PACKETS table into SEGMENTS
  rows and, at the end, the CONNECTIONS table.
- TRANSACTIONS: `netdiag.transactions.StreamsStage` reassembles the segments' payload into
  streams, parses MESSAGES and pairs them into TRANSACTIONS (`analyze_streams` is the same stage
  over files).
- LOGONS: `netdiag.logons.stage.analyze_tables` groups connections into LOGONS with their wait
  budget and labels the causes (FINDINGS), from connections, transactions and the segment columns
  the budget needs (`SEGMENT_COLUMNS`, kept from the same pass).

`Pipeline` is fed chunks (`feed(chunk)`, then `finish()`), so whatever produces the chunks
(files read in order by `run`, a partition of the packets by client address, the files of a
ring buffer as they complete) drives the same stages. Method facts the report states (where the
capture point is, the time bucket) come from `netdiag.method`.
"""

from __future__ import annotations

import enum
import gc
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from netdiag.capture import PacketChunk, ReadStats, iter_chunks
from netdiag.errors import CaptureError, UsageError
from netdiag.method import CapturePoint, bucket_seconds, capture_point
from netdiag.profile import Profile, as_profile
from netdiag.progress import NO_PROGRESS, Advance
from netdiag.progress import stage as set_stage
from netdiag.schema import CONNECTIONS, FINDINGS, LOGONS, MESSAGES, NOT_LOGON_SCHEMA, TRANSACTIONS
from netdiag.tcp import TcpAnalyzer

if TYPE_CHECKING:   # the transactions and logons stages are imported when a run goes that far
    from netdiag.transactions import StreamsStage, StreamStats

PathsArg = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class Stage(enum.IntEnum):
    """How far the pipeline runs; each stage includes the ones before it."""

    CONNECTIONS = 1    # packets -> segments -> connections
    TRANSACTIONS = 2   # ... -> streams -> messages -> transactions
    LOGONS = 3         # ... -> logons, wait budgets, findings, population views


# What a progress bar calls the work while the files are read, and after (netdiag.progress.stage)
STAGE_NAMES = {Stage.CONNECTIONS: ("reading, TCP", "connections"),
               Stage.TRANSACTIONS: ("reading, TCP, transactions", "pairing transactions"),
               Stage.LOGONS: ("reading, TCP, transactions", "logons and findings")}


@dataclass
class Analysis:
    """Everything one run of the pipeline produced: the tables, the views and the method facts.

    Tables of stages that did not run are empty with their declared columns (netdiag.schema);
    `segments` is None unless kept (the logons stage keeps the columns its budget reads, and the
    Analysis carries them on unless the run was told `keep_segments=False`).
    """

    paths: list[str]                           # the inputs as given (files or directories)
    profile: Profile
    stage: Stage
    read_stats: ReadStats                      # packets read and kept, SPAN duplicates, capture warnings
    connections: pl.DataFrame                  # CONNECTIONS
    segments: pl.DataFrame | None = None       # SEGMENTS columns in SEGMENT_COLUMNS (+ tls_quiet), when kept
    messages: pl.DataFrame = field(default_factory=MESSAGES.empty)
    transactions: pl.DataFrame = field(default_factory=TRANSACTIONS.empty)
    gaps: pl.DataFrame = field(default_factory=pl.DataFrame)   # stream holes the parsers skipped
    stream_stats: StreamStats = field(default_factory=lambda: _stream_stats())   # messages parsed, malformed, gaps...
    logons: pl.DataFrame = field(default_factory=LOGONS.empty)
    findings: pl.DataFrame = field(default_factory=FINDINGS.empty)
    population: dict[str, pl.DataFrame] = field(default_factory=dict)   # percentiles, budget views, per bucket
    intervals: pl.DataFrame = field(default_factory=pl.DataFrame)       # timeline intervals with won_ns
    not_logons: pl.DataFrame = field(default_factory=lambda: _no_sessions())   # sessions that are not logons
    capture_point: CapturePoint = field(default_factory=lambda: CapturePoint(
        "undetermined", "no TCP handshake analysed", None, None))
    bucket_s: int = 300                        # the time bucket of population["per_time_bucket"]
    no_logons_reason: str | None = None
    notes: list[str] = field(default_factory=list)     # what grouping left out, with counts
    warnings: list[str] = field(default_factory=list)  # capture problems, one line each
    orphan_connections: int = 0                # connections to EPJ servers in no logon
    unassigned_requests: int = 0               # requests of logon processes outside every logon
    fragments_skipped: int = 0                 # IP fragments the TCP stage did not analyse
    truncated_headers: int = 0                 # TCP headers cut off by the snaplen
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    is_sample: bool = False                    # the bundled sample capture (no capture given)
    elapsed_s: float = 0.0
    costs: dict[str, Any] = field(default_factory=dict)   # a partitioned run's seconds per step (netdiag.partitions)

    def require_packets(self) -> Analysis:
        """Raise CaptureError (exit 2) when not one packet could be read from any input; else self."""
        require_packets(self.read_stats, self.paths)
        return self

    def require_logons(self) -> Analysis:
        """Raise NoLogonsError (with the reason) when there are no logons; else self."""
        from netdiag.logons.stage import NoLogonsError

        if self.logons.height == 0:
            raise NoLogonsError(self.no_logons_reason or "no logons found")
        return self

    def server_seconds_by_operation(self) -> pl.DataFrame:
        """Per logon and operation: the budget's server seconds (logon_id, protocol, operation, server_s)."""
        from netdiag.logons.stage import server_seconds_by_operation

        return server_seconds_by_operation(self.intervals, self.transactions)


def _stream_stats() -> StreamStats:
    from netdiag.transactions import StreamStats

    return StreamStats()


def _no_sessions() -> pl.DataFrame:
    return pl.DataFrame(schema=NOT_LOGON_SCHEMA)


def require_packets(read_stats: ReadStats, paths: Sequence[str | os.PathLike[str]]) -> None:
    """Raise CaptureError (exit 2) when not one packet could be read from any of the inputs.

    A capture of only a file header reads as empty without a warning; that is no analysis at all,
    so it gets the same one line as a capture whose first record is cut.
    """
    if read_stats.packets_read == 0:
        files = read_stats.files or [str(p) for p in paths]
        raise CaptureError(f"no packets could be read from {', '.join(str(f) for f in files)}")


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the stages run.

    The stages make millions of short-lived objects (records, detail dicts, rows) and keep a few
    hundred thousand until the tables are built; the collector would re-scan them again and again.
    Nothing in them makes reference cycles, so reference counting frees everything meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Pipeline:
    """The stages up to `stage`, fed chunk by chunk: `feed(chunk)` for each PacketChunk, then `finish()`.

    Chunks must come in capture order (time, then frame), as `netdiag.capture.iter_chunks` yields
    them. `read_stats` is the ReadStats the chunks' reader fills (the Analysis reports it);
    `tls_keylog` wins over the profile's `[tls] keylog`; `server_ports` decide client and server
    for connections whose SYN was not captured; `segments` keeps the segment columns even when
    the logons stage does not run. `keep_segments=False` lets go of them as soon as the logons
    stage has read them (the Analysis' `segments` is then None): a caller that needs only the
    tables and the report (not an evidence excerpt or a case bundle, which read the segments)
    saves their memory (~140 B per packet) from then on.
    """

    def __init__(self, profile: Profile | str | os.PathLike[str] | None = None, *, stage: Stage = Stage.LOGONS,
                 segments: bool = False, paths: Sequence[str | os.PathLike[str]] = (),
                 read_stats: ReadStats | None = None, server_ports: set[int] | None = None,
                 tls_keylog: Any = None, keep_segments: bool = True) -> None:
        self.profile = as_profile(profile)
        self.stage = Stage(stage)
        self.paths = [str(p) for p in paths]
        self.read_stats = read_stats if read_stats is not None else ReadStats()
        self._keep = segments or self.stage >= Stage.LOGONS
        self._keep_after = keep_segments and (segments or self.stage >= Stage.LOGONS)
        self._segment_columns: tuple[str, ...] = ()
        if self._keep:
            from netdiag.logons.stage import SEGMENT_COLUMNS

            self._segment_columns = SEGMENT_COLUMNS
        self._kept: list[pl.DataFrame] = []
        self._tcp: TcpAnalyzer | None = TcpAnalyzer(server_ports)
        self._streams: StreamsStage | None = None
        if self.stage >= Stage.TRANSACTIONS:
            from netdiag.transactions import StreamsStage

            self._streams = StreamsStage(tls_keylog if tls_keylog is not None else self.profile.tls_keylog)
        self._t0 = time.perf_counter()

    def feed(self, chunk: PacketChunk) -> None:
        """Run one chunk of packets through the connections and transactions stages."""
        if self._tcp is None:
            raise RuntimeError("Pipeline.feed() after finish()")
        segs = self._tcp.feed(chunk, segments=self._keep or self._streams is not None)
        if self._streams is not None:
            self._streams.feed(segs, chunk, self._tcp.last_udp)
        if self._keep and segs.height:
            self._kept.append(segs.select([c for c in self._segment_columns if c in segs.columns]))

    def finish(self) -> Analysis:
        """Close the connections and streams, run the logons stage, and return the Analysis."""
        a = complete(self.finish_streams(), self._t0)
        if not self._keep_after:
            a.segments = None   # read by the logons stage; nothing after it needs them
        return a

    def finish_streams(self) -> Analysis:
        """Close the connections and streams: the Analysis up to the transactions, before the logons stage.

        A partitioned run (netdiag.partitions) calls this per partition, merges the partitions'
        tables, and completes the merged Analysis with `complete`."""
        if self._tcp is None:
            raise RuntimeError("Pipeline.finish() was called already")
        tcp, stage, self._tcp, self._streams = self._tcp, self._streams, None, None
        with no_cyclic_gc():
            connections = tcp.finish()
            streams = stage.finish(connections, self.read_stats) if stage is not None else None
        fragments_skipped, truncated_headers = tcp.fragments_skipped, tcp.truncated_headers
        # the TCP and stream state (per-connection arrays, parsed details) is not needed by the logons stage
        del tcp, stage
        connections = connections if connections.height else CONNECTIONS.empty()
        segments = pl.concat(self._kept, how="vertical_relaxed") if self._kept else None
        self._kept = []
        a = Analysis(paths=self.paths, profile=self.profile, stage=self.stage, read_stats=self.read_stats,
                     connections=connections, fragments_skipped=fragments_skipped,
                     truncated_headers=truncated_headers)
        if streams is not None:
            quiet = streams.tls_quiet_frames
            if segments is not None and quiet is not None and quiet.size:
                # segments that carry only TLS post-handshake messages or alerts: no Nagle stall on them
                segments = segments.with_columns(
                    tls_quiet=pl.col("frame").cast(pl.Int64).is_in(pl.Series(quiet).implode()))
            a.messages, a.gaps, a.stream_stats = streams.messages, streams.gaps, streams.stats
            a.transactions = streams.transactions if streams.transactions.height else TRANSACTIONS.empty()
        a.segments = segments
        return a


def complete(a: Analysis, t0: float, grouping: Any = None) -> Analysis:
    """The logons stage (when `a.stage` includes it) and the method facts, on an Analysis up to its transactions.

    `grouping` is a netdiag.logons.grouping.Grouping already made (a partitioned run groups each
    partition's client addresses in its own process); None groups here. `t0` is when the run began."""
    if a.stage >= Stage.LOGONS:
        _logons_stage(a, grouping)
    a.capture_point = capture_point(a.connections, a.profile)
    a.warnings = [str(w) for w in a.read_stats.warnings]
    if a.connections.height:
        a.first_ts_ns = int(a.connections["first_ts_ns"].min())
        a.last_ts_ns = int(a.connections["last_ts_ns"].max())
    a.elapsed_s = time.perf_counter() - t0
    return a


def _logons_stage(a: Analysis, grouping: Any = None) -> None:
    """Logons, findings and population views into `a`, from its connections, transactions and segments."""
    from netdiag.logons.population import per_time_bucket
    from netdiag.logons.stage import analyze_tables

    la = analyze_tables(a.connections, a.transactions, a.segments, a.profile, grouping=grouping)
    a.logons, a.findings, a.intervals, a.not_logons = la.logons, la.findings, la.intervals, la.not_logons
    a.no_logons_reason, a.notes = la.no_logons_reason, list(la.notes)
    a.orphan_connections, a.unassigned_requests = la.orphan_connections, la.unassigned_requests
    a.bucket_s = bucket_seconds(la.logons)
    a.population = dict(la.population)
    if la.logons.height:
        a.population["per_time_bucket"] = per_time_bucket(la.logons, a.bucket_s)


def input_paths(paths: PathsArg) -> list[Path]:
    """The inputs as a list of paths; UsageError when there is none or one does not exist."""
    path_list = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not path_list:
        raise UsageError("no capture files given")
    for p in path_list:
        if not p.exists():
            raise UsageError(f"{p}: no such file or directory")
    return path_list


def run(paths: PathsArg, profile: Profile | str | os.PathLike[str] | None = None, *, stage: Stage = Stage.LOGONS,
        segments: bool = False, progress: Advance = NO_PROGRESS, server_ports: set[int] | None = None,
        tls_keylog: Any = None, keep_segments: bool = True) -> Analysis:
    """Read the capture file(s) (or directories of them) once and run the stages up to `stage`.

    Raises UsageError for a missing input. A capture without packets or logons is not an error
    here: `Analysis.require_packets()` / `require_logons()` say so when a caller needs them.
    `keep_segments=False`: the Analysis does not carry the segment columns (see Pipeline).
    """
    path_list = input_paths(paths)
    read_stats = ReadStats()
    pipe = Pipeline(profile, stage=stage, segments=segments, paths=path_list, read_stats=read_stats,
                    server_ports=server_ports, tls_keylog=tls_keylog, keep_segments=keep_segments)
    set_stage(progress, STAGE_NAMES[pipe.stage][0])
    _feed_files(pipe, path_list, read_stats, progress)
    set_stage(progress, STAGE_NAMES[pipe.stage][1])
    return pipe.finish()


def _feed_files(pipe: Pipeline, paths: list[Path], read_stats: ReadStats, progress: Advance) -> None:
    """Feed every chunk of the files to `pipe`; no chunk outlives this call (the last one can be the
    whole capture, and the logons stage after it should not have to make room beside it)."""
    with no_cyclic_gc():
        for chunk in iter_chunks([str(p) for p in paths], stats=read_stats, progress=progress):
            pipe.feed(chunk)


def transactions(paths: PathsArg, *, tls_keylog: Any = None) -> pl.DataFrame:
    """The TRANSACTIONS table of the capture(s): the pipeline run to its transactions stage."""
    return run(paths, stage=Stage.TRANSACTIONS, tls_keylog=tls_keylog).transactions


def messages(paths: PathsArg, *, tls_keylog: Any = None) -> pl.DataFrame:
    """The MESSAGES table of the capture(s): the pipeline run to its transactions stage."""
    return run(paths, stage=Stage.TRANSACTIONS, tls_keylog=tls_keylog).messages


def input_bytes(paths: Sequence[Path]) -> int:
    """Bytes of capture data under `paths` (files, and the files in directories), for a progress bar."""
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


__all__ = ["Analysis", "Pipeline", "Stage", "complete", "input_bytes", "input_paths",
           "messages", "no_cyclic_gc", "require_packets", "run", "transactions"]
