"""Every code block of README.md, client/README.md and docs/datasets.md, run as written
against a real stack.

Each fenced block carries a mark on the line before its fence, an HTML comment that GitHub
does not show:
- `<!-- run -->`: run in `make test`;
- `<!-- slow -->`: takes minutes; run in `make chaos` (marker `chaos`);
- `<!-- not-here: REASON -->`: needs what a test machine has not (Docker, Kubernetes, a bucket
  or a receiver of yours, a GPU); the reason is required.
A block without a mark, or an indented code block (which cannot carry one), fails
`test_every_block_is_marked`.

How the blocks run: against one stack per module, started as `make run` starts it
(`python -m devstack`, which `test_make_run_is_the_stack_the_blocks_run_against` checks),
with its defaults (the built-in efficientnet_lite0, local storage, its own Redis) on a free
port, data in a temporary folder and one torch thread. The blocks get its URL as
`SALIENCY_URL`, which the CLI and `Client()` read, and none of the test's other SALIENCY_
variables. The `run` blocks of one README run in order, in one working folder that holds a
link to each top-level entry of the repository (so `shared/examples/…`, `.venv/bin` and the
Makefile are where the README says, and whatever a block writes stays in the folder): a
block may use the files an earlier block of its README made. `sh` blocks run with
`bash -e -o pipefail`, `python` blocks with `python -c`, with the interpreter's folder
(`.venv/bin`) first on PATH. A `slow` block stands alone, in a fresh folder. A block passes
when it exits 0 with no traceback and no native abort on stderr.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from stacks import Devstack

from devstack import ROOT, free_port

READMES = ("README.md", "client/README.md", "docs/datasets.md")
MARK = re.compile(r"<!-- (run|slow|not-here:\s*(.*?)) -->")
FENCE = re.compile(r" {0,3}(```+|~~~+)\s*([\w+-]*)")
LIST_ITEM = re.compile(r"\s*([-*+]|\d+[.)])\s")
SHELLS = ("sh", "bash", "shell")
STAMP = ".venv/.installed"


@dataclass(frozen=True)
class Block:
    """One fenced code block of a README: where it is, its language, code and mark."""

    readme: str
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    mark: str | None  # run, slow, not-here; None when unmarked
    reason: str = ""  # a not-here block's

    @property
    def name(self) -> str:
        return f"{self.readme}:{self.line}"

    def argv(self) -> list[str]:
        if self.language in SHELLS:
            return ["bash", "-e", "-o", "pipefail", "-c", self.code]
        if self.language == "python":
            return [sys.executable, "-c", self.code]
        raise AssertionError(f"{self.name}: no way to run a {self.language or 'plain'} block; "
                             "give it the language sh or python")


def parse(readme: str) -> tuple[list[Block], list[int]]:
    """The fenced blocks of `readme`, and the lines where an indented code block starts."""
    lines = (ROOT / readme).read_text().splitlines()
    blocks, indented = [], []
    i = 0
    while i < len(lines):
        fence = FENCE.fullmatch(lines[i])
        if fence:
            end = next((j for j in range(i + 1, len(lines))
                        if lines[j].strip().startswith(fence.group(1))), len(lines))
            mark = MARK.fullmatch(lines[i - 1].strip()) if i else None
            blocks.append(Block(readme, i + 1, fence.group(2), "\n".join(lines[i + 1:end]) + "\n",
                                mark and mark.group(1).split(":")[0],
                                (mark and mark.group(2) or "").strip()))
            i = end + 1
            continue
        if (lines[i].startswith(("    ", "\t")) and lines[i].strip() and i
                and not lines[i - 1].strip()):
            before = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
            if not before.startswith((" ", "\t")) and not LIST_ITEM.match(before):
                indented.append(i + 1)
        i += 1
    return blocks, indented


def blocks_marked(mark: str) -> list[Block]:
    return [b for readme in READMES for b in parse(readme)[0] if b.mark == mark]


def test_every_block_is_marked():
    problems = []
    for readme in READMES:
        blocks, indented = parse(readme)
        problems += [f"{readme}:{line}: an indented code block; fence it and mark it"
                     for line in indented]
        for block in blocks:
            if block.mark is None:
                problems.append(f"{block.name}: no <!-- run -->, <!-- slow --> or "
                                "<!-- not-here: REASON --> on the line before the fence")
            elif block.mark == "not-here" and not block.reason:
                problems.append(f"{block.name}: not-here needs a reason")
            elif block.mark in ("run", "slow") and block.language not in (*SHELLS, "python"):
                problems.append(f"{block.name}: a {block.mark} block must be sh or python")
    assert problems == []
    assert len(blocks_marked("run")) >= 8  # the parser found the blocks it is meant to


def test_make_run_is_the_stack_the_blocks_run_against():
    """The blocks run against `python -m devstack`: what `make run` runs once installed."""
    outer = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")  # set when the suite runs under `make test`
    env = {k: v for k, v in os.environ.items() if k not in outer}
    recipe = subprocess.run(["make", "--no-print-directory", "-n", "-o", STAMP, "run"], cwd=ROOT,
                            capture_output=True, text=True, check=True, env=env).stdout.split()
    assert recipe == [".venv/bin/python", "-m", "devstack"]


def test_the_install_says_what_it_does_and_that_the_first_run_takes_minutes():
    """What `make` prints while it installs (dry run: `-W` makes the stamp out of date)."""
    dry = subprocess.run(["make", "-n", "-W", "pyproject.toml", STAMP], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    said = " ".join(line.split("echo", 1)[1] for line in dry.splitlines() if "echo" in line)
    assert "installing" in said and "minutes" in said and "torch" in said, dry


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Devstack]:
    """`make run`'s stack on a free port, with the built-in model, one torch thread."""
    stack = Devstack(tmp_path_factory.mktemp("devstack"), free_port(),
                     SALIENCY_DEVICE="cpu", SALIENCY_TORCH_THREADS="1")
    yield stack
    stack.stop()


def workdir(path: Path) -> Path:
    """A folder with a link to each top-level entry git tracks, and to `.venv`."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in sorted({p.split("/")[0] for p in tracked if p} | {".venv"}):
        (path / name).symlink_to(ROOT / name)
    return path


def run(block: Block, cwd: Path, stack: Devstack, timeout: float) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALIENCY_")}
    env.update(SALIENCY_URL=stack.url,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    done = subprocess.run(block.argv(), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    shown = f"{block.name} ({block.language}) exited {done.returncode}\n{block.code}\n" \
            f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    assert done.returncode == 0, shown
    assert "Traceback" not in done.stderr and "terminate called" not in done.stderr, shown


@pytest.mark.parametrize("readme", READMES)
def test_run_blocks(readme, stack, tmp_path):
    cwd = workdir(tmp_path)
    for block in parse(readme)[0]:
        if block.mark == "run":
            run(block, cwd, stack, timeout=300)


@pytest.mark.chaos
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("block", blocks_marked("slow"), ids=lambda b: b.name)
def test_slow_block(block, stack, tmp_path):
    if re.search(r"^\s*make\b", block.code, re.M):  # would install into .venv if out of date
        stale = subprocess.run(["make", "-q", STAMP], cwd=ROOT).returncode
        assert stale == 0, f"{STAMP} is out of date: run `make install` first"
    run(block, workdir(tmp_path), stack, timeout=1500)
