"""The compare report in a real browser (headless Chromium, offline in a network namespace when root).

Same checks as the analyze report's browser test (tests/test_report_browser.py, whose helper is
reused): nothing fetched, no console output, every chart drew every mark it declares, every
table sortable; a screenshot lands in tests/artifacts/compare-auth.png for a person to look at.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_report_browser import CHROMIUM, _check_page  # noqa: E402

from netdiag.compare import compare  # noqa: E402
from netdiag.report.compare import render_html  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CMP = ROOT / "captures" / "compare"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install.sh --test installs it)")]


def test_compare_report_renders_offline_with_ecdf_and_budget_drawn(tmp_path):
    c = compare(CMP / "cmp_auth800.pcap", CMP / "cmp_auth200.pcap")
    page = tmp_path / "compare.html"
    page.write_text(render_html(c), encoding="utf-8")
    dom = _check_page(tmp_path, page, "compare-auth.png")
    assert set(re.findall(r'data-chart="([^"]+)"', dom)) == {"compare-ecdf", "compare-budget"}
