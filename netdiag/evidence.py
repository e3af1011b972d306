"""Evidence excerpts: the smallest capture that shows one logon or finding, with per-frame notes.

Why: a vendor engineer (IBM, the EPJ supplier) will not open a 5 GB hospital capture, but will
open a 200-frame pcapng in Wireshark in which the frames that matter say what they show
("SYN retransmitted after 3.0 s: connect delayed", "server think 4.20 s for authenticate").

What goes in: every frame of the connections involved (a logon's connections; a finding's
connections, or those of its logons when the finding names none; a finding seen in several
logons is shown in the logon where its cause cost the most, unless all_logons) between the first and the
last packet of those connections, plus the DNS flows (UDP/TCP to a DNS port) of the same client
addresses from DNS_LEAD_S before that window to its end. Frames keep their original bytes
(or sanitised bytes, see netdiag.sanitize), lengths and timestamps to the nanosecond; frame
numbers change (the excerpt is a new file), so each comment names the original frame number.

Comments come from the analysis tables, never from re-reading payload: SYN and data
retransmissions (segments.rto_s), zero windows, capture loss, slow server answers
(transactions.server_think_s), GIOP exceptions and forwards, slow or unanswered DNS, and the
finding's or logon's own evidence frames. Written with netdiag.pcapng_writer (pcapng
opt_comment, shown by Wireshark/tshark 4.0 as `frame.comment`).

The original frame bytes by Wireshark frame number come from netdiag.capture.raw (`read_raw_frames`,
re-exported here), read with netdiag.capture's own file walkers so frame numbers agree with every table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import polars as pl

from netdiag.capture.raw import RawFrames, read_raw_frames
from netdiag.capture.tcp_flags import TH_ACK, TH_SYN
from netdiag.errors import CaptureError, UsageError
from netdiag.filters import evidence_filter
from netdiag.words import fmt_s

if TYPE_CHECKING:
    from netdiag.pipeline import Analysis

DNS_LEAD_S = 5.0          # DNS asked this long before the first connection still belongs to it
SLOW_THINK_S = 0.5        # a server answer at least this slow gets a comment even outside the finding
MIN_EVIDENCE_THINK_S = 0.01  # ... and so does one among the evidence frames from this
SLOW_DNS_S = 0.2          # a DNS answer at least this slow gets a comment
MAX_COMMENT_CHARS = 300


# ------------------------------------------------------------------------------------------
# Choosing the frames and their comments
# ------------------------------------------------------------------------------------------
@dataclass
class Excerpt:
    """What an evidence file holds: frames (original numbers), their comments, and why."""

    title: str
    frames: list[int]
    comments: dict[int, str]
    conn_ids: list[int]
    start_ts_ns: int
    end_ts_ns: int
    wireshark_filter: str
    subject: dict[str, Any] = field(default_factory=dict)
    tag: str = ""                       # the finding id; its comments start with "[tag]" (netdiag.filters)
    tagged: frozenset[int] = frozenset()  # the frames whose comment carries the tag: the finding's own


def _valid_ids(df: pl.DataFrame, col: str) -> str:
    ids = [str(v) for v in df[col].to_list()] if df.height else []
    return ", ".join(ids) if ids else "none (the capture holds no logon)"


def _subject(a: Analysis, logon_id: int | None, finding_id: str | None, all_logons: bool = False,
             logons: int = 1) -> tuple[str, list[int], list[int], list[int], dict[str, Any]]:
    """(title, conn_ids, evidence frames, logon ids, subject row) for the logon or finding asked for.

    A finding seen in several logons keeps the `logons` where its cause cost the most (all
    with `all_logons`): one logon is the smallest capture, more show the pattern across logons.
    """
    if (logon_id is None) == (finding_id is None):
        raise UsageError("give exactly one of --logon ID and --finding ID")
    if logon_id is not None:
        row = a.logons.filter(pl.col("logon_id") == logon_id)
        if row.height == 0:
            raise UsageError(f"no logon {logon_id}; valid logon ids: {_valid_ids(a.logons, 'logon_id')}")
        r = row.row(0, named=True)
        title = (f"logon {logon_id}: {fmt_s(r['duration_s'])}, {r['outcome']}, dominant cause "
                 f"{r['dominant_cause']}")
        return title, list(r["conn_ids"] or []), list(r["evidence_frames"] or []), [logon_id], r
    row = a.findings.filter(pl.col("id") == finding_id)
    if row.height == 0:
        raise UsageError(f"no finding {finding_id!r}; valid finding ids: {_valid_ids(a.findings, 'id')}")
    r = row.row(0, named=True)
    conns = list(r["conn_ids"] or [])
    logon_ids = list(r["logon_ids"] or [])
    title = f"finding {finding_id} ({r['cause']}, {r['severity']}): {r['summary']}"
    worst = (_worst_logons(a, r["cause"], logon_ids, list(r["evidence_frames"] or []))[:max(1, logons)]
             if len(logon_ids) > max(1, logons) and not all_logons else [])
    if worst:
        # the smallest capture that shows it: the logon(s) where this cause cost the most
        logon_ids = sorted(worst)
        own = {int(c) for lst in a.logons.filter(pl.col("logon_id").is_in(worst))["conn_ids"].to_list()
               for c in lst or []}
        conns = [c for c in conns if c in own] or sorted(own)
        which = (f"logon {worst[0]}, where it cost the most" if len(worst) == 1 else
                 f"logons {', '.join(str(x) for x in logon_ids)}, the {len(worst)} where it cost the most")
        title += f" Excerpt: {which} (of {len(r['logon_ids'])} logons)."
    if not conns:
        conns = sorted({int(c) for lst in a.logons.filter(pl.col("logon_id").is_in(logon_ids))
                        ["conn_ids"].to_list() for c in (lst or [])})
    return title, conns, list(r["evidence_frames"] or []), logon_ids, r


def _worst_logons(a: Analysis, cause: str, logon_ids: list[int], frames: list[int]) -> list[int]:
    """The logon ids ranked by the seconds `cause` won in them on the timeline, from the
    intervals; counting only the intervals the finding's evidence frames bound when there are such."""
    iv = a.intervals
    if iv.height == 0 or "won_ns" not in iv.columns:
        return []
    if frames and {"frame_a", "frame_b"} <= set(iv.columns):
        own = iv.filter(pl.col("frame_a").is_in(frames) | pl.col("frame_b").is_in(frames))
        if own.filter(pl.col("cause") == cause).height:
            iv = own
    ids = a.logons.with_row_index("logon_idx").select(pl.col("logon_idx").cast(pl.Int64), "logon_id")
    per = (iv.filter(pl.col("cause") == cause).group_by("logon_idx").agg(pl.col("won_ns").sum())
           .with_columns(pl.col("logon_idx").cast(pl.Int64)).join(ids, on="logon_idx")
           .filter(pl.col("logon_id").is_in(logon_ids)).sort(["won_ns", "logon_id"], descending=[True, False]))
    return [int(x) for x in per["logon_id"].to_list()]


