"""Make captures/sample/epj-logon.pcap and its truth file: three EPJ-like logons between real peers.

    python -m captures.lab.corba.make_sample            # as root; needs ip, tcpdump, dnsmasq

Two network namespaces joined by a veth (MTU 1500, offloads off): "client" 198.51.100.20 and
"server" 198.51.100.10 (+ 198.51.100.53 for DNS); addresses from TEST-NET-2 (RFC 5737), so no real
address appears. In the server namespace: dnsmasq (names epj-app.lab.test, epj-web.lab.test),
python's http.server (HTTP/1.1) with a JNLP file and three synthetic jars, omniNames on 2809 and
the omniORB EPJ server on 9100 (server.py). tcpdump captures on the client's veth end while the
launcher (client.py) runs three logons one after another: DNS, JNLP + jars (200 on the first
logon, If-Modified-Since -> 304 afterwards), naming bootstrap and resolve, then authenticate
(1500 ms server think on the second logon), getUserContext, getWorklist and fetchPatientList
(fragmented GIOP 1.2 replies), logout.

The truth file holds only what the peers logged themselves (client and server JSON lines, the
ORB trace ids, dnsmasq's query log count), never anything computed from the capture.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from captures.lab.corba.labrun import (
    REPO,
    LabError,
    namespaces,
    read_jsonl,
    require,
    start_tcpdump,
    stop_tcpdump,
    wait_event,
)

OUT_DIR = REPO / "captures" / "sample"
CLIENT_IP, SERVER_IP, DNS_IP = "198.51.100.20", "198.51.100.10", "198.51.100.53"
APP_NAME, WEB_NAME = "epj-app.lab.test", "epj-web.lab.test"
JARS = ("epj-client.jar", "epj-common.jar", "epj-ui.jar")
JAR_MTIME = dt.datetime(2025, 1, 6, 7, 30, tzinfo=dt.UTC).timestamp()
IMS = "Mon, 03 Feb 2025 08:00:00 GMT"   # after JAR_MTIME, so http.server answers 304

SERVER_OPS = {
    "authenticate": {"think_ms": 120, "think_ms_sequence": [120, 1500], "reply_bytes": 1200},
    "getUserContext": {"think_ms": 25, "reply_bytes": 2500},
    "getWorklist": {"think_ms": 90, "reply_bytes": 30000},
    "fetchPatientList": {"think_ms": 60, "reply_bytes": 20000},
    "logout": {"think_ms": 5},
}


def make_webroot(root: Path) -> None:
    """A JNLP file and three stored (uncompressed) jars of synthetic classes, mtime fixed in 2025."""
    lib = root / "epj" / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    jnlp = root / "epj" / "epj.jnlp"
    jars = "\n".join(f'    <jar href="lib/{j}"/>' for j in JARS)
    jnlp.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<jnlp spec="1.0+" codebase="http://{WEB_NAME}:9080/epj/" href="epj.jnlp">
  <information><title>EPJ lab client</title><vendor>netdiag lab</vendor></information>
  <update check="timeout" policy="always"/>
  <resources>
    <j2se version="1.8+"/>
{jars}
  </resources>
  <application-desc main-class="lab.epj.Main"><argument>corbaloc::{APP_NAME}:2809/NameService</argument>
  </application-desc>
</jnlp>
""")
    for i, name in enumerate(JARS):
        with zipfile.ZipFile(lib / name, "w", compression=zipfile.ZIP_STORED) as z:
            for k in range(6):
                body = (f"synthetic class {name}:{k} ".encode() * 400)[: 4000 + 1000 * i]
                z.writestr(f"lab/epj/C{i}{k}.class", body)
    for p in [jnlp, *(lib / j for j in JARS)]:
        os.utime(p, (JAR_MTIME, JAR_MTIME))


