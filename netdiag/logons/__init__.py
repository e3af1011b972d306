"""Logons: group each client's logon across connections, account for every second, label the causes.

Public API:

- `analyze_logons(source, profile=None)` -> `netdiag.pipeline.Analysis`: logons, findings,
  population views and the timeline intervals, all from one pass over the capture(s) (the
  pipeline run to its last stage).
- `logons(source, profile=None)` -> the LOGONS table; `findings(source, profile=None)` -> the
  FINDINGS table. Both raise `NoLogonsError` (saying why) when the capture holds no logon.
- `analyze_tables(connections, transactions, segments, profile)` -> `LogonAnalysis`: the same
  from tables already built (pure: no I/O), for notebooks and tests; the stage itself lives in
  `netdiag.logons.stage`.

See docs/logons.md for the method and a worked example.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from netdiag.logons.stage import LogonAnalysis, NoLogonsError, analyze_tables
from netdiag.pipeline import Analysis, PathsArg, run
from netdiag.profile import Profile
from netdiag.progress import NO_PROGRESS, Advance


def analyze_logons(source: PathsArg, profile: Profile | str | Path | None = None, *,
                   progress: Advance = NO_PROGRESS) -> Analysis:
    """Logons, findings and population views from capture file(s), in one pass (`netdiag.pipeline.run`)."""
    return run(source, profile, progress=progress)


def logons(source: PathsArg, profile: Profile | str | Path | None = None) -> pl.DataFrame:
    """The LOGONS table; raises NoLogonsError saying why when there is none."""
    return run(source, profile).require_logons().logons


def findings(source: PathsArg, profile: Profile | str | Path | None = None) -> pl.DataFrame:
    """The FINDINGS table; raises NoLogonsError saying why when there is no logon."""
    return run(source, profile).require_logons().findings


__all__ = ["LogonAnalysis", "NoLogonsError", "analyze_logons", "analyze_tables", "findings", "logons"]
