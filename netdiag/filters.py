"""Wireshark display filters for a finding that work in any capture holding its frames.

Why: a frame-number filter (`frame.number in {...}`) is right only in the original capture: an
evidence excerpt is a new file with new frame numbers, and merged or re-cut captures renumber
too. These filters name what the frames are instead, so the same text selects the same frames
in the original, in the evidence file and in a sanitised copy (with the addresses mapped by the
same key, as netdiag.case does for every text it writes):

- `conversation_filter`: the finding's connections as address/port pairs,
  `(ip.addr==A && tcp.port==p && ip.addr==B && tcp.port==q) || ...` (IPv6: `ipv6.addr`, UDP:
  `udp.port`). Many connections collapse per server into `ip.addr in {clients}` with the
  server's address and port, a superset that stays short.
- `protocol_filter`: the requests and answers the finding is about (GIOP request ids with
  their operations and replies, HTTP paths, DNS ids and names, TLS handshakes); empty when the
  finding is about no request.
- `tcp_filter`: the TCP events of the cause (`tcp.analysis.retransmission`, zero windows, SYN
  retries ...) within the conversation; empty for causes that are no TCP event.
- `evidence_filter`: `frame.comment contains "[F003]"`, the frames netdiag annotated for the
  finding in its evidence file (netdiag.evidence starts each such comment with the id).

Everything here is a pure function of the tables (no I/O); `finding_filters` adds the columns
to the findings table (declared in netdiag.schema FINDINGS). Filter syntax: Wireshark 4.0
(`in {a, b}` sets with commas, `contains` on strings).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

MAX_PAIRS = 24          # more connections than this: one term per server (clients as a set)
MAX_SET = 64            # set members before a term drops that condition (a superset, still short)

# The TCP events of each cause (Wireshark's tcp.analysis.* judgements and flags); causes not
# listed are no TCP event (server time, DNS, exceptions ...): their tcp_filter is empty. A resend
# whose first copy was lost before the capture point is seen once, unmarked: it follows a pause
# in its connection at least as long as the shortest retransmission timeout (tcp.time_delta,
# 200 ms on Linux and Windows), hence that term.
TCP_EVENTS: dict[str, str] = {
    "syn_retransmission": "tcp.flags.syn==1 && tcp.flags.ack==0",
    "listen_backlog": "tcp.flags.syn==1",
    "connect_failure": "tcp.flags.syn==1 || tcp.flags.reset==1",
    "network_latency": "tcp.flags.syn==1",
    "loss_recovery": ("tcp.analysis.retransmission || tcp.analysis.fast_retransmission || "
                      "tcp.analysis.spurious_retransmission || tcp.analysis.out_of_order || "
                      "tcp.analysis.lost_segment || tcp.analysis.duplicate_ack || tcp.time_delta >= 0.2"),
    "zero_window": ("tcp.analysis.zero_window || tcp.analysis.zero_window_probe || "
                    "tcp.analysis.zero_window_probe_ack || tcp.analysis.window_full || tcp.analysis.window_update"),
    "capture_loss": "tcp.analysis.ack_lost_segment || tcp.analysis.lost_segment",
    "nagle_delayed_ack": "tcp.len > 0 || tcp.analysis.ack_rtt >= 0.03",
    "idle_connection_dropped": "tcp.flags.reset==1 || tcp.flags.fin==1 || tcp.analysis.keep_alive",
}

FILTER_COLUMNS = ("conversation_filter", "protocol_filter", "tcp_filter", "evidence_filter")
# How the reports name each filter of a finding, in the order they show them
FILTER_LABELS = (("conversation_filter", "its connections"), ("protocol_filter", "its requests and answers"),
                 ("tcp_filter", "its TCP events"), ("evidence_filter", "in its evidence file"),
                 ("wireshark_filter", "frame numbers (original capture only)"))


def filters_of(finding: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, filter) of a finding row, the empty ones left out (for the reports)."""
    return [(label, finding[col]) for col, label in FILTER_LABELS if finding.get(col)]


