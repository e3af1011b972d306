"""Site profile: defaults, validation with line numbers, the starter profile, `netdiag profile init`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netdiag.errors import ConfigError
from netdiag.profile import STARTER_PROFILE, Profile, load_profile, parse_profile


def test_default_profile_knows_websphere_ports_without_any_file():
    p = Profile()
    assert p.port_role("10.1.1.1", 2809) == "bootstrap"
    assert p.port_role("10.1.1.1", 9100) == "orb"
    assert p.port_role("10.1.1.1", 9900) == "lsd"
    assert p.port_role("10.1.1.1", 9403) == "iiop_tls"
    assert p.port_role("10.1.1.1", 9080) == "http"
    assert p.is_server("10.1.1.1") is None        # no servers named: auto-detect by GIOP magic


def test_starter_profile_is_valid_and_says_what_it_declares():
    p = parse_profile(STARTER_PROFILE, source="starter.toml")
    assert p.servers[0].ports[2809] == "bootstrap"
    assert p.is_server("10.0.0.7") and not p.is_server("10.0.1.7")
    assert p.client_group("10.20.4.33") == "Ward 4"
    assert p.end_operation is None and p.end_quiet_s == 5


@pytest.mark.parametrize("text,line,reason", [
    ('[logon]\nstart_quiet_s = 3\nend_operaton = "x"\n', 3, "unknown key 'end_operaton' in [logon]"),
    ('[logon]\nend_operation = "authenticate|(getUser"\n', 2, "bad regex in 'end_operation'"),
    ('[[servers]]\nname = "was"\naddresses = ["10.0.0.0/24", "10.0.0.300"]\n', 3, "invalid address or subnet '10.0.0.300'"),
    ('[[servers]]\naddresses = "10.0.0.1"\nports = { 2809 = "bootstrap", 9100 = "orbb" }\n', 3, "must be one of"),
    ('[[servers]]\naddresses = "10.0.0.1"\nports = { 70000 = "orb" }\n', 3, "invalid port '70000'"),
    ('[thresholds]\nserver_think_s = "fast"\n', 2, "'server_think_s' must be a number"),
    ('[capture]\npoint = "switch"\n', 2, "'point' must be one of auto, client, server, middle"),
    ('[[client_groups]]\nsubnet = "10.1.0.0/33"\ngroup = "A"\n', 2, "invalid address or subnet"),
    ('[logon]\nlead_in_s = 30\n[logon\n', 3, "not valid TOML"),
    ('colour = "blue"\n', 1, "unknown key 'colour' in the profile"),
])
def test_bad_profile_is_rejected_with_its_line_and_reason(text, line, reason):
    with pytest.raises(ConfigError) as exc:
        parse_profile(text, source="site.toml")
    msg = str(exc.value)
    assert msg.startswith(f"site.toml: line {line}: "), msg
    assert reason in msg


def test_client_groups_csv_is_read_relative_to_the_profile_and_bad_rows_name_their_line(tmp_path):
    (tmp_path / "groups.csv").write_text("subnet,group\n10.20.0.0/16,Site North\n10.20.4.0/24,Ward 4\n")
    prof = tmp_path / "site.toml"
    prof.write_text('client_groups_csv = "groups.csv"\n')
    p = load_profile(prof)
    assert p.client_group("10.20.4.9") == "Ward 4" and p.client_group("10.20.9.9") == "Site North"
    (tmp_path / "groups.csv").write_text("subnet,group\n10.20.0.0/16,North\nnot-a-net,South\n")
    with pytest.raises(ConfigError, match=r"groups.csv: line 3: invalid subnet 'not-a-net'"):
        load_profile(prof)


def test_missing_profile_file_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: cannot read profile"):
        load_profile(tmp_path / "nope.toml")


def _netdiag(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_profile_init_writes_a_commented_starter_profile_that_loads(tmp_path):
    out = tmp_path / "site.toml"
    r = _netdiag("profile", "init", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.count("#") > 20 and "[[servers]]" in text
    assert load_profile(out).servers
    again = _netdiag("profile", "init", str(out))
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr


def test_cli_rejects_a_bad_profile_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[logon]\nend_url = "GET /epj/(start"\n')
    r = _netdiag("profile", "check", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert f"{bad}: line 2: bad regex in 'end_url'" in r.stderr
