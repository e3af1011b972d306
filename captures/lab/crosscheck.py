"""tshark cross-check of the lab captures: what Wireshark sees in each file against its truth file.

    python -m captures.lab.crosscheck [captures/lab/NAME.pcap ...]     # default: every lab capture

tshark (Wireshark's dissectors, an implementation independent of netdiag and of the lab's peers)
reads each capture once (``-T fields``, with ``frame.generate_md5_hash`` on, TLS decrypted with the
scenario's key log). Each check compares one tshark figure with the truth written by run.py from
the peers' and the bridge's logs: GIOP requests by operation (giop.request_op), GIOP reply
statuses, HTTP requests and statuses, DNS queries, TCP connections (SYNs), handshake RTTs
(tcp.analysis.initial_rtt), retransmissions, the bridge's dropped frames (by MD5) and their
resends (same sequence number), the bridge's delayed frames at its logged receive/send times,
frames cut from the file, server time per request, zero windows, TLS versions. A check ends ``agree``, ``known`` (the figures differ for a reason written in
KNOWN below, e.g. a receiver-side capture cannot flag a retransmission whose original it never
saw) or ``DISAGREE``.
"""

from __future__ import annotations

import collections
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

LAB_DIR = Path(__file__).resolve().parent

FIELDS = ["frame.number", "frame.time_epoch", "frame.md5_hash", "ip.src", "ip.dst", "tcp.stream", "tcp.srcport",
          "tcp.dstport", "tcp.flags.syn", "tcp.flags.ack", "tcp.seq_raw", "tcp.len",
          "tcp.analysis.retransmission", "tcp.analysis.fast_retransmission", "tcp.analysis.spurious_retransmission",
          "tcp.analysis.out_of_order", "tcp.analysis.zero_window", "tcp.analysis.initial_rtt", "giop.type",
          "giop.request_op", "giop.request_id", "giop.replystatus", "http.request", "http.response.code",
          "dns.flags.response", "udp.dstport", "tls.handshake.type", "tls.handshake.extensions.supported_version",
          "tls.handshake.version"]

# (scenario, check) -> why tshark and the truth legitimately differ on that file
KNOWN: dict[tuple[str, str], str] = {
    ("capture_drops", "server_time_requests_matched"):
        "the frame carrying the authenticate request was cut from the file on purpose, so its reply has no request",
    ("nagle_delayed_ack", "server_time_upper_bound"):
        "Nagle on: the first reply bytes wait in the server's socket for the ACK of earlier small data, so the "
        "wire shows them later than the server's write (that wait is the fault this capture shows)",
    ("loss_c2s_before_capture", "giop_requests_by_op"):
        "the getUserContext request's first copy was lost before the capture point; before its resend the "
        "client's D-SACK ACK (seq past the lost request) moved tshark's next-sequence mark, so tshark labels the "
        "resend a retransmission and does not dissect it as GIOP (the server did get and answer it)",
    ("loss_c2s_before_capture", "server_time_requests_matched"):
        "getUserContext: tshark does not dissect its request (labelled retransmission, see giop_requests_by_op)",
    ("storm", "server_time_upper_bound"):
        "20 ORB processes on 2 cores: a few ms pass between the server's logged write and the frame on the wire",
}


@dataclass
class Check:
    """One comparison row."""

    name: str
    truth: object
    tshark: object
    ok: bool
    note: str = ""
    status: str = ""


def tshark_frames(pcap: Path, keys: Path | None = None) -> list[dict]:
    """One dict per frame with FIELDS (multi-valued fields as lists), read by tshark."""
    cmd = ["tshark", "-n", "-r", str(pcap), "-o", "frame.generate_md5_hash:TRUE", "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    if keys is not None and keys.exists():
        cmd += ["-o", f"tls.keylog_file:{keys}"]
    for f in FIELDS:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"tshark failed on {pcap}: {res.stderr.strip()}")
    frames = []
    for line in res.stdout.splitlines():
        vals = line.split("\t")
        frames.append({f: (v.split("|") if "|" in v else v) for f, v in zip(FIELDS, vals, strict=False)})
    return frames


