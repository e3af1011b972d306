"""Writing pcapng files: one Section Header Block, one Interface Description Block per link
type, and Enhanced Packet Blocks with an optional per-frame comment.

Why: evidence excerpts and sanitised captures must keep every frame's original timestamp to
the nanosecond and carry a note on the frames that show a finding, which Wireshark shows as
`frame.comment` (tshark 4.0) / `pkt_comment`. Classic pcap cannot hold comments, so netdiag
writes pcapng.

Spec: IETF draft-ietf-opsawg-pcapng (the pcapng format): section 4.1 SHB, 4.2 IDB with the
`if_tsresol` option (code 9) set to 9 (timestamps in nanoseconds), 4.3 EPB, 3.5 options with
`opt_comment` (code 1, UTF-8). Blocks are written little-endian and padded to 32 bits.

Pure bytes building except `write_pcapng`, which streams blocks to a file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

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


def write_pcapng(path: str | Path, frames: Iterable[OutFrame], application: str = "netdiag") -> int:
    """Write frames to `path` (IDBs emitted as link types first appear); returns frames written."""
    n = 0
    with open(path, "wb") as fh:
        for i, block in enumerate(_blocks(frames, application)):
            fh.write(block)
            if i and struct.unpack_from("<I", block)[0] == EPB_TYPE:
                n += 1
    return n


__all__ = ["OutFrame", "enhanced_packet", "interface_description", "pcapng_bytes", "section_header",
           "write_pcapng"]
