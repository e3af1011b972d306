"""A fresh real capture: tcpdump on loopback while curl fetches from python -m http.server.

The capture is made by captures/crafted/make_loopback_http.sh (the committed
real_loopback_http.pcap came from the same script) and every packets column is compared with
tshark's reading of the same file. Needs root, tcpdump, curl and tshark; skipped otherwise.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from capture_oracle import compare, our_rows, tshark_packets

from netdiag.capture import read_capture

SCRIPT = Path(__file__).resolve().parent.parent / "captures" / "crafted" / "make_loopback_http.sh"
missing = [t for t in ("tcpdump", "curl", "tshark") if shutil.which(t) is None]


@pytest.mark.skipif(os.geteuid() != 0, reason="capturing on loopback needs root")
@pytest.mark.skipif(bool(missing), reason=f"missing tools: {missing}")
def test_fresh_loopback_http_capture_decodes_like_tshark(tmp_path: Path) -> None:
    out = tmp_path / "live.pcap"
    env = dict(os.environ, PORT=str(random.randint(20000, 40000)))
    subprocess.run(["sh", str(SCRIPT), str(out)], check=True, timeout=60, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cap = read_capture(out)
    theirs = tshark_packets(str(out))
    assert len(theirs) >= 20  # three HTTP exchanges on their own connections
    assert len(cap.packets) == len(theirs)
    assert compare(our_rows(cap), theirs) == []
    assert int(cap.packets["payload_len"].max()) > 10_000  # the 27 kB page crossed loopback
    assert cap.stats.warnings == []
