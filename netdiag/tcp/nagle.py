"""Nagle x delayed-ACK stalls, detected once from the segments and used by every table that shows them.

What the wire shows (RFC 896 Nagle x RFC 1122 4.2.3.2 delayed ACK; docs/domain.md §3.2 and §5): a
sender X sends a small data segment A while it has nothing else unacknowledged; X's application
writes more, but Nagle holds that small segment B until A is acknowledged. The receiver Y has
nothing to send back (it waits for the rest of the request), so it acknowledges A only when its
delayed-ACK timer fires: ~40 ms on Linux, up to 200 ms on Windows. B then leaves right after the
ACK reaches X. In the capture:

    A (X, data) ... Y's bare ACK of A, 30-500 ms later than Y's round trip explains ... B (X, < MSS)

Rule, row by row on the segments of one connection in time order:
- the ACK row is a bare ACK (no payload, no SYN/FIN/RST) whose `acks_frame` is the last data
  segment the other side (X) sent so far (nothing newer of X's is outstanding);
- its `ack_rtt_s` (A to this ACK) less the round trip on Y's side of the capture point
  (connections.rtt_*_side_ms) lies in [DELAYED_ACK_MIN_S, DELAYED_ACK_MAX_S]: a delayed ACK,
  not ACK clocking;
- the very next segment of the connection is X's, carries data and is smaller than X's MSS
  (the held tail), and follows the ACK within X's side round trip + NAGLE_SLACK_NS.
A stall lasts from A to B (`a_ts_ns` .. `b_ts_ns`): the time B was held. At a capture point both
are seen one path delay after the sender sent them, so the difference is the sender's hold time.

Two stages so the connections table can count stalls in one streaming pass (`NagleTracker`):
`nagle_candidates` needs only the segments (per chunk, with a carry of each connection's last
rows); `nagle_stalls` applies the round-trip and MSS tests once the connections table is known.
The logon budget (netdiag.logons.budget) and the findings call the same two functions.
"""

from __future__ import annotations

import polars as pl

from netdiag.capture.tcp_flags import TH_SYN_FIN_RST

# A bare ACK this long after the data it acknowledges (beyond the round trip) is a delayed ACK
# (Windows 200 ms, Linux ~40 ms; docs/domain.md §3.2).
DELAYED_ACK_MIN_S, DELAYED_ACK_MAX_S = 0.030, 0.500
# The held segment leaves as soon as the ACK reaches its sender: at the capture point it follows
# the ACK by the sender side's round trip plus path jitter. 10 ms of jitter: under load the lab's
# user-space bridge alone delayed 2 of 13 held segments by 4 ms (tcp_stalls_other_port).
NAGLE_SLACK_NS = 10_000_000
DEFAULT_MSS = 1200          # when the handshake (and its MSS option) was not captured

# Segment columns the detection reads.
COLUMNS = ("frame", "ts_ns", "conn_id", "direction", "tcp_flags", "payload_len", "ack_rtt_s", "acks_frame")
_SCHEMA = {"frame": pl.Int64, "ts_ns": pl.Int64, "conn_id": pl.UInt32, "direction": pl.UInt8,
           "tcp_flags": pl.UInt16, "payload_len": pl.UInt32, "ack_rtt_s": pl.Float64, "acks_frame": pl.Int64}
CANDIDATE_SCHEMA = {"conn_id": pl.UInt32, "ack_dir": pl.UInt8, "ack_frame": pl.Int64, "ack_ts_ns": pl.Int64,
                    "ack_rtt_s": pl.Float64, "a_frame": pl.Int64, "a_ts_ns": pl.Int64, "b_frame": pl.Int64,
                    "b_ts_ns": pl.Int64, "b_len": pl.Int64}


def _bare_late_ack() -> pl.Expr:
    """A row that can be a candidate's ACK: no payload, no SYN/FIN/RST, acknowledging data at least
    DELAYED_ACK_MIN_S after it was sent."""
    return ((pl.col("payload_len") == 0) & ((pl.col("tcp_flags") & TH_SYN_FIN_RST) == 0)
            & pl.col("acks_frame").is_not_null() & (pl.col("ack_rtt_s") >= DELAYED_ACK_MIN_S))


