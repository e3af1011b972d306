"""Population views over many logons: when trouble starts, where, for whom, and where the time goes.

- logon duration percentiles (p50/p90/p95/p99) overall, per time bucket (default 5 minutes,
  by logon start), per bootstrap server and per client group;
- the wait budget per category summed over all logons and over the slowest 5 % (at least one);
- server think per operation (the transactions inside logons).

Percentiles use the 'linear' interpolation (numpy's default), so they match
`numpy.percentile(durations, q)` on the same numbers.

Logons with outcome `incomplete` (cut by the start or end of the capture) are left out of every
view here: their duration is only what the capture saw, a lower bound.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from netdiag.protocols.registry import request_protocols
from netdiag.schema import BUDGET_COLUMNS

PERCENTILES = (50, 90, 95, 99)


def percentile(values: pl.Series | np.ndarray, q: float) -> float | None:
    """numpy's linear percentile of the non-null values (the rule of every view here), None when empty."""
    arr = np.asarray(values.drop_nulls().to_numpy() if isinstance(values, pl.Series) else values, dtype=float)
    return float(np.percentile(arr, q)) if arr.size else None


def complete_logons(logons: pl.DataFrame, columns: list[str] | None = None) -> pl.DataFrame:
    """The logons the capture saw whole (outcome not `incomplete`): the ones statistics may use.

    `columns`: only these (the filter then copies them alone, not every column of the table)."""
    if columns is not None:
        keep = list(dict.fromkeys(columns + (["outcome"] if "outcome" in logons.columns else [])))
        done = complete_logons(logons.select(keep))
        return done.select(columns)
    if "outcome" not in logons.columns:
        return logons
    return logons.filter(pl.col("outcome").fill_null("") != "incomplete")


def _pct_aggs(col: str = "duration_s") -> list[pl.Expr]:
    return [pl.len().alias("logons")] + [
        pl.col(col).quantile(q / 100, "linear").alias(f"p{q}_s") for q in PERCENTILES
    ] + [pl.col(col).max().alias("max_s")]


def duration_percentiles(logons: pl.DataFrame, by: str | None = None) -> pl.DataFrame:
    """Duration percentiles overall (by=None) or per value of a column (complete logons only)."""
    logons = complete_logons(logons, ["duration_s"] + ([by] if by is not None else []))
    if by is None:
        return logons.select(_pct_aggs())
    return logons.group_by(by).agg(_pct_aggs()).sort(by, nulls_last=True)


def per_time_bucket(logons: pl.DataFrame, bucket_s: float = 300.0) -> pl.DataFrame:
    """Percentiles per time bucket of logon start (UTC), to see when trouble starts."""
    b = int(bucket_s * 1e9)
    df = complete_logons(logons, ["start_ts_ns", "duration_s"]).with_columns(bucket_start=pl.from_epoch((pl.col("start_ts_ns") // b) * b, time_unit="ns"))
    return df.group_by("bucket_start").agg(_pct_aggs()).sort("bucket_start")


def budget_totals(logons: pl.DataFrame, slowest_share: float = 0.05) -> pl.DataFrame:
    """Budget per category summed over all logons and over the slowest share (default 5 %)."""
    logons = complete_logons(logons, ["duration_s", *BUDGET_COLUMNS])
    n = logons.height
    k = max(1, math.ceil(n * slowest_share)) if n else 0
    slow = logons.sort("duration_s", descending=True).head(k)
    all_tot = logons.select([pl.col(c).sum() for c in BUDGET_COLUMNS])
    slow_tot = slow.select([pl.col(c).sum() for c in BUDGET_COLUMNS])
    total_all = float(logons["duration_s"].sum()) if n else 0.0
    total_slow = float(slow["duration_s"].sum()) if n else 0.0
    rows = []
    for c in BUDGET_COLUMNS:
        a = float(all_tot[c][0]) if n else 0.0
        s = float(slow_tot[c][0]) if n else 0.0
        rows.append({"category": c, "all_logons_s": a, "all_share": a / total_all if total_all else 0.0,
                     "slowest_s": s, "slowest_share": s / total_slow if total_slow else 0.0})
    return pl.DataFrame(rows).with_columns(pl.lit(k, pl.UInt32).alias("slowest_logons"))


def server_think_per_operation(transactions_in_logons: pl.DataFrame) -> pl.DataFrame:
    """Server think per (protocol, operation): count, total, p50/p95/max (seconds)."""
    t = transactions_in_logons.filter(pl.col("protocol").is_in(list(request_protocols()))
                                      & pl.col("server_think_s").is_not_null())
    return (t.group_by("protocol", "operation")
            .agg(pl.len().alias("calls"), pl.col("server_think_s").sum().alias("total_s"),
                 pl.col("server_think_s").quantile(0.5, "linear").alias("p50_s"),
                 pl.col("server_think_s").quantile(0.95, "linear").alias("p95_s"),
                 pl.col("server_think_s").max().alias("max_s"))
            # (operations with equal totals by name: group_by's order differs from run to run)
            .sort("total_s", "protocol", "operation", descending=[True, False, False], nulls_last=True))


def population(logons: pl.DataFrame, transactions_in_logons: pl.DataFrame, *, bucket_s: float = 300.0
               ) -> dict[str, pl.DataFrame]:
    """All population views, by name (incomplete logons and their transactions left out)."""
    if "logon_idx" in transactions_in_logons.columns and "logon_id" in logons.columns and "outcome" in logons.columns:
        keep = complete_logons(logons, ["logon_id"])["logon_id"].cast(pl.Int64) - 1
        transactions_in_logons = transactions_in_logons.filter(pl.col("logon_idx").is_in(keep.implode()))
    return {
        "overall": duration_percentiles(logons),
        "per_time_bucket": per_time_bucket(logons, bucket_s),
        "per_server": duration_percentiles(logons, "server_ip"),
        "per_client_group": duration_percentiles(
            logons.select([c for c in ("duration_s", "outcome", "client_group") if c in logons.columns])
            .with_columns(pl.col("client_group").fill_null("(none)")), "client_group"),
        "budget": budget_totals(logons),
        "server_think_per_operation": server_think_per_operation(transactions_in_logons),
    }
