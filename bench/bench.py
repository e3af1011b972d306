#!/usr/bin/env python3
"""Time netdiag against tshark and a plain dpkt loop on the same capture (a benchmark, not a test).

Every measurement is a child process run the same way: wall time, user+sys CPU time and peak
RSS from the child's own rusage (os.wait4), best wall time of --repeat runs. packets/s = packets in the file / wall time, so
interpreter start-up and numba's cache load count against netdiag. The ingest child also prints
its in-loop rate (reading every chunk, start-up excluded).

To add a measurement, append a (name, argv) pair in `measurements()`; everything else (timing,
RSS, ratio vs tshark) is shared.

Usage:
  python bench/gen_capture.py                      # writes bench/out/synthetic_2m.pcap (~2 M packets)
  python bench/bench.py [FILE] [--repeat 3] [--only ingest,tshark]
  nice -n -10 python bench/bench.py ...            # (root) what bench/README.md's figures used
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
DEFAULT = HERE.parent / "out" / "synthetic_2m.pcap"


def measurements(capture: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) of every command timed on `capture`; the first must be 'ingest'."""
    py = sys.executable
    out = [
        ("ingest", [py, str(HERE), "--child-ingest", str(capture)]),
        ("dpkt", [py, str(HERE), "--child-dpkt", str(capture)]),
        ("netdiag connections", [py, "-m", "netdiag.cli", "connections", str(capture), "--parquet", os.devnull]),
        ("netdiag transactions", [py, "-m", "netdiag.cli", "transactions", str(capture), "--parquet", os.devnull]),
        ("netdiag sanitize", [py, "-m", "netdiag.cli", "sanitize", str(capture), "--out", str(HERE.parent / "out" / "sanitized"),
                              "--force", "--key-file", _bench_key()]),
        ("netdiag logons", [py, "-m", "netdiag.cli", "logons", str(capture), "--parquet", os.devnull]),
    ]
    if shutil.which("tshark"):
        out.append(("tshark", ["tshark", "-n", "-r", str(capture), "-q", "-z", "conv,tcp"]))
        # the same statistics with every dissector above TCP switched off (identical conv,tcp
        # output on the synthetic captures): tshark at its fastest for this job
        out.append(("tshark L4 only", ["tshark", "-n", "-r", str(capture), "-q", "-z", "conv,tcp",
                                       "--disable-protocol", "ALL", "--enable-protocol", "frame",
                                       "--enable-protocol", "eth", "--enable-protocol", "ip",
                                       "--enable-protocol", "tcp"]))
        # like-for-like for `transactions`: tshark dissects (and reassembles) every GIOP, HTTP and
        # DNS message and prints the fields netdiag's messages table is keyed on, one line each.
        # tshark pairs GIOP replies with requests itself (giop.request_op on the reply) but
        # computes no timings, so this is a lower bound on what tshark would need for the table.
        out.append(("tshark messages", [
            "tshark", "-n", "-r", str(capture), "-d", "tcp.port==9080,http", "-Y", "giop || http || dns",
            "-T", "fields", "-e", "frame.number", "-e", "tcp.stream", "-e", "giop.request_id",
            "-e", "giop.request_op", "-e", "giop.replystatus", "-e", "http.request.method",
            "-e", "http.response.code", "-e", "dns.id"]))
    return out


# which tshark line each measurement is compared with (the "vs tshark" columns)
BASELINE = {"netdiag transactions": "tshark messages", "tshark messages": "tshark messages"}


def _bench_key() -> str:
    """A throw-away sanitising key in bench/out (made once; benchmarks only)."""
    key = HERE.parent / "out" / "bench.key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_text(os.urandom(32).hex() + "\n")
    return str(key)


