"""Population views over many logons: when trouble starts, where, for whom, and where the time goes.

- logon duration percentiles (p50/p90/p95/p99) overall, per time bucket (default 5 minutes,
  by logon start), per bootstrap server and per client group;
- the wait budget per category summed over all logons and over the slowest 5 % (at least one);
- server think per operation (the transactions inside logons).

Percentiles use the 'linear' interpolation (numpy's default), so they match
`numpy.percentile(durations, q)` on the same numbers.
"""

from __future__ import annotations

import math

import polars as pl

from netdiag.schema import BUDGET_COLUMNS

PERCENTILES = (50, 90, 95, 99)


def _pct_aggs(col: str = "duration_s") -> list[pl.Expr]:
    return [pl.len().alias("logons")] + [
        pl.col(col).quantile(q / 100, "linear").alias(f"p{q}_s") for q in PERCENTILES
    ] + [pl.col(col).max().alias("max_s")]


def duration_percentiles(logons: pl.DataFrame, by: str | None = None) -> pl.DataFrame:
    """Duration percentiles overall (by=None) or per value of a column."""
    if by is None:
        return logons.select(_pct_aggs())
    return logons.group_by(by).agg(_pct_aggs()).sort(by, nulls_last=True)


def per_time_bucket(logons: pl.DataFrame, bucket_s: float = 300.0) -> pl.DataFrame:
    """Percentiles per time bucket of logon start (UTC), to see when trouble starts."""
    b = int(bucket_s * 1e9)
    df = logons.with_columns(bucket_start=pl.from_epoch((pl.col("start_ts_ns") // b) * b, time_unit="ns"))
    return df.group_by("bucket_start").agg(_pct_aggs()).sort("bucket_start")


def budget_totals(logons: pl.DataFrame, slowest_share: float = 0.05) -> pl.DataFrame:
    """Budget per category summed over all logons and over the slowest share (default 5 %)."""
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
    t = transactions_in_logons.filter(pl.col("protocol").is_in(["giop", "http", "turn"])
                                      & pl.col("server_think_s").is_not_null())
    return (t.group_by("protocol", "operation")
            .agg(pl.len().alias("calls"), pl.col("server_think_s").sum().alias("total_s"),
                 pl.col("server_think_s").quantile(0.5, "linear").alias("p50_s"),
                 pl.col("server_think_s").quantile(0.95, "linear").alias("p95_s"),
                 pl.col("server_think_s").max().alias("max_s"))
            .sort("total_s", descending=True))


def population(logons: pl.DataFrame, transactions_in_logons: pl.DataFrame, *, bucket_s: float = 300.0
               ) -> dict[str, pl.DataFrame]:
    """All population views, by name."""
    return {
        "overall": duration_percentiles(logons),
        "per_time_bucket": per_time_bucket(logons, bucket_s),
        "per_server": duration_percentiles(logons, "server_ip"),
        "per_client_group": duration_percentiles(logons.with_columns(pl.col("client_group").fill_null("(none)")),
                                                 "client_group"),
        "budget": budget_totals(logons),
        "server_think_per_operation": server_think_per_operation(transactions_in_logons),
    }
