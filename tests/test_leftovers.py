"""The repository speaks for itself: no tracked file in netdiag/, tests/, bench/, docs/ or README.md points at
a tracker's issue numbers or at files outside the repository (a reader of a clone has neither).

Domain facts are cited from docs/domain.md, which is in the repository.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCOPE = ("netdiag", "tests", "bench", "docs", "README.md")

# This file names the patterns it looks for, so it leaves itself out of the scan.
LEFTOVERS = re.compile("|".join([
    r"\b[Ii]ssue\s*#?\d+",                 # "issue 7", "Issue 2", "issue #12"
    r"\([Ii]ssue\b",                       # "(issue ...", "(issue report)"
    "/" + r"work/",                        # absolute paths of the machine it was written on
    r"\.\./" + "shared",
    r"\b" + "DOMAIN" + r"\.md",            # the notes outside the repository (docs/domain.md is inside)
    r"\b" + "STYLE" + r"\.md",
]))


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "--", *SCOPE], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / p for p in out.stdout.decode().split("\0") if p]


def test_no_issue_numbers_or_outside_paths_in_tracked_files() -> None:
    files = _tracked()
    assert any(p.name == "pipeline.py" for p in files)   # the listing works (a git checkout)
    found = []
    for path in files:
        if path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue   # binary captures and fuzz inputs
        for n, line in enumerate(text.splitlines(), 1):
            if LEFTOVERS.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert found == [], "\n".join(found)


def test_the_pattern_catches_what_it_is_for() -> None:
    for bad in ("(issue 7)", "Issue 2 item 3", "see the issue #12", "(issue report)", "/" + "work/main/x",
                "../" + "shared/notes", "DOMAIN" + ".md section 3", "STYLE" + ".md: seconds"):
        assert LEFTOVERS.search(bad), bad
    for good in ("docs/domain.md section 3", "an issue with the capture", "tissue 7", "reissue"):
        assert not LEFTOVERS.search(good), good
