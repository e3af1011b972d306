"""EPJ-like application server on a real ORB (omniORB), reached the way a WebSphere client reaches WAS.

    python -m captures.lab.corba.server --config CONFIG.json --log LOG.jsonl

What it runs (config keys in README.md):
- optionally a real omniNames naming service on the bootstrap port (2809 by default) and binds
  the application object there under a compound name (default ``epj/Session``), so clients do
  ``corbaloc::1.2@host:2809/NameService`` -> ``resolve`` -> IOR of the application object,
- the EPJ::Session servant (epj.idl) on the ORB port (9100 by default), with the fixed object
  key ``EPJSession`` (so a second instance can be the target of a LOCATION_FORWARD, and
  ``corbaloc::1.2@host:9100/EPJSession`` also works),
- per operation: think time (a fixed value and an optional sequence for the first calls), reply
  size, and faults on demand: CORBA::TRANSIENT for the first N calls, LOCATION_FORWARD to another
  server for the first N calls, hang (no reply for N s) for the first N calls; Nagle mode clears
  TCP_NODELAY (omniORB always sets it and has no option to turn it off) on the process's TCP
  sockets before each reply.

Ground truth it writes (JSON lines): request_received / reply_sent with the GIOP request id,
operation, client ip:port, the ORB's own timestamps (from omniORB's trace, see orbtrace.py),
the measured server time (reply first byte written - request read) and the configured think.
GIOP per OMG CORBA 3.0 ch. 15; naming per OMG CosNaming / INS (corbaloc, RFC-like URL in
CORBA 3.0 ch. 13.6.10).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from captures.lab.corba import orbenv
from captures.lab.corba.jsonlog import JsonLog, now_ns
from captures.lab.corba.orbtrace import TraceReader

OPS = ("authenticate", "getUserContext", "getWorklist", "fetchPatientList", "logout")
DEFAULT_OPS: dict[str, dict] = {
    "authenticate": {"think_ms": 50, "reply_bytes": 1200},
    "getUserContext": {"think_ms": 20, "reply_bytes": 3000},
    "getWorklist": {"think_ms": 80, "reply_bytes": 60000},
    "fetchPatientList": {"think_ms": 60, "reply_bytes": 40000},
    "logout": {"think_ms": 5, "reply_bytes": 0},
}
ROW_BYTES = 72  # approximate CDR size of one synthetic PatientRecord


class ConfigError(ValueError):
    """The server config is unusable; the message names the file and the key."""


def load_config(path: Path) -> dict:
    """Read and check a server config; defaults filled in (README 'Server CONFIG')."""
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read server config: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: top level must be a JSON object")
    cfg.setdefault("name", "app1")
    cfg.setdefault("listen_host", "127.0.0.1")
    cfg.setdefault("orb_port", 9100)
    cfg.setdefault("object_key", "EPJSession")
    naming = cfg.setdefault("naming", {})
    naming.setdefault("mode", "omninames")   # omninames | ins_forward | external | none
    naming.setdefault("port", 2809)
    naming.setdefault("host", cfg["listen_host"])
    naming.setdefault("bind_name", "epj/Session")
    naming.setdefault("omninames_port", int(naming["port"]) + 1)   # used by ins_forward only
    if naming["mode"] not in ("omninames", "ins_forward", "external", "none"):
        raise ConfigError(f"{path}: naming.mode must be omninames, ins_forward, external or none, "
                          f"not {naming['mode']!r}")
    cfg.setdefault("giop", {})
    cfg.setdefault("nagle", False)
    ops = cfg.setdefault("ops", {})
    for op in ops:
        if op not in OPS:
            raise ConfigError(f"{path}: ops.{op}: unknown operation (known: {', '.join(OPS)})")
    for op, dflt in DEFAULT_OPS.items():
        merged = dict(dflt)
        merged.update(ops.get(op, {}))
        ops[op] = merged
        if merged.get("forward_first_n") and not merged.get("forward_to"):
            raise ConfigError(f"{path}: ops.{op}: forward_first_n needs forward_to (a corbaloc URL)")
    return cfg


def clear_tcp_nodelay() -> int:
    """Turn Nagle back on (TCP_NODELAY=0) for every TCP socket of this process; return how many.

    omniORB sets TCP_NODELAY on each connection and offers no option to keep Nagle; a dup of the
    descriptor shares the socket, so setsockopt on the dup changes omniORB's socket.
    """
    changed = 0
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
                changed += 1
        except OSError:
            pass
        finally:
            s.close()
    return changed


class Behaviour:
    """Decides, per call, what the servant does (think, transient, forward, hang); thread-safe."""

    def __init__(self, ops: dict[str, dict]) -> None:
        self.ops = ops
        self.count: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def next_action(self, op: str) -> tuple[str, float, int]:
        """Return (action, think_ms or hang_s*1000, call_index) for the next call of op."""
        spec = self.ops[op]
        with self.lock:
            n = self.count[op]
            self.count[op] += 1
        if n < int(spec.get("hang_first_n", 0)):
            return "hang", float(spec.get("hang_s", 10.0)) * 1000.0, n
        if n < int(spec.get("forward_first_n", 0)):
            return "forward", 0.0, n
        if n < int(spec.get("transient_first_n", 0)):
            return "transient", 0.0, n
        seq = spec.get("think_ms_sequence") or []
        think = float(seq[n]) if n < len(seq) else float(spec.get("think_ms", 0))
        return "reply", think, n


def build_servant(omniORB, cfg: dict, log: JsonLog, calls: dict, calls_lock: threading.Lock,
                  stop: threading.Event):
    """Create the EPJ::Session servant class bound to this config (the IDL module exists only at run time)."""
    import EPJ  # type: ignore[import-not-found]  # noqa: I001 - generated by importIDL
    import EPJ__POA  # type: ignore[import-not-found]
    from omniORB import CORBA  # type: ignore[import-not-found]

    behaviour = Behaviour(cfg["ops"])
    nagle = bool(cfg.get("nagle"))
    orb_holder: dict = {}

    def forward_target(op: str):
        if "ref" not in orb_holder:
            orb_holder["ref"] = omniORB.orb.string_to_object(cfg["ops"][op]["forward_to"])
        return orb_holder["ref"]

    def enter(op: str) -> tuple[str, float, int]:
        info = omniORB.currentCallInfo() or {}
        client = str(info.get("peer_address", "")).split("giop:tcp:", 1)[-1]
        action, ms, n = behaviour.next_action(op)
        with calls_lock:
            calls[(client, op)].append({"action": action, "think_ms_configured": ms, "call_index": n})
        if action == "hang":
            stop.wait(ms / 1000.0)   # a server shutdown ends the hang instead of waiting it out
        elif action == "forward":
            raise omniORB.LOCATION_FORWARD(forward_target(op))
        elif action == "transient":
            # OMG minor 1: request discarded (resource exhaustion / POA discarding), what an overloaded
            # server reports; completed NO so the client may retry safely.
            raise CORBA.TRANSIENT(omniORB.OMGminorCode(1), CORBA.COMPLETED_NO)
        else:
            stop.wait(ms / 1000.0)
        if nagle:
            clear_tcp_nodelay()
        return action, ms, n

    def pad(op: str, overhead: int) -> bytes:
        size = max(0, int(cfg["ops"][op].get("reply_bytes", 0)) - overhead)
        return (b"SYNTHETIC-EPJ-" * (size // 14 + 1))[:size]

    class Session(EPJ__POA.Session):
        def authenticate(self, userId, password, clientInfo):
            enter("authenticate")
            return EPJ.LogonTicket(f"tok-{userId}-{now_ns() % 10**9}", pad("authenticate", 60))

        def getUserContext(self, token):
            enter("getUserContext")
            return EPJ.UserContext("lab-user", "Lab User", "clinician", "SYN-WARD-1",
                                   ["read", "write", "prescribe"], pad("getUserContext", 120))

        def getWorklist(self, token, maxRows):
            enter("getWorklist")
            rows = max(1, int(cfg["ops"]["getWorklist"].get("reply_bytes", 0)) // ROW_BYTES)
            if maxRows:
                rows = min(rows, int(maxRows))
            return [EPJ.PatientRecord(f"SYN-{i:06d}", f"Test Patient {i:05d}", f"W{i % 12:02d}",
                                      f"B{i % 40:02d}", "admitted") for i in range(rows)]

        def fetchPatientList(self, token, wardId):
            enter("fetchPatientList")
            return pad("fetchPatientList", 24)

        def logout(self, token):
            enter("logout")

    return Session()


def build_ins_forwarder(omniORB, root):
    """Servant for the INS key "NameService" that answers every request with LOCATION_FORWARD to root.

    That is what a WebSphere bootstrap port does (DOMAIN.md 1.2 step 3): the client's first
    request on 2809 comes back as a forward to the real naming context, and the client repeats it
    there. `_is_a` is forwarded too, so even a narrow goes through the forward.
    """
    import CosNaming__POA  # type: ignore[import-not-found]

    def forward(*_args):
        raise omniORB.LOCATION_FORWARD(root)

    ops = ("bind", "rebind", "bind_context", "rebind_context", "resolve", "unbind", "new_context",
           "bind_new_context", "destroy", "list", "to_name", "to_string", "to_url", "resolve_str", "_is_a",
           "_non_existent")
    forwarder = type("InsForwarder", (CosNaming__POA.NamingContextExt,), dict.fromkeys(ops, forward))
    return forwarder()


def local_address_for(peer: str) -> str | None:
    """The local ip:port of this process's TCP socket connected to peer ('ip:port'), if any.

    omniORB's trace names only the remote end; with several endpoints (ORB port, INS bootstrap
    port) the local end tells which one a connection came in on.
    """
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            rhost, rport = s.getpeername()[:2]
            if f"{rhost}:{rport}" == peer:
                lhost, lport = s.getsockname()[:2]
                return f"{lhost}:{lport}"
        except OSError:
            pass
        finally:
            s.close()
    return None


class TraceToLog(threading.Thread):
    """Turn the ORB's trace into request_received / reply_sent lines while the server runs."""

    def __init__(self, reader: TraceReader, log: JsonLog, calls: dict, calls_lock: threading.Lock) -> None:
        super().__init__(daemon=True, name="trace-to-log")
        self.reader, self.log, self.calls, self.calls_lock = reader, log, calls, calls_lock
        self.pending: dict[tuple[str, int], dict] = {}
        self.local: dict[str, str | None] = {}
        self.stop = threading.Event()

    def handle(self, ev) -> None:
        key = (ev.peer, ev.request_id)
        if ev.direction == "recv" and ev.msg_type in ("Request", "LocateRequest"):
            if ev.peer not in self.local:
                self.local[ev.peer] = local_address_for(ev.peer)
            rec = {"op": ev.op if ev.msg_type == "Request" else "(LocateRequest)", "request_id": ev.request_id,
                   "ts_ns": ev.ts_ns, "client": ev.peer, "server_endpoint": self.local[ev.peer],
                   "giop_version": ev.giop_version,
                   "message_type": ev.msg_type}
            self.pending[key] = rec
            self.log.write("request_received", **rec)
        elif ev.direction == "send" and ev.msg_type in ("Reply", "LocateReply"):
            req = self.pending.pop(key, None)
            op = req["op"] if req else None
            extra: dict = {}
            if req and ev.msg_type == "Reply":
                with self.calls_lock:
                    q = self.calls.get((ev.peer, op))
                    if q:
                        extra = q.popleft()
            self.log.write(
                "reply_sent", op=op, request_id=ev.request_id, ts_ns=ev.ts_ns, client=ev.peer,
                server_endpoint=self.local.get(ev.peer),
                giop_version=ev.giop_version, message_type=ev.msg_type,
                reply_status=ev.reply_status if ev.msg_type == "Reply" else f"locate_status={ev.locate_status}",
                exception_id=ev.exception_id, fragmented=ev.more_fragments,
                think_ms=round((ev.ts_ns - req["ts_ns"]) / 1e6, 3) if req else None,
                action=extra.get("action") or (("forward" if ev.reply_status == "LOCATION_FORWARD" else "orb")
                                               if req else None),
                think_ms_configured=extra.get("think_ms_configured"),
                call_index=extra.get("call_index"))
        elif ev.msg_type == "CloseConnection":
            self.log.write("close_connection", direction=ev.direction, client=ev.peer, ts_ns=ev.ts_ns)

    def run(self) -> None:
        while not self.stop.is_set():
            for ev in self.reader.poll():
                self.handle(ev)
            self.stop.wait(0.02)
        for ev in self.reader.poll(final=True):
            self.handle(ev)


