"""Writing tables for people and tools: a readable terminal table, JSON, CSV, Parquet.

Every table command shares these options, so `connections`, `transactions`, `logons` and
`findings` behave alike.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl

from netdiag.errors import UsageError


def to_json_rows(df: pl.DataFrame) -> str:
    """A JSON array of row objects (nested lists kept as arrays, nulls as null)."""
    return json.dumps(df.to_dicts(), default=str, indent=None, separators=(",", ":"))


def emit(df: pl.DataFrame, *, as_json: bool = False, as_csv: bool = False, parquet: Path | None = None,
         pretty_columns: list[str] | None = None, title: str | None = None, max_rows: int = 200) -> None:
    """Write `df` the way the user asked: JSON or CSV on stdout, Parquet to a file, else a table."""
    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    if parquet is not None:
        parquet.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(parquet)
    if as_json:
        sys.stdout.write(to_json_rows(df) + "\n")
        return
    if as_csv:
        flat = df.with_columns([pl.col(c).cast(pl.List(pl.String)).list.join(" ")
                                for c, t in df.schema.items() if isinstance(t, pl.List)])
        sys.stdout.write(flat.write_csv())
        return
    if parquet is not None:
        print(f"wrote {len(df)} rows to {parquet}", file=sys.stderr)
        return
    print_table(df, columns=pretty_columns, title=title, max_rows=max_rows)


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1e6 else f"{value:.3g}"
    if isinstance(value, list):
        return " ".join(str(v) for v in value[:8]) + (" ..." if len(value) > 8 else "")
    return str(value)


def print_table(df: pl.DataFrame, *, columns: list[str] | None = None, title: str | None = None,
                max_rows: int = 200) -> None:
    """A readable terminal table of the chosen columns (all when None)."""
    from rich.console import Console
    from rich.table import Table

    cols = [c for c in (columns or df.columns) if c in df.columns]
    table = Table(title=title, show_lines=False, header_style="bold")
    for c in cols:
        numeric = df.schema[c].is_numeric()
        table.add_column(c, justify="right" if numeric else "left", overflow="fold")
    for row in df.select(cols).head(max_rows).iter_rows():
        table.add_row(*(_fmt(v) for v in row))
    console = Console(width=max(Console().width, 160))
    console.print(table)
    if len(df) > max_rows:
        console.print(f"... {len(df) - max_rows} more rows (use --json, --csv or --parquet for all)")
