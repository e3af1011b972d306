"""Writing output for people and tools: terminal tables, JSON, CSV, Parquet, and every file on disk.

Every table command shares these options, so `connections`, `transactions`, `logons`,
`findings` and `packets` behave alike. Every file and directory netdiag writes goes through `StagedFile` /
`StagedDir` below: never through a symlink, never half-written (see that section's comment).

The terminal table follows what `ls`, `ps` and tshark do:

- On a terminal it fits the terminal's width (rich reads `COLUMNS`, else asks the terminal):
  each command shows a short default set of columns, `--columns a,b,c` chooses others and
  `--wide` shows every column at full width (for `less -S`). Numbers, addresses (`ip:port`)
  and identifiers are never cut or wrapped; free text (values with spaces, or longer than
  TEXT_CUT characters) is cut with an ellipsis when space is short, before any address it holds,
  never inside one (`cut_text`). When even that does not fit,
  the last default columns are left out and one line says which (`--wide`/`--columns` bring
  them back). A row is always one line.
- Piped or redirected (not a terminal) every column is written, whole, every row: grep and awk
  see full rows whatever the width.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import polars as pl
import typer

from netdiag.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

TEXT_CUT = 24          # a text value longer than this (or holding a space) may be cut with an ellipsis
TEXT_MIN = 12          # ... but never below this many characters (or its header's width)
MAX_TTY_ROWS = 200     # rows shown on a terminal (piped output has every row)

# An address with an optional port: IPv4 "10.1.2.3:51142", IPv6 "[2001:db8::1]:443" or bare.
_ADDRESS_RE = re.compile(r"^(?:\d{1,3}(?:\.\d{1,3}){3}|\[?[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*\]?)(?::\d{1,5})?$")


def to_json_rows(df: pl.DataFrame) -> str:
    """A JSON array of row objects (nested lists kept as arrays, nulls as null)."""
    return json.dumps(df.to_dicts(), default=str, indent=None, separators=(",", ":"))


def endpoint(ip: str, port: str) -> pl.Expr:
    """`ip:port` for a terminal column (IPv6 as `[addr]:port`, as Wireshark writes it); no port -> the ip."""
    return (pl.when(pl.col(port).is_null()).then(pl.col(ip))
            .when(pl.col(ip).str.contains(":")).then(pl.format("[{}]:{}", ip, port))
            .otherwise(pl.format("{}:{}", ip, port)))


def parse_columns(spec: str | None) -> list[str] | None:
    """`--columns a,b,c` -> ["a", "b", "c"] (None when not given)."""
    if spec is None:
        return None
    cols = [c.strip() for c in spec.split(",") if c.strip()]
    if not cols:
        raise UsageError("--columns: give column names separated by commas, e.g. --columns conn_id,client,server")
    return cols


def emit(df: pl.DataFrame, *, as_json: bool = False, as_csv: bool = False, parquet: Path | None = None,
         pretty_columns: list[str] | None = None, title: str | None = None, max_rows: int = MAX_TTY_ROWS,
         view: pl.DataFrame | None = None, columns: list[str] | None = None, wide: bool = False) -> None:
    """Write `df` the way the user asked: JSON or CSV on stdout, Parquet to a file, else a table.

    The terminal table shows `view` (default: `df`), a people-friendly rendering of the same rows;
    `pretty_columns` are its default columns, `columns` (--columns) the user's choice, `wide`
    (--wide) every column.
    """
    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    if parquet is not None:
        write_file(parquet, df.write_parquet)
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
    print_table(df if view is None else view, columns=pretty_columns, title=title, max_rows=max_rows,
                chosen=columns, wide=wide)


def _fmt(value: object, name: str = "") -> str:
    """A cell for people: seconds (`*_s`, `seconds_*`) by fmt_s ("38 µs", "2.40 s"), shares as percentages."""
    if value is None:
        return ""
    if isinstance(value, float):
        from netdiag.words import fmt_pct, fmt_s

        if name.endswith("_s") or name.startswith("seconds_"):
            return fmt_s(value)
        if name.endswith("share"):
            return fmt_pct(value)
        return f"{value:.3f}" if abs(value) < 1e6 else f"{value:.3g}"
    if isinstance(value, list):
        return " ".join(str(v) for v in value[:8]) + (" ..." if len(value) > 8 else "")
    return str(value).replace("\n", " ")


@dataclass
class _Col:
    name: str
    cells: list[str]
    numeric: bool
    natural: int          # widest cell or header
    minimum: int          # narrowest it may become (== natural unless free text)


def _column(name: str, dtype: pl.DataType, values: list[object]) -> _Col:
    from rich.cells import cell_len

    cells = [_fmt(v, name) for v in values]
    natural = max([cell_len(name), *(cell_len(c) for c in cells)])
    text = not dtype.is_numeric() and any((" " in c or cell_len(c) > TEXT_CUT) and not _ADDRESS_RE.match(c)
                                          for c in cells)
    minimum = max(cell_len(name), min(natural, TEXT_MIN)) if text else natural
    return _Col(name, cells, dtype.is_numeric(), natural, minimum)


def column_of(name: str, values: pl.Series) -> _Col:
    """`_column(name, values.dtype, values.to_list())`, the cells made column-wise: integers and
    strings by polars, other values formatted once per distinct value (a piped table of 350 k
    transactions has millions of cells; _fmt and cell_len per cell took seconds)."""
    from rich.cells import cell_len

    dtype = values.dtype
    if dtype.is_integer():
        text_cells = values.cast(pl.String).fill_null("")
    elif dtype == pl.String:
        text_cells = values.str.replace_all("\n", " ", literal=True).fill_null("")
    else:
        return _column(name, dtype, values.to_list())
    cells = text_cells.to_list()
    if text_cells.str.contains(r"[^\x20-\x7e]").any():   # (not printable ASCII: rich's cell widths)
        natural = max([cell_len(name), *(cell_len(c) for c in cells)])
    else:
        natural = max(cell_len(name), int(text_cells.str.len_bytes().max() or 0))
    text = False
    if not dtype.is_numeric():
        # the cells that could be free text: with a space, or maybe wider than TEXT_CUT cells
        maybe = text_cells.filter(text_cells.str.contains(" ", literal=True)
                                  | (text_cells.str.len_chars() * 2 > TEXT_CUT)).to_list()
        text = any((" " in c or cell_len(c) > TEXT_CUT) and not _ADDRESS_RE.match(c) for c in maybe)
    minimum = max(cell_len(name), min(natural, TEXT_MIN)) if text else natural
    return _Col(name, cells, dtype.is_numeric(), natural, minimum)


_ADDRESS_IN_TEXT_RE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,}")


def cut_text(text: str, width: int) -> str:
    """`text` in at most `width` cells, ending in an ellipsis when cut; never inside an address.

    An address (`10.1.2.3:51142`, `[2001:db8::1]:443`) that would be cut is left out whole, so what
    is shown of it is always right.
    """
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) <= width:
        return text
    head = set_cell_size(text, max(width - 1, 0)).rstrip()
    start = max(head.rfind(" "), head.rfind("("), head.rfind(","), head.rfind("=")) + 1
    end = len(text)
    for sep in " ),;":
        i = text.find(sep, start)
        if i != -1:
            end = min(end, i)
    if end > len(head) and _ADDRESS_IN_TEXT_RE.search(text[start:end]):   # the cut falls inside an address
        head = text[:start].rstrip()
    return head + "…"


def table_width(widths: list[int]) -> int:
    """Characters a rendered table of these column widths takes (heavy-head box, no edge padding)."""
    return sum(widths) + 3 * len(widths) - 1 if widths else 0


def _fit(cols: list[_Col], width: int, *, may_drop: bool) -> tuple[list[_Col], list[int], list[str]]:
    """Column widths that fit `width`: cut free text (last columns first), then drop columns from the end."""
    hidden: list[str] = []
    cols = list(cols)
    while True:
        widths = [c.natural for c in cols]
        excess = table_width(widths) - width
        if excess <= 0:
            return cols, widths, hidden
        # cut free text from the last column backwards: the first columns are the ones needed most
        for i in range(len(cols) - 1, -1, -1):
            cut = min(excess, widths[i] - cols[i].minimum)
            if cut > 0:
                widths[i] -= cut
                excess -= cut
        if excess <= 0 or not may_drop or len(cols) <= 1:
            return cols, widths, hidden
        hidden.insert(0, cols.pop().name)


def _plain_table(title: str | None, cols: list[_Col], widths: list[int], right: Sequence[str]) -> str | None:
    """The text rich prints for print_table's table when every cell is shown whole and uncoloured,
    made by joining strings column-wise: rich builds objects per cell, which took 35 s for the
    23,520 logons of 2 M packets piped to a file (the analysis took 40). None when rich must do
    it: a cell with a control or non-printable character or with a space at either end, a title
    wider than the table, no columns."""
    if not cols or any(w < c.natural for c, w in zip(cols, widths, strict=True)):
        return None
    from rich.cells import cell_len

    tw = table_width(widths)
    if title is not None and (not title.isprintable() or cell_len(title) > tw):
        return None
    n = len(cols)
    # rich's heavy-head box without edge padding: no space left of the first column or right of the last
    pads = [(0 if i == 0 else 1, 0 if i == n - 1 else 1) for i in range(n)]
    spans = [w + a + b for w, (a, b) in zip(widths, pads, strict=True)]
    rule = lambda left, fill, mid, end: left + mid.join(fill * k for k in spans) + end + "\n"  # noqa: E731
    header: list[str] = []
    body: list[pl.Series] = []
    for c, w, (a, b) in zip(cols, widths, pads, strict=True):
        righted = c.numeric or c.name in right
        head = _padded([c.name], w, righted)
        column = pl.Series(c.cells, dtype=pl.String)
        # printable ASCII without a space at either end: polars pads it as rich does
        if column.str.contains(r"^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$").all():
            cells: pl.Series | None = column.str.pad_start(w) if righted else column.str.pad_end(w)
        else:
            padded = _padded(c.cells, w, righted)
            cells = None if padded is None else pl.Series(padded, dtype=pl.String)
        if head is None or cells is None:
            return None
        header.append(" " * a + head[0] + " " * b)
        body.append(((" " * a + cells + " " * b) if a or b else cells).alias(f"c{len(body)}"))
    lines = []
    if title is not None:
        lines.append(title + " " * (tw - cell_len(title)) + "\n")
    lines.append(rule("┏", "━", "┳", "┓"))
    lines.append("┃" + "┃".join(header) + "┃\n")
    lines.append(rule("┡", "━", "╇", "┩"))
    if cols[0].cells:
        rows = pl.DataFrame(body).select(pl.concat_str(pl.all(), separator="│")).to_series().to_list()
        lines.append("│" + "│\n│".join(rows) + "│\n")
    lines.append(rule("└", "─", "┴", "┘"))
    return "".join(lines)


def _padded(cells: list[str], width: int, righted: bool) -> list[str] | None:
    """Cells padded to `width` terminal cells, as rich justifies them; None when a cell is one
    rich treats its own way (a control or non-printable character, a space at either end)."""
    from rich.cells import cell_len

    out = []
    for v in cells:
        if not v.isprintable() or v[:1] == " " or v[-1:] == " ":
            return None
        gap = " " * (width - (len(v) if v.isascii() else cell_len(v)))
        out.append(gap + v if righted else v + gap)
    return out


def _rich_table(con: Console, title: str | None, cols: list[_Col], widths: list[int], right: Sequence[str],
                n_rows: int, render_width: int) -> None:
    """print_table's table through rich (free text cut to its width here, never inside an address)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False, header_style="bold", box=box.HEAVY_HEAD, pad_edge=False,
                  title_justify="left")
    for c, w in zip(cols, widths, strict=True):
        table.add_column(c.name, justify="right" if c.numeric or c.name in right else "left", width=w, no_wrap=True,
                         overflow="ellipsis", min_width=w, max_width=w)
    for c, w in zip(cols, widths, strict=True):
        if w < c.natural:                 # cut free text ourselves: never inside an address
            c.cells = [cut_text(v, w) for v in c.cells]
    for i in range(n_rows):
        table.add_row(*(Text(c.cells[i]) for c in cols))   # Text: "[fe80::1]:0" is not rich markup
    old_width = con.width
    con.width = render_width
    try:
        con.print(table, crop=False, soft_wrap=False)
    finally:
        con.width = old_width


