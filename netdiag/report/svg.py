"""Inline SVG charts for the HTML report, generated in Python (they render without JavaScript).

Each chart is one `<svg class="chart" data-chart=NAME data-marks-expected=N>`; every data mark
(bar, point, line) carries class "mark", so the report's inline script (and the browser test)
can check that each chart drew what it should. Labels sit on or next to the marks they name
(direct labelling): no legend to hunt for. Colours per budget category come from
netdiag.report.CATEGORY_COLOURS and are the same in every chart.
"""

from __future__ import annotations

import datetime as _dt
import math
from html import escape

import numpy as np

from netdiag.report import (
    CATEGORY_COLOURS,
    CATEGORY_LABELS,
    SHORT_LABELS,
    fmt_pct,
    fmt_s,
    period_words,
    redact_cpr,
)

FONT = 12
INK = "#222"
MUTED = "#666"
GRID = "#e3e3e3"


def _e(s: object) -> str:
    return escape(redact_cpr(str(s)), quote=True)


def nice_step(span: float, target: int) -> float:
    """A 1/2/2.5/5 x 10^k step giving about `target` steps over `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw * 0.999:
            return m * mag
    return 10 * mag


def tick_label(v: float, step: float, top: float | None = None) -> str:
    """An axis tick: in ms when the axis ends below 1 s (µs below 1 ms), else s; as many decimals as the step needs.

    `top` is the axis's largest value (default: v); every tick of one axis shares its unit.
    """
    top = abs(v) if top is None else abs(top)
    scale, unit = (1e6, "µs") if top < 1e-3 else (1e3, "ms") if top < 1 else (1.0, "s")
    st = step * scale
    decimals = max(0, -math.floor(math.log10(st))) if st < 1 else 0
    if st < 1 and abs(st * 10 ** decimals - round(st * 10 ** decimals)) > 1e-9:
        decimals += 1
    return f"{v * scale:.{decimals}f} {unit}"


def text_width(s: str, size: int = FONT, *, bold: bool = False) -> float:
    """A generous estimate of a label's width in px (DejaVu Sans, the widest common system-ui font, averages
    0.55 em a character, digits 0.64 em): used to keep labels apart and inside the chart."""
    return len(s) * size * (0.68 if bold else 0.62)


def wrap_words(words: list[str], width: float, size: int = FONT) -> list[str]:
    """Words joined into lines no wider than `width` px (by `text_width`)."""
    lines: list[str] = []
    for word in words:
        if lines and text_width(lines[-1] + " " + word, size) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def fit_text(s: str, width: float, size: int = FONT) -> str:
    """`s` cut with an ellipsis to fit `width` px (the whole text stays in the mark's hover title)."""
    if text_width(s, size) <= width:
        return s
    n = max(1, int(width / (size * 0.62)) - 1)
    return s[:n] + "…"


def _svg(name: str, width: int, height: int, title: str, body: list[str], marks: int) -> str:
    return (f'<svg class="chart" data-chart="{_e(name)}" data-marks-expected="{marks}" role="img" '
            f'aria-label="{_e(title)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'font-family="system-ui, sans-serif" font-size="{FONT}"><title>{_e(title)}</title>'
            + "".join(body) + "</svg>")


def _text(x: float, y: float, s: str, *, anchor: str = "start", fill: str = INK, size: int = FONT,
          weight: str = "normal", cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}" font-size="{size}" '
            f'font-weight="{weight}"{c}>{_e(s)}</text>')


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str, *, mark: bool = True,
          extra: str = "") -> str:
    cls = ' class="mark"' if mark else ""
    return (f'<rect{cls} x="{x:.2f}" y="{y:.2f}" width="{max(w, 1.0):.2f}" height="{max(h, 1.0):.2f}" '
            f'fill="{fill}"{extra}><title>{_e(title)}</title></rect>')