def quote(text: str) -> str:
    """A Wireshark string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ip_field(addr: str) -> str:
    return "ipv6.addr" if ":" in addr else "ip.addr"


def _set(field: str, values: Sequence[Any]) -> str:
    vals = list(values)
    if len(vals) == 1:
        return f"{field}=={vals[0]}"
    return f"{field} in {{{', '.join(str(v) for v in vals)}}}"


def conversation_filter(conversations: Iterable[tuple[str, str, int, str, int]]) -> str:
    """`(ip.addr==A && tcp.port==p && ip.addr==B && tcp.port==q) || ...` for (transport, A, p, B, q).

    More than MAX_PAIRS distinct pairs: one term per (transport, server B, port q) with the
    clients as a set (left out beyond MAX_SET clients), a superset of the same frames.
    """
    convs = sorted({(t, a, int(p), b, int(q)) for t, a, p, b, q in conversations if a and b})
    if not convs:
        return ""
    if len(convs) <= MAX_PAIRS:
        terms = [f"({_ip_field(a)}=={a} && {t}.port=={p} && {_ip_field(b)}=={b} && {t}.port=={q})"
                 for t, a, p, b, q in convs]
        return " || ".join(terms)
    servers: dict[tuple[str, str, int], set[str]] = {}
    for t, a, _p, b, q in convs:
        servers.setdefault((t, b, q), set()).add(a)
    terms = []
    for (t, b, q), clients in sorted(servers.items()):
        term = f"{_ip_field(b)}=={b} && {t}.port=={q}"
        by_field: dict[str, list[str]] = {}
        for c in sorted(clients):
            by_field.setdefault(_ip_field(c), []).append(c)
        if len(by_field) == 1 and len(clients) <= MAX_SET:
            ((field, cs),) = by_field.items()
            term += f" && {_set(field, cs)}"
        terms.append(f"({term})")
    return " || ".join(terms)


def protocol_filter(transactions: Iterable[dict[str, Any]]) -> str:
    """The requests and answers given (rows with protocol, operation, request_id), per protocol.

    GIOP: `giop.request_id in {..} && (giop.request_op in {"op"} || replies)`: the request id
    is on requests, replies and their fragments (GIOP 1.2), the operation only on requests
    (LocateRequest has none: `giop.type==3`). HTTP: the path on the request and on the answer
    (`http.response_for.uri`). DNS: the ids and names. TLS: the handshake (with Change Cipher
    Spec), or all of TLS when netdiag saw encrypted request/response turns.
    """
    giop_ids: set[int] = set()
    giop_ops: set[str] = set()
    locate = False
    http_paths: set[str] = set()
    dns_ids: set[int] = set()
    dns_names: set[str] = set()
    tls = turns = False
    for r in transactions:
        proto, op, rid = r.get("protocol"), r.get("operation") or "", r.get("request_id")
        if proto == "giop":
            if rid is not None:
                giop_ids.add(int(rid))
            if op == "LocateRequest":
                locate = True
            elif op:
                giop_ops.add(op)
        elif proto == "http" and op:
            path = op.split(" ", 1)[-1].split("?", 1)[0]   # query values do not survive sanitising
            if path:
                http_paths.add(path)
        elif proto == "dns":
            if rid is not None:
                dns_ids.add(int(rid))
            if op:
                dns_names.add(op.rstrip("."))
        elif proto == "tls":
            tls = True
        elif proto == "turn":
            turns = True
    terms: list[str] = []
    if giop_ids or giop_ops or locate:
        kinds = [f"giop.request_op in {{{', '.join(quote(o) for o in sorted(giop_ops))}}}"] if giop_ops else []
        kinds += ["giop.type==3"] if locate else []
        kinds += ["giop.type in {1, 4, 7}"]          # Reply, LocateReply, Fragment
        ids = f"{_set('giop.request_id', sorted(giop_ids))} && " if giop_ids and len(giop_ids) <= MAX_SET else ""
        terms.append(f"({ids}({' || '.join(kinds)}))" if ids else f"(giop && ({' || '.join(kinds)}))")
    if http_paths:
        paths = sorted(http_paths)[:MAX_SET]
        terms.append("(" + " || ".join(f"http.request.uri contains {quote(p)} || http.response_for.uri contains "
                                       f"{quote(p)}" for p in paths) + ")")
    if dns_ids or dns_names:
        parts = []
        if dns_ids and len(dns_ids) <= MAX_SET:
            parts.append(_set("dns.id", [f"0x{i:04x}" for i in sorted(dns_ids)]))
        if dns_names and len(dns_names) <= MAX_SET:
            parts.append(f"dns.qry.name in {{{', '.join(quote(n) for n in sorted(dns_names))}}}")
        terms.append("(" + (" && ".join(parts) or "dns") + ")")
    if turns:       # encrypted records, parts of them in continuation frames: only "TLS" names them
        terms.append("(tls)")
    elif tls:
        terms.append("(tls.handshake || tls.record.content_type==20)")
    if len(terms) == 1:
        return terms[0][1:-1]
    return " || ".join(terms)


def tcp_filter(cause: str, conversation: str) -> str:
    """The cause's TCP events within the conversation; empty for a cause that is no TCP event."""
    events = TCP_EVENTS.get(cause)
    if not events:
        return ""
    return f"({conversation}) && ({events})" if conversation else events


