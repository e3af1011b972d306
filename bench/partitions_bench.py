"""Where the time of a partitioned run goes: CPU seconds per step, --jobs 1 against --jobs N.

    python bench/partitions_bench.py CAPTURE [--jobs 2]

Runs the capture once as the single pass, step by step (read, connections+transactions feed,
finish, logon grouping, the rest of the logons stage), and once with N partitions in worker
processes (read+scatter in the driver, feed and finish per partition, merge, grouping per
partition, the rest), in this process; prints the CPU seconds of each step (process time, so a
busy machine inflates them less than wall time) and the wall time an idle machine with C cores
would need by the critical path:

    T(C) = max(read+scatter, sum(feed) / C) + max(finish) + merge + split + sum(grouping) / C + rest

It also checks that the two runs' tables are identical. The wall-clock comparison of the
commands themselves is `/usr/bin/time -v netdiag logons CAPTURE --jobs 1|2` (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def single_pass_costs(path: Path) -> tuple[dict[str, float], object]:
    """CPU seconds of each step of the single pass, and its Analysis."""
    from netdiag.capture import ReadStats, iter_chunks
    from netdiag.logons.grouping import group_logons
    from netdiag.logons.resends import delivered_answers
    from netdiag.pipeline import Pipeline, Stage, complete, no_cyclic_gc

    c = {"read": 0.0, "feed": 0.0}
    t0 = time.perf_counter()
    stats = ReadStats()
    pipe = Pipeline(None, stage=Stage.LOGONS, paths=[path], read_stats=stats)
    with no_cyclic_gc():
        it = iter_chunks([str(path)], stats=stats)
        while True:
            x = time.process_time()
            chunk = next(it, None)
            c["read"] += time.process_time() - x
            if chunk is None:
                break
            x = time.process_time()
            pipe.feed(chunk)
            c["feed"] += time.process_time() - x
        x = time.process_time()
        a = pipe.finish_streams()
        c["finish"] = time.process_time() - x
        x = time.process_time()
        g = group_logons(a.connections, delivered_answers(a.transactions, a.segments), a.profile)
        c["grouping"] = time.process_time() - x
    x = time.process_time()
    a = complete(a, t0, g)
    c["rest"] = time.process_time() - x
    c["wall"] = time.perf_counter() - t0
    return c, a


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    from polars.testing import assert_frame_equal

    from netdiag.parallel import run

    one, a1 = single_pass_costs(args.capture)
    t = time.perf_counter()
    a2 = run([args.capture], jobs=args.jobs)
    wall = time.perf_counter() - t
    k = a2.costs
    parts = k["partitions"]
    feed = [p["feed_cpu"] for p in parts]
    fin = [p["finish_cpu"] for p in parts]
    grp = k["grouping_per_partition_cpu"]
    many = {"read_scatter": k["read_scatter_cpu"], "feed_per_partition": feed, "finish_per_partition": fin,
            "merge": k["merge_cpu"], "grouping_split": k["grouping_split_cpu"], "grouping_per_partition": grp,
            "rest": k["logons_rest_cpu"], "wall": wall, "packets_per_partition": [p["packets"] for p in parts]}
    for name in ("connections", "segments", "transactions", "logons", "findings"):
        assert_frame_equal(getattr(a1, name), getattr(a2, name))
    t1 = one["read"] + one["feed"] + one["finish"] + one["grouping"] + one["rest"]

    def predicted(cores: int) -> float:
        return (max(many["read_scatter"], sum(feed) / cores) + max(fin) + many["merge"] + many["grouping_split"]
                + sum(grp) / cores + many["rest"])

    print(json.dumps({"single_pass_cpu_s": one, "partitions_cpu_s": many}, indent=1))
    print(f"tables identical; single pass CPU {t1:.1f} s; predicted idle wall with {args.jobs} cores "
          f"{predicted(args.jobs):.1f} s ({t1 / predicted(args.jobs):.2f}x); 16 cores {predicted(16):.1f} s "
          f"({t1 / predicted(16):.2f}x)")


if __name__ == "__main__":
    main()
