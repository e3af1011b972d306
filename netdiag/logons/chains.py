"""Connection chains: which client process each connection and DNS lookup belongs to.

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
   process's ORB closes its connections together; see referral_matching).
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
"""

from __future__ import annotations

import heapq
import json
import re
from dataclasses import dataclass, field

import polars as pl

from netdiag.profile import Profile
from netdiag.protocols.giop import FAILED_STATUSES as GIOP_FAILED_STATUSES
from netdiag.protocols.giop import FORWARD_STATUSES as GIOP_FORWARD_STATUSES

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
# ... counted from the first application operation, else from the second (see netdiag.logons.ends)
REPEAT_FROM = 2

CONFIDENCE_RANK = {"high": 2, "medium": 1, "low": 0}
# A bootstrap while one of the chain's requests has been outstanding this long is a re-bootstrap
# of that process (it gave up waiting), not a new process; ORB call timeouts are >= 1 s.
GIVE_UP_MIN_NS = 1_000_000_000


def is_failed_status(status: str | None) -> bool:
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
        if CONFIDENCE_RANK[level] < CONFIDENCE_RANK[self.confidence]:
            self.confidence = level


def relevant_connections(connections: pl.DataFrame, transactions: pl.DataFrame, profile: Profile, *,
                         epj_ips: set[str] | None = None) -> pl.DataFrame:
    """The TCP connections to EPJ servers, with their port role.

    With server addresses in the profile: connections to them. Without: connections carrying
    GIOP (recognised by the magic), connections to WebSphere's known ports, and any connection
    to an address that serves GIOP or a bootstrap port (its JNLP/jar HTTP, its TLS ports).
    `epj_ips`: those addresses when they were found over more connections than these (a
    partition of the capture: `epj_server_ips` of every partition, joined).
    """
    tcp = _with_roles(connections, transactions, profile)
    if tcp.height == 0:
        return tcp
    if profile.servers:
        keep = [bool(profile.is_server(ip)) for ip in tcp["server_ip"].to_list()]
        tcp = tcp.filter(pl.Series(keep))
        return tcp.with_columns(pl.col("role").fill_null("other"))
    if epj_ips is None:
        epj_ips = _serving(tcp)
    was_ports = {p for p, r in _was_roles().items() if r != "dns"}
    keep = [(ip in epj_ips) or (int(port) in was_ports) or carried == "giop"
            for ip, port, carried in tcp.select("server_ip", "server_port", "carried").iter_rows()]
    return tcp.filter(pl.Series(keep, dtype=pl.Boolean)).with_columns(pl.col("role").fill_null("other"))


def epj_server_ips(connections: pl.DataFrame, transactions: pl.DataFrame, profile: Profile) -> set[str]:
    """The addresses relevant_connections counts as EPJ servers by their traffic (they serve GIOP
    or a bootstrap port); a profile that names its servers makes this set unused."""
    return _serving(_with_roles(connections, transactions, profile))


def _serving(tcp: pl.DataFrame) -> set[str]:
    if tcp.height == 0:
        return set()
    return set(tcp.filter((pl.col("carried") == "giop") | (pl.col("role") == "bootstrap"))["server_ip"].to_list())


def _with_roles(connections: pl.DataFrame, transactions: pl.DataFrame, profile: Profile) -> pl.DataFrame:
    """The TCP connections with `carried` (the first protocol parsed on them) and `role` (the
    profile's port role; GIOP carried on a port without one: orb)."""
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
    return tcp.with_columns(role=pl.Series(roles, dtype=pl.String))


def _was_roles() -> dict[int, str]:
    from netdiag.profile import DEFAULT_PORT_ROLES

    # the generic web ports (80/443/8080) are not WebSphere's: only kept on EPJ addresses
    return {p: r for p, r in DEFAULT_PORT_ROLES.items() if p not in (80, 443, 8080)}


def build_items(conns: pl.DataFrame, transactions: pl.DataFrame) -> list[Item]:
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


def referral_matching(tcp_items: list[Item], quiet_ns: int) -> dict[int, int]:
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


def _dns_answers(detail: str | None) -> set[str]:
    if not detail:
        return set()
    try:
        d = json.loads(detail)
    except ValueError:
        return set()
    return {str(a[1]) for a in d.get("answers", []) or [] if isinstance(a, list) and len(a) >= 2
            and a[0] in ("A", "AAAA")}


def attach_dns(dns_items: list[Item], chains_by_ip: dict[str, list[Chain]], txs: dict[str, list], lead_ns: int,
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
