"""Per-segment TCP analysis: Wireshark's `tcp.analysis.*` judgements, one numba pass per chunk.

What and why: every later table (transactions, logons, findings) explains lost time with these
judgements, so they follow Wireshark 4.0's `tcp_analyze_sequence_number()` (epan/dissectors/
packet-tcp.c) rule for rule, in its precedence order, on raw (absolute) 32-bit sequence numbers
with RFC 1982-style wrap-around comparisons, exactly as Wireshark does:

- zero-window probe (1 byte at the next expected sequence while the peer's window is 0) ends the
  forward checks; zero window (window 0 without SYN/FIN/RST); previous segment not captured
  (sequence beyond the highest seen, not RST); keep-alive (0/1 byte one below next expected);
  window update; window full (only when the peer's scale is known); keep-alive ACK, zero-window
  probe ACK and duplicate ACK (same seq/ack/window, no payload) end the forward checks.
- ACKed unseen segment (ACK beyond what the peer was seen sending); flagged once per ack number
  of the ACKing side, and 'max seq to be acked' restarts from the peer's highest sequence.

Where the packet-tcp.c revisions we read disagree with each other on the bookkeeping of
duplicate-ACK counts and ACKed-unseen repeats, the rules here are the ones that reproduce
tshark 4.0.17 (the oracle installed here) on every capture under captures/; the tests in
tests/test_tcp_oracle.py hold that agreement for each field.
- For segments with payload or SYN/FIN: keep-alives are not resends; spurious retransmission
  (all of it already ACKed by the peer); fast retransmission (>= 2 duplicate ACKs, at the
  peer's last ACK, within 20 ms of it); out-of-order (sequence not advanced, within the
  reordering window since the highest segment: the connection's initial RTT, or 3 ms when the
  handshake was not seen); otherwise retransmission, with rto/rto_frame taken from the oldest
  unacknowledged segment still listed.
- netdiag's own resend count (not a Wireshark flag; the flags above stay tshark's): a segment
  with payload whose bytes were captured before (below the highest sequence seen, outside the
  recorded holes) is a resend whatever tshark calls it (`bytes_seen_before`; tshark labels a
  resend within about one RTT of the highest segment out-of-order). `resend_of_frame` is the
  earliest still-unacknowledged segment that carried those bytes. The connection's
  retransmitted_segments/_bytes count these and tshark's retransmissions.
- sequence holes (bytes never captured) open at any non-RST segment, bare ACKs included, whose
  sequence number jumps past the highest seen; first copies fill them; when the list of holes is
  full, holes the receiver acknowledged past are moved to a per-direction total (they are final).
- acks_frame/ack_rtt from the peer's unacknowledged-segment list (an ACK equal to a segment's
  end); bytes in flight from the sender's list (payload method, Wireshark's default).

Deliberate differences (documented in netdiag.schema SEGMENTS and asserted in the tests):
- SACK blocks are not subtracted from bytes in flight (the packets table keeps only the first
  SACK block), so bytes_in_flight can be higher than Wireshark's on SACK-recovery segments.
- `retransmission` is true for fast and spurious retransmissions too, as tshark's
  `tcp.analysis.retransmission` field is (Wireshark adds that expert item for all three).
- IP fragments are not reassembled: TCP/UDP rows flagged `ip_fragment` are left out.
- A TCP row whose header the snaplen cut off (the packets table then holds flags, seq, ack and
  window all 0) is left out and counted in `TcpAnalyzer.truncated_headers` (tshark marks it
  "TCP truncated", skips its analysis and leaves it out of `-z conv,tcp` too).

The state machine runs in one `@njit(cache=True)` kernel over the chunk's TCP and UDP rows in
analysis order. State lives in growable 2-D int64 arrays: one row per connection (`C_*`), one
per connection direction (`D_*`), one per 4-tuple/5-tuple flow, and a pool of unacknowledged
segment records (Wireshark's `tcp_unacked_t` lists, linked through the pool). Memory is bounded
by connections and segments in flight, not by packets. When the kernel runs out of room it
returns the row it stopped at; the driver grows the arrays and calls it again.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ---- TCP header flags (packets.tcp_flags) ---------------------------------------------------
TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10

# ---- analysis flags: the same bits as Wireshark's TCP_A_* -----------------------------------
A_RETRANSMISSION = 0x0001
A_LOST_PACKET = 0x0002
A_ACK_LOST_PACKET = 0x0004
A_KEEP_ALIVE = 0x0008
A_DUPLICATE_ACK = 0x0010
A_ZERO_WINDOW = 0x0020
A_ZERO_WINDOW_PROBE = 0x0040
A_ZERO_WINDOW_PROBE_ACK = 0x0080
A_KEEP_ALIVE_ACK = 0x0100
A_OUT_OF_ORDER = 0x0200
A_FAST_RETRANSMISSION = 0x0400
A_WINDOW_UPDATE = 0x0800
A_WINDOW_FULL = 0x1000
A_REUSED_PORTS = 0x2000
A_SPURIOUS_RETRANSMISSION = 0x4000
# not Wireshark's: the segment resends bytes the capture already saw (whatever tshark calls it:
# at a sender-side capture a resend within the reordering window is tshark's "out-of-order")
A_RESEND_BYTES = 0x10000

# Wireshark's limits and thresholds (packet-tcp.c)
MAX_UNACKED_SEGMENTS = 10000         # TCP_MAX_UNACKED_SEGMENTS: list length per direction
FAST_RETRANS_WINDOW_NS = 20_000_000  # a fast retransmission follows the dup ACKs within 20 ms
DEFAULT_OOO_THRESHOLD_NS = 3_000_000  # reordering window when the initial RTT is unknown
HISTORY_LEN = 40                     # Zeek history letters kept per connection

M32 = 0xFFFFFFFF

# ---- per-connection state columns (C[conn, C_*]) ---------------------------------------------
C_FLOW = 0
C_PROTO = 1
C_CLIENT_IS_A = 2
C_FIRST_TS = 3
C_LAST_TS = 4
C_FIRST_FRAME = 5
C_LAST_FRAME = 6
C_SYN_TS = 7            # first SYN
C_LAST_SYN_TS = 8       # most recent SYN (Wireshark ts_mru_syn)
C_SYN_COUNT = 9
C_SYNACK_TS = 10
C_SYN_BEFORE_SYNACK = 11
C_EST_TS = 12
C_FIRST_RTT = 13        # Wireshark ts_first_rtt (iRTT), -1 unknown
C_RETRANS_SEGS = 14
C_RETRANS_BYTES = 15
C_STALL_NS = 16
C_FAST = 17
C_OOO = 18
C_DUPACK = 19
C_LOST = 20
C_ZW_EVENTS = 21
C_ZW_NS = 22
C_WINFULL = 23
C_KEEPALIVE = 24
C_HIST_LEN = 25
C_FIRST_RST_DIR = 26    # direction of the first RST (-1 none)
C_MSS_C = 27
C_MSS_S = 28
C_WS_C = 29
C_WS_S = 30
C_SACKP_C = 31
C_SACKP_S = 32
C_NCOLS = 33

# ---- per-direction state columns (D[conn * 2 + dir, D_*]) ------------------------------------
D_BASE = 0
D_BASE_SET = 1
D_NEXTSEQ = 2
D_NEXTSEQ_TS = 3
D_NEXTSEQ_FRAME = 4
D_MAXSEQTOBEACKED = 5
D_LASTACK = 6
D_LASTACK_TS = 7
D_WINDOW = 8            # raw window field of the last segment (UINT32_MAX before any)
D_WIN_SCALE = 9         # -1 unknown, -2 no scaling, >= 0 shift
D_WIN_FROM_SYN = 10     # the stored window came from a SYN (never scaled)
D_DUPACKNUM = 11
D_LASTNONDUPACK = 12
D_LASTSEGFLAGS = 13
D_VALID_BIF = 14
D_LIST_HEAD = 15        # pool index of the newest unacked segment, -1 empty
D_LIST_COUNT = 16
D_PACKETS = 17
D_BYTES = 18
D_FRAME_BYTES = 19
D_ZW_START = 20         # ts a zero window started, -1 none
D_MAXACKED = 21         # highest ACK the *peer* sent for this direction's data
D_MAXACKED_SET = 22
D_SAW_SYN = 23
D_SAW_FIN = 24
D_SAW_RST = 25
D_HISTBITS = 26         # Zeek letters already recorded in this direction
D_RETRANS_N = 27        # count for Zeek's logarithmic T letter
D_ZW_N = 28             # count for Zeek's logarithmic W letter
D_NHOLES = 29
D_HOLE_ROW = 30         # 1 + row of this direction's holes in the hole pool HP, 0 none yet
N_HOLES = 16            # open (not yet acknowledged past) at once; acknowledged ones move to D_UNSEEN_DONE
# HP rows: N_HOLES (start, end) raw sequence pairs. Few directions ever have a hole, so the list
# lives in a pool given out on a direction's first hole instead of 32 columns on every row of D
# (256 B per direction; issue 10 item 12, memory per connection).
HP_NCOLS = 2 * N_HOLES
D_BIF_OK = 31           # D_BIF_FIRST/LAST hold the unacked list's extent (else walk it)
D_BIF_FIRST = D_BIF_OK + 1
D_BIF_LAST = D_BIF_OK + 2
D_UNSEEN_DONE = D_BIF_OK + 3    # ACK-proven unseen bytes of holes moved off the full hole list
D_UNSEEN_N_DONE = D_BIF_OK + 4  # ... and how many holes they were
# Zeek's TCP endpoint (src/analyzer/protocol/tcp/TCP_Endpoint.h), kept beside Wireshark's view:
D_Z_STATE = D_BIF_OK + 5   # ZS_* endpoint state
D_Z_PREV = D_BIF_OK + 6    # previous endpoint state
D_Z_CLOSED = D_BIF_OK + 7  # did_close: Zeek reported this endpoint closed (FIN or RST)
D_Z_START = D_BIF_OK + 8   # start_seq (raw)
D_Z_LAST = D_BIF_OK + 9    # last_seq (raw): one past the highest sequence sent
D_Z_LSYN = D_BIF_OK + 10   # hist_last_SYN / hist_last_FIN / hist_last_RST (relative)
D_Z_LFIN = D_BIF_OK + 11
D_Z_LRST = D_BIF_OK + 12
D_Z_FINSEQ = D_BIF_OK + 13  # relative sequence one past the FIN (0 = no FIN yet)
D_Z_GAP_N = D_BIF_OK + 14   # content gaps (scaled G letter)
D_Z_REASM = D_BIF_OK + 15   # relative sequence delivered (or given up as a gap) so far
D_Z_BUFLO = D_BIF_OK + 16   # lowest relative start of data buffered above a hole (0 none)
D_Z_BUFHI = D_BIF_OK + 17   # highest relative end of data seen
D_IP_BYTES = D_BIF_OK + 18  # sum of packets.ip_len (Zeek's orig_ip_bytes / resp_ip_bytes)
D_NCOLS = D_BIF_OK + 19

# ---- unacked segment pool (P[idx, P_*]) ------------------------------------------------------
P_SEQ = 0
P_NEXTSEQ = 1
P_FRAME = 2
P_TS = 3
P_NEXT = 4
P_NCOLS = 5

# ---- kernel output rows (OUT[O_*, row]: one contiguous array per column) -----------------------------------------------------
O_CONN = 0
O_DIR = 1
O_SEQ_REL = 2
O_NXT_REL = 3
O_ACK_REL = 4
O_WIN = 5
O_BIF = 6
O_FLAGS = 7
O_DUP_NUM = 8
O_DUP_FRAME = 9
O_RTO_NS = 10
O_RTO_FRAME = 11
O_RTT_NS = 12
O_ACKS_FRAME = 13
O_RESEND_FRAME = 14     # a resend of captured bytes: the frame that first carried them (-1 none)
O_RESEND_NS = 15        # ... and the time since that frame
O_NCOLS = 16

# Zeek history masks per endpoint (Session::CheckHistory): S and H share the SYN mask
H_SYN, H_FIN, H_RST, H_DATA, H_ACK, H_FINRST, H_MULTI = 1, 2, 4, 8, 16, 32, 64
H_S, H_H, H_A, H_D, H_F, H_R = H_SYN, H_SYN, H_ACK, H_DATA, H_FIN, H_RST  # (UDP uses H_D)

# Zeek's endpoint states (TCP_Endpoint.h EndpointState), in its order
ZS_INACTIVE, ZS_SYN_SENT, ZS_SYN_ACK_SENT, ZS_PARTIAL, ZS_ESTABLISHED, ZS_CLOSED, ZS_RESET = range(7)
TOO_LARGE_SEQ_DELTA = 1048576  # TCPSessionAdapter.cc: SYN/RST sequence jumps beyond this are not trusted


@njit(cache=True, inline="always")
def _gt(a, b):  # pragma: no cover - numba
    """GT_SEQ(a, b): a is after b in 32-bit sequence space."""
    d = (a - b) & 0xFFFFFFFF
    return d != 0 and d < 0x80000000


@njit(cache=True, inline="always")
def _lt(a, b):  # pragma: no cover - numba
    d = (b - a) & 0xFFFFFFFF
    return d != 0 and d < 0x80000000


@njit(cache=True, inline="always")
def _le(a, b):  # pragma: no cover - numba
    return ((b - a) & 0xFFFFFFFF) < 0x80000000


@njit(cache=True)
def _hist(C, H, c, d, letter):  # pragma: no cover - numba
    n = C[c, C_HIST_LEN]
    if n < HISTORY_LEN:
        H[c, n] = letter if d == 0 else letter + 32  # upper case = client, lower = server
        C[c, C_HIST_LEN] = n + 1


@njit(cache=True)
def _hist_once(C, D, H, c, d, bit, letter):  # pragma: no cover - numba
    k = c * 2 + d
    if (D[k, D_HISTBITS] & bit) == 0:
        D[k, D_HISTBITS] |= bit
        _hist(C, H, c, d, letter)


@njit(cache=True)
def _hist_log(C, H, c, d, count, letter):  # pragma: no cover - numba
    # Zeek records T/W/C at the 1st, 10th, 100th... occurrence
    x = count
    while x >= 10 and x % 10 == 0:
        x //= 10
    if x == 1:
        _hist(C, H, c, d, letter)


@njit(cache=True, inline="always")
def _rel(a, b):  # pragma: no cover - numba
    """seq_delta(a, b) of Zeek: signed 32-bit difference."""
    x = (a - b) & M32
    return x - 0x100000000 if x >= 0x80000000 else x


@njit(cache=True)
def _zset(D, k, state):  # pragma: no cover - numba
    """TCP_Endpoint::SetState: remember the previous state only on a change."""
    if D[k, D_Z_STATE] != state:
        D[k, D_Z_PREV] = D[k, D_Z_STATE]
        D[k, D_Z_STATE] = state


@njit(cache=True, inline="always")
def _zclean(D, k):  # pragma: no cover - numba
    """is_clean() of TCP_Reassembler.cc: established, or closed straight from established."""
    st = D[k, D_Z_STATE]
    return st == ZS_ESTABLISHED or (st == ZS_CLOSED and D[k, D_Z_PREV] == ZS_ESTABLISHED)


@njit(cache=True)
def _zeek_tcp(C, D, H, c, d, fl, sq, ak, ln, w):  # pragma: no cover - numba
    """One TCP packet through Zeek's per-endpoint model: history letters and endpoint states.

    Follows TCPSessionAdapter::Process (src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc):
    init_endpoint, update_history, update_window (W), update_last_seq (T), UpdateStateMachine,
    then the ACK's AckReceived on the peer's reassembler (G, TCP_Reassembler.cc Undelivered/Gap).
    Zeek's originator is netdiag's client (direction 0).
    """
    k = c * 2 + d
    r = c * 2 + (1 - d)
    syn = (fl & TH_SYN) != 0
    fin = (fl & TH_FIN) != 0
    rst = (fl & TH_RST) != 0
    is_ack = (fl & TH_ACK) != 0
    seg_len = ln + (1 if syn else 0) + (1 if fin else 0)
    if rst:
        seg_len -= ln
    last = (sq + seg_len) & M32
    st = D[k, D_Z_STATE]
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
                  or (st == ZS_RESET and D[k, D_Z_PREV] == ZS_INACTIVE)):
        D[k, D_Z_START] = sq
        D[k, D_Z_LAST] = last
    rel_seq = (sq - D[k, D_Z_START]) & M32
    # ---- update_history ----
    bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
    if bits > 1:
        if fin and rst:
            _hist_once(C, D, H, c, d, H_FINRST, 73)  # I
        else:
            _hist_once(C, D, H, c, d, H_MULTI, 81)  # Q
    elif bits == 1:
        if syn:  # S, or H for SYN+ACK; again only for a SYN at another sequence number
            if (D[k, D_HISTBITS] & H_SYN) == 0 or rel_seq != D[k, D_Z_LSYN]:
                D[k, D_HISTBITS] |= H_SYN
                _hist(C, H, c, d, 72 if is_ack else 83)
            D[k, D_Z_LSYN] = rel_seq
        if fin:
            fe = (rel_seq + ln) & M32
            if (D[k, D_HISTBITS] & H_FIN) == 0 or fe != D[k, D_Z_LFIN]:
                D[k, D_HISTBITS] |= H_FIN
                _hist(C, H, c, d, 70)
            D[k, D_Z_LFIN] = fe
        if rst:
            if (D[k, D_HISTBITS] & H_RST) == 0 or rel_seq != D[k, D_Z_LRST]:
                D[k, D_HISTBITS] |= H_RST
                _hist(C, H, c, d, 82)
            D[k, D_Z_LRST] = rel_seq
    elif ln > 0:
        _hist_once(C, D, H, c, d, H_DATA, 68)  # D
    elif is_ack:
        _hist_once(C, D, H, c, d, H_ACK, 65)  # A
    # ---- update_window: W, scaled (1st, 10th, 100th ...) ----
    if w == 0 and not rst and D[r, D_Z_STATE] != ZS_CLOSED and st != ZS_RESET:
        D[k, D_ZW_N] += 1
        _hist_log(C, H, c, d, D[k, D_ZW_N], 87)
    if fin:
        D[k, D_Z_FINSEQ] = (rel_seq + seg_len) & M32
    # ---- init_peer: the first ACK numbers a peer not seen yet ----
    if is_ack and D[r, D_Z_STATE] == ZS_INACTIVE:
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
        D[k, D_RETRANS_N] += 1
        _hist_log(C, H, c, d, D[k, D_RETRANS_N], 84)  # T
    # ---- UpdateStateMachine ----
    ps = D[r, D_Z_STATE]
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
        if D[k, D_Z_STATE] == ZS_INACTIVE:
            if d == 1 and ln == 0 and D[c * 2, D_Z_STATE] == ZS_SYN_SENT:
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
            if ps == ZS_RESET and D[r, D_Z_PREV] == ZS_CLOSED:
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
        D[k, D_Z_CLOSED] = 1
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
    if is_ack and D[r, D_Z_STATE] != ZS_INACTIVE:
        up = (ak - D[r, D_Z_START]) & M32
        if up < 0x80000000:
            if D[r, D_Z_FINSEQ] != 0 and up >= D[r, D_Z_FINSEQ]:
                up = D[r, D_Z_FINSEQ] - 1
            if D[r, D_Z_REASM] == 0:
                D[r, D_Z_REASM] = 1
            partial = D[c * 2, D_SAW_SYN] == 0
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
                        D[r, D_Z_GAP_N] += 1
                        _hist_log(C, H, c, 1 - d, D[r, D_Z_GAP_N], 71)  # G


@njit(cache=True)
def _fill_holes(D, HP, k, s, e):  # pragma: no cover - numba
    """Remove raw range [s, e) from direction k's list of sequence holes (its row of HP)."""
    r = D[k, D_HOLE_ROW] - 1
    n = D[k, D_NHOLES]
    i = 0
    while i < n:
        hs = HP[r, 2 * i]
        he = HP[r, 2 * i + 1]
        # work in offsets from the hole start so wrap-around is harmless
        ln = (he - hs) & M32
        a = (s - hs) & M32
        b = (e - hs) & M32
        if a >= 0x80000000:
            a = 0 if ((hs - s) & M32) < 0x80000000 else a
        if b >= 0x80000000:
            b = 0
        if a > ln:
            a = ln
        if b > ln:
            b = ln
        if b <= a:
            i += 1
            continue
        if a == 0 and b == ln:  # hole filled completely
            for j in range(i, n - 1):
                HP[r, 2 * j] = HP[r, 2 * j + 2]
                HP[r, 2 * j + 1] = HP[r, 2 * j + 3]
            n -= 1
            continue
        if a == 0:
            HP[r, 2 * i] = (hs + b) & M32
        elif b == ln:
            HP[r, 2 * i + 1] = (hs + a) & M32
        else:  # split in two; if no room, keep the larger part (an undercount, never an overcount)
            if n < N_HOLES:
                for j in range(n, i + 1, -1):
                    HP[r, 2 * j] = HP[r, 2 * j - 2]
                    HP[r, 2 * j + 1] = HP[r, 2 * j - 1]
                HP[r, 2 * i + 1] = (hs + a) & M32
                HP[r, 2 * (i + 1)] = (hs + b) & M32
                HP[r, 2 * (i + 1) + 1] = he
                n += 1
                i += 1
            elif a > ln - b:
                HP[r, 2 * i + 1] = (hs + a) & M32
            else:
                HP[r, 2 * i] = (hs + b) & M32
        i += 1
    D[k, D_NHOLES] = n


