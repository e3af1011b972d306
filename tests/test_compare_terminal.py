"""`netdiag compare`'s terminal table fits the terminal, as the other commands' tables do.

At 80, 100 and 160 columns: no line is longer than the terminal, every metric row is one line,
the verdict and every number are whole (a number is left out with its column, never cut), and the
verdicts shown are the comparison's own (its JSON). Piped (not a terminal) every column is there
and nothing is cut. One real before/after pair of lab captures (captures/compare).
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from netdiag.compare import Comparison, compare
from netdiag.report.compare import TERMINAL_COLUMNS, print_terminal, terminal_rows

ROOT = Path(__file__).resolve().parents[1]
CMP = ROOT / "captures" / "compare"
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
VERDICT_RE = re.compile(r"improved|regressed|no significant change|weak evidence")


@functools.cache
def _auth() -> Comparison:
    return compare(CMP / "cmp_auth800.pcap", CMP / "cmp_auth200.pcap")


def _render(c: Comparison, width: int, *, terminal: bool = True) -> str:
    buf = io.StringIO()
    con = Console(file=buf, width=width, force_terminal=terminal, color_system=None, legacy_windows=False)
    print_terminal(c, console=con)
    return ANSI_RE.sub("", buf.getvalue())


def _table_rows(out: str) -> list[str]:
    """The body rows of the table (lines between the header rule and the bottom rule)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(("┡", "├", "+")))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(("└", "+")))
    return lines[start + 1:end]


@pytest.mark.parametrize("width", [80, 100, 160])
def test_compare_table_fits_the_terminal_one_line_per_metric(width):
    c = _auth()
    out = _render(c, width)
    assert max(len(line) for line in out.splitlines()) <= width
    rows = _table_rows(out)
    shown = terminal_rows(c)
    assert len(rows) == len(shown)                       # one line per metric: nothing wrapped
    for line, r in zip(rows, shown, strict=True):
        cells = [x.strip() for x in line.strip("│┃").split("│")]
        assert cells[1] == r["verdict"]                  # the verdict whole, and the comparison's own
        assert not any("…" in x for x in cells[1:])      # numbers are never cut


def test_compare_table_narrow_terminal_names_what_it_left_out():
    out = _render(_auth(), 80)
    assert "left out to fit 80 characters" in out
    header = next(line for line in out.splitlines() if "metric" in line and "verdict" in line)
    for must in ("metric", "verdict", "before", "after", "difference"):
        assert must in header


def test_compare_piped_output_keeps_every_column_whole():
    c = _auth()
    out = _render(c, 80, terminal=False)
    header = next(line for line in out.splitlines() if "metric" in line and "verdict" in line)
    for col in TERMINAL_COLUMNS:
        assert col in header
    assert "…" not in "\n".join(_table_rows(out))


def test_compare_cli_verdicts_match_its_json():
    """The CLI's terminal table (piped) shows the verdicts its --json gives, metric by metric."""
    a, b = str(CMP / "cmp_auth800.pcap"), str(CMP / "cmp_auth200.pcap")
    run = [sys.executable, "-m", "netdiag.cli", "compare", a, b]
    table = subprocess.run(run, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "100"},
                           check=False)
    js = subprocess.run([*run, "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert table.returncode == 0 and js.returncode == 0, table.stderr + js.stderr
    metrics = {r["metric_id"]: r["verdict"] for r in json.loads(js.stdout)["metrics"]}
    shown = [VERDICT_RE.search(line).group(0) for line in _table_rows(table.stdout)]
    assert shown and set(shown) <= set(metrics.values())
    assert shown.count("improved") == sum(1 for r in terminal_rows(_auth()) if r["verdict"] == "improved")
