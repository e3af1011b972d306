"""Partitions: the pipeline on all cores, with the same tables as one pass.

A logon never spans client addresses, so the work splits by client address:

1. Scatter. The capture files are read once, in order (`netdiag.capture.iter_chunks`); each
   packet goes to its client address's partition (`Partitioner`: the client is the side that is
   not on a server port, so both directions of a flow and all flows of one client land in one
   partition; a new address goes to the partition with the fewest packets so far), with its
   payload bytes and its position in the single pass's order.
2. Connections and transactions per partition: one `Pipeline` per partition, in its own worker
   process, run to its transactions stage (`Pipeline.finish_streams`).
3. Merge (`merge_partitions`): connections renumbered in order of their first packet, as one
   pass numbers them, and every conn_id in the other tables mapped alike; rows put in the single
   pass's order (segments by packet order, transactions by request start and frame). Frame
   numbers are Wireshark's across the files: they travel with the packets.
4. Logons: grouping connections into logons is per client address, so each worker groups the
   client addresses of its partition on its own tables as soon as they are made (`group_own`:
   the EPJ servers and the capture's bounds are decided over all partitions' `OwnFacts`, the
   driver merges the tables meanwhile, and `globalise` maps the grouping to the merged ids).
   Should a client address be in two partitions (the partitioner's client is the side off the
   server ports, the tables' is the side that sent the SYN), the merged tables are cut by client
   address instead and each share grouped by a worker (`grouping_work`, `group_partition`).
   The driver merges the groupings (logon ids by start time, as one pass numbers them) and runs
   the rest of the logons stage once (wait budgets, findings over all logons, population views).

`run_processes` runs the partitions in worker processes on this machine (chunks of packets go to
a worker through its pipe; tables and groupings come back as Arrow IPC files in a
scratch directory of the system's temporary directory, removed at the end); netdiag.cluster runs
them on dask.distributed, and netdiag.parallel.run chooses. A worker that raises or dies fails
the run with `PartitionError` (exit 3), naming its partition.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numba import njit

from netdiag.capture import PacketChunk, ReadStats, iter_chunks
from netdiag.errors import PartitionError
from netdiag.logons.chains import epj_server_ips
from netdiag.logons.grouping import Grouping, capture_bounds, group_logons, relevant_connections
from netdiag.logons.resends import delivered_answers
from netdiag.pipeline import STAGE_NAMES, Analysis, Pipeline, Stage, complete, no_cyclic_gc
from netdiag.profile import DEFAULT_PORT_ROLES, Profile
from netdiag.progress import Advance
from netdiag.progress import stage as set_stage
from netdiag.schema import CONNECTIONS, TRANSACTIONS
from netdiag.transactions import StreamStats
from netdiag.transactions.analysis import _tls_warnings

# chunks queued per worker: bounds the driver's memory when a worker is slower than the reader
QUEUE_CHUNKS = 3
# how often a waiting driver looks whether its workers are still alive
POLL_S = 0.5


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# ------------------------------------------------------------------------------------ scatter
def server_port_table(profile: Profile, server_ports: set[int] | None = None) -> np.ndarray:
    """A 65536-entry table: True for the ports servers listen on (the profile's, WebSphere's, DNS)."""
    lut = np.zeros(65536, np.bool_)
    ports = set(DEFAULT_PORT_ROLES) | set(server_ports or ())
    for s in profile.servers:
        ports.update(s.ports)
    for p in ports:
        if 0 <= int(p) < 65536:
            lut[int(p)] = True
    return lut


def client_keys(packets: pl.DataFrame, server_ports: np.ndarray) -> np.ndarray:
    """A 64-bit hash of every packet row's client address (uint64).

    The client is the side whose port is not a server port; when both or neither are, the side
    with the higher port (the ephemeral one), and on equal ports the higher address. The rule
    only looks at the two endpoints, never at which one sent the packet, so both directions of
    a flow get the same key; rows without ports (fragments, other protocols) go by the same
    rule on port 0.
    """
    sh, sl = packets["src_ip_hi"].to_numpy().astype(np.uint64), packets["src_ip_lo"].to_numpy().astype(np.uint64)
    dh, dl = packets["dst_ip_hi"].to_numpy().astype(np.uint64), packets["dst_ip_lo"].to_numpy().astype(np.uint64)
    sp, dp = packets["src_port"].to_numpy().astype(np.int64), packets["dst_port"].to_numpy().astype(np.int64)
    s_srv, d_srv = server_ports[sp], server_ports[dp]
    higher_src = (sp > dp) | ((sp == dp) & ((sh > dh) | ((sh == dh) & (sl >= dl))))
    src_client = (d_srv & ~s_srv) | ((d_srv == s_srv) & higher_src)
    hi, lo = np.where(src_client, sh, dh), np.where(src_client, sl, dl)
    with np.errstate(over="ignore"):
        h = hi * np.uint64(0x9E3779B97F4A7C15) ^ lo * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(29)
    return h


class Partitioner:
    """Which partition (0..n-1) each packet goes to: its client address's, chosen when the address
    is first seen and kept for the rest of the run, so all packets of a client land together.

    A new address goes to the partition with the fewest packets so far (the addresses new in a
    chunk largest first): partitions end up with about the same work however the addresses hash
    (a hash alone left one of 2 partitions 9 % more packets on the storm copies, and the run waits
    for the busiest). Deterministic: the same packets in the same order give the same partitions,
    so dask workers that each read the whole capture agree without talking to each other.
    """

    def __init__(self, n: int, server_ports: np.ndarray) -> None:
        self.n = n
        self.server_ports = server_ports
        self.of: dict[int, int] = {}                 # client key (client_keys) -> partition
        self.load = np.zeros(n, np.int64)           # packets given to each partition so far

    def __call__(self, packets: pl.DataFrame) -> np.ndarray:
        """The partition of every row of this chunk (rows in capture order)."""
        if self.n == 1 or packets.height == 0:
            return np.zeros(packets.height, np.int64)
        keys, inverse, counts = np.unique(client_keys(packets, self.server_ports), return_inverse=True,
                                          return_counts=True)
        of = self.of
        part = np.fromiter((of.get(k, -1) for k in keys.tolist()), np.int64, keys.size)
        known = part >= 0
        self.load += np.bincount(part[known], weights=counts[known], minlength=self.n).astype(np.int64)
        new = np.flatnonzero(~known)
        for i in new[np.argsort(-counts[new], kind="stable")].tolist():
            k = int(np.argmin(self.load))
            part[i] = of[int(keys[i])] = k
            self.load[k] += counts[i]
        return part[inverse.reshape(-1)]


@njit(cache=True)
def _gather_payload(payload, offsets, captured, rows):  # pragma: no cover - numba
    """The payload bytes of `rows` packed into a new buffer, and each row's offset in it (-1: none)."""
    total = 0
    for r in rows:
        if offsets[r] >= 0:
            total += captured[r]
    out = np.empty(total, np.uint8)
    new_off = np.full(rows.size, -1, np.int64)
    pos = 0
    for i in range(rows.size):
        r = rows[i]
        o = offsets[r]
        if o >= 0:
            c = captured[r]
            out[pos:pos + c] = payload[o:o + c]
            new_off[i] = pos
            pos += c
    return out, new_off