@njit(cache=True)
def _hole_overlap(D, HP, k, s, e):  # pragma: no cover - numba
    """Bytes of raw range [s, e) that lie in direction k's holes (never captured)."""
    total = 0
    ln = (e - s) & M32
    r = D[k, D_HOLE_ROW] - 1
    for h in range(D[k, D_NHOLES]):
        a = (HP[r, 2 * h] - s) & M32
        b = (HP[r, 2 * h + 1] - s) & M32
        if a >= 0x80000000:
            a = 0
        if b >= 0x80000000:
            continue
        if a > ln:
            a = ln
        if b > ln:
            b = ln
        if b > a:
            total += b - a
    return total


@njit(cache=True)
def _flush_acked_holes(D, HP, k):  # pragma: no cover - numba
    """Move holes the receiver acknowledged past off the list (they can no longer be filled by a
    first copy) into the per-direction unseen-bytes total, freeing slots for new holes."""
    if D[k, D_MAXACKED_SET] == 0:
        return
    ma = D[k, D_MAXACKED]
    r = D[k, D_HOLE_ROW] - 1
    n = D[k, D_NHOLES]
    j = 0
    for i in range(n):
        hs = HP[r, 2 * i]
        he = HP[r, 2 * i + 1]
        if _le(he, ma):
            D[k, D_UNSEEN_DONE] += (he - hs) & M32
            D[k, D_UNSEEN_N_DONE] += 1
        else:
            HP[r, 2 * j] = hs
            HP[r, 2 * j + 1] = he
            j += 1
    D[k, D_NHOLES] = j


