#!/usr/bin/env python3
"""A hospital morning from real lab captures, at any size, and the check that every fault is still found.

`bench/storm_copies.py` repeats one healthy storm. This one mixes, in time, copies of the lab's
captures of real peers (captures/lab, each made by captures/lab/run.py with one known fault):
mostly the 20-logon storm (20 concurrent logons from one workstation address, as a Citrix
server gives), and every `--fault-every`-th copy one of the fault scenarios in turn (a slow
authenticate, a dropped SYN, server->client and client->server loss, loss before the capture
point, a zero window, Nagle x delayed ACK, a slow and retried DNS, a LOCATION_FORWARD, a
SYSTEM_EXCEPTION retry, a request timeout retry, repeated logons and "switch user" in one
long-running client process, a name-service tool that is not a logon, frames the capture
dropped, 25 ms added each way). Copy k starts k * --shift-s seconds in, its workstation address
10.77.1.20 rewritten to 10.(100 + k >> 16).(k >> 8 & 255).(k & 255): every copy is its own
client, the servers are shared. The copies of one fault scenario are --fault-every x 16 x
--shift-s seconds apart (64 s by default), so they do not meet in one 10 s listen-backlog window.

It streams: a window of output time at a time, whatever --packets (40 M packets, ~13 GB, need
no more memory than 2 M). Beside the capture, OUT.manifest.json lists every copy: scenario,
source file, client address, time shift.

    python bench/lab_mix.py --packets 2000000 --out /tmp/mix_2m.pcap
    python bench/lab_mix.py --check /tmp/mix_2m.pcap [--jobs 2]

`--check` is the correctness test at scale: it analyses the mix, and each source capture alone,
and requires every copy's logons (and its sessions that are not logons) in the mix to be the
source's own, shifted: the same number, start and end, outcome, duration, dominant cause, wait
budget (every category, to the nanosecond), requests, connections and retransmissions. A fault
found in its capture alone is then found in the morning too, and nothing of the other 2 M
packets leaked into it. Exit 1 on a difference.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LAB = Path(__file__).resolve().parent.parent / "captures" / "lab"
CLIENT = bytes([10, 77, 1, 20])
BACKGROUND = "storm"
# lab scenarios with the one workstation 10.77.1.20 and no TLS keys needed
FAULTS = ("slow_auth", "dropped_syn", "loss_s2c", "loss_c2s", "loss_c2s_before_capture", "zero_window",
          "nagle_delayed_ack", "slow_dns", "location_forward", "system_exception_retry", "request_timeout_retry",
          "repeated_logons", "switch_user", "naming_tool", "capture_drops", "added_rtt")
WINDOW_US = 2_000_000      # output time written per step
LINKTYPE_ETHERNET = 1


@dataclass
class Source:
    """One lab capture, split into records: where each starts, its time, where the client's address sits."""

    name: str
    header: bytes
    body: np.ndarray          # the records (uint8), after the 24-byte file header
    at: np.ndarray            # record start offsets in body
    length: np.ndarray        # record lengths (16-byte record header + captured bytes)
    ts_us: np.ndarray         # microseconds since the source's first record
    src_at: np.ndarray        # body offsets of IPv4 source addresses that are the client's
    dst_at: np.ndarray        # ... and destination addresses

    @property
    def duration_us(self) -> int:
        return int(self.ts_us[-1]) if self.ts_us.size else 0


def load(name: str) -> Source:
    """A little-endian microsecond Ethernet pcap of captures/lab, as a Source."""
    path = LAB / f"{name}.pcap"
    raw = path.read_bytes()
    if struct.unpack("<I", raw[:4])[0] != 0xA1B2C3D4 or struct.unpack("<I", raw[20:24])[0] != LINKTYPE_ETHERNET:
        raise SystemExit(f"{path}: expected a little-endian microsecond Ethernet pcap")
    body = np.frombuffer(raw, np.uint8, offset=24).copy()
    at = []
    off = 0
    while off + 16 <= body.size:
        at.append(off)
        off += 16 + int.from_bytes(body[off + 8: off + 12].tobytes(), "little")
    hdr = np.asarray(at, np.int64)
    sec = body[hdr[:, None] + np.arange(4)].view("<u4").astype(np.int64).ravel()
    usec = body[hdr[:, None] + 4 + np.arange(4)].view("<u4").astype(np.int64).ravel()
    ts = sec * 1_000_000 + usec
    if np.any(np.diff(ts) < 0):
        raise SystemExit(f"{path}: records out of time order")
    ipv4 = (body[hdr + 16 + 12] == 0x08) & (body[hdr + 16 + 13] == 0x00)
    client = np.frombuffer(CLIENT, np.uint8)
    src, dst = hdr + 16 + 26, hdr + 16 + 30
    is_src = ipv4 & (body[src[:, None] + np.arange(4)] == client).all(axis=1)
    is_dst = ipv4 & (body[dst[:, None] + np.arange(4)] == client).all(axis=1)
    return Source(name, raw[:24], body, hdr, np.diff(np.r_[hdr, body.size]), ts - ts[0], src[is_src], dst[is_dst])


