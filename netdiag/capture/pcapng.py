"""pcapng files: a numba walker over packet blocks, Python for the rare blocks between them.

Format: draft-ietf-opsawg-pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html).
A file is one or more sections; each starts with a Section Header Block (SHB) whose byte-order
magic 0x1A2B3C4D sets the byte order of that section, and resets the interface list. Interface
Description Blocks (IDB) give each interface its link type, snaplen, `if_tsresol` (option 9: a
power of ten, or of two when the top bit is set; default 10^-6) and `if_tsoffset` (option 14:
seconds added to every timestamp). Packets arrive in Enhanced Packet Blocks (EPB, type 6),
Simple Packet Blocks (SPB, type 3: no timestamp and always interface 0) or obsolete Packet
Blocks (PB, type 2). Every packet block is one Wireshark frame; other blocks are not.

The walker stops at any block that is not a packet block (returning ST_BLOCK) so Python can
handle SHB/IDB (and skip ISB, NRB, DSB, custom blocks) and call it again.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from netdiag.capture.pcap import ST_END, ST_FULL, ST_INCOMPLETE, ST_TOO_BIG

SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 1
PB_TYPE, SPB_TYPE, EPB_TYPE = 2, 3, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_IF_TSRESOL, OPT_IF_TSOFFSET = 9, 14
MAX_BLOCK = 16 * 1024 * 1024 + 4096  # Wireshark's limit is about 16 MiB

ST_CORRUPT = ST_TOO_BIG
ST_BLOCK = 4  # a non-packet block starts at the returned position
ST_BAD_IFACE = 5  # a packet names an interface that was never described


@dataclass
class Interface:
    """One IDB: link type, snaplen, time units per second and offset."""

    link_type: int
    snaplen: int
    units_per_s: int = 1_000_000
    offset_s: int = 0
    bad_option: str | None = None


@dataclass
class Section:
    """State of the current section: its byte order and interfaces."""

    big_endian: bool
    interfaces: list[Interface] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-interface arrays for the kernels: link types, units/s, offset ns, snaplen."""
        ifs = self.interfaces or [Interface(-1, 0)]
        return (np.array([i.link_type for i in ifs], np.int64),
                np.array([i.units_per_s for i in ifs], np.uint64),
                np.array([i.offset_s * 1_000_000_000 for i in ifs], np.int64),
                np.array([i.snaplen for i in ifs], np.int64))


def parse_shb(block: bytes) -> tuple[bool, int] | None:
    """(big_endian, block_total_length) from the first 12 bytes of an SHB, None if not one."""
    if len(block) < 12 or block[:4] != b"\x0a\x0d\x0d\x0a":
        return None
    for big, fmt in ((False, "<"), (True, ">")):
        if struct.unpack(fmt + "I", block[8:12])[0] == BYTE_ORDER_MAGIC:
            return big, struct.unpack(fmt + "I", block[4:8])[0]
    return None


def parse_idb(block: bytes, big: bool) -> Interface:
    """An IDB (whole block bytes) into an Interface; unknown options are skipped."""
    fmt = ">" if big else "<"
    link_type, _reserved, snaplen = struct.unpack(fmt + "HHI", block[8:16])
    iface = Interface(link_type, snaplen)
    p, end = 16, len(block) - 4
    while p + 4 <= end:
        code, length = struct.unpack(fmt + "HH", block[p:p + 4])
        value = block[p + 4:p + 4 + length]
        if code == 0:
            break
        if code == OPT_IF_TSRESOL and length >= 1:
            r = value[0]
            units = (1 << (r & 0x7F)) if r & 0x80 else 10 ** r
            if units < 2**63:  # beyond that no 64-bit timestamp can be meant; keep the default
                iface.units_per_s = units
            else:
                iface.bad_option = f"if_tsresol 0x{r:02x} is out of range; microseconds assumed"
        elif code == OPT_IF_TSOFFSET and length >= 8:
            offset = struct.unpack(fmt + "q", value[:8])[0]
            if abs(offset) < 2**32:
                iface.offset_s = offset
            else:
                iface.bad_option = f"if_tsoffset {offset} s is out of range; ignored"
        p += 4 + ((length + 3) & ~3)
    return iface


