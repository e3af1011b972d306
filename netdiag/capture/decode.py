"""Decode captured frames into the packets columns, in a numba kernel (no per-packet Python objects).

The record walkers (pcap.py, pcapng.py) find where each frame's bytes are; `decode_frames` then
walks the link layer (linktypes.py), IPv4 (RFC 791; options skipped, fragments flagged) or IPv6
(RFC 8200; hop-by-hop, routing, fragment, destination options and AH (RFC 4302) headers
skipped), and TCP (RFC 9293, options per RFC 7323 / RFC 2018) or UDP (RFC 768), writing one row
per frame into column arrays grouped by dtype and copying only the L4 payload bytes into a
compact payload buffer.

Tunnels at SPAN/TAP points are followed to the innermost packet, which is what gets analysed
(its addresses and ports, as Wireshark shows it): MPLS label stacks (IPv4/IPv6 after the
bottom-of-stack label by first nibble, or a pseudowire control word + Ethernet), GRE (RFC 2784/
2890 options; IPv4, IPv6, transparent Ethernet bridging, MPLS), ERSPAN I/II/III, VXLAN (UDP 4789)
and IP in IP (`_peel`, `_link_layer`, `_tunnel`). A frame whose encapsulation is not decoded (an unknown ethertype,
GRE protocol or ERSPAN version, an MPLS payload that is none of the above) is counted per kind with
its first frame; reader/merge turn that into one warning per kind and file.

Lengths follow the IP headers, not the capture: payload_len comes from the IPv4 total length /
IPv6 payload length, so an Ethernet trailer or padding never counts as payload and a
snaplen-cut frame still reports its real payload length (payload_captured says what is there;
cap_len < frame_len flags the frame as cut by the snap length). An IP length beyond what the
frame had on the wire is cut to the frame, as Wireshark does ("IPv4 total length exceeds packet
length"), and counted: a 65,000-byte claim in a 1,530-byte frame counts 1,476 payload bytes.
Like Wireshark, a first IPv4 fragment (offset 0) is decoded as TCP/UDP; later fragments are not.

SPAN de-duplication happens here too (see dedup.py for the window and why): a frame whose
captured bytes equal a frame seen within the window is not written at all, so the kept frames
keep their Wireshark frame numbers.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Column positions inside the per-dtype 2-D arrays (rows = columns of the packets table).
I64_FRAME, I64_TS, I64_PAYLOAD_OFFSET = 0, 1, 2
N_I64 = 3
U64_SRC_HI, U64_SRC_LO, U64_DST_HI, U64_DST_LO = 0, 1, 2, 3
N_U64 = 4
(U32_FRAME_LEN, U32_CAP_LEN, U32_SEQ, U32_ACK, U32_TS_VAL, U32_TS_ECR, U32_SACK_LEFT,
 U32_SACK_RIGHT, U32_PAYLOAD_LEN, U32_PAYLOAD_CAPTURED, U32_IP_LEN) = range(11)
N_U32 = 11
(U16_INTERFACE, U16_LINK_TYPE, U16_VLAN, U16_IP_ID, U16_SRC_PORT, U16_DST_PORT, U16_TCP_FLAGS,
 U16_WINDOW, U16_MSS) = range(9)
N_U16 = 9
U8_IP_VERSION, U8_PROTO, U8_TTL, U8_FRAGMENT, U8_SACK_PERM, U8_HAS_TS, U8_SACK_BLOCKS = range(7)
N_U8 = 7
I8_WSCALE = 0
N_I8 = 1

# Ethertypes (IEEE 802.3 / IANA)
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD = 0x8100, 0x88A8, 0x9100
ETH_MPLS, ETH_MPLS_MC = 0x8847, 0x8848          # RFC 3032 label stack
ETH_TEB = 0x6558                                 # transparent Ethernet bridging (GRE, RFC 1701)
ETH_ERSPAN_2, ETH_ERSPAN_3 = 0x88BE, 0x22EB      # GRE protocol of ERSPAN I/II and III
VXLAN_PORT = 4789                                # RFC 7348
MAX_TUNNEL_DEPTH = 4                             # nested encapsulations followed per frame
# Ethertypes that carry no IP and are no encapsulation: counted as non-IP, never warned about
# (ARP, RARP, LACP/slow protocols, EAPOL, LLDP, PTP, MACsec is *not* here: it hides IP)
PLAIN_NON_IP = (0x0806, 0x8035, 0x8809, 0x888E, 0x88CC, 0x88F7, 0x9000, 0x88E5)

# Why a frame's IP could not be reached (kernel `undecoded` codes; reader.py words them)
UD_NONE, UD_ETHERTYPE, UD_MPLS_PAYLOAD, UD_GRE, UD_ERSPAN, UD_TOO_DEEP, UD_CUT = range(7)
N_UD = 7

# Link types this kernel understands (LINKTYPE_* numbers, see linktypes.py)
SUPPORTED_LINK_TYPES = (0, 1, 12, 14, 101, 108, 113, 228, 229, 276)

# Kernel counters (returned array positions); then per UD_* code: count, first frame, detail
CNT_ROWS, CNT_PAYLOAD, CNT_DUPS, CNT_NON_IP, CNT_SNAPCUT, CNT_IPLEN_CLAMPED, CNT_IPLEN_FIRST = range(7)
CNT_TUNNELED = 7
CNT_UD = 8                      # CNT_UD + 3 * code + (0 count, 1 first frame, 2 detail: ethertype...)
N_COUNTERS = CNT_UD + 3 * N_UD


@njit(cache=True, inline="always")
def _be16(b, p):
    return (np.int64(b[p]) << 8) | np.int64(b[p + 1])


@njit(cache=True, inline="always")
def _be32(b, p):
    return (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])


@njit(cache=True, inline="always")
def _le32(b, p):
    return (np.int64(b[p + 3]) << 24) | (np.int64(b[p + 2]) << 16) | (np.int64(b[p + 1]) << 8) | np.int64(b[p])


@njit(cache=True, inline="always")
def _be64u(b, p):
    v = np.uint64(0)
    for i in range(8):
        v = (v << np.uint64(8)) | np.uint64(b[p + i])
    return v


@njit(cache=True)
def _link_to_l3(b, off, end, link):
    """Return (l3 offset, kind, vlan) with kind 4, 6 or 0 (no IP): the link layer and any VLAN tags
    and MPLS label stack, for callers that do not follow tunnels (netdiag.sanitize)."""
    p, kind, vlan, _why, _detail = _link_layer(b, off, end, link)
    return p, (kind if kind == 4 or kind == 6 else 0), vlan


@njit(cache=True)
def _link_layer(b, off, end, link):
    """Return (l3 offset, kind, vlan, why, detail): kind 4, 6, or 0 when no IP follows (why/detail
    then say what stopped us: a UD_* code and e.g. the ethertype), or 1 for an inner Ethernet frame
    (a pseudowire) at the offset."""
    vlan = 0
    etype = -1
    p = off
    if link == 1:  # Ethernet II, 802.1Q / 802.1ad tags
        if end - off < 14:
            return p, 0, 0, UD_CUT, 0
        etype = _be16(b, off + 12)
        p = off + 14
    elif link == 113:  # Linux cooked v1: 16-byte header, protocol at 14
        if end - off < 16:
            return p, 0, 0, UD_CUT, 0
        etype = _be16(b, off + 14)
        p = off + 16
    elif link == 276:  # Linux cooked v2: 20-byte header, protocol at 0
        if end - off < 20:
            return p, 0, 0, UD_CUT, 0
        etype = _be16(b, off)
        p = off + 20
    elif link == 0 or link == 108:  # BSD loopback: 4-byte address family
        if end - off < 4:
            return p, 0, 0, UD_CUT, 0
        if link == 108:
            af = _be32(b, off)
        else:  # host byte order of the capturing machine: guess like Wireshark
            af = _le32(b, off)
            if af > 0xFFFF:
                af = _be32(b, off)
        p = off + 4
        if af == 2:
            return p, 4, 0, UD_NONE, 0
        if af == 10 or af == 24 or af == 28 or af == 30:
            return p, 6, 0, UD_NONE, 0
        return p, 0, 0, UD_NONE, 0
    elif link == 101 or link == 12 or link == 14:  # raw IP: version nibble decides
        if end - off < 1:
            return p, 0, 0, UD_CUT, 0
        v = b[off] >> 4
        if v == 4:
            return p, 4, 0, UD_NONE, 0
        if v == 6:
            return p, 6, 0, UD_NONE, 0
        return p, 0, 0, UD_NONE, 0
    elif link == 228:
        return p, 4, 0, UD_NONE, 0
    elif link == 229:
        return p, 6, 0, UD_NONE, 0
    elif link == 0x8847:  # a bare MPLS label stack (GRE's inner link 0x8847, see _tunnel)
        etype = ETH_MPLS
    else:
        return p, 0, 0, UD_NONE, 0
    first = True
    while (etype == ETH_VLAN or etype == ETH_QINQ or etype == ETH_QINQ_OLD) and p + 4 <= end:
        if first:
            vlan = _be16(b, p) & 0xFFF
            first = False
        etype = _be16(b, p + 2)
        p += 4
    if etype == ETH_MPLS or etype == ETH_MPLS_MC:  # label stack down to bottom-of-stack (S bit)
        while p + 4 <= end and (b[p + 2] & 1) == 0:
            p += 4
        if p + 4 > end:
            return p, 0, vlan, UD_CUT, 0
        p += 4
        if p >= end:
            return p, 0, vlan, UD_CUT, 0
        nib = b[p] >> 4
        if nib == 4:
            return p, 4, vlan, UD_NONE, 0
        if nib == 6:
            return p, 6, vlan, UD_NONE, 0
        if nib == 0 and p + 4 + 14 <= end:  # pseudowire control word (RFC 4385), then Ethernet
            return p + 4, 1, vlan, UD_NONE, 0
        return p, 0, vlan, UD_MPLS_PAYLOAD, nib
    if etype == ETH_IPV4:
        return p, 4, vlan, UD_NONE, 0
    if etype == ETH_IPV6:
        return p, 6, vlan, UD_NONE, 0
    if etype < 0x0600:  # an 802.3 length field: LLC (spanning tree, CDP ...), no IP
        return p, 0, vlan, UD_NONE, 0
    for e in PLAIN_NON_IP:
        if etype == e:
            return p, 0, vlan, UD_NONE, 0
    return p, 0, vlan, UD_ETHERTYPE, etype


@njit(cache=True)
def _tunnel(b, p, end, wire_end):
    """If the IP packet at p carries a tunnel netdiag follows, return (inner offset, inner link,
    why, detail); inner link -1 = no tunnel here (decode this IP packet itself).

    GRE (RFC 2784/2890: checksum, key, sequence options; version 0 only) carrying IPv4, IPv6,
    transparent Ethernet bridging, MPLS or ERSPAN (type I/II: GRE 0x88BE with 8-byte header when the
    sequence bit is set, type I without; type III: 0x22EB, 12 bytes + 8-byte platform sub-header
    when its O bit is set); VXLAN (UDP port 4789, I flag, 8 bytes, then Ethernet); IP in IP
    (protocol 4 and 41). Wireshark decodes all of these by default. Inner links: 1 Ethernet,
    228 IPv4, 229 IPv6, 0x8847 an MPLS label stack.
    """
    if p >= end:
        return p, -1, UD_NONE, 0
    v = b[p] >> 4
    if v == 4:
        if p + 20 > end:
            return p, -1, UD_NONE, 0
        ihl = np.int64(b[p] & 0xF) * 4
        if (_be16(b, p + 6) & 0x1FFF) != 0 or ihl < 20:
            return p, -1, UD_NONE, 0
        proto = np.int64(b[p + 9])
        q = p + ihl
    else:
        if p + 40 > end:
            return p, -1, UD_NONE, 0
        proto = np.int64(b[p + 6])
        q = p + 40
        if proto == 0 or proto == 43 or proto == 60 or proto == 44:  # extension headers: not followed
            return p, -1, UD_NONE, 0
    if proto == 4:
        return q, 228, UD_NONE, 0
    if proto == 41:
        return q, 229, UD_NONE, 0
    if proto == 47:
        if q + 4 > end:
            return p, -1, UD_CUT, 0
        fl = np.int64(b[q])
        ver = np.int64(b[q + 1]) & 7
        ptype = _be16(b, q + 2)
        if ver != 0:  # PPTP's enhanced GRE (version 1) carries PPP
            return p, -1, UD_GRE, 0x10000 | ptype
        h = q + 4
        if fl & 0x80:  # checksum (+ reserved)
            h += 4
        if fl & 0x20:  # key
            h += 4
        seq_bit = (fl & 0x10) != 0
        if seq_bit:
            h += 4
        if h > end:
            return p, -1, UD_CUT, 0
        if ptype == ETH_IPV4:
            return h, 228, UD_NONE, 0
        if ptype == ETH_IPV6:
            return h, 229, UD_NONE, 0
        if ptype == ETH_TEB:
            return h, 1, UD_NONE, 0
        if ptype == ETH_MPLS or ptype == ETH_MPLS_MC:
            return h, 0x8847, UD_NONE, 0
        if ptype == ETH_ERSPAN_2:
            if not seq_bit:  # ERSPAN type I: no ERSPAN header
                return h, 1, UD_NONE, 0
            if h + 8 > end:
                return p, -1, UD_CUT, 0
            ver_e = b[h] >> 4
            if ver_e != 1:
                return p, -1, UD_ERSPAN, ver_e
            return h + 8, 1, UD_NONE, 0
        if ptype == ETH_ERSPAN_3:
            if h + 12 > end:
                return p, -1, UD_CUT, 0
            ver_e = b[h] >> 4
            if ver_e != 2:
                return p, -1, UD_ERSPAN, ver_e
            h2 = h + 12
            if b[h + 11] & 1:  # O bit: an 8-byte platform-specific sub-header follows
                h2 += 8
            return h2, 1, UD_NONE, 0
        return p, -1, UD_GRE, ptype
    if proto == 17 and q + 16 <= end and _be16(b, q + 2) == VXLAN_PORT and (b[q + 8] & 0x08):
        return q + 16, 1, UD_NONE, 0
    return p, -1, UD_NONE, 0


@njit(cache=True)
def _peel(b, off, end, link):
    """Walk link layer and tunnels down to the innermost IP header: (offset, kind 4/6/0, outer
    vlan, why, detail, tunnels followed)."""
    p, kind, vlan, why, detail = _link_layer(b, off, end, link)
    depth = 0
    while True:
        if kind == 1:  # a pseudowire's Ethernet frame
            p, kind, _v, why, detail = _link_layer(b, p, end, 1)
            continue
        if kind == 0:
            return p, 0, vlan, why, detail, depth
        q, inner, why2, detail2 = _tunnel(b, p, end, end)
        if inner < 0:
            if why2 != UD_NONE:
                return p, kind, vlan, why2, detail2, depth
            return p, kind, vlan, UD_NONE, 0, depth
        depth += 1
        if depth > MAX_TUNNEL_DEPTH:
            return p, kind, vlan, UD_TOO_DEEP, 0, depth - 1
        if inner == 0x8847:  # MPLS inside GRE: an Ethernet-less label stack
            while q + 4 <= end and (b[q + 2] & 1) == 0:
                q += 4
            q += 4
            if q >= end:
                return p, kind, vlan, UD_CUT, 0, depth - 1
            nib = b[q] >> 4
            if nib == 4:
                p, kind = q, 4
            elif nib == 6:
                p, kind = q, 6
            elif nib == 0 and q + 4 + 14 <= end:
                p, kind = q + 4, 1
            else:
                return p, kind, vlan, UD_MPLS_PAYLOAD, nib, depth - 1
            continue
        p, kind, _v, why, detail = _link_layer(b, q, end, inner)


@njit(cache=True)
def decode_frames(buf, rec_off, rec_cap, rec_len, rec_ts, rec_iface, n, iface_link, frame0,
                  o_i64, o_u64, o_u32, o_u16, o_u8, o_i8, row0, pay_src, pay0,
                  rec_dup, counters):
    """Decode `n` records into rows starting at `row0`; payload bytes go to `payload` from `pay0`.

    `rec_off` are positions in `buf`. Records flagged in `rec_dup` (SPAN copies, see
    dedup.mark_duplicates) are skipped: no row. Counters are added to `counters`. Payload bytes are only
    located here (`pay_src`, payload_offset, payload_captured); `copy_payloads` copies them.
    """
    row = row0
    pay = pay0
    for i in range(n):
        off = rec_off[i]
        cap = np.int64(rec_cap[i])
        end = off + cap
        ts = rec_ts[i]
        if rec_dup[i]:
            counters[CNT_DUPS] += 1
            continue
        iface = rec_iface[i]
        link = iface_link[iface]
        o_i64[I64_FRAME, row] = frame0 + i
        o_i64[I64_TS, row] = ts
        o_i64[I64_PAYLOAD_OFFSET, row] = -1
        for k in range(N_U64):
            o_u64[k, row] = 0
        for k in range(N_U32):
            o_u32[k, row] = 0
        for k in range(N_U16):
            o_u16[k, row] = 0
        for k in range(N_U8):
            o_u8[k, row] = 0
        o_i8[I8_WSCALE, row] = -1
        o_u32[U32_FRAME_LEN, row] = rec_len[i]
        o_u32[U32_CAP_LEN, row] = rec_cap[i]
        o_u16[U16_INTERFACE, row] = iface
        o_u16[U16_LINK_TYPE, row] = link
        if rec_cap[i] < rec_len[i]:
            counters[CNT_SNAPCUT] += 1
        p, kind, vlan, why, detail, depth = _peel(buf, off, end, link)
        o_u16[U16_VLAN, row] = vlan
        if depth:
            counters[CNT_TUNNELED] += 1
        if why != UD_NONE:
            u = CNT_UD + 3 * why
            if counters[u] == 0:
                counters[u + 1] = frame0 + i
                counters[u + 2] = detail
            counters[u] += 1
        # bytes the IP header may claim: what was on the wire after the headers before it
        # (Wireshark: "IPv4 total length exceeds packet length" and it uses the frame's length)
        wire = np.int64(rec_len[i]) - (p - off)
        l4 = -1
        l4_len = 0
        proto = -1
        if kind == 4 and p + 20 <= end and (buf[p] >> 4) == 4 and (buf[p] & 0xF) >= 5:
            ihl = np.int64(buf[p] & 0xF) * 4
            total = _be16(buf, p + 2)
            if total == 0:  # TSO/GSO frame captured before segmentation: Wireshark uses the frame
                total = wire
            elif total > wire:
                if counters[CNT_IPLEN_CLAMPED] == 0:
                    counters[CNT_IPLEN_FIRST] = frame0 + i
                counters[CNT_IPLEN_CLAMPED] += 1
                total = wire
            o_u32[U32_IP_LEN, row] = total
            fo = _be16(buf, p + 6)
            frag_off = fo & 0x1FFF
            o_u8[U8_IP_VERSION, row] = 4
            o_u8[U8_TTL, row] = buf[p + 8]
            proto = np.int64(buf[p + 9])
            o_u8[U8_PROTO, row] = proto
            o_u16[U16_IP_ID, row] = _be16(buf, p + 4)
            if (fo & 0x2000) != 0 or frag_off != 0:
                o_u8[U8_FRAGMENT, row] = 1
            o_u64[U64_SRC_LO, row] = np.uint64(0xFFFF00000000) | np.uint64(_be32(buf, p + 12))
            o_u64[U64_DST_LO, row] = np.uint64(0xFFFF00000000) | np.uint64(_be32(buf, p + 16))
            if frag_off == 0 and total >= ihl:
                l4 = p + ihl
                l4_len = total - ihl
        elif kind == 6 and p + 40 <= end and (buf[p] >> 4) == 6:
            plen = _be16(buf, p + 4)
            nh = np.int64(buf[p + 6])
            o_u8[U8_IP_VERSION, row] = 6
            o_u8[U8_TTL, row] = buf[p + 7]
            o_u64[U64_SRC_HI, row] = _be64u(buf, p + 8)
            o_u64[U64_SRC_LO, row] = _be64u(buf, p + 16)
            o_u64[U64_DST_HI, row] = _be64u(buf, p + 24)
            o_u64[U64_DST_LO, row] = _be64u(buf, p + 32)
            if plen == 0:  # jumbogram or TSO: fall back to the frame length
                plen = wire - 40
            elif plen + 40 > wire:
                if counters[CNT_IPLEN_CLAMPED] == 0:
                    counters[CNT_IPLEN_FIRST] = frame0 + i
                counters[CNT_IPLEN_CLAMPED] += 1
                plen = max(wire - 40, 0)
            o_u32[U32_IP_LEN, row] = plen + 40
            q = p + 40
            remaining = plen
            decodable = True
            while nh == 0 or nh == 43 or nh == 60 or nh == 44 or nh == 51:
                if q + 8 > end:
                    decodable = False
                    break
                if nh == 44:
                    hl = 8
                    ffo = _be16(buf, q + 2)
                    o_u8[U8_FRAGMENT, row] = 1
                    if (ffo >> 3) != 0:
                        decodable = False
                elif nh == 51:
                    hl = (np.int64(buf[q + 1]) + 2) * 4
                else:
                    hl = (np.int64(buf[q + 1]) + 1) * 8
                nh = np.int64(buf[q])
                q += hl
                remaining -= hl
            proto = nh
            o_u8[U8_PROTO, row] = nh
            if decodable and remaining >= 0:
                l4 = q
                l4_len = remaining
        else:
            counters[CNT_NON_IP] += 1

        if l4 >= 0 and proto == 6:
            avail = end - l4
            if avail >= 4:
                o_u16[U16_SRC_PORT, row] = _be16(buf, l4)
                o_u16[U16_DST_PORT, row] = _be16(buf, l4 + 2)
            if avail >= 20:  # like Wireshark: a TCP header cut by the snaplen yields only the ports
                o_u32[U32_SEQ, row] = _be32(buf, l4 + 4)
                o_u32[U32_ACK, row] = _be32(buf, l4 + 8)
                o_u16[U16_TCP_FLAGS, row] = ((np.int64(buf[l4 + 12]) & 1) << 8) | np.int64(buf[l4 + 13])
                o_u16[U16_WINDOW, row] = _be16(buf, l4 + 14)
                thl = np.int64(buf[l4 + 12] >> 4) * 4
                if thl >= 20:
                    # options as far as they were captured (each one only when complete)
                    j = l4 + 20
                    oe = l4 + min(thl, avail)
                    while j < oe:
                        kind_o = buf[j]
                        if kind_o == 0:
                            break
                        if kind_o == 1:
                            j += 1
                            continue
                        if j + 1 >= oe:
                            break
                        ln = np.int64(buf[j + 1])
                        if ln < 2 or j + ln > oe:
                            break
                        if kind_o == 2 and ln == 4:
                            o_u16[U16_MSS, row] = _be16(buf, j + 2)
                        elif kind_o == 3 and ln == 3:
                            o_i8[I8_WSCALE, row] = min(np.int64(buf[j + 2]), 127)
                        elif kind_o == 4 and ln == 2:
                            o_u8[U8_SACK_PERM, row] = 1
                        elif kind_o == 5 and ln >= 10:
                            o_u8[U8_SACK_BLOCKS, row] = (ln - 2) // 8
                            o_u32[U32_SACK_LEFT, row] = _be32(buf, j + 2)
                            o_u32[U32_SACK_RIGHT, row] = _be32(buf, j + 6)
                        elif kind_o == 8 and ln == 10:
                            o_u8[U8_HAS_TS, row] = 1
                            o_u32[U32_TS_VAL, row] = _be32(buf, j + 2)
                            o_u32[U32_TS_ECR, row] = _be32(buf, j + 6)
                        j += ln
                    if thl >= 20 and l4_len >= thl:
                        plen_w = l4_len - thl
                        o_u32[U32_PAYLOAD_LEN, row] = plen_w
                        if thl <= avail:
                            _note_payload(l4 + thl, min(plen_w, avail - thl), row, o_i64, o_u32,
                                          pay_src, pay)
                            pay += o_u32[U32_PAYLOAD_CAPTURED, row]
        elif l4 >= 0 and proto == 17:
            avail = end - l4
            if avail >= 4:
                o_u16[U16_SRC_PORT, row] = _be16(buf, l4)
                o_u16[U16_DST_PORT, row] = _be16(buf, l4 + 2)
            if l4_len >= 8:
                plen_w = l4_len - 8
                o_u32[U32_PAYLOAD_LEN, row] = plen_w
                if avail >= 8:
                    _note_payload(l4 + 8, min(plen_w, avail - 8), row, o_i64, o_u32, pay_src, pay)
                    pay += o_u32[U32_PAYLOAD_CAPTURED, row]
        row += 1
    counters[CNT_ROWS] += row - row0
    counters[CNT_PAYLOAD] += pay - pay0


@njit(cache=True, inline="always")
def _note_payload(start, count, row, o_i64, o_u32, pay_src, pay):
    if count <= 0:
        return
    pay_src[row] = start
    o_u32[U32_PAYLOAD_CAPTURED, row] = count
    o_i64[I64_PAYLOAD_OFFSET, row] = pay


@njit(cache=True)
def copy_payloads(buf, pay_src, o_i64, o_u32, row0, row1, payload):
    """Copy the payload bytes noted by decode_frames (a separate tight loop LLVM can vectorise)."""
    for r in range(row0, row1):
        dst = o_i64[I64_PAYLOAD_OFFSET, r]
        if dst < 0:
            continue
        # unsigned indices: numba then skips negative-index wraparound and LLVM vectorises the copy
        src = np.uint64(pay_src[r])
        udst = np.uint64(dst)
        for k in range(np.uint64(o_u32[U32_PAYLOAD_CAPTURED, r])):
            payload[udst + k] = buf[src + k]
