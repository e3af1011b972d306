"""The lab's scenarios: which fault each one injects, where it captures, and how the peers are configured.

A scenario is data (a ``Scenario``): the impairment config for the bridge (impair.py), server
operation overrides (think time, TRANSIENT, LOCATION_FORWARD, hang; keys of
captures/lab/corba/server.py), web server mode (Nagle), client phases (each phase is one run of
captures/lab/corba/client.py with the base client config plus overrides), the capture point and
the frames to cut out of the capture afterwards. run.py turns it into a capture and a truth file.

Durations are kept to a few seconds (request timeouts of 1.5 s, not WebSphere's 180 s) so the
whole set regenerates in a few minutes on 2 cores and each capture stays well under 2 MB.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from captures.lab.netns import APP2_IP, APP_IP, DNS_IP, WEB_IP
from captures.lab.servers import JARS

APP_NAME, APP2_NAME, WEB_NAME = "epj-app.lab.test", "epj-app2.lab.test", "epj-web.lab.test"
NAMES = {APP_NAME: APP_IP, APP2_NAME: APP2_IP, WEB_NAME: WEB_IP}
PORTS = {"naming": 2809, "orb": 9100, "http": 9080, "https": 9443, "dns": 53}
IMS = "Mon, 03 Feb 2025 08:00:00 GMT"   # after the jars' Last-Modified (2025-01-06), so 304
JAR_PATHS = [f"/epj/lib/{j}" for j in JARS]
SMALL_JARS = {"epj-res1.jar": 900, "epj-res2.jar": 700, "epj-res3.jar": 800, "epj-res4.jar": 600}

BASE_SERVER_OPS: dict[str, dict] = {
    "authenticate": {"think_ms": 80, "reply_bytes": 1200},
    "getUserContext": {"think_ms": 20, "reply_bytes": 2500},
    "getWorklist": {"think_ms": 40, "reply_bytes": 30000},
    "fetchPatientList": {"think_ms": 30, "reply_bytes": 20000},
    "logout": {"think_ms": 5, "reply_bytes": 0},
}

BASE_CLIENT: dict = {
    "logons": 1, "concurrency": 1, "start_interval_ms": 0, "client_name": "ws-lab-01", "max_runtime_s": 90,
    "dns": {"server": DNS_IP, "timeouts_s": [1.0, 2.0, 4.0]},
    "http": {"enabled": True, "host": WEB_NAME, "port": PORTS["http"], "jnlp": "/epj/epj.jnlp",
             "jars": JAR_PATHS, "if_modified_since": IMS, "conditional_from_logon": 1},
    "https": {"enabled": False, "host": WEB_NAME, "port": PORTS["https"], "path": "/epj/ping", "tls_version": "1.3"},
    "corba": {"host": APP_NAME, "naming_port": PORTS["naming"], "name": "epj/Session", "think_ms": 50,
              "startup_ms": 100, "retries": 1, "call_timeout_ms": 0},
}


@dataclass
class Scenario:
    """One capture: a fault, a capture point and the peers' settings (see module docstring)."""

    name: str
    description: str
    capture_point: str = "client"                     # client | middle | server
    impair: dict = field(default_factory=dict)         # impair.py config
    server_ops: dict = field(default_factory=dict)     # per-op overrides merged into BASE_SERVER_OPS
    server_nagle: bool = False
    second_server: bool = False                        # app2 on APP2_IP:9100 (LOCATION_FORWARD target)
    web_nagle: bool = False
    client: dict = field(default_factory=dict)         # deep-merged into BASE_CLIENT
    phases: list[dict] = field(default_factory=lambda: [{}])   # one client run per phase (overrides)
    capture_drops: list[dict] = field(default_factory=list)    # frames to cut from the file afterwards
    keylog: bool = False
    keylog_from: str = "client"                        # whose NSS key log becomes <name>.keys: client | server
    web_https_think_ms: float = 0.0                    # the HTTPS server waits this long before answering
    web_jars: dict[str, int] | None = None             # jar name -> size served (None: servers.JARS)
    linger_s: float = 0.0                              # keep capturing this long after the last client run
    nft: str = ""                                      # nftables ruleset loaded in the server namespace
    giop: dict = field(default_factory=lambda: {"max_version": "1.2", "buffer_size": 8192})
    # What netdiag must say about the affected logons (tests/test_logons_lab_all.py; run.py writes
    # these into the truth's "expected" block): the budget category that should be the dominant
    # cause (None: nothing is asserted, the scenario injects no wait); the injected seconds of that
    # cause per affected logon where the peers' config states them (None: not stated); which
    # logons are affected (client logon indices; None: all).
    # more workstations, each its own namespace and address (name -> address in 10.77.1.0/24), and
    # the ward of each; a phase with "pc": name runs there ("background": true runs it alongside
    # the next phases, "then_wait_ms" later), and its client_name should be that name
    workstations: dict[str, str] = field(default_factory=dict)
    wards: dict[str, str] = field(default_factory=dict)
    expect_cause: str | None = None
    expect_seconds: float | None = None
    expect_logons: list[int] | None = None
    tcp_stalls: dict | None = None                     # captures/lab/tcpstall.py peers (config), None: not run

    def server_config(self, name: str, host: str, naming: bool) -> dict:
        ops = copy.deepcopy(BASE_SERVER_OPS)
        if naming:   # faults belong to the first server; the forward target answers plainly
            for op, over in self.server_ops.items():
                ops[op].update(over)
        return {"name": name, "listen_host": host, "orb_port": PORTS["orb"],
                "naming": {"mode": "omninames" if naming else "none", "port": PORTS["naming"],
                           "bind_name": "epj/Session"},
                "giop": self.giop, "nagle": self.server_nagle, "ops": ops}

    def client_configs(self) -> list[dict]:
        base = merge(BASE_CLIENT, self.client)
        return [merge(base, p) for p in self.phases]

    def expected(self) -> dict:
        """The expected-cause block of the truth file (see the expect_* fields)."""
        return {"dominant_cause": self.expect_cause, "dominant_seconds": self.expect_seconds,
                "dominant_logons": self.expect_logons}


