"""Lab topology: client -- middle -- server network namespaces joined by veth pairs, always torn down.

Why: the captures must come from real kernels and real peers, but nothing may leave the machine.
Every namespace, interface and process the lab creates carries a unique prefix
(``ndl<pid>``); processes are started in their own process group (``start_new_session``) and
killed by group id; ``Lab.close()`` runs from ``finally`` and from ``atexit`` (and on SIGTERM), so
a failing scenario still removes everything it made.

Topology (one IPv4 /24 from 10.77.0.0/16, used only inside these namespaces; IPv6 disabled so no
router/neighbour solicitations pollute the captures)::

    [cli] ci ==== mc [mid] ms ==== si [srv]
    10.77.1.20      (no IP)        10.77.1.10 app + naming, .11 second app server, .53 DNS, .80 web

The middle namespace has no address: the user-space bridge (impair.py) copies Ethernet frames
between ``mc`` and ``ms`` so client and server share one L2 segment. More workstations
(``Lab.add_client``, scenarios with several client addresses in wards) get a namespace each
(``<prefix>-pcN``), joined to the client namespace by a veth on a Linux bridge there that also
holds ``ci``; so their frames pass ``ci`` (the client capture point) and the bridge like the
first client's. Offloads (TSO/GSO/GRO) are
off on every veth so frames on the wire and in the capture are MTU-sized (Linux veth otherwise
passes 64 KB super-packets).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SUBNET_PREFIX = "10.77.1"
CLIENT_IP = f"{SUBNET_PREFIX}.20"
APP_IP = f"{SUBNET_PREFIX}.10"
APP2_IP = f"{SUBNET_PREFIX}.11"
DNS_IP = f"{SUBNET_PREFIX}.53"
WEB_IP = f"{SUBNET_PREFIX}.80"
MTU = 1500
TCP_COUNTERS = ("TcpActiveOpens", "TcpPassiveOpens", "TcpOutSegs", "TcpRetransSegs", "TcpExtTCPSynRetrans",
                "TcpExtTCPTimeouts", "TcpExtTCPLossProbes", "TcpExtTCPFastRetrans", "TcpExtTCPSlowStartRetrans",
                "TcpExtTCPLostRetransmit", "TcpExtTCPSpuriousRTOs", "TcpExtTCPDSACKRecv", "TcpExtTCPToZeroWindowAdv",
                "TcpExtTCPFromZeroWindowAdv", "TcpExtDelayedACKs")

# Debian package that provides each tool the lab needs (installed with apt-get when run as root).
TOOL_PACKAGES = {
    "ip": "iproute2",
    "tcpdump": "tcpdump",
    "tshark": "tshark",
    "dnsmasq": "dnsmasq-base",
    "nft": "nftables",
    "ethtool": "ethtool",
    "openssl": "openssl",
    "curl": "curl",
    "ping": "iputils-ping",
    "chrt": "util-linux",
    "nstat": "iproute2",
}


class LabError(RuntimeError):
    """A lab step failed (missing tool, peer did not start, scenario error); the message says which."""


def preflight(tools: list[str] | None = None, install: bool = True) -> None:
    """Refuse to run without root or a tool; apt-get install missing Debian packages when allowed."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, AF_PACKET bridge, tcpdump); run it as root")
    tools = tools or list(TOOL_PACKAGES)
    missing = [t for t in tools if shutil.which(t) is None]
    if missing and install and shutil.which("apt-get"):
        pkgs = sorted({TOOL_PACKAGES[t] for t in missing if t in TOOL_PACKAGES})
        subprocess.run(["apt-get", "install", "-y", "-q", *pkgs], capture_output=True, timeout=300,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pkgs = ", ".join(f"{t} (Debian package {TOOL_PACKAGES.get(t, '?')})" for t in missing)
        raise LabError(f"missing required tools: {pkgs}")


def run(cmd: list[str], timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
    """Run a short setup command; LabError with its stderr if it fails."""
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


class Lab:
    """The three namespaces, their veths and every process started in them; close() removes all."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"ndl{os.getpid() % 100000}"
        self.cli = f"{self.prefix}-cli"
        self.mid = f"{self.prefix}-mid"
        self.srv = f"{self.prefix}-srv"
        self.if_ci, self.if_mc = f"{self.prefix}ci", f"{self.prefix}mc"
        self.if_ms, self.if_si = f"{self.prefix}ms", f"{self.prefix}si"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.clients: dict[str, str] = {}      # extra workstation: address -> its namespace
        self._closed = False
        atexit.register(self.close)

    # -- topology ---------------------------------------------------------------------------
    def build(self) -> None:
        """Create the namespaces and veths, address them, disable IPv6 and offloads."""
        for ns in (self.cli, self.mid, self.srv):
            run(["ip", "netns", "del", ns], check=False)   # leftover of a crash with the same pid
            run(["ip", "netns", "add", ns])
            self.namespaces.append(ns)
            for key in ("all", "default"):
                run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self._veth(self.cli, self.if_ci, self.mid, self.if_mc)
        self._veth(self.mid, self.if_ms, self.srv, self.if_si)
        run(["ip", "-n", self.cli, "addr", "add", f"{CLIENT_IP}/24", "dev", self.if_ci])
        for ip in (APP_IP, APP2_IP, DNS_IP, WEB_IP):
            run(["ip", "-n", self.srv, "addr", "add", f"{ip}/24", "dev", self.if_si])
        for ns, ifname in ((self.mid, self.if_mc), (self.mid, self.if_ms)):
            run(["ip", "-n", ns, "link", "set", ifname, "promisc", "on"])

    def _veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        run(["ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
        for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
            run(["ip", "-n", ns, "link", "set", ifname, "mtu", str(MTU), "up"])
            # tx checksum offload off too: a frame the bridge reads with a partial (not yet computed)
            # checksum would be re-sent as is and dropped by the receiver.
            run(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off", "rx", "off", "tso", "off",
                 "gso", "off", "gro", "off"])

    def add_client(self, ip: str) -> str:
        """One more workstation at `ip` (in 10.77.1.0/24) in its own namespace; returns the namespace.

        The first call puts a Linux bridge into the client namespace, enslaves ``ci`` to it and
        moves the first client's address onto the bridge; each workstation then gets a veth pair
        (its end addressed, the other end a bridge port), offloads and IPv6 off like every veth.
        """
        if ip in self.clients:
            return self.clients[ip]
        br = f"{self.prefix}br"
        if not self.clients:
            run(["ip", "-n", self.cli, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
            run(["ip", "-n", self.cli, "link", "set", br, "mtu", str(MTU), "up"])
            run(["ip", "-n", self.cli, "addr", "del", f"{CLIENT_IP}/24", "dev", self.if_ci])
            run(["ip", "-n", self.cli, "link", "set", self.if_ci, "master", br])
            run(["ip", "-n", self.cli, "addr", "add", f"{CLIENT_IP}/24", "dev", br])
        n = len(self.clients) + 1
        ns = f"{self.prefix}-pc{n}"
        run(["ip", "netns", "del", ns], check=False)
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        for key in ("all", "default"):
            run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        port, pc_if = f"{self.prefix}p{n}", f"{self.prefix}q{n}"
        self._veth(self.cli, port, ns, pc_if)
        run(["ip", "-n", self.cli, "link", "set", port, "master", br])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", pc_if])
        self.clients[ip] = ns
        return ns

    def tcp_counters(self, ns: str) -> dict[str, int]:
        """The namespace's TCP retransmission/loss counters (nstat, absolute; fresh namespace -> ours only).

        These are the kernel's own count of what each host resent (RFC 6298 timeouts, fast
        retransmits, RFC 8985 tail-loss probes): the sender-side truth for retransmissions,
        including ones the bridge did not cause (e.g. a probe fired while the bridge was descheduled).
        """
        res = run(["ip", "netns", "exec", ns, "nstat", "-asz", "--json"])
        counters = json.loads(res.stdout).get("kernel", {})
        return {k: int(counters.get(k, 0)) for k in TCP_COUNTERS}

    def capture_interface(self, point: str) -> tuple[str, str]:
        """(namespace, interface) where tcpdump listens for a capture point client|middle|server."""
        return {"client": (self.cli, self.if_ci), "middle": (self.mid, self.if_ms),
                "server": (self.srv, self.if_si)}[point]

    # -- processes --------------------------------------------------------------------------
    def start(self, ns: str, cmd: list[str], **kw: object) -> subprocess.Popen:
        """Start cmd inside ns in its own process group (cwd = repository root)."""
        kw.setdefault("cwd", str(REPO))
        kw.setdefault("env", lab_env())
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], start_new_session=True,  # type: ignore[call-overload]
                                **kw)
        self.procs.append(proc)
        return proc

    def run_in(self, ns: str, cmd: list[str], timeout: float, **kw: object) -> subprocess.CompletedProcess:
        """Run cmd inside ns to completion, bounded by timeout (its process group is killed on expiry)."""
        proc = self.start(ns, cmd, **kw)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.stop(proc, signal.SIGKILL)
            raise LabError(f"{' '.join(cmd[:4])} ... still running after {timeout} s; killed") from exc
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 8) -> None:
        """Signal proc's process group, then SIGKILL the group after timeout."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        # children that outlived their leader (omniNames, logon children) share the group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        """Kill every process group we started, then delete the namespaces (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc, timeout=3)
        for ns in reversed(self.namespaces):
            # any process still inside (should be none) dies with the namespace's pids
            res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
            for pid in res.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self.procs, self.namespaces = [], []


def cleanup_leftovers() -> list[str]:
    """Remove namespaces a killed lab run left behind (names ndl<digits>-cli|mid|srv|pcN) and their processes."""
    import re

    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    removed = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if not re.fullmatch(r"ndl\d+-(cli|mid|srv|pc\d+)", name):
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=10).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        removed.append(name)
    return removed


