"""Pass 1 of the streaming writer: the payload policy run over every TCP direction as it arrives.

Why two passes: a frame's payload policy depends on bytes that may come later (the protocol of
its connection is recognised from the first 256 bytes of both directions; a message that starts
in this frame may end many frames later). `StreamSanitizer` takes the TCP segments of the file in
order, reassembles each direction (`_Dir`: by sequence number, first copy wins, holes given up
after PENDING_LIMIT bytes), chooses the connection's keeper as soon as the bytes seen settle it
(the same choice as the whole-file `choose_keeper`), cuts whole messages with the protocol's own
cutter and keeps only (a) the partial message at the tail of each direction, (b) the kept bytes
("runs": metadata, tens of bytes a message, spooled to a temporary file, 24 bytes of index each)
and (c) a small record per 4-tuple. Pass 2 (netdiag.sanitize.writer) lays the runs over the
zero-filled payloads through `_RunIndex`.
"""

from __future__ import annotations

import io
import re
from array import array
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from netdiag.capture.tcp_flags import TH_FIN, TH_RST, TH_SYN, TH_SYN_ACK, TH_SYN_FIN_RST
from netdiag.sanitize.addresses import AddressMapper
from netdiag.sanitize.keepers.giop import rewrite_iiop_profile
from netdiag.sanitize.kernels import _copy_runs
from netdiag.sanitize.policy import MAX_STREAM_BYTES, SanitizeStats
from netdiag.sanitize.redact import redact_text
from netdiag.sanitize.registry import Keeper, by_port, resyncing, sniffing

LINGER_NS = 120 * 10**9  # a closed connection is finished after this long without a segment
PENDING_LIMIT = 8 * 1024 * 1024  # out-of-order bytes held behind a hole before the hole is given up (zeros)
RUN_GAP = 32  # zero bytes that split the kept bytes of one message into separate runs
REDACTED_MEMO = 16_384  # distinct kept texts whose redaction is remembered (then it starts afresh)


@dataclass
class _Dir:
    """One direction of a TCP connection while pass 1 walks it."""

    sid: int
    base: int | None = None
    buf: bytearray = field(default_factory=bytearray)  # contiguous bytes from buf_off not yet cut
    buf_off: int = 0
    pending: list = field(default_factory=list)  # (offset, bytes) beyond a hole
    pending_bytes: int = 0
    retry: int = 0  # cut again once buf holds this many bytes (a message is still incomplete)
    syn: bool = False
    synack: bool = False
    fin: bool = False

    def add(self, off: int, data: bytes) -> None:
        end = self.buf_off + len(self.buf)
        if off + len(data) <= end:
            return  # a copy of bytes we have (first copy wins)
        if off <= end:
            self.buf += data[end - off:]
            self._drain()
        else:
            self.pending.append((off, data))
            self.pending_bytes += len(data)
            if self.pending_bytes > PENDING_LIMIT:  # the hole is not coming back: zeros, like a capture gap
                self.fill_holes(first_only=True)

    def _drain(self) -> None:
        if not self.pending:
            return
        self.pending.sort(key=lambda p: p[0])
        keep = []
        for off, data in self.pending:
            end = self.buf_off + len(self.buf)
            if off <= end:
                if off + len(data) > end:
                    self.buf += data[end - off:]
            else:
                keep.append((off, data))
        self.pending = keep
        self.pending_bytes = sum(len(d) for _, d in keep)

    def fill_holes(self, first_only: bool = False) -> None:
        """Give up waiting for missing bytes: zeros up to the next piece held (all, at the end)."""
        while self.pending:
            self.pending.sort(key=lambda p: p[0])
            end = self.buf_off + len(self.buf)
            gap = self.pending[0][0] - end
            if gap > 0:
                self.buf += bytes(gap)
            self._drain()
            if first_only:
                return


