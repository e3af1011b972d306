"""EPJ-like logon client: DNS, Java Web Start downloads, optional HTTPS, CORBA naming and the logon calls.

    python -m captures.lab.corba.client --config CONFIG.json --log LOG.jsonl

Without --logon-index this is the launcher: it starts one child process per logon (each logon
has its own ORB and its own connections, like one Java client per workstation), up to
``concurrency`` at once (a logon storm is ``concurrency >= logons``). With --logon-index N the
process performs logon N itself.

One logon, in order (each step logged with the process's own timestamps, README 'Client log'):
1. DNS: an A query (stdlib UDP, RFC 1035) for every host name in the config, sent to the lab's
   DNS server, re-sent after each timeout in ``dns.timeouts_s`` (Windows resolver style).
2. HTTP (Java Web Start): GET the .jnlp and each jar on one keep-alive connection, with a Java
   User-Agent; with If-Modified-Since (RFC 9110 13.1.3) from a chosen logon on, so 304s appear.
3. HTTPS (optional): one GET over TLS 1.2 or 1.3 with NSS key logging (SSLKEYLOGFILE format) so
   tshark can decrypt.
4. CORBA (omniORB, GIOP 1.2 by default): ``corbaloc::1.2@host:2809/NameService``, narrow,
   ``resolve`` the application name, then authenticate, getUserContext, getWorklist,
   fetchPatientList, logout, with client think between calls; one retry after a CORBA system
   exception (TRANSIENT, or TIMEOUT after clientCallTimeOutPeriod). The GIOP request ids come
   from omniORB's own trace (orbtrace.py).
5. Optional slow reader: a helper process stops the client (SIGSTOP, like a long JVM GC pause)
   while a large reply arrives on a socket whose SO_RCVBUF was made small -> zero window.

Several logons in one process (``session.logons_per_process`` > 1, a shared ward PC where
clinicians "switch user" in a running client): the process keeps its ORB, so its naming and
application connections are reused; logons after the first skip DNS, downloads and start-up,
optionally resolve the name again, run the call sequence and log their own logon_start /
logon_end (logon_end right after the last reply, before the pause of ``session.between_ms``).
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from captures.lab.corba.jsonlog import JsonLog, now_ns

JAVA_UA = "Mozilla/4.0 (Windows 10 10.0) Java/1.8.0_202"
JAVA_ACCEPT = "text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2"
DEFAULT_SEQUENCE = [["authenticate", {}], ["getUserContext", {}], ["getWorklist", {"maxRows": 0}],
                    ["fetchPatientList", {}], ["logout", {}]]
QTYPES = {"A": 1, "AAAA": 28}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class ConfigError(ValueError):
    """The client config is unusable; the message names the file and the key."""


def load_config(path: Path) -> dict:
    """Read a client config and fill in defaults (README 'Client CONFIG')."""
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read client config: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: top level must be a JSON object")
    cfg.setdefault("logons", 1)
    cfg.setdefault("first_logon", 0)
    cfg.setdefault("concurrency", 1)
    cfg.setdefault("start_interval_ms", 0)
    cfg.setdefault("user", "lab-user-{n:03d}")
    dns = cfg.setdefault("dns", {})
    dns.setdefault("port", 53)
    dns.setdefault("timeouts_s", [1.0, 2.0, 4.0])
    dns.setdefault("qtypes", ["A"])
    http_cfg = cfg.setdefault("http", {})
    http_cfg.setdefault("enabled", False)
    http_cfg.setdefault("port", 9080)
    http_cfg.setdefault("jnlp", "/epj/epj.jnlp")
    http_cfg.setdefault("jars", [])
    http_cfg.setdefault("user_agent", JAVA_UA)
    http_cfg.setdefault("if_modified_since", None)
    http_cfg.setdefault("conditional_from_logon", 0)
    http_cfg.setdefault("timeout_s", 10.0)
    https = cfg.setdefault("https", {})
    https.setdefault("enabled", False)
    https.setdefault("port", 9443)
    https.setdefault("path", "/epj/ping")
    https.setdefault("tls_version", "1.3")
    https.setdefault("timeout_s", 10.0)
    corba = cfg.setdefault("corba", {})
    if "host" not in corba:
        raise ConfigError(f"{path}: corba.host is required (name or address of the bootstrap server)")
    corba.setdefault("naming_port", 2809)
    corba.setdefault("name", "epj/Session")
    corba.setdefault("giop_max_version", "1.2")
    corba.setdefault("call_timeout_ms", 0)
    corba.setdefault("retries", 1)
    corba.setdefault("think_ms", 100)
    corba.setdefault("startup_ms", 0)
    corba.setdefault("sequence", DEFAULT_SEQUENCE)
    corba.setdefault("slow_reader", None)
    session = cfg.setdefault("session", {})
    session.setdefault("logons_per_process", 1)
    session.setdefault("between_ms", 1000)
    session.setdefault("resolve_each_logon", True)
    if int(session["logons_per_process"]) < 1:
        raise ConfigError(f"{path}: session.logons_per_process must be >= 1")
    if dns.get("server") is None:
        for key in ("corba", "http", "https"):
            host = cfg[key].get("host")
            if host and cfg[key].get("enabled", True) and not _is_ip(host):
                raise ConfigError(f"{path}: {key}.host {host!r} is a name but dns.server is not set")
    if https["tls_version"] not in ("1.2", "1.3"):
        raise ConfigError(f"{path}: https.tls_version must be '1.2' or '1.3'")
    return cfg


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# DNS (RFC 1035 4.1): one question, recursion desired; answers parsed for A/AAAA records.
# ---------------------------------------------------------------------------------------------
def dns_query_bytes(txid: int, name: str, qtype: int) -> bytes:
    """Build a standard query for name/qtype with the RD bit set."""
    qname = b"".join(len(p).to_bytes(1, "big") + p.encode("ascii") for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack(">HHHHHH", txid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


def _skip_name(msg: bytes, pos: int) -> int:
    while True:
        n = msg[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + n


def dns_parse_answer(msg: bytes) -> tuple[int, int, list[str]]:
    """Return (txid, rcode, addresses) from a DNS response."""
    txid, flags, qd, an, _ns, _ar = struct.unpack_from(">HHHHHH", msg, 0)
    pos = 12
    for _ in range(qd):
        pos = _skip_name(msg, pos) + 4
    addrs = []
    for _ in range(an):
        pos = _skip_name(msg, pos)
        rtype, _cls, _ttl, rdlen = struct.unpack_from(">HHIH", msg, pos)
        pos += 10
        rdata = msg[pos:pos + rdlen]
        pos += rdlen
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28 and rdlen == 16:
            addrs.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return txid, flags & 0xF, addrs


def resolve(name: str, cfg: dict, log: JsonLog, cache: dict[str, str | None]) -> str | None:
    """Resolve name through the configured DNS server (cached per logon); None if it failed."""
    if _is_ip(name):
        return name
    if name in cache:
        return cache[name]
    dns = cfg["dns"]
    server = (dns["server"], int(dns["port"]))
    result: str | None = None
    for qtype_name in dns["qtypes"]:
        qtype = QTYPES[qtype_name]
        txid = random.randrange(1, 0xFFFF)
        query = dns_query_bytes(txid, name, qtype)
        log.write("dns_start", name=name, qtype=qtype_name, server=f"{server[0]}:{server[1]}", txid=txid)
        outcome, rcode, addrs, attempt = "timeout", None, [], 0
        with socket.socket(socket.AF_INET6 if ":" in server[0] else socket.AF_INET, socket.SOCK_DGRAM) as s:
            for attempt, timeout in enumerate(dns["timeouts_s"], start=1):
                s.sendto(query, server)
                log.write("dns_query_sent", name=name, qtype=qtype_name, txid=txid, attempt=attempt,
                          client_port=s.getsockname()[1], timeout_s=timeout)
                deadline = time.monotonic() + float(timeout)
                got = False
                while (left := deadline - time.monotonic()) > 0:
                    s.settimeout(left)
                    try:
                        msg, _ = s.recvfrom(4096)
                    except TimeoutError:
                        break
                    try:
                        rid, rcode, addrs = dns_parse_answer(msg)
                    except (struct.error, IndexError):
                        continue
                    if rid == txid:
                        got = True
                        break
                if got:
                    outcome = "answer" if rcode == 0 and addrs else RCODES.get(rcode, str(rcode)).lower()
                    if rcode == 0 and not addrs:
                        outcome = "nodata"
                    break
        log.write("dns_end", name=name, qtype=qtype_name, txid=txid, outcome=outcome,
                  rcode=RCODES.get(rcode, rcode) if rcode is not None else None, addresses=addrs, attempts=attempt)
        if addrs and result is None:
            result = addrs[0]
    cache[name] = result
    return result


# ---------------------------------------------------------------------------------------------
# HTTP / HTTPS (RFC 9110/9112); the connection goes to the resolved address, Host carries the name.
# ---------------------------------------------------------------------------------------------
def http_downloads(n: int, cfg: dict, log: JsonLog, cache: dict) -> bool:
    """GET the jnlp and jars on one keep-alive connection; True if every answer was 200 or 304.

    With ``http.tls`` ("1.2" or "1.3") the connection is HTTPS to ``http.tls_port`` (Java Web Start
    over https://); the events are then https_start/https_end and keys go to https.keylog."""
    h = cfg["http"]
    host = h.get("host", cfg["corba"]["host"])
    ip = resolve(host, cfg, log, cache)
    if ip is None:
        log.write("http_skipped", reason=f"cannot resolve {host}")
        return False
    tls = h.get("tls")
    port = int(h.get("tls_port", cfg["https"]["port"])) if tls else int(h["port"])
    scheme, ev, service = ("https", "https", "https") if tls else ("http", "http", "http")
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE   # lab certificate is self-signed
        ctx.minimum_version = ctx.maximum_version = (ssl.TLSVersion.TLSv1_3 if str(tls) == "1.3"
                                                     else ssl.TLSVersion.TLSv1_2)
        if cfg["https"].get("keylog"):
            ctx.keylog_filename = str(cfg["https"]["keylog"])
    conn = http.client.HTTPConnection(host, port, timeout=float(h["timeout_s"]))
    ok = True
    ims = h["if_modified_since"] if h["if_modified_since"] and n >= int(h["conditional_from_logon"]) else None
    try:
        for path in [h["jnlp"], *h["jars"]]:
            url = f"{scheme}://{host}:{port}{path}"
            headers = {"User-Agent": h["user_agent"], "Accept": JAVA_ACCEPT, "Connection": "keep-alive"}
            if ims and path != h["jnlp"]:
                headers["If-Modified-Since"] = ims
            log.write(f"{ev}_start", url=url, method="GET", if_modified_since=headers.get("If-Modified-Since"))
            try:
                if conn.sock is None:
                    conn.sock = socket.create_connection((ip, port), timeout=float(h["timeout_s"]))
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    log.write("tcp_connected", service=service, local=_sockname(conn.sock), remote=f"{ip}:{port}")
                    if ctx is not None:
                        t0 = now_ns()
                        conn.sock = ctx.wrap_socket(conn.sock, server_hostname=host if not _is_ip(host) else None)
                        log.write("tls_handshake_done", version=conn.sock.version(), cipher=conn.sock.cipher()[0],
                                  handshake_ms=round((now_ns() - t0) / 1e6, 3))
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                log.write(f"{ev}_end", url=url, status=resp.status, body_bytes=len(body), outcome="ok")
                ok = ok and resp.status in (200, 304)
                if resp.will_close:
                    conn.close()
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                log.write(f"{ev}_end", url=url, status=None, outcome=f"error: {type(exc).__name__}: {exc}")
                conn.close()
                ok = False
    finally:
        conn.close()
    return ok


def _sockname(s: socket.socket) -> str:
    host, port = s.getsockname()[:2]
    return f"{host}:{port}"


def https_get(cfg: dict, log: JsonLog, cache: dict) -> bool:
    """One HTTPS GET with the configured TLS version; session keys go to https.keylog (NSS format)."""
    h = cfg["https"]
    host = h.get("host", cfg["corba"]["host"])
    ip = resolve(host, cfg, log, cache)
    if ip is None:
        log.write("https_skipped", reason=f"cannot resolve {host}")
        return False
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE   # lab certificate is self-signed
    version = ssl.TLSVersion.TLSv1_3 if h["tls_version"] == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = version
    if h.get("keylog"):
        ctx.keylog_filename = str(h["keylog"])
    sni = h.get("server_name", host if not _is_ip(host) else None)
    url = f"https://{host}:{h['port']}{h['path']}"
    log.write("https_start", url=url, tls_version=h["tls_version"], sni=sni)
    conn = http.client.HTTPSConnection(host, int(h["port"]), timeout=float(h["timeout_s"]), context=ctx)
    try:
        raw = socket.create_connection((ip, int(h["port"])), timeout=float(h["timeout_s"]))
        log.write("tcp_connected", service="https", local=_sockname(raw), remote=f"{ip}:{h['port']}")
        t0 = now_ns()
        conn.sock = ctx.wrap_socket(raw, server_hostname=sni)
        log.write("tls_handshake_done", version=conn.sock.version(), cipher=conn.sock.cipher()[0],
                  handshake_ms=round((now_ns() - t0) / 1e6, 3))
        conn.request("GET", h["path"], headers={"User-Agent": cfg["http"]["user_agent"], "Accept": JAVA_ACCEPT})
        resp = conn.getresponse()
        body = resp.read()
        log.write("https_end", url=url, status=resp.status, body_bytes=len(body), outcome="ok")
        return resp.status == 200
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        log.write("https_end", url=url, status=None, outcome=f"error: {type(exc).__name__}: {exc}")
        return False
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# CORBA
# ---------------------------------------------------------------------------------------------
def shrink_rcvbuf(rcvbuf: int, remote: str) -> list[str]:
    """Set SO_RCVBUF on this process's TCP sockets connected to remote ('ip:port'); return their names.

    omniORB has no receive-buffer option; a dup of the descriptor shares the socket.
    """
    done = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            s = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            peer = s.getpeername()
            if f"{peer[0]}:{peer[1]}" == remote:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(rcvbuf))
                done.append(_sockname(s))
        except OSError:
            pass
        finally:
            s.close()
    return done