def nagle_candidates(segments: pl.DataFrame, *, time_ordered: bool = False) -> pl.DataFrame:
    """Bare ACKs of the other side's last data, >= 30 ms after it, followed at once by that side's data.

    The tests that need the connection (round trips, MSS) are left to `nagle_stalls`. Rows whose
    next segment is not in `segments` are not candidates (the streaming tracker carries them).
    `time_ordered`: the rows are already in capture time order (the analyzer's order), so a
    stable sort by connection is enough.
    """
    if segments.height == 0:
        return pl.DataFrame(schema=CANDIDATE_SCHEMA)
    seg = segments.select(list(COLUMNS)).cast(_SCHEMA)
    seg = seg.sort("conn_id", maintain_order=True) if time_ordered else seg.sort("conn_id", "ts_ns", "frame")
    # whole-frame shifts and fills (no per-group windows: they cost more than the rest together);
    # a value taken from a neighbouring connection is masked by comparing its conn_id
    cid = pl.col("conn_id")
    data = pl.col("payload_len") > 0
    same_next = cid.shift(-1) == cid

    def last_data_of(d: int, col: str) -> pl.Expr:
        mine = data & (pl.col("direction") == d)
        return pl.when(pl.when(mine).then(cid).forward_fill() == cid).then(
            pl.when(mine).then(pl.col(col)).forward_fill())

    seg = seg.with_columns(
        _next_ts=pl.when(same_next).then(pl.col("ts_ns").shift(-1)),
        _next_dir=pl.when(same_next).then(pl.col("direction").shift(-1)),
        _next_len=pl.when(same_next).then(pl.col("payload_len").shift(-1)),
        _next_frame=pl.when(same_next).then(pl.col("frame").shift(-1)),
        _d0=last_data_of(0, "frame"), _d0_ts=last_data_of(0, "ts_ns"),
        _d1=last_data_of(1, "frame"), _d1_ts=last_data_of(1, "ts_ns"),
    )
    last_other = pl.when(pl.col("direction") == 0).then(pl.col("_d1")).otherwise(pl.col("_d0"))
    last_other_ts = pl.when(pl.col("direction") == 0).then(pl.col("_d1_ts")).otherwise(pl.col("_d0_ts"))
    bare = _bare_late_ack()
    cand = seg.filter(bare & (pl.col("_next_dir") != pl.col("direction")) & (pl.col("_next_len") > 0)
                      & (pl.col("acks_frame") == last_other))
    return cand.select(
        "conn_id", pl.col("direction").alias("ack_dir"), pl.col("frame").alias("ack_frame"),
        pl.col("ts_ns").alias("ack_ts_ns"), "ack_rtt_s", pl.col("acks_frame").alias("a_frame"),
        last_other_ts.alias("a_ts_ns"), pl.col("_next_frame").alias("b_frame"), pl.col("_next_ts").alias("b_ts_ns"),
        pl.col("_next_len").alias("b_len")).cast(CANDIDATE_SCHEMA)


def nagle_stalls(candidates: pl.DataFrame, connections: pl.DataFrame) -> pl.DataFrame:
    """The candidates that pass the round-trip and MSS tests (module docstring), with `stall_ns`."""
    if candidates.height == 0 or connections.height == 0:
        return candidates.clear().with_columns(stall_ns=pl.lit(0, pl.Int64))
    rtt = connections.select(pl.col("conn_id").cast(pl.UInt32), "rtt_client_side_ms", "rtt_server_side_ms",
                             "mss_client", "mss_server")
    c = candidates.join(rtt, on="conn_id", how="inner")
    client_rtt_ms = pl.col("rtt_client_side_ms").cast(pl.Float64).fill_null(0.0).fill_nan(0.0)
    server_rtt_ms = pl.col("rtt_server_side_ms").cast(pl.Float64).fill_null(0.0).fill_nan(0.0)
    # the ACK's sender (Y) is the data's receiver: its side of the capture point adds its round trip
    ack_side_rtt_s = pl.when(pl.col("ack_dir") == 0).then(client_rtt_ms).otherwise(server_rtt_ms) / 1000
    # the held segment's sender X is the other side
    x_rtt_ms = pl.when(pl.col("ack_dir") == 0).then(server_rtt_ms).otherwise(client_rtt_ms)
    x_mss = pl.when(pl.col("ack_dir") == 0).then(pl.col("mss_server")).otherwise(pl.col("mss_client"))
    delayed = (pl.col("ack_rtt_s") - ack_side_rtt_s).is_between(DELAYED_ACK_MIN_S, DELAYED_ACK_MAX_S)
    held = (pl.col("b_len") < x_mss.cast(pl.Int64).fill_null(DEFAULT_MSS)) & (
        (pl.col("b_ts_ns") - pl.col("ack_ts_ns")) <= (x_rtt_ms * 1e6).cast(pl.Int64) + NAGLE_SLACK_NS)
    return (c.filter(delayed & held).select(list(CANDIDATE_SCHEMA))
            .with_columns(stall_ns=pl.col("b_ts_ns") - pl.col("a_ts_ns")).sort("conn_id", "ack_ts_ns"))


