"""The trend page: logon time per period, drawn like report.html (netdiag trend --html).

Rendering only: every number comes from a `netdiag.trend.Trend` (periods' percentiles and budget
means, and `netdiag.compare` comparisons between periods). Self-contained and offline: the
report's CSS and script inline, charts as inline SVG (netdiag/report/svg.py helpers, same colours
per budget category), no external reference. Charts:

- p50 and p95 per period (lines over the periods, logon counts as bars below);
- the wait budget per period (one stacked bar per period: mean seconds per logon per category,
  so each bar's length is the mean logon duration);
- tables: periods, the comparison between each period and the previous one, per ward.
"""

from __future__ import annotations

import datetime as _dt
import math

from netdiag import __version__
from netdiag.compare.stats import ALPHA, MIN_SAMPLES, RELATIVE_MIN_CHANGE
from netdiag.report import CATEGORY_COLOURS, CATEGORY_LABELS, SHORT_LABELS, fmt_s
from netdiag.report import svg as charts
from netdiag.report.html import asset, figure, table
from netdiag.report.html import esc as _e
from netdiag.schema import BUDGET_COLUMNS
from netdiag.trend import Trend

P50_COLOUR = "#1b7837"
P95_COLOUR = "#b2182b"
CHAR_W = 6.6          # average width of a 12 px system-ui character, for label spacing
LABEL_MAX = 26        # longer period names are shortened in charts (tables and hover titles keep them whole)


def _short(label: str) -> str:
    return label if len(label) <= LABEL_MAX else label[:LABEL_MAX - 1] + "…"


def period_lines(labels: list[str], p50: list[float | None], p95: list[float | None], counts: list[int]) -> str:
    """p50 and p95 logon time per period (lines with a point per period, labelled at the last one) over the
    logon count per period (bars). Periods without logons have no point."""
    W, H, L, R, T = 860, 330, 64, 96, 20
    line_h, gap, bar_h = 170, 30, 56
    n = len(labels)
    pitch = (W - L - R) / max(n, 1)
    xs = [L + pitch * (i + 0.5) for i in range(n)]
    values = [v for v in p50 + p95 if v is not None]
    vmax = max(values + [0.001])
    ystep = charts.nice_step(vmax, 4)
    ymax = math.ceil(vmax / ystep) * ystep
    if ymax < vmax * 1.05:
        ymax += ystep

    def y_of(v: float) -> float:
        return T + line_h - v / ymax * line_h

    body: list[str] = []
    marks = 0
    k = 0.0
    while k <= ymax + 1e-12:
        y = y_of(k)
        body.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="{charts.GRID}"/>')
        body.append(charts._text(L - 6, y + 4, charts.tick_label(k, ystep, ymax), anchor="end", fill=charts.MUTED))
        k += ystep
    end_labels: list[float] = []
    for series, name, colour in ((p95, "p95", P95_COLOUR), (p50, "median (p50)", P50_COLOUR)):
        pts = [(x, v) for x, v in zip(xs, series, strict=True) if v is not None]
        if len(pts) > 1:
            line = " ".join(f"{x:.1f},{y_of(v):.1f}" for x, v in pts)
            body.append(f'<polyline class="mark" points="{line}" fill="none" stroke="{colour}" stroke-width="2">'
                        f"<title>{charts._e(name)} per period</title></polyline>")
            marks += 1
        for (x, v), lab in zip(pts, [lb for lb, v in zip(labels, series, strict=True) if v is not None],
                               strict=True):
            body.append(f'<circle class="mark" cx="{x:.1f}" cy="{y_of(v):.1f}" r="4" fill="{colour}">'
                        f"<title>{charts._e(lab)}: {charts._e(name)} {charts._e(fmt_s(v))}</title></circle>")
            marks += 1
        if pts:
            ly = y_of(pts[-1][1]) + 4
            for other in end_labels:                     # keep the two end labels apart
                if abs(ly - other) < 14:
                    ly = other + 14
            end_labels.append(ly)
            body.append(charts._text(pts[-1][0] + 8, ly, f"{name.split(' ')[0]} {fmt_s(pts[-1][1])}", fill=colour,
                                     weight="bold"))
    by = T + line_h + gap
    cmax = max(counts + [1])
    bw = max(min(pitch * 0.6, 60), 2)
    body.append(charts._text(L - 6, by + bar_h / 2, "logons", anchor="end", fill=charts.MUTED))
    for x, c, lab in zip(xs, counts, labels, strict=True):
        h = c / cmax * bar_h
        if c:
            body.append(charts._rect(x - bw / 2, by + bar_h - h, bw, h, "#9ecae1",
                                     f"{lab}: {c} logon{'s' if c != 1 else ''}"))
            marks += 1
        body.append(charts._text(x, by + bar_h - h - 3, str(c), anchor="middle", size=10))
    ty = by + bar_h
    body.append(f'<line x1="{L}" y1="{ty}" x2="{W - R}" y2="{ty}" stroke="{charts.MUTED}"/>')
    widest = max(len(_short(lab)) for lab in labels) * CHAR_W if labels else 0
    every = max(1, math.ceil((widest + 8) / pitch))      # no two axis labels overlap
    for i in range(0, n, every):
        body.append(charts._text(xs[i], ty + 15, _short(labels[i]), anchor="middle", fill=charts.MUTED))
    return charts._svg("trend-lines", W, H, "Logon time per period: median (p50) and p95, with the number of logons",
                       body, marks)


