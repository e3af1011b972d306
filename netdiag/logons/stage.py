"""The logons stage: from the connections, transactions and segments tables to logons and findings.

Pure (no I/O): `analyze_tables(connections, transactions, segments, profile)` -> `LogonAnalysis`.
`netdiag.pipeline` runs it as its last stage; notebooks and tests call it on tables they made.

How: `grouping` chains connections per client process and cuts logons (start/end rules from
the profile); `causes.engine.label_causes` asks each registered cause (netdiag/logons/causes/)
what each connect, wait and resend was; `budget` turns everything into timeline intervals and
sweeps them so each instant belongs to exactly one category; `causes.engine.build_findings`
writes each cause's findings; `population` summarises.
See docs/logons.md for the method and a worked example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from netdiag.errors import NetdiagError
from netdiag.filters import finding_filters
from netdiag.logons.budget import budget_seconds, build_intervals, sweep
from netdiag.logons.causes.engine import (
    build_findings,
    connection_findings,
    dominant_causes,
    finish_findings,
    label_causes,
)
from netdiag.logons.grouping import Grouping, group_logons, relevant_connections
from netdiag.logons.population import population
from netdiag.logons.positional import join_per_logon
from netdiag.logons.resends import delivered_answers
from netdiag.profile import Profile, as_profile
from netdiag.protocols.giop import EXCEPTION_STATUSES, FORWARD_STATUSES
from netdiag.protocols.registry import request_protocols
from netdiag.schema import BUDGET_COLUMNS, CONNECTIONS, LOGONS, NOT_LOGON_SCHEMA, TRANSACTIONS
from netdiag.words import fmt_s

# Columns of the segments table the budget and the findings read (kept from the one pass).
SEGMENT_COLUMNS = ("frame", "ts_ns", "conn_id", "direction", "tcp_flags", "payload_len", "window_bytes",
                   "retransmission", "spurious_retransmission", "ack_lost_segment", "zero_window",
                   "zero_window_probe", "window_full", "rto_s", "rto_frame", "ack_rtt_s", "acks_frame",
                   "seq_rel", "next_seq_rel", "ack_rel", "fast_retransmission", "out_of_order", "lost_segment", "resend",
                   "bytes_seen_before", "resend_of_frame", "resend_wait_s", "dsack_left_rel", "dsack_right_rel",
                   "ip_id", "ip_ttl")





class NoLogonsError(NetdiagError):
    """The capture holds no logon; the message says why (no server traffic, no logon start).

    Not a failure for the command line: the analysis ran, so the exit code is 0 (README "Exit codes").
    """

    exit_code = 0


@dataclass
class LogonAnalysis:
    """Everything the logon analysis produces from one pass."""

    logons: pl.DataFrame
    findings: pl.DataFrame
    population: dict[str, pl.DataFrame]
    intervals: pl.DataFrame                      # the timeline intervals with won_ns (for evidence)
    no_logons_reason: str | None = None
    orphan_connections: int = 0
    notes: list[str] = field(default_factory=list)
    # the transactions table the intervals' txn_row points into (for server_seconds_by_operation)
    transactions: pl.DataFrame = field(default_factory=TRANSACTIONS.empty)
    # sessions that are not logons (a name-service tool, a probe): client_ip, server_ip,
    # start_ts_ns, end_ts_ns, conn_ids, requests, reason; kept out of every logon statistic
    not_logons: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=NOT_LOGON_SCHEMA))
    unassigned_requests: int = 0                 # requests of logon processes outside every logon

    def server_seconds_by_operation(self) -> pl.DataFrame:
        """Per logon and operation: the budget's server seconds (logon_id, protocol, operation, server_s)."""
        return server_seconds_by_operation(self.intervals, self.transactions)

    def require_logons(self) -> LogonAnalysis:
        """Raise NoLogonsError (with the reason) when there are no logons; else return self."""
        if self.logons.height == 0:
            raise NoLogonsError(self.no_logons_reason or "no logons found")
        return self


