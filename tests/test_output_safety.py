"""Output paths: never written through a symlink, never half-written, unwritable ones refused up front.

Every test plants real symlinks (pointing at a file or directory
outside the output that must stay byte for byte unchanged), kills or fails a real write, or
mounts a real read-only bind mount, then runs netdiag on the bundled sample capture.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest

from netdiag.analyze import MARKER, analyze
from netdiag.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"
HTTP_ONLY = ROOT / "captures" / "crafted" / "real_loopback_http.pcap"
TRUNCATED = ROOT / "captures" / "crafted" / "bad" / "truncated_last_record.pcap"


def _netdiag(*args: object, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _tree(d: Path) -> dict[str, str]:
    """Every entry under d (links not followed): file -> sha256, link -> its target, dir -> 'dir'."""
    out = {}
    for p in sorted(d.rglob("*")):
        rel = str(p.relative_to(d))
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture()
def victim(tmp_path: Path) -> tuple[Path, Path]:
    """A file and a directory outside the output that nothing may change."""
    outside = tmp_path / "outside"
    outside.mkdir()
    f = outside / "precious.txt"
    f.write_text("do not touch\n")
    (outside / "dir").mkdir()
    (outside / "dir" / "keep.txt").write_text("keep\n")
    return f, outside


def _no_staging_left(parent: Path) -> None:
    assert [p.name for p in parent.iterdir() if ".netdiag-tmp-" in p.name] == []


# ------------------------------------------------------------------------------------------
# Item 4: symlinks
# ------------------------------------------------------------------------------------------

def test_symlinks_planted_in_our_report_directory_are_replaced_not_written_through(tmp_path, victim):
    precious, outside = victim
    before = _tree(outside)
    out = tmp_path / "report"
    analyze([SAMPLE], out=out)
    # the names the old code wrote through, each now a link to the precious file or directory
    for name in ("report.md.tmp", "report.html.tmp", "findings.json", "report.md", "tables/logons.parquet",
                 "tables/SCHEMA.md.tmp"):
        p = out / name
        if p.exists():
            p.unlink()
        p.symlink_to(precious)
    analyze([SAMPLE], out=out)
    assert _tree(outside) == before
    for name in ("report.html", "report.md", "findings.json", "tables/logons.parquet", "tables/SCHEMA.md"):
        assert (out / name).is_file() and not (out / name).is_symlink(), name
    assert pl.read_parquet(out / "tables" / "logons.parquet").height == 3
    _no_staging_left(tmp_path)


def test_a_tables_link_to_a_directory_outside_is_not_followed(tmp_path, victim):
    precious, outside = victim
    out = tmp_path / "report"
    analyze([SAMPLE], out=out)
    import shutil

    shutil.rmtree(out / "tables")
    (out / "tables").symlink_to(outside / "dir", target_is_directory=True)
    before = _tree(outside)
    analyze([SAMPLE], out=out)
    assert _tree(outside) == before
    assert (out / "tables").is_dir() and not (out / "tables").is_symlink()
    assert (out / "tables" / "connections.parquet").is_file()


def test_an_out_that_is_itself_a_link_is_refused(tmp_path, victim):
    _, outside = victim
    link = tmp_path / "report"
    link.symlink_to(outside / "dir", target_is_directory=True)
    before = _tree(outside)
    r = _netdiag("analyze", SAMPLE, "--out", link, "--force")
    assert r.returncode == 2 and "symbolic link" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _tree(outside) == before


@pytest.mark.parametrize("marker", ["", "{}", '{"tool": "somebody else", "version": "1"}',
                                    '{"tool": "netdiag", "version": "0.1", "kind": "case"}', "not json"])
def test_an_empty_or_foreign_marker_does_not_make_a_directory_ours(tmp_path, marker):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / MARKER).write_text(marker)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="was not written by netdiag"):
        analyze([SAMPLE], out=out)
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "notes.txt"])


def test_a_marker_that_is_a_link_to_a_real_marker_does_not_count(tmp_path):
    ours = tmp_path / "ours"
    analyze([SAMPLE], out=ours)
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.bin").write_bytes(b"x")
    (other / MARKER).symlink_to(ours / MARKER)
    with pytest.raises(UsageError, match="was not written by netdiag"):
        analyze([SAMPLE], out=other)


def test_the_marker_says_what_wrote_the_directory(tmp_path):
    out = tmp_path / "r"
    r = _netdiag("analyze", SAMPLE, "--out", out)
    assert r.returncode == 0, r.stderr
    m = json.loads((out / MARKER).read_text())
    from netdiag import __version__

    assert m["tool"] == "netdiag" and m["version"] == __version__ and m["kind"] == "report"
    assert m["command"] == "netdiag analyze" and m["captures"] == ["epj-logon.pcap"]
    assert m["written_utc"].endswith("Z") and "tables/logons.parquet" in m["files"]
    assert str(tmp_path) not in json.dumps(m)      # names only, no paths


def test_sanitize_does_not_write_through_a_planted_link(tmp_path, victim):
    precious, outside = victim
    key = tmp_path / "k.key"
    assert _netdiag("sanitize", "--make-key", key).returncode == 0
    out = tmp_path / "vendor"
    assert _netdiag("sanitize", SAMPLE, "--out", out, "--key-file", key).returncode == 0
    m = json.loads((out / ".netdiag-sanitized").read_text())
    assert m["kind"] == "sanitized" and m["command"] == "netdiag sanitize"
    target = out / "epj-logon.sanitized.pcapng"
    target.unlink()
    target.symlink_to(precious)
    before = _tree(outside)
    r = _netdiag("sanitize", SAMPLE, "--out", out, "--key-file", key)
    assert r.returncode == 0, r.stderr
    assert _tree(outside) == before
    assert target.is_file() and not target.is_symlink() and target.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


def test_evidence_and_parquet_outputs_replace_a_link_instead_of_following_it(tmp_path, victim):
    precious, outside = victim
    before = _tree(outside)
    ev = tmp_path / "F001.pcapng"
    ev.symlink_to(precious)
    r = _netdiag("evidence", SAMPLE, "--finding", "F001", "--out", ev)
    assert r.returncode == 2 and "exists" in r.stderr          # no --force: refused before the work
    r = _netdiag("evidence", SAMPLE, "--finding", "F001", "--out", ev, "--force")
    assert r.returncode == 0, r.stderr
    assert ev.is_file() and not ev.is_symlink()
    pq = tmp_path / "conns.parquet"
    pq.symlink_to(precious)
    r = _netdiag("connections", SAMPLE, "--parquet", pq)
    assert r.returncode == 0, r.stderr
    assert not pq.is_symlink() and pl.read_parquet(pq).height > 0
    html = tmp_path / "cmp.html"
    html.symlink_to(precious)
    r = _netdiag("compare", SAMPLE, SAMPLE, "--html", html)
    assert r.returncode == 0, r.stderr
    assert not html.is_symlink() and html.read_text().startswith("<!DOCTYPE html>")
    assert _tree(outside) == before
    _no_staging_left(tmp_path)


def test_case_bundle_does_not_follow_an_evidence_link(tmp_path, victim):
    precious, outside = victim
    key = tmp_path / "k.key"
    assert _netdiag("sanitize", "--make-key", key).returncode == 0
    case = tmp_path / "case"
    assert _netdiag("case", SAMPLE, "--out", case, "--key-file", key).returncode == 0
    import shutil

    shutil.rmtree(case / "evidence")
    (case / "evidence").symlink_to(outside / "dir", target_is_directory=True)
    (case / "README.md").unlink()
    (case / "README.md").symlink_to(precious)
    before = _tree(outside)
    r = _netdiag("case", SAMPLE, "--out", case, "--key-file", key)
    assert r.returncode == 0, r.stderr
    assert _tree(outside) == before
    assert not (case / "evidence").is_symlink() and any((case / "evidence").glob("F*.pcapng"))
    assert json.loads((case / ".netdiag-case").read_text())["kind"] == "case"


# ------------------------------------------------------------------------------------------
# Item 5: a crash mid-write leaves the old output whole
# ------------------------------------------------------------------------------------------

def test_a_failure_while_writing_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    out = tmp_path / "report"
    analyze([SAMPLE], out=out)
    (out / "notes.txt").write_text("my notes")
    before = _tree(out)
    import netdiag.report.html as html

    def boom(a):  # noqa: ANN001, ANN202 - fails after the tables and report.md are written
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(html, "render_html", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        analyze([HTTP_ONLY], out=out)
    assert _tree(out) == before                   # old tables, old report, old marker: all as they were
    assert json.loads((out / MARKER).read_text())["captures"] == ["epj-logon.pcap"]
    _no_staging_left(tmp_path)
    monkeypatch.undo()
    analyze([HTTP_ONLY], out=out)                 # and the next run replaces it whole, keeping the notes
    assert json.loads((out / MARKER).read_text())["captures"] == ["real_loopback_http.pcap"]
    assert pl.read_parquet(out / "tables" / "logons.parquet").height == 0
    assert (out / "notes.txt").read_text() == "my notes"


KILL_MID_WRITE = """
import os, signal, sys
import netdiag.report.html as html
def die(a):
    os.kill(os.getpid(), signal.SIGKILL)   # the tables are written by now; report.html is next
