"""Memory the TCP analysis keeps per connection (issue 10, item 12).

A seeded SYN flood (bench/synflood.py: 20 k connections, one SYN each, random ISNs) goes through
the analyzer; the state rows it keeps per connection are counted from the arrays themselves. The
sequence-hole list (16 pairs per direction) lives in a pool given out on a direction's first hole,
so a flood without holes pays nothing for it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from netdiag.capture import iter_chunks
from netdiag.tcp import TcpAnalyzer

ROOT = Path(__file__).resolve().parents[1]


def _synflood():
    spec = importlib.util.spec_from_file_location("synflood", ROOT / "bench" / "synflood.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_syn_flood_state_per_connection_is_without_the_hole_list(tmp_path):
    sf = _synflood()
    n = 20_000
    data, ts = sf.frames(n, seed=7, rst=False)
    path = tmp_path / "sf.pcap"
    sf.write_pcap(path, data, ts)
    a = TcpAnalyzer()
    for ch in iter_chunks(path):
        a.feed(ch, segments=False)
    conns = a.finish()
    assert conns.height == n and set(conns["state"].to_list()) == {"S0"}
    assert conns["unseen_bytes"].sum() == 0
    per_conn = (a._C.strides[0] + 2 * a._D.strides[0] + a._H.strides[0]
                + int(a._meta[3]) * a._HP.strides[0] / n)
    assert int(a._meta[3]) == 0           # no direction had a hole: no hole rows given out
    assert per_conn <= 1_150, per_conn    # was 1,600 B with the hole list on every direction
