"""The report's charts and tables are readable in a real browser: nothing overlaps, nothing is cut, nothing scrolls sideways.

Headless Chromium opens report.html of one-logon captures (captures/lab/slow_auth.pcap, loss_s2c.pcap), a
twelve-logon capture (captures/compare/cmp_auth800.pcap), a twenty-logon storm whose logons start
within the same second (captures/lab/storm.pcap) and 10 k logons (tests/many_logons.py: time-shifted
copies of the storm's logons), at 1280 px. From the DOM's own geometry (getBoundingClientRect of
every <text> of every chart and every table cell):

- no two text boxes of a chart overlap (more than 1 px each way: glyph boxes of stacked labels may touch);
- no text reaches outside its chart's viewBox (it would be clipped: "olve" for "resolve");
- the page does not scroll sideways, and no table or figure does either;
- logons that start within the same second show different start times (sub-second precision);
- "over the day" draws more than one point for a capture of a few minutes.

Screenshots are kept in tests/artifacts/layout-*.png for people to look at. The compare and trend
pages are checked the same way.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from many_logons import many_logons  # noqa: E402
from test_report_browser import ARTIFACTS, CHROMIUM, _Cdp  # noqa: E402

from netdiag.analyze import analyze  # noqa: E402
from netdiag.report.html import render_html  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ONE = ROOT / "captures" / "lab" / "slow_auth.pcap"
LOSS = ROOT / "captures" / "lab" / "loss_s2c.pcap"
TWELVE = ROOT / "captures" / "compare" / "cmp_auth800.pcap"
STORM = ROOT / "captures" / "lab" / "storm.pcap"
WIDTH = 1280

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install.sh --test installs it)")]

LAYOUT = """(() => {
  const out = {overlaps: [], clipped: [], cells: [], scrollers: [], texts: 0};
  const de = document.scrollingElement;
  out.page = [de.scrollWidth, de.clientWidth];
  document.querySelectorAll('.scroll, figure, main').forEach(el => {
    if (el.scrollWidth > el.clientWidth + 1) {
      const t = el.querySelector('table, svg');
      out.scrollers.push([el.tagName, t ? (t.dataset.table || t.dataset.chart) : '', el.scrollWidth, el.clientWidth]);
    }
  });
  const box = r => ({l: r.left, r: r.right, t: r.top, b: r.bottom});
  document.querySelectorAll('svg.chart').forEach(svg => {
    const name = svg.dataset.chart;
    const s = box(svg.getBoundingClientRect());
    const items = Array.from(svg.querySelectorAll('text'))
      .map(t => ({text: t.textContent, ...box(t.getBoundingClientRect())}))
      .filter(b => b.r - b.l > 0 && b.text.trim() !== '');
    out.texts += items.length;
    for (const b of items) {
      if (b.l < s.l - 0.5 || b.r > s.r + 0.5 || b.t < s.t - 0.5 || b.b > s.b + 0.5) {
        out.clipped.push([name, b.text, Math.round(b.l - s.l), Math.round(s.r - b.r)]);
      }
    }
    for (let i = 0; i < items.length; i++) {
      for (let j = i + 1; j < items.length; j++) {
        const a = items[i], c = items[j];
        const ox = Math.min(a.r, c.r) - Math.max(a.l, c.l);
        const oy = Math.min(a.b, c.b) - Math.max(a.t, c.t);
        if (ox > 1 && oy > 1) { out.overlaps.push([name, a.text, c.text, Math.round(ox), Math.round(oy)]); }
      }
    }
  });
  document.querySelectorAll('table td, table th').forEach(td => {
    if (td.scrollWidth > td.clientWidth + 1) {
      const t = td.closest('table');
      out.cells.push([t.dataset.table, td.textContent.slice(0, 40), td.scrollWidth, td.clientWidth]);
    }
  });
  const lt = document.querySelector('table[data-table="logons"]');
  if (lt) {
    const i = Array.from(lt.tHead.rows[0].cells).findIndex(th => th.textContent.startsWith('start'));
    out.starts = Array.from(lt.tBodies[0].rows).map(r => r.cells[i].textContent);
  }
  const ot = document.querySelector('svg[data-chart="over-time"]');
  out.over_time_points = ot ? new Set(Array.from(ot.querySelectorAll('circle.mark')).map(c => c.getAttribute('cx'))).size : null;
  return JSON.stringify(out);
})()"""


def _layout(tmp_path: Path, page: Path, shot: str) -> dict:
    """Open `page` at WIDTH px, return the geometry facts above and keep a full-page screenshot."""
    import base64

    cdp = _Cdp(tmp_path / f"profile-{shot}")
    try:
        cdp.open(page.resolve().as_uri())
        cdp.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": 900, "deviceScaleFactor": 1,
                                                        "mobile": False})
        time.sleep(0.2)
        got = json.loads(cdp.eval(LAYOUT))
        png = cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, timeout=60)
        problems = cdp.problems()
    finally:
        cdp.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / shot).write_bytes(base64.b64decode(png["data"]))
    assert problems == []
    return got


def _assert_readable(got: dict) -> None:
    assert got["texts"] > 0
    wrong = {k: got[k][:10] for k in ("overlaps", "clipped", "scrollers", "cells") if got[k]}
    if got["page"][0] > got["page"][1]:
        wrong["page scrolls sideways"] = got["page"]
    assert wrong == {}


def _report_page(tmp_path: Path, a) -> Path:
    page = tmp_path / "report.html"
    page.write_text(render_html(a), encoding="utf-8")
    return page


@pytest.mark.parametrize(("capture", "logons"), [(ONE, 1), (LOSS, 1), (TWELVE, 12), (STORM, 20)],
                         ids=["one-logon", "one-logon-with-loss", "twelve-logons", "storm-twenty-logons"])
def test_report_charts_and_tables_are_readable(tmp_path, capture, logons):
    a = analyze([capture])
    assert a.logons.height == logons
    got = _layout(tmp_path, _report_page(tmp_path, a), f"layout-{capture.stem}.png")
    _assert_readable(got)
    # one start time per distinct start (to the millisecond): logons in the same second are told apart
    starts_ms = a.logons.sort("start_ts_ns")["start_ts_ns"] // 1_000_000
    assert len(set(got["starts"])) == starts_ms.n_unique()
    # a capture of a few minutes still shows how logon time moved: more than one or two points in time
    assert got["over_time_points"] >= min(logons, 4)


def test_ten_thousand_logon_report_is_readable(tmp_path):
    a = many_logons(analyze([STORM]), 10_000)
    assert a.logons.height == 10_000
    got = _layout(tmp_path, _report_page(tmp_path, a), "layout-10k-logons.png")
    _assert_readable(got)
    assert got["over_time_points"] >= 24         # eight hours of logons: a point per period
    shown = got["starts"]      # the 500 slowest; logons of one storm copy start within the same second
    assert len(shown) == 500 and all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", t) for t in shown)
    assert len(set(shown)) > 0.9 * len(shown)


def test_compare_and_trend_pages_are_readable(tmp_path):
    from netdiag.compare import compare
    from netdiag.report.compare import render_html as compare_html
    from netdiag.report.trend import render_html as trend_html
    from netdiag.trend import trend

    cmp = ROOT / "captures" / "compare"
    c = compare(cmp / "cmp_auth800.pcap", cmp / "cmp_auth200.pcap")
    page = tmp_path / "compare.html"
    page.write_text(compare_html(c), encoding="utf-8")
    _assert_readable(_layout(tmp_path, page, "layout-compare.png"))
    t = trend([cmp / "cmp_auth800.pcap", cmp / "cmp_auth200.pcap", cmp / "cmp_auth200_rerun.pcap"])
    page = tmp_path / "trend.html"
    page.write_text(trend_html(t), encoding="utf-8")
    got = _layout(tmp_path, page, "layout-trend.png")
    _assert_readable(got)
    assert not re.search(r"\d\.\d{4,} s", json.dumps(got))
