"""One unit per kind, shown the same way everywhere: durations by `fmt_s`, shares as percentages.

`fmt_s` picks µs / ms / s so a figure reads at a glance ("38 µs", "12.4 ms", "2.40 s"), never
"0.000038 s" or "0.000 s"; `fmt_pct` shows a share as "33.5 %", never 0.335. Then, on real
captures: the report (HTML and Markdown), the terminal tables, compare's outputs and the
findings' texts carry no long-decimal seconds and no share as a bare fraction.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from netdiag.analyze import analyze
from netdiag.output import print_table
from netdiag.words import fmt_pct, fmt_s, fmt_value

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"
LOSS = ROOT / "captures" / "lab" / "loss_s2c.pcap"
CMP = ROOT / "captures" / "compare"

# "0.000038 s", "0.038 s", "0.000 s", "2.2240 s": a time under 0.1 s in seconds (ms or µs read better),
# zero written with decimals, or four or more decimals (an axis tick "0.5 s" or "0.0 s" is fine)
LONG_SECONDS_RE = re.compile(r"(?<![\d.])0\.0\d*[1-9]\d* s\b|(?<![\d.])0\.000+ s\b|\b\d+\.\d{4,} s\b")
# a share written as a bare fraction next to the word share ("share 0.335")
FRACTION_SHARE_RE = re.compile(r"share[^0-9%]{0,12}0\.\d+(?!\d* ?%)")


@pytest.mark.parametrize(("x", "text"), [
    (0.0, "0 s"), (1e-12, "0 s"), (-1e-12, "0 s"), (3.8e-5, "38 µs"), (0.000999, "999 µs"),
    (0.0009996, "1.00 ms"), (0.00245, "2.45 ms"), (0.0124, "12.4 ms"), (0.1244, "124 ms"),
    (0.9996, "1.00 s"), (2.4, "2.40 s"), (12.44, "12.4 s"), (75.3, "75.3 s"), (3725.0, "3,725 s"),
    (-0.585, "-585 ms"), (None, "n/a"), (float("nan"), "n/a"),
])
def test_fmt_s_chooses_the_unit_that_reads_best(x, text):
    assert fmt_s(x) == text


@pytest.mark.parametrize(("share", "text"), [
    (0.335, "33.5 %"), (0.07, "7.0 %"), (1.0, "100 %"), (0.0, "0 %"), (0.0004, "<0.1 %"), (None, "n/a"),
])
def test_fmt_pct_shows_a_share_as_percent(share, text):
    assert fmt_pct(share) == text


def test_fmt_value_signs_differences_and_shows_ratios_in_percent():
    assert fmt_value(0.0124, "s", sign=True) == "+12.4 ms"
    assert fmt_value(-0.0124, "s", sign=True) == "-12.4 ms"
    assert fmt_value(0.0, "s", sign=True) == "0 s"
    assert fmt_value(0.012, "ratio") == "1.2 %" and fmt_value(-0.009, "ratio", sign=True) == "-0.9 pp"


@pytest.fixture(scope="module")
def sample():
    return analyze([SAMPLE])


@pytest.fixture(scope="module")
def loss():
    return analyze([LOSS])


def test_findings_texts_use_readable_units(sample, loss):
    texts = [t for a in (sample, loss) for r in a.findings.to_dicts()
             for t in (r["summary"], r["detail"], r["action"] or "")]
    assert texts
    for t in texts:
        assert not LONG_SECONDS_RE.search(t), t
        assert not FRACTION_SHARE_RE.search(t), t


def test_report_html_and_markdown_use_readable_units(sample, loss):
    from netdiag.report.html import render_html
    from netdiag.report.markdown import render_markdown

    for a in (sample, loss):
        html = re.sub(r"<[^>]+>", " ", render_html(a).split("<script>")[0].split("</style>", 1)[1])
        for text in (html, render_markdown(a)):
            assert not LONG_SECONDS_RE.search(text), LONG_SECONDS_RE.search(text).group(0)
            assert not FRACTION_SHARE_RE.search(text)


def test_report_quotes_operation_times_in_the_same_words(sample):
    """The slow authenticate's longest call, as the server-time table holds it, appears as fmt_s writes it."""
    from netdiag.report.html import render_html

    st = sample.population["server_think_per_operation"]
    auth = st.filter(st["operation"] == "authenticate").to_dicts()[0]
    assert auth["max_s"] > 1.0            # the sample's slow authenticate (README)
    assert fmt_s(auth["max_s"]) in render_html(sample)


def test_terminal_tables_show_seconds_and_shares_for_people(loss):
    from netdiag.commands import logons as logon_cmd

    buf = io.StringIO()
    con = Console(file=buf, width=160, force_terminal=True, color_system=None)
    view = logon_cmd.pretty_logons(loss.logons)
    print_table(view, columns=logon_cmd.LOGON_COLUMNS, title="t", console=con)
    out = buf.getvalue()
    assert not LONG_SECONDS_RE.search(out)
    durations = [fmt_s(x) for x in loss.logons["duration_s"].to_list()]
    assert any(d in out for d in durations)
    buf = io.StringIO()
    con = Console(file=buf, width=160, force_terminal=True, color_system=None)
    print_table(loss.population["budget"], title="t", console=con)
    out = buf.getvalue()
    assert "%" in out and not re.search(r"\b0\.\d{3}\b", out)


def test_compare_outputs_use_readable_units():
    from netdiag.compare import compare
    from netdiag.report.compare import render_html, render_markdown

    c = compare(CMP / "cmp_auth800.pcap", CMP / "cmp_auth200.pcap")
    html = re.sub(r"<[^>]+>", " ", render_html(c).split("</style>", 1)[1].split("<script>")[0])
    for text in (html, render_markdown(c), "\n".join(c.headline())):
        assert not LONG_SECONDS_RE.search(text), LONG_SECONDS_RE.search(text).group(0)
    d = c.metric("logon:duration_s")
    assert fmt_s(d["before_stat"]) in c.headline()[0]
