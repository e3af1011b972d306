"""Findings: the causes of lost logon time, each with its detection rule and its evidence.

Two steps:

1. `label_causes` looks at connections, transactions and segments *before* the budget sweep and
   names what a connect, a server wait, a DNS wait or a resend really was (a connect with SYN
   retries is `syn_retransmission` time, a server wait ending in a system exception is
   `system_exception` time...). The sweep then carries these labels, so every second of a
   finding is a second of the budget, counted once.
2. `build_findings` sums the seconds each cause won in the sweep, adds what costs no time but
   changes how to read the rest (capture loss), and writes one row per cause (server think one
   row per operation, client think one per client software version) with a severity, a
   sentence for a hospital manager, the measurement, evidence frames and a Wireshark display
   filter that shows them (`frame.number in {...}`: our conn_id means nothing to Wireshark).

Detection rules (what the capture shows; DOMAIN.md §3.2 and §5):

- capture_loss: bytes ACKed that the capture never saw (connections.unseen_bytes,
  segments.ack_lost_segment). Listed first: these gaps are the capture's, not the network's.
- syn_retransmission: a connection whose SYN was sent more than once and then answered;
  the client's RTO is the gap between its first two SYNs.
- connect_failure: a SYN never answered, or answered with RST (Zeek states S0, REJ ...).
- listen_backlog: >= 3 connections to one server port with SYN retries or resets within 10 s,
  at a moment with >= 10 connection attempts to it, on a port that answers most attempts
  without retries.
- dns_delay: a DNS question answered later than `thresholds.dns_s` (resolver retries included),
  or unanswered.
- tls_handshake: a TLS handshake longer than `thresholds.tls_handshake_s`, or ending in an alert;
  and (a separate row) full handshakes repeated to one server port in a logon (no resumption).
- nagle_delayed_ack: see budget.py (data, delayed bare ACK, held segment right after it).
- server_think: the server's own time per operation (round trip removed); a warning when an
  operation's longest server time reaches `thresholds.server_think_s`.
- client_think: the client's own time per logon, per client software version (HTTP
  User-Agent, e.g. Java/1.8.0_202, where the logon fetched JNLP/jars); a warning when the mean
  per logon reaches `thresholds.client_think_s`.
- request_timeout_retry: a request unanswered, answered after `thresholds.request_timeout_s`, or
  asked again before its answer came, followed by the same operation again in the same logon.
- location_forward: LOCATION_FORWARD replies / OBJECT_FORWARD locate replies; a warning when the
  forwarded host:port then fails to connect or a logon is forwarded more than twice.
- system_exception: GIOP SYSTEM_EXCEPTION replies (TRANSIENT, COMM_FAILURE, NO_PERMISSION...).
- loss_recovery: retransmission waits (RTO and fast recovery) inside logons.
- zero_window: zero-window and window-full waits (a slow reader).
- idle_connection_dropped: data sent on a connection after >= `thresholds.idle_before_reuse_s`
  of silence, resent and never answered by the server (a firewall dropped the pooled connection).
- jar_download: HTTP 200 for a .jar that the same client had already fetched earlier in the
  capture, where a 304 (not modified) was expected (the first download and the .jnlp are not findings).
- network_latency: round trips paid per application turn (budget network_rtt_s); a warning when
  they are more than `thresholds.network_share` of logon time.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from netdiag.logons.budget import CAUSE_ID, CAUSES
from netdiag.logons.grouping import FAILED_CONNECT_STATES, FORWARD_STATUSES
from netdiag.profile import Profile
from netdiag.schema import FINDINGS

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
# Causes that can be a logon's dominant cause (neutral labels such as plain transfer are not).
DOMINANT_CANDIDATES = tuple(c for c in CAUSES if c not in ("unexplained", "transfer", "connect", "tls", "dns"))
JAR_RE = r"(?i)\.(jar|jnlp|pack\.gz)(\?|$|\s)"
MAX_EVIDENCE_FRAMES = 40


def label_causes(connections: pl.DataFrame, transactions: pl.DataFrame, segments: pl.DataFrame | None,
                 members: pl.DataFrame, profile: Profile) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(conn_causes: conn_id, connect_cause, loss_cause; txn_causes: txn_row, cause, give_up_ts_ns).

    give_up_ts_ns: when the client asked the same operation again before this one's answer
    came; the client stopped waiting for it then.
    """
    thr = profile.thresholds
    conns = connections.filter(pl.col("transport") == "tcp")
    failed = (pl.col("state").is_in(list(FAILED_CONNECT_STATES)) | (
        pl.col("syn_ts_ns").is_not_null() & pl.col("synack_ts_ns").is_null())) & (pl.col("bytes_s2c").fill_null(0) == 0)
    retried = pl.col("syn_retransmissions").fill_null(0) > 0
    cc = conns.select("conn_id", "server_ip", "server_port", "syn_ts_ns", "first_ts_ns",
                      connect_cause=pl.when(failed).then(pl.lit("connect_failure"))
                      .when(retried).then(pl.lit("syn_retransmission")).otherwise(pl.lit(None, pl.String)))
    backlog = _listen_backlog(cc)
    if backlog:
        cc = cc.with_columns(connect_cause=pl.when(pl.col("conn_id").is_in(list(backlog)))
                             .then(pl.lit("listen_backlog")).otherwise(pl.col("connect_cause")))
    idle = _idle_dropped(segments, thr.idle_before_reuse_s) if segments is not None else set()
    cc = cc.select("conn_id", "connect_cause",
                   loss_cause=pl.when(pl.col("conn_id").is_in(list(idle))).then(pl.lit("idle_connection_dropped"))
                   .otherwise(pl.lit(None, pl.String)))

    tx = transactions.with_row_index("txn_row").with_columns(pl.col("txn_row").cast(pl.Int64))
    lossy_conns = conns.filter(pl.col("unseen_bytes").fill_null(0) > 0)["conn_id"].to_list()
    dur = (pl.coalesce("rsp_last_ts_ns", "req_last_ts_ns") - pl.col("req_first_ts_ns")) / 1e9
    wait = (pl.col("rsp_first_ts_ns") - pl.col("req_last_ts_ns")) / 1e9
    # same operation again later in the same logon (timeout + retry)
    in_logon = members.filter(pl.col("txn_row") >= 0).select("logon_idx", "txn_row")
    tl = tx.join(in_logon, on="txn_row", how="left").sort("req_first_ts_ns")
    nxt = pl.col("req_first_ts_ns").shift(-1).over("logon_idx", "operation")
    tl = tl.with_columns(
        _next_same=nxt,
        _repeated=nxt.is_not_null() & pl.col("logon_idx").is_not_null(),
        # asked again before its answer came: the client gave up waiting (its own timeout)
        _retried_early=(nxt < pl.col("rsp_first_ts_ns").fill_null(2**62)).fill_null(False)
        & pl.col("logon_idx").is_not_null())
    jar_refetch = _jar_refetch(tx)
    cause = (
        # (not "retries > 0": the transactions stage folds the same question from several
        # processes behind one address into one transaction; a real resolver retry shows as time)
        pl.when((pl.col("protocol") == "dns") & ((dur > thr.dns_s) | pl.col("rsp_last_ts_ns").is_null()))
        .then(pl.lit("dns_delay"))
        .when((pl.col("protocol") == "tls") & ((dur > thr.tls_handshake_s)
                                               | pl.col("status").str.contains("(?i)alert").fill_null(False)))
        .then(pl.lit("tls_handshake"))
        .when(pl.col("protocol").is_in(["giop", "http", "turn"]) & pl.col("_repeated")
              & (pl.col("rsp_first_ts_ns").is_null() | (wait >= thr.request_timeout_s) | pl.col("_retried_early")))
        .then(pl.lit("request_timeout_retry"))
        .when(pl.col("rsp_first_ts_ns").is_null() & pl.col("conn_id").is_in(lossy_conns)
              & pl.col("protocol").is_in(["giop", "http", "turn"]))
        .then(pl.lit("capture_loss"))   # its answer is probably among the frames the capture lost
        .when(pl.col("status") == "SYSTEM_EXCEPTION").then(pl.lit("system_exception"))
        .when(pl.col("status").is_in(list(FORWARD_STATUSES))).then(pl.lit("location_forward"))
        .when(pl.col("txn_row").is_in(list(jar_refetch))).then(pl.lit("jar_download"))
        .otherwise(pl.lit(None, pl.String)))
    tc = tl.select("txn_row", cause=cause,
                   give_up_ts_ns=pl.when(pl.col("_retried_early")).then(pl.col("_next_same"))
                   .otherwise(pl.lit(None, pl.Int64))).filter(pl.col("cause").is_not_null())
    return cc, tc


