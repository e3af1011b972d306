"""Chunked reading keeps memory flat and never lets a reused buffer change a chunk still held.

The builder reuses a chunk's arrays only once nothing refers to them; a consumer that keeps
every chunk (like read_capture) must still see each chunk's own rows and payload.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from netdiag.capture import iter_chunks, read_capture

CRAFTED = Path(__file__).resolve().parent.parent / "captures" / "crafted"


def test_chunks_kept_by_the_consumer_are_not_overwritten_by_later_chunks() -> None:
    path = CRAFTED / "eth_vlan_qinq.pcap"
    whole = read_capture(path)
    kept = list(iter_chunks(path, chunk_packets=3))  # every chunk held at once
    assert pl.concat([c.packets.drop("payload_offset") for c in kept]).equals(
        whole.packets.drop("payload_offset"))
    assert [c.payload_of(i) for c in kept for i in range(len(c.packets))] == \
        [whole.payload_of(i) for i in range(len(whole.packets))]


def test_chunks_dropped_by_the_consumer_give_the_same_rows_when_buffers_are_reused() -> None:
    path = CRAFTED / "eth_vlan_qinq.pcap"
    whole = read_capture(path)
    seen, payloads = [], []
    for c in iter_chunks(path, chunk_packets=2):  # each chunk dropped before the next is built
        seen.append(c.packets.drop("payload_offset").clone().rows())
        payloads += [c.payload_of(i) for i in range(len(c.packets))]
    assert [r for rows in seen for r in rows] == whole.packets.drop("payload_offset").rows()
    assert payloads == [whole.payload_of(i) for i in range(len(whole.packets))]


def test_overlapping_files_sharing_buffers_keep_their_own_rows() -> None:
    # two files open at once in the merge must never fill the same reused buffers
    a, b = CRAFTED / "overlap_a.pcap", CRAFTED / "overlap_b.pcapng"
    expected = read_capture([a, b]).packets.drop("payload_offset")
    for chunk_packets in (1, 2, 3):
        got = pl.concat([c.packets.drop("payload_offset") for c in iter_chunks([a, b], chunk_packets=chunk_packets)])
        assert got.equals(expected)
