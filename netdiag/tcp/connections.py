"""The connections table: one row per TCP connection or UDP flow, with Zeek's state and history.

What and why: the per-connection answers a network engineer asks first (who talked to whom,
how long the handshake took on each side of the capture point, how much was resent, how long
a zero window held things up, what the capture itself dropped) in the column names declared in
netdiag.schema.CONNECTIONS. Built once, at the end, from the state arrays the analysis kernel
(netdiag.tcp.analysis) keeps per connection, so it costs nothing per packet.

Zeek conventions (Zeek is the anchor for `state` and `history`; tests/test_zeek_oracle.py holds
netdiag to Zeek's own expected conn.log on Zeek's test traces):
- `history` (netdiag.tcp.zeek `_zeek_tcp`, after TCPSessionAdapter.cc `update_history`,
  `update_window`, `update_last_seq` and TCP_Reassembler.cc `Gap`): upper case for the originator
  (netdiag's client). S SYN, H SYN+ACK, A pure ACK, D payload (not on SYN/FIN/RST packets),
  F FIN, R RST, each once; a SYN, FIN or RST at another sequence number is written again (a
  resent SYN at the same number is not: Zeek's T is for resent payload). I FIN+RST, Q other
  multi-flag packets. T payload that does not advance the sequence, W zero window, G an ACK for
  data the capture never saw (content gap): these three at the 1st, 10th, 100th ... occurrence
  (Session::ScaledHistoryEntry). ^ first when the first packet came from the responder (Zeek's
  role flip: a missed SYN). UDP flows record D/d only. No C: checksums are not verified.
- `state`: Zeek's `conn_state()` (scripts/base/protocols/conn/main.zeek) over Zeek's endpoint
  states (INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET) as
  UpdateStateMachine moves them; e.g. a RST after both FINs leaves both CLOSED (SF), a SYN/ACK
  and ACK without the SYN establish both sides. The REJ test "both sizes 0" uses payload bytes
  seen (Zeek uses sequence numbers). UDP: SF both sides sent, S0 only the client, SHR only the
  server.
- Connections split where Zeek's do (IsReuse): besides Wireshark's new-ISN rule, a SYN after a
  FIN or RST starts a new connection (a refused connection retried three times is three REJ
  rows), so one tcp.stream can hold several conn_ids.
- Approximations: content gaps are judged per ACK from the data seen (Zeek keeps every
  reassembly block; the letter differs only when a direction has 10 or more gaps); Zeek defers
  a close while data is pending delivery, netdiag does not.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from netdiag.capture.addresses import format_ip
from netdiag.schema import CONNECTIONS
from netdiag.tcp import state as st
from netdiag.tcp.holes import unseen_bytes_kernel
from netdiag.tcp.nagle import add_connection_columns as add_nagle_columns

# Zeek's endpoint states, as in netdiag.tcp.state ZS_*
_INACTIVE, _SYN_SENT, _SYN_ACK_SENT, _PARTIAL, _ESTABLISHED, _CLOSED, _RESET = range(7)
_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")
_RSTOS0_PREFIX = r"^\^?S[^HAFGIQ]*R"   # the same test as a prefix match (the trailing .* takes the rest)


def _state(proto: int, os_: int, rs: int, orig_size0: bool, resp_size0: bool, pk_c: int, pk_s: int,
           history_rstos0: bool) -> str:
    r"""Zeek's conn_state() (scripts/base/protocols/conn/main.zeek), rule for rule.

    history_rstos0: the history matches Zeek's `/\^?S[^HAFGIQ]*R.*/` (_RSTOS0)."""
    if proto != 6:
        if pk_c:
            return "SF" if pk_s else "S0"
        return "SHR" if pk_s else "OTH"
    o_inactive = os_ in (_INACTIVE, _PARTIAL)
    r_inactive = rs in (_INACTIVE, _PARTIAL)
    if rs == _RESET:
        if os_ in (_SYN_SENT, _SYN_ACK_SENT) or (os_ == _RESET and orig_size0 and resp_size0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == _RESET:
        if r_inactive:
            return "RSTOS0" if history_rstos0 else "OTH"
        return "RSTO"
    if rs == _CLOSED and os_ == _CLOSED:
        return "SF"
    if os_ == _CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == _CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == _SYN_SENT and rs == _INACTIVE:
        return "S0"
    if os_ == _ESTABLISHED and rs == _ESTABLISHED:
        return "S1"
    return "OTH"


def _ms(a_ns: np.ndarray, b_ns: np.ndarray) -> pl.Series:
    """b - a in ms, null unless both are known (numpy masked array: no Python object per row)."""
    return pl.Series(np.ma.masked_array((b_ns - a_ns) / 1e6, mask=(a_ns < 0) | (b_ns < 0)), dtype=pl.Float64)


def build_connections(state: dict[str, np.ndarray], flows: pl.DataFrame,
                      nagle_candidates: pl.DataFrame | None = None) -> pl.DataFrame:
    """The CONNECTIONS table from the analysis state arrays (layout in netdiag.tcp.state).

    `state`: "C", "D", "H" and "holes" (the hole pool, rows of sequence holes that D's DS_HOLE_ROW
    points into, for the unseen_bytes columns). They are taken out of the dict and let go as soon
    as read: the direction rows and the history are freed before the table's columns are made, so
    the peak is not the whole state plus the table. `nagle_candidates`
    (netdiag.tcp.nagle.NagleTracker) gives the nagle_stalls / nagle_stall_s columns; None leaves
    them null."""
    C = state.pop("C")
    CS = C.view(np.int32)   # C's int32 fields (netdiag.tcp.state: CS_*)
    n = C.shape[0]
    if n == 0:
        return CONNECTIONS.empty()
    # endpoints first, while only the analysis state is alive: gathered from the flow keys with
    # numpy (a join and when/then copies cost ~3x the table), the address text by polars
    fl = C[:, st.C_FLOW]
    ca = CS[:, st.CS_CLIENT_IS_A] == 1

    def pick(mine: str, other: str) -> np.ndarray:
        return np.where(ca, flows[mine].to_numpy()[fl], flows[other].to_numpy()[fl])

    ends = pl.DataFrame({"c_hi": pick("a_hi", "b_hi"), "c_lo": pick("a_lo", "b_lo")})
    client_ip = ends.select(format_ip("c_hi", "c_lo"))[:, 0]
    ends = pl.DataFrame({"s_hi": pick("b_hi", "a_hi"), "s_lo": pick("b_lo", "a_lo")})
    server_ip = ends.select(format_ip("s_hi", "s_lo"))[:, 0]
    del ends
    endpoints = {"client_ip": client_ip, "server_ip": server_ip, "client_port": pick("a_port", "b_port"),
                 "server_port": pick("b_port", "a_port")}
    D, holes = state.pop("D"), state.pop("holes", None)
    unseen = np.zeros(n, np.int64)
    unseen_gaps = np.zeros(n, np.int64)
    if holes is None or holes.shape[0] == 0:   # (the kernel needs a 2-D array even when unused)
        holes = np.zeros((1, st.HP_NCOLS), np.int64)
    unseen_bytes_kernel(C, D, holes, n, unseen, unseen_gaps)
    # the direction columns the table reads, gathered per side (a row of D, or a template row)
    side_cols = (st.D_ZW_START, st.D_BYTES, st.D_PACKETS, st.D_FRAME_BYTES, st.D_IP_BYTES)
    got = {(d, col): D[C[:, st.C_DROW + d], col] for d in (0, 1) for col in side_cols}
    DS = D.view(np.int32)   # D's int32 fields (DS_*)
    got.update({(d, st.DS_Z_STATE): DS[C[:, st.C_DROW + d], st.DS_Z_STATE] for d in (0, 1)})
    del DS
    del D, holes

    def cl(col: int) -> np.ndarray:
        return got[0, col]

    def sv(col: int) -> np.ndarray:
        return got[1, col]

    last_ts = C[:, st.C_LAST_TS]
    # zero windows still open at the end count until the connection's last packet
    zw = C[:, st.C_ZW_NS].copy()
    for side in (cl, sv):
        zw_start = side(st.D_ZW_START)
        open_ = zw_start >= 0
        zw[open_] += last_ts[open_] - zw_start[open_]
    # history letters: the fixed-width byte rows read as NUL-padded strings (no loop per row)
    H = state.pop("H")
    hist = pl.Series(np.ascontiguousarray(H).view(f"S{H.shape[1]}").ravel()).cast(pl.String)
    del H
    proto = CS[:, st.CS_PROTO]
    # state: few distinct combinations of the inputs, each decided once by _state (RSTOS0 needs the
    # history, but only where the originator reset and the responder stayed inactive)
    os_, rs = cl(st.DS_Z_STATE), sv(st.DS_Z_STATE)
    needs_hist = (os_ == _RESET) & np.isin(rs, (_INACTIVE, _PARTIAL))
    # conn_state's RSTOS0 test on the history, vectorised (only read where the originator reset)
    rstos0 = (hist.str.contains(_RSTOS0_PREFIX).to_numpy() & needs_hist if needs_hist.any()
              else np.zeros(n, np.bool_))
    key = (proto.astype(np.int64) | (os_ << 8) | (rs << 12) | ((cl(st.D_BYTES) == 0) << 16)
           | ((sv(st.D_BYTES) == 0) << 17) | ((cl(st.D_PACKETS) > 0) << 18) | ((sv(st.D_PACKETS) > 0) << 19)
           | (rstos0.astype(np.int64) << 20))
    combos, which = np.unique(key, return_inverse=True)
    names = np.array([_state(int(x & 0xFF), int((x >> 8) & 0xF), int((x >> 12) & 0xF), bool(x >> 16 & 1),
                             bool(x >> 17 & 1), int(x >> 18 & 1), int(x >> 19 & 1), bool(x >> 20 & 1))
                      for x in combos.tolist()], dtype=object)
    states = pl.Series(names.tolist(), dtype=pl.String).gather(which.ravel())
    syn_ts, synack_ts, est_ts = C[:, st.C_SYN_TS], C[:, st.C_SYNACK_TS], C[:, st.C_EST_TS]

    def nullable(v: np.ndarray, ok: np.ndarray) -> np.ma.MaskedArray:
        return np.ma.masked_array(v, mask=~ok)

    is_tcp = proto == 6
    cols = {
        **endpoints,
        "conn_id": np.arange(n, dtype=np.uint32),
        "transport": np.where(is_tcp, "tcp", "udp"),
        "first_ts_ns": C[:, st.C_FIRST_TS],
        "last_ts_ns": last_ts,
        "first_frame": C[:, st.C_FIRST_FRAME],
        "last_frame": C[:, st.C_LAST_FRAME],
        "duration_s": (last_ts - C[:, st.C_FIRST_TS]) / 1e9,
        "syn_ts_ns": pl.Series(nullable(syn_ts, syn_ts >= 0), dtype=pl.Int64),
        "synack_ts_ns": pl.Series(nullable(synack_ts, synack_ts >= 0), dtype=pl.Int64),
        "established_ts_ns": pl.Series(nullable(est_ts, est_ts >= 0), dtype=pl.Int64),
        "syn_retransmissions": CS[:, st.CS_SYN_COUNT],
        "connect_s": _ms(syn_ts, est_ts) / 1e3,
        "rtt_server_side_ms": _ms(C[:, st.C_SYN_BEFORE_SYNACK], synack_ts),
        "rtt_client_side_ms": _ms(synack_ts, est_ts),
        "mss_client": pl.Series(nullable(CS[:, st.CS_MSS_C], CS[:, st.CS_MSS_C] > 0), dtype=pl.Int64),
        "mss_server": pl.Series(nullable(CS[:, st.CS_MSS_S], CS[:, st.CS_MSS_S] > 0), dtype=pl.Int64),
        "wscale_client": pl.Series(nullable(CS[:, st.CS_WS_C], CS[:, st.CS_WS_C] >= 0), dtype=pl.Int64),
        "wscale_server": pl.Series(nullable(CS[:, st.CS_WS_S], CS[:, st.CS_WS_S] >= 0), dtype=pl.Int64),
        "sack_permitted": (CS[:, st.CS_SACKP_C] == 1) & (CS[:, st.CS_SACKP_S] == 1),
        "packets_c2s": cl(st.D_PACKETS), "packets_s2c": sv(st.D_PACKETS),
        "bytes_c2s": cl(st.D_BYTES), "bytes_s2c": sv(st.D_BYTES),
        "frame_bytes_c2s": cl(st.D_FRAME_BYTES), "frame_bytes_s2c": sv(st.D_FRAME_BYTES),
        "ip_bytes_c2s": cl(st.D_IP_BYTES), "ip_bytes_s2c": sv(st.D_IP_BYTES),
        "retransmitted_segments": CS[:, st.CS_RETRANS_SEGS],
        "retransmitted_bytes": C[:, st.C_RETRANS_BYTES],
        "retransmission_stall_s": C[:, st.C_STALL_NS] / 1e9,
        "fast_retransmissions": CS[:, st.CS_FAST],
        "out_of_order_segments": CS[:, st.CS_OOO],
        "duplicate_acks": CS[:, st.CS_DUPACK],
        "lost_segments": CS[:, st.CS_LOST],
        "zero_window_events": CS[:, st.CS_ZW_EVENTS],
        "zero_window_s": zw / 1e9,
        "window_full_events": CS[:, st.CS_WINFULL],
        "keep_alives": CS[:, st.CS_KEEPALIVE],
        "unseen_bytes": unseen,
        "unseen_gaps": unseen_gaps,
        "state": states,
        "history": hist,
    }
    # each column at its declared type as it is made (a cast of the whole frame would copy it again)
    schema = CONNECTIONS.schema

    def column(name: str) -> pl.Series:
        v = cols.pop(name)
        ser = v.alias(name) if isinstance(v, pl.Series) else pl.Series(name, v)
        return ser.cast(schema[name], strict=False)

    df = pl.DataFrame([column(name) for name in list(cols)])
    df = add_nagle_columns(df, nagle_candidates)
    return CONNECTIONS.conform(df)