def _packets(paths: list[str], lo_ns: int | None = None, hi_ns: int | None = None) -> pl.DataFrame:
    """TCP/UDP header columns of the frames in [lo_ns, hi_ns], chunk by chunk (memory stays flat)."""
    from netdiag.capture import iter_chunks
    from netdiag.capture.addresses import format_ip

    keep = pl.col("ip_proto").is_in([6, 17])
    if lo_ns is not None:
        keep &= pl.col("ts_ns") >= lo_ns
    if hi_ns is not None:
        keep &= pl.col("ts_ns") <= hi_ns
    parts = [chunk.packets.filter(keep).select(
        "frame", "ts_ns", "ip_proto", "src_port", "dst_port", "tcp_flags",
        format_ip("src_ip_hi", "src_ip_lo").alias("src_ip"), format_ip("dst_ip_hi", "dst_ip_lo").alias("dst_ip"))
        for chunk in iter_chunks(paths)]
    return pl.concat(parts) if parts else pl.DataFrame()


def select_evidence(a: Analysis, *, logon_id: int | None = None, finding_id: str | None = None,
                    packets: pl.DataFrame | None = None, all_logons: bool = False, logons: int = 1) -> Excerpt:
    """The frames and comments of the excerpt for one logon or finding (see the module doc).

    A finding seen in several logons is shown in the `logons` where its cause cost the most
    seconds (all with `all_logons`). The finding's own frames get comments starting with
    "[F003]" (the id), so `frame.comment contains "[F003]"` selects them in the excerpt.
    """
    from netdiag.protocols.dns.parser import PORTS as DNS_PORTS

    title, conn_ids, ev_frames, logon_ids, subject = _subject(a, logon_id, finding_id, all_logons, logons)
    conns = a.connections.filter(pl.col("conn_id").is_in(conn_ids))
    if conns.height == 0 and ev_frames:
        # a finding without connections: take the connections its evidence frames belong to
        if a.segments is not None:
            ids = a.segments.filter(pl.col("frame").is_in(ev_frames))["conn_id"].unique().to_list()
            conns = a.connections.filter(pl.col("conn_id").is_in(ids))
    if conns.height == 0:
        raise UsageError(f"{title}: no connection to excerpt (nothing in the capture shows it)")
    t0 = int(conns["first_ts_ns"].min())
    t1 = int(conns["last_ts_ns"].max())
    if finding_id is not None and logon_ids:
        # the logon's other connections opened meanwhile belong to the story (a retry on a new
        # connection after a request timed out, a forward target)
        own = {int(c) for lst in a.logons.filter(pl.col("logon_id").is_in(logon_ids))["conn_ids"].to_list()
               for c in lst or []}
        more = a.connections.filter(pl.col("conn_id").is_in(list(own)) & ~pl.col("conn_id").is_in(conns["conn_id"].implode())
                                    & (pl.col("first_ts_ns") > t0) & (pl.col("first_ts_ns") <= t1))
        if more.height:
            conns = pl.concat([conns, more])
            t1 = max(t1, int(more["last_ts_ns"].max()))
    clients = conns["client_ip"].unique().to_list()
    dns = _dns_of_logons(a, logon_ids)
    if dns is None:  # no timeline to ask: the DNS flows of the same clients shortly before
        dns = a.connections.filter(pl.col("client_ip").is_in(clients) & pl.col("server_port").is_in(list(DNS_PORTS))
                                   & (pl.col("first_ts_ns") >= t0 - int(DNS_LEAD_S * 1e9))
                                   & (pl.col("first_ts_ns") <= t1))
    involved = pl.concat([conns, dns]).unique("conn_id", maintain_order=True)
    lo = min(t0, int(dns["first_ts_ns"].min()) if dns.height else t0)
    pk = packets if packets is not None else _packets(a.paths, lo, t1)
    keys = involved.select(
        pl.col("conn_id"), pl.when(pl.col("transport") == "udp").then(17).otherwise(6).cast(pl.UInt8).alias("ip_proto"),
        pl.col("client_ip").alias("a_ip"), pl.col("client_port").cast(pl.UInt16).alias("a_port"),
        pl.col("server_ip").alias("b_ip"), pl.col("server_port").cast(pl.UInt16).alias("b_port"))
    fwd = keys.rename({"a_ip": "src_ip", "a_port": "src_port", "b_ip": "dst_ip", "b_port": "dst_port"})
    rev = keys.rename({"a_ip": "dst_ip", "a_port": "dst_port", "b_ip": "src_ip", "b_port": "src_port"})
    on = ["ip_proto", "src_ip", "src_port", "dst_ip", "dst_port"]
    sel = (pl.concat([pk.join(fwd, on=on, how="inner"), pk.join(rev, on=on, how="inner")])
           .filter((pl.col("ts_ns") >= lo) & (pl.col("ts_ns") <= t1))
           .unique("frame").sort("frame"))
    sel = _within_logons(a, sel, logon_ids)
    frames = sel["frame"].to_list()
    comments = _comments(a, involved, sel, ev_frames, subject, finding_id)
    in_excerpt = set(frames)
    comments = {f: c[:MAX_COMMENT_CHARS] for f, c in comments.items() if f in in_excerpt}
    tagged = frozenset(int(f) for f in ev_frames if int(f) in in_excerpt) if finding_id else frozenset()
    for f in tagged:   # every frame of the finding says so, the filter's anchor
        comments.setdefault(f, f"evidence for {subject.get('cause')}")
    if frames:
        first = frames[0]
        head = f"netdiag evidence: {title}"
        comments[first] = head + (f" | {comments[first]}" if first in comments else "")
        comments[first] = comments[first][:MAX_COMMENT_CHARS * 2]
    wfilter = (evidence_filter(finding_id) if tagged else "frame.comment") if comments else ""
    return Excerpt(title, frames, comments, involved["conn_id"].to_list(), lo, t1, wfilter,
                   {"logon_id": logon_id, "finding_id": finding_id, "logon_ids": logon_ids,
                    "evidence_frames": ev_frames}, finding_id or "", tagged)


