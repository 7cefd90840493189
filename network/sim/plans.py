"""Fault plans for the simulator: what goes wrong, when, to whom.

Also the random draws a sweep explores: fault plans (`random_fault_plan`)
and the conditions faults meet (`random_setup`: stake shapes up to a
Byzantine stake just under 1/3, committees smaller than the set, short
downtime windows). Every draw is a pure function of a seed and is written
back out as explicit options, so a run found by a sweep replays alone.

A plan is written as a compact spec, items separated by commas:

    drop=0.05                 each delivery lost with this probability
    delay=5-80                one-way delay in ms, uniform in [min, max]
    dup=0.02                  each delivery duplicated with this probability
    reorder=0.1               this fraction of deliveries get up to 10x extra delay
    partition=v1+v2|v3+v4@2000-9000   groups that cannot talk, from t=2000 to 9000 ms
    crash=v2@3000-7000        v2 is down (state in memory lost) from 3000, restarts at 7000

Times are virtual milliseconds since the start of the run. Nodes not named
in any partition group can talk to everyone. One node's crash windows may
not overlap (a node cannot crash while it is down).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from itertools import pairwise


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
    _check_crash_windows(values["crashes"])  # type: ignore[arg-type]
    return FaultPlan(**values)  # type: ignore[arg-type]


def _check_crash_windows(crashes: tuple[Crash, ...]) -> None:
    """A second crash of a node still down would restart it twice: refuse the spec instead."""
    by_node: dict[str, list[Window]] = {}
    for crash in crashes:
        by_node.setdefault(crash.node, []).append(crash.window)
    for node, windows in by_node.items():
        windows.sort(key=lambda w: w.start_ms)
        for earlier, later in pairwise(windows):
            if later.start_ms < earlier.end_ms:
                raise FaultSpecError(
                    f"crash={node}: windows {earlier.start_ms}-{earlier.end_ms} and "
                    f"{later.start_ms}-{later.end_ms} overlap"
                )


def _node_order(name: str) -> tuple[int, str]:
    """v2 before v10: the order validator names are written in."""
    return (len(name), name)


def format_fault_spec(plan: FaultPlan) -> str:
    """The compact spec of `plan`, written out in full: `parse_fault_spec` gives `plan` back.

    This is what makes a drawn plan ('random') replayable from a command line.
    """
    items: list[str] = []
    if plan.drop:
        items.append(f"drop={plan.drop!r}")
    if plan.delay_ms != FaultPlan().delay_ms:
        items.append(f"delay={plan.delay_ms[0]}-{plan.delay_ms[1]}")
    if plan.dup:
        items.append(f"dup={plan.dup!r}")
    if plan.reorder:
        items.append(f"reorder={plan.reorder!r}")
    for partition in plan.partitions:
        groups = "|".join("+".join(sorted(group, key=_node_order)) for group in partition.groups)
        items.append(f"partition={groups}@{partition.window.start_ms}-{partition.window.end_ms}")
    for crash in plan.crashes:
        items.append(f"crash={crash.node}@{crash.window.start_ms}-{crash.window.end_ms}")
    return ",".join(items)


# ------------------------------------------------------------------ random draws

MAX_HEAL_MS = 15_000  # every drawn timed fault is over by then, so liveness is judged after it


def _heals(rng: random.Random, earliest: int, latest: int, shortest: int, longest: int) -> Window:
    """A window starting in [earliest, latest], lasting [shortest, longest] ms, over by MAX_HEAL_MS."""
    start = rng.randint(earliest, latest)
    return Window(start, min(start + rng.randint(shortest, longest), MAX_HEAL_MS))


def _random_partition(rng: random.Random, names: list[str]) -> Partition:
    """Two or three groups (three only with three nodes or more) that cannot talk, then heal."""
    ways = 3 if len(names) >= 3 and rng.random() < 0.4 else 2
    shuffled = rng.sample(names, len(names))
    cuts = sorted(rng.sample(range(1, len(names)), ways - 1))
    bounds = [0, *cuts, len(names)]
    groups = tuple(frozenset(shuffled[lo:hi]) for lo, hi in pairwise(bounds))
    return Partition(groups, _heals(rng, 0, 8000, 300, 6000))


def _random_crashes(rng: random.Random, crashable: list[str]) -> list[Crash]:
    """Up to three honest nodes down for a while; sometimes one of them crashes twice."""
    count = min(len(crashable), rng.choice((0, 0, 1, 1, 2, 3)))
    crashes = [Crash(name, _heals(rng, 0, 9000, 200, 5000)) for name in rng.sample(crashable, count)]
    if crashes and rng.random() < 0.25:
        first = crashes[0]
        again = first.window.end_ms + rng.randint(100, 2000)
        if again < MAX_HEAL_MS:
            crashes.append(Crash(first.node, Window(again, min(again + rng.randint(200, 3000), MAX_HEAL_MS))))
    return crashes


def _free(crashes: list[Crash], node: str, window: Window) -> bool:
    """Whether `node` is up all through `window` (with a little room either side) in `crashes`."""
    return all(
        c.node != node or c.window.end_ms + 50 <= window.start_ms or window.end_ms + 50 <= c.window.start_ms
        for c in crashes
    )


def _corner_crashes(
    rng: random.Random, crashable: list[str], partitions: list[Partition], crashes: list[Crash]
) -> list[Crash]:
    """Crashes a uniform draw rarely makes, where penalties used to go wrong (issue 25).

    - a node crashes right after a stall (a partition heals), when it may
      hold late precommits or be the next proposer;
    - every honest node restarts once, one after the other, so whatever one
      node alone remembered (evidence, late precommits) must survive on disk.
    """
    extra: list[Crash] = []
    if partitions and crashable and rng.random() < 0.3:
        heal = max(p.window.end_ms for p in partitions)
        start = heal + rng.randint(0, 300)
        window = Window(start, min(start + rng.randint(200, 2000), MAX_HEAL_MS))
        node = rng.choice(crashable)
        if window.start_ms < window.end_ms and _free(crashes, node, window):
            extra.append(Crash(node, window))
    if crashable and rng.random() < 0.15:
        start = rng.randint(500, 4000)
        for node in rng.sample(crashable, len(crashable)):
            window = Window(start, min(start + rng.randint(300, 1500), MAX_HEAL_MS))
            if window.start_ms < window.end_ms and _free(crashes + extra, node, window):
                extra.append(Crash(node, window))
            start = window.end_ms + rng.randint(200, 1500)
            if start >= MAX_HEAL_MS - 300:
                break
    return extra


def _corner_network(rng: random.Random, plan: FaultPlan) -> FaultPlan:
    """Sometimes the worst of loss, long delay and reordering together (delays up to 600 ms)."""
    if rng.random() >= 0.3:
        return plan
    lo = rng.randint(5, 40)
    return replace(
        plan,
        drop=rng.choice((0.1, 0.15, 0.2, 0.3)),
        delay_ms=(lo, lo + rng.choice((300, 450, 600))),
        reorder=rng.choice((0.05, 0.2)),
    )


def random_fault_plan(seed: int, names: list[str], protected: frozenset[str] = frozenset()) -> FaultPlan:
    """A seeded mix of loss, delay, duplication, reordering, partitions and crashes.

    Partitions split the nodes two or three ways (up to two of them, which
    may overlap); up to three honest nodes crash and restart, one of them
    perhaps twice. Every timed fault heals by MAX_HEAL_MS of virtual time,
    so liveness can be judged after it. Nodes in `protected` (the Byzantine
    ones) are not crashed, so crashes only ever take honest nodes down.
    On a stream of its own (so the uniform draws above stay what they
    were), a seed may also land in a corner: extreme loss with long delay,
    a crash right after a stall, every honest node restarted in turn.
    """
    plan = _uniform_fault_plan(seed, names, protected)
    corners = random.Random(f"corners/{seed}")
    crashable = [name for name in names if name not in protected]
    extra = _corner_crashes(corners, crashable, list(plan.partitions), list(plan.crashes))
    plan = replace(plan, crashes=(*plan.crashes, *extra)) if extra else plan
    return _corner_network(corners, plan)


def _uniform_fault_plan(seed: int, names: list[str], protected: frozenset[str]) -> FaultPlan:
    rng = random.Random(f"faults/{seed}")
    lo = rng.randint(1, 30)
    hi = lo + rng.choice((0, 20, 60, 150, 300))
    partitions = (
        [_random_partition(rng, names) for _ in range(rng.choice((0, 0, 1, 1, 2)))] if len(names) >= 2 else []
    )
    crashes = _random_crashes(rng, [name for name in names if name not in protected])
    return FaultPlan(
        drop=rng.choice((0.0, 0.0, 0.02, 0.05, 0.1, 0.2, 0.3)),
        delay_ms=(lo, hi),
        dup=rng.choice((0.0, 0.0, 0.02, 0.1)),
        reorder=rng.choice((0.0, 0.0, 0.05, 0.2)),
        partitions=tuple(partitions),
        crashes=tuple(crashes),
    )


STAKE_SHAPES = ("equal", "uneven", "power-law", "edge")


@dataclass(frozen=True)
class Setup:
    """Drawn conditions for one run: stakes, committee size, protocol parameters.

    `params` holds only what differs from the genesis defaults, as
    (name, value) pairs that `posnet sim --param NAME=VALUE` accepts.
    """

    shape: str
    stakes: tuple[int, ...]
    committee_size: int | None  # None: everyone sits on the committee
    params: tuple[tuple[str, int], ...]


def draw_stakes(rng: random.Random, shape: str, validators: int, byzantine: int) -> tuple[int, ...]:
    """Stakes of one shape; the last `byzantine` validators hold less than 1/3 of the total.

    - equal: 1000 each;
    - uneven: uniform in [100, 5000];
    - power-law: Pareto with the 80/20 exponent, so a few pools dwarf the rest;
    - edge: uneven, with the Byzantine pools together holding just under 1/3.
    Whatever the shape, Byzantine stake is scaled down below 1/3 when it
    would reach it (a run in the model needs that); per committee it may
    still reach 1/3 when committees are sampled, which the simulator reports.
    """
    honest_count = validators - byzantine
    if shape == "equal":
        stakes = [1000] * validators
    elif shape == "power-law":
        stakes = [min(1_000_000, int(100 * rng.paretovariate(1.16))) for _ in range(validators)]
    else:
        stakes = [rng.randint(100, 5000) for _ in range(validators)]
    honest = sum(stakes[:honest_count])
    limit = (honest - 1) // 2  # Byzantine B with 2B < H, i.e. B / (B + H) < 1/3
    if byzantine == 0 or limit < byzantine:
        return tuple(stakes)
    weights = stakes[honest_count:]
    if shape == "edge" or sum(weights) > limit:
        target = limit if shape == "edge" else min(limit, sum(weights))
        scaled = [max(1, w * target // sum(weights)) for w in weights]
        while sum(scaled) > limit:  # the floor of 1 can overshoot by a little
            scaled[scaled.index(max(scaled))] -= 1
        if shape == "edge":  # rounding down left a little: the edge is exactly the largest share under 1/3
            scaled[scaled.index(max(scaled))] += target - sum(scaled)
        stakes[honest_count:] = scaled
    return tuple(stakes)


def random_setup(seed: int, validators: int, byzantine: int) -> Setup:
    """Stakes, committee size and downtime window drawn for one seed (see `Setup`).

    Committees smaller than the set are drawn for 6 validators or more;
    downtime windows are short (2-20 heights) so unfair downtime accounting
    jails an honest validator quickly enough for a short run to show it.
    """
    rng = random.Random(f"setup/{seed}")
    shape = rng.choice(STAKE_SHAPES)
    stakes = draw_stakes(rng, shape, validators, byzantine)
    committee = (
        rng.randint(max(4, validators // 2), validators - 1)
        if validators >= 6 and rng.random() < 0.3
        else None
    )
    window = rng.choice((4, 6, 8, 10, 20))
    corner = random.Random(f"corners-setup/{seed}")
    if corner.random() < 0.3:  # small windows, where one wrongly counted miss jails (issue 25)
        window = corner.choice((2, 3, 4, 6, 8))
    params = (
        ("downtime_window", window),
        ("max_missed_in_window", rng.randint(max(1, window // 2), window - 1)),
    )
    return Setup(shape, stakes, committee, params)
