"""Piped tables are written without rich's per-cell objects, and read exactly as rich renders them.

`netdiag logons big.pcap > logons.txt` spent 35 s in rich for 23,520 logons (after a 40 s
analysis); piped output now joins the strings itself (`netdiag.output._plain_table`). The oracle
is rich: the same columns, widths and rows rendered by rich's Table (`_rich_table`, what a
terminal gets) must give the same characters, on the tables of real captures and on seeded
cells with spaces, empty cells, accents, combining marks, wide (CJK) characters and emoji, with
titles short and long. Cells rich would treat differently (control characters) go to rich.
"""

from __future__ import annotations

import functools
import io
import random
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from netdiag.analyze import analyze
from netdiag.commands import connections as conn_cmd
from netdiag.commands import logons as logon_cmd
from netdiag.commands import transactions as txn_cmd
from netdiag.output import _column, _plain_table, _rich_table, column_of, print_table, table_width

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = [ROOT / "captures" / "sample" / "epj-logon.pcap", ROOT / "captures" / "lab" / "loss_s2c.pcap"]


@functools.cache
def _tables(cap: Path) -> dict[str, pl.DataFrame]:
    a = analyze([cap])
    return {"connections": conn_cmd.pretty(a.connections), "transactions": txn_cmd.pretty(a.transactions),
            "logons": logon_cmd.pretty_logons(a.logons), "findings": a.findings}


def _both(df: pl.DataFrame, title: str | None, right: tuple[str, ...] = (), width: int = 80) -> tuple[str | None, str]:
    """(the fast text, rich's text) for every column of `df`, each at its natural width."""
    cols = [_column(n, df.schema[n], df[n].to_list()) for n in df.columns]
    widths = [c.natural for c in cols]
    buf = io.StringIO()
    con = Console(file=buf, width=width, color_system=None)
    _rich_table(con, title, cols, widths, right, df.height, max(width, table_width(widths)))
    return _plain_table(title, cols, widths, right), buf.getvalue()


@pytest.mark.parametrize("cap", CAPTURES, ids=lambda p: p.stem)
def test_real_tables_read_as_rich_renders_them(cap: Path) -> None:
    for name, df in _tables(cap).items():
        assert df.height, name
        plain, rich_text = _both(df, name, right=("duration",))
        assert plain is not None, name
        assert plain == rich_text, name


def test_seeded_cells_read_as_rich_renders_them() -> None:
    rng = random.Random(20261206)
    alphabet = ["a", "Z", "0", " ", ".", ":", "[", "]", "é", "e\u0301", "東", "京", "ß", "✓", "…", "-", "_"]
    checked = 0
    for _ in range(150):
        n_cols = rng.randint(1, 5)
        data = {}
        for k in range(n_cols):
            cells = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(0, 6))]
            # (most cells without spaces at their ends: those go to rich, and are checked there)
            data[f"c{k}"] = [c.strip() if rng.random() < 0.8 else c for c in cells]
        height = min(len(v) for v in data.values())
        df = pl.DataFrame({k: v[:height] for k, v in data.items()}, schema={k: pl.String for k in data})
        if rng.random() < 0.3:
            df = df.with_columns(n=pl.Series(rng.sample(range(-10**6, 10**6), df.height), dtype=pl.Int64))
        title = rng.choice([None, "t", "logons", "a title longer than most of these tables are wide"])
        right = ("c0",) if rng.random() < 0.5 else ()
        plain, rich_text = _both(df, title, right)
        if plain is not None:
            assert plain == rich_text, (df, title, right)
            checked += 1
    assert checked >= 100


def test_control_characters_go_to_rich() -> None:
    df = pl.DataFrame({"a": ["x\x07y", "ok"]})
    cols = [_column("a", pl.String, df["a"].to_list())]
    assert _plain_table("t", cols, [cols[0].natural], ()) is None
    buf = io.StringIO()
    print_table(df, title="t", console=Console(file=buf, width=80, color_system=None))
    assert "ok" in buf.getvalue()


def test_piped_print_table_is_the_fast_text() -> None:
    """print_table on a console that is not a terminal writes every row, as rich would."""
    df = _tables(CAPTURES[1])["transactions"]
    buf = io.StringIO()
    print_table(df, columns=txn_cmd.DEFAULT, title="transactions", console=Console(file=buf, width=80,
                                                                                     color_system=None))
    plain, rich_text = _both(df, "transactions")
    assert buf.getvalue() == rich_text
    assert len(buf.getvalue().splitlines()) == df.height + 5   # title, top, header, rule, rows, bottom


def test_cells_made_column_wise_equal_the_per_cell_reference() -> None:
    """column_of (polars, per distinct value) makes the cells, widths and free-text verdict that
    _column makes value by value, on real tables and on seeded columns with nulls, newlines,
    wide characters, addresses and long text."""
    frames = [df for cap in CAPTURES for df in _tables(cap).values()]
    rng = random.Random(6122026)
    words = ["10.1.2.3:51142", "[2001:db8::1]:443", "get_worklist", "a b", "x" * 30, "東京", "line\nbreak", "", "é",
             "tab\there", "bell\x07", "del\x7f"]
    for _ in range(40):
        h = rng.randint(0, 30)
        frames.append(pl.DataFrame({
            "i": pl.Series([rng.choice([None, rng.randint(-10**12, 10**12)]) for _ in range(h)], dtype=pl.Int64),
            "u": pl.Series([rng.randint(0, 65535) for _ in range(h)], dtype=pl.UInt16),
            "s": pl.Series([rng.choice([None, *words]) for _ in range(h)], dtype=pl.String),
            "wait_s": pl.Series([rng.choice([None, rng.random() * 10 ** rng.randint(-6, 3)]) for _ in range(h)]),
            "ok": pl.Series([rng.choice([None, True, False]) for _ in range(h)], dtype=pl.Boolean),
        }))
    # cells whose width is not their length: control characters (rich counts them as no cell)
    frames.append(pl.DataFrame({"s": ["tab\there", "ab"], "t": ["bell\x07\x07", None]}))
    for df in frames:
        for name in df.columns:
            assert column_of(name, df[name]) == _column(name, df.schema[name], df[name].to_list()), name
