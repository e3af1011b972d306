"""Reading one capture file into sorted packet chunks; merging several files in time order.

`FileReader` opens a file (mmap or gzip stream, see source.py), recognises classic pcap or
pcapng by magic, and runs the format's numba walker to find records; `decode_frames` turns each
batch of records into rows straight away (the batch's bytes are only valid until the next
refill). Problems become CaptureWarnings naming the file and frame or byte offset; everything
before the problem is kept.

`iter_file_chunks` yields one file's chunks, each sorted by (ts_ns, frame). `merge_chunks` does
a k-way merge at chunk granularity over several files: files are opened in order of their first
timestamp and only while their time range can interleave with what is pending, so dumpcap
ring buffers (which do not overlap) pass through one file at a time at almost no cost.

A frame whose timestamp is wildly out of line with the frames around it (a clock glitch: year
2106, or years back) is kept, but analysed with the previous frame's time and named in a
warning (`_tame_wild_timestamps`); one such frame would otherwise stretch a logon over decades.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
from numba import njit

from netdiag.capture import decode as d
from netdiag.capture import pcap, pcapng
from netdiag.capture.dedup import mark_duplicates
from netdiag.capture.linktypes import link_type_name
from netdiag.capture.source import Source
from netdiag.errors import CaptureWarning

Warn = Callable[[CaptureWarning], None]

# A frame more than this far from both the frame before it and the frame after it, while those
# two agree with each other, has a broken timestamp. A real pause in the capture moves every
# later frame, so the frame after the pause agrees with its successor and is not flagged.
WILD_TS_NS = 3600 * 10**9
WILD_WARNINGS = 20   # per file; the rest are counted in one more line


@njit(cache=True)
def _tame_wild_timestamps(ts, n, prev, has_prev, limit, wild_idx, wild_ts):  # pragma: no cover - numba
    """Replace wild timestamps in ts[:n] (file order) by the previous frame's; returns (count, prev, has_prev).

    A frame is wild when it is more than `limit` from the last good time and from the next
    frame while those two are within `limit` of each other. The first frame of a file is
    judged by the next two frames; the last frame of a batch (no next frame yet) by the last
    good time alone. Wild frames' indexes and original times go to wild_idx/wild_ts.
    """
    k = 0
    for i in range(n):
        cur = ts[i]
        wild = False
        if has_prev:
            if abs(cur - prev) > limit:
                if i + 1 < n:
                    nxt = ts[i + 1]
                    wild = abs(cur - nxt) > limit and abs(nxt - prev) <= limit
                else:
                    wild = True
        elif i + 2 < n:
            wild = abs(cur - ts[i + 1]) > limit and abs(ts[i + 1] - ts[i + 2]) <= limit
        if wild:
            if k < wild_idx.shape[0]:
                wild_idx[k] = i
                wild_ts[k] = cur
            k += 1
            ts[i] = prev if has_prev else ts[i + 1]
        else:
            prev = cur
            has_prev = True
    return k, prev, has_prev


def _when(ts_ns: int) -> str:
    import datetime as _dt

    try:
        return _dt.datetime.fromtimestamp(ts_ns / 1e9, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{ts_ns} ns since the epoch"


@dataclass
class Batch:
    """Records found by a walker; positions index `buf`, valid until the reader continues."""

    buf: np.ndarray
    base: int
    off: np.ndarray
    cap: np.ndarray
    length: np.ndarray
    ts: np.ndarray
    iface: np.ndarray
    n: int
    iface_link: np.ndarray
    frame0: int


class FileReader:
    """Walks one file's records in batches; set `want` (max records per batch) before each step."""

    def __init__(self, path: str, warn: Warn, *, frame_base: int = 1, capacity: int = 1_000_000) -> None:
        self.path = path
        self.warn = warn
        self.frame_next = frame_base
        self.want = capacity
        self.capacity = capacity
        self.bytes_read = 0
        self.link_types: set[int] = set()
        self.ok = False  # the file was recognised as a capture
        self._unknown_counts: dict[tuple[int, int], list[int]] = {}
        self._prev_ts = 0            # last good timestamp (file order), for _tame_wild_timestamps
        self._has_prev = False
        self.wild_timestamps = 0     # warned about
        self._wild_total = 0

    def _w(self, message: str, *, frame: int | None = None, offset: int | None = None) -> None:
        self.warn(CaptureWarning(message, path=self.path, frame=frame, offset=offset))

    def batches(self) -> Iterator[Batch]:
        try:
            src = Source(self.path)
        except OSError as exc:
            self._w(f"cannot open: {exc.strerror or exc}")
            return
        try:
            if len(src.buf) == 0 and src.eof:
                self._w("empty file: no capture header", offset=0)
                return
            while len(src.buf) < 24 and src.refill(0) >= 0:
                pass
            head = bytes(src.buf[:24])
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                yield from self._pcapng(src)
            elif (hdr := pcap.parse_header(head)) is not None:
                yield from self._pcap(src, hdr)
            elif head[:4] in (b"\xa1\xb2\xcd\x34", b"\x34\xcd\xb2\xa1"):
                self._w("modified (Kuznetzov) pcap format is not supported; convert it with "
                        "`editcap -F pcap IN OUT`", offset=0)
            elif len(head) < 24 and pcap.parse_header(head.ljust(24, b"\0")) is not None:
                self._w(f"truncated pcap file header ({len(head)} of 24 bytes)", offset=0)
            else:
                kind = "gzip data that is" if src.compressed else "file"
                self._w(f"not a capture file: {kind} not pcap or pcapng (first bytes {head[:8].hex(' ')})",
                        offset=0)
            if src.error:  # not already folded into a truncation warning
                self._w(src.error, frame=self.frame_next)
        finally:
            self._report_unknown_links()
            self._report_wild_total()
            src.close()

    # -- classic pcap -----------------------------------------------------------------------
    def _pcap(self, src: Source, hdr: pcap.PcapHeader) -> Iterator[Batch]:
        self.ok = True
        self.link_types.add(hdr.link_type)
        iface_link = np.array([hdr.link_type], np.int64)
        # a wild snaplen must not let a corrupt length make us buffer gigabytes
        max_record = min(max(pcap.MAX_RECORD, hdr.snaplen), 16 << 20)
        warned_snaplen = False
        off, cap, length, ts, iface = self._record_arrays()
        pos = pcap.HEADER_LEN
        while True:
            n, pos, status = pcap.walk_pcap(src.buf, pos, hdr.big_endian, hdr.nanoseconds, self.want,
                                            max_record, off, cap, length, ts)
            if n:
                if hdr.snaplen and not warned_snaplen and int(cap[:n].max()) > hdr.snaplen:
                    k = int(np.argmax(cap[:n] > hdr.snaplen))
                    warned_snaplen = True
                    self._w(f"record of {int(cap[k])} bytes is longer than the file's snaplen "
                            f"{hdr.snaplen}; read anyway", frame=self.frame_next + k, offset=src.base + int(off[k]) - 16)
                yield self._batch(src, off, cap, length, ts, iface, n, iface_link)
            self.bytes_read = src.base + pos
            if status == pcap.ST_FULL:
                continue
            if status in (pcap.ST_END, pcap.ST_INCOMPLETE):
                shift = src.refill(pos)
                if shift >= 0:
                    pos -= shift
                    continue
                if status == pcap.ST_INCOMPLETE:
                    left = len(src.buf) - pos
                    what = "record header" if left < 16 else "record"
                    self._w(f"truncated last {what}: {left} bytes left where a record was expected; "
                            f"{self.frame_next - 1} frames read before it{self._why(src)}",
                            frame=self.frame_next, offset=src.base + pos)
                return
            # ST_TOO_BIG
            big = int(pcap._u32(src.buf, pos + 8, hdr.big_endian))
            self._w(f"record claims {big} captured bytes (snaplen {hdr.snaplen}, limit {max_record}): "
                    f"file is corrupt from here; {self.frame_next - 1} frames read before it",
                    frame=self.frame_next, offset=src.base + pos)
            return

    # -- pcapng -----------------------------------------------------------------------------
    def _pcapng(self, src: Source) -> Iterator[Batch]:
        off, cap, length, ts, iface = self._record_arrays()
        pos = 0
        section: pcapng.Section | None = None
        arrays = pcapng.Section(False).arrays()
        last_ts = np.int64(0)
        bad_iface_warned = False
        while True:
            big = section.big_endian if section else False
            n_if = len(section.interfaces) if section else 0
            n, pos, status, last_ts = pcapng.walk_pcapng(src.buf, pos, big, n_if, arrays[1], arrays[2],
                                                         arrays[3], self.want, last_ts, off, cap, length,
                                                         ts, iface)
            if n:
                yield self._batch(src, off, cap, length, ts, iface, n, arrays[0])
            self.bytes_read = src.base + pos
            if status == pcapng.ST_FULL:
                continue
            if status in (pcapng.ST_END, pcapng.ST_INCOMPLETE):
                shift = src.refill(pos)
                if shift >= 0:
                    pos -= shift
                    continue
                if status == pcapng.ST_INCOMPLETE:
                    left = len(src.buf) - pos
                    self._w(f"truncated last block: {left} bytes left where a block was expected; "
                            f"{self.frame_next - 1} frames read before it{self._why(src)}",
                            frame=self.frame_next, offset=src.base + pos)
                return
            if status == pcapng.ST_BAD_IFACE:
                if not bad_iface_warned:
                    bad_iface_warned = True
                    self._w("packet block names an interface with no Interface Description Block; "
                            "such blocks are skipped", frame=self.frame_next, offset=src.base + pos)
                blen = int(pcapng._u32(src.buf, pos + 4, big))
                pos += blen
                continue
            if status == pcapng.ST_CORRUPT:
                blen = int(pcapng._u32(src.buf, pos + 4, big))
                self._w(f"corrupt pcapng block (type 0x{int(pcapng._u32(src.buf, pos, big)):x}, "
                        f"length {blen}): file is unreadable from here; {self.frame_next - 1} frames "
                        f"read before it", frame=self.frame_next, offset=src.base + pos)
                return
            # ST_BLOCK: a non-packet block at pos; make sure its header is in the buffer
            while len(src.buf) - pos < 12:
                shift = src.refill(pos)
                if shift < 0:
                    break
                pos -= shift
            head = bytes(src.buf[pos:pos + 12])
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                shb = pcapng.parse_shb(head)
                if shb is None:
                    self._w("section header block with a bad byte-order magic: file is unreadable from here",
                            frame=self.frame_next, offset=src.base + pos)
                    return
                big, blen = shb
            elif section is None:
                self._w("pcapng file does not start with a section header block", offset=src.base + pos)
                return
            else:
                blen = int(pcapng._u32(src.buf, pos + 4, big))
            if blen < 12 or blen % 4 or blen > pcapng.MAX_BLOCK:
                self._w(f"corrupt pcapng block length {blen}: file is unreadable from here; "
                        f"{self.frame_next - 1} frames read before it", frame=self.frame_next,
                        offset=src.base + pos)
                return
            while len(src.buf) - pos < blen:
                shift = src.refill(pos)
                if shift < 0:
                    self._w(f"truncated last block ({len(src.buf) - pos} of {blen} bytes)",
                            frame=self.frame_next, offset=src.base + pos)
                    return
                pos -= shift
            block = bytes(src.buf[pos:pos + blen])
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                section = pcapng.Section(big)
                self.ok = True
            else:
                btype = int(pcapng._u32(src.buf, pos, big))
                if btype == pcapng.IDB_TYPE:
                    if blen < 20:
                        self._w("interface description block too short; file is unreadable from here",
                                frame=self.frame_next, offset=src.base + pos)
                        return
                    idb = pcapng.parse_idb(block, big)
                    if idb.bad_option:
                        self._w(f"interface {len(section.interfaces)}: {idb.bad_option}",
                                frame=self.frame_next, offset=src.base + pos)
                    section.interfaces.append(idb)
                    self.link_types.add(idb.link_type)
            arrays = section.arrays()
            pos += blen

    @staticmethod
    def _why(src: Source) -> str:
        """The gzip problem behind a truncation, once (then it is not reported again)."""
        err, src.error = src.error, None
        return f" ({err})" if err else ""

    # -- shared -----------------------------------------------------------------------------
    def _record_arrays(self) -> tuple[np.ndarray, ...]:
        c = self.capacity
        return (np.empty(c, np.int64), np.empty(c, np.uint32), np.empty(c, np.uint32),
                np.empty(c, np.int64), np.zeros(c, np.uint16))

    def _batch(self, src: Source, off, cap, length, ts, iface, n: int, iface_link: np.ndarray) -> Batch:
        frame0 = self.frame_next
        self.frame_next += n
        self._tame(ts, n, frame0)
        # frames on an interface whose link type we cannot decode: count them, warn once each
        unsupported = ~np.isin(iface_link, d.SUPPORTED_LINK_TYPES)
        if unsupported.any():
            hit = unsupported[iface[:n]]
            if hit.any():
                for i in np.unique(iface[:n][hit]):
                    key = (int(i), int(iface_link[i]))
                    idx = np.flatnonzero(iface[:n] == i)
                    got = self._unknown_counts.setdefault(key, [0, frame0 + int(idx[0])])
                    got[0] += len(idx)
        return Batch(src.buf, src.base, off, cap, length, ts, iface, n, iface_link, frame0)

    def _tame(self, ts: np.ndarray, n: int, frame0: int) -> None:
        """Give frames with a wild timestamp the previous frame's time; warn naming each (the first 20)."""
        idx = np.empty(WILD_WARNINGS, np.int64)
        orig = np.empty(WILD_WARNINGS, np.int64)
        k, self._prev_ts, self._has_prev = _tame_wild_timestamps(ts, n, np.int64(self._prev_ts), self._has_prev,
                                                                 np.int64(WILD_TS_NS), idx, orig)
        for j in range(min(int(k), WILD_WARNINGS)):
            if self.wild_timestamps >= WILD_WARNINGS:
                break
            self.wild_timestamps += 1
            self._w(f"timestamp {_when(int(orig[j]))} is far out of line with the frames around it (a clock "
                    f"glitch); the frame is kept but timed as {_when(int(ts[idx[j]]))}, the previous frame's time",
                    frame=frame0 + int(idx[j]))
        self._wild_total += int(k)

    def _report_wild_total(self) -> None:
        if self._wild_total > self.wild_timestamps:
            self._w(f"{self._wild_total - self.wild_timestamps} more frames with a timestamp far out of line with "
                    "their neighbours were timed with the previous frame's time")

    def _report_unknown_links(self) -> None:
        for (i, link), (count, first) in self._unknown_counts.items():
            self._w(f"interface {i} has link type {link} ({link_type_name(link)}), which netdiag cannot "
                    f"decode: its {count} frames are counted but not analysed", frame=first)


