"""Logon boundaries inside a chain: where a logon starts again, where it ends, and how it came out.

One chain can hold several logons: a client process that stays up logs on again over the
connections it keeps (a shared ward PC, "switch user"). The next logon starts at a request
matching the profile's `start_operation`, or, without one, where the process's first two
application operations come again in the same order, nothing outstanding, after a pause longer
than twice its usual ones (see _logon_splits); each logon's end is found in its own window, and
time and requests between logons belong to none (counted). A chain that only ever talked to the
naming service (list/resolve, no application server) is not a logon: a tool run or a probe
(`not_logons`). A logon cut by the capture's start or end is `incomplete` (see netdiag.logons.grouping).

End of a logon (profile `[logon]`): the first answer to a GIOP operation matching
`end_operation`, or to an HTTP request matching `end_url`; without a match, the last answer
before `end_quiet_s` of quiet (an unanswered request is a wait, not quiet; an answer the client
stopped waiting for, having asked again, does not count). Start and end are moved by half the
client-side round trip measured on the logon's connections (`rtt_client_side_ms / 2`): the
client sent its first packet that much before the capture point saw it, and got its last
answer that much after, so start and end mean the client's own clock wherever the switch sits.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from netdiag.logons.chains import (
    FORWARD_STATUSES,
    GIVE_UP_MIN_NS,
    NAMING_OPERATIONS,
    ORB_OPERATIONS,
    REPEAT_FROM,
    REPEAT_SIGNATURE,
    Chain,
    Item,
    is_failed_status,
)
from netdiag.profile import Profile
from netdiag.protocols.registry import request_protocols


def end_of_connects(ch: Chain, profile: Profile, t: int) -> tuple[int, str, int | None] | None:
    """end_of(ch, until=t) for a chain whose items carry no request, kept up to date item by item.

    Without requests the only events are failed connects, in start order (the order items are
    added), so the quiet scan of end_of can resume where it stopped: linear over a chain's life
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


def last_step_failed(ch: Chain, txs: dict[str, list], t: int) -> bool:
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
                last_ts, failed = ts, is_failed_status(status) or status in FORWARD_STATUSES
    return failed


def end_of(ch: Chain, txs: dict[str, list], profile: Profile, *, until: int | None = None,
            lo: int | None = None, hi: int | None = None, rows: set[int] | None = None
            ) -> tuple[int, str, int | None] | None:
    """(end_ts_ns, how, txn_row) of a logon of the chain, looking only at events before `until`.

    The logon is the chain's requests that start in [lo, hi) (None: unbounded; several logons
    of one long-lived process each have their own window, see logon_windows).
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


def end_horizon(ch: Chain, txs: dict[str, list], profile: Profile, until: int) -> float:
    """The earliest instant >= `until` that end_of(ch, txs, profile, until=·) compares with:
    asked again at any time in (until, horizon), with the same items and bootstrap, end_of gives
    the same answer, and the logon's "ended before t" test (end < t) the same outcome.

    end_of reads `until` only in comparisons with its rows' request starts, their answers' ends
    (each a request start, request end, response end or connection end), those ends plus
    `end_quiet_s` (the quiet rule) and failed connects' starts; its answer's end is one of those
    ends. Between two such instants every comparison stays as it was. (The grouping loop asks
    each live chain of an address at every new connection of that address; most asks fall in
    the same interval as the one before.)"""
    quiet = int(profile.end_quiet_s * 1e9)
    q0s, q1s, r1s = txs["req_first_ts_ns"], txs["req_last_ts_ns"], txs["rsp_last_ts_ns"]
    h = math.inf
    for it in ch.items:
        vals = [it.last_ns]
        if it.kind == "tcp" and it.failed_connect:
            vals.append(it.start_ns)
        for r in it.txn_rows:
            vals += (q0s[r], q1s[r], r1s[r])
        for v in vals:
            if v is not None:
                if until <= v < h:
                    h = v
                if until <= v + quiet < h:
                    h = v + quiet
    return h


@dataclass
class Request:
    """One request of a chain (a transactions row), in the order the process sent them."""

    q0: int                  # first request byte at the capture point
    a1: int | None           # last answer byte (None: unanswered)
    row: int
    protocol: str
    operation: str
    status: str | None


def chain_requests(ch: Chain, txs: dict[str, list]) -> list[Request]:
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
            out.append(Request(int(q0), None if rs is None else int(rs), r, txs["protocol"][r],
                            txs["operation"][r] or "", txs["status"][r]))
    out.sort(key=lambda q: (q.q0, q.row))
    return out


def _is_app_operation(q: Request) -> bool:
    return q.protocol == "giop" and q.operation not in NAMING_OPERATIONS and q.operation not in ORB_OPERATIONS


_NEVER = 1 << 62   # an unanswered request: outstanding for good


def _burst_start(reqs: list[Request], i: int, floor: int) -> int:
    """Index of the first request of the run that request i opens: the naming lookups and ORB
    messages right before it (sent after `floor`, the previous answer of an application call)."""
    j = i
    while j > 0 and not _is_app_operation(reqs[j - 1]) and reqs[j - 1].protocol == "giop" and reqs[j - 1].q0 > floor:
        j -= 1
    return j


def _logon_splits(ch: Chain, reqs: list[Request], profile: Profile) -> list[int]:
    """Request times where a further logon of this (long-lived) process starts (see logon_windows).

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
        return 0 <= max_a1[i] <= rq[i].q0 and not is_failed_status(st) and st not in FORWARD_STATUSES

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