def start_omninames(cfg: dict, workdir: Path, log: JsonLog, port: int) -> subprocess.Popen:
    """Start omniNames on naming.host:port; return the process once it accepts connections."""
    naming = cfg["naming"]
    host = naming["host"]
    datadir = workdir / "omninames-data"
    datadir.mkdir(parents=True, exist_ok=True)
    cmd = [str(orbenv.omninames_binary()), "-start", str(port), "-always", "-datadir", str(datadir),
           "-errlog", str(workdir / "omninames.err"),
           "-ORBendPoint", f"giop:tcp:{host}:{port}",
           *orbenv.giop_args(cfg["giop"])]
    proc = subprocess.Popen(cmd, env=orbenv.child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"omniNames exited with {proc.returncode}; see {workdir / 'omninames.err'}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        proc.terminate()
        raise RuntimeError(f"omniNames did not listen on {host}:{port} within 10 s")
    log.write("naming_started", host=host, port=port, pid=proc.pid, program="omniNames")
    return proc


def bind_in_naming(omniORB, orb, cfg: dict, objref, log: JsonLog) -> None:
    """Bind objref in the naming service under naming.bind_name (contexts created as needed)."""
    import CosNaming  # type: ignore[import-not-found]

    naming = cfg["naming"]
    port = naming["omninames_port"] if naming["mode"] == "ins_forward" else naming["port"]
    url = naming.get("corbaloc") or f"corbaloc::1.2@{naming['host']}:{port}/NameService"
    nc = orb.string_to_object(url)._narrow(CosNaming.NamingContext)
    parts = [p for p in naming["bind_name"].split("/") if p]
    ctx = nc
    for p in parts[:-1]:
        name = [CosNaming.NameComponent(p, "")]
        try:
            ctx = ctx.bind_new_context(name)
        except CosNaming.NamingContext.AlreadyBound:
            ctx = ctx.resolve(name)._narrow(CosNaming.NamingContext)
    ctx.rebind([CosNaming.NameComponent(parts[-1], "")], objref)
    log.write("naming_bound", naming=url, name=naming["bind_name"])


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; exit 2 with one clear line on a bad config."""
    ap = argparse.ArgumentParser(prog="python -m captures.lab.corba.server", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--log", required=True, type=Path)
    ap.add_argument("--workdir", type=Path, help="where omniNames data and the ORB trace go (default: a temp dir)")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        omniORB = orbenv.load_omniorb()
    except orbenv.OmniOrbMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    from omniORB import CORBA  # type: ignore[import-not-found]

    # Priority: the ORB's receive/send timestamps are ground truth; on a busy machine thread wake-up
    # latency would otherwise show up as extra "server time". The server mostly sleeps, so a
    # real-time policy costs others nothing measurable; threads created later (ORB) inherit it.
    priority = "normal"
    if cfg.get("realtime"):
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(cfg["realtime"])))
            priority = f"SCHED_FIFO {int(cfg['realtime'])}"
        except (OSError, AttributeError):
            priority = "normal (SCHED_FIFO refused)"
    if priority.startswith("normal") and int(cfg.get("nice", 0)):
        os.nice(int(cfg["nice"]))
        priority = f"nice {int(cfg['nice'])}"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"epj-server-{cfg['name']}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log = JsonLog(args.log, server=cfg["name"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    naming_proc = None
    trace_file = workdir / "server-orb.trace"
    trace_file.unlink(missing_ok=True)   # omniORB appends; a stale trace would replay old requests
    calls: dict = collections.defaultdict(collections.deque)
    calls_lock = threading.Lock()
    reader = TraceReader(trace_file)
    tailer = TraceToLog(reader, log, calls, calls_lock)
    try:
        naming = cfg["naming"]
        if naming["mode"] == "omninames":
            naming_proc = start_omninames(cfg, workdir, log, int(naming["port"]))
        elif naming["mode"] == "ins_forward":
            naming_proc = start_omninames(cfg, workdir, log, int(naming["omninames_port"]))
        host, port = cfg["listen_host"], int(cfg["orb_port"])
        orb_args = ["epj-server", "-ORBendPoint", f"giop:tcp:{host}:{port}"]
        if naming["mode"] == "ins_forward":
            # listen on the bootstrap port too, without advertising it in the IORs we hand out
            orb_args += ["-ORBendPointNoPublish", f"giop:tcp:{naming['host']}:{int(naming['port'])}"]
        orb_args += [*orbenv.giop_args(cfg["giop"]), *orbenv.trace_args(trace_file)]
        orb = CORBA.ORB_init(orb_args, CORBA.ORB_ID)
        tailer.start()
        servant = build_servant(omniORB, cfg, log, calls, calls_lock, stop)
        ins_poa = orb.resolve_initial_references("omniINSPOA")
        ins_poa.activate_object_with_id(cfg["object_key"].encode(), servant)
        ins_poa._get_the_POAManager().activate()
        objref = ins_poa.id_to_reference(cfg["object_key"].encode())
        if naming["mode"] in ("omninames", "ins_forward", "external"):
            bind_in_naming(omniORB, orb, cfg, objref, log)
        if naming["mode"] == "ins_forward":
            root = orb.string_to_object(f"corbaloc::1.2@{naming['host']}:{int(naming['omninames_port'])}/NameService")
            ins_poa.activate_object_with_id(b"NameService", build_ins_forwarder(omniORB, root))
            log.write("ins_forwarder_ready", port=int(naming["port"]), forward_to=orb.object_to_string(root)[:12] + "...",
                      omninames_port=int(naming["omninames_port"]))
        log.write("server_ready", pid=os.getpid(), host=host, orb_port=port, object_key=cfg["object_key"],
                  ior=orb.object_to_string(objref), naming=cfg["naming"], nagle=bool(cfg["nagle"]),
                  giop=cfg["giop"], ops=cfg["ops"], workdir=str(workdir), priority=priority)
        while not stop.wait(0.2):
            pass
        orb.shutdown(True)
        orb.destroy()
    except Exception as exc:  # noqa: BLE001 - report any start-up failure as one line, exit non-zero
        log.write("server_error", error=f"{type(exc).__name__}: {exc}")
        print(f"error: server {cfg['name']}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        tailer.stop.set()
        if tailer.is_alive():
            tailer.join(timeout=5)
        if naming_proc is not None and naming_proc.poll() is None:
            naming_proc.terminate()
            try:
                naming_proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                naming_proc.kill()
        log.write("server_stop", pid=os.getpid())
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
