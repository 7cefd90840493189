"""The chain an economy starts from: keys for every pool and delegator, and the genesis they share.

Keys are derived from the run's seed and each party's name (never from the
file's name or path: a renamed copy of a file is the same experiment), so
the same file and seed give the same keys, the same signed transactions and
the same chain on every machine. A pool that enters later is funded at genesis with
its pledge and registers by transaction when its epoch comes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from network.econ.config import EconomyConfig, PoolSpec
from network.econ.wealth import balances
from node.core.genesis import PPM, Delegation, Genesis, GenesisAccount, GenesisValidator
from node.core.keys import Keypair


@dataclass(frozen=True)
class Delegator:
    """One delegator: its class, key and starting wealth."""

    index: int  # in the run's fixed order
    cls: str
    policy: str
    keypair: Keypair
    wealth: int


@dataclass(frozen=True)
class Operator:
    """One potential operator: its key, wealth and the terms of the pool it would run."""

    name: str
    keypair: Keypair
    wealth: int
    fixed_cost: int
    margin_ppm: int
    pledge: int  # what it pledges when it registers (its wealth times pledge_ppm)


@dataclass(frozen=True)
class World:
    """Everything an economy run starts from."""

    genesis: Genesis
    owners: dict[str, Keypair]  # pool name -> owner key (which also signs: one key per pool here)
    delegators: tuple[Delegator, ...]
    operators: tuple[Operator, ...] = ()  # not pools at genesis; their keys are among `owners`


def build_world(config: EconomyConfig, seed: int) -> World:
    """Keys, wealth and genesis for `config`, with chance drawn from `seed` (wealth and starting pools)."""
    rng = random.Random(seed)
    owners = {p.name: Keypair.deterministic(f"econ/{seed}/pool/{p.name}") for p in config.pools}
    delegators: list[Delegator] = []
    for spec in config.delegators:
        for i, wealth in enumerate(balances(spec, rng)):
            key = Keypair.deterministic(f"econ/{seed}/{spec.name}/{i}")
            delegators.append(Delegator(len(delegators), spec.name, spec.policy, key, wealth))
    operators = _operators(config, seed, rng)
    owners.update((o.name, o.keypair) for o in operators)
    founding = [p for p in config.pools if not p.enters_epoch]
    if not founding:
        raise ValueError("no pool exists at genesis (every pool has enters_epoch > 0)")
    starts = _starting_pools(config, founding, delegators, rng)
    validators = tuple(
        GenesisValidator(
            name=pool.name,
            public_key=owners[pool.name].public,
            pledge=pool.pledge,
            fixed_cost=pool.fixed_cost,
            margin_ppm=pool.margin_ppm,
            compounding=pool.compounding,
            delegations=tuple(
                Delegation(d.keypair.public, d.wealth) for d in delegators if starts.get(d.index) == pool.name
            ),
        )
        for pool in founding
    )
    accounts = tuple(
        GenesisAccount(d.keypair.public, d.wealth) for d in delegators if d.wealth and d.index not in starts
    ) + tuple(GenesisAccount(owners[p.name].public, p.pledge) for p in config.pools if p.enters_epoch)
    accounts += tuple(GenesisAccount(o.keypair.public, o.wealth) for o in operators if o.wealth)
    genesis = Genesis(f"econ-{seed}"[:64], 0, config.params, validators, accounts)
    return World(genesis, owners, tuple(delegators), operators)


def _operators(config: EconomyConfig, seed: int, rng: random.Random) -> tuple[Operator, ...]:
    """The potential operators, each class's wealth drawn at once after the delegators' (so a file
    without operators draws as before)."""
    drawn: dict[str, list[int]] = {}
    operators = []
    for spec in config.operators:
        wealth = drawn.get(spec.wealth.name)
        if wealth is None:
            wealth = drawn[spec.wealth.name] = balances(spec.wealth, rng)
        amount = wealth[spec.index]
        key = Keypair.deterministic(f"econ/{seed}/operator/{spec.name}")
        pledge = amount * spec.pledge_ppm // PPM
        operators.append(Operator(spec.name, key, amount, spec.fixed_cost, spec.margin_ppm, pledge))
    return tuple(operators)


def _starting_pools(
    config: EconomyConfig, founding: list[PoolSpec], delegators: list[Delegator], rng: random.Random
) -> dict[int, str]:
    """Delegator index -> the genesis pool its whole wealth starts in (absent: it starts undelegated)."""
    classes = {c.name: c for c in config.delegators}
    largest = max(founding, key=lambda p: (p.pledge, p.name)).name
    starts: dict[int, str] = {}
    for d in delegators:
        start = classes[d.cls].start
        if d.wealth == 0 or start == "none":
            continue
        starts[d.index] = largest if start == "largest" else rng.choice(founding).name
    return starts