def build_truth(pcap: Path, server_log: Path, client_log: Path, dns_log: Path, server_cfg: dict,
                client_cfg: dict) -> dict:
    """Truth from the peers' own logs (see module docstring)."""
    srv = read_jsonl(server_log)
    cli = read_jsonl(client_log)
    giop_sent = [e for e in cli if e["event"] == "giop_sent"]
    by_op = collections.Counter(e["op"] for e in giop_sent if e["msg_type"] == "Request")
    connections = {(e["logon"], e["peer"]) for e in giop_sent}
    http_ends = [e for e in cli if e["event"] == "http_end"]
    dns_sent = [e for e in cli if e["event"] == "dns_query_sent"]
    dns_seen = sum(1 for line in dns_log.read_text().splitlines() if " query[" in line) if dns_log.exists() else None
    logons = []
    for e in cli:
        if e["event"] == "logon_start":
            logons.append({"logon": e["logon"], "start_ts_ns": e["ts_ns"]})
        elif e["event"] == "logon_end":
            for lg in logons:
                if lg["logon"] == e["logon"]:
                    lg.update(end_ts_ns=e["ts_ns"], outcome=e["outcome"],
                              duration_s=round((e["ts_ns"] - lg["start_ts_ns"]) / 1e9, 6))
    pending: dict = {}
    server_requests = []
    for e in srv:
        key = (e.get("client"), e.get("request_id"))
        if e["event"] == "request_received":
            pending[key] = e
        elif e["event"] == "reply_sent" and key in pending:
            r = pending.pop(key)
            server_requests.append({
                "op": r["op"], "request_id": r["request_id"], "client": r["client"],
                "server_endpoint": r.get("server_endpoint"),
                "message_type": r["message_type"], "received_ts_ns": r["ts_ns"], "reply_ts_ns": e["ts_ns"],
                "server_time_ms": e["think_ms"], "think_ms_configured": e.get("think_ms_configured"),
                "action": e.get("action"), "reply_status": e["reply_status"], "fragmented": e["fragmented"]})
    return {
        "capture": pcap.name,
        "made_by": "python -m captures.lab.corba.make_sample (as root)",
        "made_at_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "capture_point": {"where": "client", "interface": "veth end in the client namespace",
                          "note": "no impairment; delays are server think and client think only"},
        "hosts": {"client": CLIENT_IP, "app_server": SERVER_IP, "naming": SERVER_IP, "web": SERVER_IP,
                  "dns": DNS_IP},
        "names": {APP_NAME: SERVER_IP, WEB_NAME: SERVER_IP},
        "ports": {"naming": 2809, "orb": 9100, "http": 9080, "dns": 53},
        "injected": {"server_ops": server_cfg["ops"], "client_think_ms": client_cfg["corba"]["think_ms"],
                     "slow_authenticate": "second authenticate call (logon 1) thinks 1500 ms",
                     "giop": {"max_version": "1.2", "buffer_size": 8192}},
        "expected": {
            "logons": len(logons),
            "giop_requests_by_op": dict(sorted(by_op.items())),
            "giop_requests": sum(by_op.values()),
            "giop_locate_requests": sum(1 for e in giop_sent if e["msg_type"] == "LocateRequest"),
            "http_requests": len(http_ends),
            "http_status_counts": dict(collections.Counter(str(e["status"]) for e in http_ends)),
            "dns_queries_sent_by_client": len(dns_sent),
            "dns_queries_logged_by_dnsmasq": dns_seen,
            "tcp_connections": len(connections) + sum(1 for e in cli if e["event"] == "tcp_connected"),
        },
        "logons": logons,
        "server_requests": server_requests,
        "client_events": cli,
        "server_events": [{k: v for k, v in e.items() if k != "ior"} for e in srv],
    }


