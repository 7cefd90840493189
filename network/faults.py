"""Fault plans for the simulator: what goes wrong, when, to whom.

A plan is written as a compact spec, items separated by commas:

    drop=0.05                 each delivery lost with this probability
    delay=5-80                one-way delay in ms, uniform in [min, max]
    dup=0.02                  each delivery duplicated with this probability
    reorder=0.1               this fraction of deliveries get up to 10x extra delay
    partition=v1+v2|v3+v4@2000-9000   groups that cannot talk, from t=2000 to 9000 ms
    crash=v2@3000-7000        v2 is down (state in memory lost) from 3000, restarts at 7000

Times are virtual milliseconds since the start of the run. Nodes not named
in any partition group can talk to everyone.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed; the message names the bad item."""


@dataclass(frozen=True)
class Window:
    start_ms: int
    end_ms: int

    def contains(self, t: int) -> bool:
        return self.start_ms <= t < self.end_ms


@dataclass(frozen=True)
class Partition:
    groups: tuple[frozenset[str], ...]
    window: Window

    def separates(self, a: str, b: str, t: int) -> bool:
        if not self.window.contains(t):
            return False
        group_a = next((g for g in self.groups if a in g), None)
        group_b = next((g for g in self.groups if b in g), None)
        return group_a is not None and group_b is not None and group_a != group_b


@dataclass(frozen=True)
class Crash:
    node: str
    window: Window


@dataclass(frozen=True)
class FaultPlan:
    drop: float = 0.0
    delay_ms: tuple[int, int] = (1, 20)
    dup: float = 0.0
    reorder: float = 0.0
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = field(default=())

    def last_heal_ms(self) -> int:
        """When the last timed fault ends (0 if none): liveness is judged from here."""
        ends = [p.window.end_ms for p in self.partitions] + [c.window.end_ms for c in self.crashes]
        return max(ends, default=0)

    def names(self) -> set[str]:
        named = {c.node for c in self.crashes}
        for partition in self.partitions:
            for group in partition.groups:
                named |= group
        return named


def _probability(value: str, item: str) -> float:
    try:
        p = float(value)
    except ValueError:
        raise FaultSpecError(f"{item}: expected a probability") from None
    if not 0.0 <= p < 1.0:
        raise FaultSpecError(f"{item}: probability must be in [0, 1)")
    return p


def _window(text: str, item: str) -> Window:
    try:
        start, end = (int(x) for x in text.split("-", 1))
    except ValueError:
        raise FaultSpecError(f"{item}: expected @START-END in ms") from None
    if not 0 <= start < end:
        raise FaultSpecError(f"{item}: window must satisfy 0 <= START < END")
    return Window(start, end)


def _range(text: str, item: str) -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in text.split("-", 1)) if "-" in text else (int(text), int(text))
    except ValueError:
        raise FaultSpecError(f"{item}: expected MIN-MAX in ms") from None
    if not 0 <= lo <= hi:
        raise FaultSpecError(f"{item}: need 0 <= MIN <= MAX")
    return lo, hi


def parse_fault_spec(spec: str) -> FaultPlan:
    """Parse a compact fault spec (see the module docstring)."""
    values: dict[str, object] = {"partitions": [], "crashes": []}
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if not sep:
            raise FaultSpecError(f"{item}: expected KEY=VALUE")
        if key in ("drop", "dup", "reorder"):
            values[key] = _probability(value, item)
        elif key == "delay":
            values["delay_ms"] = _range(value, item)
        elif key == "partition":
            groups_text, at, window = value.partition("@")
            groups = tuple(frozenset(g.split("+")) for g in groups_text.split("|"))
            if not at or len(groups) < 2 or any(not all(g) for g in groups):
                raise FaultSpecError(f"{item}: expected A+B|C+D@START-END")
            values["partitions"].append(Partition(groups, _window(window, item)))  # type: ignore[union-attr]
        elif key == "crash":
            node, at, window = value.partition("@")
            if not node or not at:
                raise FaultSpecError(f"{item}: expected NODE@START-END")
            values["crashes"].append(Crash(node, _window(window, item)))  # type: ignore[union-attr]
        else:
            raise FaultSpecError(f"{item}: unknown fault '{key}'")
    values["partitions"] = tuple(values["partitions"])  # type: ignore[arg-type]
    values["crashes"] = tuple(values["crashes"])  # type: ignore[arg-type]
    return FaultPlan(**values)  # type: ignore[arg-type]


def random_fault_plan(seed: int, names: list[str], protected: frozenset[str] = frozenset()) -> FaultPlan:
    """A seeded mix of loss, delay, duplication, reordering, a partition and crashes.

    Every timed fault heals by 12 s of virtual time, so liveness can be
    judged after it. Nodes in `protected` (e.g. Byzantine ones) are not
    crashed, so crashes only ever take honest nodes down.
    """
    import random

    rng = random.Random(f"faults/{seed}")
    lo = rng.randint(1, 20)
    plan_partitions: list[Partition] = []
    if len(names) >= 2 and rng.random() < 0.5:
        shuffled = rng.sample(names, len(names))
        cut = rng.randint(1, len(names) - 1)
        start = rng.randint(0, 4000)
        plan_partitions.append(
            Partition(
                (frozenset(shuffled[:cut]), frozenset(shuffled[cut:])),
                Window(start, start + rng.randint(500, 6000)),
            )
        )
    crashable = [name for name in names if name not in protected]
    crashes: list[Crash] = []
    if crashable and rng.random() < 0.5:
        start = rng.randint(0, 6000)
        crashes.append(Crash(rng.choice(crashable), Window(start, start + rng.randint(200, 5000))))
    return FaultPlan(
        drop=rng.choice((0.0, 0.0, 0.02, 0.1, 0.2)),
        delay_ms=(lo, lo + rng.randint(0, 150)),
        dup=rng.choice((0.0, 0.05)),
        reorder=rng.choice((0.0, 0.1)),
        partitions=tuple(plan_partitions),
        crashes=tuple(crashes),
    )
