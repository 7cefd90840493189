"""The ledger's values: the persistent map, the records a ledger is made of, and their copier.

Every other ledger module reads and writes these; they import nothing of
the ledger's own, so the arrows between the modules all point here. The
totals a `Ledger` works out once per value (its validator set, its bonded
stake) live here with it, for the same reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, field
from functools import cache, cached_property
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

from node.core import rewards as R
from node.core.genesis import HASHED_WHEN_SET
from node.core.messages import Evidence

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
PoolStatus = Literal["active", "jailed", "tombstoned", "retired"]
ACTIVE: PoolStatus = "active"
JAILED: PoolStatus = "jailed"
TOMBSTONED: PoolStatus = "tombstoned"
RETIRED: PoolStatus = "retired"


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """An immutable mapping: changes return a new map and leave this one as it was.

    A change is layered over the map it came from rather than copying it: a
    ledger of 10,000 accounts would otherwise copy all of them for each
    transaction's nonce. The layer is a small dict of changed entries over a
    base dict that nobody mutates and several maps share. Once the layer
    holds more than about the square root of the base's size it is folded
    into a new base, so a change copies O(sqrt n) entries on average and a
    read looks in two dicts at most. Iterating folds the layer in (once: the
    map's value and order do not change, only where it is kept). The order
    is a dict's after the same changes: changed keys keep their place, new
    ones come last.
    """

    __slots__ = ("_base", "_derived", "_top")

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        self._base: dict[K, V] = dict(items)
        self._top: dict[K, V] = {}
        self._derived: dict[Callable[[FrozenMap[K, V]], Any], Any] | None = None

    def __getitem__(self, key: K) -> V:
        top = self._top
        return top[key] if key in top else self._base[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._settled())

    def __len__(self) -> int:
        return len(self._settled())

    # Direct delegation: Mapping's generic versions go through __getitem__ and are several times slower.
    def __contains__(self, key: object) -> bool:
        return key in self._top or key in self._base

    def get(self, key: K, default: Any = None) -> Any:
        top = self._top
        return top[key] if key in top else self._base.get(key, default)

    def keys(self) -> KeysView[K]:
        return self._settled().keys()

    def values(self) -> ValuesView[V]:
        return self._settled().values()

    def items(self) -> ItemsView[K, V]:
        return self._settled().items()

    def __hash__(self) -> int:
        return hash(frozenset(self.items()))

    def plain(self) -> Mapping[K, V]:
        """A read-only view of the map as one dict, for loops that read it thousands of times.

        Its `get` and `[]` are the dict's own, in C; this map's are Python
        methods, which at 10,000 look-ups an epoch cost more than the look-ups.
        """
        return MappingProxyType(self._settled())

    def __repr__(self) -> str:
        return f"FrozenMap({self._settled()!r})"

    def set(self, key: K, value: V) -> FrozenMap[K, V]:
        return self.update({key: value})

    def update(self, changes: Mapping[K, V]) -> FrozenMap[K, V]:
        if not changes:
            return self
        top = {**self._top, **changes}
        if len(top) * len(top) > len(self._base):  # past sqrt(n) changes: fold them into a new base
            return FrozenMap._adopt({**self._base, **top})
        new = FrozenMap._adopt(self._base)
        new._top = top
        return new

    def without(self, key: K) -> FrozenMap[K, V]:
        data = dict(self._settled())
        data.pop(key, None)
        return FrozenMap._adopt(data)

    def derived(self, compute: Callable[[FrozenMap[K, V]], T]) -> T:
        """`compute(self)`, worked out once for this map.

        Most blocks leave the pools alone (rewards accrue beside them) yet
        make a new ledger over the same pool map; what a ledger derives from
        its pools alone (its validator set, its bonded stake) is kept here,
        with the map, instead of summed again for each new ledger. A change
        makes a new map, with nothing derived.
        """
        memo = self._derived
        if memo is None:
            memo = self._derived = {}
        if compute not in memo:
            memo[compute] = compute(self)
        return memo[compute]  # type: ignore[no-any-return]

    def _settled(self) -> dict[K, V]:
        """The map as one dict, the layer folded in.

        The new base replaces the reference, never the shared dict, and it is
        stored before the layer is dropped, so a reader meanwhile (a node's
        query thread) finds every entry either way.
        """
        if self._top:
            self._base = {**self._base, **self._top}
            self._top = {}
        return self._base

    @classmethod
    def _adopt(cls, data: dict[K, V]) -> FrozenMap[K, V]:
        """A map over `data` itself, not a copy: only for a dict nobody mutates."""
        new = cls.__new__(cls)
        new._base = data
        new._top = {}
        new._derived = None
        return new


merge_amounts = R.merge_amounts


def replace(value: V, /, **changes: Any) -> V:
    """`dataclasses.replace`, without its generic walk, for the plain records a ledger step copies.

    A transaction copies the ledger and a pool or two six times over;
    `dataclasses.replace` inspects every field and calls the frozen
    `__init__`, which sets each field through `object.__setattr__`, and that
    was near half of applying a redelegation. A plain record (a dataclass
    with a `__dict__`, no `__post_init__`, every field set by `__init__`) is
    the same value with its fields' dict copied and changed: the same
    fields, and none of what its cached properties worked out for the old
    value. Anything else goes to `dataclasses.replace`.
    """
    names = _plain_record_fields(type(value))
    if names is None:
        return dataclasses.replace(value, **changes)  # type: ignore[type-var]
    if not changes.keys() <= names.keys():
        raise TypeError(f"{type(value).__name__} has no field {sorted(changes.keys() - names.keys())[0]!r}")
    source = value.__dict__
    state = {name: source[name] for name in names}
    state.update(changes)
    copy = object.__new__(type(value))
    object.__setattr__(copy, "__dict__", state)
    return copy


@cache
def _plain_record_fields(cls: type) -> dict[str, None] | None:
    """The field names, in order, of a dataclass type `replace` may copy by its dict; None for any other."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__") or hasattr(cls, "__slots__"):
        return None
    declared = dataclasses.fields(cls)
    if len(declared) != len(cls.__dataclass_fields__) or not all(f.init for f in declared):  # type: ignore[attr-defined]
        return None  # an InitVar or ClassVar, or a field `__init__` does not set
    return dict.fromkeys(f.name for f in declared)


