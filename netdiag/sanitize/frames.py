"""The Python frame walker: every frame shape's headers sanitised in place, payloads noted.

Addresses and MACs of every layer are mapped (netdiag.sanitize.addresses), IPv4 options become
NOPs, IPv6 option data and AH ICVs are zeroed, ARP and ICMPv6 neighbour discovery have their
addresses mapped, ICMP bodies (which quote the original packet) are zeroed, and TCP/UDP payloads
are zeroed and noted (`_L4`) for the payload pass; checksums to recompute are noted too.

Tunnels are followed with the reader's own walkers (decode._link_layer / decode._tunnel), so
sanitize follows exactly the encapsulations netdiag decodes; one it names but does not decode is
zero-filled after the last understood header and counted (`SanitizeStats.undecoded`).

The streaming writer runs this walker only on the rare shapes its numba kernels leave out
(netdiag.sanitize.kernels); the whole-file reference (netdiag.sanitize.memory) runs it on every
frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from netdiag.capture.decode import MAX_TUNNEL_DEPTH, UD_NONE, UD_TOO_DEEP, _link_layer, _tunnel
from netdiag.sanitize.addresses import AddressMapper
from netdiag.sanitize.policy import (
    ETH_ARP,
    IP_PROTO_AH,
    IP_PROTO_GRE,
    IP_PROTO_ICMP,
    IP_PROTO_ICMPV6,
    IP_PROTO_TCP,
    IP_PROTO_UDP,
    IPV6_EXT_HEADERS,
    LINK_ETHERNET,
    LINK_SLL,
    LINK_SLL2,
    TCP_FLAG_BITS,
    SanitizeStats,
)


# ------------------------------------------------------------------------------------------
# Checksums (RFC 1071)
# ------------------------------------------------------------------------------------------
def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """16-bit one's-complement checksum of `data` (padded to even length)."""
    b = bytes(data)
    if len(b) % 2:
        b += b"\x00"
    total = int(np.frombuffer(b, dtype=">u2").sum(dtype=np.uint64)) + initial
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def _pseudo_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    if len(src) == 4:
        ph = src + dst + struct.pack("!BBH", 0, proto, length)
    else:
        ph = src + dst + struct.pack("!IxxxB", length, proto)
    return int(np.frombuffer(ph, dtype=">u2").sum(dtype=np.uint64))



@dataclass
class _L4:
    """Where one frame's TCP/UDP payload lies (offsets into the frame) and its flow."""

    row: int
    proto: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    flags: int
    pay_start: int
    pay_end: int  # captured end (exclusive)



def _sanitize_frame(i: int, frame: bytearray, link: int, mapper: AddressMapper, stats: SanitizeStats,
                    l4s: list[_L4], cks: list, frags: dict, frag_firsts: list) -> None:
    """Headers of one frame sanitised in place (payload zeroed; TCP/UDP noted in `l4s` for the
    payload pass, checksums to compute in `cks`): the Python walker for every frame shape."""
    stats.frames += 1
    arr = np.frombuffer(bytes(frame), np.uint8)
    _map_link(frame, link, mapper, stats)
    _sanitize_l2(i, frame, arr, 0, link, mapper, stats, l4s, cks, frags, frag_firsts, 0)


def _note_undecoded(stats: SanitizeStats, i: int, why: int, detail: int) -> None:
    """Count a frame whose encapsulation is not decoded (one warning per kind names the first)."""
    key = (int(why), int(detail))
    got = stats.undecoded.get(key)
    if got is None:
        stats.undecoded[key] = [1, stats.frame_base + i + 1]
    else:
        got[0] += 1


