"""`netdiag.compare`: did a change help? Before/after comparison of two analyses, with statistics.

    from netdiag.compare import compare
    c = compare("before.pcapng", "after-report/")      # captures, directories of them, or analysis dirs
    c.metric("logon:duration_s")["verdict"], c.to_json(), c.to_markdown(), c.to_html()

Each side is analysed with `netdiag.analyze.analyze` (captures) or read back from a directory
written by `netdiag analyze` (tables/*.parquet and the .netdiag-report marker), so a week-old
analysis is compared without its captures. Nothing here re-implements the pipeline: logons and
their wait budget (netdiag.schema.BUDGET_COLUMNS), transactions' server_think_s and the
connections table's TCP judgements are taken as they are.

What is compared (one row of `Comparison.metrics` each; docs/compare.md has the method):

- logon duration per logon, overall, per bootstrap server and per client group;
- the wait budget: each category's seconds per logon (and the sums per side in `budget`);
- server think per operation (matched by protocol and operation name) over the transactions
  inside logons;
- TCP health per connection of the logons, overall, per server address and per client group:
  handshake round trip on each side of the capture point, SYN retry rate, retransmission rate,
  retransmission stall seconds, zero-window seconds, capture loss.

Statistics (scipy, not hand-written): the difference after - before of the metric's statistic
(median for durations, server think and round trips; mean for budget categories and TCP rates,
whose mass sits at zero) with a percentile bootstrap 95 % CI (`scipy.stats.bootstrap`, fixed
seed, so results are reproducible) for the median, p90, p95 and mean alike, the two-sided
Mann-Whitney U p-value (`scipy.stats.mannwhitneyu`) and a tail test (Fisher's exact test on the
counts above the pooled 90th percentile), Holm over those two within a metric, Benjamini-Hochberg
across the metrics of a family (`scipy.stats.false_discovery_control`), and Cliff's delta (=
rank-biserial correlation, from the same U). A verdict needs all of: enough samples on both
sides, adjusted p below alpha, one of median/p90/p95/mean with a CI that excludes zero and a
difference above the metric's smallest meaningful change, none moving the other way, and a
non-negligible effect size (or a tail change). A budget category that falls to (rises from)
zero in every logon is improved (regressed). Below MIN_SAMPLES a side: "weak evidence".

Comparability is checked before anything is concluded: logon counts, time of day, servers and
clients covered, capture point, capture loss and the profiles used. Different profiles are
refused (they define what a logon is) unless explicitly allowed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netdiag.errors import NetdiagError, UsageError
from netdiag.profile import Profile, load_profile
from netdiag.protocols.registry import request_protocols
from netdiag.schema import BUDGET_COLUMNS, CONNECTIONS, LOGONS, TRANSACTIONS

# --------------------------------------------------------------------------------------------
# Thresholds (stated in every output and in docs/compare.md)
# --------------------------------------------------------------------------------------------
ALPHA = 0.05                 # significance level for the (adjusted) Mann-Whitney p-value
CONFIDENCE = 0.95            # bootstrap confidence level
N_RESAMPLES = 1999           # bootstrap resamples (cost: see docs/compare.md)
SEED = 20240607              # fixed: the same inputs always give the same intervals
MIN_SAMPLES = 8              # fewer logons/operations/connections on a side: "weak evidence", no verdict
NEGLIGIBLE_DELTA = 0.147     # |Cliff's delta| below this is negligible (Romano et al. 2006)
RELATIVE_MIN_CHANGE = 0.10   # a change smaller than 10 % of the before value is not called a change
COUNT_RATIO_WARN = 3.0       # logon counts differing by more than this factor are flagged
TIME_OF_DAY_WARN_H = 2.0     # median logon start times of day further apart than this are flagged
COVERAGE_WARN = 0.5          # Jaccard overlap of servers/clients below this is flagged
BOOTSTRAP_CELLS = 2_000_000  # resample values held at once (memory bound for large captures)

# The statistics every metric is summarised and judged by (the metric's own statistic first):
# the median is "a typical logon", p90/p95 are the slow tail a clinician remembers, the mean is
# what the budget categories add up to. A change in any of them can carry a verdict.
STATISTICS = ("median", "p90", "p95", "mean")
ZERO_RULE_MIN_NONZERO = 3    # a budget category at 0 on one side needs this many non-zero logons on the other
TAIL_MIN_ABOVE = 3           # p90/p95 judged only with at least this many values above them on each side

VERDICTS = ("improved", "regressed", "no significant change", "weak evidence")
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".cap.gz")


class CompareError(NetdiagError):
    """The two sides cannot be compared (no logons, different profiles); the message says why."""

    exit_code = 2


class NothingToCompare(CompareError):
    """A side holds no logons: the analysis ran and found nothing to compare (exit 0, README "Exit codes")."""

    exit_code = 0


@dataclass(frozen=True)
class MetricSpec:
    """How one metric is summarised and judged."""

    family: str          # logon, budget, server_think, tcp
    name: str            # column-like name with its unit
    statistic: str       # median or mean
    min_change: float    # smallest absolute difference worth a verdict (in the metric's unit)
    unit: str            # s or ratio
    meaning: str


DURATION = MetricSpec("logon", "duration_s", "median", 0.050, "s", "logon duration (start to end rule)")
BUDGET_SPECS = tuple(MetricSpec("budget", c, "mean", 0.050, "s", f"seconds per logon spent on {c[:-2]}")
                     for c in BUDGET_COLUMNS)
SERVER_THINK = MetricSpec("server_think", "server_think_s", "median", 0.010, "s",
                          "server think per call of the operation")
TCP_SPECS = (
    MetricSpec("tcp", "rtt_server_side_s", "median", 0.001, "s", "handshake round trip, capture point to server"),
    MetricSpec("tcp", "rtt_client_side_s", "median", 0.001, "s", "handshake round trip, capture point to client"),
    MetricSpec("tcp", "syn_retry_rate", "mean", 0.01, "ratio", "share of connections that needed a SYN retry"),
    MetricSpec("tcp", "retransmission_rate", "mean", 0.005, "ratio", "retransmitted segments per packet, per connection"),
    MetricSpec("tcp", "retransmission_stall_s", "mean", 0.010, "s", "seconds waiting on resends, per connection"),
    MetricSpec("tcp", "zero_window_s", "mean", 0.010, "s", "seconds of advertised zero window, per connection"),
    MetricSpec("tcp", "capture_loss_rate", "mean", 0.01, "ratio", "share of connections with bytes the capture missed"),
)
ALL_SPECS = (DURATION, *BUDGET_SPECS, SERVER_THINK, *TCP_SPECS)


# --------------------------------------------------------------------------------------------
# Profiles: a fingerprint recorded in analysis directories (netdiag.analyze writes it)
# --------------------------------------------------------------------------------------------

def profile_record(profile: Profile) -> dict[str, Any]:
    """What an analysis directory records about its profile: source file, fingerprint, capture point.

    The fingerprint hashes every setting (servers, port roles, logon rules, client groups,
    thresholds) but not the file's path, so the same profile copied elsewhere matches.
    """
    text = repr(replace(profile, source=None, tls_keylog=None))   # a key log is input, not a site setting
    return {"source": Path(profile.source).name if profile.source else None,
            "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16],
            "capture_point": profile.capture_point}


def _profile_name(rec: dict[str, Any] | None) -> str:
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


def load_side(arg: Any, label: str, profile: Profile | None) -> Side:
    """BEFORE/AFTER argument -> Side: a Side, an Analysis, an analysis directory, capture files or directories."""
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
    return side_from_analysis(analyze([str(p) for p in paths], profile), label)


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------

def _stat(x: np.ndarray, how: str, axis: int = -1) -> np.ndarray:
    return np.median(x, axis=axis) if how == "median" else np.mean(x, axis=axis)


def describe(values: np.ndarray) -> dict[str, float | int | None]:
    """count, p50, p90, p95, p99 (numpy linear, as netdiag.logons.population) and mean."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"count": 0, "p50": None, "p90": None, "p95": None, "p99": None, "mean": None}
    p = np.percentile(v, [50, 90, 95, 99])
    return {"count": int(v.size), "p50": float(p[0]), "p90": float(p[1]), "p95": float(p[2]), "p99": float(p[3]),
            "mean": float(v.mean())}


