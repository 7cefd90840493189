"""Delegators' starting balances: equal, Pareto, log-normal, or read from a CSV file.

Wealth is drawn once, from a generator seeded by the run, and turned into
integers at once (the ledger holds integers only): each delegator gets the
floor of its share of the class's total, and what the floors leave goes to
the richest, so a class holds exactly its `total`.
"""

from __future__ import annotations

import random

from network.econ.config import DelegatorClass, EconError


def balances(spec: DelegatorClass, rng: random.Random) -> list[int]:
    """`spec.count` balances drawn from the class's distribution (in the class's order)."""
    if spec.wealth == "csv":
        assert spec.csv is not None
        return _from_csv(spec)
    if spec.wealth == "equal":
        weights = [1.0] * spec.count
    elif spec.wealth == "pareto":
        weights = [rng.paretovariate(spec.alpha) for _ in range(spec.count)]
    else:
        weights = [rng.lognormvariate(0.0, spec.sigma) for _ in range(spec.count)]
    return shares_of(spec.total, weights)


def shares_of(total: int, weights: list[float]) -> list[int]:
    """`total` split in proportion to `weights`, in integers that add up to `total` exactly."""
    scale = sum(weights)
    amounts = [int(total * w / scale) for w in weights]
    richest = max(range(len(weights)), key=lambda i: weights[i])
    amounts[richest] += total - sum(amounts)
    return amounts


def _from_csv(spec: DelegatorClass) -> list[int]:
    """One balance per line (the first column); `count` lines are used, cycling when the file is shorter."""
    assert spec.csv is not None
    values: list[int] = []
    for number, line in enumerate(spec.csv.read_text().splitlines(), start=1):
        cell = line.split(",")[0].strip()
        if not cell or cell.startswith("#") or (number == 1 and not cell.lstrip("-").isdigit()):
            continue  # blank lines, comments and a header
        try:
            value = int(cell)
        except ValueError:
            raise EconError(f"{spec.csv}:{number}: {cell!r} is not an integer balance") from None
        if value < 0:
            raise EconError(f"{spec.csv}:{number}: a balance cannot be negative")
        values.append(value)
    if not values:
        raise EconError(f"{spec.csv}: no balances in it")
    return [values[i % len(values)] for i in range(spec.count)]
