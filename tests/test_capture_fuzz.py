"""Damaged captures never crash the reader: random byte flips and cuts of real and crafted files.

The numba kernels have no bounds checks, so every length they trust must be checked first;
a mistake would show up here as a crash or an exception other than CaptureError. Bounded:
a fixed seed and a few hundred mutations of small files.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from netdiag.capture import read_capture
from netdiag.errors import CaptureError

CRAFTED = Path(__file__).resolve().parent.parent / "captures" / "crafted"
FILES = ["eth_vlan_qinq.pcap", "pcapng_multi.pcapng", "ipv6_ext.pcap", "sll2.pcap", "gzipped_eth.pcap",
         "null_le.pcap", "span_dups.pcap"]


@pytest.mark.parametrize("name", FILES)
def test_random_damage_gives_rows_or_capture_error_never_a_crash(name: str, tmp_path: Path) -> None:
    rng = random.Random(name)
    data = (CRAFTED / name).read_bytes()
    target = tmp_path / name
    for _ in range(60):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(mutated))
            mutated[i] = rng.choice([0, 0xFF, rng.randrange(256), mutated[i] ^ 0x80])
        if rng.random() < 0.3:
            mutated = mutated[:rng.randrange(len(mutated))]
        target.write_bytes(bytes(mutated))
        try:
            cap = read_capture(target)
        except CaptureError:
            continue
        assert len(cap.packets) <= cap.stats.packets_read
        assert all(w.path == str(target) for w in cap.stats.warnings)
        off = cap.packets["payload_offset"].to_numpy()
        end = off + cap.packets["payload_captured"].to_numpy()
        assert ((off == -1) | ((off >= 0) & (end <= len(cap.payload)))).all()