def run_child(argv: list[str]) -> tuple[float, int, str, float]:
    """(wall seconds, peak RSS bytes, stdout, user+sys CPU seconds) of one run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
    return wall, usage.ru_maxrss * 1024, out.decode(errors="replace"), usage.ru_utime + usage.ru_stime


def child_ingest(path: str) -> None:
    """Read every chunk; print packets and the in-loop rate as JSON."""
    from netdiag.capture import ReadStats, iter_chunks

    warm = HERE.parent.parent / "captures" / "crafted" / "eth_vlan_qinq.pcap"
    if warm.exists():  # load the cached numba kernels outside the timed loop
        list(iter_chunks(warm))
    t0, c0 = time.perf_counter(), time.process_time()
    stats = ReadStats()
    n = 0
    for chunk in iter_chunks(path, stats=stats):
        n += len(chunk.packets)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"packets": stats.packets_read, "kept": n, "loop_s": dt, "loop_cpu_s": cpu,
                      "duplicates": stats.duplicates_removed}))


def child_dpkt(path: str) -> None:
    """The plain-Python baseline: dpkt parses Ethernet/IP/TCP and we touch the TCP fields."""
    import dpkt

    n = total = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            n += 1
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP):
                tcp = ip.data
                total += tcp.seq + tcp.ack + len(tcp.data)
    print(json.dumps({"packets": n}))


def main() -> None:
    ap = argparse.ArgumentParser(description="time netdiag vs tshark vs dpkt on one capture")
    ap.add_argument("capture", nargs="?", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated measurement names")
    ap.add_argument("--child-ingest")
    ap.add_argument("--child-dpkt")
    args = ap.parse_args()
    if args.child_ingest:
        return child_ingest(args.child_ingest)
    if args.child_dpkt:
        return child_dpkt(args.child_dpkt)
    if not args.capture.exists():
        sys.exit(f"{args.capture} not found: run python bench/gen_capture.py first")
    only = {s for s in args.only.split(",") if s}
    size_mb = args.capture.stat().st_size / 1e6
    print(f"capture: {args.capture} ({size_mb:.0f} MB); {os.cpu_count()} CPUs; best of {args.repeat}", flush=True)
    results: dict[str, tuple[float, int, float]] = {}
    packets = None
    for name, argv in measurements(args.capture):
        if only and name not in only and not (name == "ingest" and packets is None):
            continue
        best = None
        for _ in range(args.repeat):
            wall, rss, out, cpu = run_child(argv)
            if best is None or wall < best[0]:
                best = (wall, rss, cpu)
                if name == "ingest":
                    info = json.loads(out.strip().splitlines()[-1])
                    packets = info["packets"]
                    loop, loop_cpu = info["loop_s"], info["loop_cpu_s"]
        results[name] = best
        print(f"  {name}: best {best[0]:.2f} s wall, {best[2]:.2f} s CPU, {best[1] / 1e6:.0f} MB peak RSS", flush=True)
        if name == "ingest":
            print(f"  ingest in-loop (start-up excluded): {loop:.2f} s wall, {loop_cpu:.2f} s CPU: "
                  f"{packets / loop / 1e6:.2f} M packets/s wall, {packets / loop_cpu / 1e6:.2f} per CPU second", flush=True)
    print(f"{'measurement':<22}{'wall s':>9}{'cpu s':>8}{'M pkt/s':>10}{'peak RSS MB':>13}"
          f"{'vs tshark (wall)':>18}{'(cpu)':>8}")
    for name, (wall, rss, cpu) in results.items():
        base = results.get(BASELINE.get(name, "tshark"))
        ratio = f"{base[0] / wall:.1f}x" if base else "-"
        cratio = f"{base[2] / cpu:.1f}x" if base else "-"
        print(f"{name:<22}{wall:>9.2f}{cpu:>8.2f}{packets / wall / 1e6:>10.2f}{rss / 1e6:>13.0f}{ratio:>18}{cratio:>8}")
    print("vs tshark: `netdiag transactions` against `tshark messages`, every other row against "
          "`tshark -z conv,tcp`")
    print(f"(load average at the end: {os.getloadavg()[0]:.1f}; other work on the machine slows every row)")


if __name__ == "__main__":
    main()
