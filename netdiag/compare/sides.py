"""The two sides of a comparison: loading them, the samples compared, and whether they are comparable.

A side is the tables of one analysis: read back from a directory written by `netdiag analyze`
(tables/*.parquet and its .netdiag-report marker) or analysed from captures by
`netdiag.analyze.analyze`. Nothing here re-implements the pipeline.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netdiag.compare.stats import (
    CAPTURE_SUFFIXES,
    COUNT_RATIO_WARN,
    COVERAGE_WARN,
    MIN_SAMPLES,
    TIME_OF_DAY_WARN_H,
)
from netdiag.errors import NetdiagError, UsageError
from netdiag.profile import Profile, profile_record
from netdiag.schema import CONNECTIONS, LOGONS, TRANSACTIONS


class CompareError(NetdiagError):
    """The two sides cannot be compared (no logons, different profiles); the message says why."""

    exit_code = 2


class NothingToCompare(CompareError):
    """A side holds no logons: the analysis ran and found nothing to compare (exit 0, README "Exit codes")."""

    exit_code = 0



def profile_name(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "unknown (not recorded in the analysis directory)"
    return f"{rec['source'] or 'built-in defaults'} (fingerprint {rec['fingerprint']})"



# --------------------------------------------------------------------------------------------
# One side: the tables of an analysis, from captures or from an analysis directory
# --------------------------------------------------------------------------------------------

@dataclass
class Side:
    """What one side of the comparison holds (tables plus the facts the comparability checks need)."""

    label: str
    source: str                       # "captures" or "analysis directory"
    inputs: list[str]
    profile: dict[str, Any] | None
    logons: pl.DataFrame
    transactions: pl.DataFrame
    connections: pl.DataFrame
    capture_point: str
    capture_point_how: str
    no_logons_reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def first_ts_ns(self) -> int | None:
        return int(self.logons["start_ts_ns"].min()) if self.logons.height else None

    @property
    def last_ts_ns(self) -> int | None:
        return int(self.logons["end_ts_ns"].max()) if self.logons.height else None

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts about this side (no addresses beyond what the tables hold)."""
        return {"label": self.label, "source": self.source, "inputs": [Path(p).name for p in self.inputs],
                "profile": self.profile, "logons": self.logons.height,
                "first_logon_start": _iso(self.first_ts_ns), "last_logon_end": _iso(self.last_ts_ns),
                "capture_point": self.capture_point, "no_logons_reason": self.no_logons_reason,
                "warnings": len(self.warnings)}