def split_chunk(chunk: PacketChunk, part: np.ndarray, n: int) -> list[tuple[int, PacketChunk, np.ndarray]]:
    """(partition, its rows of the chunk with their own payload buffer, their row numbers in the chunk)."""
    order = np.argsort(part, kind="stable")
    edges = np.searchsorted(part[order], np.arange(n + 1))
    offsets = chunk.packets["payload_offset"].to_numpy()
    captured = chunk.packets["payload_captured"].to_numpy().astype(np.int64)
    out = []
    for k in range(n):
        rows = order[edges[k]:edges[k + 1]]
        if rows.size == 0:
            continue
        payload, new_off = _gather_payload(chunk.payload, offsets, captured, rows)
        packets = chunk.packets[rows].with_columns(payload_offset=pl.Series(new_off, dtype=pl.Int64))
        out.append((k, PacketChunk(packets, payload), rows))
    return out


# ------------------------------------------------------------------------------------ one partition
@dataclass
class PartitionTables:
    """What one partition's pipeline made, up to its transactions; `seq` columns give the single pass's order."""

    index: int
    connections: pl.DataFrame           # + `_seq`: position of the connection's first packet in the single pass
    transactions: pl.DataFrame
    segments: pl.DataFrame | None       # + `_seq`: position of the segment's packet
    messages: pl.DataFrame
    gaps: pl.DataFrame
    stream_stats: StreamStats
    fragments_skipped: int = 0
    truncated_headers: int = 0
    packets: int = 0
    costs: dict[str, float] = field(default_factory=dict)   # seconds: feed, finish


