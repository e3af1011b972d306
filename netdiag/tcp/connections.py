"""The connections table: one row per TCP connection or UDP flow, with Zeek's state and history.

What and why: the per-connection answers a network engineer asks first (who talked to whom,
how long the handshake took on each side of the capture point, how much was resent, how long
a zero window held things up, what the capture itself dropped) in the column names declared in
netdiag.schema.CONNECTIONS. Built once, at the end, from the state arrays the analysis kernel
(netdiag.tcp.analysis) keeps per connection, so it costs nothing per packet.

Zeek conventions (scripts/base/protocols/conn/main.zeek):
- `history`: letters in order of first occurrence, upper case for the client (originator):
  S SYN, H SYN/ACK, A pure ACK, D payload, F FIN, R RST; T retransmission and W zero window are
  logarithmic (recorded at the 1st, 10th, 100th... occurrence). UDP flows record D/d only.
  netdiag does not verify checksums, so there is no C letter.
- `state` (TCP), from what was seen of each side:
  S0 SYN, no reply; REJ SYN answered by RST; RSTOS0 client SYN then client RST, no SYN/ACK;
  SH client SYN then FIN, no SYN/ACK; RSTRH / SHR a SYN/ACK (no SYN seen) then the server's
  RST / FIN; established (SYN and SYN/ACK seen): RSTO / RSTR by the side whose RST came first,
  SF both FINs, S2 only the client's FIN, S3 only the server's, S1 neither; OTH no SYN seen.
  UDP: SF both sides sent, S0 only the client, SHR only the server.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from netdiag.capture.addresses import format_ip
from netdiag.schema import CONNECTIONS
from netdiag.tcp import analysis as a
from netdiag.tcp.nagle import add_connection_columns as add_nagle_columns


def _state(proto: int, syn: bool, synack: bool, fin_c: bool, fin_s: bool, rst_c: bool, rst_s: bool,
           first_rst_dir: int, pk_c: int, pk_s: int) -> str:
    if proto != 6:
        if pk_c and pk_s:
            return "SF"
        return "S0" if pk_c else "SHR"
    if syn and not synack:
        if rst_s:
            return "REJ"
        if rst_c:
            return "RSTOS0"
        if fin_c:
            return "SH"
        return "S0"
    if synack and not syn:
        if rst_s:
            return "RSTRH"
        if fin_s:
            return "SHR"
        return "OTH"
    if not syn:
        return "OTH"
    if rst_c or rst_s:
        return "RSTO" if first_rst_dir == 0 else "RSTR"
    if fin_c and fin_s:
        return "SF"
    if fin_c:
        return "S2"
    if fin_s:
        return "S3"
    return "S1"


def _ms(a_ns: np.ndarray, b_ns: np.ndarray) -> list[float | None]:
    ok = (a_ns >= 0) & (b_ns >= 0)
    v = (b_ns - a_ns) / 1e6
    return [float(x) if o else None for x, o in zip(v.tolist(), ok.tolist(), strict=True)]


def build_connections(C: np.ndarray, D: np.ndarray, H: np.ndarray, flows: pl.DataFrame,
                      nagle_candidates: pl.DataFrame | None = None) -> pl.DataFrame:
    """The CONNECTIONS table from the analysis state arrays (see netdiag.tcp.analysis).

    `nagle_candidates` (netdiag.tcp.nagle.NagleTracker) gives the nagle_stalls / nagle_stall_s
    columns; None leaves them null."""
    n = C.shape[0]
    if n == 0:
        return CONNECTIONS.empty()
    cl = D[0::2]
    sv = D[1::2]
    unseen = np.zeros(n, np.int64)
    unseen_gaps = np.zeros(n, np.int64)
    a.unseen_bytes_kernel(D, n, unseen, unseen_gaps)
    last_ts = C[:, a.C_LAST_TS]
    # zero windows still open at the end count until the connection's last packet
    zw = C[:, a.C_ZW_NS].copy()
    for side in (cl, sv):
        open_ = side[:, a.D_ZW_START] >= 0
        zw[open_] += last_ts[open_] - side[open_, a.D_ZW_START]
    # history letters: the fixed-width byte rows read as NUL-padded strings (no loop per row)
    hist = pl.Series(np.ascontiguousarray(H).view(f"S{H.shape[1]}").ravel()).cast(pl.String)
    proto = C[:, a.C_PROTO]
    syn_seen = C[:, a.C_SYN_TS] >= 0
    # state: few distinct combinations of the inputs, each decided once by _state
    inputs = np.stack([proto, (cl[:, a.D_SAW_SYN] == 1) & syn_seen, sv[:, a.D_SAW_SYN] == 1,
                       cl[:, a.D_SAW_FIN] == 1, sv[:, a.D_SAW_FIN] == 1, cl[:, a.D_SAW_RST] == 1,
                       sv[:, a.D_SAW_RST] == 1, C[:, a.C_FIRST_RST_DIR], cl[:, a.D_PACKETS] > 0,
                       sv[:, a.D_PACKETS] > 0], axis=1).astype(np.int64)
    combos, which = np.unique(inputs, axis=0, return_inverse=True)
    names = np.array([_state(int(c[0]), *(bool(x) for x in c[1:7]), int(c[7]), int(c[8]), int(c[9]))
                      for c in combos], dtype=object)
    states = names[which.ravel()].tolist()
    syn_ts, synack_ts, est_ts = C[:, a.C_SYN_TS], C[:, a.C_SYNACK_TS], C[:, a.C_EST_TS]

    def nullable(v: np.ndarray, ok: np.ndarray) -> list:
        return [x if o else None for x, o in zip(v.tolist(), ok.tolist(), strict=True)]

    is_tcp = proto == 6
    df = pl.DataFrame({
        "conn_id": np.arange(n, dtype=np.uint32),
        "transport": np.where(is_tcp, "tcp", "udp"),
        "_flow": C[:, a.C_FLOW],
        "_client_is_a": C[:, a.C_CLIENT_IS_A] == 1,
        "first_ts_ns": C[:, a.C_FIRST_TS],
        "last_ts_ns": last_ts,
        "first_frame": C[:, a.C_FIRST_FRAME],
        "last_frame": C[:, a.C_LAST_FRAME],
        "duration_s": (last_ts - C[:, a.C_FIRST_TS]) / 1e9,
        "syn_ts_ns": pl.Series(nullable(syn_ts, syn_ts >= 0), dtype=pl.Int64),
        "synack_ts_ns": pl.Series(nullable(synack_ts, synack_ts >= 0), dtype=pl.Int64),
        "established_ts_ns": pl.Series(nullable(est_ts, est_ts >= 0), dtype=pl.Int64),
        "syn_retransmissions": C[:, a.C_SYN_COUNT],
        "connect_s": pl.Series([None if v is None else v / 1e3 for v in _ms(syn_ts, est_ts)], dtype=pl.Float64),
        "rtt_server_side_ms": pl.Series(_ms(C[:, a.C_SYN_BEFORE_SYNACK], synack_ts), dtype=pl.Float64),
        "rtt_client_side_ms": pl.Series(_ms(synack_ts, est_ts), dtype=pl.Float64),
        "mss_client": pl.Series(nullable(C[:, a.C_MSS_C], C[:, a.C_MSS_C] > 0), dtype=pl.Int64),
        "mss_server": pl.Series(nullable(C[:, a.C_MSS_S], C[:, a.C_MSS_S] > 0), dtype=pl.Int64),
        "wscale_client": pl.Series(nullable(C[:, a.C_WS_C], C[:, a.C_WS_C] >= 0), dtype=pl.Int64),
        "wscale_server": pl.Series(nullable(C[:, a.C_WS_S], C[:, a.C_WS_S] >= 0), dtype=pl.Int64),
        "sack_permitted": (C[:, a.C_SACKP_C] == 1) & (C[:, a.C_SACKP_S] == 1),
        "packets_c2s": cl[:, a.D_PACKETS], "packets_s2c": sv[:, a.D_PACKETS],
        "bytes_c2s": cl[:, a.D_BYTES], "bytes_s2c": sv[:, a.D_BYTES],
        "frame_bytes_c2s": cl[:, a.D_FRAME_BYTES], "frame_bytes_s2c": sv[:, a.D_FRAME_BYTES],
        "retransmitted_segments": C[:, a.C_RETRANS_SEGS],
        "retransmitted_bytes": C[:, a.C_RETRANS_BYTES],
        "retransmission_stall_s": C[:, a.C_STALL_NS] / 1e9,
        "fast_retransmissions": C[:, a.C_FAST],
        "out_of_order_segments": C[:, a.C_OOO],
        "duplicate_acks": C[:, a.C_DUPACK],
        "lost_segments": C[:, a.C_LOST],
        "zero_window_events": C[:, a.C_ZW_EVENTS],
        "zero_window_s": zw / 1e9,
        "window_full_events": C[:, a.C_WINFULL],
        "keep_alives": C[:, a.C_KEEPALIVE],
        "unseen_bytes": unseen,
        "unseen_gaps": unseen_gaps,
        "state": states,
        "history": hist,
    })
    f = flows.select(pl.col("flow_id").alias("_flow"), "a_hi", "a_lo", "a_port", "b_hi", "b_lo", "b_port")
    df = df.join(f, on="_flow", how="left", maintain_order="left")
    ca = pl.col("_client_is_a")
    df = df.with_columns(
        c_hi=pl.when(ca).then("a_hi").otherwise("b_hi"), c_lo=pl.when(ca).then("a_lo").otherwise("b_lo"),
        client_port=pl.when(ca).then("a_port").otherwise("b_port"),
        s_hi=pl.when(ca).then("b_hi").otherwise("a_hi"), s_lo=pl.when(ca).then("b_lo").otherwise("a_lo"),
        server_port=pl.when(ca).then("b_port").otherwise("a_port"),
    ).with_columns(client_ip=format_ip("c_hi", "c_lo"), server_ip=format_ip("s_hi", "s_lo"))
    df = add_nagle_columns(df, nagle_candidates)
    return CONNECTIONS.conform(df)
