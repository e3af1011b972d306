"""The Python API under the CLI: names stay callable however often they are called, and after the
same-named submodules were imported (the import system rebinds a package attribute to a submodule)."""

from __future__ import annotations

import importlib
import subprocess
import sys
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