class PartitionRunner:
    """One partition's pipeline: `feed(chunk, seq)` its packets, then `finish()` its tables.

    `seq` holds each row's position in the single pass's packet order, so the merge can put
    connections and segments back in that order."""

    def __init__(self, index: int, profile: Profile, stage: Stage, *, segments: bool = False,
                 server_ports: set[int] | None = None, tls_keylog: Any = None) -> None:
        self.index = index
        self.stage = Stage(stage)
        keep = segments or self.stage >= Stage.LOGONS
        self.pipe = Pipeline(profile, stage=min(self.stage, Stage.TRANSACTIONS), segments=keep,
                             server_ports=server_ports, tls_keylog=tls_keylog)
        self._frames: list[np.ndarray] = []
        self._seqs: list[np.ndarray] = []
        self.costs = {"feed": 0.0, "finish": 0.0, "feed_cpu": 0.0, "finish_cpu": 0.0}
        self.packets = 0

    def feed(self, chunk: PacketChunk, seq: np.ndarray) -> None:
        """Run one chunk of this partition's packets (rows in the single pass's order)."""
        t, c = time.perf_counter(), time.process_time()
        self._frames.append(chunk.packets["frame"].to_numpy().astype(np.int64))
        self._seqs.append(np.asarray(seq, np.int64))
        self.packets += chunk.packets.height
        with no_cyclic_gc():
            self.pipe.feed(chunk)
        self.costs["feed"] += time.perf_counter() - t
        self.costs["feed_cpu"] += time.process_time() - c

    def finish(self) -> PartitionTables:
        """Close the partition's connections and streams; its tables with their single-pass order."""
        t, c = time.perf_counter(), time.process_time()
        a = self.pipe.finish_streams()
        frames = np.concatenate(self._frames) if self._frames else np.zeros(0, np.int64)
        seqs = np.concatenate(self._seqs) if self._seqs else np.zeros(0, np.int64)
        by_frame = np.argsort(frames, kind="stable")
        frames, seqs = frames[by_frame], seqs[by_frame]

        def seq_of(f: pl.Series) -> pl.Series:
            return pl.Series("_seq", seqs[np.searchsorted(frames, f.to_numpy().astype(np.int64))], dtype=pl.Int64)

        conns = a.connections.with_columns(seq_of(a.connections["first_frame"])) if a.connections.height else \
            a.connections.with_columns(_seq=pl.lit(None, pl.Int64))
        segs = a.segments
        if segs is not None:
            segs = segs.with_columns(seq_of(segs["frame"]))
        self.costs["finish"] = time.perf_counter() - t
        self.costs["finish_cpu"] = time.process_time() - c
        return PartitionTables(self.index, conns, a.transactions, segs, a.messages, a.gaps, a.stream_stats,
                               a.fragments_skipped, a.truncated_headers, self.packets, dict(self.costs))


def group_partition(connections: pl.DataFrame, transactions: pl.DataFrame, relevant: pl.DataFrame,
                    bounds: tuple[int, int] | None, profile: Profile) -> Grouping:
    """group_logons over some client addresses' share of the merged tables.

    `transactions` carries `_row`, each row's number in the merged (delivered) transactions;
    the grouping's txn_row is mapped back to it."""
    rows = transactions["_row"].to_numpy()
    g = group_logons(connections, transactions.drop("_row"), profile, relevant=relevant, bounds=bounds)
    if g.members.height:
        local = g.members["txn_row"].to_numpy()
        glob = np.where(local >= 0, rows[np.maximum(local, 0)] if rows.size else local, -1)
        g.members = g.members.with_columns(txn_row=pl.Series(glob, dtype=pl.Int64))
    return g


@dataclass(frozen=True)
class OwnFacts:
    """What a partition tells the driver so that it can group its own client addresses: the
    addresses (the grouping is per address only if no address is in two partitions), the
    addresses that serve EPJ traffic and its first and last packet (decided over all partitions)."""

    client_ips: frozenset[str]
    epj_ips: frozenset[str]
    bounds: tuple[int, int] | None