def merge(base: dict, over: dict) -> dict:
    """Deep merge (dicts recursively, everything else replaced); inputs untouched."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("baseline", "two clean logons (200s then 304s for the jars), no impairment; capture at the client",
             client={"logons": 2},
             expect_cause=None),
    Scenario("added_rtt", "25 ms added each way by the bridge (RTT +50 ms) on every frame; capture in the middle "
             "(server-facing veth: client->server frames after their delay, server->client before theirs)",
             capture_point="middle", impair={"c2s": {"delay_ms": 25}, "s2c": {"delay_ms": 25}},
             expect_cause="network_rtt_s"),
    Scenario("loss_c2s", "client->server loss: the first frame carrying 'authenticate' and the first GET of a "
             "jar are dropped, plus seeded 3% loss of client data frames; capture at the server (drops unseen)",
             capture_point="server",
             impair={"c2s": {"loss": {"p": 0.03, "seed": 11, "tcp_payload_only": True}},
                     "rules": [{"dir": "c2s", "proto": "tcp", "dport": 9100, "contains": "authenticate",
                                "nth": [1], "action": "drop"},
                               {"dir": "c2s", "proto": "tcp", "dport": 9080, "contains": "GET /epj/lib/",
                                "nth": [1], "action": "drop"}]},
             expect_cause="loss_recovery_s"),
    Scenario("loss_c2s_client", "the same client->server loss as loss_c2s (first 'authenticate' frame, first "
             "jar GET, seeded 3% of client data frames dropped) but captured at the client: each dropped original "
             "and its resend are both in the file, so the client's resend wait is visible as loss recovery",
             impair={"c2s": {"loss": {"p": 0.03, "seed": 11, "tcp_payload_only": True}},
                     "rules": [{"dir": "c2s", "proto": "tcp", "dport": 9100, "contains": "authenticate",
                                "nth": [1], "action": "drop"},
                               {"dir": "c2s", "proto": "tcp", "dport": 9080, "contains": "GET /epj/lib/",
                                "nth": [1], "action": "drop"}]},
             expect_cause="loss_recovery_s"),
    Scenario("loss_s2c", "server->client loss: data frames 4 and 5 of the ORB port's replies dropped, plus "
             "seeded 3% loss of server data frames; capture in the middle (drops seen, then their resends)",
             capture_point="middle",
             impair={"s2c": {"loss": {"p": 0.03, "seed": 5, "tcp_payload_only": True}},
                     "rules": [{"dir": "s2c", "proto": "tcp", "sport": 9100, "payload": True, "nth": [4, 5],
                                "action": "drop"}]},
             expect_cause="loss_recovery_s"),
    Scenario("lost_ack_dsack", "the client's first bare ACK after the authenticate reply (the ORB port's 2nd "
             "reply frame) is dropped; the client thinks 300 ms between calls, so the server's loss probe resends "
             "the reply the client already had and the client answers with a D-SACK; capture in the middle "
             "(server-facing veth: the lost ACK is absent, the resend and the D-SACK are in the file). The resend "
             "costs the logon nothing; client think is what it is made of",
             capture_point="middle", client={"corba": {"think_ms": 300}},
             impair={"rules": [{"dir": "c2s", "proto": "tcp", "dport": 9100, "pure_ack": True, "nth": [1],
                                "action": "drop",
                                "after": {"dir": "s2c", "proto": "tcp", "sport": 9100, "payload": True,
                                          "nth": [2]}}]},
             expect_cause="client_s"),
    Scenario("loss_c2s_before_capture", "the client's getUserContext and fetchPatientList requests (one segment "
             "each) are dropped between the PC and a server-side capture point: the file holds only the resends, "
             "which the client's kernel sends a loss-probe/RTO (~200 ms) later; 20 ms client think",
             capture_point="server", client={"corba": {"think_ms": 20}},
             impair={"rules": [{"dir": "c2s", "proto": "tcp", "dport": 9100, "contains": "getUserContext",
                                "nth": [1], "action": "drop"},
                               {"dir": "c2s", "proto": "tcp", "dport": 9100, "contains": "fetchPatientList",
                                "nth": [1], "action": "drop"}]},
             expect_cause="loss_recovery_s"),
    Scenario("loss_end_reply_after_capture", "the first two copies of the logout reply (the logon's end) are "
             "dropped after a server-side capture point: the file holds them and the third copy (a loss probe "
             "~200 ms, then an RTO twice that, later), which is when the client got it; 10 ms client think, no "
             "start-up pause",
             capture_point="server", client={"corba": {"think_ms": 10, "startup_ms": 0}},
             impair={"rules": [{"dir": "s2c", "proto": "tcp", "sport": 9100,
                                "contains": "GIOP\u0001\u0002\u0001\u0001\u000c\u0000\u0000\u0000",
                                "nth": [1, 2], "action": "drop"}]},
             expect_cause="loss_recovery_s"),
    Scenario("loss_s2c_sender_side", "3% seeded loss of server data frames after a server-side capture point "
             "(the sender's side), 25 ms added each way and larger replies (getWorklist 120 KB, fetchPatientList "
             "80 KB): most resends come within one round trip of the highest segment, which tshark labels "
             "out-of-order; the server's TcpRetransSegs says how many there were",
             capture_point="server",
             impair={"c2s": {"delay_ms": 25}, "s2c": {"delay_ms": 25, "loss": {"p": 0.03, "seed": 3,
                                                                             "tcp_payload_only": True}}},
             server_ops={"getWorklist": {"reply_bytes": 120000}, "fetchPatientList": {"reply_bytes": 80000}},
             expect_cause="network_rtt_s"),
    Scenario("slow_auth", "authenticate thinks 2000 ms at the server; capture at the server",
             capture_point="server", server_ops={"authenticate": {"think_ms": 2000}},
             expect_cause="server_s", expect_seconds=2.0),
    Scenario("dropped_syn", "the first SYN to the ORB port (9100) is dropped: the client resends it after ~1 s; "
             "capture at the client", impair={"rules": [{"dir": "c2s", "proto": "tcp", "dport": 9100, "syn": True,
                                                          "nth": [1], "action": "drop"}]},
             expect_cause="connect_s", expect_seconds=1.0),
    Scenario("dropped_syn_nft", "nftables variant: the server host's own input hook drops the first SYN to "
             "9100 (a quota rule: 'quota until 100 bytes' matches only the first 60-byte SYN), so the capture at "
             "the server shows the SYN arriving unanswered, then its resend ~1 s later being answered",
             capture_point="server",
             nft="table inet ndl_lab {\n  chain input {\n    type filter hook input priority 0; policy accept;\n"
                 "    tcp dport 9100 tcp flags & (syn | ack) == syn quota until 100 bytes counter drop\n  }\n}\n",
             expect_cause="connect_s", expect_seconds=1.0),
    Scenario("slow_dns", "the first DNS query is dropped (resolver resends after 1 s) and every DNS answer "
             "is held 300 ms; capture at the client",
             impair={"rules": [{"dir": "c2s", "proto": "udp", "dport": 53, "nth": [1], "action": "drop"},
                               {"dir": "s2c", "proto": "udp", "sport": 53, "action": "delay", "delay_ms": 300}]},
             expect_cause="dns_s", expect_seconds=1.3),
    Scenario("tls", "HTTPS GET over TLS 1.2 (logon 0) then TLS 1.3 (logon 1) with NSS key log (tls.keys); "
             "capture at the client", keylog=True,
             phases=[{"https": {"enabled": True, "tls_version": "1.2"}},
                     {"first_logon": 1, "https": {"enabled": True, "tls_version": "1.3"}}],
             expect_cause="client_s"),
    Scenario("tls13_tickets", "HTTPS over TLS 1.3 with session tickets (the server sends two after the "
             "client's Finished): 5 ms added each way, so at the client the tickets arrive after the GET "
             "has left; the HTTPS server thinks 100 ms before answering; the Nagle-held second ticket may "
             "wait for the client's delayed ACK inside that think; key log written by the server "
             "(tls13_tickets.keys); short client think so server time dominates; capture at the client",
             keylog=True, keylog_from="server", web_https_think_ms=100.0, expect_cause="server_s",
             impair={"c2s": {"delay_ms": 5}, "s2c": {"delay_ms": 5}},
             client={"http": {"enabled": False},
                     "https": {"enabled": True, "tls_version": "1.3"},
                     "corba": {"think_ms": 10, "startup_ms": 20}}),
    Scenario("https_jars", "Java Web Start over HTTPS: the JNLP and the jars on one keep-alive TLS 1.3 "
             "connection to 9443 (200s, then 304s in logon 1), key log from the client (https_jars.keys); "
             "stands in for IIOP over TLS, which the lab's omniORB build cannot speak (no SSL transport); "
             "capture at the client", keylog=True,
             client={"logons": 2, "http": {"tls": "1.3"}}),
    Scenario("zero_window", "slow reader: the client's receive buffer shrinks to 4 KB and the client process "
             "is stopped for 2 s (a GC-like pause) while a 120 KB getWorklist reply arrives -> zero window and "
             "window probes; getWorklist thinks 1000 ms so the reply lands inside the pause even though the "
             "pause helper (a new Python process) needs a few hundred ms to start; capture at the client",
             server_ops={"getWorklist": {"reply_bytes": 120000, "think_ms": 1000}},
             client={"corba": {"slow_reader": {"op": "getWorklist", "rcvbuf": 4096, "after_ms": 20,
                                               "pause_ms": 2000}}},
             expect_cause="flow_control_s"),
    Scenario("nagle_delayed_ack", "web server writes head and body in two small writes with Nagle on, and the "
             "ORB server keeps Nagle on (TCP_NODELAY cleared): second writes wait for the client's delayed ACK; "
             "capture at the server; four small resources after the jars, once the client's TCP has left "
             "quick-ACK mode, make the stall visible", capture_point="server", web_nagle=True, server_nagle=True,
             web_jars={**JARS, **SMALL_JARS},
             client={"logons": 2, "http": {"jars": JAR_PATHS + [f"/epj/lib/{j}" for j in SMALL_JARS]}},
             expect_cause="client_s"),
    Scenario("system_exception_retry", "getUserContext raises CORBA::TRANSIENT on its first call; the client "
             "retries once; capture at the server", capture_point="server",
             server_ops={"getUserContext": {"transient_first_n": 1}},
             expect_cause="client_s"),
    Scenario("location_forward", "authenticate answers LOCATION_FORWARD to a second server (epj-app2, "
             "10.77.1.11:9100) on its first call; the client's ORB re-sends there; capture at the client",
             second_server=True,
             server_ops={"authenticate": {"forward_first_n": 1,
                                          "forward_to": f"corbaloc::1.2@{APP2_IP}:9100/EPJSession"}},
             expect_cause="client_s"),
    Scenario("request_timeout_retry", "getWorklist never answers its first call in time (3 s hang); the "
             "client's 1.5 s call timeout fires, omniORB closes that connection and the retry goes out on a new "
             "one; the capture lingers 2 s so the late reply (and the client's RST) is in it; capture at the client",
             linger_s=2.0,
             server_ops={"getWorklist": {"hang_first_n": 1, "hang_s": 3.0}},
             client={"corba": {"call_timeout_ms": 1500, "retries": 1}},
             expect_cause="server_s", expect_seconds=1.5),
    Scenario("capture_drops", "a clean logon, then frames removed from the capture file (not the network): "
             "the frame with the authenticate request, the first frame of the getWorklist reply data and every "
             "40th frame; capture at the client",
             capture_drops=[{"contains": "authenticate", "nth": 1}, {"sport": 9100, "payload": True, "nth": 3},
                            {"every": 40}],
             expect_cause="client_s"),
    Scenario("tcp_stalls_other_port", "no logon: plain TCP peers on ports netdiag does not parse "
             "(captures/lab/tcpstall.py). Port 7000: 14 request/response exchanges, the client writes each request in "
             "two 100-byte pieces with Nagle on and the server answers only the whole request, so once Linux leaves "
             "quick-ACK mode the second piece waits for the server's delayed ACK (~40 ms). Port 7001: a slow reader "
             "(4 KB receive buffer) asks for 300 KB and does not read for 1.5 s -> zero window. No CORBA client "
             "runs; capture at the server", capture_point="server", phases=[],
             tcp_stalls={"requests": 14, "piece_bytes": 100, "reply_bytes": 60, "think_ms": 15,
                         "bulk_bytes": 300000, "rcvbuf": 4096, "pause_ms": 1500}),
    Scenario("storm", "20 logons at once from one workstation address (each its own process, ORB and "
             "connections; 1 s start-up and 250 ms think between calls so all twenty overlap although starting "
             "20 Python processes on 2 cores takes ~2 s); jars answered 304; smaller replies; capture at the server", capture_point="server",
             server_ops={"getWorklist": {"reply_bytes": 8000}, "fetchPatientList": {"reply_bytes": 6000}},
             client={"logons": 20, "concurrency": 20, "max_runtime_s": 120,
                     "http": {"conditional_from_logon": 0}, "corba": {"think_ms": 250, "startup_ms": 1000}},
             expect_cause="client_s"),
    Scenario("repeated_logons", "three logons in ONE client process over its reused naming and ORB connections "
             "(a shared ward PC: log on, log out, the next user logs on in the running client), 300 ms apart; "
             "each logon resolves epj/Session again and runs authenticate ... logout; authenticate thinks 800 ms, "
             "so each logon takes about 1.1 s; the client logs each logon's start and end; capture at the client",
             server_ops={"authenticate": {"think_ms": 800}},
             client={"session": {"logons_per_process": 3, "between_ms": 300}},
             expect_cause="server_s", expect_seconds=0.8),
    Scenario("switch_user", "five short logons in ONE client process (\"switch user\" on a ward PC): resolve, "
             "authenticate, getUserContext, logout, 20 ms client think, 700 ms of quiet between logons, "
             "connections reused; no downloads; capture at the server",
             capture_point="server",
             client={"http": {"enabled": False},
                     "corba": {"think_ms": 20, "startup_ms": 0,
                               "sequence": [["authenticate", {}], ["getUserContext", {}], ["logout", {}]]},
                     "session": {"logons_per_process": 5, "between_ms": 700}},
             expect_cause="server_s", expect_seconds=0.08),
    Scenario("naming_tool", "a name-service tool (captures/lab/corba/nametool.py: narrow, list, resolve on "
             "2809, never the application server) run twice between two normal logons from the same "
             "workstation address: the tool runs are not logons; capture at the client",
             phases=[{}, {"tool": {"runs": 2, "between_ms": 400, "ops": [["list", 50], ["resolve", "epj/Session"]]}},
                     {"first_logon": 1}],
             expect_cause="client_s"),
    Scenario("multi_client", "four workstations at four addresses in two wards (Ward A: 10.77.1.33 and .34; "
             "Ward B: 10.77.1.49, which logs on twice in one process; and 10.77.1.20 in no ward) logging on at "
             "overlapping times, each workstation its own network namespace behind a bridge in the client "
             "namespace; capture at the server",
             capture_point="server",
             workstations={"ward-a-pc1": "10.77.1.33", "ward-a-pc2": "10.77.1.34", "ward-b-pc1": "10.77.1.49"},
             wards={"ward-a-pc1": "Ward A", "ward-a-pc2": "Ward A", "ward-b-pc1": "Ward B"},
             phases=[{"pc": "ward-a-pc1", "client_name": "ward-a-pc1", "first_logon": 0, "background": True,
                      "then_wait_ms": 150},
                     {"pc": "ward-a-pc2", "client_name": "ward-a-pc2", "first_logon": 1, "background": True,
                      "then_wait_ms": 150},
                     {"pc": "ward-b-pc1", "client_name": "ward-b-pc1", "first_logon": 2, "background": True,
                      "then_wait_ms": 150, "session": {"logons_per_process": 2, "between_ms": 400}},
                     {"client_name": "ws-lab-01", "first_logon": 10}],
             expect_cause="client_s"),
]}
