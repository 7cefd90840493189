"""The layout's import rules, read from the source: which part of the tree may import which.

The layout only keeps its promises (a pure core the simulator can replay, a node that
knows nothing of the network around it, one place that speaks click) while every arrow
points one way. Nothing at run time notices a wrong arrow, so this module reads every
module under node/, network/, bench/ and docker/ with ``ast`` (imports inside functions
included, relative imports resolved) and checks each rule as its own test, naming the
file, the line and the import that breaks it.

The checker is a few small functions; the last tests feed it synthetic module text, so a
rule that could never fail would show up here rather than pass in silence.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("node/**/*.py", "network/**/*.py", "bench/**/*.py", "docker/*.py")
"""Product code and the benchmarks; tests/ is the one place allowed to reach everywhere."""

STDLIB = frozenset(sys.stdlib_module_names)

IO_AND_CLOCK = frozenset(
    {"asyncio", "socket", "sqlite3", "time", "random", "threading", "subprocess", "select", "selectors"}
    | {"http", "urllib", "multiprocessing", "concurrent"}
)
"""Standard modules that wait, talk to the outside world, read the clock or draw unseeded chance."""

NETWORK_CLIENTS = frozenset({"click", "aiomqtt", "paho", "amqtt"})
"""Third-party modules of the process around the core (the CLI and the MQTT clients and broker)."""

CORE_THIRD_PARTY = frozenset({"msgpack", "cryptography", "tomli_w"})
"""Pure libraries the protocol is written in: its wire codec, its signatures, its genesis file's writer."""
"""The only third-party modules the pure core may use: the wire encoding and the signatures."""

SIM_CLOCK = frozenset({"time.perf_counter"})
"""The simulator measures its own wall time (a run's ``wall_s``) and nothing else off the clock."""

SIM_CHANCE = frozenset({"random.Random"})
"""The simulator draws chance only from generators it seeds, so a seed replays a run exactly."""


@dataclass(frozen=True)
class Import:
    """One name a module takes from another: an import statement, or ``module.attr`` on one."""

    path: str
    line: int
    module: str
    text: str

    def top(self) -> str:
        """The top-level package, which decides stdlib or third party."""
        return self.module.split(".")[0]

    def under(self, package: str) -> bool:
        """Whether this names ``package`` or something inside it."""
        return self.module == package or self.module.startswith(package + ".")

    def within(self, folder: str) -> bool:
        """Whether the importing file lies in ``folder`` (a path prefix like ``node/core/``)."""
        return self.path.startswith(folder)


@dataclass(frozen=True)
class Violation:
    """An import that breaks a rule, printed as ``path:line: import text (why)``."""

    found: Import
    why: str

    def __str__(self) -> str:
        return f"{self.found.path}:{self.found.line}: {self.found.text} ({self.why})"


def package_of(path: str) -> list[str]:
    """The dotted package a file at ``path`` belongs to, for resolving its relative imports."""
    parts = path.removesuffix(".py").split("/")
    return parts[:-1]