@dataclass(frozen=True)
class Account:
    """A liquid balance, the next expected nonce, and the key once known.

    `delegated_to`: with liquid delegation, the pool this account's whole
    balance is staked with at each epoch start (b"": none).
    """

    balance: int = 0
    nonce: int = 0
    public_key: bytes = b""
    delegated_to: bytes = field(default=b"", metadata={HASHED_WHEN_SET: True})


@dataclass(frozen=True)
class Pool:
    """A validator as a stake pool: the operator's pledge plus others' delegations.

    Two keys: the pool's address is its owner's (cold) account, which holds
    the pledge, receives the operator's rewards and alone may change the
    pool; `public_key` is the signing (hot) key its votes and proposals
    verify under. They are the same key unless genesis or a `RotateKey`
    separated them; a rotation waits in `next_public_key` for the next epoch.

    `missed` is the downtime window as a bit-int: bit i set means the pool
    missed the precommit of its i-th most recent committee participation
    (bit 0 the latest); only the low `params.downtime_window` bits are kept.
    """

    address: bytes
    name: str
    public_key: bytes
    operator: bytes
    pledge: int
    fixed_cost: int
    margin_ppm: int
    shares: FrozenMap[bytes, int]  # members' shares, by holder
    status: PoolStatus = ACTIVE
    jailed_until_epoch: int = 0
    missed: int = 0
    member_tokens: int = field(default=0, metadata={HASHED_WHEN_SET: True})  # the stake behind all shares
    compounding: bool = field(default=False, metadata={HASHED_WHEN_SET: True})  # member rewards stay in
    retiring_epoch: int = field(default=0, metadata={HASHED_WHEN_SET: True})  # 0: not retiring
    next_public_key: bytes = field(default=b"", metadata={HASHED_WHEN_SET: True})  # signs from next epoch

    @cached_property
    def total_shares(self) -> int:
        """Summed once per pool value: every stake and deposit asks it, and a pool never changes."""
        return sum(self.shares.values())


