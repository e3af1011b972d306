"""Failed connects alone on their client address become one-connection logons as columns.

A SYN flood (or a refused service retried from many addresses) is made of connections that never
got going, each the only connection of its address. The grouping makes their logons as polars
columns instead of an Item and a Chain each; this must give exactly what the chaining loop gives
them. The oracle is that loop itself: the same capture grouped with the column path switched
off. The capture is real bytes read by netdiag: the bundled sample's three logons with, in the
same analysis, seeded SYN floods (bench/synflood.py) to the naming port: lone SYNs long before
the sample, SYN -> RST retries from addresses that also sent a lone SYN (not alone: chained),
and lone SYNs from other addresses right at the capture's end (cut by it: incomplete).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from netdiag.capture import iter_chunks
from netdiag.logons import analyze_logons
from netdiag.profile import Profile
from netdiag.transactions import analyze_streams

grouping = importlib.import_module("netdiag.logons.grouping")
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "netdiag" / "data" / "epj-logon.pcap"


def _synflood():
    spec = importlib.util.spec_from_file_location("synflood", ROOT / "bench" / "synflood.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _readdress(sf, data: np.ndarray, second_octet: int) -> np.ndarray:
    """The SYNs from 10.<second_octet>.b.c instead of 10.0.b.c, checksums recomputed."""
    out = data.copy()
    out[:, 27] = second_octet
    out[:, 24:26] = 0
    ck = sf._ipv4_checksum(out[:, 14:34])
    out[:, 24], out[:, 25] = ck >> 8, ck & 0xFF
    out[:, 50:52] = 0
    ck = sf._tcp_checksum(out[:, 26:30], out[:, 30:34], out[:, 34:54])
    out[:, 50], out[:, 51] = ck >> 8, ck & 0xFF
    return out


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> list[Path]:
    sf = _synflood()
    d = tmp_path_factory.mktemp("lone")
    lone, _ = sf.frames(300, seed=3, rst=False)          # 10.0.0.1 .. 10.0.1.44, one SYN each
    _, ts = sf.frames(300, seed=3, rst=False)
    sf.write_pcap(d / "lone.pcap", lone, ts)
    rej, ts = sf.frames(60, seed=4, rst=True, per_source=3)   # 10.0.0.1 .. 10.0.0.20, 3 refused each
    sf.write_pcap(d / "rej.pcap", rej, ts + 1_000_000_000)
    last = max(int(ch.packets["ts_ns"].max()) for ch in iter_chunks(SAMPLE))
    end, ts = sf.frames(40, seed=5, rst=False)            # 10.200.0.1 .. 10.200.0.40, after the sample
    sf.write_pcap(d / "end.pcap", _readdress(sf, end, 200), ts - ts[0] + last + 1_000_000)
    return [SAMPLE, d / "lone.pcap", d / "rej.pcap", d / "end.pcap"]


def test_lone_failed_connects_as_columns_equal_the_chaining_loop(captures, monkeypatch):
    streams = analyze_streams([str(p) for p in captures])
    prof = Profile()
    rel = grouping.relevant_connections(streams.connections, streams.transactions, prof)
    _, lone, orphans = grouping._lone_failed_connects(rel, streams.transactions, prof)
    assert lone.height == 300 - 20 + 40 and orphans == 0     # the column path is taken
    fast = grouping.group_logons(streams.connections, streams.transactions, prof)
    fast_all = analyze_logons([str(p) for p in captures], prof)

    monkeypatch.setattr(grouping, "_lone_failed_connects", lambda c, t, p: (c, c.clear(), 0))
    slow = grouping.group_logons(streams.connections, streams.transactions, prof)
    slow_all = analyze_logons([str(p) for p in captures], prof)

    assert fast.logons.equals(slow.logons)
    assert fast.members.equals(slow.members)
    assert (fast.orphans, fast.relevant_connections, fast.not_logons, fast.unassigned_requests,
            fast.unassigned_dns) == (slow.orphans, slow.relevant_connections, slow.not_logons,
                                     slow.unassigned_requests, slow.unassigned_dns)
    assert fast_all.logons.equals(slow_all.logons)
    assert fast_all.findings.equals(slow_all.findings)

    lg = fast_all.logons
    assert lg.height == 3 + 300 - 20 + 20 + 40               # the sample's, the lone ones, one chain per refused address
    at_end = lg.filter(pl.col("client_ip").str.starts_with("10.200."))
    assert at_end.height == 40 and set(at_end["outcome"]) == {"incomplete"}
    early = lg.filter(pl.col("client_ip").str.starts_with("10.0.") & (pl.col("connections") == 1))
    assert set(early["outcome"]) == {"failed"}
    assert (early["duration_s"] == 0).all()                  # one SYN: starts and ends at it
