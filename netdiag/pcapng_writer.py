"""Writing pcapng files: one Section Header Block, one Interface Description Block per link
type, and Enhanced Packet Blocks with an optional per-frame comment.

Why: evidence excerpts and sanitised captures must keep every frame's original timestamp to
the nanosecond and carry a note on the frames that show a finding, which Wireshark shows as
`frame.comment` (tshark 4.0) / `pkt_comment`. Classic pcap cannot hold comments, so netdiag
writes pcapng.

Spec: IETF draft-ietf-opsawg-pcapng (the pcapng format): section 4.1 SHB, 4.2 IDB with the
`if_tsresol` option (code 9) set to 9 (timestamps in nanoseconds), 4.3 EPB, 3.5 options with
`opt_comment` (code 1, UTF-8). Blocks are written little-endian and padded to 32 bits.

Pure bytes building except `write_pcapng` and `PcapngStream`, which write blocks to a file.
`enhanced_packets` builds the EPBs of a whole chunk of frames in one numba kernel (no per-frame
Python), so `netdiag sanitize` writes multi-GB captures chunk by chunk at disk speed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numba import njit

# Block types (pcapng 4.1-4.3)
SHB_TYPE = 0x0A0D0D0A
IDB_TYPE = 0x00000001
EPB_TYPE = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
# Option codes (pcapng 3.5, 4.1, 4.2)
OPT_END = 0
OPT_COMMENT = 1
SHB_USERAPPL = 4
IF_TSRESOL = 9
TSRESOL_NS = 9  # 10^-9 s
DEFAULT_SNAPLEN = 262144


def _pad4(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _options(opts: Sequence[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    return b"".join(_option(c, v) for c, v in opts) + struct.pack("<HH", OPT_END, 0)


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def section_header(application: str = "netdiag") -> bytes:
    """SHB: byte-order magic, version 1.0, section length unknown (-1), shb_userappl."""
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
    return _block(SHB_TYPE, body + _options([(SHB_USERAPPL, application.encode())]))


def interface_description(link_type: int, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    """IDB for one link type with nanosecond timestamps (if_tsresol = 9)."""
    body = struct.pack("<HHI", link_type, 0, snaplen)
    return _block(IDB_TYPE, body + _options([(IF_TSRESOL, bytes([TSRESOL_NS]))]))


def enhanced_packet(interface_id: int, ts_ns: int, data: bytes, orig_len: int,
                    comment: str | None = None) -> bytes:
    """EPB: interface, 64-bit ns timestamp (high, low words), captured/original lengths, data."""
    body = struct.pack("<IIIII", interface_id, (ts_ns >> 32) & 0xFFFFFFFF, ts_ns & 0xFFFFFFFF,
                       len(data), max(orig_len, len(data)))
    body += _pad4(data)
    if comment:
        body += _options([(OPT_COMMENT, comment.encode("utf-8"))])
    return _block(EPB_TYPE, body)


@dataclass(frozen=True)
class OutFrame:
    """One frame to write: link type, timestamp (ns since the epoch), bytes, original length."""

    link_type: int
    ts_ns: int
    data: bytes
    orig_len: int
    comment: str | None = None


def pcapng_bytes(frames: Iterable[OutFrame], application: str = "netdiag") -> bytes:
    """The whole file as bytes (for small excerpts and tests)."""
    return b"".join(_blocks(frames, application))


def _blocks(frames: Iterable[OutFrame], application: str) -> Iterable[bytes]:
    yield section_header(application)
    interfaces: dict[int, int] = {}
    for f in frames:
        iface = interfaces.get(f.link_type)
        if iface is None:
            iface = interfaces[f.link_type] = len(interfaces)
            yield interface_description(f.link_type)
        yield enhanced_packet(iface, f.ts_ns, f.data, f.orig_len, f.comment)


def write_pcapng(path: str | Path | BinaryIO, frames: Iterable[OutFrame], application: str = "netdiag") -> int:
    """Write frames to `path` or an open binary file (IDBs emitted as link types first appear).

    Returns frames written. A path is written safely (netdiag.output.write_file: a new file
    beside it, renamed in; never through a symlink).
    """
    if not hasattr(path, "write"):
        from netdiag.output import write_file

        counted: list[int] = []
        write_file(path, lambda fh: counted.append(write_pcapng(fh, frames, application)))
        return counted[0]
    n = 0
    for i, block in enumerate(_blocks(frames, application)):
        path.write(block)
        if i and struct.unpack_from("<I", block)[0] == EPB_TYPE:
            n += 1
    return n


@njit(cache=True)
def _write_epbs(buf, offs, caps, ts_ns, orig_lens, iface, out):  # pragma: no cover - numba
    """EPBs (little-endian, no options) of frames buf[offs[i]:offs[i]+caps[i]] into `out`."""
    p = 0
    for i in range(len(offs)):
        cap = caps[i]
        total = 32 + cap + ((4 - cap % 4) % 4)
        orig = max(orig_lens[i], cap)
        ts = ts_ns[i]
        words = (EPB_TYPE, total, iface[i], (ts >> 32) & 0xFFFFFFFF, ts & 0xFFFFFFFF, cap, orig)
        for w in words:
            out[p] = w & 0xFF
            out[p + 1] = (w >> 8) & 0xFF
            out[p + 2] = (w >> 16) & 0xFF
            out[p + 3] = (w >> 24) & 0xFF
            p += 4
        o = offs[i]
        for k in range(cap):
            out[p + k] = buf[o + k]
        for k in range(cap, total - 32):
            out[p + k] = 0
        p += total - 32
        out[p] = total & 0xFF
        out[p + 1] = (total >> 8) & 0xFF
        out[p + 2] = (total >> 16) & 0xFF
        out[p + 3] = (total >> 24) & 0xFF
        p += 4
    return p


def enhanced_packets(buf: np.ndarray, offs: np.ndarray, caps: np.ndarray, ts_ns: np.ndarray,
                     orig_lens: np.ndarray, iface: np.ndarray) -> np.ndarray:
    """The EPBs of many frames as one uint8 array, byte for byte what `enhanced_packet` writes
    for each (no comments)."""
    caps = caps.astype(np.int64)
    size = int((32 + caps + (-caps % 4)).sum())
    out = np.empty(size, np.uint8)
    _write_epbs(buf, offs.astype(np.int64), caps, ts_ns.astype(np.int64), orig_lens.astype(np.int64),
                iface.astype(np.int64), out)
    return out


class PcapngStream:
    """Write a pcapng file chunk by chunk: IDBs appear just before the first frame of their link
    type, exactly where `write_pcapng` puts them, so the bytes equal a one-shot write."""

    def __init__(self, fh: BinaryIO, application: str = "netdiag") -> None:
        self.fh = fh
        self.interfaces: dict[int, int] = {}
        self.frames = 0
        fh.write(section_header(application))

    def write(self, buf: np.ndarray, offs: np.ndarray, caps: np.ndarray, ts_ns: np.ndarray, orig_lens: np.ndarray,
              link_types: np.ndarray) -> None:
        """Append frames buf[offs[i]:offs[i]+caps[i]] (in order) with their link types."""
        n = len(offs)
        if not n:
            return
        iface = np.empty(n, np.int64)
        start = 0
        kinds, first = np.unique(link_types, return_index=True)
        for lt in kinds.tolist():
            if int(lt) in self.interfaces:
                iface[link_types == lt] = self.interfaces[int(lt)]
        new = sorted((int(f), int(lt)) for lt, f in zip(kinds.tolist(), first.tolist(), strict=True)
                     if int(lt) not in self.interfaces)
        for f, lt in new:  # frames before a new link type's first frame, then its IDB
            self._epbs(buf, offs, caps, ts_ns, orig_lens, iface, start, f)
            self.interfaces[lt] = len(self.interfaces)
            self.fh.write(interface_description(lt))
            iface[link_types == lt] = self.interfaces[lt]
            start = f
        self._epbs(buf, offs, caps, ts_ns, orig_lens, iface, start, n)

    def _epbs(self, buf, offs, caps, ts_ns, orig_lens, iface, a: int, b: int) -> None:  # noqa: ANN001
        if b > a:
            self.fh.write(enhanced_packets(buf, offs[a:b], caps[a:b], ts_ns[a:b], orig_lens[a:b], iface[a:b]).data)
            self.frames += b - a


__all__ = ["OutFrame", "PcapngStream", "enhanced_packet", "enhanced_packets", "interface_description", "pcapng_bytes", "section_header",
           "write_pcapng"]