def _listen_backlog(cc: pl.DataFrame, window_ns: int = 10_000_000_000, min_problems: int = 3,
                    min_attempts: int = 10) -> set[int]:
    out: set[int] = set()
    for _key, g in cc.group_by("server_ip", "server_port"):
        g = g.with_columns(t=pl.coalesce("syn_ts_ns", "first_ts_ns")).sort("t")
        prob = g["connect_cause"].is_not_null().to_numpy()
        if prob.sum() < min_problems or prob.mean() > 0.5:
            continue   # the port does not normally answer: that is a dead target, not a backlog
        t = g["t"].to_numpy()
        ids = g["conn_id"].to_numpy()
        for i in np.flatnonzero(prob):
            lo, hi = np.searchsorted(t, t[i] - window_ns), np.searchsorted(t, t[i] + window_ns, side="right")
            if prob[lo:hi].sum() >= min_problems and hi - lo >= min_attempts:
                out.add(int(ids[i]))
    return out


def _idle_dropped(segments: pl.DataFrame, idle_s: float) -> set[int]:
    """Connections whose data after a long silence was resent and never answered by the server."""
    s = segments.sort("conn_id", "ts_ns", "frame").with_columns(
        _gap=(pl.col("ts_ns") - pl.col("ts_ns").shift(1).over("conn_id")))
    first_rtx = (s.filter(pl.col("retransmission") & (pl.col("direction") == 0) & (pl.col("payload_len") > 0))
                 .group_by("conn_id").agg(pl.col("rto_frame").first(), pl.col("ts_ns").first().alias("rtx_ts")))
    if first_rtx.height == 0:
        return set()
    orig = s.select(pl.col("frame").alias("rto_frame"), pl.col("_gap").alias("orig_gap"),
                    pl.col("ts_ns").alias("orig_ts"))
    j = first_rtx.join(orig, on="rto_frame", how="inner").filter(pl.col("orig_gap") >= int(idle_s * 1e9))
    out: set[int] = set()
    for cid, orig_ts in j.select("conn_id", "orig_ts").iter_rows():
        answered = s.filter((pl.col("conn_id") == cid) & (pl.col("direction") == 1) & (pl.col("ts_ns") > orig_ts)
                            & (pl.col("payload_len") > 0)).height
        if not answered:
            out.add(int(cid))
    return out


def _jar_refetch(tx: pl.DataFrame) -> set[int]:
    """HTTP 200 for a jar the same client already fetched earlier in the capture.

    Java Web Start re-fetches the .jnlp every time by design; a jar it already has should come
    back 304 (or not be asked for). The first download of a jar is not a finding.
    """
    http = tx.filter((pl.col("protocol") == "http") & pl.col("operation").str.contains(JAR_RE).fill_null(False)
                     & ~pl.col("operation").str.contains(r"(?i)\.jnlp(\?|$|\s)").fill_null(False))
    if http.height == 0:
        return set()
    http = http.with_columns(url=pl.col("operation").str.replace(r"^\S+\s+", "")).sort("req_first_ts_ns")
    http = http.with_columns(_seen_before=pl.col("req_first_ts_ns").cum_count().over("client_ip", "url") > 1)
    hit = http.filter((pl.col("status") == "200") & pl.col("_seen_before"))
    return set(hit["txn_row"].to_list())


