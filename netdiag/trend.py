"""`netdiag.trend`: logon time over days or ring-buffer periods, and what changed between them.

    import netdiag
    t = netdiag.trend(["mon-report/", "tue-report/", "wed.pcapng"])       # one period per input
    t = netdiag.trend(["week-report/"], split_by="day")                    # periods cut from one analysis
    t.periods[0].p95_s, t.steps[0].verdict, t.to_json()
    netdiag.report.trend.render_html(t)                                    # the HTML page (report/ draws)

Each input is one period: an analysis directory written by `netdiag analyze`, or capture files /
a directory of captures, analysed first (the same inputs `netdiag compare` takes; loaded with
`netdiag.compare.load_side`). `split_by="hour"|"day"` instead cuts one analysis into periods by
each logon's start time (UTC).

Per period (logons cut by the capture's start or end are counted but left out of every figure, as
in `netdiag analyze` and `netdiag compare`): the logon count, p50/p90/p95/p99 of the logon duration (`netdiag.compare.describe`:
numpy's linear percentile, as `netdiag analyze` reports them) and the wait budget as mean seconds
per logon per category (the categories of each logon add up to its duration, so the means add up
to the mean duration); the same per ward (the profile's client groups, the logons' `client_group`).

Between each period and the previous period that has logons: `netdiag.compare.compare` on the two
periods, unchanged: its verdicts (improved / regressed / no significant change / weak evidence),
intervals, p-values, effect sizes and comparability checks are reported as they are. Nothing here
computes a statistic of its own; the report (netdiag/report/trend.py) only draws.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netdiag import __version__
from netdiag.compare import MIN_SAMPLES, SEED, CompareError, Comparison, Side, compare, describe, load_side
from netdiag.errors import UsageError
from netdiag.logons.population import complete_logons
from netdiag.profile import Profile, load_profile
from netdiag.schema import BUDGET_COLUMNS
from netdiag.words import SHORT_LABELS, fmt_s

SPLITS = {"hour": 3600, "day": 86400}
NO_WARD = "(none)"
TOP_CATEGORIES = 3


@dataclass
class Period:
    """One period: its logons' duration percentiles and mean wait budget, overall and per ward."""

    label: str
    side: Side
    duration: dict[str, float | int | None]          # describe(): count, p50, p90, p95, p99, mean
    budget_per_logon_s: dict[str, float]              # mean seconds per logon per category
    wards: list[dict[str, Any]]

    @property
    def logons(self) -> int:
        """Logons the capture saw whole: the ones every figure (and the comparison) uses."""
        return self.side.logons.height - self.incomplete

    @property
    def incomplete(self) -> int:
        """Logons cut by the capture's start or end: counted, left out of the figures (as netdiag analyze)."""
        return self.side.logons.height - complete_logons(self.side.logons).height

    @property
    def p50_s(self) -> float | None:
        return self.duration["p50"]  # type: ignore[return-value]

    @property
    def p95_s(self) -> float | None:
        return self.duration["p95"]  # type: ignore[return-value]

    def top_budget(self, n: int = TOP_CATEGORIES) -> list[tuple[str, float]]:
        """The n categories with the most seconds per logon (largest first, zeros left out)."""
        ranked = sorted(self.budget_per_logon_s.items(), key=lambda kv: -kv[1])
        return [(c, s) for c, s in ranked[:n] if s > 5e-7]

    def to_dict(self) -> dict[str, Any]:
        s = self.side.summary()
        total = sum(self.budget_per_logon_s.values())
        return {"label": self.label, "source": s["source"], "inputs": s["inputs"], "logons": self.logons,
                "incomplete_logons": self.incomplete,
                "first_logon_start": s["first_logon_start"], "last_logon_end": s["last_logon_end"],
                "no_logons_reason": self.side.no_logons_reason, "profile": s["profile"],
                "capture_point": s["capture_point"],
                **{f"{k}_s" if k != "count" else "count": v for k, v in self.duration.items()},
                "budget_per_logon_s": self.budget_per_logon_s,
                "budget_share": {c: (v / total if total else 0.0) for c, v in self.budget_per_logon_s.items()},
                "top_budget": [{"category": c, "per_logon_s": v} for c, v in self.top_budget()],
                "wards": self.wards}


