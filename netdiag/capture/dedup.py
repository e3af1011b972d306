"""SPAN de-duplication: drop a frame whose captured bytes exactly equal a frame seen moments before.

A switch SPAN (port mirror) that copies both ingress and egress of the monitored ports hands
the analyser the same frame twice, microseconds apart (the switch's forwarding latency). Left
in, every such copy looks like a TCP retransmission and wrecks the timings.

Rule: a frame is a duplicate when an earlier frame of the same file with the same captured
length and identical captured bytes was seen at most `window_ns` before it (default 5 ms).
Why 5 ms: mirror copies arrive within tens of microseconds even on a busy switch, while a real
resend by a host comes after an RTO (>= 200 ms on Linux, >= 300 ms on Windows) or at least one
round trip (fast retransmit), and is almost never byte-identical anyway (new IPv4 id, new TCP
timestamp). 5 ms leaves a wide margin on both sides; `dedup_window_ns` changes it.

Mechanics (numba, no Python objects): a 64-bit hash over the frame's first 64 bytes and its
length indexes a fixed open-addressing table of recent frames (hash, timestamp, stream offset,
length); a candidate is only accepted after a byte-for-byte comparison with the earlier frame,
which must still be in the reader's buffer (the gzip reader keeps a tail of recent bytes for
this; a candidate that has left the buffer is kept, never guessed away). The hash is only a
filter, so its collisions cannot remove a frame.
"""

from __future__ import annotations

import numpy as np
from numba import njit

DEFAULT_WINDOW_NS = 5_000_000
TABLE_BITS = 16
PROBES = 32
_EMPTY = np.int64(-(2**62))


def new_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fresh de-dup state for one file: (hash, ts_ns, stream offset, length) arrays."""
    size = 1 << TABLE_BITS
    return (np.zeros(size, np.uint64), np.full(size, _EMPTY, np.int64), np.zeros(size, np.int64),
            np.zeros(size, np.int64))


@njit(cache=True, inline="always")
def _hash(buf, off, cap):
    h = np.uint64(0xCBF29CE484222325) ^ np.uint64(cap)
    m = min(cap, 64)
    for k in range(m):
        h = (h ^ np.uint64(buf[off + k])) * np.uint64(0x100000001B3)
    return h


@njit(cache=True)
def dedup_is_duplicate(buf, off, cap, ts, buf_base, dd_hash, dd_ts, dd_off, dd_len, window_ns):
    """True when this frame repeats one within the window (then it is not remembered again)."""
    h = _hash(buf, off, cap)
    mask = (1 << 16) - 1
    slot = np.int64(h & np.uint64(mask))
    free = -1
    oldest = slot
    for k in range(32):
        s = (slot + k) & mask
        t = dd_ts[s]
        age = ts - t
        if t == _EMPTY or age > window_ns or age < -window_ns:
            if free < 0:
                free = s
            continue
        if dd_hash[s] == h and dd_len[s] == cap:
            rel = dd_off[s] - buf_base
            if rel >= 0 and rel + cap <= buf.shape[0]:
                same = True
                for q in range(cap):
                    if buf[rel + q] != buf[off + q]:
                        same = False
                        break
                if same:
                    return True
        if dd_ts[s] < dd_ts[oldest]:
            oldest = s
    if free < 0:
        free = oldest
    dd_hash[free] = h
    dd_ts[free] = ts
    dd_off[free] = buf_base + off
    dd_len[free] = cap
    return False
