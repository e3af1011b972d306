"""The partitions on a dask.distributed cluster (`--engine dask [--scheduler tcp://HOST:8786]`).

Same partitions and merge as netdiag.partitions, different transport. Each partition is one
task: its worker reads the capture files itself from a path every machine sees (a shared
mount), keeps its partition's packets (`Partitioner`), runs the pipeline to its transactions
and writes the tables as Parquet into a scratch directory on the same shared path; only the
file names, the read and stream counts and the seconds go back through the scheduler. The
driver reads the Parquet files, merges them (`merge_partitions`), has the cluster group each
share of client addresses (`group_partition`: those tables travel through the scheduler) and
runs the rest of the logons stage. Without a scheduler a LocalCluster on this machine runs
the tasks. docs/cluster.md has the set-up on several machines.

Every worker reads every file in full (the cluster has no reader to scatter from), so reading
costs once per partition; the analysis after it is split.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl

from netdiag.capture import ReadStats, iter_chunks
from netdiag.errors import PartitionError
from netdiag.partitions import (
    Partitioner,
    PartitionRunner,
    PartitionTables,
    group_partition,
    grouping_work,
    merge_groupings,
    merge_partitions,
    server_port_table,
    split_chunk,
)
from netdiag.pipeline import Analysis, Stage, complete, no_cyclic_gc
from netdiag.profile import Profile

_FRAMES = ("connections", "transactions", "segments", "messages", "gaps")


def partition_task(paths: list[str], index: int, n: int, profile: Profile, stage: Stage, segments: bool,
                   server_ports: set[int] | None, tls_keylog: Any, scratch: str) -> dict[str, Any]:
    """One partition on a worker: read the files, keep partition `index` of `n`, write its tables to `scratch`.

    Returns what the driver needs besides the tables: the Parquet paths, the read statistics,
    the stream counts and the seconds spent."""
    t0 = time.perf_counter()
    lut = server_port_table(profile, server_ports)
    runner = PartitionRunner(index, profile, stage, segments=segments, server_ports=server_ports,
                             tls_keylog=tls_keylog)
    read_stats = ReadStats()
    seq0 = 0
    partitioner = Partitioner(n, lut)   # (every worker reads every packet: they agree on the partitions)
    with no_cyclic_gc():
        for chunk in iter_chunks(paths, stats=read_stats):
            part = partitioner(chunk.packets)
            for k, sub, rows in split_chunk(chunk, part, n):
                if k == index:
                    runner.feed(sub, rows + seq0)
            seq0 += chunk.packets.height
    t = runner.finish()
    out = Path(scratch) / f"part-{index}"
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in _FRAMES:
        df = getattr(t, name)
        if df is not None:
            files[name] = str(out / f"{name}.parquet")
            df.write_parquet(files[name])
    costs = dict(t.costs, read_and_feed=time.perf_counter() - t0)
    return {"index": index, "files": files, "read_stats": read_stats, "stream_stats": t.stream_stats,
            "fragments_skipped": t.fragments_skipped, "truncated_headers": t.truncated_headers,
            "packets": t.packets, "costs": costs}


def _tables(meta: dict[str, Any]) -> PartitionTables:
    """A partition's tables read back from its Parquet files."""
    f = {name: pl.read_parquet(path) for name, path in meta["files"].items()}
    empty = pl.DataFrame()
    return PartitionTables(meta["index"], f["connections"], f.get("transactions", empty), f.get("segments"),
                           f.get("messages", empty), f.get("gaps", empty), meta["stream_stats"],
                           meta["fragments_skipped"], meta["truncated_headers"], meta["packets"], meta["costs"])


def _scratch_dir(paths: list[Path]) -> Path:
    """A fresh directory for the workers' Parquet files: beside the first capture (the shared path the
    workers read from), or the system's temporary directory when that is not writable."""
    base = paths[0] if paths[0].is_dir() else paths[0].parent
    name = f".netdiag-partitions-{uuid.uuid4().hex[:12]}"
    if os.access(base, os.W_OK):
        d = base / name
        d.mkdir()
        return d
    return Path(tempfile.mkdtemp(prefix=name))


def _client(scheduler: str | None, n: int, local: dict[str, Any] | None) -> tuple[Any, Any]:
    """A dask Client on `scheduler`, or on a new LocalCluster of n single-threaded workers (and the cluster)."""
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        return Client(scheduler), None
    kw = {"n_workers": n, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    kw.update(local or {})
    cluster = LocalCluster(**kw)
    return Client(cluster), cluster


def _gather(client: Any, futures: list[Any], what: str) -> list[Any]:
    """The futures' results in order; a failed or lost task is a PartitionError naming its partition."""
    out = []
    n = len(futures)
    for k, fut in enumerate(futures):
        try:
            out.append(fut.result())
        except Exception as exc:  # noqa: BLE001 - a worker's error or a lost worker (KilledWorker)
            why = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise PartitionError(f"partition {k + 1} of {n} failed on the cluster ({what}): "
                                 f"{type(exc).__name__}: {why}; the run has no tables", partition=k) from exc
    return out


def run_dask(paths: list[Path], profile: Profile, stage: Stage, n: int, *, segments: bool = False,
             server_ports: set[int] | None = None, tls_keylog: Any = None, scheduler: str | None = None,
             local_cluster: dict[str, Any] | None = None) -> Analysis:
    """The pipeline on `n` partitions as dask tasks; the same Analysis as one pass (see module docstring).

    `local_cluster`: keyword arguments for the LocalCluster made when there is no scheduler."""
    t0 = time.perf_counter()
    stage = Stage(stage)
    files = [str(Path(p).resolve()) for p in paths]
    scratch = _scratch_dir([Path(f) for f in files])
    client, cluster = _client(scheduler, n, local_cluster)
    costs: dict[str, Any] = {"jobs": n, "engine": "dask"}
    try:
        futures = [client.submit(partition_task, files, k, n, profile, stage, segments, server_ports, tls_keylog,
                                 str(scratch), key=f"netdiag-partition-{k}-{uuid.uuid4().hex[:8]}", pure=False)
                   for k in range(n)]
        metas = _gather(client, futures, "connections and transactions")
        costs["partitions_done"] = time.perf_counter() - t0
        costs["partitions"] = [dict(m["costs"], packets=m["packets"]) for m in metas]
        read_stats: ReadStats = metas[0]["read_stats"]   # every worker read the same files
        t = time.perf_counter()
        a = merge_partitions([_tables(m) for m in metas], paths=paths, profile=profile, stage=stage,
                             read_stats=read_stats)
        costs["merge"] = time.perf_counter() - t
        grouping = None
        if stage >= Stage.LOGONS:
            t = time.perf_counter()
            work, bounds = grouping_work(a, n)
            futures = [client.submit(group_partition, *work[k], bounds, profile, pure=False) for k in range(n)]
            grouping = merge_groupings(_gather(client, futures, "logon grouping"))
            costs["grouping"] = time.perf_counter() - t
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        shutil.rmtree(scratch, ignore_errors=True)
    t = time.perf_counter()
    a = complete(a, t0, grouping)
    costs["logons_rest"] = time.perf_counter() - t
    a.costs = costs
    return a


__all__ = ["partition_task", "run_dask"]