def server_seconds_by_operation(intervals: pl.DataFrame, transactions: pl.DataFrame) -> pl.DataFrame:
    """Per logon and operation: the budget's server seconds (logon_id, protocol, operation, server_s).

    `intervals` are the timeline intervals with `won_ns` (their `txn_row` indexes `transactions`)."""
    if intervals.height == 0:
        return pl.DataFrame(schema={"logon_id": pl.UInt32, "protocol": pl.String, "operation": pl.String,
                                    "server_s": pl.Float64})
    ops = transactions.with_row_index("txn_row").select(pl.col("txn_row").cast(pl.Int64), "protocol", "operation")
    return (intervals.filter((pl.col("category") == "server_s") & (pl.col("txn_row") >= 0))
            .join(ops, on="txn_row", how="left")
            .group_by("logon_idx", "protocol", "operation")
            .agg(server_s=pl.col("won_ns").sum() / 1e9)
            .select((pl.col("logon_idx") + 1).cast(pl.UInt32).alias("logon_id"), "protocol", "operation",
                    "server_s")
            .sort("logon_id", "server_s", descending=[False, True]))


def analyze_tables(connections: pl.DataFrame, transactions: pl.DataFrame, segments: pl.DataFrame | None = None,
                   profile: Profile | str | Path | None = None, *, grouping: Grouping | None = None) -> LogonAnalysis:
    """Logons, findings and population views from the connections/transactions/segments tables.

    `grouping`: the result of group_logons on these tables (with the answers as delivered, see
    delivered_answers), when it was made elsewhere (a partitioned run groups per client address
    in parallel); None groups here."""
    prof = as_profile(profile)
    connections = connections if connections.height else CONNECTIONS.empty()
    transactions = transactions if transactions.height else TRANSACTIONS.empty()
    # answers as the client got them: a first copy lost after the capture point arrives with its resend
    transactions = delivered_answers(transactions, segments)
    if grouping is None:
        grouping = group_logons(connections, transactions, prof)
    lg = grouping.logons
    not_logons = pl.DataFrame(grouping.not_logons, schema=NOT_LOGON_SCHEMA)
    notes = _grouping_notes(grouping, lg)
    if lg.height == 0:
        reason = _why_no_logons(connections, transactions, prof)
        # no logon: still every TCP connection's own transport causes
        conn_rows = connection_findings(connections, segments, prof, set(), logons_known=False)
        if not_logons.height:
            reason = (f"no logons: {not_logons.height} session(s) on the naming port, none of them a logon ("
                      + "; ".join(sorted(set(not_logons["reason"].to_list()))) + ")")
        findings = finding_filters(finish_findings(conn_rows, 0.0, prof), connections, transactions, segments)
        return LogonAnalysis(LOGONS.empty(), findings, {}, pl.DataFrame(),
                             no_logons_reason=reason, orphan_connections=grouping.orphans, notes=notes,
                             transactions=transactions, not_logons=not_logons,
                             unassigned_requests=grouping.unassigned_requests)
    members = grouping.members
    conn_causes, txn_causes = label_causes(connections, transactions, segments, members, prof)
    iv = build_intervals(lg, members, connections, transactions, segments, conn_causes, txn_causes)
    cat_ns, cause_ns, won = sweep(iv, lg)
    iv = iv.with_columns(won_ns=pl.Series(won, dtype=pl.Int64))
    duration_ns = (lg["end_ts_ns"] - lg["start_ts_ns"]).to_numpy().astype(np.int64)
    secs, duration_s = budget_seconds(cat_ns, duration_ns)
    del cat_ns   # (per-logon arrays and helper tables go as soon as read: a flood has 200 k logons)
    causes, ev_frames = dominant_causes(cause_ns, iv, lg.height)

    tx = transactions.with_row_index("txn_row").with_columns(pl.col("txn_row").cast(pl.Int64))
    tm = members.filter(pl.col("txn_row") >= 0).join(tx.drop("conn_id"), on="txn_row", how="inner").join(
        lg.select("logon_idx", "first_seen_ts_ns", "last_seen_ts_ns"), on="logon_idx")
    in_window = tm.filter(pl.col("req_first_ts_ns") <= pl.col("last_seen_ts_ns"))
    counts = in_window.group_by("logon_idx").agg(
        requests=pl.col("protocol").is_in(list(request_protocols())).sum(),
        location_forwards=pl.col("status").is_in(list(FORWARD_STATUSES)).sum(),
        exceptions=pl.col("status").is_in(list(EXCEPTION_STATUSES)).sum(),
    )
    conn_m = members.filter((pl.col("txn_row") < 0) & (pl.col("kind") == "tcp")).select(
        "logon_idx", "conn_id").unique().join(
        connections.select("conn_id", "client_port", "retransmitted_segments", "first_frame", "last_frame"),
        on="conn_id", how="left")
    udp_m = members.filter(pl.col("kind") == "dns").select("logon_idx", "conn_id").unique().join(
        connections.select("conn_id", "client_port", "first_frame", "last_frame"), on="conn_id", how="left")
    per_conn = conn_m.group_by("logon_idx").agg(
        connections=pl.len(), retransmissions=pl.col("retransmitted_segments").fill_null(0).sum(),
        conn_ids=pl.col("conn_id").sort(), tcp_ports=pl.col("client_port").unique().sort(),
        f0=pl.col("first_frame").min(), f1=pl.col("last_frame").max())
    per_udp = udp_m.group_by("logon_idx").agg(udp_ports=pl.col("client_port").unique().sort(),
                                              uf0=pl.col("first_frame").min())
    # logons of one long-lived process share its connections: their filters also need the time
    shared = set(conn_m.filter(pl.col("conn_id").is_duplicated())["logon_idx"].to_list())
    del tx, tm, udp_m, conn_m   # (read: the per-logon table below is built without them beside it)

    if prof.client_groups:
        group_of = {ip: prof.client_group(ip) for ip in lg["client_ip"].unique().to_list()}
        client_group = pl.Series([group_of[ip] for ip in lg["client_ip"].to_list()], dtype=pl.String)
    else:   # (no groups: every address's is None, asked of no address)
        client_group = pl.lit(None, pl.String)
    out = lg.with_columns(
        logon_id=(pl.col("logon_idx") + 1).cast(pl.UInt32),
        client_group=client_group,
        duration_s=pl.Series(duration_s),
        dominant_cause=pl.Series(causes, dtype=pl.String),
        evidence_frames=ev_frames,
        **{c: pl.Series(secs[:, j]) for j, c in enumerate(BUDGET_COLUMNS)},
    )
    out = join_per_logon(out, [counts, per_conn, per_udp])
    del counts, per_conn, per_udp
    out = out.with_columns(
        [pl.col(c).fill_null(0) for c in ("requests", "location_forwards", "exceptions", "connections",
                                           "retransmissions")],
        conn_ids=pl.col("conn_ids").fill_null(pl.lit([], pl.List(pl.UInt32))),
        wireshark_filter=_wireshark_filters(out, shared) if out.height else pl.lit(None, pl.String),
    )
    logons_table = LOGONS.conform(out)
    conn_rows = connection_findings(connections, segments, prof, members["conn_id"].unique(), logons_known=True)
    findings = build_findings(out, iv, cause_ns, connections, transactions, segments, members, prof, conn_rows)
    findings = finding_filters(findings, connections, transactions, segments)
    pop = population(logons_table, in_window)
    maybe_lost = iv.filter((pl.col("category") == "unexplained_s") & (pl.col("won_ns") > 0))
    if maybe_lost.height:
        notes.append(f"{maybe_lost['logon_idx'].n_unique()} logon(s): {fmt_s(maybe_lost['won_ns'].sum() / 1e9)} "
                     "unexplained: possibly loss before the capture point (a first copy that came a resend timer "
                     "after its sender's previous packet; the IP IDs cannot tell)")
    return LogonAnalysis(logons_table, findings, pop, iv, orphan_connections=grouping.orphans, notes=notes,
                         transactions=transactions, not_logons=not_logons,
                         unassigned_requests=grouping.unassigned_requests)


