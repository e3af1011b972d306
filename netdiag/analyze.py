"""`netdiag.analyze`: the whole pipeline in one call, and the report directory it writes.

    from netdiag.analyze import analyze
    a = analyze(["switch.pcapng"], profile="site.toml", out="netdiag-report")
    a.logons, a.findings, a.population["budget"], a.capture_point.where

Why a separate module: the report needs more than the tables (capture statistics, what the
capture point is and how we know, warnings, time buckets sized to the capture), and a notebook
user wants the same facts the report shows. The work itself is done once by
`netdiag.logons.analyze_logons` (capture -> TCP -> transactions -> logons/findings in one pass);
this module adds the method facts and writes the output directory:

    DIR/report.html        self-contained report (no network fetches)
    DIR/report.md          the same findings as text, for pasting into a case
    DIR/findings.json      the findings table as a JSON array of rows (same columns as findings.parquet)
    DIR/tables/*.parquet   connections, transactions, logons, findings (netdiag.schema types)
    DIR/tables/SCHEMA.md   those tables' column meanings (from netdiag.schema)
    DIR/.netdiag-report    marker (JSON: tool, version, kind, command, captures, time, files): DIR is
                           ours to replace; an empty or foreign marker does not count

report.md and findings.json sit at the top level with stable names so a vendor case bundle can
pick them up as they are. The directory is written whole into a private staging directory
beside DIR and swapped in when complete (netdiag.output.StagedDir): never through a symlink,
and a crash leaves the previous report as it was.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netdiag.errors import CaptureError, UsageError
from netdiag.output import StagedDir, check_out_dir, marker_record
from netdiag.profile import Profile, load_profile
from netdiag.progress import NO_PROGRESS, Advance
from netdiag.schema import CONNECTIONS, FINDINGS, LOGONS, TRANSACTIONS

MARKER = ".netdiag-report"
TABLES = {"connections": CONNECTIONS, "transactions": TRANSACTIONS, "logons": LOGONS, "findings": FINDINGS}
# Time-bucket sizes tried for "logon time over time", smallest first; the first giving at most
# MAX_BUCKETS buckets over the capture's span is used.
BUCKET_CHOICES_S = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400)
MAX_BUCKETS = 48
# Below this round trip on both sides the capture point cannot be told from the handshakes.
CAPTURE_POINT_MIN_RTT_S = 0.001
# One side's handshake round trip below this share of the other's puts the capture on that side.
CAPTURE_POINT_RATIO = 0.2
SAMPLE_NAME = "epj-logon.pcap"
# Names the report directory holds; an existing directory's other entries (a user's notes) are kept.
REPORT_FILES = ("report.html", "report.md", "findings.json", "tables")

PathsArg = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


@dataclass(frozen=True)
class CapturePoint:
    """Where the capture was taken relative to clients and servers, and how that was decided."""

    where: str                       # client, server, middle, undetermined
    how: str                         # one sentence: profile setting or the handshake evidence
    client_side_rtt_s: float | None  # median SYN/ACK -> ACK over TCP handshakes (capture point to client and back)
    server_side_rtt_s: float | None  # median SYN -> SYN/ACK (capture point to server and back)


@dataclass
class Analysis:
    """Everything `netdiag analyze` knows about the capture(s): tables, views and method facts."""

    paths: list[str]
    profile: Profile
    connections: pl.DataFrame
    transactions: pl.DataFrame
    logons: pl.DataFrame
    findings: pl.DataFrame
    population: dict[str, pl.DataFrame]
    intervals: pl.DataFrame
    capture_point: CapturePoint
    bucket_s: int
    read_stats: Any = None
    stream_stats: Any = None
    no_logons_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    is_sample: bool = False
    elapsed_s: float = 0.0


def sample_capture() -> Path:
    """The bundled sample capture (three lab logons, one with a slow `authenticate`)."""
    return Path(str(resources.files("netdiag") / "data" / SAMPLE_NAME))


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
    evidence = (f"median handshake round trip from the capture point: {c_s:.6f} s to the clients, "
                f"{s_s:.6f} s to the servers")
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


def _check_paths(paths: list[Path]) -> None:
    for p in paths:
        if not p.exists():
            raise UsageError(f"{p}: no such file or directory")


def analyze(paths: PathsArg | None = None, profile: Profile | str | os.PathLike[str] | None = None,
            out: str | os.PathLike[str] | None = None, progress: Advance = NO_PROGRESS, *,
            force: bool = False) -> Analysis:
    """Run the whole pipeline on capture file(s); write the report directory when `out` is given.

    `paths` None analyses the bundled sample capture. `profile` is a Profile, a TOML path or
    None (built-in defaults). A capture without logons is not an error here: the Analysis
    carries `no_logons_reason` and the report says why (TCP health is still reported). Raises
    UsageError for an `out` that may not or cannot be written (before any work) and
    CaptureError when not one packet could be read; then nothing is written.
    """

    t0 = time.perf_counter()
    is_sample = paths is None
    if paths is None:
        path_list = [sample_capture()]
    elif isinstance(paths, str | os.PathLike):
        path_list = [Path(paths)]
    else:
        path_list = [Path(p) for p in paths]
    if not path_list:
        raise UsageError("no capture files given")
    _check_paths(path_list)
    prof = profile if isinstance(profile, Profile) else (load_profile(profile) if profile is not None else Profile())
    stage = None
    if out is not None:   # refuse a bad --out and make the staging directory before minutes of work
        stage = StagedDir(Path(out), marker=MARKER, kind="report", force=force, output_names=REPORT_FILES)
    try:
        analysis = _analyze(path_list, prof, progress, is_sample, t0)
        if stage is not None:
            write_outputs(analysis, stage)
    except BaseException:
        if stage is not None:
            stage.abort()
        raise
    return analysis


def _analyze(path_list: list[Path], prof: Profile, progress: Advance, is_sample: bool, t0: float) -> Analysis:
    from netdiag.logons import analyze_logons
    from netdiag.logons.population import per_time_bucket

    la = analyze_logons(path_list, prof, progress=progress)
    streams = la.streams
    connections = streams.connections if streams.connections.height else CONNECTIONS.empty()
    transactions = streams.transactions if streams.transactions.height else TRANSACTIONS.empty()
    bucket = bucket_seconds(la.logons)
    pop = dict(la.population)
    if la.logons.height:
        pop["per_time_bucket"] = per_time_bucket(la.logons, bucket)
    read_stats = getattr(streams, "read_stats", None)
    require_packets(read_stats, path_list)
    warnings = [str(w) for w in (getattr(read_stats, "warnings", None) or [])]
    first = int(connections["first_ts_ns"].min()) if connections.height else None
    last = int(connections["last_ts_ns"].max()) if connections.height else None
    analysis = Analysis(
        paths=[str(p) for p in path_list], profile=prof, connections=connections, transactions=transactions,
        logons=la.logons, findings=la.findings, population=pop, intervals=la.intervals,
        capture_point=capture_point(connections, prof), bucket_s=bucket, read_stats=read_stats,
        stream_stats=getattr(streams, "stats", None), no_logons_reason=la.no_logons_reason,
        notes=list(la.notes), warnings=warnings, first_ts_ns=first, last_ts_ns=last, is_sample=is_sample,
    )
    analysis.elapsed_s = time.perf_counter() - t0
    return analysis


def require_packets(read_stats: Any, paths: Sequence[str | os.PathLike[str]]) -> None:
    """Raise CaptureError (exit 2) when not one packet could be read from any of the inputs.

    A capture of only a file header reads as empty without a warning; that is no analysis at all,
    so it gets the same one line as a capture whose first record is cut.
    """
    if read_stats is not None and getattr(read_stats, "packets_read", 1) == 0:
        files = getattr(read_stats, "files", None) or [str(p) for p in paths]
        raise CaptureError(f"no packets could be read from {', '.join(str(f) for f in files)}")


# ------------------------------------------------------------------------------------------
# The output directory
# ------------------------------------------------------------------------------------------

def prepare_out_dir(out: Path, *, force: bool = False) -> None:
    """Make sure `out` may be written: absent, empty, ours (a valid marker record) or --force; not a link."""
    check_out_dir(out, marker=MARKER, kind="report", force=force)


def findings_json(findings: pl.DataFrame) -> str:
    """The findings table as a JSON array of row objects, columns in schema order."""
    return json.dumps(FINDINGS.conform(findings).to_dicts(), indent=2, ensure_ascii=False) + "\n"


def schema_markdown() -> str:
    """tables/SCHEMA.md: how to read the Parquet files, then each table's declared columns."""
    head = ("# Tables in this report\n\n"
            "Parquet files written by `netdiag analyze`; the column types and meanings below come from "
            "`netdiag/schema.py`. Read them with polars (`pl.read_parquet('tables/logons.parquet')`) or "
            "DuckDB (`SELECT * FROM 'tables/logons.parquet'`). Timestamps are int64 nanoseconds since the "
            "epoch (UTC); `conn_id` joins every table to `connections`; frame numbers open in Wireshark "
            "with `frame.number == N`.\n\n")
    return head + "\n".join(t.markdown() for t in TABLES.values())