def per_connection(stalls: pl.DataFrame) -> pl.DataFrame:
    """conn_id, nagle_stalls (count) and nagle_stall_s (sum of A-to-B holds) per connection with stalls."""
    return stalls.group_by("conn_id").agg(nagle_stalls=pl.len().cast(pl.Int64),
                                          nagle_stall_s=pl.col("stall_ns").sum() / 1e9)


def add_connection_columns(conns: pl.DataFrame, candidates: pl.DataFrame | None) -> pl.DataFrame:
    """The connections frame (before CONNECTIONS.conform) with nagle_stalls / nagle_stall_s (0 where none).

    UDP flows get nulls. `candidates` None (segments never seen) gives nulls for TCP too.
    """
    tcp = pl.col("transport") == "tcp"
    if candidates is None:
        return conns.with_columns(nagle_stalls=pl.lit(None, pl.Int64), nagle_stall_s=pl.lit(None, pl.Float64))
    # only the columns the tests read, and the two new columns looked up by conn_id: a filter or a
    # join of the whole table would copy every column of it (a SYN flood's 200 k rows: ~100 MB)
    rtt = conns.select("conn_id", "transport", "rtt_client_side_ms", "rtt_server_side_ms", "mss_client",
                       "mss_server").filter(tcp)
    per = per_connection(nagle_stalls(candidates, rtt)).with_columns(pl.col("conn_id").cast(conns["conn_id"].dtype))
    cid = pl.col("conn_id")
    return conns.with_columns(
        nagle_stalls=pl.when(tcp).then(cid.replace_strict(per["conn_id"], per["nagle_stalls"], default=0,
                                                          return_dtype=pl.Int64)),
        nagle_stall_s=pl.when(tcp).then(cid.replace_strict(per["conn_id"], per["nagle_stall_s"], default=0.0,
                                                           return_dtype=pl.Float64)))


class NagleTracker:
    """Streaming `nagle_candidates` over chunks of segments (state bounded by connections).

    Each connection's last segment (whose next may be in the next chunk) and its last data
    segment of each direction (what an ACK in the next chunk may acknowledge) are carried into
    the next chunk. A carried row cannot be counted twice: the last row had no next segment
    before, and the carried data rows are never bare ACKs.
    """

    def __init__(self) -> None:
        self._carry = pl.DataFrame(schema=_SCHEMA)
        self._parts: list[pl.DataFrame] = []

    def feed(self, segments: pl.DataFrame) -> None:
        """Take one chunk's segment rows (at least the COLUMNS)."""
        if segments.height == 0:
            return
        chunk = segments.select(list(COLUMNS)).cast(_SCHEMA)
        # only the carried rows of connections in this chunk take part (work stays per chunk, not per
        # connection ever seen); the others wait for their connection's next segment
        ids = chunk["conn_id"].unique().implode()
        here = pl.col("conn_id").is_in(ids)
        waiting = self._carry.filter(~here)
        work = pl.concat([self._carry.filter(here), chunk], how="vertical").sort("conn_id", maintain_order=True)
        cand = nagle_candidates(work, time_ordered=True)
        if cand.height:
            self._parts.append(cand)
        data = pl.col("payload_len") > 0
        cid = pl.col("conn_id")
        # a connection's last row waits for its next segment only if it can be a candidate's ACK
        # (a SYN flood's connections then carry nothing)
        last = work.filter((cid != cid.shift(-1).fill_null(-1)) & _bare_late_ack())   # sorted by connection
        last_data = work.filter(data).unique(subset=["conn_id", "direction"], keep="last", maintain_order=True)
        self._carry = pl.concat([waiting, pl.concat([last.select(list(COLUMNS)), last_data.select(list(COLUMNS))],
                                                     how="vertical").unique(subset=["frame"], keep="first")
                                 .sort("conn_id", "ts_ns", "frame").cast(_SCHEMA)], how="vertical")

    def candidates(self) -> pl.DataFrame:
        """Every candidate seen so far (CANDIDATE_SCHEMA)."""
        if not self._parts:
            return pl.DataFrame(schema=CANDIDATE_SCHEMA)
        return pl.concat(self._parts, how="vertical")
