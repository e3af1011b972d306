"""Resend intervals -> seconds: the union of [first copy, resend] intervals per message or transaction."""

from __future__ import annotations

import numpy as np
import polars as pl
from numba import njit


# ============================================================================================
# Resend intervals -> seconds (union of intervals per message / transaction)
# ============================================================================================
@njit(cache=True)
def _union_kernel(keys, t0, t1, nkeys):  # pragma: no cover - numba
    """Sum over each key of the union of [t0, t1] intervals; rows sorted by (key, t0)."""
    out = np.zeros(nkeys, np.int64)
    n = keys.shape[0]
    i = 0
    while i < n:
        k = keys[i]
        cur0 = t0[i]
        cur1 = t1[i]
        total = 0
        j = i + 1
        while j < n and keys[j] == k:
            if t0[j] > cur1:
                total += cur1 - cur0
                cur0 = t0[j]
                cur1 = t1[j]
            elif t1[j] > cur1:
                cur1 = t1[j]
            j += 1
        total += cur1 - cur0
        out[k] = total
        i = j
    return out


def union_seconds(keys: np.ndarray, t0: np.ndarray, t1: np.ndarray, nkeys: int) -> np.ndarray:
    if keys.size == 0:
        return np.zeros(nkeys, np.float64)
    ok = t1 > t0
    keys, t0, t1 = keys[ok], t0[ok], t1[ok]
    order = np.lexsort((t0, keys))
    ns = _union_kernel(keys[order].astype(np.int64), t0[order].astype(np.int64),
                       t1[order].astype(np.int64), nkeys)
    return ns / 1e9


def event_message_pairs(msgs: pl.DataFrame, ev: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(event index, message row) for every resend event overlapping a message's stream bytes."""
    if ev.height == 0 or msgs.height == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m = (msgs.with_row_index("row").filter(pl.col("stream_offset").is_not_null())
         .select("row", g=pl.col("conn_id").cast(pl.Int64) * 2 + pl.col("direction").cast(pl.Int64),
                 s=pl.col("stream_offset"), e=pl.col("stream_offset") + pl.col("size_bytes"))
         .sort("g", "s", "e"))
    shift = np.int64(1) << np.int64(41)
    mg, ms, me = (m[c].to_numpy().astype(np.int64) for c in ("g", "s", "e"))
    mrow = m["row"].to_numpy().astype(np.int64)
    ks, ke = mg * shift + ms, mg * shift + me
    eg = (ev["conn_id"].to_numpy().astype(np.int64) * 2 + ev["direction"].to_numpy().astype(np.int64))
    es = eg * shift + np.clip(ev["start"].to_numpy().astype(np.int64), 0, shift - 1)
    ee = eg * shift + np.clip(ev["end"].to_numpy().astype(np.int64), 0, shift - 1)
    # messages of a direction tile its stream (several TLS records may share a span): a message
    # overlaps [es, ee) when its end > es and its start < ee; ends are sorted like starts
    lo = np.searchsorted(np.maximum.accumulate(ke), es, side="right")
    hi = np.searchsorted(ks, ee, side="left")
    cnt = np.clip(hi - lo, 0, None)
    ev_idx = np.repeat(np.arange(es.size), cnt)
    starts = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    return ev_idx, mrow[starts]


def message_resend(msgs: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    ev_idx, mrow = event_message_pairs(msgs, events)
    if ev_idx.size == 0:
        return msgs
    t0 = events["t0"].to_numpy().astype(np.int64)[ev_idx]
    t1 = events["t1"].to_numpy().astype(np.int64)[ev_idx]
    resend = union_seconds(mrow, t0, t1, msgs.height)
    return msgs.with_columns(resend_s=pl.Series(resend))
