"""SPAN de-duplication and multi-file reading, checked against tshark on the same files.

Duplicates: tshark's per-frame MD5 (frame.md5_hash) and timestamps give, independently of our
code, which frames repeat an earlier frame's exact bytes within 5 ms. Multi-file: tshark reads
each file alone; frame numbers must continue across files in the order given and rows must come
out in time order, also when the merge works with tiny chunks.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from capture_oracle import TSHARK, compare, epoch_to_ns, our_rows, run_tshark, tshark_packets

from netdiag.capture import ReadStats, iter_chunks, read_capture

CRAFTED = Path(__file__).resolve().parent.parent / "captures" / "crafted"
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")


def _oracle_duplicates(path: Path, window_ns: int) -> set[int]:
    rows = run_tshark(str(path), ["frame.number", "frame.time_epoch", "frame.md5_hash", "frame.cap_len"],
                      extra=["-o", "frame.generate_md5_hash:TRUE"])
    seen: list[tuple[int, str, str]] = []
    dups = set()
    for r in rows:
        ts = epoch_to_ns(r["frame.time_epoch"])
        key = (r["frame.md5_hash"], r["frame.cap_len"])
        if any((h, n) == key and 0 <= ts - t <= window_ns for t, h, n in seen):
            dups.add(int(r["frame.number"]))
        else:
            seen.append((ts, *key))
    return dups


@needs_tshark
def test_span_duplicates_within_5ms_are_removed_and_counted() -> None:
    path = CRAFTED / "span_dups.pcap"
    dups = _oracle_duplicates(path, 5_000_000)
    assert len(dups) == 8  # the generator mirrored 7 frames once and one of them twice more
    cap = read_capture(path)
    assert cap.stats.duplicates_removed == 8
    assert cap.stats.duplicates_per_file == [8]
    assert cap.stats.packets_read == 17 and cap.stats.packets_kept == 9
    kept = set(cap.packets["frame"].to_list())
    assert kept == set(range(1, 18)) - dups  # kept frames keep their Wireshark numbers
    theirs = [r for r in tshark_packets(str(path)) if r["frame"] in kept]
    assert compare(our_rows(cap), theirs) == []


def test_identical_resend_after_300ms_and_near_copy_are_kept() -> None:
    cap = read_capture(CRAFTED / "span_dups.pcap")
    psh = cap.packets.filter(pl.col("tcp_flags") == 0x18)  # the data segment the generator repeats
    # original, the near copy (last byte changed) 60 us later, the byte-identical resend 300 ms later
    assert len(psh) == 3
    gaps = psh["ts_ns"].diff().drop_nulls().to_list()
    assert gaps == [60_000, 300_000_000 - 60_000]


def test_dedup_window_is_configurable_and_zero_turns_it_off() -> None:
    path = CRAFTED / "span_dups.pcap"
    assert read_capture(path, dedup_window_ns=0).stats.duplicates_removed == 0
    # copies sit 15 us and 40 us after their original: a 20 us window catches only the first kind
    assert read_capture(path, dedup_window_ns=20_000).stats.duplicates_removed == 7


@needs_tshark
def test_directory_of_ring_buffer_files_reads_in_name_order_with_continuing_frame_numbers() -> None:
    ring = CRAFTED / "ring"
    files = sorted(ring.iterdir())
    cap = read_capture(ring)
    theirs, base = [], 0
    for i, f in enumerate(files):
        rows = tshark_packets(str(f))
        for r in rows:
            r["frame"] += base
            r["file_id"] = i
        base += len(rows)
        theirs += rows
    assert len(cap.packets) == len(theirs) == 14
    assert compare(our_rows(cap), theirs) == []
    assert cap.packets["frame"].to_list() == list(range(1, 15))
    assert cap.stats.packets_per_file == [7, 7]


@needs_tshark
@pytest.mark.parametrize("chunk_packets", [1_000_000, 2, 1])
def test_overlapping_files_merge_in_time_order(chunk_packets: int) -> None:
    a, b = CRAFTED / "overlap_a.pcap", CRAFTED / "overlap_b.pcapng"
    ta, tb = tshark_packets(str(a)), tshark_packets(str(b))
    for r in tb:
        r["frame"] += len(ta)
    stats = ReadStats()
    chunks = list(iter_chunks([a, b], chunk_packets=chunk_packets, stats=stats))
    df = pl.concat([c.packets for c in chunks])
    expected_order = [r["frame"] for r in sorted(ta + tb, key=lambda r: (r["ts_ns"], r["frame"]))]
    assert df["frame"].to_list() == expected_order
    assert df["file_id"].to_list() == [0 if f <= len(ta) else 1 for f in expected_order]
    for c in chunks:  # payload offsets stay valid through the merge
        for i in range(len(c.packets)):
            f = c.packets["frame"][i]
            exp = next(r for r in ta + tb if r["frame"] == f)
            assert c.payload_of(i) == exp["payload"]
    assert stats.warnings == []


def test_files_given_in_another_order_number_frames_in_that_order() -> None:
    a, b = CRAFTED / "overlap_a.pcap", CRAFTED / "overlap_b.pcapng"
    cap = read_capture([b, a])
    first = cap.packets.sort("frame").head(7)
    assert first["file_id"].to_list() == [0] * 7  # b's frames are 1..7 now
    assert cap.stats.files == [str(b), str(a)]


def test_a_bad_file_among_good_ones_is_warned_and_the_rest_analysed(tmp_path: Path) -> None:
    shutil.copy(CRAFTED / "bad" / "not_a_capture.pcap", tmp_path / "b.pcap")
    shutil.copy(CRAFTED / "overlap_a.pcap", tmp_path / "a.pcap")
    cap = read_capture(tmp_path)
    assert len(cap.packets) == 7
    assert len(cap.stats.warnings) == 1
    assert "b.pcap" in str(cap.stats.warnings[0]) and "not a capture file" in str(cap.stats.warnings[0])
