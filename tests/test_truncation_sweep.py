"""Captures stopped at any frame: `analyze` gives a report (exit 0), never a traceback.

Every frame boundary of the bundled sample is tried, cut as `editcap -r IN OUT 1-N`
cuts it, for every N (byte slices, checked equal to editcap's output), and a seeded sample of N on
three lab captures. Run in-process through
`netdiag.analyze.analyze` (the function the CLI runs) so the ~500 cuts take about a minute; a
few cuts also go through the command line for the exit code. A cut capture always holds at least
one readable frame, so each one must give a report; the logon count can only fall as the
capture is cut shorter, and the whole capture gives the lab truth's logons.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netdiag.analyze import MARKER, analyze

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"
LAB = ROOT / "captures" / "lab"
LAB_CAPTURES = ["baseline.pcap", "loss_s2c.pcap", "tls.pcap"]
LAB_CUTS = 12          # per lab capture, drawn with a fixed seed
SEED = 10
needs_editcap = pytest.mark.skipif(shutil.which("editcap") is None or shutil.which("capinfos") is None,
                                   reason="editcap/capinfos not installed")


def _frames(capture: Path) -> int:
    out = subprocess.run(["capinfos", "-T", "-r", "-c", str(capture)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return int(out.split()[-1])


def _cut(capture: Path, n: int, out: Path) -> Path:
    subprocess.run(["editcap", "-F", "pcap", "-r", str(capture), str(out), f"1-{n}"], check=True,
                   capture_output=True, timeout=60)
    return out


def _record_ends(capture: Path) -> list[int]:
    """Byte offset after each record of a classic little-endian pcap."""
    data = capture.read_bytes()
    ends, off = [], 24
    while off + 16 <= len(data):
        off += 16 + int.from_bytes(data[off + 8:off + 12], "little")
        ends.append(off)
    return ends


def _slicer(capture: Path, tmp: Path):  # noqa: ANN202 - returns the cut function
    """Cuts 1-N as bytes: the same bytes `editcap -F pcap -r IN OUT 1-N` writes (checked here at three N),
    without a process per cut, so the sweep spends its time in netdiag."""
    data, ends = capture.read_bytes(), _record_ends(capture)
    for n in (1, len(ends) // 2, len(ends)):
        assert _cut(capture, n, tmp / "editcap.pcap").read_bytes() == data[:ends[n - 1]], n

    def cut(n: int, out: Path) -> Path:
        out.write_bytes(data[:ends[n - 1]])
        return out
    return cut


def _sweep(capture: Path, cuts: list[int], tmp: Path) -> None:
    """Analyse each cut; assert a report for each and that the logon count never falls as the cut moves on."""
    problems: list[str] = []
    logons: dict[int, int] = {}
    cutter = _slicer(capture, tmp)
    for n in cuts:
        cut = cutter(n, tmp / f"cut{n}.pcap")
        out = tmp / f"report{n}"
        try:
            a = analyze([cut], out=out)
        except Exception as exc:  # noqa: BLE001 - every other failure is collected and reported below
            problems.append(f"1-{n}: {type(exc).__name__}: {exc}")
            continue
        logons[n] = a.logons.height
        for name in ("report.html", "report.md", "findings.json", "tables/logons.parquet", MARKER):
            if not (out / name).is_file():
                problems.append(f"1-{n}: no {name}")
        if json.loads((out / MARKER).read_text())["captures"] != [cut.name]:
            problems.append(f"1-{n}: marker names another capture")
        shutil.rmtree(out)
        cut.unlink()
    ordered = [logons[n] for n in sorted(logons)]
    if ordered != sorted(ordered):
        problems.append(f"logon count fell as the capture got longer: {sorted(logons.items())}")
    assert problems == [], "\n".join(problems)


@needs_editcap
def test_every_frame_boundary_of_the_bundled_sample_gives_a_report(tmp_path: Path) -> None:
    n = _frames(SAMPLE)
    truth = json.loads((ROOT / "captures" / "sample" / "epj-logon.truth.json").read_text())
    assert analyze([SAMPLE]).logons.height == truth["expected"]["logons"]
    _sweep(SAMPLE, list(range(1, n + 1)), tmp_path)


@needs_editcap
def test_a_seeded_sample_of_cuts_of_three_lab_captures_gives_reports(tmp_path: Path) -> None:
    present = [LAB / name for name in LAB_CAPTURES if (LAB / name).exists()]
    if len(present) < len(LAB_CAPTURES):
        pytest.skip("lab captures missing")
    rng = random.Random(SEED)
    for capture in present:
        n = _frames(capture)
        _sweep(capture, sorted(rng.sample(range(1, n), LAB_CUTS)) + [n], tmp_path)


@needs_editcap
@pytest.mark.parametrize("n", [1, 50, 200])
def test_cut_captures_exit_0_on_the_command_line(tmp_path: Path, n: int) -> None:
    cut = _cut(SAMPLE, n, tmp_path / f"cut{n}.pcap")
    r = subprocess.run([sys.executable, "-m", "netdiag.cli", "analyze", str(cut), "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and (tmp_path / "r" / "report.html").is_file()


def test_seeded_byte_cuts_of_the_sample_give_a_report_or_exit_2_when_nothing_is_readable(tmp_path: Path) -> None:
    """Cut anywhere (inside records too), as a capture copied while it was still being written."""
    from netdiag.errors import CaptureError

    data = SAMPLE.read_bytes()
    rng = random.Random(SEED)
    cuts = sorted({24 + 16 + 5, 24 + 16 + 60, *rng.sample(range(24, len(data)), 24)})
    first_record_end = 24 + 16 + int.from_bytes(data[24 + 8:24 + 12], "little")
    problems = []
    for cut in cuts:
        p = tmp_path / f"bytes{cut}.pcap"
        p.write_bytes(data[:cut])
        try:
            a = analyze([p], out=tmp_path / f"r{cut}")
        except CaptureError as exc:
            if cut >= first_record_end or "no packets could be read from" not in str(exc):
                problems.append(f"{cut}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - collected and reported below
            problems.append(f"{cut}: {type(exc).__name__}: {exc}")
            continue
        if cut < first_record_end:
            problems.append(f"{cut}: a report from a capture whose first record is cut")
        elif not (tmp_path / f"r{cut}" / "report.html").is_file():
            problems.append(f"{cut}: no report")
        elif cut < len(data) and not any(f"{p}" in w for w in a.warnings):
            problems.append(f"{cut}: the cut is not named in a warning: {a.warnings}")
    assert problems == [], "\n".join(problems)
