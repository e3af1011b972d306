"""`netdiag connections` as a user runs it: the installed console script, real files, exit codes.

Counts are checked against tshark (`-z conv,tcp`) on the same file where one is given; the
table's full contents are checked in tests/test_tcp_oracle.py and tests/test_tcp_crafted.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
TCP = ROOT / "captures" / "tcp"
BAD = ROOT / "captures" / "crafted" / "bad"


def run(*args: str) -> subprocess.CompletedProcess:
    # the console script of the interpreter running the tests (a venv's, not whatever is on PATH)
    exe = Path(sys.executable).with_name("netdiag")
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "netdiag.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_json_lists_every_tcp_conversation_tshark_sees() -> None:
    r = run("connections", str(TCP / "flow_control.pcap"), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["server_port"], x["state"]) for x in rows] == [(9100, "SF"), (9101, "SF"), (9, "REJ"), (9, "REJ")]
    if shutil.which("tshark"):
        conv = subprocess.run(["tshark", "-r", str(TCP / "flow_control.pcap"), "-q", "-z", "conv,tcp"],
                              capture_output=True, text=True, timeout=60).stdout
        assert sum("<->" in line for line in conv.splitlines()) == len(rows)
    assert "4 connections" in r.stderr and "0 SPAN duplicates removed" in r.stderr


def test_readable_table_names_client_and_server() -> None:
    r = run("connections", str(TCP / "crafted_resets.pcap"))
    assert r.returncode == 0, r.stderr
    assert "REJ" in r.stdout and "RSTO" in r.stdout and "RSTR" in r.stdout
    assert "9443" in r.stdout and "192.0.2" in r.stdout


def test_csv_and_parquet_carry_the_same_rows(tmp_path: Path) -> None:
    out = tmp_path / "c.parquet"
    r = run("connections", str(TCP / "loss_client_side.pcap"), "--parquet", str(out))
    assert r.returncode == 0, r.stderr
    pq = pl.read_parquet(out)
    r = run("connections", str(TCP / "loss_client_side.pcap"), "--csv")
    assert r.returncode == 0, r.stderr
    csv = pl.read_csv(r.stdout.encode())
    assert csv.height == pq.height == 2
    assert csv["syn_retransmissions"].to_list() == pq["syn_retransmissions"].to_list() == [1, 0]


def test_server_port_option_changes_who_is_client() -> None:
    r = run("connections", str(TCP / "crafted_mid_stream.pcap"), "--json", "--server-port", "51000")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["server_port"] == 51000


def test_span_duplicates_are_counted_on_stderr() -> None:
    r = run("connections", str(TCP / "crafted_span_duplicates.pcap"), "--json")
    assert r.returncode == 0
    assert "2 SPAN duplicates removed" in r.stderr
    assert json.loads(r.stdout)[0]["retransmitted_segments"] == 1


@pytest.mark.parametrize("name", ["empty.pcap", "not_a_capture.pcap"])
def test_nothing_readable_exits_2_with_one_line(name: str) -> None:
    path = BAD / name
    if not path.exists():
        pytest.skip(f"{name} not present")
    r = run("connections", str(path))
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in r.stderr


def test_truncated_file_warns_and_still_answers() -> None:
    path = BAD / "truncated_last_record.pcap"
    if not path.exists():
        pytest.skip("truncated_last_record.pcap not present")
    r = run("connections", str(path), "--json")
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "truncated_last_record.pcap" in r.stderr
    assert isinstance(json.loads(r.stdout), list)


def test_missing_file_is_a_usage_error() -> None:
    r = run("connections", str(TCP / "no_such.pcap"))
    assert r.returncode == 2 and "no such file" in r.stderr
