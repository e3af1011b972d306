"""Zeek's per-endpoint TCP model inside the analysis kernel: history letters and endpoint states.

What and why: `state` and `history` of the connections table follow Zeek (tests/test_zeek_oracle.py
holds them to Zeek's own conn.log). `_zeek_tcp` runs once per TCP packet from the analysis kernel
(netdiag.tcp.kernel) on the same state rows (netdiag.tcp.state layout).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from netdiag.capture.tcp_flags import TH_ACK, TH_FIN, TH_RST, TH_SYN
from netdiag.tcp.state import (
    C_DROW,
    CS_HIST_LEN,
    D_Z_BUFHI,
    D_Z_BUFLO,
    D_Z_FINSEQ,
    D_Z_LAST,
    D_Z_LFIN,
    D_Z_LRST,
    D_Z_LSYN,
    D_Z_REASM,
    D_Z_START,
    DS_HISTBITS,
    DS_RETRANS_N,
    DS_SAW_SYN,
    DS_Z_CLOSED,
    DS_Z_GAP_N,
    DS_Z_PREV,
    DS_Z_STATE,
    DS_ZW_N,
    H_ACK,
    H_DATA,
    H_FIN,
    H_FINRST,
    H_MULTI,
    H_RST,
    H_SYN,
    HISTORY_LEN,
    M32,
    TOO_LARGE_SEQ_DELTA,
    ZS_CLOSED,
    ZS_ESTABLISHED,
    ZS_INACTIVE,
    ZS_PARTIAL,
    ZS_RESET,
    ZS_SYN_ACK_SENT,
    ZS_SYN_SENT,
    _rel,
)


@njit(cache=True)
def _hist(C, H, c, d, letter):  # pragma: no cover - numba
    CS = C.view(np.int32)   # C's int32 fields
    n = CS[c, CS_HIST_LEN]
    if n < HISTORY_LEN:
        H[c, n] = letter if d == 0 else letter + 32  # upper case = client, lower = server
        CS[c, CS_HIST_LEN] = n + 1


@njit(cache=True)
def _hist_once(C, D, H, c, d, k, bit, letter):  # pragma: no cover - numba
    DS = D.view(np.int32)   # D's int32 fields (netdiag.tcp.state: DS_*)
    if (DS[k, DS_HISTBITS] & bit) == 0:
        DS[k, DS_HISTBITS] |= bit
        _hist(C, H, c, d, letter)


@njit(cache=True)
def _hist_log(C, H, c, d, count, letter):  # pragma: no cover - numba
    # Zeek records T/W/C at the 1st, 10th, 100th... occurrence
    x = count
    while x >= 10 and x % 10 == 0:
        x //= 10
    if x == 1:
        _hist(C, H, c, d, letter)




@njit(cache=True)
def _zset(D, k, state):  # pragma: no cover - numba
    """TCP_Endpoint::SetState: remember the previous state only on a change."""
    DS = D.view(np.int32)   # D's int32 fields (netdiag.tcp.state: DS_*)
    if DS[k, DS_Z_STATE] != state:
        DS[k, DS_Z_PREV] = DS[k, DS_Z_STATE]
        DS[k, DS_Z_STATE] = state


@njit(cache=True, inline="always")
def _zclean(D, k):  # pragma: no cover - numba
    """is_clean() of TCP_Reassembler.cc: established, or closed straight from established."""
    DS = D.view(np.int32)   # D's int32 fields (netdiag.tcp.state: DS_*)
    st = DS[k, DS_Z_STATE]
    return st == ZS_ESTABLISHED or (st == ZS_CLOSED and DS[k, DS_Z_PREV] == ZS_ESTABLISHED)


@njit(cache=True)
def _zeek_tcp(C, D, H, c, d, k, r, fl, sq, ak, ln, w):  # pragma: no cover - numba
    """One TCP packet through Zeek's per-endpoint model: history letters and endpoint states.

    Follows TCPSessionAdapter::Process (src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc):
    init_endpoint, update_history, update_window (W), update_last_seq (T), UpdateStateMachine,
    then the ACK's AckReceived on the peer's reassembler (G, TCP_Reassembler.cc Undelivered/Gap).
    Zeek's originator is netdiag's client (direction 0). k, r: the rows of D of this packet's
    direction and of the peer's (a template row while the peer has none: read only).
    """
    DS = D.view(np.int32)   # D's int32 fields (netdiag.tcp.state: DS_*)
    syn = (fl & TH_SYN) != 0
    fin = (fl & TH_FIN) != 0
    rst = (fl & TH_RST) != 0
    is_ack = (fl & TH_ACK) != 0
    seg_len = ln + (1 if syn else 0) + (1 if fin else 0)
    if rst:
        seg_len -= ln
    last = (sq + seg_len) & M32
    st = DS[k, DS_Z_STATE]
    # ---- init_endpoint ----
    if st == ZS_INACTIVE:
        if syn:
            D[k, D_Z_START] = sq
            D[k, D_Z_LAST] = last
        else:  # partial: numbered as if a SYN had been seen
            D[k, D_Z_START] = (sq - 1) & M32
            D[k, D_Z_LAST] = sq
    elif syn and (((st == ZS_SYN_SENT or st == ZS_SYN_ACK_SENT) and sq != D[k, D_Z_START])
                  or st == ZS_ESTABLISHED or st == ZS_PARTIAL
                  or (st == ZS_RESET and DS[k, DS_Z_PREV] == ZS_INACTIVE)):
        D[k, D_Z_START] = sq
        D[k, D_Z_LAST] = last
    rel_seq = (sq - D[k, D_Z_START]) & M32
    # ---- update_history ----
    bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
    if bits > 1:
        if fin and rst:
            _hist_once(C, D, H, c, d, k, H_FINRST, 73)  # I
        else:
            _hist_once(C, D, H, c, d, k, H_MULTI, 81)  # Q
    elif bits == 1:
        if syn:  # S, or H for SYN+ACK; again only for a SYN at another sequence number
            if (DS[k, DS_HISTBITS] & H_SYN) == 0 or rel_seq != D[k, D_Z_LSYN]:
                DS[k, DS_HISTBITS] |= H_SYN
                _hist(C, H, c, d, 72 if is_ack else 83)
            D[k, D_Z_LSYN] = rel_seq
        if fin:
            fe = (rel_seq + ln) & M32
            if (DS[k, DS_HISTBITS] & H_FIN) == 0 or fe != D[k, D_Z_LFIN]:
                DS[k, DS_HISTBITS] |= H_FIN
                _hist(C, H, c, d, 70)
            D[k, D_Z_LFIN] = fe
        if rst:
            if (DS[k, DS_HISTBITS] & H_RST) == 0 or rel_seq != D[k, D_Z_LRST]:
                DS[k, DS_HISTBITS] |= H_RST
                _hist(C, H, c, d, 82)
            D[k, D_Z_LRST] = rel_seq
    elif ln > 0:
        _hist_once(C, D, H, c, d, k, H_DATA, 68)  # D
    elif is_ack:
        _hist_once(C, D, H, c, d, k, H_ACK, 65)  # A
    # ---- update_window: W, scaled (1st, 10th, 100th ...) ----
    if w == 0 and not rst and DS[r, DS_Z_STATE] != ZS_CLOSED and st != ZS_RESET:
        DS[k, DS_ZW_N] += 1
        _hist_log(C, H, c, d, DS[k, DS_ZW_N], 87)
    if fin:
        D[k, D_Z_FINSEQ] = (rel_seq + seg_len) & M32
    # ---- init_peer: the first ACK numbers a peer not seen yet ----
    if is_ack and DS[r, DS_Z_STATE] == ZS_INACTIVE:
        D[r, D_Z_START] = (ak - 1) & M32
        D[r, D_Z_LAST] = (ak - 1) & M32
    # ---- update_last_seq: T for payload that does not advance the sequence ----
    delta = _rel(last, D[k, D_Z_LAST])
    if (syn or rst) and (delta > TOO_LARGE_SEQ_DELTA or delta < -TOO_LARGE_SEQ_DELTA):
        pass
    elif fin and D[k, D_Z_LAST] == ((D[k, D_Z_START] + 1) & M32):
        D[k, D_Z_LAST] = last
    elif st == ZS_RESET:
        pass
    elif delta > 0:
        D[k, D_Z_LAST] = last
    elif ln > 0:
        DS[k, DS_RETRANS_N] += 1
        _hist_log(C, H, c, d, DS[k, DS_RETRANS_N], 84)  # T
    # ---- UpdateStateMachine ----
    ps = DS[r, DS_Z_STATE]
    close = False
    if st == ZS_INACTIVE:
        if syn:
            if d == 0:
                _zset(D, k, ZS_SYN_ACK_SENT if is_ack else ZS_SYN_SENT)
            else:
                if ps == ZS_SYN_SENT:
                    _zset(D, r, ZS_ESTABLISHED)
                _zset(D, k, ZS_ESTABLISHED)
        if fin:
            _zset(D, k, ZS_CLOSED)
            close = True
        if rst:
            _zset(D, k, ZS_RESET)
            close = True
        if DS[k, DS_Z_STATE] == ZS_INACTIVE:
            if d == 1 and ln == 0 and DS[C[c, C_DROW], DS_Z_STATE] == ZS_SYN_SENT:
                pass  # an ACK of the SYN before the SYN/ACK: not a partial connection
            elif is_ack and ps == ZS_ESTABLISHED:
                _zset(D, k, ZS_ESTABLISHED)  # the SYN was missed: establish
            else:
                _zset(D, k, ZS_PARTIAL)
    elif st == ZS_SYN_SENT or st == ZS_SYN_ACK_SENT:
        if fin:
            _zset(D, k, ZS_CLOSED)
            close = True
        if rst:
            _zset(D, k, ZS_RESET)
            close = True
    elif st == ZS_ESTABLISHED or st == ZS_PARTIAL:
        if syn and st == ZS_PARTIAL and ps == ZS_INACTIVE and not is_ack:
            _zset(D, k, ZS_SYN_SENT)
        if fin and not rst:
            _zset(D, k, ZS_CLOSED)
            if ps == ZS_RESET and DS[r, DS_Z_PREV] == ZS_CLOSED:
                _zset(D, r, ZS_CLOSED)  # the peer's FIN then RST was a normal close
            close = True
        if rst:
            _zset(D, k, ZS_RESET)
            close = True
    elif st == ZS_CLOSED:
        if rst and ps != ZS_CLOSED:  # a RST after both FINs changes nothing
            _zset(D, k, ZS_RESET)
            close = True
    if close:
        DS[k, DS_Z_CLOSED] = 1
    # ---- reassembly of this endpoint's payload (what a later ACK can find missing) ----
    if ln > 0 and not rst:
        s0 = (rel_seq + (1 if syn else 0)) & M32
        e0 = s0 + ln
        if D[k, D_Z_REASM] == 0:
            D[k, D_Z_REASM] = 1
        if s0 <= D[k, D_Z_REASM] < e0:
            D[k, D_Z_REASM] = e0
            if D[k, D_Z_BUFLO] != 0 and e0 >= D[k, D_Z_BUFLO]:
                if D[k, D_Z_BUFHI] > D[k, D_Z_REASM]:
                    D[k, D_Z_REASM] = D[k, D_Z_BUFHI]
                D[k, D_Z_BUFLO] = 0
        elif s0 > D[k, D_Z_REASM] and (D[k, D_Z_BUFLO] == 0 or s0 < D[k, D_Z_BUFLO]):
            D[k, D_Z_BUFLO] = s0
        if e0 > D[k, D_Z_BUFHI]:
            D[k, D_Z_BUFHI] = e0
    # ---- AckReceived on the peer's data: an ACK past data never seen is a content gap ----
    if is_ack and DS[r, DS_Z_STATE] != ZS_INACTIVE:
        up = (ak - D[r, D_Z_START]) & M32
        if up < 0x80000000:
            if D[r, D_Z_FINSEQ] != 0 and up >= D[r, D_Z_FINSEQ]:
                up = D[r, D_Z_FINSEQ] - 1
            if D[r, D_Z_REASM] == 0:
                D[r, D_Z_REASM] = 1
            partial = DS[C[c, C_DROW], DS_SAW_SYN] == 0
            if up > D[r, D_Z_REASM] and not (up <= 2 and partial):
                gaps = 0
                if D[r, D_Z_BUFLO] != 0 and D[r, D_Z_BUFLO] < up:
                    gaps += 1  # the hole below buffered data
                    D[r, D_Z_REASM] = D[r, D_Z_BUFHI]
                    D[r, D_Z_BUFLO] = 0
                if up > D[r, D_Z_REASM]:
                    gaps += 1
                    D[r, D_Z_REASM] = up
                if gaps and _zclean(D, r) and _zclean(D, k):
                    for _ in range(gaps):
                        DS[r, DS_Z_GAP_N] += 1
                        _hist_log(C, H, c, 1 - d, DS[r, DS_Z_GAP_N], 71)  # G