def _grouping_notes(grouping: Any, lg: pl.DataFrame) -> list[str]:
    """Notes that account for everything grouping left out of the logon statistics, with counts."""
    notes = []
    if grouping.orphans:
        notes.append(f"{grouping.orphans} connection(s) to EPJ servers belong to no logon (no logon start seen "
                     "for their client process)")
    if grouping.unassigned_requests:
        notes.append(f"{grouping.unassigned_requests} request(s) of logon client processes belong to no logon "
                     "(sent between two logons of one process, or after a logon's end)")
    if grouping.unassigned_dns:
        notes.append(f"{grouping.unassigned_dns} DNS question(s) belong to no logon (no logon process connected "
                     "to their answer next)")
    if grouping.not_logons:
        by_reason: dict[str, int] = {}
        for d in grouping.not_logons:
            by_reason[d["reason"]] = by_reason.get(d["reason"], 0) + 1
        notes.append(f"{len(grouping.not_logons)} session(s) on the naming port are not logons and are kept out of "
                     "the logon statistics: " + "; ".join(f"{n} x {r}" for r, n in sorted(by_reason.items())))
    if lg.height:
        cut = int((lg["outcome"] == "incomplete").sum())
        if cut:
            notes.append(f"{cut} logon(s) cut by the start or end of the capture are incomplete: listed, but kept "
                         "out of the duration percentiles and the budget totals")
    return notes