def budget_bars(rows: list[tuple[str, float, dict[str, float]]]) -> str:
    """One stacked bar per period: mean seconds per logon per category (svg.budget_per_logon_bars' layout)."""
    svg = charts.budget_per_logon_bars([(_short(label), total, secs) for label, total, secs in rows])
    return svg.replace('data-chart="budget-slowest"', 'data-chart="trend-budget"').replace(
        "Where the time went in the slowest logons (seconds)", "Where the time went per period (mean seconds per logon)")


def _p(x: float | None) -> str:
    return "n/a" if x is None else (f"{x:.2g}" if x < 0.001 else f"{x:.3f}")


def _sentences(t: Trend) -> str:
    return "".join(f'<p class="{"lead" if i < 2 else ""}">{_e(s)}</p>' for i, s in enumerate(t.headline()))


def render_html(t: Trend) -> str:
    """One self-contained page: summary, p50/p95 per period, budget per period, comparisons, wards, method."""
    parts = ['<section id="summary"><h2>Summary</h2>' + _sentences(t) + "</section>"]
    labels = [p.label for p in t.periods]
    with_logons = [p for p in t.periods if p.logons]
    lines = '<section id="lines"><h2>Logon time per period</h2>'
    if with_logons:
        lines += figure(period_lines(labels, [p.p50_s for p in t.periods], [p.p95_s for p in t.periods],
                                      [p.logons for p in t.periods]),
                         "Median (p50) and 95th-percentile (p95) logon time in each period, in the order given, with "
                         "the number of logons in each period below. A rise in p95 with steady counts points at "
                         "trouble, not load.")
    rows = []
    for p, s in zip(t.periods, t.steps, strict=True):
        d = p.to_dict()
        rows.append({**d, "vs": s.words() if s is not None else ("first period" if p.logons else "no logons"),
                     "top": ", ".join(f"{SHORT_LABELS[c]} {fmt_s(v)}" for c, v in p.top_budget())})
    lines += table([("period", "label", "t"), ("logons", "logons", "n"), ("first logon", "first_logon_start", "t"),
                    ("p50", "p50_s", "s"), ("p90", "p90_s", "s"), ("p95", "p95_s", "s"), ("p99", "p99_s", "s"),
                    ("mean", "mean_s", "s"), ("time went to (per logon)", "top", "t"),
                    ("against the previous period", "vs", "t")], rows, name="periods")
    parts.append(lines + "</section>")

    budget = '<section id="budget"><h2>Where the time went, per period</h2>'
    if with_logons:
        bars = [(p.label, float(p.duration["mean"] or 0.0), dict(p.budget_per_logon_s)) for p in with_logons]
        budget += figure(budget_bars(bars), "Mean seconds per logon in each wait category; a logon's categories add "
                                             "up to its duration, so each bar is the period's mean logon time.")
        key = " ".join(f'<span><i class="key" style="background:{CATEGORY_COLOURS[c]}"></i>'
                       f"{_e(CATEGORY_LABELS[c])}</span>" for c in BUDGET_COLUMNS)
        budget += f'<p class="note">Colours, the same in every chart: {key}</p>'
        cols = [("period", "label", "t")] + [(SHORT_LABELS[c], c, "s") for c in BUDGET_COLUMNS
                                             if any(p.budget_per_logon_s[c] > 5e-7 for p in with_logons)]
        budget += table(cols, [{"label": p.label, **p.budget_per_logon_s} for p in with_logons], name="budget-per-period")
    else:
        budget += "<p>No period has logons.</p>"
    parts.append(budget + "</section>")

    steps = [s for s in t.steps if s is not None]
    cmp_html = '<section id="steps"><h2>Between periods</h2>'
    if steps:
        cmp_html += ('<p class="note">Each period against the previous period that has logons, with the statistics '
                     "and verdict rules of <code>netdiag compare</code> (differences of the median and p95 with "
                     "bootstrap 95 % intervals, p of its rank and tail tests, Cliff's delta; docs/compare.md).</p>")
        srows = []
        for s in steps:
            d = s.duration
            p95 = (d.get("statistics") or {}).get("p95") or {}
            srows.append({"pair": f"{s.before} → {s.after}", "verdict": s.verdict, "direction": s.direction,
                          "diff": d["difference"], "ci": (f"{fmt_s(d['ci_low'])} .. {fmt_s(d['ci_high'])}"
                                                          if d["ci_low"] is not None else "n/a"),
                          "diff95": p95.get("difference"),
                          "ci95": (f"{fmt_s(p95['ci_low'])} .. {fmt_s(p95['ci_high'])}"
                                   if p95.get("ci_low") is not None else "n/a"),
                          "p": _p(d.get("p_adjusted", d["p_value"])), "delta": None if d["cliffs_delta"] is None else round(d["cliffs_delta"], 2),
                          "moved": ", ".join(f"{CATEGORY_LABELS[r['metric']]} ({r['metric']}) {r['verdict']} "
                                             f"{fmt_s(r['difference'])}" for r in s.budget_moved) or "none",
                          "largest": f"{CATEGORY_LABELS[s.largest_budget_change['category']]} "
                                     f"({s.largest_budget_change['category']}) "
                                     f"{fmt_s(s.largest_budget_change['change_per_logon_s'])}",
                          "checks": "; ".join(f"{c['check']}: {c['detail']}" for c in s.comparison.warnings) or "ok"})
        cmp_html += table([("periods", "pair", "t"), ("verdict", "verdict", "t"), ("median moved", "direction", "t"),
                           ("p50 difference", "diff", "s"), ("p50 95 % CI", "ci", "t"),
                           ("p95 difference", "diff95", "s"), ("p95 95 % CI", "ci95", "t"), ("p", "p", "t"),
                           ("Cliff's delta", "delta", "n"), ("budget categories that moved", "moved", "t"),
                           ("largest change per logon", "largest", "t"), ("comparable?", "checks", "t")],
                          srows, name="steps")
    else:
        cmp_html += "<p>Fewer than two periods with logons: nothing to compare.</p>"
    parts.append(cmp_html + "</section>")

    wards = t.ward_table()
    ward_html = '<section id="wards"><h2>Per ward</h2>'
    if wards.height and set(wards["ward"].to_list()) != {"(none)"}:
        ward_html += table([("ward", "ward", "t"), ("period", "period", "t"), ("logons", "logons", "n"),
                            ("p50", "p50_s", "s"), ("p95", "p95_s", "s"), ("against the previous period", "vs_previous", "t")],
                           wards.to_dicts(), name="wards")
    else:
        ward_html += ("<p>The profile defines no wards (client groups) that these logons belong to; add "
                      "<code>[[client_groups]]</code> to the profile to see logon time per ward.</p>")
    parts.append(ward_html + "</section>")

    method = [
        "Periods: " + (f"one per {t.split_by} of logon start (UTC), cut from one analysis" if t.split_by else
                       "one per input, in the order given (analysis directories read back, captures analysed)") + ".",
        "p50/p90/p95/p99: linear interpolation between the sorted logon durations (numpy's default, as netdiag "
        "analyze reports them).",
        "Wait budget per period: each category's seconds summed over the period's logons, divided by the number "
        "of logons.",
        "Between periods: netdiag compare on the two periods, its verdicts unchanged (docs/compare.md, 'The verdict "
        f"and its thresholds'): among its conditions at least {MIN_SAMPLES} logons on each side, p < {ALPHA} and a "
        "95 % bootstrap interval of the median, p90, p95 or mean excluding 0 by at least the metric's minimum "
        f"change and {RELATIVE_MIN_CHANGE:.0%}; with fewer logons the step says 'weak evidence' and which way "
        "the median moved.",
    ] + [f"Note: {w}" for w in t.warnings]
    parts.append('<section id="method"><h2>How these figures were computed</h2><ul>'
                 + "".join(f"<li>{_e(m)}</li>" for m in method) + "</ul></section>")
    nav = "".join(f'<a href="#{i}">{n}</a>' for i, n in (("summary", "Summary"), ("lines", "Per period"),
                                                          ("budget", "Where the time went"), ("steps", "Between periods"),
                                                          ("wards", "Per ward"), ("method", "Method")))
    made = _dt.datetime.now(tz=_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>netdiag trend</title><style>{asset('report.css')}</style></head><body>"
            '<header class="top"><h1>Logon time over days and periods</h1>'
            f"<p>netdiag {_e(__version__)} trend over {len(t.periods)} periods, made {_e(made)}. Times of day "
            "in UTC.</p></header>"
            f"<nav>{nav}</nav><main>{''.join(parts)}</main>"
            f"<script>{asset('report.js')}</script></body></html>\n")


__all__ = ["budget_bars", "period_lines", "render_html"]
