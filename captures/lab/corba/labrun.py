"""Small helpers to run the CORBA peers in throw-away network namespaces (sample capture, tests).

The full lab (issue 3: impairment, scenarios, truth files) lives elsewhere under captures/lab/;
this module only gives make_sample.py and tests/test_lab_corba.py what they need: create a
namespace (or a pair joined by a veth), start processes in it, run tcpdump until told to stop,
wait for a JSON-lines event, and always tear everything down (processes by pid, then the
namespaces) even when a step fails. Needs root and iproute2.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


class LabError(RuntimeError):
    """A lab step failed (missing tool, a peer did not start); the message says which."""


def require(*tools: str) -> None:
    """Raise LabError naming every missing tool, or if not root."""
    if os.geteuid() != 0:
        raise LabError("needs root (network namespaces, tcpdump)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)}")


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if res.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")


class Namespaces:
    """Create namespaces and processes; close() kills what it started (by pid) and deletes the namespaces."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def add(self, name: str) -> str:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)  # leftover of a crash
        _run(["ip", "netns", "add", name])
        self.names.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def veth(self, ns_a: str, if_a: str, addrs_a: list[str], ns_b: str, if_b: str, addrs_b: list[str],
             mtu: int = 1500) -> None:
        """Join two namespaces with a veth pair and give each end its addresses (CIDR strings)."""
        _run(["ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b])
        for ns, ifname, addrs in ((ns_a, if_a, addrs_a), (ns_b, if_b, addrs_b)):
            _run(["ip", "-n", ns, "link", "set", ifname, "mtu", str(mtu), "up"])
            for a in addrs:
                _run(["ip", "-n", ns, "addr", "add", a, "dev", ifname])
            # offloads off so the capture shows wire-sized segments, not 64 KB super-packets
            subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tso", "off", "gso", "off",
                            "gro", "off"], capture_output=True, timeout=20)

    def start(self, ns: str, cmd: list[str], **kw: object) -> subprocess.Popen:
        """Start cmd inside namespace ns (cwd = repository root unless given)."""
        kw.setdefault("cwd", str(REPO))
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def run(self, ns: str, cmd: list[str], timeout: float, **kw: object) -> subprocess.CompletedProcess:
        """Run cmd inside ns to completion (bounded by timeout)."""
        kw.setdefault("cwd", str(REPO))
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], timeout=timeout, **kw)  # type: ignore[call-overload]

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        """Stop one process we started: sig, then SIGKILL after timeout."""
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc, timeout=5)
        for name in reversed(self.names):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
        self.procs, self.names = [], []


@contextlib.contextmanager
def namespaces() -> Iterator[Namespaces]:
    """Context manager that always tears the namespaces and their processes down."""
    lab = Namespaces()
    try:
        yield lab
    finally:
        lab.close()


def start_tcpdump(lab: Namespaces, ns: str, iface: str, out: Path, bpf: str = "") -> subprocess.Popen:
    """Start tcpdump -U -w out on iface inside ns; return once it is listening."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # libpcap's ring has one slot per snaplen: -s 0 (256 KiB slots) in the default 2 MiB buffer
    # gives 8 slots, and a busy machine then drops frames. 65600 bytes hold a whole loopback
    # frame (MTU 65536); 32 MiB give ~500 slots.
    cmd = ["tcpdump", "-i", iface, "--immediate-mode", "-U", "-n", "-s", "65600", "-B", "32768",
           "-w", str(out), "-Z", "root"]
    if bpf:
        cmd += bpf.split()
    proc = lab.start(ns, cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stderr.readline() if proc.stderr else ""
        if "listening on" in line:
            return proc
        if proc.poll() is not None:
            raise LabError(f"tcpdump exited: {line.strip()}")
    raise LabError("tcpdump did not start listening within 10 s")


def stop_tcpdump(lab: Namespaces, proc: subprocess.Popen) -> dict[str, int]:
    """Let tcpdump write its last packets, stop it with SIGINT; return its counters.

    Keys: captured, received_by_filter, dropped_by_kernel (from tcpdump's closing lines). A
    non-zero dropped_by_kernel means the file misses frames the network carried.
    """
    time.sleep(1.0)
    lab.stop(proc, signal.SIGINT)
    text = proc.stderr.read() if proc.stderr else ""
    stats = {}
    for key, pattern in (("captured", r"(\d+) packets? captured"),
                         ("received_by_filter", r"(\d+) packets? received by filter"),
                         ("dropped_by_kernel", r"(\d+) packets? dropped by kernel")):
        m = re.search(pattern, text)
        if m:
            stats[key] = int(m.group(1))
    return stats


def wait_event(log: Path, event: str, timeout: float = 20, proc: subprocess.Popen | None = None) -> dict:
    """Wait until a JSON-lines log holds a line with this event; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            for line in log.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    rec = json.loads(line)
                    if rec.get("event") == event:
                        return rec
                    if rec.get("event") == "server_error":
                        raise LabError(f"{log}: {rec.get('error')}")
        if proc is not None and proc.poll() is not None:
            raise LabError(f"process exited ({proc.returncode}) before logging {event!r} in {log}")
        time.sleep(0.05)
    raise LabError(f"{log}: no {event!r} within {timeout} s")


def read_jsonl(path: Path) -> list[dict]:
    """All records of a JSON-lines log (empty list if the file does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
