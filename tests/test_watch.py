"""`netdiag watch`: a ring-buffer directory followed file by file ends with the tables of one `analyze`.

Ground truth is `netdiag analyze` over the whole directory (itself checked against tshark and the
lab's truth elsewhere): a watcher that reads the files a few at a time, restarting in between,
must end with the same connections, transactions, logons and findings, frame numbers included.
The ring buffers are made by editcap (Wireshark's own splitter, dumpcap's file names) from real
lab captures, with logons that span file boundaries.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from netdiag.analyze import analyze
from netdiag.errors import UsageError
from netdiag.pipeline import Pipeline, Stage
from netdiag.watch import STATE_FILE, Watcher, dump_state, load_state

ROOT = Path(__file__).resolve().parents[1]
LAB = ROOT / "captures" / "lab"
TABLES = ("connections", "transactions", "logons", "findings")
EDITCAP = shutil.which("editcap")
pytestmark = pytest.mark.skipif(EDITCAP is None, reason="editcap (Wireshark's splitter, apt wireshark-common) missing")


def _ring(capture: Path, packets_per_file: int, into: Path, fmt: str = "pcapng") -> list[Path]:
    """The capture split by editcap into dumpcap-named files (epj_00000_<time>.pcap ..., pcapng as dumpcap
    writes them)."""
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run([EDITCAP, "-F", fmt, "-c", str(packets_per_file), str(capture), str(into / "epj.pcap")],
                   check=True, capture_output=True, timeout=120)
    files = sorted(into.iterdir())
    assert len(files) >= 3, files
    return files


def _age(files: list[Path], seconds: float = 120.0) -> None:
    """Make the files look written a while ago (a finished ring file), so --interval does not hold them."""
    t = time.time() - seconds
    for f in files:
        os.utime(f, (t, t))


def _frames(path: Path) -> int:
    """Wireshark's frame count of a capture (capinfos)."""
    out = subprocess.run(["capinfos", "-c", "-M", "-T", "-r", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, **kw)


def _same_tables(analyzed: Path, watched: Path) -> None:
    for t in TABLES:
        a = pl.read_parquet(analyzed / "tables" / f"{t}.parquet")
        w = pl.read_parquet(watched / "tables" / f"{t}.parquet")
        assert_frame_equal(a, w, check_exact=True)


@pytest.mark.parametrize(("capture", "per_file", "step"), [
    ("storm.pcap", 150, 2),                   # 20 logons, each spans several files
    ("repeated_logons.pcap", 60, 3),          # repeated logons in one client process
    ("loss_s2c.pcap", 40, 1),                 # retransmissions across file boundaries
    ("https_jars.pcap", 80, 2),               # TLS and HTTP streams cut by the ring
])
def test_once_after_every_few_files_equals_analyze(tmp_path: Path, capture: str, per_file: int, step: int) -> None:
    ring = _ring(LAB / capture, per_file, tmp_path / "ring")
    _age(ring)
    analyze([tmp_path / "ring"], out=tmp_path / "analyzed")
    watched, out = tmp_path / "watched", tmp_path / "out"
    watched.mkdir()
    for i in range(0, len(ring), step):
        for f in ring[i:i + step]:
            shutil.copy2(f, watched / f.name)
        r = _cli("watch", str(watched), "--out", str(out), "--once", "--interval", "60")
        assert r.returncode == 0, r.stderr
        assert "read " in r.stdout and "Traceback" not in r.stderr
    _same_tables(tmp_path / "analyzed", out)
    record = json.loads((out / "watch" / "files.json").read_text())
    assert [x["name"] for x in record] == [f.name for f in ring]     # each file once, in order
    assert sum(x["packets"] for x in record) == _frames(LAB / capture)      # every record read once
    assert [x["first_frame"] for x in record][0] == 1
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    marker = json.loads((out / ".netdiag-report").read_text())
    assert marker["command"] == "netdiag watch"


def test_frames_continue_across_files_like_wireshark(tmp_path: Path) -> None:
    """The first frame of every file is the frame number Wireshark gives it after `mergecap -a`."""
    ring = _ring(LAB / "storm.pcap", 150, tmp_path / "ring")
    _age(ring)
    Watcher(tmp_path / "ring", tmp_path / "out", interval=60).poll()
    files = json.loads((tmp_path / "out" / "watch" / "files.json").read_text())
    counts = [_frames(f) for f in ring]
    expected = [1 + sum(counts[:i]) for i in range(len(counts))]
    assert [x["first_frame"] for x in files] == expected
    assert [x["packets"] for x in files] == counts


def test_killed_before_the_swap_reads_those_files_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh that fails leaves the previous report and state: no file is lost or read twice."""
    from netdiag import output

    ring = _ring(LAB / "storm.pcap", 150, tmp_path / "ring")
    _age(ring)
    analyze([tmp_path / "ring"], out=tmp_path / "analyzed")
    watched, out = tmp_path / "watched", tmp_path / "out"
    watched.mkdir()
    for f in ring[:3]:
        shutil.copy2(f, watched / f.name)
    Watcher(watched, out, interval=60).poll()
    before = (out / STATE_FILE).read_bytes()
    for f in ring[3:6]:
        shutil.copy2(f, watched / f.name)

    def boom(self: object, record: dict) -> list[Path]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output.StagedDir, "commit", boom)
    with pytest.raises(OSError):
        Watcher(watched, out, interval=60).poll()
    monkeypatch.undo()
    assert (out / STATE_FILE).read_bytes() == before          # the old state, untouched
    assert not [p for p in tmp_path.iterdir() if ".staging" in p.name or p.name.startswith(".out")]
    for f in ring[6:]:
        shutil.copy2(f, watched / f.name)
    r = Watcher(watched, out, interval=60).poll()
    assert r.files == [f.name for f in ring[3:]]
    _same_tables(tmp_path / "analyzed", out)


def test_growing_file_waits_and_is_not_an_error(tmp_path: Path) -> None:
    ring = _ring(LAB / "storm.pcap", 150, tmp_path / "ring")
    watched = tmp_path / "watched"
    watched.mkdir()
    for f in ring[:3]:
        shutil.copy2(f, watched / f.name)
    _age(list(watched.iterdir()))
    newest = watched / ring[2].name
    os.utime(newest, None)             # just written: still growing for --interval 60
    r = _cli("watch", str(watched), "--out", str(tmp_path / "out"), "--once", "--interval", "60")
    assert r.returncode == 0, r.stderr
    files = json.loads((tmp_path / "out" / "watch" / "files.json").read_text())
    assert [x["name"] for x in files] == [ring[0].name, ring[1].name]
    assert r.stderr == ""
    shutil.copy2(ring[3], watched / ring[3].name)    # the next file exists: the former newest is complete
    _age([watched / ring[3].name])
    r = _cli("watch", str(watched), "--out", str(tmp_path / "out"), "--once", "--interval", "60")
    files = json.loads((tmp_path / "out" / "watch" / "files.json").read_text())
    assert [x["name"] for x in files] == [f.name for f in ring[:4]]
    r = _cli("watch", str(watched), "--out", str(tmp_path / "out"), "--once", "--interval", "60")
    assert r.returncode == 0 and "nothing new" in r.stdout


def test_rotated_away_out_of_order_and_changed_files_are_reported_once(tmp_path: Path) -> None:
    ring = _ring(LAB / "storm.pcap", 100, tmp_path / "ring")
    _age(ring)
    watched, out = tmp_path / "watched", tmp_path / "out"
    watched.mkdir()
    for f in ring[:2]:
        shutil.copy2(f, watched / f.name)
    assert _cli("watch", str(watched), "--out", str(out), "--once").returncode == 0
    # files 2 and 3 rotate away unread; 4 and 5 arrive; file 0 changes after it was read
    for f in ring[4:6]:
        shutil.copy2(f, watched / f.name)
    with open(watched / ring[0].name, "ab") as fh:
        fh.write(b"\0" * 16)
    r = _cli("watch", str(watched), "--out", str(out), "--once")
    assert r.returncode == 0, r.stderr
    assert f"2 file(s) between {ring[1].name} and {ring[4].name} were rotated away" in r.stderr
    assert f"{ring[0].name}: changed after it was read" in r.stderr
    # a file that sorts before the last one read arrives late: reported, not analysed
    shutil.copy2(ring[2], watched / ring[2].name)
    r = _cli("watch", str(watched), "--out", str(out), "--once")
    assert f"{ring[2].name}: appeared after {ring[5].name} was read but sorts before it" in r.stderr
    assert "changed after it was read" not in r.stderr          # said once
    files = [x["name"] for x in json.loads((out / "watch" / "files.json").read_text())]
    assert files == [ring[0].name, ring[1].name, ring[4].name, ring[5].name]
    html = (out / "report.html").read_text()
    assert "were rotated away before they were read" in html     # the report carries the warnings too


def test_corrupt_file_in_the_middle_one_line_rest_analysed(tmp_path: Path) -> None:
    ring = _ring(LAB / "storm.pcap", 150, tmp_path / "ring", fmt="pcap")
    bad = ring[2]
    data = bytearray(bad.read_bytes())
    off = 24
    for _ in range(40):          # the 41st record's header claims 2 GB
        off += 16 + int.from_bytes(data[off + 8:off + 12], "little")
    data[off + 8:off + 16] = b"\xff\xff\xff\x7f\xff\xff\xff\x7f"
    bad.write_bytes(bytes(data))
    _age(ring)
    r = _cli("watch", str(tmp_path / "ring"), "--out", str(tmp_path / "out"), "--once")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if bad.name in x]
    assert len(lines) == 1, r.stderr
    files = json.loads((tmp_path / "out" / "watch" / "files.json").read_text())
    assert [x["name"] for x in files] == [f.name for f in ring]
    assert files[2]["packets"] == 40 and files[3]["packets"] == 150       # the rest of that file is lost, not more
    assert pl.read_parquet(tmp_path / "out/tables/logons.parquet").height > 0
    assert "frame 341" in lines[0]                        # Wireshark's number of the corrupt record: 300 + 41


def test_alert_on_slow_logons_once(tmp_path: Path) -> None:
    ring = _ring(LAB / "storm.pcap", 150, tmp_path / "ring")
    _age(ring)
    profile = tmp_path / "site.toml"
    profile.write_text("[thresholds]\nslow_logon_s = 1.0\n")
    watched, out = tmp_path / "watched", tmp_path / "out"
    watched.mkdir()
    for f in ring:
        shutil.copy2(f, watched / f.name)
    r = _cli("watch", str(watched), "--out", str(out), "--once", "--profile", str(profile))
    assert r.returncode == 0, r.stderr
    alerts = [x for x in r.stdout.splitlines() if " ALERT " in x]
    assert len(alerts) == 1 and "p95 logon time" in alerts[0] and "over 1.00 s" in alerts[0]
    logons = pl.read_parquet(out / "tables/logons.parquet").filter(pl.col("outcome") != "incomplete")
    assert f"the {logons.height} logon(s)" in alerts[0]
    assert (out / "watch" / "alerts.log").read_text().strip() == alerts[0]
    r = _cli("watch", str(watched), "--out", str(out), "--once", "--profile", str(profile))
    assert " ALERT " not in r.stdout                                   # judged already: not repeated
    r = _cli("watch", str(watched), "--out", str(out), "--once")       # another profile: refused
    assert r.returncode == 2 and "another profile" in r.stderr


def test_refusals(tmp_path: Path) -> None:
    ring = _ring(LAB / "storm.pcap", 150, tmp_path / "ring")
    _age(ring)
    other = tmp_path / "other"
    other.mkdir()
    assert _cli("watch", str(tmp_path / "ring"), "--out", str(tmp_path / "out"), "--once").returncode == 0
    r = _cli("watch", str(other), "--out", str(tmp_path / "out"), "--once")
    assert r.returncode == 2 and "give another --out" in r.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    r = _cli("watch", str(tmp_path / "ring"), "--out", str(foreign), "--once")
    assert r.returncode == 2 and "not written by netdiag" in r.stderr
    r = _cli("watch", str(tmp_path / "nope"), "--out", str(tmp_path / "o2"), "--once")
    assert r.returncode == 2 and "no such directory" in r.stderr


def test_state_loads_only_netdiag_objects(tmp_path: Path) -> None:
    """A state file that names another module's callable is refused, not executed."""
    ring = _ring(LAB / "storm.pcap", 150, tmp_path / "ring")
    _age(ring)
    out = tmp_path / "out"
    Watcher(tmp_path / "ring", out, interval=60).poll()

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    (out / STATE_FILE).write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UsageError, match="cannot be read"):
        Watcher(tmp_path / "ring", out, interval=60)
    assert not (tmp_path / "pwned").exists()


