"""netdiag logons on loss_c2s_client (captures/lab): the injected client->server loss is the dominant cause.

The truth to test against: the dominant cause of each affected logon is the injected one and
its seconds agree with the injection. The injection is the bridge's drop log in the truth file; the
resend wait is what tshark measures on the same file (tcp.analysis.rto: time from the original to
its resend, for each resent frame). Neither comes from netdiag. The capture is at the client, so
both the dropped original and its resend are visible (unlike loss_c2s, captured at the server).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

LAB = Path(__file__).resolve().parents[1] / "captures" / "lab"
PCAP, TRUTH = LAB / "loss_c2s_client.pcap", LAB / "loss_c2s_client.truth.json"
pytestmark = [pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
              pytest.mark.skipif(not PCAP.exists(), reason="lab capture loss_c2s_client not generated")]


@functools.cache
def analysis():
    from netdiag.logons import analyze_logons

    return analyze_logons(PCAP)


def tshark_resend_waits_s() -> list[tuple[int, float]]:
    """(frame number, tcp.analysis.rto) of every frame tshark flags as a retransmission."""
    out = subprocess.run(["tshark", "-n", "-r", str(PCAP), "-Y", "tcp.analysis.retransmission", "-T", "fields",
                          "-e", "frame.number", "-e", "tcp.analysis.rto"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [(int(n), float(r)) for n, r in (line.split("\t") for line in out.splitlines())]


def test_the_logon_with_client_to_server_loss_has_loss_recovery_as_dominant_cause_with_tshark_resend_wait():
    drops = json.loads(TRUTH.read_text())["impairment_log"]["frames_dropped"]
    waits = tshark_resend_waits_s()
    assert len(waits) == len(drops) >= 2          # every drop resent once (truth test proves they match)
    expected = sum(w for _, w in waits)
    rows = analysis().logons.to_dicts()
    assert len(rows) == 1
    row = rows[0]
    assert row["dominant_cause"] == "loss_recovery", row
    assert abs(row["loss_recovery_s"] - expected) <= 0.10 * expected, (row["loss_recovery_s"], expected)
    assert row["retransmissions"] == len(drops)


def test_loss_recovery_is_the_finding_with_the_most_seconds_and_points_at_the_resent_frames():
    f = analysis().findings.sort("seconds_lost", descending=True)
    top = f.row(0, named=True)
    assert top["cause"] == "loss_recovery", f.select("cause", "seconds_lost").to_dicts()
    expected = sum(w for _, w in tshark_resend_waits_s())
    assert abs(top["seconds_lost"] - expected) <= 0.10 * expected
    loss = f.filter(pl.col("cause") == "loss_recovery").row(0, named=True)
    assert {n for n, _ in tshark_resend_waits_s()} <= set(loss["evidence_frames"])
