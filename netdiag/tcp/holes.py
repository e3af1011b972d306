"""Sequence holes: byte ranges a direction's sender sent that the capture never saw.

What and why: the ACK-proven `unseen_bytes` of the connections table (capture loss, not network
loss) comes from these. A direction gets a row of the hole pool HP on its first hole
(DS_HOLE_ROW), so the many directions without holes pay nothing for the list. Called from the
analysis kernel (netdiag.tcp.kernel); `unseen_bytes_kernel` totals them for the table.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from netdiag.tcp.state import (
    C_DROW,
    D_MAXACKED,
    D_NEXTSEQ,
    D_UNSEEN_DONE,
    DS_HOLE_ROW,
    DS_MAXACKED_SET,
    DS_NHOLES,
    DS_UNSEEN_N_DONE,
    M32,
    N_HOLES,
    _gt,
    _le,
)


@njit(cache=True)
def _fill_holes(D, HP, k, s, e):  # pragma: no cover - numba
    """Remove raw range [s, e) from direction k's list of sequence holes (its row of HP)."""
    DS = D.view(np.int32)   # D's int32 fields (netdiag.tcp.state: DS_*)
    r = DS[k, DS_HOLE_ROW] - 1
    n = DS[k, DS_NHOLES]
    i = 0
    while i < n:
        hs = HP[r, 2 * i]
        he = HP[r, 2 * i + 1]
        # work in offsets from the hole start so wrap-around is harmless
        ln = (he - hs) & M32
        a = (s - hs) & M32
        b = (e - hs) & M32
        if a >= 0x80000000:
            a = 0 if ((hs - s) & M32) < 0x80000000 else a
        if b >= 0x80000000:
            b = 0
        if a > ln:
            a = ln
        if b > ln:
            b = ln
        if b <= a:
            i += 1
            continue
        if a == 0 and b == ln:  # hole filled completely
            for j in range(i, n - 1):
                HP[r, 2 * j] = HP[r, 2 * j + 2]
                HP[r, 2 * j + 1] = HP[r, 2 * j + 3]
            n -= 1
            continue
        if a == 0:
            HP[r, 2 * i] = (hs + b) & M32
        elif b == ln:
            HP[r, 2 * i + 1] = (hs + a) & M32
        else:  # split in two; if no room, keep the larger part (an undercount, never an overcount)
            if n < N_HOLES:
                for j in range(n, i + 1, -1):
                    HP[r, 2 * j] = HP[r, 2 * j - 2]
                    HP[r, 2 * j + 1] = HP[r, 2 * j - 1]
                HP[r, 2 * i + 1] = (hs + a) & M32
                HP[r, 2 * (i + 1)] = (hs + b) & M32
                HP[r, 2 * (i + 1) + 1] = he
                n += 1
                i += 1
            elif a > ln - b:
                HP[r, 2 * i + 1] = (hs + a) & M32
            else:
                HP[r, 2 * i] = (hs + b) & M32
        i += 1
    DS[k, DS_NHOLES] = n


@njit(cache=True)
def _hole_overlap(D, HP, k, s, e):  # pragma: no cover - numba
    """Bytes of raw range [s, e) that lie in direction k's holes (never captured)."""
    DS = D.view(np.int32)   # D's int32 fields (netdiag.tcp.state: DS_*)
    total = 0
    ln = (e - s) & M32
    r = DS[k, DS_HOLE_ROW] - 1
    for h in range(DS[k, DS_NHOLES]):
        a = (HP[r, 2 * h] - s) & M32
        b = (HP[r, 2 * h + 1] - s) & M32
        if a >= 0x80000000:
            a = 0
        if b >= 0x80000000:
            continue
        if a > ln:
            a = ln
        if b > ln:
            b = ln
        if b > a:
            total += b - a
    return total


@njit(cache=True)
def _flush_acked_holes(D, HP, k):  # pragma: no cover - numba
    """Move holes the receiver acknowledged past off the list (they can no longer be filled by a
    first copy) into the per-direction unseen-bytes total, freeing slots for new holes."""
    DS = D.view(np.int32)   # D's int32 fields (netdiag.tcp.state: DS_*)
    if DS[k, DS_MAXACKED_SET] == 0:
        return
    ma = D[k, D_MAXACKED]
    r = DS[k, DS_HOLE_ROW] - 1
    n = DS[k, DS_NHOLES]
    j = 0
    for i in range(n):
        hs = HP[r, 2 * i]
        he = HP[r, 2 * i + 1]
        if _le(he, ma):
            D[k, D_UNSEEN_DONE] += (he - hs) & M32
            DS[k, DS_UNSEEN_N_DONE] += 1
        else:
            HP[r, 2 * j] = hs
            HP[r, 2 * j + 1] = he
            j += 1
    DS[k, DS_NHOLES] = j



@njit(cache=True)
def unseen_bytes_kernel(C, D, HP, n_conns, out, out_gaps):  # pragma: no cover - numba
    """Per connection: bytes the peer ACKed that were never captured (holes + unseen tail), and
    in how many gaps (holes the receiver acknowledged past, each counted once)."""
    DS = D.view(np.int32)   # D's int32 fields (netdiag.tcp.state: DS_*)
    for c in range(n_conns):
        total = 0
        gaps = 0
        for d in range(2):
            k = C[c, C_DROW + d]
            total += D[k, D_UNSEEN_DONE]
            gaps += DS[k, DS_UNSEEN_N_DONE]
            if DS[k, DS_MAXACKED_SET] == 0 or D[k, D_NEXTSEQ] == 0:
                continue
            ma = D[k, D_MAXACKED]
            r = DS[k, DS_HOLE_ROW] - 1
            for h in range(DS[k, DS_NHOLES]):
                hs = HP[r, 2 * h]
                he = HP[r, 2 * h + 1]
                if _le(he, ma):
                    total += (he - hs) & M32
                    gaps += 1
                elif _gt(ma, hs):
                    total += (ma - hs) & M32
                    gaps += 1
            nx = D[k, D_NEXTSEQ]
            if _gt(ma, nx):
                tail = (ma - nx) & M32
                if tail < 0x40000000:
                    total += tail
                    gaps += 1
        out[c] = total
        out_gaps[c] = gaps