def _filter_for(frames: list[int]) -> str:
    if not frames:
        return ""
    return "frame.number in {" + ",".join(str(f) for f in frames) + "}"


def _frames_of(iv: pl.DataFrame, mask: pl.Expr) -> list[int]:
    sel = iv.filter(mask & (pl.col("won_ns") > 0)).sort("won_ns", descending=True)
    frames: list[int] = []
    for a, b in sel.select("frame_a", "frame_b").iter_rows():
        for f in (a, b):
            if f is not None and f not in frames:
                frames.append(int(f))
        if len(frames) >= MAX_EVIDENCE_FRAMES:
            break
    return sorted(frames[:MAX_EVIDENCE_FRAMES])


def dominant_causes(cause_ns: np.ndarray, intervals: pl.DataFrame, n_logons: int
                    ) -> tuple[list[str | None], list[list[int]]]:
    """Per logon: the candidate cause with the most seconds and the frames that show it."""
    cand = np.array([CAUSE_ID[c] for c in DOMINANT_CANDIDATES])
    sub = cause_ns[:, cand] if n_logons else np.zeros((0, len(cand)), dtype=np.int64)
    best = np.argmax(sub, axis=1) if n_logons else np.array([], dtype=np.int64)
    has = sub.max(axis=1) > 0 if n_logons else np.array([], dtype=bool)
    causes: list[str | None] = [CAUSES[int(cand[b])] if h else None for b, h in zip(best, has, strict=True)]
    frames: list[list[int]] = [[] for _ in range(n_logons)]
    if intervals.height and n_logons:
        dom = pl.DataFrame({"logon_idx": np.arange(n_logons, dtype=np.int64),
                            "_dom": pl.Series(causes, dtype=pl.String)})
        ev = (intervals.filter(pl.col("won_ns") > 0).join(dom, on="logon_idx")
              .filter(pl.col("cause") == pl.col("_dom"))
              .sort(["logon_idx", "won_ns"], descending=[False, True])
              .select("logon_idx", f=pl.concat_list("frame_a", "frame_b")).explode("f").drop_nulls("f")
              .group_by("logon_idx", maintain_order=True)
              .agg(pl.col("f").unique(maintain_order=True).head(MAX_EVIDENCE_FRAMES)))
        for i, f in ev.iter_rows():
            frames[int(i)] = sorted(int(x) for x in f)
    return causes, frames


