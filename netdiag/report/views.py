"""Report views derived from the Analysis tables: TCP health, capture statistics, waterfall rows, method notes.

Pure functions over polars tables (no I/O). TCP health sums the connections table's columns,
whose judgements follow Wireshark 4.0's tcp.analysis.* fields (netdiag/tcp); the waterfall
draws the logon budget's own timeline intervals (netdiag/logons/budget.py), so what the chart
shows is exactly what the wait budget counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from netdiag.report import fmt_s, period_words

if TYPE_CHECKING:
    from netdiag.pipeline import Analysis

FAILED_CONNECT_STATES = ("S0", "REJ", "RSTOS0", "SH", "SHR")


def _handshake_rtt_s() -> pl.Expr:
    return ((pl.col("rtt_server_side_ms") + pl.col("rtt_client_side_ms")) / 1000.0).alias("handshake_rtt_s")


# the connections columns the TCP health views read
_HEALTH_COLUMNS = ("rtt_server_side_ms", "rtt_client_side_ms", "syn_retransmissions", "state", "retransmitted_segments",
                   "retransmission_stall_s", "zero_window_events", "zero_window_s", "unseen_gaps", "unseen_bytes")


def _tcp_rows(connections: pl.DataFrame, extra: tuple[str, ...] = ()) -> pl.DataFrame:
    """The TCP connections' rows, only the columns the views read (a filter copies what it
    keeps: the whole table is ~300 B a connection)."""
    if connections.height == 0:
        return connections
    return connections.select(*extra, *_HEALTH_COLUMNS, "transport").filter(pl.col("transport") == "tcp")


def slowest_logons(logons: pl.DataFrame, n: int) -> pl.DataFrame:
    """The n slowest logons, in the order `logons.sort("duration_s", descending=True).head(n)`
    gives, without sorting (copying) every column of every logon first."""
    return logons[logons["duration_s"].arg_sort(descending=True)[:n]]


def tcp_health(connections: pl.DataFrame) -> pl.DataFrame:
    """Per server endpoint (address, port): handshakes, SYN retries, resends, zero windows, capture loss."""
    tcp = _tcp_rows(connections, ("server_ip", "server_port"))
    if tcp.height == 0:
        return pl.DataFrame()
    t = tcp.with_columns(_handshake_rtt_s())
    return (t.group_by("server_ip", "server_port")
            .agg(pl.len().alias("connections"),
                 pl.col("handshake_rtt_s").median().alias("handshake_rtt_p50_s"),
                 pl.col("handshake_rtt_s").max().alias("handshake_rtt_max_s"),
                 pl.col("syn_retransmissions").cast(pl.Int64).sum().alias("syn_retries"),
                 pl.col("state").is_in(list(FAILED_CONNECT_STATES)).sum().alias("failed_connects"),
                 pl.col("retransmitted_segments").cast(pl.Int64).sum().alias("retransmissions"),
                 pl.col("retransmission_stall_s").fill_null(0).sum().alias("resend_wait_s"),
                 pl.col("zero_window_events").cast(pl.Int64).sum().alias("zero_windows"),
                 pl.col("zero_window_s").fill_null(0).sum().alias("zero_window_s"),
                 pl.col("unseen_gaps").cast(pl.Int64).sum().alias("capture_gaps"),
                 pl.col("unseen_bytes").cast(pl.Int64).sum().alias("unseen_bytes"))
            .sort("connections", "server_ip", "server_port", descending=[True, False, False]))


def tcp_totals(connections: pl.DataFrame) -> dict[str, float | int | None]:
    """Capture-wide TCP health numbers (all TCP connections)."""
    tcp = _tcp_rows(connections)
    if tcp.height == 0:
        return {"connections": 0}
    rtt = tcp.select(_handshake_rtt_s())["handshake_rtt_s"].drop_nulls()
    return {
        "connections": tcp.height,
        "handshakes": rtt.len(),
        "handshake_rtt_p50_s": float(rtt.median()) if rtt.len() else None,
        "handshake_rtt_max_s": float(rtt.max()) if rtt.len() else None,
        "syn_retries": int(tcp["syn_retransmissions"].cast(pl.Int64).sum()),
        "connections_with_syn_retries": int((tcp["syn_retransmissions"] > 0).sum()),
        "failed_connects": int(tcp["state"].is_in(list(FAILED_CONNECT_STATES)).sum()),
        "retransmissions": int(tcp["retransmitted_segments"].cast(pl.Int64).sum()),
        "resend_wait_s": float(tcp["retransmission_stall_s"].fill_null(0).sum()),
        "zero_windows": int(tcp["zero_window_events"].cast(pl.Int64).sum()),
        "zero_window_s": float(tcp["zero_window_s"].fill_null(0).sum()),
        "capture_gaps": int(tcp["unseen_gaps"].cast(pl.Int64).sum()),
        "unseen_bytes": int(tcp["unseen_bytes"].cast(pl.Int64).sum()),
    }


def capture_stats(a: Analysis) -> list[tuple[str, str]]:
    """What was read: files, frames, duplicates removed, cut frames, messages, stream gaps."""
    rs, ss = a.read_stats, a.stream_stats
    rows: list[tuple[str, str]] = []
    if rs is not None:
        names = [p.rsplit("/", 1)[-1] for p in rs.files] or [p.rsplit("/", 1)[-1] for p in a.paths]
        rows.append(("capture files", ", ".join(names)))
        rows.append(("frames read", f"{rs.packets_read:,}"))
        per_file = ", ".join(f"{n}: {d:,}" for n, d in zip(names, rs.duplicates_per_file, strict=False))
        rows.append(("duplicate frames removed (SPAN copies seen twice within "
                     f"{fmt_s(rs.dedup_window_ns / 1e9)})", f"{rs.duplicates_removed:,}"
                     + (f" ({per_file})" if len(names) > 1 else "")))
        rows.append(("frames cut short by the capture's snaplen", f"{rs.snaplen_cut_frames:,}"))
        rows.append(("frames without IP (ARP, spanning tree, ...)", f"{rs.non_ip_frames:,}"))
        rows.append(("bytes read", f"{rs.bytes_read:,}"))
    if a.first_ts_ns is not None and a.last_ts_ns is not None:
        from netdiag.report import fmt_time

        rows.append(("traffic from / to", f"{fmt_time(a.first_ts_ns, date=True)} / {fmt_time(a.last_ts_ns, date=True)}"))
    if a.connections.height:
        n_tcp = int((a.connections["transport"] == "tcp").sum())
        rows.append(("TCP connections / UDP flows", f"{n_tcp:,} / {a.connections.height - n_tcp:,}"))
    if ss is not None:
        by = ", ".join(f"{k} {v:,}" for k, v in sorted(ss.by_protocol.items())) or "none"
        rows.append(("protocol messages parsed", f"{ss.messages:,} ({by})"))
        rows.append(("messages that could not be fully decoded", f"{ss.malformed_messages:,}"))
        rows.append(("holes in TCP streams the capture never filled (capture loss)",
                     f"{ss.gaps:,} ({ss.gap_bytes:,} bytes)"))
        rows.append(("answers without a request in the capture", f"{ss.unmatched_responses:,}"))
    rows.append(("transactions (request + answer)", f"{a.transactions.height:,}"))
    return rows


def method_notes(a: Analysis) -> list[tuple[str, str]]:
    """How each figure is computed and what limits it, in plain words (title, text)."""
    p = a.profile
    cp = a.capture_point
    end_rule = []
    if p.end_operation is not None:
        end_rule.append(f"the reply to an operation matching '{p.end_operation.pattern}'")
    if p.end_url is not None:
        end_rule.append(f"the answer to a URL matching '{p.end_url.pattern}'")
    quiet = f"the last answer before {fmt_s(p.end_quiet_s)} of silence from that PC process"
    end_rule.append(f"otherwise {quiet}" if end_rule else quiet)
    bucket = period_words(a.bucket_s)
    return [
        ("Capture point", f"Where the capture was taken: {cp.where}. {cp.how[0].upper() + cp.how[1:]}. "
         "Times are placed on the PC's clock using half of each connection's handshake round trip on either "
         "side of the capture point, so the figures mean the same wherever the capture was taken."),
        ("What a logon is", "The chain of connections one PC process opens: its DNS lookups, the Java Web Start "
         "(.jnlp and jar) downloads up to "
         f"{fmt_s(p.lead_in_s)} before it, its connection to a bootstrap (naming) port that starts the logon "
         f"(profile start rule: {p.start_rule}), and the connections the naming service's answers point to. "
         "Several PCs or users behind one address are kept apart. The logon ends at "
         + "; ".join(end_rule) + ". See docs/logons.md."),
        ("Logon duration and the wait budget", "Every instant of a logon is assigned to exactly one category "
         "(DNS, connect, TLS, network round trip, sending, server, receiving, resends, TCP window, Nagle, "
         "the PC's own work, unexplained). Where things overlap (parallel connections, a resend during a "
         "transfer) the instant goes to the most specific category, so the categories add up exactly to the "
         "logon's duration and nothing is counted twice."),
        ("Server processing", "Per request: from the last request byte to the first answer byte, less the "
         "capture point's round trip to the server (SYN to SYN/ACK) and less any request resends in that "
         "interval. What is left is the server's own time."),
        ("The PC's own work", "From an answer reaching the PC to that PC's next request: the client software "
         "working (or the user, when a logon needs input)."),
        ("Percentiles", "p50 is the median; p95 the time 1 in 20 logons exceed. Computed with linear "
         "interpolation between the sorted durations (numpy's default); with few logons p95 lies between "
         f"the slowest ones. Logons over time are grouped by start time into {bucket} periods (UTC)."),
        ("TCP health", "All TCP connections in the capture, not only logons. Handshake round trip = SYN to "
         "SYN/ACK plus SYN/ACK to ACK. Resends, duplicate ACKs and zero windows follow Wireshark 4.0's "
         "tcp.analysis flags. 'Capture gaps' are data the endpoints acknowledged but the capture never saw: "
         "the capture dropped it, not the network, so such gaps are not counted as resends."),
        ("Known limits", "Inside TLS (ports 9402/9403, HTTPS) only record turns are visible, so server and PC "
         "time are per turn, not per operation. With many processes behind one address the split between "
         "logons follows the order of answers and new connections (see each logon's separation confidence). "
         "A pooled connection opened before a logon started is not part of it. A capture that misses the "
         "start of a connection cannot time its handshake."),
    ]


def waterfall_rows(a: Analysis, logon_id: int) -> tuple[list[dict], int, int]:
    """One row per connection of the logon (plus one for the PC's own time), with its budget intervals.

    Returns (rows, start_ts_ns, end_ts_ns); each row is {"label", "bars": [(t0, t1, category,
    title)]} with times in ns. Operation names come from the transactions the intervals belong to.
    """
    lg = a.logons.filter(pl.col("logon_id") == logon_id)
    if lg.height == 0 or a.intervals.height == 0:
        return [], 0, 0
    start, end = int(lg["start_ts_ns"][0]), int(lg["end_ts_ns"][0])
    iv = a.intervals.filter((pl.col("logon_idx") == logon_id - 1) & (pl.col("t1") > pl.col("t0")))
    tx = a.transactions.with_row_index("txn_row").select(
        pl.col("txn_row").cast(pl.Int64), "protocol", "operation", "status")
    iv = iv.join(tx, on="txn_row", how="left").sort("t0")
    conns = {r["conn_id"]: r for r in a.connections.select(
        "conn_id", "transport", "server_ip", "server_port").iter_rows(named=True)}
    rows: dict[int | None, dict] = {}
    order: list[int | None] = []
    for r in iv.iter_rows(named=True):
        key = r["conn_id"]
        if key not in rows:
            if key is None:
                label = "PC's own work"
            else:
                c = conns.get(key)
                role = a.profile.port_role(c["server_ip"], c["server_port"]) if c else None
                label = (f"#{key} {c['transport'].upper()} {c['server_ip']}:{c['server_port']}"
                         + (f" ({role})" if role else "")) if c else f"#{key}"
            rows[key] = {"label": label, "bars": []}
            order.append(key)
        what = r["operation"] or r["protocol"] or ""
        title = f"{r['category']}: {what} {fmt_s((r['t1'] - r['t0']) / 1e9)}".replace("  ", " ")
        rows[key]["bars"].append((int(r["t0"]), int(r["t1"]), r["category"], title, r["operation"]))
    if None in rows:
        # The sweep gives an instant where the PC waits on something else (a resend, a transfer) to that
        # wait, not to the PC: draw the PC's own work only where no connection row is busy.
        busy = _merge([(b[0], b[1]) for k, r in rows.items() if k is not None for b in r["bars"]])
        rows[None]["bars"] = [(p0, p1, cat, title, op) for t0, t1, cat, title, op in rows[None]["bars"]
                              for p0, p1 in _subtract(t0, t1, busy)]
        if not rows[None]["bars"]:
            del rows[None]
    # connections first in order of first activity, the PC's own time last
    ordered = [rows[k] for k in order if k is not None] + ([rows[None]] if None in rows else [])
    return ordered, start, end


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _subtract(t0: int, t1: int, busy: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Parts of [t0, t1) not covered by the merged, sorted `busy` spans."""
    out, cur = [], t0
    for a, b in busy:
        if b <= cur:
            continue
        if a >= t1:
            break
        if a > cur:
            out.append((cur, a))
        cur = max(cur, b)
    if cur < t1:
        out.append((cur, t1))
    return out