def print_table(df: pl.DataFrame, *, columns: list[str] | None = None, title: str | None = None,
                max_rows: int = MAX_TTY_ROWS, chosen: list[str] | None = None, wide: bool = False,
                console: Console | None = None, right: Sequence[str] = (), whole: Sequence[str] = ()) -> None:
    """A terminal table of `df`: default `columns` fitted to the terminal, or every column when piped.

    `chosen` (--columns) and `wide` (--wide) override the defaults; `console` is a rich Console
    (tests pass one with a fixed width; default: stdout's); `right` names text columns that hold
    numbers with their unit ("1.25 s"), right-aligned like numeric columns and, like the `whole`
    columns, never cut (left out whole when the terminal is too narrow).
    """
    from rich.console import Console

    con = console if console is not None else Console()
    tty = con.is_terminal
    if chosen:
        unknown = [c for c in chosen if c not in df.columns]
        if unknown:
            raise UsageError(f"--columns: no column {', '.join(map(repr, unknown))}; this table has: "
                             + ", ".join(df.columns))
        names = list(chosen)
    elif wide or not tty or not columns:
        names = list(df.columns)
    else:
        names = [c for c in columns if c in df.columns]
    full = wide or not tty                      # every column whole, every row when piped
    shown = df if not tty else df.head(max_rows)
    rows = shown.select(names)
    cols = [column_of(n, rows[n]) for n in names]
    for c in cols:
        if c.name in right or c.name in whole:     # a cut number or verdict would mislead
            c.minimum = c.natural
    hidden: list[str] = []
    if full:
        widths = [c.natural for c in cols]
    else:
        cols, widths, hidden = _fit(cols, con.width, may_drop=not chosen)
    render_width = max(con.width, table_width(widths)) if full or chosen else con.width
    plain = _plain_table(title, cols, widths, right) if full and con.color_system is None else None
    if plain is not None:   # (piped: every row, written as rich writes it, without objects per cell)
        con.file.write(plain)
        con.file.flush()
    else:
        _rich_table(con, title, cols, widths, right, rows.height, render_width)
    notes = []
    if tty and len(df) > max_rows:
        notes.append(f"... {len(df) - max_rows} more rows (pipe the output, or use --json, --csv or --parquet, "
                     "for all)")
    if hidden:
        notes.append(f"{len(hidden)} column{'s' if len(hidden) != 1 else ''} left out to fit {con.width} "
                     f"characters: {', '.join(hidden)} (--columns or --wide shows them)")
    for n in notes:
        con.print(n, markup=False, highlight=False, width=con.width)