def build_findings(logons: pl.DataFrame, intervals: pl.DataFrame, cause_ns: np.ndarray,
                   connections: pl.DataFrame, transactions: pl.DataFrame, segments: pl.DataFrame | None,
                   members: pl.DataFrame, profile: Profile, extra_rows: list[dict] | None = None) -> pl.DataFrame:
    """The FINDINGS table (see module docstring); logons must carry budget columns and logon_id.

    `extra_rows` (from `connection_findings`: TCP connections outside every logon) are ranked
    and numbered together with the logon findings."""
    thr = profile.thresholds
    rows: list[dict] = list(extra_rows or [])
    ids = logons["logon_id"].to_numpy() if logons.height else np.array([], dtype=np.int64)
    total_logon_s = float(logons["duration_s"].sum()) if logons.height else 0.0
    tx = transactions.with_row_index("txn_row").with_columns(pl.col("txn_row").cast(pl.Int64))
    logon_conns = members.select("logon_idx", "conn_id").unique()

    def add(cause: str, severity: str, seconds: float, logon_idx: list[int], summary: str, detail: str,
            frames: list[int], conn_ids: list[int], wfilter: str | None = None) -> None:
        frames = sorted(set(int(f) for f in frames))[:MAX_EVIDENCE_FRAMES]
        rows.append({"cause": cause, "severity": severity, "seconds_lost": float(seconds),
                     "logons_affected": len(set(logon_idx)), "summary": summary, "detail": detail,
                     "evidence_frames": frames, "wireshark_filter": wfilter or _filter_for(frames),
                     "logon_ids": sorted({int(ids[i]) for i in logon_idx}),
                     "conn_ids": sorted({int(c) for c in conn_ids if c is not None})})

    # capture loss first: it changes how everything after it must be read
    lc = connections.join(logon_conns, on="conn_id", how="inner") if logon_conns.height else connections.clear()
    lossy = lc.filter(pl.col("unseen_bytes").fill_null(0) > 0)
    if lossy.height:
        frames: list[int] = []
        if segments is not None and segments.height:
            frames = segments.filter(pl.col("ack_lost_segment") & pl.col("conn_id").is_in(
                lossy["conn_id"].to_list()))["frame"].head(MAX_EVIDENCE_FRAMES).to_list()
        nbytes = int(lossy["unseen_bytes"].sum())
        add("capture_loss", "warning", 0.0, lossy["logon_idx"].to_list(),
            f"The capture itself missed {nbytes} bytes in {lossy['logon_idx'].n_unique()} logon(s); "
            "these gaps are the recording's, not the network's, so read any loss figures with care.",
            f"{nbytes} bytes were acknowledged by the receiver but never captured (ACKed unseen segments)"
            + (f" in {int(lossy['unseen_gaps'].sum())} gap(s)" if "unseen_gaps" in lossy.columns else "")
            + f" on {lossy.height} connection(s): the switch mirror or the capture host dropped frames. Retransmission "
            "and transfer times on these connections may be understated.",
            frames, lossy["conn_id"].to_list(),
            "tcp.analysis.ack_lost_segment" if not frames else None)

    if intervals.height == 0 or logons.height == 0:
        return _finish(rows)
    iv = intervals
    won_s = pl.col("won_ns").sum() / 1e9

    def cause_rows(cause: str) -> pl.DataFrame:
        return iv.filter((pl.col("cause") == cause) & (pl.col("won_ns") > 0))

    per_logon = {c: cause_ns[:, CAUSE_ID[c]] / 1e9 for c in CAUSES}

    def simple(cause: str, severity_of, summary_of, detail_of) -> None:
        r = cause_rows(cause)
        if r.height == 0:
            return
        secs = float(per_logon[cause].sum())     # exact: the sweep's seconds, each instant once
        lidx = r["logon_idx"].unique().to_list()
        worst = float(per_logon[cause].max())
        add(cause, severity_of(secs, worst, r), secs, lidx, summary_of(secs, len(lidx), worst, r),
            detail_of(secs, len(lidx), worst, r), _frames_of(r, pl.lit(True)), r["conn_id"].to_list())

    # connects
    def syn_detail(secs, n, worst, r):
        rto = _syn_rto(segments, r["conn_id"].unique().to_list())
        rto_txt = f"; the client's first SYN retransmission came {rto:.2f} s after its first SYN (its RTO)" if rto else ""
        return (f"{r['conn_id'].n_unique()} connection(s) needed SYN retransmissions before the server answered; "
                f"{secs:.2f} s of connect time in {n} logon(s){rto_txt}.")

    simple("syn_retransmission", lambda s, w, r: "critical" if w >= thr.slow_logon_s else "warning",
           lambda s, n, w, r: f"{n} logon(s) waited {s:.1f} s in total because the first connection attempt "
           "went unanswered and the PC had to try again.",
           syn_detail)
    simple("connect_failure", lambda s, w, r: "critical" if w >= thr.slow_logon_s else "warning",
           lambda s, n, w, r: f"{n} logon(s) lost {s:.1f} s trying to reach a server address that did not answer "
           "or refused the connection.",
           lambda s, n, w, r: f"{r['conn_id'].n_unique()} connection attempt(s) got no SYN/ACK or a reset "
           f"({_targets(connections, r)}); dead or stale target, e.g. an address taken from a forwarded IOR.")
    simple("listen_backlog", lambda s, w, r: "critical",
           lambda s, n, w, r: f"At busy moments the server did not accept new connections quickly enough; "
           f"{n} logon(s) lost {s:.1f} s.",
           lambda s, n, w, r: "SYN retries or resets clustered within 10 s on a port that normally answers, while "
           f"many connections were being opened ({_targets(connections, r)}): the listen backlog "
           "(ServerSocketQueueDepth) was full.")
    simple("dns_delay", lambda s, w, r: "warning",
           lambda s, n, w, r: f"Looking up server names was slow or failed: {s:.1f} s in {n} logon(s).",
           lambda s, n, w, r: f"DNS questions answered after more than {thr.dns_s} s, unanswered or retried: "
           f"{_ops(tx, r)}.")
    simple("tls_handshake", lambda s, w, r: "warning",
           lambda s, n, w, r: f"Setting up encrypted connections took {s:.1f} s in {n} logon(s).",
           lambda s, n, w, r: f"TLS handshakes longer than {thr.tls_handshake_s} s or ending in an alert "
           f"({r.height} handshake interval(s)).")
    simple("nagle_delayed_ack", lambda s, w, r: "warning" if w >= thr.nagle_s else "info",
           lambda s, n, w, r: f"Small messages were held back by a TCP setting (Nagle with delayed ACK): "
           f"{s:.2f} s in {n} logon(s).",
           lambda s, n, w, r: f"{r.height} stall(s): a data segment, the receiver's bare ACK "
           f"{1000 * float((r['t1'] - r['t0']).median()) / 1e9:.0f} ms later (median), then the sender's held "
           "segment right after that ACK. Ask the vendor for TCP_NODELAY on the ORB/HTTP sockets.")
    simple("request_timeout_retry", lambda s, w, r: "critical" if w >= 30 else "warning",
           lambda s, n, w, r: f"{n} logon(s) waited {s:.1f} s for a server answer that never came, then "
           "asked again.",
           lambda s, n, w, r: f"Requests unanswered (or answered after {thr.request_timeout_s} s) and then repeated: "
           f"{_ops(tx, r)}. Ask for server thread dumps at those times.")
    _detour_findings(add, tx, members, connections, logons)
    _repeated_tls(add, tx, members)
    simple("loss_recovery", lambda s, w, r: "warning" if w >= thr.loss_recovery_s else "info",
           lambda s, n, w, r: f"Lost network packets had to be sent again: {s:.2f} s in {n} logon(s).",
           lambda s, n, w, r: f"{r.height} retransmission wait(s) (from the original send to the resend, "
           f"tcp.analysis.retransmission) on {r['conn_id'].n_unique()} connection(s).")
    simple("zero_window", lambda s, w, r: "warning" if w >= thr.flow_control_s else "info",
           lambda s, n, w, r: f"A slow reader made the other side wait: {s:.2f} s in {n} logon(s).",
           lambda s, n, w, r: f"{r.height} zero-window / window-full wait(s) (tcp.analysis.zero_window, "
           "window_full): the receiving application did not read fast enough (e.g. a GC pause).")
    simple("idle_connection_dropped", lambda s, w, r: "critical",
           lambda s, n, w, r: f"A connection left idle was silently cut by a firewall; {n} logon(s) lost "
           f"{s:.1f} s before reconnecting.",
           lambda s, n, w, r: f"Data sent after >= {thr.idle_before_reuse_s} s of silence was resent and never "
           "answered, then the client gave up and reconnected: a firewall/NAT idle timeout shorter than the "
           "ORB's keep-alive.")
    simple("jar_download", lambda s, w, r: "warning" if w >= thr.jar_download_s else "info",
           lambda s, n, w, r: f"Program files were downloaded again instead of being reused from the cache: "
           f"{s:.1f} s in {n} logon(s).",
           lambda s, n, w, r: "HTTP 200 (full download) of a jar the same client had already fetched earlier in "
           f"the capture, where a 304 (not modified) was expected: {_ops(tx, r)}.")

    # server think, per operation
    srv = iv.filter((pl.col("cause") == "server_think") & (pl.col("won_ns") > 0) & (pl.col("txn_row") >= 0))
    if srv.height:
        srv = srv.join(tx.select("txn_row", "protocol", "operation", "server_think_s"), on="txn_row", how="left")
        per_op = (srv.group_by("protocol", "operation")
                  .agg(seconds=won_s, max_s=(pl.col("won_ns").max() / 1e9), n=pl.col("txn_row").n_unique(),
                       logons=pl.col("logon_idx").unique(), conns=pl.col("conn_id").unique())
                  .sort("seconds", descending=True))
        for i, (proto, op, secs, mx, n, lg, cs) in enumerate(per_op.iter_rows()):
            sev = "warning" if mx >= thr.server_think_s else "info"
            if sev == "info" and i >= 5:
                continue
            sel = srv.filter(pl.col("operation").eq_missing(op) & (pl.col("protocol") == proto))
            add("server_think", sev, secs, lg,
                f"The server took {secs / max(len(lg), 1):.2f} s per logon to answer '{op}' "
                f"(longest {mx:.2f} s).",
                f"{proto} operation '{op}': {n} call(s); server's own time (last request byte to first reply "
                f"byte, less the capture-to-server round trip) sums to {secs:.3f} s, max {mx:.3f} s.",
                _frames_of(sel, pl.lit(True)), cs)

    # client think, per client software version
    cli = iv.filter((pl.col("cause") == "client_think") & (pl.col("won_ns") > 0))
    if cli.height:
        ua = (members.filter(pl.col("txn_row") >= 0).join(tx.select("txn_row", "user_agent"), on="txn_row")
              .filter(pl.col("user_agent").is_not_null()).group_by("logon_idx")
              .agg(pl.col("user_agent").first()))
        cl = (cli.group_by("logon_idx").agg(secs=won_s, conns=pl.col("conn_id").unique())
              .join(ua, on="logon_idx", how="left")
              .with_columns(pl.coalesce(pl.col("user_agent").str.extract(r"(Java/[0-9][0-9._]*)"), "user_agent")
                            .fill_null("unknown client").alias("user_agent")))
        for (agent,), g in cl.group_by("user_agent"):
            mean = float(g["secs"].mean())
            sev = "warning" if mean >= thr.client_think_s else "info"
            sel = cli.filter(pl.col("logon_idx").is_in(g["logon_idx"].to_list()))
            add("client_think", sev, float(g["secs"].sum()), g["logon_idx"].to_list(),
                f"PCs running '{agent}' spent {mean:.2f} s per logon on their own work between server answers.",
                f"Client's own time (answer delivered to next request, less the capture-to-client round trip), "
                f"{g.height} logon(s), client software '{agent}' (HTTP User-Agent where seen).",
                _frames_of(sel, pl.lit(True)), [c for cs in g["conns"].to_list() for c in cs])

    # network round trips
    net = per_logon["network_latency"]
    share = float(net.sum()) / total_logon_s if total_logon_s > 0 else 0.0
    if share >= 0.01:   # below 1 % of logon time round trips are not worth a row
        sev = "warning" if share >= thr.network_share else "info"
        r = cause_rows("network_latency")
        # the round trips are measured on the handshakes: show the connections' first frames (SYNs)
        syn_frames = connections.filter(pl.col("conn_id").is_in(r["conn_id"].drop_nulls().unique().to_list())
                                        & pl.col("syn_ts_ns").is_not_null())["first_frame"].head(20).to_list()
        add("network_latency", sev, float(net.sum()), [int(i) for i in np.flatnonzero(net > 0)],
            f"Network round trips took {100 * share:.0f}% of logon time ({float(net.sum()):.2f} s).",
            "Round-trip propagation paid per application turn: the capture-to-server and capture-to-client "
            "round trips measured on each connection's handshake, once per request/reply turn.",
            syn_frames or _frames_of(r, pl.lit(True))[:10], r["conn_id"].drop_nulls().unique().to_list())
    return _finish(rows)


