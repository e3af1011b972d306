"""Per-logon steps by row position: logon_idx numbers the logons table's rows (0, 1, ... in order, as
netdiag.logons.grouping makes it), so a logon's columns can be taken by position instead of by a join.

Why: a join copies every column of the larger side once more, beside its hash table; on a SYN
flood of 200 k one-connection logons (400 k timeline intervals) those copies set the peak memory
of `analyze`. Each function falls back to the join when logon_idx does not number the rows, and
gives the join's result either way.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def numbers_rows(lg: pl.DataFrame) -> bool:
    """True when lg's logon_idx is 0, 1, ... lg.height - 1 in row order."""
    idx = lg["logon_idx"]
    return (lg.height > 0 and idx.dtype.is_integer() and idx.null_count() == 0
            and np.array_equal(idx.to_numpy(), np.arange(lg.height)))


def clip_to_logons(iv: pl.DataFrame, lg: pl.DataFrame) -> pl.DataFrame:
    """The intervals of logons in `lg`, clipped to their logon's [start, end]; empty ones dropped.

    When logon_idx numbers lg's rows (as group_logons makes them) each interval's logon bounds are
    taken by position, and the table is copied only when an interval is dropped: a join would copy
    every interval column once more beside the hash table (a flood has 400 k intervals).
    """
    n = lg.height
    if not numbers_rows(lg):
        iv = iv.join(lg.select("logon_idx", "start_ts_ns", "end_ts_ns"), on="logon_idx", how="inner")
        iv = iv.with_columns(t0=pl.max_horizontal("t0", "start_ts_ns"), t1=pl.min_horizontal("t1", "end_ts_ns"))
        return iv.filter(pl.col("t1") > pl.col("t0")).drop("start_ts_ns", "end_ts_ns")
    pos = iv["logon_idx"]
    known = pos.is_not_null() & (pos >= 0) & (pos < n)
    if not known.all():
        iv = iv.filter(known)
        pos = iv["logon_idx"]
    iv = iv.with_columns(t0=pl.max_horizontal(pl.col("t0"), lg["start_ts_ns"].gather(pos)),
                         t1=pl.min_horizontal(pl.col("t1"), lg["end_ts_ns"].gather(pos)))
    keep = iv["t1"] > iv["t0"]
    return iv if keep.all() else iv.filter(keep)


def join_per_logon(lg: pl.DataFrame, parts: list[pl.DataFrame]) -> pl.DataFrame:
    """`lg` left-joined on logon_idx with each of `parts` (one row per logon_idx at most), sorted by logon_idx.

    When logon_idx numbers lg's rows in order (as group_logons makes them), each part is laid out
    by position and its columns are put beside lg's: lg's own columns are not copied once per join
    and once more by the sort (a flood has 200 k logons with list columns).
    """
    if not numbers_rows(lg):
        for p in parts:
            lg = lg.join(p, on="logon_idx", how="left")
        return lg.sort("logon_idx")
    rows = lg.select("logon_idx")
    return lg.hstack([c for p in parts for c in
                      rows.join(p, on="logon_idx", how="left", maintain_order="left").drop("logon_idx")])