def evidence_filter(finding_id: str) -> str:
    """The finding's annotated frames in its evidence file (comments start with `[F003]`)."""
    return f"frame.comment contains {quote(f'[{finding_id}]')}"


def _frame_conns(frames: list[int], connections: pl.DataFrame, transactions: pl.DataFrame,
                 segments: pl.DataFrame | None) -> pl.DataFrame:
    """(frame, conn_id) for the frames given: TCP from the segments, UDP from the transactions'
    and flows' first and last frames."""
    # (each table is cut to the wanted frames first: a whole segments table made unique costs seconds)
    wanted = pl.col("frame").is_in(pl.Series(frames, dtype=pl.Int64).implode())
    parts = []
    if segments is not None and segments.height:
        parts.append(segments.select(pl.col("frame").cast(pl.Int64), pl.col("conn_id").cast(pl.UInt32))
                     .filter(wanted))
    for t in (transactions, connections.filter(pl.col("transport") == "udp")):
        if t.height:
            for col in ("first_frame", "last_frame"):
                parts.append(t.select(pl.col(col).cast(pl.Int64).alias("frame"), pl.col("conn_id").cast(pl.UInt32))
                             .filter(wanted))
    if not parts:
        return pl.DataFrame(schema={"frame": pl.Int64, "conn_id": pl.UInt32})
    return pl.concat(parts).drop_nulls().unique()


def finding_filters(findings: pl.DataFrame, connections: pl.DataFrame, transactions: pl.DataFrame,
                    segments: pl.DataFrame | None) -> pl.DataFrame:
    """`findings` with FILTER_COLUMNS filled from the tables the findings were made from.

    The conversation is the finding's connections plus those its evidence frames belong to;
    the protocol filter covers the transactions whose frames (first request frame to last
    answer frame, on the same connection) hold one of the evidence frames.
    """
    if findings.height == 0:
        return findings.with_columns([pl.lit(None, pl.String).alias(c) for c in FILTER_COLUMNS])
    all_frames = sorted({int(f) for lst in findings["evidence_frames"].to_list() for f in lst or []})
    fc = _frame_conns(all_frames, connections, transactions, segments)
    conn_of: dict[int, set[int]] = {}
    for f, c in fc.iter_rows():
        conn_of.setdefault(int(f), set()).add(int(c))
    ends = {int(c): (t, a, p, b, q) for c, t, a, p, b, q in connections.select(
        "conn_id", "transport", "client_ip", "client_port", "server_ip", "server_port").iter_rows()}
    # each transaction with the evidence frames (of any finding) that fall inside it on its connection
    txf = (transactions.select("conn_id", "protocol", "operation", "request_id", "first_frame", "last_frame")
           .with_columns(pl.col("conn_id").cast(pl.UInt32)).join(fc, on="conn_id")
           .filter((pl.col("frame") >= pl.col("first_frame")) & (pl.col("frame") <= pl.col("last_frame"))))
    out: dict[str, list[str]] = {c: [] for c in FILTER_COLUMNS}
    for fid, cause, frames, conn_ids in findings.select("id", "cause", "evidence_frames", "conn_ids").iter_rows():
        frames = [int(f) for f in frames or []]
        conns = {int(c) for c in conn_ids or []} | {c for f in frames for c in conn_of.get(f, ())}
        conv = conversation_filter(ends[c] for c in conns if c in ends)
        own = txf.filter(pl.col("frame").is_in(frames)).unique(["conn_id", "request_id", "protocol", "operation"],
                                                              maintain_order=True)
        out["conversation_filter"].append(conv)
        out["protocol_filter"].append(protocol_filter(own.iter_rows(named=True)))
        out["tcp_filter"].append(tcp_filter(cause, conv))
        out["evidence_filter"].append(evidence_filter(fid))
    return findings.with_columns([pl.Series(c, v, dtype=pl.String) for c, v in out.items()])


__all__ = ["FILTER_COLUMNS", "FILTER_LABELS", "filters_of", "TCP_EVENTS", "conversation_filter", "evidence_filter", "finding_filters",
           "protocol_filter", "quote", "tcp_filter"]
