"""How `netdiag compare` is drawn: the terminal table, the Markdown and the self-contained HTML page.

Rendering only: every number and verdict comes from a `netdiag.compare.Comparison`; the HTML
uses the analyze report's stylesheet, script, table and figure helpers (netdiag/report/html.py)
and its SVG helpers (netdiag/report/svg.py).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netdiag import __version__
from netdiag.compare import Comparison, _label, _sentence, _values, profile_name
from netdiag.compare.stats import (
    ALPHA,
    MIN_SAMPLES,
    N_RESAMPLES,
    NEGLIGIBLE_DELTA,
    RELATIVE_MIN_CHANGE,
    TAIL_MIN_ABOVE,
    ZERO_RULE_MIN_NONZERO,
)
from netdiag.report import svg as charts
from netdiag.report.html import asset, figure, table
from netdiag.words import CATEGORY_LABELS
from netdiag.words import fmt_value as _fmt


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


# Terminal columns, most needed first: on a narrow terminal the last ones are left out (and named).
TERMINAL_COLUMNS = ("metric", "verdict", "before", "after", "difference", "p (adj.)", "95 % CI", "n before/after",
                    "Cliff's d", "statistic")


def terminal_table(c: Comparison, *, everything: bool = False) -> pl.DataFrame:
    """The terminal table's cells (text), one row per `terminal_rows` metric, TERMINAL_COLUMNS in order."""
    rows = [[_metric_name(r), r["verdict"], _fmt(r["before_stat"], r["unit"]), _fmt(r["after_stat"], r["unit"]),
             _fmt(r["difference"], r["unit"], sign=True), _p(r["p_adjusted"]), _ci(r),
             f"{r['n_before']}/{r['n_after']}", "n/a" if r["cliffs_delta"] is None else f"{r['cliffs_delta']:+.2f}",
             r["statistic"]]
            for r in terminal_rows(c, everything=everything)]
    return pl.DataFrame(rows, schema=dict.fromkeys(TERMINAL_COLUMNS, pl.String), orient="row")