@njit(cache=True)
def analyze_kernel(start, frame, ts, flow, src_is_a, proto, flags, seq, ack, win, seglen, frame_len, ip_len,
                   mss, wscale, sackp, src_port, dst_port, server_port_lut,
                   flow_cur, C, D, H, P, HP, meta, OUT):  # pragma: no cover - numba
    """Process rows start.. of one chunk; return the row to resume at (== n when done).

    meta: [n_conns, pool_free_head, pool_free_count, hole_rows_used]. Returns early (before
    touching a row) when a new connection, pool record or hole row might not fit; the caller
    grows and calls again.
    """
    n = frame.shape[0]
    for i in range(start, n):
        if meta[0] + 1 >= C.shape[0] or meta[2] < 2 or meta[3] >= HP.shape[0]:
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
            d0 = 0 if sia == C[c, C_CLIENT_IS_A] else 1
            k0 = c * 2 + d0
            if D[k0, D_BASE_SET] == 1 and sq != D[k0, D_BASE]:
                c = -1
            elif D[c * 2, D_Z_CLOSED] == 1 or D[c * 2 + 1, D_Z_CLOSED] == 1:
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
            C[c, C_PROTO] = pr
            C[c, C_FIRST_TS] = ts[i]
            C[c, C_FIRST_FRAME] = fr
            for x in (C_SYN_TS, C_LAST_SYN_TS, C_SYNACK_TS, C_SYN_BEFORE_SYNACK, C_EST_TS,
                      C_FIRST_RTT, C_FIRST_RST_DIR, C_WS_C, C_WS_S):
                C[c, x] = -1
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
            C[c, C_CLIENT_IS_A] = sia if src_client else 1 - sia
            for d in range(2):
                k = c * 2 + d
                D[k, :] = 0
                D[k, D_WINDOW] = M32
                D[k, D_WIN_SCALE] = -1
                D[k, D_LIST_HEAD] = -1
                D[k, D_ZW_START] = -1
                D[k, D_VALID_BIF] = 1
            if inherit >= 0:  # the Wireshark stream goes on; Zeek's connection starts afresh
                C[c, C_CLIENT_IS_A] = C[inherit, C_CLIENT_IS_A]
                C[c, C_FIRST_RTT] = C[inherit, C_FIRST_RTT]
                C[c, C_LAST_SYN_TS] = C[inherit, C_LAST_SYN_TS]
                for d in range(2):
                    k = c * 2 + d
                    ko = inherit * 2 + d
                    for x in range(D_HISTBITS):
                        D[k, x] = D[ko, x]
                    for x in (D_BIF_OK, D_BIF_FIRST, D_BIF_LAST):
                        D[k, x] = D[ko, x]  # sequence holes and unseen bytes stay the old row's
                    D[k, D_PACKETS] = 0
                    D[k, D_BYTES] = 0
                    D[k, D_FRAME_BYTES] = 0
                    D[k, D_IP_BYTES] = 0
                    D[k, D_ZW_START] = -1
                    D[k, D_SAW_SYN] = 0
                    D[k, D_SAW_FIN] = 0
                    D[k, D_SAW_RST] = 0
                    D[ko, D_LIST_HEAD] = -1  # the unacked list moves to the new row
                    D[ko, D_LIST_COUNT] = 0
            elif not src_client:
                _hist(C, H, c, 0, 94)  # ^: the first packet came from the responder (Zeek's flip)
            flow_cur[f] = c
        d = 0 if sia == C[c, C_CLIENT_IS_A] else 1
        k = c * 2 + d
        r = c * 2 + (1 - d)
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
                _hist_once(C, D, H, c, d, H_D, 68)
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
                C[c, C_SYN_COUNT] += 1
            C[c, C_LAST_SYN_TS] = t
            if d == 0 and C[c, C_MSS_C] == 0:
                C[c, C_MSS_C] = np.int64(mss[i])
                C[c, C_WS_C] = np.int64(wscale[i])
                C[c, C_SACKP_C] = np.int64(sackp[i])
        elif (fl & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK):
            if d == 1 and C[c, C_SYNACK_TS] < 0:
                C[c, C_SYNACK_TS] = t
                C[c, C_SYN_BEFORE_SYNACK] = C[c, C_LAST_SYN_TS]
                C[c, C_MSS_S] = np.int64(mss[i])
                C[c, C_WS_S] = np.int64(wscale[i])
                C[c, C_SACKP_S] = np.int64(sackp[i])
        elif is_ack:
            if C[c, C_LAST_SYN_TS] >= 0 and C[c, C_FIRST_RTT] <= 0:
                C[c, C_FIRST_RTT] = t - C[c, C_LAST_SYN_TS]
            if d == 0 and C[c, C_SYNACK_TS] >= 0 and C[c, C_EST_TS] < 0:
                C[c, C_EST_TS] = t

        # ---- relative sequence bases (Wireshark: SYN's seq, else seq-1; peer's from ack-1) ----
        if D[k, D_BASE_SET] == 0:
            D[k, D_BASE] = sq if (fl & TH_SYN) else (sq - 1) & M32
            D[k, D_BASE_SET] = 1
        if D[r, D_BASE_SET] == 0 and is_ack:
            D[r, D_BASE] = (ak - 1) & M32
            D[r, D_BASE_SET] = 1

        ta = 0
        nextseq = D[k, D_NEXTSEQ]
        if is_ack:
            D[r, D_VALID_BIF] = 1
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
                D[k, D_VALID_BIF] = 0
            # KEEP ALIVE
            if (ln == 0 or ln == 1) and sq == ((nextseq - 1) & M32) and not sfr:
                ta |= A_KEEP_ALIVE
            # WINDOW UPDATE
            if (ln == 0 and w != 0 and w != D[k, D_WINDOW] and sq == nextseq
                    and ak == D[k, D_LASTACK] and not sfr):
                ta |= A_WINDOW_UPDATE
            # WINDOW FULL
            if ln > 0 and D[r, D_WIN_SCALE] != -1 and not sfr:
                sh = 0
                if D[r, D_WIN_FROM_SYN] == 0 and D[r, D_WIN_SCALE] >= 0:
                    sh = D[r, D_WIN_SCALE]
                if ((sq + ln) & M32) == ((D[r, D_LASTACK] + (D[r, D_WINDOW] << sh)) & M32):
                    ta |= A_WINDOW_FULL
            same = (ln == 0 and sq == nextseq and ak == D[k, D_LASTACK] and not sfr)
            if same and w != 0 and w == D[k, D_WINDOW] and (D[r, D_LASTSEGFLAGS] & A_KEEP_ALIVE):
                ta |= A_KEEP_ALIVE_ACK
            elif same and w == 0 and w == D[k, D_WINDOW] and (D[r, D_LASTSEGFLAGS] & A_ZERO_WINDOW_PROBE):
                ta |= A_ZERO_WINDOW_PROBE_ACK
            elif same and w != 0 and w == D[k, D_WINDOW]:
                if D[k, D_DUPACKNUM] == -1:  # an ACKed-unseen mark (below) counts as the first
                    D[k, D_DUPACKNUM] = 1
                else:
                    D[k, D_DUPACKNUM] += 1
                ta |= A_DUPLICATE_ACK
                OUT[O_DUP_NUM, i] = D[k, D_DUPACKNUM]
                OUT[O_DUP_FRAME, i] = D[k, D_LASTNONDUPACK]
        # finished_fwd: a new ack number restarts the duplicate-ACK count
        if ak != D[k, D_LASTACK]:
            D[k, D_LASTNONDUPACK] = fr
            D[k, D_DUPACKNUM] = 0
        # ACKED LOST PACKET: flagged once per ack number. 'max seq to be acked' restarts from
        # what the peer was seen sending, and this side's dup-ACK counter is marked -1 so that
        # its further segments repeating the same ack are not flagged again (this combination
        # is what tshark 4.0.17 shows on every capture under captures/).
        if D[r, D_MAXSEQTOBEACKED] != 0 and _gt(ak, D[r, D_MAXSEQTOBEACKED]) and is_ack:
            if D[r, D_MAXSEQTOBEACKED] > D[r, D_NEXTSEQ]:
                ta |= A_ACK_LOST_PACKET
            else:
                if D[k, D_DUPACKNUM] == 0:
                    ta |= A_ACK_LOST_PACKET
                D[k, D_DUPACKNUM] = -1
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
                u = D[k, D_LIST_HEAD]
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
                if (not_adv and D[r, D_DUPACKNUM] >= 2 and D[r, D_LASTACK] == sq
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
                        u = D[k, D_LIST_HEAD]
                        while u >= 0:  # the oldest listed segment is the likely original
                            OUT[O_RTO_NS, i] = t - P[u, P_TS]
                            OUT[O_RTO_FRAME, i] = P[u, P_FRAME]
                            u = P[u, P_NEXT]
        # ---- sequence-space holes, for unseen_bytes (bytes the capture never saw) ----
        # (a bare ACK beyond the highest sequence opens a hole too: it moves that mark past bytes
        # the capture never saw, e.g. a request cut from the file and the ACK that followed it)
        end = (sq + ln + (1 if (fl & (TH_SYN | TH_FIN)) else 0)) & M32
        if nextseq != 0 and _gt(sq, nextseq) and (ta & A_ZERO_WINDOW_PROBE) == 0 and (fl & TH_RST) == 0:
            if D[k, D_HOLE_ROW] == 0:   # this direction's first hole: a row of the hole pool
                D[k, D_HOLE_ROW] = meta[3] + 1
                meta[3] += 1
            if D[k, D_NHOLES] >= N_HOLES:
                _flush_acked_holes(D, HP, k)
            nh = D[k, D_NHOLES]
            hr = D[k, D_HOLE_ROW] - 1
            if nh < N_HOLES:
                HP[hr, 2 * nh] = nextseq
                HP[hr, 2 * nh + 1] = sq
                D[k, D_NHOLES] = nh + 1
        elif (ln > 0 or (fl & (TH_SYN | TH_FIN))) and nextseq != 0 and _lt(sq, nextseq) and D[k, D_NHOLES] > 0:
            _fill_holes(D, HP, k, sq, end)
        # ---- remember this segment in the sender's unacked list ----
        nxt = (sq + ln) & M32
        if (ln > 0 or (fl & (TH_SYN | TH_FIN))) and D[k, D_LIST_COUNT] < MAX_UNACKED_SEGMENTS:
            u = meta[1]
            meta[1] = P[u, P_NEXT]
            meta[2] -= 1
            if fl & (TH_SYN | TH_FIN):
                nxt = (nxt + 1) & M32
            P[u, P_SEQ] = sq
            P[u, P_NEXTSEQ] = nxt
            P[u, P_FRAME] = fr
            P[u, P_TS] = t
            P[u, P_NEXT] = D[k, D_LIST_HEAD]
            D[k, D_LIST_HEAD] = u
            D[k, D_LIST_COUNT] += 1
            if D[k, D_BIF_OK] == 1 or D[k, D_LIST_COUNT] == 1:  # extend the cached extent
                a = (sq - D[k, D_BASE]) & M32
                b = (nxt - D[k, D_BASE]) & M32
                if D[k, D_LIST_COUNT] == 1 or a < D[k, D_BIF_FIRST]:
                    D[k, D_BIF_FIRST] = a
                if D[k, D_LIST_COUNT] == 1 or b > D[k, D_BIF_LAST]:
                    D[k, D_BIF_LAST] = b
                D[k, D_BIF_OK] = 1
        if (_gt(nxt, nextseq) or nextseq == 0) and (ta & A_ZERO_WINDOW_PROBE) == 0:
            D[k, D_NEXTSEQ] = nxt
            D[k, D_NEXTSEQ_TS] = t
            D[k, D_NEXTSEQ_FRAME] = fr
        if (sq == D[k, D_MAXSEQTOBEACKED] or D[k, D_MAXSEQTOBEACKED] == 0) and (ta & A_ZERO_WINDOW_PROBE) == 0:
            D[k, D_MAXSEQTOBEACKED] = D[k, D_NEXTSEQ]
        D[k, D_WINDOW] = w
        D[k, D_WIN_FROM_SYN] = 1 if (fl & TH_SYN) else 0
        D[k, D_LASTACK] = ak
        D[k, D_LASTACK_TS] = t
        D[k, D_LASTSEGFLAGS] = ta
        # ---- the ACK removes what it covers from the peer's list (acks_frame, ack_rtt) ----
        prev = -1
        u = D[r, D_LIST_HEAD]
        while u >= 0:
            nx = P[u, P_NEXT]
            if ak == P[u, P_NEXTSEQ]:
                OUT[O_ACKS_FRAME, i] = P[u, P_FRAME]
                OUT[O_RTT_NS, i] = t - P[u, P_TS]
            elif _gt(ak, P[u, P_SEQ]) and _le(ak, P[u, P_NEXTSEQ]):
                P[u, P_SEQ] = ak
                D[r, D_BIF_OK] = 0
                prev = u
                u = nx
                continue
            elif _gt(P[u, P_NEXTSEQ], ak):
                prev = u
                u = nx
                continue
            # old or exactly acknowledged: unlink and free
            if prev < 0:
                D[r, D_LIST_HEAD] = nx
            else:
                P[prev, P_NEXT] = nx
            P[u, P_NEXT] = meta[1]
            meta[1] = u
            meta[2] += 1
            D[r, D_LIST_COUNT] -= 1
            D[r, D_BIF_OK] = 0
            u = nx
        # ---- bytes in flight (payload method, SACK not subtracted) ----
        if ln != 0 and D[k, D_LIST_HEAD] >= 0 and D[k, D_VALID_BIF] == 1:
            if D[k, D_BIF_OK] == 0:  # the list shrank since last time: walk it once
                base = D[k, D_BASE]
                u = D[k, D_LIST_HEAD]
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
                D[k, D_BIF_OK] = 1
            first = D[k, D_BIF_FIRST]
            last = D[k, D_BIF_LAST]
            fl_bytes = (last - first) & M32
            if fl_bytes > 0 and fl_bytes < 2000000000:
                OUT[O_BIF, i] = fl_bytes - (1 if (fl & (TH_SYN | TH_FIN)) else 0)
        # ---- window scaling (Wireshark's verify_tcp_window_scaling) ----
        if fl & TH_SYN:
            if np.int64(wscale[i]) >= 0:
                D[k, D_WIN_SCALE] = np.int64(wscale[i])
            if D[k, D_WIN_SCALE] == -1:
                D[k, D_WIN_SCALE] = -2
                D[r, D_WIN_SCALE] = -2
            elif is_ack and D[r, D_WIN_SCALE] == -2:
                D[k, D_WIN_SCALE] = -2
        # ---- the segment's own output columns ----
        OUT[O_FLAGS, i] = ta | (A_RESEND_BYTES if byte_resend else 0)
        base = D[k, D_BASE]
        OUT[O_SEQ_REL, i] = (sq - base) & M32
        OUT[O_NXT_REL, i] = (sq - base + ln + (1 if (fl & (TH_SYN | TH_FIN)) else 0)) & M32
        OUT[O_ACK_REL, i] = ((ak - D[r, D_BASE]) & M32) if is_ack else 0
        if (fl & TH_SYN) == 0 and D[k, D_WIN_SCALE] >= 0:
            OUT[O_WIN, i] = w << D[k, D_WIN_SCALE]
        else:
            OUT[O_WIN, i] = w
        # ---- per-connection counters ----
        # resends: tshark's labels, and any segment whose bytes the capture already saw (whatever
        # its label: tshark calls a quick resend "out-of-order")
        if byte_resend or (ta & (A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION)):
            C[c, C_RETRANS_SEGS] += 1
            C[c, C_RETRANS_BYTES] += ln
            gap = t - prev_ts
            if OUT[O_RTO_NS, i] >= 0 and OUT[O_RTO_NS, i] < gap:
                gap = OUT[O_RTO_NS, i]
            elif OUT[O_RTO_NS, i] < 0 and OUT[O_RESEND_NS, i] >= 0 and OUT[O_RESEND_NS, i] < gap:
                gap = OUT[O_RESEND_NS, i]
            C[c, C_STALL_NS] += gap
        if ta & A_FAST_RETRANSMISSION:
            C[c, C_FAST] += 1
        if ta & A_OUT_OF_ORDER:
            C[c, C_OOO] += 1
        if ta & A_DUPLICATE_ACK:
            C[c, C_DUPACK] += 1
        if ta & A_LOST_PACKET:
            C[c, C_LOST] += 1
        if ta & A_WINDOW_FULL:
            C[c, C_WINFULL] += 1
        if ta & A_KEEP_ALIVE:
            C[c, C_KEEPALIVE] += 1
        if ta & A_ZERO_WINDOW:
            C[c, C_ZW_EVENTS] += 1
            if D[k, D_ZW_START] < 0:
                D[k, D_ZW_START] = t
        elif w != 0 and D[k, D_ZW_START] >= 0 and (fl & TH_RST) == 0:
            C[c, C_ZW_NS] += t - D[k, D_ZW_START]
            D[k, D_ZW_START] = -1
        if is_ack and (D[r, D_MAXACKED_SET] == 0 or _gt(ak, D[r, D_MAXACKED])):
            D[r, D_MAXACKED] = ak  # the peer's data is acknowledged up to here
            D[r, D_MAXACKED_SET] = 1
        # ---- Zeek history letters and endpoint states ----
        if (fl & TH_SYN) and (fl & (TH_FIN | TH_RST)) == 0:
            D[k, D_SAW_SYN] = 1
        if fl & TH_FIN:
            D[k, D_SAW_FIN] = 1
        if fl & TH_RST:
            D[k, D_SAW_RST] = 1
            if C[c, C_FIRST_RST_DIR] < 0:
                C[c, C_FIRST_RST_DIR] = d
        _zeek_tcp(C, D, H, c, d, fl, sq, ak, ln, w)
    return n


@njit(cache=True)
def unseen_bytes_kernel(D, HP, n_conns, out, out_gaps):  # pragma: no cover - numba
    """Per connection: bytes the peer ACKed that were never captured (holes + unseen tail), and
    in how many gaps (holes the receiver acknowledged past, each counted once)."""
    for c in range(n_conns):
        total = 0
        gaps = 0
        for d in range(2):
            k = c * 2 + d
            total += D[k, D_UNSEEN_DONE]
            gaps += D[k, D_UNSEEN_N_DONE]
            if D[k, D_MAXACKED_SET] == 0 or D[k, D_NEXTSEQ] == 0:
                continue
            ma = D[k, D_MAXACKED]
            r = D[k, D_HOLE_ROW] - 1
            for h in range(D[k, D_NHOLES]):
                hs = HP[r, 2 * h]
                he = HP[r, 2 * h + 1]
                if _le(he, ma):
                    total += (he - hs) & M32
                    gaps += 1
                elif _gt(ma, hs):
                    total += (ma - hs) & M32
                    gaps += 1
            nx = D[k, D_NEXTSEQ]
            if _gt(ma, nx):
                tail = (ma - nx) & M32
                if tail < 0x40000000:
                    total += tail
                    gaps += 1
        out[c] = total
        out_gaps[c] = gaps


@njit(cache=True, inline="always")
def _flow_hash(k0, k1, k2, k3, k4, k5, k6):  # pragma: no cover - numba
    h = np.uint64(0x9E3779B97F4A7C15)
    for v in (k0, k1, k2, k3, k4, k5, k6):
        h = (h ^ v) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(31)
    return h


@njit(cache=True)
def flow_lookup_kernel(start, proto, s_hi, s_lo, s_port, d_hi, d_lo, d_port, FK, HT, fmeta,
                       out_flow, out_src_is_a):  # pragma: no cover - numba
    """Direction-free flow id per row (open addressing over FK rows); new flows are appended.

    FK[flow] = (proto, a_hi, a_lo, a_port, b_hi, b_lo, b_port) with (a) the lower endpoint.
    Returns the row to resume at when the table needs to grow (fmeta[0] = flows in use).
    """
    n = proto.shape[0]
    mask = np.uint64(HT.shape[0] - 1)
    for i in range(start, n):
        if fmeta[0] + 1 >= FK.shape[0] or 2 * (fmeta[0] + 1) > HT.shape[0]:
            return i
        sh, sl, sp = np.uint64(s_hi[i]), np.uint64(s_lo[i]), np.uint64(s_port[i])
        dh, dl, dp = np.uint64(d_hi[i]), np.uint64(d_lo[i]), np.uint64(d_port[i])
        src_a = sh < dh or (sh == dh and (sl < dl or (sl == dl and sp <= dp)))
        pr = np.uint64(proto[i])
        if src_a:
            k1, k2, k3, k4, k5, k6 = sh, sl, sp, dh, dl, dp
        else:
            k1, k2, k3, k4, k5, k6 = dh, dl, dp, sh, sl, sp
        j = _flow_hash(pr, k1, k2, k3, k4, k5, k6) & mask
        while True:
            f = HT[j]
            if f < 0:
                f = fmeta[0]
                fmeta[0] = f + 1
                FK[f, 0], FK[f, 1], FK[f, 2], FK[f, 3] = pr, k1, k2, k3
                FK[f, 4], FK[f, 5], FK[f, 6] = k4, k5, k6
                HT[j] = f
                break
            if (FK[f, 0] == pr and FK[f, 1] == k1 and FK[f, 2] == k2 and FK[f, 3] == k3
                    and FK[f, 4] == k4 and FK[f, 5] == k5 and FK[f, 6] == k6):
                break
            j = (j + np.uint64(1)) & mask
        out_flow[i] = f
        out_src_is_a[i] = 1 if src_a else 0
    return n


@njit(cache=True)
def flow_rehash_kernel(FK, n, HT):  # pragma: no cover - numba
    """Insert flows 0..n-1 into an empty (all -1) table HT."""
    mask = np.uint64(HT.shape[0] - 1)
    for f in range(n):
        j = _flow_hash(FK[f, 0], FK[f, 1], FK[f, 2], FK[f, 3], FK[f, 4], FK[f, 5], FK[f, 6]) & mask
        while HT[j] >= 0:
            j = (j + np.uint64(1)) & mask
        HT[j] = f


# =============================================================================================
# The driver: chunk in, SEGMENTS rows out; state carried across chunks.
# =============================================================================================

import polars as pl  # noqa: E402

from netdiag.schema import SEGMENTS  # noqa: E402

_KEY = ["ip_proto", "a_hi", "a_lo", "a_port", "b_hi", "b_lo", "b_port"]
_KEY_SCHEMA = {"ip_proto": pl.UInt8, "a_hi": pl.UInt64, "a_lo": pl.UInt64, "a_port": pl.UInt16,
               "b_hi": pl.UInt64, "b_lo": pl.UInt64, "b_port": pl.UInt16, "flow_id": pl.Int64}

# SEGMENTS boolean columns and the analysis bits behind them
FLAG_COLUMNS: dict[str, int] = {
    "retransmission": A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION,
    "fast_retransmission": A_FAST_RETRANSMISSION,
    "spurious_retransmission": A_SPURIOUS_RETRANSMISSION,
    "resend": A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION | A_RESEND_BYTES,
    "bytes_seen_before": A_RESEND_BYTES,
    "out_of_order": A_OUT_OF_ORDER,
    "lost_segment": A_LOST_PACKET,
    "ack_lost_segment": A_ACK_LOST_PACKET,
    "duplicate_ack": A_DUPLICATE_ACK,
    "zero_window": A_ZERO_WINDOW,
    "zero_window_probe": A_ZERO_WINDOW_PROBE,
    "zero_window_probe_ack": A_ZERO_WINDOW_PROBE_ACK,
    "window_full": A_WINDOW_FULL,
    "window_update": A_WINDOW_UPDATE,
    "keep_alive": A_KEEP_ALIVE,
    "keep_alive_ack": A_KEEP_ALIVE_ACK,
}

UDP_COLUMNS = ["frame", "ts_ns", "conn_id", "direction", "src_port", "dst_port", "payload_offset",
               "payload_captured", "payload_len"]


def _grow_rows(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows,) + a.shape[1:], a.dtype)
    out[: a.shape[0]] = a
    return out