@dataclass(frozen=True)
class Unbonding:
    """Stake on its way out of `pool`: still slashable until `release_epoch`."""

    delegator: bytes
    pool: bytes
    amount: int
    release_epoch: int


@dataclass(frozen=True)
class Redelegation:
    """Stake moved from `source` to `target` without unbonding: `source` can still slash it until `release_epoch`."""

    delegator: bytes
    source: bytes
    target: bytes
    amount: int
    release_epoch: int


class Redelegations(tuple[Redelegation, ...]):
    """The ledger's redelegations, oldest first: a plain tuple to everyone, with one index of its own.

    Every redelegation asks whether the same stake arrived in its source pool
    by a redelegation still slashable there (`redelegate_problem`); with
    thousands of them pending, a scan per transaction was the ledger's
    largest cost in a busy economy. `into` answers that from a dict, built
    once and carried over by `appended`, so a block of redelegations costs
    one index, not one scan each. Equal to, and hashed as, the tuple it holds.
    """

    @classmethod
    def of(cls, entries: tuple[Redelegation, ...]) -> Redelegations:
        return entries if isinstance(entries, Redelegations) else cls(entries)

    @cached_property
    def into(self) -> FrozenMap[tuple[bytes, bytes], int]:
        """(delegator, target) -> release epoch of the oldest such redelegation."""
        index: dict[tuple[bytes, bytes], int] = {}
        for entry in self:
            index.setdefault((entry.delegator, entry.target), entry.release_epoch)
        return FrozenMap(index)

    def appended(self, entry: Redelegation) -> Redelegations:
        """These redelegations and `entry` after them, the index extended rather than rebuilt."""
        longer = Redelegations((*self, entry))
        route = (entry.delegator, entry.target)
        if "into" in self.__dict__:  # the older entry of a route keeps its place
            into = self.into
            longer.__dict__["into"] = into if route in into else into.set(route, entry.release_epoch)
        return longer


EvidenceKey = tuple[bytes, int, int, int]


@dataclass(frozen=True)
class Ledger:
    """All balances and stake, plus the running totals that make supply checkable.

    `slashed_evidence` holds the keys of punished offences so one offence is
    punished once; `issued` counts minted rewards and `slashed` burned stake;
    `epoch` is the epoch of the last block or epoch start applied (unjail
    and unbonding are judged against it). `reserve` holds what reward
    sharing withheld; it pays later rewards before anything is minted.
    """

    accounts: FrozenMap[bytes, Account]
    pools: FrozenMap[bytes, Pool]
    unbonding: tuple[Unbonding, ...]
    slashed_evidence: frozenset[EvidenceKey]
    issued: int
    slashed: int
    genesis_supply: int
    epoch: int = 0
    reserve: int = field(default=0, metadata={HASHED_WHEN_SET: True})  # in the state hash once non-zero
    redelegations: tuple[Redelegation, ...] = field(default=(), metadata={HASHED_WHEN_SET: True})
    liquid: bool = field(default=False, metadata={HASHED_WHEN_SET: True})  # params.liquid_delegation
    # addresses of every signing key that is not also its pool's owner key, now or before: no funds, ever
    signing_accounts: frozenset[bytes] = field(default=frozenset(), metadata={HASHED_WHEN_SET: True})
    # params.epoch_rewards: what each pool earned this epoch, paid to its operator and members at the next start
    accrued: FrozenMap[bytes, int] = field(default=FrozenMap(), metadata={HASHED_WHEN_SET: True})

    # Totals every pool's quote and every block's rewards ask for, worked out once per ledger value: a
    # ledger never changes, and `replace` makes a new one without them (they live outside the fields).
    @cached_property
    def active_powers(self) -> tuple[tuple[bytes, int], ...]:
        return self.pools.derived(_active_powers)

    @cached_property
    def active_total(self) -> int:
        return _active_total(self)

    @cached_property
    def bonded_stake(self) -> int:
        return self.pools.derived(_bonded_stake)


