"""Messages and transactions: packets -> TCP analysis -> byte streams -> parsers -> paired requests.

This is the driver of issue 4. One pass over the capture:

1. `netdiag.capture.iter_chunks` yields packet chunks; `netdiag.tcp.TcpAnalyzer.feed` turns
   each into SEGMENTS rows (conn_id, direction, relative sequence numbers, retransmission
   flags) and UDP rows (`last_udp`).
2. Payload-carrying segments of each connection are placed into per-direction byte streams
   (`netdiag.tcp.streams.StreamDir`: first copy wins, out-of-order placed, gaps recorded).
   A connection is *recognised* when a parser's `looks_like` accepts the first bytes of either
   direction (GIOP by its magic on any port, then TLS, then HTTP; DNS by port 53/5353/5355).
   Connections nobody recognises release their bytes and are skipped cheaply from then on;
   a recognised one is released as soon as both directions ended (FIN/RST) and are parsed
   (only its later resends still count), so memory follows open connections, not the capture.
3. Each recognised stream is cut into messages with the parser's `cut`, in time order across
   the two directions (HTTP framing of a response depends on its request; TLS on the
   ChangeCipherSpec of each side). A `malformed` cut is recorded with the frame where it
   starts and parsing resynchronises after it (GIOP: next magic; HTTP: next start line; TLS: next
   plausible record header); a parser that raises loses only the message it raised on (the
   parser's `resync()` says where the next one starts), never the rest of the direction. A hole
   the capture will never fill (see streams.py) ends the message in progress as malformed
   ("capture gap") and parsing resumes after the hole.
4. MESSAGES rows get their timing from the stream pieces; `resend_s` comes afterwards from the
   analyzer's retransmissions (see below). DNS over UDP is parsed from the UDP rows.
5. TRANSACTIONS pair requests with responses: GIOP by (connection, request direction,
   request id), fragments joined to their message (1.2 by request id, 1.1 to the previous
   fragmented message of that direction), LocateRequest/LocateReply alike, CancelRequest
   noted; HTTP in order per connection (pipelining; 1xx interim answers skipped); DNS
   answers by (client socket, server socket, id, question), resends of an unanswered question
   folded into one transaction (rules in `_pair_dns`); TLS one 'tls' transaction per handshake and
   'turn' transactions (confidence 'inferred') for application data, a turn being the
   client's records up to the server's records that follow them. In TLS 1.3 without keys,
   session tickets, key updates and alerts are inferred and are neither requests nor answers
   (`_tls13_non_answers`, docs/tls.md). With a key log (`tls_keylog`) TLS connections whose
   secrets it holds are decrypted and the GIOP/HTTP inside is paired like cleartext instead of
   as turns (netdiag/tcp/tls_streams.py).

Timing definitions (also in the schema):

- A message's `first_ts_ns` is the earliest first-seen time of its bytes and `last_ts_ns` the
  latest (when it was complete at the capture point); `last_frame` is the frame completing it
  (Wireshark's "reassembled in").
- `resend_s` (messages) and `retransmission_stall_s` (transactions): every resent segment
  (segments.resend: tshark's retransmissions and resends of captured bytes, whatever tshark
  calls them; not spurious ones, whose bytes the receiver had acknowledged) stands for the
  interval [first copy, resend] (resend_wait_s, else tshark's rto_s); the union of the intervals of the segments that overlap the message's (or the
  transaction's request and response) bytes, in seconds. A resend counts even when it came
  after the message was complete at the capture point (a loss downstream of a sender-side
  capture).
- `server_think_s` = (rsp_first_ts - req_last_ts) - rtt_server_side - request resend stall
  inside that interval, clipped at 0. rtt_server_side (capture point -> server -> capture
  point) is the smaller of the connection's SYN -> SYN/ACK time (connections.rtt_server_side_ms)
  and the quickest ACK the server sent for client data on that connection (min of the
  analyzer's ack_rtt_s on server segments): ~0 at a server-side capture, the network round trip
  at a client-side one. The minimum guards against a handshake that was slow once (a retried
  SYN met a busy accept queue: 4 ms in the lab's dropped-SYN capture against 0.2 ms per
  exchange). 0 when neither was seen, e.g. DNS over UDP. The request resend stall is removed
  because a request lost after the capture point reaches the server only with its resend.
  What is left is the server's own time.
  `server_rtt_s` is that round trip, so the logon budget (netdiag/logons/budget.py) places the
  server's time with the same rule: its `server_s` interval is [req_last + rtt/2, rsp_first - rtt/2]
  (request resends inside it go to loss_recovery_s by precedence), i.e. server_think_s.
- `request_transfer_s` = req_last - req_first; `response_transfer_s` = rsp_last - rsp_first.
"""

from __future__ import annotations

import gc
import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numba import njit

from netdiag.capture.tcp_flags import TH_ACK, TH_FIN, TH_RST
from netdiag.protocols import Cut, Record
from netdiag.schema import MESSAGES, TRANSACTIONS
from netdiag.tcp.streams import WINDOW_LIMIT_BYTES, StreamDir

if TYPE_CHECKING:  # imported when a key log is given: `cryptography` costs ~55 ms of start-up
    from netdiag.tcp.tls_streams import TlsPlaintext

# Parsers tried on the first bytes of a stream, in this order (GIOP first: its magic is exact).
STREAM_PARSERS = ("giop", "tls", "http")
# Bytes of a stream's head after which a direction that no parser recognised stops waiting.
HEAD_DECISION_BYTES = 64
# A DNS question asked again within this many seconds, still unanswered, may be a retry (_pair_dns).
DNS_RETRY_WINDOW_S = 30.0
# The shortest resend timer of common resolvers (Windows 1 s; glibc and Java JNDI at least 1 s), less
# slack: the same question from a new socket with a new id this long after the previous try is a retry.
DNS_RETRY_MIN_S = 0.9


_GIOP_MAGIC = b"GIOP"
_SEG_COLUMNS = ("frame", "ts_ns", "conn_id", "direction", "tcp_flags", "seq_rel", "ack_rel", "payload_len",
                "payload_captured", "payload_offset", "retransmission", "rto_s", "ack_rtt_s", "resend",
                "spurious_retransmission", "resend_wait_s", "dsack_left_rel", "dsack_right_rel")
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)
_EMPTY: dict[str, Any] = {}
# Record.detail fields the pairing reads (everything else lives only in the JSON column).
PAIR_KEYS = frozenset({
    "more_fragments", "response_expected", "exception_id", "forward_host", "forward_port", "forward_type_id",
    "forward_tls_port", "ior_host", "ior_port", "ior_type_id", "ior_tls_port",
    "user_agent", "host", "qtype", "qclass", "answers", "sni", "chosen_version", "resumed",
    "cipher_suite", "decrypted", "plaintext_protocol", "after_capture_gap"})


def _parser(name: str) -> Any | None:
    """The parser module, or None when it is not available in this build."""
    import importlib

    try:
        return importlib.import_module(f"netdiag.protocols.{name}")
    except ImportError:
        return None


def _resync_after_error(mod: Any, data: bytes, rel: int, ctx: Any, d: int) -> int:
    """Bytes to skip when cut() raised on the message at data[rel]: up to where the parser's own
    resync rule sees the next message (GIOP magic, HTTP start line, TLS record header, DNS length
    prefix), so one bad message loses at most itself; everything buffered when it cannot say."""
    avail = len(data) - rel
    resync = getattr(mod, "resync", None)
    if resync is None:
        return avail
    try:
        nxt = int(resync(data, rel, context=ctx, direction=d))
    except Exception:
        return avail
    return min(max(nxt - rel, 1), avail)


# ============================================================================================
# Per-connection stream state and the cut/parse loop
# ============================================================================================
class _Conn:
    __slots__ = ("conn_id", "dirs", "state", "proto", "mod", "ctx", "server_port", "tried", "skip_to", "tls",
                 "gap_end")

    def __init__(self, conn_id: int) -> None:
        self.conn_id = conn_id
        self.dirs = (StreamDir(), StreamDir())
        self.state = "pending"   # pending -> keep | skip
        self.proto: str | None = None
        self.mod: Any = None
        self.ctx: Any = None
        self.server_port = 0
        self.tried = [False, False]
        self.skip_to = [0, 0]  # per direction: the rest of a message a gap cut short ends here
        self.tls: TlsPlaintext | None = None  # decryption and inner parsing (key log given)
        self.gap_end = [-1, -1]  # per direction: stream offset right after the latest capture gap


class _MessageSink:
    """MESSAGES rows: one tuple per row while a batch is built, flushed to compact DataFrames.

    Rows get a global index (0-based, in emission order). Timing of rows emitted in a step is
    filled in at the end of that step (`set_timing`, four int lists beside the tuples), so
    flushing between steps is safe. `details` keeps, sparsely by row, only the decoded fields
    the pairing reads (PAIR_KEYS), their strings shared (one User-Agent object, not one per
    request); everything else lives in the JSON `detail` column. Memory per message is then
    Arrow's, not Python objects'.
    """

    FLUSH_ROWS = 50_000
    # the row tuple's fields, in order, with the types they are built with (conformed after)
    ROW = (("conn_id", pl.Int64), ("direction", pl.Int64), ("protocol", pl.String), ("msg_type", pl.String),
           ("request_id", pl.Int64), ("operation", pl.String), ("status", pl.String), ("size_bytes", pl.Int64),
           ("stream_offset", pl.Int64), ("malformed", pl.Boolean), ("detail", pl.String))

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.timing: tuple[list[int], list[int], list[int], list[int]] = ([], [], [], [])
        self.details: dict[int, dict[str, Any]] = {}
        self.strings: dict[str, str] = {}
        self.parts: list[pl.DataFrame] = []
        self.base = 0  # global index of the first row in self.rows

    def __len__(self) -> int:
        return self.base + len(self.rows)

    def add(self, conn_id: int, direction: int, rec: Record, size: int, offset: int | None,
            timing: tuple[int, int, int, int]) -> int:
        row = self.base + len(self.rows)
        detail = rec.detail
        if rec.malformed and rec.reason:
            detail = {**detail, "reason": rec.reason}
        self.rows.append((conn_id, direction, rec.protocol, rec.msg_type, rec.request_id, rec.operation,
                          rec.status, size, offset, bool(rec.malformed),
                          _JSON.encode(detail) if detail else None))
        t = self.timing
        t[0].append(timing[0])
        t[1].append(timing[1])
        t[2].append(timing[2])
        t[3].append(timing[3])
        if detail:
            keep = {k: detail[k] for k in detail.keys() & PAIR_KEYS}
            # the common values need no entry: not fragmented, a response expected
            if keep.get("more_fragments") is False:
                del keep["more_fragments"]
            if keep.get("response_expected") is True:
                del keep["response_expected"]
            if keep:
                strings = self.strings
                for k, v in keep.items():
                    if type(v) is str:
                        keep[k] = strings.setdefault(v, v)
                self.details[row] = keep
        return row

    def set_timing(self, row: int, first_ts: int, last_ts: int, first_frame: int, last_frame: int) -> None:
        i = row - self.base
        t = self.timing
        t[0][i] = first_ts
        t[1][i] = last_ts
        t[2][i] = first_frame
        t[3][i] = last_frame

    def flush(self, force: bool = False) -> None:
        n = len(self.rows)
        if n and (force or n >= self.FLUSH_ROWS):
            t = self.timing
            df = pl.DataFrame(self.rows, schema=list(self.ROW), orient="row").with_columns(
                first_ts_ns=pl.Series(t[0], dtype=pl.Int64), last_ts_ns=pl.Series(t[1], dtype=pl.Int64),
                first_frame=pl.Series(t[2], dtype=pl.Int64), last_frame=pl.Series(t[3], dtype=pl.Int64),
                resend_s=pl.lit(0.0))
            self.parts.append(MESSAGES.conform(df))
            self.rows = []
            self.timing = ([], [], [], [])
            self.base += n

    def frame(self) -> pl.DataFrame:
        self.flush(force=True)
        return pl.concat(self.parts, rechunk=True) if self.parts else MESSAGES.empty()