@dataclass
class Step:
    """A period compared with the previous period that has logons (`netdiag.compare.compare`)."""

    before: str
    after: str
    comparison: Comparison

    @property
    def duration(self) -> dict[str, Any]:
        return self.comparison.metric("logon:duration_s")

    @property
    def verdict(self) -> str:
        """The overall logon duration's verdict: improved, regressed, no significant change, weak evidence."""
        return str(self.duration["verdict"])

    @property
    def direction(self) -> str:
        """Which way the median moved, whatever the verdict: slower, faster or unchanged."""
        d = self.duration["difference"]
        return "unchanged" if d is None or d == 0 else ("slower" if d > 0 else "faster")

    @property
    def budget_moved(self) -> list[dict[str, Any]]:
        """Budget categories whose own verdict is improved or regressed."""
        return [r for r in self.comparison.metrics if r["family"] == "budget"
                and r["verdict"] in ("improved", "regressed")]

    @property
    def largest_budget_change(self) -> dict[str, Any]:
        """The category whose mean seconds per logon changed most (compare's budget rows)."""
        return max(self.comparison.budget, key=lambda b: abs(b["change_per_logon_s"]))

    def ward_rows(self) -> list[dict[str, Any]]:
        """compare's per-client-group duration rows (present when the periods have more than one ward)."""
        return [r for r in self.comparison.metrics if r["family"] == "logon" and r["group_kind"] == "client group"]

    def words(self) -> str:
        """One short phrase for a table cell: the verdict, the change and the category behind it."""
        def signed(x: float | None) -> str:
            if x is None:
                return "n/a"
            s = fmt_s(x)
            return ("+" + s) if x > 0 and not s.startswith("0 ") else s

        d = self.duration
        moved = self.budget_moved
        if moved:
            why = "moved: " + ", ".join(f"{SHORT_LABELS[r['metric']]} {signed(r['difference'])}" for r in moved)
        else:
            b = self.largest_budget_change
            why = f"most: {SHORT_LABELS[b['category']]} {signed(b['change_per_logon_s'])}"
        head = self.verdict if self.verdict != "weak evidence" else f"weak evidence, {self.direction}"
        p95 = (d.get("statistics") or {}).get("p95", {}).get("difference")
        return f"{head}: p50 {signed(d['difference'])}" + (f", p95 {signed(p95)}" if p95 is not None else "") \
            + f" ({why})"

    def to_dict(self) -> dict[str, Any]:
        d = self.duration
        keep = ("difference", "ci_low", "ci_high", "p_value", "p_adjusted", "cliffs_delta", "before_stat",
                "after_stat", "n_before", "n_after", "reason", "statistics")
        return {"before": self.before, "after": self.after, "verdict": self.verdict, "direction": self.direction,
                "words": self.words(), "duration": {k: d.get(k) for k in keep},
                "budget_moved": [{"category": r["metric"], "verdict": r["verdict"], "difference_s": r["difference"],
                                  "ci_low_s": r["ci_low"], "ci_high_s": r["ci_high"],
                                  "p_adjusted": r["p_adjusted"]} for r in self.budget_moved],
                "largest_budget_change": {"category": self.largest_budget_change["category"],
                                          "change_per_logon_s": self.largest_budget_change["change_per_logon_s"]},
                "wards": [{"ward": r["group"], "verdict": r["verdict"], "difference_s": r["difference"]}
                          for r in self.ward_rows()],
                "headline": self.comparison.headline(), "warnings": self.comparison.warnings,
                "comparison": self.comparison.to_dict()}


