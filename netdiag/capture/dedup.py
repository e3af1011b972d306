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
length picks one of 16,384 buckets of 4 recent frames (hash, timestamp, stream offset, length;
a new frame replaces the bucket's oldest); a candidate is only accepted after a byte-for-byte comparison with the earlier frame,
which must still be in the reader's buffer (the gzip reader keeps a tail of recent bytes for
this; a candidate that has left the buffer is kept, never guessed away). The hash is only a
filter, so its collisions cannot remove a frame. A copy is missed only if four other frames
land in its bucket between the original and its copy (microseconds on a SPAN port; even a
whole 5 ms window at 1 M frames/s is ~5,000 frames over 16,384 buckets), so practically never.
The table is 2 MiB, small enough to stay in cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit

DEFAULT_WINDOW_NS = 5_000_000
BUCKETS = 1 << 14
WAYS = 4
_EMPTY = np.int64(-(2**62))


def new_table() -> np.ndarray:
    """Fresh de-dup state for one file: rows of (hash, ts_ns, stream offset, length), a bucket's
    ways adjacent so one bucket is two cache lines."""
    table = np.zeros((BUCKETS * WAYS, 4), np.int64)
    table[:, 1] = _EMPTY
    return table


@njit(cache=True, inline="always")
def _hash(buf, off, cap):
    # 4 bytes per multiply over the first 64 bytes: headers (IP id and checksum, TCP sequence,
    # ack and checksum) make frames differ there; equality is verified byte by byte anyway
    h = np.uint64(0xCBF29CE484222325) ^ np.uint64(cap)
    m = min(cap, 64)
    k = 0
    while k + 4 <= m:
        w = (np.uint64(buf[off + k]) | (np.uint64(buf[off + k + 1]) << np.uint64(8))
             | (np.uint64(buf[off + k + 2]) << np.uint64(16)) | (np.uint64(buf[off + k + 3]) << np.uint64(24)))
        h = (h ^ w) * np.uint64(0x100000001B3)
        k += 4
    while k < m:
        h = (h ^ np.uint64(buf[off + k])) * np.uint64(0x100000001B3)
        k += 1
    # murmur3 finaliser: every input bit reaches the low bits that pick the bucket
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


@njit(cache=True)
def dedup_is_duplicate(buf, off, cap, ts, buf_base, dd, window_ns):
    """True when this frame repeats one within the window (then it is not remembered again)."""
    h = np.int64(_hash(buf, off, cap))
    bucket = (h & (BUCKETS - 1)) * WAYS
    oldest = bucket
    for s in range(bucket, bucket + WAYS):
        t = dd[s, 1]
        age = ts - t
        if t != _EMPTY and -window_ns <= age <= window_ns and dd[s, 0] == h and dd[s, 3] == cap:
            rel = dd[s, 2] - buf_base
            if rel >= 0 and rel + cap <= buf.shape[0]:
                same = True
                for q in range(cap):
                    if buf[rel + q] != buf[off + q]:
                        same = False
                        break
                if same:
                    return True
        if t < dd[oldest, 1]:
            oldest = s
    dd[oldest, 0] = h
    dd[oldest, 1] = ts
    dd[oldest, 2] = buf_base + off
    dd[oldest, 3] = cap
    return False


@njit(cache=True)
def mark_duplicates(buf, rec_off, rec_cap, rec_ts, n, buf_base, dd, window_ns, out):
    """out[i] = 1 when record i repeats a recent frame (its own tight loop: faster than inline)."""
    for i in range(n):
        out[i] = dedup_is_duplicate(buf, rec_off[i], np.int64(rec_cap[i]), rec_ts[i], buf_base, dd, window_ns)
