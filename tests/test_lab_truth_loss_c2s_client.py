"""loss_c2s_client (captures/lab): client->server loss captured at the client, checked with tshark only.

The truth file's impairment log is the bridge's own record of the frames it dropped (time, MD5,
sequence number, length); the kernel counters are the client host's own count of resent segments.
tshark is the independent reader of the file. Nothing here runs netdiag. Proves that, unlike
loss_c2s (captured at the server), both each dropped original and its resend are in this file and
that tshark flags as retransmissions exactly the resends of the dropped frames (RFC 6298 / RFC 8985
timers; Wireshark's tcp.analysis.retransmission).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[1] / "captures" / "lab"
NAME = "loss_c2s_client"
pytestmark = [pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
              pytest.mark.skipif(not (LAB / f"{NAME}.pcap").exists(), reason=f"lab capture {NAME} not generated")]


@functools.cache
def truth() -> dict:
    return json.loads((LAB / f"{NAME}.truth.json").read_text())


def tshark_rows(display_filter: str, fields: list[str]) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(LAB / f"{NAME}.pcap"), "-o", "frame.generate_md5_hash:TRUE",
           "-Y", display_filter, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


FIELDS = ["frame.number", "frame.time_epoch", "frame.md5_hash", "tcp.srcport", "tcp.seq_raw", "tcp.len"]


def test_the_bridge_dropped_client_data_frames_including_the_authenticate_request():
    drops = truth()["impairment_log"]["frames_dropped"]
    assert truth()["capture_point"]["where"] == "client"
    assert len(drops) >= 2 and all(d["dir"] == "c2s" and d["payload_len"] > 0 for d in drops)
    assert any(d["reason"].startswith("rule 0") for d in drops)   # rule 0: first frame containing authenticate


def test_each_dropped_original_is_in_the_client_capture_and_its_resend_follows():
    rows = tshark_rows("tcp.len > 0", FIELDS)
    by_md5 = {r[2]: r for r in rows}
    for d in truth()["impairment_log"]["frames_dropped"]:
        orig = by_md5.get(d["md5"])
        assert orig is not None, f"dropped frame {d['summary']} not in the client capture"
        # the client capture sees the frame before the bridge: within a few ms of the bridge's receive time
        assert abs(float(orig[1]) * 1e9 - d["ts_in_ns"]) < 5e6
        copies = [r for r in rows if r[3] == d["src"].rsplit(":", 1)[1] and r[4] == str(d["seq"])
                  and r[5] == str(d["payload_len"])]
        assert len(copies) == 2, (d["summary"], copies)
        assert float(copies[1][1]) - float(copies[0][1]) > 0.005   # a timer, not a reorder


def test_tshark_flags_as_retransmissions_exactly_the_resends_of_the_dropped_frames():
    flagged = tshark_rows("tcp.analysis.retransmission or tcp.analysis.fast_retransmission "
                          "or tcp.analysis.out_of_order", FIELDS)
    drops = truth()["impairment_log"]["frames_dropped"]
    want = sorted((d["src"].rsplit(":", 1)[1], str(d["seq"]), str(d["payload_len"])) for d in drops)
    got = sorted((r[3], r[4], r[5]) for r in flagged)
    assert got == want
    # and the client's kernel resent exactly that many segments (nstat, independent of the capture)
    assert truth()["kernel_tcp_counters"]["client"]["TcpRetransSegs"] == len(drops)
    assert truth()["kernel_tcp_counters"]["server"]["TcpRetransSegs"] == 0
