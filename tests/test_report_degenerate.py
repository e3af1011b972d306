"""The report's charts on degenerate inputs: one logon, all logons equally long, zero, NaN, nothing.

`duration_histogram` raised ValueError when the bin edges collapsed (one logon,
or all logons of one duration that is a whole number of bins as floats round it, e.g. 0.061 s),
so `netdiag analyze` gave no report. Real captures here: the lab's loss_c2s logon cut out with
editcap, with its first frame (the DNS query) sent 565 us earlier by patching that record's
timestamp so the logon lasts 0.9538 s (a duration the old code could not bin), and the same
logon twice (a sanitised copy, an hour later, merged with mergecap) for two logons of exactly
equal duration. The logon's length is checked against the lab client's own log.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from netdiag.report import svg

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "captures" / "lab"
LOSS = LAB / "loss_c2s.pcap"
HAVE_WIRESHARK_TOOLS = shutil.which("editcap") is not None and shutil.which("mergecap") is not None
EARLIER_US = 565        # the DNS query moved this much earlier: duration 0.953235 s -> 0.953800 s
BAD_INPUTS = {
    "one": [0.061],
    "equal": [0.061] * 7,
    "zero": [0.0],
    "zeros": [0.0, 0.0, 0.0],
    "nan": [float("nan"), 0.4],
    "all_nan": [float("nan")],
    "inf": [float("inf"), 0.2, 0.2],
    "empty": [],
}


def _parse(chart: str) -> ET.Element:
    root = ET.fromstring(chart)           # well-formed XML, or this raises
    assert not re.search(r"\b(nan|inf)\b", chart, re.I), "a NaN or infinite coordinate or label reached the SVG"
    return root


def _marks(root: ET.Element) -> int:
    return sum(1 for e in root.iter() if e.get("class") == "mark")


def _check(chart: str) -> ET.Element:
    root = _parse(chart)
    assert int(root.get("data-marks-expected")) == _marks(root)
    return root


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_duration_histogram_draws_degenerate_durations(name: str) -> None:
    d = np.array(BAD_INPUTS[name], dtype=float)
    finite = d[np.isfinite(d)]
    p50 = float(np.percentile(finite, 50)) if finite.size else None
    p95 = float(np.percentile(finite, 95)) if finite.size else None
    root = _check(svg.duration_histogram(d, p50, p95, 10.0))
    bars = [e for e in root.iter("rect") if e.get("class") == "mark"]
    counts = [int(t.text) for t in root.iter("text") if t.text and t.text.isdigit() and t.get("text-anchor") == "middle"
              and t.get("fill") == svg.INK]
    assert sum(counts) == finite.size          # every finite duration sits in exactly one bar
    if finite.size and np.ptp(finite) == 0:
        assert len(bars) == 1


def test_histogram_bins_hold_every_value_where_float_floor_and_ceil_met() -> None:
    # the durations that broke it and a scan of multiples of the bin width: never an empty set of bins
    step = svg.nice_step(0.001, 5)
    for us in [61000, *range(1000, 3_000_000, 200)]:
        v = us / 1e6
        lo, hi, edges, counts = svg.histogram_bins(np.array([v]), step)
        assert counts.sum() == 1 and len(edges) == len(counts) + 1 and lo <= v < hi, us


@pytest.mark.parametrize("case", ["one bucket", "nan p95", "zero", "no buckets"])
def test_over_time_draws_degenerate_buckets(case: str) -> None:
    t = 1_795_684_281_000_000_000
    args = {"one bucket": ([t], [1], [0.061], [0.061]), "nan p95": ([t, t + 300 * 10**9], [1, 0], [0.5, float("nan")],
                                                                     [0.5, float("nan")]),
            "zero": ([t], [1], [0.0], [0.0]), "no buckets": ([], [], [], [])}[case]
    _check(svg.over_time(*args, 300))


def test_bars_and_waterfall_draw_zero_and_nan_seconds() -> None:
    _check(svg.budget_share_bars([("The one logon", {"server_s": 0.0, "client_s": 0.0})]))
    _check(svg.budget_share_bars([("The one logon", {"server_s": float("nan"), "client_s": 0.2})]))
    _check(svg.budget_per_logon_bars([("logon 1", 0.0, {"server_s": 0.0})]))
    _check(svg.budget_per_logon_bars([("logon 1", float("nan"), {"server_s": float("nan")})]))
    _check(svg.hbars("server-think", "t", [("op", 0.0, "1 call"), ("op2", float("nan"), "1 call")]))
    _check(svg.hbars("server-think", "t", []))
    t = 1_795_684_281_000_000_000
    _check(svg.waterfall("waterfall-1", [{"label": "a", "bars": [(t, t, "server_s", "x", "op")]}], t, t))
    _check(svg.waterfall("waterfall-1", [], t, t))


# ------------------------------------------------------------------------------------------
# Real captures
# ------------------------------------------------------------------------------------------

def _move_first_record(src: Path, dst: Path, earlier_us: int) -> None:
    """Copy a classic (microsecond) pcap with its first record's timestamp moved earlier."""
    b = bytearray(src.read_bytes())
    assert struct.unpack_from("<I", b, 0)[0] == 0xA1B2C3D4
    sec, usec = struct.unpack_from("<II", b, 24)
    t = sec * 1_000_000 + usec - earlier_us
    struct.pack_into("<II", b, 24, t // 1_000_000, t % 1_000_000)
    dst.write_bytes(b)


def _histogram(html: str) -> ET.Element:
    m = re.search(r'<svg class="chart" data-chart="duration-histogram".*?</svg>', html, re.S)
    assert m, "no duration histogram in report.html"
    return _check(m.group(0))


def _analyze(capture: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdiag.cli", "analyze", str(capture), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def one_logon(tmp_path_factory) -> Path:
    if not LOSS.exists():
        pytest.skip("lab capture loss_c2s.pcap not present")
    d = tmp_path_factory.mktemp("one")
    p = d / "one_logon.pcap"
    _move_first_record(LOSS, p, EARLIER_US)
    return p


def test_one_logon_whose_duration_the_old_histogram_could_not_bin_gets_a_report(one_logon: Path, tmp_path: Path):
    truth = json.loads((LAB / "loss_c2s.truth.json").read_text())["logons"]
    assert len(truth) == 1
    r = _analyze(one_logon, tmp_path / "r")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and r.stdout.startswith("1 logon:")
    root = _histogram((tmp_path / "r" / "report.html").read_text())
    assert _marks(root) >= 1
    logons = json.loads(subprocess.run([sys.executable, "-m", "netdiag.cli", "logons", str(one_logon), "--json"],
                                       capture_output=True, text=True, timeout=300, cwd=ROOT, check=True).stdout)
    (only,) = logons
    assert only["duration_s"] == pytest.approx(0.953235 + EARLIER_US / 1e6, abs=2e-6)
    # the lab client's own log: within 5 ms (the DNS query moved 0.565 ms is inside that)
    assert abs(only["duration_s"] - truth[0]["duration_s"]) <= 0.005
    bars = [e for e in root.iter() if e.tag.endswith("rect") and e.get("class") == "mark"]
    assert len(bars) == 1
    unit = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}      # the bin's edges as the report writes them ("950 ms")
    lo, hi = (float(v) * unit[u] for v, u in re.findall(r"([\d.]+) (µs|ms|s)\b", bars[0].find("title").text)[:2])
    assert lo <= only["duration_s"] <= hi


@pytest.mark.skipif(not HAVE_WIRESHARK_TOOLS, reason="editcap/mergecap not installed")
def test_two_logons_of_exactly_equal_duration_get_a_report(one_logon: Path, tmp_path: Path) -> None:
    from netdiag.sanitize import AddressMapper, sanitize_file

    copy = tmp_path / "copy.pcapng"
    sanitize_file(one_logon, copy, AddressMapper(bytes(range(32))))   # other addresses, same timing
    later = tmp_path / "later.pcapng"
    subprocess.run(["editcap", "-t", "3600", str(copy), str(later)], check=True, capture_output=True)
    both = tmp_path / "both.pcapng"
    subprocess.run(["mergecap", "-w", str(both), str(one_logon), str(later)], check=True, capture_output=True)
    r = _analyze(both, tmp_path / "r")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("2 logons:") and "Traceback" not in r.stderr
    tables = tmp_path / "r" / "tables" / "logons.parquet"
    import polars as pl

    durations = pl.read_parquet(tables)["duration_s"].to_list()
    assert len(durations) == 2 and durations[0] == durations[1]
    root = _histogram((tmp_path / "r" / "report.html").read_text())
    bar_counts = [t.text for t in root.iter() if t.tag.endswith("text") and t.text == "2"]
    assert bar_counts, "one bar holding both logons"