@dataclass
class Trend:
    """Result of `trend`: the periods in order and each period compared with the one before."""

    periods: list[Period]
    steps: list[Step | None]             # steps[i] compares periods[i] with an earlier one; None for the first
    split_by: str | None = None
    warnings: list[str] = field(default_factory=list)
    seed: int = SEED

    def step_of(self, label: str) -> Step | None:
        """The comparison that ends at the period with this label (None for the first period)."""
        for p, s in zip(self.periods, self.steps, strict=True):
            if p.label == label:
                return s
        raise UsageError(f"no period {label!r}; periods: {', '.join(p.label for p in self.periods)}")

    def wards(self) -> list[str]:
        """Every ward seen in any period, in order of first appearance."""
        seen: list[str] = []
        for p in self.periods:
            for w in p.wards:
                if w["ward"] not in seen:
                    seen.append(w["ward"])
        return seen

    def table(self) -> pl.DataFrame:
        """The terminal table: one row per period (logons, p50, p95, top budget categories, verdict)."""
        rows = []
        for p, s in zip(self.periods, self.steps, strict=True):
            rows.append({"period": p.label, "logons": p.logons, "p50_s": p.p50_s, "p95_s": p.p95_s,
                         "vs_previous": (s.words() if s is not None else
                                         ("no logons: " + _no_logons(p)) if p.logons == 0 else "first period"),
                         "time_went_to": ", ".join(f"{SHORT_LABELS[c]} {fmt_s(v)}" for c, v in p.top_budget())})
        return pl.DataFrame(rows, schema={"period": pl.String, "logons": pl.Int64, "p50_s": pl.Float64,
                                          "p95_s": pl.Float64, "vs_previous": pl.String, "time_went_to": pl.String})

    def ward_table(self) -> pl.DataFrame:
        """One row per ward and period: logons, p50, p95 and compare's verdict for that ward."""
        rows = []
        for p, s in zip(self.periods, self.steps, strict=True):
            verdicts = {r["group"]: r for r in (s.ward_rows() if s is not None else [])}
            for w in p.wards:
                v = verdicts.get(w["ward"])
                rows.append({"ward": w["ward"], "period": p.label, "logons": w["logons"], "p50_s": w["p50_s"],
                             "p95_s": w["p95_s"], "vs_previous": v["verdict"] if v else ""})
        return pl.DataFrame(rows, schema={"ward": pl.String, "period": pl.String, "logons": pl.Int64,
                                          "p50_s": pl.Float64, "p95_s": pl.Float64, "vs_previous": pl.String})

    def headline(self) -> list[str]:
        """Plain-words sentences: the range of p50/p95 and each change that was called."""
        with_logons = [p for p in self.periods if p.logons]
        out = [f"{len(self.periods)} period{'s' if len(self.periods) != 1 else ''}"
               + (f" (one per {self.split_by} of logon start, UTC)" if self.split_by else "")
               + f", {sum(p.logons for p in self.periods)} logons"
               + (f" ({n} more cut by the start or end of a capture, left out of the figures)"
                  if (n := sum(p.incomplete for p in self.periods)) else "") + "."]
        if with_logons:
            first, last = with_logons[0], with_logons[-1]
            out.append(f"Typical logon (p50) {fmt_s(first.p50_s)} in {first.label}, {fmt_s(last.p50_s)} in "
                       f"{last.label}; p95 {fmt_s(first.p95_s)} then {fmt_s(last.p95_s)}.")
        for s in self.steps:
            if s is not None:
                out.append(f"{s.before} -> {s.after}: {s.words()}.")
        return out + [f"Note: {w}" for w in self.warnings]

    def to_dict(self) -> dict[str, Any]:
        return {"tool": "netdiag trend", "version": __version__, "split_by": self.split_by,
                "headline": self.headline(), "warnings": self.warnings,
                "method": {"percentiles": "numpy linear interpolation (netdiag.compare.describe), as netdiag analyze",
                           "budget": "mean seconds per logon per wait-budget category",
                           "steps": "netdiag.compare.compare(previous period with logons, this period); "
                                    "thresholds in each step's comparison.thresholds and docs/compare.md",
                           "min_samples_per_side": MIN_SAMPLES, "seed": self.seed},
                "periods": [p.to_dict() for p in self.periods],
                "steps": [None if s is None else s.to_dict() for s in self.steps]}

    def to_json(self) -> str:
        """The whole trend as JSON (seconds; periods in order; each step with its full comparison)."""
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"


# --------------------------------------------------------------------------------------------
# Building periods
# --------------------------------------------------------------------------------------------

def _no_logons(p: Period) -> str:
    if p.incomplete:
        return f"only {p.incomplete} incomplete logon{'s' if p.incomplete != 1 else ''}, cut by the capture"
    return (p.side.no_logons_reason or "none found").removeprefix("no logons: ")


def _budget_means(lg: pl.DataFrame) -> dict[str, float]:
    if lg.height == 0:
        return {c: 0.0 for c in BUDGET_COLUMNS}
    return {c: float(lg[c].sum()) / lg.height for c in BUDGET_COLUMNS}


def _wards(lg: pl.DataFrame) -> list[dict[str, Any]]:
    if lg.height == 0:
        return []
    g = lg.with_columns(pl.col("client_group").cast(pl.String).fill_null(NO_WARD).alias("_ward"))
    out = []
    for ward in sorted(g["_ward"].unique().to_list()):
        part = g.filter(pl.col("_ward") == ward)
        d = describe(part["duration_s"].drop_nulls().cast(pl.Float64).to_numpy())
        out.append({"ward": ward, "logons": part.height, "p50_s": d["p50"], "p95_s": d["p95"],
                    "budget_per_logon_s": _budget_means(part)})
    return out


def _period(label: str, side: Side) -> Period:
    lg = complete_logons(side.logons)      # logons cut by the capture are lower bounds: not in the figures
    d = describe(lg["duration_s"].drop_nulls().cast(pl.Float64).to_numpy() if lg.height else np.zeros(0))
    return Period(label, side, d, _budget_means(lg), _wards(lg))


