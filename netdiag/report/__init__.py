"""The report: what `netdiag analyze` tells people, as HTML (html.py) and Markdown (markdown.py).

Rendering only: every number comes from the `netdiag.analyze.Analysis` tables and views; this
package computes no network figure of its own except simple order statistics over those tables
(percentiles with numpy's linear rule, as netdiag.logons.population). Both renderers share the
facts below so the HTML and the Markdown say the same thing in the same words.

Durations are shown by netdiag.words.fmt_s in the unit that reads best ("38 µs", "12.4 ms", "2.40 s"),
shares as percentages ("33.5 %"), times of day in UTC.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from netdiag.logons.population import percentile
from netdiag.schema import BUDGET_COLUMNS
from netdiag.words import CATEGORY_LABELS, SHORT_LABELS, fmt_pct, fmt_s

if TYPE_CHECKING:
    from netdiag.pipeline import Analysis




# One colour per category, the same in every chart (Okabe-Ito based, colour-blind safe-ish).
CATEGORY_COLOURS: dict[str, str] = {
    "dns_s": "#56B4E9", "connect_s": "#0072B2", "tls_s": "#009E73", "network_rtt_s": "#999999",
    "request_transfer_s": "#CC79A7", "server_s": "#E69F00", "response_transfer_s": "#F0E442",
    "loss_recovery_s": "#D55E00", "flow_control_s": "#8B0000", "nagle_delayed_ack_s": "#6A3D9A",
    "client_s": "#7FB8A4", "unexplained_s": "#DDDDDD",
}
assert set(CATEGORY_LABELS) == set(BUDGET_COLUMNS) == set(CATEGORY_COLOURS) == set(SHORT_LABELS)

# Plain words for finding causes / dominant causes (netdiag.logons.budget.CAUSES).
CAUSE_LABELS: dict[str, str] = {
    "unexplained": "unexplained time", "client_think": "the PC's own work", "network_latency": "network round trips",
    "transfer": "data transfer", "server_think": "server processing", "dns": "DNS lookups", "dns_delay": "slow DNS",
    "tls": "TLS handshakes", "tls_handshake": "slow TLS handshakes", "connect": "TCP connects",
    "syn_retransmission": "repeated connection attempts (SYN retries)", "connect_failure": "failed connections",
    "listen_backlog": "server not accepting connections (listen backlog)",
    "nagle_delayed_ack": "Nagle / delayed-ACK stalls", "zero_window": "receiver not keeping up (zero window)",
    "loss_recovery": "resent packets (packet loss)", "idle_connection_dropped": "idle connection dropped (firewall)",
    "request_timeout_retry": "request timed out and retried", "system_exception": "server errors (exceptions)",
    "location_forward": "redirects between servers (LOCATION_FORWARD)", "jar_download": "jar files downloaded again",
    "capture_loss": "capture loss",
}


def cause_label(cause: str | None) -> str:
    """A finding cause in plain words (the code itself when unknown)."""
    if not cause:
        return "n/a"
    return CAUSE_LABELS.get(cause, cause.replace("_", " "))


SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
TOP_FINDINGS = 3


_CPR_TEXT_RE: re.Pattern[str] | None = None


def redact_cpr(text: str) -> str:
    """CPR-shaped numbers (DDMMYY-NNNN, DDMMYYNNNN) in report text -> 'X' digits.

    Operation names (HTTP paths, GIOP operations) and finding summaries come from the capture and
    may carry a patient's CPR number; the report never needs one. Same pattern as
    netdiag.sanitize.CPR_RE (used by `netdiag sanitize`), applied to text.
    """
    global _CPR_TEXT_RE
    if _CPR_TEXT_RE is None:
        from netdiag.sanitize import CPR_RE

        _CPR_TEXT_RE = re.compile(CPR_RE.pattern.decode("ascii"))
    return _CPR_TEXT_RE.sub(lambda m: re.sub(r"[0-9]", "X", m.group(0)), text)


def fmt_time(ts_ns: int | None, *, date: bool = False, ms: bool = False) -> str:
    """A timestamp as UTC time of day (with the date when asked; to the millisecond with `ms`)."""
    if ts_ns is None:
        return "n/a"
    t = _dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=_dt.UTC)
    text = t.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    if ms:
        text += f".{ts_ns // 1_000_000 % 1000:03d}"
    return text + (" UTC" if date else "")


def needs_ms(ts_ns: list[int | None]) -> bool:
    """Whether times of day to the second would show two different instants alike (ten logons all "07:18:00")."""
    known = [t for t in ts_ns if t is not None]
    return len({t // 1_000_000_000 for t in known}) < len({t // 1_000_000 for t in known})


def largest_waits(logon: dict, n: int = 3) -> str:
    """A logon's `n` biggest wait-budget categories in words: "server 2.00 s; PC 310 ms; network 12.4 ms"."""
    top = sorted(((c, logon.get(c) or 0.0) for c in BUDGET_COLUMNS), key=lambda t: -t[1])[:n]
    return "; ".join(f"{SHORT_LABELS[c]} {fmt_s(v)}" for c, v in top if v > 5e-7)


