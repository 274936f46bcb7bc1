"""benchmarks/RESULTS.md is made of sections, each between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` and rewritten only by the script that measured it; other sections are kept."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def replace_section(name: str, lines: list[str], path: Path = RESULTS) -> None:
    """Put ``lines`` into section ``name`` of ``path`` (appended at the end when it is new)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = "\n".join([start, *lines, end])
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + body + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text)


def commit() -> str:
    """Short hash of the checkout's HEAD (with "+changes" when the tree is dirty), else
    $PYCONVNET_COMMIT (for a copied tree without .git), else "unknown"."""
    if os.environ.get("PYCONVNET_COMMIT"):
        return os.environ["PYCONVNET_COMMIT"]
    root = Path(__file__).resolve().parent.parent
    try:
        h = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                           text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return h + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