def _sanitize_l2(i: int, frame: bytearray, arr: np.ndarray, off: int, link: int, mapper: AddressMapper,
                 stats: SanitizeStats, l4s: list[_L4], cks: list, frags: dict, frag_firsts: list,
                 depth: int) -> None:
    """The packet at frame[off:] with link type `link` (the outer link, or a tunnel's inner link as
    decode._tunnel names it): the offsets come from the reader's own walkers (decode._link_layer,
    decode._tunnel), so sanitize follows exactly the encapsulations netdiag decodes. `arr` holds
    the original bytes (the fields those walkers read are never changed by sanitising)."""
    n = len(frame)
    try:
        l3, kind, _vlan, why, detail = _link_layer(arr, off, n, link)
        while kind == 1:  # a pseudowire's Ethernet frame (MPLS control word + Ethernet)
            frame[l3:l3 + 6] = mapper.mac(bytes(frame[l3:l3 + 6]))
            frame[l3 + 6:l3 + 12] = mapper.mac(bytes(frame[l3 + 6:l3 + 12]))
            stats.macs += 2
            l3, kind, _vlan, why, detail = _link_layer(arr, l3, n, 1)
    except Exception:  # noqa: BLE001 - a frame the link decoder cannot read is blanked
        l3, kind, why, detail = off, 0, UD_NONE, 0
    if kind == 0:
        if why != UD_NONE:
            _note_undecoded(stats, i, why, detail)
        etype = int.from_bytes(frame[l3 - 2:l3], "big") if link == LINK_ETHERNET and l3 >= off + 14 else 0
        if etype == ETH_ARP and n >= l3 + 28 and frame[l3:l3 + 6] == b"\x00\x01\x08\x00\x06\x04":
            for o, size in ((8, 6), (14, 4), (18, 6), (24, 4)):
                a = l3 + o
                frame[a:a + size] = mapper.mac(bytes(frame[a:a + 6])) if size == 6 else mapper.ip(bytes(frame[a:a + 4]))
            frame[l3 + 28:] = bytes(n - l3 - 28)
        else:
            start = l3 if l3 > 0 else (0 if link not in (LINK_ETHERNET, LINK_SLL, LINK_SLL2) else n)
            frame[start:] = bytes(n - start)
        return
    try:
        _ip_frame(i, frame, l3, kind, mapper, stats, l4s, cks, frags, frag_firsts, arr, depth)
    except (IndexError, ValueError, struct.error):  # a header too odd to walk: keep nothing of it
        frame[l3:] = bytes(n - l3)
        stats.frames_blanked += 1


def _encapsulated(i: int, frame: bytearray, arr: np.ndarray, l3: int, l4: int, proto: int, wire_end: int,
                  src: bytes, dst: bytes, verifiable: bool, mapper: AddressMapper, stats: SanitizeStats,
                  l4s: list[_L4], cks: list, frags: dict, frag_firsts: list, depth: int) -> bool:
    """If the IP packet at l3 carries a tunnel (decode._tunnel decides, as the reader does), sanitise
    the inner packet and the tunnel header's checksum; returns False when it carries none.

    GRE headers (key, sequence), ERSPAN headers and the VXLAN header (VNI) hold no host address and
    stay. An encapsulation decode._tunnel names but does not decode is counted (`undecoded`) and
    everything after the outer IP header's understood part (the GRE header) is zeroed."""
    if proto not in (4, 41, IP_PROTO_GRE, IP_PROTO_UDP):
        return False
    n = len(frame)
    q, inner, why, detail = _tunnel(arr, l3, n, n)
    if inner >= 0 and depth >= MAX_TUNNEL_DEPTH:  # the reader stops here too (UD_TOO_DEEP)
        inner, why, detail = -1, UD_TOO_DEEP, 0
    if inner < 0:
        if why == UD_NONE:
            return False
        _note_undecoded(stats, i, why, detail)
        keep = l4
        if proto == IP_PROTO_GRE and l4 + 4 <= n:
            keep = min(n, l4 + 4 + 4 * bin(frame[l4] & 0xB0).count("1"))
        frame[keep:] = bytes(n - keep)
        if proto == IP_PROTO_GRE and frame[l4] & 0x80 and verifiable and keep >= l4 + 8:
            cks.append((i, l4, wire_end, IP_PROTO_GRE, l4 + 4, src, dst, wire_end - l4))
        return True
    _sanitize_l2(i, frame, arr, q, inner, mapper, stats, l4s, cks, frags, frag_firsts, depth + 1)
    if inner == 1 and q + 14 > n:  # no inner Ethernet header to map (cut): nothing of it stays
        frame[q:] = bytes(n - q)
    if inner == 1 and q + 12 <= n:  # _sanitize_l2 maps the outer link's MACs only for pseudowires: the inner frame's here
        frame[q:q + 6] = mapper.mac(bytes(frame[q:q + 6]))
        frame[q + 6:q + 12] = mapper.mac(bytes(frame[q + 6:q + 12]))
        stats.macs += 2
    # checksums over the tunnel payload: after the inner ones (cks runs in order)
    if proto == IP_PROTO_GRE and frame[l4] & 0x80:
        if verifiable:
            cks.append((i, l4, wire_end, IP_PROTO_GRE, l4 + 4, src, dst, wire_end - l4))
        else:
            stats.unverifiable += 1
    elif proto == IP_PROTO_UDP and frame[l4 + 6:l4 + 8] != b"\x00\x00":  # VXLAN: zero stays zero (RFC 7348)
        if verifiable:
            cks.append((i, l4, wire_end, IP_PROTO_UDP, l4 + 6, src, dst, wire_end - l4))
        else:
            stats.unverifiable += 1
    return True