class _Conn:
    """One TCP connection (one use of a 4-tuple) in pass 1: protocol, parser context, directions."""

    __slots__ = ("dirs", "first_side", "first_ports", "state", "keeper", "ctx", "keep_state", "client_side",
                 "had_data", "closed", "last_ts")

    UNDECIDED, NONE, PROTO, FINAL = 0, 1, 2, 3

    def __init__(self, first_side: int, first_ports: tuple[int, int]) -> None:
        self.dirs: dict[int, _Dir] = {}
        self.first_side = first_side
        self.first_ports = first_ports
        self.state = _Conn.UNDECIDED
        self.keeper: Keeper | None = None
        self.ctx = None
        self.keep_state = None
        self.client_side = first_side
        self.had_data = False
        self.closed = False  # FIN both ways or RST seen: finished once it lingers without segments
        self.last_ts = 0


class StreamSanitizer:
    """Pass 1: the payload policy run over every TCP direction as its segments arrive."""

    def __init__(self, mapper: AddressMapper, stats: SanitizeStats, spool: BinaryIO | None = None) -> None:
        self.mapper = mapper
        self.stats = stats
        self.tracks: dict[tuple, list] = {}  # unordered 4-tuple -> [generation, ISN, _Conn]
        # direction id -> kept runs by offset, flattened (stream offset, spool position, length);
        # the bytes themselves go to `spool` (a temporary file), so memory is 24 bytes a run
        self.runs: dict[int, array] = {}
        self.spool = spool if spool is not None else io.BytesIO()
        self.spool_pos = 0
        self.redacted: dict[bytes, tuple[bytes, int]] = {}  # kept text -> (redacted, CPR numbers in it)
        self.next_sid = 0
        self.closed: list[_Conn] = []  # closed connections not finished yet
        self.latest_ts = 0

    def sweep(self) -> None:
        """Finish closed connections that have had no segment for LINGER_NS of capture time
        (their memory is freed; `segment` applies the same rule, so chunking changes nothing)."""
        still = []
        for conn in self.closed:
            if self.latest_ts - conn.last_ts > LINGER_NS:
                self.finish(conn)
            elif conn.state not in (_Conn.NONE, _Conn.FINAL):
                still.append(conn)
        self.closed = still

    # -- per segment --------------------------------------------------------------------------
    def segment(self, key: tuple, side: int, ports: tuple[int, int], seq: int, flags: int, payload: bytes,
                ts_ns: int = 0) -> tuple[int, int]:
        """Feed one TCP segment; returns (direction id, stream offset) of its payload, or (-1, 0)
        when its payload stays zero."""
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = [0, -1, _Conn(side, ports)]
        if flags & TH_SYN_ACK == TH_SYN:  # a SYN with a new ISN: the next use of these ports (_generation)
            if track[1] == -1:
                track[1] = seq
            elif seq != track[1]:
                self.finish(track[2])
                track[0] += 1
                track[1] = seq
                track[2] = _Conn(side, ports)
        conn: _Conn = track[2]
        if not payload and not flags & TH_SYN_FIN_RST:
            return (-1, 0)  # a pure ACK changes nothing here (`_worth_feeding` relies on it)
        if conn.closed and ts_ns - conn.last_ts > LINGER_NS:
            self.finish(conn)  # segments long after the close are late copies: no new bytes kept
        conn.last_ts = max(conn.last_ts, ts_ns)
        self.latest_ts = max(self.latest_ts, ts_ns)
        d = conn.dirs.get(side)
        if d is None:
            d = conn.dirs[side] = _Dir(self.next_sid)
            self.next_sid += 1
        if flags & TH_SYN and d.base is None:
            d.base = (seq + 1) & 0xFFFFFFFF
        if flags & TH_SYN_ACK == TH_SYN:
            d.syn = True
        elif flags & TH_SYN_ACK == TH_SYN_ACK:
            d.synack = True
        result = (-1, 0)
        n = len(payload)
        if n:
            if d.base is None:
                d.base = seq
            off = (seq - d.base) & 0xFFFFFFFF
            if off < (1 << 31) and off + n <= MAX_STREAM_BYTES:
                if not conn.had_data:
                    conn.had_data = True
                    self.stats.streams += 1
                if conn.state == _Conn.UNDECIDED:
                    d.add(off, payload)
                    result = (d.sid, off)
                    self._decide(conn, final=False)
                elif conn.state == _Conn.PROTO:
                    d.add(off, payload)
                    result = (d.sid, off)
                    self._process(conn, side, final=False)
                elif conn.state == _Conn.FINAL and conn.keeper is not None:
                    result = (d.sid, off)  # a late copy: the runs already cut cover it
        if flags & TH_FIN:
            d.fin = True
        if not conn.closed and (flags & TH_RST or (len(conn.dirs) == 2 and all(x.fin for x in conn.dirs.values()))):
            conn.closed = True  # data may still follow (a server answering into RSTs): finished later
            self.closed.append(conn)
        return result

    def finish_all(self) -> None:
        for track in self.tracks.values():
            self.finish(track[2])

    def finish(self, conn: _Conn) -> None:
        """The connection ended (FIN both ways, RST, a new SYN, or the end of the file)."""
        if conn.state in (_Conn.NONE, _Conn.FINAL):
            return
        for d in conn.dirs.values():
            d.fill_holes()
        if conn.state == _Conn.UNDECIDED:
            self._decide(conn, final=True)
        if conn.state == _Conn.PROTO:
            for side in (conn.client_side, 1 - conn.client_side):
                if side in conn.dirs:
                    self._process(conn, side, final=True)
        if conn.state != _Conn.NONE:
            conn.state = _Conn.FINAL
        for d in conn.dirs.values():
            d.buf, d.pending = bytearray(), []
        conn.ctx = None

    # -- which protocol -----------------------------------------------------------------------
    def _decide(self, conn: _Conn, final: bool) -> None:
        """sanitize_stream_pair's choice, made as soon as the bytes seen settle it."""
        dirs = list(conn.dirs.values())
        first = conn.dirs.get(conn.first_side)
        other = conn.dirs.get(1 - conn.first_side)
        swap = bool(first and first.synack) or (
            not (first and first.syn) and not (other and other.synack) and conn.first_ports[0] < conn.first_ports[1])
        conn.client_side = 1 - conn.first_side if swap else conn.first_side
        server_port = conn.first_ports[0] if swap else conn.first_ports[1]
        keeper = by_port(server_port)
        if keeper is None:
            for k in sniffing():
                seen = [(len(d.buf) >= 256 or final, bool(d.buf) and k.parser.looks_like(bytes(d.buf[:256])))
                        for d in dirs]
                if any(known and yes for known, yes in seen):
                    keeper = k
                    break
                if not all(known for known, _ in seen):
                    return
            if keeper is None:
                keeper = next((k for k in resyncing() if any(k.resync(d.buf[:65536]) for d in dirs)), None)
                if keeper is None and not all(len(d.buf) >= 65536 or final for d in dirs):
                    return
        if keeper is None:
            conn.state = _Conn.NONE
            for d in conn.dirs.values():
                d.buf, d.pending = bytearray(), []
            return
        conn.keeper = keeper
        conn.ctx = keeper.new_context()
        conn.keep_state = keeper.new_state()
        conn.state = _Conn.PROTO
        for side in (conn.client_side, 1 - conn.client_side):
            if side in conn.dirs:
                self._process(conn, side, final=final)

    # -- messages -----------------------------------------------------------------------------
    def _process(self, conn: _Conn, side: int, final: bool) -> None:
        """Cut the complete messages at the head of one direction and keep their runs."""
        d = conn.dirs[side]
        if not d.buf or (not final and len(d.buf) < d.retry):
            return
        direction = 0 if side == conn.client_side else 1
        data = bytes(d.buf)
        pos = 0
        keeper = conn.keeper
        mod = keeper.parser
        while pos < len(data):
            c = mod.cut(data, pos, at_end=final, context=conn.ctx, direction=direction)
            if c.status == "need_more" or c.length <= 0:
                break
            msg = data[pos:pos + c.length]
            if c.status != "malformed" or keeper.framed(msg):
                self._keep_message(conn, d, direction, msg, d.buf_off + pos)
            pos += c.length
        if pos:
            d.buf = d.buf[pos:]  # a new, exact-size buffer: `del` would keep the old capacity
            d.buf_off += pos
        d.retry = 2 * len(d.buf) if d.buf else 0

    def _keep_message(self, conn: _Conn, d: _Dir, direction: int, msg: bytes, at: int) -> None:
        view = bytearray(len(msg))
        profiles: list[tuple[int, int, bool]] = []
        try:
            profiles = conn.keeper.keep(msg, view, conn.ctx, conn.keep_state, direction, self.mapper)
        except Exception:  # noqa: BLE001 - a keeper bug must not leak bytes or stop the run
            view = bytearray(len(msg))
            self.stats.keeper_errors += 1
        # Text (CPR numbers, IP literals) cannot span a zero byte and always holds two digits, a
        # digit-dot-digit or a colon before a hex digit or colon: redact_text runs only on the
        # non-zero runs that hold such a candidate, which equals running it on the whole message.
        used = len(view.rstrip(b"\x00"))  # bodies are zero: the kept bytes sit before this
        done_to = -1
        for m in list(_TEXT_CANDIDATE_RE.finditer(view, 0, used)):
            if m.start() < done_to:
                continue
            a = view.rfind(b"\x00", 0, m.start()) + 1
            e = view.find(b"\x00", m.end())
            e = len(view) if e < 0 else e
            piece = bytes(view[a:e])
            got = self.redacted.get(piece)
            if got is None:  # redact_text is a function of the bytes (and the key): each text once
                clean = bytearray(piece)
                cprs = redact_text(clean, self.mapper)
                got = (bytes(clean), cprs)
                if len(self.redacted) >= REDACTED_MEMO:
                    self.redacted.clear()
                self.redacted[piece] = got
            self.stats.cpr_redacted += got[1]
            view[a:e] = got[0]
            done_to = e
        for a, n, _ in profiles:  # after the text pass: the mapped host must not be mapped twice
            body = rewrite_iiop_profile(msg[a:a + n], view[a:a + n], self.mapper)
            if body is not None:
                view[a:a + n] = body
        if profiles:
            used = len(view.rstrip(b"\x00"))
        runs = None
        for m in _RUN_RE.finditer(view, 0, used):
            if runs is None:
                runs = self.runs.get(d.sid)
                if runs is None:
                    runs = self.runs[d.sid] = array("q")
            blob = m.group()
            runs.extend((at + m.start(), self.spool_pos, len(blob)))
            self.spool.write(blob)
            self.spool_pos += len(blob)