# The `--columns` and `--wide` options every table command shares.
ColumnsOpt = Annotated[str | None, typer.Option(
    "--columns", help="terminal table: show these columns, comma-separated (--wide shows them all)",
    show_default=False)]
WideOpt = Annotated[bool, typer.Option(
    "--wide", help="terminal table: every column, nothing cut (lines may be wider than the terminal)")]


# ------------------------------------------------------------------------------------------
# Writing files and directories safely
# ------------------------------------------------------------------------------------------
# Every file netdiag writes is created with O_CREAT|O_EXCL|O_NOFOLLOW inside a fresh private
# directory (mkdtemp, mode 0700) made next to the target, then renamed into place. So:
#   - nothing is ever written through a symlink someone planted in (or as) the output path:
#     O_EXCL refuses any existing name and rename() replaces a link instead of following it;
#   - a crash or a kill mid-write leaves the previous output complete and untouched: a whole
#     output directory is swapped in with one renameat2(RENAME_EXCHANGE) (Linux), so there is
#     never a mix of new tables and an old report;
#   - an unwritable place (read-only file system, a path under a regular file, no permission)
#     shows up when the staging directory is made, before any analysis starts.
# A directory is "netdiag's own" (may be replaced without --force) only when its marker file is
# a regular file holding netdiag's JSON record of what wrote it; an empty or foreign marker
# does not count.

