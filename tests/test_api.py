"""The Python API under the CLI: names stay callable however often they are called, and after the
same-named submodules were imported (the import system rebinds a package attribute to a submodule)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl

import netdiag

SAMPLE = Path(__file__).resolve().parent.parent / "captures" / "sample" / "epj-logon.pcap"


def test_api_functions_can_be_called_repeatedly_on_the_sample() -> None:
    first = netdiag.transactions([SAMPLE])
    second = netdiag.transactions([SAMPLE])
    assert isinstance(first, pl.DataFrame) and first.height > 0
    assert first.equals(second)
    logons_a = netdiag.logons([SAMPLE])
    logons_b = netdiag.logons([SAMPLE])
    assert logons_a.height == logons_b.height == 3
    assert logons_a.equals(logons_b)


def test_analyze_and_compare_can_be_called_repeatedly(tmp_path: Path) -> None:
    runs = [netdiag.analyze([SAMPLE]), netdiag.analyze(str(SAMPLE), out=tmp_path / "r")]
    # the sample's three lab logons, one of them with the slow authenticate (captures/sample/README.md)
    assert [a.logons.height for a in runs] == [3, 3]
    assert runs[0].findings.equals(runs[1].findings)
    diffs = [netdiag.compare(SAMPLE, SAMPLE), netdiag.compare(tmp_path / "r", SAMPLE)]
    for d in diffs:   # the same capture on both sides: the same logons, nothing moved
        assert d.before.logons.height == d.after.logons.height == 3
        assert d.metric("logon:duration_s")["difference"] == 0.0


def test_api_names_are_functions_after_their_submodules_were_imported() -> None:
    for mod in ("netdiag.transactions", "netdiag.logons", "netdiag.analyze", "netdiag.compare"):
        importlib.import_module(mod)
    for name in ("transactions", "messages", "logons", "findings", "analyze", "compare", "read_capture",
                 "load_profile"):
        assert callable(getattr(netdiag, name)), name
    assert callable(netdiag.transactions) and not isinstance(netdiag.transactions, type(sys))


def test_api_in_a_fresh_interpreter_imports_submodule_first() -> None:
    # A fresh interpreter: the CLI-style import of the submodule comes first, then the API call.
    code = ("import netdiag.transactions, netdiag.logons, netdiag\n"
            f"t = netdiag.transactions([{str(SAMPLE)!r}]); t2 = netdiag.transactions([{str(SAMPLE)!r}])\n"
            "print(t.height == t2.height and t.height > 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def _docstring_example() -> str:
    """The indented code block of the package docstring, as a reader would paste it."""
    block = re.search(r"\n\n((?:    .*\n)+)", netdiag.__doc__ or "")
    assert block, "the package docstring has no example"
    return textwrap.dedent(block.group(1))


def test_the_package_docstring_example_runs_on_the_bundled_sample(tmp_path: Path) -> None:
    # the example's file names stand for the reader's captures; here each is the bundled sample
    code = _docstring_example()
    for name in ("switch.pcapng", "before.pcapng", "after.pcapng"):
        assert name in code
        code = code.replace(repr(name).replace("'", '"'), repr(str(SAMPLE)))
    cwd = Path.cwd()
    os.chdir(tmp_path)            # the example writes netdiag-report/ where it runs
    try:
        ns: dict = {}
        exec(compile(code, "netdiag.__doc__", "exec"), ns)   # noqa: S102 - the docstring's own example
    finally:
        os.chdir(cwd)
    assert ns["cap"].packets.height > 0 and ns["conns"].height > 0
    assert ns["tx"].height > 0 and ns["logons"].height == 3
    assert ns["result"].logons.equals(ns["logons"])
    assert (tmp_path / "netdiag-report" / "report.html").is_file()
    assert ns["diff"].after.logons.height == 3
    assert len(ns["days"].periods) == 2
