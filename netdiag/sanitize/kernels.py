"""numba kernels over a whole chunk of frames: classify, map, zero-fill and checksum the common shapes.

Frames of the common shapes (Ethernet/SLL/SLL2/raw + IPv4 without options and not fragmented, or
IPv6 without extension headers, + TCP/UDP with whole headers) are walked by `_classify` into one
int64 matrix of offsets (columns F_*), their MACs and addresses are mapped per distinct value
(`_map_fast_headers`: numpy, one mapping call per distinct address), their payloads zero-filled
and IPv4 header checksums recomputed (`_zero_payloads`), and their TCP/UDP checksums recomputed
after the kept payload bytes are laid over (`_l4_checksums`). Every other shape is CLS_SLOW and
goes through the Python walker (netdiag.sanitize.frames); the results are the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from netdiag.capture.decode import _link_to_l3
from netdiag.sanitize.addresses import AddressMapper
from netdiag.sanitize.policy import IP_PROTO_TCP, IP_PROTO_UDP, TCP_FLAG_BITS, VXLAN_PORT, SanitizeStats

# per-frame fields written by _classify (columns of one int64 matrix)
(F_CLS, F_L3, F_VER, F_L4, F_PS, F_PE, F_WIRE_END, F_SPORT, F_DPORT, F_SEQ, F_FLAGS, F_VERIF, F_MAC0,
 F_MAC1, F_SRC, F_DST) = range(16)
N_FIELDS = 16
CLS_SLOW, CLS_TCP, CLS_UDP = 0, 1, 2


@njit(cache=True)
def _classify(b, fo, cap, link, f):  # pragma: no cover - numba
    """Walk the headers of each frame b[fo[i]:fo[i]+cap[i]]; plain Ethernet/SLL/raw + IPv4 (no
    options, not fragmented) or IPv6 (no extension header) + TCP/UDP with whole headers are
    'fast' (CLS_TCP / CLS_UDP); everything else is CLS_SLOW and goes through the Python walker."""
    for i in range(len(fo)):
        f[i, F_CLS] = CLS_SLOW
        o = fo[i]
        n = o + cap[i]
        lt = link[i]
        mac0 = -1
        mac1 = -1
        if lt == 1:
            if cap[i] < 14:
                continue
            mac0, mac1 = o, o + 6
        elif lt == 113:
            if cap[i] < 16 or b[o + 4] != 0 or b[o + 5] != 6:
                continue
            mac0 = o + 6
        elif lt == 276:
            if cap[i] < 20 or b[o + 11] != 6:
                continue
            mac0 = o + 12
        l3, kind, _vlan = _link_to_l3(b, o, n, lt)
        if kind == 4:
            if n < l3 + 20 or (b[l3] & 0x0F) != 5:
                continue
            total = (np.int64(b[l3 + 2]) << 8) | b[l3 + 3]
            frag = (np.int64(b[l3 + 6]) << 8) | b[l3 + 7]
            if frag & 0x3FFF:
                continue
            proto = b[l3 + 9]
            l4 = l3 + 20
            wire_end = l3 + total if total >= 20 else n
            src, dst = l3 + 12, l3 + 16
        elif kind == 6:
            if n < l3 + 40:
                continue
            plen = (np.int64(b[l3 + 4]) << 8) | b[l3 + 5]
            proto = b[l3 + 6]
            l4 = l3 + 40
            wire_end = l3 + 40 + plen
            src, dst = l3 + 8, l3 + 24
        else:
            continue
        if l4 >= n:
            continue
        cap_end = min(n, wire_end)
        if proto == IP_PROTO_TCP:
            if cap_end < l4 + 20:
                continue
            hl = (b[l4 + 12] >> 4) * 4
            if hl < 20:
                continue
            f[i, F_CLS] = CLS_TCP
            f[i, F_PS] = min(l4 + hl, cap_end)
            f[i, F_SEQ] = ((np.int64(b[l4 + 4]) << 24) | (np.int64(b[l4 + 5]) << 16)
                           | (np.int64(b[l4 + 6]) << 8) | b[l4 + 7])
            f[i, F_FLAGS] = ((np.int64(b[l4 + 12]) << 8) | b[l4 + 13]) & TCP_FLAG_BITS
        elif proto == IP_PROTO_UDP:
            if cap_end < l4 + 8 or ((np.int64(b[l4 + 2]) << 8) | b[l4 + 3]) == VXLAN_PORT:
                continue  # VXLAN goes through the Python walker, which follows the tunnel
            f[i, F_CLS] = CLS_UDP
            f[i, F_PS] = l4 + 8
            f[i, F_SEQ] = 0
            f[i, F_FLAGS] = 0
        else:
            continue
        f[i, F_L3] = l3
        f[i, F_VER] = kind
        f[i, F_L4] = l4
        f[i, F_PE] = cap_end
        f[i, F_WIRE_END] = wire_end
        f[i, F_SPORT] = (np.int64(b[l4]) << 8) | b[l4 + 1]
        f[i, F_DPORT] = (np.int64(b[l4 + 2]) << 8) | b[l4 + 3]
        f[i, F_VERIF] = 1 if wire_end <= n else 0
        f[i, F_MAC0] = mac0
        f[i, F_MAC1] = mac1
        f[i, F_SRC] = src
        f[i, F_DST] = dst


@njit(cache=True, inline="always")
def _sum16(b, a, e):  # pragma: no cover - numba
    s = np.int64(0)
    i = a
    while i + 1 < e:
        s += (np.int64(b[i]) << 8) | b[i + 1]
        i += 2
    if i < e:
        s += np.int64(b[i]) << 8
    return s


@njit(cache=True, inline="always")
def _fold(s):  # pragma: no cover - numba
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


@njit(cache=True)
def _zero_payloads(b, fo, cap, f):  # pragma: no cover - numba
    """Fast frames: zero everything after the TCP/UDP header (payload, trailer) and recompute
    the IPv4 header checksum (the addresses are already mapped)."""
    for i in range(len(fo)):
        if f[i, F_CLS] == CLS_SLOW:
            continue
        n = fo[i] + cap[i]
        for k in range(f[i, F_PS], n):
            b[k] = 0
        if f[i, F_VER] == 4:
            l3 = f[i, F_L3]
            b[l3 + 10] = 0
            b[l3 + 11] = 0
            ck = _fold(_sum16(b, l3, l3 + 20))
            b[l3 + 10] = ck >> 8
            b[l3 + 11] = ck & 0xFF


@njit(cache=True)
def _l4_checksums(b, f):  # pragma: no cover - numba
    """Fast frames whose datagram is wholly captured: TCP/UDP checksum over the sanitised bytes
    with the mapped addresses' pseudo-header (RFC 793 3.1, 768, 8200 8.1). Returns how many."""
    done = 0
    for i in range(f.shape[0]):
        c = f[i, F_CLS]
        if c == CLS_SLOW or f[i, F_VERIF] == 0:
            continue
        l4, end = f[i, F_L4], f[i, F_WIRE_END]
        alen = 4 if f[i, F_VER] == 4 else 16
        proto = IP_PROTO_TCP if c == CLS_TCP else IP_PROTO_UDP
        at = l4 + (16 if c == CLS_TCP else 6)
        b[at] = 0
        b[at + 1] = 0
        wire_len = end - l4
        s = (_sum16(b, f[i, F_SRC], f[i, F_SRC] + alen) + _sum16(b, f[i, F_DST], f[i, F_DST] + alen)
             + proto + (wire_len >> 16) + (wire_len & 0xFFFF))
        ck = _fold(s + _sum16(b, l4, end))
        if c == CLS_UDP and ck == 0:
            ck = 0xFFFF
        b[at] = ck >> 8
        b[at + 1] = ck & 0xFF
        done += 1
    return done