def _within_logons(a: Analysis, sel: pl.DataFrame, logon_ids: list[int]) -> pl.DataFrame:
    """Frames of a connection the excerpt's logons share with other logons (a long-lived client
    process logging on again and again: "switch user") only inside the excerpt's logons, from
    start to end, and its handshake; so one logon's excerpt is not the whole day's connection."""
    if not logon_ids or sel.height == 0 or "conn_id" not in sel.columns:
        return sel
    mine = a.logons.filter(pl.col("logon_id").is_in(logon_ids))
    others = a.logons.filter(~pl.col("logon_id").is_in(logon_ids))
    if others.height == 0:
        return sel
    own = {int(c) for lst in mine["conn_ids"].to_list() for c in lst or []}
    shared = own & {int(c) for lst in others["conn_ids"].to_list() for c in lst or []}
    if not shared:
        return sel
    inside = pl.lit(False)
    for lo, hi in mine.select("start_ts_ns", "end_ts_ns").iter_rows():
        inside |= (pl.col("ts_ns") >= lo) & (pl.col("ts_ns") <= hi)
    handshake = (pl.col("tcp_flags") & TH_SYN) != 0
    return sel.filter(~pl.col("conn_id").is_in(list(shared)) | inside | handshake)


def _dns_of_logons(a: Analysis, logon_ids: list[int]) -> pl.DataFrame | None:
    """The DNS flows the logon analysis attached to these logons (its dns_s intervals)."""
    iv = a.intervals
    if not logon_ids or "category" not in iv.columns:
        return None
    idx = a.logons.with_row_index("logon_idx").filter(pl.col("logon_id").is_in(logon_ids))["logon_idx"]
    ids = iv.filter((pl.col("category") == "dns_s") & pl.col("logon_idx").is_in(idx.cast(pl.Int64).to_list())
                    )["conn_id"].unique().to_list()
    return a.connections.filter(pl.col("conn_id").is_in(ids))