def _wireshark_filters(out: pl.DataFrame, shared: set[int], block: int = 16384) -> pl.Series:
    """Each logon's display filter, made a block of rows at a time (the Python strings of one
    block at most: a flood's hundreds of thousands of logons need no list of all of them)."""
    cols = ("client_ip", "tcp_ports", "udp_ports", "f0", "uf0", "last_seen_ts_ns", "first_seen_ts_ns", "logon_idx")
    parts = [pl.Series([_logon_filter(*r[:6]) + (_time_range(r[6], r[5]) if r[7] in shared else "")
                        for r in out.slice(lo, block).select(cols).iter_rows()], dtype=pl.String)
             for lo in range(0, out.height, block)]
    return pl.concat(parts, rechunk=True)


def _logon_filter(client_ip: str, tcp_ports: list | None, udp_ports: list | None, f0: int | None, uf0: int | None,
                  _last: int | None) -> str:
    ipf = f"ipv6.addr == {client_ip}" if ":" in client_ip else f"ip.addr == {client_ip}"
    ports = []
    if tcp_ports:
        ports.append("tcp.port in {" + ",".join(str(p) for p in tcp_ports) + "}")
    if udp_ports:
        ports.append("udp.port in {" + ",".join(str(p) for p in udp_ports) + "}")
    return f"{ipf} && ({' || '.join(ports)})" if ports else ipf


def _time_range(first_ns: int, last_ns: int) -> str:
    """A display-filter clause for [first, last] seen at the capture point, widened to whole ms."""
    lo, hi = (first_ns // 1_000_000) / 1000, -(-last_ns // 1_000_000) / 1000
    return f" && frame.time_epoch >= {lo:.3f} && frame.time_epoch <= {hi:.3f}"


def _why_no_logons(connections: pl.DataFrame, transactions: pl.DataFrame, profile: Profile) -> str:
    """Why no logon was found, from what the capture holds (never a guess about what it lacks)."""
    tcp = connections.filter(pl.col("transport") == "tcp") if connections.height else connections
    if tcp.height == 0:
        return "no logons: the capture holds no TCP connections"
    analysed = f"; {tcp.height} TCP connection(s) analysed for transport problems"
    rel = relevant_connections(connections, transactions, profile)
    if rel.height == 0:
        if profile.servers:
            return ("no logons: no connection to the profile's servers (" + ", ".join(s.name for s in profile.servers)
                    + ") was seen" + analysed)
        return ("no logons: no connection to a naming port (2809) or known EPJ port was seen, and none carried GIOP"
                + analysed)
    boot = rel.filter(pl.col("role") == "bootstrap")
    if boot.height == 0 and profile.start_rule == "bootstrap":
        return (f"no logons: no logon start seen: {rel.height} connection(s) go to EPJ servers but none to a "
                "bootstrap port (2809 by default; set the port role in the profile, or start = \"any\")" + analysed)
    return (f"no logons: no logon start seen: {boot.height} connection(s) to a bootstrap port, none followed by a "
            "request the logon rules accept as a start" + analysed)


__all__ = ["SEGMENT_COLUMNS", "LogonAnalysis", "NoLogonsError", "analyze_tables",
           "server_seconds_by_operation"]