def _repeats(rq: list[Request], app: list[int], ops: list[str], sig: list[str], first: int, fresh: Any,
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


def logon_windows(ch: Chain, txs: dict[str, list], profile: Profile, reqs: list[Request], rows_in: Any
                   ) -> list[tuple[int | None, int | None, tuple[int, str, int | None] | None]]:
    """The logons of one chain: [(lo, hi, end)], requests starting in [lo, hi) are that logon's.

    One client process may log on many times over the connections it keeps (a shared ward PC).
    The next logon starts at a request matching the profile's `start_operation`; without one,
    where the process's first application operations come again in the same order while nothing
    is outstanding (_logon_splits). The naming lookups right before such a request belong to the
    new logon. Each logon's end is found in its own window by the end rule (end_of), so the time
    between two logons, and requests after a logon's end reply, belong to none.
    """
    splits = sorted(set(_logon_splits(ch, reqs, profile)))
    los: list[int | None] = [None, *splits]
    his: list[int | None] = [*splits, None]
    return [(lo, hi, end_of(ch, txs, profile, lo=lo, hi=hi, rows=rows_in(lo, hi) if splits else None))
            for lo, hi in zip(los, his, strict=True)]


def only_naming(ch: Chain, txs: dict[str, list]) -> tuple[bool, list[str]]:
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
            if txs["rsp_last_ts_ns"][r] is None or (is_failed_status(status) and status != "USER_EXCEPTION"):
                return False, []
            ops.append(op)
    return True, ops


def still_under_way(reqs: list[Request], how: str, lo: int | None, end_ts: int) -> bool:
    """At the capture's end, with the logon's connections still open: could it have gone on?

    Asked only when the capture ended less than end_quiet_s after the logon's end: yes unless its
    end reply (end_operation / end_url) is in the capture or its last answer was a failure: the
    quiet rule needs end_quiet_s of quiet, which the capture did not last long enough to show,
    and a process whose connections are open may send its next request at any moment.
    """
    if how in ("end_operation", "end_url"):
        return False                      # its end reply is in the capture
    answered = [q for q in reqs if q.a1 is not None and q.a1 <= end_ts and (lo is None or q.q0 >= lo)]
    return not (answered and is_failed_status(max(answered, key=lambda q: q.a1 or 0).status))


def logon_outcome(ch: Chain, items: list[Item], txs: dict[str, list], how: str, end_row: int | None, end_ts: int,
             profile: Profile, rows: set[int] | None = None) -> str:
    if how in ("end_operation", "end_url") and end_row is not None:
        return "failed" if is_failed_status(txs["status"][end_row]) else "completed"
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
                last_ts, last_failed = ts, is_failed_status(txs["status"][r]) and not unseen
    if last_failed:
        return "failed"
    if profile.end_operation is not None or profile.end_url is not None:
        return "abandoned"
    return "completed"
