"""The IP ID rule for loss before the capture point on crafted packets (docs/logons.md section 2.1).

A Linux client numbers its socket's packets one by one. A packet larger than the MSS, as a
capture on the sending host sees it before the NIC cuts it (TSO), uses one ID per MSS-sized
packet on the wire, so the next ID jumping by that many proves nothing was lost; one more
missing ID, with no new data from the server for it to acknowledge, is a packet of that socket
lost before the capture point.
"""

from __future__ import annotations

import pytest

scapy = pytest.importorskip("scapy.all")

C, S = "10.0.0.2", "10.0.0.1"


def _capture(path, next_id: int) -> None:
    E, IP, TCP, Raw = scapy.Ether, scapy.IP, scapy.TCP, scapy.Raw
    t = 1_700_000_000.0
    pk = []

    def add(dt, p):
        nonlocal t
        t += dt
        p.time = t
        pk.append(p)

    add(0, E() / IP(src=C, dst=S, id=100) / TCP(sport=50000, dport=9100, flags="S", seq=1000,
                                                 options=[("MSS", 1460)]))
    add(0.0002, E() / IP(src=S, dst=C, id=7) / TCP(sport=9100, dport=50000, flags="SA", seq=5000, ack=1001,
                                                    options=[("MSS", 1460)]))
    add(0.0002, E() / IP(src=C, dst=S, id=101) / TCP(sport=50000, dport=9100, flags="A", seq=1001, ack=5001))
    add(0.001, E() / IP(src=C, dst=S, id=102) / TCP(sport=50000, dport=9100, flags="PA", seq=1001, ack=5001)
        / Raw(b"x" * 4000))                                     # a TSO packet: IDs 102, 103, 104 on the wire
    add(0.0003, E() / IP(src=S, dst=C, id=8) / TCP(sport=9100, dport=50000, flags="A", seq=5001, ack=5001))
    add(0.25, E() / IP(src=C, dst=S, id=next_id) / TCP(sport=50000, dport=9100, flags="PA", seq=5001, ack=5001)
        / Raw(b"y" * 100))
    add(0.0003, E() / IP(src=S, dst=C, id=9) / TCP(sport=9100, dport=50000, flags="A", seq=5001, ack=5101))
    scapy.wrpcap(str(path), pk)


@pytest.mark.parametrize("next_id,kind", [(105, None), (106, "before_capture")])
def test_ip_id_gap_beyond_a_tso_packet_is_loss_before_the_capture_point(tmp_path, next_id, kind):
    from netdiag.logons.resends import resend_waits
    from netdiag.pipeline import Stage, run

    pcap = tmp_path / "c.pcap"
    _capture(pcap, next_id)
    streams = run(pcap, stage=Stage.TRANSACTIONS, segments=True)
    segs = streams.segments
    w = resend_waits(segs, streams.connections)
    if kind is None:
        assert w.height == 0, w
    else:
        (row,) = w.to_dicts()
        assert row["kind"] == kind and row["direction"] == 0
        # the resend timer: Linux minimum RTO 200 ms + SRTT (~0.5 ms) + up to 10 ms late, within the 250 ms wait
        assert 0.200 <= (row["ts_ns"] - row["t0"]) / 1e9 <= 0.212
