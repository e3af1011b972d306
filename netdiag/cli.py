"""The `netdiag` command line: a thin layer over the Python API.

Each command lives in `netdiag/commands/<name>.py` with a `register(app)` function, so a new
command never touches another's code. `main()` turns every `NetdiagError` into one line on
stderr and an exit code; no traceback reaches the user (set NETDIAG_DEBUG=1 to see one).

Exit codes, the same for every command (README "Exit codes"):
    0  the analysis ran, also when it found no logons or no findings (one line says so)
    1  `compare --fail-on-regression` found a regression
    2  usage error, an unreadable or unwritable path, or not one packet could be read
    3  internal error (a bug; the line says so)
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from netdiag._heap import return_freed_table_memory_at_once
from netdiag.errors import NetdiagError

return_freed_table_memory_at_once()   # before any command module loads polars (see there)

# One entry per command module under netdiag/commands/, in the order `--help` lists them.
COMMAND_MODULES = [
    "analyze",
    "schema",
    "connections",
    "transactions",
    "logons",
    "packets",
    "evidence",
    "sanitize",
    "case",
    "compare",
    "trend",
    "watch",
]

app = typer.Typer(
    name="netdiag",
    help="Where does the time go when clinicians log on? Reads packet captures and answers with evidence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _plain_help_types() -> None:
    """`--help` without type labels that mean nothing to a user: a flag takes no value (typer
    labels it `<bool>`), and a list argument is one or more of its kind (`<path>...`, not
    `<list[Path]>`). An explicit metavar still wins. Typer's help renders these through
    `display_type_rich`; wrapped here once, so every command (and every option added later) is
    covered."""
    import re

    from typer.core import TyperArgument, TyperOption

    option_type = TyperOption.display_type_rich
    argument_type = TyperArgument.display_type_rich

    def option(self: TyperOption, ctx: object) -> str | None:
        if self.metavar is None and (self.is_flag or self.count):
            return None
        return _plain(option_type(self, ctx))  # type: ignore[arg-type]

    def argument(self: TyperArgument, ctx: object) -> str | None:
        return self.metavar if self.metavar is not None else _plain(argument_type(self, ctx))  # type: ignore[arg-type]

    def _plain(label: str | None) -> str | None:
        m = re.fullmatch(r"<list\[(\w+)\]>(\.\.\.)?", label or "")
        return f"<{m.group(1).lower()}>..." if m else label

    TyperOption.display_type_rich = option  # type: ignore[method-assign]
    TyperArgument.display_type_rich = argument  # type: ignore[method-assign]


_plain_help_types()


@app.callback()
def _root() -> None:
    """Where does the time go when clinicians log on? Reads packet captures and answers with evidence."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"netdiag.commands.{_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    from netdiag._heap import keep_large_blocks_out_of_the_heap

    keep_large_blocks_out_of_the_heap()   # peak memory of big captures (see there)
    try:
        app(standalone_mode=False)
    except NetdiagError as exc:
        # exit 0 errors are outcomes, not failures (no logons to compare): said in one line all the same
        print(f"netdiag: {'error: ' if exc.exit_code else ''}{exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:   # an unreadable or unwritable path the commands did not foresee: exit 2
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"netdiag: error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("netdiag: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # the last line of defence: one line, never a traceback
        # typer vendors click: recognise its usage errors and exits by shape, not by class
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, typer.Exit) or type(exc).__name__ == "Exit":
            sys.exit(getattr(exc, "exit_code", 0))
        if os.environ.get("NETDIAG_DEBUG"):
            raise
        print(f"netdiag: internal error: {type(exc).__name__}: {exc} (set NETDIAG_DEBUG=1 for a traceback)",
              file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