@njit(cache=True, inline="always")
def _u32(b, p, big):
    if big:
        return (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])
    return (np.int64(b[p + 3]) << 24) | (np.int64(b[p + 2]) << 16) | (np.int64(b[p + 1]) << 8) | np.int64(b[p])


@njit(cache=True, inline="always")
def _u16(b, p, big):
    if big:
        return (np.int64(b[p]) << 8) | np.int64(b[p + 1])
    return (np.int64(b[p + 1]) << 8) | np.int64(b[p])


@njit(cache=True, inline="always")
def _ts_ns(hi, lo, units, offset_ns):
    # the same unsigned arithmetic as Wireshark's wiretap/pcapng.c (secs, then truncated fraction)
    ts = (np.uint64(hi) << np.uint64(32)) | np.uint64(lo)
    secs = ts // units
    frac = ts % units
    ns = (frac * np.uint64(1_000_000_000)) // units
    return np.int64(secs) * 1_000_000_000 + np.int64(ns) + offset_ns


@njit(cache=True)
def walk_pcapng(buf, pos, big, n_if, if_units, if_offset_ns, if_snaplen, max_n, last_ts,
                out_off, out_cap, out_len, out_ts, out_iface):
    """Find up to `max_n` packet blocks from `pos`.

    Returns (count, position, status, last timestamp); on ST_BLOCK/ST_CORRUPT/ST_BAD_IFACE the
    position is the start of the block concerned.
    """
    end = buf.shape[0]
    n = 0
    while n < max_n:
        if pos == end:
            return n, pos, ST_END, last_ts
        if pos + 12 > end:
            return n, pos, ST_INCOMPLETE, last_ts
        btype = _u32(buf, pos, big)
        if btype == SHB_TYPE:
            return n, pos, ST_BLOCK, last_ts
        blen = _u32(buf, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or blen > MAX_BLOCK:
            return n, pos, ST_CORRUPT, last_ts
        if pos + blen > end:
            return n, pos, ST_INCOMPLETE, last_ts
        if _u32(buf, pos + blen - 4, big) != blen:
            return n, pos, ST_CORRUPT, last_ts
        if btype == EPB_TYPE or btype == PB_TYPE:
            if blen < 32:
                return n, pos, ST_CORRUPT, last_ts
            if btype == EPB_TYPE:
                iface = _u32(buf, pos + 8, big)
            else:
                iface = _u16(buf, pos + 8, big)
            if iface >= n_if:
                return n, pos, ST_BAD_IFACE, last_ts
            cap = _u32(buf, pos + 20, big)
            if 28 + cap + 4 > blen:
                return n, pos, ST_CORRUPT, last_ts
            last_ts = _ts_ns(_u32(buf, pos + 12, big), _u32(buf, pos + 16, big), if_units[iface],
                             if_offset_ns[iface])
            out_off[n] = pos + 28
            out_cap[n] = cap
            out_len[n] = _u32(buf, pos + 24, big)
            out_iface[n] = iface
        elif btype == SPB_TYPE:
            if blen < 16:
                return n, pos, ST_CORRUPT, last_ts
            if n_if < 1:
                return n, pos, ST_BAD_IFACE, last_ts
            olen = _u32(buf, pos + 8, big)
            cap = min(olen, blen - 16)
            if if_snaplen[0] > 0:
                cap = min(cap, if_snaplen[0])
            out_off[n] = pos + 12
            out_cap[n] = cap
            out_len[n] = olen
            out_iface[n] = 0
        else:
            return n, pos, ST_BLOCK, last_ts
        out_ts[n] = last_ts  # an SPB has no timestamp: it keeps the previous packet's time
        pos += blen
        n += 1
    return n, pos, ST_FULL, last_ts


__all__ = ["ST_END", "ST_FULL", "ST_INCOMPLETE", "ST_CORRUPT", "ST_BLOCK", "ST_BAD_IFACE", "Interface",
           "Section", "parse_shb", "parse_idb", "walk_pcapng"]
