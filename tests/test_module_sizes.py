"""No module grows past about 500 lines without saying, at its top, why it is not split.

One module, one job: a long module is usually several. Some are one job
that happens to be long (the consensus state machine); those
say so in their docstring, in a sentence that mentions the 500 lines, so a
reader knows it was a decision and not drift.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIMIT = 500
PACKAGES = ("node", "network", "bench", "docker")


def _modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def _unexplained(path: Path, root: Path = REPO) -> str | None:
    """Why `path` breaks the rule, or None when it is short or says why it is long."""
    text = path.read_text()
    lines = text.count("\n")
    if lines <= LIMIT:
        return None
    docstring = ast.get_docstring(ast.parse(text)) or ""
    if f"{LIMIT} lines" in docstring:
        return None
    return f"{path.relative_to(root)}: {lines} lines and no word at its top on why it is not split"


HARD_LIMIT = 700
"""Past this, a module in node/ or network/ is split whatever its docstring says."""


def _too_long(path: Path, root: Path = REPO) -> str | None:
    lines = path.read_text().count("\n")
    if lines <= HARD_LIMIT or path.relative_to(root).parts[0] not in ("node", "network"):
        return None
    return f"{path.relative_to(root)}: {lines} lines, over the {HARD_LIMIT} no reason excuses"


def test_no_module_of_node_or_network_is_over_the_hard_limit() -> None:
    problems = [problem for path in _modules() if (problem := _too_long(path)) is not None]
    assert not problems, "\n".join(problems)


def test_the_hard_limit_catches_a_long_module_whatever_its_docstring(tmp_path: Path) -> None:
    module = tmp_path / "node" / "long.py"
    module.parent.mkdir()
    module.write_text('"""Past 500 lines: a reason."""\n' + "x = 1\n" * HARD_LIMIT)
    assert _too_long(module, tmp_path) is not None
    module.write_text('"""Short."""\n' + "x = 1\n" * (HARD_LIMIT - 1))
    assert _too_long(module, tmp_path) is None


def test_long_modules_say_why_they_are_not_split() -> None:
    problems = [problem for path in _modules() if (problem := _unexplained(path)) is not None]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("body", "explained"),
    [
        ('"""Short."""\n', True),
        ('"""Long."""\n' + "x = 1\n" * (LIMIT + 1), False),
        ('"""Long.\n\nPast 500 lines: one job.\n"""\n' + "x = 1\n" * (LIMIT + 1), True),
    ],
)
def test_the_size_rule_tells_long_from_explained(tmp_path: Path, body: str, explained: bool) -> None:
    module = tmp_path / "module.py"
    module.write_text(body)
    assert (_unexplained(module, root=tmp_path) is None) == explained
