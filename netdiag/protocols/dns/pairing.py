"""DNS query/answer pairing: by client socket, id and question; resends folded into one lookup."""

from __future__ import annotations

import polars as pl

from netdiag.protocols.pairing import EMPTY, PairingInput, Part, Txn

# A DNS question asked again within this many seconds, still unanswered, may be a retry (pair).
DNS_RETRY_WINDOW_S = 30.0
# The shortest resend timer of common resolvers (Windows 1 s; glibc and Java JNDI at least 1 s), less
# slack: the same question from a new socket with a new id this long after the previous try is a retry.
DNS_RETRY_MIN_S = 0.9


def pair(m: pl.DataFrame, inp: PairingInput) -> None:
    """DNS: an answer pairs with the query of its own client socket, id and question (`conn_id` is
    the socket pair: one UDP flow or one TCP connection); a retry folds into the lookup it repeats.

    A query is a retry of an earlier, still unanswered query of the same question from the same
    client address to the same server, asked less than DNS_RETRY_WINDOW_S after the lookup began,
    when it comes from the same socket (glibc resends on its socket, same id), or from a new socket
    with the same id (dig, Java's JNDI provider, glibc `single-request-reopen`), or from a new socket
    with a new id at least DNS_RETRY_MIN_S after the previous try (a resolver's shortest resend
    timer: Windows 1 s, glibc/JNDI >= 1 s). Queries of the same question from different sockets
    closer together than that are different askers (20 processes of one workstation starting at
    once, captures/lab/storm.pcap) and stay separate lookups.
    """
    details, out, stats = inp.details, inp.out, inp.stats
    conns = {r[0]: r[1:] for r in inp.connections.filter(pl.col("conn_id").is_in(m["conn_id"].unique().implode()))
             .select("conn_id", "client_ip", "client_port", "server_ip", "server_port").iter_rows()}
    by_socket: dict[tuple, Txn] = {}          # (conn, id, question) -> lookup with that query
    by_socket_id: dict[tuple, Txn] = {}       # (conn, id) -> lookup (answers without a question)
    open_q: dict[tuple, list[Txn]] = {}       # (client ip, server ip, question) -> unanswered lookups
    for row, conn, mtype, rid, op, ts in m.select("row", "conn_id", "msg_type", "request_id",
                                                  "operation", "first_ts_ns").iter_rows():
        det = details.get(row, EMPTY)
        cinfo = conns.get(conn, (None, None, None, None))
        qkey = ((op or "").lower(), str(det.get("qtype")), str(det.get("qclass")))
        if mtype == "query":
            key = (cinfo[0], cinfo[2], qkey)
            pending = open_q.setdefault(key, [])
            t = None
            for cand in reversed(pending):
                if cand.rsp is not None or (ts - cand.detail["_first_ts"]) / 1e9 >= DNS_RETRY_WINDOW_S:
                    continue
                socks = cand.detail["_queries"]
                if any(c == conn for c, _, _, _ in socks) or any(q == rid for _, q, _, _ in socks) \
                        or (ts - socks[-1][3]) / 1e9 >= DNS_RETRY_MIN_S:
                    t = cand
                    break
            if t is not None:
                t.detail["retries"] += 1
                t.detail["_queries"].append((conn, rid, row, ts))
            else:
                t = Txn(conn, "dns", op, rid, Part(row))
                t.detail.update(qtype=det.get("qtype"), retries=0, _first_ts=ts, _queries=[(conn, rid, row, ts)])
                pending.append(t)
                out.append(t)
            by_socket[(conn, rid, qkey)] = t
            by_socket_id[(conn, rid)] = t
        elif mtype == "response":
            t = by_socket.get((conn, rid, qkey)) or by_socket_id.get((conn, rid))
            if t is None:
                stats.unmatched_responses += 1
                continue
            if t.rsp is not None:  # a second answer: the server answered a retry as well
                t.detail["late_answers"] = t.detail.get("late_answers", 0) + 1
                continue
            t.rsp = Part(row)
            t.answered_row = next(r for c, q, r, _ in reversed(t.detail["_queries"]) if c == conn and q == rid)
            if det.get("answers"):
                t.detail["answers"] = det["answers"][:8]
            pending = open_q.get((cinfo[0], cinfo[2], qkey))
            if pending and t in pending:
                pending.remove(t)
