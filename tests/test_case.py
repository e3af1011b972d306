"""netdiag case: the vendor bundle is complete, sanitised by default, and safe to re-run.

Ground truth: the lab's slow-authenticate capture (real omniORB peers, server think configured
to 2 s), tshark reading the excerpts, yacryptopan for the expected address mapping.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLOW_AUTH = ROOT / "captures/lab/slow_auth.pcap"
KEY_HEX = "5a" * 32
TSHARK = shutil.which("tshark")


def _netdiag(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _original_addresses() -> set[str]:
    from netdiag.capture import read_capture
    from netdiag.capture.addresses import format_ip

    pk = read_capture([str(SLOW_AUTH)]).packets.filter(__import__("polars").col("ip_version") == 4)
    return set(pk.select(format_ip("src_ip_hi", "src_ip_lo").alias("a"))["a"].to_list()) | set(
        pk.select(format_ip("dst_ip_hi", "dst_ip_lo").alias("a"))["a"].to_list())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("case")
    key = d / "site.key"
    key.write_text(KEY_HEX)
    out = d / "case"
    r = _netdiag("case", SLOW_AUTH, "--out", out, "--key-file", key)
    assert r.returncode == 0, r.stderr
    return out


def test_bundle_holds_report_findings_readme_and_evidence_of_the_top_findings(bundle: Path) -> None:
    names = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    assert {"README.md", "report.md", "findings.json"} <= set(names)
    findings = json.loads((bundle / "findings.json").read_text())
    assert findings and findings[0]["id"] == "F001" and findings[0]["cause"] == "server_think"
    evidence = [n for n in names if n.startswith("evidence/")]
    assert "evidence/F001-server_think.pcapng" in evidence
    assert not any("client_think" in n for n in evidence)  # the PC's own pace is not a vendor matter
    readme = (bundle / "README.md").read_text()
    for n in evidence:
        assert f"`{n}`" in readme
    assert "frame.comment" in readme and "Crypto-PAn" in readme


def test_no_real_address_in_the_text_files_and_they_use_the_excerpts_mapping(bundle: Path) -> None:
    from yacryptopan import CryptoPAn

    originals = _original_addresses()
    assert originals
    cp = CryptoPAn(bytes.fromhex(KEY_HEX))
    text = "".join((bundle / f).read_text() for f in ("README.md", "report.md", "findings.json"))
    for a in originals:
        assert not re.search(rf"(?<![0-9.]){re.escape(a)}(?![0-9])", text), a
    # the report names the client by its mapped address, the one the excerpt shows
    mapped = {cp.anonymize(a) for a in originals}
    assert any(m in text for m in mapped)
    if TSHARK:
        out = subprocess.run([TSHARK, "-r", str(bundle / "evidence/F001-server_think.pcapng"), "-T", "fields",
                              "-e", "ip.src", "-e", "ip.dst"], capture_output=True, text=True, check=True).stdout
        shown = {a for line in out.splitlines() for a in line.split("\t") if a}
        assert shown and shown <= mapped


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_the_evidence_shows_the_slow_authenticate_with_a_comment(bundle: Path) -> None:
    out = subprocess.run([TSHARK, "-r", str(bundle / "evidence/F001-server_think.pcapng"), "-Y", "frame.comment",
                          "-T", "fields", "-e", "frame.comment"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"server think (1\.9\d|2\.\d\d) s for authenticate", out), out
    ops = subprocess.run([TSHARK, "-r", str(bundle / "evidence/F001-server_think.pcapng"), "-Y", "giop.request_op",
                          "-T", "fields", "-e", "giop.request_op"], capture_output=True, text=True, check=True).stdout
    assert "authenticate" in ops.split()


def test_missing_key_and_foreign_directory_are_refused_before_any_work(tmp_path: Path) -> None:
    r = _netdiag("case", SLOW_AUTH, "--out", tmp_path / "c")
    assert r.returncode == 2 and "--make-key" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "c").exists()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "x.txt").write_text("x")
    key = tmp_path / "k"
    key.write_text(KEY_HEX)
    r = _netdiag("case", SLOW_AUTH, "--out", theirs, "--key-file", key)
    assert r.returncode == 2 and "--force" in r.stderr
    assert [p.name for p in theirs.iterdir()] == ["x.txt"]


def test_rerun_into_our_own_bundle_needs_no_force(bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again"
    shutil.copytree(bundle, copy)
    key = tmp_path / "k"
    key.write_text(KEY_HEX)
    r = _netdiag("case", SLOW_AUTH, "--out", copy, "--key-file", key, "--top", "1")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (copy / "evidence").iterdir()) == ["F001-server_think.pcapng"]


def test_analyze_with_case_writes_the_report_and_the_bundle(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text(KEY_HEX)
    r = _netdiag("analyze", SLOW_AUTH, "--out", tmp_path / "report", "--case", tmp_path / "case", "--key-file", key)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "report" / "report.html").is_file()
    assert (tmp_path / "case" / "evidence" / "F001-server_think.pcapng").is_file()
    assert json.loads((tmp_path / "case" / "findings.json").read_text())[0]["id"] == "F001"
    r = _netdiag("analyze", SLOW_AUTH, "--out", tmp_path / "r2", "--case", tmp_path / "c2")
    assert r.returncode == 2 and "--make-key" in r.stderr and not (tmp_path / "r2").exists()
