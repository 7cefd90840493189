"""Geography: zones, the round-trip times between them, and which validator sits in which.

A zones file (TOML) gives a matrix of measured round-trip times between
regions, so a run shows finality as a real geography would make it. Round
trips are what ping tables publish; the network needs one-way delays, and
one-way is RTT/2 (rounded to whole ms): routes are taken as symmetric,
which is also why an asymmetric matrix is refused rather than guessed at.

    source = "where the numbers come from"   # optional, free text
    jitter_ms = 5                 # optional: each delivery gets an extra uniform 0..5 ms

    [rtt_ms]                      # round-trip times in ms; the keys are the zones, in order
    us-east = { us-east = 1, eu-west = 81 }
    eu-west = { eu-west = 1 }     # a pair needs giving once; given twice, it must agree
                                  # (a zone's own RTT defaults to 0)
    [assign]
    rule = "round-robin"          # v1 in the first zone, v2 in the second, ... (or "weights")
    weights = { us-east = 3, eu-west = 1 }   # with rule = "weights": contiguous blocks in proportion
    validators = { v7 = "eu-west" }          # named validators, whatever the rule says

The simulator (`posnet sim --zones FILE`) and the testnet's relay
(`posnet testnet up --zones FILE`) read the same file through `load_zones`
and place validators with `Zones.assign`. Every mistake is one `ZonesError`
line naming what is wrong. Pure: the caller reads the file.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

RULES = ("round-robin", "weights")
MAX_RTT_MS = 10_000  # ten seconds round trip: past this a value is a typo (seconds for ms), not a geography


class ZonesError(ValueError):
    """A zones file that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class Zones:
    """A parsed zones file: the zones, their one-way latencies, jitter, and the assignment rules."""

    names: tuple[str, ...]
    one_way: tuple[tuple[int, ...], ...]  # one_way[i][j]: ms from zone i to zone j (RTT/2)
    jitter_ms: int = 0
    rule: str | None = None
    weights: tuple[tuple[str, int], ...] = ()
    explicit: tuple[tuple[str, str], ...] = ()  # (validator, zone) named in the file
    path: str = ""  # as given on the command line: what the replay line repeats
    digest: str = ""  # of the file's bytes: a trace header says which file a run used

    def one_way_ms(self, a: str, b: str) -> int:
        """The one-way latency from zone `a` to zone `b`."""
        return self.one_way[self.names.index(a)][self.names.index(b)]

    def assign(self, validators: Iterable[str]) -> dict[str, str]:
        """Each validator's zone: named ones as named, the rest by the rule (in the order given).

        The rule places by position among all `validators` (named ones
        included), so naming one validator does not shift the others.
        """
        names = list(validators)
        known = set(names)
        unknown = [name for name, _ in self.explicit if name not in known]
        if unknown:
            raise ZonesError(f"assign.validators: names unknown validator {unknown[0]!r}")
        by_rule = self._by_rule(len(names))
        placed = dict(self.explicit)
        out: dict[str, str] = {}
        for index, name in enumerate(names):
            zone = placed.get(name) or (by_rule[index] if by_rule else None)
            if zone is None:
                raise ZonesError(
                    f"validator {name!r} has no zone: name it in assign.validators or give assign.rule"
                )
            out[name] = zone
        return out

    def _by_rule(self, count: int) -> list[str]:
        if self.rule == "round-robin":
            return [self.names[i % len(self.names)] for i in range(count)]
        if self.rule == "weights":
            total = sum(weight for _, weight in self.weights)
            out: list[str] = []
            running = 0
            for zone, weight in self.weights:
                running += weight
                out += [zone] * (count * running // total - len(out))
            return out
        return []


def load_zones(text: str, path: str = "") -> Zones:
    """Parse a zones file's text (see the module docstring); `path` prefixes no message, it is kept."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ZonesError(f"not valid TOML: {exc}") from None
    extra = sorted(set(raw) - {"jitter_ms", "rtt_ms", "assign", "source"})
    if extra:
        raise ZonesError(f"unknown key {extra[0]!r} (expected jitter_ms, rtt_ms, assign, source)")
    if not isinstance(raw.get("source", ""), str):
        raise ZonesError("source: expected a string (where the numbers come from)")
    names, one_way = _matrix(raw.get("rtt_ms"))
    jitter = _whole(raw.get("jitter_ms", 0), "jitter_ms", MAX_RTT_MS)
    rule, weights, explicit = _assignment(raw.get("assign", {}), names)
    return Zones(
        names=names,
        one_way=one_way,
        jitter_ms=jitter,
        rule=rule,
        weights=weights,
        explicit=explicit,
        path=path,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
    )


def _whole(value: Any, where: str, limit: float) -> int:
    """A non-negative whole number of ms up to `limit` (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ZonesError(f"{where}: expected a whole number of ms, got {value!r}")
    if not 0 <= value <= limit:
        raise ZonesError(f"{where}: {value} is out of range 0..{int(limit)}")
    return value


def _rtt(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ZonesError(f"{where}: expected a round-trip time in ms, got {value!r}")
    if value < 0:
        raise ZonesError(f"{where}: negative round-trip time {value}")
    if value > MAX_RTT_MS:
        raise ZonesError(f"{where}: {value} ms is over {MAX_RTT_MS} ms (seconds written as ms?)")
    return float(value)


def _matrix(table: Any) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """Zone names (the rows' order) and one-way ms, every pair given once or twice alike."""
    if not isinstance(table, dict) or not table:
        raise ZonesError("rtt_ms: expected a table with one row of round-trip times per zone")
    names = tuple(table)
    given: dict[tuple[str, str], float] = {}
    for zone, row in table.items():
        if not isinstance(row, dict):
            raise ZonesError(f"rtt_ms.{zone}: expected a table of zone = RTT in ms")
        for other, value in row.items():
            where = f"rtt_ms.{zone}.{other}"
            if other not in table:
                raise ZonesError(f"{where}: unknown zone {other!r} (zones are the keys of rtt_ms)")
            rtt = _rtt(value, where)
            back = given.get((other, zone))
            if back is not None and back != rtt:
                raise ZonesError(f"{where}: asymmetric: {rtt:g} ms one way, {back:g} ms the other")
            given[(zone, other)] = rtt
    rows = []
    for a in names:
        row = []
        for b in names:
            rtt = given.get((a, b), given.get((b, a)))
            if rtt is None:
                if a != b:
                    raise ZonesError(f"rtt_ms: no round-trip time between {a!r} and {b!r}")
                rtt = 0.0
            row.append(int(rtt / 2 + 0.5))  # one-way, half up: deterministic whatever the platform rounds
        rows.append(tuple(row))
    return names, tuple(rows)


def _assignment(
    table: Any, zones: tuple[str, ...]
) -> tuple[str | None, tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    if not isinstance(table, dict):
        raise ZonesError("assign: expected a table (rule, weights, validators)")
    extra = sorted(set(table) - {"rule", "weights", "validators"})
    if extra:
        raise ZonesError(f"assign: unknown key {extra[0]!r} (expected rule, weights, validators)")
    rule = table.get("rule")
    if rule is not None and rule not in RULES:
        raise ZonesError(f"assign.rule: {rule!r} is not one of {', '.join(RULES)}")
    weights = _weights(table.get("weights"), zones, rule)
    explicit = table.get("validators", {})
    if not isinstance(explicit, dict):
        raise ZonesError("assign.validators: expected a table of validator = zone")
    for name, zone in explicit.items():
        if zone not in zones:
            raise ZonesError(f"assign.validators.{name}: unknown zone {zone!r}")
    if rule is None and not explicit:
        raise ZonesError("assign: give a rule (round-robin or weights) or name validators")
    return rule, weights, tuple(explicit.items())


def _weights(table: Any, zones: tuple[str, ...], rule: str | None) -> tuple[tuple[str, int], ...]:
    if table is None:
        if rule == "weights":
            raise ZonesError("assign.weights: rule 'weights' needs a table of zone = weight")
        return ()
    if rule != "weights":
        raise ZonesError("assign.weights: given, but assign.rule is not 'weights'")
    if not isinstance(table, Mapping) or not table:
        raise ZonesError("assign.weights: expected a table of zone = weight")
    out = []
    for zone, weight in table.items():
        if zone not in zones:
            raise ZonesError(f"assign.weights.{zone}: unknown zone {zone!r}")
        out.append((zone, _whole(weight, f"assign.weights.{zone}", 1_000_000)))
    if not any(weight for _, weight in out):
        raise ZonesError("assign.weights: every weight is 0")
    return tuple(out)


def describe(zones: Zones, placement: Mapping[str, str]) -> str:
    """'us-east 3, eu-west 1': how many validators each zone holds, for a summary line."""
    counts = {zone: 0 for zone in zones.names}
    for zone in placement.values():
        counts[zone] += 1
    return ", ".join(f"{zone} {count}" for zone, count in counts.items() if count)
