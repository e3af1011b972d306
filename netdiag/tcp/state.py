"""The TCP analysis state layout and 32-bit sequence arithmetic (see netdiag.tcp.analysis).

What and why: the numba kernels keep their state in plain 2-D int64 arrays so that one pass per
chunk costs nothing per packet in Python. The column numbers of those arrays, the analysis bits
(Wireshark's TCP_A_*), Zeek's history masks and endpoint states, and the wrap-around sequence
comparisons every kernel uses are declared here once, so the kernel (netdiag.tcp.kernel), the
Zeek model (netdiag.tcp.zeek), the hole bookkeeping (netdiag.tcp.holes) and the connections
table (netdiag.tcp.connections) read the same layout.
"""

from __future__ import annotations

import numpy as np
from numba import njit

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
# C is int64. Its small fields (protocol, client side, counts of one connection's segments, MSS,
# window scale, SACK permitted, Zeek history length, first-RST direction) are int32 and live
# two to an int64 slot after the wide ones: they are read and written through the int32 view
# CS = C.view(np.int32), whose column numbers the CS_* constants are (so CS[c, CS_PROTO]; never
# C[c, CS_*]). `C[c, :] = 0` still clears a whole row. 72 bytes less per connection than all
# int64 (memory per connection); every value fits: a count is below 2**31 packets of one connection.
C_FLOW = 0
C_FIRST_TS = 1
C_LAST_TS = 2
C_FIRST_FRAME = 3
C_LAST_FRAME = 4
C_SYN_TS = 5            # first SYN
C_LAST_SYN_TS = 6       # most recent SYN (Wireshark ts_mru_syn)
C_SYNACK_TS = 7
C_SYN_BEFORE_SYNACK = 8  # ts of the last SYN before the SYN/ACK
C_EST_TS = 9
C_FIRST_RTT = 10        # Wireshark ts_first_rtt (iRTT), -1 unknown
C_RETRANS_BYTES = 11
C_STALL_NS = 12
C_ZW_NS = 13
C_DROW = 14             # C_DROW + d: this direction's row of D (a template row below D_FIRST_ROW until it is needed)
C_WIDE = 16             # int64 columns; the int32 fields follow
CS_PROTO = 2 * C_WIDE
CS_CLIENT_IS_A = CS_PROTO + 1
CS_SYN_COUNT = CS_PROTO + 2
CS_RETRANS_SEGS = CS_PROTO + 3
CS_FAST = CS_PROTO + 4
CS_OOO = CS_PROTO + 5
CS_DUPACK = CS_PROTO + 6
CS_LOST = CS_PROTO + 7
CS_ZW_EVENTS = CS_PROTO + 8
CS_WINFULL = CS_PROTO + 9
CS_KEEPALIVE = CS_PROTO + 10
CS_HIST_LEN = CS_PROTO + 11
CS_FIRST_RST_DIR = CS_PROTO + 12   # direction of the first RST (-1 none)
CS_MSS_C = CS_PROTO + 13
CS_MSS_S = CS_PROTO + 14
CS_WS_C = CS_PROTO + 15
CS_WS_S = CS_PROTO + 16
CS_SACKP_C = CS_PROTO + 17
CS_SACKP_S = CS_PROTO + 18
CS_END = CS_PROTO + 19
C_NCOLS = (CS_END + 1) // 2     # 26 int64 slots: 208 bytes per connection

