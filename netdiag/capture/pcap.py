"""Classic libpcap files: the 24-byte file header and a numba walker over the 16-byte record headers.

Format: https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html (and pcap-savefile(5)).
Magic 0xA1B2C3D4 means microsecond timestamps, 0xA1B23C4D nanoseconds; written in the
capturing host's byte order, so both orders are accepted. The link type is the low 16 bits of
the header's LinkType field (the upper bits carry the FCS length, which we do not need).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numba import njit

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
HEADER_LEN = 24
RECORD_HEADER_LEN = 16
# Wireshark refuses records above this (WTAP_MAX_PACKET_SIZE_STANDARD); bigger means corruption.
MAX_RECORD = 262_144

# walker status codes (shared with pcapng.py)
ST_END = 0  # consumed the buffer exactly
ST_FULL = 1  # max_n records found
ST_INCOMPLETE = 2  # the next record does not fit in the buffer (need more bytes, or truncated)
ST_TOO_BIG = 3  # a record length that cannot be right


@dataclass(frozen=True)
class PcapHeader:
    """What the file header says."""

    big_endian: bool
    nanoseconds: bool
    snaplen: int
    link_type: int


def parse_header(head: bytes) -> PcapHeader | None:
    """Parse the 24-byte header; None when the magic is not a classic pcap magic."""
    if len(head) < HEADER_LEN:
        return None
    for big, fmt in ((False, "<"), (True, ">")):
        (magic,) = struct.unpack(fmt + "I", head[:4])
        if magic in (MAGIC_US, MAGIC_NS):
            _vmaj, _vmin, _zone, _sig, snaplen, network = struct.unpack(fmt + "HHiIII", head[4:24])
            return PcapHeader(big, magic == MAGIC_NS, snaplen, network & 0xFFFF)
    return None


@njit(cache=True, inline="always")
def _u32(b, p, big):
    if big:
        return (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])
    return (np.int64(b[p + 3]) << 24) | (np.int64(b[p + 2]) << 16) | (np.int64(b[p + 1]) << 8) | np.int64(b[p])


@njit(cache=True)
def walk_pcap(buf, pos, big, nanoseconds, max_n, max_record, out_off, out_cap, out_len, out_ts):
    """Find up to `max_n` records from `pos`. Returns (count, new position, status)."""
    end = buf.shape[0]
    n = 0
    scale = 1 if nanoseconds else 1000
    while n < max_n:
        if pos == end:
            return n, pos, ST_END
        if pos + 16 > end:
            return n, pos, ST_INCOMPLETE
        incl = _u32(buf, pos + 8, big)
        if incl > max_record:
            return n, pos, ST_TOO_BIG
        if pos + 16 + incl > end:
            return n, pos, ST_INCOMPLETE
        out_ts[n] = _u32(buf, pos, big) * 1_000_000_000 + _u32(buf, pos + 4, big) * scale
        out_cap[n] = incl
        out_len[n] = _u32(buf, pos + 12, big)
        out_off[n] = pos + 16
        pos += 16 + incl
        n += 1
    return n, pos, ST_FULL