def resolve_from(node: ast.ImportFrom, path: str) -> str:
    """The absolute module a ``from ... import`` reads from (``from . import x`` in node/core is node.core)."""
    if node.level == 0:
        return node.module or ""
    base = package_of(path)[: len(package_of(path)) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


@cache
def parse(source: str, path: str) -> ast.Module:
    """A module's syntax tree, parsed once however many rules read it."""
    return ast.parse(source, filename=path)


def statement(lines: list[str], node: ast.stmt) -> str:
    """The source of ``node`` on one line (a parenthesised import spread over lines is joined)."""
    end = node.end_lineno or node.lineno
    return " ".join(line.strip() for line in lines[node.lineno - 1 : end])


def imports_in(source: str, path: str) -> list[Import]:
    """Every import in a module's source, at any depth, each as the most specific name it could mean.

    ``from a import b`` becomes ``a.b``: ``b`` may be a submodule (``from network import cli``),
    and when it is not, ``a.b`` still lies inside ``a`` for every rule here.
    """
    found: list[Import] = []
    lines = source.splitlines()
    for node in ast.walk(parse(source, path)):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name, statement(lines, node)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = resolve_from(node, path)
            names = [module if alias.name == "*" else f"{module}.{alias.name}" for alias in node.names]
            found += [Import(path, node.lineno, name, statement(lines, node)) for name in names]
    return sorted(found, key=lambda imp: imp.line)


def attributes_used(source: str, path: str, modules: frozenset[str]) -> list[Import]:
    """Every ``m.attr`` read on a plain ``import m`` of one of ``modules``, as module ``m.attr``."""
    tree = parse(source, path)
    lines = source.splitlines()
    bound = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name in modules
    }
    uses = [
        Import(path, node.lineno, f"{bound[node.value.id]}.{node.attr}", lines[node.lineno - 1].strip())
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
    ]
    return sorted(uses, key=lambda use: use.line)


# --- the rules: each takes one import and says why it is wrong, or None -------------------------------


def core_is_pure(imp: Import) -> str | None:
    """(a) node/core: no I/O, clock, chance or CLI; only stdlib, msgpack, cryptography, tomli_w and itself."""
    if not imp.within("node/core/"):
        return None
    if imp.top() in IO_AND_CLOCK | NETWORK_CLIENTS:
        return f"the pure core must not import {imp.top()}"
    if imp.top() in STDLIB | CORE_THIRD_PARTY or imp.under("node.core"):
        return None
    return "the pure core imports only node.core, msgpack, cryptography, tomli_w and the standard library"


def node_ignores_network(imp: Import) -> str | None:
    """(b) node/ never imports network/: a validator knows nothing of what carries its messages."""
    if imp.within("node/") and imp.under("network"):
        return "node/ must not import network/"
    return None


def sim_uses_core_only(imp: Import) -> str | None:
    """(c) network/sim: the core, itself and the standard library, without waiting or I/O.

    ``time`` and ``random`` are imported for ``time.perf_counter`` and ``random.Random`` only;
    the attribute checks in :func:`sim_clock_and_chance` hold them to that.
    """
    if not imp.within("network/sim/"):
        return None
    if imp.under("node.core") or imp.under("network.sim"):
        return None
    if imp.top() in {"time", "random"} and imp.module in {"time", "random"} | SIM_CLOCK | SIM_CHANCE:
        return None
    if imp.top() in IO_AND_CLOCK:
        return f"the simulator must not import {imp.module} (virtual time, no I/O)"
    if imp.top() in STDLIB:
        return None
    return "the simulator imports only node.core, network.sim and the standard library"


def sim_clock_and_chance(imp: Import) -> str | None:
    """(c) In network/sim, ``time.X`` and ``random.X`` only as :data:`SIM_CLOCK` and :data:`SIM_CHANCE`."""
    if not imp.within("network/sim/") or imp.module in SIM_CLOCK | SIM_CHANCE:
        return None
    return f"the simulator reads the clock only for its wall time and chance only from a seeded Random, not {imp.module}"


def only_cli_imports_click(imp: Import) -> str | None:
    """(d) click belongs to network/cli; everything else is callable without a command line."""
    if imp.top() == "click" and not imp.within("network/cli/"):
        return "only network/cli imports click"
    return None


def nothing_imports_cli(imp: Import) -> str | None:
    """(e) network/cli wires the parts together; no part reaches back into it."""
    if imp.under("network.cli") and not (imp.within("network/cli/") or imp.within("tests/")):
        return "nothing outside network/cli imports network.cli"
    return None


def product_ignores_tests(imp: Import) -> str | None:
    """(f) Product code and bench/ never import tests/: tests are not shipped and may change freely."""
    if imp.top() == "tests" and not imp.within("tests/"):
        return "product code and bench/ must not import tests"
    return None


