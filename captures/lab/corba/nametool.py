"""A name-service tool run: what an administrator's naming browser or a health probe does on 2809.

    python -m captures.lab.corba.nametool --config CONFIG.json --log LOG.jsonl [--workdir DIR]

One process, one omniORB: ``corbaloc::1.2@host:2809/NameService``, narrow it (omniORB sends
``_is_a``), then the configured naming operations (``list`` of the root context, ``resolve`` of
names), and exit. It never calls the application server: that is what makes it *not a logon*
(issue 11 item 2). Every run is logged by the tool itself (JSON lines, the same log as the
client): ``tool_start`` / ``tool_end`` with the tool's own timestamps, and each call's
``call_start`` / ``giop_sent`` / ``giop_received`` / ``call_end`` from omniORB's own trace, so a
truth file can count its requests and connections.

CONFIG keys: ``host`` (address of the naming service; an IP literal, the tool does no DNS),
``naming_port`` (2809), ``giop_max_version`` ("1.2"), ``runs`` (1), ``between_ms`` (pause
between runs, 500), ``ops`` (list of ``["list", n]`` or ``["resolve", "a/b"]``; default: list 50,
resolve epj/Session), ``tool_name`` (label in the log).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from captures.lab.corba.jsonlog import JsonLog

DEFAULT_OPS = [["list", 50], ["resolve", "epj/Session"]]


def load_config(path: Path) -> dict:
    """Read the tool config and fill in defaults; ValueError names the file and the problem."""
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read tool config: {exc}") from exc
    if not isinstance(cfg, dict) or "host" not in cfg:
        raise ValueError(f"{path}: a JSON object with 'host' (the naming service's address) is required")
    cfg.setdefault("naming_port", 2809)
    cfg.setdefault("giop_max_version", "1.2")
    cfg.setdefault("runs", 1)
    cfg.setdefault("between_ms", 500)
    cfg.setdefault("ops", DEFAULT_OPS)
    cfg.setdefault("tool_name", "naming-browser")
    for op in cfg["ops"]:
        if not (isinstance(op, list) and len(op) == 2 and op[0] in ("list", "resolve")):
            raise ValueError(f"{path}: each op must be [\"list\", n] or [\"resolve\", \"a/b\"], not {op!r}")
    return cfg


def run_once(run: int, cfg: dict, log_path: Path, workdir: Path) -> str:
    """One tool run in its own ORB (its own connection); returns 'ok' or 'failed:<what>'."""
    from captures.lab.corba.client import CorbaLogon

    log = JsonLog(log_path, logon=None, tool_run=run, pid=os.getpid())
    log.write("tool_start", tool=cfg["tool_name"], ops=cfg["ops"])
    # CorbaLogon brings the ORB set-up, the trace reader and the logged call(); only its naming
    # part is used here (no application call is ever made)
    ccfg = {"corba": {"giop_max_version": cfg["giop_max_version"], "call_timeout_ms": 0, "retries": 0,
                      "naming_port": cfg["naming_port"]}, "user": "tool"}
    outcome = "ok"
    tool = None
    try:
        tool = CorbaLogon(10_000 + run, ccfg, log, workdir)
        if not tool.bootstrap(cfg["host"]):
            outcome = "failed:bootstrap"
        else:
            import CosNaming  # type: ignore[import-not-found]

            for op, arg in cfg["ops"]:
                if op == "list":
                    ok, _ = tool.call("list", lambda n=int(arg): tool.nc.list(n), how_many=int(arg))
                else:
                    name = [CosNaming.NameComponent(p, "") for p in str(arg).split("/") if p]
                    ok, _ = tool.call("resolve", lambda name=name: tool.nc.resolve(name), name=str(arg))
                if not ok:
                    outcome = f"failed:{op}"
                    break
    except Exception as exc:  # noqa: BLE001 - the run fails, the log says why, no traceback
        outcome = f"failed:{type(exc).__name__}: {exc}"
    finally:
        if tool is not None:
            tool.close()
        log.write("tool_end", outcome=outcome)
        log.close()
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Entry point: `runs` tool runs, one process (ORB) each, `between_ms` apart."""
    ap = argparse.ArgumentParser(prog="python -m captures.lab.corba.nametool", description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--log", required=True, type=Path)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--run-index", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="epj-nametool-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.run_index is not None:
        return 0 if run_once(args.run_index, cfg, args.log, workdir) == "ok" else 1
    import subprocess

    rc = 0
    root = str(Path(__file__).resolve().parents[3])
    for run in range(int(cfg["runs"])):
        if run:
            time.sleep(float(cfg["between_ms"]) / 1000.0)
        # each run a new process (a tool started from the command line), so a new connection
        res = subprocess.run([sys.executable, "-m", "captures.lab.corba.nametool", "--config", str(args.config),
                              "--log", str(args.log), "--workdir", str(workdir), "--run-index", str(run)],
                             cwd=root, timeout=120)
        rc = rc or res.returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
