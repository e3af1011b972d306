"""Replayable fuzzing: the seeded CI subset, every kept failure replayed, the oracles.

The campaign (tests/fuzz/run_campaign.py, figures in tests/fuzz/README.md) runs >= 1 M inputs per
target; here a seeded subset of about 20 k inputs (the campaign's first inputs under its seed 1, so a
campaign that passed means CI passes) runs in well under a minute, every input that ever failed
(tests/fuzz/regressions/<target>/*.bin) is replayed, and the container walkers the reader check
relies on are held against tshark.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz import targets  # noqa: E402

TESTS = Path(__file__).resolve().parent
CI_SEED = 1
CI_INPUTS = {"giop": 3000, "cdr": 3000, "http": 3000, "tls": 3000, "dns": 3000, "pcap": 2500, "pcapng": 2500}


@pytest.mark.parametrize("target", targets.TARGETS)
def test_seeded_subset_keeps_every_contract(target: str) -> None:
    failures = []
    for i in range(CI_INPUTS[target]):
        data = targets.make_input(target, CI_SEED, i)
        _, failure = targets.timed_check(target, data)
        if failure:
            failures.append(f"input {i} ({len(data)} bytes): {failure}")
    assert not failures, (f"{len(failures)} failing inputs; replay one with targets.make_input({target!r}, "
                          f"{CI_SEED}, i):\n" + "\n".join(failures[:10]))


REGRESSIONS = [(t, p) for t in targets.TARGETS for p in targets.regression_files(t)]


@pytest.mark.parametrize(("target", "path"), REGRESSIONS, ids=[f"{t}/{p.name}" for t, p in REGRESSIONS])
def test_every_input_that_ever_failed_now_passes(target: str, path: Path) -> None:
    cpu, failure = targets.timed_check(target, path.read_bytes())
    assert failure is None, failure


def test_inputs_replay_from_target_seed_and_index() -> None:
    for target in targets.TARGETS:
        assert targets.make_input(target, 7, 123) == targets.make_input(target, 7, 123)
    assert targets.make_input("http", 7, 123) != targets.make_input("http", 7, 124)


def test_no_test_draws_unseeded_random_bytes() -> None:
    """Random inputs must replay: no os.urandom / secrets in the tests (three fuzz tests used it)."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name == Path(__file__).name:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bos\.urandom\(|\bsecrets\.|\brandom\.SystemRandom\b", line):
                offenders.append(f"{path.relative_to(TESTS)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_container_walkers_count_the_frames_tshark_counts() -> None:
    """The reader check counts intact records with its own walkers; on whole files and on cut ones
    they must count what tshark reads (tshark also reads the records before a cut)."""
    crafted = targets.CAPTURES / "crafted"
    files = [crafted / n for n in ("eth_vlan_qinq.pcap", "pcap_be_ns.pcap", "sll2.pcap", "pcapng_multi.pcapng",
                                   "pcapng_spb.pcapng", "overlap_b.pcapng")]
    for path in files:
        data = path.read_bytes()
        walk = targets.intact_pcapng_records if path.suffix == ".pcapng" else targets.intact_pcap_records
        for cut in (len(data), len(data) - 7, len(data) * 2 // 3):
            part = data[:cut]
            tmp = Path(targets._scratch("walker")).with_suffix(path.suffix)
            tmp.write_bytes(part)
            out = subprocess.run(["tshark", "-r", str(tmp), "-T", "fields", "-e", "frame.number"],
                                 capture_output=True, text=True, timeout=60).stdout
            assert walk(part) == len(out.split()), (path.name, cut)
