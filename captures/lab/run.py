"""Run lab scenarios: real peers in namespaces, injected faults, tcpdump, and a truth file per capture.

    python -m captures.lab.run --scenario NAME [--scenario NAME ...] [--out captures/lab]
    python -m captures.lab.run --all [--out captures/lab] [--crosscheck]
    python -m captures.lab.run --list

For each scenario (scenarios.py): build client -- middle -- server namespaces (netns.py), start
dnsmasq, the web server (servers.py), the omniORB naming service and EPJ server(s)
(captures/lab/corba/server.py), the impairing bridge (impair.py) in the middle, tcpdump at the
capture point, then run the logon client (captures/lab/corba/client.py) once per phase. Then
stop everything, cut the chosen frames out of the capture (capture-side drops), and write
``<scenario>.pcap``, ``<scenario>.truth.json`` (and ``<scenario>.keys`` for TLS) into --out.

The truth file is assembled only from what the peers and the emulator logged (client, servers,
dnsmasq, bridge, tcpdump's own counters, and the list of frames this script removed): never from
netdiag, and never from decoding the capture beyond choosing which frames to remove.
Needs root; refuses to start, naming what is missing, otherwise.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from captures.lab import netns
from captures.lab.impair import frame_info
from captures.lab.netns import APP2_IP, APP_IP, CLIENT_IP, DNS_IP, WEB_IP, Lab, LabError
from captures.lab.scenarios import NAMES, PORTS, SCENARIOS, Scenario

OUT_DIR = netns.REPO / "captures" / "lab"
PY = sys.executable


# ---------------------------------------------------------------------------------------------
# logs
# ---------------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    """Every JSON line of a peer's log (an unreadable line raises LabError naming file and line)."""
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LabError(f"{path}:{i}: not JSON: {exc}") from exc
    return out