def _list(v: object) -> list[str]:
    if isinstance(v, list):
        return v
    return [v] if v else []   # type: ignore[list-item]


def _flag(fr: dict, field: str) -> bool:
    return bool(_list(fr.get(field)))


def tshark_view(frames: list[dict]) -> dict:
    """Summaries of what tshark saw (the right-hand column of every check)."""
    view: dict = {"frames": len(frames)}
    ops: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[str] = collections.Counter()
    for fr in frames:
        types, opl, rsl = _list(fr["giop.type"]), _list(fr["giop.request_op"]), _list(fr["giop.replystatus"])
        oi = iter(opl)
        for t in types:
            if t == "0":
                ops[next(oi, "?")] += 1
        for s in rsl:
            statuses[s] += 1
    view["giop_requests_by_op"] = dict(sorted(ops.items()))
    view["giop_reply_status"] = dict(sorted(statuses.items()))
    view["http_requests"] = sum(len(_list(fr["http.request"])) for fr in frames)
    codes = collections.Counter(c for fr in frames for c in _list(fr["http.response.code"]))
    view["http_status_counts"] = dict(sorted(codes.items()))
    view["dns_queries"] = sum(1 for fr in frames if _list(fr["dns.flags.response"]) == ["0"]
                              or (_list(fr["dns.flags.response"]) and _list(fr["dns.flags.response"])[0] in ("0", "False")))
    syn_streams = {fr["tcp.stream"] for fr in frames if fr["tcp.flags.syn"] in ("1", "True")
                   and fr["tcp.flags.ack"] in ("0", "False")}
    view["tcp_connections"] = len(syn_streams)
    irtt = {}
    for fr in frames:
        if fr["tcp.analysis.initial_rtt"] and fr["tcp.stream"] not in irtt:
            irtt[fr["tcp.stream"]] = float(_list(fr["tcp.analysis.initial_rtt"])[0]) * 1000.0
    view["initial_rtt_ms"] = irtt
    view["retransmissions"] = sum(1 for fr in frames if _flag(fr, "tcp.analysis.retransmission")
                                  or _flag(fr, "tcp.analysis.fast_retransmission")
                                  or _flag(fr, "tcp.analysis.spurious_retransmission"))
    # The bridge keeps each direction FIFO, so in these files a TCP frame tshark calls out-of-order is a
    # resend that came too soon after the gap for tshark's retransmission heuristic (< 3 ms).
    view["out_of_order"] = sum(1 for fr in frames if _flag(fr, "tcp.analysis.out_of_order"))
    view["zero_windows"] = sum(1 for fr in frames if _flag(fr, "tcp.analysis.zero_window"))
    view["md5s"] = {fr["frame.md5_hash"] for fr in frames}
    tls_versions = []
    for fr in frames:
        if "2" in _list(fr["tls.handshake.type"]):   # ServerHello: supported_versions ext. (1.3) or legacy version
            sv = _list(fr["tls.handshake.extensions.supported_version"])
            tls_versions.append(sv[0] if sv else _list(fr["tls.handshake.version"])[0])
    view["tls_server_versions"] = sorted(tls_versions)
    return view


def request_gaps_ms(frames: list[dict]) -> dict[tuple[int, int], float]:
    """(client port, GIOP request id) -> ms from the request's frame to the first server payload frame after it.

    The lab's calls are synchronous (one outstanding request per connection), so the next frame
    with payload from the server on that connection carries the first bytes of the reply.
    """
    gaps = {}
    pending: dict[str, tuple[int, int, float]] = {}
    for fr in frames:
        stream = fr["tcp.stream"]
        if not stream:
            continue
        t = float(fr["frame.time_epoch"])
        types, ids = _list(fr["giop.type"]), _list(fr["giop.request_id"])
        if "0" in types and fr["tcp.dstport"] in ("9100", "2809"):
            rid = int(ids[types.index("0")]) if len(ids) > types.index("0") else -1
            pending[stream] = (int(fr["tcp.srcport"]), rid, t)
        elif stream in pending and fr["tcp.srcport"] in ("9100", "2809") and fr["tcp.len"] not in ("", "0"):
            port, rid, t0 = pending.pop(stream)
            gaps[(port, rid)] = (t - t0) * 1000.0
    return gaps


