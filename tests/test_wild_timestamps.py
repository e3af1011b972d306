"""A frame with a wild timestamp (a clock glitch) is named in a warning; the rest is analysed as before.

One frame dated 2106 crashed `analyze` with OverflowError (netdiag/logons/
budget.py: a logon stretched over 80 years), and one dated ten years back made a fourth,
bogus logon. The capture reader now judges each frame's time against the frames around it
(netdiag/capture/reader.py). The test captures are copies of the bundled sample with one
record's seconds field patched (four bytes); tshark on the same file shows the wild time that
the warning must name, and the lab client's own log gives the logon durations to expect.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from netdiag.analyze import analyze

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"
TRUTH = json.loads((ROOT / "captures" / "sample" / "epj-logon.truth.json").read_text())
YEAR_2106 = 0xFFFFFF00            # 2106-02-07 06:24:00 UTC, near the end of pcap's 32-bit seconds
TEN_YEARS = 10 * 365 * 86400
HAVE_TSHARK = shutil.which("tshark") is not None


def _record_offset(buf: bytes, frame: int) -> int:
    off, n = 24, 1
    while n < frame:
        off += 16 + struct.unpack_from("<I", buf, off + 8)[0]
        n += 1
    return off


def _patched(tmp: Path, frame: int, new_seconds: int | None = None, back_s: int = 0) -> Path:
    b = bytearray(SAMPLE.read_bytes())
    off = _record_offset(b, frame)
    sec = struct.unpack_from("<I", b, off)[0]
    struct.pack_into("<I", b, off, new_seconds if new_seconds is not None else sec - back_s)
    p = tmp / f"wild_frame{frame}.pcap"
    p.write_bytes(b)
    return p


def _tshark_time(capture: Path, frame: int) -> str:
    out = subprocess.run(["tshark", "-r", str(capture), "-Y", f"frame.number == {frame}", "-T", "fields",
                          "-e", "frame.time_epoch"], capture_output=True, text=True, timeout=60, check=True).stdout
    t = float(out.strip())
    return dt.datetime.fromtimestamp(int(t), tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _check_logons(a) -> None:  # noqa: ANN001 - an Analysis
    logs = sorted(TRUTH["logons"], key=lambda x: x["start_ts_ns"])
    assert a.logons.height == TRUTH["expected"]["logons"] == len(logs)
    for row, log in zip(a.logons.sort("start_ts_ns").iter_rows(named=True), logs, strict=True):
        assert abs(row["duration_s"] - log["duration_s"]) <= max(0.005, 0.05 * log["duration_s"])


# frames where a 2106 date crashed analyze before (found by patching every 7th frame of the sample)
@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
@pytest.mark.parametrize("frame", [183, 253, 407])
def test_a_frame_dated_2106_is_named_and_the_logons_are_analysed(tmp_path: Path, frame: int) -> None:
    cap = _patched(tmp_path, frame, new_seconds=YEAR_2106)
    wild = _tshark_time(cap, frame)
    assert wild.startswith("2106-")
    a = analyze([cap], out=tmp_path / "report")
    _check_logons(a)
    named = [w for w in a.warnings if f"frame {frame}:" in w]
    assert len(named) == 1 and str(cap) in named[0] and wild in named[0], a.warnings
    assert (tmp_path / "report" / "report.html").is_file()
    assert f"frame {frame}" in (tmp_path / "report" / "report.html").read_text()


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark not installed")
def test_a_frame_ten_years_back_is_named_and_makes_no_extra_logon(tmp_path: Path) -> None:
    cap = _patched(tmp_path, 246, back_s=TEN_YEARS)     # this one made a 4th logon before
    wild = _tshark_time(cap, 246)
    a = analyze([cap])
    _check_logons(a)
    named = [w for w in a.warnings if "frame 246:" in w]
    assert len(named) == 1 and wild in named[0]


def test_the_cli_exits_0_with_the_warning_and_keeps_every_frame(tmp_path: Path) -> None:
    cap = _patched(tmp_path, 183, new_seconds=YEAR_2106)
    r = subprocess.run([sys.executable, "-m", "netdiag.cli", "analyze", str(cap), "--out", str(tmp_path / "r")],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert f"netdiag: warning: {cap}, frame 183: timestamp 2106-02-07 06:24:00 UTC" in r.stderr
    assert r.stdout.startswith("3 logons:")
    from netdiag.capture import read_capture

    packets = read_capture([cap]).packets
    assert packets.height == read_capture([SAMPLE]).packets.height     # the frame is kept, not dropped
    row = packets.filter(packets["frame"] == 183)
    prev = packets.filter(packets["frame"] == 182)
    assert row["ts_ns"][0] == prev["ts_ns"][0]                          # timed as the frame before it


def test_a_real_pause_in_the_capture_is_not_a_wild_timestamp(tmp_path: Path) -> None:
    # every frame from 200 on two days later: a capture paused and resumed, not a glitch
    b = bytearray(SAMPLE.read_bytes())
    off = _record_offset(b, 200)
    while off < len(b):
        sec = struct.unpack_from("<I", b, off)[0]
        struct.pack_into("<I", b, off, sec + 2 * 86400)
        off += 16 + struct.unpack_from("<I", b, off + 8)[0]
    cap = tmp_path / "paused.pcap"
    cap.write_bytes(b)
    from netdiag.capture import read_capture

    c = read_capture([cap])
    assert c.stats.warnings == []
    ts = dict(zip(c.packets["frame"].to_list(), c.packets["ts_ns"].to_list(), strict=True))
    assert ts[200] - ts[199] > 2 * 86400 * 10**9 - 10**10


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap not installed")
def test_pcapng_gets_the_same_judgement(tmp_path: Path) -> None:
    cap = _patched(tmp_path, 253, new_seconds=YEAR_2106)
    ng = tmp_path / "wild.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(cap), str(ng)], check=True, capture_output=True, timeout=60)
    a = analyze([ng])
    _check_logons(a)
    assert [w for w in a.warnings if "frame 253: timestamp 2106-02-07 06:24:00 UTC" in w]
