"""netdiag.tcp's module layout: one-way imports, files a reader can hold, TCP flags named once.

Why: the analysis kernel used to be one 1,365-line file that imported the connections table
inside a function while the table imported the kernel's constants back (a circle), and the
TCP flag bits were written out in three modules plus as literals (0x12, 0x02). These tests read
the source (imports inside functions included), so a new circle or literal shows up at once.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "netdiag"


def _mod(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _tcp_imports(path: Path) -> set[str]:
    """netdiag.tcp.* modules imported anywhere in `path` (top level and inside functions)."""
    mod = _mod(path)
    base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            stem = ".".join(base[: len(base) - node.level + 1] + [node.module or ""]) if node.level else node.module
            names = [f"{stem}.{a.name}" for a in node.names] + [stem or ""]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["netdiag", "tcp"] and len(parts) > 2 and (PKG / "tcp" / f"{parts[2]}.py").exists():
                out.add(f"netdiag.tcp.{parts[2]}")
    return out - {mod}


def test_tcp_modules_import_one_way():
    graph = {_mod(p): _tcp_imports(p) for p in (PKG / "tcp").glob("*.py") if p.name != "__init__.py"}

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += graph.get(m, ())
        return seen

    circles = sorted(m for m in graph if m in reach(m))
    assert circles == [], circles   # was tcp.analysis <-> tcp.connections
    # the table is built from the state layout, never from the driver that feeds it
    assert "netdiag.tcp.analysis" not in reach("netdiag.tcp.connections")


def test_no_tcp_module_over_800_lines():
    long = {p.name: n for p in (PKG / "tcp").glob("*.py") if (n := len(p.read_text().splitlines())) > 800}
    assert long == {}   # analysis.py was 1,365


def test_tcp_flags_are_named_once():
    """Only netdiag/capture/tcp_flags.py gives TCP flag bits a value; nobody masks tcp_flags with a
    number literal."""
    flags_module = PKG / "capture" / "tcp_flags.py"
    defined = re.compile(r"^\s*(TH|TCP)_(FIN|SYN|RST|PUSH|PSH|ACK|URG)\b[\w, ]*=", re.M)
    masked = re.compile(r"""(tcp_flags"\)|\bflags)[\w.()]*\s*&\s*(0x[0-9a-fA-F]+|\d+)\b""")
    offenders = []
    for p in sorted(PKG.rglob("*.py")):
        if p == flags_module or "protocols" in p.parts:   # GIOP has its own flags
            continue
        text = p.read_text()
        offenders += [f"{p.relative_to(ROOT)}: {m.group(0).strip()}" for m in defined.finditer(text)]
        offenders += [f"{p.relative_to(ROOT)}: {m.group(0).strip()}" for m in masked.finditer(text)]
    assert offenders == []
    from netdiag.capture import tcp_flags as f
    assert (f.TH_FIN, f.TH_SYN, f.TH_RST, f.TH_PUSH, f.TH_ACK) == (1, 2, 4, 8, 16)
    assert f.TH_SYN_ACK == 0x12 and f.TH_SYN_FIN_RST == 0x07
