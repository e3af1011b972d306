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


def format_ip(hi: str | pl.Expr, lo: str | pl.Expr) -> pl.Expr:
    """A polars expression turning hi/lo address columns into text (IPv4 for v4-mapped values).

    Distinct addresses are few (hosts, not packets), so each distinct value is formatted once.
    """
    hi_e = pl.col(hi) if isinstance(hi, str) else hi
    lo_e = pl.col(lo) if isinstance(lo, str) else lo

    def conv(s: pl.Series) -> pl.Series:
        df = s.struct.unnest()
        a, b = df.columns
        uniq = df.unique(maintain_order=False)
        # IPv4-mapped values as dotted quads with polars string columns: a flood of distinct
        # spoofed sources would otherwise make a Python string, tuple and dict entry per address
        v4 = (pl.col(a) == 0) & ((pl.col(b) // (1 << 32)) == 0xFFFF)
        quad = pl.concat_str([(pl.col(b) // (1 << s) % 256).cast(pl.String) for s in (24, 16, 8, 0)], separator=".")
        lut4 = uniq.filter(v4).with_columns(quad.alias("_ip"))
        rest = uniq.filter(~v4)
        text = _format_arrays(rest[a].to_numpy(), rest[b].to_numpy())
        lut = pl.concat([lut4, rest.with_columns(pl.Series("_ip", text, dtype=pl.String))])
        return df.join(lut, on=[a, b], how="left", maintain_order="left")["_ip"]

    return pl.struct([hi_e.cast(pl.UInt64).alias("_hi"), lo_e.cast(pl.UInt64).alias("_lo")]).map_batches(
        conv, return_dtype=pl.String)


def ip_to_hi_lo(text: str) -> tuple[int, int]:
    """Text address to the (hi, lo) pair stored in the packets table (IPv4 v4-mapped)."""
    addr = ipaddress.ip_address(text)
    if addr.version == 4:
        return 0, _V4_MAPPED | int(addr)
    value = int(addr)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF
