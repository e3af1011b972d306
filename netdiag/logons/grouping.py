"""Grouping connections into logons: chain them per client process, then cut the logons out.

`group_logons` places each TCP connection and DNS lookup to EPJ servers into the chain of the
client process that made it (`netdiag.logons.chains`: processes, not addresses, since Citrix,
terminal servers and NAT put many users behind one address) and cuts each chain into logons
with their start, end and outcome (`netdiag.logons.ends`: the profile's start/end rules). A
chain that only ever talked to the naming service is not a logon (`not_logons`); a logon cut by
the capture's start or end is `incomplete` (see _cut_logons).
"""

from __future__ import annotations

import bisect
import math
import statistics
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from netdiag.logons.chains import (
    CUT_AT_START_NS,
    FAILED_CONNECT_STATES,
    JNLP_RE,
    LEAD_IN_ROLES,
    OPEN_STATES,
    Chain,
    Item,
    attach_dns,
    build_items,
    referral_matching,
    relevant_connections,
)
from netdiag.logons.ends import (
    chain_requests,
    end_horizon,
    end_of,
    end_of_connects,
    last_step_failed,
    logon_outcome,
    logon_windows,
    only_naming,
    still_under_way,
)
from netdiag.profile import Profile


@dataclass
class Grouping:
    """Result of grouping: logon rows (without budget) and the item -> logon assignment."""

    logons: pl.DataFrame             # one row per logon (see LOGON_FRAME_COLUMNS)
    members: pl.DataFrame            # logon_idx, conn_id, kind, txn_row (-1 for none)
    orphans: int                     # server connections that joined no logon
    relevant_connections: int        # connections/questions considered (to EPJ servers, DNS)
    not_logons: list[dict] = field(default_factory=list)   # sessions that are not logons (reason)
    unassigned_requests: int = 0     # requests on logon processes' connections outside every logon
    unassigned_dns: int = 0          # DNS questions no logon process used


def group_logons(connections: pl.DataFrame, transactions: pl.DataFrame, profile: Profile, *,
                 relevant: pl.DataFrame | None = None, bounds: tuple[int, int] | None = None) -> Grouping:
    """Chain items per client process and cut logons out of the chains (see module docstring).

    Everything here is per client address except which servers are EPJ servers and the
    capture's first and last packet: a caller that groups some client addresses at a time
    (netdiag.partitions) passes `relevant` (relevant_connections of all the connections,
    restricted to those addresses) and `bounds` (of all the connections)."""
    conns = relevant_connections(connections, transactions, profile) if relevant is None else relevant
    conns, lone, lone_orphans = _lone_failed_connects(conns, transactions, profile)
    all_items = build_items(conns, transactions)
    tcp_items = [it for it in all_items if it.kind == "tcp"]
    dns_items = [it for it in all_items if it.kind == "dns"]
    quiet_ns = int(profile.start_quiet_s * 1e9)
    lead_ns = int(profile.lead_in_s * 1e9)
    chains_by_ip: dict[str, list[Chain]] = {}
    open_by_ip: dict[str, list[Chain]] = {}    # chains not yet quiet for start_quiet_s (the candidates)
    chains: list[Chain] = []
    item_chain: list[tuple[Item, Chain | None]] = []
    # plain lists: the loop reads single cells, which a polars Series makes slow
    txs = {c: transactions[c].to_list() for c in ("protocol", "operation", "status", "req_first_ts_ns",
                                                  "req_last_ts_ns", "rsp_first_ts_ns", "rsp_last_ts_ns", "detail")}
    followed = referral_matching(tcp_items, quiet_ns)
    chain_of_conn: dict[int, Chain] = {}

    # chain_id -> (items, bootstrap, asked at, horizon) of its last "not ended" answer (end_horizon)
    end_memo: dict[int, tuple[int, int, int, float]] = {}

    def logon_ended(ch: Chain, t: int) -> bool:
        if ch.bootstrap_ns is None:
            return False
        if not ch.ended:   # once ended (end rule met before t), ended for every later t
            if not ch._n_txn:
                end = end_of_connects(ch, profile, t)
                ch.ended = end is not None and end[0] < t
                return ch.ended
            memo = end_memo.get(ch.chain_id)
            if memo is not None and memo[0] == len(ch.items) and memo[1] == ch.bootstrap_ns and (
                    memo[2] <= t < memo[3]):
                return False   # nothing end_of compares with lies between the last ask and t
            end = end_of(ch, txs, profile, until=t)
            ch.ended = end is not None and end[0] < t
            if ch.ended:
                end_memo.pop(ch.chain_id, None)
            else:
                end_memo[ch.chain_id] = (len(ch.items), ch.bootstrap_ns, t, end_horizon(ch, txs, profile, t))
        return ch.ended

    def has_open_connection(ch: Chain, t: int) -> bool:
        return any(x.kind == "tcp" and x.start_ns <= t <= x.last_ns for x in ch.items)

    def new_chain(ip: str) -> Chain:
        ch = Chain(len(chains), ip)
        chains.append(ch)
        chains_by_ip.setdefault(ip, []).append(ch)
        open_by_ip.setdefault(ip, []).append(ch)
        return ch

    def fifo(cands: list[Chain], t: int) -> Chain:
        # the chain that has waited longest since its last answer acts first
        return min(cands, key=lambda c: (c.last_delivery_before(t), c.chain_id))

    for it in tcp_items:
        t = it.start_ns
        pool = open_by_ip.get(it.client_ip, [])
        live = [c for c in pool if t - c.last_activity_before(t) <= quiet_ns]
        if len(live) < len(pool):   # time only moves on: a chain quiet this long stays quiet
            open_by_ip[it.client_ip] = live
        active = [c for c in live if not logon_ended(c, t)]
        chosen: Chain | None = None
        conf = "high"
        # (a bootstrap connection already open when the capture began is no new process's start
        # while one of that address's logons is in progress: it joins like any other connection)
        is_bootstrap = (it.role == "bootstrap" and (it.syn_seen or not active)) or (
            profile.start_rule == "any" and not active)
        # 1. an IOR referral (naming reply, LOCATION_FORWARD) names this host:port
        refs = [(r, c) for c in live if (r := c.open_referral(t, it.server_ip, it.server_port)) is not None]
        if refs:
            ref, chosen = min(refs, key=lambda rc: rc[0][0])
            by_end = chain_of_conn.get(followed.get(it.conn_id, -1))
            if len(refs) > 1 and by_end is not None:
                ref, chosen = next(((r, c) for r, c in refs if c is by_end), (ref, chosen))
            chosen.used_referrals.add(ref)
            conf = "high" if len(refs) == 1 else "medium"
        elif is_bootstrap:
            # 2. a bootstrap connection: after lead-in traffic, or a re-bootstrap after a failure
            lead = [c for c in live if c.bootstrap_ns is None and c.idle_at(t) and t - c.items[0].start_ns <= lead_ns]
            retry = [c for c in active if c.bootstrap_ns is not None and last_step_failed(c, txs, t)]
            cands = lead or retry
            if cands:
                chosen = fifo(cands, t)
                conf = "high" if len(cands) == 1 else "low"
                for c in cands if len(cands) > 1 else ():
                    c.lower_confidence("low")   # the ones left over may have been swapped too
        elif it.role in LEAD_IN_ROLES:
            # 3. JNLP/jar HTTP: a process starting, or the one process on this address still connected.
            #    Fetching the .jnlp is the first thing Java Web Start does: always a new process.
            starts_process = bool(it.first_operation and JNLP_RE.search(it.first_operation))
            lead = [c for c in live if c.bootstrap_ns is None and c.idle_at(t)]
            connected = [c for c in active if has_open_connection(c, t)]
            if not starts_process and lead:
                chosen = fifo(lead, t)
                conf = "high" if len(lead) == 1 else "low"
                for c in lead if len(lead) > 1 else ():
                    c.lower_confidence("low")
            elif not starts_process and len(connected) == 1 and len(active) == 1:
                chosen = connected[0]
        else:
            # 4. any other connection of a logon in progress
            idle = [c for c in active if c.idle_at(t)]
            if len(active) == 1:
                chosen = active[0]
            elif idle:
                chosen = fifo(idle, t)
                conf = "medium" if len(idle) == 1 else "low"
            elif active:
                chosen = max(active, key=lambda c: c.last_delivery_before(t))
                conf = "low"
        if chosen is None and (is_bootstrap or it.role in LEAD_IN_ROLES):
            chosen = new_chain(it.client_ip)
        if chosen is not None:
            if any(c is not chosen for c in active):
                chosen.lower_confidence(conf)
            chosen.add(it)
            chain_of_conn[it.conn_id] = chosen
            if is_bootstrap and chosen.bootstrap_ns is None:
                chosen.bootstrap_ns = t
        item_chain.append((it, chosen))

    attach_dns(dns_items, chains_by_ip, txs, lead_ns, item_chain)
    if bounds is None:
        bounds = capture_bounds(connections)
    grouping = _cut_logons(chains, item_chain, conns, txs, profile, lead_ns, bounds, lone)
    grouping.orphans += lone_orphans
    grouping.relevant_connections += lone_orphans + lone.height
    return grouping


def _lone_failed_connects(conns: pl.DataFrame, transactions: pl.DataFrame, profile: Profile
                          ) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """Split off the failed connects that are alone on their client address: (the other
    connections, the logon rows of the lone ones, how many lone ones join no logon).

    A failed connect (FAILED_CONNECT_STATES or no SYN/ACK, nothing answered, no request) from an
    address with no other connection to an EPJ server and no DNS question is a chain of its own:
    a logon start (a bootstrap port, or any port with `start = "any"`) makes a one-connection
    logon that ends, failed, at its last packet (quiet rule); any other one joins no logon. A SYN
    flood of spoofed sources is made of nothing else, so these rows are computed as columns here,
    with exactly what the chaining loop and _cut_logons give such a chain, and never become an
    Item and a Chain each (a few hundred bytes of Python objects per connection).
    """
    start = pl.coalesce("syn_ts_ns", "first_ts_ns")
    with_app = transactions.filter(pl.col("protocol") != "dns")["conn_id"].unique().cast(pl.Int64)
    dns_ips = transactions.filter(pl.col("protocol") == "dns")["client_ip"]
    ip_n = pl.concat([conns["client_ip"], dns_ips.cast(pl.String)]).value_counts(name="_n")
    failed = ((pl.col("state").is_in(list(FAILED_CONNECT_STATES)).fill_null(False)
               | (pl.col("syn_ts_ns").is_not_null() & pl.col("synack_ts_ns").is_null()))
              & ~(pl.col("bytes_s2c").fill_null(0) > 0))
    lone_mask = (failed & ~pl.col("conn_id").cast(pl.Int64).is_in(with_app.implode())
                 & (pl.col("_n") == 1) & (start <= pl.col("last_ts_ns")))
    marked = conns.join(ip_n, on="client_ip", how="left", maintain_order="left").with_columns(_lone=lone_mask)
    rest = marked.filter(~pl.col("_lone")).drop("_n", "_lone")
    lone = marked.filter(pl.col("_lone"))
    starts = (pl.col("role") == "bootstrap") | pl.lit(profile.start_rule == "any")
    orphans = int(lone.height - lone.select(starts.sum()).item())
    return rest, lone.filter(starts), orphans


def capture_bounds(connections: pl.DataFrame) -> tuple[int, int] | None:
    """First and last packet time of the connections (None without any): the capture's start and end."""
    if connections.height and connections["first_ts_ns"].null_count() < connections.height:
        return int(connections["first_ts_ns"].min()), int(connections["last_ts_ns"].max())
    return None


def _cut_logons(chains: list[Chain], item_chain: list[tuple[Item, Chain | None]], conns: pl.DataFrame,
                txs: dict[str, list], profile: Profile, lead_ns: int,
                bounds: tuple[int, int] | None = None, lone: pl.DataFrame | None = None) -> Grouping:
    """Cut each chain into its logons (logon_windows) and build the logon rows and members.

    A logon cut by the capture's start (its first connection's handshake is not in the capture,
    which began within CUT_AT_START_NS of it) or end (the capture ended within end_quiet_s of the
    chain's last packet, a connection of the chain still open, and neither the end reply of an
    end rule nor a failure closed the logon: see still_under_way) is `incomplete`. A chain that
    only talked to the naming service is not a logon (not_logons). Connections and requests that
    end up in no logon are counted (orphans, unassigned_requests). `lone`: the connections of
    one-connection logons split off as columns (_lone_failed_connects), merged in here.
    """
    rows: list[dict] = []
    row_keys: list[tuple[int, int]] = []   # per row: its chain's first connection (start, conn_id)
    members: list[tuple[int, int, str, int]] = []
    not_logons: list[dict] = []
    orphans = sum(1 for it, ch in item_chain if it.kind == "tcp" and (ch is None or ch.bootstrap_ns is None))
    quiet_ns = int(profile.end_quiet_s * 1e9)
    cap_first, cap_last = bounds if bounds is not None else (None, None)
    assigned: set[int] = set()     # request rows inside a logon (or a not-a-logon session)
    relevant: set[int] = set()     # request rows on the connections of chains with a logon start
    for ch in chains:
        if ch.bootstrap_ns is None:
            continue
        reqs = chain_requests(ch, txs)
        chain_rows = [q.row for q in reqs]
        # every row of the chain by request start, to take each logon's window by bisection
        by_q0 = sorted((q0, r) for it in ch.items for r in it.txn_rows
                       if (q0 := txs["req_first_ts_ns"][r]) is not None)
        q0s = [x[0] for x in by_q0]

        def rows_in(lo: int | None, hi: int | None, by_q0: list = by_q0, q0s: list = q0s) -> set[int]:
            a = 0 if lo is None else bisect.bisect_left(q0s, lo)
            b = len(q0s) if hi is None else bisect.bisect_left(q0s, hi)
            return {r for _q, r in by_q0[a:b]}

        relevant.update(chain_rows)
        chain_last = max(it.last_ns for it in ch.items)
        at_capture_end = cap_last is not None and cap_last - chain_last <= quiet_ns
        still_open = any(it.kind == "tcp" and it.state in OPEN_STATES and it.last_ns >= chain_last - quiet_ns
                         for it in ch.items)
        naming_only, naming_ops = only_naming(ch, txs)
        if naming_only and not (at_capture_end and still_open):
            tcp = [it for it in ch.items if it.kind == "tcp"]
            reason = ("naming service only (" + ", ".join(sorted(set(naming_ops))) + "): never went on to an "
                      "application server" if naming_ops else "a connection to the naming port that carried no request")
            not_logons.append({"client_ip": ch.client_ip, "server_ip": tcp[0].server_ip,
                               "start_ts_ns": min(it.start_ns for it in ch.items), "end_ts_ns": chain_last,
                               "conn_ids": sorted(it.conn_id for it in tcp), "requests": len(naming_ops),
                               "reason": reason})
            assigned.update(chain_rows)
            continue
        windows = logon_windows(ch, txs, profile, reqs, rows_in)
        boot_item = next((it for it in ch.items if it.start_ns == ch.bootstrap_ns and it.kind == "tcp"), None)
        prev_end: int | None = None
        for k, (lo, hi, end) in enumerate(windows):
            last_window = k == len(windows) - 1
            cut_end = False
            if end is None:
                # nothing answered after the bootstrap in this window: a logon the capture cut short,
                # else nothing to report (counted below as requests/connections in no logon)
                if not (last_window and at_capture_end and still_open):
                    continue
                end_ts, how, end_row, cut_end = chain_last, "capture_end", None, True
            else:
                end_ts, how, end_row = end
            if k == 0:
                items = [it for it in ch.items if it.start_ns >= ch.bootstrap_ns - lead_ns and it.start_ns <= end_ts]
            else:
                win_rows = rows_in(lo, end_ts + 1)
                items = [it for it in ch.items if it.start_ns <= end_ts and (
                    (prev_end is not None and it.start_ns > prev_end) or not win_rows.isdisjoint(it.txn_rows))]
            if not items:
                continue
            if k == 0:
                first_ts = min(it.start_ns for it in items)
            else:
                first_ts = min([lo or end_ts] + [it.start_ns for it in items
                                                 if prev_end is not None and prev_end < it.start_ns <= (lo or end_ts)])
            # one-way client-side delay: the client sent its first packet that long before we saw it
            rtts = [it.rtt_client_side_ms for it in items if it.kind == "tcp" and it.rtt_client_side_ms is not None
                    and not math.isnan(it.rtt_client_side_ms)]
            half_rtt_ns = int(float(statistics.median(rtts)) / 2 * 1e6) if rtts else 0   # = np.median, faster on few
            outcome = logon_outcome(ch, items, txs, how, end_row, end_ts, profile,
                               rows_in(lo, hi) if len(windows) > 1 else None)
            if last_window and at_capture_end and still_open and not cut_end:
                cut_end = cap_last - end_ts < quiet_ns and still_under_way(reqs, how, lo, end_ts)
                if cut_end:
                    end_ts = max(end_ts, chain_last)
            # (a connection opened before the capture whose first request is the profile's
            # start_operation starts the logon right there: nothing of it was cut)
            first_req = next((q for q in reqs if lo is None or q.q0 >= lo), None)
            starts_here = (profile.start_operation is not None and first_req is not None
                           and first_req.protocol == "giop" and profile.start_operation.search(first_req.operation))
            cut_start = k == 0 and cap_first is not None and not starts_here and any(
                it.kind == "tcp" and not it.syn_seen and it.start_ns - cap_first <= CUT_AT_START_NS
                and it.start_ns == first_ts for it in items)
            if cut_start or cut_end:
                outcome = "incomplete"
                if cut_end:
                    how = "capture_end"
            logon_idx = len(rows)
            server_ip = (boot_item or items[0]).server_ip
            row_keys.append(next((x.start_ns, x.conn_id) for x in ch.items if x.kind == "tcp"))
            rows.append({
                "logon_idx": logon_idx,
                "client_ip": ch.client_ip,
                "server_ip": server_ip,
                "start_ts_ns": first_ts - half_rtt_ns,
                "end_ts_ns": int(end_ts) + half_rtt_ns,
                "first_seen_ts_ns": first_ts,
                "last_seen_ts_ns": int(end_ts),
                "half_rtt_client_ns": half_rtt_ns,
                "outcome": outcome,
                "end_rule": how,
                "separation_confidence": ch.confidence,
            })
            # each request belongs to the one logon whose window it starts in
            wrows = rows_in(lo, hi) if len(windows) > 1 else None
            for it in items:
                if it.kind == "tcp" or not it.txn_rows:   # a connection, or a DNS flow without a transaction
                    members.append((logon_idx, it.conn_id, it.kind, -1))
                for r in it.txn_rows if wrows is None else sorted(wrows.intersection(it.txn_rows)):
                    members.append((logon_idx, it.conn_id, it.kind, r))
                    q0 = txs["req_first_ts_ns"][r]
                    if q0 is not None and q0 <= end_ts:
                        assigned.add(r)
            prev_end = int(end_ts)
    if lone is not None and lone.height:
        logons, mem = _merge_lone(rows, members, row_keys, lone, profile, bounds)
    else:
        # number logons by start time (stable ids for a given capture and profile)
        order = sorted(range(len(rows)), key=lambda i: (rows[i]["start_ts_ns"], rows[i]["client_ip"]))
        remap = {old: new for new, old in enumerate(order)}
        rows = [dict(rows[i], logon_idx=remap[i]) for i in order]
        members = [(remap[m[0]], *m[1:]) for m in members]
        logons = pl.DataFrame(rows, schema=_LOGON_ROW)
        mem = pl.DataFrame(members, schema=_MEMBER_ROW, orient="row")
    # members in logon order (each logon's own in the order they were taken): the same order
    # whichever client addresses were grouped together
    mem = mem.sort("logon_idx", maintain_order=True)
    not_logons.sort(key=lambda d: d["start_ts_ns"])
    # a process that got a logon start but no logon (nothing answered after its bootstrap, long
    # before the capture's end): its connections are in no logon, like the orphans
    in_logon = {m[1] for m in members if m[2] == "tcp"}
    orphans += sum(1 for ch in chains if ch.bootstrap_ns is not None for it in ch.items
                   if it.kind == "tcp" and it.conn_id not in in_logon
                   and not any(it.conn_id in d["conn_ids"] for d in not_logons))
    unassigned_dns = sum(1 for it, ch in item_chain if it.kind == "dns" and ch is None)
    return Grouping(logons, mem, orphans, len(item_chain), not_logons=not_logons,
                    unassigned_requests=len(relevant - assigned), unassigned_dns=unassigned_dns)


_LOGON_ROW = {"logon_idx": pl.Int64, "client_ip": pl.String, "server_ip": pl.String, "start_ts_ns": pl.Int64,
              "end_ts_ns": pl.Int64, "first_seen_ts_ns": pl.Int64, "last_seen_ts_ns": pl.Int64,
              "half_rtt_client_ns": pl.Int64, "outcome": pl.String, "end_rule": pl.String,
              "separation_confidence": pl.String}
_MEMBER_ROW = {"logon_idx": pl.Int64, "conn_id": pl.UInt32, "kind": pl.String, "txn_row": pl.Int64}


def _merge_lone(rows: list[dict], members: list[tuple[int, int, str, int]], row_keys: list[tuple[int, int]],
                lone: pl.DataFrame, profile: Profile, bounds: tuple[int, int] | None
                ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The logons and members tables of the chained logons (`rows`, `members`) and the lone failed
    connects' one-connection logons, in the order the chaining loop would have made them.

    Each lone connection's logon is what _cut_logons makes of its chain: it starts at the SYN
    (or first packet) and ends, failed, at its last packet (the quiet rule, the failed connect
    being the chain's one event), both moved by half its client-side round trip; `incomplete`
    (end rule capture_end) when the capture ended within end_quiet_s of it with the connection
    still open, or when it began without a SYN within CUT_AT_START_NS of the capture's start.
    Logons are numbered by (start, client address) as there; members come in chain order
    (a chain's place is its first connection's (start, conn_id)).
    """
    quiet_ns = int(profile.end_quiet_s * 1e9)
    cap_first, cap_last = bounds if bounds is not None else (None, None)
    start = pl.coalesce("syn_ts_ns", "first_ts_ns")
    last = pl.col("last_ts_ns")
    rtt = pl.col("rtt_client_side_ms")
    half = pl.when(rtt.is_not_null() & rtt.is_not_nan()).then((rtt / 2 * 1e6).cast(pl.Int64)).otherwise(0)
    still_open = pl.col("state").is_in(list(OPEN_STATES)).fill_null(False)
    # (at the capture's end: within end_quiet_s and still open, and no answer to say it ended)
    cut_end = pl.lit(False) if cap_last is None else still_open & (cap_last - last < quiet_ns)
    cut_start = (pl.lit(False) if cap_first is None else
                 pl.col("syn_ts_ns").is_null() & (start - cap_first <= CUT_AT_START_NS))
    n = len(rows)
    fast = lone.select(
        logon_idx=pl.int_range(n, n + lone.height, dtype=pl.Int64),
        client_ip="client_ip", server_ip="server_ip",
        start_ts_ns=start - half, end_ts_ns=last + half, first_seen_ts_ns=start, last_seen_ts_ns=last,
        half_rtt_client_ns=half,
        outcome=pl.when(cut_start | cut_end).then(pl.lit("incomplete")).otherwise(pl.lit("failed")),
        end_rule=pl.when(cut_end).then(pl.lit("capture_end")).otherwise(pl.lit("quiet")),
        separation_confidence=pl.lit("high"),
        _ck_ns=start, _ck_cid=pl.col("conn_id").cast(pl.Int64),
    ).cast({k: v for k, v in _LOGON_ROW.items()})
    slow = pl.DataFrame(rows, schema=_LOGON_ROW).with_columns(
        _ck_ns=pl.Series([k[0] for k in row_keys], dtype=pl.Int64),
        _ck_cid=pl.Series([k[1] for k in row_keys], dtype=pl.Int64))
    both = pl.concat([slow, fast], how="vertical")
    # number logons by start time (stable ids for a given capture and profile)
    ordered = both.sort("start_ts_ns", "client_ip", maintain_order=True)
    new_of = np.empty(both.height, np.int64)
    new_of[ordered["logon_idx"].to_numpy()] = np.arange(both.height, dtype=np.int64)
    logons = ordered.drop("_ck_ns", "_ck_cid").with_columns(logon_idx=pl.int_range(both.height, dtype=pl.Int64))
    ck_ns, ck_cid = both["_ck_ns"].to_numpy(), both["_ck_cid"].to_numpy()
    mem = pl.concat([
        pl.DataFrame(members, schema=_MEMBER_ROW, orient="row"),
        pl.DataFrame({"logon_idx": fast["logon_idx"], "conn_id": lone["conn_id"].cast(pl.UInt32),
                      "kind": pl.repeat("tcp", lone.height, dtype=pl.String, eager=True),
                      "txn_row": pl.repeat(-1, lone.height, dtype=pl.Int64, eager=True)}),
    ], how="vertical")
    old_idx = mem["logon_idx"].to_numpy()
    order = np.lexsort((ck_cid[old_idx], ck_ns[old_idx]))     # stable: a chain's members keep their order
    mem = mem[order].with_columns(logon_idx=pl.Series(new_of[old_idx[order]], dtype=pl.Int64))
    return logons, mem
