"""Messages -> TRANSACTIONS rows: each registered protocol's pairing, then columnar timing.

The pairing functions (netdiag/protocols/<name>/pairing.py, through the registry) walk the
messages once and return transaction objects; everything after that is columnar: spans, sizes,
statuses, think times and stalls are numpy/polars over the (transaction, message row, side) links.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from netdiag.protocols.pairing import PairingInput, Txn
from netdiag.protocols.registry import specs, txn_kinds
from netdiag.protocols.spec import TxnKind
from netdiag.schema import TRANSACTIONS
from netdiag.transactions.resend import event_message_pairs, union_seconds
from netdiag.transactions.sink import StreamStats, encode_json

# the order the pairing functions read messages in unless their spec says otherwise
_SORT = ("conn_id", "first_ts_ns", "direction", "stream_offset", "row")


def _status_expr(kinds: tuple[TxnKind, ...]) -> pl.Expr:
    """transactions.status by each TxnKind's rules: the reply's status; 'unanswered' (or
    'cancelled') without a reply unless oneway; a kind's fixed answered status; else the
    pairing's own status."""
    proto = pl.col("protocol")
    has_rsp = pl.col("has_rsp")
    expr = (pl.when(has_rsp & proto.is_in([k.name for k in kinds if k.status_from_reply]))
            .then(pl.col("rsp_status"))
            .when(~has_rsp & proto.is_in([k.name for k in kinds if k.unanswered])
                  & (pl.col("status0").fill_null("") != "oneway"))
            .then(pl.when(pl.col("cancelled")).then(pl.lit("cancelled")).otherwise(pl.lit("unanswered"))))
    for k in kinds:
        if k.answered_status is not None:
            expr = expr.when(proto == k.name).then(pl.lit(k.answered_status))
    return expr.otherwise(pl.col("status0"))


def _protocol_columns(txns: list[Txn]) -> list[pl.Series]:
    """The registered protocols' own columns (their specs' `columns`), from what pairing set."""
    out = []
    for spec in specs():
        for pc in spec.columns:
            # integers are built wide and narrowed by TRANSACTIONS.conform (out of range: null)
            dtype = pl.Int64 if pc.dtype.is_integer() else pc.dtype
            out.append(pl.Series(pc.name, [t.columns.get(pc.name) if t.columns else None for t in txns],
                                 dtype=dtype, strict=False))
    return out


