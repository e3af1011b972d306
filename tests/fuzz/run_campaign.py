"""The fuzz campaign: many seeded inputs per target, failures kept as regression files.

    PYTHONPATH=$PWD .venv/bin/python tests/fuzz/run_campaign.py --target http --count 1000000
    PYTHONPATH=$PWD .venv/bin/python tests/fuzz/run_campaign.py --target pcap --start 500000 --count 500000

Input i of a target is `targets.make_input(target, seed, i)`: a run from --start for --count
inputs can be split into chunks (and over processes) and gives the same inputs. Every failing
input is written to tests/fuzz/regressions/<target>/<sha1>.bin (replayed by tests/test_fuzz.py)
and a line to --log (JSON: target, seed, index, CPU ms, failure). A summary line per --report
inputs goes to stdout: inputs, failures, inputs/s, slowest input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# one thread each: the campaign runs in parallel processes, and timing is per input
os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz import targets  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True, choices=targets.TARGETS)
    ap.add_argument("--seed", type=int, default=1, help="campaign seed (default 1)")
    ap.add_argument("--start", type=int, default=0, help="first input index")
    ap.add_argument("--count", type=int, default=1_000_000, help="inputs to run")
    ap.add_argument("--report", type=int, default=50_000, help="print a progress line every N inputs")
    ap.add_argument("--log", type=Path, default=None, help="append failures here (JSON lines)")
    ap.add_argument("--no-save", action="store_true", help="do not write regression files")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    c0 = time.process_time()
    seeds = targets.corpus(args.target)
    print(f"{args.target}: {len(seeds)} seeds from captures/ in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    c0 = time.process_time()
    failures = 0
    slowest = (0.0, -1)
    done = 0
    for i in range(args.start, args.start + args.count):
        data = targets.make_input(args.target, args.seed, i)
        cpu, failure = targets.timed_check(args.target, data)
        done += 1
        if cpu > slowest[0]:
            slowest = (cpu, i)
        if failure:
            failures += 1
            path = None if args.no_save else targets.save_regression(args.target, data)
            line = {"target": args.target, "seed": args.seed, "index": i, "cpu_ms": round(cpu * 1e3, 2),
                    "bytes": len(data), "failure": failure, "file": str(path) if path else None}
            print("FAIL", json.dumps(line), flush=True)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps(line) + "\n")
        if done % args.report == 0 or done == args.count:
            wall = time.perf_counter() - t0
            print(f"{args.target} seed {args.seed} inputs {args.start}..{i}: {done} done, {failures} failures, "
                  f"{done / wall:.0f} inputs/s wall, {time.process_time() - c0:.0f} s CPU, {wall:.0f} s wall, "
                  f"slowest {slowest[0] * 1e3:.1f} ms (input {slowest[1]})", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