def _add(comments: dict[int, str], frame: int | None, text: str) -> None:
    if frame is None:
        return
    frame = int(frame)
    comments[frame] = f"{comments[frame]}; {text}" if frame in comments else text


def _comments(a: Analysis, involved: pl.DataFrame, sel: pl.DataFrame, ev_frames: list[int],
              subject: dict[str, Any], finding_id: str | None) -> dict[int, str]:
    comments: dict[int, str] = {}
    cids = involved["conn_id"].to_list()
    seg = a.segments.filter(pl.col("conn_id").is_in(cids)) if a.segments is not None else None
    if seg is not None and seg.height:
        syn = (pl.col("tcp_flags") & TH_SYN) != 0
        ack = (pl.col("tcp_flags") & TH_ACK) != 0
        for f, flags, rto in seg.filter(pl.col("retransmission") & syn).select(
                "frame", "tcp_flags", "rto_s").iter_rows():
            what = "SYN/ACK" if flags & TH_ACK else "SYN"
            after = f" after {fmt_s(rto)}" if rto is not None else ""
            _add(comments, f, f"{what} retransmitted{after}: connect delayed")
        for f, rto, rf in seg.filter(pl.col("retransmission") & ~syn).select("frame", "rto_s", "rto_frame").iter_rows():
            after = f" {fmt_s(rto)} after frame {rf}" if rto is not None and rf is not None else ""
            _add(comments, f, f"retransmission{after}: data lost on the way, resent")
        for (f,) in seg.filter(pl.col("zero_window")).select("frame").iter_rows():
            _add(comments, f, "zero window: the receiver cannot take more data, the sender must wait")
        for (f,) in seg.filter(pl.col("ack_lost_segment")).select("frame").iter_rows():
            _add(comments, f, "ACKs data the capture never saw (capture loss, not network loss)")
        _ = ack
    tx = a.transactions.filter(pl.col("conn_id").is_in(cids))
    ev = set(int(f) for f in ev_frames)
    rsp_frames = _response_first_frames(tx, seg)
    covered: set[int] = set()
    for r, rf in zip(tx.iter_rows(named=True), rsp_frames, strict=True):
        op = r["operation"] or r["protocol"]
        think = r["server_think_s"]
        in_ev = bool(ev & {r["first_frame"], r["last_frame"], rf})
        if r["protocol"] == "dns":
            if r["status"] == "unanswered":
                _add(comments, r["first_frame"], f"DNS question for {op} never answered")
            elif r["rsp_first_ts_ns"] is not None and (
                    (r["rsp_first_ts_ns"] - r["req_first_ts_ns"]) / 1e9 >= SLOW_DNS_S or in_ev):
                wait = (r["rsp_first_ts_ns"] - r["req_first_ts_ns"]) / 1e9
                _add(comments, r["last_frame"], f"DNS answer for {op} after {fmt_s(wait)} ({r['status']})")
            continue
        if think is not None and r["rsp_first_ts_ns"] is not None and (
                think >= SLOW_THINK_S or (in_ev and think >= MIN_EVIDENCE_THINK_S)):
            _add(comments, rf if rf is not None else r["last_frame"],
                 f"server think {fmt_s(think)} for {op} (request frame {r['first_frame']})")
            covered.update(f for f in (r["first_frame"], r["last_frame"], rf) if f is not None)
        status = r["status"] or ""
        if r["protocol"] == "giop" and status not in ("", "NO_EXCEPTION", "OBJECT_HERE"):
            extra = f" {r['exception_id']}" if r["exception_id"] else ""
            fwd = f" to {r['forward_host']}:{r['forward_port']}" if r["forward_host"] else ""
            _add(comments, rf if rf is not None else r["last_frame"], f"{op}: reply {status}{extra}{fwd}")
        elif r["protocol"] == "http" and status[:1] in ("4", "5"):
            _add(comments, rf if rf is not None else r["last_frame"], f"{op}: HTTP {status}")
        elif status == "unanswered":
            _add(comments, r["first_frame"], f"{op}: no answer seen")
    label = f"{subject.get('cause')}" if finding_id else f"logon {subject.get('logon_id')} " \
        f"dominant cause {subject.get('dominant_cause')}"
    for k, f in enumerate(sorted(int(x) for x in ev_frames)):
        if k == 0 or (f not in comments and f not in covered):
            _add(comments, f, f"evidence for {label}")
    return comments