# Causes a TCP connection shows by itself, without any logon around it (issue 11 item 7).
CONNECTION_CAUSES = ("syn_retransmission", "connect_failure", "listen_backlog", "nagle_delayed_ack", "zero_window",
                     "loss_recovery", "idle_connection_dropped")


def _secs(x: float) -> str:
    return f"{1000 * x:.1f} ms" if x < 0.1 else f"{x:.2f} s"


def connection_findings(connections: pl.DataFrame, segments: pl.DataFrame | None, profile: Profile,
                        in_logons: set[int], logons_known: bool) -> list[dict]:
    """Finding rows (not yet numbered) for TCP connections that belong to no logon.

    Each such connection is its own timeline, from its first packet to its last: the logon
    budget's own intervals (build_intervals: connect, resends, zero window / window full, Nagle
    x delayed ACK) and its sweep (precedence, each instant once) run on it with the
    connection as the "logon" and times at the capture point. So a second of a connection's
    finding is counted the way a logon's would be, and nagle_delayed_ack seconds equal the
    connections table's nagle_stall_s. Only connections with something to show are swept.
    `logons_affected` is 0: no logon is known to have waited for these seconds.
    """
    from netdiag.logons.budget import build_intervals, sweep
    from netdiag.schema import TRANSACTIONS

    thr = profile.thresholds
    if connections.height == 0:
        return []
    tcp = connections.filter((pl.col("transport") == "tcp") & ~pl.col("conn_id").is_in(list(in_logons)))
    failed = pl.col("syn_ts_ns").is_not_null() & pl.col("synack_ts_ns").is_null()
    nagle = pl.col("nagle_stalls").fill_null(1) > 0 if "nagle_stalls" in tcp.columns else pl.lit(True)
    trouble = tcp.filter((pl.col("syn_retransmissions").fill_null(0) > 0) | failed
                         | pl.col("state").is_in(list(FAILED_CONNECT_STATES))
                         | (pl.col("retransmitted_segments").fill_null(0) > 0)
                         | (pl.col("zero_window_events").fill_null(0) > 0)
                         | (pl.col("window_full_events").fill_null(0) > 0) | nagle)
    rows: list[dict] = []
    where = "outside any logon" if logons_known else "no logon in this capture"

    def add(cause: str, severity: str, seconds: float, summary: str, detail: str, frames: list[int],
            conn_ids: list[int], wfilter: str | None = None) -> None:
        frames = sorted(set(int(f) for f in frames))[:MAX_EVIDENCE_FRAMES]
        rows.append({"cause": cause, "severity": severity, "seconds_lost": float(seconds), "logons_affected": 0,
                     "summary": summary, "detail": detail, "evidence_frames": frames,
                     "wireshark_filter": wfilter or _filter_for(frames), "logon_ids": [],
                     "conn_ids": sorted({int(c) for c in conn_ids})})

    lossy = tcp.filter(pl.col("unseen_bytes").fill_null(0) > 0)
    if lossy.height:
        frames = []
        if segments is not None and segments.height:
            frames = segments.filter(pl.col("ack_lost_segment") & pl.col("conn_id").is_in(
                lossy["conn_id"].to_list()))["frame"].head(MAX_EVIDENCE_FRAMES).to_list()
        nbytes = int(lossy["unseen_bytes"].sum())
        add("capture_loss", "warning", 0.0,
            f"The capture itself missed {nbytes} bytes on {lossy.height} connection(s), {where}; these gaps are "
            "the recording's, not the network's, so read any loss figures with care.",
            f"{nbytes} bytes were acknowledged by the receiver but never captured (ACKed unseen segments): the "
            "switch mirror or the capture host dropped frames.", frames, lossy["conn_id"].to_list(),
            "tcp.analysis.ack_lost_segment" if not frames else None)
    if trouble.height == 0:
        return rows
    ids = trouble["conn_id"].to_list()
    pseudo = trouble.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("logon_idx"), "conn_id",
        pl.coalesce("syn_ts_ns", "first_ts_ns").alias("start_ts_ns"),
        pl.max_horizontal(pl.col("last_ts_ns"), pl.coalesce("syn_ts_ns", "first_ts_ns") + 1).alias("end_ts_ns"),
        pl.lit(0, pl.Int64).alias("half_rtt_client_ns"))
    members = pseudo.select("logon_idx", "conn_id", kind=pl.lit("tcp"), txn_row=pl.lit(-1, pl.Int64))
    segs = segments.filter(pl.col("conn_id").is_in(ids)) if segments is not None else None
    # every connection outside a logon: a listen backlog shows only against the attempts that went well
    conn_causes, _ = label_causes(tcp, TRANSACTIONS.empty(), segs, members, profile)
    iv = build_intervals(pseudo, members, connections, TRANSACTIONS.empty(), segs, conn_causes, None)
    if iv.height == 0:
        return rows
    _cat_ns, cause_ns, won = sweep(iv, pseudo)
    iv = iv.with_columns(won_ns=pl.Series(won, dtype=pl.Int64))
    conn_of = pseudo["conn_id"].to_numpy()
    targets = {int(c): f"{a}:{p}" for c, a, p in trouble.select("conn_id", "server_ip", "server_port").iter_rows()}

    for cause in CONNECTION_CAUSES:
        per = cause_ns[:, CAUSE_ID[cause]] / 1e9
        hit = np.flatnonzero(per > 0)
        if hit.size == 0:
            continue
        secs, worst = float(per.sum()), float(per.max())
        conns = [int(conn_of[i]) for i in hit]
        r = iv.filter((pl.col("cause") == cause) & (pl.col("won_ns") > 0))
        to = ", ".join(sorted({targets[c] for c in conns})[:5]) + (" ..." if len(set(conns)) > 5 else "")
        frames = _frames_of(r, pl.lit(True))
        n = len(conns)
        if cause == "nagle_delayed_ack":
            med_ms = 1000 * float((r["t1"] - r["t0"]).median()) / 1e9
            add(cause, "warning" if worst >= thr.nagle_s else "info", secs,
                f"Small messages were held back by a TCP setting (Nagle with delayed ACK): {r.height} stall(s), "
                f"{secs:.2f} s on {n} connection(s) to {to}, {where}.",
                f"{r.height} stall(s) of {med_ms:.0f} ms (median): a data segment, the receiver's bare ACK of it "
                "after its delayed-ACK timer, then the sender's held small segment right after that ACK "
                "(connections.nagle_stalls). Ask the vendor for TCP_NODELAY on these sockets.", frames, conns)
        elif cause == "zero_window":
            add(cause, "warning" if worst >= thr.flow_control_s else "info", secs,
                f"A slow reader made the other side wait {secs:.2f} s on {n} connection(s) to {to}, {where}.",
                f"{r.height} zero-window / window-full wait(s) (tcp.analysis.zero_window, window_full): the receiving "
                "application did not read fast enough (e.g. a GC pause). Seconds: from the window filling up (or "
                "closing) until it reopened.", frames, conns)
        elif cause == "loss_recovery":
            add(cause, "warning" if worst >= thr.loss_recovery_s else "info", secs,
                f"Lost packets had to be sent again: {_secs(secs)} on {n} connection(s) to {to}, {where}.",
                f"{r.height} retransmission wait(s) (from the original send to the resend, "
                "tcp.analysis.retransmission).", frames, conns)
        elif cause == "syn_retransmission":
            rto = _syn_rto(segments, conns)
            add(cause, "critical" if worst >= thr.slow_logon_s else "warning", secs,
                f"{n} connection(s) to {to} waited {_secs(secs)} in total because the first connection attempt "
                f"went unanswered and the client had to try again; {where}.",
                "SYN retransmissions before the server answered; seconds from the first SYN to the SYN/ACK"
                + (f"; the client's first SYN retransmission came {rto:.2f} s after its first SYN" if rto else "")
                + ".", frames, conns)
        elif cause == "connect_failure":
            add(cause, "critical" if worst >= thr.slow_logon_s else "warning", secs,
                f"{n} connection attempt(s) to {to} got no answer or were refused; {_secs(secs)} spent trying, "
                f"{where}.",
                "SYN without SYN/ACK, or answered by RST; seconds from the first SYN to the attempt's last packet.",
                frames, conns)
        elif cause == "listen_backlog":
            add(cause, "critical", secs,
                f"At busy moments the server did not accept new connections quickly enough: {secs:.1f} s on {n} "
                f"connection(s) to {to}, {where}.",
                "SYN retries or resets clustered within 10 s on a port that normally answers, while many connections "
                "were being opened: the listen backlog was full.", frames, conns)
        elif cause == "idle_connection_dropped":
            add(cause, "critical", secs,
                f"A connection left idle was silently cut by a firewall: {secs:.1f} s on {n} connection(s) to {to}, "
                f"{where}.",
                f"Data sent after >= {thr.idle_before_reuse_s} s of silence was resent and never answered.",
                frames, conns)
    return rows


