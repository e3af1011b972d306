"""Live lab runs (marker ``lab``; need root, network namespaces, tcpdump, dnsmasq, tshark, omniORB).

One small scenario (dropped_syn: one logon, one injected fault) is regenerated from scratch into a
temporary directory and checked against its own fresh truth with tshark, so the lab scripts cannot
rot while the committed captures stay green. A deliberately failing scenario proves that the lab
removes its namespaces and processes even when a peer dies. Each test stays well under 60 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from captures.lab import crosscheck, netns
from captures.lab.scenarios import SCENARIOS, Scenario

REPO = Path(__file__).resolve().parents[1]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "tcpdump", "dnsmasq", "tshark", "ethtool", "openssl", "ping", "chrt", "nstat"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    try:
        from captures.lab.corba import orbenv

        orbenv.cmeel_prefix()
    except Exception as exc:  # noqa: BLE001 - any reason omniORB is unusable skips
        return f"omniORB missing: {exc}"
    return None


def _our_namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


pytestmark = [pytest.mark.lab, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def test_dropped_syn_regenerated_live_agrees_with_its_truth(tmp_path):
    from captures.lab.run import run_scenario

    t0 = time.monotonic()
    truth = run_scenario(SCENARIOS["dropped_syn"], tmp_path)
    assert time.monotonic() - t0 < 60
    assert truth["expected"]["logons_ok"] == 1
    drops = truth["impairment_log"]["frames_dropped"]
    assert len(drops) == 1 and drops[0]["tcp_flags"] == "S" and drops[0]["dst"].endswith(":9100")
    checks = crosscheck.check_capture(tmp_path / "dropped_syn.pcap")
    bad = [f"{c.name}: truth={c.truth} tshark={c.tshark}" for c in checks if c.status != "agree"]
    assert not bad, bad
    rows = subprocess.run(["tshark", "-n", "-r", str(tmp_path / "dropped_syn.pcap"), "-Y",
                           "tcp.flags.syn == 1 and tcp.flags.ack == 0 and tcp.analysis.retransmission",
                           "-T", "fields", "-e", "tcp.dstport"], capture_output=True, text=True, timeout=60).stdout.split()
    assert rows == ["9100"]
    assert not _our_namespaces(f"ndl{os.getpid() % 100000}-")


def test_a_failing_scenario_still_removes_its_namespaces_and_processes(tmp_path):
    from captures.lab.run import run_scenario

    bad_server = Scenario("broken", "the EPJ server refuses its config (unknown operation) and exits")
    bad_server.server_config = lambda name, host, naming: {  # type: ignore[method-assign]
        "name": name, "listen_host": host, "ops": {"noSuchOperation": {}}}
    with pytest.raises(netns.LabError):
        run_scenario(bad_server, tmp_path)
    assert not _our_namespaces(f"ndl{os.getpid() % 100000}-")
    time.sleep(0.5)
    # every process of the run had the run's work directory (/tmp/ndl-broken-*) on its command line
    left = subprocess.run(["pgrep", "-f", "ndl-broken-"], capture_output=True, text=True).stdout.split()
    assert left == []
    assert not (tmp_path / "broken.pcap").exists()


def test_lab_refuses_to_run_without_root_and_names_the_reason():
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv not installed")
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                          "captures.lab.run", "--scenario", "baseline", "--out", "/tmp/ndl-never"],
                         capture_output=True, text=True, timeout=60, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2
    assert "needs root" in res.stderr and "Traceback" not in res.stderr