def write_outputs(analysis: Analysis, out: Path | StagedDir, *, force: bool = False) -> list[Path]:
    """Write report.html, report.md, findings.json, tables/ and the marker, then put the directory in place.

    `out` is the target directory (checked and staged here) or a StagedDir made earlier. The
    files go into the staging directory; the whole directory replaces the target only when
    every file is written, so a failure anywhere leaves the previous report untouched.
    """
    from netdiag.compare import profile_record
    from netdiag.report.html import render_html
    from netdiag.report.markdown import render_markdown

    stage = out if isinstance(out, StagedDir) else StagedDir(Path(out), marker=MARKER, kind="report", force=force,
                                                              output_names=REPORT_FILES)
    with stage:
        frames = {"connections": analysis.connections, "transactions": analysis.transactions,
                  "logons": analysis.logons, "findings": analysis.findings}
        for name, table in TABLES.items():
            with stage.open(f"tables/{name}.parquet") as fh:
                table.conform(frames[name]).write_parquet(fh)
        stage.write_text("tables/SCHEMA.md", schema_markdown())
        stage.write_text("findings.json", findings_json(analysis.findings))
        stage.write_text("report.md", render_markdown(analysis))
        stage.write_text("report.html", render_html(analysis))
        record = marker_record("report", "netdiag analyze", captures=[Path(p).name for p in analysis.paths],
                               sample=analysis.is_sample,
                               profile=profile_record(analysis.profile))  # compare checks both sides used the same
        return stage.commit(record)


# ------------------------------------------------------------------------------------------
# Small numeric helpers shared by the HTML and Markdown renderers
# ------------------------------------------------------------------------------------------

def percentile(values: pl.Series | np.ndarray, q: float) -> float | None:
    """numpy's linear percentile (what netdiag.logons.population uses), None when empty."""
    arr = np.asarray(values.drop_nulls().to_numpy() if isinstance(values, pl.Series) else values, dtype=float)
    return float(np.percentile(arr, q)) if arr.size else None


__all__ = ["Analysis", "CapturePoint", "analyze", "capture_point", "findings_json", "prepare_out_dir",
           "sample_capture", "schema_markdown", "write_outputs"]