@dataclass
class Chunk:
    """A sorted chunk: the packets table and its payload buffer."""

    packets: pl.DataFrame
    payload: np.ndarray


class ChunkBuilder:
    """Preallocated column arrays that batches are decoded into until `capacity` rows."""

    def __init__(self, capacity: int, file_id: int) -> None:
        self.capacity = capacity
        self.file_id = file_id
        self.i64 = np.empty((d.N_I64, capacity), np.int64)
        self.u64 = np.empty((d.N_U64, capacity), np.uint64)
        self.u32 = np.empty((d.N_U32, capacity), np.uint32)
        self.u16 = np.empty((d.N_U16, capacity), np.uint16)
        self.u8 = np.empty((d.N_U8, capacity), np.uint8)
        self.i8 = np.empty((d.N_I8, capacity), np.int8)
        self.payload = np.empty(1 << 16, np.uint8)
        self.pay_src = np.empty(capacity, np.int64)
        self.dup = np.empty(capacity, np.bool_)
        self.counters = np.zeros(d.N_COUNTERS, np.int64)
        self.filling = True  # handed to a file reader; not reusable until finish()

    def reusable(self) -> bool:
        """True when no chunk made from these arrays is alive any more (only we refer to them).

        Reusing them saves fresh pages: first-touch page faults cost more than decoding here.
        """
        # each reference counted here is our attribute plus getrefcount's own argument
        return (not self.filling and sys.getrefcount(self.i64) <= 2 and sys.getrefcount(self.u64) <= 2
                and sys.getrefcount(self.u32) <= 2 and sys.getrefcount(self.u16) <= 2
                and sys.getrefcount(self.u8) <= 2 and sys.getrefcount(self.i8) <= 2
                and sys.getrefcount(self.payload) <= 2)

    def reset(self) -> None:
        self.counters[:] = 0
        self.filling = True

    @property
    def rows(self) -> int:
        return int(self.counters[d.CNT_ROWS])

    @property
    def room(self) -> int:
        return self.capacity - self.rows

    def add(self, b: Batch, dedup: np.ndarray, window_ns: int) -> None:
        used = int(self.counters[d.CNT_PAYLOAD])
        batch_bytes = int(b.cap[:b.n].sum(dtype=np.int64))
        need = used + batch_bytes
        if need > len(self.payload):
            # Size for the whole chunk from this batch's bytes per frame, generously: np.empty does
            # not touch the pages, so unused capacity costs address space, not memory, while every
            # grow-and-copy costs fresh pages and a copy.
            per_frame = batch_bytes / max(b.n, 1)
            estimate = need + int(1.5 * per_frame * max(self.room - b.n, 0))
            grown = np.empty(max(estimate, 2 * len(self.payload), need), np.uint8)
            grown[:used] = self.payload[:used]
            self.payload = grown
        row0 = self.rows
        dup = self.dup[:b.n]
        if window_ns > 0:
            mark_duplicates(b.buf, b.off, b.cap, b.ts, b.n, b.base, dedup, window_ns, dup)
        else:
            dup[:] = False
        d.decode_frames(b.buf, b.off, b.cap, b.length, b.ts, b.iface, b.n, b.iface_link, b.frame0,
                        self.i64, self.u64, self.u32, self.u16, self.u8, self.i8, row0, self.pay_src,
                        used, dup, self.counters)
        d.copy_payloads(b.buf, self.pay_src, self.i64, self.u32, row0, self.rows, self.payload)

    def finish(self) -> Chunk:
        self.filling = False
        r = self.rows
        i64, u64, u32, u16, u8 = self.i64, self.u64, self.u32, self.u16, self.u8
        cols = {
            "frame": i64[d.I64_FRAME, :r],
            "file_id": np.full(r, self.file_id, np.uint16),
            "ts_ns": i64[d.I64_TS, :r],
            "interface_id": u16[d.U16_INTERFACE, :r],
            "link_type": u16[d.U16_LINK_TYPE, :r],
            "frame_len": u32[d.U32_FRAME_LEN, :r],
            "cap_len": u32[d.U32_CAP_LEN, :r],
            "vlan_id": u16[d.U16_VLAN, :r],
            "ip_version": u8[d.U8_IP_VERSION, :r],
            "src_ip_hi": u64[d.U64_SRC_HI, :r],
            "src_ip_lo": u64[d.U64_SRC_LO, :r],
            "dst_ip_hi": u64[d.U64_DST_HI, :r],
            "dst_ip_lo": u64[d.U64_DST_LO, :r],
            "ip_proto": u8[d.U8_PROTO, :r],
            "ip_ttl": u8[d.U8_TTL, :r],
            "ip_id": u16[d.U16_IP_ID, :r],
            "ip_fragment": u8[d.U8_FRAGMENT, :r].view(np.bool_),
            "ip_len": u32[d.U32_IP_LEN, :r],
            "src_port": u16[d.U16_SRC_PORT, :r],
            "dst_port": u16[d.U16_DST_PORT, :r],
            "tcp_flags": u16[d.U16_TCP_FLAGS, :r],
            "tcp_seq": u32[d.U32_SEQ, :r],
            "tcp_ack": u32[d.U32_ACK, :r],
            "tcp_window": u16[d.U16_WINDOW, :r],
            "tcp_mss": u16[d.U16_MSS, :r],
            "tcp_wscale": self.i8[d.I8_WSCALE, :r],
            "tcp_sack_perm": u8[d.U8_SACK_PERM, :r].view(np.bool_),
            "tcp_has_ts": u8[d.U8_HAS_TS, :r].view(np.bool_),
            "tcp_ts_val": u32[d.U32_TS_VAL, :r],
            "tcp_ts_ecr": u32[d.U32_TS_ECR, :r],
            "tcp_sack_blocks": u8[d.U8_SACK_BLOCKS, :r],
            "tcp_sack_left": u32[d.U32_SACK_LEFT, :r],
            "tcp_sack_right": u32[d.U32_SACK_RIGHT, :r],
            "payload_len": u32[d.U32_PAYLOAD_LEN, :r],
            "payload_captured": u32[d.U32_PAYLOAD_CAPTURED, :r],
            "payload_offset": i64[d.I64_PAYLOAD_OFFSET, :r],
        }
        df = pl.DataFrame(cols)
        ts = cols["ts_ns"]
        if r > 1 and bool((ts[1:] < ts[:-1]).any()):
            df = df.sort(["ts_ns", "frame"])
        payload = self.payload[:int(self.counters[d.CNT_PAYLOAD])]
        return Chunk(df, payload)
