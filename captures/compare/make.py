"""Make the before/after pairs `netdiag compare` is tested against, with the lab's own runner.

    python -m captures.compare.make [--only NAME ...]      # root; about 2 minutes on 2 cores

The committed lab scenarios (captures/lab) hold one or two logons each: enough to show a cause,
too few for a statistical before/after. These scenarios reuse the lab unchanged (namespaces,
real omniORB/HTTP/DNS peers, the impairing bridge, tcpdump, truth files written from the peers'
own logs; `captures.lab.run.run_scenario`) with 12 sequential logons per capture, capture at the
server, jars answered 304 from the first logon (so every logon does the same work) and the
storm's smaller replies (so each file stays well under 2 MB):

- cmp_auth800      authenticate thinks 800 ms  (the "before" of a server change)
- cmp_auth200      authenticate thinks 200 ms  (the "after")
- cmp_auth200_rerun  the same settings as cmp_auth200, a second run (A/A pair with it)
- cmp_syndrop      as cmp_auth200, capture at the client, the first SYN of each logon's ORB connection
                   dropped (SYN drops -> none: the before side)
- cmp_client       as cmp_auth200, capture at the client (the after side of cmp_syndrop)
- cmp_tail3_client as cmp_client, the first authenticate frame of logons 3, 7 and 10 dropped: three of
                   twelve logons wait ~0.2 s for the resend (a tail change; the median hardly moves)
- cmp_tail0_client the same without drops, run right after (the after side)
- cmp_loss3        16 logons, the lab's default operations and reply sizes, seeded 3 % loss of
                   server->client TCP data frames (the "before" of "3 % loss -> none"). Only that direction:
                   a capture at the server sees each lost frame and its resend; client->server frames
                   dropped before the capture point would show up as client time there, not as loss.
- cmp_noloss       the same without loss (the "after")
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from captures.lab.run import run_scenario
from captures.lab.scenarios import Scenario

OUT = Path(__file__).resolve().parent
LOGONS = 12
COMMON_CLIENT = {"logons": LOGONS, "concurrency": 1, "max_runtime_s": 120, "http": {"conditional_from_logon": 0}}
LOSS_LOGONS = 16
LOSS_CLIENT = {**COMMON_CLIENT, "logons": LOSS_LOGONS}
SMALL_REPLIES = {"getWorklist": {"reply_bytes": 8000}, "fetchPatientList": {"reply_bytes": 6000}}


def _ops(auth_ms: int) -> dict:
    return {**SMALL_REPLIES, "authenticate": {"think_ms": auth_ms}}


SCENARIOS = {s.name: s for s in [
    Scenario("cmp_auth800", f"{LOGONS} sequential logons, authenticate thinks 800 ms; capture at the server",
             capture_point="server", server_ops=_ops(800), client=COMMON_CLIENT),
    Scenario("cmp_auth200", f"{LOGONS} sequential logons, authenticate thinks 200 ms; capture at the server",
             capture_point="server", server_ops=_ops(200), client=COMMON_CLIENT),
    Scenario("cmp_auth200_rerun", f"second run of cmp_auth200 ({LOGONS} logons, authenticate 200 ms); capture "
             "at the server", capture_point="server", server_ops=_ops(200), client=COMMON_CLIENT),
    Scenario("cmp_syndrop", "as cmp_auth200 but captured at the client, and the first SYN of every logon's "
             "connection to the ORB port (9100) dropped by the bridge (the rule counts its own matches, the "
             "retry included: odd matches are first SYNs); the client resends after ~1 s",
             capture_point="client", server_ops=_ops(200), client=COMMON_CLIENT,
             impair={"rules": [{"dir": "c2s", "proto": "tcp", "dport": 9100, "syn": True,
                                "nth": list(range(1, 2 * LOGONS, 2)), "action": "drop"}]}),
    Scenario("cmp_client", "as cmp_auth200 but captured at the client (the no-drop side of cmp_syndrop)",
             capture_point="client", server_ops=_ops(200), client=COMMON_CLIENT),
    Scenario("cmp_tail3_client", f"as cmp_client ({LOGONS} logons, authenticate 200 ms, capture at the client), "
             "and the bridge drops the first 'authenticate' request frame of logons 3, 7 and 10 (the rule counts "
             "its own matches, resends included: matches 3, 8 and 12); each of those logons waits for the client "
             "kernel's resend (~0.2 s). Three of twelve logons slower, the median not: the before side of the "
             "tail-aware compare (issue 11 item 9)",
             capture_point="client", server_ops=_ops(200), client=COMMON_CLIENT,
             impair={"rules": [{"dir": "c2s", "proto": "tcp", "dport": 9100, "contains": "authenticate",
                                "nth": [3, 8, 12], "action": "drop"}]}),
    Scenario("cmp_tail0_client", "the same as cmp_tail3_client without drops, run right after it (the after side)",
             capture_point="client", server_ops=_ops(200), client=COMMON_CLIENT),
    Scenario("cmp_loss3", f"{LOSS_LOGONS} sequential logons, default operations, seeded 3% loss of server->client "
             "TCP data frames; capture at the server (each lost frame and its resend are in the file)",
             capture_point="server", client=LOSS_CLIENT,
             impair={"s2c": {"loss": {"p": 0.03, "seed": 22, "tcp_payload_only": True}}}),
    Scenario("cmp_noloss", f"{LOSS_LOGONS} sequential logons, default operations, no loss; capture at the server",
             capture_point="server", client=LOSS_CLIENT),
]}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen (default: all) compare scenarios into captures/compare."""
    ap = argparse.ArgumentParser(prog="python -m captures.compare.make", description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], choices=sorted(SCENARIOS))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    for name in args.only or list(SCENARIOS):
        truth = run_scenario(SCENARIOS[name], args.out)
        exp = truth["expected"]
        print(f"{name}: logons {exp['logons_ok']}/{exp['logons']} ok, GIOP requests {exp['giop_requests']}, "
              f"bridge drops {len(truth['impairment_log']['frames_dropped'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
