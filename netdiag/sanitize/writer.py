"""The streaming writer: `sanitize_file`, two passes over a capture in chunks, pcapng out.

How: each file is read twice in chunks of raw records (netdiag.capture.raw.iter_raw_chunks), so
memory does not grow with the capture. Frame headers of the common shapes are walked, mapped,
zero-filled and checksummed by numba kernels over the whole chunk (netdiag.sanitize.kernels);
rarer shapes (ARP, ICMP, options, fragments, extension headers, tunnels, cut headers) go through
the Python walker (netdiag.sanitize.frames). Pass 1 feeds every TCP segment that can change
anything to the stream sanitiser (netdiag.sanitize.streams), which keeps only the bytes the
protocol keepers keep, and notes per payload frame where it sits in its stream (spooled to a
temporary file); pass 2 lays the kept runs over the zero-filled payloads, sanitises DNS over UDP
per datagram, recomputes checksums and appends the chunk to the pcapng output (written beside
the target and renamed in when complete, netdiag.output). Memory holds one chunk, the unfinished
message of each open TCP direction (up to 64 KiB while its protocol is not yet known), 24 bytes
of index a kept run and a small record per 4-tuple (docs/sanitize.md, Limits).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from netdiag.capture.raw import RawChunk, iter_raw_chunks
from netdiag.capture.tcp_flags import TH_SYN, TH_SYN_ACK, TH_SYN_FIN_RST
from netdiag.protocols.dns import parser as dns_parser
from netdiag.sanitize.addresses import AddressMapper
from netdiag.sanitize.frames import _L4, _pseudo_sum, _sanitize_frame, _warn_undecoded, internet_checksum
from netdiag.sanitize.keepers.dns import dns_keep
from netdiag.sanitize.kernels import (
    CLS_SLOW,
    CLS_TCP,
    CLS_UDP,
    F_CLS,
    F_DPORT,
    F_DST,
    F_FLAGS,
    F_PE,
    F_PS,
    F_SEQ,
    F_SPORT,
    F_SRC,
    F_VER,
    F_VERIF,
    N_FIELDS,
    _classify,
    _fields_at,
    _l4_checksums,
    _map_fast_headers,
    _zero_payloads,
)
from netdiag.sanitize.policy import IP_PROTO_GRE, IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, SanitizeStats
from netdiag.sanitize.redact import redact_text
from netdiag.sanitize.streams import RunTable, StreamSanitizer, _Conn

CHUNK_FRAMES = 65_536


def sanitized_name(path: str | Path) -> str:
    """Output file name for an input capture: <stem>.sanitized.pcapng (.gz dropped)."""
    name = Path(path).name
    for suffix in (".gz", ".pcapng", ".pcap", ".cap"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return f"{name}.sanitized.pcapng"


def _classified(c: RawChunk) -> np.ndarray:
    f = np.zeros((len(c.fo), N_FIELDS), np.int64)
    _classify(c.buf, c.fo, c.cap, c.link, f)
    return f


def _tcp_columns(c: RawChunk, f: np.ndarray, slow_l4s: list[_L4]) -> dict[str, np.ndarray]:
    """The chunk's TCP segments as columns, in frame order: row, address width, mapped source and
    destination address (n x 16 bytes, the fast frames' are mapped in c.buf already), ports,
    sequence number, flags, payload start and end in c.buf. No Python object per segment."""
    rows = np.flatnonzero(f[:, F_CLS] == CLS_TCP)
    g = f[rows]
    width = np.where(g[:, F_VER] == 4, 4, 16)
    src = np.zeros((len(rows), 16), np.uint8)
    dst = np.zeros((len(rows), 16), np.uint8)
    for w in (4, 16):
        sel = width == w
        if sel.any():
            src[sel, :w] = _fields_at(c.buf, g[sel, F_SRC], w)
            dst[sel, :w] = _fields_at(c.buf, g[sel, F_DST], w)
    cols = {"row": rows, "width": width, "src": src, "dst": dst, "sport": g[:, F_SPORT], "dport": g[:, F_DPORT],
            "seq": g[:, F_SEQ], "flags": g[:, F_FLAGS], "ps": g[:, F_PS], "pe": g[:, F_PE]}
    slow = [x for x in slow_l4s if x.proto == IP_PROTO_TCP]
    if slow:
        n = len(slow)
        extra = {"row": np.array([x.row for x in slow], np.int64),
                 "width": np.array([len(x.src) for x in slow], np.int64),
                 "src": np.zeros((n, 16), np.uint8), "dst": np.zeros((n, 16), np.uint8),
                 "sport": np.array([x.sport for x in slow], np.int64),
                 "dport": np.array([x.dport for x in slow], np.int64),
                 "seq": np.array([x.seq for x in slow], np.int64),
                 "flags": np.array([x.flags for x in slow], np.int64)}
        base = c.fo[extra["row"]]
        extra["ps"] = base + np.array([x.pay_start for x in slow], np.int64)
        extra["pe"] = base + np.array([x.pay_end for x in slow], np.int64)
        for k, x in enumerate(slow):
            extra["src"][k, :len(x.src)] = np.frombuffer(x.src, np.uint8)
            extra["dst"][k, :len(x.dst)] = np.frombuffer(x.dst, np.uint8)
        order = np.argsort(np.concatenate([cols["row"], extra["row"]]), kind="stable")
        cols = {k: np.concatenate([v, extra[k]])[order] for k, v in cols.items()}
    return cols


def _endpoint(addr: np.ndarray, port: np.ndarray) -> np.ndarray:
    """(n x 18) address (zero-padded to 16) then port, big-endian: byte order sorts endpoints as
    Python sorts (address bytes, port) tuples of one address width."""
    out = np.empty((len(addr), 18), np.uint8)
    out[:, :16] = addr
    out[:, 16] = port >> 8
    out[:, 17] = port & 0xFF
    return out


def _pass1_chunk(c: RawChunk, f: np.ndarray, mapper: AddressMapper, streams: StreamSanitizer, frags: dict
                 ) -> np.ndarray:
    """Feed a chunk's TCP segments to the stream sanitiser; returns its overlay records
    (row, direction id, stream offset, payload start within the frame, length)."""
    scratch = SanitizeStats()
    _map_fast_headers(c.buf, f, mapper, scratch)
    slow_l4s: list[_L4] = []
    for i in np.flatnonzero(f[:, F_CLS] == CLS_SLOW).tolist():
        o = int(c.fo[i])
        frame = bytearray(c.buf[o:o + int(c.cap[i])].tobytes())
        _sanitize_frame(i, frame, int(c.link[i]), mapper, scratch, slow_l4s, [], frags, [])
    t = _tcp_columns(c, f, slow_l4s)
    if not len(t["row"]):
        return np.empty((0, 5), np.int64)
    # segments that cannot change anything are skipped without Python per segment: all of a
    # connection whose bytes are dropped (no new SYN), and pure ACKs after a connection's first segment
    keep, keys, conn, side = _worth_feeding(t, streams)
    records = []
    buf, ts, fo = c.buf, c.ts_ns, c.fo
    streams.sweep()
    rows, sport, dport, seq, flags, ps, pe = (t[k].tolist() for k in ("row", "sport", "dport", "seq", "flags", "ps", "pe"))
    conn, side = conn.tolist(), side.tolist()
    for k in keep.tolist():
        row, a, e = rows[k], ps[k], pe[k]
        sid, off = streams.segment(keys[conn[k]], side[k], (sport[k], dport[k]), seq[k], flags[k],
                                   buf[a:e].tobytes() if e > a else b"", int(ts[row]))
        if sid >= 0:
            records.append((row, sid, off, a - int(fo[row]), e - a))
    return np.array(records, np.int64).reshape(-1, 5)


def _worth_feeding(t: dict[str, np.ndarray], streams: StreamSanitizer) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
    """Indexes of the segments `StreamSanitizer.segment` must see (the rest are no-ops there),
    each segment's connection (index into the returned 4-tuple keys, as `segment` takes them)
    and side (0: it goes from the lower endpoint to the higher)."""
    flags = t["flags"]
    busy = (t["pe"] > t["ps"]) | ((flags & TH_SYN_FIN_RST) != 0)
    syn_only = (flags & TH_SYN_ACK) == TH_SYN
    src, dst = _endpoint(t["src"], t["sport"]), _endpoint(t["dst"], t["dport"])
    differ = src != dst
    first = differ.argmax(axis=1)
    at = np.arange(len(first))
    side = (differ.any(axis=1) & (src[at, first] > dst[at, first])).astype(np.int64)
    lo = np.where(side[:, None] == 0, src, dst)
    hi = np.where(side[:, None] == 0, dst, src)
    both = np.ascontiguousarray(np.concatenate([t["width"][:, None].astype(np.uint8), lo, hi], axis=1))
    _, first_seg, conn = np.unique(both.view(np.dtype((np.void, both.shape[1]))).reshape(-1),
                                   return_index=True, return_inverse=True)
    conn = conn.reshape(-1)
    keep = busy.copy()
    keys = []
    any_syn = np.zeros(len(first_seg), np.bool_)
    any_syn[conn[syn_only]] = True
    dropped = np.zeros(len(first_seg), np.bool_)
    for u, k in enumerate(first_seg.tolist()):
        w = int(t["width"][k])
        a = (lo[k, :w].tobytes(), int(lo[k, 16]) << 8 | int(lo[k, 17]))
        b = (hi[k, :w].tobytes(), int(hi[k, 16]) << 8 | int(hi[k, 17]))
        key = (a, b)
        keys.append(key)
        track = streams.tracks.get(key)
        if track is None:
            keep[k] = True  # the first segment of a connection makes its record (which side came first)
        elif track[2].state == _Conn.NONE and not any_syn[u]:
            dropped[u] = True
    return np.flatnonzero(keep & ~dropped[conn]), keys, conn, side


def _pass2_chunk(c: RawChunk, f: np.ndarray, records: np.ndarray, mapper: AddressMapper, stats: SanitizeStats,
                 table: RunTable, frags: dict) -> None:
    """Sanitise a chunk in place: headers, payload overlay, DNS over UDP, checksums."""
    stats.frame_base = stats.frames
    buf, fo = c.buf, c.fo
    dns_ports = dns_parser.PORTS
    # DNS over UDP (per message, from the original bytes, before payloads are zeroed)
    dns_fix: list[tuple[int, bytes]] = []
    udp = np.flatnonzero((f[:, F_CLS] == CLS_UDP) & (f[:, F_PE] > f[:, F_PS]))
    if len(udp):
        ports = np.array(sorted(dns_ports), np.int64)
        udp = udp[np.isin(f[udp, F_SPORT], ports) | np.isin(f[udp, F_DPORT], ports)]
        for i in udp.tolist():
            msg = buf[f[i, F_PS]:f[i, F_PE]].tobytes()
            view = bytearray(len(msg))
            dns_keep(msg, view, mapper)
            stats.cpr_redacted += redact_text(view, mapper)
            dns_fix.append((int(f[i, F_PS]), bytes(view)))
    fast = f[:, F_CLS] != CLS_SLOW
    stats.frames += int(fast.sum())
    _map_fast_headers(buf, f, mapper, stats)
    _zero_payloads(buf, fo, c.cap, f)
    for at, view in dns_fix:
        buf[at:at + len(view)] = np.frombuffer(view, np.uint8)
    # the Python walker for every other frame shape (ARP, ICMP, options, fragments, VLAN oddities)
    slow_l4s: list[_L4] = []
    cks: list = []
    frag_firsts: list = []
    for i in np.flatnonzero(~fast).tolist():
        o, n = int(fo[i]), int(c.cap[i])
        original = buf[o:o + n].tobytes()
        frame = bytearray(original)
        before = len(slow_l4s)
        _sanitize_frame(i, frame, int(c.link[i]), mapper, stats, slow_l4s, cks, {}, frag_firsts)
        for x in slow_l4s[before:]:
            if x.proto == IP_PROTO_UDP and (x.sport in dns_ports or x.dport in dns_ports) and x.pay_end > x.pay_start:
                msg = original[x.pay_start:x.pay_end]
                view = bytearray(len(msg))
                dns_keep(msg, view, mapper)
                stats.cpr_redacted += redact_text(view, mapper)
                frame[x.pay_start:x.pay_end] = view
        buf[o:o + n] = np.frombuffer(bytes(frame), np.uint8)
    # kept bytes of the TCP streams
    if len(records):
        row, sid, off, ps, n = records.T
        table.overlay(buf, fo[row] + ps, sid, off, n)
    stats.checksums_fixed += int(_l4_checksums(buf, f))
    stats.unverifiable += int((fast & (f[:, F_VERIF] == 0)).sum())
    for row, l4, hl, proto, ck_off, src, dst, key, before_l4 in frag_firsts:
        end, complete = frags.get(key, (0, False))
        if not complete:
            stats.unverifiable += 1
            continue
        o = int(fo[row])
        frame = bytearray(buf[o:o + int(c.cap[row])].tobytes())
        frame[ck_off:ck_off + 2] = b"\x00\x00"
        ck = internet_checksum(frame[l4:l4 + hl], _pseudo_sum(src, dst, proto, end - before_l4))
        if proto == IP_PROTO_UDP and ck == 0:
            ck = 0xFFFF
        buf[o + ck_off:o + ck_off + 2] = np.frombuffer(ck.to_bytes(2, "big"), np.uint8)
        stats.checksums_fixed += 1
    for row, l4, l4end, proto, ck_off, src, dst, wire_len in cks:
        o = int(fo[row])
        frame = bytearray(buf[o:o + int(c.cap[row])].tobytes())
        frame[ck_off:ck_off + 2] = b"\x00\x00"
        if proto in (IP_PROTO_ICMP, IP_PROTO_GRE):
            ck = internet_checksum(frame[l4:l4end])
        else:
            ck = internet_checksum(frame[l4:l4end], _pseudo_sum(src, dst, proto, wire_len))
            if proto == IP_PROTO_UDP and ck == 0:
                ck = 0xFFFF
        buf[o + ck_off:o + ck_off + 2] = np.frombuffer(ck.to_bytes(2, "big"), np.uint8)
        stats.checksums_fixed += 1


def sanitize_file(path: str | Path, out_path: str | Path, mapper: AddressMapper, *,
                  chunk_frames: int = CHUNK_FRAMES) -> SanitizeStats:
    """Sanitise one capture into pcapng (ns timestamps, original lengths), chunk by chunk.

    Two passes over the file (see the module docstring): memory holds one chunk, the
    unfinished message of each open TCP direction and the kept metadata bytes, never the capture.
    """
    import tempfile

    from netdiag.output import StagedFile
    from netdiag.pcapng_writer import PcapngStream

    path = str(path)
    out_path = Path(out_path)
    stats = SanitizeStats()
    frags: dict = {}
    # The output is written into a private staging directory beside out_path (O_EXCL|O_NOFOLLOW)
    # and renamed in when complete: never through a symlink, never a half-written file.
    staged = StagedFile(out_path)
    with staged, tempfile.TemporaryFile(dir=staged.dir, prefix=".netdiag-sanitize-") as spool, \
            tempfile.TemporaryFile(dir=staged.dir, prefix=".netdiag-sanitize-runs-") as kept:
        streams = StreamSanitizer(mapper, stats, kept)
        chunks = 0
        for c in iter_raw_chunks(path, stats.warnings.append, chunk_frames):
            f = _classified(c)
            np.save(spool, _pass1_chunk(c, f, mapper, streams, frags))
            chunks += 1
        streams.finish_all()
        spool.seek(0)
        kept.flush()

        size = kept.seek(0, os.SEEK_END)
        spooled = np.memmap(kept, np.uint8, "r", shape=(size,)) if size else np.empty(0, np.uint8)
        table = RunTable(streams.runs, np.asarray(spooled))
        streams.runs = {}
        with staged.open() as fh:
            out = PcapngStream(fh, application="netdiag sanitize")
            for c in iter_raw_chunks(path, lambda _w: None, chunk_frames):
                records = np.load(spool) if chunks else np.empty((0, 5), np.int64)
                chunks -= 1
                f = _classified(c)
                _pass2_chunk(c, f, records, mapper, stats, table, frags)
                out.write(c.buf, c.fo, c.cap, c.ts_ns, c.orig_len, c.link)
        del table, spooled  # the mapping of the kept bytes goes before their file
    staged.commit()
    _warn_undecoded(path, stats)
    return stats