def _split(side: Side, split_by: str) -> list[tuple[str, Side]]:
    """One Side per hour/day of logon start (UTC): its logons, the connections they used or that started
    in the period, and those connections' transactions."""
    step_ns = SPLITS[split_by] * 1_000_000_000
    lg = side.logons.with_columns((pl.col("start_ts_ns") // step_ns * step_ns).alias("_period"))
    out = []
    for start in sorted(lg["_period"].unique().to_list()):
        part = lg.filter(pl.col("_period") == start).drop("_period")
        ids = part["conn_ids"].explode().drop_nulls().unique().to_list()
        conns = side.connections.filter(pl.col("conn_id").is_in(ids)
                                        | ((pl.col("first_ts_ns") >= start) & (pl.col("first_ts_ns") < start + step_ns)))
        txns = side.transactions.filter(pl.col("conn_id").is_in(conns["conn_id"].to_list()))
        t = _dt.datetime.fromtimestamp(start / 1e9, tz=_dt.UTC)
        label = t.strftime("%Y-%m-%dT%H:00Z" if split_by == "hour" else "%Y-%m-%d")
        out.append((label, replace(side, label=label, logons=part, connections=conns, transactions=txns,
                                   no_logons_reason=None, warnings=list(side.warnings))))
    return out


def _label(arg: Any, i: int) -> str:
    if isinstance(arg, str | os.PathLike):
        p = Path(arg)
        return p.name.removesuffix(".gz").rsplit(".", 1)[0] if p.is_file() else (p.name or str(p))
    if isinstance(arg, Sequence) and arg:
        return "+".join(_label(a, i) for a in arg)
    return f"period {i + 1}"


def trend(inputs: Sequence[Any], profile: Profile | str | os.PathLike[str] | None = None, *,
          split_by: str | None = None, labels: Sequence[str] | None = None,
          allow_different_profiles: bool = False, seed: int = SEED) -> Trend:
    """Periods from analysis directories, captures or Analysis objects (one period each, in the order given),
    or from one of them cut by `split_by` ("hour" or "day"); each period compared with the previous one.

    `profile` is used for inputs given as captures (analysis directories carry their own); it decides
    the wards (client groups). Raises CompareError when periods were analysed with different profiles
    (unless allowed), UsageError on bad arguments.
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise UsageError("trend: give the periods (analysis directories or captures), or one of them with --split-by")
    if split_by is not None and split_by not in SPLITS:
        raise UsageError(f"--split-by {split_by!r}: choose hour or day")
    if split_by is None and len(inputs) < 2:
        raise UsageError("trend: one period gives no trend; give two or more (analysis directories or captures), "
                         "or cut one into periods with --split-by hour|day")
    if labels is not None and split_by is not None:
        raise UsageError("trend: --label names periods given as inputs; --split-by names them by their date and hour")
    if labels is not None and len(labels) != len(inputs):
        raise UsageError(f"trend: {len(labels)} labels for {len(inputs)} periods")
    prof = profile if isinstance(profile, Profile) else (load_profile(profile) if profile is not None else Profile())

    warnings: list[str] = []
    if split_by is not None:
        whole = load_side(inputs if len(inputs) > 1 else inputs[0], "the input of --split-by", prof)
        if whole.logons.height == 0:       # the analysis ran: say why there is nothing to split, no error
            sides = [("all", whole)]
        else:
            sides = _split(whole, split_by)
    else:
        names = list(labels) if labels is not None else [_label(a, i) for i, a in enumerate(inputs)]
        if len(set(names)) != len(names):        # two "netdiag-report" dirs: number them
            names = [f"{i + 1}:{n}" for i, n in enumerate(names)]
        sides = [(n, load_side(a, n, prof)) for n, a in zip(names, inputs, strict=True)]
    periods = [_period(n, s) for n, s in sides]

    steps: list[Step | None] = []
    previous: Period | None = None
    for p in periods:
        if p.logons == 0 or previous is None:
            steps.append(None)
        else:
            try:
                c = compare(previous.side, p.side, prof, allow_different_profiles=allow_different_profiles, seed=seed)
            except CompareError as exc:
                raise CompareError(f"periods {previous.label} and {p.label}: {exc}") from None
            steps.append(Step(previous.label, p.label, c))
        if p.logons:
            previous = p
    for a, b in zip(periods, periods[1:], strict=False):
        if a.side.first_ts_ns is not None and b.side.first_ts_ns is not None and b.side.first_ts_ns < a.side.first_ts_ns:
            warnings.append(f"{b.label}'s first logon is earlier than {a.label}'s: the periods are not in time order "
                            "(they are compared in the order given)")
    for p in periods:
        if p.logons == 0:
            warnings.append(f"{p.label} has no logons ({_no_logons(p)})"
                            + ("; the next period is compared with the one before it" if len(periods) > 1 else ""))
    if len([p for p in periods if p.logons]) < 2:
        warnings.append("fewer than two periods with logons: nothing to compare")
    return Trend(periods, steps, split_by, warnings, seed)


__all__ = ["Period", "Step", "Trend", "trend"]