def _x_axis(x0: float, x1: float, y: float, lo: float, hi: float, step: float, *, max_ticks: int = 12,
            label=None) -> list[str]:
    out = [f'<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="{MUTED}"/>']
    n = int(round((hi - lo) / step))
    every = max(1, math.ceil((n + 1) / max_ticks))
    for i in range(0, n + 1, every):
        v = lo + i * step
        x = x0 + (v - lo) / (hi - lo) * (x1 - x0)
        out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="{MUTED}"/>')
        out.append(_text(x, y + 16, label(v) if label else tick_label(v, step, hi), anchor="middle", fill=MUTED))
    return out


# ------------------------------------------------------------------------------------------
# Logon duration distribution
# ------------------------------------------------------------------------------------------

def _finite(values: object) -> np.ndarray:
    """The finite values of `values` as floats (NaN, inf and None dropped)."""
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def _ok(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def histogram_bins(values: np.ndarray, step: float) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Bins of width `step` covering `values`: (lo, hi, edges, counts), at least one bin.

    Bin i holds [lo + i*step, lo + (i+1)*step). Bin indices are computed once as integers
    (with a tolerance of a millionth of a step), so a value that is a whole number of steps,
    or all values being equal, cannot leave the edges empty the way separate floor/ceil of
    floats did (a ValueError on one logon of 0.061 s).
    """
    k = np.floor(values / step + 1e-6).astype(np.int64)
    k_lo, k_hi = int(k.min()), int(k.max())
    counts = np.bincount(k - k_lo, minlength=k_hi - k_lo + 1)
    edges = np.round(np.arange(k_lo, k_hi + 2, dtype=np.float64) * step, 12)   # 305 * 0.0002 is 0.061, not ...06
    return float(edges[0]), float(edges[-1]), edges, counts


def duration_histogram(durations: np.ndarray, p50: float | None, p95: float | None, slow_s: float | None) -> str:
    """Histogram of logon durations with count labels and the p50/p95 (and slow limit) marked.

    Degenerate inputs draw a sensible chart: one logon or all equal gives one bar, zero-length
    logons a bar at 0, non-finite durations are left out (and nothing left: an empty chart).
    """
    d = _finite(durations)
    W, H, L, R, T, B = 860, 270, 56, 24, 44, 46
    if d.size == 0:
        return _svg("duration-histogram", W, H, "How long logons took: no durations to show",
                    [_text(W / 2, H / 2, "no logon with a measurable duration", anchor="middle", fill=MUTED)], 0)
    lo_v, hi_v = float(d.min()), float(d.max())
    # bins narrower than 1/20 of the longest logon's time tell nothing (and need 4-decimal labels)
    step = nice_step(max(hi_v - lo_v, 0.05 * hi_v, 0.001), min(20, max(5, int(math.sqrt(d.size) * 2))))
    lo, hi, edges, counts = histogram_bins(d, step)
    cmax = max(int(counts.max()), 1)
    sx = (W - L - R) / (hi - lo)
    ph = H - T - B
    body: list[str] = []
    marks = 0
    for i, c in enumerate(counts):
        if c == 0:
            continue
        x = L + (edges[i] - lo) * sx
        h = c / cmax * ph * 0.8          # headroom for the count and the p50/p95 labels
        body.append(_rect(x + 1, T + ph - h, step * sx - 2, h, "#4C78A8",
                          f"{tick_label(edges[i], step, hi)} to {tick_label(edges[i + 1], step, hi)}: {c} logon{'s' if c != 1 else ''}"))
        body.append(_text(x + step * sx / 2, T + ph - h - 4, str(int(c)), anchor="middle"))
        marks += 1
    body += _x_axis(L, W - R, T + ph, lo, hi, step)
    body.append(_text(L - 8, T + ph, "0", anchor="end", fill=MUTED))
    body.append(_text(L - 8, T + ph * 0.2 + 4, f"{cmax}", anchor="end", fill=MUTED))
    body.append(_text(12, T + ph / 2, "logons", anchor="middle", fill=MUTED,
                      cls="ylabel").replace("<text ", f'<text transform="rotate(-90 12 {T + ph / 2:.0f})" '))
    marker_y = 14
    for v, name, colour in ((p50, "median (p50)", "#1b7837"), (p95, "p95", "#b2182b"), (slow_s, "slow limit", MUTED)):
        if not _ok(v) or not (lo <= v <= hi):
            continue
        x = L + (v - lo) * sx
        body.append(f'<line class="mark" x1="{x:.1f}" y1="{marker_y - 8}" x2="{x:.1f}" y2="{T + ph}" '
                    f'stroke="{colour}" stroke-width="2" stroke-dasharray="5 3"><title>{_e(name)} '
                    f'{_e(fmt_s(v))}</title></line>')
        anchor = "end" if x + 4 + text_width(f"{name} {fmt_s(v)}", bold=True) > W - 2 else "start"
        body.append(_text(x + (-4 if anchor == "end" else 4), marker_y + 4, f"{name} {fmt_s(v)}", anchor=anchor,
                          fill=colour, weight="bold"))
        marks += 1
        marker_y += 14
    return _svg("duration-histogram", W, H, "How long logons took: number of logons per duration", body, marks)


# ------------------------------------------------------------------------------------------
# p50 / p95 over time with logon counts
# ------------------------------------------------------------------------------------------

def over_time(starts_ns: list[int], counts: list[int], p50: list[float], p95: list[float], bucket_s: int) -> str:
    """p50 and p95 logon time per time bucket (lines, labelled at their ends) over logon counts (bars).

    One bucket gives single points (no line); a missing or non-finite percentile is left out of
    its line rather than drawn at a made-up height; no bucket at all gives an empty chart.
    """
    W, H, L, T = 860, 320, 64, 20
    line_h, gap, bar_h = 170, 40, 60
    n = len(starts_ns)
    ends = [f"{name} {fmt_s(next((v for v in reversed(series) if _ok(v)), None))}"
            for series, name in ((p95, "p95"), (p50, "median (p50)"))]
    R = max(80, 16 + max(text_width(t, bold=True) for t in ends))   # the end labels fit right of the lines
    title = f"Logon time over the day (p50 and p95 per {period_words(bucket_s)} period) and number of logons"
    if n == 0:
        return _svg("over-time", W, H, title, [_text(W / 2, H / 2, "no logons", anchor="middle", fill=MUTED)], 0)
    bucket_s = bucket_s if bucket_s > 0 else 1
    t0 = starts_ns[0] / 1e9
    t1 = max(starts_ns[-1] / 1e9 + bucket_s, t0 + bucket_s)
    sx = (W - L - R) / (t1 - t0)
    finite = [v for v in (*p95, *p50) if _ok(v)]
    vmax = max([*finite, 0.001])
    ystep = nice_step(vmax, 4)
    ymax = math.ceil(vmax / ystep) * ystep
    if ymax < vmax * 1.05:
        ymax += ystep
    body: list[str] = []
    marks = 0

    def y_of(v: float) -> float:
        return T + line_h - v / ymax * line_h

    k = 0.0
    while k <= ymax + 1e-12:
        y = y_of(k)
        body.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(_text(L - 6, y + 4, tick_label(k, ystep, ymax), anchor="end", fill=MUTED))
        k += ystep
    xs = [L + (s / 1e9 + bucket_s / 2 - t0) * sx for s in starts_ns]
    label_y95 = -100.0
    for series, name, colour in ((p95, "p95", "#b2182b"), (p50, "median (p50)", "#1b7837")):
        known = [(x, v) for x, v in zip(xs, series, strict=True) if _ok(v)]
        if not known:
            continue
        pts = " ".join(f"{x:.1f},{y_of(v):.1f}" for x, v in known)
        if len(known) > 1:
            body.append(f'<polyline class="mark" points="{pts}" fill="none" stroke="{colour}" stroke-width="2">'
                        f'<title>{_e(name)} per {period_words(bucket_s)} period</title></polyline>')
            marks += 1
        for x, v in known:
            body.append(f'<circle class="mark" cx="{x:.1f}" cy="{y_of(v):.1f}" r="3.5" fill="{colour}">'
                        f'<title>{_e(name)} {_e(fmt_s(v))}</title></circle>')
            marks += 1
        last_x, last_v = known[-1]
        ly = y_of(last_v) + 4
        if name != "p95" and abs(ly - label_y95) < 14:     # keep the two end labels apart
            ly = label_y95 + 14
        if name == "p95":
            label_y95 = ly
        body.append(_text(last_x + 8, ly, f"{name} {fmt_s(last_v)}", fill=colour, weight="bold"))
    # counts panel
    by = T + line_h + gap
    cmax = max(max(counts), 1)
    bw = max(bucket_s * sx * 0.8, 2)
    body.append(_text(L - 6, by + bar_h / 2 + 10, "logons", anchor="end", fill=MUTED))
    # each count above its bar when the bars are wide enough to keep the numbers apart; else the largest
    # count on the scale at the left (every bar's count is in its hover title)
    label_each = bw >= text_width(str(cmax), 10) + 4
    if not label_each:
        body.append(_text(L - 6, by + 4, f"{cmax:,}", anchor="end", fill=MUTED, size=10))
    for x, c, s in zip(xs, counts, starts_ns, strict=True):
        h = c / cmax * bar_h
        body.append(_rect(x - bw / 2, by + bar_h - h, bw, h, "#9ecae1",
                          f"{_hm(s)}: {c} logon{'s' if c != 1 else ''}"))
        if label_each:
            body.append(_text(x, by + bar_h - h - 3, str(c), anchor="middle", size=10))
        marks += 1
    # time axis: at most ~8 labels
    ty = by + bar_h
    body.append(f'<line x1="{L}" y1="{ty}" x2="{W - R}" y2="{ty}" stroke="{MUTED}"/>')
    every = max(1, math.ceil(n / 8))
    for i in range(0, n, every):
        body.append(_text(xs[i], ty + 15, _hm(starts_ns[i]), anchor="middle", fill=MUTED))
    return _svg("over-time", W, H, title, body, marks)


def logons_over_time(starts_ns: list[int], durations: list[float], p50: float | None, p95: float | None) -> str:
    """Each logon as a point (start time, duration), with the median and p95 of all as lines.

    For a capture of a few minutes, where time buckets would give one or two points: every logon
    is shown, so a slow one at a certain moment stands out.
    """
    W, H, L, T, B = 860, 300, 64, 20, 44
    pts = [(t, d) for t, d in zip(starts_ns, durations, strict=True) if t is not None and _ok(d)]
    labels = [f"{name} {fmt_s(v)}" for v, name in ((p95, "p95"), (p50, "median (p50)")) if _ok(v)]
    R = max(40, 16 + max((text_width(t, bold=True) for t in labels), default=0))
    title = "Each logon by its start time (UTC) and duration, with the median and p95"
    if not pts:
        return _svg("over-time", W, H, title, [_text(W / 2, H / 2, "no logons", anchor="middle", fill=MUTED)], 0)
    t0 = min(t for t, _ in pts) / 1e9
    t1 = max(t for t, _ in pts) / 1e9
    pad = (t1 - t0) * 0.05 if t1 > t0 else 0.5     # one logon, or all in one instant: a second around it
    t0, t1 = t0 - pad, t1 + pad
    vmax = max([d for _, d in pts] + [v for v in (p50, p95) if _ok(v)] + [0.001])
    ystep = nice_step(vmax, 4)
    ymax = math.ceil(vmax * 1.05 / ystep) * ystep
    ph = H - T - B

    def x_of(ts: float) -> float:
        return L + (ts - t0) / (t1 - t0) * (W - L - R)

    def y_of(v: float) -> float:
        return T + ph - v / ymax * ph

    body: list[str] = []
    k = 0.0
    while k <= ymax + 1e-12:
        body.append(f'<line x1="{L}" y1="{y_of(k):.1f}" x2="{W - R}" y2="{y_of(k):.1f}" stroke="{GRID}"/>')
        body.append(_text(L - 6, y_of(k) + (4 if k else -2), tick_label(k, ystep, ymax), anchor="end", fill=MUTED))
        k += ystep
    marks = 0
    ms = t1 - t0 < 60
    for t, d in pts:
        body.append(f'<circle class="mark" cx="{x_of(t / 1e9):.1f}" cy="{y_of(d):.1f}" r="4" fill="#4C78A8" '
                    f'fill-opacity="0.8"><title>{_e(_hms(t, ms=ms))}: {_e(fmt_s(d))}</title></circle>')
        marks += 1
    label_ys: list[float] = []
    for v, name, colour in ((p95, "p95", "#b2182b"), (p50, "median (p50)", "#1b7837")):
        if not _ok(v):
            continue
        y = y_of(v)
        body.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="{colour}" stroke-width="1.5" '
                    f'stroke-dasharray="5 3"/>')
        ly = y + 4
        for other in label_ys:             # keep the two labels apart
            if abs(ly - other) < 15:
                ly = other + 15
        label_ys.append(ly)
        body.append(_text(W - R + 6, ly, f"{name} {fmt_s(v)}", fill=colour, weight="bold"))
    # time axis: nice steps of seconds/minutes, at most 8 labels
    ty = T + ph
    body.append(f'<line x1="{L}" y1="{ty}" x2="{W - R}" y2="{ty}" stroke="{MUTED}"/>')
    step = next((c for c in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120,
                             300, 600, 900, 1800, 3600, 7200, 21600) if (t1 - t0) / c <= 6), 86400)
    first = math.ceil(t0 / step)
    for i in range(first, int(math.floor(t1 / step)) + 1):
        tick_ns = round(i * step * 1e9)
        x = x_of(tick_ns / 1e9)
        body.append(f'<line x1="{x:.1f}" y1="{ty}" x2="{x:.1f}" y2="{ty + 4}" stroke="{MUTED}"/>')
        body.append(_text(x, ty + 16, _hms(tick_ns, ms=step < 1), anchor="middle", fill=MUTED))
    body.append(_text((L + W - R) / 2, H - 6, "logon start (UTC)", anchor="middle", fill=MUTED))
    return _svg("over-time", W, H, title, body, marks)


def _hms(ts_ns: int, *, ms: bool = False) -> str:
    t = _dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=_dt.UTC).strftime("%H:%M:%S")
    return t + (f".{ts_ns // 1_000_000 % 1000:03d}" if ms else "")


def _hm(ts_ns: int) -> str:
    return _dt.datetime.fromtimestamp(ts_ns / 1e9, tz=_dt.UTC).strftime("%H:%M")


# ------------------------------------------------------------------------------------------
# Wait budget: stacked bars
# ------------------------------------------------------------------------------------------

def budget_share_bars(rows: list[tuple[str, dict[str, float]]]) -> str:
    """One 100 % bar per row (e.g. all logons, the slowest 5 %), segments labelled in place.

    A segment's label sits inside it when it fits, else above it on a tick (two label rows, each
    label kept clear of the others by its estimated width), else in the "also:" lines below the
    bar, wrapped to the chart's width. Nothing is drawn over another label or outside the chart.
    """
    W, R, bar, T, row_h = 860, 16, 34, 36, 14
    L = max(190, 16 + max((text_width(label, FONT, bold=True) for label, _ in rows), default=0))
    body: list[str] = []
    marks = 0
    span = W - L - R
    y = T
    for label, secs in rows:
        secs = {c: float(v) for c, v in secs.items() if _ok(v) and v > 0}   # NaN, negative: nothing to draw
        total = sum(secs.values())
        body.append(_text(L - 8, y + bar / 2 - 2, label, anchor="end", weight="bold"))
        body.append(_text(L - 8, y + bar / 2 + 12, f"{fmt_s(total)} in all", anchor="end", fill=MUTED, size=11))
        x = L
        small: list[str] = []
        taken: list[list[tuple[float, float]]] = [[], []]     # label extents in the two rows above the bar
        for cat, sec in sorted(secs.items(), key=lambda kv: -kv[1]):
            share = sec / total if total else 0
            w = share * span
            body.append(_rect(x, y, w, bar, CATEGORY_COLOURS[cat],
                              f"{CATEGORY_LABELS[cat]}: {fmt_s(sec)} ({fmt_pct(share)})"))
            marks += 1
            text = f"{SHORT_LABELS[cat]} {fmt_pct(share)}"
            cx = x + w / 2
            x += w
            if w >= text_width(text, FONT, bold=True) + 10:
                body.append(_text(cx, y + bar / 2 + 4, text, anchor="middle", weight="bold"))
                continue
            tw = text_width(text, 11)
            spot = None
            if share >= 0.01:
                for row in (0, 1):
                    for x0, anchor in ((cx + 3, "start"), (cx - 3 - tw, "end")):
                        if x0 >= 2 and x0 + tw <= W - 2 and all(x0 + tw + 6 <= a or x0 >= b + 6 for a, b in taken[row]):
                            spot = (row, x0, anchor)
                            break
                    if spot:
                        break
            if spot is None:
                small.append(text)
                continue
            row, x0, anchor = spot
            taken[row].append((x0, x0 + tw))
            ty = y - 6 - row * row_h
            body.append(f'<line x1="{cx:.1f}" y1="{ty + 2}" x2="{cx:.1f}" y2="{y}" stroke="{MUTED}"/>')
            body.append(_text(cx + 3 if anchor == "start" else cx - 3, ty, text, size=11, anchor=anchor))
        y += bar
        for line in wrap_words(["also:", *[t + "," for t in small[:-1]], *small[-1:]] if small else [],
                               W - L - 4, 11):
            y += 15
            body.append(_text(L, y, line, fill=MUTED, size=11))
        y += 20 + 2 * row_h + 6       # the next bar's two label rows above it
    return _svg("budget-share", W, int(y - 2 * row_h - 6), "Where the time went (share of logon time by category)",
                body, marks)


def budget_per_logon_bars(rows: list[tuple[str, float, dict[str, float]]]) -> str:
    """One stacked bar per logon in seconds on a common axis, the total at each bar's end."""
    W, R, bar, pitch, T = 860, 70, 22, 30, 8
    L = max(190, 16 + max((text_width(label) for label, _, _ in rows), default=0))
    H = T + pitch * len(rows) + 30
    rows = [(label, total if _ok(total) else 0.0, {c: float(v) for c, v in secs.items() if _ok(v) and v > 0})
            for label, total, secs in rows]
    vmax = max([total for _, total, _ in rows] + [0.0]) or 1.0
    step = nice_step(vmax, 6)
    hi = math.ceil(vmax / step) * step
    span = W - L - R
    body: list[str] = []
    marks = 0
    for i, (label, total, secs) in enumerate(rows):
        y = T + i * pitch
        body.append(_text(L - 8, y + bar / 2 + 4, label, anchor="end"))
        x = L
        for cat, s in sorted(secs.items(), key=lambda kv: -kv[1]):
            if s <= 0:
                continue
            w = s / hi * span
            body.append(_rect(x, y, w, bar, CATEGORY_COLOURS[cat], f"{label}: {CATEGORY_LABELS[cat]} {fmt_s(s)}"))
            marks += 1
            text = f"{SHORT_LABELS[cat]} {fmt_s(s)}"
            if w >= text_width(text, 11) + 6:
                body.append(_text(x + w / 2, y + bar / 2 + 4, text, anchor="middle", size=11))
            x += w
        body.append(_text(x + 6, y + bar / 2 + 4, fmt_s(total), weight="bold"))
    body += _x_axis(L, L + span, T + pitch * len(rows), 0.0, hi, step, max_ticks=8)
    return _svg("budget-slowest", W, H, "Where the time went in the slowest logons (seconds)", body, marks)


