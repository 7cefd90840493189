"""Running an economy to a JSON-lines file, summing it up, and sweeping one parameter.

A run's file is its record: one JSON object per epoch, keys sorted, integers
only, so the same economy file and seed give the same bytes on any machine
(`posnet econ report` draws it; a test compares two runs byte for byte).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from network.econ.config import EconError, EconomyConfig
from network.econ.engine import FastForward
from network.econ.full import MessageLevel
from node.core.genesis import PPM


def epoch_lines(
    config: EconomyConfig,
    seed: int,
    epochs: int,
    progress: Callable[[int], None] | None = None,
    fast: bool = True,
) -> Iterator[str]:
    """Each epoch's record as one JSON line, from fast-forward or the message-level simulator."""
    engine = FastForward(config, seed) if fast else MessageLevel(config, seed)
    for record in engine.run(epochs, progress):
        yield json.dumps(record, sort_keys=True, separators=(",", ":"))


def write_run(lines: Iterable[str], out: TextIO) -> list[dict[str, Any]]:
    """Write each line as it comes (an interrupted run keeps what it did); return the records."""
    records = []
    for line in lines:
        out.write(line + "\n")
        out.flush()
        records.append(json.loads(line))
    return records


def read_run(path: Path) -> list[dict[str, Any]]:
    """A run's records back from its JSON-lines file; EconError for a file that is not one."""
    records = []
    try:
        text = path.read_text()
    except OSError as exc:
        raise EconError(f"{path}: cannot read ({exc.strerror})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise EconError(f"{path}:{number}: not a JSON line") from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise EconError(f"{path}:{number}: not an economy record (no epoch)")
        records.append(record)
    if not records:
        raise EconError(f"{path}: no epochs in it")
    return records


def pct(ppm: int, digits: int = 1) -> str:
    return f"{ppm * 100 / PPM:.{digits}f}%"


def class_yields(records: list[dict[str, Any]]) -> str:
    """Each delegator class's mean yield per epoch over the run, e.g. `savers 0.215%`."""
    rows = [r for r in records if "classes" in r and r["epoch"] >= 0]
    if not rows:
        return "no delegators"
    means = {
        name: sum(r["classes"][name]["yield_ppm"] for r in rows) // len(rows) for name in rows[-1]["classes"]
    }
    return ", ".join(f"{name} {pct(value, 3)}" for name, value in means.items()) or "no delegators"


def summary_lines(records: list[dict[str, Any]]) -> list[str]:
    """What a run ended with, for people: concentration, saturation, yields, moves, and whether it halted."""
    last = records[-1]
    if "halted" in last:
        return [f"halted in epoch {last['epoch']}: {last['halted']}"]
    moves = sum(r["moves"] for r in records)
    misses = sum(r["policy_misses"] for r in records)
    return [
        f"epoch {last['epoch']} (height {last['height']}): nakamoto {last['nakamoto']}, gini {last['gini_ppm'] / PPM:.3f}, "
        f"hhi {last['hhi_ppm'] / PPM:.3f}, top-3 {pct(last['top3_ppm'])}, saturated {last['saturated']} of "
        f"{last['active_pools']} active pools",
        f"yield per epoch by class (mean): {class_yields(records)}",
        f"largest pool {last.get('largest_of_saturation_ppm', 0) / PPM:.2f} of 1/k, "
        f"{last.get('half_saturated', 0)} pools hold half of 1/k or more, {pct(last.get('paid_ppm', 0))} of the "
        f"last epoch's possible rewards paid, {sum(len(r.get('operators', [])) for r in records)} operator actions",
        f"moves {moves}, policy misses {misses}, rejected {sum(sum(r['rejected'].values()) for r in records)}, "
        f"issuance forgone {forgone_cell(last)}, reserve {units(last['reserve'])}, slashed {last['slashed']}, supply conserved {last['supply_conserved']}",
    ]


@dataclass(frozen=True)
class SweepRow:
    """One value of a swept parameter and where its run ended."""

    value: int
    records: list[dict[str, Any]]

    @property
    def last(self) -> dict[str, Any]:
        return self.records[-1]

    def cells(self) -> tuple[object, ...]:
        last = self.last
        if "halted" in last:
            return (self.value, "halted", *[""] * (len(SWEEP_HEADER) - 2))
        return (
            self.value,
            last["nakamoto"],
            f"{last['gini_ppm'] / PPM:.3f}",
            f"{last['hhi_ppm'] / PPM:.3f}",
            pct(last["top3_ppm"]),
            f"{last['saturated']}/{last['active_pools']}",
            f"{last.get('largest_of_saturation_ppm', 0) / PPM:.2f}",
            last.get("half_saturated", 0),
            pct(last.get("paid_ppm", 0)),
            forgone_cell(last),
            last["slashed"],
            sum(r.get("policy_misses", 0) for r in self.records),
            class_yields(self.records),
        )


SWEEP_HEADER = (
    "VALUE", "NAKAMOTO", "GINI", "HHI", "TOP-3", "SATURATED", "LARGEST/Z0", "POOLS>=Z0/2", "PAID",
    "FORGONE", "SLASHED", "MISSES", "YIELD/EPOCH",
)  # fmt: skip
"""LARGEST/Z0: the largest pool over the saturation point 1/k; POOLS>=Z0/2: pools holding at least half
of it; PAID: the share of the last epoch's possible rewards paid (the rest withheld into the reserve);
FORGONE: all the issuance withheld over the run, in units and as a share of what the blocks could have
paid; YIELD/EPOCH: each class's rewards over its staked value, per epoch, averaged over the run."""


def units(amount: int) -> str:
    """An amount in the ledger's millionths as whole units with thousands separators (rounded down)."""
    return f"{amount // PPM:,}"


def forgone_cell(record: dict[str, Any]) -> str:
    """The run's forgone issuance so far (`network.econ.record.forgone`), e.g. `14,210 (28.1%)`."""
    amount = record.get("forgone", 0)
    possible = record.get("height", 0) * record.get("block_reward", 0)
    share = f" ({pct(amount * PPM // possible)})" if possible else ""
    return f"{units(amount)}{share}"


def parse_sweep(text: str) -> tuple[str, list[int]]:
    """`NAME=V1,V2,...` as (name, values); EconError naming what is wrong."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip() or not raw.strip():
        raise EconError(f"--sweep {text!r}: expected NAME=V1,V2,... (e.g. saturation_k=0,10,50)")
    try:
        values = [int(v) for v in raw.split(",")]
    except ValueError:
        raise EconError(f"--sweep {text!r}: the values must be integers") from None
    return name.strip(), values


def sweep(
    config: EconomyConfig,
    seed: int,
    epochs: int,
    name: str,
    values: list[int],
    done: Callable[[int], None] | None = None,
    fast: bool = True,
) -> Iterator[SweepRow]:
    """One run per value of parameter `name`, each summed up by its last epoch."""
    for value in values:
        yield sweep_row(config, seed, epochs, name, fast, value, done)


def sweep_row(
    config: EconomyConfig,
    seed: int,
    epochs: int,
    name: str,
    fast: bool,
    value: int,
    done: Callable[[int], None] | None = None,
) -> SweepRow:
    """One value's run, summed up: a pure, picklable task (sweeps over Dask map it over the values)."""
    lines = epoch_lines(config.with_param(name, value), seed, epochs, done, fast)
    return SweepRow(value, [json.loads(line) for line in lines])
