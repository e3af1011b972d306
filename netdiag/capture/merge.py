"""Several files in time order, at chunk granularity, with Wireshark's frame numbers.

Frame numbers continue across files in the order given (like `mergecap -a` then Wireshark), so
with several files a quick first pass walks each file's record headers (no decoding) to learn
its frame count and time range. The second pass is a k-way merge of per-file chunk streams:
a file is opened only once the pending data reaches its first timestamp, and rows are released
up to the smallest "last timestamp pending" of the open files. Ring-buffer files that do not
overlap therefore stream one at a time, each chunk passed through untouched.

The survey costs one extra pass over record headers (cheap for plain files; for gzip files it
means decompressing twice). SPAN de-dup works within each file, not across files.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from numba import njit

from netdiag.capture import decode as d
from netdiag.capture.dedup import new_table
from netdiag.capture.linktypes import undecoded_kind
from netdiag.capture.reader import Chunk, ChunkBuilder, FileReader
from netdiag.errors import CaptureWarning
from netdiag.progress import Advance, packets

if TYPE_CHECKING:
    from netdiag.capture import ReadStats


def ensure_file(stats: ReadStats, n: int) -> None:
    """Per-file counters for `n` files (a watcher adds files one at a time)."""
    while len(stats.packets_per_file) < n:
        stats.packets_per_file.append(0)
        stats.duplicates_per_file.append(0)


def file_chunks(path: str, file_id: int, frame_base: int, stats: ReadStats, *, chunk_packets: int, window_ns: int,
                progress: Advance, pool: list[ChunkBuilder] | None = None) -> Iterator[Chunk]:
    """One file's packets as sorted chunks; counts and warnings go to `stats`.

    `pool` holds chunk builders shared between files, so ring-buffer files reuse buffers too."""
    reader = FileReader(path, stats.warnings.append, frame_base=frame_base, capacity=chunk_packets)
    pool = [] if pool is None else pool
    count_packets = packets(progress)   # the progress line's packets and packets/s

    def new_builder() -> ChunkBuilder:
        # double buffering: reuse the arrays of a chunk the consumer has let go of
        for b in pool:
            if b.capacity == chunk_packets and b.reusable():
                b.reset()
                b.file_id = file_id
                return b
        b = ChunkBuilder(chunk_packets, file_id)
        if len(pool) < 2:
            pool.append(b)
        return b

    builder = new_builder()
    dedup = new_table()
    done_bytes = 0

    undecoded: dict[tuple[int, int], list[int]] = {}  # (why, detail) -> [count, first frame]
    clamped = [0, 0]

    def account(b: ChunkBuilder) -> None:
        c = b.counters
        stats.duplicates_removed += int(c[d.CNT_DUPS])
        stats.duplicates_per_file[file_id] += int(c[d.CNT_DUPS])
        stats.non_ip_frames += int(c[d.CNT_NON_IP])
        stats.snaplen_cut_frames += int(c[d.CNT_SNAPCUT])
        stats.tunneled_frames += int(c[d.CNT_TUNNELED])
        if c[d.CNT_IPLEN_CLAMPED]:
            stats.ip_length_clamped_frames += int(c[d.CNT_IPLEN_CLAMPED])
            if not clamped[0]:
                clamped[1] = int(c[d.CNT_IPLEN_FIRST])
            clamped[0] += int(c[d.CNT_IPLEN_CLAMPED])
        for why in range(1, d.N_UD):
            u = d.CNT_UD + 3 * why
            if c[u]:
                stats.undecoded_frames += int(c[u])
                got = undecoded.setdefault((why, int(c[u + 2])), [0, int(c[u + 1])])
                got[0] += int(c[u])

    try:
        for batch in reader.batches():
            builder.add(batch, dedup, window_ns)
            stats.packets_read += batch.n
            stats.packets_per_file[file_id] += batch.n
            count_packets(batch.n)
            if reader.bytes_read > done_bytes:
                progress(reader.bytes_read - done_bytes)
                done_bytes = reader.bytes_read
            if builder.room == 0:
                account(builder)
                chunk = builder.finish()
                yield chunk
                del chunk
                builder = new_builder()
            reader.want = builder.room
        if builder.rows or builder.counters.any():
            account(builder)
        if builder.rows:
            yield builder.finish()
        else:
            builder.filling = False  # nothing in it: free for the next file
    finally:
        for (why, detail), (count, first) in sorted(undecoded.items(), key=lambda kv: kv[1][1]):
            stats.warnings.append(CaptureWarning(
                f"{count} frame(s) with {undecoded_kind(why, detail)}: counted but not analysed", path=path,
                frame=first))
        if clamped[0]:
            stats.warnings.append(CaptureWarning(
                f"{clamped[0]} frame(s) whose IP header claims more bytes than the frame had on the wire: "
                "counted with the frame's length, as Wireshark does", path=path, frame=clamped[1]))
        stats.bytes_read += reader.bytes_read
        stats.link_types = sorted(set(stats.link_types) | reader.link_types)


@dataclass
class _FileInfo:
    file_id: int
    path: str
    frame_base: int
    count: int
    first_ts: int
    last_ts: int


def _survey(path: str, chunk_packets: int) -> tuple[int, int, int]:
    """(frames, first ts, last ts) of a file from its record headers only; warnings are ignored here."""
    reader = FileReader(path, lambda w: None, capacity=min(chunk_packets, 1 << 18))
    count, lo, hi = 0, 2**63 - 1, -(2**63)
    for b in reader.batches():
        ts = b.ts[:b.n]
        count += b.n
        lo, hi = min(lo, int(ts.min())), max(hi, int(ts.max()))
    return count, lo, hi


@njit(cache=True)
def _gather_payload(payload, offsets, lengths, out, new_offsets):
    pos = 0
    for i in range(offsets.shape[0]):
        o = offsets[i]
        if o < 0:
            new_offsets[i] = -1
            continue
        n = lengths[i]
        for k in range(n):
            out[pos + k] = payload[o + k]
        new_offsets[i] = pos
        pos += n
    return pos


def _combine(parts: list[Chunk]) -> Chunk:
    """Rows of several chunks in one chunk, payload compacted, sorted by (ts_ns, frame)."""
    parts = [p for p in parts if len(p.packets)]
    if len(parts) == 1:
        return parts[0]
    frames, payloads, shift = [], [], 0
    for p in parts:
        offs = p.packets["payload_offset"].to_numpy()
        lens = p.packets["payload_captured"].to_numpy()
        out = np.empty(int(lens.sum(dtype=np.int64)), np.uint8)
        new = np.empty(len(offs), np.int64)
        _gather_payload(p.payload, offs, lens, out, new)
        new = np.where(new >= 0, new + shift, -1)
        frames.append(p.packets.with_columns(pl.Series("payload_offset", new, dtype=pl.Int64)))
        payloads.append(out)
        shift += len(out)
    df = pl.concat(frames).sort(["ts_ns", "frame"])
    return Chunk(df, np.concatenate(payloads))


def read_all(files: list[str], stats: ReadStats, *, chunk_packets: int, window_ns: int,
             progress: Advance) -> Iterator[Chunk]:
    """All files' chunks in time order (one file: its chunks as they come)."""
    stats.files = list(files)
    ensure_file(stats, len(files))
    if len(files) == 1:
        yield from file_chunks(files[0], 0, 1, stats, chunk_packets=chunk_packets, window_ns=window_ns,
                               progress=progress)
        return
    infos: list[_FileInfo] = []
    base = 1
    for i, path in enumerate(files):
        count, lo, hi = _survey(path, chunk_packets)
        infos.append(_FileInfo(i, path, base, count, lo, hi))
        base += count

    pool: list[ChunkBuilder] = []

    def stream(info: _FileInfo) -> Iterator[Chunk]:
        return file_chunks(info.path, info.file_id, info.frame_base, stats, chunk_packets=chunk_packets,
                           window_ns=window_ns, progress=progress, pool=pool)

    # files with no frames still run once, so their warnings are reported
    for info in infos:
        if info.count == 0:
            for _ in stream(info):
                pass
    unopened = sorted((i for i in infos if i.count), key=lambda i: (i.first_ts, i.file_id))
    active: list[list] = []  # [iterator, pending Chunk]

    def pull(entry: list) -> bool:
        for chunk in entry[0]:
            if len(chunk.packets):
                entry[1] = chunk
                return True
        return False

    while True:
        while unopened:
            bound = min((int(e[1].packets["ts_ns"][-1]) for e in active), default=None)
            if bound is not None and unopened[0].first_ts > bound:
                break
            entry = [stream(unopened.pop(0)), None]
            if pull(entry):
                active.append(entry)
        if not active:
            return
        bound = min(int(e[1].packets["ts_ns"][-1]) for e in active)
        parts = []
        for e in active:
            pending: Chunk = e[1]
            ts = pending.packets["ts_ns"].to_numpy()
            k = int(np.searchsorted(ts, bound, side="right"))
            if k == len(ts):
                parts.append(pending)
                e[1] = None
            elif k:
                parts.append(Chunk(pending.packets.slice(0, k), pending.payload))
                e[1] = Chunk(pending.packets.slice(k), pending.payload)
        yield _combine(parts)
        still = []
        for e in active:
            if e[1] is not None or pull(e):
                still.append(e)
        active = still
