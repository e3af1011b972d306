"""Choosing how to run the pipeline: one pass, partitions on this machine's cores, or a Dask cluster.

`run(paths, jobs=N, engine=...)` returns the same `netdiag.pipeline.Analysis` whichever way it
ran: `jobs=1` is the single pass (netdiag.pipeline.run), `jobs>1` the partitions in worker
processes (netdiag.partitions), `engine="dask"` the partitions on dask.distributed
(netdiag.cluster). The commands that analyse captures take `--jobs` and `--engine` for this.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netdiag.errors import UsageError
from netdiag.pipeline import Analysis, PathsArg, Stage, input_bytes, input_paths
from netdiag.pipeline import run as single_pass
from netdiag.profile import Profile, as_profile
from netdiag.progress import NO_PROGRESS, Advance

ENGINES = ("processes", "dask")
# with --jobs not given, inputs smaller than this run as one pass: starting the worker processes
# (~1-2 s: each imports netdiag and loads its compiled kernels) costs what they save. Measured on
# 2 cores (bench/README.md, partitions): 33 MB 5.4 s either way, 100 MB 12.6 -> 9.9 s, 664 MB 60 -> 41 s
AUTO_MIN_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RunOptions:
    """How to run the pipeline: `jobs` partitions (None: the cores, one pass for a small input),
    on `engine` "processes" (this machine) or "dask" (`scheduler` tcp://HOST:8786, or a LocalCluster)."""

    jobs: int | None = 1
    engine: str = "processes"
    scheduler: str | None = None

    def jobs_for(self, paths: Sequence[Path]) -> int:
        """The partitions for these inputs: `jobs`, or with None the cores (1 below AUTO_MIN_BYTES)."""
        if self.jobs is not None:
            return self.jobs
        if self.engine == "processes" and input_bytes(list(paths)) < AUTO_MIN_BYTES:
            return 1
        return default_jobs()


def default_jobs() -> int:
    """The cores this process may run on (netdiag.partitions, imported only when partitions run)."""
    from netdiag.partitions import default_jobs as cores

    return cores()


def run(paths: PathsArg, profile: Profile | str | os.PathLike[str] | None = None, *, stage: Stage = Stage.LOGONS,
        segments: bool = False, progress: Advance = NO_PROGRESS, server_ports: set[int] | None = None,
        tls_keylog: Any = None, jobs: int | None = 1, engine: str = "processes", scheduler: str | None = None,
        options: RunOptions | None = None, context: str = "spawn", keep_segments: bool = True) -> Analysis:
    """`netdiag.pipeline.run` on `jobs` partitions; the same Analysis.

    jobs=1 is the single pass; None: the cores (one pass below AUTO_MIN_BYTES of input).
    engine="dask" runs the partitions on dask.distributed (a LocalCluster unless `scheduler`
    names one, tcp://HOST:8786). `options` (RunOptions) wins over jobs/engine/scheduler.
    `context` is the multiprocessing start method of the worker processes; `keep_segments` as
    netdiag.pipeline.run. Raises PartitionError (exit 3) when a partition fails.
    """
    if options is not None:
        jobs, engine, scheduler = options.jobs, options.engine, options.scheduler
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine}: not one of {', '.join(ENGINES)}")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    path_list = input_paths(paths)
    prof = as_profile(profile)
    n = RunOptions(jobs, engine, scheduler).jobs_for(path_list)
    if engine == "dask":
        from netdiag.cluster import run_dask  # (dask is imported only when asked for)

        a = run_dask(path_list, prof, stage, n, segments=segments, server_ports=server_ports,
                     tls_keylog=tls_keylog, scheduler=scheduler)
    elif n == 1:
        return single_pass(path_list, prof, stage=stage, segments=segments, progress=progress,
                           server_ports=server_ports, tls_keylog=tls_keylog, keep_segments=keep_segments)
    else:
        from netdiag.partitions import run_processes  # (numba kernels of the scatter, logons grouping)

        a = run_processes(path_list, prof, Stage(stage), n, segments=segments, progress=progress,
                          server_ports=server_ports, tls_keylog=tls_keylog, context=context)
    if not keep_segments:
        a.segments = None   # read by the logons stage; nothing after it needs them (see netdiag.pipeline.run)
    return a

__all__ = ["AUTO_MIN_BYTES", "ENGINES", "RunOptions", "default_jobs", "run"]