def _map_link(frame: bytearray, link: int, mapper: AddressMapper, stats: SanitizeStats) -> None:
    if link == LINK_ETHERNET and len(frame) >= 12:
        frame[0:6] = mapper.mac(bytes(frame[0:6]))
        frame[6:12] = mapper.mac(bytes(frame[6:12]))
        stats.macs += 2
    elif link == LINK_SLL and len(frame) >= 14:
        alen = int.from_bytes(frame[4:6], "big")
        if alen == 6:
            frame[6:12] = mapper.mac(bytes(frame[6:12]))
            stats.macs += 1
        else:
            frame[6:14] = bytes(8)
    elif link == LINK_SLL2 and len(frame) >= 20:
        if frame[11] == 6:
            frame[12:18] = mapper.mac(bytes(frame[12:18]))
            stats.macs += 1
        else:
            frame[12:20] = bytes(8)


def _ip_frame(i: int, frame: bytearray, l3: int, kind: int, mapper: AddressMapper, stats: SanitizeStats,
              l4s: list[_L4], cks: list, frags: dict, frag_firsts: list, arr: np.ndarray | None = None,
              depth: int = 0) -> None:
    n = len(frame)
    frag_key = None
    if kind == 4:
        if n < l3 + 20:
            frame[l3:] = bytes(n - l3)
            return
        ihl = (frame[l3] & 0x0F) * 4
        total = int.from_bytes(frame[l3 + 2:l3 + 4], "big")
        src, dst = mapper.ip(bytes(frame[l3 + 12:l3 + 16])), mapper.ip(bytes(frame[l3 + 16:l3 + 20]))
        frame[l3 + 12:l3 + 16], frame[l3 + 16:l3 + 20] = src, dst
        stats.addresses += 2
        if ihl > 20 and n >= l3 + ihl:
            frame[l3 + 20:l3 + ihl] = b"\x01" * (ihl - 20)  # options may hold addresses: NOPs
        if n >= l3 + max(ihl, 20):
            frame[l3 + 10:l3 + 12] = b"\x00\x00"
            frame[l3 + 10:l3 + 12] = internet_checksum(frame[l3:l3 + ihl]).to_bytes(2, "big")
        proto = frame[l3 + 9]
        frag = int.from_bytes(frame[l3 + 6:l3 + 8], "big")
        l4 = l3 + ihl
        wire_end = l3 + (total if total >= ihl else n - l3)
        first_fragment = (frag & 0x1FFF) == 0
        whole = first_fragment and not (frag & 0x2000)
        if not whole:
            frag_key = (src, dst, bytes(frame[l3 + 4:l3 + 6]), proto)
            frag_off, frag_more, data_start = (frag & 0x1FFF) * 8, bool(frag & 0x2000), l4
        if proto == IP_PROTO_AH and first_fragment and l4 + 12 <= n:  # RFC 4302: skip AH, zero its ICV
            hlen = (frame[l4 + 1] + 2) * 4
            frame[l4 + 12:min(n, l4 + hlen)] = bytes(max(0, min(n, l4 + hlen) - l4 - 12))
            proto, l4 = frame[l4], l4 + hlen
    else:
        if n < l3 + 40:
            frame[l3:] = bytes(n - l3)
            return
        src, dst = mapper.ip(bytes(frame[l3 + 8:l3 + 24])), mapper.ip(bytes(frame[l3 + 24:l3 + 40]))
        frame[l3 + 8:l3 + 24], frame[l3 + 24:l3 + 40] = src, dst
        stats.addresses += 2
        plen = int.from_bytes(frame[l3 + 4:l3 + 6], "big")
        wire_end = l3 + 40 + plen
        proto = frame[l3 + 6]
        l4 = l3 + 40
        first_fragment = whole = True
        while proto in IPV6_EXT_HEADERS and l4 + 8 <= n:
            nxt, hlen = frame[l4], (frame[l4 + 1] + 1) * 8
            if proto == IP_PROTO_AH:
                hlen = (frame[l4 + 1] + 2) * 4
                frame[l4 + 12:min(n, l4 + hlen)] = bytes(max(0, min(n, l4 + hlen) - l4 - 12))  # the ICV
            elif proto == 44:
                hlen = 8
                fo = int.from_bytes(frame[l4 + 2:l4 + 4], "big")
                first_fragment = (fo >> 3) == 0
                whole = False
                frag_key = (src, dst, bytes(frame[l4 + 4:l4 + 8]), nxt)
                frag_off, frag_more, data_start = (fo >> 3) * 8, bool(fo & 1), l4 + 8
                if not first_fragment:
                    proto, l4 = nxt, l4 + hlen
                    break  # fragment data follows, not a header
            elif proto == 43:
                # routing header: the addresses it lists are mapped; the last one is the final
                # destination the upper-layer checksum uses (RFC 8200 8.1)
                segments_left = frame[l4 + 3]
                for a in range(l4 + 8, min(n, l4 + hlen) - 15, 16):
                    frame[a:a + 16] = mapper.ip(bytes(frame[a:a + 16]))
                    if segments_left:
                        dst = bytes(frame[a:a + 16])
            else:
                frame[l4 + 2:min(n, l4 + hlen)] = bytes(max(0, min(n, l4 + hlen) - l4 - 2))
            proto, l4 = nxt, l4 + hlen
    cap_end = min(n, wire_end)
    if frag_key is not None:
        info = frags.setdefault(frag_key, [0, False])
        info[0] = max(info[0], frag_off + wire_end - data_start)
        info[1] = info[1] or not frag_more
    if not first_fragment or l4 >= n:
        frame[min(l4, n):] = bytes(n - min(l4, n))
        return
    if frag_key is not None:
        # first fragment of a fragmented datagram: keep the TCP/UDP header, zero the data; the
        # checksum covers the reassembled datagram, so it is computed once all fragments are seen
        hl = 8 if proto == IP_PROTO_UDP else ((frame[l4 + 12] >> 4) * 4 if l4 + 13 <= n else 0)
        if proto in (IP_PROTO_TCP, IP_PROTO_UDP) and hl and l4 + hl <= n:
            frame[l4 + hl:] = bytes(n - l4 - hl)
            ck_off = l4 + (6 if proto == IP_PROTO_UDP else 16)
            frag_firsts.append((i, l4, hl, proto, ck_off, src, dst, frag_key, l4 - data_start))
        else:
            frame[l4:] = bytes(n - l4)
        return
    wire_len = wire_end - l4
    verifiable = whole and wire_end <= n
    if whole and arr is not None and _encapsulated(i, frame, arr, l3, l4, proto, wire_end, src, dst, verifiable,
                                                   mapper, stats, l4s, cks, frags, frag_firsts, depth):
        return
    if proto == IP_PROTO_TCP and cap_end >= l4 + 20:
        hl = (frame[l4 + 12] >> 4) * 4
        sport, dport = int.from_bytes(frame[l4:l4 + 2], "big"), int.from_bytes(frame[l4 + 2:l4 + 4], "big")
        seq = int.from_bytes(frame[l4 + 4:l4 + 8], "big")
        flags = int.from_bytes(frame[l4 + 12:l4 + 14], "big") & TCP_FLAG_BITS
        ps = min(l4 + hl, cap_end)
        l4s.append(_L4(i, IP_PROTO_TCP, src, dst, sport, dport, seq, flags, ps, cap_end))
        frame[ps:] = bytes(n - ps)  # filled from the sanitised stream later
        if verifiable:
            cks.append((i, l4, wire_end, proto, l4 + 16, src, dst, wire_len))
        else:
            stats.unverifiable += 1
    elif proto == IP_PROTO_UDP and cap_end >= l4 + 8:
        sport, dport = int.from_bytes(frame[l4:l4 + 2], "big"), int.from_bytes(frame[l4 + 2:l4 + 4], "big")
        l4s.append(_L4(i, IP_PROTO_UDP, src, dst, sport, dport, 0, 0, l4 + 8, cap_end))
        frame[l4 + 8:] = bytes(n - l4 - 8)
        if verifiable:
            cks.append((i, l4, wire_end, proto, l4 + 6, src, dst, wire_len))
        else:
            stats.unverifiable += 1
    elif proto in (IP_PROTO_ICMP, IP_PROTO_ICMPV6) and cap_end >= l4 + 8:
        body = bytes(frame[l4:cap_end])
        frame[l4 + 8:] = bytes(n - l4 - 8)  # error bodies quote the original addresses
        if proto == IP_PROTO_ICMPV6 and body[0] in ND_OPTIONS_AT:
            frame[l4:cap_end] = _neighbour_discovery(body, mapper)
        if verifiable:
            cks.append((i, l4, wire_end, proto, l4 + 2, src, dst, wire_len))
    elif proto in (IP_PROTO_TCP, IP_PROTO_UDP):
        stats.unverifiable += 1  # header cut by snaplen: the ports (and what else is there) stay
    else:
        frame[l4:] = bytes(n - l4)


