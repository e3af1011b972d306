"""CLI commands, one module each; every module exposes `register(app)`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from netdiag.parallel import RunOptions

JobsOpt = Annotated[int | None, typer.Option(
    "--jobs", "-j", help="partitions run in parallel, split by client address (default: the cores, and one pass "
                         "for inputs under 64 MB, where starting the workers costs what they save; "
                         "bench/README.md). The tables are the same either way")]
EngineOpt = Annotated[str, typer.Option(
    "--engine", help="where the partitions run: processes (this machine) or dask (a dask.distributed cluster; "
                     "see docs/cluster.md)")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", help="with --engine dask: the scheduler, tcp://HOST:8786 (default: a LocalCluster here)")]


def run_options(jobs: int | None, engine: str, scheduler: str | None) -> RunOptions:
    """The RunOptions of these flags (netdiag.parallel), checked: a bad value is a usage error."""
    from netdiag.errors import UsageError
    from netdiag.parallel import ENGINES, RunOptions

    if engine not in ENGINES:
        raise UsageError(f"--engine {engine}: not one of {', '.join(ENGINES)}")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs {jobs}: must be at least 1")
    if scheduler is not None and engine != "dask":
        raise UsageError("--scheduler needs --engine dask")
    return RunOptions(jobs, engine, scheduler)   # (jobs None: the cores, one pass for a small input)
