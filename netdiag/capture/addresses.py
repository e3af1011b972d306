"""Addresses in the packets table: 128-bit values split into hi/lo uint64 columns, and back to text.

IPv4 addresses are stored IPv4-mapped (RFC 4291 section 2.5.5.2: ::ffff:a.b.c.d), so one pair
of columns holds both families and joins/group-bys never need to know the version. `format_ip`
prints IPv4-mapped values as dotted quads and everything else in RFC 5952 text form.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import polars as pl

_V4_MAPPED = 0xFFFF_0000_0000


def _format_arrays(hi: np.ndarray, lo: np.ndarray) -> list[str]:
    out: list[str] = []
    cache: dict[tuple[int, int], str] = {}
    for h, lval in zip(hi.tolist(), lo.tolist(), strict=True):
        key = (h, lval)
        s = cache.get(key)
        if s is None:
            if h == 0 and (lval >> 32) == 0xFFFF:
                s = str(ipaddress.IPv4Address(lval & 0xFFFF_FFFF))
            else:
                s = str(ipaddress.IPv6Address((h << 64) | lval))
            cache[key] = s
        out.append(s)
    return out


# _v4_text formats this many addresses at a time (its numpy temporaries are ~70 B an address)
V4_BLOCK = 16384


def _v4_text(v: np.ndarray) -> pl.Series:
    """Dotted quads of uint32 values, as the stdlib's ipaddress prints them: written digit by
    digit into a byte matrix per block of V4_BLOCK values (no Python object per address)."""
    if v.size <= V4_BLOCK:
        return _v4_block(v)
    return pl.concat([_v4_block(v[i:i + V4_BLOCK]) for i in range(0, v.size, V4_BLOCK)], rechunk=True)


def _v4_block(v: np.ndarray) -> pl.Series:
    n = v.size
    out = np.zeros((n, 16), np.uint8)      # 15 characters at most, NUL-padded
    pos = np.zeros(n, np.intp)
    rows = np.arange(n)
    for k, shift in enumerate((24, 16, 8, 0)):
        o = ((v >> np.uint32(shift)) & np.uint32(255)).astype(np.intp)
        if k:
            out[rows, pos] = ord(".")
            pos += 1
        m = o >= 100
        out[rows[m], pos[m]] = ord("0") + o[m] // 100
        pos += m
        m = o >= 10
        out[rows[m], pos[m]] = ord("0") + o[m] // 10 % 10
        pos += m
        out[rows, pos] = ord("0") + o % 10
        pos += 1
    return pl.Series(out.view("S16").ravel()).cast(pl.String)


def format_ip(hi: str | pl.Expr, lo: str | pl.Expr) -> pl.Expr:
    """A polars expression turning hi/lo address columns into text (IPv4 for v4-mapped values).

    IPv4(-mapped) values are formatted row by row with numpy (a flood of distinct spoofed sources
    would otherwise make a Python string, tuple and dict entry per address, or polars' unique,
    casts and join, ~300 B an address); other values, few distinct ones (hosts, not packets),
    once per distinct value. Null in, null out.
    """
    hi_e = pl.col(hi) if isinstance(hi, str) else hi
    lo_e = pl.col(lo) if isinstance(lo, str) else lo

    def conv(s: pl.Series) -> pl.Series:
        df = s.struct.unnest()
        a, b = df.columns
        valid = (df[a].is_not_null() & df[b].is_not_null()).to_numpy()
        h = df[a].fill_null(0).to_numpy()
        lv = df[b].fill_null(0).to_numpy()
        v4 = (h == 0) & ((lv >> np.uint64(32)) == 0xFFFF)
        text = _v4_text((lv & np.uint64(0xFFFF_FFFF)).astype(np.uint32))
        other = np.flatnonzero(~v4 & valid)
        if other.size:
            text = text.scatter(other, _format_arrays(h[other], lv[other]))
        if not valid.all():
            text = text.set(pl.Series(~valid), None)
        return text

    return pl.struct([hi_e.cast(pl.UInt64).alias("_hi"), lo_e.cast(pl.UInt64).alias("_lo")]).map_batches(
        conv, return_dtype=pl.String)


def ip_to_hi_lo(text: str) -> tuple[int, int]:
    """Text address to the (hi, lo) pair stored in the packets table (IPv4 v4-mapped)."""
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        return 0, _V4_MAPPED | int(addr)
    value = int(addr)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF
