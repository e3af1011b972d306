"""Grouping connections into logons: the chain of connections one client process opens.

A logon is not "everything one address sends in a window": Citrix and terminal servers, and
NAT, put many users behind one address and their logons overlap. netdiag follows each client
*process* instead, as a chain of items (a TCP connection to an EPJ server, or a DNS lookup)
built in time order from what the capture shows a process doing. TCP connections are placed
first, in time order:

1. A process works step by step: it sends, waits for the answer, thinks, and starts the next
   step. A chain is *idle* at time t when none of its items has a connect or a request
   outstanding at t.
2. The naming reply or LOCATION_FORWARD that names `host:port` (transactions.forward_host /
   forward_port, decoded from the IOR) tells which chain the next connection to that
   `host:port` belongs to: a chain holding an unused referral to it wins, oldest referral first;
   when several chains of one address hold one at once, the connections' ends decide (a
   process's ORB closes its connections together; see _referral_matching).
3. A connection to a bootstrap port (2809 by default) starts a logon: it joins a chain that has
   only lead-in traffic so far (JNLP/jar HTTP up to `lead_in_s` before it), continues a logon
   whose last step failed (a re-bootstrap after an exception, a dead target, or a request
   outstanding for >= 1 s), or starts a new chain.
4. An HTTP(S) connection whose first request fetches a `.jnlp` starts a new process (Java Web
   Start begins there); other JNLP/jar connections join an idle lead-in chain, or the one
   process of that address still connected, or start a new chain.
5. Any other connection joins the one logon in progress on its address, else the idle chain
   that has waited longest since its last answer (first answered, first to act). Without a
   chain to join it is left out and counted (unless the profile says `start = "any"`).

DNS lookups are attached afterwards: each goes to the process whose next connection after the
answer goes to an answered address (the earliest such connection; one lookup per name and
process); an unanswered one to the process whose next step follows it most closely. A lookup is
a DNS transaction: the transactions stage already keeps concurrent askers apart (each client
socket its own lookup) and folds only a resolver's resends into the lookup they repeat.

Each logon carries `separation_confidence`: `high` when its address had no other chain open
whenever one of its items was placed (or a unique IOR referral decided), `medium` when a
referral among several or a unique idle chain decided, `low` when several idle chains were
equally possible (every candidate of such a choice, also the one left over for later). The loop runs per item (connection or DNS lookup), never per packet.

One chain can hold several logons: a client process that stays up logs on again over the
connections it keeps (a shared ward PC, "switch user"). The next logon starts at a request
matching the profile's `start_operation`, or, without one, where the process's first two
application operations come again in the same order, nothing outstanding, after a pause longer
than twice its usual ones (see _logon_splits); each logon's end is found in its own window, and
time and requests between logons belong to none (counted). A chain that only ever talked to the
naming service (list/resolve, no application server) is not a logon: a tool run or a probe
(`not_logons`). A logon cut by the capture's start or end is `incomplete` (see _cut_logons).

End of a logon (profile `[logon]`): the first answer to a GIOP operation matching
`end_operation`, or to an HTTP request matching `end_url`; without a match, the last answer
before `end_quiet_s` of quiet (an unanswered request is a wait, not quiet; an answer the client
stopped waiting for, having asked again, does not count). Start and end are moved by half the
client-side round trip measured on the logon's connections (`rtt_client_side_ms / 2`): the
client sent its first packet that much before the capture point saw it, and got its last
answer that much after, so start and end mean the client's own clock wherever the switch sits.
"""

from __future__ import annotations

import bisect
import heapq
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from netdiag.profile import Profile
from netdiag.protocols.giop import FAILED_STATUSES as GIOP_FAILED_STATUSES
from netdiag.protocols.giop import FORWARD_STATUSES as GIOP_FORWARD_STATUSES
from netdiag.protocols.registry import request_protocols

# Reply statuses that mean the step failed (GIOP reply/locate status, our 'unanswered').
FAILED_STATUSES = frozenset(GIOP_FAILED_STATUSES) | {"unanswered"}
FORWARD_STATUSES = frozenset(GIOP_FORWARD_STATUSES)
LEAD_IN_ROLES = frozenset({"http", "https", "dns"})
JNLP_RE = re.compile(r"(?i)\.jnlp(\?|$|\s)")
# Zeek conn_state values of a connection attempt that never got going.
FAILED_CONNECT_STATES = frozenset({"S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR"})

# Operations a process sends to the naming service (CosNaming, the INIT bootstrap's "get") and
# those its ORB sends by itself: they belong to a logon but never identify one, and a session of
# nothing else on the naming port is a name-service tool or a probe, not a logon.
NAMING_OPERATIONS = frozenset({"resolve", "resolve_str", "list", "bind", "rebind", "bind_context", "rebind_context",
                               "unbind", "new_context", "bind_new_context", "destroy", "to_name", "to_string",
                               "to_url", "next_one", "next_n", "get"})
ORB_OPERATIONS = frozenset({"_is_a", "_non_existent", "_not_existent", "_interface", "_get_interface_def",
                            "_component", "_repository_id", "_domain_managers", "LocateRequest"})
# Zeek conn_state values of a connection still open when the capture ended (no FIN/RST seen both ways).
OPEN_STATES = frozenset({"S0", "S1", "S2", "S3", "OTH"})
# A connection without a SYN whose first packet is this close to the capture's start began before it.
CUT_AT_START_NS = 1_000_000_000

# Without a profile start rule, the first (up to) this many application operations of a process,
# sent again in the same order after a longer pause than its usual ones, start its next logon.
REPEAT_SIGNATURE = 2
# ... counted from the first application operation, else from the second (see _logon_splits)
REPEAT_FROM = 2

_CONFIDENCE_RANK = {"high": 2, "medium": 1, "low": 0}
# A bootstrap while one of the chain's requests has been outstanding this long is a re-bootstrap
# of that process (it gave up waiting), not a new process; ORB call timeouts are >= 1 s.
GIVE_UP_MIN_NS = 1_000_000_000


def _is_failed_status(status: str | None) -> bool:
    if status is None:
        return False
    if status in FAILED_STATUSES:
        return True
    return status.isdigit() and int(status) >= 400


@dataclass
class Item:
    """One step of a process: a TCP connection to a server, or a DNS question (with retries)."""

    kind: str                       # 'tcp' or 'dns'
    conn_id: int
    txn_rows: list[int]             # rows of the transactions table on this item
    client_ip: str
    server_ip: str
    server_port: int
    role: str
    start_ns: int                   # SYN (or first packet / DNS query)
    last_ns: int                    # last packet of the connection / DNS answer or give-up
    busy: list[tuple[int, int]]     # connect and request->response intervals
    deliveries: list[int]           # times answers reached the capture point
    referrals: list[tuple[int, str, int]]  # (ts, host, port) from IORs in replies on this item
    failed_connect: bool = False
    dns_name: str | None = None
    first_operation: str | None = None  # the first request on the item (e.g. "GET /epj/epj.jnlp")
    capture_loss: bool = False          # the capture missed bytes of this connection
    rtt_client_side_ms: float | None = None
    syn_seen: bool = True               # the connection's handshake is in the capture
    state: str | None = None            # Zeek conn_state


@dataclass(slots=True)   # (slots: a flood makes one chain per spoofed address)
class Chain:
    """Items of one client process, in the order they started."""

    chain_id: int
    client_ip: str
    items: list[Item] = field(default_factory=list)
    bootstrap_ns: int | None = None
    confidence: str = "high"
    used_referrals: set[tuple[int, str, int]] = field(default_factory=set)
    max_last_ns: int = -1            # latest last packet of its items (cache)
    ended: bool = False              # its logon reached its end rule (monotone, cached)
    # Incremental state for the per-connection questions the grouping loop asks (idle_at,
    # last_delivery_before, open_referral, the end rule of a chain without requests). The loop asks
    # them at non-decreasing times with items added in start order, so each item is looked at a
    # bounded number of times instead of once per later connection: a scan over all items per
    # connection made grouping quadratic when one address had many connections (20 k SYNs from one
    # address: over 5 min). A question at an earlier time than the last one falls back to the scan.
    _t: int = -1                                                     # latest time asked
    # (the heaps and the referral list are made on first use: a flood of one-connection chains,
    # one per spoofed address, must not pay for them)
    _adv_n: int = 0                                                  # items folded into the heaps
    _busy_future: list | None = None                                 # heap of (a, b): a >= _t
    _busy_started: list | None = None                                # heap of b for a < _t
    _deliv_future: list | None = None                                # heap of deliveries > _t
    _deliv_best: int = -1                                            # latest delivery/start <= _t
    _refs: list | None = None                                        # referrals in item order
    _n_txn: int = 0                                                  # request rows on its items
    _min_failed_last: int | None = None                              # earliest end of a failed connect
    _q_seen: int = 0                                                 # items folded into the quiet scan
    _q_run_end: int | None = None
    _q_end: int | None = None                                        # first quiet gap's start (found)

    def add(self, it: Item) -> None:
        self.items.append(it)
        self.max_last_ns = max(self.max_last_ns, it.last_ns)
        if it.referrals:
            if self._refs is None:
                self._refs = []
            self._refs.extend(it.referrals)
        self._n_txn += len(it.txn_rows)
        if it.failed_connect and (self._min_failed_last is None or it.last_ns < self._min_failed_last):
            self._min_failed_last = it.last_ns

    def _advance(self, t: int) -> bool:
        """Move the incremental state to time t; False when t is earlier than a time already asked."""
        if t < self._t:
            return False
        self._t = t
        if self._busy_future is None:
            self._busy_future, self._busy_started, self._deliv_future = [], [], []
        fut, dv = self._busy_future, self._deliv_future
        for it in self.items[self._adv_n:]:
            for ab in it.busy:
                heapq.heappush(fut, ab)
            for d in it.deliveries:
                heapq.heappush(dv, d)
            heapq.heappush(dv, it.start_ns)
        self._adv_n = len(self.items)
        started = self._busy_started
        while fut and fut[0][0] < t:
            heapq.heappush(started, heapq.heappop(fut)[1])
        while started and started[0] <= t:
            heapq.heappop(started)
        while dv and dv[0] <= t:
            self._deliv_best = max(self._deliv_best, heapq.heappop(dv))
        return True

    def idle_at(self, t: int) -> bool:
        if self._advance(t):
            return not self._busy_started   # (an interval with a < t < b is still in the heap)
        return not any(a < t < b for it in self.items for a, b in it.busy)

    def last_delivery_before(self, t: int) -> int:
        if self._advance(t):
            return self._deliv_best
        best = -1
        for it in self.items:
            for d in it.deliveries:
                if d <= t and d > best:
                    best = d
            if it.start_ns <= t and it.start_ns > best:
                best = it.start_ns
        return best

    def last_activity_before(self, t: int) -> int:
        # items are added in start order, all starting at or before t: max(min(last, t)) = min(max(last), t)
        return min(self.max_last_ns, t)

    def open_referral(self, t: int, ip: str, port: int) -> tuple[int, str, int] | None:
        """The oldest unused referral (IOR host:port) to ip:port delivered before t."""
        best = None
        for ref in self._refs or ():
            if ref[0] <= t and ref[2] == port and ref[1] == ip and ref not in self.used_referrals:
                if best is None or ref[0] < best[0]:
                    best = ref
        return best

    def lower_confidence(self, level: str) -> None:
        if _CONFIDENCE_RANK[level] < _CONFIDENCE_RANK[self.confidence]:
            self.confidence = level


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


def relevant_connections(connections: pl.DataFrame, transactions: pl.DataFrame, profile: Profile) -> pl.DataFrame:
    """The TCP connections to EPJ servers, with their port role.

    With server addresses in the profile: connections to them. Without: connections carrying
    GIOP (recognised by the magic), connections to WebSphere's known ports, and any connection
    to an address that serves GIOP or a bootstrap port (its JNLP/jar HTTP, its TLS ports).
    """
    tcp = connections.filter(pl.col("transport") == "tcp")
    if tcp.height == 0:
        return tcp.with_columns(role=pl.lit(None, pl.String))
    protos = (transactions.filter(pl.col("protocol") != "dns").group_by("conn_id")
              .agg(pl.col("protocol").first().alias("carried")) if transactions.height else
              pl.DataFrame(schema={"conn_id": pl.UInt32, "carried": pl.String}))
    tcp = tcp.join(protos, on="conn_id", how="left")
    roles = []
    role_of: dict[tuple[str, int], str | None] = {}   # a handful of server ports: parse each address once
    for sip, sport, carried in tcp.select("server_ip", "server_port", "carried").iter_rows():
        key = (sip, int(sport))
        if key not in role_of:
            role_of[key] = profile.port_role(*key)
        role = role_of[key]
        if role is None and carried == "giop":
            role = "orb"
        roles.append(role)
    tcp = tcp.with_columns(role=pl.Series(roles, dtype=pl.String))
    if profile.servers:
        keep = [bool(profile.is_server(ip)) for ip in tcp["server_ip"].to_list()]
        tcp = tcp.filter(pl.Series(keep))
        return tcp.with_columns(pl.col("role").fill_null("other"))
    epj_ips = set(tcp.filter((pl.col("carried") == "giop") | (pl.col("role") == "bootstrap"))["server_ip"].to_list())
    was_ports = {p for p, r in _was_roles().items() if r != "dns"}
    keep = [(ip in epj_ips) or (int(port) in was_ports) or carried == "giop"
            for ip, port, carried in tcp.select("server_ip", "server_port", "carried").iter_rows()]
    return tcp.filter(pl.Series(keep, dtype=pl.Boolean)).with_columns(pl.col("role").fill_null("other"))


def _was_roles() -> dict[int, str]:
    from netdiag.profile import DEFAULT_PORT_ROLES

    # the generic web ports (80/443/8080) are not WebSphere's: only kept on EPJ addresses
    return {p: r for p, r in DEFAULT_PORT_ROLES.items() if p not in (80, 443, 8080)}


def _items(conns: pl.DataFrame, transactions: pl.DataFrame) -> list[Item]:
    """Build the items (per connection / per DNS question) with their busy intervals."""
    items: list[Item] = []
    tx = transactions.with_row_index("txn_row")
    # transactions per connection as plain lists (one pass; no per-connection polars calls)
    app = (tx.filter(pl.col("protocol") != "dns")
           .select("conn_id", "txn_row", "req_first_ts_ns", "rsp_last_ts_ns", "forward_host", "forward_port",
                   "operation").sort("conn_id", "req_first_ts_ns"))
    by_conn: dict[int, list[tuple]] = {}
    first_op: dict[int, str | None] = {}
    for cid, row, rq0, rs1, fh, fp, op in zip(*(app[c].to_list() for c in app.columns), strict=True):
        by_conn.setdefault(int(cid), []).append((int(row), rq0, rs1, fh, fp))
        first_op.setdefault(int(cid), op)
    for row in conns.iter_rows(named=True):
        cid = int(row["conn_id"])
        g = by_conn.get(cid, [])
        syn = row["syn_ts_ns"]
        start = int(syn if syn is not None else row["first_ts_ns"])
        last = int(row["last_ts_ns"])
        busy: list[tuple[int, int]] = []
        deliveries: list[int] = []
        # a connect that never got going: no SYN/ACK or a reset, and nothing ever came back (a
        # SYN/ACK the capture missed on a connection that carried answers is not a failure)
        answered = any(x[2] is not None for x in g) or (row.get("bytes_s2c") or 0) > 0
        failed = (row["state"] in FAILED_CONNECT_STATES or (syn is not None and row["synack_ts_ns"] is None)) \
            and not answered
        if syn is not None:
            est = row["established_ts_ns"] if row["established_ts_ns"] is not None else row["synack_ts_ns"]
            busy.append((start, int(est) if est is not None else last))
            if est is not None:
                deliveries.append(int(row["synack_ts_ns"] if row["synack_ts_ns"] is not None else est))
        if failed:
            deliveries.append(last)   # the attempt's end is what the process reacts to
        referrals: list[tuple[int, str, int]] = []
        for _r, rq0, rs1, fh, fp in g:
            if rq0 is None and rs1 is None:
                continue
            if rq0 is not None:   # (a reply whose request the capture lost has no request time)
                busy.append((int(rq0), int(rs1) if rs1 is not None else last))
            if rs1 is not None:
                deliveries.append(int(rs1))
                if fh is not None and fp is not None:
                    referrals.append((int(rs1), str(fh), int(fp)))
        items.append(Item("tcp", cid, [r[0] for r in g], row["client_ip"], row["server_ip"],
                          int(row["server_port"]), row["role"], start, last, busy, deliveries, referrals,
                          failed_connect=bool(failed), rtt_client_side_ms=row.get("rtt_client_side_ms"),
                          first_operation=first_op.get(cid),
                          capture_loss=bool((row.get("unseen_bytes") or 0) > 0), syn_seen=syn is not None,
                          state=row["state"]))
    dns = tx.filter(pl.col("protocol") == "dns")
    for row in dns.iter_rows(named=True):
        q0 = int(row["req_first_ts_ns"])
        answered = row["rsp_last_ts_ns"] is not None
        end = int(row["rsp_last_ts_ns"]) if answered else int(row["req_last_ts_ns"] or q0)
        busy = [(q0, end if answered else end + 1)]
        items.append(Item("dns", int(row["conn_id"]), [int(row["txn_row"])], row["client_ip"], row["server_ip"],
                          int(row["server_port"] or 53), "dns", q0, end, busy, [end] if answered else [], [],
                          dns_name=(row["operation"] or "").lower()))
    items.sort(key=lambda it: (it.start_ns, it.conn_id))
    return items


# an episode of overlapping referrals larger than this is left to the FIFO rule (bounded cost)
MAX_MATCH_EPISODE = 400
# one process's connections closed "together" (its ORB shutting down): lab storm, 20 processes on
# 2 cores, at most 12.5 ms apart; beyond this the ends are no evidence
CLOSE_TOGETHER_NS = 100_000_000


def _referral_matching(tcp_items: list[Item], quiet_ns: int) -> dict[int, int]:
    """ORB connection conn_id -> conn_id of the connection whose IOR referral it followed.

    Only where the capture leaves a choice: when several referrals from one client address to
    the same `host:port` are outstanding at once (20 processes behind one address all resolving
    `epj/Session` to the same ORB port), "oldest referral first" is wrong whenever one process
    is scheduled later than another (lab storm: 14 of 20 ORB connections). What the wire then
    still shows is that one process's connections end together: its ORB shuts down (or its
    idle connections are scavenged) all at once, so the bootstrap connection that handed out
    the referral and the ORB connection that followed it close within moments of each other,
    while other processes close at their own times. Per episode (a run of time in which
    referrals to that target are outstanding, found by simulating the FIFO rule; a referral
    older than `start_quiet_s` lapses), connections and referrals are matched by minimum total
    |last packet of the referring connection - last packet of the new connection| (capped at
    CLOSE_TOGETHER_NS: ends further apart are no evidence, and ties keep the FIFO order), a
    referral only to connections opened after it was delivered (Hungarian method, scipy).
    """
    events: dict[tuple[str, str, int], list[tuple[int, int, Item]]] = {}
    for it in tcp_items:
        for ts, host, port in it.referrals:
            events.setdefault((it.client_ip, host, port), []).append((ts, 0, it))
    for it in tcp_items:
        key = (it.client_ip, it.server_ip, it.server_port)
        if key in events:
            events[key].append((it.start_ns, 1, it))
    out: dict[int, int] = {}

    def solve(refs: list[tuple[int, Item]], new: list[Item]) -> None:
        if len(refs) < 2 or not new or len(refs) * len(new) > MAX_MATCH_EPISODE ** 2:
            return
        from scipy.optimize import linear_sum_assignment  # (imported only when a choice is left)

        # ends further apart than CLOSE_TOGETHER_NS say nothing (all cost the same); ties go to
        # the FIFO order (oldest referral to the earliest connection), 1 ns per rank apart
        big = float(1 << 62)
        cost = [[float(min(abs(r.last_ns - c.last_ns), CLOSE_TOGETHER_NS) + abs(i - j)) if ts <= c.start_ns else big
                 for j, (ts, r) in enumerate(refs)] for i, c in enumerate(new)]
        rows, cols = linear_sum_assignment(cost)
        for i, j in zip(rows, cols, strict=True):
            if cost[i][j] < big:
                out[new[i].conn_id] = refs[j][1].conn_id

    for evs in events.values():
        evs.sort(key=lambda e: (e[0], e[1], e[2].conn_id))
        pending: list[int] = []                 # FIFO simulation: delivery times still unused
        ep_refs: list[tuple[int, Item]] = []
        ep_new: list[Item] = []
        for ts, kind, it in evs:
            pending = [p for p in pending if ts - p <= quiet_ns]
            if not pending and (ep_refs or ep_new):
                solve(ep_refs, ep_new)
                ep_refs, ep_new = [], []
            if kind == 0:
                pending.append(ts)
                ep_refs.append((ts, it))
            elif pending:
                pending.pop(0)
                ep_new.append(it)
        solve(ep_refs, ep_new)
    return out


def group_logons(connections: pl.DataFrame, transactions: pl.DataFrame, profile: Profile) -> Grouping:
    """Chain items per client process and cut logons out of the chains (see module docstring)."""
    conns = relevant_connections(connections, transactions, profile)
    all_items = _items(conns, transactions)
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
    followed = _referral_matching(tcp_items, quiet_ns)
    chain_of_conn: dict[int, Chain] = {}

    def logon_ended(ch: Chain, t: int) -> bool:
        if ch.bootstrap_ns is None:
            return False
        if not ch.ended:   # once ended (end rule met before t), ended for every later t
            end = _end_of(ch, txs, profile, until=t) if ch._n_txn else _end_of_connects(ch, profile, t)
            ch.ended = end is not None and end[0] < t
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
            retry = [c for c in active if c.bootstrap_ns is not None and _last_step_failed(c, txs, t)]
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

    _attach_dns(dns_items, chains_by_ip, txs, lead_ns, item_chain)
    bounds = ((int(connections["first_ts_ns"].min()), int(connections["last_ts_ns"].max()))
              if connections.height and connections["first_ts_ns"].null_count() < connections.height else None)
    return _cut_logons(chains, item_chain, conns, txs, profile, lead_ns, bounds)


def _dns_answers(detail: str | None) -> set[str]:
    if not detail:
        return set()
    try:
        d = json.loads(detail)
    except ValueError:
        return set()
    return {str(a[1]) for a in d.get("answers", []) or [] if isinstance(a, list) and len(a) >= 2
            and a[0] in ("A", "AAAA")}


def _attach_dns(dns_items: list[Item], chains_by_ip: dict[str, list[Chain]], txs: dict[str, list], lead_ns: int,
                item_chain: list[tuple[Item, Chain | None]]) -> None:
    """Give each DNS question to the process that used its answer.

    The chain whose next connection after the answer goes to an answered address takes it (the
    earliest such connection, and a chain takes one lookup per name); an unanswered question
    goes to the chain whose next step follows it most closely (the process gave up and went on).
    """
    for it in dns_items:
        answers = _dns_answers(txs["detail"][it.txn_rows[0]]) if it.txn_rows else set()
        best: tuple[int, Chain] | None = None
        for ch in chains_by_ip.get(it.client_ip, []):
            if it.dns_name is not None and any(x.kind == "dns" and x.dns_name == it.dns_name for x in ch.items):
                continue   # one lookup per name and process
            first_tcp = min((x.start_ns for x in ch.items if x.kind == "tcp"), default=None)
            if it.dns_name is None and first_tcp is not None and first_tcp > it.last_ns and any(
                    x.kind == "dns" and x.start_ns < first_tcp for x in ch.items):
                continue   # a lookup of unknown name before the first connection: one per process
            nxt = [x.start_ns for x in ch.items if x.kind == "tcp" and x.start_ns >= it.last_ns
                   and x.start_ns - it.last_ns <= lead_ns and (not answers or x.server_ip in answers)]
            if nxt and (best is None or min(nxt) < best[0]):
                best = (min(nxt), ch)
        chosen = best[1] if best else None
        if chosen is not None:
            chosen.add(it)
            chosen.items.sort(key=lambda x: (x.start_ns, x.conn_id))
        item_chain.append((it, chosen))


def _end_of_connects(ch: Chain, profile: Profile, t: int) -> tuple[int, str, int | None] | None:
    """_end_of(ch, until=t) for a chain whose items carry no request, kept up to date item by item.

    Without requests the only events are failed connects, in start order (the order items are
    added), so the quiet scan of _end_of can resume where it stopped: linear over a chain's life
    instead of a full scan per later connection. Only valid for non-decreasing t, as the loop asks.
    """
    if ch.bootstrap_ns is None:
        return None
    quiet = int(profile.end_quiet_s * 1e9)
    items = ch.items
    for i in range(ch._q_seen, len(items)):
        it = items[i]
        if ch._q_end is not None or it.kind != "tcp" or not it.failed_connect:
            continue
        q0, a1 = it.start_ns, it.last_ns
        run_end = ch._q_run_end
        if run_end is not None and q0 - run_end >= quiet and run_end >= ch.bootstrap_ns:
            ch._q_end = run_end
        else:
            ch._q_run_end = a1 if run_end is None else max(run_end, a1)
    ch._q_seen = len(items)
    if ch._q_end is not None:
        return (ch._q_end, "quiet", None)
    run_end = ch._q_run_end
    if run_end is None or run_end < ch.bootstrap_ns or t - run_end < quiet:
        return None
    return (run_end, "quiet", None)


def _last_step_failed(ch: Chain, txs: dict[str, list], t: int) -> bool:
    """True when the chain's latest answer before t was a failure (exception, dead target)."""
    if not ch._n_txn:   # no requests: only failed connects answer, so any one ended by t decides
        return ch._min_failed_last is not None and ch._min_failed_last <= t
    last_ts, failed = -1, False
    for it in ch.items:
        if it.failed_connect and it.last_ns <= t and it.last_ns > last_ts:
            last_ts, failed = it.last_ns, True
        for r in it.txn_rows:
            rs = txs["rsp_last_ts_ns"][r]
            q0 = txs["req_first_ts_ns"][r]
            if q0 is not None and t - q0 >= GIVE_UP_MIN_NS and (rs is None or rs > t):
                return True     # a request outstanding for a while: the process gave up on it
            status = txs["status"][r]
            ts = rs if rs is not None else q0
            if ts is not None and ts <= t and ts > last_ts:
                last_ts, failed = ts, _is_failed_status(status) or status in FORWARD_STATUSES
    return failed


def _end_of(ch: Chain, txs: dict[str, list], profile: Profile, *, until: int | None = None,
            lo: int | None = None, hi: int | None = None, rows: set[int] | None = None
            ) -> tuple[int, str, int | None] | None:
    """(end_ts_ns, how, txn_row) of a logon of the chain, looking only at events before `until`.

    The logon is the chain's requests that start in [lo, hi) (None: unbounded; several logons
    of one long-lived process each have their own window, see _logon_windows).
    how: 'end_operation', 'end_url' or 'quiet'. None when nothing happened after the bootstrap.
    """
    if ch.bootstrap_ns is None:
        return None
    # (rows: when given, only these can start in [lo, hi): a long-lived process's other logons' rows are skipped)
    conn_last = {r: it.last_ns for it in ch.items for r in it.txn_rows if rows is None or r in rows}
    events: list[tuple[int, int, int]] = []   # (request start, answer end, row)
    for r, last in conn_last.items():
        q0 = txs["req_first_ts_ns"][r]
        if q0 is None or (until is not None and q0 > until) or (lo is not None and q0 < lo) or (
                hi is not None and q0 >= hi):
            continue
        rs = txs["rsp_last_ts_ns"][r]
        # an unanswered request keeps the process waiting until it gives up: until its next
        # step (below) or the connection's end, so the wait is never mistaken for quiet
        a1 = rs if rs is not None else max(last, txs["req_last_ts_ns"][r] or q0)
        events.append((int(q0), int(a1), r))
    for it in ch.items:
        if it.kind == "tcp" and it.failed_connect and (until is None or it.start_ns <= until) and (
                lo is None or it.start_ns >= lo) and (hi is None or it.start_ns < hi):
            events.append((it.start_ns, it.last_ns, -1))
    events.sort()
    for i, (q0, a1, r) in enumerate(events):
        if r >= 0 and txs["rsp_last_ts_ns"][r] is None and i + 1 < len(events):
            events[i] = (q0, min(a1, events[i + 1][0]), r)
    # a request asked again before its answer came: the client stopped waiting at the retry, and
    # the late answer is not part of the logon
    # (one backward pass: the next request of the same operation is the only candidate, as the
    # events are in request order; a quadratic scan here dominated grouping on large captures)
    next_q0_of_op: dict[str | None, int] = {}
    for i in range(len(events) - 1, -1, -1):
        q0, a1, r = events[i]
        if r < 0:
            continue
        op, r0 = txs["operation"][r], txs["rsp_first_ts_ns"][r]
        retry = next_q0_of_op.get(op)
        next_q0_of_op[op] = q0
        if r0 is not None and retry is not None and retry < r0:
            events[i] = (q0, min(a1, retry), -2)
    matched: list[tuple[int, str, int]] = []   # the first *answer* to a matching request ends it
    for q0, a1, r in events:
        if r < 0 or q0 < ch.bootstrap_ns or txs["rsp_last_ts_ns"][r] is None or (until is not None and a1 > until):
            continue   # (r == -2: an answer the client no longer waited for)
        proto, op = txs["protocol"][r], txs["operation"][r] or ""
        if profile.end_operation is not None and proto == "giop" and profile.end_operation.search(op):
            matched.append((a1, "end_operation", r))
        elif profile.end_url is not None and proto == "http" and profile.end_url.search(op):
            matched.append((a1, "end_url", r))
    if matched:
        return min(matched)
    quiet = int(profile.end_quiet_s * 1e9)
    end = None
    run_end = None
    for q0, a1, _r in events:
        if run_end is not None and q0 - run_end >= quiet and run_end >= ch.bootstrap_ns:
            end = (run_end, "quiet", None)
            break
        run_end = a1 if run_end is None else max(run_end, a1)
    if end is None and run_end is not None:
        if run_end < ch.bootstrap_ns:
            return None  # only lead-in answers so far: nothing after the bootstrap was answered
        if until is not None and until - run_end < quiet:
            return None  # still going at `until`
        end = (run_end, "quiet", None)
    return end


@dataclass
class _Req:
    """One request of a chain (a transactions row), in the order the process sent them."""

    q0: int                  # first request byte at the capture point
    a1: int | None           # last answer byte (None: unanswered)
    row: int
    protocol: str
    operation: str
    status: str | None


def _chain_requests(ch: Chain, txs: dict[str, list]) -> list[_Req]:
    out = []
    requests = request_protocols()
    for it in ch.items:
        if it.kind != "tcp":
            continue
        for r in it.txn_rows:
            q0 = txs["req_first_ts_ns"][r]
            if q0 is None or txs["protocol"][r] not in requests:
                continue
            rs = txs["rsp_last_ts_ns"][r]
            out.append(_Req(int(q0), None if rs is None else int(rs), r, txs["protocol"][r],
                            txs["operation"][r] or "", txs["status"][r]))
    out.sort(key=lambda q: (q.q0, q.row))
    return out


def _is_app_operation(q: _Req) -> bool:
    return q.protocol == "giop" and q.operation not in NAMING_OPERATIONS and q.operation not in ORB_OPERATIONS


_NEVER = 1 << 62   # an unanswered request: outstanding for good


def _burst_start(reqs: list[_Req], i: int, floor: int) -> int:
    """Index of the first request of the run that request i opens: the naming lookups and ORB
    messages right before it (sent after `floor`, the previous answer of an application call)."""
    j = i
    while j > 0 and not _is_app_operation(reqs[j - 1]) and reqs[j - 1].protocol == "giop" and reqs[j - 1].q0 > floor:
        j -= 1
    return j


def _logon_splits(ch: Chain, reqs: list[_Req], profile: Profile) -> list[int]:
    """Request times where a further logon of this (long-lived) process starts (see _logon_windows).

    A candidate must be a fresh start: nothing outstanding when it is sent, and the latest answer
    before it not a failure (an exception, a LOCATION_FORWARD, an unanswered request): a request
    sent again after those is a retry inside the logon. One pass over the requests with running
    maxima (a long-lived process may send thousands).
    """
    rq = [q for q in reqs if q.q0 >= (ch.bootstrap_ns or 0)]
    n = len(rq)
    # running facts over rq[:i]: the latest answer end (_NEVER once one is unanswered), the status
    # of that latest answer, and the latest answer to an application call
    max_a1, last_status, app_a1 = [-1] * n, [None] * n, [-1] * n
    m_a1, m_st, m_app = -1, None, -1
    for i, q in enumerate(rq):
        max_a1[i], last_status[i], app_a1[i] = m_a1, m_st, m_app
        a = q.a1 if q.a1 is not None else _NEVER
        if a >= m_a1:
            m_a1, m_st = a, q.status
        if q.a1 is not None and _is_app_operation(q):
            m_app = max(m_app, q.a1)

    def fresh(i: int) -> bool:
        st = last_status[i]
        return 0 <= max_a1[i] <= rq[i].q0 and not _is_failed_status(st) and st not in FORWARD_STATUSES

    starts: list[int] = []
    if profile.start_operation is not None:
        seen = False
        for i, q in enumerate(rq):
            if q.protocol != "giop" or not profile.start_operation.search(q.operation):
                continue
            if seen and fresh(i):
                starts.append(rq[_burst_start(rq, i, app_a1[i])].q0)
            seen = True
        return starts
    # without a start rule: the process's first application operations, sent again in the same
    # order, fresh, after a pause longer than twice its median pause in the logon so far; when they
    # never come again, the same from its second operation on (a first logon may begin with a
    # call the later ones skip, e.g. fetching the server's settings before authenticate)
    app = [i for i, q in enumerate(rq) if _is_app_operation(q)]
    ops = [rq[i].operation for i in app]
    for first in range(REPEAT_FROM):
        sig: list[str] = []
        for op in ops[first:]:   # up to REPEAT_SIGNATURE distinct operations in a row (one if it repeats at once)
            if op in sig or len(sig) == REPEAT_SIGNATURE:
                break
            sig.append(op)
        if not sig:
            break
        starts = _repeats(rq, app, ops, sig, first, fresh, app_a1)
        if starts:
            break
    return starts


def _repeats(rq: list[_Req], app: list[int], ops: list[str], sig: list[str], first: int, fresh: Any,
             app_a1: list[int]) -> list[int]:
    """Start times of the later logons: `sig` sent again (after app position first + len(sig)),
    fresh, after a pause longer than twice the median pause inside the logon so far."""
    starts: list[int] = []
    n = len(rq)
    k = len(sig)
    candidates = {app[p]: p for p in range(first + k, len(app) - k + 1) if ops[p:p + k] == sig}
    # pauses (request sent - latest answer before it, nothing outstanding) inside the current logon
    lo = 0
    seg_max = -1
    gaps: list[tuple[int, int]] = []          # (request index, pause before it)
    next_ok = 0                               # app position from which a new candidate may count
    i = 0
    while i < n:
        q = rq[i]
        if i in candidates and candidates[i] >= next_ok and fresh(i):
            j = _burst_start(rq, i, app_a1[i])
            gap_j = next((g for x, g in gaps if x == j), None) if j < i else (
                q.q0 - seg_max if lo < i and 0 <= seg_max <= q.q0 else None)
            inner = sorted(g for x, g in gaps if x < j)
            if gap_j is not None and gap_j > 0 and (not inner or gap_j > 2 * statistics.median(inner)):
                starts.append(rq[j].q0)
                next_ok = candidates[i] + k
                lo, seg_max, gaps, i = j, -1, [], j     # the new logon: rescan from its first request
                continue
        if i > lo and 0 <= seg_max <= q.q0:
            gaps.append((i, q.q0 - seg_max))
        seg_max = max(seg_max, q.a1 if q.a1 is not None else _NEVER)
        i += 1
    return starts


def _logon_windows(ch: Chain, txs: dict[str, list], profile: Profile, reqs: list[_Req], rows_in: Any
                   ) -> list[tuple[int | None, int | None, tuple[int, str, int | None] | None]]:
    """The logons of one chain: [(lo, hi, end)], requests starting in [lo, hi) are that logon's.

    One client process may log on many times over the connections it keeps (a shared ward PC).
    The next logon starts at a request matching the profile's `start_operation`; without one,
    where the process's first application operations come again in the same order while nothing
    is outstanding (_logon_splits). The naming lookups right before such a request belong to the
    new logon. Each logon's end is found in its own window by the end rule (_end_of), so the time
    between two logons, and requests after a logon's end reply, belong to none.
    """
    splits = sorted(set(_logon_splits(ch, reqs, profile)))
    los: list[int | None] = [None, *splits]
    his: list[int | None] = [*splits, None]
    return [(lo, hi, _end_of(ch, txs, profile, lo=lo, hi=hi, rows=rows_in(lo, hi) if splits else None))
            for lo, hi in zip(los, his, strict=True)]


