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
        anchor = "end" if x > W - 150 else "start"
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
    W, H, L, R, T = 860, 320, 64, 80, 20
    line_h, gap, bar_h = 170, 40, 60
    n = len(starts_ns)
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
    body.append(_text(L - 6, by + bar_h / 2, "logons", anchor="end", fill=MUTED))
    for x, c, s in zip(xs, counts, starts_ns, strict=True):
        h = c / cmax * bar_h
        body.append(_rect(x - bw / 2, by + bar_h - h, bw, h, "#9ecae1",
                          f"{_hm(s)}: {c} logon{'s' if c != 1 else ''}"))
        body.append(_text(x, by + bar_h - h - 3, str(c), anchor="middle", size=10))
        marks += 1
    # time axis: at most ~8 labels
    ty = by + bar_h
    body.append(f'<line x1="{L}" y1="{ty}" x2="{W - R}" y2="{ty}" stroke="{MUTED}"/>')
    every = max(1, math.ceil(n / 8))
    for i in range(0, n, every):
        body.append(_text(xs[i], ty + 15, _hm(starts_ns[i]), anchor="middle", fill=MUTED))
    return _svg("over-time", W, H, title, body, marks)


def _hm(ts_ns: int) -> str:
    return _dt.datetime.fromtimestamp(ts_ns / 1e9, tz=_dt.UTC).strftime("%H:%M")


# ------------------------------------------------------------------------------------------
# Wait budget: stacked bars
# ------------------------------------------------------------------------------------------

def budget_share_bars(rows: list[tuple[str, dict[str, float]]]) -> str:
    """One 100 % bar per row (e.g. all logons, the slowest 5 %), segments labelled in place."""
    W, L, R, bar, pitch, T = 860, 190, 16, 34, 104, 36
    H = T + pitch * len(rows) - 20
    body: list[str] = []
    marks = 0
    span = W - L - R
    for i, (label, secs) in enumerate(rows):
        y = T + i * pitch
        secs = {c: float(v) for c, v in secs.items() if _ok(v) and v > 0}   # NaN, negative: nothing to draw
        total = sum(secs.values())
        body.append(_text(L - 8, y + bar / 2 - 2, label, anchor="end", weight="bold"))
        body.append(_text(L - 8, y + bar / 2 + 12, f"{fmt_s(total)} in all", anchor="end", fill=MUTED, size=11))
        x = L
        small: list[str] = []
        above_end = [-1e9, -1e9]          # right end of the last label in each of the two rows above the bar
        for cat, s in sorted(secs.items(), key=lambda kv: -kv[1]):
            if s <= 0:
                continue
            share = s / total if total else 0
            w = share * span
            body.append(_rect(x, y, w, bar, CATEGORY_COLOURS[cat],
                              f"{CATEGORY_LABELS[cat]}: {fmt_s(s)} ({fmt_pct(share)})"))
            marks += 1
            text = f"{SHORT_LABELS[cat]} {fmt_pct(share)}"
            tw = 6.6 * len(text)
            cx = x + w / 2
            if w >= tw + 10:
                body.append(_text(cx, y + bar / 2 + 4, text, anchor="middle", weight="bold"))
            elif share >= 0.01 and min(above_end) < cx - 4:
                row = 0 if above_end[0] < cx - 4 else 1
                ty = y - 6 - row * 14
                body.append(f'<line x1="{cx:.1f}" y1="{ty + 2}" x2="{cx:.1f}" y2="{y}" stroke="{MUTED}"/>')
                if cx + 3 + tw > W - 2:      # no room to the right: label to the left of the tick
                    body.append(_text(cx - 3, ty, text, size=11, anchor="end"))
                else:
                    body.append(_text(cx + 3, ty, text, size=11))
                above_end[row] = cx + 3 + tw
            else:
                small.append(text)
            x += w
        if small:
            body.append(_text(L, y + bar + 15, "also: " + ", ".join(small), fill=MUTED, size=11))
    return _svg("budget-share", W, H, "Where the time went (share of logon time by category)", body, marks)


def budget_per_logon_bars(rows: list[tuple[str, float, dict[str, float]]]) -> str:
    """One stacked bar per logon in seconds on a common axis, the total at each bar's end."""
    W, L, R, bar, pitch, T = 860, 190, 70, 22, 30, 8
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
            if w >= 6.6 * len(text) + 6:
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
        body.append(_text(L - 8, y + bar - 3, row["label"], anchor="end", size=11))
        bars = sorted(b for b in row["bars"] if b[1] >= b[0])   # an interval ending before it starts: none
        starts = [L + (b[0] - start_ns) / 1e9 / hi * span for b in bars]
        for j, (t0, t1, cat, title, op) in enumerate(bars):
            x = starts[j]
            w = (t1 - t0) / 1e9 / hi * span
            body.append(_rect(x, y, w, bar, CATEGORY_COLOURS.get(cat, "#bbb"), title))
            marks += 1
            text = op if (op and cat == "server_s") else SHORT_LABELS.get(cat, cat)
            tw = 6.2 * len(text)
            if w >= tw + 6:
                body.append(_text(x + w / 2, y + bar - 4, text, anchor="middle", size=10))
            elif op and cat == "server_s":
                room_end = min([s_ for s_ in starts[j + 1:] if s_ > x + w] + [L + span])
                if room_end - (x + w) >= tw + 8:
                    body.append(_text(x + w + 3, y + bar - 4, text, size=10, fill=INK))
    body += _x_axis(L, L + span, T + pitch * len(rows), 0.0, hi, step, max_ticks=10)
    return _svg(name, W, H, "Waterfall: what each connection of the logon was doing, second by second", body, marks)


# ------------------------------------------------------------------------------------------
# Horizontal bars (server think per operation)
# ------------------------------------------------------------------------------------------

def hbars(name: str, title: str, items: list[tuple[str, float, str]], colour: str = "#E69F00") -> str:
    """Horizontal bars with the label left and the value (plus a note) right of each bar."""
    W, L, R, T, pitch, bar = 860, 280, 250, 8, 24, 16
    H = T + pitch * len(items) + 6
    items = [(label, float(v) if _ok(v) and v > 0 else 0.0, note) for label, v, note in items]
    vmax = max((v for _, v, _ in items), default=0) or 1.0
    span = W - L - R
    body: list[str] = []
    for i, (label, v, note) in enumerate(items):
        y = T + i * pitch
        body.append(_text(L - 8, y + bar - 3, label if len(label) <= 40 else label[:38] + "...", anchor="end",
                          size=11))
        w = v / vmax * span
        body.append(_rect(L, y, w, bar, colour, f"{label}: {fmt_s(v)} {note}"))
        body.append(_text(L + max(w, 1) + 6, y + bar - 3, f"{fmt_s(v)} · {note}", size=11))
    return _svg(name, W, H, title, body, len(items))
