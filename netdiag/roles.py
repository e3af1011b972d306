"""Server roles from the site profile, for the table commands (connections, transactions, packets).

Why: which endpoint is an EPJ server and what its port does (bootstrap, ORB, LSD, IIOP over TLS,
HTTP(S), DNS) decides how a reader takes a row: a connection to 9900 is the node agent's
Location Service Daemon, not the application server. `netdiag analyze` reads the profile for its
logon rules; with `--profile` the table commands show the same roles (`Profile.port_role`: the
profile's servers first, then WebSphere's default ports) and take the profile's server ports
as servers when a connection's SYN was not captured.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from netdiag.profile import Profile, load_profile


def load(profile: Path | None) -> Profile | None:
    """The profile given with `--profile` (ConfigError, exit 2, when it is not valid), or None."""
    return load_profile(profile) if profile is not None else None


def server_ports(profile: Profile | None) -> set[int]:
    """The ports the profile's [[servers]] name: servers when no SYN says who connected to whom."""
    if profile is None:
        return set()
    return {int(p) for s in profile.servers for p in s.ports}


def with_role(df: pl.DataFrame, profile: Profile, ip: str, port: str, name: str) -> pl.DataFrame:
    """`df` with a column `name`: the role of (ip, port) per the profile (null when unknown)."""
    if df.height == 0:
        return df.with_columns(pl.lit(None, pl.String).alias(name))
    pairs = df.select(pl.col(ip).alias("_ip"), pl.col(port).cast(pl.Int64).alias("_port")).unique().drop_nulls()
    roles = pairs.with_columns(pl.Series(name, [profile.port_role(a, p) for a, p in pairs.iter_rows()],
                                         dtype=pl.String))
    return (df.with_columns(pl.col(ip).alias("_ip"), pl.col(port).cast(pl.Int64).alias("_port"))
            .join(roles, on=["_ip", "_port"], how="left", maintain_order="left").drop("_ip", "_port"))


__all__ = ["load", "server_ports", "with_role"]