class CorbaLogon:
    """The ORB side of one logon: bootstrap through naming, then the application calls."""

    def __init__(self, n: int, cfg: dict, log: JsonLog, workdir: Path) -> None:
        from captures.lab.corba import orbenv
        from captures.lab.corba.orbtrace import TraceReader

        self.n, self.cfg, self.log = n, cfg, log
        self.corba = cfg["corba"]
        self.omniORB = orbenv.load_omniorb()
        from omniORB import CORBA  # type: ignore[import-not-found]

        self.CORBA = CORBA
        trace = workdir / f"client-orb-{n}.trace"
        trace.unlink(missing_ok=True)   # omniORB appends; a stale trace would replay old requests
        self.reader = TraceReader(trace)
        args = ["epj-client", *orbenv.giop_args({"max_version": self.corba["giop_max_version"],
                                                 "max_msg_size": self.corba.get("max_msg_size", 16 * 1024 * 1024)}),
                *orbenv.trace_args(trace)]
        if int(self.corba["call_timeout_ms"]) > 0:
            args += ["-ORBclientCallTimeOutPeriod", str(int(self.corba["call_timeout_ms"]))]
        self.orb = CORBA.ORB_init(args, CORBA.ORB_ID)
        # Retries are this client's decision (and logged), not omniORB's silent default.
        self.omniORB.installTransientExceptionHandler(None, lambda cookie, retries, exc: False)
        self.call_seq = 0
        self.app_peer: str | None = None
        self.nc = None        # the naming context (kept across logons of one process)
        self.session = None   # the resolved EPJ::Session

    def _drain_trace(self, call_seq: int) -> list[dict]:
        """Log the GIOP messages omniORB traced since the last call; return the Requests sent."""
        sent = []
        for ev in self.reader.poll():
            if ev.msg_type in ("Request", "LocateRequest", "Reply", "LocateReply", "CancelRequest",
                               "CloseConnection", "MessageError"):
                rec = ev.as_dict()
                rec.pop("dump", None)
                rec.pop("thread", None)
                rec.pop("chunk_bytes", None)
                self.log.write("giop_sent" if ev.direction == "send" else "giop_received",
                               call_seq=call_seq, **{k: v for k, v in rec.items() if v is not None and k != "direction"})
                if ev.direction == "send" and ev.msg_type == "Request":
                    sent.append({"peer": ev.peer, "request_id": ev.request_id, "op": ev.op})
                    self.app_peer = ev.peer
        return sent

    def call(self, op: str, fn, **info) -> tuple[bool, object]:
        """Run fn() with call_start/call_end logging and one retry after a system exception."""
        attempts = 1 + int(self.corba["retries"])
        result: object = None
        for attempt in range(1, attempts + 1):
            self.call_seq += 1
            seq = self.call_seq
            self.log.write("call_start", op=op, attempt=attempt, call_seq=seq, **info)
            try:
                result = fn()
            except self.CORBA.SystemException as exc:
                ids = self._drain_trace(seq)
                self.log.write("call_end", op=op, attempt=attempt, call_seq=seq, outcome="system_exception",
                               exception_id=exc._NP_RepositoryId, minor=exc.minor,
                               completed=str(exc.completed), requests=ids)
                if attempt < attempts:
                    continue
                return False, None
            except self.CORBA.UserException as exc:
                ids = self._drain_trace(seq)
                self.log.write("call_end", op=op, attempt=attempt, call_seq=seq, outcome="user_exception",
                               exception_id=exc._NP_RepositoryId, requests=ids)
                return False, None
            ids = self._drain_trace(seq)
            self.log.write("call_end", op=op, attempt=attempt, call_seq=seq, outcome="ok", requests=ids)
            return True, result
        return False, result

    def run(self, ip: str) -> bool:
        """Bootstrap and run the call sequence; True when every step ended ok."""
        return self.bootstrap(ip) and self.resolve() and self.sequence()

    def bootstrap(self, ip: str) -> bool:
        """Narrow the naming service's corbaloc reference (omniORB sends _is_a); kept for later logons."""
        import CosNaming  # type: ignore[import-not-found]

        c = self.corba
        url = f"corbaloc::{c['giop_max_version']}@{ip}:{int(c['naming_port'])}/NameService"
        ok, nc = self.call("_narrow(NamingContext)", lambda: self.orb.string_to_object(url)._narrow(
            CosNaming.NamingContext), corbaloc=url)
        self.nc = nc
        return bool(ok and nc is not None)

    def resolve(self) -> bool:
        """Resolve the application name in the naming service (a JNDI lookup); keep the Session."""
        import CosNaming  # type: ignore[import-not-found]
        import EPJ  # type: ignore[import-not-found]

        c = self.corba
        name = [CosNaming.NameComponent(p, "") for p in c["name"].split("/") if p]
        ok, obj = self.call("resolve", lambda: self.nc.resolve(name), name=c["name"])
        if not ok:
            return False
        self.session = obj._narrow(EPJ.Session)
        return True

    def sequence(self) -> bool:
        """The application calls of one logon (authenticate ... logout) with client think between."""
        c = self.corba
        session = self.session
        user = self.cfg["user"].format(n=self.n)
        token = "none"
        slow = c.get("slow_reader")
        for i, (op, opargs) in enumerate(c["sequence"]):
            if i > 0 and float(c["think_ms"]) > 0:
                time.sleep(float(c["think_ms"]) / 1000.0)
            helper = None
            if slow and slow.get("op") == op:
                helper = self._start_pause(slow)
            if op == "authenticate":
                ok, ticket = self.call(op, lambda: session.authenticate(user, "synthetic-password", b"\x00" * 64))
                if ok:
                    token = ticket.token
            elif op == "getUserContext":
                ok, _ = self.call(op, lambda token=token: session.getUserContext(token))
            elif op == "getWorklist":
                rows = int(opargs.get("maxRows", 0))
                ok, _ = self.call(op, lambda rows=rows, token=token: session.getWorklist(token, rows))
            elif op == "fetchPatientList":
                ward = str(opargs.get("wardId", "SYN-WARD-1"))
                ok, _ = self.call(op, lambda ward=ward, token=token: session.fetchPatientList(token, ward))
            elif op == "logout":
                ok, _ = self.call(op, lambda token=token: session.logout(token))
            else:
                self.log.write("call_skipped", op=op, reason="unknown operation")
                ok = False
            if helper is not None:
                helper.wait(timeout=60)
            if not ok:
                return False
        return True

    def _start_pause(self, slow: dict) -> subprocess.Popen:
        """Shrink SO_RCVBUF on the app connection and have a helper SIGSTOP/SIGCONT this process."""
        names = shrink_rcvbuf(int(slow.get("rcvbuf", 16384)), self.app_peer or "") if self.app_peer else []
        self.log.write("slow_reader_armed", op=slow.get("op"), rcvbuf=int(slow.get("rcvbuf", 16384)), sockets=names,
                       after_ms=float(slow.get("after_ms", 20)), pause_ms=float(slow.get("pause_ms", 1000)))
        # After the pause, give the socket a large buffer again so the rest of the reply flows at
        # full speed (a tiny fixed buffer would otherwise throttle it long after the "GC" ended).
        restore_after = (float(slow.get("after_ms", 20)) + float(slow.get("pause_ms", 1000)) + 10) / 1000.0
        peer = self.app_peer or ""
        big = int(slow.get("rcvbuf_after", 4 * 1024 * 1024))
        threading.Timer(restore_after, lambda: shrink_rcvbuf(big, peer)).start()
        return subprocess.Popen([sys.executable, "-m", "captures.lab.corba.client", "--pause-helper",
                                 str(os.getpid()), str(slow.get("after_ms", 20)), str(slow.get("pause_ms", 1000)),
                                 "--log", str(self.log.path), "--logon-index", str(self.n)],
                                cwd=str(Path(__file__).resolve().parents[3]))

    def close(self) -> None:
        self._drain_trace(self.call_seq)
        try:
            self.orb.destroy()
        except self.CORBA.Exception:
            pass
        self.reader.poll(final=True)
        self.reader.close()