def _response_first_frames(tx: pl.DataFrame, seg: pl.DataFrame | None) -> list[int | None]:
    """Frame carrying each transaction's first response byte (server-to-client data at rsp_first_ts_ns)."""
    if tx.height == 0:
        return []
    if seg is None or seg.height == 0:
        return [None] * tx.height
    data = (seg.filter((pl.col("direction") == 1) & (pl.col("payload_len") > 0))
            .group_by("conn_id", "ts_ns").agg(pl.col("frame").min().alias("rsp_frame")))
    got = (tx.with_row_index("_i").join(data, left_on=["conn_id", "rsp_first_ts_ns"], right_on=["conn_id", "ts_ns"],
                                        how="left").sort("_i"))
    return got["rsp_frame"].to_list()


# ------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------
def write_excerpt(paths: Sequence[str | Path], excerpt: Excerpt, out: str | Path | BinaryIO, *,
                  mapper: Any = None) -> int:
    """Write the excerpt as pcapng (sanitised when `mapper` is an AddressMapper); returns frames.

    `out` is a path (written beside it and renamed in, never through a symlink: see
    netdiag.output) or a binary file already opened by netdiag.output's staging.
    """
    from netdiag.pcapng_writer import OutFrame, write_pcapng

    raw = read_raw_frames(paths, np.asarray(excerpt.frames, dtype=np.int64))
    if len(raw) != len(excerpt.frames):  # never a silently shorter excerpt
        missing = sorted(set(excerpt.frames) - set(raw.frame.tolist()))
        raise CaptureError(f"{len(missing)} of the excerpt's {len(excerpt.frames)} frames could not be read back "
                           f"(first missing: frame {missing[0] if missing else '?'}); did the capture file change "
                           "while netdiag was reading it?", path=", ".join(str(p) for p in paths))
    datas = raw.datas
    comments = excerpt.comments
    if mapper is not None:
        from netdiag.sanitize import sanitize_frames

        datas = sanitize_frames(raw.link_type, datas, mapper)
        comments = {f: map_text(c, mapper) for f, c in comments.items()}
    frames = raw.frame.tolist()
    tag = f"[{excerpt.tag}] " if excerpt.tag else ""
    note = {f: f"{tag if f in excerpt.tagged else ''}[frame {f} of the original capture] {comments[f]}"
            for f in frames if f in comments}
    return write_pcapng(out, (OutFrame(int(lt), int(ts), d, int(ol), note.get(f)) for f, lt, ts, d, ol in
                              zip(frames, raw.link_type.tolist(), raw.ts_ns.tolist(), datas,
                                  raw.orig_len.tolist(), strict=True)),
                        application="netdiag evidence")


