"""GIOP request/reply pairing: by (connection, request direction, request id).

Fragments are joined to their message (GIOP 1.2 by request id, 1.1 to the previous fragmented
message of that direction), LocateRequest/LocateReply pair alike, CancelRequest is noted, a
response expected=False request is 'oneway'. The reply's exception id and forward IOR
(LOCATION_FORWARD, OBJECT_FORWARD, a naming reply's IOR) are kept on the transaction.
"""

from __future__ import annotations

import polars as pl

from netdiag.protocols.pairing import EMPTY, PairingInput, Part, Txn, first_of


def _more_fragments(detail: dict) -> bool:
    return bool(detail.get("more_fragments"))


def pair(m: pl.DataFrame, inp: PairingInput) -> None:
    """GIOP: a Reply/LocateReply answers the Request/LocateRequest of the other direction with its
    request id; fragments join their message (1.2 by request id, 1.1 to the previous fragmented
    message of that direction); CancelRequest marks the open request; a reply whose header the
    capture lost still answers (`_answer_after_gap`)."""
    details, out, stats = inp.details, inp.out, inp.stats
    open_req: dict[tuple[int, int, int], Txn] = {}
    frag_by_id: dict[tuple[int, int, int], Part] = {}
    frag_last: dict[tuple[int, int], Part] = {}
    for row, conn, d, mtype, rid, op, bad in m.select("row", "conn_id", "direction", "msg_type",
                                                      "request_id", "operation", "malformed").iter_rows():
        det = details.get(row, EMPTY)
        if bad and rid is None:  # garbage or a header we could not trust: nothing to pair on
            if det.get("after_capture_gap"):
                _answer_after_gap(open_req, conn, d, row)
            continue
        more = _more_fragments(det)
        if mtype in ("Request", "LocateRequest"):
            part = Part(row, more)
            op = op or ("LocateRequest" if mtype == "LocateRequest" else None)
            t = Txn(conn, "giop", op, rid, part)
            t.detail["msg_type"] = mtype
            if rid is not None:
                key = (conn, d, rid)
                if key in open_req and open_req[key].rsp is None:
                    open_req[key].detail["superseded"] = True  # request id reused before an answer
                open_req[key] = t
            if det.get("response_expected") is False:
                t.status = "oneway"
            out.append(t)
            if more:
                frag_last[(conn, d)] = part
                if rid is not None:
                    frag_by_id[(conn, d, rid)] = part
        elif mtype in ("Reply", "LocateReply"):
            part = Part(row, more)
            t = open_req.pop((conn, 1 - d, rid), None) if rid is not None else None
            if t is None:  # its request was not captured (capture started late, or dropped it)
                stats.unmatched_responses += 1
                t = Txn(conn, "giop", None, rid, None)
                t.detail["request_not_captured"] = True
                out.append(t)
            t.rsp = part
            t.set("exception_id", det.get("exception_id"))
            t.set("forward_host", first_of(det, "forward_host", "ior_host"))
            t.set("forward_port", first_of(det, "forward_port", "ior_port"))
            if det.get("ior_type_id") or det.get("forward_type_id"):
                t.detail["ior_type_id"] = det.get("ior_type_id") or det.get("forward_type_id")
            tls_port = first_of(det, "forward_tls_port", "ior_tls_port")
            if tls_port:
                t.detail["forward_tls_port"] = tls_port
            if more:
                frag_last[(conn, d)] = part
                if rid is not None:
                    frag_by_id[(conn, d, rid)] = part
        elif mtype == "Fragment":
            part = frag_by_id.get((conn, d, rid)) if rid is not None else None
            if part is None:
                part = frag_last.get((conn, d))
            if part is None and rid is not None and (conn, 1 - d, rid) in open_req:
                # a reply whose first fragment (its header) the capture lost: still its answer
                t = open_req.pop((conn, 1 - d, rid))
                t.rsp = Part(row, more)
                t.detail["response_header_not_captured"] = True
                if more:
                    frag_last[(conn, d)] = t.rsp
                    frag_by_id[(conn, d, rid)] = t.rsp
                continue
            if part is None or not part.open:
                stats.unmatched_responses += 1
                continue
            part.rows.append(row)
            part.open = more
            if not more:
                frag_last.pop((conn, d), None)
                if rid is not None:
                    frag_by_id.pop((conn, d, rid), None)
        elif mtype == "CancelRequest":
            t = open_req.get((conn, d, rid)) if rid is not None else None
            if t is not None:
                t.detail["cancelled"] = True


def _answer_after_gap(open_req: dict[tuple[int, int, int], Txn], conn: int, d: int, row: int) -> None:
    """Bytes after a capture gap that no parser could frame, in the answering direction of a GIOP
    connection with a request still open: the rest of its reply, whose header the capture lost. The
    reply is in the file, so the request is answered (status unknown). With several requests open
    the oldest is taken (a synchronous client has one) and the pairing is marked inferred."""
    cands = [(k, t) for k, t in open_req.items() if k[0] == conn and k[1] == 1 - d and t.rsp is None
             and t.status != "oneway"]
    if not cands:
        return
    key, t = min(cands, key=lambda kt: kt[1].req.rows[0] if kt[1].req else 0)
    del open_req[key]
    t.rsp = Part(row)
    t.detail["response_header_not_captured"] = True
    if len(cands) > 1:
        t.confidence = "inferred"