LEDGER_LAYERS = (
    "values",
    "queries",
    "balances",
    "genesis",
    "slashing",
    "evidence",
    "downtime",
    "rewards",
    "transactions",
    "epochs",
)
"""node/core/ledger's modules, lowest first: each imports only those before it, so none import in a circle."""


def ledger_layers(imp: Import) -> str | None:
    """(g) node/core/ledger: a module imports only the ledger modules before it in :data:`LEDGER_LAYERS`."""
    if (
        not imp.within("node/core/ledger/")
        or imp.path.endswith("/__init__.py")
        or not imp.under("node.core.ledger")
    ):
        return None
    importer = imp.path.rsplit("/", 1)[-1].removesuffix(".py")
    parts = imp.module.split(".")
    if len(parts) < 4 or parts[3] not in LEDGER_LAYERS:
        return "a ledger module imports its siblings by name, never the package (whose __init__ imports them all)"
    if importer not in LEDGER_LAYERS:
        return f"ledger/{importer}.py is not in LEDGER_LAYERS: give it its place there"
    below = LEDGER_LAYERS[: LEDGER_LAYERS.index(importer)]
    if parts[3] not in below:
        return (
            f"ledger/{importer}.py may import only the ledger modules before it: {', '.join(below) or 'none'}"
        )
    return None


@dataclass(frozen=True)
class Rule:
    """A named check and how it reads a module: its imports, or its uses of some modules' attributes."""

    name: str
    check: Callable[[Import], str | None]
    read: Callable[[str, str], list[Import]] = imports_in

    def violations(self, source: str, path: str) -> list[Violation]:
        """What in this module's ``source`` breaks the rule, in line order."""
        found = [
            Violation(imp, why) for imp in self.read(source, path) if (why := self.check(imp)) is not None
        ]
        once = {str(v): v for v in found}  # ``from m import a, b`` breaks a rule once, not twice
        return list(once.values())


def _sim_attributes(source: str, path: str) -> list[Import]:
    return attributes_used(source, path, frozenset({"time", "random"}))


RULES = (
    Rule("a-core-is-pure", core_is_pure),
    Rule("b-node-ignores-network", node_ignores_network),
    Rule("c-sim-uses-core-only", sim_uses_core_only),
    Rule("c-sim-clock-and-chance", sim_clock_and_chance, _sim_attributes),
    Rule("d-only-cli-imports-click", only_cli_imports_click),
    Rule("e-nothing-imports-cli", nothing_imports_cli),
    Rule("f-product-ignores-tests", product_ignores_tests),
    Rule("g-ledger-layers", ledger_layers),
)


def scanned_modules() -> Iterator[tuple[str, str]]:
    """(path relative to the repo, source) of every module the rules apply to."""
    for pattern in SCANNED:
        for file in sorted(REPO_ROOT.glob(pattern)):
            yield file.relative_to(REPO_ROOT).as_posix(), file.read_text(encoding="utf-8")


def report(rule: Rule, violations: list[Violation]) -> str:
    """The failure message: the rule, why it exists, then one line per offending import."""
    why = " ".join((rule.check.__doc__ or "").split("\n\n")[0].split())
    return "\n".join([f"{rule.name}: {why}", *(f"  {v}" for v in violations)])


# --- the tree obeys every rule --------------------------------------------------------------------------


def test_the_scan_reaches_every_part_of_the_tree() -> None:
    """Guard against rules passing because they read nothing (a moved folder, a wrong glob)."""
    paths = {path for path, _ in scanned_modules()}
    for expected in (
        "node/core/consensus/machine.py",
        "node/core/ledger/epochs.py",
        "node/runtime/node.py",
        "network/sim/runner.py",
        "bench/soak.py",
    ):
        assert expected in paths
    assert any(path.startswith("network/cli/") for path in paths)
    assert any(path.startswith("docker/") for path in paths)


