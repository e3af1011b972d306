"""The trend page in a real browser (headless Chromium, offline in a network namespace when root).

The analyze report's browser checks (tests/test_report_browser.py, whose helper is reused):
nothing fetched, nothing on the console, every chart drew every mark it declares, every table
sortable; screenshots land in tests/artifacts/trend-*.png for a person to look at. Axis and end
labels of the p50/p95 chart are checked for overlap from the SVG's own coordinates.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_report_browser import CHROMIUM, _check_page  # noqa: E402

from netdiag.report.trend import render_html  # noqa: E402
from netdiag.trend import trend  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CMP = ROOT / "captures" / "compare"
LAB = ROOT / "captures" / "lab"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install.sh --test installs it)")]


def _labels_apart(svg: str) -> None:
    """Axis labels under the period chart (same y) do not overlap (6.6 px per character, as drawn)."""
    texts = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" text-anchor="middle"[^>]*>([^<]*)</text>', svg)
    by_y: dict[str, list[tuple[float, str]]] = {}
    for x, y, s in texts:
        by_y.setdefault(y, []).append((float(x), s))
    for row in by_y.values():
        row.sort()
        for (x1, s1), (x2, s2) in zip(row, row[1:], strict=False):
            assert x2 - x1 >= (len(s1) + len(s2)) * 6.6 / 2, (s1, s2)


def test_trend_page_renders_offline_with_both_charts_drawn(tmp_path):
    t = trend([CMP / "cmp_auth800.pcap", CMP / "cmp_auth200.pcap", CMP / "cmp_auth200_rerun.pcap"],
              labels=["Monday", "Tuesday", "Wednesday"])
    page = tmp_path / "trend.html"
    page.write_text(render_html(t), encoding="utf-8")
    dom = _check_page(tmp_path, page, "trend-auth.png")
    assert set(re.findall(r'data-chart="([^"]+)"', dom)) == {"trend-lines", "trend-budget"}
    lines = re.search(r'<svg[^>]*data-chart="trend-lines".*?</svg>', dom, re.S).group(0)
    assert 'data-marks-expected="11"' in lines      # 2 lines + 2 x 3 points + 3 count bars
    _labels_apart(lines)
    assert "improved" in dom and "server processing (server_s)" in dom
    for tname in ("periods", "budget-per-period", "steps"):
        assert f'data-table="{tname}"' in dom


def test_trend_page_with_wards_small_periods_and_an_empty_one_renders(tmp_path):
    prof = tmp_path / "site.toml"
    prof.write_text('[[client_groups]]\nsubnet = "10.77.1.0/24"\ngroup = "Ward 7"\n\n'
                    '[[client_groups]]\nsubnet = "198.51.100.0/24"\ngroup = "Clinic B"\n')
    sample = ROOT / "captures" / "sample" / "epj-logon.pcap"
    t = trend([[LAB / "baseline.pcap", sample], ROOT / "captures" / "crafted" / "real_loopback_http.pcap",
               [LAB / "slow_auth.pcap", sample], LAB / "added_rtt.pcap"], prof,
              labels=["Monday", "Tuesday (no logons)", "Wednesday", "Thursday"])
    page = tmp_path / "trend-lab.html"
    page.write_text(render_html(t), encoding="utf-8")
    dom = _check_page(tmp_path, page, "trend-lab-wards.png")
    assert "weak evidence" in dom and 'data-table="wards"' in dom
    assert "Ward 7" in dom and "Clinic B" in dom and "Tuesday (no logons)" in dom
    _labels_apart(re.search(r'<svg[^>]*data-chart="trend-lines".*?</svg>', dom, re.S).group(0))
