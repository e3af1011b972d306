"""HTTP/1.x request/response pairing: in order per connection; the request's sequence number on
the connection is the transaction's request id."""

from __future__ import annotations

import polars as pl

from netdiag.protocols.pairing import EMPTY, PairingInput, Part, Txn


def pair(m: pl.DataFrame, inp: PairingInput) -> None:
    """HTTP/1.x: responses answer the connection's requests in order (pipelining); 1xx interim
    answers (but 101) are skipped; the rest of a response whose status line the capture lost
    answers the oldest open request."""
    details, out, stats = inp.details, inp.out, inp.stats
    queues: dict[int, list[Txn]] = {}
    seq: dict[int, int] = {}
    for row, conn, d, mtype, op, _status in m.select("row", "conn_id", "direction", "msg_type",
                                                     "operation", "status").iter_rows():
        det = details.get(row, EMPTY)
        if mtype == "request" and d == 0:
            seq[conn] = seq.get(conn, 0) + 1
            t = Txn(conn, "http", op, seq[conn], Part(row))
            t.set("user_agent", det.get("user_agent"))
            if det.get("host"):
                t.detail["host"] = det.get("host")
            out.append(t)
            queues.setdefault(conn, []).append(t)
        elif d == 1 and mtype != "response" and det.get("after_capture_gap"):
            # the rest of a response whose status line the capture lost: it answers the oldest open request
            q = queues.get(conn)
            if q:
                t = q.pop(0)
                t.rsp = Part(row)
                t.detail["response_header_not_captured"] = True
        elif mtype == "response" and d == 1:
            code = _status
            if code is not None and code.isdigit() and 100 <= int(code) < 200 and code != "101":
                continue  # interim answer: the final response follows
            q = queues.get(conn)
            if not q:
                stats.unmatched_responses += 1
                continue
            t = q.pop(0)
            t.rsp = Part(row)
