"""A realistic analysis of many logons, made from a real one: time-shifted copies of its logons.

Analysing a capture of 10 k logons takes minutes; the report only reads the Analysis tables, so
the report's layout at that scale is tested on an Analysis whose logons table holds copies of a
real lab capture's logons (captures/lab/storm.pcap: 20 concurrent logons), copy k shifted by
k * span / copies seconds and its client address rewritten (10.100.x.y), with each copy's budget
columns and duration scaled by (0.99 - k * 1e-6) for k >= 1, so that the real logons (copy 0, whose
intervals and transactions are in the analysis) stay the slowest and their waterfalls are drawn. The
population views are recomputed from that table with netdiag.logons.population, as analyze does;
server time per operation is the real one with its calls and totals multiplied by the copies.
"""

from __future__ import annotations

import dataclasses
import math

import polars as pl

from netdiag.analyze import Analysis, bucket_seconds
from netdiag.logons.population import per_time_bucket, population
from netdiag.schema import BUDGET_COLUMNS


def many_logons(a: Analysis, n: int = 10_000, span_s: float = 8 * 3600.0) -> Analysis:
    """`a` with about `n` logons: copies of its logons spread over `span_s` seconds."""
    base = a.logons
    copies = math.ceil(n / base.height)
    parts = []
    for k in range(copies):
        scale = 1.0 if k == 0 else 0.99 - k * 1e-6
        shift = int(k * span_s / copies * 1e9)
        part = base.with_columns(
            (pl.col("logon_id").cast(pl.Int64) + k * base.height).cast(base.schema["logon_id"]).alias("logon_id"),
            (pl.col("start_ts_ns") + shift).alias("start_ts_ns"),
            (pl.col("start_ts_ns") + shift + (pl.col("duration_s") * scale * 1e9).cast(pl.Int64)).alias("end_ts_ns"),
            (pl.col("duration_s") * scale).alias("duration_s"),
            *[(pl.col(c) * scale).alias(c) for c in BUDGET_COLUMNS],
        )
        if k:
            part = part.with_columns(pl.lit(f"10.{100 + (k >> 8)}.{k & 255}.20").alias("client_ip"))
        parts.append(part)
    big = pl.concat(parts).head(n)
    bucket = bucket_seconds(big)
    pop = population(big, a.transactions.head(0))
    pop["per_time_bucket"] = per_time_bucket(big, bucket)
    st = a.population.get("server_think_per_operation")
    if st is not None:
        pop["server_think_per_operation"] = st.with_columns(pl.col("calls") * copies, pl.col("total_s") * copies)
    return dataclasses.replace(a, logons=big, population=pop, bucket_s=bucket)