# ICMPv6 neighbour discovery (RFC 4861 4.1-4.5): where the options start; target addresses at 8 (and 24)
ND_OPTIONS_AT = {133: 8, 134: 16, 135: 24, 136: 24, 137: 40}


def _neighbour_discovery(body: bytes, mapper: AddressMapper) -> bytearray:
    """ND message with its addresses mapped: targets, link-layer address and prefix options."""
    out = bytearray(len(body))
    start = ND_OPTIONS_AT[body[0]]
    out[:min(len(body), 16 if body[0] == 134 else 8)] = body[:16 if body[0] == 134 else 8]
    for a in range(8, start, 16):
        if a + 16 <= len(body):
            out[a:a + 16] = mapper.ip(body[a:a + 16])
    p = start
    while p + 2 <= len(body):
        otype, olen = body[p], body[p + 1] * 8
        out[p:p + 2] = body[p:p + 2]
        if olen == 0 or p + olen > len(body):
            break
        if otype in (1, 2) and olen == 8:
            out[p + 2:p + 8] = mapper.mac(body[p + 2:p + 8])
        elif otype == 3 and olen == 32:
            out[p + 2:p + 16] = body[p + 2:p + 16]
            out[p + 16:p + 32] = mapper.ip(body[p + 16:p + 32])
        elif otype == 5:
            out[p + 2:p + olen] = body[p + 2:p + olen]
        p += olen
    return out
def _warn_undecoded(path: str, stats: SanitizeStats) -> None:
    """One warning per encapsulation kind sanitize could not follow, naming its first frame."""
    from netdiag.capture.linktypes import undecoded_kind
    from netdiag.errors import CaptureWarning

    for (why, detail), (count, first) in sorted(stats.undecoded.items(), key=lambda kv: kv[1][1]):
        stats.warnings.append(CaptureWarning(
            f"{count} frame{'s' if count != 1 else ''} with {undecoded_kind(why, detail).split(';')[0]}: everything after "
            "the last header sanitize understands was zero-filled (lengths kept)", path=path, frame=first))
