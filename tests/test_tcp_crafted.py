"""Crafted TCP edge cases (captures/tcp/crafted_*.pcap, made by make_crafted.py with scapy).

The expected values come from how each file was built (timestamps and flags written by hand in
make_crafted.py), not from netdiag; tests/test_tcp_oracle.py checks the same files against
tshark. Each test names the behaviour it proves.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from netdiag.capture import iter_chunks, read_capture
from netdiag.tcp import TcpAnalyzer, analyze, connections

HERE = Path(__file__).resolve().parents[1] / "captures" / "tcp"


def conn(name: str) -> dict:
    rows = connections(HERE / name).to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_two_lost_syns_add_three_seconds_to_connect() -> None:
    c = conn("crafted_syn_retries.pcap")
    assert c["syn_retransmissions"] == 2
    assert c["connect_s"] == pytest.approx(3.021, abs=1e-9)        # first SYN 0 s -> final ACK 3.021 s
    assert c["rtt_server_side_ms"] == pytest.approx(20.0, abs=1e-6)  # last SYN 3.000 -> SYN/ACK 3.020
    assert c["rtt_client_side_ms"] == pytest.approx(1.0, abs=1e-6)   # SYN/ACK -> ACK 3.021
    assert c["retransmission_stall_s"] == pytest.approx(3.0, abs=1e-6)
    assert (c["mss_client"], c["wscale_client"], c["mss_server"], c["wscale_server"]) == (1460, 7, 1460, 7)
    assert c["sack_permitted"] is True
    # Zeek writes no letter for a SYN resent at the same sequence number (its T is for resent payload)
    assert (c["state"], c["history"]) == ("SF", "ShADadFf")
    seg = analyze(HERE / "crafted_syn_retries.pcap").segments
    assert seg.filter(pl.col("retransmission"))["frame"].to_list() == [2, 3]
    assert seg.filter(pl.col("frame") == 3)["rto_s"][0] == pytest.approx(3.0)  # repeats frame 1
    assert seg.filter(pl.col("frame") == 3)["rto_frame"][0] == 1


def test_zero_window_probes_and_window_full_are_judged_and_timed() -> None:
    res = analyze(HERE / "crafted_zero_window.pcap")
    s = res.segments
    flagged = {name: s.filter(pl.col(name))["frame"].to_list() for name in
               ("window_full", "zero_window", "zero_window_probe", "zero_window_probe_ack", "window_update")}
    assert flagged == {"window_full": [6], "zero_window": [7, 9, 11], "zero_window_probe": [8, 10],
                       "zero_window_probe_ack": [9, 11], "window_update": [4, 12]}
    # the server's window 16 is scaled by its SYN/ACK's shift 7 (both SYNs carried the option)
    assert s.filter(pl.col("frame") == 4)["window_bytes"][0] == 16 * 128
    c = res.connections.to_dicts()[0]
    assert c["zero_window_events"] == 3
    assert c["zero_window_s"] == pytest.approx(2.000 - 0.030, abs=1e-9)  # zero at 0.030, reopened at 2.000
    assert c["window_full_events"] == 1
    # Zeek's T: the second probe resends the first one's byte (payload that does not advance last_seq)
    assert c["history"] == "ShAaDwTFf"


def test_resets_give_zeek_states_rej_rsto_rstr() -> None:
    t = connections(HERE / "crafted_resets.pcap")
    assert t.select("client_port", "server_port", "state", "history").rows() == [
        (40003, 9443, "REJ", "Sr"), (40004, 9080, "RSTO", "ShADaR"), (40005, 9080, "RSTR", "ShADr")]
    rej = t.row(0, named=True)
    assert rej["connect_s"] is None and rej["rtt_server_side_ms"] is None


def test_mid_stream_connection_takes_client_from_ephemeral_port() -> None:
    c = conn("crafted_mid_stream.pcap")
    assert (c["client_ip"], c["client_port"], c["server_ip"], c["server_port"]) == (
        "192.0.2.10", 51000, "198.51.100.20", 2809)
    assert c["syn_ts_ns"] is None and c["connect_s"] is None
    # Zeek: both endpoints go PARTIAL -> CLOSED on their FINs, which conn_state() calls SF; ^ because
    # the first packet came from the server
    assert (c["state"], c["history"]) == ("SF", "^dADFf")
    assert (c["bytes_c2s"], c["bytes_s2c"]) == (200, 500 + 1448 + 1448)
    seg = analyze(HERE / "crafted_mid_stream.pcap").segments
    # relative numbers start at 1 without a SYN, as in Wireshark
    assert seg.select("frame", "direction", "seq_rel", "ack_rel").head(2).rows() == [(1, 1, 1, 1), (2, 0, 1, 501)]


def test_server_ports_option_decides_client_of_mid_stream_connection() -> None:
    # without a SYN, a port the user names as a server wins over the ephemeral-port rule
    t = connections(HERE / "crafted_mid_stream.pcap", server_ports={51000})
    assert (t["client_port"][0], t["server_port"][0]) == (2809, 51000)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_span_duplicates_are_not_counted_as_retransmissions() -> None:
    path = HERE / "crafted_span_duplicates.pcap"
    cap = read_capture(path)
    assert cap.stats.duplicates_removed == 2
    res = analyze(cap)
    assert res.segments.filter(pl.col("retransmission"))["frame"].to_list() == [6]  # the real resend
    assert res.connections["retransmitted_segments"][0] == 1
    # deliberate difference: tshark on the raw file calls the SPAN copies retransmissions too
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "tcp.analysis.retransmission", "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, timeout=60).stdout.split()
    assert out == ["5", "6", "9"]


def test_state_carries_across_chunks() -> None:
    # one packet per chunk must give the same tables as one chunk for the whole file
    path = HERE / "loss_client_side.pcap"
    whole = analyze(path)
    a = TcpAnalyzer()
    parts = [a.feed(ch).drop("payload_offset", "payload_captured") for ch in iter_chunks(path, chunk_packets=7)]
    assert pl.concat(parts).equals(whole.segments)
    assert a.finish().equals(whole.connections)


def test_feed_returns_payload_location_for_reassembly() -> None:
    a = TcpAnalyzer()
    for ch in iter_chunks(HERE / "crafted_syn_retries.pcap"):
        seg = a.feed(ch)
        assert seg.columns[-2:] == ["payload_offset", "payload_captured"]
        row = seg.filter(pl.col("frame") == 6).row(0, named=True)
        assert bytes(ch.payload[row["payload_offset"]: row["payload_offset"] + row["payload_captured"]]) == b"G" * 300


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_udp_packets_get_conn_ids_matching_tshark_udp_streams() -> None:
    path = Path(__file__).resolve().parents[1] / "captures" / "proto" / "dns.pcap"
    if not path.exists():
        pytest.skip("captures/proto/dns.pcap not present")
    a = TcpAnalyzer()
    rows = []
    for ch in iter_chunks(path):
        a.feed(ch)
        rows.append(a.last_udp)
    udp = pl.concat(rows)
    conns = a.finish().filter(pl.col("transport") == "udp")
    # queries go to the DNS server's port: client to server
    assert (udp.filter(pl.col("dst_port") == 53)["direction"] == 0).all()
    assert (udp.filter(pl.col("src_port") == 53)["direction"] == 1).all()
    assert set(udp["conn_id"].unique().to_list()) == set(conns["conn_id"].to_list())
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "udp", "-T", "fields", "-e", "frame.number",
                          "-e", "udp.stream"], capture_output=True, text=True, timeout=60).stdout.split()
    theirs = pl.DataFrame({"frame": [int(x) for x in out[0::2]], "stream": [int(x) for x in out[1::2]]})
    pairs = udp.join(theirs, on="frame").select("conn_id", "stream").unique()
    assert pairs.height == pairs["conn_id"].n_unique() == pairs["stream"].n_unique() == conns.height


def test_sequence_numbers_wrapping_past_2_32_keep_relative_order() -> None:
    res = analyze(HERE / "crafted_seq_wrap.pcap")
    s = res.segments
    # client ISN 2^32 - 700: its 2nd segment (relative 501..1000) crosses the wrap, as does the server's data
    assert s.filter(pl.col("direction") == 0)["seq_rel"].to_list() == [0, 1, 1, 501, 501, 1001, 1001, 1002]
    assert s.filter(pl.col("retransmission"))["frame"].to_list() == [7]
    r = s.filter(pl.col("frame") == 7).row(0, named=True)
    assert (r["rto_frame"], r["rto_s"]) == (5, pytest.approx(0.237, abs=1e-9))
    assert s.filter(pl.col("frame") == 10)["ack_rel"][0] == 1201
    c = res.connections.row(0, named=True)
    assert (c["bytes_c2s"], c["bytes_s2c"], c["retransmitted_bytes"], c["unseen_bytes"]) == (1500, 1200, 500, 0)
    assert c["lost_segments"] == 0 and c["state"] == "SF"


def test_api_connections_stays_a_function_after_analysis() -> None:
    import netdiag.tcp

    netdiag.tcp.analyze(HERE / "crafted_resets.pcap")  # loads netdiag.tcp.connections, the module
    assert callable(netdiag.tcp.connections)
    assert netdiag.tcp.connections(read_capture(HERE / "crafted_resets.pcap")).height == 3
    # a list of paths, and an iterable of chunks, are sources too
    assert netdiag.tcp.analyze([HERE / "crafted_resets.pcap", HERE / "crafted_mid_stream.pcap"]).connections.height == 4
    assert netdiag.tcp.segments(iter_chunks(HERE / "crafted_resets.pcap")).height == 13
