"""Small CONNECTIONS / TRANSACTIONS / SEGMENTS tables for unit tests of the logon stages.

The logon stages are pure functions of these tables; these helpers fill every declared column
(schema defaults) so a test only states the timings it is about. Times are given in ms.
"""

from __future__ import annotations

import polars as pl

from netdiag.schema import CONNECTIONS, SEGMENTS, TRANSACTIONS

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def ns(ms: float | None) -> int | None:
    return None if ms is None else T0 + int(round(ms * MS))


def connection(conn_id: int, client: str, cport: int, server: str, sport: int, syn: float | None,
               synack: float | None, ack: float | None, last: float, *, syn_retx: int = 0, state: str = "SF",
               rtt_ss_ms: float | None = None, rtt_cs_ms: float | None = None, transport: str = "tcp",
               unseen: int = 0, retx: int = 0, first_frame: int = 1, last_frame: int = 2) -> dict:
    row = {c: None for c in CONNECTIONS.names}
    first = syn if syn is not None else last
    row.update(conn_id=conn_id, transport=transport, client_ip=client, client_port=cport, server_ip=server,
               server_port=sport, first_ts_ns=ns(first), last_ts_ns=ns(last), first_frame=first_frame,
               last_frame=last_frame, syn_ts_ns=ns(syn), synack_ts_ns=ns(synack), established_ts_ns=ns(ack),
               syn_retransmissions=syn_retx, state=state, unseen_bytes=unseen, retransmitted_segments=retx,
               rtt_server_side_ms=rtt_ss_ms if rtt_ss_ms is not None else (
                   None if synack is None or syn is None else synack - syn),
               rtt_client_side_ms=rtt_cs_ms if rtt_cs_ms is not None else (
                   None if ack is None or synack is None else ack - synack))
    return row


def transaction(conn_id: int, client: str, server: str, sport: int, protocol: str, operation: str,
                q0: float, q1: float, r0: float | None, r1: float | None, *, status: str = "NO_EXCEPTION",
                forward: tuple[str, int] | None = None, user_agent: str | None = None, detail: str = "{}",
                first_frame: int = 1, last_frame: int = 2, cport: int = 50000) -> dict:
    row = {c: None for c in TRANSACTIONS.names}
    row.update(conn_id=conn_id, client_ip=client, client_port=cport, server_ip=server, server_port=sport,
               protocol=protocol, operation=operation, request_id=1,
               status=status if r0 is not None else "unanswered",
               req_first_ts_ns=ns(q0), req_last_ts_ns=ns(q1), rsp_first_ts_ns=ns(r0), rsp_last_ts_ns=ns(r1),
               first_frame=first_frame, last_frame=last_frame,
               server_think_s=None if r0 is None else (r0 - q1) / 1000,
               forward_host=forward[0] if forward else None, forward_port=forward[1] if forward else None,
               user_agent=user_agent, detail=detail)
    return row


def segment(frame: int, ms: float, conn_id: int, direction: int, flags: int = 0x10, payload: int = 0, **kw) -> dict:
    row = {c: None for c in SEGMENTS.names}
    row.update(frame=frame, ts_ns=ns(ms), conn_id=conn_id, direction=direction, tcp_flags=flags,
               payload_len=payload, window_bytes=kw.pop("window", 65535), retransmission=False,
               fast_retransmission=False, spurious_retransmission=False, out_of_order=False, lost_segment=False,
               ack_lost_segment=False, duplicate_ack=False, zero_window=False, zero_window_probe=False,
               zero_window_probe_ack=False, window_full=False, window_update=False, keep_alive=False,
               keep_alive_ack=False)
    row.update(kw)
    return row


def tables(conns: list[dict], txns: list[dict], segs: list[dict] | None = None
           ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    c = CONNECTIONS.conform(pl.DataFrame(conns, schema={k: CONNECTIONS.schema[k] for k in CONNECTIONS.names}))
    t = TRANSACTIONS.conform(pl.DataFrame(txns, schema={k: TRANSACTIONS.schema[k] for k in TRANSACTIONS.names})) \
        if txns else TRANSACTIONS.empty()
    s = SEGMENTS.conform(pl.DataFrame(segs, schema={k: SEGMENTS.schema[k] for k in SEGMENTS.names})) \
        if segs else None
    return c, t, s