def map_text(text: str, mapper: Any) -> str:
    """Addresses in free text (comments, reports) mapped with the sanitising key; CPRs redacted.

    Unlike payload, text may change length, so every IPv4/IPv6 literal becomes its Crypto-PAn
    mapping.
    """
    import ipaddress
    import re

    from netdiag.sanitize import CPR_RE, IPV4_TEXT_RE, IPV6_TEXT_RE, _valid_cpr

    def cpr(m: re.Match[str]) -> str:
        mb = CPR_RE.match(m.group().encode())
        if mb is None or not _valid_cpr(mb):
            return m.group()
        return "".join("-" if ch == "-" else "X" for ch in m.group())

    text = re.sub(CPR_RE.pattern.decode(), cpr, text)
    text = re.sub(IPV4_TEXT_RE.pattern.decode(), lambda m: mapper.ip_text(m.group()), text)

    def v6(m: re.Match[str]) -> str:
        try:
            ipaddress.IPv6Address(m.group())
        except ValueError:
            return m.group()
        return mapper.ip_text(m.group())

    return re.sub(IPV6_TEXT_RE.pattern.decode(), v6, text)


def evidence(paths: Sequence[str | Path], out: str | Path, *, logon_id: int | None = None,
             finding_id: str | None = None, mapper: Any = None, profile: Any = None,
             analysis: Analysis | None = None) -> tuple[Excerpt, int]:
    """Analyse (unless given), choose the excerpt, write it. Returns (excerpt, frames written)."""
    from netdiag.pipeline import run

    a = analysis if analysis is not None else run(paths, profile)
    ex = select_evidence(a, logon_id=logon_id, finding_id=finding_id)
    n = write_excerpt(a.paths, ex, out, mapper=mapper)
    return ex, n


__all__ = ["Excerpt", "RawFrames", "evidence", "map_text", "read_raw_frames",
           "select_evidence", "write_excerpt"]