def own_facts(tables: PartitionTables, profile: Profile) -> OwnFacts:
    """The OwnFacts of a partition's tables (its own ids)."""
    conns = tables.connections
    return OwnFacts(frozenset(conns["client_ip"].drop_nulls().unique().to_list()) if conns.height else frozenset(),
                    frozenset(epj_server_ips(conns, tables.transactions, profile)), capture_bounds(conns))


def own_groups(facts: Sequence[OwnFacts]) -> tuple[frozenset[str], tuple[int, int] | None] | None:
    """The EPJ servers and the capture bounds over all partitions, or None when some client
    address is in two partitions (its connections must be grouped together: `grouping_work`)."""
    seen: set[str] = set()
    for f in facts:
        if not seen.isdisjoint(f.client_ips):
            return None
        seen |= f.client_ips
    bounds = [f.bounds for f in facts if f.bounds is not None]
    joined = (min(b[0] for b in bounds), max(b[1] for b in bounds)) if bounds else None
    return frozenset().union(*(f.epj_ips for f in facts)), joined


def group_own(tables: PartitionTables, epj_ips: frozenset[str], bounds: tuple[int, int] | None,
              profile: Profile) -> Grouping:
    """group_logons over a partition's own tables (its own conn ids; txn_row numbers its
    transactions in the merged order, `merge_partitions` puts them in), with the EPJ servers and
    bounds of all partitions: the grouping of its client addresses that one pass makes, once
    `globalise`d."""
    conns = tables.connections.drop("_seq") if "_seq" in tables.connections.columns else tables.connections
    tx = tables.transactions.sort("req_first_ts_ns", "first_frame", nulls_last=True, maintain_order=True)
    tx = delivered_answers(tx, tables.segments)
    rel = relevant_connections(conns, tx, profile, epj_ips=set(epj_ips))
    return group_logons(conns, tx, profile, relevant=rel, bounds=bounds)


def globalise(g: Grouping, conn_ids: np.ndarray, txn_rows: np.ndarray) -> Grouping:
    """A partition's own grouping in the merged tables' ids: conn_id through `conn_ids` (the
    partition's id -> merged id), txn_row through `txn_rows` (its row in merged order -> merged row)."""
    if g.members.height:
        local = g.members["txn_row"].to_numpy()
        rows = np.where(local >= 0, txn_rows[np.maximum(local, 0)] if txn_rows.size else local, -1)
        g.members = g.members.with_columns(
            conn_id=pl.Series(conn_ids[g.members["conn_id"].to_numpy().astype(np.int64)]).cast(pl.UInt32),
            txn_row=pl.Series(rows, dtype=pl.Int64))
    g.not_logons = [{**d, "conn_ids": sorted(int(conn_ids[c]) for c in d["conn_ids"])} for d in g.not_logons]
    return g


