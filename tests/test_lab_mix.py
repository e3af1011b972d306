"""A morning mixed from the lab's real captures: each copy analyses in the mix as its capture alone.

bench/lab_mix.py interleaves time-shifted copies of captures/lab (real peers' bytes, one known
fault each, every copy its own client address) into one capture. The oracle for each copy is
netdiag on its source capture alone (itself held to the lab's truth files by the lab tests): in
the mix, a copy's logons must be the same to the nanosecond, whatever else shares the capture,
the servers and the partitions. tshark reads the mixed file and counts its frames.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lab_mix():  # noqa: ANN202 - the bench script as a module
    spec = importlib.util.spec_from_file_location("lab_mix", ROOT / "bench" / "lab_mix.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("lab_mix", mod)   # (its dataclass looks its module up)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every fault scenario once, storm copies between them (~46 k packets)."""
    out = tmp_path_factory.mktemp("mix") / "mix.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "lab_mix.py"), "--packets", "45000", "--fault-every", "2",
                    "--out", str(out)], check=True, capture_output=True)
    return out


def test_every_copy_is_its_capture_alone(mix: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab_mix = _lab_mix()
    copies = json.loads(mix.with_name(mix.name + ".manifest.json").read_text())["copies"]
    assert {c["scenario"] for c in copies} >= set(lab_mix.FAULTS)
    assert lab_mix.check(mix, jobs=2) == 0
    out = capsys.readouterr().out
    # the faults are found, with the causes their captures show alone
    for scenario, cause in (("slow_auth", "server_think"), ("dropped_syn", "syn_retransmission"),
                            ("zero_window", "zero_window"), ("slow_dns", "dns_delay"),
                            ("loss_s2c", "loss_recovery"), ("request_timeout_retry", "request_timeout_retry")):
        assert re.search(rf"^  {scenario}: [1-9]\d* copies as alone \(dominant causes: {cause}\)$", out, re.M), scenario


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_reads_every_frame(mix: Path) -> None:
    manifest = json.loads(mix.with_name(mix.name + ".manifest.json").read_text())
    proc = subprocess.run(["tshark", "-r", str(mix), "-T", "fields", "-e", "frame.number"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == manifest["packets"]
