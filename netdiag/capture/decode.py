"""Decode captured frames into the packets columns, in a numba kernel (no per-packet Python objects).

The record walkers (pcap.py, pcapng.py) find where each frame's bytes are; `decode_frames` then
walks the link layer (linktypes.py), IPv4 (RFC 791; options skipped, fragments flagged) or IPv6
(RFC 8200; hop-by-hop, routing, fragment, destination options and AH (RFC 4302) headers
skipped), and TCP (RFC 9293, options per RFC 7323 / RFC 2018) or UDP (RFC 768), writing one row
per frame into column arrays grouped by dtype and copying only the L4 payload bytes into a
compact payload buffer.

Lengths follow the IP headers, not the capture: payload_len comes from the IPv4 total length /
IPv6 payload length, so an Ethernet trailer or padding never counts as payload and a
snaplen-cut frame still reports its real payload length (payload_captured says what is there).
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
 U32_SACK_RIGHT, U32_PAYLOAD_LEN, U32_PAYLOAD_CAPTURED) = range(10)
N_U32 = 10
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

# Link types this kernel understands (LINKTYPE_* numbers, see linktypes.py)
SUPPORTED_LINK_TYPES = (0, 1, 12, 14, 101, 108, 113, 228, 229, 276)

# Kernel counters (returned array positions)
CNT_ROWS, CNT_PAYLOAD, CNT_DUPS, CNT_NON_IP, CNT_SNAPCUT = 0, 1, 2, 3, 4


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
    """Return (l3 offset, kind, vlan) where kind is 4, 6, or 0 when no IP follows."""
    vlan = 0
    etype = -1
    p = off
    if link == 1:  # Ethernet II, 802.1Q / 802.1ad tags
        if end - off < 14:
            return p, 0, 0
        etype = _be16(b, off + 12)
        p = off + 14
    elif link == 113:  # Linux cooked v1: 16-byte header, protocol at 14
        if end - off < 16:
            return p, 0, 0
        etype = _be16(b, off + 14)
        p = off + 16
    elif link == 276:  # Linux cooked v2: 20-byte header, protocol at 0
        if end - off < 20:
            return p, 0, 0
        etype = _be16(b, off)
        p = off + 20
    elif link == 0 or link == 108:  # BSD loopback: 4-byte address family
        if end - off < 4:
            return p, 0, 0
        if link == 108:
            af = _be32(b, off)
        else:  # host byte order of the capturing machine: guess like Wireshark
            af = _le32(b, off)
            if af > 0xFFFF:
                af = _be32(b, off)
        p = off + 4
        if af == 2:
            return p, 4, 0
        if af == 10 or af == 24 or af == 28 or af == 30:
            return p, 6, 0
        return p, 0, 0
    elif link == 101 or link == 12 or link == 14:  # raw IP: version nibble decides
        if end - off < 1:
            return p, 0, 0
        v = b[off] >> 4
        if v == 4:
            return p, 4, 0
        if v == 6:
            return p, 6, 0
        return p, 0, 0
    elif link == 228:
        return p, 4, 0
    elif link == 229:
        return p, 6, 0
    else:
        return p, 0, 0
    first = True
    while (etype == ETH_VLAN or etype == ETH_QINQ or etype == ETH_QINQ_OLD) and p + 4 <= end:
        if first:
            vlan = _be16(b, p) & 0xFFF
            first = False
        etype = _be16(b, p + 2)
        p += 4
    if etype == ETH_IPV4:
        return p, 4, vlan
    if etype == ETH_IPV6:
        return p, 6, vlan
    return p, 0, vlan


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
        p, kind, vlan = _link_to_l3(buf, off, end, link)
        o_u16[U16_VLAN, row] = vlan
        l4 = -1
        l4_len = 0
        proto = -1
        if kind == 4 and p + 20 <= end and (buf[p] >> 4) == 4 and (buf[p] & 0xF) >= 5:
            ihl = np.int64(buf[p] & 0xF) * 4
            total = _be16(buf, p + 2)
            if total == 0:  # TSO/GSO frame captured before segmentation: Wireshark uses the frame
                total = np.int64(rec_len[i]) - (p - off)
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
                plen = np.int64(rec_len[i]) - (p + 40 - off)
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