def _detour_findings(add, tx: pl.DataFrame, members: pl.DataFrame, connections: pl.DataFrame,  # noqa: ANN001
                     logons: pl.DataFrame) -> None:
    """system_exception and location_forward: the detour from the error/forward to the answer.

    These replies take no time themselves; what they cost is the detour they cause: from the
    exception reply to the answer of the same operation asked again, and from the forward reply
    to the first answer from the forwarded host:port. Those seconds overlap budget categories
    (connect, server...), so they are reported as the detour's length, not added to the budget.
    """
    tm = (members.filter(pl.col("txn_row") >= 0).select("logon_idx", "txn_row").join(tx, on="txn_row")
          .join(connections.select("conn_id", pl.col("server_ip").alias("_sip"), pl.col("server_port").alias("_sp"),
                                   pl.col("first_frame").alias("_cf")), on="conn_id", how="left")
          .join(logons.select("logon_idx", "end_ts_ns"), on="logon_idx", how="left"))
    # system exceptions: until the same operation is answered without one
    exc = tm.filter(pl.col("status") == "SYSTEM_EXCEPTION")
    if exc.height:
        ok = tm.filter(pl.col("status") == "NO_EXCEPTION").select(
            "logon_idx", "operation", pl.col("rsp_last_ts_ns").alias("_ok_ts"), pl.col("last_frame").alias("_ok_f"))
        j = (exc.join(ok, on=["logon_idx", "operation"], how="left")
             .filter(pl.col("_ok_ts").is_null() | (pl.col("_ok_ts") > pl.col("rsp_last_ts_ns")))
             .group_by("txn_row").agg(pl.all().sort_by("_ok_ts").first()))
        j = j.with_columns(detour_s=((pl.col("_ok_ts").fill_null(pl.col("end_ts_ns")) - pl.col("rsp_last_ts_ns"))
                                     .clip(lower_bound=0) / 1e9))
        ids = ", ".join(f"{op}: {ex or 'unknown'}" for op, ex in
                        j.select("operation", "exception_id").unique().sort("operation").iter_rows())
        retried = int(j["_ok_ts"].is_not_null().sum())
        add("system_exception", "warning", float(j["detour_s"].sum()), j["logon_idx"].to_list(),
            f"The server answered with an error in {j['logon_idx'].n_unique()} logon(s); getting past it took "
            f"{float(j['detour_s'].sum()):.2f} s.",
            f"{j.height} GIOP SYSTEM_EXCEPTION replies ({ids}); {retried} followed by a successful retry of the same "
            "operation. Seconds: from the exception reply to the successful answer (or the logon's end).",
            [f for pair in j.select("last_frame", "_ok_f").iter_rows() for f in pair if f is not None],
            j["conn_id"].to_list())
    # location forwards: until the first answer from the forwarded host:port
    fw = tm.filter(pl.col("status").is_in(list(FORWARD_STATUSES)))
    if fw.height:
        answers = tm.filter(pl.col("rsp_first_ts_ns").is_not_null()).select(
            "logon_idx", pl.col("_sip").alias("forward_host"), pl.col("_sp").cast(pl.UInt16).alias("forward_port"),
            pl.col("rsp_first_ts_ns").alias("_ans_ts"), pl.col("_cf").alias("_new_conn_frame"))
        j = (fw.with_columns(pl.col("forward_port").cast(pl.UInt16))
             .join(answers, on=["logon_idx", "forward_host", "forward_port"], how="left")
             .filter(pl.col("_ans_ts").is_null() | (pl.col("_ans_ts") > pl.col("rsp_last_ts_ns")))
             .group_by("txn_row").agg(pl.all().sort_by("_ans_ts").first()))
        j = j.with_columns(detour_s=((pl.col("_ans_ts").fill_null(pl.col("end_ts_ns")) - pl.col("rsp_last_ts_ns"))
                                     .clip(lower_bound=0) / 1e9))
        failed = _forward_failures(tx, connections, members)
        per_logon = j.group_by("logon_idx").len()
        many = int(per_logon["len"].max()) > 2 if per_logon.height else False
        targets = ", ".join(sorted({f"{h}:{p}" for h, p in j.select("forward_host", "forward_port").iter_rows()
                                    if h is not None}))
        add("location_forward", "warning" if failed or many else "info", float(j["detour_s"].sum()),
            j["logon_idx"].to_list(),
            f"The server redirected {j['logon_idx'].n_unique()} logon(s) to another address"
            + (" that then failed" if failed else "") + f"; the detour took {float(j['detour_s'].sum()):.2f} s.",
            f"{j.height} LOCATION_FORWARD / OBJECT_FORWARD replies ({', '.join(sorted(set(j['operation'].drop_nulls().to_list())))}) "
            f"forwarding to {targets or 'n/a'}" + (f"; failed connects to forward targets: {failed}" if failed else "")
            + ". Seconds: from the forward reply to the first answer from the forwarded address.",
            [f for pair in j.select("last_frame", "_new_conn_frame").iter_rows() for f in pair if f is not None],
            j["conn_id"].to_list())