@njit(cache=True)
def _copy_runs(out, dst, src, at, length):  # pragma: no cover - numba
    """out[dst[i]:dst[i]+length[i]] = src[at[i]:at[i]+length[i]] for every i."""
    for i in range(len(dst)):
        d, a = dst[i], at[i]
        for k in range(length[i]):
            out[d + k] = src[a + k]


def _fields_at(b: np.ndarray, pos: np.ndarray, width: int) -> np.ndarray:
    """Rows of `width` bytes at each position (a 2-D uint8 array)."""
    return b[pos[:, None] + np.arange(width)]


def _map_columns(b: np.ndarray, pos: np.ndarray, width: int, fn: Callable[[bytes], bytes]) -> np.ndarray:
    """Mapped bytes for the `width`-byte fields at `pos`: each distinct value mapped once."""
    if not len(pos):
        return np.empty((0, width), np.uint8)
    rows = _fields_at(b, pos, width)
    if width <= 8:  # one integer per field: a plain sort instead of a row-wise one
        keys = np.zeros((len(rows), 8), np.uint8)
        keys[:, 8 - width:] = rows
        _, first, inv = np.unique(keys.view(">u8").reshape(-1), return_index=True, return_inverse=True)
        uniq = rows[first]
    else:
        uniq, inv = np.unique(rows, axis=0, return_inverse=True)
    mapped = np.frombuffer(b"".join(fn(u.tobytes()) for u in uniq), np.uint8).reshape(-1, width)
    return mapped[inv.reshape(-1)]


def _set_at(b: np.ndarray, pos: np.ndarray, values: np.ndarray) -> None:
    if len(pos):
        b[pos[:, None] + np.arange(values.shape[1])] = values


def _map_fast_headers(b: np.ndarray, f: np.ndarray, mapper: AddressMapper, stats: SanitizeStats) -> None:
    """MACs and IP addresses of the fast frames, mapped per distinct value and written in place."""
    fast = f[:, F_CLS] != CLS_SLOW
    for col in (F_MAC0, F_MAC1):
        pos = f[fast & (f[:, col] >= 0), col]
        _set_at(b, pos, _map_columns(b, pos, 6, mapper.mac))
        stats.macs += len(pos)
    for ver, width in ((4, 4), (6, 16)):
        sel = fast & (f[:, F_VER] == ver)
        for col in (F_SRC, F_DST):
            pos = f[sel, col]
            _set_at(b, pos, _map_columns(b, pos, width, mapper.ip))
            stats.addresses += len(pos)
