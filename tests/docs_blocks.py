"""Run the code blocks of README.md and docs/*.md, so the documentation cannot drift from the code.

A block is a fenced ``bash`` or ``python`` block; other languages (yaml, text, console output) are shown,
not run. An HTML comment on the line above a fence (invisible when rendered) controls its test:

    <!-- docs-test: skip (why) -->                 not run (installs, GPUs, downloads)
    <!-- docs-test: solver.max_iter=2 ... -->       appended to each `metaanchor train|demo` line: the
                                                   same command on a tiny budget
    <!-- docs-test: no-torch -->                   a python block run with torch and torchvision unimportable
                                                   (deployment code that must not need them)

Bash blocks run with ``bash -euo pipefail`` and python blocks with the venv's python, each in a fresh
process; the blocks of one page run in order in one folder (a copy of the sandbox that holds what the docs
refer to, ``sandbox`` in test_docs.py), so a page reads as a tutorial.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

RUN = ("bash", "python")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
MARK = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
TRAINING = re.compile(r"^(\s*(?:metaanchor|python -m metaanchor) (?:train|demo)\b)")


@dataclass
class Block:
    file: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    mark: str  # the docs-test comment's text, or ""

    @property
    def name(self) -> str:
        return f"{self.file.name}:{self.line}"

    @property
    def skipped(self) -> str | None:
        return self.mark[len("skip"):].strip(" ()") or "marked skip" if self.mark.startswith("skip") else None


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with their docs-test marks."""
    text = path.read_text()
    found = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        above = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(above)
        found.append(Block(path, line, m.group(1).lower(), m.group(2), mark.group(1) if mark else ""))
    return found


def with_overrides(code: str, overrides: str) -> str:
    """``code`` with continuation lines joined and ``overrides`` appended to each training command."""
    lines = code.replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        if overrides and overrides != "no-torch" and TRAINING.match(line):
            command, hash_, comment = line.partition(" # ")
            line = f"{command.rstrip()} {overrides}" + (f"  # {comment}" if hash_ else "")
        out.append(line)
    return "\n".join(out) + "\n"


NO_TORCH = """import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"{name} is blocked: this block must run without torch")
sys.meta_path.insert(0, _NoTorch())
"""


def run_block(block: Block, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run one block in ``cwd`` with this interpreter's venv first on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               MPLBACKEND="Agg", OMP_NUM_THREADS="2")
    if block.lang == "python":
        args = [sys.executable, "-c", (NO_TORCH if block.mark == "no-torch" else "") + block.code]
    else:
        args = ["bash", "-euo", "pipefail", "-c", with_overrides(block.code, block.mark)]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
