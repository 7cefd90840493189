"""Every command in README.md and docs/*.md runs, and the sample output printed after it is current.

Each fenced ```sh block of those pages is a case. It runs with bash (``-euo pipefail``) in a
temporary directory of its own page (blocks of one page share it, in page order, so a later block
can read what an earlier one wrote), where ``scenarios/``, ``bench/`` and ``docker/`` of this
checkout are linked, with this interpreter's ``bin/`` first on PATH (``posnet``, ``python``).
Lines that install posnet or an extra (``pip install -e ...``) are left out: the test environment
already has every extra. A block exits 0, and when a ```text block follows it, its stdout (its
stderr when stdout is empty) is compared with that sample:

- a sample line ``...`` stands for any number of lines (none too);
- a sample line ending in ``...`` matches a line that starts with what comes before the dots;
- every other line must be equal (trailing spaces aside), from the first line to the last.

HTML comments just before a ```sh block (blank lines between are fine) say how to take it:

- ``<!-- not run: REASON -->``: not run here (docker, several hosts, a second terminal, minutes);
  the case is skipped with that reason, so ``pytest -rs`` counts the skipped blocks by reason;
- ``<!-- slow: REASON -->``: run only in the full suite (marked slow and integration);
- ``<!-- loose: wall times -->``: numbers followed by a unit of time or rate (``0.98 s``,
  ``168ms``, ``50.02 tx/s``) are not compared; ``<!-- loose: numbers -->``: no number is;
- ``<!-- output: FILE -->``: the sample lines are lines of FILE (written by the block), in order,
  not necessarily adjacent, instead of its stdout;
- ``<!-- needs: NAME -->``: before running, write the page's earlier block whose first line is
  ``# NAME`` to the file NAME (e.g. the inventory a following command reads).
- ``<!-- sample: the next text block -->``: the sample is the next ```text block even with prose
  between (for a page that cannot take the sample right after the command yet).

The rest of the cases run the CLI as a child process, as the integration tests do, but cost about
a second each, so they stay in the quick run (``-m "not slow"``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = ("scenarios", "bench", "docker")
QUICK_TIMEOUT_S = 120
SLOW_TIMEOUT_S = 600

PIP_INSTALL = re.compile(r"^\s*pip install -e \S+\s*$")
DIRECTIVE = re.compile(r"^\s*<!--\s*([a-z ]+):\s*(.*?)\s*-->\s*$")
KINDS = ("not run", "slow", "loose", "output", "needs", "stale", "sample")
WALL_TIME = re.compile(r"\d+(?:\.\d+)?(?=\s?(?:m?s\b|\w*/s\b))")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass
class Block:
    page: str
    line: int
    code: str
    directives: dict[str, str] = field(default_factory=dict)
    expected: list[str] | None = None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _fence(line: str) -> tuple[int, str] | None:
    """(indent, info string) of a fence line, or None."""
    stripped = line.lstrip()
    if not stripped.startswith("```"):
        return None
    return len(line) - len(stripped), stripped[3:].strip()


def _fenced(lines: list[str], start: int) -> tuple[list[str], int]:
    """The lines inside the fence opened at `start` (its indentation removed), and the closing line's index."""
    indent = _fence(lines[start])[0]  # type: ignore[index]
    body = []
    i = start + 1
    while i < len(lines) and lines[i].strip() != "```":
        body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
        i += 1
    return body, i


def parse(path: Path) -> tuple[list[Block], dict[str, str]]:
    """A page's ```sh blocks with their directives and samples, and its files by ``# NAME`` first line."""
    page = str(path.relative_to(ROOT))
    lines = path.read_text().split("\n")
    blocks: list[Block] = []
    files: dict[str, str] = {}
    comments: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        found = DIRECTIVE.match(line)
        fence = _fence(line)
        if found and found.group(1) in KINDS:
            comments.append((found.group(1), found.group(2)))
        elif fence is not None:
            body, end = _fenced(lines, i)
            if body and body[0].startswith("# ") and len(body[0].split()) == 2:
                files[body[0][2:]] = "\n".join(body) + "\n"
            if fence[1] == "sh":
                block = Block(page, i + 1, "\n".join(body), dict(comments))
                j = end + 1
                skip_prose = block.directives.get("sample") == "the next text block"
                while j < len(lines) and (not lines[j].strip() or (skip_prose and _fence(lines[j]) is None)):
                    j += 1
                following = _fence(lines[j]) if j < len(lines) else None
                if following is not None and following[1] == "text":
                    block.expected, end = _fenced(lines, j)
                blocks.append(block)
            comments = []
            i = end
        elif line.strip():
            comments = []
        i += 1
    return blocks, files


def _all_blocks() -> list[Block]:
    return [block for page in PAGES for block in parse(page)[0]]


def _normalise(line: str, loose: str | None) -> str:
    line = line.rstrip()
    if loose == "numbers":
        return NUMBER.sub("#", line)
    if loose == "wall times":
        return WALL_TIME.sub("#", line)
    return line


def _line_matches(expected: str, actual: str) -> bool:
    if expected.endswith("...") and expected.strip() != "...":
        return actual.startswith(expected[:-3])
    return expected == actual


