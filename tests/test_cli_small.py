"""The command line's small things: plain --help, a close match for a mistyped option, --profile on
the table commands, the progress bar's stage, the exit codes in the README.

Run as a user runs it: `python -m netdiag.cli ...` in a subprocess (its stderr and exit code).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLOW_AUTH = ROOT / "captures/lab/slow_auth.pcap"
PROFILE = """\
[[servers]]
name = "EPJ lab"
addresses = ["10.77.1.0/24"]
ports = { 2809 = "bootstrap", 9100 = "orb", 9080 = "http" }
"""


def _netdiag(*args: object, columns: int = 200) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def _commands() -> list[str]:
    from netdiag.cli import COMMAND_MODULES

    return list(COMMAND_MODULES)


@pytest.mark.parametrize("command", _commands())
def test_help_shows_no_python_type_names(command: str) -> None:
    r = _netdiag(command, "--help")
    assert r.returncode == 0, r.stderr
    assert "--help" in r.stdout
    assert "<bool>" not in r.stdout and "list[" not in r.stdout, r.stdout


def test_a_flag_shows_no_value_and_a_list_argument_shows_its_kind() -> None:
    out = _netdiag("case", "--help").stdout
    line = next(x for x in out.splitlines() if "--no-sanitize" in x)
    assert "<" not in line
    assert re.search(r"captures\.\.\.\s+<path>\.\.\.", out), out
    assert re.search(r"--logons\s+N\b", out) and re.search(r"--note\s+FILE\b", out)


def test_an_unknown_option_names_the_close_match_and_exits_2() -> None:
    r = _netdiag("analyze", "--bogus", SLOW_AUTH)
    assert r.returncode == 2
    assert "--bogus" in r.stderr and "--out" in r.stderr and "Traceback" not in r.stderr
    r = _netdiag("analyse", SLOW_AUTH)
    assert r.returncode == 2 and "analyze" in r.stderr


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("profile") / "site.toml"
    p.write_text(PROFILE)
    return p


def test_connections_take_the_profile_and_name_each_server_ports_role(profile: Path) -> None:
    r = _netdiag("connections", SLOW_AUTH, "--profile", profile, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    roles = {(x["server_port"], x["server_role"]) for x in rows}
    # the profile's roles, and WebSphere's default for the DNS port it does not name
    assert roles == {(2809, "bootstrap"), (9100, "orb"), (9080, "http"), (53, "dns")}
    plain = json.loads(_netdiag("connections", SLOW_AUTH, "--json").stdout)
    assert [{k: v for k, v in x.items() if k != "server_role"} for x in rows] == plain


def test_transactions_and_packets_take_the_profile(profile: Path) -> None:
    r = _netdiag("transactions", SLOW_AUTH, "--profile", profile, "--json")
    assert r.returncode == 0, r.stderr
    tx = json.loads(r.stdout)
    assert {x["server_role"] for x in tx if x["protocol"] == "giop"} <= {"bootstrap", "orb"}
    assert {x["server_role"] for x in tx if x["protocol"] == "http"} == {"http"}
    r = _netdiag("packets", SLOW_AUTH, "--profile", profile, "--json")
    assert r.returncode == 0, r.stderr
    pk = json.loads(r.stdout)
    to_orb = [x for x in pk if x["dst_port"] == 9100]
    assert to_orb and all(x["dst_role"] == "orb" and x["src_role"] is None for x in to_orb)
    # the terminal table shows the role next to the endpoints
    r = _netdiag("connections", SLOW_AUTH, "--profile", profile, columns=160)
    assert r.returncode == 0


def test_a_bad_profile_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[servers]]\nports = { 99999 = \"orb\" }\n")
    for command in ("connections", "transactions", "packets"):
        r = _netdiag(command, SLOW_AUTH, "--profile", bad)
        assert r.returncode == 2, (command, r.stderr)
        assert "bad.toml" in r.stderr and "Traceback" not in r.stderr


def test_the_progress_names_each_stage_of_the_analysis(tmp_path: Path) -> None:
    from netdiag.analyze import analyze

    class Recorder:
        def __init__(self) -> None:
            self.stages: list[str] = []

        def __call__(self, n: int) -> None:
            pass

        def stage(self, name: str) -> None:
            self.stages.append(name)

    rec = Recorder()
    analyze([SLOW_AUTH], out=tmp_path / "r", progress=rec)
    assert rec.stages == ["reading, TCP, transactions", "logons and findings", "writing the report"]


def test_the_drawn_bar_carries_the_stage_in_its_label(monkeypatch: pytest.MonkeyPatch) -> None:
    from netdiag.progress import progress_bar, stage

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with progress_bar(100, "analyze", min_total=0) as advance:
        assert advance.description == "analyze: reading"    # type: ignore[attr-defined]
        advance(50)
        stage(advance, "logons and findings")
        assert advance.description == "analyze: logons and findings"    # type: ignore[attr-defined]


def test_the_readme_documents_the_exit_codes() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Exit codes"):]
    section = section[:section.index("\n## ", 1)]
    for code, words in (("0", "ran"), ("1", "regression"), ("2", "usage"), ("3", "internal error")):
        assert re.search(rf"^\| {code} \|.*{words}", section, re.M), code
