"""Check that a change leaves `netdiag compare`'s output as it was, on the before/after pairs in captures/compare/.

    python bench/compare_identity.py write DIR     # compare every pair, keep JSON, Markdown, HTML, terminal in DIR
    python bench/compare_identity.py check DIR     # compare again, diff with DIR; exit 1 on a difference

Each pair (the "used as" column of captures/compare/README.md) is compared in-process with the
built-in profile, exactly as `netdiag compare BEFORE AFTER` does. Kept per pair: the JSON (without
the version), the Markdown, the HTML (without the "made" time) and the terminal output at 160
columns; and `netdiag trend` over three captures (JSON and HTML). It runs on versions before and
after compare's drawing moved to netdiag/report/compare.py (main vs a branch). Refactors of compare and its rendering are measured with it.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CMP = ROOT / "captures" / "compare"
PAIRS = (("cmp_auth800", "cmp_auth200"), ("cmp_auth200", "cmp_auth200_rerun"), ("cmp_syndrop", "cmp_client"),
         ("cmp_tail3_client", "cmp_tail0_client"), ("cmp_loss3", "cmp_noloss"))
MADE_RE = re.compile(r"made \d{4}-\d\d-\d\d \d\d:\d\d UTC")


def outputs(before: str, after: str) -> dict[str, str]:
    """The four renderings of one comparison, made comparable across versions."""
    from rich.console import Console

    from netdiag.compare import compare

    try:
        from netdiag.report.compare import print_terminal, render_html, render_markdown
    except ImportError:       # a version before compare's drawing moved to netdiag/report/compare.py
        from netdiag.compare import print_terminal  # type: ignore[attr-defined,no-redef]

        def render_html(c):  # type: ignore[no-redef]  # noqa: ANN001, ANN202
            return c.to_html()

        def render_markdown(c):  # type: ignore[no-redef]  # noqa: ANN001, ANN202
            return c.to_markdown()

    c = compare(str(CMP / f"{before}.pcap"), str(CMP / f"{after}.pcap"))
    d = json.loads(c.to_json())
    d.pop("version", None)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        con = Console(file=buf, width=160, force_terminal=False, color_system=None)
        try:
            print_terminal(c, console=con)
        except TypeError:     # that older version printed on a 160-column console of its own
            print_terminal(c)
    return {"json": json.dumps(d, indent=2, default=str) + "\n", "md": render_markdown(c),
            "html": MADE_RE.sub("made <time>", render_html(c)), "txt": buf.getvalue()}


def trend_outputs() -> dict[str, str]:
    """`netdiag trend` over three of the captures (JSON without the version, HTML without the time)."""
    from netdiag.trend import trend

    try:
        from netdiag.report.trend import render_html
    except ImportError:

        def render_html(t):  # type: ignore[no-redef]  # noqa: ANN001, ANN202
            return t.to_html()

    t = trend([str(CMP / f"{n}.pcap") for n in ("cmp_auth800", "cmp_auth200", "cmp_auth200_rerun")])
    d = json.loads(t.to_json())
    d.pop("version", None)
    return {"json": json.dumps(d, indent=2, default=str) + "\n", "html": MADE_RE.sub("made <time>", render_html(t))}


def main(argv: list[str]) -> int:
    """Write or check the outputs of every pair."""
    if len(argv) != 2 or argv[0] not in ("write", "check"):
        print(__doc__)
        return 2
    mode, out = argv[0], Path(argv[1])
    bad = 0
    for before, after in (*PAIRS, ("trend", "")):
        got = trend_outputs() if before == "trend" else outputs(before, after)
        for kind, text in got.items():
            p = out / f"{before}__{after}.{kind}"
            if mode == "write":
                out.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
                continue
            want = p.read_text()
            if want != text:
                bad += 1
                diff = difflib.unified_diff(want.splitlines(), text.splitlines(), str(p), "now", lineterm="", n=1)
                print("\n".join(list(diff)[:40]))
    if mode == "check":
        print(f"{len(PAIRS)} pairs, {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