def test_state_with_enum_pickled_by_name_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian's Python 3.11.2 pickles an IntEnum member as getattr(class, name), which the loader
    refuses (CI failed there, not under 3.11.7): the state pickles enum members by value itself."""
    monkeypatch.setattr(Stage, "__reduce_ex__", lambda self, proto: (getattr, (type(self), self.name)))
    assert b"getattr" in pickle.dumps(Stage.LOGONS, protocol=5)       # the 3.11.2 behaviour, imitated
    ring = _ring(LAB / "storm.pcap", 150, tmp_path / "ring")
    _age(ring)
    out = tmp_path / "out"
    r = Watcher(tmp_path / "ring", out, interval=60).poll()
    assert r.refreshed
    pipe = load_state(dump_state(Watcher(tmp_path / "ring", out, interval=60).pipeline), Pipeline)
    assert pipe.stage is Stage.LOGONS


def test_follow_until_stopped(tmp_path: Path) -> None:
    """Without --once: files dropped in over time are read; SIGTERM stops it with exit 0."""
    ring = _ring(LAB / "storm.pcap", 150, tmp_path / "ring")
    _age(ring)
    analyze([tmp_path / "ring"], out=tmp_path / "analyzed")
    watched, out = tmp_path / "watched", tmp_path / "out"
    watched.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "netdiag.cli", "watch", str(watched), "--out", str(out),
                          "--interval", "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for f in ring:
            shutil.copy2(f, watched / f.name)
            time.sleep(0.2)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            files = out / "watch" / "files.json"
            if files.is_file() and len(json.loads(files.read_text())) == len(ring):
                break
            time.sleep(0.3)
        else:
            pytest.fail("the watcher did not read every file within 120 s")
    finally:
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert "stopped;" in stderr and "Traceback" not in stderr
    assert stdout.count(" read ") >= 2                   # several refreshes, one per batch of files
    _same_tables(tmp_path / "analyzed", out)