def pause_helper(pid: int, after_ms: float, pause_ms: float, log: JsonLog) -> None:
    """Stop process pid after after_ms for pause_ms (a JVM-GC-like pause: the process reads nothing)."""
    time.sleep(after_ms / 1000.0)
    os.kill(pid, signal.SIGSTOP)
    log.write("client_paused", pid=pid)
    time.sleep(pause_ms / 1000.0)
    os.kill(pid, signal.SIGCONT)
    log.write("client_resumed", pid=pid, pause_ms=pause_ms)


def run_logon(n: int, cfg: dict, log_path: Path, workdir: Path) -> str:
    """Perform logon n in this process (or logons n*k .. n*k+k-1 with session.logons_per_process = k).

    Returns 'ok' or the first bad outcome ('failed:<step>', 'degraded:<step>').
    """
    k = int(cfg["session"]["logons_per_process"])
    if k > 1:
        return _run_logons_in_one_process(n, k, cfg, log_path, workdir)
    log = JsonLog(log_path, logon=n, pid=os.getpid())
    log.write("logon_start", client=cfg.get("client_name", "client"), user=cfg["user"].format(n=n))
    cache: dict[str, str | None] = {}
    outcome = "ok"
    corba = None
    try:
        if cfg["http"]["enabled"] and not http_downloads(n, cfg, log, cache):
            outcome = "degraded:http"
        if cfg["https"]["enabled"] and not https_get(cfg, log, cache):
            outcome = "degraded:https"
        ip = resolve(cfg["corba"]["host"], cfg, log, cache)
        if ip is None:
            outcome = "failed:dns"
        else:
            if float(cfg["corba"]["startup_ms"]) > 0:
                time.sleep(float(cfg["corba"]["startup_ms"]) / 1000.0)
            corba = CorbaLogon(n, cfg, log, workdir)
            if not corba.run(ip):
                outcome = "failed:corba"
    except Exception as exc:  # noqa: BLE001 - the logon fails, the log says why, no traceback
        outcome = f"failed:{type(exc).__name__}: {exc}"
    finally:
        if corba is not None:
            corba.close()
        log.write("logon_end", outcome=outcome)
        log.close()
    return outcome


