"""Flow ids: a direction-free 4/5-tuple per packet row, through an open-addressing hash table in numba.

What and why: the analysis needs "which connection is this packet on" for every row without a
Python object or polars join per packet; TcpAnalyzer (netdiag.tcp.analysis) keeps the table
across chunks and grows it.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _flow_hash(k0, k1, k2, k3, k4, k5, k6):  # pragma: no cover - numba
    h = np.uint64(0x9E3779B97F4A7C15)
    for v in (k0, k1, k2, k3, k4, k5, k6):
        h = (h ^ v) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return h


@njit(cache=True)
def flow_lookup_kernel(start, proto, s_hi, s_lo, s_port, d_hi, d_lo, d_port, FK, HT, fmeta,
                       out_flow, out_src_is_a):  # pragma: no cover - numba
    """Direction-free flow id per row (open addressing over FK rows); new flows are appended.

    FK[flow] = (proto, a_hi, a_lo, a_port, b_hi, b_lo, b_port) with (a) the lower endpoint.
    Returns the row to resume at when the table needs to grow (fmeta[0] = flows in use).
    """
    n = proto.shape[0]
    mask = np.uint64(HT.shape[0] - 1)
    for i in range(start, n):
        if fmeta[0] + 1 >= FK.shape[0] or 2 * (fmeta[0] + 1) > HT.shape[0]:
            return i
        sh, sl, sp = np.uint64(s_hi[i]), np.uint64(s_lo[i]), np.uint64(s_port[i])
        dh, dl, dp = np.uint64(d_hi[i]), np.uint64(d_lo[i]), np.uint64(d_port[i])
        src_a = sh < dh or (sh == dh and (sl < dl or (sl == dl and sp <= dp)))
        pr = np.uint64(proto[i])
        if src_a:
            k1, k2, k3, k4, k5, k6 = sh, sl, sp, dh, dl, dp
        else:
            k1, k2, k3, k4, k5, k6 = dh, dl, dp, sh, sl, sp
        j = _flow_hash(pr, k1, k2, k3, k4, k5, k6) & mask
        while True:
            f = HT[j]
            if f < 0:
                f = fmeta[0]
                fmeta[0] = f + 1
                FK[f, 0], FK[f, 1], FK[f, 2], FK[f, 3] = pr, k1, k2, k3
                FK[f, 4], FK[f, 5], FK[f, 6] = k4, k5, k6
                HT[j] = f
                break
            if (FK[f, 0] == pr and FK[f, 1] == k1 and FK[f, 2] == k2 and FK[f, 3] == k3
                    and FK[f, 4] == k4 and FK[f, 5] == k5 and FK[f, 6] == k6):
                break
            j = (j + np.uint64(1)) & mask
        out_flow[i] = f
        out_src_is_a[i] = 1 if src_a else 0
    return n


@njit(cache=True)
def flow_rehash_kernel(FK, n, HT):  # pragma: no cover - numba
    """Insert flows 0..n-1 into an empty (all -1) table HT."""
    mask = np.uint64(HT.shape[0] - 1)
    for f in range(n):
        j = _flow_hash(FK[f, 0], FK[f, 1], FK[f, 2], FK[f, 3], FK[f, 4], FK[f, 5], FK[f, 6]) & mask
        while HT[j] >= 0:
            j = (j + np.uint64(1)) & mask
        HT[j] = f
