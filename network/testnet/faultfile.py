"""The fault relay's control file and its answer: DIR/faults.json and DIR/faults.applied.json.

The `posnet testnet delay|drop|partition|heal` commands write faults.json
(atomically, under the testnet lock); the relay polls it, makes it real and
answers in faults.applied.json: the generation it has applied (so a command
returns only once the fault is real), the island brokers it runs (so
leftovers can be stopped), and per-node counters of relayed and dropped
packets. Both are JSON so a human, `posnet status` and a scenario runner can
read them without the relay's asyncio machinery.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FAULTS_FILE = "faults.json"
APPLIED_FILE = "faults.applied.json"
MAX_DELAY_MS = 600_000


@dataclass
class LinkFaults:
    """The faults on one node's link to its broker."""

    delay_ms: int = 0
    drop: float = 0.0

    @property
    def active(self) -> bool:
        return self.delay_ms > 0 or self.drop > 0


@dataclass
class NetworkFaults:
    """What DIR/faults.json asks for: island groups and per-node link faults.

    `groups` empty means one network. Otherwise group 0 stays on the main
    broker and group i > 0 gets island broker i; the writer lists every node
    in some group (nodes it did not name are put in group 0).
    """

    generation: int = 0
    groups: list[list[str]] = field(default_factory=list)
    links: dict[str, LinkFaults] = field(default_factory=dict)

    def group_of(self, node: str) -> int:
        for index, members in enumerate(self.groups):
            if node in members:
                return index
        return 0

    def link(self, node: str) -> LinkFaults:
        return self.links.get(node) or LinkFaults()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> NetworkFaults:
        groups = [[str(n) for n in group] for group in raw.get("groups", [])]
        links = {str(name): _link_faults(value) for name, value in raw.get("links", {}).items()}
        return cls(generation=int(raw.get("generation", 0)), groups=groups, links=links)


def _link_faults(raw: dict[str, Any]) -> LinkFaults:
    delay_ms, drop = int(raw.get("delay_ms", 0)), float(raw.get("drop", 0.0))
    if not 0 <= delay_ms <= MAX_DELAY_MS:
        raise ValueError(f"delay_ms {delay_ms} outside 0..{MAX_DELAY_MS}")
    if not 0.0 <= drop <= 1.0:
        raise ValueError(f"drop {drop} outside 0..1")
    return LinkFaults(delay_ms, drop)


def faults_path(directory: Path) -> Path:
    return directory / FAULTS_FILE


def applied_path(directory: Path) -> Path:
    return directory / APPLIED_FILE


def read_faults(directory: Path) -> NetworkFaults:
    """The requested faults; none when the file does not exist. ValueError when it is malformed."""
    try:
        raw = json.loads(faults_path(directory).read_text())
    except FileNotFoundError:
        return NetworkFaults()
    if not isinstance(raw, dict):
        raise ValueError(f"{faults_path(directory)}: not a JSON object")
    try:
        return NetworkFaults.from_json(raw)
    except (TypeError, AttributeError) as exc:
        raise ValueError(f"{faults_path(directory)}: {exc}") from None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` in one step, so the relay (or a status reader) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_faults(directory: Path, faults: NetworkFaults) -> None:
    write_json_atomic(faults_path(directory), faults.to_json())


def read_applied(directory: Path) -> dict[str, Any] | None:
    """What the relay last reported, or None (not started yet, or unreadable mid-replace)."""
    try:
        raw = json.loads(applied_path(directory).read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None
