"""The TCP/UDP analysis kernel: one numba pass per chunk over the rows in analysis order.

What and why: the rules (Wireshark 4.0's tcp.analysis.* judgements, netdiag's resend and hole
bookkeeping, Zeek's endpoint model) are described in netdiag.tcp.analysis, whose TcpAnalyzer
drives this kernel and grows its arrays. Layout in netdiag.tcp.state.

Numba's on-disk cache keys a function on its own source file only: after editing
netdiag/tcp/state.py, zeek.py or holes.py, clear netdiag/tcp/__pycache__/*.nbi (or touch this
file) so analyze_kernel is compiled again with the new code and constants.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from netdiag.capture.tcp_flags import TH_ACK, TH_FIN, TH_RST, TH_SYN
from netdiag.tcp.holes import _fill_holes, _flush_acked_holes, _hole_overlap
from netdiag.tcp.state import (
    A_ACK_LOST_PACKET,
    A_DUPLICATE_ACK,
    A_FAST_RETRANSMISSION,
    A_KEEP_ALIVE,
    A_KEEP_ALIVE_ACK,
    A_LOST_PACKET,
    A_OUT_OF_ORDER,
    A_RESEND_BYTES,
    A_RETRANSMISSION,
    A_SPURIOUS_RETRANSMISSION,
    A_WINDOW_FULL,
    A_WINDOW_UPDATE,
    A_ZERO_WINDOW,
    A_ZERO_WINDOW_PROBE,
    A_ZERO_WINDOW_PROBE_ACK,
    C_DROW,
    C_EST_TS,
    C_FIRST_FRAME,
    C_FIRST_RTT,
    C_FIRST_TS,
    C_FLOW,
    C_LAST_FRAME,
    C_LAST_SYN_TS,
    C_LAST_TS,
    C_RETRANS_BYTES,
    C_STALL_NS,
    C_SYN_BEFORE_SYNACK,
    C_SYN_TS,
    C_SYNACK_TS,
    C_ZW_NS,
    CS_CLIENT_IS_A,
    CS_DUPACK,
    CS_FAST,
    CS_FIRST_RST_DIR,
    CS_KEEPALIVE,
    CS_LOST,
    CS_MSS_C,
    CS_MSS_S,
    CS_OOO,
    CS_PROTO,
    CS_RETRANS_SEGS,
    CS_SACKP_C,
    CS_SACKP_S,
    CS_SYN_COUNT,
    CS_WINFULL,
    CS_WS_C,
    CS_WS_S,
    CS_ZW_EVENTS,
    D_BASE,
    D_BIF_FIRST,
    D_BIF_LAST,
    D_BYTES,
    D_FIRST_ROW,
    D_FRAME_BYTES,
    D_INHERIT_WIDE,
    D_IP_BYTES,
    D_LASTACK,
    D_LASTACK_TS,
    D_LASTNONDUPACK,
    D_MAXACKED,
    D_MAXSEQTOBEACKED,
    D_NEXTSEQ,
    D_NEXTSEQ_FRAME,
    D_NEXTSEQ_TS,
    D_PACKETS,
    D_TEMPLATE,
    D_TEMPLATE_NOSCALE,
    D_WINDOW,
    D_ZW_START,
    DEFAULT_OOO_THRESHOLD_NS,
    DS_BASE_SET,
    DS_BIF_OK,
    DS_DUPACKNUM,
    DS_FIRST,
    DS_HOLE_ROW,
    DS_INHERIT_END,
    DS_LASTSEGFLAGS,
    DS_LIST_COUNT,
    DS_LIST_HEAD,
    DS_MAXACKED_SET,
    DS_NHOLES,
    DS_SAW_FIN,
    DS_SAW_RST,
    DS_SAW_SYN,
    DS_VALID_BIF,
    DS_WIN_FROM_SYN,
    DS_WIN_SCALE,
    DS_Z_CLOSED,
    FAST_RETRANS_WINDOW_NS,
    H_D,
    M32,
    MAX_UNACKED_SEGMENTS,
    N_HOLES,
    O_ACK_REL,
    O_ACKS_FRAME,
    O_BIF,
    O_CONN,
    O_DIR,
    O_DUP_FRAME,
    O_DUP_NUM,
    O_FLAGS,
    O_NXT_REL,
    O_RESEND_FRAME,
    O_RESEND_NS,
    O_RTO_FRAME,
    O_RTO_NS,
    O_RTT_NS,
    O_SEQ_REL,
    O_WIN,
    P_FRAME,
    P_NEXT,
    P_NEXTSEQ,
    P_SEQ,
    P_TS,
    _gt,
    _le,
    _lt,
)
from netdiag.tcp.zeek import _hist, _hist_once, _zeek_tcp


@njit(cache=True)
def _drow(C, D, meta, c, d):  # pragma: no cover - numba
    """Give direction d of connection c its own row of D, starting from the template it points at."""
    k = meta[4]
    meta[4] = k + 1
    t = C[c, C_DROW + d]
    for x in range(D.shape[1]):
        D[k, x] = D[t, x]
    C[c, C_DROW + d] = k
    return k


@njit(cache=True)
def analyze_kernel(start, frame, ts, flow, src_is_a, proto, flags, seq, ack, win, seglen, frame_len, ip_len,
                   mss, wscale, sackp, src_port, dst_port, server_port_lut,
                   flow_cur, C, D, H, P, HP, meta, OUT):  # pragma: no cover - numba
    """Process rows start.. of one chunk; return the row to resume at (== n when done).

    meta: [n_conns, pool_free_head, pool_free_count, hole_rows_used, D_rows_used]. Returns early (before
    touching a row) when a new connection, pool record or hole row might not fit; the caller
    grows and calls again.
    """
    n = frame.shape[0]
    CS = C.view(np.int32)   # C's int32 fields (netdiag.tcp.state: CS_*)
    DS = D.view(np.int32)   # D's int32 fields (DS_*); a grown D comes with a new call, so a new view
    for i in range(start, n):
        if meta[0] + 1 >= C.shape[0] or meta[2] < 2 or meta[3] >= HP.shape[0] or meta[4] + 2 > D.shape[0]:
            return i
        fl = np.int64(flags[i])
        f = np.int64(flow[i])
        c = flow_cur[f]
        syn_only = (fl & (TH_SYN | TH_ACK)) == TH_SYN
        sq = np.int64(seq[i])
        pr = np.int64(proto[i])
        sia = np.int64(src_is_a[i])
        fr = np.int64(frame[i])
        # ---- connection lookup; a SYN with a new ISN starts a new connection (tcp.stream) ----
        inherit = -1
        if c >= 0 and pr == 6 and syn_only:
            d0 = 0 if sia == CS[c, CS_CLIENT_IS_A] else 1
            k0 = C[c, C_DROW + d0]
            if DS[k0, DS_BASE_SET] == 1 and sq != D[k0, D_BASE]:
                c = -1
            elif DS[C[c, C_DROW], DS_Z_CLOSED] == 1 or DS[C[c, C_DROW + 1], DS_Z_CLOSED] == 1:
                # Zeek's IsReuse (TCPSessionAdapter.cc): a SYN on a connection already reported
                # closed (a FIN or RST seen) opens a new one, even with the same ISN, where
                # Wireshark's tcp.stream continues; the new row inherits the sequence analysis
                # so tcp.analysis.* stays Wireshark's.
                inherit = c
                c = -1
        if c < 0:
            c = meta[0]
            meta[0] = c + 1
            C[c, :] = 0
            C[c, C_FLOW] = f
            CS[c, CS_PROTO] = pr
            C[c, C_FIRST_TS] = ts[i]
            C[c, C_FIRST_FRAME] = fr
            for x in (C_SYN_TS, C_LAST_SYN_TS, C_SYNACK_TS, C_SYN_BEFORE_SYNACK, C_EST_TS, C_FIRST_RTT):
                C[c, x] = -1
            for x in (CS_FIRST_RST_DIR, CS_WS_C, CS_WS_S):
                CS[c, x] = -1
            # who is the client: the SYN sender; the SYN/ACK receiver; else by ports
            sp = np.int64(src_port[i])
            dp = np.int64(dst_port[i])
            src_client = True
            if pr == 6 and syn_only:
                src_client = True
            elif pr == 6 and (fl & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK):
                src_client = False
            elif server_port_lut[dp] and not server_port_lut[sp]:
                src_client = True
            elif server_port_lut[sp] and not server_port_lut[dp]:
                src_client = False
            elif dp < 1024 and sp >= 1024:
                src_client = True
            elif sp < 1024 and dp >= 1024:
                src_client = False
            elif dp < 32768 and sp >= 32768:
                src_client = True
            elif sp < 32768 and dp >= 32768:
                src_client = False
            CS[c, CS_CLIENT_IS_A] = sia if src_client else 1 - sia
            C[c, C_DROW] = D_TEMPLATE  # (C_DROW + 1 too: C[c, :] = 0 above) rows come when written
            if inherit >= 0:  # the Wireshark stream goes on; Zeek's connection starts afresh
                CS[c, CS_CLIENT_IS_A] = CS[inherit, CS_CLIENT_IS_A]
                C[c, C_FIRST_RTT] = C[inherit, C_FIRST_RTT]
                C[c, C_LAST_SYN_TS] = C[inherit, C_LAST_SYN_TS]
                for d in range(2):
                    ko = C[inherit, C_DROW + d]
                    if ko < D_FIRST_ROW:  # nothing written there: the copy would equal the template
                        C[c, C_DROW + d] = ko
                        continue
                    k = _drow(C, D, meta, c, d)
                    for x in range(D_INHERIT_WIDE):
                        D[k, x] = D[ko, x]
                    for x in range(DS_FIRST, DS_INHERIT_END):
                        DS[k, x] = DS[ko, x]
                    # (sequence holes and unseen bytes stay the old row's)
                    DS[k, DS_BIF_OK] = DS[ko, DS_BIF_OK]
                    D[k, D_BIF_FIRST] = D[ko, D_BIF_FIRST]
                    D[k, D_BIF_LAST] = D[ko, D_BIF_LAST]
                    D[k, D_PACKETS] = 0
                    D[k, D_BYTES] = 0
                    D[k, D_FRAME_BYTES] = 0
                    D[k, D_IP_BYTES] = 0
                    D[k, D_ZW_START] = -1
                    DS[k, DS_SAW_SYN] = 0
                    DS[k, DS_SAW_FIN] = 0
                    DS[k, DS_SAW_RST] = 0
                    DS[ko, DS_LIST_HEAD] = -1  # the unacked list moves to the new row
                    DS[ko, DS_LIST_COUNT] = 0
            elif not src_client:
                _hist(C, H, c, 0, 94)  # ^: the first packet came from the responder (Zeek's flip)
            flow_cur[f] = c
        d = 0 if sia == CS[c, CS_CLIENT_IS_A] else 1
        k = C[c, C_DROW + d]
        if k < D_FIRST_ROW:
            k = _drow(C, D, meta, c, d)
        r = C[c, C_DROW + 1 - d]
        if r < D_FIRST_ROW and (fl & TH_ACK) != 0:  # an ACK writes the peer's state (base, acked, Zeek's reassembly)
            r = _drow(C, D, meta, c, 1 - d)
        t = np.int64(ts[i])
        fr = np.int64(fr)
        prev_ts = C[c, C_LAST_TS] if C[c, C_LAST_FRAME] > 0 else t
        C[c, C_LAST_TS] = t
        C[c, C_LAST_FRAME] = fr
        ln = np.int64(seglen[i])
        D[k, D_PACKETS] += 1
        D[k, D_BYTES] += ln
        D[k, D_FRAME_BYTES] += np.int64(frame_len[i])
        D[k, D_IP_BYTES] += np.int64(ip_len[i])
        OUT[O_CONN, i] = c
        OUT[O_DIR, i] = d
        OUT[O_BIF, i] = -1
        OUT[O_DUP_FRAME, i] = -1
        OUT[O_RTO_NS, i] = -1
        OUT[O_RTO_FRAME, i] = -1
        OUT[O_RTT_NS, i] = -1
        OUT[O_ACKS_FRAME, i] = -1
        OUT[O_FLAGS, i] = 0
        OUT[O_DUP_NUM, i] = 0
        OUT[O_RESEND_FRAME, i] = -1
        OUT[O_RESEND_NS, i] = -1
        if pr != 6:  # UDP
            if ln > 0:
                _hist_once(C, D, H, c, d, k, H_D, 68)
            continue

        ak = np.int64(ack[i])
        w = np.int64(win[i])
        is_ack = (fl & TH_ACK) != 0
        sfr = (fl & (TH_SYN | TH_FIN | TH_RST)) != 0
        # ---- connection timing: SYN, SYN/ACK, final ACK; iRTT as Wireshark computes it ----
        if syn_only:
            if C[c, C_SYN_TS] < 0:
                C[c, C_SYN_TS] = t
            elif d == 0:
                CS[c, CS_SYN_COUNT] += 1
            C[c, C_LAST_SYN_TS] = t
            if d == 0 and CS[c, CS_MSS_C] == 0:
                CS[c, CS_MSS_C] = np.int64(mss[i])
                CS[c, CS_WS_C] = np.int64(wscale[i])
                CS[c, CS_SACKP_C] = np.int64(sackp[i])
        elif (fl & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK):
            if d == 1 and C[c, C_SYNACK_TS] < 0:
                C[c, C_SYNACK_TS] = t
                C[c, C_SYN_BEFORE_SYNACK] = C[c, C_LAST_SYN_TS]
                CS[c, CS_MSS_S] = np.int64(mss[i])
                CS[c, CS_WS_S] = np.int64(wscale[i])
                CS[c, CS_SACKP_S] = np.int64(sackp[i])
        elif is_ack:
            if C[c, C_LAST_SYN_TS] >= 0 and C[c, C_FIRST_RTT] <= 0:
                C[c, C_FIRST_RTT] = t - C[c, C_LAST_SYN_TS]
            if d == 0 and C[c, C_SYNACK_TS] >= 0 and C[c, C_EST_TS] < 0:
                C[c, C_EST_TS] = t

        # ---- relative sequence bases (Wireshark: SYN's seq, else seq-1; peer's from ack-1) ----
        if DS[k, DS_BASE_SET] == 0:
            D[k, D_BASE] = sq if (fl & TH_SYN) else (sq - 1) & M32
            DS[k, DS_BASE_SET] = 1
        if DS[r, DS_BASE_SET] == 0 and is_ack:
            D[r, D_BASE] = (ak - 1) & M32
            DS[r, DS_BASE_SET] = 1

        ta = 0
        nextseq = D[k, D_NEXTSEQ]
        if is_ack:
            DS[r, DS_VALID_BIF] = 1
        # ZERO WINDOW PROBE
        if ln == 1 and sq == nextseq and D[r, D_WINDOW] == 0:
            ta |= A_ZERO_WINDOW_PROBE
        else:
            # ZERO WINDOW
            if w == 0 and (fl & (TH_RST | TH_FIN | TH_SYN)) == 0:
                ta |= A_ZERO_WINDOW
            # LOST PACKET
            if nextseq != 0 and _gt(sq, nextseq) and (fl & TH_RST) == 0:
                ta |= A_LOST_PACKET
                DS[k, DS_VALID_BIF] = 0
            # KEEP ALIVE
            if (ln == 0 or ln == 1) and sq == ((nextseq - 1) & M32) and not sfr:
                ta |= A_KEEP_ALIVE
            # WINDOW UPDATE
            if (ln == 0 and w != 0 and w != D[k, D_WINDOW] and sq == nextseq
                    and ak == D[k, D_LASTACK] and not sfr):
                ta |= A_WINDOW_UPDATE
            # WINDOW FULL
            if ln > 0 and DS[r, DS_WIN_SCALE] != -1 and not sfr:
                sh = 0
                if DS[r, DS_WIN_FROM_SYN] == 0 and DS[r, DS_WIN_SCALE] >= 0:
                    sh = DS[r, DS_WIN_SCALE]
                if ((sq + ln) & M32) == ((D[r, D_LASTACK] + (D[r, D_WINDOW] << sh)) & M32):
                    ta |= A_WINDOW_FULL
            same = (ln == 0 and sq == nextseq and ak == D[k, D_LASTACK] and not sfr)
            if same and w != 0 and w == D[k, D_WINDOW] and (DS[r, DS_LASTSEGFLAGS] & A_KEEP_ALIVE):
                ta |= A_KEEP_ALIVE_ACK
            elif same and w == 0 and w == D[k, D_WINDOW] and (DS[r, DS_LASTSEGFLAGS] & A_ZERO_WINDOW_PROBE):
                ta |= A_ZERO_WINDOW_PROBE_ACK
            elif same and w != 0 and w == D[k, D_WINDOW]:
                if DS[k, DS_DUPACKNUM] == -1:  # an ACKed-unseen mark (below) counts as the first
                    DS[k, DS_DUPACKNUM] = 1
                else:
                    DS[k, DS_DUPACKNUM] += 1
                ta |= A_DUPLICATE_ACK
                OUT[O_DUP_NUM, i] = DS[k, DS_DUPACKNUM]
                OUT[O_DUP_FRAME, i] = D[k, D_LASTNONDUPACK]
        # finished_fwd: a new ack number restarts the duplicate-ACK count
        if ak != D[k, D_LASTACK]:
            D[k, D_LASTNONDUPACK] = fr
            DS[k, DS_DUPACKNUM] = 0
        # ACKED LOST PACKET: flagged once per ack number. 'max seq to be acked' restarts from
        # what the peer was seen sending, and this side's dup-ACK counter is marked -1 so that
        # its further segments repeating the same ack are not flagged again (this combination
        # is what tshark 4.0.17 shows on every capture under captures/).
        if D[r, D_MAXSEQTOBEACKED] != 0 and _gt(ak, D[r, D_MAXSEQTOBEACKED]) and is_ack:
            if D[r, D_MAXSEQTOBEACKED] > D[r, D_NEXTSEQ]:
                ta |= A_ACK_LOST_PACKET
            else:
                if DS[k, DS_DUPACKNUM] == 0:
                    ta |= A_ACK_LOST_PACKET
                DS[k, DS_DUPACKNUM] = -1
            D[r, D_MAXSEQTOBEACKED] = D[r, D_NEXTSEQ]
        # RESEND OF CAPTURED BYTES (netdiag's count, beside tshark's labels below): some of the
        # segment's bytes lie below the highest sequence seen and outside the holes, so the
        # capture already saw them. The original is the oldest listed unacked segment
        # overlapping them (none when they were already acknowledged).
        byte_resend = False
        if (ln > 0 and nextseq != 0 and _lt(sq, nextseq)
                and (ta & (A_KEEP_ALIVE | A_ZERO_WINDOW_PROBE)) == 0):
            e2 = (sq + ln) & M32
            if _gt(e2, nextseq):
                e2 = nextseq
            if ((e2 - sq) & M32) - _hole_overlap(D, HP, k, sq, e2) > 0:
                byte_resend = True
                e1 = (sq + ln) & M32
                u = DS[k, DS_LIST_HEAD]
                while u >= 0:
                    if _lt(P[u, P_SEQ], e1) and _gt(P[u, P_NEXTSEQ], sq) and (
                            OUT[O_RESEND_FRAME, i] < 0 or P[u, P_TS] <= t - OUT[O_RESEND_NS, i]):
                        OUT[O_RESEND_FRAME, i] = P[u, P_FRAME]
                        OUT[O_RESEND_NS, i] = t - P[u, P_TS]
                    u = P[u, P_NEXT]
        # RETRANSMISSION / FAST RETRANSMISSION / OUT-OF-ORDER / SPURIOUS
        if (ln > 0 or (fl & (TH_SYN | TH_FIN))) and (ta & A_KEEP_ALIVE) == 0:
            not_adv = nextseq != 0 and _lt(sq, nextseq)
            if ln > 1 and ((nextseq - 1) & M32) == sq:
                not_adv = False
            if ln > 0 and D[r, D_LASTACK] != 0 and _le((sq + ln) & M32, D[r, D_LASTACK]):
                ta |= A_SPURIOUS_RETRANSMISSION
            else:
                dt = t - D[r, D_LASTACK_TS]
                if (not_adv and DS[r, DS_DUPACKNUM] >= 2 and D[r, D_LASTACK] == sq
                        and dt < FAST_RETRANS_WINDOW_NS):
                    ta |= A_FAST_RETRANSMISSION
                else:
                    dt = t - D[k, D_NEXTSEQ_TS]
                    thres = C[c, C_FIRST_RTT] if C[c, C_FIRST_RTT] > 0 else DEFAULT_OOO_THRESHOLD_NS
                    extra = 1 if (fl & (TH_SYN | TH_FIN)) else 0
                    if not_adv and dt < thres and nextseq != ((sq + ln + extra) & M32):
                        ta |= A_OUT_OF_ORDER
                    elif not_adv:
                        ta |= A_RETRANSMISSION
                        OUT[O_RTO_NS, i] = t - D[k, D_NEXTSEQ_TS]
                        OUT[O_RTO_FRAME, i] = D[k, D_NEXTSEQ_FRAME]
                        u = DS[k, DS_LIST_HEAD]
                        while u >= 0:  # the oldest listed segment is the likely original
                            OUT[O_RTO_NS, i] = t - P[u, P_TS]
                            OUT[O_RTO_FRAME, i] = P[u, P_FRAME]
                            u = P[u, P_NEXT]
        # ---- sequence-space holes, for unseen_bytes (bytes the capture never saw) ----
        # (a bare ACK beyond the highest sequence opens a hole too: it moves that mark past bytes
        # the capture never saw, e.g. a request cut from the file and the ACK that followed it)
        end = (sq + ln + (1 if (fl & (TH_SYN | TH_FIN)) else 0)) & M32
        if nextseq != 0 and _gt(sq, nextseq) and (ta & A_ZERO_WINDOW_PROBE) == 0 and (fl & TH_RST) == 0:
            if DS[k, DS_HOLE_ROW] == 0:   # this direction's first hole: a row of the hole pool
                DS[k, DS_HOLE_ROW] = meta[3] + 1
                meta[3] += 1
            if DS[k, DS_NHOLES] >= N_HOLES:
                _flush_acked_holes(D, HP, k)
            nh = DS[k, DS_NHOLES]
            hr = DS[k, DS_HOLE_ROW] - 1
            if nh < N_HOLES:
                HP[hr, 2 * nh] = nextseq
                HP[hr, 2 * nh + 1] = sq
                DS[k, DS_NHOLES] = nh + 1
        elif (ln > 0 or (fl & (TH_SYN | TH_FIN))) and nextseq != 0 and _lt(sq, nextseq) and DS[k, DS_NHOLES] > 0:
            _fill_holes(D, HP, k, sq, end)
        # ---- remember this segment in the sender's unacked list ----
        nxt = (sq + ln) & M32
        if (ln > 0 or (fl & (TH_SYN | TH_FIN))) and DS[k, DS_LIST_COUNT] < MAX_UNACKED_SEGMENTS:
            u = meta[1]
            meta[1] = P[u, P_NEXT]
            meta[2] -= 1
            if fl & (TH_SYN | TH_FIN):
                nxt = (nxt + 1) & M32
            P[u, P_SEQ] = sq
            P[u, P_NEXTSEQ] = nxt
            P[u, P_FRAME] = fr
            P[u, P_TS] = t
            P[u, P_NEXT] = DS[k, DS_LIST_HEAD]
            DS[k, DS_LIST_HEAD] = u
            DS[k, DS_LIST_COUNT] += 1
            if DS[k, DS_BIF_OK] == 1 or DS[k, DS_LIST_COUNT] == 1:  # extend the cached extent
                a = (sq - D[k, D_BASE]) & M32
                b = (nxt - D[k, D_BASE]) & M32
                if DS[k, DS_LIST_COUNT] == 1 or a < D[k, D_BIF_FIRST]:
                    D[k, D_BIF_FIRST] = a
                if DS[k, DS_LIST_COUNT] == 1 or b > D[k, D_BIF_LAST]:
                    D[k, D_BIF_LAST] = b
                DS[k, DS_BIF_OK] = 1
        if (_gt(nxt, nextseq) or nextseq == 0) and (ta & A_ZERO_WINDOW_PROBE) == 0:
            D[k, D_NEXTSEQ] = nxt
            D[k, D_NEXTSEQ_TS] = t
            D[k, D_NEXTSEQ_FRAME] = fr
        if (sq == D[k, D_MAXSEQTOBEACKED] or D[k, D_MAXSEQTOBEACKED] == 0) and (ta & A_ZERO_WINDOW_PROBE) == 0:
            D[k, D_MAXSEQTOBEACKED] = D[k, D_NEXTSEQ]
        D[k, D_WINDOW] = w
        DS[k, DS_WIN_FROM_SYN] = 1 if (fl & TH_SYN) else 0
        D[k, D_LASTACK] = ak
        D[k, D_LASTACK_TS] = t
        DS[k, DS_LASTSEGFLAGS] = ta
        # ---- the ACK removes what it covers from the peer's list (acks_frame, ack_rtt) ----
        prev = -1
        u = DS[r, DS_LIST_HEAD]
        while u >= 0:
            nx = P[u, P_NEXT]
            if ak == P[u, P_NEXTSEQ]:
                OUT[O_ACKS_FRAME, i] = P[u, P_FRAME]
                OUT[O_RTT_NS, i] = t - P[u, P_TS]
            elif _gt(ak, P[u, P_SEQ]) and _le(ak, P[u, P_NEXTSEQ]):
                P[u, P_SEQ] = ak
                DS[r, DS_BIF_OK] = 0
                prev = u
                u = nx
                continue
            elif _gt(P[u, P_NEXTSEQ], ak):
                prev = u
                u = nx
                continue
            # old or exactly acknowledged: unlink and free
            if prev < 0:
                DS[r, DS_LIST_HEAD] = nx
            else:
                P[prev, P_NEXT] = nx
            P[u, P_NEXT] = meta[1]
            meta[1] = u
            meta[2] += 1
            DS[r, DS_LIST_COUNT] -= 1
            DS[r, DS_BIF_OK] = 0
            u = nx
        # ---- bytes in flight (payload method, SACK not subtracted) ----
        if ln != 0 and DS[k, DS_LIST_HEAD] >= 0 and DS[k, DS_VALID_BIF] == 1:
            if DS[k, DS_BIF_OK] == 0:  # the list shrank since last time: walk it once
                base = D[k, D_BASE]
                u = DS[k, DS_LIST_HEAD]
                first = (P[u, P_SEQ] - base) & M32
                last = (P[u, P_NEXTSEQ] - base) & M32
                while u >= 0:
                    a = (P[u, P_NEXTSEQ] - base) & M32
                    if a > last:
                        last = a
                    a = (P[u, P_SEQ] - base) & M32
                    if a < first:
                        first = a
                    u = P[u, P_NEXT]
                D[k, D_BIF_FIRST] = first
                D[k, D_BIF_LAST] = last
                DS[k, DS_BIF_OK] = 1
            first = D[k, D_BIF_FIRST]
            last = D[k, D_BIF_LAST]
            fl_bytes = (last - first) & M32
            if fl_bytes > 0 and fl_bytes < 2000000000:
                OUT[O_BIF, i] = fl_bytes - (1 if (fl & (TH_SYN | TH_FIN)) else 0)
        # ---- window scaling (Wireshark's verify_tcp_window_scaling) ----
        if fl & TH_SYN:
            if np.int64(wscale[i]) >= 0:
                DS[k, DS_WIN_SCALE] = np.int64(wscale[i])
            if DS[k, DS_WIN_SCALE] == -1:
                DS[k, DS_WIN_SCALE] = -2
                if r < D_FIRST_ROW:  # the peer has no row yet: it will start from this template
                    r = D_TEMPLATE_NOSCALE
                    C[c, C_DROW + 1 - d] = r
                else:
                    DS[r, DS_WIN_SCALE] = -2
            elif is_ack and DS[r, DS_WIN_SCALE] == -2:
                DS[k, DS_WIN_SCALE] = -2
        # ---- the segment's own output columns ----
        OUT[O_FLAGS, i] = ta | (A_RESEND_BYTES if byte_resend else 0)
        base = D[k, D_BASE]
        OUT[O_SEQ_REL, i] = (sq - base) & M32
        OUT[O_NXT_REL, i] = (sq - base + ln + (1 if (fl & (TH_SYN | TH_FIN)) else 0)) & M32
        OUT[O_ACK_REL, i] = ((ak - D[r, D_BASE]) & M32) if is_ack else 0
        if (fl & TH_SYN) == 0 and DS[k, DS_WIN_SCALE] >= 0:
            OUT[O_WIN, i] = w << DS[k, DS_WIN_SCALE]
        else:
            OUT[O_WIN, i] = w
        # ---- per-connection counters ----
        # resends: tshark's labels, and any segment whose bytes the capture already saw (whatever
        # its label: tshark calls a quick resend "out-of-order")
        if byte_resend or (ta & (A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION)):
            CS[c, CS_RETRANS_SEGS] += 1
            C[c, C_RETRANS_BYTES] += ln
            gap = t - prev_ts
            if OUT[O_RTO_NS, i] >= 0 and OUT[O_RTO_NS, i] < gap:
                gap = OUT[O_RTO_NS, i]
            elif OUT[O_RTO_NS, i] < 0 and OUT[O_RESEND_NS, i] >= 0 and OUT[O_RESEND_NS, i] < gap:
                gap = OUT[O_RESEND_NS, i]
            C[c, C_STALL_NS] += gap
        if ta & A_FAST_RETRANSMISSION:
            CS[c, CS_FAST] += 1
        if ta & A_OUT_OF_ORDER:
            CS[c, CS_OOO] += 1
        if ta & A_DUPLICATE_ACK:
            CS[c, CS_DUPACK] += 1
        if ta & A_LOST_PACKET:
            CS[c, CS_LOST] += 1
        if ta & A_WINDOW_FULL:
            CS[c, CS_WINFULL] += 1
        if ta & A_KEEP_ALIVE:
            CS[c, CS_KEEPALIVE] += 1
        if ta & A_ZERO_WINDOW:
            CS[c, CS_ZW_EVENTS] += 1
            if D[k, D_ZW_START] < 0:
                D[k, D_ZW_START] = t
        elif w != 0 and D[k, D_ZW_START] >= 0 and (fl & TH_RST) == 0:
            C[c, C_ZW_NS] += t - D[k, D_ZW_START]
            D[k, D_ZW_START] = -1
        if is_ack and (DS[r, DS_MAXACKED_SET] == 0 or _gt(ak, D[r, D_MAXACKED])):
            D[r, D_MAXACKED] = ak  # the peer's data is acknowledged up to here
            DS[r, DS_MAXACKED_SET] = 1
        # ---- Zeek history letters and endpoint states ----
        if (fl & TH_SYN) and (fl & (TH_FIN | TH_RST)) == 0:
            DS[k, DS_SAW_SYN] = 1
        if fl & TH_FIN:
            DS[k, DS_SAW_FIN] = 1
        if fl & TH_RST:
            DS[k, DS_SAW_RST] = 1
            if CS[c, CS_FIRST_RST_DIR] < 0:
                CS[c, CS_FIRST_RST_DIR] = d
        _zeek_tcp(C, D, H, c, d, k, r, fl, sq, ak, ln, w)
    return n