# ---- per-direction state columns (D[row, D_*]) -----------------------------------------------
# As C: D is int64, its small fields (flags, bit sets, counts, window scale, list and pool
# indexes, Zeek endpoint states) int32 through DS = D.view(np.int32) with the DS_* column numbers
# (88 bytes less per direction row). A direction that takes over an old connection's row
# (a new SYN on the same ports, see the kernel) inherits the wide columns below D_INHERIT_WIDE and
# the int32 ones from DS_FIRST below DS_INHERIT_END.
D_BASE = 0
D_NEXTSEQ = 1
D_NEXTSEQ_TS = 2
D_NEXTSEQ_FRAME = 3
D_MAXSEQTOBEACKED = 4
D_LASTACK = 5
D_LASTACK_TS = 6
D_WINDOW = 7            # raw window field of the last segment (UINT32_MAX before any)
D_LASTNONDUPACK = 8
D_PACKETS = 9
D_BYTES = 10
D_FRAME_BYTES = 11
D_ZW_START = 12         # ts a zero window started, -1 none
D_MAXACKED = 13         # highest ACK the *peer* sent for this direction's data
D_INHERIT_WIDE = 14
D_BIF_FIRST = 14        # with DS_BIF_OK: the unacked list's extent (else walk it)
D_BIF_LAST = 15
D_UNSEEN_DONE = 16      # ACK-proven unseen bytes of holes moved off the full hole list
# Zeek's TCP endpoint (src/analyzer/protocol/tcp/TCP_Endpoint.h), kept beside Wireshark's view:
D_Z_START = 17          # start_seq (raw)
D_Z_LAST = 18           # last_seq (raw): one past the highest sequence sent
D_Z_LSYN = 19           # hist_last_SYN / hist_last_FIN / hist_last_RST (relative)
D_Z_LFIN = 20
D_Z_LRST = 21
D_Z_FINSEQ = 22         # relative sequence one past the FIN (0 = no FIN yet)
D_Z_REASM = 23          # relative sequence delivered (or given up as a gap) so far
D_Z_BUFLO = 24          # lowest relative start of data buffered above a hole (0 none)
D_Z_BUFHI = 25          # highest relative end of data seen
D_IP_BYTES = 26         # sum of packets.ip_len (Zeek's orig_ip_bytes / resp_ip_bytes)
D_WIDE = 27
DS_FIRST = 2 * D_WIDE
DS_BASE_SET = DS_FIRST
DS_WIN_SCALE = DS_FIRST + 1      # -1 unknown, -2 no scaling, >= 0 shift
DS_WIN_FROM_SYN = DS_FIRST + 2   # the stored window came from a SYN (never scaled)
DS_DUPACKNUM = DS_FIRST + 3
DS_LASTSEGFLAGS = DS_FIRST + 4
DS_VALID_BIF = DS_FIRST + 5
DS_LIST_HEAD = DS_FIRST + 6      # pool index of the newest unacked segment, -1 empty
DS_LIST_COUNT = DS_FIRST + 7
DS_MAXACKED_SET = DS_FIRST + 8
DS_SAW_SYN = DS_FIRST + 9
DS_SAW_FIN = DS_FIRST + 10
DS_SAW_RST = DS_FIRST + 11
DS_INHERIT_END = DS_FIRST + 12
DS_HISTBITS = DS_FIRST + 12      # Zeek letters already recorded in this direction
DS_RETRANS_N = DS_FIRST + 13     # count for Zeek's logarithmic T letter
DS_ZW_N = DS_FIRST + 14          # count for Zeek's logarithmic W letter
DS_NHOLES = DS_FIRST + 15
DS_HOLE_ROW = DS_FIRST + 16      # 1 + row of this direction's holes in the hole pool HP, 0 none yet
DS_BIF_OK = DS_FIRST + 17        # D_BIF_FIRST/LAST hold the unacked list's extent (else walk it)
DS_UNSEEN_N_DONE = DS_FIRST + 18  # ... how many holes D_UNSEEN_DONE's bytes were
DS_Z_STATE = DS_FIRST + 19       # ZS_* endpoint state
DS_Z_PREV = DS_FIRST + 20        # previous endpoint state
DS_Z_CLOSED = DS_FIRST + 21      # did_close: Zeek reported this endpoint closed (FIN or RST)
DS_Z_GAP_N = DS_FIRST + 22       # content gaps (scaled G letter)
DS_END = DS_FIRST + 23
D_NCOLS = (DS_END + 1) // 2      # 39 int64 slots: 312 bytes per direction row
N_HOLES = 16            # open (not yet acknowledged past) at once; acknowledged ones move to D_UNSEEN_DONE
# HP rows: N_HOLES (start, end) raw sequence pairs. Few directions ever have a hole, so the list
# lives in a pool given out on a direction's first hole instead of 32 columns on every row of D
# (256 B per direction: memory per connection).
HP_NCOLS = 2 * N_HOLES
# A direction gets its own row of D only when the analysis writes to it: when it sends, or when an
# ACK of the peer numbers it. Until then C_DROW points at a shared, read-only template row with
# the values a fresh direction starts with, so a SYN flood keeps one row per connection, not two
# (memory per connection). D_TEMPLATE_NOSCALE: also told by the peer's SYN
# that window scaling is off (Wireshark's verify_tcp_window_scaling).
D_TEMPLATE = 0
D_TEMPLATE_NOSCALE = 1
D_FIRST_ROW = 2

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



@njit(cache=True, inline="always")
def _rel(a, b):  # pragma: no cover - numba
    """seq_delta(a, b) of Zeek: signed 32-bit difference."""
    x = (a - b) & M32
    return x - 0x100000000 if x >= 0x80000000 else x


def template_rows() -> np.ndarray:
    """The D_FIRST_ROW template rows of D (see D_TEMPLATE): a fresh direction's state, and the same
    with window scaling known to be off."""
    t = np.zeros((D_FIRST_ROW, D_NCOLS), np.int64)
    ts = t.view(np.int32)
    t[:, D_WINDOW] = M32
    ts[:, DS_WIN_SCALE] = -1
    ts[:, DS_LIST_HEAD] = -1
    t[:, D_ZW_START] = -1
    ts[:, DS_VALID_BIF] = 1
    ts[D_TEMPLATE_NOSCALE, DS_WIN_SCALE] = -2
    return t
