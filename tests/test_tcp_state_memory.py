"""Memory the TCP analysis keeps per connection.

A seeded SYN flood (bench/synflood.py: 20 k connections, one SYN each, random ISNs) goes through
the analyzer; the state rows it keeps per connection are counted from the arrays themselves. The
sequence-hole list (16 pairs per direction) lives in a pool given out on a direction's first hole,
so a flood without holes pays nothing for it; a direction gets its row of state only when it
sends or is acknowledged, so a SYN's silent peer costs nothing either.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from netdiag.capture import iter_chunks
from netdiag.tcp import TcpAnalyzer
from netdiag.tcp.state import C_NCOLS, D_FIRST_ROW, D_NCOLS, HISTORY_LEN, HP_NCOLS

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
    d_rows = int(a._meta[4]) - D_FIRST_ROW     # direction rows given out (before finish releases them)
    conns = a.finish()
    assert conns.height == n and set(conns["state"].to_list()) == {"S0"}
    assert conns["unseen_bytes"].sum() == 0
    assert int(a._meta[3]) == 0           # no direction had a hole: no hole rows given out
    # only the sending direction of each connection has a row; the SYN's peer reads a template
    assert d_rows == n
    per_conn = C_NCOLS * 8 + d_rows * D_NCOLS * 8 / n + HISTORY_LEN + int(a._meta[3]) * HP_NCOLS * 8 / n
    # was 1,600 B with the hole list on every direction, 1,104 B with two rows of D per connection
    assert per_conn <= 720, per_conn


def test_format_ip_of_distinct_v4_sources_makes_no_python_object_per_address():
    """A flood of spoofed sources: every client address distinct. The connections table's address
    text is formatted by polars for IPv4(-mapped) values, so Python allocates ~nothing per
    address (a string, tuple and dict entry each, ~20 MB per 100 k addresses, before); text as
    the stdlib's ipaddress prints it, IPv6 values still through it."""
    import ipaddress
    import tracemalloc

    import numpy as np
    import polars as pl

    from netdiag.capture.addresses import format_ip, ip_to_hi_lo

    rng = np.random.default_rng(11)
    v4 = rng.choice(1 << 32, 100_000, replace=False).astype(np.uint64)
    extra = ["0.0.0.0", "255.255.255.255", "::1", "fe80::1", "2001:db8::ff00:42:8329", "::"]
    hl = [ip_to_hi_lo(x) for x in extra]
    df = pl.DataFrame({"hi": np.concatenate([np.zeros(v4.size, np.uint64), [h for h, _ in hl]]).astype(np.uint64),
                       "lo": np.concatenate([v4 | np.uint64(0xFFFF_0000_0000),
                                             np.array([lo for _, lo in hl], np.uint64)])})
    tracemalloc.start()
    text = df.select(ip=format_ip("hi", "lo"))["ip"]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000, peak
    want = [str(ipaddress.IPv4Address(int(x))) for x in v4[:2000]] + [str(ipaddress.ip_address(x)) for x in extra]
    assert text[:2000].to_list() + text[-len(extra):].to_list() == want


def _peak_rss_kib(tmp_path, capture) -> int:
    """Peak RSS (KiB) of `netdiag connections CAPTURE --parquet X` in a fresh interpreter."""
    import subprocess
    import sys

    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "netdiag.cli", "connections",
                          str(capture), "--parquet", str(tmp_path / "c.parquet")],
                         capture_output=True, text=True, check=True, cwd=ROOT, timeout=300)
    return int(out.stdout.split()[-1])


def test_connections_command_peak_memory_per_connection(tmp_path):
    """What a user sees: the peak RSS of `netdiag connections` on a seeded
    50 k-connection SYN flood, above the same command on the bundled 468-frame sample, per
    connection: 2.49 KiB on main before this branch (a row of state for each direction, the whole
    state alive while the table was built and written, chunk-sized kernel output, the CLI's
    malloc default); 1.14-1.2 KiB now (200 k connections: bench/README.md)."""
    sf = _synflood()
    n = 50_000
    data, ts = sf.frames(n, seed=7, rst=False)
    path = tmp_path / "sf.pcap"
    sf.write_pcap(path, data, ts)
    base = _peak_rss_kib(tmp_path, ROOT / "netdiag" / "data" / "epj-logon.pcap")
    peak = _peak_rss_kib(tmp_path, path)
    per_conn_kib = (peak - base) / n
    assert per_conn_kib <= 1.5, (peak, base, per_conn_kib)


def test_state_only_feed_in_slices_gives_the_same_table_and_finish_ends_the_analysis(monkeypatch):
    """feed(segments=False) runs the kernel over slices of the chunk: slice edges anywhere (7 rows
    here, inside handshakes, resends and Nagle stalls) give the same connections table as the
    whole-chunk run that also builds segments; finish() releases the state and ends the analysis."""
    import pytest

    import netdiag.tcp.analysis as an

    cap = ROOT / "captures" / "lab" / "tcp_stalls_other_port.pcap"
    whole = TcpAnalyzer()
    for ch in iter_chunks(cap):
        whole.feed(ch)
    want = whole.finish()
    assert want["nagle_stalls"].sum() > 0      # the Nagle carry across slices is exercised
    monkeypatch.setattr(an, "STATE_ONLY_SLICE_ROWS", 7)
    sliced = TcpAnalyzer()
    for ch in iter_chunks(cap):
        sliced.feed(ch, segments=False)
    got = sliced.finish()
    assert got.equals(want)
    assert sliced._C is None and sliced._D is None     # the state went with finish
    assert sliced.finish() is got                       # ... which can be asked again
    with pytest.raises(RuntimeError, match="after finish"):
        sliced.feed(next(iter(iter_chunks(cap))), segments=False)
