"""One exit-code rule for every command (README "Exit codes").

    0  the analysis ran, also when it found no logons or no findings (one line says so)
    1  `compare --fail-on-regression` found a regression (tests/test_compare.py)
    2  usage error, an unreadable or unwritable path, or not one packet could be read
    3  internal error (a bug)

Run in-process through `netdiag.cli.main` (the same code the console script runs) so that forty
command lines take seconds; a few run as real subprocesses too. Inputs: a capture of only a
file header (captures/crafted/bad/header_only.pcap), the bundled sample cut inside its first
record, a real capture with packets but no logons (curl against a real HTTP server on loopback,
captures/crafted/real_loopback_http.pcap) and the sample itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netdiag.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"
HEADER_ONLY = ROOT / "captures" / "crafted" / "bad" / "header_only.pcap"
NO_LOGONS = ROOT / "captures" / "crafted" / "real_loopback_http.pcap"
COMMANDS = ["analyze", "logons", "findings", "transactions", "connections", "packets", "evidence", "sanitize", "case",
            "compare"]


@pytest.fixture(scope="module")
def cut_first(tmp_path_factory) -> Path:
    """The sample with its first record cut after 10 of its bytes (pcap header 24 + record header 16)."""
    p = tmp_path_factory.mktemp("cut") / "cut_first_record.pcap"
    p.write_bytes(SAMPLE.read_bytes()[:24 + 16 + 10])
    return p


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    from netdiag.sanitize import make_key

    k = tmp_path_factory.mktemp("key") / "site.key"
    make_key(k)
    return k


def _argv(command: str, capture: Path, tmp: Path, key: Path) -> list[str]:
    c = str(capture)
    return {"analyze": ["analyze", c, "--out", str(tmp / "report")],
            "evidence": ["evidence", c, "--logon", "1", "--out", str(tmp / "e.pcapng")],
            "sanitize": ["sanitize", c, "--out", str(tmp / "s"), "--key-file", str(key)],
            "case": ["case", c, "--out", str(tmp / "case"), "--key-file", str(key)],
            "compare": ["compare", c, c]}.get(command, [command, c])


def run(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:  # noqa: ANN001
    monkeypatch.setattr(sys, "argv", ["netdiag", *argv])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def _lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip()]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("which", ["header_only", "cut_first_record"])
def test_nothing_readable_is_exit_2_with_one_line_naming_the_file(command, which, cut_first, key, tmp_path,
                                                                   monkeypatch, capsys):
    capture = HEADER_ONLY if which == "header_only" else cut_first
    code, out, err = run(_argv(command, capture, tmp_path, key), monkeypatch, capsys)
    assert code == 2, err
    lines = _lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"netdiag: error: no packets could be read from {capture}"), err
    assert out == ""
    assert not any(p.name in ("report", "s", "case", "e.pcapng") for p in tmp_path.iterdir())   # nothing written


@pytest.mark.parametrize("command", COMMANDS)
def test_packets_but_no_logons_is_exit_0_and_says_so_once(command, key, tmp_path, monkeypatch, capsys):
    code, out, err = run(_argv(command, NO_LOGONS, tmp_path, key), monkeypatch, capsys)
    if command == "evidence":    # asking for logon 1 of a capture without logons is a usage error
        assert code == 2 and ("no logons" in err.lower() or "logon 1" in err), err
        assert len(_lines(err)) == 1
        return
    assert code == 0, err
    text = out + err
    said = [x for x in _lines(text) if "no logons" in x.lower() or "nothing to compare" in x.lower()]
    if command in ("transactions", "connections", "packets", "sanitize"):
        assert said == []           # these do not look for logons
    else:
        assert len(said) == 1, text
        assert "EPJ port" in said[0]             # and it says why
    assert "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_capture_with_logons_is_exit_0(command, key, tmp_path, monkeypatch, capsys):
    argv = _argv(command, SAMPLE, tmp_path, key)
    if command == "evidence":
        argv = ["evidence", str(SAMPLE), "--finding", "F001", "--out", str(tmp_path / "e.pcapng")]
    code, _out, err = run(argv, monkeypatch, capsys)
    assert code == 0, err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_capture_is_exit_2(command, key, tmp_path, monkeypatch, capsys):
    code, _out, err = run(_argv(command, tmp_path / "nope.pcap", tmp_path, key), monkeypatch, capsys)
    assert code == 2 and "nope.pcap" in err and len(_lines(err)) == 1, err


def test_an_internal_error_is_exit_3_in_one_line(tmp_path, monkeypatch, capsys):
    import importlib

    module = importlib.import_module("netdiag.analyze")   # (netdiag.analyze is the API function)

    def bug(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(module, "run", bug)   # the pipeline run analyze starts
    code, _out, err = run(["analyze", str(SAMPLE), "--out", str(tmp_path / "r")], monkeypatch, capsys)
    assert code == 3 and _lines(err) == ["netdiag: internal error: ZeroDivisionError: a bug (set NETDIAG_DEBUG=1 "
                                         "for a traceback)"]


def test_unknown_option_is_exit_2(monkeypatch, capsys):
    code, _out, _err = run(["logons", str(SAMPLE), "--no-such-option"], monkeypatch, capsys)
    assert code == 2


@pytest.mark.parametrize("command, capture, code", [("logons", NO_LOGONS, 0), ("findings", NO_LOGONS, 0),
                                                    ("analyze", HEADER_ONLY, 2), ("packets", HEADER_ONLY, 2)])
def test_the_console_command_gives_the_same_codes(command, capture, code, tmp_path):
    argv = [command, str(capture)] + (["--out", str(tmp_path / "r")] if command == "analyze" else [])
    r = subprocess.run([sys.executable, "-m", "netdiag.cli", *argv], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert r.returncode == code, r.stderr
    assert len(_lines(r.stderr)) == 1 and "Traceback" not in r.stderr


def test_readme_states_the_rule():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in ("0", "1", "2", "3"):
        assert f"| {code} |" in section
    for command in COMMANDS:
        assert f"`{command}`" in section or "every command" in section
