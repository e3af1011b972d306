"""The case bundle's README.md: for the vendor engineer, how to check each number in Wireshark.

Why: a support engineer at IBM or the EPJ supplier trusts a figure they can reproduce. For each
finding with an evidence file the README names the file, the display filter to apply there,
and the column or Statistics menu that shows the number (Wireshark 4.0 field names). The texts
per cause live here, next to the README they are written into; the causes' own texts (summary,
detail, next step) stay in netdiag/logons/causes/.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from netdiag.filters import filters_of
from netdiag.words import fmt_s

# How to see a cause's number in Wireshark, once the finding's filter is applied.
CHECKS: dict[str, str] = {
    "server_think": (
        "apply its requests-and-answers filter; add the column `frame.time_delta_displayed` (Edit > Preferences > "
        "Columns, or right-click a field > Apply as Column): on each reply it is the wait since its request, i.e. "
        "server think plus one round trip from the capture point to the server (netdiag takes that round trip off: "
        "it is the time from the connection's SYN to its SYN/ACK, `frame.time_delta_displayed` on the SYN/ACK with "
        "the filter `tcp.flags.syn==1` and the connection's ports). `giop.request_op` on the request names the operation; the per-operation table in report.html "
        "sums these waits."),
    "dns_delay": (
        "apply its requests-and-answers filter; the column `dns.time` on each answer is Wireshark's query-to-answer "
        "time; a query without an answer has none (`dns.retransmission` marks the client's repeats)."),
    "syn_retransmission": (
        "apply its TCP-events filter (the SYNs); `frame.time_delta_displayed` between the SYNs is the client's "
        "retransmission timeout (1 s, then 2 s ... on Windows and Linux); Edit > Set Time Reference on the first "
        "SYN and read `frame.time_relative` on the SYN/ACK for the whole connect time."),
    "listen_backlog": (
        "apply its TCP-events filter (SYNs and SYN/ACKs); repeated SYNs before the SYN/ACK, or repeated SYN/ACKs, "
        "show the server's listen queue; `frame.time_delta_displayed` gives each wait."),
    "connect_failure": (
        "apply its TCP-events filter: SYNs answered by RST or by nothing; Analyze > Expert Information lists them."),
    "network_latency": (
        "apply its TCP-events filter (the handshakes); the column `tcp.analysis.initial_rtt` (on the client's ACK) is "
        "the round trip per connection; Statistics > Conversations > TCP with \"Limit to display filter\" gives the "
        "connections' durations."),
    "loss_recovery": (
        "apply its TCP-events filter; Analyze > Expert Information lists the retransmissions; the column "
        "`tcp.analysis.rto` on a resend is the time since the lost original (a resend whose first copy was lost "
        "before the capture point has no mark: `tcp.time_delta` shows the pause before it). The finding's seconds "
        "are these waits, each instant counted once; Statistics > TCP Stream Graphs > Stevens shows them."),
    "zero_window": (
        "apply its TCP-events filter; Analyze > Expert Information lists Zero Window and Window Update; from the "
        "first zero window (`tcp.window_size` 0) to the window update is the stall (Edit > Set Time Reference on the "
        "first); Statistics > TCP Stream Graphs > Window Scaling draws it."),
    "capture_loss": (
        "apply its TCP-events filter; Analyze > Expert Information: \"ACKed segment that wasn't captured\" "
        "(`tcp.analysis.ack_lost_segment`) and \"Previous segment(s) not captured\": the recording missed these "
        "bytes, the network did not."),
    "nagle_delayed_ack": (
        "apply its TCP-events filter; a small segment waits for the ACK of the one before it: the column "
        "`tcp.analysis.ack_rtt` on that ACK is the receiver's delayed-ACK timer (about 40 ms on Linux, 200 ms on "
        "Windows), and `frame.time_delta_displayed` on the held segment the stall."),
    "idle_connection_dropped": (
        "apply its TCP-events filter: the RST or FIN after the idle time (`tcp.time_delta` on it) and the new "
        "connection that follows."),
    "request_timeout_retry": (
        "apply its requests-and-answers filter: the same `giop.request_op` sent again before its answer came; "
        "`frame.time_delta_displayed` between the two requests is the client's timeout."),
    "system_exception": (
        "apply its requests-and-answers filter; the columns `giop.replystatus` and `giop.exceptionid` on the reply "
        "name the exception; `frame.time_delta_displayed` on the reply is the time it cost."),
    "location_forward": (
        "apply its requests-and-answers filter; `giop.replystatus` LOCATION_FORWARD on the reply, then the new "
        "connection to the forwarded server (its connections filter shows both)."),
    "tls_handshake": (
        "apply its requests-and-answers filter (the handshake); Edit > Set Time Reference on the Client Hello "
        "(`tls.handshake.type` 1) and read `frame.time_relative` on the last handshake frame."),
    "jar_download": (
        "apply its requests-and-answers filter; the column `http.time` on each answer is request to answer; "
        "Statistics > HTTP > Request Sequences lists the downloads, Statistics > Conversations their bytes."),
    "client_think": (
        "apply its connections filter; the gaps between an answer and the client's next request "
        "(`frame.time_delta_displayed`) are the PC's own time."),
}
GENERIC_CHECK = ("apply its connections filter; Statistics > Conversations with \"Limit to display filter\" gives "
                 "each connection's duration and bytes, Analyze > Expert Information its TCP events.")


def _utc(ts_ns: int | None) -> str:
    if ts_ns is None:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ns / 1e9)) + f".{(ts_ns // 1_000_000) % 1000:03d} UTC"


def render_readme(a: Any, excerpts: list[dict[str, Any]], *, sanitized: bool, version: str, command: str,
                  profile_note: str, question: bool) -> str:
    """README.md of the bundle (addresses still real: the caller maps the text when sanitising)."""
    cp = getattr(a, "capture_point", None)
    lines = [
        "# netdiag case bundle", "",
        "Made by netdiag from packet captures of clinicians' logons to the electronic patient record "
        "(IBM WebSphere, IIOP/GIOP, HTTP, TLS, DNS). Start with `report.html` (or `report.md`); "
        + ("the hospital's question is in `question.md`; " if question else "")
        + "open the `evidence/` files in Wireshark (4.0 or later).", "",
        "## What was captured where", "",
        f"- capture file(s): {', '.join(Path(p).name for p in a.paths)}",
        f"- time span: {_utc(getattr(a, 'first_ts_ns', None))} to {_utc(getattr(a, 'last_ts_ns', None))}",
        f"- logons found: {a.logons.height}; findings: {a.findings.height}",
    ]
    if cp is not None:
        lines.append(f"- capture point: {cp.where} ({cp.how})")
    lines += ["", "## How this bundle was made", "",
              f"- netdiag {version}",
              f"- command: `{command}`",
              f"- site profile: `profile.toml` ({profile_note})", ""]
    lines += ["## Files", "", "| file | what it shows |", "|---|---|",
              "| `report.html` | the analysis: how slow the logons were, where the time went, each finding with its "
              "next step and Wireshark filters (open in any browser, works offline) |",
              "| `report.md` | the same findings as text |",
              "| `findings.json` | the findings table (netdiag schema `findings`): cause, seconds lost, affected "
              "logons, evidence frame numbers in the original capture, the display filters |",
              "| `profile.toml` | the site profile the analysis used |"]
    if question:
        lines.append("| `question.md` | the hospital's question |")
    for e in excerpts:
        r = e["row"]
        if e["file"] is None:
            lines.append(f"| (no evidence file for {r['id']}) | {r['summary']} ({e['why']}) |")
            continue
        lines.append(f"| `evidence/{e['file'].name}` | {r['id']} ({r['cause']}, {r['severity']}): {e['frames']} "
                     f"frames from {_utc(e['start'])}, {e['logons']} |")
    lines += ["", "## Checking each finding in Wireshark", "",
              "Open the finding's evidence file and paste a filter into the display filter bar. Every frame netdiag "
              "points at carries a packet comment starting with the finding's id (`[F001] ...`, then the frame's "
              "number in the original capture and what it shows); other comments explain frames around it. "
              "The connections, requests and TCP-events filters work in the evidence file and in the original "
              "capture alike; the frame numbers only in the original. Timestamps are the original ones to the "
              "nanosecond (View > Time Display Format > UTC Date and Time of Day).", ""]
    if not excerpts:
        lines += ["No finding of warning severity or above, and none asked for with `--top`: no evidence files.", ""]
    for e in excerpts:
        r = e["row"]
        lines += [f"### {r['id']} {r['cause']} ({r['severity']}): {fmt_s(r['seconds_lost'])} in "
                  f"{r['logons_affected']} logon(s)", "", r["summary"], ""]
        if e["file"] is not None:
            lines.append(f"- file: `evidence/{e['file'].name}` ({e['logons']})")
        for label, f in filters_of(r):
            lines.append(f"- {label}: `{f}`")
        lines += [f"- to check the number: {CHECKS.get(r['cause'], GENERIC_CHECK)}",
                  f"- next step: {r['action']}", ""]
    if sanitized:
        lines += ["## What was removed (sanitised)", "",
                  "- IPv4/IPv6 addresses are mapped with Crypto-PAn (prefix-preserving, keyed; the key stays "
                  "with the hospital) in every file of the bundle: addresses in the text files, the filters and "
                  "the captures match each other, and hosts in the same subnet still share a prefix. MAC "
                  "addresses are keyed pseudonyms.",
                  "- Ports, timestamps, TCP sequence numbers, windows and options, and all frame and payload "
                  "lengths are exactly as captured; checksums are recomputed.",
                  "- Payload is zero-filled except protocol metadata: GIOP headers, request ids, operation "
                  "names, reply status and exception ids; HTTP request/status lines and non-sensitive "
                  "headers; TLS handshake metadata (versions, cipher suites, SNI); DNS names and answers "
                  "(mapped). CPR numbers are redacted wherever text is kept.", ""]
    else:
        lines += ["## NOT sanitised", "",
                  "This bundle was written with --no-sanitize: it holds real addresses and payload. Do not send "
                  "it outside the hospital.", ""]
    return "\n".join(lines)


__all__ = ["CHECKS", "GENERIC_CHECK", "render_readme"]