def print_terminal(c: Comparison, *, everything: bool = False, console: Any = None,
                   columns: list[str] | None = None, wide: bool = False) -> None:
    """Headline, comparability warnings and the metric table on stdout, fitted to the terminal's width.

    As the other commands' tables (netdiag.output.print_table): on a terminal the columns are fitted
    to its width (free text cut, never inside an address; the least needed columns left out and
    named); piped, or with `wide` (--wide), every column is whole; `columns` (--columns) picks them.
    `console` is a rich Console (tests pass one of a fixed width).
    """
    from rich.console import Console

    from netdiag.output import print_table

    con = console if console is not None else Console()
    for line in c.headline():
        con.print(line, markup=False, highlight=False)
    df = terminal_table(c, everything=everything)
    print_table(df, columns=list(TERMINAL_COLUMNS), title="netdiag compare: before -> after",
                max_rows=max(df.height, 1), console=con, chosen=columns, wide=wide,
                right=("before", "after", "difference", "p (adj.)", "95 % CI", "n before/after", "Cliff's d"),
                whole=("verdict",))
    con.print(f"Verdict thresholds: adjusted p < {ALPHA} (Mann-Whitney and a tail test), a 95 % bootstrap interval "
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
                       profile_name(s.profile)] for s in (c.before, c.after)])
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
    W, H, L, T, B = 860, 300, 56, 16, 46
    R = 16 + max(charts.text_width(f"{n}: median {_fmt(float(np.median(v)) if v.size else None, 's')}", bold=True)
                 for n, v in (("before", before), ("after", after)))
    hi_v = float(max(before.max(initial=0.0), after.max(initial=0.0))) or 1.0
    step = charts.nice_step(hi_v, 8)
    hi = math.ceil(hi_v / step) * step
    x_of = lambda v: L + v / hi * (W - L - R)  # noqa: E731
    y_of = lambda q: T + (1 - q) * (H - T - B)  # noqa: E731
    body = [f'<line x1="{L}" y1="{y_of(q):.1f}" x2="{W - R}" y2="{y_of(q):.1f}" stroke="{charts.GRID}"/>'
            + charts._text(L - 6, y_of(q) + (4 if q else -2), f"{q * 100:.0f} %", anchor="end", fill=charts.MUTED)
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
    rows = [b for b in c.budget if b["before_per_logon_s"] > 5e-7 or b["after_per_logon_s"] > 5e-7]
    L = 16 + max([charts.text_width(CATEGORY_LABELS[b["category"]]) for b in rows] + [100])
    W, T, bar, pitch = 860, 8, 11, 34
    # room right of the longest bar for its value label and the verdict after it
    R = 24 + max([charts.text_width(f"before {_fmt(max(b['before_per_logon_s'], b['after_per_logon_s']), 's')}", 10)
                  for b in c.budget] + [0]) + charts.text_width("regressed", bold=True)
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
    return table([("metric", _metric_name, "t"), ("n before", "n_before", "n"), ("n after", "n_after", "n"),
                  ("before", lambda r: _fmt(r["before_stat"], r["unit"]), "t"),
                  ("after", lambda r: _fmt(r["after_stat"], r["unit"]), "t"),
                  ("difference", lambda r: _fmt(r["difference"], r["unit"], sign=True), "t"),
                  ("95 % CI", _ci, "t"), ("p (adj.)", lambda r: _p(r["p_adjusted"]), "t"),
                  ("Cliff's delta", lambda r: None if r["cliffs_delta"] is None else round(r["cliffs_delta"], 2), "n"),
                  ("verdict", "verdict", "t")], rows, name=name)


def render_html(c: Comparison) -> str:
    """One self-contained page (no network): the analyze report's CSS and script, inline SVG."""
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
                         "point": s.capture_point, "profile": profile_name(s.profile)} for s in (c.before, c.after)],
                       name="sides") + "</section>")
    parts.append('<section id="comparable"><h2>Are the two sides comparable?</h2>'
                 + table([("check", "check", "t"), ("status", "status", "t"), ("detail", "detail", "t")], c.checks,
                         name="comparability") + "</section>")
    parts.append('<section id="durations"><h2>Logon duration</h2>'
                 + figure(_ecdf_svg(_values(c.before.logons, "duration_s"), _values(c.after.logons, "duration_s")),
                           "Each line rises by one step per logon: read across at 50 % for the median, at 95 % for "
                           "the p95. A line further left is faster.")
                 + table([("side", 0, "t"), ("logons", 1, "t"), ("p50", 2, "t"), ("p90", 3, "t"), ("p95", 4, "t"),
                          ("p99", 5, "t"), ("mean", 6, "t")],
                         [dict(enumerate(r)) for r in _desc_rows(c)], name="duration-percentiles")
                 + _html_metric_table([r for r in c.metrics if r["family"] == "logon"], "duration-metrics")
                 + f'<p class="note">{e(_sentence("Logon duration", d))}</p></section>')
    parts.append('<section id="budget"><h2>Where the time went, side by side</h2>'
                 + figure(_budget_svg(c), "Mean seconds per logon in each wait category; categories that changed "
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
            f"<title>netdiag compare</title><style>{asset('report.css')}</style></head><body>"
            '<header class="top"><h1>Did the change help? Before and after</h1>'
            f"<p>netdiag {e(__version__)} comparison, made {e(made)}. Times of day in UTC.</p>"
            f"</header><nav>{nav}</nav><main>{''.join(parts)}</main>"
            f"<script>{asset('report.js')}</script></body></html>\n")


__all__ = ["METRIC_HEADERS", "TERMINAL_COLUMNS", "print_terminal", "render_html", "render_markdown", "terminal_rows",
           "terminal_table"]

