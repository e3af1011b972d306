"""TCP byte-stream reassembly: each direction's payload as the receiver got it, with its timing.

What it does, per connection and direction:

- Bytes are placed at their stream offset (``seq_rel - 1``: relative sequence 1 is the first data
  byte, as in Wireshark's relative numbering, with or without a captured SYN).
- **First copy wins**: a byte already placed is never overwritten, so retransmissions do not
  duplicate bytes and an overlapping resend carrying different bytes does not change the stream
  (RFC 9293 §3.10.7.4 leaves overlap policy to the receiver; first-wins is what Linux and
  Windows receivers keep for data already queued, and what Wireshark's reassembly shows).
- Out-of-order segments are placed where they belong; parsing only advances over bytes that are
  contiguous from the parse position (the *frontier*).
- A hole at the frontier becomes a **gap** (bytes never captured) when the peer acknowledged
  bytes past it (the receiver had them, the capture did not: a SPAN drop), when more than
  `HOLE_LIMIT_BYTES` wait behind it, or when the capture ends. Gaps are recorded per direction and
  the parser resynchronises after them (the driver, netdiag.transactions, does that).
- Timing is kept per *piece* (a run of bytes that became known from one segment): when it was
  first seen and in which frame. A message's first/last byte times and frames are then a
  `searchsorted` over piece boundaries, vectorised over all messages of a step
  (`StreamDir.timing`). Time lost to resends is not computed here but from the analyzer's
  retransmission flags (see netdiag.transactions), because a resend can come after the message
  was already complete at the capture point.
- Memory is bounded by unparsed bytes: the driver advances `pos` and `compact()` drops consumed
  bytes and pieces. Per-packet work (copying bytes, first-copy-wins) runs in a numba kernel.

Everything here is in-memory state for one analysis; there is no I/O.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# A direction never buffers more than this many bytes past its parse position. A segment that
# would need more (a sequence jump from a capture gap of this size, or a lying sequence number)
# makes the driver declare a gap up to that segment instead of allocating the difference.
WINDOW_LIMIT_BYTES = 128 * 1024 * 1024
# Bytes waiting behind a hole before the hole is declared a gap even without an ACK past it.
HOLE_LIMIT_BYTES = 8 * 1024 * 1024

_I64 = np.int64


@njit(cache=True)
def _place_kernel(buf, filled, base, offs, lens, poffs, payload, ts, frames, high):  # pragma: no cover - numba
    """Copy segment bytes into `buf` where not yet filled (first copy wins); return new pieces.

    offs/lens are stream offsets and captured lengths, poffs offsets into `payload`. Bytes before
    `base` (already consumed) are ignored. `high`: the end of the highest byte placed before;
    nothing at or above it is filled, so a segment there (the usual in-order case) is copied
    whole without looking at `filled` byte by byte. Returns (start, end, ts, frame) arrays of
    the byte runs that became known, in segment order.
    """
    n = offs.shape[0]
    cap = n + 16
    ps = np.empty(cap, np.int64)
    pe = np.empty(cap, np.int64)
    pt = np.empty(cap, np.int64)
    pf = np.empty(cap, np.int64)
    k = 0
    for i in range(n):
        s = offs[i]
        e = s + lens[i]
        if e <= base or lens[i] <= 0:
            continue
        j = s if s > base else base
        while j < e:
            if j >= high:          # nothing placed here yet: the rest of the segment is one run
                r0 = j
                j = e
            else:
                while j < e and filled[j - base] != 0:
                    j += 1
                if j >= e:
                    break
                r0 = j
                while j < e and filled[j - base] == 0 and j < high:
                    j += 1
                if j == high:      # the run goes on past the old high: all of it is new
                    j = e
            buf[r0 - base: j - base] = payload[poffs[i] + (r0 - s): poffs[i] + (j - s)]
            filled[r0 - base: j - base] = 1
            if j > high:
                high = j
            if k == cap:
                cap *= 2
                ps2 = np.empty(cap, np.int64)
                pe2 = np.empty(cap, np.int64)
                pt2 = np.empty(cap, np.int64)
                pf2 = np.empty(cap, np.int64)
                ps2[:k] = ps[:k]
                pe2[:k] = pe[:k]
                pt2[:k] = pt[:k]
                pf2[:k] = pf[:k]
                ps, pe, pt, pf = ps2, pe2, pt2, pf2
            ps[k] = r0
            pe[k] = j
            pt[k] = ts[i]
            pf[k] = frames[i]
            k += 1
    return ps[:k], pe[:k], pt[:k], pf[:k]


@njit(cache=True)
def _advance_kernel(filled, i, end):  # pragma: no cover - numba
    """First index in [i, end) whose byte is not filled (end when all are)."""
    while i < end and filled[i] != 0:
        i += 1
    return i


@njit(cache=True)
def _place_merge(buf, filled, base, offs, lens, poffs, payload, ts, frames, p_start, p_end, p_ts, p_frame, high,
                 frontier):  # pragma: no cover - numba
    """_place_kernel, then the bookkeeping of one placement in the same compiled call: new and
    duplicate byte counts, the highest byte, the pieces merged in start order (stable) and the
    advanced frontier. (As a dozen numpy calls on arrays of a few elements, this bookkeeping cost
    more than the placement; a connection is placed once per chunk it sends in.)"""
    ps, pe, pt, pf = _place_kernel(buf, filled, base, offs, lens, poffs, payload, ts, frames, high)
    new_bytes = 0
    for i in range(ps.shape[0]):
        new_bytes += pe[i] - ps[i]
    seen = 0
    for i in range(offs.shape[0]):
        lo = offs[i] if offs[i] > base else base
        d = offs[i] + lens[i] - lo
        if d > 0:
            seen += d
    if ps.shape[0]:
        top = pe.max()
        if top > high:
            high = top
        starts = np.concatenate((p_start, ps))
        order = np.argsort(starts, kind="mergesort")
        p_start = starts[order]
        p_end = np.concatenate((p_end, pe))[order]
        p_ts = np.concatenate((p_ts, pt))[order]
        p_frame = np.concatenate((p_frame, pf))[order]
    if frontier < high:
        frontier = base + _advance_kernel(filled, frontier - base, high - base)
    return new_bytes, seen - new_bytes, high, frontier, p_start, p_end, p_ts, p_frame


@njit(cache=True)
def _timing_kernel(p_start, p_end, p_ts, p_frame, starts, ends):  # pragma: no cover - numba
    """Per message k: min/max first-seen time over the pieces overlapping [starts[k], ends[k]),
    the frame of its first piece and the frame that completed it (latest piece; ties: later frame).
    Pieces are sorted by start and do not overlap."""
    m = starts.shape[0]
    n = p_start.shape[0]
    first_ts = np.zeros(m, np.int64)
    last_ts = np.zeros(m, np.int64)
    first_frame = np.zeros(m, np.int64)
    last_frame = np.zeros(m, np.int64)
    if n == 0:
        return first_ts, last_ts, first_frame, last_frame
    for k in range(m):
        a = np.searchsorted(p_start, starts[k], side="right") - 1
        if a < 0 or p_end[a] <= starts[k]:
            a += 1
        if a >= n:
            a = n - 1
        first_frame[k] = p_frame[a]
        tmin = p_ts[a]
        tmax = p_ts[a]
        fmax = p_frame[a]
        i = a + 1
        while i < n and p_start[i] < ends[k]:
            t = p_ts[i]
            if t < tmin:
                tmin = t
            if t > tmax or (t == tmax and p_frame[i] > fmax):
                tmax = t
                fmax = p_frame[i]
            i += 1
        first_ts[k] = tmin
        last_ts[k] = tmax
        last_frame[k] = fmax
    return first_ts, last_ts, first_frame, last_frame


_EMPTY_U8 = np.zeros(0, np.uint8)    # shared: never written (placement reallocates to grow)
_EMPTY_I64 = np.zeros(0, np.int64)


class StreamDir:
    """One direction of one TCP connection: unparsed bytes, their pieces, gaps and end state.

    Offsets are stream offsets (0 = first data byte). `buf[k]` holds the byte at offset
    `base + k`; `[pos, frontier)` are contiguous bytes not yet parsed; `high` is the end of the
    highest byte placed.
    """

    __slots__ = ("base", "buf", "filled", "pos", "frontier", "high", "p_start", "p_end", "p_ts",
                 "p_frame", "fin", "acked", "reset", "gaps", "bytes_placed", "bytes_duplicate")

    def __init__(self) -> None:
        self.base = 0
        self.buf = _EMPTY_U8
        self.filled = _EMPTY_U8
        self.pos = 0
        self.frontier = 0
        self.high = 0
        self.p_start = _EMPTY_I64
        self.p_end = _EMPTY_I64
        self.p_ts = _EMPTY_I64
        self.p_frame = _EMPTY_I64
        self.fin = -1          # stream offset where the FIN sits (end of data), -1 when not seen
        self.acked = -1        # highest stream offset the peer acknowledged, -1 when none
        self.reset = False     # an RST was seen on the connection
        self.gaps: list[tuple[int, int, int]] = []  # (start, end, frame after the gap)
        self.bytes_placed = 0
        self.bytes_duplicate = 0

    # ---------------------------------------------------------------- placement
    def place(self, offs: np.ndarray, lens: np.ndarray, poffs: np.ndarray, payload: np.ndarray,
              ts: np.ndarray, frames: np.ndarray) -> None:
        """Place captured segment bytes (first copy wins) and advance the frontier.

        The caller guarantees every `offs + lens <= base + WINDOW_LIMIT_BYTES`.
        """
        if offs.size == 0:
            return
        need = int((offs + lens).max()) - self.base
        if need > self.buf.size:
            size = max(need, min(2 * self.buf.size, WINDOW_LIMIT_BYTES), 4096)
            buf = np.zeros(size, np.uint8)
            filled = np.zeros(size, np.uint8)
            buf[: self.buf.size] = self.buf
            filled[: self.filled.size] = self.filled
            self.buf, self.filled = buf, filled
        new_bytes, dup, high, frontier, self.p_start, self.p_end, self.p_ts, self.p_frame = _place_merge(
            self.buf, self.filled, self.base, offs, lens, poffs, payload, ts, frames, self.p_start, self.p_end,
            self.p_ts, self.p_frame, self.high, self.frontier)
        self.bytes_placed += int(new_bytes)
        self.bytes_duplicate += int(dup)
        self.high, self.frontier = int(high), int(frontier)

    def _advance(self) -> None:
        if self.frontier < self.high:
            self.frontier = self.base + int(_advance_kernel(self.filled, self.frontier - self.base,
                                                            self.high - self.base))

    # ---------------------------------------------------------------- reading
    def available(self) -> int:
        """Contiguous unparsed bytes at the parse position."""
        return self.frontier - self.pos

    def data(self) -> bytes:
        """The contiguous unparsed bytes `[pos, frontier)` as one bytes object."""
        return self.buf[self.pos - self.base: self.frontier - self.base].tobytes()

    def bytes_at(self, start: int, end: int) -> bytes:
        """Bytes `[start, end)` (must still be buffered)."""
        return self.buf[start - self.base: end - self.base].tobytes()

    def ts_at(self, offset: int) -> int:
        """When the byte at `offset` was first seen (it must be placed and buffered)."""
        i = int(np.searchsorted(self.p_start, offset, side="right")) - 1
        return int(self.p_ts[max(i, 0)]) if self.p_ts.size else 0

    def at_end(self) -> bool:
        """No more bytes can come at the frontier: FIN reached, or the connection was reset."""
        return (self.fin >= 0 and self.frontier >= self.fin) or (self.reset and self.frontier >= self.high)

    # ---------------------------------------------------------------- holes and gaps
    def hole(self) -> tuple[int, int] | None:
        """The hole at the frontier as (start, end of the hole), or None when none is known.

        End is the next placed byte, or the peer's ACK when nothing was placed beyond it.
        """
        if self.frontier < self.high:
            i = int(np.searchsorted(self.p_start, self.frontier, side="left"))
            nxt = int(self.p_start[i]) if i < self.p_start.size else self.high
            return self.frontier, nxt
        acked = self.acked if self.fin < 0 else min(self.acked, self.fin)  # the FIN is not data
        if acked > self.frontier:
            return self.frontier, acked
        return None

    def hole_is_gap(self, final: bool) -> bool:
        """Is the hole at the frontier bytes the capture will never show?"""
        h = self.hole()
        if h is None:
            return False
        return final or min(self.acked, h[1]) > h[0] or (self.high - h[1]) > HOLE_LIMIT_BYTES

    def jump(self, to: int, frame: int) -> None:
        """Declare `[frontier, to)` a gap and move parse position and frontier past it."""
        start = self.frontier
        if to > start:
            self.gaps.append((start, to, frame))
        self.pos = max(self.pos, to)
        self.frontier = max(self.frontier, to)
        if self.frontier - self.base > self.buf.size:  # jumping past the buffer: start afresh there
            self.base = self.frontier
            self.buf = _EMPTY_U8
            self.filled = _EMPTY_U8
        self.high = max(self.high, self.frontier)
        self._advance()

    def frame_at_or_after(self, offset: int) -> int:
        """Frame of the first piece starting at or after `offset` (0 when none)."""
        i = int(np.searchsorted(self.p_start, offset, side="left"))
        return int(self.p_frame[i]) if i < self.p_frame.size else 0

    # ---------------------------------------------------------------- timing
    def timing(self, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, ...]:
        """For messages `[starts[k], ends[k])` still buffered: first/last byte times and frames.

        first_ts = earliest first-seen time over the message's bytes; last_ts = latest first-seen
        time (when the message was complete at the capture point); first_frame = frame that
        brought its first byte; last_frame = frame that completed it (Wireshark's "reassembled
        in" frame). Bytes inside a gap have no piece and do not count.
        """
        return _timing_kernel(self.p_start, self.p_end, self.p_ts, self.p_frame,
                              starts.astype(_I64), ends.astype(_I64))

    # ---------------------------------------------------------------- dropping consumed bytes
    def compact(self) -> None:
        """Drop bytes and pieces before the parse position (memory follows unparsed bytes)."""
        drop = self.pos - self.base
        if drop <= 0:
            return
        keep = np.flatnonzero(self.p_end > self.pos)
        if keep.size < self.p_start.size:
            self.p_start = self.p_start[keep]
            self.p_end = self.p_end[keep]
            self.p_ts = self.p_ts[keep]
            self.p_frame = self.p_frame[keep]
        if drop >= self.buf.size or self.pos >= self.high:  # nothing unparsed: hold nothing
            self.buf = _EMPTY_U8
            self.filled = _EMPTY_U8
            self.base = self.pos
        elif drop >= 65536 and drop * 2 >= self.buf.size:  # amortised: copy only when half is dead
            self.buf = self.buf[drop:].copy()
            self.filled = self.filled[drop:].copy()
            self.base = self.pos

    def release(self) -> None:
        """Forget all bytes (the connection is not one we parse)."""
        self.buf = _EMPTY_U8
        self.filled = _EMPTY_U8
        self.p_start = self.p_end = self.p_ts = self.p_frame = _EMPTY_I64
        self.base = self.pos = self.frontier = self.high

    @property
    def buffered_bytes(self) -> int:
        return int(self.buf.size)
