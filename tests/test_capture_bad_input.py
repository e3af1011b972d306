"""Bad input: one clear warning naming the file and frame or byte offset, everything before it kept.

Files are in captures/crafted/bad/ (made by make_crafted.py, which records in expected.json how
many frames are intact and where the damage starts). Where tshark can read the intact part,
our rows are compared with its rows. Nothing here may raise anything but CaptureError, and
that only when nothing at all could be read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from capture_oracle import TSHARK, compare, our_rows, tshark_packets

from netdiag.capture import read_capture
from netdiag.errors import CaptureError

CRAFTED = Path(__file__).resolve().parent.parent / "captures" / "crafted"
BAD = CRAFTED / "bad"
EXPECTED = json.loads((CRAFTED / "expected.json").read_text())
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")


def _one_warning(cap, name: str) -> str:
    assert len(cap.stats.warnings) == 1, [str(w) for w in cap.stats.warnings]
    w = cap.stats.warnings[0]
    assert w.path is not None and w.path.endswith(name)
    assert w.frame is not None or w.offset is not None
    return str(w)


@needs_tshark
@pytest.mark.parametrize("name, phrase", [
    ("truncated_last_record.pcap", "truncated last record"),
    ("truncated_record_header.pcap", "truncated last record header"),
    ("record_too_big.pcap", "record claims"),
    ("corrupt_block_length.pcapng", "corrupt pcapng block"),
    ("truncated_gzip.pcap.gz", "gzip stream is cut short"),
])
def test_damaged_file_warns_once_and_keeps_every_frame_before_the_damage(name: str, phrase: str) -> None:
    cap = read_capture(BAD / name)
    text = _one_warning(cap, name)
    assert phrase in text
    exp = EXPECTED[f"bad/{name}"]
    if exp.get("frames_ok") is not None:
        assert len(cap.packets) == exp["frames_ok"]
        assert cap.stats.warnings[0].frame == exp["frames_ok"] + 1
    if "offset" in exp:
        assert cap.stats.warnings[0].offset == exp["offset"]
    theirs = tshark_packets(str(BAD / name))  # tshark also reads up to the damage, then complains
    assert len(cap.packets) == len(theirs)
    assert compare(our_rows(cap), theirs) == []


@needs_tshark
def test_record_longer_than_snaplen_is_read_with_a_warning() -> None:
    cap = read_capture(BAD / "record_over_snaplen.pcap")
    assert "longer than the file's snaplen 60" in _one_warning(cap, "record_over_snaplen.pcap")
    assert compare(our_rows(cap), tshark_packets(str(BAD / "record_over_snaplen.pcap"))) == []


def test_unknown_link_type_frames_are_counted_and_warned_once_per_interface() -> None:
    cap = read_capture(BAD / "unknown_link_type.pcapng")
    text = _one_warning(cap, "unknown_link_type.pcapng")
    assert "interface 1" in text and "link type 147" in text and "3 frames" in text
    assert cap.stats.packets_read == 7 and len(cap.packets) == 7
    assert cap.stats.non_ip_frames == 3
    unknown = cap.packets.filter(cap.packets["interface_id"] == 1)
    assert unknown["ip_version"].to_list() == [0, 0, 0]
    known = cap.packets.filter(cap.packets["interface_id"] == 0)
    assert known["ip_version"].to_list() == [4, 4, 4, 4]


@pytest.mark.parametrize("name, phrase", [("empty.pcap", "empty file"),
                                          ("not_a_capture.pcap", "not a capture file")])
def test_unreadable_file_raises_capture_error_naming_it(name: str, phrase: str) -> None:
    with pytest.raises(CaptureError) as err:
        read_capture(BAD / name)
    assert name in str(err.value) and phrase in str(err.value)


def test_header_only_capture_is_empty_not_an_error() -> None:
    cap = read_capture(BAD / "header_only.pcap")
    assert len(cap.packets) == 0 and cap.stats.warnings == []


def test_missing_file_is_a_capture_error() -> None:
    with pytest.raises(CaptureError) as err:
        read_capture(BAD / "does_not_exist.pcap")
    assert "does_not_exist.pcap" in str(err.value)


@pytest.mark.parametrize("name, code", [("not_a_capture.pcap", 2), ("empty.pcap", 2),
                                        ("truncated_last_record.pcap", 0)])
def test_cli_exit_code_and_one_line_without_traceback(name: str, code: int) -> None:
    out = subprocess.run([sys.executable, "-m", "netdiag.cli", "packets", str(BAD / name), "--summary"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr
    assert name in out.stderr


def test_cli_packets_json_lists_every_frame_with_text_addresses() -> None:
    import json

    out = subprocess.run([sys.executable, "-m", "netdiag.cli", "packets", str(CRAFTED / "raw101.pcap"), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["frame"] for r in rows] == list(range(1, 16))
    assert rows[0]["src_ip"] == "10.0.0.1" and rows[7]["src_ip"] == "2001:db8::1"
    assert "15 frames read" in out.stderr
