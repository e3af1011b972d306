"""`netdiag.compare`: did a change help? Before/after comparison of two analyses, with statistics.

    from netdiag.compare import compare
    c = compare("before.pcapng", "after-report/")      # captures, directories of them, or analysis dirs
    c.metric("logon:duration_s")["verdict"], c.to_json()
    from netdiag.report.compare import render_html, render_markdown, print_terminal   # drawing it

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

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netdiag.compare.sides import (
    CompareError,
    NothingToCompare,
    Side,
    _groups,
    _in_group,
    _values,
    comparability,
    load_side,
    logon_connections,
    profile_name,
    side_from_analysis,
    side_from_directory,
    transactions_in_logons,
)
from netdiag.compare.stats import (
    ALL_SPECS,
    ALPHA,
    BUDGET_SPECS,
    CONFIDENCE,
    DURATION,
    MIN_SAMPLES,
    N_RESAMPLES,
    NEGLIGIBLE_DELTA,
    RELATIVE_MIN_CHANGE,
    SEED,
    SERVER_THINK,
    STATISTICS,
    TAIL_MIN_ABOVE,
    TCP_SPECS,
    VERDICTS,
    ZERO_RULE_MIN_NONZERO,
    MetricSpec,
    _adjust_and_judge,
    _metric_row,
    bootstrap_ci,
    bootstrap_cis,
    describe,
    judge,
    rank_test,
    tail_test,
)
from netdiag.errors import UsageError
from netdiag.logons.population import complete_logons
from netdiag.profile import Profile, load_profile
from netdiag.protocols.registry import request_protocols
from netdiag.schema import BUDGET_COLUMNS
from netdiag.words import CATEGORY_LABELS
from netdiag.words import fmt_value as _fmt

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

    # ---- data (drawing: netdiag.report.compare) ----------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        from netdiag import __version__

        return {"tool": "netdiag compare", "version": __version__, "before": self.before.summary(),
                "after": self.after.summary(), "comparable_without_warnings": not self.warnings,
                "comparability": self.checks, "thresholds": self.thresholds(), "headline": self.headline(),
                "metrics": self.metrics, "budget": self.budget, "only_one_side": self.only_one_side}

    def to_json(self) -> str:
        """The whole comparison as JSON (stable keys; seconds; no payload, only the tables' addresses)."""
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"


def _label(cat: str) -> str:
    return CATEGORY_LABELS.get(cat, cat)


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
            f"the sides were analysed with different profiles (before {profile_name(pb)}, after "
            f"{profile_name(pa)}): a profile decides which servers, ports and end rules make a logon, so the "
            "differences could come from the profiles rather than the change. Analyse both with the same profile "
            "(compare the captures with --profile P), or pass --allow-different-profiles to compare anyway")


def compare(before: Any, after: Any, profile: Profile | str | os.PathLike[str] | None = None, *,
            allow_different_profiles: bool = False, seed: int = SEED, options: Any = None) -> Comparison:
    """Compare two sides (captures, directories of captures, analysis directories or Analysis objects).

    `profile` is used for the sides given as captures; analysis directories carry their own.
    Raises CompareError when a side has no logons or the profiles differ (unless allowed).
    `options` (netdiag.parallel.RunOptions): partitions for sides given as captures.
    """
    prof = profile if isinstance(profile, Profile) else (load_profile(profile) if profile is not None else Profile())
    b = load_side(before, "before", prof, options)
    a = load_side(after, "after", prof, options)
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


__all__ = ["ALL_SPECS", "ALPHA", "BUDGET_SPECS", "CONFIDENCE", "DURATION", "MIN_SAMPLES", "N_RESAMPLES",
           "NEGLIGIBLE_DELTA", "RELATIVE_MIN_CHANGE", "SEED", "SERVER_THINK", "STATISTICS", "TAIL_MIN_ABOVE",
           "TCP_SPECS", "VERDICTS", "ZERO_RULE_MIN_NONZERO", "CompareError", "Comparison", "MetricSpec",
           "NothingToCompare", "Side", "bootstrap_ci", "bootstrap_cis", "comparability", "compare", "describe",
           "judge", "load_side", "logon_connections", "profile_name", "rank_test", "side_from_analysis",
           "side_from_directory", "tail_test", "transactions_in_logons"]
