"""Check that a partitioned run gives the single pass's tables, on every capture in captures/.

    python bench/partitions_identity.py [JOBS ...]     # default: 2 3

Every capture under captures/ is analysed once with `--jobs 1` (netdiag.pipeline.run) and once
per JOBS with that many partitions in worker processes (netdiag.parallel.run); connections,
segments, transactions, logons and findings must be equal frame for frame (names, types,
values, row order), and so must the warnings, notes and stream counts. Prints each difference
and the count; exit 1 on any.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = {".pcap", ".pcapng", ".cap", ".gz"}
TABLES = ("connections", "segments", "transactions", "logons", "findings")


def captures() -> list[Path]:
    """Every capture file under captures/, sorted."""
    return sorted(p for p in (ROOT / "captures").rglob("*") if p.is_file() and p.suffix in SUFFIXES)


def differences(path: Path, jobs: int) -> list[str]:
    """What differs between the single pass and `jobs` partitions on one capture (empty: nothing)."""
    from netdiag.parallel import run
    from netdiag.pipeline import run as single

    def attempt(fn, **kw):  # noqa: ANN001, ANN202
        try:
            return fn([path], **kw)
        except Exception as exc:  # noqa: BLE001 - an error is a result to compare
            return f"{type(exc).__name__}: {exc}"

    one, many = attempt(single), attempt(run, jobs=jobs)
    if isinstance(one, str) or isinstance(many, str):
        if isinstance(one, str) and isinstance(many, str):
            return [] if one == many else [f"single pass {one!r}, partitions {many!r}"]
        return [f"single pass: {one if isinstance(one, str) else 'tables'}; "
                f"partitions: {many if isinstance(many, str) else 'tables'}"]
    out = []
    for name in TABLES:
        a, b = getattr(one, name), getattr(many, name)
        if a is None or b is None:
            if (a is None) != (b is None):
                out.append(f"{name}: one side has none")
            continue
        try:
            assert_frame_equal(a, b)
        except AssertionError as exc:
            out.append(f"{name}: {str(exc).splitlines()[0]}")
    # (tls_quiet_rows are row numbers into one pipeline's own messages: internal, left out)
    if replace(one.stream_stats, tls_quiet_rows=[]) != replace(many.stream_stats, tls_quiet_rows=[]):
        out.append(f"stream_stats: {one.stream_stats!r} != {many.stream_stats!r}")
    for name in ("warnings", "notes", "fragments_skipped", "truncated_headers", "no_logons_reason",
                 "orphan_connections", "unassigned_requests"):
        if getattr(one, name) != getattr(many, name):
            out.append(f"{name}: {getattr(one, name)!r} != {getattr(many, name)!r}")
    if not one.not_logons.equals(many.not_logons):
        out.append("not_logons differ")
    for key, view in one.population.items():
        other = many.population.get(key)
        if not isinstance(view, pl.DataFrame) or other is None or not view.equals(other):
            out.append(f"population[{key}] differs")
    return out


def main(argv: list[str]) -> int:
    """Compare every capture at each JOBS; print differences and the count."""
    jobs_list = [int(a) for a in argv] or [2, 3]
    bad = 0
    caps = captures()
    for cap in caps:
        for jobs in jobs_list:
            for d in differences(cap, jobs):
                bad += 1
                print(f"{cap.relative_to(ROOT)} --jobs {jobs}: {d}", flush=True)
    print(f"{len(caps)} captures x jobs {jobs_list}: {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