# ------------------------------------------------------------------------------------------
# Waterfall of one logon
# ------------------------------------------------------------------------------------------

def waterfall(name: str, rows: list[dict], start_ns: int, end_ns: int) -> str:
    """Connections (rows) and their connect, TLS, request, server, answer, resend and PC intervals on one timeline."""
    W, L, R, T, pitch, bar = 1000, 300, 16, 8, 24, 16
    H = T + pitch * len(rows) + 30
    dur = max((end_ns - start_ns) / 1e9, 1e-6)   # a zero-length logon still gets an axis
    step = nice_step(dur, 8)
    hi = math.ceil(dur / step) * step
    span = W - L - R
    body: list[str] = []
    marks = 0
    for i, row in enumerate(rows):
        y = T + i * pitch
        if i % 2 == 0:
            body.append(f'<rect x="0" y="{y - 4}" width="{W}" height="{pitch}" fill="#f6f6f6"/>')
        body.append(_text(L - 8, y + bar - 3, fit_text(row["label"], L - 12, 11), anchor="end", size=11))
        bars = sorted(b for b in row["bars"] if b[1] >= b[0])   # an interval ending before it starts: none
        starts = [L + (b[0] - start_ns) / 1e9 / hi * span for b in bars]
        placed: list[tuple[float, float]] = []       # label extents on this row: overlapping bars keep one
        for j, (t0, t1, cat, title, op) in enumerate(bars):
            x = starts[j]
            w = (t1 - t0) / 1e9 / hi * span
            body.append(_rect(x, y, w, bar, CATEGORY_COLOURS.get(cat, "#bbb"), title))
            marks += 1
            text = op if (op and cat == "server_s") else SHORT_LABELS.get(cat, cat)
            tw = text_width(text, 10)
            if w >= tw + 6:
                x0, x1, at, anchor = x + w / 2 - tw / 2, x + w / 2 + tw / 2, x + w / 2, "middle"
            elif op and cat == "server_s":
                room_end = min([s_ for s_ in starts[j + 1:] if s_ > x + w] + [L + span])
                if room_end - (x + w) < tw + 8:
                    continue
                x0, x1, at, anchor = x + w + 3, x + w + 3 + tw, x + w + 3, "start"
            else:
                continue
            if any(x0 < b + 4 and x1 > a - 4 for a, b in placed):
                continue
            placed.append((x0, x1))
            body.append(_text(at, y + bar - 4, text, anchor=anchor, size=10, fill=INK))
    body += _x_axis(L, L + span, T + pitch * len(rows), 0.0, hi, step, max_ticks=10)
    return _svg(name, W, H, "Waterfall: what each connection of the logon was doing, second by second", body, marks)