def _repeated_tls(add, tx: pl.DataFrame, members: pl.DataFrame) -> None:  # noqa: ANN001
    """Full TLS handshakes repeated to the same server port within one logon (no session reuse)."""
    tls = (members.filter(pl.col("txn_row") >= 0).select("logon_idx", "txn_row").join(tx, on="txn_row")
           .filter((pl.col("protocol") == "tls")
                   & ~pl.col("detail").str.contains('"resumed":true').fill_null(False))
           .sort("req_first_ts_ns")
           .with_columns(_nth=pl.int_range(pl.len()).over("logon_idx", "server_ip", "server_port")))
    extra = tls.filter(pl.col("_nth") >= 1)
    if extra.height == 0:
        return
    secs = float(((extra["rsp_last_ts_ns"].fill_null(extra["req_last_ts_ns"]) - extra["req_first_ts_ns"]) / 1e9).sum())
    worst = int(tls.group_by("logon_idx", "server_ip", "server_port").len()["len"].max())
    add("tls_handshake", "warning" if worst >= 3 else "info", secs, extra["logon_idx"].to_list(),
        f"Encrypted connections were set up from scratch again and again ({worst} full handshakes to one "
        f"server in a logon), costing {secs:.2f} s.",
        f"{extra.height} full TLS handshake(s) repeated to the same server port within a logon without session "
        "resumption (ServerHello did not resume): ask for TLS session reuse on the client and server.",
        extra["first_frame"].to_list(), extra["conn_id"].to_list())


