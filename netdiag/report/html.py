"""report.html: one self-contained page (inline CSS, inline SVG charts, a few lines of inline JS).

Works offline: no fetch, no CDN, no web font, no external link other than in-page anchors.
Charts are SVG generated in Python (netdiag/report/svg.py), so they render without script; the
inline script (assets/report.js) only makes tables sortable and records that every chart drew
its marks (the browser test reads those attributes). Sections: summary,
findings, duration distribution, over time, wait budget, waterfall of the worst logons, server
time per operation, logons, TCP health, capture, method.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netdiag.filters import filters_of
from netdiag.logons.population import complete_logons, percentile
from netdiag.report import (
    CATEGORY_COLOURS,
    CATEGORY_LABELS,
    SEVERITY_ORDER,
    Summary,
    cause_label,
    fmt_pct,
    fmt_s,
    fmt_time,
    largest_waits,
    needs_ms,
    period_words,
    redact_cpr,
    summarize,
)
from netdiag.report import svg as charts
from netdiag.report.views import (
    capture_stats,
    method_notes,
    slowest_logons,
    tcp_health,
    tcp_totals,
    waterfall_rows,
)
from netdiag.schema import BUDGET_COLUMNS

if TYPE_CHECKING:
    from netdiag.pipeline import Analysis

WATERFALL_LOGONS = 3
SLOWEST_BARS = 10
OPERATION_BARS = 15
MAX_TABLE_ROWS = 500
MIN_BUCKETS = 4              # fewer time periods than this: "over the day" draws every logon instead
SCATTER_MAX_LOGONS = 2000    # ... when there are at most this many (a point each stays readable)


def esc(s: object) -> str:
    """Text for HTML: CPR-shaped numbers redacted, then escaped (quotes too)."""
    return escape(redact_cpr("" if s is None else str(s)), quote=True)


def asset(name: str) -> str:
    """The text of one of the report's inline assets (assets/report.css, assets/report.js)."""
    return (resources.files("netdiag.report") / "assets" / name).read_text(encoding="utf-8")


# A table column: header, how to get the cell from a row dict, kind ("s" seconds, "n" number,
# "t" text, "code" monospace text, "sev" severity, "pct" share).
Col = tuple[str, str | Callable[[dict], Any], str]


def _cell(value: Any, kind: str) -> str:
    if kind == "s":
        v = "" if value is None else repr(float(value))
        return f'<td class="num" data-v="{v}">{esc(fmt_s(value) if value is not None else "")}</td>'
    if kind == "pct":
        return f'<td class="num" data-v="{float(value or 0)!r}">{esc(fmt_pct(float(value or 0)))}</td>'
    if kind in ("n", "i"):   # "i": identifiers and ports, no thousands separator
        v = "" if value is None else str(value)
        shown = f"{value:,}" if isinstance(value, int) and kind == "n" else esc(value)
        return f'<td class="num" data-v="{v}">{shown}</td>'
    if kind == "code":
        return f"<td><code>{esc(value)}</code></td>" if value else "<td></td>"
    if kind == "sev":
        return f'<td class="sev-{esc(value)}" data-v="{SEVERITY_ORDER.get(str(value), 3)}">{esc(value)}</td>'
    return f"<td>{esc(value)}</td>"