STAGING_TAG = ".netdiag-tmp-"
MARKER_MAX_BYTES = 1 << 20
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_new(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a new file for writing; never follows a symlink and never reuses an existing name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o666)
    return os.fdopen(fd, "wb")


def _unwritable(target: Path, exc: OSError) -> UsageError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EROFS:
        reason = "read-only file system"
    elif exc.errno == errno.ENOTDIR:
        reason = "a part of the path is a file, not a directory"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    return UsageError(f"{target}: cannot write here ({reason}); choose another output path")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _make_staging(target: Path, known_names: frozenset[str] = frozenset()) -> Path:
    """A fresh private directory beside `target` (same file system, so rename works)."""
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(target, known_names)
        return Path(tempfile.mkdtemp(prefix=f".{target.name}{STAGING_TAG}{os.getpid()}-", dir=parent))
    except FileExistsError as exc:          # a parent component exists and is a file
        raise _unwritable(target, OSError(errno.ENOTDIR, "not a directory")) from exc
    except OSError as exc:
        raise _unwritable(target, exc) from None


def _remove_stale_staging(target: Path, known_names: frozenset[str]) -> None:
    """Remove staging directories of this target left by a killed netdiag process.

    Only when the process that made it is gone and it holds nothing but netdiag's own output
    names (a crash after the swap may leave a user's files there: those are never deleted).
    """
    prefix = f".{target.name}{STAGING_TAG}"
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for e in entries:
        if not e.name.startswith(prefix) or not e.is_dir(follow_symlinks=False):
            continue
        pid_text = e.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        try:   # (a nested staging directory, e.g. of one sanitised file, counts as ours too)
            names = {n for n in os.listdir(e.path) if STAGING_TAG not in n}
        except OSError:
            continue
        if known_names and names <= known_names:
            shutil.rmtree(e.path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def read_marker(directory: Path, marker: str) -> dict[str, Any] | None:
    """The marker record of `directory`, or None when absent, a link, empty, not JSON or not netdiag's."""
    p = directory / marker
    try:
        st = os.lstat(p)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0 or st.st_size > MARKER_MAX_BYTES:
        return None
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            record = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or record.get("tool") != "netdiag" or not record.get("version"):
        return None
    return record


def is_ours(directory: Path, marker: str, kind: str) -> bool:
    """True when `directory` carries netdiag's marker record of this kind (report, case, sanitized...).

    Report markers written before markers had a "kind" (tool, version, captures, files) still count.
    """
    record = read_marker(directory, marker)
    if record is None:
        return False
    if "kind" not in record and kind == "report" and isinstance(record.get("files"), list):
        return True
    return record.get("kind") == kind


def marker_record(kind: str, command: str, **facts: Any) -> dict[str, Any]:
    """What wrote an output: tool, version, kind, command, time (UTC), plus `facts` (capture names...).

    `command` names the command only ("netdiag analyze"), never its paths or key file: the
    marker of a case bundle travels to a vendor.
    """
    from netdiag import __version__

    return {"tool": "netdiag", "version": __version__, "kind": kind, "command": command,
            "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **facts}


def _move_foreign(old: Path, new: Path, ours: frozenset[str] | set[str]) -> None:
    """Move the entries of `old` that are not netdiag's (and not already in `new`) into `new` (no copying)."""
    with os.scandir(old) as entries:
        for e in entries:
            if e.name not in ours and not os.path.lexists(new / e.name):
                os.rename(e.path, new / e.name)


class StagedDir:
    """An output directory written whole beside its target, then swapped in (see the section comment).

        out = StagedDir(Path("netdiag-report"), marker=".netdiag-report", kind="report", force=False)
        out.write_text("report.md", text)          # into the private staging directory
        out.commit(marker_record("report", captures=[...]))

    Construction checks the target (not a file, not a link, ours or empty unless `force`) and
    makes the staging directory, so an unusable --out fails before any work. Entries of an
    existing target that neither this run nor the one before it (its marker's file list) wrote,
    such as a user's notes.txt or tables/my.sql, are moved into the new directory; the old
    output is removed only after the new one is in place. `abort()` (or leaving a
    `with` block by an exception) removes the staging directory and leaves the target alone.
    """

    def __init__(self, target: str | os.PathLike[str], *, marker: str, kind: str, force: bool = False,
                 output_names: Sequence[str] = ()) -> None:
        self.target = Path(os.path.abspath(target))   # "." and "x/.." get a real name and parent
        self.marker = marker
        self.kind = kind
        self.output_names = frozenset([marker, *output_names])
        check_out_dir(self.target, marker=marker, kind=kind, force=force)
        self.path = _make_staging(self.target, self.output_names)
        self.written: list[str] = []

    def __enter__(self) -> StagedDir:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()

    def file(self, relative: str) -> Path:
        """Path of a new file in the staging directory (parents made); the caller creates it."""
        p = self.path / relative
        if p.parent != self.path:
            p.parent.mkdir(parents=True, exist_ok=True)
        if relative not in self.written:
            self.written.append(relative)
        return p

    def open(self, relative: str) -> BinaryIO:
        """A new file in the staging directory, opened O_EXCL|O_NOFOLLOW for writing."""
        return open_new(self.file(relative))

    def write_bytes(self, relative: str, data: bytes) -> Path:
        """Write a whole file into the staging directory."""
        with self.open(relative) as fh:
            fh.write(data)
        return self.target / relative

    def write_text(self, relative: str, text: str) -> Path:
        """Write a whole UTF-8 text file into the staging directory."""
        return self.write_bytes(relative, text.encode("utf-8"))

    def commit(self, record: dict[str, Any]) -> list[Path]:
        """Write the marker (with the list of files) and swap the staging directory in."""
        record = {**record, "files": sorted(self.written)}
        self.write_text(self.marker, json.dumps(record, indent=2) + "\n")
        os.chmod(self.path, 0o777 & ~_umask())
        target = self.target
        try:
            if not os.path.lexists(target):
                os.rename(self.path, target)
                return self._done()
            check_out_dir(target, marker=self.marker, kind=self.kind, force=True)   # still a real directory
            previous = read_marker(target, self.marker) or {}     # what an earlier run wrote there
            os.chmod(self.path, stat.S_IMODE(os.stat(target).st_mode))   # the directory keeps its permissions
            old = self._swap(target)
        except OSError as exc:   # nothing was swapped: the target is as it was
            self.abort()
            raise _unwritable(target, exc) from None
        # The new output is in place; the old one (at `old`) still holds a user's own files: everything
        # neither this run nor the earlier one (its marker's file list) wrote, e.g. notes.txt, tables/my.sql
        ours = set(self.written) | {str(f) for f in previous.get("files", []) if isinstance(f, str)}
        keep = self.output_names | {p.split("/", 1)[0] for p in ours}
        try:
            _move_foreign(old, target, keep)
            for name in keep - {self.marker}:
                if (old / name).is_dir() and not (old / name).is_symlink() and (target / name).is_dir() \
                        and not (target / name).is_symlink():
                    _move_foreign(old / name, target / name, {p.split("/", 1)[1] for p in ours
                                                              if p.startswith(name + "/")})
        except OSError as exc:
            raise UsageError(f"{target}: the new output is in place, but files of yours could not be moved over "
                             f"from the previous one; they are in {old} ({exc.strerror or exc})") from None
        shutil.rmtree(old, ignore_errors=True)
        return self._done()

    def _swap(self, target: Path) -> Path:
        """Put the staging directory at `target`; returns where the previous output now is."""
        if _exchange(self.path, target):
            return self.path
        old = self.path.with_name(self.path.name + "-old")   # no renameat2: two renames, a short gap
        os.rename(target, old)
        try:
            os.rename(self.path, target)
        except OSError:
            os.rename(old, target)
            raise
        return old

    def _done(self) -> list[Path]:
        return [self.target / f for f in sorted(self.written) if f != self.marker]

    def abort(self) -> None:
        """Remove the staging directory; the target stays as it was."""
        shutil.rmtree(self.path, ignore_errors=True)


def check_out_dir(out: Path, *, marker: str, kind: str, force: bool = False) -> None:
    """Refuse an --out that is a link, not a directory, a mount point, or someone else's (unless force)."""
    if os.path.islink(out):
        raise UsageError(f"{out}: is a symbolic link; netdiag does not write through links (give the real "
                         "directory)")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory; choose another --out")
    cwd = Path.cwd().resolve()
    if out.is_dir() and (out.resolve() == cwd or out.resolve() in cwd.parents):
        raise UsageError(f"{out}: is the current directory (or holds it); give a directory for the output, "
                         "e.g. --out netdiag-report")
    if out.is_dir():
        if os.path.ismount(out):
            raise UsageError(f"{out}: is a mount point; give a directory inside it (netdiag swaps the whole "
                             "output directory in when it is complete)")
        try:
            empty = not any(os.scandir(out))
        except OSError as exc:
            raise _unwritable(out, exc) from None
        if not empty and not force and not is_ours(out, marker, kind):
            raise UsageError(f"{out}: directory exists and was not written by netdiag (no valid {marker} record "
                             "in it); choose another --out, or pass --force to write into it anyway")


class StagedFile:
    """One output file written beside its target and renamed into place (see the section comment).

    Construction makes the staging directory (so an unwritable path fails before any work);
    `path` is where the writer puts the file (a fresh name in a private directory), `commit()`
    renames it over the target: an existing file or link at the target is replaced, never
    written through.
    """

    def __init__(self, target: str | os.PathLike[str], *, overwrite: bool = True) -> None:
        self.target = Path(os.path.abspath(target))
        if self.target.is_dir() and not self.target.is_symlink():
            raise UsageError(f"{self.target}: is a directory; give a file name")
        # A character device or a FIFO (`--parquet /dev/null`, a named pipe to another program) is
        # written straight into: renaming a file over it would replace the device itself (run as
        # root, `--parquet /dev/null` left /dev/null a regular file for every process on the machine).
        # A symlink is never followed, whatever it points at.
        self.special = _is_special(self.target)
        if not overwrite and os.path.lexists(self.target) and not self.special:
            raise UsageError(f"{self.target} exists; use --force to overwrite it")
        if self.special:   # (a private directory elsewhere for a writer's scratch files: see sanitize)
            self.dir = Path(tempfile.mkdtemp(prefix=".netdiag-"))
            self.path = self.target
            return
        self.dir = _make_staging(self.target, frozenset([self.target.name]))
        self.path = self.dir / self.target.name

    def __enter__(self) -> StagedFile:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()

    def open(self) -> BinaryIO:
        """The new file, opened O_EXCL|O_NOFOLLOW for writing (a device or FIFO target: itself)."""
        if self.special:
            try:
                fd = os.open(self.target, os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise _unwritable(self.target, exc) from None
            return os.fdopen(fd, "wb")
        return open_new(self.path)

    def commit(self) -> Path:
        """Rename the written file into place and remove the staging directory."""
        if self.special:
            self.abort()
            return self.target
        try:
            os.rename(self.path, self.target)
        except OSError as exc:
            self.abort()
            raise _unwritable(self.target, exc) from None
        self.abort()
        return self.target

    def abort(self) -> None:
        """Remove the staging directory (and the unfinished file in it)."""
        shutil.rmtree(self.dir, ignore_errors=True)


def _is_special(path: Path) -> bool:
    """`path` is (not a link to) a character device or a FIFO."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def write_file(target: str | os.PathLike[str], write: Callable[[BinaryIO], object], *,
               overwrite: bool = True) -> Path:
    """Write one file safely: `write(fh)` fills a new file beside the target, then it is renamed in."""
    with StagedFile(target, overwrite=overwrite) as sf:
        with sf.open() as fh:
            write(fh)
        return sf.commit()


def preflight_file(target: str | os.PathLike[str], *, overwrite: bool = True) -> None:
    """Fail now (UsageError) if `target` could not be written later: checked before minutes of work."""
    StagedFile(target, overwrite=overwrite).abort()


def preflight_dir(target: str | os.PathLike[str], *, marker: str, kind: str, force: bool = False) -> None:
    """Fail now (UsageError) if the output directory `target` could not be written later."""
    check_out_dir(Path(target), marker=marker, kind=kind, force=force)
    shutil.rmtree(_make_staging(Path(target)), ignore_errors=True)