def period_words(bucket_s: int) -> str:
    """A time-bucket size as an adjective: '5-minute', '1-hour', '1-day'."""
    if bucket_s < 3600:
        return f"{bucket_s // 60}-minute"
    if bucket_s < 86400:
        return f"{bucket_s // 3600}-hour"
    return f"{bucket_s // 86400}-day"


@dataclass
class Summary:
    """The headline facts, shared by report.html, report.md and the CLI's closing lines."""

    logons: int
    clients: int
    completed: int
    failed: int
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    slowest_logon_id: int | None
    slow_threshold_s: float
    slow_logons: int
    budget_share: list[tuple[str, float, float]]      # (category, seconds, share) largest first
    top_findings: list[dict] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    incomplete: int = 0          # logons cut by the capture's start or end: not in the figures


def summarize(a: Analysis) -> Summary:
    """Headline numbers and the plain-words summary sentences."""
    n = a.logons.height
    incomplete = int((a.logons["outcome"] == "incomplete").sum()) if n else 0
    # durations, shares and counts describe the logons the capture saw whole
    lg = a.logons.filter(pl.col("outcome") != "incomplete") if incomplete else a.logons
    thr = a.profile.thresholds.slow_logon_s
    if lg.height:
        d = lg["duration_s"]
        p50, p95, mx = percentile(d, 50), percentile(d, 95), float(d.max())
        slowest = int(lg.sort("duration_s", descending=True)["logon_id"][0])
        totals = {c: float(lg[c].sum()) for c in BUDGET_COLUMNS}
        total = sum(totals.values())
        share = sorted(((c, s, s / total if total else 0.0) for c, s in totals.items()), key=lambda t: -t[1])
        completed = int((lg["outcome"] == "completed").sum())
        failed = int((lg["outcome"] == "failed").sum())
        clients = a.logons["client_ip"].n_unique()
        slow = int((d > thr).sum())
    else:
        p50 = p95 = mx = None
        slowest = None
        share = []
        completed = failed = slow = 0
        clients = a.logons["client_ip"].n_unique() if n else 0
    f = a.findings
    top: list[dict] = []
    if f.height:
        ranked = f.with_columns(_sev=pl.col("severity").replace_strict(SEVERITY_ORDER, default=3)).sort(
            ["_sev", "seconds_lost"], descending=[False, True])
        top = ranked.drop("_sev").head(TOP_FINDINGS).to_dicts()
    s = Summary(n, clients, completed, failed, p50, p95, mx, slowest, thr, slow, share, top, incomplete=incomplete)
    s.sentences = _sentences(a, s)
    return s


def _sentences(a: Analysis, s: Summary) -> list[str]:
    files = ", ".join(Path(p).name for p in a.paths)
    if s.logons == 0:
        why = (a.no_logons_reason or "").removeprefix("no logons: ")
        out = [f"No logons were found in {files}" + (f": {why}." if why else "."),
               "The TCP health section below still describes every connection in the capture."]
        if s.top_findings:   # connection-level causes (Nagle, zero window, resends...) need no logon
            out.append("Top findings: " + " ".join(f"{r['id']} ({r['severity']}): {r['summary']}"
                                                   for r in s.top_findings))
        return out
    when = ""
    if a.logons.height:
        t0 = int(a.logons["start_ts_ns"].min())
        t1 = int(a.logons["end_ts_ns"].max())
        when = f" between {fmt_time(t0, date=True)} and {fmt_time(t1)}"
    out = [f"{s.logons} logon{'s' if s.logons != 1 else ''} from {s.clients} PC{'s' if s.clients != 1 else ''}"
           f"{when} ({s.completed} completed, {s.failed} failed, "
           f"{s.logons - s.completed - s.failed - s.incomplete} abandoned"
           + (f", {s.incomplete} incomplete: cut by the start or end of the capture, left out of the figures below"
              if s.incomplete else "") + ")."]
    if s.incomplete == s.logons:
        return [*out, "No logon was seen whole, so there are no duration figures: capture for longer."]
    out.append(f"A typical logon (the median, p50) took {fmt_s(s.p50_s)}; 1 in 20 took longer than "
               f"{fmt_s(s.p95_s)} (p95); the slowest took {fmt_s(s.max_s)} (logon {s.slowest_logon_id}). "
               f"{s.slow_logons} logon{'s' if s.slow_logons != 1 else ''} took longer than "
               f"{fmt_s(s.slow_threshold_s)}, the profile's limit for a slow logon.")
    big = [(c, sec, sh) for c, sec, sh in s.budget_share if sh >= 0.05][:3] or s.budget_share[:1]
    parts = [f"{CATEGORY_LABELS[c]} {fmt_pct(sh)} ({fmt_s(sec)})" for c, sec, sh in big]
    out.append("Where the time went, over all logons: " + "; ".join(parts) + ".")
    if s.top_findings:
        out.append("Top findings: " + " ".join(f"{r['id']} ({r['severity']}): {r['summary']}"
                                               for r in s.top_findings))
    return out


__all__ = ["CATEGORY_COLOURS", "largest_waits", "needs_ms", "CATEGORY_LABELS", "CAUSE_LABELS", "cause_label", "SHORT_LABELS", "Summary", "fmt_pct", "fmt_s", "fmt_time",
           "period_words", "redact_cpr", "summarize"]