def compare(truth: dict, frames: list[dict]) -> list[Check]:
    """Every check for one capture (see module docstring)."""
    v = tshark_view(frames)
    exp = truth["expected"]
    point = truth["capture_point"]["where"]
    checks: list[Check] = []

    def add(name: str, t: object, s: object, ok: bool, note: str = "") -> None:
        checks.append(Check(name, t, s, ok, note))

    add("giop_requests_by_op", exp["giop_requests_by_op_in_file"], v["giop_requests_by_op"],
        exp["giop_requests_by_op_in_file"] == v["giop_requests_by_op"],
        "client ORB trace (Requests sent) minus requests cut from the file")
    srv_status = collections.Counter(r["reply_status"] for r in truth["server_requests"]
                                     if r.get("message_type") == "Request" and r["reply_status"] != "never sent")
    ts_status = {"NO_EXCEPTION": "0", "USER_EXCEPTION": "1", "SYSTEM_EXCEPTION": "2", "LOCATION_FORWARD": "3"}
    for st in ("SYSTEM_EXCEPTION", "LOCATION_FORWARD"):
        add(f"giop_replies_{st}", srv_status.get(st, 0), v["giop_reply_status"].get(ts_status[st], 0),
            srv_status.get(st, 0) == v["giop_reply_status"].get(ts_status[st], 0), "server.py's reply log")
    want_http = exp["http_requests_in_file"] + exp["https_requests"]
    add("http_requests", want_http, v["http_requests"], want_http == v["http_requests"],
        "client http_end + https_end (HTTPS decrypted with the key log)")
    add("dns_queries", exp["dns_queries_at_capture_point"], v["dns_queries"],
        exp["dns_queries_at_capture_point"] == v["dns_queries"],
        "client resolver sends minus queries the bridge dropped before the capture point")
    add("tcp_connections", exp["tcp_connections"]["total"], v["tcp_connections"],
        exp["tcp_connections"]["total"] == v["tcp_connections"],
        "server-seen ORB client addresses + naming peers per logon + web server client addresses "
        "(+ the tcpstall client's own connections)")

    added = truth["injected"]["added_rtt_ms"]
    if v["initial_rtt_ms"]:
        med = statistics.median(v["initial_rtt_ms"].values())
        add("handshake_rtt_median_ms", added, round(med, 3), added <= med + 0.5 and med < added + 10,
            "bridge delay c2s + s2c; veths add well under 10 ms")

    dropped = truth["impairment_log"]["frames_dropped"]
    upstream = {"client": "c2s", "server": "s2c", "middle": "s2c"}[point]
    seen = [d for d in dropped if d["dir"] == upstream]
    unseen = [d for d in dropped if d["dir"] != upstream]
    add("dropped_frames_present_upstream", len(seen), sum(1 for d in seen if d["md5"] in v["md5s"]),
        all(d["md5"] in v["md5s"] for d in seen), "a frame dropped by the bridge was captured before the drop")
    add("dropped_frames_absent_downstream", 0, sum(1 for d in unseen if d["md5"] in v["md5s"]),
        not any(d["md5"] in v["md5s"] for d in unseen), "a frame dropped before the capture point never reaches it")
    resent = 0
    tcp_unseen = [d for d in unseen if d.get("proto") == "tcp"]
    for d in tcp_unseen:
        src_port, dst_port = d["src"].rsplit(":", 1)[1], d["dst"].rsplit(":", 1)[1]
        if any(fr["tcp.seq_raw"] == str(d["seq"]) and fr["tcp.srcport"] == src_port and fr["tcp.dstport"] == dst_port
               and float(fr["frame.time_epoch"]) * 1e9 > d["ts_in_ns"] for fr in frames):
            resent += 1
    add("dropped_tcp_frames_resent", len(tcp_unseen), resent, resent == len(tcp_unseen),
        "the sender's retransmission (same seq) reaches the capture point after the drop")
    delayed = truth["impairment_log"].get("frames_delayed", [])
    if delayed:
        # the capture point sees a delayed frame when the bridge received it (upstream) or sent it on
        first: dict[str, float] = {}
        for fr in frames:
            first.setdefault(fr["frame.md5_hash"], float(fr["frame.time_epoch"]) * 1e9)
        off, absent = [], 0
        for d in delayed:
            if d["md5"] not in first or "ts_out_ns" not in d:
                absent += 1
                continue
            ref = d["ts_in_ns"] if d["dir"] == upstream else d["ts_out_ns"]
            off.append(abs(first[d["md5"]] - ref) / 1e6)
        worst = max(off, default=0.0)
        add("delayed_frames_timing", f"{len(delayed)} frames, |offset| < 1 ms", f"{len(off)} found, {absent} absent, "
            f"worst {worst:.3f} ms", absent == 0 and worst < 1.0,
            "each frame the bridge delayed is in the file at the bridge's receive time (upstream of it) or send "
            "time (downstream), matched by MD5")
    kernel = truth["expected"].get("tcp_segments_retransmitted_by_kernels")
    if kernel is not None:
        # every segment a kernel resent crosses the capture point; tshark can flag it only when it
        # saw the original, so resends of frames dropped upstream of the capture may pass unflagged
        low = kernel - len(tcp_unseen)
        flagged = v["retransmissions"] + v["out_of_order"]
        add("retransmissions_flagged", f"{low}..{kernel}", flagged, low <= flagged <= kernel,
            "client + server kernels' TcpRetransSegs (nstat) during the capture, less resends of frames "
            "dropped before the capture point; tshark: retransmission + fast + spurious + out-of-order")
    removed = truth["capture_drops"]
    captured = truth["capture_point"]["tcpdump_counters"].get("captured")
    if captured is not None:
        add("frames_in_file", captured - len(removed), v["frames"], captured - len(removed) == v["frames"],
            "tcpdump's 'packets captured' minus frames cut by run.py")
    if removed:
        add("cut_frames_absent", 0, sum(1 for r in removed if r["md5"] in v["md5s"]),
            not any(r["md5"] in v["md5s"] for r in removed), "frames cut from the file are gone")

    gaps = request_gaps_ms(frames)
    early, late, missing, n, worst_late = [], [], 0, 0, 0.0
    slack = 3.0 if point == "server" else added + 15.0
    first_on_conn = set()
    seen_conn = set()
    for r in sorted(truth["server_requests"], key=lambda r: r["received_ts_ns"]):
        if (r["server"], r["client"]) not in seen_conn:
            seen_conn.add((r["server"], r["client"]))
            first_on_conn.add((r["server"], r["client"], r["request_id"]))
    cold = []
    # tcpdump stops ~0.8 s after capture_end_ts_ns; a reply logged later is not in the file
    cap_end = truth["capture_point"]["capture_end_ts_ns"] + 500_000_000
    for r in truth["server_requests"]:
        if r.get("message_type") != "Request" or r.get("reply_ts_ns") is None or r.get("server_time_ms") is None:
            continue
        if r["reply_ts_ns"] > cap_end:
            continue
        g = gaps.get((int(r["client"].rsplit(":", 1)[1]), int(r["request_id"])))
        if g is None:
            missing += 1
            continue
        n += 1
        if g < float(r["server_time_ms"]) - 2.0:
            early.append(f"{r['op']}#{r['request_id']}")
        if (r["server"], r["client"], r["request_id"]) in first_on_conn:
            # omniORB starts the connection's reader thread before it reads (and logs) the first
            # message, so the server's clock starts late for it: measured, reported, not bounded
            cold.append(round(g - float(r["server_time_ms"]), 1))
        elif g > float(r["server_time_ms"]) + slack:
            late.append(f"{r['op']}#{r['request_id']}")
            worst_late = max(worst_late, g - float(r["server_time_ms"]))
    add("server_time_requests_matched", n + missing, n, missing == 0,
        "server.py's Request/reply pairs (replies logged before the capture ended) found in the file as "
        "request frame + first reply frame")
    add("server_time_lower_bound", 0, len(early), not early,
        "no reply starts on the wire sooner than the server's own measured time (- 2 ms clock slack)")
    bounded = n - len(cold)
    allowed = max(1, bounded // 5)
    add("server_time_upper_bound", f"<= {allowed} of {bounded}", f"{len(late)} (worst +{worst_late:.1f} ms)",
        len(late) <= allowed,
        f"request -> first reply frame at most server time + {slack:g} ms at the {point} capture point for all "
        f"but 1 in 5 requests: the server's clock starts when omniORB reads the request, and on a loaded 2-core "
        f"machine that read (or the write after the reply is logged) can lag the wire by tens of ms; first "
        f"Requests on a fresh connection excluded (reader thread start-up), their extra ms: {cold}")

    paused = any(e["event"] == "client_paused" for e in truth["client_events"]) or any(
        e["event"] == "reader_paused" for e in truth.get("tcp_stalls", {}).get("client_events", []))
    add("zero_window_seen", paused, v["zero_windows"] > 0, paused == (v["zero_windows"] > 0),
        "client process stopped with a small receive buffer (client_paused / reader_paused in its log)")
    tls = sorted([{"1.2": "0x0303", "1.3": "0x0304"}[e["version"][-3:]] for e in truth["client_events"]
                  if e["event"] == "tls_handshake_done"])   # one per handshake (https_jars has two of 1.3)
    if tls or v["tls_server_versions"]:
        add("tls_versions", tls, v["tls_server_versions"], tls == v["tls_server_versions"],
            "client's ssl version() per handshake vs ServerHello")

    for c in checks:
        reason = KNOWN.get((truth["scenario"], c.name))
        c.status = "agree" if c.ok else ("known" if reason else "DISAGREE")
        if not c.ok and reason:
            c.note = reason
    return checks


def check_capture(pcap: Path) -> list[Check]:
    """Run tshark on pcap and compare with the truth file beside it."""
    truth = json.loads(pcap.with_suffix(".truth.json").read_text())
    keys = pcap.with_suffix(".keys")
    return compare(truth, tshark_frames(pcap, keys if keys.exists() else None))


def report(pcap: Path, out: TextIO) -> int:
    """Print the checks for one capture; return the number of unexplained disagreements."""
    checks = check_capture(pcap)
    out.write(f"== {pcap.name}\n")
    for c in checks:
        out.write(f"  {c.status:8s} {c.name:34s} truth={c.truth!s:28s} tshark={c.tshark!s}\n")
        if c.status != "agree":
            out.write(f"           why: {c.note}\n")
    return sum(1 for c in checks if c.status == "DISAGREE")


def main(argv: list[str] | None = None) -> int:
    """Command line: cross-check the given captures (default: every captures/lab/*.pcap)."""
    args = sys.argv[1:] if argv is None else argv
    pcaps = [Path(a) for a in args] or sorted(LAB_DIR.glob("*.pcap"))
    bad = 0
    for p in pcaps:
        if not p.with_suffix(".truth.json").exists():
            print(f"error: {p}: no truth file {p.with_suffix('.truth.json').name}", file=sys.stderr)
            bad += 1
            continue
        try:
            bad += report(p, sys.stdout)
        except (RuntimeError, OSError, json.JSONDecodeError, KeyError) as exc:
            print(f"error: {p}: {exc}", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