html.render_html = die
from netdiag.analyze import analyze
analyze([sys.argv[1]], out=sys.argv[2])
"""


def test_a_killed_process_leaves_the_previous_report_whole_and_the_next_run_cleans_up(tmp_path):
    out = tmp_path / "report"
    analyze([SAMPLE], out=out)
    before = _tree(out)
    r = subprocess.run([sys.executable, "-c", KILL_MID_WRITE, str(HTTP_ONLY), str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL
    assert _tree(out) == before
    left = [p for p in tmp_path.iterdir() if ".netdiag-tmp-" in p.name]
    assert len(left) == 1 and (left[0] / "tables" / "logons.parquet").is_file()   # it was killed mid-write
    analyze([HTTP_ONLY], out=out)
    _no_staging_left(tmp_path)                    # the dead process's staging directory is gone
    assert json.loads((out / MARKER).read_text())["captures"] == ["real_loopback_http.pcap"]


# ------------------------------------------------------------------------------------------
# Item 9: an unwritable --out is a usage error before any work
# ------------------------------------------------------------------------------------------

def test_an_out_under_a_regular_file_is_a_usage_error_before_the_analysis(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    # a capture that warns while read: had the analysis run, its warning would be printed first
    r = _netdiag("analyze", TRUNCATED, "--out", f / "report")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(f / "report") in lines[0] and "cannot write here" in lines[0]
    assert "warning" not in r.stderr and r.stdout == ""


@pytest.fixture()
def read_only_dir(tmp_path: Path):
    d = tmp_path / "ro"
    d.mkdir()
    (d / "existing").mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root for a bind mount")
    ok = subprocess.run(["mount", "--bind", str(d), str(d)], capture_output=True)
    if ok.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {ok.stderr.decode().strip()}")
    try:
        r = subprocess.run(["mount", "-o", "remount,bind,ro", str(d)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot remount read-only: {r.stderr.decode().strip()}")
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


@pytest.mark.parametrize("args", [
    ["analyze", TRUNCATED, "--out", "{ro}/report"],
    ["analyze", TRUNCATED, "--out", "{ro}/existing"],
    ["logons", TRUNCATED, "--parquet", "{ro}/l.parquet"],
    ["logons", TRUNCATED, "--summary", "--parquet", "{ro}/views"],
    ["findings", TRUNCATED, "--parquet", "{ro}/f.parquet"],
    ["transactions", TRUNCATED, "--parquet", "{ro}/t.parquet"],
    ["connections", TRUNCATED, "--parquet", "{ro}/c.parquet"],
    ["packets", TRUNCATED, "--parquet", "{ro}/p.parquet"],
    ["compare", TRUNCATED, TRUNCATED, "--html", "{ro}/c.html"],
    ["evidence", TRUNCATED, "--logon", "1", "--out", "{ro}/e.pcapng"],
    ["sanitize", TRUNCATED, "--out", "{ro}/s", "--key-file", "{key}"],
    ["case", TRUNCATED, "--out", "{ro}/case", "--key-file", "{key}"],
], ids=["analyze-new", "analyze-existing", "logons", "logons-summary", "findings", "transactions", "connections",
        "packets", "compare-html", "evidence", "sanitize", "case"])
def test_a_read_only_file_system_is_a_usage_error_before_any_work(read_only_dir, tmp_path, args):
    key = tmp_path / "k.key"
    from netdiag.sanitize import make_key

    make_key(key)
    argv = [str(a).format(ro=read_only_dir, key=key) for a in args]
    r = _netdiag(*argv)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "read-only file system" in lines[0], r.stderr
    assert "warning" not in r.stderr and r.stdout == ""    # the capture (which warns) was never read


def test_a_report_marker_from_before_markers_had_a_kind_still_counts_and_user_files_stay(tmp_path):
    out = tmp_path / "old-report"
    out.mkdir()
    (out / "tables").mkdir()
    (out / "tables" / "my-query.sql").write_text("SELECT 1")
    (out / "notes.txt").write_text("mine")
    # the marker netdiag wrote before this change: tool, version, captures, files; no kind
    (out / MARKER).write_text(json.dumps({"tool": "netdiag", "version": "0.1.0", "captures": ["x.pcap"],
                                          "files": ["report.html"]}))
    analyze([SAMPLE], out=out)
    assert json.loads((out / MARKER).read_text())["kind"] == "report"
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "tables" / "my-query.sql").read_text() == "SELECT 1"
    assert (out / "tables" / "logons.parquet").is_file()


def test_without_renameat2_the_swap_still_replaces_the_whole_directory(tmp_path, monkeypatch):
    import netdiag.output

    monkeypatch.setattr(netdiag.output, "_exchange", lambda a, b: False)   # e.g. a kernel without RENAME_EXCHANGE
    out = tmp_path / "report"
    analyze([SAMPLE], out=out)
    (out / "notes.txt").write_text("mine")
    analyze([HTTP_ONLY], out=out)
    assert json.loads((out / MARKER).read_text())["captures"] == ["real_loopback_http.pcap"]
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_the_current_directory_as_out_is_refused_not_swapped_away(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    r = subprocess.run([sys.executable, "-m", "netdiag.cli", "analyze", str(SAMPLE), "--out", ".", "--force"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "current directory" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_a_fifo_output_is_written_into_not_replaced(tmp_path):
    """`--parquet` naming a FIFO (a pipe to another program) streams into it: the FIFO stays, and
    what came through is the same table a regular file gets."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = _netdiag("connections", SAMPLE, "--parquet", fifo)
    reader.join(timeout=60)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    plain = tmp_path / "plain.parquet"
    assert _netdiag("connections", SAMPLE, "--parquet", plain).returncode == 0
    assert pl.read_parquet(io.BytesIO(got[0])).equals(pl.read_parquet(plain))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".netdiag")] == []


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_character_device_output_stays_a_device(tmp_path):
    """`--parquet /dev/null` once replaced /dev/null with a regular file (a rename over it, as root):
    every later `2>/dev/null` on the machine wrote into that file. A null device made here stands in."""
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for args in (("connections", SAMPLE, "--parquet", dev), ("logons", SAMPLE, "--parquet", dev)):
        r = _netdiag(*args)
        assert r.returncode == 0, r.stderr
        assert stat.S_ISCHR(os.lstat(dev).st_mode), args
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]