# ------------------------------------------------------------------------------------ merge
def merge_partitions(parts: Sequence[PartitionTables], *, paths: Sequence[Any], profile: Profile, stage: Stage,
                     read_stats: ReadStats, ids: dict[str, dict[int, np.ndarray]] | None = None) -> Analysis:
    """The partitions' tables as one pass makes them: ids, order and stats (see module docstring).

    `ids`, when given, receives per partition index how its ids became the merged ones:
    ids["conn"][k][its conn_id] = merged conn_id, ids["txn"][k][i] = the merged row of its i-th
    transaction in merged order (what `globalise` needs)."""
    parts = sorted(parts, key=lambda p: p.index)
    conns = [p.connections.with_columns(_part=pl.lit(p.index, pl.Int64)) for p in parts if p.connections.height]
    remap: dict[int, np.ndarray] = {}
    if conns:
        allc = pl.concat(conns, how="vertical_relaxed").sort("_seq", maintain_order=True)
        new_id = np.arange(allc.height, dtype=np.int64)
        for p in parts:
            sel = (allc["_part"] == p.index).to_numpy()
            old = allc["conn_id"].to_numpy()[sel].astype(np.int64)
            table = np.zeros(int(old.max()) + 1 if old.size else 0, np.int64)
            table[old] = new_id[sel]
            remap[p.index] = table
        connections = CONNECTIONS.conform(allc.with_columns(conn_id=pl.Series(new_id, dtype=pl.UInt32))
                                          .drop("_seq", "_part"))
    else:
        connections = CONNECTIONS.empty()

    def mapped(df: pl.DataFrame, index: int) -> pl.DataFrame:
        if df.height == 0 or "conn_id" not in df.columns:
            return df
        dtype = df.schema["conn_id"]
        ids = remap[index][df["conn_id"].to_numpy().astype(np.int64)]
        return df.with_columns(conn_id=pl.Series(ids).cast(dtype))

    txns = [mapped(p.transactions, p.index).with_columns(_part=pl.lit(p.index, pl.Int64))
            for p in parts if p.transactions.height]
    transactions = (pl.concat(txns, how="vertical_relaxed").sort(
        "req_first_ts_ns", "first_frame", nulls_last=True, maintain_order=True) if txns else TRANSACTIONS.empty())
    if ids is not None:
        ids["conn"] = remap
        of_part = transactions["_part"].to_numpy() if txns else np.zeros(0, np.int64)
        ids["txn"] = {p.index: np.flatnonzero(of_part == p.index) for p in parts}
    if txns:
        transactions = TRANSACTIONS.conform(transactions.drop("_part"))
    segs = [mapped(p.segments, p.index) for p in parts if p.segments is not None and p.segments.height]
    segments = None
    if segs:
        quiet = any("tls_quiet" in s.columns for s in segs)
        if quiet:
            segs = [s if "tls_quiet" in s.columns else s.with_columns(tls_quiet=pl.lit(False)) for s in segs]
        segments = pl.concat(segs, how="vertical_relaxed").sort("_seq", maintain_order=True).drop("_seq")
    msgs = [mapped(p.messages, p.index) for p in parts if p.messages.height]
    messages = (pl.concat(msgs, how="vertical_relaxed").sort("first_ts_ns", "first_frame", maintain_order=True)
                if msgs else parts[0].messages if parts else pl.DataFrame())
    gap_frames = [mapped(p.gaps, p.index) for p in parts if p.gaps.height]
    gaps = pl.concat(gap_frames, how="vertical_relaxed") if gap_frames else (parts[0].gaps if parts else pl.DataFrame())

    stats = StreamStats()
    for p in parts:
        s = p.stream_stats
        for name in ("connections_parsed", "connections_skipped", "messages", "malformed_messages", "gaps",
                     "gap_bytes", "duplicate_bytes", "unmatched_responses", "tls_decrypted_connections"):
            setattr(stats, name, getattr(stats, name) + getattr(s, name))
        for proto, n in s.by_protocol.items():
            stats.by_protocol[proto] = stats.by_protocol.get(proto, 0) + n
        stats.tls_not_decrypted.extend((int(remap[p.index][cid]), why) for cid, why in s.tls_not_decrypted)
    stats.by_protocol = dict(sorted(stats.by_protocol.items()))
    stats.tls_not_decrypted.sort()
    stats.tls_warnings = _tls_warnings(stats.tls_not_decrypted, connections)
    read_stats.warnings.extend(stats.tls_warnings)
    a = Analysis(paths=[str(p) for p in paths], profile=profile, stage=stage, read_stats=read_stats,
                 connections=connections, segments=segments, messages=messages, gaps=gaps, stream_stats=stats,
                 fragments_skipped=sum(p.fragments_skipped for p in parts),
                 truncated_headers=sum(p.truncated_headers for p in parts))
    if stage >= Stage.TRANSACTIONS:
        a.transactions = transactions
    return a


def grouping_work(a: Analysis, n: int) -> tuple[list[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]],
                                                 tuple[int, int] | None]:
    """The merged tables cut by client address into n shares for group_partition, and the capture bounds."""
    tx = delivered_answers(a.transactions, a.segments).with_row_index("_row").with_columns(
        pl.col("_row").cast(pl.Int64))
    rel = relevant_connections(a.connections, tx.drop("_row"), a.profile)
    ips = sorted(set(a.connections["client_ip"].drop_nulls().to_list()))
    share = {ip: i % n for i, ip in enumerate(ips)}
    work = []
    for k in range(n):
        mine = pl.Series([ip for ip in ips if share[ip] == k], dtype=pl.String).implode()
        work.append((a.connections.filter(pl.col("client_ip").is_in(mine)),
                     tx.filter(pl.col("client_ip").is_in(mine)), rel.filter(pl.col("client_ip").is_in(mine))))
    return work, capture_bounds(a.connections)