# ------------------------------------------------------------------------------------------
# Horizontal bars (server think per operation)
# ------------------------------------------------------------------------------------------

def hbars(name: str, title: str, items: list[tuple[str, float, str]], colour: str = "#E69F00") -> str:
    """Horizontal bars with the label left and the value (plus a note) right of each bar."""
    W, L, T, pitch, bar = 860, 280, 8, 24, 16
    H = T + pitch * len(items) + 6
    items = [(label, float(v) if _ok(v) and v > 0 else 0.0, note) for label, v, note in items]
    vmax = max((v for _, v, _ in items), default=0) or 1.0
    # room right of the longest bar for the widest value note (at most half the chart; longer notes are cut)
    R = min(W // 2, 16 + max((text_width(f"{fmt_s(v)} · {note}", 11) for _, v, note in items), default=0))
    span = W - L - R
    body: list[str] = []
    for i, (label, v, note) in enumerate(items):
        y = T + i * pitch
        body.append(_text(L - 8, y + bar - 3, fit_text(label, L - 12, 11), anchor="end", size=11))
        w = v / vmax * span
        body.append(_rect(L, y, w, bar, colour, f"{label}: {fmt_s(v)} {note}"))
        body.append(_text(L + max(w, 1) + 6, y + bar - 3, fit_text(f"{fmt_s(v)} · {note}", W - 4 - (L + max(w, 1) + 6),
                                                                     11), size=11))
    return _svg(name, W, H, title, body, len(items))