def _naming_only(ch: Chain, txs: dict[str, list]) -> tuple[bool, list[str]]:
    """(True, operations) when every connection of the chain went to a bootstrap (naming) port and
    carried only naming and ORB operations, all answered without a system exception: a
    name-service tool or a probe, which never went on to an application server."""
    tcp = [it for it in ch.items if it.kind == "tcp"]
    if not tcp or any(it.role != "bootstrap" or it.failed_connect for it in tcp):
        return False, []
    ops: list[str] = []
    for it in tcp:
        for r in it.txn_rows:
            op = txs["operation"][r] or ""
            if txs["protocol"][r] != "giop" or (op not in NAMING_OPERATIONS and op not in ORB_OPERATIONS):
                return False, []
            # a name not found (CosNaming::NotFound, a user exception) is a tool's ordinary answer;
            # a system exception or no answer is a logon that failed at the naming service
            status = txs["status"][r]
            if txs["rsp_last_ts_ns"][r] is None or (_is_failed_status(status) and status != "USER_EXCEPTION"):
                return False, []
            ops.append(op)
    return True, ops


def _cut_logons(chains: list[Chain], item_chain: list[tuple[Item, Chain | None]], conns: pl.DataFrame,
                txs: dict[str, list], profile: Profile, lead_ns: int,
                bounds: tuple[int, int] | None = None) -> Grouping:
    """Cut each chain into its logons (_logon_windows) and build the logon rows and members.

    A logon cut by the capture's start (its first connection's handshake is not in the capture,
    which began within CUT_AT_START_NS of it) or end (the capture ended within end_quiet_s of the
    chain's last packet, a connection of the chain still open, and neither the end reply of an
    end rule nor a failure closed the logon: see _still_under_way) is `incomplete`. A chain that
    only talked to the naming service is not a logon (not_logons). Connections and requests that
    end up in no logon are counted (orphans, unassigned_requests).
    """
    rows: list[dict] = []
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
        reqs = _chain_requests(ch, txs)
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
        naming_only, naming_ops = _naming_only(ch, txs)
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
        windows = _logon_windows(ch, txs, profile, reqs, rows_in)
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
            outcome = _outcome(ch, items, txs, how, end_row, end_ts, profile,
                               rows_in(lo, hi) if len(windows) > 1 else None)
            if last_window and at_capture_end and still_open and not cut_end:
                cut_end = cap_last - end_ts < quiet_ns and _still_under_way(reqs, how, lo, end_ts)
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
    # number logons by start time (stable ids for a given capture and profile)
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["start_ts_ns"], rows[i]["client_ip"]))
    remap = {old: new for new, old in enumerate(order)}
    rows = [dict(rows[i], logon_idx=remap[i]) for i in order]
    members = [(remap[m[0]], *m[1:]) for m in members]
    logons = pl.DataFrame(rows, schema={
        "logon_idx": pl.Int64, "client_ip": pl.String, "server_ip": pl.String, "start_ts_ns": pl.Int64,
        "end_ts_ns": pl.Int64, "first_seen_ts_ns": pl.Int64, "last_seen_ts_ns": pl.Int64,
        "half_rtt_client_ns": pl.Int64, "outcome": pl.String, "end_rule": pl.String,
        "separation_confidence": pl.String})
    mem = pl.DataFrame(members, schema={"logon_idx": pl.Int64, "conn_id": pl.UInt32, "kind": pl.String,
                                        "txn_row": pl.Int64}, orient="row")
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


def _still_under_way(reqs: list[_Req], how: str, lo: int | None, end_ts: int) -> bool:
    """At the capture's end, with the logon's connections still open: could it have gone on?

    Asked only when the capture ended less than end_quiet_s after the logon's end: yes unless its
    end reply (end_operation / end_url) is in the capture or its last answer was a failure: the
    quiet rule needs end_quiet_s of quiet, which the capture did not last long enough to show,
    and a process whose connections are open may send its next request at any moment.
    """
    if how in ("end_operation", "end_url"):
        return False                      # its end reply is in the capture
    answered = [q for q in reqs if q.a1 is not None and q.a1 <= end_ts and (lo is None or q.q0 >= lo)]
    return not (answered and _is_failed_status(max(answered, key=lambda q: q.a1 or 0).status))


def _outcome(ch: Chain, items: list[Item], txs: dict[str, list], how: str, end_row: int | None, end_ts: int,
             profile: Profile, rows: set[int] | None = None) -> str:
    if how in ("end_operation", "end_url") and end_row is not None:
        return "failed" if _is_failed_status(txs["status"][end_row]) else "completed"
    # the last answer (or failed attempt) decides
    last_ts, last_failed = -1, False
    for it in items:
        if it.failed_connect and it.last_ns <= end_ts and it.last_ns >= last_ts:
            last_ts, last_failed = it.last_ns, True
        for r in it.txn_rows if rows is None else (r for r in it.txn_rows if r in rows):
            rs = txs["rsp_last_ts_ns"][r]
            ts = rs if rs is not None else txs["req_first_ts_ns"][r]
            if ts is not None and ts <= end_ts and ts >= last_ts:
                # an answer missing where the capture lost frames is not a failure
                unseen = rs is None and it.capture_loss
                last_ts, last_failed = ts, _is_failed_status(txs["status"][r]) and not unseen
    if last_failed:
        return "failed"
    if profile.end_operation is not None or profile.end_url is not None:
        return "abandoned"
    return "completed"