def finish_findings(rows: list[dict]) -> pl.DataFrame:
    """Rank finding rows (capture loss first, then severity, then seconds) and number them F001..."""
    return _finish(rows)


def _finish(rows: list[dict]) -> pl.DataFrame:
    if not rows:
        return FINDINGS.empty()
    df = pl.DataFrame(rows, schema_overrides={"evidence_frames": pl.List(pl.Int64), "logon_ids": pl.List(pl.UInt32),
                                              "conn_ids": pl.List(pl.UInt32)})
    df = df.with_columns(
        _first=(pl.col("cause") != "capture_loss"),
        _sev=pl.col("severity").replace_strict(SEVERITY_ORDER, return_dtype=pl.Int64),
    ).sort(["_first", "_sev", "seconds_lost"], descending=[False, False, True])
    df = df.with_columns(id=pl.format("F{}", pl.int_range(1, df.height + 1).cast(pl.String).str.zfill(3)))
    return FINDINGS.conform(df)


def _syn_rto(segments: pl.DataFrame | None, conn_ids: list[int]) -> float | None:
    if segments is None or segments.height == 0:
        return None
    syns = (segments.filter(pl.col("conn_id").is_in(conn_ids) & ((pl.col("tcp_flags") & 0x12) == 0x02))
            .sort("conn_id", "ts_ns").with_columns(gap=pl.col("ts_ns").diff().over("conn_id"))
            .filter(pl.col("gap").is_not_null()))
    if syns.height == 0:
        return None
    first_gaps = syns.group_by("conn_id").agg(pl.col("gap").first())
    return float(first_gaps["gap"].median()) / 1e9


def _targets(connections: pl.DataFrame, r: pl.DataFrame) -> str:
    t = connections.filter(pl.col("conn_id").is_in(r["conn_id"].unique().to_list()))
    names = sorted({f"{a}:{p}" for a, p in t.select("server_ip", "server_port").iter_rows()})
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def _ops(tx: pl.DataFrame, r: pl.DataFrame) -> str:
    t = tx.filter(pl.col("txn_row").is_in(r["txn_row"].unique().to_list()))
    counts = t.group_by("operation").len().sort("len", descending=True)
    return ", ".join(f"{op} x{n}" for op, n in counts.head(6).iter_rows()) or "n/a"


def _exceptions(tx: pl.DataFrame, r: pl.DataFrame) -> str:
    t = tx.filter(pl.col("txn_row").is_in(r["txn_row"].unique().to_list()))
    counts = t.group_by("operation", "exception_id").len().sort("len", descending=True)
    return ", ".join(f"{op}: {ex or 'unknown'} x{n}" for op, ex, n in counts.head(6).iter_rows()) or "n/a"


def _forward_targets(tx: pl.DataFrame, r: pl.DataFrame) -> str:
    t = tx.filter(pl.col("txn_row").is_in(r["txn_row"].unique().to_list()) & pl.col("forward_host").is_not_null())
    names = sorted({f"{h}:{p}" for h, p in t.select("forward_host", "forward_port").iter_rows()})
    return ", ".join(names[:5]) or "n/a"


def _forward_failures(tx: pl.DataFrame, connections: pl.DataFrame, members: pl.DataFrame) -> str:
    fw = tx.filter(pl.col("status").is_in(list(FORWARD_STATUSES)) & pl.col("forward_host").is_not_null())
    if fw.height == 0:
        return ""
    failed = connections.filter(pl.col("state").is_in(list(FAILED_CONNECT_STATES)))
    targets = {(h, int(p)) for h, p in fw.select("forward_host", "forward_port").iter_rows() if p is not None}
    bad = sorted({f"{a}:{p}" for a, p in failed.select("server_ip", "server_port").iter_rows() if (a, int(p)) in targets})
    return ", ".join(bad)


def _max_forwards(tx: pl.DataFrame, members: pl.DataFrame) -> int:
    fw = (members.filter(pl.col("txn_row") >= 0).join(tx.select("txn_row", "status"), on="txn_row")
          .filter(pl.col("status").is_in(list(FORWARD_STATUSES))).group_by("logon_idx").len())
    return int(fw["len"].max()) if fw.height else 0