def _run_logons_in_one_process(n: int, k: int, cfg: dict, log_path: Path, workdir: Path) -> str:
    """Logons n*k .. n*k+k-1 in this one process over one ORB (its connections are reused).

    The first logon does what a single logon does (DNS, downloads, start-up, naming bootstrap);
    each later one starts with the name lookup again (session.resolve_each_logon) and runs the
    call sequence for its own user. Each logs logon_start before its first step and logon_end
    right after its last reply; then the process waits session.between_ms (time in no logon).
    """
    sess = cfg["session"]
    pid = os.getpid()
    plog = JsonLog(log_path, logon=None, pid=pid)
    plog.write("process_start", client=cfg.get("client_name", "client"), logons=k)
    corba: CorbaLogon | None = None
    worst = "ok"
    try:
        for j in range(k):
            idx = n * k + j
            log = JsonLog(log_path, logon=idx, pid=pid, process_logon=j)
            log.write("logon_start", client=cfg.get("client_name", "client"), user=cfg["user"].format(n=idx))
            outcome = "ok"
            try:
                if j == 0:
                    cache: dict[str, str | None] = {}
                    if cfg["http"]["enabled"] and not http_downloads(idx, cfg, log, cache):
                        outcome = "degraded:http"
                    ip = resolve(cfg["corba"]["host"], cfg, log, cache)
                    if ip is None:
                        outcome = "failed:dns"
                    else:
                        if float(cfg["corba"]["startup_ms"]) > 0:
                            time.sleep(float(cfg["corba"]["startup_ms"]) / 1000.0)
                        corba = CorbaLogon(idx, cfg, log, workdir)
                        if not (corba.bootstrap(ip) and corba.resolve() and corba.sequence()):
                            outcome = "failed:corba"
                elif corba is None:
                    outcome = "failed:no ORB"
                else:
                    corba.n, corba.log = idx, log
                    if not ((not sess["resolve_each_logon"] or corba.resolve()) and corba.sequence()):
                        outcome = "failed:corba"
            except Exception as exc:  # noqa: BLE001 - the logon fails, the log says why, no traceback
                outcome = f"failed:{type(exc).__name__}: {exc}"
            if corba is not None:
                corba._drain_trace(corba.call_seq)
            log.write("logon_end", outcome=outcome)
            log.close()
            if worst == "ok" and outcome != "ok":
                worst = outcome
            if outcome.startswith("failed") and corba is None:
                break
            if j + 1 < k:
                time.sleep(float(sess["between_ms"]) / 1000.0)
    finally:
        if corba is not None:
            corba.log = plog
            corba.close()
        plog.write("process_end", outcome=worst)
        plog.close()
    return worst


