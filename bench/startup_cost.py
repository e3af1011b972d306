"""Start-up cost of a netdiag command: CPU seconds (user+sys) and peak RSS of runs on a tiny capture.

    python bench/startup_cost.py [--runs 5] [--pyc] SRC [SRC ...]

Each SRC is a netdiag source tree (a checkout); the runs alternate between them (run 1 of each, then
run 2 of each ...), so a change in the machine's load hits all of them alike. The command is
`python -m netdiag.cli connections captures/crafted/eth_vlan_qinq.pcap --parquet /dev/null` with
PYTHONPATH=SRC, run from SRC. The CPU time is the child's own (os.wait4), so the load of other work
does not count, only its effect on caches. Without --pyc the runs get PYTHONDONTWRITEBYTECODE=1 as
set (netdiag's modules are compiled from source in every run when no __pycache__ exists); with
--pyc bytecode is written on a first, uncounted run and read from then on (an installed netdiag).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

COMMAND = ["-m", "netdiag.cli", "connections", "captures/crafted/eth_vlan_qinq.pcap", "--parquet", "/dev/null"]


def one_run(src: str, env: dict[str, str]) -> tuple[float, float, int]:
    """(user s, sys s, peak RSS MB) of one run of COMMAND in `src`."""
    proc = subprocess.Popen([sys.executable, *COMMAND], cwd=src, env={**env, "PYTHONPATH": src},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{src}: exit {proc.returncode}")
    return usage.ru_utime, usage.ru_stime, usage.ru_maxrss // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", nargs="+", help="netdiag source trees to compare")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pyc", action="store_true", help="write and use __pycache__ (a first run is not counted)")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.pyc:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    srcs = [os.path.abspath(s) for s in args.src]
    for src in srcs:   # numba's kernel cache (and with --pyc the bytecode) is written here, not counted
        one_run(src, env)
    rows: dict[str, list[tuple[float, float, int]]] = {s: [] for s in srcs}
    for _ in range(args.runs):
        for src in srcs:
            rows[src].append(one_run(src, env))
    for src, runs in rows.items():
        cpu = sorted(u + s for u, s, _ in runs)
        print(f"{src}: cpu s {' '.join(f'{u + s:.2f}' for u, s, _ in runs)}  median {cpu[len(cpu) // 2]:.2f}  "
              f"peak RSS MB {min(m for *_, m in runs)}-{max(m for *_, m in runs)}")


if __name__ == "__main__":
    main()
