"""The statistics of `netdiag compare`: thresholds, metric specifications, summaries, tests and verdicts.

Pure functions over numpy arrays (scipy does the bootstrap and the tests); the method and every
threshold are stated in docs/compare.md and in each comparison's `thresholds()`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdiag.schema import BUDGET_COLUMNS
from netdiag.words import fmt_value as _fmt

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