def make(out_dir: Path) -> dict:
    """Run the scenario; write epj-logon.pcap and epj-logon.truth.json into out_dir; return the truth."""
    require("ip", "tcpdump", "dnsmasq")
    work = Path(tempfile.mkdtemp(prefix="epj-sample-"))
    webroot = work / "www"
    make_webroot(webroot)
    server_cfg = {"name": "app1", "listen_host": SERVER_IP, "orb_port": 9100, "realtime": 10, "nice": -10,
                  "naming": {"mode": "omninames", "port": 2809, "bind_name": "epj/Session"},
                  "giop": {"max_version": "1.2", "buffer_size": 8192}, "ops": SERVER_OPS}
    client_cfg = {
        "logons": 3, "concurrency": 1, "start_interval_ms": 0, "client_name": "ws-lab-01",
        "dns": {"server": DNS_IP, "timeouts_s": [1.0, 2.0, 4.0]},
        "http": {"enabled": True, "host": WEB_NAME, "port": 9080, "jnlp": "/epj/epj.jnlp",
                 "jars": [f"/epj/lib/{j}" for j in JARS], "if_modified_since": IMS, "conditional_from_logon": 1},
        "corba": {"host": APP_NAME, "naming_port": 2809, "name": "epj/Session", "think_ms": 150, "startup_ms": 300,
                  "sequence": [["authenticate", {}], ["getUserContext", {}], ["getWorklist", {"maxRows": 0}],
                               ["fetchPatientList", {}], ["logout", {}]]},
    }
    (work / "server.json").write_text(json.dumps(server_cfg, indent=1))
    (work / "client.json").write_text(json.dumps(client_cfg, indent=1))
    out_dir.mkdir(parents=True, exist_ok=True)
    pcap = out_dir / "epj-logon.pcap"
    server_log, client_log, dns_log = work / "server.jsonl", work / "client.jsonl", work / "dnsmasq.log"
    with namespaces() as lab:
        srv = lab.add("c2s-srv")
        cli = lab.add("c2s-cli")
        lab.veth(cli, "c2s-c", [f"{CLIENT_IP}/24"], srv, "c2s-s", [f"{SERVER_IP}/24", f"{DNS_IP}/24"])
        time.sleep(1.0)  # let IPv6 DAD / addresses settle before binding
        lab.start(srv, ["dnsmasq", "--keep-in-foreground", "--no-daemon", "--no-resolv", "--no-hosts",
                        f"--listen-address={DNS_IP}", "--bind-interfaces", "--port=53",
                        f"--address=/{APP_NAME}/{SERVER_IP}", f"--address=/{WEB_NAME}/{SERVER_IP}",
                        "--log-queries", f"--log-facility={dns_log}", "--pid-file=", "--user=root"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lab.start(srv, [sys.executable, "-m", "http.server", "9080", "--bind", SERVER_IP, "--directory",
                        str(webroot), "--protocol", "HTTP/1.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = lab.start(srv, [sys.executable, "-m", "captures.lab.corba.server", "--config",
                                 str(work / "server.json"), "--log", str(server_log), "--workdir",
                                 str(work / "server")], stderr=open(work / "server.err", "w"))  # noqa: SIM115
        wait_event(server_log, "server_ready", timeout=30, proc=server)
        dump = start_tcpdump(lab, cli, "c2s-c", pcap)
        res = lab.run(cli, [sys.executable, "-m", "captures.lab.corba.client", "--config", str(work / "client.json"),
                            "--log", str(client_log), "--workdir", str(work / "client")], timeout=120)
        stop_tcpdump(lab, dump)
        lab.stop(server)
        if res.returncode != 0:
            raise LabError(f"client launcher exited {res.returncode}; see {client_log}")
    truth = build_truth(pcap, server_log, client_log, dns_log, server_cfg, client_cfg)
    (out_dir / "epj-logon.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def main(argv: list[str] | None = None) -> int:
    """Command line: make the sample (default into captures/sample/)."""
    ap = argparse.ArgumentParser(prog="python -m captures.lab.corba.make_sample", description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    try:
        truth = make(args.out_dir)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"logons": truth["logons"], "expected": truth["expected"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