def merge_groupings(groupings: Sequence[Grouping]) -> Grouping:
    """The groupings of disjoint client addresses as one group_logons over all of them makes it."""
    lgs = [g.logons.with_columns(_part=pl.lit(k, pl.Int64)) for k, g in enumerate(groupings) if g.logons.height]
    members = []
    if lgs:
        lg = pl.concat(lgs, how="vertical_relaxed").sort("start_ts_ns", "client_ip", maintain_order=True)
        lg = lg.with_columns(_new=pl.int_range(pl.len(), dtype=pl.Int64))
        for k, g in enumerate(groupings):
            if g.members.height:
                m = lg.filter(pl.col("_part") == k).select(pl.col("logon_idx").alias("_old"), "_new")
                members.append(g.members.join(m, left_on="logon_idx", right_on="_old", how="left")
                               .with_columns(logon_idx=pl.col("_new")).drop("_new"))
        logons = lg.with_columns(logon_idx=pl.col("_new")).drop("_new", "_part")
    else:
        logons = groupings[0].logons if groupings else pl.DataFrame()
    mem = (pl.concat(members, how="vertical_relaxed").sort("logon_idx", maintain_order=True) if members
           else groupings[0].members)
    not_logons = sorted((d for g in groupings for d in g.not_logons), key=lambda d: d["start_ts_ns"])
    return Grouping(logons, mem, sum(g.orphans for g in groupings),
                    sum(g.relevant_connections for g in groupings), not_logons=not_logons,
                    unassigned_requests=sum(g.unassigned_requests for g in groupings),
                    unassigned_dns=sum(g.unassigned_dns for g in groupings))


# ------------------------------------------------------------------------------------ worker processes
def _worker(index: int, inbox: Any, outbox: Any, scratch: str, profile: Profile, stage: Stage, segments: bool,
            server_ports: set[int] | None, tls_keylog: Any) -> None:
    """A worker process: feed its partition's chunks, send its tables, then group what it is given."""
    kept: PartitionTables | None = None
    try:
        runner = PartitionRunner(index, profile, stage, segments=segments, server_ports=server_ports,
                                 tls_keylog=tls_keylog)
        # The inbox arrives with both ends of its pipe. This worker only reads: were its copy of the
        # write end left open, a driver killed halfway through writing a chunk (megabytes, through a
        # 64 KB pipe) would leave this worker blocked for ever in the read of the rest, as the pipe
        # never reports end-of-file while a writer lives. Closed, that read ends in EOFError.
        inbox._writer.close()
        while True:
            try:
                msg = inbox.get(timeout=POLL_S)
            except queue.Empty:
                if _driver_gone():
                    return _orphaned(outbox, scratch)   # killed: nobody reads what this makes
                continue
            except (EOFError, OSError):
                return _orphaned(outbox, scratch)       # the driver died while writing a message
            if _driver_gone():
                return _orphaned(outbox, scratch)   # (also with chunks still queued: each costs seconds)
            if msg[0] == "chunk":
                runner.feed(PacketChunk(msg[1], msg[2]), msg[3])
            elif msg[0] == "finish":
                tables, runner = runner.finish(), None
                facts = own_facts(tables, profile) if stage >= Stage.LOGONS else None
                outbox.put(("tables", index, (_to_files(tables, _TABLES, Path(scratch), f"part-{index}"), facts)))
                # kept for grouping its own client addresses (the driver says whether it may)
                kept = tables if facts is not None else None
            elif msg[0] in ("group", "group_own"):
                t, c = time.perf_counter(), time.process_time()
                with no_cyclic_gc():
                    if msg[0] == "group_own":
                        g = group_own(kept, msg[1], msg[2], profile)
                    else:
                        kept = None
                        w = _from_files(msg[1], _WORK_TABLES)
                        g = group_partition(w.connections, w.transactions, w.relevant, w.bounds, profile)
                kept = None
                g = _to_files(g, _GROUPING_TABLES, Path(scratch), f"grouping-{index}")
                outbox.put(("grouping", index, (g, time.perf_counter() - t, time.process_time() - c)))
            else:
                return
    except BaseException:  # noqa: BLE001 - everything goes back to the driver, which fails the run
        if _driver_gone():
            _orphaned(outbox, scratch)
        outbox.put(("error", index, traceback.format_exc()))


_TABLES = ("connections", "transactions", "segments", "messages", "gaps")