def _dsack_columns() -> list[pl.Expr]:
    """The first SACK block in relative sequence numbers when it reports a duplicate (RFC 2883
    D-SACK: it lies below the cumulative ACK), else null. Relative like tcp.ack: the peer's base
    is the raw ACK minus ack_rel."""
    def rel(raw: str) -> pl.Expr:
        return ((pl.col(raw).cast(pl.Int64) - pl.col("tcp_ack").cast(pl.Int64) + pl.col("ack_rel")) % (1 << 32))
    dsack = ((pl.col("tcp_sack_blocks") > 0) & ((pl.col("tcp_flags").cast(pl.Int64) & TH_ACK) != 0)
             & (rel("tcp_sack_left") < pl.col("ack_rel")) & (rel("tcp_sack_left") < rel("tcp_sack_right")))
    return [pl.when(dsack).then(rel("tcp_sack_left")).otherwise(None).alias("dsack_left_rel"),
            pl.when(dsack).then(rel("tcp_sack_right")).otherwise(None).alias("dsack_right_rel")]


def _ns_or_null(name: str, out: str) -> pl.Expr:
    return pl.when(pl.col(name) >= 0).then(pl.col(name).cast(pl.Float64) / 1e9).otherwise(None).alias(out)


def _int_or_null(name: str, out: str) -> pl.Expr:
    return pl.when(pl.col(name) >= 0).then(pl.col(name)).otherwise(None).alias(out)


