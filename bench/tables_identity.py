"""Check that a change leaves netdiag's tables as they were, on every capture in captures/.

    python bench/tables_identity.py write DIR      # analyse every capture, keep its tables in DIR
    python bench/tables_identity.py check DIR      # analyse again, compare with DIR; exit 1 on a difference

Every capture file under captures/ is analysed in-process with the built-in profile (no --out
staging, so this is quick); its connections, transactions, logons and findings tables are written
as Parquet under DIR/<capture path>/. `check` compares frame by frame (column names, types, values,
row order) and prints each difference. Refactors that must not change results are measured with it.
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = {".pcap", ".pcapng", ".cap", ".gz"}
TABLES = ("connections", "transactions", "logons", "findings")


def captures() -> list[Path]:
    """Every capture file under captures/, sorted."""
    return sorted(p for p in (ROOT / "captures").rglob("*") if p.is_file() and p.suffix in SUFFIXES)


def tables_of(path: Path) -> dict[str, pl.DataFrame] | str:
    """The four tables of one capture, or the error text when it cannot be analysed."""
    from netdiag.analyze import analyze

    try:
        a = analyze([path])
    except Exception as exc:  # noqa: BLE001 - a capture that fails is reported, not fatal
        return f"{type(exc).__name__}: {exc}"
    return {name: getattr(a, name) for name in TABLES}


def _relative(error: str) -> str:
    """An error text with the checkout's absolute path left out (DIR may come from another checkout)."""
    return re.sub(r"\S*?(?=captures/)", "", error)


def main(argv: list[str]) -> int:
    """Write or check the tables of every capture."""
    if len(argv) != 2 or argv[0] not in ("write", "check"):
        print(__doc__)
        return 2
    mode, out = argv[0], Path(argv[1])
    bad = 0
    for cap in captures():
        rel = cap.relative_to(ROOT)
        d = out / rel
        got = tables_of(cap)
        if mode == "write":
            d.mkdir(parents=True, exist_ok=True)
            if isinstance(got, str):
                (d / "error.txt").write_text(got)
            else:
                for name, df in got.items():
                    df.write_parquet(d / f"{name}.parquet")
            continue
        if (d / "error.txt").exists() or isinstance(got, str):
            want = (d / "error.txt").read_text() if (d / "error.txt").exists() else "tables"
            if _relative(want) != _relative(got if isinstance(got, str) else "tables"):
                bad += 1
                print(f"{rel}: was {want!r}, now {got if isinstance(got, str) else 'tables'!r}")
            continue
        for name, df in got.items():
            ref = pl.read_parquet(d / f"{name}.parquet")
            try:
                from polars.testing import assert_frame_equal
                assert_frame_equal(ref, df)
            except AssertionError as exc:
                bad += 1
                print(f"{rel} {name}: {str(exc).splitlines()[0]}")
            except Exception:  # noqa: BLE001
                bad += 1
                print(f"{rel} {name}: {traceback.format_exc(limit=1)}")
    n = len(captures())
    if mode == "check":
        print(f"{n} captures, {bad} differences")
    else:
        print(f"{n} captures written to {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
