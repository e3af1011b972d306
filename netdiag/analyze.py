"""`netdiag.analyze`: the whole pipeline in one call, and the report directory it writes.

    from netdiag.analyze import analyze
    a = analyze(["switch.pcapng"], profile="site.toml", out="netdiag-report")
    a.logons, a.findings, a.population["budget"], a.capture_point.where

Why a separate module: the report needs more than the tables (capture statistics, what the
capture point is and how we know, warnings, time buckets sized to the capture), and a notebook
user wants the same facts the report shows. The work itself is done once by `netdiag.pipeline`
(capture -> TCP -> transactions -> logons/findings in one pass, with the method facts of
`netdiag.method`); this module runs it and writes the output directory:

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
import os
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import polars as pl

from netdiag.logons.population import percentile  # noqa: F401  (kept importable from here)
from netdiag.method import CapturePoint, bucket_seconds, capture_point
from netdiag.output import StagedDir, check_out_dir, marker_record
from netdiag.parallel import RunOptions, run
from netdiag.pipeline import Analysis, Stage, input_paths, require_packets
from netdiag.profile import Profile, as_profile
from netdiag.progress import NO_PROGRESS, Advance
from netdiag.progress import stage as set_stage
from netdiag.schema import CONNECTIONS, FINDINGS, LOGONS, TRANSACTIONS

MARKER = ".netdiag-report"
TABLES = {"connections": CONNECTIONS, "transactions": TRANSACTIONS, "logons": LOGONS, "findings": FINDINGS}
SAMPLE_NAME = "epj-logon.pcap"
# Names the report directory holds; an existing directory's other entries (a user's notes) are kept.
REPORT_FILES = ("report.html", "report.md", "findings.json", "tables")

PathsArg = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def sample_capture() -> Path:
    """The bundled sample capture (three lab logons, one with a slow `authenticate`)."""
    return Path(str(resources.files("netdiag") / "data" / SAMPLE_NAME))


def analyze(paths: PathsArg | None = None, profile: Profile | str | os.PathLike[str] | None = None,
            out: str | os.PathLike[str] | None = None, progress: Advance = NO_PROGRESS, *,
            force: bool = False, keep_segments: bool = True, options: RunOptions | None = None) -> Analysis:
    """Run the whole pipeline on capture file(s); write the report directory when `out` is given.

    `paths` None analyses the bundled sample capture. `profile` is a Profile, a TOML path or
    None (built-in defaults). A capture without logons is not an error here: the Analysis
    carries `no_logons_reason` and the report says why (TCP health is still reported). Raises
    UsageError for an `out` that may not or cannot be written (before any work) and
    CaptureError when not one packet could be read; then nothing is written.
    `keep_segments=False` drops the segment columns once the logons stage has read them (the
    report does not read them; a case bundle or an evidence excerpt does): less memory per packet.
    `options` (netdiag.parallel.RunOptions): partitions or a cluster; None is one pass.
    """
    t0 = time.perf_counter()
    is_sample = paths is None
    path_list = input_paths([sample_capture()] if paths is None else paths)
    prof = as_profile(profile)
    stage = None
    if out is not None:   # refuse a bad --out and make the staging directory before minutes of work
        stage = StagedDir(Path(out), marker=MARKER, kind="report", force=force, output_names=REPORT_FILES)
    try:
        analysis = run(path_list, prof, stage=Stage.LOGONS, progress=progress, keep_segments=keep_segments,
                       options=options).require_packets()
        analysis.is_sample = is_sample
        analysis.elapsed_s = time.perf_counter() - t0
        if stage is not None:
            set_stage(progress, "writing the report")
            write_outputs(analysis, stage)
    except BaseException:
        if stage is not None:
            stage.abort()
        raise
    return analysis


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


def write_outputs(analysis: Analysis, out: Path | StagedDir, *, force: bool = False,
                  command: str = "netdiag analyze") -> list[Path]:
    """Write report.html, report.md, findings.json, tables/ and the marker, then put the directory in place.

    `out` is the target directory (checked and staged here) or a StagedDir made earlier. The
    files go into the staging directory; the whole directory replaces the target only when
    every file is written, so a failure anywhere leaves the previous report untouched.
    `command` names the writer in the marker (`netdiag watch` refreshes the same directory layout).
    """
    from netdiag.profile import profile_record
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
        record = marker_record("report", command, captures=[Path(p).name for p in analysis.paths],
                               sample=analysis.is_sample,
                               profile=profile_record(analysis.profile))  # compare checks both sides used the same
        return stage.commit(record)


__all__ = ["Analysis", "CapturePoint", "analyze", "bucket_seconds", "capture_point", "findings_json",
           "prepare_out_dir", "require_packets", "sample_capture", "schema_markdown", "write_outputs"]