def table(cols: Sequence[Col], rows: Sequence[dict], *, name: str, limit: int = MAX_TABLE_ROWS,
          total: int | None = None) -> str:
    """A sortable HTML table; numbers carry data-v so they sort as numbers.

    `total` is the full row count when the caller passed only the first rows.
    """
    head = "".join(f'<th class="{"num" if k in ("s", "n", "i", "pct") else ""}">{esc(h)}</th>' for h, _, k in cols)
    body = []
    for r in rows[:limit]:
        cells = [_cell(get(r) if callable(get) else r.get(get), kind) for _, get, kind in cols]
        body.append("<tr>" + "".join(cells) + "</tr>")
    total = len(rows) if total is None else total
    more = (f'<p class="note">{total - min(limit, len(rows)):,} more rows in tables/ (Parquet).</p>'
            if total > min(limit, len(rows)) else "")
    return (f'<div class="scroll"><table class="sortable" data-table="{esc(name)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{more}")


def figure(svg: str, caption: str) -> str:
    """A chart with its caption (the caption escaped; the SVG is trusted, made by netdiag/report/svg.py)."""
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


# ------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------

def _summary(a: Analysis, s: Summary) -> str:
    out = ['<section id="summary"><h2>Summary</h2>']
    if a.is_sample:
        out.append('<p class="banner">This report was made from the <b>bundled sample capture</b> '
                   "(three lab logons, one with a slow <code>authenticate</code>). Run "
                   "<code>netdiag analyze YOUR.pcapng</code> for your own capture.</p>")
    if s.logons:
        tiles = [(str(s.logons), "logons"), (fmt_s(s.p50_s), "typical logon (median)"),
                 (fmt_s(s.p95_s), "1 in 20 slower than (p95)"), (fmt_s(s.max_s), f"slowest (logon {s.slowest_logon_id})"),
                 (str(s.slow_logons), f"slower than {fmt_s(s.slow_threshold_s)}")]
        out.append('<div class="tiles">' + "".join(f'<div class="tile"><b>{esc(v)}</b><span>{esc(t)}</span></div>'
                                                   for v, t in tiles) + "</div>")
    for i, sentence in enumerate(s.sentences):
        if sentence.startswith("Top findings:") and s.top_findings:
            out.append("<p class=\"lead\">Top findings:</p><ol>" + "".join(
                f'<li><span class="sev-{esc(r["severity"])}">{esc(r["id"])} {esc(r["severity"])}</span>: '
                f'{esc(r["summary"])} <span class="muted">({esc(fmt_s(r["seconds_lost"]))} in '
                f'{r["logons_affected"]} logon{"s" if r["logons_affected"] != 1 else ""})</span></li>'
                for r in s.top_findings) + "</ol>")
        else:
            out.append(f'<p class="{"lead" if i < 3 else ""}">{esc(sentence)}</p>')
    out.append("</section>")
    return "".join(out)


def _findings(a: Analysis) -> str:
    out = ['<section id="findings"><h2>Findings</h2>']
    if a.findings.height == 0:
        out.append("<p>No findings.</p></section>")
        return "".join(out)
    out.append('<p class="note">Each finding names the seconds of logon time it accounts for and Wireshark '
               "display filters that show its evidence (paste one into Wireshark's filter bar): its connections, "
               "its requests and TCP events work in the original capture, in the evidence file and in a merged "
               "capture; the frame numbers only in the original.</p>")
    cols: list[Col] = [("id", "id", "t"), ("severity", "severity", "sev"), ("cause", "cause", "t"),
                       ("time lost", "seconds_lost", "s"), ("logons", "logons_affected", "n"),
                       ("what it means", "summary", "t"), ("next step", "action", "t"),
                       ("how it was measured", "detail", "t"),
                       ("Wireshark filter", "wireshark_filter", "code")]
    out.append(table(cols, a.findings.to_dicts(), name="findings"))
    for r in a.findings.to_dicts():   # the filters that work beyond the original capture, next to the finding
        items = "".join(f"<li>{esc(label)}: <code>{esc(f)}</code></li>" for label, f in filters_of(r))
        out.append(f'<div class="filters" id="filters-{esc(r["id"])}"><p>{esc(r["id"])} ({esc(r["cause"])}) '
                   f"Wireshark filters:</p><ul>{items}</ul></div>")
    for r in a.findings.filter(a.findings["operations"].is_not_null()).to_dicts():   # server time per operation
        out.append(f"<p>{esc(r['id'])} ({esc(r['cause'])}) per operation:</p>" + table(
            [("operation", "operation", "t"), ("calls", "count", "n"), ("total", "total_s", "s"),
             ("p95 of a call", "p95_s", "s"), ("share of logon time", "share", "pct")],
            r["operations"], name=f"findings-{r['id']}-operations"))
    out.append("</section>")
    return "".join(out)


def _distribution(a: Analysis, s: Summary) -> str:
    out = ['<section id="distribution"><h2>How long logons took</h2>']
    if s.logons == 0:
        return out[0] + "<p>No logons.</p></section>"
    svg = charts.duration_histogram(a.logons["duration_s"].to_numpy(), s.p50_s, s.p95_s, s.slow_threshold_s)
    out.append(figure(svg, "Number of logons per duration band. The dashed lines mark the median (half the "
                            "logons were faster), the 95th percentile (1 in 20 were slower) and the profile's "
                            "limit for a slow logon when it falls in range."))
    pct_cols: list[Col] = [("logons", "logons", "n"), ("p50", "p50_s", "s"), ("p90", "p90_s", "s"),
                           ("p95", "p95_s", "s"), ("max", "max_s", "s")]
    groups = a.population.get("per_client_group")
    if groups is not None and groups.height and (groups.height > 1 or groups["client_group"][0] != "(none)"):
        out.append("<h3>By ward or site (the profile's client groups)</h3>")
        out.append(table([("group", "client_group", "t"), *pct_cols], groups.to_dicts(), name="per-client-group"))
    servers = a.population.get("per_server")
    if servers is not None and servers.height > 1:
        out.append("<h3>By bootstrap server</h3>")
        out.append(table([("server", "server_ip", "t"), *pct_cols], servers.to_dicts(), name="per-server"))
    out.append("</section>")
    return "".join(out)


def _over_time(a: Analysis) -> str:
    out = ['<section id="over-time"><h2>Logon time over the day</h2>']
    b = a.population.get("per_time_bucket")
    if b is None or b.height == 0:
        return out[0] + "<p>No logons.</p></section>"
    starts = [int(x) for x in b["bucket_start"].dt.epoch("ns").to_list()]
    period = period_words(a.bucket_s)
    whole = complete_logons(a.logons)
    if b.height < MIN_BUCKETS and whole.height <= SCATTER_MAX_LOGONS:
        # a short capture: one or two periods would be one or two dots, so every logon is drawn instead
        d = whole["duration_s"]
        svg = charts.logons_over_time(whole["start_ts_ns"].to_list(), d.to_list(), percentile(d, 50),
                                      percentile(d, 95))
        out.append(figure(svg, "Each logon at its start time (UTC) and how long it took; the dashed lines are "
                               f"the median and the 95th percentile. The capture spans fewer than {MIN_BUCKETS} "
                               f"{period} periods, so the table below has one row per period."))
    else:
        svg = charts.over_time(starts, [int(x) for x in b["logons"].to_list()], b["p50_s"].to_list(),
                               b["p95_s"].to_list(), a.bucket_s)
        out.append(figure(svg, f"Median and 95th-percentile logon time per {period} period (by logon "
                                "start, UTC), with the number of logons in each period below. A rise in p95 with "
                                "steady counts points at trouble, not load."))
    rows = [{"t": fmt_time(s_, date=True), **r} for s_, r in zip(starts, b.to_dicts(), strict=True)]
    out.append(table([("period start", "t", "t"), ("logons", "logons", "n"), ("p50", "p50_s", "s"),
                      ("p95", "p95_s", "s"), ("max", "max_s", "s")], rows, name="per-time-bucket"))
    out.append("</section>")
    return "".join(out)


def _budget(a: Analysis, s: Summary) -> str:
    out = ['<section id="budget"><h2>Where the time went</h2>']
    if s.logons == 0:
        return out[0] + "<p>No logons.</p></section>"
    bt = a.population["budget"]
    k = int(bt["slowest_logons"][0])
    all_secs = {r["category"]: r["all_logons_s"] for r in bt.to_dicts()}
    slow_secs = {r["category"]: r["slowest_s"] for r in bt.to_dicts()}
    rows = [(f"All {s.logons:,} logons" if s.logons != 1 else "The one logon", all_secs)]
    if k < s.logons:
        rows.append((f"Slowest {k:,} logon{'s' if k != 1 else ''}" + (" (5 %)" if s.logons >= 20 else ""), slow_secs))
    out.append(figure(charts.budget_share_bars(rows),
                       "Share of logon time by what the PC was waiting for. Every second of every logon is "
                       "counted once, so each bar adds up to 100 %."))
    slowest = slowest_logons(a.logons, SLOWEST_BARS)
    ms = needs_ms(slowest["start_ts_ns"].to_list())
    per = [(f"logon {r['logon_id']} at {fmt_time(r['start_ts_ns'], ms=ms)}", r["duration_s"],
            {c: r[c] for c in BUDGET_COLUMNS}) for r in slowest.to_dicts()]
    out.append(f"<h3>The {len(per)} slowest logons, second by second</h3>" if len(per) > 1
               else "<h3>The logon, second by second</h3>")
    out.append(figure(charts.budget_per_logon_bars(per),
                       "Each bar is one logon; its segments are the seconds spent per category (hover for "
                       "exact values)."))
    key = " ".join(f'<span><i class="key" style="background:{CATEGORY_COLOURS[c]}"></i>{esc(CATEGORY_LABELS[c])}</span>'
                   for c in BUDGET_COLUMNS)
    out.append(f'<p class="note">Colours, the same in every chart: {key}</p>')
    trows = [{"what": CATEGORY_LABELS[r["category"]], "col": r["category"], **r} for r in bt.to_dicts()]
    out.append(table([("waiting for", "what", "t"), ("column", "col", "code"), ("all logons", "all_logons_s", "s"),
                      ("share", "all_share", "pct"), (f"slowest {k}", "slowest_s", "s"),
                      ("share of slowest", "slowest_share", "pct")], trows, name="budget"))
    out.append("</section>")
    return "".join(out)


def _waterfalls(a: Analysis) -> str:
    out = ['<section id="waterfall"><h2>The slowest logons step by step</h2>']
    if a.logons.height == 0:
        return out[0] + "<p>No logons.</p></section>"
    out.append('<p class="note">One row per connection the logon used (server address and port), plus the PC\'s '
               "own work between answers. Bars: connect and TLS handshakes, sending requests, the server's own "
               "time (labelled with the operation), network round trips, receiving answers, waiting for resent "
               "packets. Hover over a bar for its exact time.</p>")
    worst = slowest_logons(a.logons, WATERFALL_LOGONS)
    ms = needs_ms(worst["start_ts_ns"].to_list())
    for r in worst.to_dicts():
        rows, start, end = waterfall_rows(a, int(r["logon_id"]))
        if not rows:
            continue
        out.append(f"<h3>Logon {r['logon_id']}: {esc(fmt_s(r['duration_s']))}, started "
                   f"{esc(fmt_time(r['start_ts_ns'], date=True, ms=ms))}, client {esc(r['client_ip'])}, "
                   f"outcome {esc(r['outcome'])}, mostly {esc(cause_label(r['dominant_cause']))}</h3>")
        out.append(figure(charts.waterfall(f"waterfall-{r['logon_id']}", rows, start, end),
                           f"Seconds from the start of logon {r['logon_id']}."))
        out.append(f'<p class="note">Wireshark filter for this logon: <code>{esc(r["wireshark_filter"])}</code></p>')
    out.append("</section>")
    return "".join(out)


def _server_think(a: Analysis) -> str:
    out = ['<section id="server"><h2>Server time per operation</h2>']
    st = a.population.get("server_think_per_operation")
    if st is None or st.height == 0:
        return out[0] + "<p>No requests inside logons.</p></section>"
    top = st.head(OPERATION_BARS).to_dicts()
    items = [(f"{r['operation']}", float(r["total_s"]),
              f"{r['calls']} calls · p95 {fmt_s(r['p95_s'])} · max {fmt_s(r['max_s'])}" if r["calls"] != 1
              else "1 call") for r in top]
    out.append(figure(charts.hbars("server-think", "Server's own time per operation, summed over all logons", items),
                       "The server's own time per operation, summed over all logons (request fully received to "
                       "first answer byte, network round trip removed); the note gives calls, p95 and max per "
                       "call."))
    out.append(table([("protocol", "protocol", "t"), ("operation", "operation", "t"), ("calls", "calls", "n"),
                      ("total", "total_s", "s"), ("p50", "p50_s", "s"), ("p95", "p95_s", "s"), ("max", "max_s", "s")],
                     st.to_dicts(), name="server-think"))
    out.append("</section>")
    return "".join(out)


def _logons(a: Analysis) -> str:
    out = ['<section id="logons"><h2>All logons</h2>']
    if a.logons.height == 0:
        return out[0] + "<p>No logons.</p></section>"
    ms = needs_ms(a.logons["start_ts_ns"].to_list())
    cols: list[Col] = [("logon", "logon_id", "i"), ("start", lambda r: fmt_time(r["start_ts_ns"], ms=ms), "t"),
                       ("client", "client_ip", "t"), ("group", "client_group", "t"), ("duration", "duration_s", "s"),
                       ("outcome", "outcome", "t"), ("mostly", lambda r: cause_label(r["dominant_cause"]), "t"),
                       ("largest waits", largest_waits, "t"),
                       ("connections", "connections", "n"), ("requests", "requests", "n"),
                       ("resends", "retransmissions", "n"), ("split confidence", "separation_confidence", "t")]
    out.append('<p class="note">Start times are UTC' + (", to the millisecond where logons share a second" if ms
                                                         else "") + ". Largest waits: the three biggest categories of "
               "the logon's wait budget (all of them add up to the duration). tables/logons.parquet has every "
               "category as a column, and each logon's Wireshark filter.</p>")
    lg = a.logons
    if lg.height > MAX_TABLE_ROWS:
        out.append(f'<p class="note">The {MAX_TABLE_ROWS} slowest of {lg.height:,} logons.</p>')
        lg = slowest_logons(lg, MAX_TABLE_ROWS)
    out.append(table(cols, lg.to_dicts(), name="logons", total=a.logons.height))
    out.append("</section>")
    return "".join(out)


def _tcp(a: Analysis) -> str:
    out = ['<section id="tcp"><h2>TCP health</h2>']
    t = tcp_totals(a.connections)
    if not t.get("connections"):
        return out[0] + "<p>No TCP connections in the capture.</p></section>"
    out.append("<ul>")
    out.append(f"<li>{t['connections']:,} TCP connections; {t['handshakes']:,} complete handshakes, round trip "
               f"median {esc(fmt_s(t['handshake_rtt_p50_s']))}, worst {esc(fmt_s(t['handshake_rtt_max_s']))}.</li>")
    out.append(f"<li>Connection attempts repeated (SYN retries): {t['syn_retries']:,} in "
               f"{t['connections_with_syn_retries']:,} connections; connections that never got going: "
               f"{t['failed_connects']:,}.</li>")
    out.append(f"<li>Resent segments: {t['retransmissions']:,}, waiting {esc(fmt_s(t['resend_wait_s']))} in all.</li>")
    out.append(f"<li>Receiver's window full (zero window): {t['zero_windows']:,} times, "
               f"{esc(fmt_s(t['zero_window_s']))} in all.</li>")
    out.append(f"<li>Capture loss (data the endpoints saw but the capture missed): {t['capture_gaps']:,} gaps, "
               f"{t['unseen_bytes']:,} bytes.</li>")
    out.append("</ul>")
    h = tcp_health(a.connections)
    out.append(table([("server", "server_ip", "t"), ("port", "server_port", "i"), ("connections", "connections", "n"),
                      ("handshake RTT p50", "handshake_rtt_p50_s", "s"), ("handshake RTT max", "handshake_rtt_max_s", "s"),
                      ("SYN retries", "syn_retries", "n"), ("failed connects", "failed_connects", "n"),
                      ("resent segments", "retransmissions", "n"), ("resend wait", "resend_wait_s", "s"),
                      ("zero windows", "zero_windows", "n"), ("zero window time", "zero_window_s", "s"),
                      ("capture gaps", "capture_gaps", "n"), ("bytes not captured", "unseen_bytes", "n")],
                     h.to_dicts(), name="tcp-health"))
    out.append("</section>")
    return "".join(out)


def _capture(a: Analysis) -> str:
    out = ['<section id="capture"><h2>What was read</h2><table><tbody>']
    for k, v in capture_stats(a):
        out.append(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>")
    out.append("</tbody></table>")
    out.append(f"<h3>Capture warnings ({len(a.warnings)})</h3>")
    if a.warnings:
        out.append('<ul class="warnings">' + "".join(f"<li>{esc(w)}</li>" for w in a.warnings) + "</ul>")
    else:
        out.append("<p>None: every frame could be read.</p>")
    if a.notes:
        out.append("<h3>Notes</h3><ul>" + "".join(f"<li>{esc(n)}</li>" for n in a.notes) + "</ul>")
    out.append("</section>")
    return "".join(out)


def _method(a: Analysis) -> str:
    items = "".join(f"<dt>{esc(t)}</dt><dd>{esc(d)}</dd>" for t, d in method_notes(a))
    return f'<section id="method"><h2>How these figures were computed</h2><dl class="method">{items}</dl></section>'


NAV = (("summary", "Summary"), ("findings", "Findings"), ("distribution", "Durations"), ("over-time", "Over time"),
       ("budget", "Where the time went"), ("waterfall", "Slowest logons"), ("server", "Server time"),
       ("logons", "All logons"), ("tcp", "TCP health"), ("capture", "What was read"), ("method", "Method"))


def render_html(a: Analysis) -> str:
    """The complete report page."""
    from netdiag import __version__

    s = summarize(a)
    files = ", ".join(Path(p).name for p in a.paths)
    made = _dt.datetime.now(tz=_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [_summary(a, s), _findings(a), _distribution(a, s), _over_time(a), _budget(a, s), _waterfalls(a),
             _server_think(a), _logons(a), _tcp(a), _capture(a), _method(a)]
    nav = "".join(f'<a href="#{i}">{esc(t)}</a>' for i, t in NAV)
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>netdiag report: {esc(files)}</title><style>{asset('report.css')}</style></head><body>"
            '<header class="top"><h1>Where the time goes when clinicians log on</h1>'
            f"<p>netdiag {esc(__version__)} report on {esc(files)}, made {esc(made)}. Times of day in UTC."
            "</p></header>"
            f"<nav>{nav}</nav><main>{''.join(parts)}</main>"
            f"<script>{asset('report.js')}</script></body></html>\n")