def bootstrap_ci(before: np.ndarray, after: np.ndarray, how: str, *, seed: int = SEED,
                 n_resamples: int = N_RESAMPLES) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of statistic(after) - statistic(before) (independent resampling per side)."""
    if before.size < 2 or after.size < 2:
        return None, None
    if np.ptp(before) == 0 and np.ptp(after) == 0:      # nothing to resample: the difference is exact
        d = float(_stat(after, how) - _stat(before, how))
        return d, d
    from scipy.stats import bootstrap

    def diff(b: np.ndarray, a: np.ndarray, axis: int = -1) -> np.ndarray:
        return _stat(a, how, axis) - _stat(b, how, axis)

    batch = max(1, BOOTSTRAP_CELLS // max(before.size, after.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap((before, after), diff, n_resamples=n_resamples, batch=batch, vectorized=True,
                        paired=False, confidence_level=CONFIDENCE, method="percentile",
                        rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return (lo if math.isfinite(lo) else None), (hi if math.isfinite(hi) else None)


def _all_stats(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """median, p90, p95 (numpy linear, as `describe`) and mean along axis, stacked first."""
    q = np.quantile(x, [0.5, 0.9, 0.95], axis=axis)
    return np.concatenate([q, np.mean(x, axis=axis)[None]], axis=0)


def bootstrap_cis(before: np.ndarray, after: np.ndarray, *, seed: int = SEED,
                  n_resamples: int = N_RESAMPLES) -> dict[str, tuple[float | None, float | None]]:
    """Percentile bootstrap CIs of the after - before difference of each of STATISTICS.

    One resampling (the same resamples for all four, so they are consistent with each other);
    with the same seed the median and mean intervals equal `bootstrap_ci`'s.
    """
    none: dict[str, tuple[float | None, float | None]] = {k: (None, None) for k in STATISTICS}
    if before.size < 2 or after.size < 2:
        return none
    if np.ptp(before) == 0 and np.ptp(after) == 0:      # nothing to resample: the differences are exact
        d = _all_stats(after) - _all_stats(before)
        return {k: (float(v), float(v)) for k, v in zip(STATISTICS, d, strict=True)}
    from scipy.stats import bootstrap

    def diff(b: np.ndarray, a: np.ndarray, axis: int = -1) -> np.ndarray:
        return _all_stats(a, axis) - _all_stats(b, axis)

    batch = max(1, BOOTSTRAP_CELLS // max(before.size, after.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bootstrap((before, after), diff, n_resamples=n_resamples, batch=batch, vectorized=True,
                        paired=False, confidence_level=CONFIDENCE, method="percentile",
                        rng=np.random.default_rng(seed))
    out = {}
    for k, lo, hi in zip(STATISTICS, res.confidence_interval.low, res.confidence_interval.high, strict=True):
        out[k] = (float(lo) if math.isfinite(lo) else None, float(hi) if math.isfinite(hi) else None)
    return out


def tail_test(before: np.ndarray, after: np.ndarray, q: float = 0.90) -> float | None:
    """Two-sided p of the tail test: Fisher's exact test on how many values of each side lie above the
    pooled q-quantile (a quantile test, Mood's median test moved to the 90th percentile).

    Mann-Whitney asks whether one side tends to be larger and misses eight of forty logons 0.2 s
    slower when the other 32 happen to sit a little lower (p = 0.5 on such a sample); this asks
    whether the slowest tenth of all logons comes from one side. It has little power below ~20
    logons a side (the pooled top tenth is two or three logons), where the tail is not judged anyway.
    """
    if before.size < 2 or after.size < 2:
        return None
    both = np.concatenate([before, after])
    cut = float(np.quantile(both, q))
    kb, ka = int((before > cut).sum()), int((after > cut).sum())
    if kb + ka == 0:
        return None
    from scipy.stats import fisher_exact

    return float(fisher_exact([[kb, before.size - kb], [ka, after.size - ka]]).pvalue)


def rank_test(before: np.ndarray, after: np.ndarray) -> tuple[float | None, float | None]:
    """Two-sided Mann-Whitney U p-value and Cliff's delta (P(after > before) - P(after < before))."""
    if before.size == 0 or after.size == 0:
        return None, None
    both = np.concatenate([before, after])
    if np.ptp(both) == 0:
        return 1.0, 0.0
    from scipy.stats import mannwhitneyu

    res = mannwhitneyu(after, before, alternative="two-sided", method="auto")
    delta = 2.0 * float(res.statistic) / (after.size * before.size) - 1.0
    return float(res.pvalue), delta


def _tail_judgeable(q: float, n: int) -> bool:
    """Whether the q-quantile of n values has at least TAIL_MIN_ABOVE values above it (numpy's linear rule).

    Below that the quantile moves with the largest one or two values: one or two logons could
    carry a verdict (the lab's A/A pair has two of twelve logons 0.1-0.2 s slower from machine load
    alone), and the percentile bootstrap of it is too narrow (resamples never exceed the sample
    maximum). p90 needs 22 values a side, p95 42; below that the mean still sees the tail.
    """
    return n >= 2 and n - 1 - math.floor(q * (n - 1)) >= TAIL_MIN_ABOVE


def _practical(spec: MetricSpec, before_value: float | None) -> float:
    return max(spec.min_change, RELATIVE_MIN_CHANGE * abs(before_value or 0.0))


def judge(spec: MetricSpec, r: dict[str, Any]) -> tuple[str, str]:
    """Verdict and the reason in words for one metric row (higher is worse for every metric).

    improved/regressed needs, with at least MIN_SAMPLES a side: the metric's adjusted p below
    ALPHA (Mann-Whitney and the tail test, Holm within the metric, then
    Benjamini-Hochberg within the family); at least one of median/p90/p95/mean with a 95 %
    interval that excludes 0 and a difference of at least the smallest meaningful change; no
    statistic whose interval excludes 0 pointing the other way; and a non-negligible effect
    (|Cliff's delta| >= 0.147, or the change is carried by p90/p95). p90/p95 count only with
    enough values above them (`_tail_judgeable`). A budget category that is 0
    in every logon on one side and non-zero in >= ZERO_RULE_MIN_NONZERO logons on the other, by
    at least the smallest meaningful change, fell to (rose from) zero: improved (regressed).
    """
    n_before, n_after = r["n_before"], r["n_after"]
    if n_before < MIN_SAMPLES or n_after < MIN_SAMPLES:
        interval = ("no interval can be computed from fewer than 2" if min(n_before, n_after) < 2
                    else "the interval is wide and unreliable")
        return "weak evidence", (f"only {n_before} before and {n_after} after (a verdict needs at least "
                                 f"{MIN_SAMPLES} on each side): {interval}, so no verdict is given")
    zero = r.get("zero_rule")
    if zero:
        return zero
    p_adj, delta = r["p_adjusted"], r["cliffs_delta"]
    if r["difference"] is None or p_adj is None or delta is None:
        return "weak evidence", "not enough data to test"
    st = r["statistics"]
    moved, against, small = [], [], []
    for k in STATISTICS:
        q = {"p90": 0.90, "p95": 0.95}.get(k)
        if q is not None and not (_tail_judgeable(q, n_before) and _tail_judgeable(q, n_after)):
            continue
        x = st[k]
        lo, hi, d = x["ci_low"], x["ci_high"], x["difference"]
        if lo is None or hi is None or d is None or lo <= 0 <= hi:
            continue
        if abs(d) >= _practical(spec, x["before"]):
            moved.append(k)
        else:
            small.append(k)
    signs = {k: (1 if st[k]["difference"] > 0 else -1) for k in moved + small}
    if moved:
        main = signs[moved[0]]
        against = [k for k, sg in signs.items() if sg != main]
    failed = []
    if p_adj >= ALPHA:
        failed.append(f"p = {p_adj:.3g} >= {ALPHA}")
    if not moved:
        failed.append("no statistic (median, p90, p95, mean) changed by at least the smallest meaningful change "
                      "with a 95 % interval excluding 0" + (f" ({', '.join(small)} moved less)" if small else ""))
    if against:
        failed.append(f"{', '.join(against)} moved the other way")
    # Cliff's delta measures how often one side is larger: negligible dominance is no change, unless the
    # change is in the tail (p90/p95), which few logons carry by definition
    if abs(delta) < NEGLIGIBLE_DELTA and not {"p90", "p95"} & set(moved):
        failed.append(f"|Cliff's delta| = {abs(delta):.2f} < {NEGLIGIBLE_DELTA} and the tail (p90/p95) did not move")
    if failed:
        return "no significant change", "; ".join(failed)
    carried = ", ".join(f"{k} {_fmt(st[k]['difference'], spec.unit, sign=True)} (95 % CI "
                        f"{_fmt(st[k]['ci_low'], spec.unit, sign=True)} to {_fmt(st[k]['ci_high'], spec.unit, sign=True)})"
                        for k in moved)
    return ("regressed" if signs[moved[0]] > 0 else "improved"), (
        f"p = {p_adj:.3g} < {ALPHA}; moved by more than the smallest meaningful change: {carried}; "
        f"|Cliff's delta| {abs(delta):.2f}")


def _zero_rule(spec: MetricSpec, b: np.ndarray, a: np.ndarray) -> tuple[str, str] | None:
    """A budget category at exactly 0 in every logon of one side and present in >= 3 logons of the other."""
    if spec.family != "budget" or b.size < MIN_SAMPLES or a.size < MIN_SAMPLES:
        return None
    for zero_side, other, other_name, verdict, words in ((a, b, "before", "improved", "fell to zero"),
                                                         (b, a, "after", "regressed", "rose from zero")):
        if zero_side.size and not zero_side.any():
            k = int((other > 0).sum())
            diff = float(other.mean())
            if k >= ZERO_RULE_MIN_NONZERO and diff >= _practical(spec, float(b.mean())):
                zero_name = "after" if other_name == "before" else "before"
                return verdict, (f"{words}: 0 s in every one of the {zero_side.size} logons {zero_name}, non-zero "
                                 f"in {k} of {other.size} {other_name} (mean {_fmt(diff, 's')} per logon, at least the "
                                 "smallest meaningful change): the cause no longer occurs" if verdict == "improved"
                                 else f"{words}: 0 s in every one of the {zero_side.size} logons {zero_name}, non-zero "
                                 f"in {k} of {other.size} {other_name} (mean {_fmt(diff, 's')} per logon): a new cause")
    return None


def _metric_row(spec: MetricSpec, group_kind: str, group: str | None, before: np.ndarray, after: np.ndarray,
                seed: int) -> dict[str, Any]:
    b = np.asarray(before, dtype=float)
    a = np.asarray(after, dtype=float)
    b, a = np.sort(b[np.isfinite(b)]), np.sort(a[np.isfinite(a)])   # row order must not change the bootstrap
    db, da = describe(b), describe(a)
    cis = bootstrap_cis(b, a, seed=seed)
    key = {"median": "p50", "p90": "p90", "p95": "p95", "mean": "mean"}
    stats: dict[str, dict[str, float | None]] = {}
    for k in STATISTICS:
        vb, va = db[key[k]], da[key[k]]
        stats[k] = {"before": vb, "after": va, "difference": va - vb if vb is not None and va is not None else None,
                    "ci_low": cis[k][0], "ci_high": cis[k][1]}
    prim = stats[spec.statistic]
    sb, sa, diff = prim["before"], prim["after"], prim["difference"]
    p, delta = rank_test(b, a)
    p_tail = tail_test(b, a)
    # Holm over the metric's two tests (location, tail): the smaller p times 2 is the first step
    tested = [x for x in (p, p_tail) if x is not None]
    p_metric = min(1.0, len(tested) * min(tested)) if tested else None
    mid = f"{spec.family}:{spec.name}" + (f"[{group_kind} {group}]" if group is not None else "")
    return {"metric_id": mid, "family": spec.family, "metric": spec.name, "group_kind": group_kind,
            "group": group, "unit": spec.unit, "statistic": spec.statistic, "meaning": spec.meaning,
            "min_change": spec.min_change, "n_before": int(b.size), "n_after": int(a.size),
            "before": db, "after": da, "before_stat": sb, "after_stat": sa,
            "difference": diff, "ci_low": prim["ci_low"], "ci_high": prim["ci_high"], "statistics": stats,
            "p_value": p, "p_tail": p_tail, "p_metric": p_metric,
            "p_adjusted": p_metric, "cliffs_delta": delta, "zero_rule": _zero_rule(spec, b, a),
            "verdict": "", "reason": ""}


def _adjust_and_judge(rows: list[dict[str, Any]], specs: dict[str, MetricSpec]) -> None:
    """Benjamini-Hochberg within each family on each metric's Holm-combined p (the overall logon duration is the
    primary test: Holm only), then verdicts."""
    from scipy.stats import false_discovery_control

    families: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["metric_id"] == "logon:duration_s":
            continue
        families.setdefault(r["family"], []).append(r)
    for members in families.values():
        tested = [r for r in members if r["p_metric"] is not None and r["n_before"] >= MIN_SAMPLES
                  and r["n_after"] >= MIN_SAMPLES]
        if tested:
            adj = false_discovery_control(np.array([r["p_metric"] for r in tested]), method="bh")
            for r, q in zip(tested, adj, strict=True):
                r["p_adjusted"] = float(min(1.0, q))
    for r in rows:
        r["verdict"], r["reason"] = judge(specs[r["metric_id"]], r)
        r.pop("zero_rule", None)


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
            f"before {_profile_name(pb)}, after {_profile_name(pa)}")
    else:
        add("profile", False, f"before {_profile_name(pb)}, after {_profile_name(pa)}: cannot tell whether the "
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


# --------------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------------

@dataclass
class Comparison:
    """Result of `compare`: the sides, comparability checks, one row per metric, the budget sums."""

    before: Side
    after: Side
    checks: list[dict[str, str]]
    metrics: list[dict[str, Any]]
    budget: list[dict[str, Any]]
    only_one_side: dict[str, dict[str, list[str]]]
    seed: int = SEED

    # ---- access ---------------------------------------------------------------------------
    def metric(self, metric_id: str) -> dict[str, Any]:
        """A metric row by id (`logon:duration_s`, `budget:server_s`, `server_think:giop authenticate`...)."""
        for r in self.metrics:
            if r["metric_id"] == metric_id:
                return r
        raise UsageError(f"no metric {metric_id!r} in this comparison; known: {', '.join(self.metric_ids()[:30])}"
                         + (" ..." if len(self.metrics) > 30 else ""))

    def metric_ids(self) -> list[str]:
        return [r["metric_id"] for r in self.metrics]

    def resolve(self, name: str) -> dict[str, Any]:
        """A metric by full id, or by a short name of an overall metric (`duration_s`, `server_s`, `authenticate`)."""
        for r in self.metrics:
            if r["metric_id"] == name:
                return r
        short = [r for r in self.metrics if r["group"] is None and (r["metric"] == name or
                                                                   r["metric_id"].split(":", 1)[1] == name)]
        ops = [r for r in self.metrics if r["family"] == "server_think" and r["group_kind"] == "operation"
               and (r["group"] or "").split(" ", 1)[-1] == name]
        found = short or ops
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UsageError(f"metric {name!r} is ambiguous: {', '.join(r['metric_id'] for r in found)}")
        return self.metric(name)

    def regressed(self, name: str) -> bool:
        """True when that metric's verdict is 'regressed' (a significant change for the worse)."""
        return self.resolve(name)["verdict"] == "regressed"

    @property
    def warnings(self) -> list[dict[str, str]]:
        return [c for c in self.checks if c["status"] != "ok"]

    def thresholds(self) -> dict[str, Any]:
        return {"alpha": ALPHA, "confidence": CONFIDENCE, "bootstrap": "percentile", "n_resamples": N_RESAMPLES,
                "seed": self.seed, "min_samples_per_side": MIN_SAMPLES, "negligible_cliffs_delta": NEGLIGIBLE_DELTA,
                "relative_min_change": RELATIVE_MIN_CHANGE, "statistics": list(STATISTICS),
                "tail_min_values_above": TAIL_MIN_ABOVE, "zero_rule_min_nonzero": ZERO_RULE_MIN_NONZERO,
                "tests": "Mann-Whitney U and a tail test (Fisher's exact on counts above the pooled p90)",
                "p_adjustment": "Holm over the two tests within a metric, then Benjamini-Hochberg within each "
                "family (logon duration overall is the primary test: Holm only)",
                "min_change": {f"{s.family}:{s.name}": s.min_change for s in ALL_SPECS}}

    def headline(self) -> list[str]:
        """Plain-words sentences: the duration verdict, the categories that moved, the caveats."""
        d = self.metric("logon:duration_s")
        out = [_sentence("Logon duration", d)]
        moved = [r for r in self.metrics if r["family"] == "budget" and r["verdict"] in ("improved", "regressed")]
        if moved:
            out.append("Categories that moved (mean seconds per logon): " + "; ".join(
                f"{_label(r['metric'])} {r['verdict']} {_fmt(r['difference'], r['unit'], sign=True)} "
                + (f"({r['reason'].split(' (')[0]})" if r["reason"].startswith(("fell to zero", "rose from zero")) else
                   f"(95 % CI {_fmt(r['ci_low'], r['unit'], sign=True)} to {_fmt(r['ci_high'], r['unit'], sign=True)})")
                for r in moved) + ".")
        elif d["verdict"] != "weak evidence":
            out.append("No wait-budget category changed significantly.")
        ops = [r for r in self.metrics if r["family"] == "server_think" and r["verdict"] in ("improved", "regressed")]
        if ops:
            out.append("Server think that moved: " + "; ".join(
                f"{r['group']} {r['verdict']} {_fmt(r['difference'], 's', sign=True)}" for r in ops) + ".")
        tcp = [r for r in self.metrics if r["family"] == "tcp" and r["group"] is None
               and r["verdict"] in ("improved", "regressed")]
        if tcp:
            out.append("TCP health that moved: " + "; ".join(
                f"{r['metric']} {r['verdict']} {_fmt(r['difference'], r['unit'], sign=True)}" for r in tcp) + ".")
        if self.warnings:
            out.append("Check before trusting this: " + "; ".join(f"{c['check']}: {c['detail']}"
                                                                  for c in self.warnings) + ".")
        return out

    # ---- renderings -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        from netdiag import __version__

        return {"tool": "netdiag compare", "version": __version__, "before": self.before.summary(),
                "after": self.after.summary(), "comparable_without_warnings": not self.warnings,
                "comparability": self.checks, "thresholds": self.thresholds(), "headline": self.headline(),
                "metrics": self.metrics, "budget": self.budget, "only_one_side": self.only_one_side}

    def to_json(self) -> str:
        """The whole comparison as JSON (stable keys; seconds; no payload, only the tables' addresses)."""
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    def to_markdown(self) -> str:
        """The comparison as Markdown for a case or a change ticket."""
        return render_markdown(self)

    def to_html(self) -> str:
        """A self-contained HTML page in the analyze report's style (same CSS, inline SVG ECDF and budget)."""
        return render_html(self)


def _label(cat: str) -> str:
    from netdiag.report import CATEGORY_LABELS

    return CATEGORY_LABELS.get(cat, cat)


def _fmt(x: float | None, unit: str, *, sign: bool = False) -> str:
    if x is None:
        return "n/a"
    if unit == "ratio":
        return f"{x * 100:+.1f} pp" if sign else f"{x * 100:.1f} %"
    from netdiag.report import fmt_s

    s = fmt_s(x)
    return ("+" + s if sign and x > 0 and not s.startswith("0 ") else s)


def _sentence(what: str, r: dict[str, Any]) -> str:
    st = "median" if r["statistic"] == "median" else "mean"
    base = (f"{what}: {r['verdict']}. {st} {_fmt(r['before_stat'], r['unit'])} before ({r['n_before']}), "
            f"{_fmt(r['after_stat'], r['unit'])} after ({r['n_after']}); difference "
            f"{_fmt(r['difference'], r['unit'], sign=True)}")
    if r["ci_low"] is not None:
        base += f" (95 % CI {_fmt(r['ci_low'], r['unit'], sign=True)} to {_fmt(r['ci_high'], r['unit'], sign=True)})"
    for k in ("p90", "mean"):   # the tail and the mean, beside the metric's own statistic
        x = r.get("statistics", {}).get(k)
        if x and k != r["statistic"] and x["difference"] is not None:
            base += (f"; {k} {_fmt(x['before'], r['unit'])} -> {_fmt(x['after'], r['unit'])} "
                     f"({_fmt(x['difference'], r['unit'], sign=True)}"
                     + (f", 95 % CI {_fmt(x['ci_low'], r['unit'], sign=True)} to "
                        f"{_fmt(x['ci_high'], r['unit'], sign=True)})" if x["ci_low"] is not None else ")"))
    if r["p_value"] is not None:
        base += f", Mann-Whitney p = {r['p_value']:.3g}, Cliff's delta {r['cliffs_delta']:+.2f}"
        if r.get("p_tail") is not None:
            base += f", tail test p = {r['p_tail']:.3g}"
    if r["verdict"] == "weak evidence":
        base += f". The evidence is weak: {r['reason']}"
    elif r["verdict"] == "no significant change":
        base += f". Not called a change because {r['reason']}"
    return base + "."


def _require_logons(before: Side, after: Side) -> None:
    missing = [s for s in (before, after) if s.logons.height == 0]
    if not missing:
        return
    why = "; ".join(f"{s.label} ({', '.join(Path(p).name for p in s.inputs[:3])}): "
                    f"{(s.no_logons_reason or 'no logons found').removeprefix('no logons: ')}" for s in missing)
    which = "neither side has any logons" if len(missing) == 2 else f"the {missing[0].label} side has no logons"
    raise NothingToCompare(f"nothing to compare: {which}. {why}")


def _require_same_profile(before: Side, after: Side) -> None:
    pb, pa = before.profile, after.profile
    if pb and pa and pb["fingerprint"] != pa["fingerprint"]:
        raise CompareError(
            f"the sides were analysed with different profiles (before {_profile_name(pb)}, after "
            f"{_profile_name(pa)}): a profile decides which servers, ports and end rules make a logon, so the "
            "differences could come from the profiles rather than the change. Analyse both with the same profile "
            "(compare the captures with --profile P), or pass --allow-different-profiles to compare anyway")


def compare(before: Any, after: Any, profile: Profile | str | os.PathLike[str] | None = None, *,
            allow_different_profiles: bool = False, seed: int = SEED) -> Comparison:
    """Compare two sides (captures, directories of captures, analysis directories or Analysis objects).

    `profile` is used for the sides given as captures; analysis directories carry their own.
    Raises CompareError when a side has no logons or the profiles differ (unless allowed).
    """
    prof = profile if isinstance(profile, Profile) else (load_profile(profile) if profile is not None else Profile())
    b = load_side(before, "before", prof)
    a = load_side(after, "after", prof)
    _require_logons(b, a)
    if not allow_different_profiles:
        _require_same_profile(b, a)
    checks = comparability(b, a)

    rows: list[dict[str, Any]] = []
    specs: dict[str, MetricSpec] = {}

    def add(spec: MetricSpec, kind: str, group: str | None, vb: np.ndarray, va: np.ndarray) -> None:
        r = _metric_row(spec, kind, group, vb, va, seed)
        rows.append(r)
        specs[r["metric_id"]] = spec

    from netdiag.logons.population import complete_logons

    # logons cut by a capture's start or end are left out: their durations are lower bounds
    lb, la = complete_logons(b.logons), complete_logons(a.logons)
    add(DURATION, "all", None, _values(lb, "duration_s"), _values(la, "duration_s"))
    only: dict[str, dict[str, list[str]]] = {}
    for kind, col in (("server", "server_ip"), ("client group", "client_group")):
        both, ob, oa = _groups(lb, la, col)
        only[kind] = {"before": ob, "after": oa}
        if len(both) > 1 or ob or oa:        # one group equal to everything adds nothing
            for g in both:
                add(DURATION, kind, g, _values(_in_group(lb, col, g), "duration_s"),
                    _values(_in_group(la, col, g), "duration_s"))
    for spec in BUDGET_SPECS:
        add(spec, "all", None, _values(lb, spec.name), _values(la, spec.name))

    tb, ta = transactions_in_logons(b), transactions_in_logons(a)
    req = list(request_protocols())
    tb = tb.filter(pl.col("protocol").is_in(req) & pl.col("server_think_s").is_not_null())
    ta = ta.filter(pl.col("protocol").is_in(req) & pl.col("server_think_s").is_not_null())
    key = (pl.col("protocol") + pl.lit(" ") + pl.col("operation").fill_null("?")).alias("op_key")
    tb, ta = tb.with_columns(key), ta.with_columns(key)
    both, ob, oa = _groups(tb, ta, "op_key")
    only["operation"] = {"before": ob, "after": oa}
    for g in both:
        add(SERVER_THINK, "operation", g, _values(_in_group(tb, "op_key", g), "server_think_s"),
            _values(_in_group(ta, "op_key", g), "server_think_s"))

    cb, ca = logon_connections(b), logon_connections(a)
    if cb.height and ca.height:
        cb = cb.with_columns(server=pl.col("server_ip"))
        ca = ca.with_columns(server=pl.col("server_ip"))
        for spec in TCP_SPECS:
            add(spec, "all", None, _values(cb, spec.name), _values(ca, spec.name))
        for kind, col in (("server", "server"), ("client group", "client_group")):
            gb, gob, goa = _groups(cb, ca, col)
            only[f"tcp {kind}"] = {"before": gob, "after": goa}
            if len(gb) > 1 or gob or goa:
                for g in gb:
                    for spec in TCP_SPECS:
                        add(spec, kind, g, _values(_in_group(cb, col, g), spec.name),
                            _values(_in_group(ca, col, g), spec.name))
    _adjust_and_judge(rows, specs)

    verdict_of = {r["metric"]: r for r in rows if r["family"] == "budget"}
    budget = []
    for c in BUDGET_COLUMNS:
        sb, sa = float(lb[c].sum()), float(la[c].sum())
        budget.append({"category": c, "label": _label(c), "before_sum_s": sb, "after_sum_s": sa,
                       "before_per_logon_s": sb / lb.height, "after_per_logon_s": sa / la.height,
                       "change_per_logon_s": sa / la.height - sb / lb.height,
                       "before_share": sb / float(lb["duration_s"].sum()) if float(lb["duration_s"].sum()) else 0.0,
                       "after_share": sa / float(la["duration_s"].sum()) if float(la["duration_s"].sum()) else 0.0,
                       "verdict": verdict_of[c]["verdict"]})
    return Comparison(b, a, checks, rows, budget, only, seed)


# --------------------------------------------------------------------------------------------
# Renderings: terminal, Markdown, HTML (the analyze report's CSS, table helper and SVG helpers)
# --------------------------------------------------------------------------------------------

def _p(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.2g}" if x < 0.001 else f"{x:.3f}")


def _ci(r: dict[str, Any]) -> str:
    if r["ci_low"] is None:
        return "n/a"
    return f"{_fmt(r['ci_low'], r['unit'], sign=True)} .. {_fmt(r['ci_high'], r['unit'], sign=True)}"


def _metric_name(r: dict[str, Any]) -> str:
    if r["family"] == "budget":
        return f"budget: {_label(r['metric'])}"
    if r["family"] == "server_think":
        return f"server think: {r['group']}"
    name = {"logon": "logon duration"}.get(r["family"], r["family"]) + (
        f" {r['metric']}" if r["family"] != "logon" else "")
    return name + (f" [{r['group_kind']} {r['group']}]" if r["group"] is not None else "")


def terminal_rows(c: Comparison, *, everything: bool = False) -> list[dict[str, Any]]:
    """The rows the terminal table shows: every overall metric and operation, groups only when they moved."""
    keep = []
    for r in c.metrics:
        grouped = r["group"] is not None and r["family"] != "server_think"
        if everything or not grouped or r["verdict"] in ("improved", "regressed"):
            keep.append(r)
    return keep


def print_terminal(c: Comparison, *, everything: bool = False) -> None:
    """Headline, comparability warnings and the metric table on stdout (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 160))
    for line in c.headline():
        console.print(line, markup=False, highlight=False)
    table = Table(title="netdiag compare: before -> after", header_style="bold")
    for h, j in (("metric", "left"), ("n before/after", "right"), ("before", "right"), ("after", "right"),
                 ("difference", "right"), ("95 % CI", "right"), ("p (adj.)", "right"), ("Cliff's d", "right"),
                 ("verdict", "left")):
        table.add_column(h, justify=j, overflow="fold")  # type: ignore[arg-type]
    style = {"improved": "green", "regressed": "bold red", "weak evidence": "yellow"}
    for r in terminal_rows(c, everything=everything):
        table.add_row(_metric_name(r), f"{r['n_before']}/{r['n_after']}",
                      f"{r['statistic']} {_fmt(r['before_stat'], r['unit'])}", _fmt(r["after_stat"], r["unit"]),
                      _fmt(r["difference"], r["unit"], sign=True), _ci(r), _p(r["p_adjusted"]),
                      "n/a" if r["cliffs_delta"] is None else f"{r['cliffs_delta']:+.2f}",
                      f"[{style.get(r['verdict'], '')}]{r['verdict']}[/]" if r["verdict"] in style else r["verdict"])
    console.print(table)
    console.print(f"Verdict thresholds: adjusted p < {ALPHA} (Mann-Whitney and a tail test), a 95 % bootstrap interval "
                  f"excluding 0 for the median, p90, p95 or mean with a change >= the metric's minimum and "
                  f"{RELATIVE_MIN_CHANGE:.0%} of the before value, |Cliff's delta| >= {NEGLIGIBLE_DELTA} unless the "
                  f"tail carried it, at least {MIN_SAMPLES} per side; a budget category falling to or rising from "
                  "zero (docs/compare.md).", markup=False, highlight=False)


def _md(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(_md(v) for v in r) + " |" for r in rows]
    return out + [""]


def _metric_cells(r: dict[str, Any]) -> list[str]:
    return [_metric_name(r), f"{r['n_before']}/{r['n_after']}", _fmt(r["before_stat"], r["unit"]),
            _fmt(r["after_stat"], r["unit"]), _fmt(r["difference"], r["unit"], sign=True), _ci(r),
            _p(r["p_adjusted"]), "n/a" if r["cliffs_delta"] is None else f"{r['cliffs_delta']:+.2f}", r["verdict"]]


METRIC_HEADERS = ("metric", "n before/after", "before", "after", "difference", "95 % CI", "p (adj.)", "Cliff's delta",
                  "verdict")


def _desc_rows(c: Comparison) -> list[list[str]]:
    d = c.metric("logon:duration_s")
    rows = []
    for side, key in (("before", "before"), ("after", "after")):
        x = d[key]
        rows.append([side, str(x["count"])] + [_fmt(x[k], "s") for k in ("p50", "p90", "p95", "p99", "mean")])
    return rows


def render_markdown(c: Comparison) -> str:
    """The Markdown rendering (headline, sides, comparability, durations, budget, operations, TCP, method)."""
    out = ["# netdiag compare: did the change help?", ""]
    out += [f"- {line}" for line in c.headline()] + [""]
    out += ["## The two sides", ""]
    out += _md_table(("side", "source", "inputs", "logons", "first logon", "last logon end", "capture point", "profile"),
                     [[s.label, s.source, ", ".join(Path(p).name for p in s.inputs[:4]), s.logons.height,
                       s.summary()["first_logon_start"], s.summary()["last_logon_end"], s.capture_point,
                       _profile_name(s.profile)] for s in (c.before, c.after)])
    out += ["## Are they comparable?", ""]
    out += _md_table(("check", "status", "detail"), [[k["check"], k["status"], k["detail"]] for k in c.checks])
    out += ["## Logon duration", ""]
    out += _md_table(("side", "logons", "p50", "p90", "p95", "p99", "mean"), _desc_rows(c))
    out += _md_table(METRIC_HEADERS, [_metric_cells(r) for r in c.metrics if r["family"] == "logon"])
    out += ["## Wait budget, side by side", "",
            "Seconds per category summed over all logons and per logon (the mean); each logon's categories add "
            "up to its duration.", ""]
    out += _md_table(("waiting for", "before total", "after total", "before per logon", "after per logon",
                      "change per logon", "verdict"),
                     [[b["label"], _fmt(b["before_sum_s"], "s"), _fmt(b["after_sum_s"], "s"),
                       _fmt(b["before_per_logon_s"], "s"), _fmt(b["after_per_logon_s"], "s"),
                       _fmt(b["change_per_logon_s"], "s", sign=True), b["verdict"]] for b in c.budget])
    out += _md_table(METRIC_HEADERS, [_metric_cells(r) for r in c.metrics if r["family"] == "budget"])
    out += ["## Server think per operation", ""]
    ops = [r for r in c.metrics if r["family"] == "server_think"]
    out += _md_table(METRIC_HEADERS, [_metric_cells(r) for r in ops]) if ops else ["No operation on both sides.", ""]
    only = c.only_one_side.get("operation", {})
    if only.get("before") or only.get("after"):
        out += [f"Operations only before: {', '.join(only['before']) or 'none'}; only after: "
                f"{', '.join(only['after']) or 'none'}.", ""]
    out += ["## TCP health", ""]
    tcp = [r for r in c.metrics if r["family"] == "tcp"]
    out += _md_table(METRIC_HEADERS, [_metric_cells(r) for r in tcp]) if tcp else ["No TCP connections on both sides.", ""]
    out += ["## Method and thresholds", ""] + [f"- {line}" for line in _method_lines(c)] + [""]
    return "\n".join(out)


def _method_lines(c: Comparison) -> list[str]:
    return [
        "difference = statistic(after) - statistic(before): the median for logon durations, server think and "
        "handshake round trips; the mean for budget categories and TCP rates/seconds (most values are 0); "
        "p90, p95 and the mean are judged beside it",
        f"95 % confidence interval: percentile bootstrap, scipy.stats.bootstrap, {N_RESAMPLES} resamples of each "
        f"side independently, seed {c.seed} (the same inputs give the same interval)",
        "p: two-sided Mann-Whitney U (scipy.stats.mannwhitneyu) and a tail test (Fisher's exact test on the "
        "counts above the pooled 90th percentile), Holm over the two within a metric; secondary metrics then "
        "adjusted with Benjamini-Hochberg within their family (scipy.stats.false_discovery_control); the "
        "overall logon duration is the primary test (Holm only)",
        "effect size: Cliff's delta = 2U/(n_before n_after) - 1 = P(after > before) - P(after < before); "
        "negative is faster/fewer",
        f"verdict improved/regressed only when: at least {MIN_SAMPLES} samples on each side, p (adj.) < {ALPHA}, "
        "and at least one of median, p90, p95, mean has an interval excluding 0 and |difference| >= the larger "
        f"of the metric's minimum and {RELATIVE_MIN_CHANGE:.0%} of its before value, none moved the other way, "
        f"|Cliff's delta| >= {NEGLIGIBLE_DELTA} unless p90/p95 carried it (p90/p95 judged with >= "
        f"{TAIL_MIN_ABOVE} values above them a side); a budget category at 0 in every logon of one side and "
        f"non-zero in >= {ZERO_RULE_MIN_NONZERO} of the other fell to (rose from) zero; otherwise 'no "
        "significant change', or 'weak evidence' when a side has too few samples",
        "minimum changes: " + ", ".join(f"{k} {v}" for k, v in c.thresholds()["min_change"].items()),
    ]


def _ecdf_svg(before: np.ndarray, after: np.ndarray) -> str:
    """Overlaid empirical CDFs of logon duration (before dashed blue, after solid orange)."""
    from netdiag.report import svg as charts

    W, H, L, R, T, B = 860, 300, 56, 175, 16, 46
    hi_v = float(max(before.max(initial=0.0), after.max(initial=0.0))) or 1.0
    step = charts.nice_step(hi_v, 8)
    hi = math.ceil(hi_v / step) * step
    x_of = lambda v: L + v / hi * (W - L - R)  # noqa: E731
    y_of = lambda q: T + (1 - q) * (H - T - B)  # noqa: E731
    body = [f'<line x1="{L}" y1="{y_of(q):.1f}" x2="{W - R}" y2="{y_of(q):.1f}" stroke="{charts.GRID}"/>'
            + charts._text(L - 6, y_of(q) + 4, f"{q:.0%}", anchor="end", fill=charts.MUTED)
            for q in (0, 0.25, 0.5, 0.75, 1.0)]
    marks = 0
    for name, vals, colour, dash in (("before", before, "#0072B2", ' stroke-dasharray="6 4"'),
                                     ("after", after, "#E69F00", "")):
        v = np.sort(vals)
        if v.size == 0:
            continue
        pts = [f"{x_of(0):.1f},{y_of(0):.1f}"]
        for i, x in enumerate(v):
            pts.append(f"{x_of(x):.1f},{y_of(i / v.size):.1f}")
            pts.append(f"{x_of(x):.1f},{y_of((i + 1) / v.size):.1f}")
        pts.append(f"{x_of(hi):.1f},{y_of(1):.1f}")
        body.append(f'<polyline class="mark" points="{" ".join(pts)}" fill="none" stroke="{colour}" '
                    f'stroke-width="2"{dash}><title>{name}: {v.size} logons, median '
                    f'{_fmt(float(np.median(v)), "s")}</title></polyline>')
        marks += 1
        med = float(np.median(v))
        body.append(charts._text(W - R + 8, y_of(0.5) + (-8 if name == "before" else 14),
                                 f"{name}: median {_fmt(med, 's')}", fill=colour, weight="bold"))
    body += charts._x_axis(L, W - R, H - B, 0.0, hi, step, max_ticks=10)
    body.append(charts._text((L + W - R) / 2, H - 8, "logon duration", anchor="middle", fill=charts.MUTED))
    return charts._svg("compare-ecdf", W, H, "Share of logons finished within each duration, before and after",
                       body, marks)


def _budget_svg(c: Comparison) -> str:
    """Paired bars per budget category: mean seconds per logon before (blue) and after (orange)."""
    from netdiag.report import CATEGORY_LABELS
    from netdiag.report import svg as charts

    rows = [b for b in c.budget if b["before_per_logon_s"] > 5e-7 or b["after_per_logon_s"] > 5e-7]
    W, L, R, T, bar, pitch = 860, 230, 120, 8, 11, 34
    H = T + pitch * max(1, len(rows)) + 34
    vmax = max([max(b["before_per_logon_s"], b["after_per_logon_s"]) for b in rows] or [1.0]) or 1.0
    step = charts.nice_step(vmax, 6)
    hi = math.ceil(vmax / step) * step
    span = W - L - R
    body: list[str] = []
    marks = 0
    for i, b in enumerate(rows):
        y = T + i * pitch
        body.append(charts._text(L - 8, y + bar + 3, CATEGORY_LABELS[b["category"]], anchor="end"))
        for j, (side, colour) in enumerate((("before", "#0072B2"), ("after", "#E69F00"))):
            v = b[f"{side}_per_logon_s"]
            body.append(charts._rect(L, y + j * (bar + 1), v / hi * span, bar, colour,
                                     f"{CATEGORY_LABELS[b['category']]}, {side}: {_fmt(v, 's')} per logon"))
            marks += 1
            body.append(charts._text(L + v / hi * span + 6, y + j * (bar + 1) + bar - 1,
                                     f"{side} {_fmt(v, 's')}", size=10, fill=charts.MUTED))
        if b["verdict"] in ("improved", "regressed"):
            body.append(charts._text(W - 4, y + bar + 3, b["verdict"], anchor="end", weight="bold",
                                     fill="#1a7f37" if b["verdict"] == "improved" else "#b42318"))
    body += charts._x_axis(L, L + span, T + pitch * max(1, len(rows)), 0.0, hi, step, max_ticks=8)
    return charts._svg("compare-budget", W, H, "Mean seconds per logon by category, before and after", body, marks)


def _html_metric_table(rows: list[dict[str, Any]], name: str) -> str:
    from netdiag.report.html import table

    return table([("metric", _metric_name, "t"), ("n before", "n_before", "n"), ("n after", "n_after", "n"),
                  ("before", lambda r: _fmt(r["before_stat"], r["unit"]), "t"),
                  ("after", lambda r: _fmt(r["after_stat"], r["unit"]), "t"),
                  ("difference", lambda r: _fmt(r["difference"], r["unit"], sign=True), "t"),
                  ("95 % CI", _ci, "t"), ("p (adj.)", lambda r: _p(r["p_adjusted"]), "t"),
                  ("Cliff's delta", lambda r: None if r["cliffs_delta"] is None else round(r["cliffs_delta"], 2), "n"),
                  ("verdict", "verdict", "t")], rows, name=name)


def render_html(c: Comparison) -> str:
    """One self-contained page (no network): the analyze report's CSS and script, inline SVG."""
    from html import escape

    from netdiag import __version__
    from netdiag.report.html import _asset, _figure, table

    def e(x: Any) -> str:
        return escape("" if x is None else str(x), quote=True)

    d = c.metric("logon:duration_s")
    parts = ['<section id="summary"><h2>Summary</h2><ul>' + "".join(f"<li>{e(s)}</li>" for s in c.headline())
             + "</ul>"]
    parts.append(table([("side", "label", "t"), ("source", "source", "t"), ("inputs", "inputs", "t"),
                        ("logons", "logons", "n"), ("first logon", "first", "t"), ("last logon end", "last", "t"),
                        ("capture point", "point", "t"), ("profile", "profile", "t")],
                       [{"label": s.label, "source": s.source,
                         "inputs": ", ".join(Path(p).name for p in s.inputs[:4]), "logons": s.logons.height,
                         "first": s.summary()["first_logon_start"], "last": s.summary()["last_logon_end"],
                         "point": s.capture_point, "profile": _profile_name(s.profile)} for s in (c.before, c.after)],
                       name="sides") + "</section>")
    parts.append('<section id="comparable"><h2>Are the two sides comparable?</h2>'
                 + table([("check", "check", "t"), ("status", "status", "t"), ("detail", "detail", "t")], c.checks,
                         name="comparability") + "</section>")
    parts.append('<section id="durations"><h2>Logon duration</h2>'
                 + _figure(_ecdf_svg(_values(c.before.logons, "duration_s"), _values(c.after.logons, "duration_s")),
                           "Each line rises by one step per logon: read across at 50 % for the median, at 95 % for "
                           "the p95. A line further left is faster.")
                 + table([("side", 0, "t"), ("logons", 1, "t"), ("p50", 2, "t"), ("p90", 3, "t"), ("p95", 4, "t"),
                          ("p99", 5, "t"), ("mean", 6, "t")],
                         [dict(enumerate(r)) for r in _desc_rows(c)], name="duration-percentiles")
                 + _html_metric_table([r for r in c.metrics if r["family"] == "logon"], "duration-metrics")
                 + f'<p class="note">{e(_sentence("Logon duration", d))}</p></section>')
    parts.append('<section id="budget"><h2>Where the time went, side by side</h2>'
                 + _figure(_budget_svg(c), "Mean seconds per logon in each wait category; categories that changed "
                                           "significantly are marked at the right.")
                 + table([("waiting for", "label", "t"), ("before total", "before_sum_s", "s"),
                          ("after total", "after_sum_s", "s"), ("before per logon", "before_per_logon_s", "s"),
                          ("after per logon", "after_per_logon_s", "s"), ("change per logon", "change_per_logon_s", "s"),
                          ("verdict", "verdict", "t")], c.budget, name="budget")
                 + _html_metric_table([r for r in c.metrics if r["family"] == "budget"], "budget-metrics")
                 + "</section>")
    ops = [r for r in c.metrics if r["family"] == "server_think"]
    parts.append('<section id="server"><h2>Server think per operation</h2>'
                 + (_html_metric_table(ops, "server-think") if ops else "<p>No operation on both sides.</p>")
                 + "</section>")
    tcp = [r for r in c.metrics if r["family"] == "tcp"]
    parts.append('<section id="tcp"><h2>TCP health</h2>'
                 + (_html_metric_table(tcp, "tcp") if tcp else "<p>No TCP connections on both sides.</p>")
                 + "</section>")
    parts.append('<section id="method"><h2>How these figures were computed</h2><ul>'
                 + "".join(f"<li>{e(m)}</li>" for m in _method_lines(c)) + "</ul></section>")
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in (("summary", "Summary"), ("comparable", "Comparable?"),
                                                          ("durations", "Durations"), ("budget", "Budget"),
                                                          ("server", "Server time"), ("tcp", "TCP health"),
                                                          ("method", "Method")))
    made = _dt.datetime.now(tz=_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>netdiag compare</title><style>{_asset('report.css')}</style></head><body>"
            '<header class="top"><h1>Did the change help? Before and after</h1>'
            f"<p>netdiag {e(__version__)} comparison, made {e(made)}. All times in seconds; times of day in UTC.</p>"
            f"</header><nav>{nav}</nav><main>{''.join(parts)}</main>"
            f"<script>{_asset('report.js')}</script></body></html>\n")


__all__ = ["Comparison", "CompareError", "Side", "bootstrap_ci", "compare", "comparability", "describe", "judge",
           "load_side", "print_terminal", "profile_record", "rank_test", "render_html",
           "render_markdown"]
