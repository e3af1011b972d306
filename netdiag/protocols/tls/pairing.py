"""TLS pairing: one 'tls' transaction per handshake, 'turn' transactions for application data
nobody could read (confidence 'inferred'): a turn is the client's records up to the server's
records that follow them. In TLS 1.3 without keys, session tickets, key updates and alerts are
inferred and are neither requests nor answers (`_tls13_non_answers`, docs/tls.md).
"""

from __future__ import annotations

import polars as pl

from netdiag.protocols.pairing import EMPTY, PairingInput, Part, Txn, server_rtt_ms

# TLS 1.3 post-handshake inference without keys (docs/tls.md): a NewSessionTicket record is at
# most this big (OpenSSL ~250 B in the lab; other stacks some hundreds: 2 KiB leaves room),
TICKET_MAX_RECORD_BYTES = 2048
# a server sends at most this many tickets after a handshake (OpenSSL 2 by default, most others 1),
MAX_TICKETS = 4
# and the first one leaves the server this soon after it read the client's Finished.
TICKET_REACTION_S = 0.020


def _tls13_non_answers(rows: list[tuple], fin_idx: int, tag: int, rtt_s: float) -> dict[int, str]:
    """Which TLS 1.3 ApplicationData records after the client's Finished are not answers, without keys.

    rows: (row, direction, msg_type, size_bytes, first_ts_ns, decrypted) of one connection, in
    time order; fin_idx: index of the client's Finished (its first encrypted record). Returns
    {row: "ticket" | "alert" | "key_update"} (inferred; the rules and their limits: docs/tls.md).
    """
    out: dict[int, str] = {}
    app = [i for i in range(fin_idx + 1, len(rows)) if rows[i][2] == "ApplicationData" and not rows[i][5]]
    last_of = {}
    for i in app:
        last_of[rows[i][1]] = i
    for i in app:
        data = rows[i][3] - 5
        if data == tag + 3 and last_of.get(rows[i][1]) == i:
            out[rows[i][0]] = "alert"          # 2-byte alert (close_notify) + type: its sender's last record
        elif data == tag + 6:
            out[rows[i][0]] = "key_update"     # 5-byte KeyUpdate + type
    # tickets: the server's first record after the client's Finished, soon after it and ticket-sized,
    # and the server records of exactly its size that follow (a second ticket, maybe held by Nagle)
    t_fin = rows[fin_idx][4]
    server = [i for i in app if rows[i][1] == 1 and rows[i][0] not in out]
    if not server:
        return out
    first = server[0]
    size = rows[first][3]
    if size > TICKET_MAX_RECORD_BYTES or (rows[first][4] - t_fin) / 1e9 > rtt_s + TICKET_REACTION_S:
        return out
    tickets = [first]
    for i in server[1:]:
        if rows[i][3] != size or len(tickets) >= MAX_TICKETS:
            break
        tickets.append(i)
    # "tickets" that came while a request was pending, with no other server record after them
    # before the client spoke again (or ever), were that request's answer: a server that sends no
    # ticket and answers with records of one size
    first_req = next((i for i in app if rows[i][1] == 0 and rows[i][0] not in out), None)
    after_req = [i for i in tickets if first_req is not None and i > first_req]
    if after_req:
        j0 = after_req[0]
        next_client = next((i for i in app if rows[i][1] == 0 and i > j0 and rows[i][0] not in out), len(rows))
        if not any(j0 < i < next_client for i in server if i not in tickets):
            tickets = [i for i in tickets if i < j0]
    for i in tickets:
        out[rows[i][0]] = "ticket"
    return out