_TEXT_CANDIDATE_RE = re.compile(rb"[0-9]{2}|[0-9]\.[0-9]|:[0-9A-Fa-f:]")
_RUN_RE = re.compile(rb"[^\x00]+(?:\x00{1,%d}[^\x00]+)*" % RUN_GAP)


class RunTable:
    """Every kept run of every direction, found by (direction id, stream offset) in pass 2.

    One sorted key per run, (direction id << 40) | offset (stream offsets stay below
    MAX_STREAM_BYTES < 2**40), so the runs a whole chunk of payload frames needs are found with
    two searchsorted calls and copied from the spooled kept bytes by one numba kernel."""

    def __init__(self, runs: dict[int, array], kept: np.ndarray) -> None:
        sids = sorted(runs)
        parts = [np.frombuffer(runs[s], np.int64).reshape(-1, 3) for s in sids]
        flat = np.concatenate(parts) if parts else np.empty((0, 3), np.int64)
        sid = np.repeat(np.array(sids, np.int64), [len(p) for p in parts])
        self.start, self.where, self.length = flat[:, 0].copy(), flat[:, 1].copy(), flat[:, 2].copy()
        self.kstart = (sid << 40) | self.start
        self.kend = (sid << 40) | (self.start + self.length)
        self.kept = kept

    def overlay(self, out: np.ndarray, at: np.ndarray, sid: np.ndarray, off: np.ndarray, n: np.ndarray) -> None:
        """For each payload frame i: write the kept bytes of stream sid[i] at [off[i], off[i]+n[i])
        to out[at[i]:at[i]+n[i]]."""
        if not len(sid) or not len(self.start):
            return
        lo = np.searchsorted(self.kend, (sid << 40) | off, "right")
        hi = np.searchsorted(self.kstart, (sid << 40) | (off + n), "left")
        cnt = np.maximum(hi - lo, 0)
        rec = np.repeat(np.arange(len(sid)), cnt)
        k = lo[rec] + np.arange(len(rec)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        s = self.start[k]
        a = np.maximum(s, off[rec])
        e = np.minimum(s + self.length[k], off[rec] + n[rec])
        ok = e > a
        _copy_runs(out, (at[rec] + a - off[rec])[ok], self.kept, (self.where[k] + a - s)[ok], (e - a)[ok])
