"""The one driver (netdiag.pipeline): fed in chunks of any size it gives the tables of one run, each stage
stops where asked, and it is the only thing named Analysis.

The tables themselves are checked against tshark and the lab's truth elsewhere (test_tcp_oracle,
test_transactions_tshark, test_logons_lab); here the question is only whether the driver wires the
stages the same way whoever feeds it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from netdiag.capture import ReadStats, iter_chunks
from netdiag.pipeline import Pipeline, Stage, run

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"


@pytest.mark.parametrize("chunk_packets", [1, 2, 37, 1_000_000])
def test_feeding_chunks_of_any_size_gives_the_tables_of_one_run(chunk_packets: int) -> None:
    whole = run([SAMPLE])
    stats = ReadStats()
    pipe = Pipeline(stage=Stage.LOGONS, paths=[SAMPLE], read_stats=stats)
    for chunk in iter_chunks([str(SAMPLE)], chunk_packets=chunk_packets, stats=stats):
        pipe.feed(chunk)
    fed = pipe.finish()
    for name in ("connections", "transactions", "logons", "findings", "segments"):
        assert_frame_equal(getattr(whole, name), getattr(fed, name))
    assert fed.read_stats.packets_read == whole.read_stats.packets_read > 0


def test_each_stage_stops_where_asked() -> None:
    conns = run([SAMPLE], stage=Stage.CONNECTIONS)
    txns = run([SAMPLE], stage=Stage.TRANSACTIONS)
    full = run([SAMPLE])
    assert conns.connections.height == txns.connections.height == full.connections.height > 0
    assert conns.transactions.height == 0 and conns.segments is None
    assert txns.transactions.height > 0 and txns.logons.height == 0 and txns.segments is None
    # the sample's three logons (captures/sample/README.md); the segment columns the budget read are kept
    assert full.logons.height == 3 and full.segments is not None and full.segments.height > 0
    assert run([SAMPLE], stage=Stage.TRANSACTIONS, segments=True).segments.height == full.segments.height
    assert isinstance(full.capture_point.where, str) and full.bucket_s > 0


def test_keep_segments_false_drops_them_after_the_logons_stage_with_the_same_results() -> None:
    """`keep_segments=False` (what `analyze` without --case asks): the logons stage still reads the
    segment columns (the sample's findings and budgets come out the same), the Analysis does not
    carry them afterwards; a run that stops before the logons stage keeps what it was told to."""
    kept = run([SAMPLE])
    dropped = run([SAMPLE], keep_segments=False)
    assert kept.segments is not None and kept.segments.height > 0 and dropped.segments is None
    for name in ("connections", "transactions", "logons", "findings", "intervals"):
        assert_frame_equal(getattr(kept, name), getattr(dropped, name))
    assert kept.findings.height > 0 and kept.intervals.height > 0
    assert run([SAMPLE], stage=Stage.TRANSACTIONS, segments=True, keep_segments=False).segments is None
    assert run([SAMPLE], stage=Stage.TRANSACTIONS, segments=True).segments.height == kept.segments.height


def test_a_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    from netdiag.errors import UsageError

    with pytest.raises(UsageError, match="no such file"):
        run([tmp_path / "nope.pcap"])
    with pytest.raises(UsageError, match="no capture files"):
        run([])


def test_an_empty_capture_runs_and_says_so_only_when_asked(tmp_path: Path) -> None:
    from netdiag.errors import CaptureError

    header_only = ROOT / "captures" / "crafted" / "bad" / "header_only.pcap"
    a = run([header_only])
    assert a.read_stats.packets_read == 0 and a.connections.height == 0
    assert isinstance(a.logons, pl.DataFrame) and a.logons.height == 0
    with pytest.raises(CaptureError, match="no packets could be read"):
        a.require_packets()


def test_one_class_is_named_analysis() -> None:
    defined = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "netdiag").rglob("*.py"))
               for node in ast.walk(ast.parse(p.read_text()))
               if isinstance(node, ast.ClassDef) and node.name == "Analysis"]
    assert defined == ["netdiag/pipeline.py"]
