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

import atexit
import importlib
import os
import sys
import threading
from types import FrameType

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


def _no_adapter_for_absent_options() -> None:
    """Typer (0.29) builds a pydantic TypeAdapter for every parameter of the command that runs,
    also for an option not given (value None), whose coercion never consults it: None becomes
    () for a list, else None. Here the adapter is built on the first value that needs it, so
    `connections FILE --parquet P` builds 3 instead of 10 (~5 ms CPU each). Same values, same
    errors; a typer without this machinery (before 0.29) is left as it is."""
    try:
        from typer._coercion import build_runtime_param
        from typer.core import _TyperParameter
    except ImportError:
        return
    if not hasattr(_TyperParameter, "get_runtime_param"):
        return

    class OnFirstValue:
        def __init__(self, descriptor: object) -> None:
            self.descriptor, self.real = descriptor, None

        def coerce(self, value: object, param: object, ctx: object) -> object:
            if value is None:   # what typer's RuntimeParam.coerce returns for None
                return () if getattr(param, "multiple", False) or getattr(param, "nargs", 1) == -1 else None
            if self.real is None:
                self.real = build_runtime_param(self.descriptor)
            return self.real.coerce(value, param=param, ctx=ctx)

    def get_runtime_param(self: _TyperParameter) -> OnFirstValue:
        if self._runtime_param is None:
            self._runtime_param = OnFirstValue(self.type_descriptor)  # type: ignore[assignment]
        return self._runtime_param  # type: ignore[return-value]

    _TyperParameter.get_runtime_param = get_runtime_param  # type: ignore[assignment]


_no_adapter_for_absent_options()


@app.callback()
def _root() -> None:
    """Where does the time go when clinicians log on? Reads packet captures and answers with evidence."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"netdiag.commands.{_name}").register(app)


def main() -> None:
    """Console-script entry point (and `python -m netdiag.cli`): run the command, then exit at once."""
    caller = sys._getframe(1)
    try:
        _main()
    except SystemExit as exc:
        _exit_at_once(exc.code, caller)
        raise
    _exit_at_once(0, caller)


def _exit_at_once(code: object, caller: FrameType) -> None:
    """End the process now, as the interpreter would minus its teardown (the command's work is done).

    Why: after a command, the interpreter's finalization frees the objects of ~900 modules one by
    one (numba's type registries above all) only for the OS to reclaim the memory anyway: 0.15-0.25 s
    CPU of every `netdiag` run, measured with bench/startup_cost.py (bench/README.md "Start-up cost").
    What exit still has to do is done here: flush stdout and stderr, run the atexit handlers
    (multiprocessing, weakref finalizers, logging). Only when main() is the program (called from the
    __main__ module: the console script, `python -m netdiag.cli`), never in a caller that goes on
    (tests calling main()), not with another Python thread still running (the interpreter would wait
    for it), and not when a flush fails (the normal exit reports that as it always did).
    """
    if caller.f_globals.get("__name__") != "__main__" or threading.active_count() > 1:
        return
    if code is not None and not isinstance(code, int):
        return   # sys.exit("text"): the interpreter prints it
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - e.g. a closed pipe: left to the normal exit
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001
        return
    os._exit(code or 0)


def _main() -> None:
    """Run the command of sys.argv; a NetdiagError or any other failure becomes one line and an exit code."""
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
