"""Thousands of packets across several 4 MiB read blocks and chunk boundaries still match tshark.

The file comes from bench/gen_capture.py (numpy-written TCP conversations with GIOP/HTTP
payloads and retransmissions), so record headers straddle block refills and chunks end mid-
conversation; tshark reads the same file as the oracle. A gzip copy must read the same.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import pytest
from capture_oracle import TSHARK, compare, our_rows, tshark_packets

from netdiag.capture import ReadStats, iter_chunks, read_capture

GEN = Path(__file__).resolve().parent.parent / "bench" / "gen_capture.py"


def _generate(path: Path, packets: int) -> None:
    spec = importlib.util.spec_from_file_location("gen_capture", GEN)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data, _, _ = mod.generate(packets, seed=7)
    path.write_bytes(data)


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_many_blocks_and_chunks_agree_with_tshark(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.pcap"
    _generate(path, 30_000)
    assert path.stat().st_size > 2 * (4 << 20)  # several read blocks
    stats = ReadStats()
    chunks = list(iter_chunks(path, chunk_packets=7_000, stats=stats))
    assert len(chunks) >= 4
    whole = read_capture(path)
    theirs = tshark_packets(str(path))
    assert stats.packets_read == len(theirs) == len(whole.packets)
    assert compare(our_rows(whole), theirs) == []
    assert stats.duplicates_removed == 0 and stats.warnings == []
    gz = tmp_path / "synthetic.pcap.gz"
    gz.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
    again = read_capture(gz)
    assert again.packets.equals(whole.packets)
    assert (again.payload == whole.payload).all()
