"""Re-make the real TCP captures live (namespaces, forwarder, tcpdump) and judge them afresh.

Needs root, ip, tcpdump, curl, ethtool and tshark; skips cleanly otherwise. The committed copies
in captures/tcp are what the other tests read; this proves the scenario still produces what the
notes claim on this machine, with tshark as the oracle on the fresh files.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from netdiag.tcp import analyze

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ["ip", "tcpdump", "curl", "ethtool", "tshark"]
pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, tcpdump)"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in NEEDED),
                       reason=f"needs {', '.join(t for t in NEEDED if shutil.which(t) is None)}"),
]


def _load(name: str, path: Path):  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _tshark_frames(path: Path, filt: str) -> list[int]:
    out = subprocess.run(["tshark", "-r", str(path), "-Y", filt, "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=60).stdout
    return [int(x) for x in out.split()]


def _tshark_times(path: Path, filt: str) -> list[float]:
    out = subprocess.run(["tshark", "-r", str(path), "-Y", filt, "-T", "fields", "-e", "frame.time_epoch"],
                         capture_output=True, text=True, timeout=60).stdout
    return [float(x) for x in out.split()]


def test_dropped_syn_and_data_frames_show_up_as_tshark_sees_them(tmp_path: Path) -> None:
    live = _load("make_live", ROOT / "captures" / "tcp" / "make_live.py")
    live.loss_scenario(tmp_path)
    client = tmp_path / "loss_client_side.pcap"
    res = analyze(client)
    c = res.connections.row(0, named=True)
    assert c["syn_retransmissions"] == 1
    # Linux retries a SYN 1 s after the first send; the first SYN reaches the wire only after ARP resolution
    # through the forwarder, so the gap on the wire can fall a few ms short of 1 s. The oracle is tshark:
    # first SYN to the handshake's final ACK (the client's first pure ACK) of stream 0.
    first_syn = _tshark_times(client, "tcp.stream==0 && tcp.flags.syn==1 && tcp.flags.ack==0")[0]
    final_ack = _tshark_times(client, "tcp.stream==0 && tcp.flags==0x010")[0]
    assert c["connect_s"] == pytest.approx(final_ack - first_syn, abs=2e-6)
    assert 0.9 <= c["connect_s"] < 1.5
    assert 10.0 <= c["rtt_server_side_ms"] < 40.0  # two 5 ms forwarder hops
    seg = res.segments
    for ours, field in [("retransmission", "tcp.analysis.retransmission"),
                        ("lost_segment", "tcp.analysis.lost_segment"),
                        ("duplicate_ack", "tcp.analysis.duplicate_ack"),
                        ("fast_retransmission", "tcp.analysis.fast_retransmission")]:
        assert seg.filter(pl.col(ours))["frame"].to_list() == _tshark_frames(client, field), ours
    assert seg["lost_segment"].sum() >= 1 and seg["retransmission"].sum() >= 2
    server = analyze(tmp_path / "loss_server_side.pcap")
    s = server.connections.row(0, named=True)
    assert s["syn_retransmissions"] == 0 and 10.0 <= s["rtt_client_side_ms"] < 40.0


def test_slow_reader_gives_zero_window_and_keepalives_as_tshark_sees_them(tmp_path: Path) -> None:
    live = _load("make_live", ROOT / "captures" / "tcp" / "make_live.py")
    live.flow_control_scenario(tmp_path)
    path = tmp_path / "flow_control.pcap"
    res = analyze(path)
    seg = res.segments
    for ours, field in [("zero_window", "tcp.analysis.zero_window"), ("window_full", "tcp.analysis.window_full"),
                        ("keep_alive", "tcp.analysis.keep_alive"), ("keep_alive_ack", "tcp.analysis.keep_alive_ack"),
                        ("window_update", "tcp.analysis.window_update")]:
        assert seg.filter(pl.col(ours))["frame"].to_list() == _tshark_frames(path, field), ours
    t = res.connections
    assert t["state"].to_list() == ["SF", "SF", "REJ", "REJ"]
    assert t["zero_window_s"][0] > 1.0      # the reader slept 1.5 s with a full buffer
    assert t["keep_alives"][1] >= 2          # keep-alive every second for 3.5 s