def build_transactions(msgs: pl.DataFrame, details: dict[int, dict], connections: pl.DataFrame,
                       events: pl.DataFrame, stats: StreamStats | None = None,
                       min_ack_rtt_ms: dict[int, float] | None = None) -> pl.DataFrame:
    """Pair the messages into TRANSACTIONS rows (see the package docstring for the rules).

    Each registered protocol's pairing (netdiag.protocols.registry, in registry order) walks its
    messages once; everything after that is
    columnar: spans, sizes, statuses, think times and stalls are numpy/polars over the
    (transaction, message row, side) links, so no per-transaction row of Python values is built.
    """
    stats = stats or StreamStats()
    min_ack_rtt_ms = min_ack_rtt_ms or {}
    m = (msgs.select("conn_id", "direction", "protocol", "msg_type", "request_id", "operation", "status",
                     "first_ts_ns", "stream_offset", "malformed", "size_bytes")
         .with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
         .sort(*_SORT))
    inp = PairingInput(details, stats, connections, msgs, min_ack_rtt_ms)
    for spec in specs():
        part = m.filter(pl.col("protocol") == spec.name)
        if spec.pair_sort != _SORT:
            part = part.sort(*spec.pair_sort)
        spec.pair(part, inp)
    del m, part
    txns: list[Txn] = inp.out
    stats.tls_quiet_rows = inp.quiet
    fts_all = inp.column("first_ts_ns")
    lfr_all = inp.column("last_frame")
    kinds = txn_kinds()
    incomplete_flag = frozenset(k.name for k in kinds if k.incomplete_flag)
    if not txns:
        return TRANSACTIONS.empty()
    n = len(txns)

    # (transaction, message row, side 0 request / 1 response) links
    tk_l: list[int] = []
    row_l: list[int] = []
    side_l: list[int] = []
    for k, t in enumerate(txns):
        if t.req is not None:
            rows = t.req.rows
            tk_l.extend([k] * len(rows))
            row_l.extend(rows)
            side_l.extend([0] * len(rows))
        if t.rsp is not None:
            rows = t.rsp.rows
            tk_l.extend([k] * len(rows))
            row_l.extend(rows)
            side_l.extend([1] * len(rows))
    tk = np.asarray(tk_l, np.int64)
    mrows = np.asarray(row_l, np.int64)
    sides = np.asarray(side_l, np.int64)
    del tk_l, row_l, side_l
    lts_all = msgs["last_ts_ns"].to_numpy()
    offs_all = msgs["stream_offset"].fill_null(-1).to_numpy()
    links = pl.DataFrame({
        "k": tk, "side": sides, "fts": fts_all[mrows], "lts": lts_all[mrows],
        "ffr": msgs["first_frame"].to_numpy()[mrows], "lfr": lfr_all[mrows],
        "size": msgs["size_bytes"].to_numpy()[mrows],
        "dir": msgs["direction"].to_numpy()[mrows], "off": offs_all[mrows],
        "bad": msgs["malformed"].to_numpy()[mrows]})
    # a side spans its messages; the records parsed from one TLS record share its bytes: count once
    spans = links.group_by("k", "side").agg(pl.col("fts").min(), pl.col("lts").max(), pl.col("ffr").min(),
                                           pl.col("lfr").max(), pl.col("bad").any())
    sizes = (links.unique(["k", "side", "dir", "off"], keep="first")
             .group_by("k", "side").agg(pl.col("size").sum()))
    spans = spans.join(sizes, on=["k", "side"], how="left")
    del links, sizes
    base = pl.DataFrame({"k": np.arange(n, dtype=np.int64)})
    names = {"fts": "first_ts", "lts": "last_ts", "ffr": "first_fr", "lfr": "last_fr", "bad": "bad", "size": "bytes"}
    for side, pre in ((0, "rq_"), (1, "rs_")):
        part = spans.filter(pl.col("side") == side).drop("side").rename({a: pre + b for a, b in names.items()})
        base = base.join(part, on="k", how="left")
    base = base.sort("k")
    del spans
    rq_bad = base["rq_bad"].fill_null(False).to_numpy()
    rs_bad = base["rs_bad"].fill_null(False).to_numpy()

    # per-transaction scalars straight from the pairing objects
    has_rsp = np.fromiter((t.rsp is not None for t in txns), np.bool_, n)
    rsp_row = np.fromiter((t.rsp.rows[0] if t.rsp is not None else 0 for t in txns), np.int64, n)
    ans_row = np.fromiter((t.answered_row if t.answered_row is not None else -1 for t in txns), np.int64, n)
    details_json: list[str | None] = []
    for k, t in enumerate(txns):
        detail = {k2: v for k2, v in t.detail.items() if not k2.startswith("_")}
        if t.rsp is not None and t.rsp.open and t.protocol in incomplete_flag:
            detail["response_incomplete"] = True
        if rq_bad[k]:
            detail["request_malformed"] = True
        if rs_bad[k]:
            detail["response_malformed"] = True
        if t.answered_row is not None:  # DNS: which of the retried queries was answered
            detail["answered_query_frame"] = int(lfr_all[t.answered_row])
        details_json.append(encode_json(detail) if detail else None)
    cols = pl.DataFrame({
        "conn_id": [t.conn_id for t in txns],
        "protocol": [t.protocol for t in txns],
        "operation": [t.operation for t in txns],
        "request_id": [t.request_id for t in txns],
        "status0": [t.status for t in txns],
        "cancelled": [bool(t.detail.get("cancelled")) for t in txns],
        "confidence": [t.confidence for t in txns],
        "detail": details_json,
    }, schema_overrides={"conn_id": pl.Int64, "request_id": pl.Int64, "operation": pl.String,
                         "status0": pl.String, "detail": pl.String}, strict=False)
    del details_json
    cols = cols.with_columns(_protocol_columns(txns))
    rsp_status = msgs["status"].gather(rsp_row)
    # the server's time starts at the query the answer belongs to (a DNS retry), else at the request's end
    answered = ans_row >= 0
    think_from = np.where(answered, lts_all[np.maximum(ans_row, 0)], 0)
    ack_rtt = pl.DataFrame({"conn_id": list(min_ack_rtt_ms), "ack_rtt_ms": list(min_ack_rtt_ms.values())},
                           schema={"conn_id": pl.Int64, "ack_rtt_ms": pl.Float64})
    info = (connections.select(pl.col("conn_id").cast(pl.Int64), "client_ip", "client_port", "server_ip",
                               "server_port", pl.col("rtt_server_side_ms").cast(pl.Float64))
            .unique("conn_id", keep="first"))
    df = (pl.concat([base, cols, pl.DataFrame({"has_rsp": has_rsp, "rsp_status": rsp_status,
                                               "answered_row": answered, "think_from": think_from})],
                    how="horizontal")
          .join(info, on="conn_id", how="left").join(ack_rtt, on="conn_id", how="left").sort("k"))
    del base, cols
    rtt_ms = pl.min_horizontal(pl.col("rtt_server_side_ms").fill_nan(None), pl.col("ack_rtt_ms").fill_nan(None))
    think_from_ns = pl.when(pl.col("answered_row")).then(pl.col("think_from")).otherwise(pl.col("rq_last_ts"))
    df = df.with_columns(
        status=_status_expr(kinds),
        request_transfer_s=(pl.col("rq_last_ts") - pl.col("rq_first_ts")) / 1e9,
        response_transfer_s=(pl.col("rs_last_ts") - pl.col("rs_first_ts")) / 1e9,
        server_think_s=(pl.col("rs_first_ts") - think_from_ns) / 1e9 - rtt_ms.fill_null(0.0) / 1e3,
        server_rtt_s=rtt_ms.fill_null(0.0) / 1e3,
        first_frame=pl.coalesce("rq_first_fr", "rs_first_fr"),
        last_frame=pl.coalesce("rs_last_fr", "rq_last_fr"),
    )
    stall = np.zeros(n, np.float64)
    think = df["server_think_s"].to_numpy().astype(np.float64)  # nulls -> NaN
    if mrows.size and events.height:
        ev_idx, mrow = event_message_pairs(msgs, events)
        if ev_idx.size:
            order = np.argsort(mrows, kind="stable")
            tr_row, tr_k, tr_side = mrows[order], tk[order], sides[order]
            # each (event, message) pair fans out to the transactions holding that message
            lo = np.searchsorted(tr_row, mrow, side="left")
            hi = np.searchsorted(tr_row, mrow, side="right")
            cnt = hi - lo
            e_rep = np.repeat(ev_idx, cnt)
            pos = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt))
            # one event may overlap several messages of a transaction: count it once
            tk_u, e_u, side_u = np.unique(np.stack([tr_k[pos], e_rep, tr_side[pos]]), axis=1)
            t0u = events["t0"].to_numpy().astype(np.int64)[e_u]
            t1u = events["t1"].to_numpy().astype(np.int64)[e_u]
            stall = union_seconds(tk_u, t0u, t1u, n)
            # request resends inside the think interval are not the server's time
            req_last = df["rq_last_ts"].fill_null(0).to_numpy().astype(np.int64)
            rsp_first = df["rs_first_ts"].fill_null(0).to_numpy().astype(np.int64)
            rq_side = side_u == 0
            c0 = np.maximum(t0u[rq_side], req_last[tk_u[rq_side]])
            c1 = np.minimum(t1u[rq_side], rsp_first[tk_u[rq_side]])
            think = think - union_seconds(tk_u[rq_side], c0, c1, n)
    df = df.with_columns(retransmission_stall_s=pl.Series(stall),
                         server_think_s=pl.Series(np.maximum(think, 0.0), nan_to_null=True))
    df = df.rename({"rq_first_ts": "req_first_ts_ns", "rq_last_ts": "req_last_ts_ns",
                    "rs_first_ts": "rsp_first_ts_ns", "rs_last_ts": "rsp_last_ts_ns",
                    "rq_bytes": "request_bytes", "rs_bytes": "response_bytes"})
    return TRANSACTIONS.conform(df.select(TRANSACTIONS.names)
                                .sort("req_first_ts_ns", "first_frame", nulls_last=True, maintain_order=True))
