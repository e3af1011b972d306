"""Per-connection byte streams, recognised by the protocol registry, cut and parsed into messages.

`StreamParser` takes each chunk's SEGMENTS rows and payload, places payload bytes into
per-direction streams (netdiag.tcp.streams.StreamDir), recognises the connection's protocol
(netdiag.protocols.registry: by port, by the parsers' looks_like in their order, by a magic
found mid-stream), cuts each direction with the parser's `cut` in time order across the two
directions, parses the messages and hands them to the MessageSink. Gaps, resends and D-SACKs
are recorded for the timing columns (see the package docstring).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import numpy as np
import polars as pl

from netdiag.capture.tcp_flags import TH_ACK, TH_FIN, TH_RST
from netdiag.protocols import Cut, Record
from netdiag.protocols.registry import port_specs, stream_specs, udp_specs
from netdiag.protocols.spec import ProtocolSpec
from netdiag.tcp.streams import WINDOW_LIMIT_BYTES, StreamDir
from netdiag.transactions.sink import MessageSink, StreamStats

# Bytes of a stream's head after which a direction that no parser recognised stops waiting.
HEAD_DECISION_BYTES = 64
# A message longer than this is not believed when skipping past a gap (a lying length).
SKIP_LIMIT_BYTES = 64 * 1024 * 1024

_SEG_COLUMNS = ("frame", "ts_ns", "conn_id", "direction", "tcp_flags", "seq_rel", "ack_rel", "payload_len",
                "payload_captured", "payload_offset", "retransmission", "rto_s", "ack_rtt_s", "resend",
                "spurious_retransmission", "resend_wait_s", "dsack_left_rel", "dsack_right_rel")


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
    __slots__ = ("conn_id", "dirs", "state", "proto", "spec", "mod", "ctx", "server_port", "tried", "skip_to", "tls",
                 "gap_end")

    def __init__(self, conn_id: int) -> None:
        self.conn_id = conn_id
        self.dirs = (StreamDir(), StreamDir())
        self.state = "pending"   # pending -> keep | skip
        self.proto: str | None = None
        self.spec: ProtocolSpec | None = None
        self.mod: Any = None
        self.ctx: Any = None
        self.server_port = 0
        self.tried = [False, False]
        self.skip_to = [0, 0]  # per direction: the rest of a message a gap cut short ends here
        self.tls: Any = None  # decryption and inner parsing (key log given: the spec's decryptor)
        self.gap_end = [-1, -1]  # per direction: stream offset right after the latest capture gap


class StreamParser:
    """Reassembles TCP streams chunk by chunk and cuts them into messages (one per analysis)."""

    def __init__(self, keylog: Any = None) -> None:
        self.keylog = keylog                      # secrets for TLS decryption (netdiag.tls_keylog.KeyLog)
        self.conns: dict[int, _Conn] = {}
        self.skip = np.zeros(1024, np.bool_)      # indexed by conn_id: skipped connections
        self.done = np.zeros(1024, np.bool_)      # indexed by conn_id: parsed to their end, released
        # A connection gets its _Conn (two StreamDirs) only when it carries payload, a FIN or a
        # RST: until then (a SYN, a handshake, bare ACKs) these arrays, indexed by conn_id, hold
        # all there is to know of it: seen at all, given a _Conn yet, and each direction's
        # highest offset its peer acknowledged (-1 none). A SYN flood costs 18 B per connection.
        self.seen = np.zeros(1024, np.bool_)
        self.made = np.zeros(1024, np.bool_)
        self.acked = np.full((1024, 2), -1, np.int64)
        self.sink = MessageSink()
        self.events: list[pl.DataFrame] = []      # resend intervals (conn, dir, offsets, times)
        self.dsacks: list[pl.DataFrame] = []      # D-SACK blocks: the receiver got those bytes twice
        # the registry as it is now: a protocol registered later is seen by the next StreamParser
        self.stream_specs = stream_specs()          # recognised by their first bytes, in this order
        self.port_specs = port_specs()              # recognised by the server port
        self.udp_specs = udp_specs()                # parsed from UDP datagrams by port
        self.parsers = {s.name: s.parser for s in self.stream_specs}
        self.magic_specs = tuple(s for s in self.stream_specs if s.magic)
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
            grow = size - self.skip.size
            self.skip = np.concatenate([self.skip, np.zeros(grow, np.bool_)])
            self.done = np.concatenate([self.done, np.zeros(grow, np.bool_)])
            self.seen = np.concatenate([self.seen, np.zeros(grow, np.bool_)])
            self.made = np.concatenate([self.made, np.zeros(grow, np.bool_)])
            self.acked = np.concatenate([self.acked, np.full((grow, 2), -1, np.int64)])
        self.seen[cid] = True
        # only the columns used here: every filter below copies what it keeps
        live = segs.select([c for c in _SEG_COLUMNS if c in segs.columns])
        if self.skip[cid].any():   # (a filter copies even when it keeps every row)
            live = live.filter(pl.Series(~self.skip[cid]))
        if live.height == 0:
            return
        # the server's ACKs of client data (capture -> server -> capture), also those after the stream
        # was parsed to its end: the quickest one is the same whichever chunk it arrives in
        if "ack_rtt_s" in live.columns:
            acks = (live.filter((pl.col("direction") == 1) & pl.col("ack_rtt_s").is_not_null())
                    .group_by("conn_id").agg(pl.col("ack_rtt_s").min()))
            for conn_id, rtt_s in acks.iter_rows():
                old = self.min_ack_rtt_ms.get(conn_id)
                self.min_ack_rtt_ms[conn_id] = rtt_s * 1e3 if old is None else min(old, rtt_s * 1e3)
        done = self.done[live["conn_id"].to_numpy()]
        # a connection parsed to its end and released: only its resends still count (below)
        finished = live.filter(pl.Series(done)) if done.any() else None
        if finished is not None:
            live = live.filter(pl.Series(~done))
        flags = pl.col("tcp_flags").cast(pl.Int64)
        # end-of-stream and acknowledgement bookkeeping, one row per (conn, direction) that sent
        # an ACK, FIN or RST (a direction without one has nothing to mark: a SYN flood, none)
        marks = (live.filter((flags & (TH_ACK | TH_FIN | TH_RST)) > 0).group_by("conn_id", "direction")
                 .agg(ack=pl.when((flags & TH_ACK) > 0).then(pl.col("ack_rel")).max(),
                      fin=pl.when((flags & TH_FIN) > 0)
                      .then(pl.col("seq_rel") + pl.col("payload_len").cast(pl.Int64) - 1).min(),
                      rst=((flags & TH_RST) > 0).any()))
        for conn_id, d, ack, fin, rst in marks.iter_rows():
            conn = self.conns.get(conn_id)
            if conn is None and fin is None and not rst:
                # no _Conn yet, none needed for an ACK: its offset waits in self.acked
                if ack is not None and ack - 1 > self.acked[conn_id, 1 - d]:
                    self.acked[conn_id, 1 - d] = ack - 1
                continue
            conn = conn if conn is not None else self._conn(conn_id)
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
        # every connection of the chunk (none has a _Conn to step yet: no need to list them)
        touched: set[int] = set(live["conn_id"].unique().to_list()) if self.conns or data.height else set()
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
            if conn_id < self.made.size:
                self.made[conn_id] = True
                for d in (0, 1):
                    conn.dirs[d].acked = int(self.acked[conn_id, d])
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
        for spec in self.port_specs:
            if conn.server_port in spec.ports:
                self._keep(conn, spec)
                return
        heads: list[bytes] = []
        for d in (0, 1):
            sd = conn.dirs[d]
            heads.append(sd.bytes_at(sd.pos, min(sd.frontier, sd.pos + 256)) if sd.pos == 0 else b"")
        for d in sorted((0, 1), key=lambda k: (not heads[k], conn.dirs[k].ts_at(0) if heads[k] else 0)):
            head = heads[d]
            if not head:
                continue
            for spec in self.stream_specs:
                if spec.parser.looks_like(head):
                    self._keep(conn, spec)
                    if spec.decryptor is not None and self.keylog is not None:
                        conn.tls = spec.decryptor(self.keylog, self.parsers)
                    return
            if len(head) >= HEAD_DECISION_BYTES or conn.dirs[d].at_end() or final:
                conn.tried[d] = True
        # the capture may have joined a connection mid-message: search a protocol's magic (GIOP)
        for spec in self.magic_specs:
            if any(spec.magic in h for h in heads) and any(conn.tried):
                self._keep(conn, spec)
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

    @staticmethod
    def _keep(conn: _Conn, spec: ProtocolSpec) -> None:
        """The connection is `spec`'s protocol: parse it from now on."""
        conn.proto, conn.spec, conn.mod = spec.name, spec, spec.parser
        conn.ctx = spec.new_context("tcp")
        conn.state = "keep"

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
        """Decrypt one TLS record with the key log; its inner GIOP/HTTP messages
        (netdiag/protocols/tls/plaintext.py)."""
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
        self.sink.set_timings(arr[:, 2], fts, lts, ffr, lfr)
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
            end = _declared_end(conn.spec, recs[0].detail, sd.pos)
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
        """Parse the datagrams of UDP protocols (DNS: port 53/5353/5355 on either side) from the
        analyzer's UDP rows."""
        if udp is None or udp.height == 0:
            return
        for spec in self.udp_specs:
            self._feed_udp(spec, udp, payload)

    def _feed_udp(self, spec: ProtocolSpec, udp: pl.DataFrame, payload: np.ndarray) -> None:
        ports = list(spec.ports)
        rows = udp.filter((pl.col("payload_captured") > 0)
                          & (pl.col("src_port").is_in(ports) | pl.col("dst_port").is_in(ports)))
        if rows.height == 0:
            return
        if "direction" not in rows.columns:
            rows = rows.with_columns(direction=pl.when(pl.col("dst_port").is_in(ports)).then(0).otherwise(1))
        ctx = spec.new_context("udp")
        for conn_id, d, frame, ts, off, cap in rows.select(
                "conn_id", "direction", "frame", "ts_ns", "payload_offset", "payload_captured").iter_rows():
            msg = payload[off: off + cap].tobytes()
            try:
                recs = spec.parser.parse(msg, context=ctx, direction=d)
            except Exception as exc:
                recs = [Record(spec.name, "malformed", malformed=True, reason=f"parser error: {exc!r}")]
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
        # connections that never carried payload, a FIN or a RST got no _Conn: nothing to parse
        self.stats.connections_skipped += int(np.count_nonzero(self.seen & ~self.made))
        self.seen = self.made = np.zeros(0, np.bool_)
        self.acked = np.zeros((0, 2), np.int64)

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


def _declared_end(spec: ProtocolSpec | None, detail: dict[str, Any], start: int) -> int | None:
    """Stream offset where a message starting at `start` ends, by its own header (None: unknown)."""
    size = spec.declared_size(detail) if spec is not None and spec.declared_size is not None else None
    if size is None or size <= 0 or size > SKIP_LIMIT_BYTES:
        return None
    return start + size