def address(k: int) -> bytes:
    """The client address of copy k."""
    return bytes([10, 100 + (k >> 16), (k >> 8) & 255, k & 255])


def schedule(packets: int, sources: dict[str, Source], fault_every: int, shift_us: int) -> list[dict]:
    """The copies, in start order, until their packets reach `packets`."""
    copies, total, k, f = [], 0, 0, 0
    while total < packets:
        if fault_every and k % fault_every == fault_every // 2:
            name = FAULTS[f % len(FAULTS)]
            f += 1
        else:
            name = BACKGROUND
        copies.append({"copy": k, "scenario": name, "source": f"captures/lab/{name}.pcap",
                       "client_ip": ".".join(str(b) for b in address(k)), "shift_us": k * shift_us})
        total += sources[name].at.size
        k += 1
    return copies


def write(out: Path, copies: list[dict], sources: dict[str, Source], base_us: int) -> int:
    """Write the copies' records in time order (a copy keeps its own order), a window at a time."""
    starts = np.array([c["shift_us"] for c in copies], np.int64)
    ends = starts + np.array([sources[c["scenario"]].duration_us for c in copies], np.int64)
    written = 0
    cache: dict[int, tuple[memoryview, np.ndarray]] = {}   # the live copies' bytes
    with out.open("wb") as f:
        f.write(sources[BACKGROUND].header)
        t0, last = 0, int(ends.max()) if ends.size else 0
        while t0 <= last:
            t1 = t0 + WINDOW_US
            live = np.flatnonzero((starts < t1) & (ends >= t0))
            keys, pieces = [], []
            for k in live.tolist():
                src = sources[copies[k]["scenario"]]
                lo = int(np.searchsorted(src.ts_us, t0 - starts[k], side="left"))
                hi = int(np.searchsorted(src.ts_us, t1 - starts[k], side="left"))
                if lo < hi:
                    keys.append((src.ts_us[lo:hi] + starts[k], np.full(hi - lo, k, np.int64), np.arange(lo, hi)))
            if keys:
                ts = np.concatenate([x[0] for x in keys])
                cp = np.concatenate([x[1] for x in keys])
                rec = np.concatenate([x[2] for x in keys])
                order = np.lexsort((rec, cp, ts))     # time, then copy, then the copy's own order
                for k in np.unique(cp).tolist():
                    if k not in cache:   # (a copy spans several windows: made once, dropped when done)
                        cache[k] = _copy_bytes(sources[copies[k]["scenario"]], k, base_us + int(starts[k]))
                    pieces.append((k, cache[k]))
                chunk = dict(pieces)
                parts = []
                for c, r in zip(cp[order].tolist(), rec[order].tolist(), strict=True):
                    b, pos = chunk[c]
                    parts.append(b[pos[r]: pos[r + 1]])
                f.write(b"".join(parts))
                written += order.size
            for k in [k for k in cache if ends[k] < t1]:
                del cache[k]
            t0 = t1
    return written