def _to_files(obj: Any, names: Sequence[str], scratch: Path, tag: str) -> Any:
    """A copy of dataclass `obj` whose DataFrame fields `names` are written to Arrow IPC files in
    `scratch` and replaced by their paths: what crosses a process boundary then is a few paths.
    (Pickled through the pipe, a 2 M-packet capture's tables took seconds to serialise, copy and
    read back; uncompressed IPC files cost a fraction of that.)"""
    files = {}
    for name in names:
        df = getattr(obj, name)
        if isinstance(df, pl.DataFrame):
            path = scratch / f"{tag}-{name}.arrow"
            df.write_ipc(path, compression="uncompressed")
            files[name] = str(path)
    return replace(obj, **files)


def _from_files(obj: Any, names: Sequence[str]) -> Any:
    """`_to_files` undone: the tables read back, each file deleted once read."""
    frames = {}
    for name in names:
        path = getattr(obj, name)
        if isinstance(path, str):
            frames[name] = pl.read_ipc(path)
            os.unlink(path)
    return replace(obj, **frames)


@dataclass
class _GroupWork:
    """One worker's share of the logon grouping (group_partition's arguments but the profile)."""

    connections: Any      # a DataFrame, or the path of its IPC file while in transit
    transactions: Any
    relevant: Any
    bounds: tuple[int, int] | None


_WORK_TABLES = ("connections", "transactions", "relevant")
_GROUPING_TABLES = ("logons", "members")


def _driver_gone() -> bool:
    """Is the process that started this worker dead (killed: it can no longer stop the worker)?"""
    parent = mp.parent_process()
    return parent is not None and not parent.is_alive()


def _orphaned(outbox: Any, scratch: str) -> None:
    """Leave a worker whose driver is dead without waiting to flush the outbox nobody reads, and
    remove the scratch directory the dead driver can no longer remove."""
    outbox.cancel_join_thread()
    shutil.rmtree(scratch, ignore_errors=True)


