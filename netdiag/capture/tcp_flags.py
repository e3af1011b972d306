"""TCP header flag bits, named once (packets.tcp_flags, RFC 9293 section 3.1; NS is RFC 3540).

Every module that tests a TCP flag imports it from here rather than writing 0x02 or 0x12: the
packets table stores the 9 flag bits of the header as one integer, and the combinations below
are the ones the analysis asks about (a SYN without ACK opens a connection, a SYN/ACK answers).
Plain ints, so numba kernels, numpy masks and polars expressions all use them as they are.
"""

from __future__ import annotations

TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20
TH_ECE = 0x40
TH_CWR = 0x80
TH_NS = 0x100

TH_SYN_ACK = TH_SYN | TH_ACK            # mask for the handshake tests below
TH_SYN_FIN_RST = TH_SYN | TH_FIN | TH_RST  # segments that count in sequence space or end it
