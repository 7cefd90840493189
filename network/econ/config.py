"""Economy files: the pools, the delegators and their policies, the protocol, the timeline.

An economy file is TOML, read strictly: an unknown field, a wrong type or a
value out of range is refused with one line naming the field
(``pools[2].margin_ppm: 1200000 is outside [0, 1000000]``), because a typo
that silently falls back to a default would make an experiment measure
something other than what its author wrote.

    [run]
    epochs = 100            # how many epochs to run
    epoch_length = 100      # blocks per epoch
    seed = 1

    [params]                # any genesis parameter: saturation_k, pledge_influence_ppm, ...
    saturation_k = 10

    [[pools]]               # `count` pools named NAME-1..NAME-N (or NAME when count is 1)
    name = "small"
    count = 20
    pledge = 1000
    fixed_cost = 10
    margin_ppm = 50000
    reward_mode = "paid_out"     # or "compounding"
    performance_ppm = 1000000    # the share of its committee seats it signs for

    [[delegators]]          # a class of delegators: its wealth and its policy
    name = "savers"
    count = 1000
    wealth = "pareto"       # equal | pareto | lognormal | csv
    total = 1000000         # the class's wealth, shared by the distribution
    alpha = 1.5             # pareto; lognormal takes sigma; csv takes file (one balance per line)
    policy = "yield"        # yield | nonmyopic | loyal | random | largest | liquid-token
    switching_cost_ppm = 50000   # yield: move only for this much more (relative)
    attention_ppm = 200000  # the chance each delegator looks at all in an epoch (default: always)
    start = "random"        # random | largest | none: where its stake starts
    restake = false         # delegate its rewards back to its pool each epoch (compounding by hand)

    [market]                # operators as agents (absent: the pools are the file's, as before)
    entry = true            # potential operators register a pool when it would rank in the top k
    retire_after = 3        # an operator retires a pool whose expected reward stays below its
                            # cost this many epochs running (0: never)

    [[operators]]           # potential operators, NAME-1..NAME-N: not pools until they register
    name = "op"
    count = 30
    wealth = "pareto"       # equal | pareto | lognormal, with total, alpha, sigma as delegators
    total = 3000000
    pledge_ppm = 1000000    # the share of its wealth an operator pledges
    fixed_cost = 200        # the cheapest operator's cost (its pool's fixed cost) ...
    fixed_cost_max = 500    # ... and the dearest's: the costs are spaced evenly between
    margin_ppm = 0

    [attacker]              # one holder that splits its own stake over many pools (`network.econ.attacker`)
    stake_ppm = 50000       # its stake, as ppm of all the stake there is (its own included)
    pools = 0               # how many pools it runs, pledge stake/pools each; 0: as many as pays
    fixed_cost = 200        # what each of its pools declares (the cheapest honest cost: a floor
    margin_ppm = 0          # like Cardano's minPoolCost), and its margin
    epoch = 1               # when its pools register (funded at genesis, like a new_pool)

    [[events]]              # the timeline; pool events name one pool
    epoch = 10
    kind = "offline"        # offline | online | equivocate | set_margin | new_pool
    pool = "small-3"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from node.core.fields import FieldReader
from node.core.genesis import PPM, GenesisError, Params, parse_params

POLICIES = ("yield", "nonmyopic", "loyal", "random", "largest", "liquid-token")
WEALTH = ("equal", "pareto", "lognormal", "csv")
STARTS = ("random", "largest", "none")
REWARD_MODES = ("paid_out", "compounding")
EVENT_KINDS = ("offline", "online", "equivocate", "set_margin", "new_pool")
MAX_EPOCHS = 1_000_000


class EconError(ValueError):
    """An economy file (or option) that cannot run: one line naming the field."""


@dataclass(frozen=True)
class PoolSpec:
    """One pool of the economy, at genesis or entering later (`enters_epoch` > 0)."""

    name: str
    pledge: int
    fixed_cost: int = 0
    margin_ppm: int = 0
    compounding: bool = False
    performance_ppm: int = PPM
    enters_epoch: int = 0


@dataclass(frozen=True)
class DelegatorClass:
    """`count` delegators sharing a wealth distribution and a policy."""

    name: str
    count: int
    policy: str
    wealth: str
    total: int = 0
    alpha: float = 1.5
    sigma: float = 1.0
    csv: Path | None = None
    switching_cost_ppm: int = 0
    move_ppm: int = 100_000  # random: the chance of moving in an epoch
    attention_ppm: int = PPM  # the chance a delegator looks at the pools at all in an epoch (inertia)
    start: str = "random"
    restake: bool = False  # re-delegate its paid-out rewards to its pool at each epoch start


@dataclass(frozen=True)
class OperatorSpec:
    """One potential operator: its own cost, terms and wealth (drawn by the world from `wealth`)."""

    name: str
    fixed_cost: int
    margin_ppm: int
    pledge_ppm: int
    wealth: DelegatorClass  # a class of one: its wealth distribution (the run draws the whole class at once)
    index: int  # in its class, for the draw


@dataclass(frozen=True)
class Market:
    """Operators as agents: who may enter, and when a pool that does not pay retires."""

    entry: bool = True
    retire_after: int = 3


@dataclass(frozen=True)
class Attacker:
    """One holder running many pools on its own stake, to hold committee seats (seed 002's leverage).

    Its pools are the file's pools named ``attacker-1..N`` once
    `network.econ.attacker.resolve` has chosen N and the pledges; until then
    `pools` is what the file asked for (0: the count that pays best).
    Operators as agents never retire them or move their margin: the
    attacker wants seats, not profit.
    """

    stake_ppm: int
    pools: int = 0
    fixed_cost: int = 0
    margin_ppm: int = 0
    epoch: int = 1
    resolved: bool = False  # its pools are in `EconomyConfig.pools`

    @property
    def names(self) -> frozenset[str]:
        """The pool names it runs once resolved (none before)."""
        if not self.resolved:
            return frozenset()
        return frozenset(
            [ATTACKER] if self.pools == 1 else [f"{ATTACKER}-{n}" for n in range(1, self.pools + 1)]
        )


ATTACKER = "attacker"  # its pools' name (NAME-1..NAME-N)


@dataclass(frozen=True)
class TimelineEvent:
    """Something that happens to a pool at the start of an epoch."""

    epoch: int
    kind: str
    pool: str
    margin_ppm: int | None = None
    fixed_cost: int | None = None


@dataclass(frozen=True)
class EconomyConfig:
    """A whole experiment: what `posnet econ run` runs."""

    name: str
    epochs: int
    epoch_length: int
    seed: int
    params: Params
    pools: tuple[PoolSpec, ...]
    delegators: tuple[DelegatorClass, ...]
    events: tuple[TimelineEvent, ...] = ()
    slot_ms: int = 1000  # virtual time between blocks: block timestamps, and so the downtime grace period
    market: Market | None = None  # None: no operator acts (the pool set is the file's)
    operators: tuple[OperatorSpec, ...] = ()
    attacker: Attacker | None = None

    def with_param(self, name: str, value: int) -> EconomyConfig:
        """The same experiment with one protocol parameter changed (for sweeps)."""
        try:
            params = parse_params({**_params_dict(self.params), name: value})
        except GenesisError as exc:
            raise EconError(str(exc)) from None
        return replace(self, params=params)

    def with_policy(self, policy: str) -> EconomyConfig:
        """The same experiment with every delegator class on `policy` (to set policies side by side)."""
        if policy not in POLICIES:
            raise EconError(f"policy {policy!r}: expected one of {', '.join(POLICIES)}")
        return replace(self, delegators=tuple(replace(c, policy=policy) for c in self.delegators))

    def with_restake(self) -> EconomyConfig:
        """The same experiment with every delegator class re-staking its rewards (so each compounds)."""
        return replace(self, delegators=tuple(replace(c, restake=True) for c in self.delegators))

    def with_fixed_pools(self) -> EconomyConfig:
        """The same experiment with no operator acting: nobody enters, nothing retires by choice."""
        return replace(self, market=None)

    def with_attacker_stake(self, stake_ppm: int) -> EconomyConfig:
        """The same experiment with the attacker holding `stake_ppm` of all stake (its pools not yet chosen)."""
        if self.attacker is None or self.attacker.resolved:
            raise EconError("attacker: the file needs an unresolved [attacker] table")
        return replace(self, attacker=replace(self.attacker, stake_ppm=stake_ppm))


def _params_dict(params: Params) -> dict[str, int]:
    return {name: getattr(params, name) for name in params.__dataclass_fields__}


# ------------------------------------------------------------------ parsing

_read = FieldReader(EconError)
_int, _float, _table, _required, _choice, _bad, _unique = (
    _read.integer,
    _read.number,
    _read.table,
    _read.required,
    _read.choice,
    _read.expected,
    _read.unique,
)


def _name(value: Any, where: str) -> str:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 40
        or not all(c.isalnum() or c in "-_" for c in value)
    ):
        raise EconError(f"{where}: expected 1-40 letters, digits, '-' or '_'")
    return value


POOL_FIELDS = {
    "name",
    "count",
    "pledge",
    "fixed_cost",
    "margin_ppm",
    "reward_mode",
    "performance_ppm",
    "enters_epoch",
}


def _pools(raw: Any) -> tuple[PoolSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise EconError("pools: at least one [[pools]] entry is required")
    pools: list[PoolSpec] = []
    for i, item in enumerate(raw):
        where = f"pools[{i}]"
        table = _table(item, where, POOL_FIELDS)
        name = _required(table, "name", where, _name)
        count = _int(table.get("count", 1), f"{where}.count", 1, 10_000)
        spec = PoolSpec(
            name=name,
            pledge=_required(table, "pledge", where, lambda v, w: _int(v, w, 1)),
            fixed_cost=_int(table.get("fixed_cost", 0), f"{where}.fixed_cost"),
            margin_ppm=_int(table.get("margin_ppm", 0), f"{where}.margin_ppm", 0, PPM),
            compounding=_choice(table.get("reward_mode", "paid_out"), f"{where}.reward_mode", REWARD_MODES)
            == "compounding",
            performance_ppm=_int(table.get("performance_ppm", PPM), f"{where}.performance_ppm", 0, PPM),
            enters_epoch=_int(table.get("enters_epoch", 0), f"{where}.enters_epoch", 0, MAX_EPOCHS),
        )
        names = [name] if count == 1 else [f"{name}-{n}" for n in range(1, count + 1)]
        pools += [replace(spec, name=each) for each in names]
    _unique([p.name for p in pools], "pools", "name")
    return tuple(pools)


DELEGATOR_FIELDS = {
    "name", "count", "policy", "wealth", "total", "alpha", "sigma", "file",
    "switching_cost_ppm", "move_ppm", "attention_ppm", "start", "restake",
}  # fmt: skip


def _delegators(raw: Any, base: Path) -> tuple[DelegatorClass, ...]:
    if not isinstance(raw, list):
        raise EconError("delegators: expected a list of [[delegators]] tables")
    classes: list[DelegatorClass] = []
    for i, item in enumerate(raw):
        where = f"delegators[{i}]"
        table = _table(item, where, DELEGATOR_FIELDS)
        wealth = _required(table, "wealth", where, lambda v, w: _choice(v, w, WEALTH))
        csv = None
        if wealth == "csv":
            csv = base / _required(
                table, "file", where, lambda v, w: v if isinstance(v, str) else _bad(w, "a path")
            )
            if not csv.is_file():
                raise EconError(f"{where}.file: {csv} not found")
        elif "file" in table:
            raise EconError(f'{where}.file: only with wealth = "csv"')
        classes.append(
            DelegatorClass(
                name=_required(table, "name", where, _name),
                count=_int(table.get("count", 1), f"{where}.count", 1, 1_000_000),
                policy=_required(table, "policy", where, lambda v, w: _choice(v, w, POLICIES)),
                wealth=wealth,
                total=_int(table.get("total", 0), f"{where}.total", 0 if wealth == "csv" else 1),
                alpha=_float(table.get("alpha", 1.5), f"{where}.alpha", 0.0, 100.0),
                sigma=_float(table.get("sigma", 1.0), f"{where}.sigma", 0.0, 10.0),
                csv=csv,
                switching_cost_ppm=_int(
                    table.get("switching_cost_ppm", 0), f"{where}.switching_cost_ppm", 0, 10 * PPM
                ),
                move_ppm=_int(table.get("move_ppm", 100_000), f"{where}.move_ppm", 0, PPM),
                attention_ppm=_int(table.get("attention_ppm", PPM), f"{where}.attention_ppm", 0, PPM),
                start=_choice(table.get("start", "random"), f"{where}.start", STARTS),
                restake=_read.flag(table.get("restake", False), f"{where}.restake"),
            )
        )
    _unique([c.name for c in classes], "delegators", "name")
    return tuple(classes)


OPERATOR_FIELDS = {
    "name", "count", "wealth", "total", "alpha", "sigma", "pledge_ppm", "fixed_cost", "fixed_cost_max",
    "margin_ppm",
}  # fmt: skip


def _operators(raw: Any, pools: tuple[PoolSpec, ...]) -> tuple[OperatorSpec, ...]:
    if not isinstance(raw, list):
        raise EconError("operators: expected a list of [[operators]] tables")
    operators: list[OperatorSpec] = []
    for i, item in enumerate(raw):
        where = f"operators[{i}]"
        table = _table(item, where, OPERATOR_FIELDS)
        name = _required(table, "name", where, _name)
        count = _int(table.get("count", 1), f"{where}.count", 1, 10_000)
        wealth = DelegatorClass(
            name=name,
            count=count,
            policy="loyal",
            wealth=_choice(table.get("wealth", "equal"), f"{where}.wealth", ("equal", "pareto", "lognormal")),
            total=_required(table, "total", where, lambda v, w: _int(v, w, 1)),
            alpha=_float(table.get("alpha", 1.5), f"{where}.alpha", 0.0, 100.0),
            sigma=_float(table.get("sigma", 1.0), f"{where}.sigma", 0.0, 10.0),
        )
        low = _int(table.get("fixed_cost", 0), f"{where}.fixed_cost")
        high = _int(table.get("fixed_cost_max", low), f"{where}.fixed_cost_max", low)
        margin = _int(table.get("margin_ppm", 0), f"{where}.margin_ppm", 0, PPM)
        pledge_ppm = _int(table.get("pledge_ppm", PPM), f"{where}.pledge_ppm", 1, PPM)
        names = [name] if count == 1 else [f"{name}-{n}" for n in range(1, count + 1)]
        for n, each in enumerate(names):
            cost = low + (high - low) * n // max(1, count - 1)
            operators.append(OperatorSpec(each, cost, margin, pledge_ppm, wealth, n))
    _unique([o.name for o in operators], "operators", "name")
    taken = {p.name for p in pools}.intersection(o.name for o in operators)
    if taken:
        raise EconError(f"operators: {sorted(taken)[0]!r} is also a pool's name")
    return tuple(operators)


def _attacker(raw: Any, pools: tuple[PoolSpec, ...], epochs: int) -> Attacker:
    table = _table(raw, "attacker", {"stake_ppm", "pools", "fixed_cost", "margin_ppm", "epoch"})
    if any(p.name == ATTACKER or p.name.startswith(f"{ATTACKER}-") for p in pools):
        raise EconError(f"attacker: a pool is already named {ATTACKER!r} (the attacker's pools are)")
    return Attacker(
        stake_ppm=_required(table, "stake_ppm", "attacker", lambda v, w: _int(v, w, 1, PPM - 1)),
        pools=_int(table.get("pools", 0), "attacker.pools", 0, 1_000),
        fixed_cost=_int(table.get("fixed_cost", 0), "attacker.fixed_cost"),
        margin_ppm=_int(table.get("margin_ppm", 0), "attacker.margin_ppm", 0, PPM),
        epoch=_int(table.get("epoch", 1), "attacker.epoch", 1, epochs),
    )


def _market(raw: Any) -> Market:
    table = _table(raw, "market", {"entry", "retire_after"})
    return Market(
        entry=_read.flag(table.get("entry", True), "market.entry"),
        retire_after=_int(table.get("retire_after", 3), "market.retire_after", 0, MAX_EPOCHS),
    )


EVENT_FIELDS = {"epoch", "kind", "pool", "margin_ppm", "fixed_cost"}


def _events(raw: Any, pools: tuple[PoolSpec, ...], epochs: int) -> tuple[TimelineEvent, ...]:
    if not isinstance(raw, list):
        raise EconError("events: expected a list of [[events]] tables")
    names = {p.name: p for p in pools}
    events: list[TimelineEvent] = []
    for i, item in enumerate(raw):
        where = f"events[{i}]"
        table = _table(item, where, EVENT_FIELDS)
        event = TimelineEvent(
            epoch=_required(table, "epoch", where, lambda v, w: _int(v, w, 1, epochs)),
            kind=_required(table, "kind", where, lambda v, w: _choice(v, w, EVENT_KINDS)),
            pool=_required(table, "pool", where, _name),
            margin_ppm=_int(table["margin_ppm"], f"{where}.margin_ppm", 0, PPM)
            if "margin_ppm" in table
            else None,
            fixed_cost=_int(table["fixed_cost"], f"{where}.fixed_cost") if "fixed_cost" in table else None,
        )
        pool = names.get(event.pool)
        if pool is None:
            raise EconError(f"{where}.pool: no pool named {event.pool!r}")
        if event.kind == "new_pool" and pool.enters_epoch != event.epoch:
            raise EconError(f"{where}: a new_pool event needs the pool's enters_epoch = {event.epoch}")
        if event.kind == "set_margin" and event.margin_ppm is None and event.fixed_cost is None:
            raise EconError(f"{where}: set_margin needs margin_ppm or fixed_cost")
        events.append(event)
    for pool in pools:
        if pool.enters_epoch and not any(e.kind == "new_pool" and e.pool == pool.name for e in events):
            events.append(TimelineEvent(pool.enters_epoch, "new_pool", pool.name))
    return tuple(sorted(events, key=lambda e: (e.epoch, EVENT_KINDS.index(e.kind), e.pool)))


def parse_economy(raw: Mapping[str, Any], name: str, base: Path) -> EconomyConfig:
    """An EconomyConfig from a decoded TOML document; EconError (one line) on anything doubtful."""
    table = _table(
        raw, "economy", {"run", "params", "pools", "delegators", "events", "market", "operators", "attacker"}
    )
    run = _table(table.get("run", {}), "run", {"epochs", "epoch_length", "seed", "slot_ms"})
    epochs = _int(run.get("epochs", 20), "run.epochs", 1, MAX_EPOCHS)
    epoch_length = _int(run.get("epoch_length", 100), "run.epoch_length", 1, 100_000)
    try:
        params = parse_params({**table.get("params", {}), "epoch_length": epoch_length})
    except GenesisError as exc:
        raise EconError(str(exc)) from None
    except TypeError:
        raise EconError("params: expected a table") from None
    pools = _pools(table.get("pools"))
    return EconomyConfig(
        name=name,
        epochs=epochs,
        epoch_length=epoch_length,
        seed=_int(run.get("seed", 0), "run.seed"),
        params=params,
        pools=pools,
        delegators=_delegators(table.get("delegators", []), base),
        events=_events(table.get("events", []), pools, epochs),
        slot_ms=_int(run.get("slot_ms", 1000), "run.slot_ms", 1, 3_600_000),
        market=_market(table["market"]) if "market" in table else None,
        operators=_operators(table.get("operators", []), pools),
        attacker=_attacker(table["attacker"], pools, epochs) if "attacker" in table else None,
    )


def load_economy(path: Path | str) -> EconomyConfig:
    """Read and check an economy file; EconError naming the file and the field on any problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise EconError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise EconError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise EconError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_economy(raw, path.stem, path.parent)
    except EconError as exc:
        raise EconError(f"{path}: {exc}") from None