def pair(m: pl.DataFrame, inp: PairingInput) -> None:
    """TLS handshakes and the turns of application data without keys (module docstring, docs/tls.md).

    Returns the message rows that are post-handshake messages or alerts (decrypted, or inferred in
    TLS 1.3): not answers, not requests, and nobody waits for them (the budget's Nagle rule)."""
    details, out = inp.details, inp.out
    if m.height == 0:
        return
    first_ts = inp.column("first_ts_ns")
    last_frame = inp.column("last_frame")
    rtt_ms: dict[int, float] = {}
    for cid, syn_rtt in inp.connections.filter(pl.col("conn_id").is_in(m["conn_id"].unique().implode())).select(
            "conn_id", "rtt_server_side_ms").iter_rows():
        rtt_ms[cid] = server_rtt_ms(syn_rtt, inp.min_ack_rtt_ms.get(cid))
    quiet = inp.quiet
    for conn, g in m.group_by("conn_id", maintain_order=True):
        conn_id = conn[0]
        hs: Txn | None = None
        ccs = [False, False]
        fin = [False, False]
        in_hs = False
        hs_start = 0
        tls13 = False
        tag = 16
        pre: list[int] = []
        hs_rows: set[int] = set()
        rows = g.select("row", "direction", "msg_type", "status", "malformed", "size_bytes").rows()
        # pass 1: handshakes; where each TLS 1.3 handshake's client Finished sits
        fin_at: list[int] = []
        for idx, (row, d, mtype, status, _malformed, _size) in enumerate(rows):
            det = details.get(row, EMPTY)
            if mtype == "HandshakeFragment" and d == 0 and not in_hs:
                pre.append(row)  # a ClientHello spanning records: its first records come first
                continue
            if mtype == "ClientHello" and d == 0 and in_hs and hs is not None and hs.detail.get("hello_retry"):
                pass  # the second ClientHello after a HelloRetryRequest belongs to the same handshake
            elif mtype == "ClientHello" and d == 0:
                hs = Txn(conn_id, "tls", "handshake", None, Part(row))
                hs.req.rows[:0] = pre
                if det.get("sni"):
                    hs.operation = f"handshake {det['sni']}"
                    hs.detail["sni"] = det["sni"]
                hs.detail["phases"] = []
                hs_start = int(first_ts[row])
                hs.status = "incomplete"
                out.append(hs)
                in_hs, ccs, fin, tls13, pre = True, [False, False], [False, False], False, []
            if in_hs and hs is not None:
                if mtype != "ClientHello" or row not in hs.req.rows:
                    if d == 0 and hs.rsp is None:
                        hs.req.rows.append(row)
                    elif hs.rsp is None:
                        hs.rsp = Part(row)
                    else:
                        hs.rsp.rows.append(row)
                hs.detail["phases"].append([mtype, d, round((int(first_ts[row]) - hs_start) / 1e9, 6),
                                            int(last_frame[row])])
                hs_rows.add(row)
                hs_rows.update(hs.req.rows)
                if mtype == "ServerHello":
                    hs.set("tls_version", det.get("chosen_version"))
                    hs.detail["resumed"] = det.get("resumed")
                    tls13 = det.get("chosen_version") == "TLS1.3"
                    tag = 8 if det.get("cipher_suite") == "0x1305" else 16
                elif mtype == "ChangeCipherSpec":
                    ccs[d] = True
                elif mtype == "Finished" and ccs[d]:
                    fin[d] = True
                elif mtype == "HelloRetryRequest":
                    hs.detail["hello_retry"] = True
                elif mtype == "CertificateRequest":
                    hs.detail["client_certificate_requested"] = True
                elif mtype == "Alert":
                    hs.status = f"alert:{status}"
                    in_hs = False
                    continue
                # TLS 1.3: the client's first encrypted record is its Finished (decrypted: "Finished")
                done = (tls13 and d == 0 and mtype in ("ApplicationData", "Finished")) or (not tls13 and all(fin))
                if done:
                    hs.status = "ok"
                    in_hs = False
                    if tls13:
                        fin_at.append(idx)
        # TLS 1.3 without keys: tickets, alerts and key updates inferred (see _tls13_non_answers)
        non_answer: dict[int, str] = {}
        if fin_at:
            ctx_rows = [(r[0], r[1], r[2], r[5], int(first_ts[r[0]]),
                         bool(details.get(r[0], EMPTY).get("decrypted"))) for r in rows]
            rtt_s = rtt_ms.get(conn_id, 0.0) / 1e3
            bounds = fin_at + [len(rows)]
            for k, fi in enumerate(fin_at):
                part = ctx_rows[:bounds[k + 1]]
                non_answer.update(_tls13_non_answers(part, fi, tag, rtt_s))
            if hs is not None and non_answer:
                kinds = list(non_answer.values())
                hs.detail["post_handshake_inferred"] = {k: kinds.count(k) for k in sorted(set(kinds))}
        # pass 2: turns of application data nobody could read
        turn: Txn | None = None
        turns = 0
        for row, d, mtype, _status, malformed, _size in rows:
            det = details.get(row, EMPTY)
            if (mtype in ("NewSessionTicket", "KeyUpdate") and det.get("decrypted")) or \
                    (mtype == "Alert" and row not in hs_rows):   # TLS <= 1.2 alerts have their own type
                quiet.append(row)
                continue
            if row in non_answer:
                quiet.append(row)
                continue
            if row in hs_rows or mtype != "ApplicationData" or malformed or det.get("plaintext_protocol"):
                continue
            if d == 0:
                if turn is None or turn.rsp is not None:
                    turns += 1
                    turn = Txn(conn_id, "turn", "tls application data", turns, Part(row), "inferred")
                    out.append(turn)
                else:
                    turn.req.rows.append(row)
            elif turn is not None:
                if turn.rsp is None:
                    turn.rsp = Part(row)
                else:
                    turn.rsp.rows.append(row)