@pytest.mark.parametrize("rule", RULES, ids=[rule.name for rule in RULES])
def test_the_tree_obeys(rule: Rule) -> None:
    violations = [v for path, source in scanned_modules() for v in rule.violations(source, path)]
    assert not violations, report(rule, violations)


# --- the checker can fail -------------------------------------------------------------------------------

SYNTHETIC = (
    ("a-core-is-pure", "node/core/fake.py", "import hashlib\n\n\ndef now():\n    import time\n", 5),
    ("a-core-is-pure", "node/core/fake.py", "import hashlib\nfrom ..runtime import store\n", 2),
    ("a-core-is-pure", "node/core/fake.py", "import yaml\n", 1),
    (
        "b-node-ignores-network",
        "node/runtime/fake.py",
        "import os\n\n\ndef f():\n    from network import sim\n",
        5,
    ),
    ("c-sim-uses-core-only", "network/sim/fake.py", "from node.core import state\nimport asyncio\n", 2),
    ("c-sim-uses-core-only", "network/sim/fake.py", "from network.transport import mqtt\n", 1),
    ("c-sim-uses-core-only", "network/sim/fake.py", "from time import time\n", 1),
    ("c-sim-clock-and-chance", "network/sim/fake.py", "import time\n\nstarted = time.time()\n", 3),
    ("c-sim-clock-and-chance", "network/sim/fake.py", "import random\n\nx = random.choice([1, 2])\n", 3),
    ("d-only-cli-imports-click", "network/testnet/fake.py", "import json\nimport click\n", 2),
    ("e-nothing-imports-cli", "network/testnet/fake.py", "from network.cli.keys import UserError\n", 1),
    ("e-nothing-imports-cli", "network/testnet/fake.py", "from network import cli\n", 1),
    ("f-product-ignores-tests", "bench/fake.py", "from tests.support import waiting\n", 1),
    (
        "g-ledger-layers",
        "node/core/ledger/values.py",
        "import dataclasses\nfrom node.core.ledger.queries import x\n",
        2,
    ),
    ("g-ledger-layers", "node/core/ledger/slashing.py", "from node.core import ledger\n", 1),
    ("g-ledger-layers", "node/core/ledger/fees.py", "from node.core.ledger.values import Ledger\n", 1),
)


@pytest.mark.parametrize(("name", "path", "source", "line"), SYNTHETIC)
def test_a_violating_module_fails_naming_its_line(name: str, path: str, source: str, line: int) -> None:
    (rule,) = (rule for rule in RULES if rule.name == name)
    violations = rule.violations(source, path)
    assert [v.found.line for v in violations] == [line]
    message = report(rule, violations)
    assert f"{path}:{line}: " in message
    assert source.splitlines()[line - 1].strip() in message


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("node/core/fake.py", "from __future__ import annotations\nimport msgpack\nfrom . import codec\n"),
        ("node/core/fake.py", "from cryptography.exceptions import InvalidSignature\n"),
        (
            "network/sim/fake.py",
            "import random\nimport time\n\nr = random.Random(1)\nt = time.perf_counter()\n",
        ),
        ("network/cli/fake.py", "import click\nfrom network.cli.keys import keys\n"),
        ("tests/test_fake.py", "from tests.support import chain\n"),
        ("node/core/ledger/epochs.py", "from node.core.ledger.values import Ledger\nfrom . import rewards\n"),
        ("node/core/ledger/__init__.py", "from node.core.ledger.epochs import apply_block\n"),
    ],
)
def test_allowed_imports_pass(path: str, source: str) -> None:
    assert [str(v) for rule in RULES for v in rule.violations(source, path)] == []


def test_relative_imports_resolve_against_the_files_package() -> None:
    (imp,) = imports_in("from ..runtime.store import Store\n", "node/core/signer.py")
    assert imp.module == "node.runtime.store.Store"
    (imp,) = imports_in("from . import codec\n", "node/core/__init__.py")
    assert imp.module == "node.core.codec"