@dataclass
class StreamStats:
    """Counts from one analysis (what was parsed, skipped, lost)."""

    connections_parsed: int = 0
    connections_skipped: int = 0
    messages: int = 0
    malformed_messages: int = 0
    gaps: int = 0          # capture gaps: holes the receiver acknowledged past (connections.unseen_gaps)
    gap_bytes: int = 0     # bytes in them: ACKed but never captured (connections.unseen_bytes)
    duplicate_bytes: int = 0
    unmatched_responses: int = 0
    by_protocol: dict[str, int] = field(default_factory=dict)
    tls_decrypted_connections: int = 0
    # (conn_id, why) per TLS connection a key log was given for but that stayed without keys
    tls_not_decrypted: list[tuple[int, str]] = field(default_factory=list)
    tls_warnings: list[str] = field(default_factory=list)  # one line per such connection
    # message rows of TLS post-handshake messages and alerts (decrypted or inferred): nobody waits for them
    tls_quiet_rows: list[int] = field(default_factory=list, repr=False)


@dataclass
class StreamAnalysis:
    """Everything one pass produces; later stages (logons, reports) start from this."""

    connections: pl.DataFrame
    messages: pl.DataFrame
    transactions: pl.DataFrame
    gaps: pl.DataFrame
    stats: StreamStats
    read_stats: Any = None
    tls_quiet_frames: np.ndarray | None = None  # frames carrying only TLS post-handshake messages/alerts

    @property
    def malformed_messages(self) -> int:
        return self.stats.malformed_messages


