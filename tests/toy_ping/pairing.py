"""Toy pairing: a PONG n answers the open PING n of its connection."""

from __future__ import annotations

import polars as pl

from netdiag.protocols.pairing import PairingInput, Part, Txn


def pair(m: pl.DataFrame, inp: PairingInput) -> None:
    """PING opens a transaction keyed by (connection, n); PONG n closes it."""
    open_pings: dict[tuple[int, int], Txn] = {}
    for row, conn, mtype, n in m.select("row", "conn_id", "msg_type", "request_id").iter_rows():
        if mtype == "PING":
            t = Txn(conn, "ping", "ping", n, Part(row))
            open_pings[(conn, n)] = t
            inp.out.append(t)
        elif mtype == "PONG":
            t = open_pings.pop((conn, n), None)
            if t is None:
                inp.stats.unmatched_responses += 1
                continue
            t.rsp = Part(row)