def _copy_bytes(src: Source, k: int, start_us: int) -> tuple[memoryview, np.ndarray]:
    """Copy k's records (the bytes and each record's offset, one past the last too): the source's,
    timestamps moved to start at start_us, the client address rewritten."""
    b = src.body.copy()
    t = start_us + src.ts_us
    b[src.at[:, None] + np.arange(4)] = (t // 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
    b[src.at[:, None] + 4 + np.arange(4)] = (t % 1_000_000).astype("<u4").view(np.uint8).reshape(-1, 4)
    addr = np.frombuffer(address(k), np.uint8)
    b[src.src_at[:, None] + np.arange(4)] = addr
    b[src.dst_at[:, None] + np.arange(4)] = addr
    return memoryview(b.tobytes()), np.r_[src.at, b.size]


# ------------------------------------------------------------------------------------------ check
COMPARED = ("outcome", "dominant_cause", "duration_s", "requests", "connections", "retransmissions")


def _per_client(a, shift_ns: int, client: str) -> tuple[list[tuple], list[tuple]]:  # noqa: ANN001
    """One client's logons and not-logon sessions, times relative to its copy's start."""
    import polars as pl

    from netdiag.schema import BUDGET_COLUMNS

    lg = a.logons.filter(pl.col("client_ip") == client).sort("start_ts_ns")
    rows = [(int(r["start_ts_ns"]) - shift_ns, int(r["end_ts_ns"]) - shift_ns,
             *(r[c] for c in COMPARED), *(r[c] for c in BUDGET_COLUMNS)) for r in lg.iter_rows(named=True)]
    nl = a.not_logons.filter(pl.col("client_ip") == client).sort("start_ts_ns") if a.not_logons.height else a.not_logons
    other = [(int(r["start_ts_ns"]) - shift_ns, r["reason"]) for r in nl.iter_rows(named=True)] if nl.height else []
    return rows, other


def check(path: Path, jobs: int) -> int:
    """Every copy in the mix analysed as its source alone; the number of differences."""
    from netdiag.parallel import run
    from netdiag.pipeline import run as single_pass

    copies = json.loads(path.with_name(path.name + ".manifest.json").read_text())["copies"]
    t = time.perf_counter()
    mix = run([path], jobs=jobs)
    print(f"{path}: analysed in {time.perf_counter() - t:.1f} s ({jobs} job(s)): {mix.logons.height} logons, "
          f"{mix.not_logons.height} other sessions, {mix.findings.height} findings")
    alone = {name: single_pass([LAB / f"{name}.pcap"]) for name in sorted({c["scenario"] for c in copies})}
    differences, found = 0, {}
    t0_ns = _capture_start_ns(path)   # copy 0's first record starts the mix
    for c in copies:
        name = c["scenario"]
        src = alone[name]
        src_start_ns = _capture_start_ns(LAB / f"{name}.pcap")
        want = _per_client(src, src_start_ns, ".".join(str(b) for b in CLIENT))
        got = _per_client(mix, t0_ns + c["shift_us"] * 1000, c["client_ip"])
        if got != want:
            differences += 1
            if differences <= 10:
                print(f"copy {c['copy']} ({name}, {c['client_ip']}): mix {got} != alone {want}")
        else:
            causes = sorted({r[3] for r in want[0] if r[3]})
            found.setdefault(name, [0, causes])[0] += 1
    for name, (n, causes) in sorted(found.items()):
        print(f"  {name}: {n} copies as alone (dominant causes: {', '.join(causes) or 'none'})")
    print(f"{len(copies)} copies, {differences} differences")
    return differences


def _capture_start_ns(path: Path) -> int:
    """The first record's time of a microsecond pcap, in ns."""
    with path.open("rb") as f:
        f.seek(24)
        sec, usec = struct.unpack("<II", f.read(8))
    return (sec * 1_000_000 + usec) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=2_000_000)
    ap.add_argument("--shift-s", type=float, default=0.5)
    ap.add_argument("--fault-every", type=int, default=8, help="every N-th copy is a fault scenario (0: none)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/mix_2m.pcap"))
    ap.add_argument("--check", type=Path, help="analyse this mix and compare every copy with its source alone")
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    if a.check:
        sys.exit(1 if check(a.check, a.jobs) else 0)
    t = time.perf_counter()
    sources = {name: load(name) for name in (BACKGROUND, *FAULTS)}
    copies = schedule(a.packets, sources, a.fault_every, int(round(a.shift_s * 1e6)))
    base_us = int.from_bytes(sources[BACKGROUND].body[:4].tobytes(), "little") * 1_000_000 + \
        int.from_bytes(sources[BACKGROUND].body[4:8].tobytes(), "little")
    n = write(a.out, copies, sources, base_us)
    a.out.with_name(a.out.name + ".manifest.json").write_text(json.dumps(
        {"packets": n, "shift_s": a.shift_s, "fault_every": a.fault_every, "copies": copies}, indent=0))
    print(f"{a.out}: {len(copies)} copies, {n} packets, {a.out.stat().st_size / 1e6:.0f} MB in "
          f"{time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