@dataclass(frozen=True)
class LedgerEvent:
    """Something the ledger did, for logs and reports.

    kind: "slashed" | "jailed" | "unjailed" | "tombstoned" | "rewarded" |
    "tx_applied" | "tx_rejected" | "evidence_rejected" | "released" | "retired" |
    "key_rotated".
    """

    kind: str
    validator: bytes  # pool address, or account address for tx and release events
    amount: int
    reason: str


@dataclass(frozen=True)
class Participation:
    """Who was seen precommitting at one finalized height, while late precommits may still come in.

    Opened from the certificate a block carries for the height before it;
    later blocks add late precommits; the height is judged for downtime
    only once a grace period has passed (see `node.core.state.matured`).
    """

    height: int
    round: int
    block_id: bytes
    timestamp_ms: int  # of the finalized block: the grace period counts from here
    committee: tuple[bytes, ...]  # sorted addresses
    signers: frozenset[bytes]

    @cached_property
    def members(self) -> frozenset[bytes]:
        """`committee` as a set: whether a late precommit's signer sat is asked of every precommit weighed."""
        return frozenset(self.committee)


@dataclass(frozen=True)
class StakeSnapshot:
    """What reward sharing reads of the stake, as it was when one epoch's seats were drawn.

    Cardano's stake distribution snapshot, cut down to what the reward
    factor reads: each pool's stake and pledge (sigma and the pledge share),
    the total sigma is measured against, and the bonded stake the block
    shares are divided over. Taken at the boundary that draws the seats it
    travels with (node.core.state.Seats), so the committee power a pool is
    paid by and the cap on that pay come from one moment: stake moved after
    it cannot make a pool that earned at twice saturation look unsaturated
    when it is paid, nor cut a pool that only now received stake.
    """

    pools: tuple[
        tuple[bytes, tuple[int, int]], ...
    ]  # (address, (stake, pledge)) of every bonded pool, sorted
    total: int  # sigma's denominator: the bonded stake, or the circulating supply (params.sigma_of_supply)
    bonded: int  # the stake of every pool that could earn: what block shares are in proportion to

    @cached_property
    def stakes(self) -> Mapping[bytes, tuple[int, int]]:
        """(stake, pledge) by pool address, built once: every block asks it of every signer."""
        return dict(self.pools)


@dataclass(frozen=True)
class BlockContext:
    height: int
    epoch: int
    proposer: bytes
    prev_committee: tuple[tuple[bytes, int], ...]  # (address, power) of height-1's committee
    prev_signers: frozenset[bytes]  # who signed height-1's certificate carried in this block (rewards)
    evidence: tuple[Evidence, ...]  # already verified by consensus
    judged: tuple[Participation, ...] = ()  # heights whose participation becomes final with this block
    # The snapshot height-1's committee was drawn with (node.core.state.block_context); None: the ledger's
    # stake now, for callers that keep no epochs (a ledger on its own, in tests)
    stake: StakeSnapshot | None = None


pool_power = R.pool_stake  # voting power: the pledge plus everything delegated


def _active_total(ledger: Ledger) -> int:
    return sum(power for _, power in ledger.active_powers)


def _active_powers(pools: FrozenMap[bytes, Pool]) -> tuple[tuple[bytes, int], ...]:
    return tuple(
        (address, power)
        for address, pool in sorted(pools.items())
        if pool.status == ACTIVE and (power := pool_power(pool)) > 0
    )


def _bonded_stake(pools: FrozenMap[bytes, Pool]) -> int:
    return sum(pool_power(pool) for pool in pools.values() if pool.status != TOMBSTONED)
