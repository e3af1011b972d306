"""report.md: the report's findings as plain Markdown text, for pasting into a support case.

Same facts and words as report.html (both come from netdiag.report.summarize and
netdiag.report.views), without charts: the summary, findings with their Wireshark filters,
duration percentiles, the wait budget, the slowest logons, server time per operation, TCP
health, what was read, and the method. Addresses appear as in the capture; the vendor case
bundle sanitises what it ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netdiag.filters import filters_of
from netdiag.report import (
    CATEGORY_LABELS,
    fmt_pct,
    fmt_s,
    fmt_time,
    needs_ms,
    period_words,
    redact_cpr,
    summarize,
)
from netdiag.report.views import capture_stats, method_notes, slowest_logons, tcp_totals
from netdiag.schema import BUDGET_COLUMNS

if TYPE_CHECKING:
    from netdiag.pipeline import Analysis

SLOWEST_ROWS = 10
OPERATION_ROWS = 15


def _md(s: Any) -> str:
    return str("" if s is None else s).replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> list[str]:
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"]
    out += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
    return out + [""]


def render_markdown(a: Analysis) -> str:
    """The whole report.md text."""
    s = summarize(a)
    files = ", ".join(Path(p).name for p in a.paths)
    L: list[str] = [f"# netdiag report: {files}", ""]
    if a.is_sample:
        L += ["*Made from the bundled sample capture (three lab logons).*", ""]
    L += ["## Summary", ""]
    L += [f"- Logons: {s.logons}"]
    if s.logons:
        L += [f"- Median (p50) logon time: {fmt_s(s.p50_s)}",
              f"- p95 logon time: {fmt_s(s.p95_s)}",
              f"- Slowest logon: {fmt_s(s.max_s)} (logon {s.slowest_logon_id})",
              f"- Logons slower than {fmt_s(s.slow_threshold_s)}: {s.slow_logons}"]
    L += [""] + [x for sentence in s.sentences if not sentence.startswith("Top findings:")
                 for x in (sentence, "")]

    L += ["## Findings", ""]
    if a.findings.height == 0:
        L += ["No findings.", ""]
    for r in a.findings.to_dicts():
        L += [f"### {r['id']} ({r['severity']}): {r['cause']}, {fmt_s(r['seconds_lost'])} lost in "
              f"{r['logons_affected']} logon{'s' if r['logons_affected'] != 1 else ''}", "",
              r["summary"], "", f"How it was measured: {r['detail']}", "",
              f"Next step: {r['action']}", ""]
        if r.get("operations"):   # a cause measured per operation (server time): its table
            L += _table(["operation", "calls", "total", "p95 of a call", "share of logon time"],
                        [(o["operation"], o["count"], fmt_s(o["total_s"]), fmt_s(o["p95_s"]),
                          fmt_pct(o["share"])) for o in r["operations"]], right=(1, 2, 3, 4))
        L += ["Wireshark filters:", ""] + [f"- {label}: `{f}`" for label, f in filters_of(r)] + [""]

    if s.logons:
        L += ["## Where the time went", ""]
        bt = a.population["budget"]
        k = int(bt["slowest_logons"][0])
        L += _table(["waiting for", "all logons", "share", f"slowest {k}", "share"],
                    [(CATEGORY_LABELS[r["category"]], fmt_s(r["all_logons_s"]), fmt_pct(r["all_share"]),
                      fmt_s(r["slowest_s"]), fmt_pct(r["slowest_share"])) for r in bt.to_dicts()],
                    right=(1, 2, 3, 4))
        L += ["## Slowest logons", ""]
        slow = slowest_logons(a.logons, SLOWEST_ROWS)
        ms = needs_ms(slow["start_ts_ns"].to_list())
        rows = []
        for r in slow.to_dicts():
            top = sorted(((c, r[c]) for c in BUDGET_COLUMNS), key=lambda t: -t[1])[:3]
            rows.append((r["logon_id"], fmt_time(r["start_ts_ns"], date=True, ms=ms), r["client_ip"], fmt_s(r["duration_s"]),
                         r["outcome"], "; ".join(f"{CATEGORY_LABELS[c]} {fmt_s(v)}" for c, v in top if v > 0),
                         f"`{r['wireshark_filter']}`"))
        L += _table(["logon", "start", "client", "duration", "outcome", "largest waits", "Wireshark filter"], rows,
                    right=(0, 3))

        pct_head = ["logons", "p50", "p90", "p95", "max"]

        def pct_row(r: dict) -> list:
            return [r["logons"], *(fmt_s(r[k]) for k in ("p50_s", "p90_s", "p95_s", "max_s"))]

        groups = a.population.get("per_client_group")
        if groups is not None and groups.height and (groups.height > 1 or groups["client_group"][0] != "(none)"):
            L += ["## By ward or site", ""]
            L += _table(["group", *pct_head], [[r["client_group"], *pct_row(r)] for r in groups.to_dicts()],
                        right=(1, 2, 3, 4, 5))
        servers = a.population.get("per_server")
        if servers is not None and servers.height > 1:
            L += ["## By bootstrap server", ""]
            L += _table(["server", *pct_head], [[r["server_ip"], *pct_row(r)] for r in servers.to_dicts()],
                        right=(1, 2, 3, 4, 5))

        ov = a.population.get("per_time_bucket")
        if ov is not None and ov.height:
            period = period_words(a.bucket_s)
            L += [f"## Logon time over the day ({period} periods, UTC)", ""]
            L += _table(["period start", "logons", "p50", "p95", "max"],
                        [(str(r["bucket_start"])[:16], r["logons"], fmt_s(r["p50_s"]),
                          fmt_s(r["p95_s"]), fmt_s(r["max_s"])) for r in ov.to_dicts()],
                        right=(1, 2, 3, 4))

        st = a.population.get("server_think_per_operation")
        if st is not None and st.height:
            L += ["## Server time per operation", ""]
            L += _table(["protocol", "operation", "calls", "total", "p50", "p95", "max"],
                        [(r["protocol"], r["operation"], r["calls"], fmt_s(r["total_s"]),
                          fmt_s(r["p50_s"]), fmt_s(r["p95_s"]), fmt_s(r["max_s"]))
                         for r in st.head(OPERATION_ROWS).to_dicts()], right=(2, 3, 4, 5, 6))

    L += ["## TCP health", ""]
    t = tcp_totals(a.connections)
    if t.get("connections"):
        L += [f"- TCP connections: {t['connections']} ({t['handshakes']} complete handshakes, round trip median "
              f"{fmt_s(t['handshake_rtt_p50_s'])}, worst {fmt_s(t['handshake_rtt_max_s'])})",
              f"- SYN retries: {t['syn_retries']} in {t['connections_with_syn_retries']} connections; failed "
              f"connects: {t['failed_connects']}",
              f"- Resent segments: {t['retransmissions']} ({fmt_s(t['resend_wait_s'])} waiting)",
              f"- Zero windows: {t['zero_windows']} ({fmt_s(t['zero_window_s'])})",
              f"- Capture loss: {t['capture_gaps']:,} gaps, {t['unseen_bytes']:,} bytes not captured", ""]
    else:
        L += ["No TCP connections in the capture.", ""]

    L += ["## What was read", ""]
    L += [f"- {k}: {v}" for k, v in capture_stats(a)]
    L += ["", f"Capture warnings: {len(a.warnings)}", ""]
    L += [f"- {w}" for w in a.warnings[:50]]
    if len(a.warnings) > 50:
        L += [f"- ... {len(a.warnings) - 50} more"]
    if a.notes:
        L += ["", "Notes:", ""] + [f"- {n}" for n in a.notes]
    L += ["", "## Method", ""]
    for title, text in method_notes(a):
        L += [f"**{title}.** {text}", ""]
    # no float reprs or long digit runs are written here, so the whole text can be redacted
    return redact_cpr("\n".join(L).rstrip() + "\n")
