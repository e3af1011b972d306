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


# ------------------------------------------------------------------------------------------
# What the bundle holds: every warning's evidence with comparable logons, the HTML report, the
# profile, version and command, the hospital's question; sanitised throughout
# ------------------------------------------------------------------------------------------
LAB = ROOT / "captures/lab"
REPEATED = LAB / "repeated_logons.pcap"       # three logons, each with a slow authenticate (server_think warning)
ZERO_WINDOW = LAB / "zero_window.pcap"        # two warnings (zero_window, server_think) and client_think (info)
SENDER_SIDE = LAB / "loss_s2c_sender_side.pcap"   # one warning, three info findings
# payload the lab client really sends and the server answers (user, password, record text)
PAYLOAD = (b"synthetic-password", b"lab-user-000", b"SYNTHETIC-EPJ")


def _tshark_frames(path: Path, display: str) -> list[str]:
    r = subprocess.run([TSHARK, "-n", "-r", str(path), "-Y", display, "-T", "fields", "-e", "frame.number"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"tshark refused {display!r}: {r.stderr}"
    return r.stdout.split()


def _case(tmp: Path, capture: Path, *args: object) -> Path:
    key = tmp / "site.key"
    key.write_text(KEY_HEX)
    out = tmp / f"case-{capture.stem}"
    r = _netdiag("case", capture, "--out", out, "--key-file", key, *args)
    assert r.returncode == 0, r.stderr
    return out


def _addresses(capture: Path) -> set[str]:
    out = subprocess.run([TSHARK, "-n", "-r", str(capture), "-T", "fields", "-e", "ip.src", "-e", "ip.dst"],
                         capture_output=True, text=True, check=True).stdout
    return {a for line in out.splitlines() for a in line.split("\t") if a}


@pytest.fixture(scope="module")
def repeated_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("repeated")
    note = d / "question.txt"
    note.write_text("Why are logons slow in the morning? PC 10.77.1.20 on ward 4 is the worst.\n")
    return _case(d, REPEATED, "--note", note)


def test_bundle_holds_the_html_report_profile_question_version_and_command(repeated_bundle: Path) -> None:
    from yacryptopan import CryptoPAn

    from netdiag import __version__
    from netdiag.profile import Profile, parse_profile

    names = {p.relative_to(repeated_bundle).as_posix() for p in repeated_bundle.rglob("*") if p.is_file()}
    assert {"report.html", "report.md", "findings.json", "profile.toml", "question.md", "README.md"} <= names
    assert "<html" in (repeated_bundle / "report.html").read_text().lower()
    # no profile given: the defaults written out, and they parse back to the defaults
    used = parse_profile((repeated_bundle / "profile.toml").read_text())
    assert used.thresholds == Profile().thresholds and used.servers == () and used.start_rule == "bootstrap"
    # the question as given, its address mapped like every other
    mapped = CryptoPAn(bytes.fromhex(KEY_HEX)).anonymize("10.77.1.20")
    assert (repeated_bundle / "question.md").read_text() == (
        f"Why are logons slow in the morning? PC {mapped} on ward 4 is the worst.\n")
    readme = (repeated_bundle / "README.md").read_text()
    assert f"netdiag {__version__}" in readme
    assert re.search(r"command: `netdiag case \S*repeated_logons\.pcap --out \S+ --key-file \S+ --note \S+`", readme)
    assert "`question.md`" in readme and "`profile.toml`" in readme


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_a_pattern_across_logons_shows_the_comparable_logons(repeated_bundle: Path, tmp_path: Path) -> None:
    findings = json.loads((repeated_bundle / "findings.json").read_text())
    f1 = findings[0]
    assert f1["cause"] == "server_think" and f1["severity"] == "warning" and f1["logons_affected"] == 3
    # tshark: the original holds three authenticate calls, one per logon; the evidence all three
    assert len(_tshark_frames(REPEATED, 'giop.request_op == "authenticate"')) == 3
    ev = repeated_bundle / "evidence/F001-server_think.pcapng"
    assert len(_tshark_frames(ev, 'giop.request_op == "authenticate"')) == 3
    one = _case(tmp_path, REPEATED, "--logons", "1")
    assert len(_tshark_frames(one / "evidence/F001-server_think.pcapng", 'giop.request_op == "authenticate"')) == 1
    readme = (repeated_bundle / "README.md").read_text()
    assert "logons 1, 2, 3 of 3" in readme


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_every_warning_gets_evidence_and_top_adds_info_findings(tmp_path: Path) -> None:
    zw = _case(tmp_path, ZERO_WINDOW)
    findings = json.loads((zw / "findings.json").read_text())
    warnings = {f"{f['id']}-{f['cause']}.pcapng" for f in findings if f["severity"] in ("warning", "critical")}
    assert len(warnings) == 2
    assert {p.name for p in (zw / "evidence").iterdir()} == warnings
    ss = _case(tmp_path, SENDER_SIDE, "--top", "1")
    findings = json.loads((ss / "findings.json").read_text())
    severities = [f["severity"] for f in findings]
    assert severities.count("warning") == 1 and severities.count("info") >= 2
    first_info = next(f for f in findings if f["severity"] == "info" and f["cause"] != "client_think")
    warning = next(f for f in findings if f["severity"] == "warning")
    assert {p.name for p in (ss / "evidence").iterdir()} == {
        f"{warning['id']}-{warning['cause']}.pcapng", f"{first_info['id']}-{first_info['cause']}.pcapng"}


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_the_bundle_filters_select_the_findings_frames_in_its_sanitised_evidence(repeated_bundle: Path) -> None:
    for f in json.loads((repeated_bundle / "findings.json").read_text()):
        ev = repeated_bundle / f"evidence/{f['id']}-{f['cause']}.pcapng"
        if not ev.exists():
            continue
        tagged = set(_tshark_frames(ev, f["evidence_filter"]))
        assert tagged, f["id"]
        assert tagged <= set(_tshark_frames(ev, f["conversation_filter"])), f["id"]
        if f["protocol_filter"]:
            assert _tshark_frames(ev, f["protocol_filter"]), f["id"]


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("capture", [REPEATED, ZERO_WINDOW, ROOT / "captures/sample/epj-logon.pcap"],
                         ids=lambda p: p.name)
def test_a_sanitised_bundle_holds_no_real_address_and_no_payload(capture: Path, tmp_path: Path) -> None:
    import ipaddress

    bundle = _case(tmp_path, capture, "--top", "5")
    originals = _addresses(capture)
    raw = capture.read_bytes()
    payload = [p for p in PAYLOAD if p in raw]
    assert originals and payload, "the original carries addresses and payload to remove"
    files = [p for p in bundle.rglob("*") if p.is_file()]
    assert any(p.suffix == ".pcapng" for p in files)
    for p in files:
        data = p.read_bytes()
        for a in originals:
            assert not re.search(rb"(?<![0-9.])" + re.escape(a.encode()) + rb"(?![0-9])", data), (p.name, a)
            if p.suffix == ".pcapng":
                assert ipaddress.ip_address(a).packed not in data, (p.name, a)
        for s in payload:
            assert s not in data, (p.name, s)
    for p in files:
        if p.suffix == ".pcapng":
            assert _addresses(p).isdisjoint(originals), p.name


def test_an_unreadable_note_is_refused_before_any_work(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_text(KEY_HEX)
    r = _netdiag("case", SLOW_AUTH, "--out", tmp_path / "c", "--key-file", key, "--note", tmp_path / "missing.txt")
    assert r.returncode == 2 and "missing.txt" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "c").exists()


def test_the_readme_lists_the_bundle_contents() -> None:
    from netdiag.case import CASE_FILES

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("netdiag case"):]
    for name in CASE_FILES:
        assert f"`{name}" in section, name


def test_a_given_profile_is_copied_as_given_with_its_addresses_mapped(tmp_path: Path) -> None:
    from yacryptopan import CryptoPAn

    from netdiag.profile import STARTER_PROFILE

    prof = tmp_path / "site.toml"
    prof.write_text(STARTER_PROFILE)
    bundle = _case(tmp_path, SLOW_AUTH, "--profile", prof)
    cp = CryptoPAn(bytes.fromhex(KEY_HEX))
    expected = STARTER_PROFILE
    for a in ("10.0.0.0", "10.20.4.0"):
        assert a in expected
        expected = expected.replace(a, cp.anonymize(a))
    assert (bundle / "profile.toml").read_text() == expected
    assert "the file given, site.toml" in (bundle / "README.md").read_text()


def test_the_profile_written_out_parses_back_to_the_same_settings() -> None:
    import dataclasses

    from netdiag.profile import STARTER_PROFILE, Profile, parse_profile, profile_toml

    for p in (Profile(), parse_profile(STARTER_PROFILE)):
        again = parse_profile(profile_toml(p))
        assert dataclasses.replace(again, source=None) == dataclasses.replace(p, source=None)