def matches(expected: list[str], actual: list[str], loose: str | None = None) -> bool:
    """Whether `actual` is what the sample shows, ``...`` lines standing for any run of lines."""
    want = [_normalise(line, loose) for line in expected]
    got = [_normalise(line, loose) for line in actual]
    while want and not want[-1]:
        want.pop()
    while got and not got[-1]:
        got.pop()
    # reachable[j]: the sample's lines so far can match got[:j]
    reachable = [True] + [False] * len(got)
    for line in want:
        if line.strip() == "...":
            for j in range(1, len(got) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [reachable[j] and _line_matches(line, got[j]) for j in range(len(got))]
    return reachable[len(got)]


def in_order(expected: list[str], actual: list[str]) -> bool:
    """Whether every sample line is a line of `actual`, in the sample's order."""
    remaining = iter(line.rstrip() for line in actual)
    return all(
        any(_line_matches(line.rstrip(), got) for got in remaining) for line in expected if line.strip()
    )


@pytest.fixture(scope="session")
def workdirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    class Dirs(dict):
        def __missing__(self, page: str) -> Path:
            path = tmp_path_factory.mktemp(re.sub(r"\W", "-", page))
            for name in LINKED:
                (path / name).symlink_to(ROOT / name)
            self[page] = path
            return path

    yield Dirs()


def _case(block: Block):  # -> pytest.param
    marks = []
    if "slow" in block.directives:
        marks += [pytest.mark.slow, pytest.mark.integration]
    if "stale" in block.directives:
        marks.append(
            pytest.mark.xfail(strict=True, reason=f"stale sample output: {block.directives['stale']}")
        )
    return pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", [_case(block) for block in _all_blocks()])
def test_block_runs_and_prints_its_sample(block: Block, workdirs: dict[str, Path]) -> None:
    if "not run" in block.directives:
        pytest.skip(f"not run: {block.directives['not run']}")
    cwd = workdirs[block.page]
    if "needs" in block.directives:
        name = block.directives["needs"]
        files = parse(ROOT / block.page)[1]
        assert name in files, f"{block.id}: no earlier block starts with '# {name}'"
        (cwd / name).write_text(files[name])
    code = "\n".join(line for line in block.code.split("\n") if not PIP_INSTALL.match(line))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    timeout = SLOW_TIMEOUT_S if "slow" in block.directives else QUICK_TIMEOUT_S
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    shown = f"{block.id}: exit {done.returncode}\n--- stdout\n{done.stdout}--- stderr\n{done.stderr}"
    assert done.returncode == 0, shown
    if block.expected is None:
        return
    sample = "\n".join(block.expected)
    if "output" in block.directives:
        written = (cwd / block.directives["output"]).read_text().split("\n")
        assert in_order(block.expected, written), (
            f"{shown}\n--- sample (lines of {block.directives['output']})\n{sample}"
        )
    else:
        printed = (
            done.stdout or done.stderr
        )  # a command that reports only on stderr (trace) is judged by that
        assert matches(block.expected, printed.split("\n"), block.directives.get("loose")), (
            f"{shown}--- sample\n{sample}"
        )


def test_every_directive_is_known_and_not_run_says_why() -> None:
    for block in _all_blocks():
        assert set(block.directives) <= set(KINDS), block.id
        if "not run" in block.directives:
            assert block.directives["not run"], f"{block.id}: not run, but says no reason"
        assert block.directives.get("loose") in (None, "numbers", "wall times"), block.id


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    """New users and CI rely on these two lines: the README keeps them, .ci/run runs the test one."""
    first, second = (block.code for block in parse(ROOT / "README.md")[0][:2])
    assert first == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
        "posnet testnet up --validators 4 --dir testnet --duration 60"
    )
    assert (
        second
        == "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest"
    )
    # CI adds only a quiet pip and no cache directory in the checkout
    ci = (ROOT / ".ci" / "run").read_text()
    assert second.replace("pip install", "pip install -q") + " -p no:cacheprovider" in ci


def test_links_between_pages_resolve() -> None:
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            path = target.split("#")[0]
            if not path or re.match(r"[a-z]+:", path):
                continue
            key = (str(page.relative_to(ROOT)), path)
            if not (page.parent / path).exists():
                broken.append(key)
    assert broken == []


def test_matching_rules() -> None:
    assert matches(["a", "...", "z"], ["a", "b", "c", "z"])
    assert matches(["a", "...", "z"], ["a", "z"])
    assert not matches(["a", "z"], ["a", "b", "z"])
    assert not matches(["a"], ["a", "b"])
    assert matches(["wrote ..."], ["wrote /tmp/x/report.png"])
    assert matches(["in 1552 virtual ms (0.98 s wall)"], ["in 1552 virtual ms (0.2 s wall)"], "wall times")
    assert not matches(
        ["in 1552 virtual ms (0.98 s wall)"], ["in 1534 virtual ms (0.2 s wall)"], "wall times"
    )
    assert matches(["at 50.02 tx/s, 168ms"], ["at 49.9 tx/s, 12ms"], "wall times")
    assert matches(["height 36"], ["height 41"], "numbers")
    assert in_order(["b", "d"], ["a", "b", "c", "d"])
    assert not in_order(["d", "b"], ["a", "b", "c", "d"])
