"""`state` and `history` of `netdiag connections` against Zeek's own expected conn.log.

Zeek is the anchor for these two columns (netdiag/tcp/connections.py cites the Zeek sources each
rule follows). captures/zeek/ holds eight of Zeek's test traces with the conn.log Zeek's test suite
expects for each (see its README); here every connection Zeek logs must be found in netdiag's table
with the same conn_state, history, and, where Zeek logs them, the same packets and IP bytes per
direction: exact equality, no tolerance.

Rows are matched by 5-tuple and start order. The conn.log timestamps are masked by btest, but btest
runs Zeek with a fixed seed, so uids come from one deterministic sequence in the order Zeek creates
connections (the order of their first packets): `ZEEK_UID_SEQUENCE` below is that sequence as it
appears across the baselines, and a uid's position in it is the connection's start order.

netdiag is run with SPAN de-duplication off (Zeek has none: q-in-q.pcap repeats each frame, and
Zeek counts both copies).

Documented deviations: none are needed on these traces (DEVIATIONS is empty); a future one must be
named there per connection, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from netdiag.capture import read_capture
from netdiag.tcp import connections

HERE = Path(__file__).resolve().parents[1] / "captures" / "zeek"

# Zeek's uid sequence under btest's fixed seed (first connection created gets the first uid).
ZEEK_UID_SEQUENCE = [
    "CHhAvVGS1DHFjwGM9", "ClEkJM2Vm5giqnMf4h", "C4J4Th3PJpwUYZZ6gc", "CtPZjS20MLrsMUOJi2",
    "CUM0KZ3MLUfNB0cl11", "CmES5u32sYpV7JYN", "CP5puj4I8PtEU4qzYg", "C37jN32gN3y3AZzyf6",
    "C3eiCBGOLw3VtHfOj", "CwjjYJ2WqgTbAqiHl6", "C0LAHyvtKSQHyJxIl",
]

TRACES = sorted(p.name for p in HERE.glob("*.pcap"))

# Zeek's test ran with a capture filter: the same rows of ours (mime-content-hash.zeek: -f 'tcp port 25')
CAPTURE_FILTER = {"smtp.pcap": (pl.col("transport") == "tcp") & ((pl.col("server_port") == 25)
                                                                  | (pl.col("client_port") == 25))}

# (trace, uid) -> {field: (zeek's value, netdiag's value, why)}; keep this short and honest.
DEVIATIONS: dict[tuple[str, str], dict[str, tuple[object, object, str]]] = {}

# Zeek field -> netdiag column (orig = netdiag's client)
FIELDS = {
    "conn_state": "state",
    "history": "history",
    "orig_pkts": "packets_c2s",
    "resp_pkts": "packets_s2c",
    "orig_ip_bytes": "ip_bytes_c2s",
    "resp_ip_bytes": "ip_bytes_s2c",
}


def read_conn_log(path: Path) -> list[dict[str, str]]:
    """Rows of a Zeek conn.log (the '#fields' TSV form, or the short 'uid history service' form)."""
    rows: list[dict[str, str]] = []
    names: list[str] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            names = line.split("\t")[1:]
        elif line.startswith("#") or not line.strip():
            continue
        elif names is None:  # a cut-down baseline: a header line of names, then rows
            names = line.split()
        else:
            rows.append(dict(zip(names, line.split("\t") if "\t" in line else line.split(), strict=True)))
    return rows


def matched(trace: str, strict: bool = True) -> list[tuple[dict[str, str], dict]]:
    """(Zeek row, netdiag row) pairs: by 5-tuple where Zeek logs it, in start order.

    strict=False (for the agreement figures) pairs a Zeek row netdiag lacks with an empty row.
    """
    zeek = sorted(read_conn_log(HERE / f"{trace}.conn.log"), key=lambda r: ZEEK_UID_SEQUENCE.index(r["uid"]))
    ours = connections(read_capture(HERE / trace, dedup_window_ns=0)).sort("first_ts_ns", "conn_id")
    if trace in CAPTURE_FILTER:
        ours = ours.filter(CAPTURE_FILTER[trace])
    ours = ours.to_dicts()
    if "id.orig_h" not in zeek[0]:  # uid/history only: the n-th connection Zeek created is our n-th
        assert len(ours) == len(zeek) or not strict, f"{trace}: {len(ours)} connections, Zeek logs {len(zeek)}"
        return list(zip(zeek, ours + [{}] * (len(zeek) - len(ours)), strict=False))
    pairs = []
    used: set[int] = set()
    for z in zeek:
        key = (z["proto"], z["id.orig_h"], int(z["id.orig_p"]), z["id.resp_h"], int(z["id.resp_p"]))
        cand = [i for i, o in enumerate(ours) if i not in used
                and (o["transport"], o["client_ip"], o["client_port"], o["server_ip"], o["server_port"]) == key]
        assert cand or not strict, f"{trace} {z['uid']}: no netdiag connection {key}"
        if cand:
            used.add(cand[0])
        pairs.append((z, ours[cand[0]] if cand else {}))
    assert len(used) == len(ours) or not strict, f"{trace}: netdiag has connections Zeek does not log: " \
        f"{[ours[i]['client_port'] for i in range(len(ours)) if i not in used]}"
    return pairs


def differences(trace: str) -> list[str]:
    out = []
    for z, o in matched(trace):
        dev = DEVIATIONS.get((trace, z["uid"]), {})
        for zf, col in FIELDS.items():
            if zf not in z:
                continue
            want = z[zf] if zf in ("conn_state", "history") else int(z[zf])
            got = o[col]
            if zf in dev:
                assert (want, got) == dev[zf][:2], f"{trace} {z['uid']} {zf}: documented deviation changed"
                continue
            if want != got:
                out.append(f"{trace} {z['uid']} {zf}: Zeek {want!r}, netdiag {got!r}")
    return out


@pytest.mark.parametrize("trace", TRACES)
def test_connections_agree_with_zeek_conn_log(trace: str) -> None:
    diffs = differences(trace)
    assert not diffs, "\n".join(diffs)


def agreement() -> dict[str, tuple[int, int]]:
    """Per field: (connections agreeing, connections Zeek logs the field for) over all traces."""
    tally = {f: [0, 0] for f in FIELDS}
    for trace in TRACES:
        for z, o in matched(trace, strict=False):
            for zf, col in FIELDS.items():
                if zf in z:
                    want = z[zf] if zf in ("conn_state", "history") else int(z[zf])
                    tally[zf][1] += 1
                    tally[zf][0] += want == o.get(col)
    return {f: (a, b) for f, (a, b) in tally.items()}


if __name__ == "__main__":  # print the agreement figures quoted in the report
    for field, (agree, total) in agreement().items():
        print(f"{field:14s} {agree}/{total} = {100 * agree / total:.0f} %")


def test_resent_payload_and_zero_windows_are_logged_again_at_the_10th(tmp_path: Path) -> None:
    """Session::ScaledHistoryEntry: T, W (and G, C) are written at the 1st, 10th, 100th ... occurrence.

    Hand-built: 12 resends of the client's first 10 bytes give T twice; 10 zero-window ACKs from the
    server give w twice. The expected string follows Zeek's rules letter by letter (no trace of Zeek
    itself has so many repeats).
    """
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    c, s = dict(src="192.0.2.10", dst="192.0.2.20"), dict(src="192.0.2.20", dst="192.0.2.10")
    cp, sp = dict(sport=40000, dport=2809), dict(sport=2809, dport=40000)
    pkts = [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(**c) / TCP(**cp, flags="S", seq=100),
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(**s) / TCP(**sp, flags="SA", seq=500, ack=101),
            Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(**c) / TCP(**cp, flags="A", seq=101, ack=501)]
    pkts += [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(**c) / TCP(**cp, flags="PA", seq=101, ack=501) / Raw(b"0123456789") for _ in range(13)]
    pkts += [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(**s) / TCP(**sp, flags="A", seq=501, ack=111, window=0) for _ in range(10)]
    pkts += [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(**s) / TCP(**sp, flags="A", seq=501, ack=111, window=8192),
             Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(**c) / TCP(**cp, flags="FA", seq=111, ack=501),
             Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(**s) / TCP(**sp, flags="FA", seq=501, ack=112),
             Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(**c) / TCP(**cp, flags="A", seq=112, ack=502)]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.01
    path = tmp_path / "repeats.pcap"
    wrpcap(str(path), pkts)
    row = connections(read_capture(path, dedup_window_ns=0)).row(0, named=True)
    # S h A D, T at the 1st and 10th resend (the 13 sends are 1 original + 12 resends), the server's
    # zero-window ACKs: its first pure ACK is a, its zero windows w at the 1st and 10th; F f
    assert (row["state"], row["history"]) == ("SF", "ShADTTawwFf")


def test_originator_reset_without_answer_is_rstos0_only_after_a_syn(tmp_path: Path) -> None:
    """conn_state(): originator RESET, responder inactive -> RSTOS0 if history matches /^?S[^HAFGIQ]*R.*/, else OTH."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    mac = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    c = dict(src="192.0.2.10", dst="192.0.2.20")
    pkts = [Ether(**mac) / IP(**c) / TCP(sport=40001, dport=2809, flags="S", seq=100),       # SYN then RST
            Ether(**mac) / IP(**c) / TCP(sport=40001, dport=2809, flags="R", seq=101),
            Ether(**mac) / IP(**c) / TCP(sport=40002, dport=2809, flags="PA", seq=7, ack=9) / Raw(b"x"),  # mid-stream
            Ether(**mac) / IP(**c) / TCP(sport=40002, dport=2809, flags="R", seq=8)]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.01
    path = tmp_path / "rstos0.pcap"
    wrpcap(str(path), pkts)
    rows = connections(read_capture(path, dedup_window_ns=0)).select("client_port", "state", "history").rows()
    assert rows == [(40001, "RSTOS0", "SR"), (40002, "OTH", "DR")]
