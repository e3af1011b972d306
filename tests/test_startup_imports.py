"""What netdiag's start-up imports (bench/README.md "Start-up cost"): checked by module, not by time.

`import netdiag.cli` (every command registered) and a whole `connections` run on a tiny capture
must not load what that path does not use: dask/distributed (--engine dask only), pyarrow,
scipy's linear algebra, cffi (numba's optional imports, netdiag/capture/_startup.py), rich (drawn
progress and tables only), the partitioned run, the logons stage and the report. (The
transactions package is still loaded: the Analysis' empty StreamStats lives there.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "captures" / "crafted" / "eth_vlan_qinq.pcap"

NEVER = ("dask", "distributed", "pyarrow", "scipy.linalg", "scipy.stats", "cffi", "pycparser", "rich")
NOT_ON_THE_CONNECTIONS_PATH = ("netdiag.partitions", "netdiag.cluster", "netdiag.logons", "netdiag.report")


def _loaded(code: str) -> set[str]:
    """The modules loaded by running `code` in a fresh interpreter (from the repository root)."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


def _offenders(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == n or m.startswith(n + ".") for n in names))


def test_importing_the_cli_loads_none_of_the_heavy_optional_modules() -> None:
    loaded = _loaded("import netdiag.cli")
    assert not _offenders(loaded, NEVER + NOT_ON_THE_CONNECTIONS_PATH)
    assert "typer" in loaded and "polars" in loaded   # the check itself sees imports


def test_a_connections_run_loads_only_its_stage() -> None:
    loaded = _loaded("import sys\nfrom netdiag.cli import app\n"
                     f"app([\"connections\", {str(TINY)!r}, \"--parquet\", \"/dev/null\"], standalone_mode=False)")
    assert not _offenders(loaded, NEVER + NOT_ON_THE_CONNECTIONS_PATH)
    assert "netdiag.tcp" in loaded and "numba" in loaded