class _Workers:
    """N worker processes, each with its inbox, and one outbox; every wait checks they are alive."""

    def __init__(self, n: int, args: tuple, context: str) -> None:
        ctx = mp.get_context(context)
        self.n = n
        self.outbox = ctx.Queue()
        self.inboxes = [ctx.Queue(maxsize=QUEUE_CHUNKS) for _ in range(n)]
        # where the workers leave their tables for the driver (removed by close)
        self.scratch = tempfile.mkdtemp(prefix="netdiag-partitions-")
        self.procs = [ctx.Process(target=_worker, args=(k, self.inboxes[k], self.outbox, self.scratch, *args),
                                  daemon=True,
                                  name=f"netdiag-partition-{k}") for k in range(n)]
        for p in self.procs:
            p.start()

    def _check(self, k: int) -> None:
        p = self.procs[k]
        if not p.is_alive():
            self._fail(k, f"its worker process (pid {p.pid}) died with exit code {p.exitcode}")

    def _fail(self, k: int, why: str) -> None:
        raise PartitionError(f"partition {k + 1} of {self.n} failed: {why}; the run has no tables", partition=k)

    def put(self, k: int, msg: tuple) -> None:
        while True:
            self._check(k)
            try:
                self.inboxes[k].put(msg, timeout=POLL_S)
                return
            except queue.Full:
                continue

    def gather(self, kind: str, waiting: set[int]) -> dict[int, Any]:
        got: dict[int, Any] = {}
        while waiting - set(got):
            try:
                what, k, value = self.outbox.get(timeout=POLL_S)
            except queue.Empty:
                for k in sorted(waiting - set(got)):
                    self._check(k)
                continue
            if what == "error":
                self._fail(k, value.strip().splitlines()[-1])
            got[k] = value
        return got

    def close(self, ok: bool) -> None:
        for k, p in enumerate(self.procs):
            if ok and p.is_alive():
                try:
                    self.inboxes[k].put(("stop",), timeout=POLL_S)
                except queue.Full:
                    pass
        for p in self.procs:
            p.join(timeout=2 if ok else 0.1)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
        for q in [*self.inboxes, self.outbox]:
            q.cancel_join_thread()
            q.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def run_processes(path_list: list[Any], prof: Profile, stage: Stage, jobs: int, *, segments: bool,
                   progress: Advance, server_ports: set[int] | None, tls_keylog: Any,
                   context: str = "spawn") -> Analysis:
    """The partitions in `jobs` worker processes (multiprocessing start method `context`), merged."""
    t0 = time.perf_counter()
    lut = server_port_table(prof, server_ports)
    workers = _Workers(jobs, (prof, stage, segments, server_ports, tls_keylog), context)
    ok = False
    costs: dict[str, Any] = {"jobs": jobs}
    try:
        read_stats = ReadStats()
        seq0 = 0
        set_stage(progress, STAGE_NAMES[stage][0])
        t, c = time.perf_counter(), time.process_time()
        partitioner = Partitioner(jobs, lut)
        with no_cyclic_gc():
            for chunk in iter_chunks([str(p) for p in path_list], stats=read_stats, progress=progress):
                part = partitioner(chunk.packets)
                for k, sub, rows in split_chunk(chunk, part, jobs):
                    workers.put(k, ("chunk", sub.packets, sub.payload, rows + seq0))
                seq0 += chunk.packets.height
        costs["read_scatter"], costs["read_scatter_cpu"] = time.perf_counter() - t, time.process_time() - c
        set_stage(progress, STAGE_NAMES[stage][1])
        for k in range(jobs):
            workers.put(k, ("finish",))
        got = workers.gather("tables", set(range(jobs)))
        # each worker groups its own client addresses while the driver merges, unless an address
        # is in two partitions (then the merged tables are cut by address and sent back)
        own = own_groups([got[k][1] for k in range(jobs)]) if stage >= Stage.LOGONS else None
        t_group = time.perf_counter()
        if own is not None:
            for k in range(jobs):
                workers.put(k, ("group_own", *own))
        parts = {k: _from_files(got[k][0], _TABLES) for k in range(jobs)}
        costs["partitions_done"] = time.perf_counter() - t0
        costs["partitions"] = [dict(parts[k].costs, packets=parts[k].packets) for k in range(jobs)]
        t, c = time.perf_counter(), time.process_time()
        ids: dict[str, Any] = {}
        a = merge_partitions(list(parts.values()), paths=path_list, profile=prof, stage=stage, read_stats=read_stats,
                             ids=ids)
        del parts
        costs["merge"], costs["merge_cpu"] = time.perf_counter() - t, time.process_time() - c
        grouping = None
        if own is not None:
            got = workers.gather("grouping", set(range(jobs)))
            none = np.zeros(0, np.int64)
            grouping = merge_groupings([globalise(_from_files(got[k][0], _GROUPING_TABLES),
                                                  ids["conn"].get(k, none), ids["txn"].get(k, none))
                                        for k in range(jobs)])
            costs["grouping"], costs["grouping_mode"] = time.perf_counter() - t_group, "own"
            costs["grouping_per_partition"] = [got[k][1] for k in range(jobs)]
            costs["grouping_per_partition_cpu"] = [got[k][2] for k in range(jobs)]
        elif stage >= Stage.LOGONS:
            t, c = time.perf_counter(), time.process_time()
            work, bounds = grouping_work(a, jobs)
            costs["grouping_split_cpu"], costs["grouping_mode"] = time.process_time() - c, "shares"
            for k in range(jobs):
                share = _GroupWork(*work[k], bounds)
                workers.put(k, ("group", _to_files(share, _WORK_TABLES, Path(workers.scratch), f"work-{k}")))
            got = workers.gather("grouping", set(range(jobs)))
            grouping = merge_groupings([_from_files(got[k][0], _GROUPING_TABLES) for k in range(jobs)])
            costs["grouping"] = time.perf_counter() - t
            costs["grouping_per_partition"] = [got[k][1] for k in range(jobs)]
            costs["grouping_per_partition_cpu"] = [got[k][2] for k in range(jobs)]
        ok = True
    finally:
        workers.close(ok)
    t, c = time.perf_counter(), time.process_time()
    a = complete(a, t0, grouping)
    costs["logons_rest"], costs["logons_rest_cpu"] = time.perf_counter() - t, time.process_time() - c
    a.costs = costs
    return a


__all__ = ["OwnFacts", "PartitionRunner", "PartitionTables", "Partitioner", "client_keys", "default_jobs", "globalise",
           "group_own", "group_partition", "grouping_work", "merge_groupings", "merge_partitions", "own_facts",
           "own_groups", "run_processes", "server_port_table", "split_chunk"]
