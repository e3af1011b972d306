"""The progress line as a terminal shows it: a command run under a pseudo-terminal draws the stages,
packets and packets/s; with stderr piped nothing is drawn. The line's threshold is lowered through
NETDIAG_PROGRESS_MIN_BYTES so a small capture draws it. No timing is asserted."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT / "captures" / "compare" / "cmp_auth800.pcap"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RATE = re.compile(r"\b\d+(\.\d)?( k| M)? packets/s\b")


def _env() -> dict[str, str]:
    return dict(os.environ, NETDIAG_PROGRESS_MIN_BYTES="0", COLUMNS="240", NO_COLOR="1")


def _analyze(out: Path) -> list[str]:
    return [sys.executable, "-m", "netdiag.cli", "analyze", str(CAPTURE), "--out", str(out), "--force"]


def _under_pty(cmd: list[str], timeout_s: float = 180) -> tuple[int, str]:
    """Run `cmd` with stderr on a pseudo-terminal 240 columns wide; (exit code, what it drew, escapes removed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 240, 0, 0))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=slave)
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:   # the child closed the terminal (Linux raises EIO)
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise AssertionError(f"{cmd} did not end within {timeout_s} s")
        return proc.wait(timeout=30), ANSI.sub("", out.decode(errors="replace"))
    finally:
        os.close(master)


def test_a_terminal_sees_the_stages_packets_and_packets_per_second(tmp_path: Path) -> None:
    code, drawn = _under_pty(_analyze(tmp_path / "report"))
    assert code == 0, drawn
    frames = [f for f in drawn.replace("\n", "\r").split("\r") if f.startswith("analyze: ")]
    assert frames, drawn
    last = frames[-1]   # the frame drawn as the line closes: every stage with its seconds
    for name in ("reading, TCP, transactions", "logons and findings", "writing the report"):
        assert f"{name} " in last, last
    assert RATE.search(last), last
    # the packets the line counted are the capture's (tshark -r cmp_auth800.pcap | wc -l: 1020)
    assert "1020 packets," in last, last
    assert re.search(r"left|longer than estimated", last), last


def test_piped_stderr_carries_no_line(tmp_path: Path) -> None:
    proc = subprocess.run(_analyze(tmp_path / "report"), cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "packets/s" not in proc.stderr and "\x1b[" not in proc.stderr and "\r" not in proc.stderr


def test_the_estimate_adds_the_stages_after_reading() -> None:
    """The model of netdiag.progress.AFTER_READING, on a clock the test moves: half the bytes in
    10 s means 20 s of reading, and the logons stage's share of that on top."""
    from netdiag.progress import AFTER_READING, _Bar

    now = [0.0]
    bar = _Bar(1000, "analyze", "reading", ["logons and findings"], clock=lambda: now[0])
    bar(500)
    bar.packets(7)
    now[0] = 10.0
    share = AFTER_READING["logons and findings"]
    assert f"~{20 * (1 + share) - 10:.1f} s left" in bar.text()
    bar(500)
    now[0] = 20.0
    bar.stage("logons and findings")
    now[0] = 21.0
    assert f"~{20 * share - 1:.1f} s left" in bar.text()
    assert "reading 20.0 s, logons and findings 1.0 s" in bar.text()
    now[0] = 21.0 + 20 * share
    assert bar.text().endswith("longer than estimated")
    assert bar.fraction() == 0.99