def _iso(ts_ns: int | None) -> str | None:
    if ts_ns is None:
        return None
    return _dt.datetime.fromtimestamp(ts_ns / 1e9, tz=_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_analysis_dir(p: Path) -> bool:
    from netdiag.analyze import MARKER

    return p.is_dir() and (p / MARKER).is_file()


def side_from_analysis(a: Any, label: str) -> Side:
    """A side from a `netdiag.analyze.Analysis` already in memory."""
    return Side(label, "captures", list(a.paths), profile_record(a.profile), a.logons, a.transactions,
                a.connections, a.capture_point.where, a.capture_point.how, a.no_logons_reason,
                [str(w) for w in a.warnings])


def side_from_directory(d: Path, label: str) -> Side:
    """A side read back from an analysis directory written by `netdiag analyze`."""
    from netdiag.analyze import MARKER, capture_point

    try:
        marker = json.loads((d / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{d / MARKER}: not a readable netdiag analysis marker ({exc})") from None
    frames: dict[str, pl.DataFrame] = {}
    for name, table in (("logons", LOGONS), ("transactions", TRANSACTIONS), ("connections", CONNECTIONS)):
        p = d / "tables" / f"{name}.parquet"
        if not p.is_file():
            raise UsageError(f"{d}: not a complete netdiag analysis directory: {p.relative_to(d)} is missing "
                             "(run `netdiag analyze` again, or compare the captures themselves)")
        try:
            df = pl.read_parquet(p)
            if name in ("connections", "transactions"):   # written before a column was added (nagle_stalls...)
                df = df.with_columns([pl.lit(None, c.dtype).alias(c.name) for c in table.columns
                                      if c.name not in df.columns and (c.name.startswith("nagle_")
                                                                       or c.name == "server_rtt_s")])
            frames[name] = table.conform(df)
        except (OSError, KeyError, pl.exceptions.PolarsError) as exc:
            raise UsageError(f"{p}: cannot be read as the netdiag {name} table: {exc}") from None
    prof = marker.get("profile")
    point_setting = (prof or {}).get("capture_point", "auto")
    cp = capture_point(frames["connections"], Profile(capture_point=point_setting)
                       if point_setting in ("auto", "client", "server", "middle") else Profile())
    reason = None if frames["logons"].height else (f"no logons: the analysis in {d} holds none "
                                                   "(its report.md says why)")
    return Side(label, "analysis directory", [str(d)] + [str(c) for c in marker.get("captures", [])], prof,
                frames["logons"], frames["transactions"], frames["connections"], cp.where, cp.how, reason)


def load_side(arg: Any, label: str, profile: Profile | None, options: Any = None) -> Side:
    """BEFORE/AFTER argument -> Side: a Side, an Analysis, an analysis directory, capture files or directories.

    `options`: how captures are analysed (netdiag.parallel.RunOptions; None: one pass)."""
    from netdiag.analyze import Analysis, analyze

    if isinstance(arg, Side):            # already loaded (netdiag.trend compares each period with the next)
        return replace(arg, label=label)
    if isinstance(arg, Analysis):
        return side_from_analysis(arg, label)
    paths = [Path(arg)] if isinstance(arg, str | os.PathLike) else [Path(p) for p in arg]
    if not paths:
        raise UsageError(f"{label}: no capture files or analysis directory given")
    for p in paths:
        if not p.exists():
            raise UsageError(f"{label}: {p}: no such file or directory")
    dirs = [p for p in paths if _is_analysis_dir(p)]
    if dirs:
        if len(paths) > 1:
            raise UsageError(f"{label}: give one analysis directory ({dirs[0]}) or capture files, not both")
        return side_from_directory(dirs[0], label)
    for p in paths:
        if p.is_dir() and not any(f.is_file() and f.name.lower().endswith(CAPTURE_SUFFIXES) for f in p.iterdir()):
            raise UsageError(f"{label}: {p}: holds neither capture files ({', '.join(CAPTURE_SUFFIXES)}) nor a "
                             "netdiag analysis (no .netdiag-report marker)")
    return side_from_analysis(analyze([str(p) for p in paths], profile, options=options), label)


# --------------------------------------------------------------------------------------------
# Per-side derived samples
# --------------------------------------------------------------------------------------------

def transactions_in_logons(side: Side) -> pl.DataFrame:
    """Transactions on a logon's connections that started inside that logon (with its client group)."""
    lg = side.logons
    if lg.height == 0 or side.transactions.height == 0:
        return side.transactions.head(0).with_columns(pl.lit(None, pl.String).alias("client_group"))
    members = (lg.select("logon_id", "start_ts_ns", "end_ts_ns", "client_group", "conn_ids")
               .explode("conn_ids").rename({"conn_ids": "conn_id"}).drop_nulls("conn_id"))
    t = side.transactions.join(members, on="conn_id", how="inner")
    t = t.filter((pl.col("req_first_ts_ns") >= pl.col("start_ts_ns")) & (pl.col("req_first_ts_ns") <= pl.col("end_ts_ns")))
    return t.unique(subset=["conn_id", "request_id", "req_first_ts_ns", "protocol", "operation"], keep="first",
                    maintain_order=True)


def logon_connections(side: Side) -> pl.DataFrame:
    """TCP connections of the logons, one row each, with per-connection health values and client group."""
    lg = side.logons
    conn = side.connections.filter(pl.col("transport") == "tcp") if side.connections.height else side.connections
    if lg.height == 0 or conn.height == 0:
        return pl.DataFrame()
    groups = (lg.select("client_group", "conn_ids").explode("conn_ids").rename({"conn_ids": "conn_id"})
              .drop_nulls("conn_id").unique(subset=["conn_id"], keep="first"))
    c = conn.join(groups, on="conn_id", how="inner")
    packets = (pl.col("packets_c2s") + pl.col("packets_s2c")).cast(pl.Float64)
    return c.with_columns(
        rtt_server_side_s=pl.col("rtt_server_side_ms") / 1000.0,
        rtt_client_side_s=pl.col("rtt_client_side_ms") / 1000.0,
        syn_retry_rate=(pl.col("syn_retransmissions").fill_null(0) > 0).cast(pl.Float64),
        retransmission_rate=pl.when(packets > 0).then(pl.col("retransmitted_segments").cast(pl.Float64) / packets)
        .otherwise(0.0),
        retransmission_stall_s=pl.col("retransmission_stall_s").fill_null(0.0),
        zero_window_s=pl.col("zero_window_s").fill_null(0.0),
        capture_loss_rate=(pl.col("unseen_bytes").fill_null(0) > 0).cast(pl.Float64),
        client_group=pl.col("client_group").fill_null("(none)"),
    )


def _values(df: pl.DataFrame, col: str) -> np.ndarray:
    if df.height == 0 or col not in df.columns:
        return np.zeros(0)
    return df[col].drop_nulls().cast(pl.Float64).to_numpy()


def _groups(before: pl.DataFrame, after: pl.DataFrame, col: str) -> tuple[list[str], list[str], list[str]]:
    vb = set(before[col].cast(pl.String).fill_null("(none)").to_list()) if before.height else set()
    va = set(after[col].cast(pl.String).fill_null("(none)").to_list()) if after.height else set()
    return sorted(vb & va), sorted(vb - va), sorted(va - vb)


def _in_group(df: pl.DataFrame, col: str, g: str) -> pl.DataFrame:
    return df.filter(pl.col(col).cast(pl.String).fill_null("(none)") == g)


# --------------------------------------------------------------------------------------------
# Comparability
# --------------------------------------------------------------------------------------------

def _circular_mean_hour(ts: np.ndarray) -> float:
    hours = (ts / 3.6e12) % 24.0
    ang = hours / 24.0 * 2 * math.pi
    return (math.atan2(np.sin(ang).mean(), np.cos(ang).mean()) / (2 * math.pi) * 24.0) % 24.0


def _capture_loss_share(side: Side) -> tuple[int, int]:
    c = side.connections.filter(pl.col("transport") == "tcp") if side.connections.height else side.connections
    if c.height == 0:
        return 0, 0
    lossy = int((c["unseen_bytes"].fill_null(0) > 0).sum())   # ACKed but never captured: the capture's loss
    return lossy, c.height


def comparability(before: Side, after: Side) -> list[dict[str, str]]:
    """The checks that say whether a difference could come from what was captured, not what changed."""
    out: list[dict[str, str]] = []

    def add(check: str, ok: bool, detail: str) -> None:
        out.append({"check": check, "status": "ok" if ok else "warning", "detail": detail})

    pb, pa = before.profile, after.profile
    if pb and pa:
        add("profile", pb["fingerprint"] == pa["fingerprint"],
            f"before {profile_name(pb)}, after {profile_name(pa)}")
    else:
        add("profile", False, f"before {profile_name(pb)}, after {profile_name(pa)}: cannot tell whether the "
                              "same logon rules were used")
    nb, na = before.logons.height, after.logons.height
    small = min(nb, na) < MIN_SAMPLES
    ratio = max(nb, na) / max(1, min(nb, na))
    add("logon count", not small and ratio <= COUNT_RATIO_WARN,
        f"{nb} before, {na} after" + (f"; fewer than {MIN_SAMPLES} on a side: the evidence is weak" if small else "")
        + (f"; counts differ {ratio:.1f}-fold (load may differ)" if ratio > COUNT_RATIO_WARN else ""))
    if nb and na:
        hb = _circular_mean_hour(before.logons["start_ts_ns"].to_numpy().astype(float))
        ha = _circular_mean_hour(after.logons["start_ts_ns"].to_numpy().astype(float))
        gap = min(abs(hb - ha), 24 - abs(hb - ha))
        add("time of day", gap <= TIME_OF_DAY_WARN_H,
            f"typical logon start {int(hb):02d}:{int(hb % 1 * 60):02d} UTC before, {int(ha):02d}:{int(ha % 1 * 60):02d} "
            f"UTC after ({before.summary()['first_logon_start']} .. {after.summary()['last_logon_end']})"
            + (f"; {gap:.1f} h apart: load at different times of day can explain a difference"
               if gap > TIME_OF_DAY_WARN_H else ""))
    for what, col in (("servers covered", "server_ip"), ("clients covered", "client_ip"),
                      ("client groups covered", "client_group")):
        both, only_b, only_a = _groups(before.logons, after.logons, col)
        union = len(both) + len(only_b) + len(only_a)
        jac = len(both) / union if union else 1.0
        add(what, jac >= COVERAGE_WARN and (col != "server_ip" or not (only_b or only_a)),
            f"{len(both)} on both sides, {len(only_b)} only before, {len(only_a)} only after"
            + ("" if jac >= COVERAGE_WARN else "; the sides saw different populations"))
    cb, ca = before.capture_point, after.capture_point
    determined = {"client", "server", "middle"}
    add("capture point", not (cb in determined and ca in determined and cb != ca),
        f"before {cb}, after {ca}" + ("; round trips and transfer times split differently at different capture "
                                      "points" if cb in determined and ca in determined and cb != ca else ""))
    lb, tb = _capture_loss_share(before)
    la, ta = _capture_loss_share(after)
    add("capture loss", lb == 0 and la == 0,
        f"TCP connections with bytes the capture missed: {lb} of {tb} before, {la} of {ta} after"
        + ("; loss-recovery and transfer times can reflect the capture, not the network" if lb or la else ""))
    return out
