"""The whole-file reference sanitiser: every frame through the Python walker, whole streams.

`sanitize_frames` sanitises a list of frames at once (netdiag evidence --sanitize uses it for
excerpts): headers by the walker (netdiag.sanitize.frames), then each TCP connection's two
directions reassembled whole (`_stream_of`: by sequence number, first copy wins) and given to the
registered keeper (`sanitize_stream_pair`), DNS over UDP per datagram, checksums last.
`sanitize_file_in_memory` is the first implementation of `netdiag sanitize`, kept as the
reference the streaming writer (netdiag.sanitize.writer) is tested against: equal output bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netdiag.capture.tcp_flags import TH_SYN, TH_SYN_ACK
from netdiag.protocols.dns import parser as dns_parser
from netdiag.sanitize.addresses import AddressMapper
from netdiag.sanitize.frames import _L4, _pseudo_sum, _sanitize_frame, _warn_undecoded, internet_checksum
from netdiag.sanitize.keepers.dns import dns_keep
from netdiag.sanitize.keepers.giop import rewrite_iiop_profile
from netdiag.sanitize.policy import IP_PROTO_GRE, IP_PROTO_ICMP, IP_PROTO_UDP, MAX_STREAM_BYTES, SanitizeStats
from netdiag.sanitize.redact import redact_text
from netdiag.sanitize.registry import Keeper, by_port, resyncing, sniffing


def choose_keeper(streams: tuple[bytes, bytes], server_port: int) -> Keeper | None:
    """The keeper for a connection whose whole directions are known: by server port (DNS), else
    the first registered protocol whose parser recognises the first 256 bytes of either
    direction, else one that resynchronises on a marker in the first 64 KiB; None: all zero."""
    k = by_port(server_port)
    if k is not None:
        return k
    for k in sniffing():
        if any(s and k.parser.looks_like(s[:256]) for s in streams):
            return k
    for k in resyncing():
        if any(k.resync(s[:65536]) for s in streams):
            return k  # joined mid-message: the parser resynchronises on its marker
    return None


def sanitize_stream_pair(streams: tuple[bytes, bytes], server_port: int, mapper: AddressMapper,
                         stats: SanitizeStats | None = None) -> tuple[bytearray, bytearray]:
    """Both directions of one TCP connection (0 = client to server) -> sanitised copies."""
    outs = (bytearray(len(streams[0])), bytearray(len(streams[1])))
    k = choose_keeper(streams, server_port)
    if k is None:
        return outs
    mod = k.parser
    ctx = k.new_context()
    state = k.new_state()
    for d in (0, 1):
        data, out = streams[d], outs[d]
        pos = 0
        steps = 0
        profiles: list[tuple[int, int]] = []
        while pos < len(data) and steps <= len(data):
            steps += 1
            c = mod.cut(data, pos, at_end=True, context=ctx, direction=d)
            if c.status == "need_more" or c.length <= 0:
                break
            msg = data[pos:pos + c.length]
            if c.status == "malformed" and not k.framed(msg):
                pass  # bytes skipped to resynchronise: nothing in them is known to be metadata
            else:  # a message, or a malformed one that starts like one (e.g. cut by the capture end)
                view = bytearray(len(msg))
                try:
                    profiles += [(pos + a, n) for a, n, _ in k.keep(msg, view, ctx, state, d, mapper)]
                except Exception:  # noqa: BLE001 - a keeper bug must not leak bytes or stop the run
                    view = bytearray(len(msg))  # the safe default: nothing of this message kept
                    if stats is not None:
                        stats.keeper_errors += 1
                out[pos:pos + c.length] = view[:len(msg)]
            pos += c.length
        cprs = redact_text(out, mapper)
        for a, n in profiles:  # after the text pass: the mapped host must not be mapped twice
            body = rewrite_iiop_profile(data[a:a + n], out[a:a + n], mapper)
            if body is not None:
                out[a:a + n] = body
        if stats is not None:
            stats.cpr_redacted += cprs
    return outs


def sanitize_frames(link_types: np.ndarray, datas: list[bytes], mapper: AddressMapper,
                    stats: SanitizeStats | None = None) -> list[bytes]:
    """Sanitise frames (in file order); returns new frame bytes of the same lengths."""
    stats = stats if stats is not None else SanitizeStats()
    outs = [bytearray(d) for d in datas]
    l4s: list[_L4] = []
    cks: list[tuple[int, int, int, int, int, bytes, bytes, int]] = []  # row, l4, l4end, proto, ck_off, src, dst, wire_len
    frags: dict[tuple, list] = {}
    frag_firsts: list[tuple] = []
    for i, (link, frame) in enumerate(zip(link_types.tolist(), outs, strict=True)):
        _sanitize_frame(i, frame, int(link), mapper, stats, l4s, cks, frags, frag_firsts)
    _fill_payloads(outs, datas, l4s, mapper, stats)
    for row, l4, hl, proto, ck_off, src, dst, key, before_l4 in frag_firsts:
        end, complete = frags[key]
        if not complete:
            stats.unverifiable += 1
            continue
        frame = outs[row]
        frame[ck_off:ck_off + 2] = b"\x00\x00"
        ck = internet_checksum(frame[l4:l4 + hl], _pseudo_sum(src, dst, proto, end - before_l4))
        if proto == IP_PROTO_UDP and ck == 0:
            ck = 0xFFFF
        frame[ck_off:ck_off + 2] = ck.to_bytes(2, "big")  # the rest of the datagram is all zero
        stats.checksums_fixed += 1
    for row, l4, l4end, proto, ck_off, src, dst, wire_len in cks:
        frame = outs[row]
        frame[ck_off:ck_off + 2] = b"\x00\x00"
        if proto in (IP_PROTO_ICMP, IP_PROTO_GRE):
            ck = internet_checksum(frame[l4:l4end])
        else:
            ck = internet_checksum(frame[l4:l4end], _pseudo_sum(src, dst, proto, wire_len))
            if proto == IP_PROTO_UDP and ck == 0:
                ck = 0xFFFF
        frame[ck_off:ck_off + 2] = ck.to_bytes(2, "big")
        stats.checksums_fixed += 1
    return [bytes(o) for o in outs]



def _fill_payloads(outs: list[bytearray], originals: list[bytes], l4s: list[_L4], mapper: AddressMapper,
                   stats: SanitizeStats) -> None:
    """Put the sanitised payload bytes back into each TCP/UDP frame."""
    dns_ports = dns_parser.PORTS
    flows: dict[tuple, list[_L4]] = {}
    gens: dict[tuple, list[int]] = {}
    for x in l4s:
        if x.proto == IP_PROTO_UDP:
            if (x.sport in dns_ports or x.dport in dns_ports) and x.pay_end > x.pay_start:
                msg = originals[x.row][x.pay_start:x.pay_end]
                view = bytearray(len(msg))
                dns_keep(msg, view, mapper)
                stats.cpr_redacted += redact_text(view, mapper)
                outs[x.row][x.pay_start:x.pay_end] = view
            continue
        flows.setdefault((x.src, x.sport, x.dst, x.dport, _generation(gens, x)), []).append(x)
    done: set[tuple] = set()
    for key, segs in flows.items():
        if key in done:
            continue
        rkey = (key[2], key[3], key[0], key[1], key[4])
        other = flows.get(rkey, [])
        done.add(key)
        done.add(rkey)
        # the client sent the SYN (no ACK); without one, the higher (ephemeral) port is the client
        c_key, c_segs, s_segs = key, segs, other
        if any(s.flags & TH_SYN_ACK == TH_SYN_ACK for s in segs) or (
                not any(s.flags & TH_SYN_ACK == TH_SYN for s in segs) and not any(s.flags & TH_SYN_ACK == TH_SYN_ACK for s in other)
                and key[1] < key[3]):
            c_key, c_segs, s_segs = rkey, other, segs
        placed = []
        streams = []
        for segs_d in (c_segs, s_segs):
            data, where = _stream_of(originals, segs_d)
            streams.append(data)
            placed.append(where)
        if not streams[0] and not streams[1]:
            continue
        stats.streams += 1
        clean = sanitize_stream_pair((streams[0], streams[1]), c_key[3], mapper, stats)
        for d in (0, 1):
            for s, off in placed[d]:
                n = s.pay_end - s.pay_start
                outs[s.row][s.pay_start:s.pay_end] = clean[d][off:off + n]


def _generation(gens: dict[tuple, list[int]], x: _L4) -> int:
    """Which use of a 4-tuple this segment belongs to: a SYN (no ACK) with a new sequence number
    starts the next connection on the same ports (ephemeral ports are reused in long captures)."""
    a, b = (x.src, x.sport), (x.dst, x.dport)
    key = (a, b) if a <= b else (b, a)
    state = gens.get(key)  # [generation, ISN of its SYN (-1: none yet)]
    if state is None:
        state = gens[key] = [0, -1]
    if x.flags & TH_SYN_ACK == TH_SYN:
        if state[1] == -1:
            state[1] = x.seq
        elif x.seq != state[1]:
            state[0] += 1
            state[1] = x.seq
    return state[0]


def _stream_of(originals: list[bytes], segs: list[_L4]) -> tuple[bytes, list[tuple[_L4, int]]]:
    """Reassemble one direction from the original frames: (stream bytes, [(segment, offset)])."""
    if not segs:
        return b"", []
    syn = next((s for s in segs if s.flags & TH_SYN), None)
    data_segs = [s for s in segs if s.pay_end > s.pay_start]
    if not data_segs:
        return b"", []
    if syn is not None:
        base = (syn.seq + 1) & 0xFFFFFFFF
    else:
        first = data_segs[0].seq
        base = (min(((s.seq - first + (1 << 31)) & 0xFFFFFFFF) - (1 << 31) for s in data_segs) + first) & 0xFFFFFFFF
    placed: list[tuple[_L4, int]] = []
    end = 0
    for s in data_segs:
        off = (s.seq - base) & 0xFFFFFFFF
        if off >= (1 << 31) or off + (s.pay_end - s.pay_start) > MAX_STREAM_BYTES:
            continue  # before the SYN or beyond the bound: stays zero
        placed.append((s, off))
        end = max(end, off + s.pay_end - s.pay_start)
    buf = np.zeros(end, np.uint8)
    filled = np.zeros(end, np.bool_)
    for s, off in placed:
        n = s.pay_end - s.pay_start
        piece = np.frombuffer(originals[s.row], np.uint8, n, s.pay_start)
        hole = ~filled[off:off + n]
        buf[off:off + n][hole] = piece[hole]   # first copy wins
        filled[off:off + n] = True
    return buf.tobytes(), placed



def sanitize_file_in_memory(path: str | Path, out_path: str | Path, mapper: AddressMapper) -> SanitizeStats:
    """The first implementation, kept as the reference the streaming `sanitize_file` is tested
    against: read one capture whole, sanitise every frame in Python, write pcapng."""
    from netdiag.capture.raw import read_raw_frames
    from netdiag.pcapng_writer import OutFrame, write_pcapng

    raw = read_raw_frames([path])
    stats = SanitizeStats(warnings=list(raw.warnings))
    clean = sanitize_frames(raw.link_type, raw.datas, mapper, stats)
    write_pcapng(out_path, (OutFrame(int(lt), int(ts), d, int(ol)) for lt, ts, d, ol in
                            zip(raw.link_type.tolist(), raw.ts_ns.tolist(), clean, raw.orig_len.tolist(),
                                strict=True)), application="netdiag sanitize")
    _warn_undecoded(str(path), stats)
    return stats