class StreamParser:
    """Reassembles TCP streams chunk by chunk and cuts them into messages (one per analysis)."""

    def __init__(self, keylog: Any = None) -> None:
        self.keylog = keylog                      # secrets for TLS decryption (netdiag.tls_keylog.KeyLog)
        self.conns: dict[int, _Conn] = {}
        self.skip = np.zeros(1024, np.bool_)      # indexed by conn_id: skipped connections
        self.done = np.zeros(1024, np.bool_)      # indexed by conn_id: parsed to their end, released
        self.sink = _MessageSink()
        self.events: list[pl.DataFrame] = []      # resend intervals (conn, dir, offsets, times)
        self.dsacks: list[pl.DataFrame] = []      # D-SACK blocks: the receiver got those bytes twice
        self.parsers = {n: m for n in STREAM_PARSERS if (m := _parser(n)) is not None}
        self.dns = _parser("dns")
        self.stats = StreamStats()
        self.gap_rows: list[tuple[int, int, int, int, int]] = []
        self.min_ack_rtt_ms: dict[int, float] = {}  # per connection: smallest server ACK round trip

    # ------------------------------------------------------------------ chunks
    def feed(self, segs: pl.DataFrame, payload: np.ndarray, packets: pl.DataFrame | None = None) -> None:
        """Take one chunk's SEGMENTS rows (with payload_offset/payload_captured) and its payload."""
        if segs.height == 0:
            return
        cid = segs["conn_id"].to_numpy().astype(np.int64)
        if cid.size and int(cid.max()) >= self.skip.size:
            size = max(int(cid.max()) + 1, 2 * self.skip.size)
            self.skip = np.concatenate([self.skip, np.zeros(size - self.skip.size, np.bool_)])
            self.done = np.concatenate([self.done, np.zeros(size - self.done.size, np.bool_)])
        # only the columns used here: every filter below copies what it keeps
        live = segs.select([c for c in _SEG_COLUMNS if c in segs.columns]).filter(pl.Series(~self.skip[cid]))
        if live.height == 0:
            return
        done = self.done[live["conn_id"].to_numpy()]
        # a connection parsed to its end and released: only its resends still count (below)
        finished = live.filter(pl.Series(done)) if done.any() else None
        if finished is not None:
            live = live.filter(pl.Series(~done))
        flags = pl.col("tcp_flags").cast(pl.Int64)
        # end-of-stream and acknowledgement bookkeeping, one row per (conn, direction)
        marks = (live.group_by("conn_id", "direction")
                 .agg(ack=pl.when((flags & TH_ACK) > 0).then(pl.col("ack_rel")).max(),
                      fin=pl.when((flags & TH_FIN) > 0)
                      .then(pl.col("seq_rel") + pl.col("payload_len").cast(pl.Int64) - 1).min(),
                      rst=((flags & TH_RST) > 0).any()))
        for conn_id, d, ack, fin, rst in marks.iter_rows():
            conn = self._conn(conn_id)
            if conn.state == "skip":
                continue
            other = conn.dirs[1 - d]
            if ack is not None and ack - 1 > other.acked:
                other.acked = ack - 1
            own = conn.dirs[d]
            if fin is not None and (own.fin < 0 or fin < own.fin):
                own.fin = fin
            if rst:
                own.reset = other.reset = True
        if "ack_rtt_s" in live.columns:  # the server's ACKs of client data: capture -> server -> capture
            acks = (live.filter((pl.col("direction") == 1) & pl.col("ack_rtt_s").is_not_null())
                    .group_by("conn_id").agg(pl.col("ack_rtt_s").min()))
            for conn_id, rtt_s in acks.iter_rows():
                old = self.min_ack_rtt_ms.get(conn_id)
                self.min_ack_rtt_ms[conn_id] = rtt_s * 1e3 if old is None else min(old, rtt_s * 1e3)
        data = live.filter(pl.col("payload_captured") > 0)
        if packets is not None and data.height:
            self._learn_ports(data, packets)
        # resend intervals: [first copy, resend] of every resent segment (segments.resend: tshark's
        # retransmissions and resends of captured bytes whatever tshark calls them), spurious ones
        # (bytes acknowledged before the resend) left out: they cost the receiver nothing
        if "resend" in live.columns:
            is_rex = pl.col("resend") & ~pl.col("spurious_retransmission")
            wait = pl.coalesce("resend_wait_s", "rto_s", pl.lit(0.0))
        else:
            is_rex, wait = pl.col("retransmission"), pl.col("rto_s").fill_null(0.0)
        rex = data.filter(is_rex)
        if finished is not None:
            rex = pl.concat([rex, finished.filter((pl.col("payload_captured") > 0) & is_rex)])
        if "dsack_left_rel" in live.columns:
            ds = live.filter(pl.col("dsack_left_rel").is_not_null())
            if ds.height:
                self.dsacks.append(ds.select(
                    "conn_id", direction=(1 - pl.col("direction").cast(pl.Int8)).cast(pl.UInt8),
                    _dts=pl.col("ts_ns"), _dl=pl.col("dsack_left_rel") - 1, _dr=pl.col("dsack_right_rel") - 1))
        if rex.height:
            self.events.append(rex.select(
                "conn_id", "direction",
                start=pl.col("seq_rel") - 1,
                end=pl.col("seq_rel") - 1 + pl.col("payload_len").cast(pl.Int64),
                t0=pl.col("ts_ns") - (wait * 1e9).cast(pl.Int64),
                t1=pl.col("ts_ns")))
        touched: set[int] = set(marks["conn_id"].to_list())
        if data.height:
            data = data.with_row_index("_i").sort("conn_id", "direction", "_i")
            c = data["conn_id"].to_numpy().astype(np.int64)
            d = data["direction"].to_numpy().astype(np.int64)
            offs = data["seq_rel"].to_numpy().astype(np.int64) - 1
            lens = data["payload_captured"].to_numpy().astype(np.int64)
            poffs = data["payload_offset"].to_numpy().astype(np.int64)
            ts = data["ts_ns"].to_numpy().astype(np.int64)
            fr = data["frame"].to_numpy().astype(np.int64)
            key = c * 2 + d
            cuts = np.flatnonzero(np.diff(key)) + 1
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, key.size], strict=True):
                conn = self._conn(int(c[a]))
                if conn.state == "skip":
                    continue
                self._place(conn, int(d[a]), offs[a:b], lens[a:b], poffs[a:b], payload, ts[a:b], fr[a:b])
        for conn_id in touched:
            conn = self.conns.get(conn_id)
            if conn is not None and conn.state != "skip":
                self._step(conn, final=False)
                if conn.state == "keep" and all(sd.at_end() and sd.pos >= sd.frontier and sd.hole() is None
                                                for sd in conn.dirs):
                    self._retire(conn)
                self.sink.flush()  # every FLUSH_ROWS rows: Python objects do not pile up in a chunk

    def _retire(self, conn: _Conn) -> None:
        """Both directions ended (FIN or RST) and every byte is parsed: count it and free its state
        now rather than at the end of the capture (memory stays bounded by open connections)."""
        self.stats.connections_parsed += 1
        self.stats.duplicate_bytes += sum(sd.bytes_duplicate for sd in conn.dirs)
        for sd in conn.dirs:
            sd.release()
        self.done[conn.conn_id] = True
        del self.conns[conn.conn_id]

    def _learn_ports(self, data: pl.DataFrame, packets: pl.DataFrame) -> None:
        new = [cid for cid in data["conn_id"].unique().to_list()
               if (cn := self.conns.get(cid)) is None or (cn.state == "pending" and not cn.server_port)]
        if not new:
            return
        rows = (data.filter(pl.col("conn_id").is_in(new)).group_by("conn_id")
                .agg(pl.col("frame").first(), pl.col("direction").first())
                .join(packets.select("frame", "src_port", "dst_port"), on="frame", how="left"))
        for conn_id, _frame, d, sp, dp in rows.select("conn_id", "frame", "direction", "src_port",
                                                      "dst_port").iter_rows():
            if sp is not None:
                self._conn(conn_id).server_port = int(dp if d == 0 else sp)

    def _conn(self, conn_id: int) -> _Conn:
        conn = self.conns.get(conn_id)
        if conn is None:
            conn = self.conns[conn_id] = _Conn(conn_id)
        return conn

    def _place(self, conn: _Conn, d: int, offs: np.ndarray, lens: np.ndarray, poffs: np.ndarray,
               payload: np.ndarray, ts: np.ndarray, fr: np.ndarray) -> None:
        sd = conn.dirs[d]
        while offs.size:
            over = np.flatnonzero(offs + lens > sd.base + WINDOW_LIMIT_BYTES)
            if not over.size:
                sd.place(offs, lens, poffs, payload, ts, fr)
                return
            i = int(over[0])
            if i:
                sd.place(offs[:i], lens[:i], poffs[:i], payload, ts[:i], fr[:i])
            self._step(conn, final=False)
            if conn.state == "skip":
                return
            # a jump beyond the reassembly window: what lies between is a gap
            self._gap(conn, d, to=int(offs[i]), reason="sequence jump beyond the reassembly window")
            sd.compact()
            offs, lens, poffs, ts, fr = offs[i:], lens[i:], poffs[i:], ts[i:], fr[i:]

    # ------------------------------------------------------------------ recognising a stream
    def _classify(self, conn: _Conn, final: bool) -> None:
        if self.dns is not None and conn.server_port in self.dns.PORTS:
            conn.proto, conn.mod = "dns", self.dns
            conn.ctx = self.dns.new_context("tcp")
            conn.state = "keep"
            return
        heads: list[bytes] = []
        for d in (0, 1):
            sd = conn.dirs[d]
            heads.append(sd.bytes_at(sd.pos, min(sd.frontier, sd.pos + 256)) if sd.pos == 0 else b"")
        for d in sorted((0, 1), key=lambda k: (not heads[k], conn.dirs[k].ts_at(0) if heads[k] else 0)):
            head = heads[d]
            if not head:
                continue
            for name, mod in self.parsers.items():
                if mod.looks_like(head):
                    conn.proto, conn.mod, conn.ctx = name, mod, mod.new_context()
                    conn.state = "keep"
                    if name == "tls" and self.keylog is not None:
                        from netdiag.tcp.tls_streams import TlsPlaintext

                        conn.tls = TlsPlaintext(self.keylog, self.parsers)
                    return
            if len(head) >= HEAD_DECISION_BYTES or conn.dirs[d].at_end() or final:
                conn.tried[d] = True
        # the capture may have joined a GIOP connection mid-message: search the magic
        if "giop" in self.parsers and any(_GIOP_MAGIC in h for h in heads) and any(conn.tried):
            conn.proto, conn.mod = "giop", self.parsers["giop"]
            conn.ctx = conn.mod.new_context()
            conn.state = "keep"
            return
        decided = [conn.tried[d] or (final and not heads[d]) for d in (0, 1)]
        many = sum(sd.frontier for sd in conn.dirs) > 4096
        if all(decided) or (any(conn.tried) and many):
            conn.state = "skip"
            self.stats.connections_skipped += 1
            for sd in conn.dirs:
                sd.release()
            if conn.conn_id < self.skip.size:
                self.skip[conn.conn_id] = True
            self.conns.pop(conn.conn_id, None)

    # ------------------------------------------------------------------ the cut/parse loop
    def _step(self, conn: _Conn, final: bool) -> None:
        if conn.state == "pending":
            self._classify(conn, final)
            if conn.state != "keep":
                return
        mod, ctx = conn.mod, conn.ctx
        spans: tuple[list, list] = ([], [])       # per direction: (start, end, row index) to time
        cache: list[tuple[int, bytes] | None] = [None, None]
        blocked = [False, False]
        dirs = conn.dirs
        skip_to = conn.skip_to
        lookup: list | None = None
        while True:
            ready = []
            for d in (0, 1):
                sd = dirs[d]
                if blocked[d]:
                    continue
                if skip_to[d] > sd.pos:  # the tail of a message cut by a gap: consume, do not parse
                    sd.pos = min(skip_to[d], max(sd.pos, sd.frontier))
                    if sd.pos >= skip_to[d]:
                        skip_to[d] = 0
                    else:
                        if sd.hole_is_gap(final):
                            self._gap(conn, d, spans=spans[d])
                            cache[d] = None
                            continue
                        blocked[d] = True
                        continue
                if sd.pos >= sd.frontier and sd.hole_is_gap(final):
                    self._gap(conn, d, spans=spans[d])
                    cache[d] = None
                if sd.pos < sd.frontier:
                    ready.append(d)
            if not ready:
                break
            # both sides have bytes: the message that started first goes first (time order)
            if len(ready) == 1:
                d = ready[0]
            else:
                if lookup is None:  # pieces do not change inside a step: bisect over plain lists
                    lookup = [(dirs[k].p_start.tolist(), dirs[k].p_ts.tolist()) for k in (0, 1)]
                t01 = []
                for k in (0, 1):
                    starts, tss = lookup[k]
                    i = bisect_right(starts, dirs[k].pos) - 1
                    t01.append(tss[i] if i >= 0 else 0)
                d = 0 if t01[0] <= t01[1] else 1
            sd = conn.dirs[d]
            cached = cache[d]
            if cached is None or cached[0] > sd.pos or cached[0] + len(cached[1]) < sd.frontier:
                cached = cache[d] = (sd.pos, sd.data())
            start0, data = cached
            rel = sd.pos - start0
            avail = sd.frontier - sd.pos
            hole = sd.hole()
            at_end = (final and hole is None) or (sd.at_end() and hole is None)
            try:
                c = mod.cut(data, rel, at_end=at_end, context=ctx, direction=d)
            except Exception as exc:  # a parser bug must not stop the run, nor lose what follows
                c = Cut("malformed", _resync_after_error(mod, data, rel, ctx, d),
                        f"parser error in cut: {exc!r}")
            if c.status == "need_more":
                if hole is not None and sd.hole_is_gap(final):
                    self._gap(conn, d, spans=spans[d])
                    cache[d] = None
                    continue
                if final and hole is None:  # the parser asked for more at the very end
                    c = Cut("malformed", avail, "stream ended inside the message")
                else:
                    blocked[d] = True
                    continue
            n = min(max(int(c.length), 1), avail)
            msg = data[rel: rel + n]
            inner: list = []
            if c.status == "message":
                try:
                    recs = mod.parse(msg, context=ctx, direction=d)
                except Exception as exc:
                    recs = [Record(conn.proto or "", "malformed", malformed=True,
                                   reason=f"parser error in parse: {exc!r}")]
                if conn.tls is not None:
                    recs, inner = self._tls_record(conn, d, sd, n, msg, recs)
            else:
                recs = self._malformed(conn, msg, c.reason or "malformed", d)
            self._emit(conn, d, sd.pos, n, recs, spans[d])
            for s0, e0, timing, rec in inner:
                self.sink.add(conn.conn_id, d, rec, e0 - s0, s0, timing)
            sd.pos += n
        for d in (0, 1):
            self._time(conn, d, spans[d])
            conn.dirs[d].compact()
            if conn.tls is not None and (final or conn.dirs[d].at_end()) and conn.dirs[d].pos >= conn.dirs[d].frontier:
                for s0, e0, timing, rec in conn.tls.finish(d):
                    self.sink.add(conn.conn_id, d, rec, e0 - s0, s0, timing)

    def _tls_record(self, conn: _Conn, d: int, sd: StreamDir, n: int, msg: bytes, recs: list[Record]
                    ) -> tuple[list[Record], list]:
        """Decrypt one TLS record with the key log; its inner GIOP/HTTP messages (see tls_streams)."""
        tls = conn.tls
        assert tls is not None
        start = sd.pos

        def timing() -> tuple[int, int, int, int]:
            fts, lts, ffr, lfr = sd.timing(np.array([start], np.int64), np.array([start + n], np.int64))
            return int(fts[0]), int(lts[0]), int(ffr[0]), int(lfr[0])

        was = tls.dec.status
        recs, inner = tls.record(d, start, msg, conn.ctx, recs, timing)
        now = tls.dec.status
        if now != was and now in ("unavailable", "failed") and not tls.warned:
            tls.warned = True
            frame = int(sd.frame_at_or_after(start))
            why = tls.dec.problem + (f" (frame {frame}); the rest of the connection is read without keys"
                                     if now == "failed" else "")
            self.stats.tls_not_decrypted.append((conn.conn_id, why))
        elif now == "ready" and was == "pending":
            self.stats.tls_decrypted_connections += 1
        return recs, inner

    def _malformed(self, conn: _Conn, msg: bytes, reason: str, d: int) -> list[Record]:
        """A record for bytes the parser could not frame: what parse() still makes of them
        (an HTTP request line, a GIOP header), always marked malformed with the cut's reason."""
        try:  # no context: framing state must not learn from bytes we are skipping
            recs = conn.mod.parse(msg, context=None, direction=d)[:1] if conn.mod else []
        except Exception:
            recs = []
        if not recs or recs[0].msg_type in ("unknown", "malformed"):
            recs = [Record(conn.proto or "", "malformed")]
        recs[0].malformed = True
        recs[0].reason = reason
        return recs

    def _emit(self, conn: _Conn, d: int, start: int, n: int, recs: list[Record], spans: list) -> None:
        if start == conn.gap_end[d]:
            # bytes right after a capture gap that no parser could frame: the rest of a message
            # whose head the capture lost (pairing may still tie them to their request)
            for rec in recs:
                if rec.malformed or rec.msg_type in ("malformed", "unknown"):
                    rec.detail = {**rec.detail, "after_capture_gap": True}
        for rec in recs or [Record(conn.proto or "", "unknown", malformed=True, reason="parser returned nothing")]:
            spans.append((start, start + n, self.sink.add(conn.conn_id, d, rec, n, start, (0, 0, 0, 0))))

    def _time(self, conn: _Conn, d: int, spans: list) -> None:
        if not spans:
            return
        arr = np.asarray(spans, np.int64)
        fts, lts, ffr, lfr = conn.dirs[d].timing(arr[:, 0], arr[:, 1])
        for row, a, b, c, d2 in zip(arr[:, 2].tolist(), fts.tolist(), lts.tolist(), ffr.tolist(), lfr.tolist(),
                                    strict=True):
            self.sink.set_timing(row, a, b, c, d2)
        spans.clear()

    def _gap(self, conn: _Conn, d: int, *, to: int | None = None, spans: list | None = None,
             reason: str = "") -> None:
        """The hole at the frontier will never be filled: end the partial message, jump over it."""
        sd = conn.dirs[d]
        hole = sd.hole()
        if to is None:
            if hole is None:
                return
            to = hole[1]
        start = sd.frontier
        why = reason or f"capture gap: stream bytes {start}..{to} never captured"
        if sd.pos < sd.frontier:  # the message in progress is cut short by the gap
            part = sd.bytes_at(sd.pos, sd.frontier)
            try:
                recs = conn.mod.parse(part, context=None, direction=d) if conn.mod else []
            except Exception:
                recs = []
            recs = recs[:1] or [Record(conn.proto or "", "malformed")]
            for r in recs:
                r.malformed = True
                r.reason = why
            # when its header says where it ends, skip the rest of it after the gap instead of
            # resynchronising inside its body (an HTTP body can hold anything, a jar in particular)
            end = _declared_end(conn.proto, recs[0].detail, sd.pos)
            if end is not None and end > to:
                conn.skip_to[d] = end
            if spans is None:
                spans = []
                self._emit(conn, d, sd.pos, sd.frontier - sd.pos, recs, spans)
                self._time(conn, d, spans)
            else:
                self._emit(conn, d, sd.pos, sd.frontier - sd.pos, recs, spans)
        frame = sd.frame_at_or_after(to)
        if to > start:
            self.gap_rows.append((conn.conn_id, d, start, to, frame))
            if conn.tls is not None:  # decrypted TLS: the inner message waiting for lost records is cut short
                for s0, e0, timing, rec in conn.tls.gap(d, why):
                    self.sink.add(conn.conn_id, d, rec, e0 - s0, s0, timing)
        sd.jump(to, frame)
        conn.gap_end[d] = max(to, sd.pos)

    # ------------------------------------------------------------------ UDP (DNS)
    def feed_udp(self, udp: pl.DataFrame | None, payload: np.ndarray) -> None:
        """Parse DNS datagrams from the analyzer's UDP rows (port 53/5353/5355 on either side)."""
        if udp is None or udp.height == 0 or self.dns is None:
            return
        ports = list(self.dns.PORTS)
        rows = udp.filter((pl.col("payload_captured") > 0)
                          & (pl.col("src_port").is_in(ports) | pl.col("dst_port").is_in(ports)))
        if rows.height == 0:
            return
        if "direction" not in rows.columns:
            rows = rows.with_columns(direction=pl.when(pl.col("dst_port").is_in(ports)).then(0).otherwise(1))
        ctx = self.dns.new_context("udp")
        for conn_id, d, frame, ts, off, cap in rows.select(
                "conn_id", "direction", "frame", "ts_ns", "payload_offset", "payload_captured").iter_rows():
            msg = payload[off: off + cap].tobytes()
            try:
                recs = self.dns.parse(msg, context=ctx, direction=d)
            except Exception as exc:
                recs = [Record("dns", "malformed", malformed=True, reason=f"parser error: {exc!r}")]
            for rec in recs:
                self.sink.add(int(conn_id), int(d), rec, int(cap), None, (ts, ts, frame, frame))
        self.sink.flush()

    # ------------------------------------------------------------------ the end
    def finish(self) -> None:
        """The capture is over: declare remaining holes gaps and parse every stream to its end."""
        for conn in list(self.conns.values()):
            if conn.state != "skip":
                self._step(conn, final=True)
                self.sink.flush()
            if conn.state == "keep":
                self.stats.connections_parsed += 1
                self.stats.duplicate_bytes += sum(sd.bytes_duplicate for sd in conn.dirs)
                for sd in conn.dirs:
                    sd.release()
            elif conn.state == "pending":
                self.stats.connections_skipped += 1

    def result(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """(messages, resend events, gaps) as DataFrames."""
        msgs = self.sink.frame()
        if self.events:
            ev = pl.concat(self.events, how="vertical_relaxed")
            if self.dsacks:
                # a resend the receiver reported as a duplicate (D-SACK, RFC 2883) cost it nothing:
                # the latest resend before each D-SACK block that the block covers
                ds = pl.concat(self.dsacks, how="vertical_relaxed")
                ev = ev.with_row_index("_e")
                dup = (ev.join(ds, on=["conn_id", "direction"], how="inner")
                       .filter((pl.col("_dl") <= pl.col("start")) & (pl.col("_dr") >= pl.col("end"))
                               & (pl.col("t1") <= pl.col("_dts")))
                       .sort("t1").group_by("_dts", "conn_id", "_dl").agg(pl.col("_e").last()))
                ev = ev.filter(~pl.col("_e").is_in(dup["_e"].implode())).drop("_e")
        else:
            ev = pl.DataFrame(schema={"conn_id": pl.UInt32, "direction": pl.UInt8, "start": pl.Int64,
                                      "end": pl.Int64, "t0": pl.Int64, "t1": pl.Int64})
        gaps = pl.DataFrame(self.gap_rows, schema={"conn_id": pl.UInt32, "direction": pl.UInt8,
                                                   "start_offset": pl.Int64, "end_offset": pl.Int64,
                                                   "frame_after": pl.Int64}, orient="row")
        gaps = gaps.with_columns(bytes=pl.col("end_offset") - pl.col("start_offset"))
        return msgs, ev, gaps


# ============================================================================================
# Resend intervals -> seconds (union of intervals per message / transaction)
# ============================================================================================
@njit(cache=True)
def _union_kernel(keys, t0, t1, nkeys):  # pragma: no cover - numba
    """Sum over each key of the union of [t0, t1] intervals; rows sorted by (key, t0)."""
    out = np.zeros(nkeys, np.int64)
    n = keys.shape[0]
    i = 0
    while i < n:
        k = keys[i]
        cur0 = t0[i]
        cur1 = t1[i]
        total = 0
        j = i + 1
        while j < n and keys[j] == k:
            if t0[j] > cur1:
                total += cur1 - cur0
                cur0 = t0[j]
                cur1 = t1[j]
            elif t1[j] > cur1:
                cur1 = t1[j]
            j += 1
        total += cur1 - cur0
        out[k] = total
        i = j
    return out


def _union_seconds(keys: np.ndarray, t0: np.ndarray, t1: np.ndarray, nkeys: int) -> np.ndarray:
    if keys.size == 0:
        return np.zeros(nkeys, np.float64)
    ok = t1 > t0
    keys, t0, t1 = keys[ok], t0[ok], t1[ok]
    order = np.lexsort((t0, keys))
    ns = _union_kernel(keys[order].astype(np.int64), t0[order].astype(np.int64),
                       t1[order].astype(np.int64), nkeys)
    return ns / 1e9


def _event_message_pairs(msgs: pl.DataFrame, ev: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(event index, message row) for every resend event overlapping a message's stream bytes."""
    if ev.height == 0 or msgs.height == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    m = (msgs.with_row_index("row").filter(pl.col("stream_offset").is_not_null())
         .select("row", g=pl.col("conn_id").cast(pl.Int64) * 2 + pl.col("direction").cast(pl.Int64),
                 s=pl.col("stream_offset"), e=pl.col("stream_offset") + pl.col("size_bytes"))
         .sort("g", "s", "e"))
    shift = np.int64(1) << np.int64(41)
    mg, ms, me = (m[c].to_numpy().astype(np.int64) for c in ("g", "s", "e"))
    mrow = m["row"].to_numpy().astype(np.int64)
    ks, ke = mg * shift + ms, mg * shift + me
    eg = (ev["conn_id"].to_numpy().astype(np.int64) * 2 + ev["direction"].to_numpy().astype(np.int64))
    es = eg * shift + np.clip(ev["start"].to_numpy().astype(np.int64), 0, shift - 1)
    ee = eg * shift + np.clip(ev["end"].to_numpy().astype(np.int64), 0, shift - 1)
    # messages of a direction tile its stream (several TLS records may share a span): a message
    # overlaps [es, ee) when its end > es and its start < ee; ends are sorted like starts
    lo = np.searchsorted(np.maximum.accumulate(ke), es, side="right")
    hi = np.searchsorted(ks, ee, side="left")
    cnt = np.clip(hi - lo, 0, None)
    ev_idx = np.repeat(np.arange(es.size), cnt)
    starts = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    return ev_idx, mrow[starts]


# ============================================================================================
# Pairing
# ============================================================================================
def _d(detail: dict, *names: str) -> Any:
    for n in names:
        v = detail.get(n)
        if v is not None:
            return v
    return None


class _Part:
    """One side of a transaction: its messages (rows of the messages table)."""

    __slots__ = ("rows", "open")

    def __init__(self, row: int, more: bool = False) -> None:
        self.rows = [row]
        self.open = more  # more fragments follow


class _Txn:
    __slots__ = ("conn_id", "protocol", "operation", "request_id", "status", "req", "rsp",
                 "exception_id", "confidence", "detail", "forward", "user_agent", "tls_version",
                 "answered_row")

    def __init__(self, conn_id: int, protocol: str, operation: str | None, request_id: int | None,
                 req: _Part | None, confidence: str = "exact") -> None:
        self.conn_id = conn_id
        self.protocol = protocol
        self.operation = operation
        self.request_id = request_id
        self.status: str | None = None
        self.req = req
        self.rsp: _Part | None = None
        self.exception_id: str | None = None
        self.confidence = confidence
        self.detail: dict[str, Any] = {}
        self.forward: tuple[str | None, int | None] = (None, None)
        self.user_agent: str | None = None
        self.tls_version: str | None = None
        self.answered_row: int | None = None  # DNS: the query the answer belongs to


def _more_fragments(detail: dict) -> bool:
    return bool(detail.get("more_fragments"))


def _pair_giop(m: pl.DataFrame, details: dict[int, dict], out: list[_Txn], stats: StreamStats) -> None:
    open_req: dict[tuple[int, int, int], _Txn] = {}
    frag_by_id: dict[tuple[int, int, int], _Part] = {}
    frag_last: dict[tuple[int, int], _Part] = {}
    for row, conn, d, mtype, rid, op, bad in m.select("row", "conn_id", "direction", "msg_type",
                                                      "request_id", "operation", "malformed").iter_rows():
        det = details.get(row, _EMPTY)
        if bad and rid is None:  # garbage or a header we could not trust: nothing to pair on
            if det.get("after_capture_gap"):
                _answer_after_gap(open_req, conn, d, row)
            continue
        more = _more_fragments(det)
        if mtype in ("Request", "LocateRequest"):
            part = _Part(row, more)
            op = op or ("LocateRequest" if mtype == "LocateRequest" else None)
            t = _Txn(conn, "giop", op, rid, part)
            t.detail["msg_type"] = mtype
            if rid is not None:
                key = (conn, d, rid)
                if key in open_req and open_req[key].rsp is None:
                    open_req[key].detail["superseded"] = True  # request id reused before an answer
                open_req[key] = t
            if det.get("response_expected") is False:
                t.status = "oneway"
            out.append(t)
            if more:
                frag_last[(conn, d)] = part
                if rid is not None:
                    frag_by_id[(conn, d, rid)] = part
        elif mtype in ("Reply", "LocateReply"):
            part = _Part(row, more)
            t = open_req.pop((conn, 1 - d, rid), None) if rid is not None else None
            if t is None:  # its request was not captured (capture started late, or dropped it)
                stats.unmatched_responses += 1
                t = _Txn(conn, "giop", None, rid, None)
                t.detail["request_not_captured"] = True
                out.append(t)
            t.rsp = part
            t.exception_id = det.get("exception_id")
            t.forward = (_d(det, "forward_host", "ior_host"), _d(det, "forward_port", "ior_port"))
            if det.get("ior_type_id") or det.get("forward_type_id"):
                t.detail["ior_type_id"] = det.get("ior_type_id") or det.get("forward_type_id")
            tls_port = _d(det, "forward_tls_port", "ior_tls_port")
            if tls_port:
                t.detail["forward_tls_port"] = tls_port
            if more:
                frag_last[(conn, d)] = part
                if rid is not None:
                    frag_by_id[(conn, d, rid)] = part
        elif mtype == "Fragment":
            part = frag_by_id.get((conn, d, rid)) if rid is not None else None
            if part is None:
                part = frag_last.get((conn, d))
            if part is None and rid is not None and (conn, 1 - d, rid) in open_req:
                # a reply whose first fragment (its header) the capture lost: still its answer
                t = open_req.pop((conn, 1 - d, rid))
                t.rsp = _Part(row, more)
                t.detail["response_header_not_captured"] = True
                if more:
                    frag_last[(conn, d)] = t.rsp
                    frag_by_id[(conn, d, rid)] = t.rsp
                continue
            if part is None or not part.open:
                stats.unmatched_responses += 1
                continue
            part.rows.append(row)
            part.open = more
            if not more:
                frag_last.pop((conn, d), None)
                if rid is not None:
                    frag_by_id.pop((conn, d, rid), None)
        elif mtype == "CancelRequest":
            t = open_req.get((conn, d, rid)) if rid is not None else None
            if t is not None:
                t.detail["cancelled"] = True


def _answer_after_gap(open_req: dict[tuple[int, int, int], _Txn], conn: int, d: int, row: int) -> None:
    """Bytes after a capture gap that no parser could frame, in the answering direction of a GIOP
    connection with a request still open: the rest of its reply, whose header the capture lost. The
    reply is in the file, so the request is answered (status unknown). With several requests open
    the oldest is taken (a synchronous client has one) and the pairing is marked inferred."""
    cands = [(k, t) for k, t in open_req.items() if k[0] == conn and k[1] == 1 - d and t.rsp is None
             and t.status != "oneway"]
    if not cands:
        return
    key, t = min(cands, key=lambda kt: kt[1].req.rows[0] if kt[1].req else 0)
    del open_req[key]
    t.rsp = _Part(row)
    t.detail["response_header_not_captured"] = True
    if len(cands) > 1:
        t.confidence = "inferred"


def _pair_http(m: pl.DataFrame, details: dict[int, dict], out: list[_Txn], stats: StreamStats) -> None:
    queues: dict[int, list[_Txn]] = {}
    seq: dict[int, int] = {}
    for row, conn, d, mtype, op, _status in m.select("row", "conn_id", "direction", "msg_type",
                                                     "operation", "status").iter_rows():
        det = details.get(row, _EMPTY)
        if mtype == "request" and d == 0:
            seq[conn] = seq.get(conn, 0) + 1
            t = _Txn(conn, "http", op, seq[conn], _Part(row))
            t.user_agent = det.get("user_agent")
            if det.get("host"):
                t.detail["host"] = det.get("host")
            out.append(t)
            queues.setdefault(conn, []).append(t)
        elif d == 1 and mtype != "response" and det.get("after_capture_gap"):
            # the rest of a response whose status line the capture lost: it answers the oldest open request
            q = queues.get(conn)
            if q:
                t = q.pop(0)
                t.rsp = _Part(row)
                t.detail["response_header_not_captured"] = True
        elif mtype == "response" and d == 1:
            code = _status
            if code is not None and code.isdigit() and 100 <= int(code) < 200 and code != "101":
                continue  # interim answer: the final response follows
            q = queues.get(conn)
            if not q:
                stats.unmatched_responses += 1
                continue
            t = q.pop(0)
            t.rsp = _Part(row)


def _pair_dns(m: pl.DataFrame, details: dict[int, dict], conns: dict[int, tuple], out: list[_Txn],
              stats: StreamStats) -> None:
    """DNS: an answer pairs with the query of its own client socket, id and question (`conn_id` is
    the socket pair: one UDP flow or one TCP connection); a retry folds into the lookup it repeats.

    A query is a retry of an earlier, still unanswered query of the same question from the same
    client address to the same server, asked less than DNS_RETRY_WINDOW_S after the lookup began,
    when it comes from the same socket (glibc resends on its socket, same id), or from a new socket
    with the same id (dig, Java's JNDI provider, glibc `single-request-reopen`), or from a new socket
    with a new id at least DNS_RETRY_MIN_S after the previous try (a resolver's shortest resend
    timer: Windows 1 s, glibc/JNDI >= 1 s). Queries of the same question from different sockets
    closer together than that are different askers (20 processes of one workstation starting at
    once, captures/lab/storm.pcap) and stay separate lookups.
    """
    by_socket: dict[tuple, _Txn] = {}          # (conn, id, question) -> lookup with that query
    by_socket_id: dict[tuple, _Txn] = {}       # (conn, id) -> lookup (answers without a question)
    open_q: dict[tuple, list[_Txn]] = {}       # (client ip, server ip, question) -> unanswered lookups
    for row, conn, mtype, rid, op, ts in m.select("row", "conn_id", "msg_type", "request_id",
                                                  "operation", "first_ts_ns").iter_rows():
        det = details.get(row, _EMPTY)
        cinfo = conns.get(conn, (None, None, None, None))
        qkey = ((op or "").lower(), str(det.get("qtype")), str(det.get("qclass")))
        if mtype == "query":
            key = (cinfo[0], cinfo[2], qkey)
            pending = open_q.setdefault(key, [])
            t = None
            for cand in reversed(pending):
                if cand.rsp is not None or (ts - cand.detail["_first_ts"]) / 1e9 >= DNS_RETRY_WINDOW_S:
                    continue
                socks = cand.detail["_queries"]
                if any(c == conn for c, _, _, _ in socks) or any(q == rid for _, q, _, _ in socks) \
                        or (ts - socks[-1][3]) / 1e9 >= DNS_RETRY_MIN_S:
                    t = cand
                    break
            if t is not None:
                t.detail["retries"] += 1
                t.detail["_queries"].append((conn, rid, row, ts))
            else:
                t = _Txn(conn, "dns", op, rid, _Part(row))
                t.detail.update(qtype=det.get("qtype"), retries=0, _first_ts=ts, _queries=[(conn, rid, row, ts)])
                pending.append(t)
                out.append(t)
            by_socket[(conn, rid, qkey)] = t
            by_socket_id[(conn, rid)] = t
        elif mtype == "response":
            t = by_socket.get((conn, rid, qkey)) or by_socket_id.get((conn, rid))
            if t is None:
                stats.unmatched_responses += 1
                continue
            if t.rsp is not None:  # a second answer: the server answered a retry as well
                t.detail["late_answers"] = t.detail.get("late_answers", 0) + 1
                continue
            t.rsp = _Part(row)
            t.answered_row = next(r for c, q, r, _ in reversed(t.detail["_queries"]) if c == conn and q == rid)
            if det.get("answers"):
                t.detail["answers"] = det["answers"][:8]
            pending = open_q.get((cinfo[0], cinfo[2], qkey))
            if pending and t in pending:
                pending.remove(t)


_TLS_HANDSHAKE_TYPES = frozenset({"ClientHello", "ServerHello", "HelloRetryRequest", "Certificate",
                                  "ServerKeyExchange", "CertificateRequest", "ServerHelloDone",
                                  "CertificateVerify", "ClientKeyExchange", "Finished",
                                  "NewSessionTicket", "EncryptedExtensions", "CertificateStatus",
                                  "HandshakeFragment", "ChangeCipherSpec"})


# TLS 1.3 post-handshake inference without keys (docs/tls.md): a NewSessionTicket record is at
# most this big (OpenSSL ~250 B in the lab; other stacks some hundreds: 2 KiB leaves room),
TICKET_MAX_RECORD_BYTES = 2048
# a server sends at most this many tickets after a handshake (OpenSSL 2 by default, most others 1),
MAX_TICKETS = 4
# and the first one leaves the server this soon after it read the client's Finished.
TICKET_REACTION_S = 0.020


def _tls13_non_answers(rows: list[tuple], fin_idx: int, tag: int, rtt_s: float) -> dict[int, str]:
    """Which TLS 1.3 ApplicationData records after the client's Finished are not answers, without keys.

    rows: (row, direction, msg_type, size_bytes, first_ts_ns, decrypted) of one connection, in
    time order; fin_idx: index of the client's Finished (its first encrypted record). Returns
    {row: "ticket" | "alert" | "key_update"} (inferred; the rules and their limits: docs/tls.md).
    """
    out: dict[int, str] = {}
    app = [i for i in range(fin_idx + 1, len(rows)) if rows[i][2] == "ApplicationData" and not rows[i][5]]
    last_of = {}
    for i in app:
        last_of[rows[i][1]] = i
    for i in app:
        data = rows[i][3] - 5
        if data == tag + 3 and last_of.get(rows[i][1]) == i:
            out[rows[i][0]] = "alert"          # 2-byte alert (close_notify) + type: its sender's last record
        elif data == tag + 6:
            out[rows[i][0]] = "key_update"     # 5-byte KeyUpdate + type
    # tickets: the server's first record after the client's Finished, soon after it and ticket-sized,
    # and the server records of exactly its size that follow (a second ticket, maybe held by Nagle)
    t_fin = rows[fin_idx][4]
    server = [i for i in app if rows[i][1] == 1 and rows[i][0] not in out]
    if not server:
        return out
    first = server[0]
    size = rows[first][3]
    if size > TICKET_MAX_RECORD_BYTES or (rows[first][4] - t_fin) / 1e9 > rtt_s + TICKET_REACTION_S:
        return out
    tickets = [first]
    for i in server[1:]:
        if rows[i][3] != size or len(tickets) >= MAX_TICKETS:
            break
        tickets.append(i)
    # "tickets" that came while a request was pending, with no other server record after them
    # before the client spoke again (or ever), were that request's answer: a server that sends no
    # ticket and answers with records of one size
    first_req = next((i for i in app if rows[i][1] == 0 and rows[i][0] not in out), None)
    after_req = [i for i in tickets if first_req is not None and i > first_req]
    if after_req:
        j0 = after_req[0]
        next_client = next((i for i in app if rows[i][1] == 0 and i > j0 and rows[i][0] not in out), len(rows))
        if not any(j0 < i < next_client for i in server if i not in tickets):
            tickets = [i for i in tickets if i < j0]
    for i in tickets:
        out[rows[i][0]] = "ticket"
    return out


def _pair_tls(m: pl.DataFrame, details: dict[int, dict], out: list[_Txn], stats: StreamStats,
              first_ts: np.ndarray, last_frame: np.ndarray, rtt_ms: dict[int, float] | None = None) -> list[int]:
    """TLS handshakes and the turns of application data without keys (module docstring, docs/tls.md).

    Returns the message rows that are post-handshake messages or alerts (decrypted, or inferred in
    TLS 1.3): not answers, not requests, and nobody waits for them (the budget's Nagle rule)."""
    rtt_ms = rtt_ms or {}
    quiet: list[int] = []
    for conn, g in m.group_by("conn_id", maintain_order=True):
        conn_id = conn[0]
        hs: _Txn | None = None
        ccs = [False, False]
        fin = [False, False]
        in_hs = False
        hs_start = 0
        tls13 = False
        tag = 16
        pre: list[int] = []
        hs_rows: set[int] = set()
        rows = g.select("row", "direction", "msg_type", "status", "malformed", "size_bytes").rows()
        # pass 1: handshakes; where each TLS 1.3 handshake's client Finished sits
        fin_at: list[int] = []
        for idx, (row, d, mtype, status, _malformed, _size) in enumerate(rows):
            det = details.get(row, _EMPTY)
            if mtype == "HandshakeFragment" and d == 0 and not in_hs:
                pre.append(row)  # a ClientHello spanning records: its first records come first
                continue
            if mtype == "ClientHello" and d == 0 and in_hs and hs is not None and hs.detail.get("hello_retry"):
                pass  # the second ClientHello after a HelloRetryRequest belongs to the same handshake
            elif mtype == "ClientHello" and d == 0:
                hs = _Txn(conn_id, "tls", "handshake", None, _Part(row))
                hs.req.rows[:0] = pre
                if det.get("sni"):
                    hs.operation = f"handshake {det['sni']}"
                    hs.detail["sni"] = det["sni"]
                hs.detail["phases"] = []
                hs_start = int(first_ts[row])
                hs.status = "incomplete"
                out.append(hs)
                in_hs, ccs, fin, tls13, pre = True, [False, False], [False, False], False, []
            if in_hs and hs is not None:
                if mtype != "ClientHello" or row not in hs.req.rows:
                    if d == 0 and hs.rsp is None:
                        hs.req.rows.append(row)
                    elif hs.rsp is None:
                        hs.rsp = _Part(row)
                    else:
                        hs.rsp.rows.append(row)
                hs.detail["phases"].append([mtype, d, round((int(first_ts[row]) - hs_start) / 1e9, 6),
                                            int(last_frame[row])])
                hs_rows.add(row)
                hs_rows.update(hs.req.rows)
                if mtype == "ServerHello":
                    hs.tls_version = det.get("chosen_version")
                    hs.detail["resumed"] = det.get("resumed")
                    tls13 = det.get("chosen_version") == "TLS1.3"
                    tag = 8 if det.get("cipher_suite") == "0x1305" else 16
                elif mtype == "ChangeCipherSpec":
                    ccs[d] = True
                elif mtype == "Finished" and ccs[d]:
                    fin[d] = True
                elif mtype == "HelloRetryRequest":
                    hs.detail["hello_retry"] = True
                elif mtype == "CertificateRequest":
                    hs.detail["client_certificate_requested"] = True
                elif mtype == "Alert":
                    hs.status = f"alert:{status}"
                    in_hs = False
                    continue
                # TLS 1.3: the client's first encrypted record is its Finished (decrypted: "Finished")
                done = (tls13 and d == 0 and mtype in ("ApplicationData", "Finished")) or (not tls13 and all(fin))
                if done:
                    hs.status = "ok"
                    in_hs = False
                    if tls13:
                        fin_at.append(idx)
        # TLS 1.3 without keys: tickets, alerts and key updates inferred (see _tls13_non_answers)
        non_answer: dict[int, str] = {}
        if fin_at:
            ctx_rows = [(r[0], r[1], r[2], r[5], int(first_ts[r[0]]),
                         bool(details.get(r[0], _EMPTY).get("decrypted"))) for r in rows]
            rtt_s = rtt_ms.get(conn_id, 0.0) / 1e3
            bounds = fin_at + [len(rows)]
            for k, fi in enumerate(fin_at):
                part = ctx_rows[:bounds[k + 1]]
                non_answer.update(_tls13_non_answers(part, fi, tag, rtt_s))
            if hs is not None and non_answer:
                kinds = list(non_answer.values())
                hs.detail["post_handshake_inferred"] = {k: kinds.count(k) for k in sorted(set(kinds))}
        # pass 2: turns of application data nobody could read
        turn: _Txn | None = None
        turns = 0
        for row, d, mtype, _status, malformed, _size in rows:
            det = details.get(row, _EMPTY)
            if (mtype in ("NewSessionTicket", "KeyUpdate") and det.get("decrypted")) or \
                    (mtype == "Alert" and row not in hs_rows):   # TLS <= 1.2 alerts have their own type
                quiet.append(row)
                continue
            if row in non_answer:
                quiet.append(row)
                continue
            if row in hs_rows or mtype != "ApplicationData" or malformed or det.get("plaintext_protocol"):
                continue
            if d == 0:
                if turn is None or turn.rsp is not None:
                    turns += 1
                    turn = _Txn(conn_id, "turn", "tls application data", turns, _Part(row), "inferred")
                    out.append(turn)
                else:
                    turn.req.rows.append(row)
            elif turn is not None:
                if turn.rsp is None:
                    turn.rsp = _Part(row)
                else:
                    turn.rsp.rows.append(row)
    return quiet


# ============================================================================================
# Building the transactions table
# ============================================================================================
def build_transactions(msgs: pl.DataFrame, details: dict[int, dict], connections: pl.DataFrame,
                       events: pl.DataFrame, stats: StreamStats | None = None,
                       min_ack_rtt_ms: dict[int, float] | None = None) -> pl.DataFrame:
    """Pair the messages into TRANSACTIONS rows (see the module docstring for the rules).

    The pairing state machines walk the messages once (`_pair_*`); everything after that is
    columnar: spans, sizes, statuses, think times and stalls are numpy/polars over the
    (transaction, message row, side) links, so no per-transaction row of Python values is built.
    """
    stats = stats or StreamStats()
    min_ack_rtt_ms = min_ack_rtt_ms or {}
    m = (msgs.select("conn_id", "direction", "protocol", "msg_type", "request_id", "operation", "status",
                     "first_ts_ns", "stream_offset", "malformed", "size_bytes")
         .with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
         .sort("conn_id", "first_ts_ns", "direction", "stream_offset", "row"))
    dns_conns = m.filter(pl.col("protocol") == "dns")["conn_id"].unique()
    conns = {r[0]: r[1:] for r in connections.filter(pl.col("conn_id").is_in(dns_conns.implode()))
             .select("conn_id", "client_ip", "client_port", "server_ip", "server_port").iter_rows()}
    txns: list[_Txn] = []
    _pair_giop(m.filter(pl.col("protocol") == "giop"), details, txns, stats)
    _pair_http(m.filter(pl.col("protocol") == "http"), details, txns, stats)
    _pair_dns(m.filter(pl.col("protocol") == "dns").sort("first_ts_ns", "row"), details, conns, txns, stats)
    fts_all = msgs["first_ts_ns"].to_numpy()
    lfr_all = msgs["last_frame"].to_numpy()
    tls_m = m.filter(pl.col("protocol") == "tls")
    rtt_ms: dict[int, float] = {}
    if tls_m.height:
        tls_conns = tls_m["conn_id"].unique().implode()
        for cid, syn_rtt in connections.filter(pl.col("conn_id").is_in(tls_conns)).select(
                "conn_id", "rtt_server_side_ms").iter_rows():
            rtt_ms[cid] = _server_rtt_ms(syn_rtt, min_ack_rtt_ms.get(cid))
    stats.tls_quiet_rows = _pair_tls(tls_m, details, txns, stats, fts_all, lfr_all, rtt_ms)
    del tls_m
    del m, conns
    if not txns:
        return TRANSACTIONS.empty()
    n = len(txns)

    # (transaction, message row, side 0 request / 1 response) links
    tk_l: list[int] = []
    row_l: list[int] = []
    side_l: list[int] = []
    for k, t in enumerate(txns):
        if t.req is not None:
            rows = t.req.rows
            tk_l.extend([k] * len(rows))
            row_l.extend(rows)
            side_l.extend([0] * len(rows))
        if t.rsp is not None:
            rows = t.rsp.rows
            tk_l.extend([k] * len(rows))
            row_l.extend(rows)
            side_l.extend([1] * len(rows))
    tk = np.asarray(tk_l, np.int64)
    mrows = np.asarray(row_l, np.int64)
    sides = np.asarray(side_l, np.int64)
    del tk_l, row_l, side_l
    lts_all = msgs["last_ts_ns"].to_numpy()
    offs_all = msgs["stream_offset"].fill_null(-1).to_numpy()
    links = pl.DataFrame({
        "k": tk, "side": sides, "fts": fts_all[mrows], "lts": lts_all[mrows],
        "ffr": msgs["first_frame"].to_numpy()[mrows], "lfr": lfr_all[mrows],
        "size": msgs["size_bytes"].to_numpy()[mrows],
        "dir": msgs["direction"].to_numpy()[mrows], "off": offs_all[mrows],
        "bad": msgs["malformed"].to_numpy()[mrows]})
    # a side spans its messages; the records parsed from one TLS record share its bytes: count once
    spans = links.group_by("k", "side").agg(pl.col("fts").min(), pl.col("lts").max(), pl.col("ffr").min(),
                                           pl.col("lfr").max(), pl.col("bad").any())
    sizes = (links.unique(["k", "side", "dir", "off"], keep="first")
             .group_by("k", "side").agg(pl.col("size").sum()))
    spans = spans.join(sizes, on=["k", "side"], how="left")
    del links, sizes
    base = pl.DataFrame({"k": np.arange(n, dtype=np.int64)})
    names = {"fts": "first_ts", "lts": "last_ts", "ffr": "first_fr", "lfr": "last_fr", "bad": "bad", "size": "bytes"}
    for side, pre in ((0, "rq_"), (1, "rs_")):
        part = spans.filter(pl.col("side") == side).drop("side").rename({a: pre + b for a, b in names.items()})
        base = base.join(part, on="k", how="left")
    base = base.sort("k")
    del spans
    rq_bad = base["rq_bad"].fill_null(False).to_numpy()
    rs_bad = base["rs_bad"].fill_null(False).to_numpy()

    # per-transaction scalars straight from the pairing objects
    has_rsp = np.fromiter((t.rsp is not None for t in txns), np.bool_, n)
    rsp_row = np.fromiter((t.rsp.rows[0] if t.rsp is not None else 0 for t in txns), np.int64, n)
    ans_row = np.fromiter((t.answered_row if t.answered_row is not None else -1 for t in txns), np.int64, n)
    details_json: list[str | None] = []
    for k, t in enumerate(txns):
        detail = {k2: v for k2, v in t.detail.items() if not k2.startswith("_")}
        if t.rsp is not None and t.rsp.open and t.protocol in ("giop", "http", "dns"):
            detail["response_incomplete"] = True
        if rq_bad[k]:
            detail["request_malformed"] = True
        if rs_bad[k]:
            detail["response_malformed"] = True
        if t.answered_row is not None and t.protocol == "dns":
            detail["answered_query_frame"] = int(lfr_all[t.answered_row])
        details_json.append(_JSON.encode(detail) if detail else None)
    cols = pl.DataFrame({
        "conn_id": [t.conn_id for t in txns],
        "protocol": [t.protocol for t in txns],
        "operation": [t.operation for t in txns],
        "request_id": [t.request_id for t in txns],
        "status0": [t.status for t in txns],
        "cancelled": [bool(t.detail.get("cancelled")) for t in txns],
        "exception_id": [t.exception_id for t in txns],
        "confidence": [t.confidence for t in txns],
        "forward_host": [t.forward[0] for t in txns],
        "forward_port": [t.forward[1] for t in txns],
        "user_agent": [t.user_agent for t in txns],
        "tls_version": [t.tls_version for t in txns],
        "detail": details_json,
    }, schema_overrides={"conn_id": pl.Int64, "request_id": pl.Int64, "operation": pl.String,
                         "status0": pl.String, "exception_id": pl.String, "forward_host": pl.String,
                         "forward_port": pl.Int64, "user_agent": pl.String, "tls_version": pl.String,
                         "detail": pl.String}, strict=False)
    del details_json
    rsp_status = msgs["status"].gather(rsp_row)
    dns_answered = (cols["protocol"] == "dns").to_numpy() & (ans_row >= 0)
    think_from = np.where(dns_answered, lts_all[np.maximum(ans_row, 0)], 0)
    ack_rtt = pl.DataFrame({"conn_id": list(min_ack_rtt_ms), "ack_rtt_ms": list(min_ack_rtt_ms.values())},
                           schema={"conn_id": pl.Int64, "ack_rtt_ms": pl.Float64})
    info = (connections.select(pl.col("conn_id").cast(pl.Int64), "client_ip", "client_port", "server_ip",
                               "server_port", pl.col("rtt_server_side_ms").cast(pl.Float64))
            .unique("conn_id", keep="first"))
    df = (pl.concat([base, cols, pl.DataFrame({"has_rsp": has_rsp, "rsp_status": rsp_status,
                                               "dns_answered": dns_answered, "think_from": think_from})],
                    how="horizontal")
          .join(info, on="conn_id", how="left").join(ack_rtt, on="conn_id", how="left").sort("k"))
    del base, cols
    proto = pl.col("protocol")
    rtt_ms = pl.min_horizontal(pl.col("rtt_server_side_ms").fill_nan(None), pl.col("ack_rtt_ms").fill_nan(None))
    think_from_ns = pl.when(pl.col("dns_answered")).then(pl.col("think_from")).otherwise(pl.col("rq_last_ts"))
    df = df.with_columns(
        status=pl.when(pl.col("has_rsp") & proto.is_in(["giop", "http", "dns"])).then(pl.col("rsp_status"))
        .when(~pl.col("has_rsp") & (proto != "tls") & (pl.col("status0").fill_null("") != "oneway"))
        .then(pl.when(pl.col("cancelled")).then(pl.lit("cancelled")).otherwise(pl.lit("unanswered")))
        .when(proto == "turn").then(pl.lit("answered"))
        .otherwise(pl.col("status0")),
        request_transfer_s=(pl.col("rq_last_ts") - pl.col("rq_first_ts")) / 1e9,
        response_transfer_s=(pl.col("rs_last_ts") - pl.col("rs_first_ts")) / 1e9,
        server_think_s=(pl.col("rs_first_ts") - think_from_ns) / 1e9 - rtt_ms.fill_null(0.0) / 1e3,
        server_rtt_s=rtt_ms.fill_null(0.0) / 1e3,
        first_frame=pl.coalesce("rq_first_fr", "rs_first_fr"),
        last_frame=pl.coalesce("rs_last_fr", "rq_last_fr"),
    )
    stall = np.zeros(n, np.float64)
    think = df["server_think_s"].to_numpy().astype(np.float64)  # nulls -> NaN
    if mrows.size and events.height:
        ev_idx, mrow = _event_message_pairs(msgs, events)
        if ev_idx.size:
            order = np.argsort(mrows, kind="stable")
            tr_row, tr_k, tr_side = mrows[order], tk[order], sides[order]
            # each (event, message) pair fans out to the transactions holding that message
            lo = np.searchsorted(tr_row, mrow, side="left")
            hi = np.searchsorted(tr_row, mrow, side="right")
            cnt = hi - lo
            e_rep = np.repeat(ev_idx, cnt)
            pos = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
            # one event may overlap several messages of a transaction: count it once
            tk_u, e_u, side_u = np.unique(np.stack([tr_k[pos], e_rep, tr_side[pos]]), axis=1)
            t0u = events["t0"].to_numpy().astype(np.int64)[e_u]
            t1u = events["t1"].to_numpy().astype(np.int64)[e_u]
            stall = _union_seconds(tk_u, t0u, t1u, n)
            # request resends inside the think interval are not the server's time
            req_last = df["rq_last_ts"].fill_null(0).to_numpy().astype(np.int64)
            rsp_first = df["rs_first_ts"].fill_null(0).to_numpy().astype(np.int64)
            rq_side = side_u == 0
            c0 = np.maximum(t0u[rq_side], req_last[tk_u[rq_side]])
            c1 = np.minimum(t1u[rq_side], rsp_first[tk_u[rq_side]])
            think = think - _union_seconds(tk_u[rq_side], c0, c1, n)
    df = df.with_columns(retransmission_stall_s=pl.Series(stall),
                         server_think_s=pl.Series(np.maximum(think, 0.0), nan_to_null=True))
    df = df.rename({"rq_first_ts": "req_first_ts_ns", "rq_last_ts": "req_last_ts_ns",
                    "rs_first_ts": "rsp_first_ts_ns", "rs_last_ts": "rsp_last_ts_ns",
                    "rq_bytes": "request_bytes", "rs_bytes": "response_bytes"})
    return TRANSACTIONS.conform(df.select(TRANSACTIONS.names)
                                .sort("req_first_ts_ns", "first_frame", nulls_last=True, maintain_order=True))


# A message longer than this is not believed when skipping past a gap (a lying length).
_SKIP_LIMIT_BYTES = 64 * 1024 * 1024


def _declared_end(proto: str | None, detail: dict[str, Any], start: int) -> int | None:
    """Stream offset where a message starting at `start` ends, by its own header (None: unknown)."""
    size = None
    if proto == "giop" and isinstance(detail.get("message_size"), int):
        size = 12 + detail["message_size"]
    elif (proto == "http" and not detail.get("chunked") and isinstance(detail.get("content_length"), int)
          and isinstance(detail.get("header_bytes"), int)):
        size = detail["header_bytes"] + detail["content_length"]
    if size is None or size <= 0 or size > _SKIP_LIMIT_BYTES:
        return None
    return start + size


def _server_rtt_ms(syn_rtt_ms: float | None, ack_rtt_ms: float | None) -> float:
    """Capture point -> server -> capture point: the smaller of the handshake's SYN -> SYN/ACK and
    the server's quickest ACK of client data on the connection (a slow accept or a one-off delay
    on the handshake must not be taken off every request); 0 when neither was seen."""
    vals = [v for v in (syn_rtt_ms, ack_rtt_ms) if v is not None and v == v]
    return min(vals) if vals else 0.0


def _message_resend(msgs: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    ev_idx, mrow = _event_message_pairs(msgs, events)
    if ev_idx.size == 0:
        return msgs
    t0 = events["t0"].to_numpy().astype(np.int64)[ev_idx]
    t1 = events["t1"].to_numpy().astype(np.int64)[ev_idx]
    resend = _union_seconds(mrow, t0, t1, msgs.height)
    return msgs.with_columns(resend_s=pl.Series(resend))


# ============================================================================================
# Public API
# ============================================================================================
Source = str | Path | Sequence[str | Path]


def _paths(source: Source) -> list[str]:
    if isinstance(source, (str, Path)):
        return [str(source)]
    return [str(p) for p in source]


def analyze_streams(source: Source, *, progress: Any = None,
                    on_segments: Callable[[pl.DataFrame], None] | None = None,
                    tls_keylog: Any = None) -> StreamAnalysis:
    """One pass over the capture(s): connections, messages, transactions, gaps and counts.

    `on_segments(segs)` is called with each chunk's SEGMENTS rows, for a caller (logons) that
    needs per-segment columns from the same pass. `tls_keylog` (a path or a
    netdiag.tls_keylog.KeyLog) decrypts TLS connections whose secrets it holds: the GIOP/HTTP
    inside is parsed like cleartext (netdiag/tcp/tls_streams.py); the others stay TLS turns."""
    from netdiag.capture import iter_chunks
    from netdiag.tcp import TcpAnalyzer

    kwargs: dict[str, Any] = {}
    read_stats = None
    try:
        from netdiag.capture import ReadStats

        read_stats = ReadStats()
        kwargs["stats"] = read_stats
    except ImportError:
        pass
    if progress is not None:
        kwargs["progress"] = progress
    analyzer = TcpAnalyzer()
    if tls_keylog is not None and not hasattr(tls_keylog, "secrets"):
        from netdiag.tls_keylog import read_keylog

        tls_keylog = read_keylog(tls_keylog)
    sp = StreamParser(keylog=tls_keylog)
    with _no_cyclic_gc():
        for chunk in iter_chunks(_paths(source), **kwargs):
            segs = analyzer.feed(chunk)
            sp.feed(segs, chunk.payload, chunk.packets)
            sp.feed_udp(getattr(analyzer, "last_udp", None), chunk.payload)
            if on_segments is not None:
                on_segments(segs)
        connections = analyzer.finish()
        return _assemble(sp, connections, read_stats)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """The pass makes millions of short-lived objects (records, detail dicts, rows) and pairing
    keeps a few hundred thousand until the table is built; the cyclic collector would re-scan
    them again and again (measured on the storm bench: 10% of the chunk loop, 40% of
    build_transactions). Nothing here makes reference cycles, so it is off for the pass."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _assemble(sp: StreamParser, connections: pl.DataFrame, read_stats: Any = None) -> StreamAnalysis:
    with _no_cyclic_gc():
        return _assemble_tables(sp, connections, read_stats)


def _assemble_tables(sp: StreamParser, connections: pl.DataFrame, read_stats: Any = None) -> StreamAnalysis:
    sp.finish()
    msgs, events, gaps = sp.result()
    msgs = _message_resend(msgs, events)
    stats = sp.stats
    txns = build_transactions(msgs, sp.sink.details, connections, events, stats, sp.min_ack_rtt_ms)
    stats.messages = msgs.height
    stats.malformed_messages = int(msgs["malformed"].sum()) if msgs.height else 0
    # capture loss: the one ACK-proven figure (connections.unseen_bytes: bytes the receiver
    # acknowledged that the capture never saw), not the parser's stream gaps, which also hold
    # holes nobody acknowledged and miss connections no parser read
    if "unseen_bytes" in connections.columns and connections.height:
        stats.gaps = int(connections["unseen_gaps"].sum()) if "unseen_gaps" in connections.columns else gaps.height
        stats.gap_bytes = int(connections["unseen_bytes"].sum())
    else:
        stats.gaps = gaps.height
        stats.gap_bytes = int(gaps["bytes"].sum()) if gaps.height else 0
    stats.by_protocol = dict(msgs.group_by("protocol").len().iter_rows()) if msgs.height else {}
    stats.tls_warnings = _tls_warnings(stats.tls_not_decrypted, connections)
    if read_stats is not None and hasattr(read_stats, "warnings"):
        read_stats.warnings.extend(stats.tls_warnings)   # every command prints these lines
    return StreamAnalysis(connections, msgs, txns, gaps, stats, read_stats,
                          tls_quiet_frames=_quiet_frames(msgs, stats.tls_quiet_rows))


def _quiet_frames(msgs: pl.DataFrame, rows: list[int]) -> np.ndarray:
    """Frames that carry only TLS post-handshake messages or alerts (tickets, key updates,
    close_notify): the budget does not take a Nagle stall on such a frame as a wait (docs/tls.md).
    A frame that also carries bytes of any other message is not quiet."""
    if not rows:
        return np.zeros(0, np.int64)
    f = msgs.select("first_frame", "last_frame").with_row_index("row")
    mask = np.zeros(msgs.height, np.bool_)
    mask[np.asarray(rows, np.int64)] = True
    q = f.filter(pl.Series(mask))
    quiet = np.union1d(q["first_frame"].to_numpy(), q["last_frame"].to_numpy())
    other = f.filter(pl.Series(~mask))
    busy = np.union1d(other["first_frame"].to_numpy(), other["last_frame"].to_numpy())
    return np.setdiff1d(quiet, busy).astype(np.int64)


def _tls_warnings(items: list[tuple[int, str]], connections: pl.DataFrame) -> list[str]:
    """One line per TLS connection a key log was given for that stays without keys, naming it."""
    if not items:
        return []
    names = {r[0]: f"{r[1]}:{r[2]} -> {r[3]}:{r[4]}" for r in connections.filter(
        pl.col("conn_id").is_in([c for c, _ in items])).select(
        "conn_id", "client_ip", "client_port", "server_ip", "server_port").iter_rows()}
    return [f"TLS connection {cid} ({names.get(cid, '?')}) not decrypted: {why}; read without keys"
            if "rest of the connection" not in why else
            f"TLS connection {cid} ({names.get(cid, '?')}): decryption stopped: {why}" for cid, why in items]


def messages(source: Source) -> pl.DataFrame:
    """The MESSAGES table of the capture(s)."""
    return analyze_streams(source).messages


def transactions(source: Source) -> pl.DataFrame:
    """The TRANSACTIONS table of the capture(s)."""
    return analyze_streams(source).transactions


# Statuses that are errors: GIOP exceptions and failed locates, HTTP 4xx/5xx, DNS rcodes other than
# NOERROR, TLS alerts. Forwards are not errors (counted apart); unanswered is counted apart.
_ERROR_STATUSES = ("USER_EXCEPTION", "SYSTEM_EXCEPTION", "NEEDS_ADDRESSING_MODE", "UNKNOWN_OBJECT",
                   "LOC_SYSTEM_EXCEPTION", "LOC_NEEDS_ADDRESSING_MODE")
_FORWARD_STATUSES = ("LOCATION_FORWARD", "LOCATION_FORWARD_PERM", "OBJECT_FORWARD", "OBJECT_FORWARD_PERM")


def summarize(txns: pl.DataFrame) -> pl.DataFrame:
    """Per (protocol, operation): count, p50/p95/max server think (s), errors, forwards, unanswered."""
    status = pl.col("status").fill_null("")
    err = (status.is_in(_ERROR_STATUSES) | status.str.contains(r"^[45]\d\d$") | status.str.starts_with("alert:")
           | ((pl.col("protocol") == "dns") & ~status.is_in(["NOERROR", "unanswered"])))
    return (txns.group_by("protocol", "operation")
            .agg(count=pl.len(),
                 think_p50_s=pl.col("server_think_s").quantile(0.5, "nearest"),
                 think_p95_s=pl.col("server_think_s").quantile(0.95, "nearest"),
                 think_max_s=pl.col("server_think_s").max(),
                 errors=err.sum(),
                 forwards=status.is_in(_FORWARD_STATUSES).sum(),
                 unanswered=(status == "unanswered").sum())
            .sort("count", "operation", descending=[True, False], nulls_last=True))


def filter_transactions(txns: pl.DataFrame, *, protocol: str | None = None, operation: str | None = None,
                        server: str | None = None) -> pl.DataFrame:
    """Rows matching a protocol, an operation regex and/or a server HOST[:PORT]."""
    if protocol:
        txns = txns.filter(pl.col("protocol") == protocol.lower())
    if operation:
        re.compile(operation)  # a bad regex raises re.error here, before polars sees it
        txns = txns.filter(pl.col("operation").fill_null("").str.contains(operation))
    if server:
        host, _, port = server.rpartition(":") if server.count(":") == 1 or server.startswith("[") else (server, "", "")
        host = host.strip("[]") or server
        if port and not port.isdigit():
            host, port = server, ""
        txns = txns.filter(pl.col("server_ip") == host)
        if port:
            txns = txns.filter(pl.col("server_port") == int(port))
    return txns


def iter_protocols(analysis: StreamAnalysis) -> Iterable[tuple[str, int]]:
    """(protocol, message count) pairs, for a one-line stderr summary."""
    return sorted(analysis.stats.by_protocol.items())