def wait_event(path: Path, event: str, proc: subprocess.Popen, timeout: float = 30) -> dict:
    """Wait (bounded) for a log line with this event; LabError if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if rec.get("event") == event:
                    return rec
                if rec.get("event") == "server_error":
                    raise LabError(f"{path}: {rec.get('error')}")
        if proc.poll() is not None:
            raise LabError(f"{' '.join(map(str, proc.args[3:6]))} exited ({proc.returncode}) before {event!r}")
        time.sleep(0.05)
    raise LabError(f"{path}: no {event!r} within {timeout} s")


# ---------------------------------------------------------------------------------------------
# classic pcap (what tcpdump -w writes): read records, write a file without chosen frames
# ---------------------------------------------------------------------------------------------
def read_pcap(path: Path) -> tuple[bytes, str, list[tuple[bytes, bytes, int]]]:
    """(global header, endian, [(record header, frame bytes, ts_ns)]) of a classic pcap file."""
    data = path.read_bytes()
    if len(data) < 24:
        raise LabError(f"{path}: shorter than a pcap header ({len(data)} bytes)")
    magic = data[:4]
    table = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
             b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}
    if magic not in table:
        raise LabError(f"{path}: not a classic pcap file (magic {magic.hex()})")
    endian, mult = table[magic]
    recs, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, off)
        if off + 16 + incl > len(data):
            raise LabError(f"{path}: frame {len(recs) + 1} at offset {off} cut short")
        recs.append((data[off:off + 16], data[off + 16:off + 16 + incl], sec * 1_000_000_000 + frac * mult))
        off += 16 + incl
    return data[:24], endian, recs


def cut_frames(pcap: Path, rules: list[dict]) -> list[dict]:
    """Remove frames chosen by rules from pcap (in place); return what was removed (1-based numbers)."""
    head, _endian, recs = read_pcap(pcap)
    chosen: dict[int, str] = {}
    for ri, rule in enumerate(rules):
        if "every" in rule:
            for n in range(int(rule["every"]), len(recs) + 1, int(rule["every"])):
                chosen.setdefault(n, f"rule {ri}: every {rule['every']}th frame")
            continue
        seen = 0
        needle = rule["contains"].encode() if rule.get("contains") else None
        for n, (_h, frame, _ts) in enumerate(recs, start=1):
            info = frame_info(frame)
            if info["proto"] != "tcp":
                continue
            if "sport" in rule and info.get("sport") != rule["sport"]:
                continue
            if rule.get("payload") and info["payload_len"] == 0:
                continue
            if needle is not None and needle not in frame[info.get("payload_off", len(frame)):]:
                continue
            seen += 1
            if seen == int(rule.get("nth", 1)):
                chosen[n] = f"rule {ri}: {json.dumps(rule)}"
                break
    removed = []
    with pcap.open("wb") as f:
        f.write(head)
        for n, (h, frame, ts) in enumerate(recs, start=1):
            if n in chosen:
                info = frame_info(frame)
                rec = {"frame_number": n, "ts_ns": ts, "md5": hashlib.md5(frame).hexdigest(),
                       "frame_len": len(frame), "reason": chosen[n], "proto": info["proto"]}
                if info["proto"] in ("tcp", "udp"):
                    rec.update(src=f"{info['src']}:{info['sport']}", dst=f"{info['dst']}:{info['dport']}",
                               payload_len=info["payload_len"])
                    if info["proto"] == "tcp":
                        rec.update(tcp_flags=info["flags"], seq=info["seq"])
                        pl = frame[info["payload_off"]:]
                        # which GIOP operation/HTTP request the frame carried, by the rule's own test
                        rec["giop_request_op"] = next((op for op in ("authenticate", "getUserContext", "getWorklist",
                                                                     "fetchPatientList", "logout", "resolve")
                                                       if pl[:4] == b"GIOP" and pl[7] == 0 and op.encode() in pl),
                                                      None)
                        rec["http_request"] = pl[:4] in (b"GET ", b"HEAD", b"POST")
                removed.append(rec)
                continue
            f.write(h)
            f.write(frame)
    return removed


# ---------------------------------------------------------------------------------------------
# one scenario
# ---------------------------------------------------------------------------------------------
def run_scenario(sc: Scenario, out_dir: Path, keep_work: bool = False) -> dict:
    """Run sc in fresh namespaces; write its pcap/truth/keys into out_dir; return the truth."""
    work = Path(tempfile.mkdtemp(prefix=f"ndl-{sc.name}-"))
    logs = {k: work / f"{k}.jsonl" for k in ("client", "app1", "app2", "web", "bridge", "tcpstall_server",
                                             "tcpstall_client")}
    dns_log = work / "dnsmasq.log"
    raw_pcap = work / f"{sc.name}.pcap"
    keylog = work / "client.keys"
    started_utc = dt.datetime.now(dt.UTC)
    try:
        with netns.lab() as lb:
            t_cap0, t_cap1, tcpdump_counts, client_rcs = _run_in_lab(sc, lb, work, logs, dns_log, raw_pcap, keylog)
        removed = cut_frames(raw_pcap, sc.capture_drops) if sc.capture_drops else []
        truth = build_truth(sc, work, logs, dns_log, t_cap0, t_cap1, tcpdump_counts, removed, client_rcs,
                            started_utc)
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw_pcap, out_dir / f"{sc.name}.pcap")
        if sc.keylog:
            shutil.copyfile(work / "server.keys" if sc.keylog_from == "server" else keylog,
                            out_dir / f"{sc.name}.keys")
        (out_dir / f"{sc.name}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
        return truth
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)


def _run_in_lab(sc: Scenario, lb: Lab, work: Path, logs: dict, dns_log: Path, raw_pcap: Path,
                keylog: Path) -> tuple[int, int, dict, list[int]]:
    err = open(work / "peers.err", "w")  # noqa: SIM115 - closed below
    try:
        lb.start(lb.srv, netns_dnsmasq(dns_log), stdout=subprocess.DEVNULL, stderr=err)
        web_cfg = {"listen": WEB_IP, "http_port": PORTS["http"], "https_port": PORTS["https"], "nagle": sc.web_nagle,
                   "codebase": f"http://{next(n for n, ip in NAMES.items() if ip == WEB_IP)}:{PORTS['http']}",
                   "workdir": str(work / "web"), "keylog": str(work / "server.keys"), "max_runtime_s": 600,
                   "https_think_ms": sc.web_https_think_ms}
        if sc.web_jars is not None:
            web_cfg["jars"] = sc.web_jars
        (work / "web.json").write_text(json.dumps(web_cfg))
        web = lb.start(lb.srv, [PY, "-m", "captures.lab.servers", "web", "--config", str(work / "web.json"),
                                "--log", str(logs["web"])], stderr=err)
        servers = [("app1", APP_IP, True)] + ([("app2", APP2_IP, False)] if sc.second_server else [])
        procs = []
        for name, ip, naming in servers:
            cfg_path = work / f"{name}.json"
            cfg_path.write_text(json.dumps(sc.server_config(name, ip, naming)))
            procs.append((lb.start(lb.srv, [PY, "-m", "captures.lab.corba.server", "--config", str(cfg_path),
                                            "--log", str(logs[name]), "--workdir", str(work / name)], stderr=err),
                          logs[name]))
        (work / "bridge.json").write_text(json.dumps(sc.impair))
        # real-time priority keeps the user-space bridge's forwarding latency well under the
        # 10 ms floor of Linux's tail-loss probe, which scheduling delays would otherwise trigger
        bridge = lb.start(lb.mid, ["chrt", "-f", "20", PY, "-m", "captures.lab.impair", "--a", lb.if_mc, "--b", lb.if_ms, "--config",
                                   str(work / "bridge.json"), "--log", str(logs["bridge"]),
                                   "--max-runtime-s", "400"], stderr=err)
        stall_srv = None
        if sc.tcp_stalls is not None:   # plain TCP peers on ports netdiag does not parse (tcpstall.py)
            (work / "tcpstall.json").write_text(json.dumps({"host": APP_IP, **sc.tcp_stalls}))
            stall_srv = lb.start(lb.srv, [PY, "-m", "captures.lab.tcpstall", "server", "--config",
                                          str(work / "tcpstall.json"), "--log", str(logs["tcpstall_server"])],
                                 stderr=err)
            wait_event(logs["tcpstall_server"], "server_ready", stall_srv)
        wait_event(logs["web"], "web_ready", web)
        for proc, log in procs:
            wait_event(log, "server_ready", proc, timeout=40)
        wait_event(logs["bridge"], "bridge_ready", bridge)
        pcs = {name: lb.add_client(ip) for name, ip in sc.workstations.items()}
        # resolve neighbours before the capture so it does not start with ARP (bounded: 1 try each)
        for ns in (lb.cli, *pcs.values()):
            for ip in (APP_IP, APP2_IP, DNS_IP, WEB_IP):
                lb.run_in(ns, ["ping", "-c", "1", "-W", "2", ip], timeout=5, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        if sc.nft:
            # loaded after the neighbours are resolved, before the capture; the quota counts from here
            (work / "ruleset.nft").write_text(sc.nft)
            netns.run(["ip", "netns", "exec", lb.srv, "nft", "-f", str(work / "ruleset.nft")])
        ns, iface = lb.capture_interface(sc.capture_point)
        kern0 = {"client": lb.tcp_counters(lb.cli), "server": lb.tcp_counters(lb.srv),
                 **{name: lb.tcp_counters(ns) for name, ns in pcs.items()}}
        dump = netns.start_tcpdump(lb, ns, iface, raw_pcap)
        t_cap0 = time.time_ns()
        rcs = []
        background: list[tuple[subprocess.Popen, float]] = []
        for i, ccfg in enumerate(sc.client_configs()):
            if sc.keylog:
                ccfg["https"]["keylog"] = str(keylog)
            cpath = work / f"client{i}.json"
            if "tool" in ccfg:
                # a name-service tool run from the same workstation (corba/nametool.py), not a logon
                tool = {"host": APP_IP, "naming_port": PORTS["naming"], **ccfg["tool"]}
                cpath.write_text(json.dumps(tool))
                cmd = [PY, "-m", "captures.lab.corba.nametool", "--config", str(cpath), "--log", str(logs["client"]),
                       "--workdir", str(work / "tool")]
            else:
                cpath.write_text(json.dumps(ccfg))
                cmd = [PY, "-m", "captures.lab.corba.client", "--config", str(cpath), "--log",
                       str(logs["client"]), "--workdir", str(work / "client")]
            ns = pcs[ccfg["pc"]] if ccfg.get("pc") else lb.cli
            if ccfg.get("background"):
                # runs alongside the next phases (several workstations logging on at once)
                background.append((lb.start(ns, cmd, stderr=err), time.monotonic() + float(ccfg.get("max_runtime_s", 90))))
                time.sleep(float(ccfg.get("then_wait_ms", 0)) / 1000.0)
                continue
            res = lb.run_in(ns, cmd, timeout=float(ccfg.get("max_runtime_s", 90)) + 30, stderr=err)
            rcs.append(res.returncode)
            time.sleep(0.3)
        for proc, deadline in background:
            try:
                rcs.append(proc.wait(timeout=max(1.0, deadline - time.monotonic()) + 30))
            except subprocess.TimeoutExpired as exc:
                lb.stop(proc)
                raise LabError("a background client run did not finish in time") from exc
        if background:
            time.sleep(0.3)
        if sc.tcp_stalls is not None:
            res = lb.run_in(lb.cli, [PY, "-m", "captures.lab.tcpstall", "client", "--config",
                                     str(work / "tcpstall.json"), "--log", str(logs["tcpstall_client"])],
                            timeout=60, stderr=err)
            rcs.append(res.returncode)
            time.sleep(0.3)
        time.sleep(sc.linger_s)
        t_cap1 = time.time_ns()
        counts = netns.stop_tcpdump(lb, dump)
        kern1 = {"client": lb.tcp_counters(lb.cli), "server": lb.tcp_counters(lb.srv),
                 **{name: lb.tcp_counters(ns) for name, ns in pcs.items()}}
        if sc.nft:
            listing = netns.run(["ip", "netns", "exec", lb.srv, "nft", "list", "ruleset"]).stdout
            m = re.search(r"counter packets (\d+) bytes (\d+)", listing)
            counts["nft"] = {"ruleset_after": listing, "packets_dropped": int(m.group(1)) if m else None,
                             "bytes_dropped": int(m.group(2)) if m else None}
        counts["kernel_tcp"] = {h: {k: kern1[h][k] - kern0[h][k] for k in kern1[h]} for h in kern1}
        lb.stop(bridge)
        for proc, _ in procs:
            lb.stop(proc)
        lb.stop(web)
        if stall_srv is not None:
            lb.stop(stall_srv)
        return t_cap0, t_cap1, counts, rcs
    finally:
        err.close()


def netns_dnsmasq(log: Path) -> list[str]:
    from captures.lab.servers import dnsmasq_command

    return dnsmasq_command(DNS_IP, NAMES, log)


# ---------------------------------------------------------------------------------------------
# truth
# ---------------------------------------------------------------------------------------------
def _peer(addr: str) -> tuple[str, int]:
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def build_truth(sc: Scenario, work: Path, logs: dict, dns_log: Path, t0: int, t1: int, tcpdump_counts: dict,
                removed: list[dict], client_rcs: list[int], started_utc: dt.datetime) -> dict:
    """Assemble the truth from the peers' and the bridge's logs (module docstring)."""
    cli = read_jsonl(logs["client"])
    web = [e for e in read_jsonl(logs["web"]) if e["event"] == "http_request"]
    bridge_all = read_jsonl(logs["bridge"])
    bridge = [e for e in bridge_all if e["event"] in ("dropped", "delayed", "send_failed")
              and t0 <= e.get("ts_in_ns", e.get("ts_ns", 0)) <= t1 + 2_000_000_000]
    stats = next((e for e in bridge_all if e["event"] == "bridge_stats"), {})
    srv_events = {name: [{k: v for k, v in e.items() if k != "ior"} for e in read_jsonl(logs[name])]
                  for name in ("app1", "app2")}

    giop_sent = [e for e in cli if e["event"] == "giop_sent"]
    requests = [e for e in giop_sent if e.get("msg_type") == "Request"]
    by_op = collections.Counter(e["op"] for e in requests)
    http_ends = [e for e in cli if e["event"] in ("http_end", "https_end")]
    dns_sent = [e for e in cli if e["event"] == "dns_query_sent"]
    dns_lines = dns_log.read_text().splitlines() if dns_log.exists() else []

    # server-side request/reply pairs (both servers), from server.py's ORB trace-based log
    server_requests = []
    for name, evs in srv_events.items():
        pending: dict = {}
        for e in evs:
            key = (e.get("client"), e.get("request_id"))
            if e["event"] == "request_received":
                pending[key] = e
            elif e["event"] == "reply_sent" and key in pending:
                r = pending.pop(key)
                server_requests.append({
                    "server": name, "op": r["op"], "request_id": r["request_id"], "client": r["client"],
                    "message_type": r.get("message_type"), "received_ts_ns": r["ts_ns"], "reply_ts_ns": e["ts_ns"],
                    "server_time_ms": e.get("think_ms"), "think_ms_configured": e.get("think_ms_configured"),
                    "action": e.get("action"), "reply_status": e.get("reply_status")})
        for (client, rid), r in pending.items():
            server_requests.append({"server": name, "op": r["op"], "request_id": rid, "client": client,
                                    "message_type": r.get("message_type"), "received_ts_ns": r["ts_ns"],
                                    "reply_ts_ns": None, "reply_status": "never sent"})

    # connections: app ORB connections = distinct client addresses the servers saw; naming and
    # HTTP(S) from the client's and web server's own records
    orb_conns = {(r["server"], r["client"]) for r in server_requests}
    # (one naming connection per client process: omniORB keeps it for all logons of the process)
    naming_conns = {(e.get("pid"), e.get("peer")) for e in giop_sent
                    if e.get("peer") and e["peer"].endswith(f":{PORTS['naming']}")}
    web_conns = {(e["scheme"], e["client"]) for e in web}
    logons = []
    for e in cli:
        if e["event"] == "logon_start":
            logons.append({"logon": e["logon"], "start_ts_ns": e["ts_ns"], "client": e.get("client"),
                           "client_ip": sc.workstations.get(e.get("client"), CLIENT_IP), "pid": e.get("pid")})
        elif e["event"] == "logon_end":
            for lg in logons:
                if lg["logon"] == e["logon"]:
                    lg.update(end_ts_ns=e["ts_ns"], outcome=e["outcome"],
                              duration_s=round((e["ts_ns"] - lg["start_ts_ns"]) / 1e9, 6))

    # name-service tool runs (corba/nametool.py): sessions on the naming port that are not logons
    tool_runs = []
    for e in cli:
        if e["event"] == "tool_start":
            tool_runs.append({"tool_run": e.get("tool_run"), "pid": e.get("pid"), "start_ts_ns": e["ts_ns"],
                              "ops": e.get("ops")})
        elif e["event"] == "tool_end":
            for tr in tool_runs:
                if tr["pid"] == e.get("pid"):
                    tr.update(end_ts_ns=e["ts_ns"], outcome=e.get("outcome"))
    processes = collections.Counter(e.get("pid") for e in cli if e["event"] == "logon_start")

    # what the capture point can see of the bridge's drops: a frame dropped in the middle is on
    # the wire before the bridge (sender side) and absent after it
    upstream = {"client": "c2s", "server": "s2c", "middle": "s2c"}[sc.capture_point]
    drops = [e for e in bridge if e["event"] == "dropped"]
    dropped_seen = [e for e in drops if e["dir"] == upstream]
    dropped_unseen = [e for e in drops if e["dir"] != upstream]
    tcp_drops = [e for e in drops if e.get("proto") == "tcp"]
    dns_drops_unseen = [e for e in dropped_unseen if e.get("proto") == "udp" and e["dst"].endswith(":53")]

    cut_ops = collections.Counter(r["giop_request_op"] for r in removed if r.get("giop_request_op"))
    delays = {d: sc.impair.get(d, {}).get("delay_ms", 0) for d in ("c2s", "s2c")}
    truth = {
        "scenario": sc.name,
        "description": sc.description,
        "capture": f"{sc.name}.pcap",
        "made_by": f"python -m captures.lab.run --scenario {sc.name} (as root)",
        "made_at_utc": started_utc.isoformat(timespec="seconds"),
        "capture_point": {"where": sc.capture_point, "interface": {
            "client": "client namespace veth (toward the middle)",
            "middle": "middle namespace veth toward the server: client->server frames after the bridge, "
                      "server->client frames before it",
            "server": "server namespace veth (toward the middle)"}[sc.capture_point],
            "tcpdump": "tcpdump -i IF -s 0 --immediate-mode -U -w",
            "tcpdump_counters": {k: v for k, v in tcpdump_counts.items() if k not in ("kernel_tcp", "nft")},
            "capture_start_ts_ns": t0, "capture_end_ts_ns": t1},
        "hosts": {"client": {"address": CLIENT_IP, "role": "EPJ workstation" + (
                      "" if sc.workstations else " (all logons)")},
                  **{f"workstation {name}": {"address": ip, "role": "EPJ workstation (own namespace)",
                                             "ward": sc.wards.get(name)} for name, ip in sc.workstations.items()},
                  "epj-app": {"address": APP_IP, "role": "naming service (omniNames) + application server app1"},
                  "epj-app2": {"address": APP2_IP, "role": "second application server app2 (forward target)",
                               "running": sc.second_server},
                  "dns": {"address": DNS_IP, "role": "dnsmasq"},
                  "epj-web": {"address": WEB_IP, "role": "HTTP (JNLP, jars) and HTTPS server"}},
        "names": NAMES,
        "ports": PORTS,
        "injected": {
            "bridge_config": sc.impair,
            "added_delay_ms": delays,
            "added_rtt_ms": delays["c2s"] + delays["s2c"],
            "server_ops": sc.server_config("app1", APP_IP, True)["ops"],
            "server_nagle": sc.server_nagle, "web_nagle": sc.web_nagle,
            "web_https_think_ms": sc.web_https_think_ms, "keylog_from": sc.keylog_from if sc.keylog else None,
            "client_phases": [{k: v for k, v in c.items() if k in ("logons", "first_logon", "concurrency", "https",
                                                                    "corba", "session", "tool")}
                              for c in sc.client_configs()],
            "giop": sc.giop,
            "capture_drops_rules": sc.capture_drops,
            "nft_ruleset": sc.nft or None,
        },
        "impairment_log": {
            "frames_dropped": drops,
            "frames_delayed_count": sum(1 for e in bridge if e["event"] == "delayed"),
            "frames_delayed": [e for e in bridge if e["event"] == "delayed"][:2000],
            "send_failed": [e for e in bridge if e["event"] == "send_failed"],
            "bridge_stats": {k: v for k, v in stats.items() if k != "event"},
            "nft": tcpdump_counts.get("nft"),
        },
        "capture_drops": removed,
        "expected": {
            **sc.expected(),
            "logons": len(logons),
            "logons_ok": sum(1 for lg in logons if lg.get("outcome") == "ok"),
            # every logon the client logged ran to its end inside the capture (none cut by its start or end)
            "logons_incomplete": 0,
            "client_processes": len(processes),
            "logons_per_process": dict(sorted(collections.Counter(processes.values()).items())),
            "not_logons": len(tool_runs),
            **sc.expected(),
            "giop_requests_by_op": dict(sorted(by_op.items())),
            "giop_requests": sum(by_op.values()),
            "giop_locate_requests": sum(1 for e in giop_sent if e.get("msg_type") == "LocateRequest"),
            "giop_requests_by_op_in_file": dict(sorted((by_op - cut_ops).items())),
            "http_requests": sum(1 for e in http_ends if e["event"] == "http_end"),
            "https_requests": sum(1 for e in http_ends if e["event"] == "https_end"),
            "http_status_counts": dict(collections.Counter(str(e.get("status")) for e in http_ends)),
            "http_requests_seen_by_web_server": len(web),
            "http_requests_in_file": sum(1 for e in http_ends if e["event"] == "http_end")
            - sum(1 for r in removed if r.get("http_request")),
            "dns_queries_sent_by_client": len(dns_sent),
            "dns_queries_logged_by_dnsmasq": sum(1 for line in dns_lines if " query[" in line),
            "dns_queries_at_capture_point": len(dns_sent) - len(dns_drops_unseen),
            "tcp_connections": {"orb": len(orb_conns), "naming": len(naming_conns),
                                "http": sum(1 for s, _ in web_conns if s == "http"),
                                "https": sum(1 for s, _ in web_conns if s == "https"),
                                "total": len(orb_conns) + len(naming_conns) + len(web_conns)},
            "tcp_frames_dropped_by_bridge": len(tcp_drops),
            "dropped_frames_visible_at_capture_point": len(dropped_seen),
            "frames_removed_from_file": len(removed),
            "tcp_segments_retransmitted_by_kernels": sum(h.get("TcpRetransSegs", 0) for h in
                                                         tcpdump_counts.get("kernel_tcp", {}).values()),
        },
        "kernel_tcp_counters": tcpdump_counts.get("kernel_tcp", {}),
        "client_exit_codes": client_rcs,
        "logons": logons,
        "tool_runs": tool_runs,
        "server_requests": server_requests,
        "web_requests": web,
        "client_events": cli,
        "server_events": srv_events,
        "dnsmasq_query_log": [line.split("dnsmasq", 1)[-1] for line in dns_lines if " query[" in line
                              or " reply " in line or " config " in line],
    }
    if sc.tcp_stalls is not None:
        truth["tcp_stalls"] = tcp_stall_truth(sc, read_jsonl(logs["tcpstall_server"]),
                                              read_jsonl(logs["tcpstall_client"]))
        # the tcpstall client's connections, by the local addresses it logged
        n = len({e["local"] for e in truth["tcp_stalls"]["client_events"] if e.get("local")})
        truth["expected"]["tcp_connections"]["tcp_stalls"] = n
        truth["expected"]["tcp_connections"]["total"] += n
    return truth


def update_expected(out_dir: Path, names: list[str]) -> list[str]:
    """Write each scenario's expect_* fields (Scenario.expected) into its committed truth file.

    No capture is made: the expected dominant cause is the scenario's definition, not a peer's
    log, so it can be set on captures made before the field existed. Returns the files changed.
    """
    changed = []
    for name in names:
        path = out_dir / f"{name}.truth.json"
        if not path.exists():
            continue
        truth = json.loads(path.read_text())
        exp = truth.setdefault("expected", {})
        before = dict(exp)
        exp.setdefault("logons_incomplete", 0)
        exp.setdefault("not_logons", len(truth.get("tool_runs", [])))
        exp.update(SCENARIOS[name].expected())
        if exp != before:
            path.write_text(json.dumps(truth, indent=1) + "\n")
            changed.append(str(path))
    return changed


def tcp_stall_truth(sc: Scenario, server: list[dict], client: list[dict]) -> dict:
    """What the tcpstall peers logged, and the stalls it implies (tcpstall.py's docstring).

    Nagle x delayed ACK, per request: the server's recv() that returned the first piece and the
    one that completed the request; their gap is the time the client's kernel held the second
    piece (a stall when it is a delayed ACK's length, >= 30 ms; in quick-ACK mode it is one round
    trip). Zero window: from the server starting to send (the 4 KB buffer fills within a
    millisecond on this link) to the reader resuming.
    """
    cfg = sc.tcp_stalls or {}
    recvs: dict[tuple, list[dict]] = {}
    for e in server:
        if e["event"] == "nagle_recv":
            recvs.setdefault((e["client"], e["request"]), []).append(e)
    requests = []
    for (peer, i), rs in sorted(recvs.items(), key=lambda kv: kv[1][0]["ts_ns"]):
        first, last = rs[0], rs[-1]
        requests.append({"client": peer, "request": i, "recvs": len(rs), "first_piece_ts_ns": first["ts_ns"],
                         "request_complete_ts_ns": last["ts_ns"],
                         "held_s": round((last["ts_ns"] - first["ts_ns"]) / 1e9, 6)})
    stalls = [r for r in requests if r["held_s"] >= 0.030]
    ev = {e["event"]: e for e in client + server if e["event"] in (
        "reader_paused", "reader_resumed", "bulk_send_start", "bulk_send_done", "bulk_received", "nagle_connected")}
    zw = None
    if "reader_resumed" in ev and "bulk_send_start" in ev:
        zw = round((ev["reader_resumed"]["ts_ns"] - ev["bulk_send_start"]["ts_ns"]) / 1e9, 6)
    return {"config": cfg, "ports": {"nagle": cfg.get("nagle_port", 7000), "bulk": cfg.get("bulk_port", 7001)},
            "nagle_requests": requests, "nagle_stalls": len(stalls),
            "nagle_stall_s": round(sum(r["held_s"] for r in stalls), 6),
            "nagle_client": ev.get("nagle_connected", {}).get("local"),
            "reader": {k: ev[k] for k in ("reader_paused", "reader_resumed", "bulk_send_start", "bulk_send_done",
                                          "bulk_received") if k in ev},
            "zero_window_s": zw,
            "server_events": server, "client_events": client}


# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m captures.lab.run", description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", default=[], help="scenario name (repeatable)")
    ap.add_argument("--all", action="store_true", help="every scenario")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("--cleanup", action="store_true", help="remove namespaces left by a killed run and exit")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary directory with the peers' logs")
    ap.add_argument("--crosscheck", action="store_true", help="run the tshark cross-check on each capture")
    ap.add_argument("--update-expected", action="store_true",
                    help="only write the scenarios' expected dominant cause into their committed truth files")
    args = ap.parse_args(argv)
    if args.list:
        for sc in SCENARIOS.values():
            print(f"{sc.name:24s} {sc.description}")
        return 0
    if args.cleanup:
        try:
            netns.preflight(["ip"])
        except LabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print("removed: " + (", ".join(netns.cleanup_leftovers()) or "nothing"))
        return 0
    names = list(SCENARIOS) if args.all else args.scenario
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        print(f"error: unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}" if unknown
              else "error: give --scenario NAME or --all", file=sys.stderr)
        return 2
    if args.update_expected:
        for path in update_expected(args.out, names):
            print(f"updated {path}")
        return 0
    try:
        netns.preflight(["ip", "tcpdump", "dnsmasq", "ethtool", "openssl", "ping", "chrt", "nstat", "nft"] +
                        (["tshark"] if args.crosscheck else []))
        from captures.lab.corba import orbenv

        orbenv.cmeel_prefix()
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - OmniOrbMissing and friends: one clear line
        print(f"error: omniORB missing: {exc}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        t = time.monotonic()
        try:
            truth = run_scenario(SCENARIOS[name], args.out, keep_work=args.keep_work)
        except (LabError, OSError, subprocess.SubprocessError) as exc:
            print(f"error: scenario {name}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        size = (args.out / f"{name}.pcap").stat().st_size
        exp = truth["expected"]
        print(f"{name}: {time.monotonic() - t:.1f} s, {size / 1e6:.2f} MB, logons {exp['logons_ok']}/{exp['logons']} ok, "
              f"GIOP requests {exp['giop_requests']}, HTTP {exp['http_requests']}+{exp['https_requests']}, "
              f"DNS {exp['dns_queries_sent_by_client']}, bridge drops {len(truth['impairment_log']['frames_dropped'])}, "
              f"cut {exp['frames_removed_from_file']}")
        if args.crosscheck:
            from captures.lab import crosscheck

            crosscheck.report(args.out / f"{name}.pcap", sys.stdout)
    if failed:
        print(f"error: failed scenarios: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