def launch(cfg: dict, args: argparse.Namespace) -> int:
    """Start one child per logon, at most cfg['concurrency'] at a time; wait for all."""
    first, count = int(cfg["first_logon"]), int(cfg["logons"])
    todo = list(range(first, first + count))
    running: list[subprocess.Popen] = []
    root = str(Path(__file__).resolve().parents[3])
    deadline = time.monotonic() + float(cfg.get("max_runtime_s", 600))
    # Storm: the first batch loads omniORB and compiles the IDL first, then all start their logon
    # at the same moment (otherwise 20 interpreters starting on 2 cores spread over seconds).
    batch = min(int(cfg["concurrency"]), len(todo))
    barrier = None
    if batch > 1 and float(cfg["start_interval_ms"]) == 0 and cfg.get("synchronized_start", True):
        barrier = Path(tempfile.mkdtemp(prefix="epj-storm-"))
    try:
        while todo or running:
            while todo and len(running) < int(cfg["concurrency"]):
                n = todo.pop(0)
                cmd = [sys.executable, "-m", "captures.lab.corba.client", "--config", str(args.config),
                       "--log", str(args.log), "--logon-index", str(n)]
                if args.workdir:
                    cmd += ["--workdir", str(args.workdir)]
                if barrier is not None and not (barrier / "go").exists():
                    cmd += ["--barrier", str(barrier)]
                running.append(subprocess.Popen(cmd, cwd=root))
                if float(cfg["start_interval_ms"]) > 0 and todo:
                    time.sleep(float(cfg["start_interval_ms"]) / 1000.0)
            if barrier is not None and not (barrier / "go").exists():
                ready_by = time.monotonic() + 60
                # wait for every child to be ready (or to have died: it will never be ready)
                while (len(list(barrier.glob("ready-*"))) + sum(p.poll() is not None for p in running) < batch
                       and time.monotonic() < ready_by):
                    time.sleep(0.01)
                (barrier / "go").touch()
            time.sleep(0.02)
            running = [p for p in running if p.poll() is None]
            if time.monotonic() > deadline:
                print(f"error: logons still running after max_runtime_s; stopping {len(running)}", file=sys.stderr)
                return 1
    finally:
        for p in running:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: launcher, single logon (--logon-index) or pause helper (--pause-helper)."""
    ap = argparse.ArgumentParser(prog="python -m captures.lab.corba.client", description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path)
    ap.add_argument("--log", required=True, type=Path)
    ap.add_argument("--logon-index", type=int)
    ap.add_argument("--workdir", type=Path, help="where omniORB trace files go (default: a temp dir)")
    ap.add_argument("--logons", type=int, help="override the config's logons")
    ap.add_argument("--concurrency", type=int, help="override the config's concurrency (storm: >= logons)")
    ap.add_argument("--barrier", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--pause-helper", nargs=3, metavar=("PID", "AFTER_MS", "PAUSE_MS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pause_helper:
        pid, after, pause = args.pause_helper
        log = JsonLog(args.log, logon=args.logon_index, pid=os.getpid())
        pause_helper(int(pid), float(after), float(pause), log)
        log.close()
        return 0
    if args.config is None:
        print("error: --config is required", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.logons is not None:
        cfg["logons"] = args.logons
    if args.concurrency is not None:
        cfg["concurrency"] = args.concurrency
    if args.logon_index is None:
        return launch(cfg, args)
    from captures.lab.corba import orbenv

    try:
        orbenv.load_omniorb()
    except orbenv.OmniOrbMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="epj-client-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.barrier is not None:
        (args.barrier / f"ready-{args.logon_index}").touch()
        go_by = time.monotonic() + 120
        while not (args.barrier / "go").exists() and time.monotonic() < go_by:
            time.sleep(0.002)
    outcome = run_logon(args.logon_index, cfg, args.log, workdir)
    return 0 if outcome == "ok" or outcome.startswith("degraded") else 1


if __name__ == "__main__":
    sys.exit(main())