def lab_env() -> dict[str, str]:
    """Environment for lab children: repo on PYTHONPATH, omniORB libraries on LD_LIBRARY_PATH, TZ=UTC."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with contextlib.suppress(Exception):
        from captures.lab.corba import orbenv

        env["LD_LIBRARY_PATH"] = orbenv.child_env()["LD_LIBRARY_PATH"]
    env["TZ"] = "UTC"
    return env


@contextlib.contextmanager
def lab(prefix: str | None = None) -> Iterator[Lab]:
    """Build the topology; always tear it down, whatever happens inside the block."""
    lb = Lab(prefix)
    old = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # SIGTERM -> exception -> finally below runs
        raise LabError("terminated by SIGTERM")

    signal.signal(signal.SIGTERM, on_term)
    try:
        lb.build()
        yield lb
    finally:
        lb.close()
        signal.signal(signal.SIGTERM, old)


def start_tcpdump(lb: Lab, ns: str, iface: str, out: Path) -> subprocess.Popen:
    """tcpdump -i iface -s 0 -w out inside ns (packet-buffered); return once it is listening."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["tcpdump", "-i", iface, "--immediate-mode", "-U", "-n", "-s", "0", "-B", "8192", "-w", str(out),
           "-Z", "root"]
    proc = lb.start(ns, cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stderr.readline() if proc.stderr else ""
        if "listening on" in line:
            return proc
        if proc.poll() is not None:
            raise LabError(f"tcpdump on {ns}/{iface} exited: {line.strip()}")
    raise LabError(f"tcpdump on {ns}/{iface} did not start listening within 10 s")


def stop_tcpdump(lb: Lab, proc: subprocess.Popen) -> dict:
    """Let the last frames land, stop tcpdump with SIGINT; return its packet counters."""
    time.sleep(0.8)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        lb.stop(proc, signal.SIGKILL)
        err = ""
    counts = {}
    for line in (err or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and "packets" in line:
            counts[" ".join(parts[1:]).replace("packets ", "")] = int(parts[0])
    return counts
