#!/usr/bin/env python3
"""Does `netdiag watch` keep up with a ring buffer? Packets per second read, and what a refresh costs.

Splits a capture with editcap into dumpcap-named pcapng files (as `dumpcap -b packets:N` would
write them), then drops them one at a time into a watched directory and polls a
`netdiag.watch.Watcher` after each, refreshing OUT as the follower does (`--refresh due`: at most a
quarter of the time goes to refreshes) or after every file (`--refresh always`). Prints
per poll the packets read, the read and refresh seconds, and at the end the sustained rate
(all packets / all wall seconds) and the read-only rate. With `--batch K` a poll sees K new
files (a watcher that fell behind reads several files per refresh). Benchmark, not a test.

Usage: python bench/watch_bench.py CAPTURE [--per-file 100000] [--batch 1] [--work /tmp/watch_bench]
Make a logon-realistic CAPTURE with `python bench/storm_copies.py --packets 2000000 --out /tmp/storm_2m.pcap`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

from netdiag.watch import Watcher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--per-file", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/watch_bench"))
    ap.add_argument("--refresh", choices=("always", "due"), default="due",
                    help="always: a refresh after every poll (--once from cron); due: as the follower does")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    ring, watched, out = args.work / "ring", args.work / "watched", args.work / "out"
    ring.mkdir(parents=True)
    watched.mkdir()
    subprocess.run(["editcap", "-F", "pcapng", "-c", str(args.per_file), str(args.capture), str(ring / "epj.pcapng")],
                   check=True)
    files = sorted(ring.iterdir())
    old = time.time() - 3600
    w = Watcher(watched, out, interval=60)
    total = read = refresh = 0.0
    packets = 0
    print(f"{len(files)} files of {args.per_file:,} packets; a poll every {args.batch} file(s)")
    print("poll  packets  read_s  refresh_s  packets/s(read)")
    for i in range(0, len(files), args.batch):
        for f in files[i:i + args.batch]:
            shutil.copy2(f, watched / f.name)
            os.utime(watched / f.name, (old, old))
        t = time.perf_counter()
        r = w.poll(refresh=args.refresh)
        total += time.perf_counter() - t
        read, refresh, packets = read + r.read_s, refresh + r.refresh_s, packets + r.packets
        print(f"{i // args.batch + 1:4d} {r.packets:8,d} {r.read_s:7.2f} {r.refresh_s:10.2f} "
              f"{r.packets / max(r.read_s, 1e-9):12,.0f}")
    if args.refresh == "due":           # the last files' refresh, as a follower's next due poll writes it
        t = time.perf_counter()
        r = w.poll()
        total += time.perf_counter() - t
        refresh += r.refresh_s
        print(f"final refresh {r.refresh_s:.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"sustained: {packets:,} packets in {total:.1f} s = {packets / total:,.0f} packets/s "
          f"(read {read:.1f} s = {packets / read:,.0f}/s, refreshes {refresh:.1f} s); peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