class TcpAnalyzer:
    """Streaming TCP/UDP analysis: `feed(chunk)` per PacketChunk, then `finish()`.

    - `feed` returns the chunk's SEGMENTS rows (netdiag.schema.SEGMENTS, in analysis order)
      plus `payload_offset` and `payload_captured` copied from the packets, so a stream
      reassembler can find each segment's bytes in `chunk.payload`. UDP rows are not in it;
      they are in `last_udp` after each feed (columns UDP_COLUMNS).
    - `finish` returns the CONNECTIONS table (TCP connections and UDP flows).
    - conn_id is assigned in order of first appearance across TCP and UDP. TCP connections
      are split like Wireshark's tcp.stream: a SYN (without ACK) whose sequence number differs
      from the ISN already seen in that direction starts a new connection.
    - server_ports: ports known to be servers (decides client/server when no SYN was seen).
    """

    def __init__(self, server_ports: set[int] | None = None) -> None:
        self.server_ports = set(server_ports or ())
        self._lut = np.zeros(65536, np.bool_)
        for p in self.server_ports:
            if 0 <= int(p) < 65536:
                self._lut[int(p)] = True
        self._FK = np.zeros((1024, 7), np.uint64)   # flow keys, see flow_lookup_kernel
        self._HT = np.full(4096, -1, np.int64)       # open-addressing index into _FK
        self._fmeta = np.zeros(1, np.int64)
        self._flow_cur = np.full(1024, -1, np.int64)
        self._C = np.zeros((1024, C_NCOLS), np.int64)
        self._D = np.zeros((2048, D_NCOLS), np.int64)
        self._H = np.zeros((1024, HISTORY_LEN), np.uint8)
        self._P = np.zeros((0, P_NCOLS), np.int64)
        self._HP = np.zeros((64, HP_NCOLS), np.int64)   # hole pool (see D_HOLE_ROW)
        self._meta = np.array([0, -1, 0, 0], np.int64)
        self._grow_pool(8192)
        self.last_udp: pl.DataFrame = pl.DataFrame(schema={c: pl.Int64 for c in UDP_COLUMNS})
        self.tcp_segments = 0
        self.udp_packets = 0
        self.fragments_skipped = 0
        self.truncated_headers = 0
        from netdiag.tcp.nagle import NagleTracker

        self._nagle = NagleTracker()     # Nagle x delayed-ACK stalls for the connections table

    # ------------------------------------------------------------------ growth
    def _grow_pool(self, extra: int) -> None:
        old = self._P.shape[0]
        self._P = _grow_rows(self._P, old + extra)
        idx = np.arange(old, old + extra, dtype=np.int64)
        self._P[old:, P_NEXT] = idx + 1
        self._P[-1, P_NEXT] = self._meta[1]
        self._meta[1] = old
        self._meta[2] += extra

    def _grow_conns(self, rows: int = 0) -> None:
        """Grow the per-connection arrays to `rows` (default: double). np.zeros maps pages lazily,
        so spare rows cost no memory until used; what costs is the copy of the old rows, so the
        driver grows once per chunk to a bound on what the chunk can add (see feed)."""
        rows = max(rows, self._C.shape[0] * 2)
        self._C = _grow_rows(self._C, rows)
        self._D = _grow_rows(self._D, rows * 2)
        self._H = _grow_rows(self._H, rows)

    # ------------------------------------------------------------------ flows
    def _flow_ids(self, sel: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Flow id (direction-free 4/5-tuple) and src_is_a of every selected row (numba hash table)."""
        cols = [sel[c].to_numpy() for c in ("ip_proto", "src_ip_hi", "src_ip_lo", "src_port", "dst_ip_hi",
                                              "dst_ip_lo", "dst_port")]
        n = sel.height
        flow = np.empty(n, np.int64)
        src_is_a = np.empty(n, np.int64)
        pos = 0
        while True:
            pos = flow_lookup_kernel(pos, *cols, self._FK, self._HT, self._fmeta, flow, src_is_a)
            if pos >= n:
                break
            if self._fmeta[0] + 1 >= self._FK.shape[0]:
                self._FK = _grow_rows(self._FK, 2 * self._FK.shape[0])
            if 2 * (self._fmeta[0] + 1) > self._HT.shape[0]:
                self._HT = np.full(2 * self._HT.shape[0], -1, np.int64)
                flow_rehash_kernel(self._FK, int(self._fmeta[0]), self._HT)
        nf = int(self._fmeta[0])
        if nf > self._flow_cur.size:
            grown = np.full(max(nf, 2 * self._flow_cur.size), -1, np.int64)
            grown[: self._flow_cur.size] = self._flow_cur
            self._flow_cur = grown
        return flow, src_is_a

    @property
    def _flows(self) -> pl.DataFrame:
        """The flow keys as a table (flow_id, ip_proto, a_hi, a_lo, a_port, b_hi, b_lo, b_port)."""
        nf = int(self._fmeta[0])
        fk = self._FK[:nf]
        return pl.DataFrame({"flow_id": np.arange(nf, dtype=np.int64), **{
            name: fk[:, j] for j, name in enumerate(_KEY)}}).cast(_KEY_SCHEMA)

    # ------------------------------------------------------------------ feed
    def feed(self, chunk, *, segments: bool = True) -> pl.DataFrame:  # noqa: ANN001 - a PacketChunk
        """Analyse one PacketChunk; return its SEGMENTS rows (+ payload_offset, payload_captured).

        segments=False skips building the rows (the connections table alone needs only the
        state): it returns an empty frame and leaves `last_udp` empty too.
        """
        pk = chunk.packets
        l4 = pk.filter(pl.col("ip_proto").is_in([6, 17]) & (pl.col("ip_version") > 0))
        frag = l4.filter(pl.col("ip_fragment"))
        self.fragments_skipped += frag.height
        sel = l4.filter(~pl.col("ip_fragment")) if frag.height else l4
        # a TCP header cut off by the snaplen decodes as all zeros: leave it out, as tshark does
        no_header = ((pl.col("ip_proto") == 6) & (pl.col("tcp_flags") == 0) & (pl.col("tcp_seq") == 0)
                     & (pl.col("tcp_ack") == 0) & (pl.col("tcp_window") == 0))
        cut = sel.filter(no_header)
        if cut.height:
            self.truncated_headers += cut.height
            sel = sel.filter(~no_header)
        if sel.height == 0:
            self.last_udp = pl.DataFrame(schema={c: pl.Int64 for c in UDP_COLUMNS})
            return self._empty_segments()
        flows_before = int(self._fmeta[0])
        flow, src_is_a = self._flow_ids(sel)
        # a connection starts only on a new flow or on a SYN: grow once for the whole chunk
        bound = int(self._meta[0]) + int(self._fmeta[0]) - flows_before + 1 + int(
            ((sel["tcp_flags"].to_numpy() & (TH_SYN | TH_ACK)) == TH_SYN).sum())
        if bound >= self._C.shape[0]:
            self._grow_conns(bound + 1024)

        def col(name: str) -> np.ndarray:  # native dtype, no copy: the kernel widens per row
            return sel[name].to_numpy()

        frame, ts = col("frame"), col("ts_ns")
        proto, flags = col("ip_proto"), col("tcp_flags")
        seq, ack, win = col("tcp_seq"), col("tcp_ack"), col("tcp_window")
        seglen, frame_len, ip_len = col("payload_len"), col("frame_len"), col("ip_len")
        mss, wscale, sackp = col("tcp_mss"), col("tcp_wscale"), col("tcp_sack_perm")
        sport, dport = col("src_port"), col("dst_port")
        n = frame.size
        out = np.empty((O_NCOLS, n), np.int64)
        pos = 0
        while True:
            pos = analyze_kernel(pos, frame, ts, flow, src_is_a, proto, flags, seq, ack, win, seglen,
                                 frame_len, ip_len, mss, wscale, sackp, sport, dport, self._lut,
                                 self._flow_cur, self._C, self._D, self._H, self._P, self._HP, self._meta, out)
            if pos >= n:
                break
            if self._meta[0] + 1 >= self._C.shape[0]:
                self._grow_conns()
            if self._meta[2] < 2:
                self._grow_pool(max(8192, self._P.shape[0]))
            if self._meta[3] >= self._HP.shape[0]:
                self._HP = _grow_rows(self._HP, 2 * self._HP.shape[0])
        is_tcp = proto == 6
        self.tcp_segments += int(is_tcp.sum())
        self.udp_packets += n - int(is_tcp.sum())
        if not segments:
            self.last_udp = pl.DataFrame(schema={c: pl.Int64 for c in UDP_COLUMNS})
            # the few columns the Nagle detection reads, straight from the kernel's output
            rtt, acksf = out[O_RTT_NS][is_tcp], out[O_ACKS_FRAME][is_tcp]
            self._nagle.feed(pl.DataFrame({
                "frame": frame[is_tcp], "ts_ns": ts[is_tcp], "conn_id": out[O_CONN][is_tcp],
                "direction": out[O_DIR][is_tcp], "tcp_flags": flags[is_tcp], "payload_len": seglen[is_tcp],
                "ack_rtt_s": pl.Series(np.where(rtt >= 0, rtt / 1e9, np.nan)).fill_nan(None),
                "acks_frame": pl.Series(acksf).set(pl.Series(acksf < 0), None) if (acksf < 0).any()
                else pl.Series(acksf)}))
            return self._empty_segments()
        res = sel.select("frame", "ts_ns", "tcp_flags", "payload_len", "payload_offset",
                         "payload_captured", "src_port", "dst_port", "ip_id", "ip_ttl", "tcp_ack",
                         "tcp_sack_blocks", "tcp_sack_left", "tcp_sack_right").with_columns(
            pl.Series("conn_id", out[O_CONN]).cast(pl.UInt32),
            pl.Series("direction", out[O_DIR]).cast(pl.UInt8),
            *(pl.Series(name, out[j]) for name, j in (
                ("seq_rel", O_SEQ_REL), ("next_seq_rel", O_NXT_REL), ("ack_rel", O_ACK_REL),
                ("window_bytes", O_WIN), ("_bif", O_BIF), ("_f", O_FLAGS), ("duplicate_ack_num", O_DUP_NUM),
                ("_dupf", O_DUP_FRAME), ("_rto", O_RTO_NS), ("_rtof", O_RTO_FRAME), ("_rtt", O_RTT_NS),
                ("_acksf", O_ACKS_FRAME), ("_rsf", O_RESEND_FRAME), ("_rsns", O_RESEND_NS))))
        all_tcp = bool(is_tcp.all())
        udp = res.clear() if all_tcp else res.filter(pl.Series(~is_tcp))
        self.last_udp = udp.select(UDP_COLUMNS)
        tcp = res if all_tcp else res.filter(pl.Series(is_tcp))
        seg = tcp.with_columns(
            [((pl.col("_f") & bit) != 0).alias(name) for name, bit in FLAG_COLUMNS.items()]
            + [_int_or_null("_bif", "bytes_in_flight"), _int_or_null("_dupf", "duplicate_ack_frame"),
               _ns_or_null("_rto", "rto_s"), _int_or_null("_rtof", "rto_frame"),
               _ns_or_null("_rtt", "ack_rtt_s"), _int_or_null("_acksf", "acks_frame"),
               _int_or_null("_rsf", "resend_of_frame"), _ns_or_null("_rsns", "resend_wait_s"),
               *_dsack_columns()])
        seg = self._conform(seg)
        self._nagle.feed(seg)
        return seg

    @staticmethod
    def _conform(seg: pl.DataFrame) -> pl.DataFrame:
        body = SEGMENTS.conform(seg)
        return body.with_columns(seg["payload_offset"].cast(pl.Int64), seg["payload_captured"].cast(pl.UInt32))

    def _empty_segments(self) -> pl.DataFrame:
        return SEGMENTS.empty().with_columns(pl.Series("payload_offset", [], pl.Int64),
                                             pl.Series("payload_captured", [], pl.UInt32))

    # ------------------------------------------------------------------ finish
    @property
    def connection_count(self) -> int:
        return int(self._meta[0])

    def finish(self) -> pl.DataFrame:
        """The CONNECTIONS table of everything fed so far (see netdiag.tcp.connections)."""
        from netdiag.tcp.connections import build_connections

        n = int(self._meta[0])
        return build_connections(self._C[:n], self._D[: 2 * n], self._H[:n], self._flows, self._nagle.candidates(),
                                 holes=self._HP[: int(self._meta[3])])
