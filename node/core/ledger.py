"""The ledger: accounts, stake pools, delegation, rewards and penalties.

Everything is a pure function over frozen values, in integers only: every
node must reach the same ledger from the same blocks, and floats or clocks
would let machines disagree. Each division is a floor; what a floor leaves
over is given to someone named (the pool operator, the proposer) or not
minted at all, so that at every step

    total_supply(ledger) == ledger.genesis_supply + ledger.issued - ledger.slashed

holds exactly (`slashed` counts what was burned; the supply counts the
reserve, where reward sharing puts what it withholds).

Choices, documented because other modules depend on them:
- A delegation is a number of shares of its pool (node.core.shares): the pool
  holds the member tokens behind all shares, so a slash or a compounded
  reward changes every share's value in one step, and shares can be
  transferred like a receipt token. The operator's own stake is the pledge,
  never shares.
- Rewards are credited to liquid account balances, except a compounding
  pool's member part, which is added to its member tokens (the exchange
  rate rises). How much each pool and account gets is node.core.rewards'
  arithmetic; this module applies it.
- A pool's address is its operator's account address. For the operator,
  `delegate`/`undelegate` on its own pool add to / withdraw from the pledge;
  an operator never holds a delegation in its own pool.
- Jail: a pool jailed in epoch e may unjail from epoch `e + jail_epochs + 1`
  (the rest of epoch e plus `jail_epochs` whole epochs).
- Unbonding: stake undelegated in epoch e is released by `start_epoch` of
  epoch `e + unbonding_epochs + 1`, and is slashed with its pool until then.
- Downtime is tracked for active pools only; a jailed or tombstoned pool
  leaves the committee at the next height and is not penalised again for
  the heights still being judged.
- Tombstoned pools earn no rewards and accept no new delegations; their
  delegators (and operator) can still undelegate.

One module past 500 lines: every rule here (transfers, pools, delegation,
unbonding, rewards, slashing, jailing) is a pure step over the same pool and
account records; split apart, each piece would import the others' record
helpers and the ledger's invariants (supply is conserved) would have no one home.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

from node.core import rewards as R
from node.core import shares as S
from node.core.codec import DecodeError
from node.core.genesis import HASHED_WHEN_SET, PPM, Genesis, GenesisValidator, Params
from node.core.keys import address_of
from node.core.messages import Evidence, evidence_shape_problem
from node.core.tx import (
    Delegate,
    Redelegate,
    RegisterPool,
    RetirePool,
    RotateKey,
    SignedTx,
    Transfer,
    TransferShares,
    Tx,
    Undelegate,
    Unjail,
    UpdatePool,
    decode_tx,
    tx_amount,
    tx_type_name,
    verify_tx,
)

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


# ------------------------------------------------------------------ values


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


@dataclass(frozen=True)
class BlockContext:
    height: int
    epoch: int
    proposer: bytes
    prev_committee: tuple[tuple[bytes, int], ...]  # (address, power) of height-1's committee
    prev_signers: frozenset[bytes]  # who signed height-1's certificate carried in this block (rewards)
    evidence: tuple[Evidence, ...]  # already verified by consensus
    judged: tuple[Participation, ...] = ()  # heights whose participation becomes final with this block


# --------------------------------------------------------------- genesis


def genesis_pool(validator: GenesisValidator) -> Pool:
    """A genesis validator as a pool; a delegation from its own key is folded into the pledge."""
    stakes = merge_amounts((address_of(d.account), d.amount) for d in validator.delegations)
    own = stakes.pop(validator.address, 0)
    return Pool(
        address=validator.address,
        name=validator.name,
        public_key=validator.signing_public_key,
        operator=validator.address,
        pledge=validator.pledge + own,
        fixed_cost=validator.fixed_cost,
        margin_ppm=validator.margin_ppm,
        shares=FrozenMap(stakes),  # one share per unit at genesis
        member_tokens=sum(stakes.values()),
        compounding=validator.compounding,
    )


def _genesis_accounts(genesis: Genesis) -> FrozenMap[bytes, Account]:
    """Funded accounts, plus empty ones for every operator and delegator key named."""
    keys = [v.public_key for v in genesis.validators]
    keys += [d.account for v in genesis.validators for d in v.delegations]
    accounts = {address_of(key): Account(public_key=key) for key in keys}
    for account in genesis.accounts:
        previous = accounts.get(account.address, Account())
        accounts[account.address] = Account(previous.balance + account.balance, 0, account.public_key)
    return FrozenMap(accounts)


def _liquid_genesis_accounts(genesis: Genesis) -> FrozenMap[bytes, Account]:
    """With liquid delegation a genesis delegation stays in the delegator's balance, labelled with its pool."""
    accounts = dict(_genesis_accounts(genesis))
    for validator in genesis.validators:
        for delegation in validator.delegations:
            address = address_of(delegation.account)
            if address != validator.address:
                account = accounts[address]
                accounts[address] = replace(
                    account, balance=account.balance + delegation.amount, delegated_to=validator.address
                )
    return FrozenMap(accounts)


def genesis_ledger(genesis: Genesis) -> Ledger:
    """The ledger before height 1; its total supply is the genesis supply.

    With liquid delegation a genesis delegation stays in the delegator's
    balance, labelled with its pool, and the first stake snapshot is taken here.
    """
    liquid = bool(genesis.params.liquid_delegation)
    validators = genesis.validators
    if liquid:  # only an operator's own delegation (folded into its pledge) leaves a balance
        validators = tuple(
            replace(v, delegations=tuple(d for d in v.delegations if address_of(d.account) == v.address))
            for v in validators
        )
    ledger = Ledger(
        accounts=_liquid_genesis_accounts(genesis) if liquid else _genesis_accounts(genesis),
        pools=FrozenMap((v.address, genesis_pool(v)) for v in validators),
        unbonding=(),
        slashed_evidence=frozenset(),
        issued=0,
        slashed=0,
        genesis_supply=0,
        liquid=liquid,
        signing_accounts=frozenset(
            address_of(v.signing_key) for v in genesis.validators if v.signing_key not in (b"", v.public_key)
        ),
    )
    if liquid:
        ledger = snapshot_liquid_stake(ledger)
    return replace(ledger, genesis_supply=total_supply(ledger))


def snapshot_liquid_stake(ledger: Ledger) -> Ledger:
    """Liquid delegation: each pool's members are the accounts labelled with it, at their balances now.

    Taken at genesis and at each epoch start: the stake of an epoch is what
    the labelled balances held when it began, and spending in between moves
    it only at the next snapshot (Cardano's stake snapshot).
    """
    members: dict[bytes, dict[bytes, int]] = {address: {} for address in ledger.pools}
    open_pools = {address for address, pool in ledger.pools.items() if pool.status in (ACTIVE, JAILED)}
    for holder, account in ledger.accounts.items():
        if account.delegated_to in open_pools and account.balance > 0:
            members[account.delegated_to][holder] = account.balance
    pools = {
        address: replace(ledger.pools[address], shares=FrozenMap(held), member_tokens=sum(held.values()))
        for address, held in members.items()
    }
    return replace(ledger, pools=ledger.pools.update(pools))


# --------------------------------------------------------------- queries


pool_power = R.pool_stake  # voting power: the pledge plus everything delegated


def active_powers(ledger: Ledger) -> tuple[tuple[bytes, int], ...]:
    """The validator set the ledger would have now: active pools with stake, sorted by address."""
    return ledger.active_powers


def _active_total(ledger: Ledger) -> int:
    return sum(power for _, power in ledger.active_powers)


def _active_powers(pools: FrozenMap[bytes, Pool]) -> tuple[tuple[bytes, int], ...]:
    return tuple(
        (address, power)
        for address, pool in sorted(pools.items())
        if pool.status == ACTIVE and (power := pool_power(pool)) > 0
    )


def pool_status(ledger: Ledger, address: bytes) -> str:
    pool = ledger.pools.get(address)
    return "unknown" if pool is None else pool.status


NO_ACCOUNT = Account()
"""What an address never seen holds: one shared value (frozen), not a new one per look-up."""


def account_of(ledger: Ledger, address: bytes) -> Account:
    return ledger.accounts.get(address, NO_ACCOUNT)


def stake_of(pool: Pool, delegator: bytes) -> int:
    """What `delegator` has in `pool`: the pledge for the operator, else what its shares are worth."""
    if delegator == pool.operator:
        return pool.pledge
    return S.share_value(pool.shares.get(delegator, 0), pool.total_shares, pool.member_tokens)


def member_stakes(pool: Pool) -> dict[bytes, int]:
    """What every member's shares are worth, in holder order (the share total summed once, not per holder)."""
    total = pool.total_shares
    return {
        holder: S.share_value(count, total, pool.member_tokens)
        for holder, count in sorted(pool.shares.items())
    }


def leverage_ppm(pool: Pool) -> int | None:
    """The pool's stake over its pledge, in ppm (None without pledge: unbounded)."""
    return pool_power(pool) * PPM // pool.pledge if pool.pledge else None


def total_supply(ledger: Ledger) -> int:
    """Every unit in existence: balances, pledges, delegations, unbonding stake and the reserve.

    With liquid delegation the members' stake is a snapshot of balances,
    counted once, as balances.
    """
    balances = sum(account.balance for account in ledger.accounts.values())
    if ledger.liquid:
        staked = sum(pool.pledge for pool in ledger.pools.values())
    else:
        staked = sum(pool_power(pool) for pool in ledger.pools.values())
    accrued = sum(ledger.accrued.values())
    return balances + staked + accrued + sum(entry.amount for entry in ledger.unbonding) + ledger.reserve


def bonded_stake(ledger: Ledger) -> int:
    """Stake of every pool that can still earn (tombstoned ones cannot): reward sharing's sigma is of this."""
    return ledger.bonded_stake


def _bonded_stake(pools: FrozenMap[bytes, Pool]) -> int:
    return sum(pool_power(pool) for pool in pools.values() if pool.status != TOMBSTONED)


def supply_is_conserved(ledger: Ledger) -> bool:
    return total_supply(ledger) == ledger.genesis_supply + ledger.issued - ledger.slashed


def stake_distribution(ledger: Ledger) -> tuple[tuple[str, int], ...]:
    """(pool name, power) of the active pools, largest first (ties by name)."""
    named = ((ledger.pools[address].name, power) for address, power in active_powers(ledger))
    return tuple(sorted(named, key=lambda item: (-item[1], item[0])))


def nakamoto_coefficient(ledger: Ledger) -> int:
    """The fewest active pools that together hold more than 1/3 of active stake (can halt the chain)."""
    powers = [power for _, power in stake_distribution(ledger)]
    total, held = sum(powers), 0
    for count, power in enumerate(powers, start=1):
        held += power
        if 3 * held > total:
            return count
    return 0


# --------------------------------------------------------------- balances


def credited(account: Account, amount: int) -> Account:
    return Account(account.balance + amount, account.nonce, account.public_key, account.delegated_to)


def credit_accounts(ledger: Ledger, credits: Mapping[bytes, int]) -> Ledger:
    """Add amounts to liquid balances (creating accounts as needed), one map copy for all."""
    changes = {
        address: credited(account_of(ledger, address), amount)
        for address, amount in credits.items()
        if amount
    }
    return replace(ledger, accounts=ledger.accounts.update(changes))


def debit_account(ledger: Ledger, address: bytes, amount: int) -> Ledger:
    """Take from a liquid balance; callers check it suffices (see the *_problem functions)."""
    return replace(
        ledger, accounts=ledger.accounts.set(address, credited(account_of(ledger, address), -amount))
    )


# --------------------------------------------------------------- slashing


def cut(amount: int, fraction_ppm: int) -> int:
    """The floor of `fraction_ppm` of `amount`: what a slash takes from one holding."""
    return amount * fraction_ppm // PPM


def slash_pool_stake(pool: Pool, fraction_ppm: int, liquid: bool = False) -> tuple[Pool, int]:
    """Cut the pledge and the member tokens by the same fraction (every share at once); the pool and the cut.

    With liquid delegation the members' stake is their spendable balance,
    so only the pledge is at stake.
    """
    pledge_cut = cut(pool.pledge, fraction_ppm)
    members_cut = 0 if liquid else cut(pool.member_tokens, fraction_ppm)
    slashed = replace(pool, pledge=pool.pledge - pledge_cut, member_tokens=pool.member_tokens - members_cut)
    return slashed, pledge_cut + members_cut


def slash_unbonding(
    entries: tuple[Unbonding, ...], pool: bytes, fraction_ppm: int
) -> tuple[tuple[Unbonding, ...], int]:
    """Cut the pool's unbonding entries by the same fraction: leaving does not escape the penalty."""
    slashed = tuple(
        replace(e, amount=e.amount - cut(e.amount, fraction_ppm)) if e.pool == pool else e for e in entries
    )
    return slashed, sum(e.amount for e in entries) - sum(e.amount for e in slashed)


def slash_redelegations(ledger: Ledger, source: bytes, fraction_ppm: int) -> tuple[Ledger, int]:
    """Cut what left `source` by redelegation and is still slashable, from the pools it went to.

    Each entry loses the fraction of its amount, taken from the delegator's
    stake in the target pool (as much of it as is still there: stake moved
    on again, or undelegated, escapes only what it no longer is).
    """
    taken, entries = 0, []
    for entry in ledger.redelegations:
        if entry.source != source:
            entries.append(entry)
            continue
        due = cut(entry.amount, fraction_ppm)
        target = ledger.pools[entry.target]
        take = min(due, stake_of(target, entry.delegator))
        if take:
            ledger = set_pool(ledger, withdraw(target, entry.delegator, take))
        taken += take
        entries.append(replace(entry, amount=entry.amount - due))
    return replace(ledger, redelegations=Redelegations(entries)), taken


def slash_stake(ledger: Ledger, address: bytes, fraction_ppm: int) -> tuple[Ledger, int]:
    """Slash everything staked with a pool, pro rata; the caller decides where the cut goes.

    Like unbonding stake, stake redelegated away is slashed for any offence
    punished before it matures (a conservative simplification of Cosmos,
    which spares stake that left before the offence's height).
    """
    pool, from_pool = slash_pool_stake(ledger.pools[address], fraction_ppm, ledger.liquid)
    unbonding, from_unbonding = slash_unbonding(ledger.unbonding, address, fraction_ppm)
    slashed = replace(ledger, pools=ledger.pools.set(address, pool), unbonding=unbonding)
    slashed, from_redelegations = slash_redelegations(slashed, address, fraction_ppm)
    return slashed, from_pool + from_unbonding + from_redelegations


def burn(ledger: Ledger, amount: int) -> Ledger:
    return replace(ledger, slashed=ledger.slashed + amount)


def set_pool(ledger: Ledger, pool: Pool) -> Ledger:
    return replace(ledger, pools=ledger.pools.set(pool.address, pool))


# --------------------------------------------------------------- evidence


def evidence_problem(ledger: Ledger, evidence: Evidence, height: int, params: Params) -> str | None:
    """Why `evidence` included at `height` must not be punished, or None (signatures are the caller's)."""
    shape = evidence_shape_problem(evidence)
    if shape:
        return shape
    pool = ledger.pools.get(evidence.offender)
    if pool is None:
        return "unknown pool"
    if evidence.key() in ledger.slashed_evidence:
        return "duplicate: offence already punished"
    if pool.status == TOMBSTONED:
        return "duplicate: pool already tombstoned"
    if evidence.height > height:
        return "evidence from a future height"
    if height - evidence.height > params.evidence_max_age:
        return f"stale: older than {params.evidence_max_age} heights"
    return None


def whistleblower_account(ledger: Ledger, proposer: bytes, offender: bytes) -> bytes | None:
    """The including proposer's operator; nobody when the proposer is unknown or is the offender."""
    pool = ledger.pools.get(proposer)
    return None if pool is None or proposer == offender else pool.operator


def punish_equivocation(
    ledger: Ledger, evidence: Evidence, proposer: bytes, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Slash the offender's pool, reward the including proposer's operator, burn the rest, tombstone."""
    offender = evidence.offender
    ledger, taken = slash_stake(ledger, offender, params.slash_fraction_double_sign_ppm)
    reporter = whistleblower_account(ledger, proposer, offender)
    credits: dict[bytes, int] = (
        {} if reporter is None else {reporter: cut(taken, params.whistleblower_reward_ppm)}
    )
    ledger = burn(credit_accounts(ledger, credits), taken - sum(credits.values()))
    ledger = set_pool(ledger, replace(ledger.pools[offender], status=TOMBSTONED))
    ledger = replace(ledger, slashed_evidence=ledger.slashed_evidence | {evidence.key()})
    return ledger, (
        LedgerEvent("slashed", offender, taken, f"double sign at height {evidence.height}"),
        LedgerEvent("tombstoned", offender, 0, "double sign"),
    )


def apply_evidence(
    ledger: Ledger, ctx: BlockContext, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Punish each valid offence in order; consensus should have filtered the rest, which are skipped."""
    events: tuple[LedgerEvent, ...] = ()
    for evidence in ctx.evidence:
        problem = evidence_problem(ledger, evidence, ctx.height, params)
        if problem:
            events += (LedgerEvent("evidence_rejected", evidence.offender, 0, problem),)
            continue
        ledger, punished = punish_equivocation(ledger, evidence, ctx.proposer, params)
        events += punished
    return ledger, events


# --------------------------------------------------------------- downtime


def record_participation(pool: Pool, signed: bool, window: int) -> Pool:
    """Shift one committee participation into the pool's window (bit set = missed)."""
    missed = ((pool.missed << 1) | (0 if signed else 1)) & ((1 << window) - 1)
    return pool if missed == pool.missed else replace(pool, missed=missed)  # most heights change nothing


def missed_count(pool: Pool) -> int:
    return pool.missed.bit_count()


def jail_for_downtime(
    ledger: Ledger, address: bytes, epoch: int, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Jail, clear the window and burn a small pro-rata slash (no whistleblower: the chain saw it)."""
    misses = missed_count(ledger.pools[address])
    ledger, taken = slash_stake(ledger, address, params.slash_fraction_downtime_ppm)
    until = epoch + params.jail_epochs + 1
    ledger = set_pool(
        burn(ledger, taken), replace(ledger.pools[address], status=JAILED, jailed_until_epoch=until, missed=0)
    )
    reason = f"missed {misses} of the last {params.downtime_window} committee precommits"
    return ledger, (
        LedgerEvent("jailed", address, 0, f"{reason}; jailed until epoch {until}"),
        LedgerEvent("slashed", address, taken, "downtime"),
    )


def apply_downtime(
    ledger: Ledger, ctx: BlockContext, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Judge each height whose grace period ended with this block, oldest first.

    Not the certificate this block carries: that holds only the precommits
    its proposer had when it proposed (the first 2/3 in fast mode), so judging
    it would charge online validators for being slower than the rest.
    """
    events: tuple[LedgerEvent, ...] = ()
    for participation in ctx.judged:
        ledger, jailed = judge_participation(ledger, participation, ctx.epoch, params)
        events += jailed
    return ledger, events


def judge_participation(
    ledger: Ledger, participation: Participation, epoch: int, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Record one height's participation; jail active pools past the allowed misses, by address.

    One pass over the committee: every block judges a height, and most of
    them change no pool and jail nobody.
    """
    pools, signers = ledger.pools, participation.signers
    window, limit = params.downtime_window, params.max_missed_in_window
    changed: dict[bytes, Pool] = {}
    over: set[bytes] = set()
    for address in participation.committee:
        pool = pools.get(address)
        if pool is None or pool.status != ACTIVE:
            continue
        recorded = record_participation(pool, address in signers, window)
        if recorded is not pool:
            changed[address] = recorded
        if missed_count(recorded) > limit:
            over.add(address)
    ledger = replace(ledger, pools=pools.update(changed))
    events: tuple[LedgerEvent, ...] = ()
    for address in sorted(over):
        ledger, jailed = jail_for_downtime(ledger, address, epoch, params)
        events += jailed
    return ledger, events


# --------------------------------------------------------------- rewards


def is_rewardable(ledger: Ledger, address: bytes) -> bool:
    pool = ledger.pools.get(address)
    return pool is not None and can_earn(pool)


def can_earn(pool: Pool) -> bool:
    """Whether a pool can still be paid: every status but tombstoned."""
    return pool.status != TOMBSTONED


def rewarded_signers(ledger: Ledger, ctx: BlockContext) -> tuple[tuple[bytes, int], ...]:
    """(address, committee power) of the previous certificate's signers that can be paid."""
    rewardable, signers = ledger.pools.derived(_rewardable), ctx.prev_signers
    return tuple(
        (address, power)
        for address, power in ctx.prev_committee
        if address in signers and power > 0 and address in rewardable
    )


def _rewardable(pools: FrozenMap[bytes, Pool]) -> frozenset[bytes]:
    """The pools `is_rewardable` says yes to, once per pool map: every block asks it of every signer."""
    return frozenset(address for address, pool in pools.items() if can_earn(pool))


def block_pool_rewards(ledger: Ledger, ctx: BlockContext, params: Params) -> dict[bytes, int]:
    """Each pool's share of the block reward before reward sharing (see `rewards.block_shares`)."""
    proposer = ctx.proposer if is_rewardable(ledger, ctx.proposer) else None
    signers = rewarded_signers(ledger, ctx)
    return R.block_shares(params.block_reward, params.proposer_reward_ppm, proposer, signers)


def apply_rewards(
    ledger: Ledger, ctx: BlockContext, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Pay the block's rewards into liquid balances of operators and delegators.

    With saturation or pledge influence on, the shares pass through reward
    sharing, the reserve funds the payout first and takes what was withheld
    (`rewards.settle_reserve`); off, the reserve stays 0 and the shares are paid as minted.
    """
    shares = block_pool_rewards(ledger, ctx, params)
    rewards = (
        R.shared_rewards(shares, ledger.pools, bonded_stake(ledger), params)
        if R.sharing_is_on(params)
        else shares
    )
    minted, reserve = R.settle_reserve(ledger.reserve, sum(rewards.values()), R.withheld(shares, rewards))
    if params.epoch_rewards:
        earned = {address: ledger.accrued.get(address, 0) + amount for address, amount in rewards.items()}
        ledger = replace(ledger, accrued=ledger.accrued.update(earned))
    else:
        ledger = pay_pools(ledger, rewards)
    ledger = replace(ledger, issued=ledger.issued + minted, reserve=reserve)
    return ledger, tuple(LedgerEvent("rewarded", a, rewards[a], "block reward") for a in sorted(rewards))


def pay_pools(ledger: Ledger, rewards: Mapping[bytes, int]) -> Ledger:
    """Split each pool's reward (cost, margin, members by shares) into balances, or compound the members' part."""
    payouts = {
        address: R.split_pool_reward(ledger.pools[address], rewards[address]) for address in sorted(rewards)
    }
    credits = merge_amounts(
        pair
        for address, payout in payouts.items()
        for pair in ((ledger.pools[address].operator, payout.operator), *payout.members)
    )
    compounded = {
        address: replace(pool, member_tokens=pool.member_tokens + payout.compounded)
        for address, payout in payouts.items()
        if payout.compounded and (pool := ledger.pools[address])
    }
    return replace(credit_accounts(ledger, credits), pools=ledger.pools.update(compounded))


def pay_accrued(ledger: Ledger) -> Ledger:
    """epoch_rewards: what each pool earned during the epoch, paid out at its start by the shares then."""
    if not ledger.accrued:
        return ledger
    return pay_pools(replace(ledger, accrued=FrozenMap()), ledger.accrued)


# --------------------------------------------------------------- transactions


SIGNING_KEY_SENDS_NOTHING = "signed by a pool's signing key: signing keys hold no funds and can move none"
SIGNING_KEY_HOLDS_NOTHING = "the recipient is a pool's signing key, which holds no funds"


def transfer_problem(ledger: Ledger, sender: bytes, tx: Transfer) -> str | None:
    if tx.to in ledger.signing_accounts:
        return SIGNING_KEY_HOLDS_NOTHING
    balance = account_of(ledger, sender).balance
    return f"insufficient balance: {balance} < {tx.amount}" if balance < tx.amount else None


def register_pool_problem(ledger: Ledger, sender: bytes, tx: RegisterPool) -> str | None:
    if sender in ledger.pools and ledger.pools[sender].status != RETIRED:
        return "already a pool operator"
    if tx.compounding and ledger.liquid:
        return "liquid delegation pays member rewards out: no compounding"
    balance = account_of(ledger, sender).balance
    return f"insufficient balance: {balance} < {tx.pledge}" if balance < tx.pledge else None


def leverage_problem(pool: Pool, added: int, params: Params) -> str | None:
    """Why `added` more stake would take the pool past `max_leverage` times its pledge, or None."""
    if params.max_leverage <= 0:
        return None
    cap = pool.pledge * params.max_leverage
    stake = pool_power(pool) + added
    return (
        f"leverage cap: stake {stake} > pledge {pool.pledge} x {params.max_leverage}" if stake > cap else None
    )


def delegate_problem(ledger: Ledger, sender: bytes, tx: Delegate, params: Params) -> str | None:
    pool = ledger.pools.get(tx.pool)
    if pool is None:
        return "unknown pool"
    closed = pool_closed_problem(pool, "pool")
    if closed:
        return closed
    balance = account_of(ledger, sender).balance
    if ledger.liquid and sender != pool.operator:  # a label on the whole balance: nothing moves now
        return leverage_problem(pool, balance, params)
    if balance < tx.amount:
        return f"insufficient balance: {balance} < {tx.amount}"
    if sender != pool.operator:
        if S.shares_for_deposit(tx.amount, pool.total_shares, pool.member_tokens) == 0:
            return "amount buys no share at the pool's exchange rate"
        return leverage_problem(pool, tx.amount, params)
    return None


def undelegate_problem(ledger: Ledger, sender: bytes, tx: Undelegate) -> str | None:
    pool = ledger.pools.get(tx.pool)
    if pool is None:
        return "unknown pool"
    if ledger.liquid and sender != pool.operator:
        return None if account_of(ledger, sender).delegated_to == tx.pool else "not delegated to this pool"
    staked = stake_of(pool, sender)
    return f"insufficient own stake in pool: {staked} < {tx.amount}" if staked < tx.amount else None


def pool_closed_problem(pool: Pool, role: str) -> str | None:
    """Why `pool` takes no new stake, or None."""
    if pool.status in (TOMBSTONED, RETIRED):
        return f"{role} is {pool.status}"
    if pool.retiring_epoch:
        return f"{role} retires at epoch {pool.retiring_epoch}"
    return None


LIQUID_HAS_NO_SHARES = (
    "liquid delegation holds no shares: delegate to the other pool (the label moves at once)"
)


def redelegate_problem(ledger: Ledger, sender: bytes, tx: Redelegate, params: Params) -> str | None:
    if ledger.liquid:
        return LIQUID_HAS_NO_SHARES
    source, target = ledger.pools.get(tx.source), ledger.pools.get(tx.target)
    if source is None or target is None:
        return "unknown source pool" if source is None else "unknown target pool"
    if tx.source == tx.target:
        return "source and target are the same pool"
    if sender == source.operator:
        return "an operator's pledge cannot be redelegated; undelegate it"
    if sender == target.operator:
        return "the target pool's operator holds its stake as pledge, not shares"
    closed = pool_closed_problem(target, "target pool")
    if closed:
        return closed
    staked = stake_of(source, sender)
    if staked < tx.amount:
        return f"insufficient own stake in source pool: {staked} < {tx.amount}"
    # Cosmos forbids this too: the hop would let stake outrun its first pool's slashing.
    until = Redelegations.of(ledger.redelegations).into.get((sender, tx.source))
    if until is not None:
        return f"stake redelegated into the source pool is slashable by its previous pool until epoch {until}"
    if S.shares_for_deposit(tx.amount, target.total_shares, target.member_tokens) == 0:
        return "amount buys no share at the target pool's exchange rate"
    return leverage_problem(target, tx.amount, params)


def retire_pool_problem(ledger: Ledger, sender: bytes, tx: RetirePool) -> str | None:
    pool = ledger.pools.get(sender)
    if pool is None:
        return "not a pool operator"
    if pool.status in (TOMBSTONED, RETIRED):
        return f"pool is {pool.status}"
    if tx.epoch <= ledger.epoch:
        return f"retirement epoch {tx.epoch} is not after the current epoch {ledger.epoch}"
    return None


def transfer_shares_problem(ledger: Ledger, sender: bytes, tx: TransferShares) -> str | None:
    if ledger.liquid:
        return LIQUID_HAS_NO_SHARES
    pool = ledger.pools.get(tx.pool)
    if pool is None:
        return "unknown pool"
    if tx.to == pool.operator:
        return "the pool's operator holds its stake as pledge, not shares"
    if tx.to in ledger.signing_accounts:
        return SIGNING_KEY_HOLDS_NOTHING
    held = pool.shares.get(sender, 0)
    return f"insufficient shares in pool: {held} < {tx.shares}" if held < tx.shares else None


def rotate_key_problem(ledger: Ledger, sender: bytes, tx: RotateKey) -> str | None:
    """Why the owner cannot make `tx.public_key` its pool's next signing key, or None.

    A new signing key must be fresh: never a signing key before (an old hot
    key may be in a thief's hands), no account on chain (a signing key holds
    no funds), and no other pool's owner. The owner's own key is allowed: it
    joins the two roles again, as a pool registered by transaction starts.
    """
    pool = ledger.pools.get(sender)
    if pool is None:
        return "not a pool owner"
    if pool.status in (TOMBSTONED, RETIRED):
        return f"pool is {pool.status}"
    key, address = tx.public_key, address_of(tx.public_key)
    if key == (pool.next_public_key or pool.public_key):
        return "already the pool's next signing key"
    if address == sender:
        return None
    if address in ledger.signing_accounts:
        return "key is or was a pool's signing key; generate a fresh one"
    if address in ledger.pools:
        return "key owns another pool"
    if address in ledger.accounts:
        return "key has an account on chain; a signing key must be fresh and hold no funds"
    return None


def update_pool_problem(ledger: Ledger, sender: bytes) -> str | None:
    pool = ledger.pools.get(sender)
    if pool is None:
        return "not a pool owner"
    return f"pool is {pool.status}" if pool.status in (TOMBSTONED, RETIRED) else None


def unjail_problem(ledger: Ledger, sender: bytes, tx: Unjail) -> str | None:
    pool = ledger.pools.get(sender)
    if pool is None:
        return "not a pool operator"
    if pool.status == TOMBSTONED:
        return "pool is tombstoned"
    if pool.status != JAILED:
        return "pool is not jailed"
    if ledger.epoch < pool.jailed_until_epoch:
        return f"jailed until epoch {pool.jailed_until_epoch} (now {ledger.epoch})"
    return None


def tx_type_problem(ledger: Ledger, sender: bytes, tx: Tx, params: Params) -> str | None:
    if isinstance(tx, Transfer):
        return transfer_problem(ledger, sender, tx)
    if isinstance(tx, RegisterPool):
        return register_pool_problem(ledger, sender, tx)
    if isinstance(tx, Delegate):
        return delegate_problem(ledger, sender, tx, params)
    if isinstance(tx, Undelegate):
        return undelegate_problem(ledger, sender, tx)
    if isinstance(tx, TransferShares):
        return transfer_shares_problem(ledger, sender, tx)
    if isinstance(tx, Redelegate):
        return redelegate_problem(ledger, sender, tx, params)
    if isinstance(tx, RetirePool):
        return retire_pool_problem(ledger, sender, tx)
    if isinstance(tx, RotateKey):
        return rotate_key_problem(ledger, sender, tx)
    if isinstance(tx, UpdatePool):
        return update_pool_problem(ledger, sender)
    return unjail_problem(ledger, sender, tx)


def signed_tx_problem(ledger: Ledger, chain_id: str, signed: SignedTx, params: Params) -> str | None:
    """Why a decoded transaction cannot be applied to `ledger` now, or None."""
    return _checked_tx_problem(ledger, signed, verify_tx(chain_id, signed), params)


def checked_tx(chain_id: str, tx: bytes) -> tuple[SignedTx, bool]:
    """`decode_tx(tx)` and whether its signature holds on `chain_id`: once per transaction, not per judgement.

    A transaction is judged when it is offered (a node's mempool, an
    economy's delegator deciding on the ledger it would leave) and again in
    the block that carries it; the Ed25519 check was the largest part of
    each. Both are functions of the bytes and the chain alone, so a bounded
    cache answers the second time. A malformed transaction raises
    DecodeError every time (exceptions are not cached); a buffer that is not
    `bytes` (unhashable) is judged afresh.
    """
    if isinstance(tx, bytes):
        return _checked_tx(chain_id, tx)
    signed = decode_tx(tx)
    return signed, verify_tx(chain_id, signed)


@lru_cache(maxsize=16_384)
def _checked_tx(chain_id: str, tx: bytes) -> tuple[SignedTx, bool]:
    signed = decode_tx(tx)
    return signed, verify_tx(chain_id, signed)


def _checked_tx_problem(ledger: Ledger, signed: SignedTx, signature_ok: bool, params: Params) -> str | None:
    """`signed_tx_problem` with the signature already judged."""
    if not signature_ok:
        return "bad signature (wrong key or chain)"
    if signed.sender in ledger.signing_accounts:
        return SIGNING_KEY_SENDS_NOTHING
    account = ledger.accounts.get(signed.sender)
    if account is None:
        return "unknown account"
    if signed.tx.nonce != account.nonce:
        return f"bad nonce: expected {account.nonce}, got {signed.tx.nonce}"
    return tx_type_problem(ledger, signed.sender, signed.tx, params)


def tx_problem(ledger: Ledger, chain_id: str, tx: bytes, params: Params) -> str | None:
    """Why `tx` would be rejected if applied next (for the mempool and for blocks), or None.

    Unjail is judged against `ledger.epoch`, the epoch of the last block
    applied; jails only end later, so nothing valid now becomes invalid.
    """
    try:
        signed, signature_ok = checked_tx(chain_id, tx)
    except DecodeError as exc:
        return f"malformed: {exc}"
    return _checked_tx_problem(ledger, signed, signature_ok, params)


def bump_nonce(ledger: Ledger, sender: bytes, public_key: bytes) -> Ledger:
    account = account_of(ledger, sender)
    bumped = Account(account.balance, account.nonce + 1, public_key, account.delegated_to)  # as `credited`
    return replace(ledger, accounts=ledger.accounts.set(sender, bumped))


def deposit(pool: Pool, holder: bytes, amount: int) -> Pool:
    """The pool after `holder` adds `amount`: to the pledge for the operator, else as shares."""
    if holder == pool.operator:
        return replace(pool, pledge=pool.pledge + amount)
    minted = S.shares_for_deposit(amount, pool.total_shares, pool.member_tokens)
    shares = pool.shares.set(holder, pool.shares.get(holder, 0) + minted)
    return replace(pool, shares=shares, member_tokens=pool.member_tokens + amount)


def withdraw(pool: Pool, holder: bytes, amount: int) -> Pool:
    """The pool after `holder` takes `amount` out (callers check it holds that much).

    A member burns the ceiling of the shares the amount is worth. Once the
    last share is gone, the member tokens rounding left behind belong to
    nobody's shares: they join the pledge, so no token is stranded.
    """
    if holder == pool.operator:
        return replace(pool, pledge=pool.pledge - amount)
    burned = S.shares_to_burn(amount, pool.total_shares, pool.member_tokens)
    left = pool.shares.get(holder, 0) - burned
    shares = pool.shares.set(holder, left) if left else pool.shares.without(holder)
    pool = replace(pool, shares=shares, member_tokens=pool.member_tokens - amount)
    if not shares:
        pool = replace(pool, pledge=pool.pledge + pool.member_tokens, member_tokens=0)
    return pool


def move_shares(pool: Pool, sender: bytes, to: bytes, count: int) -> Pool:
    """`count` of the sender's shares now held by `to`: nothing is minted, burned or revalued."""
    left = pool.shares[sender] - count
    shares = pool.shares.set(sender, left) if left else pool.shares.without(sender)
    return replace(pool, shares=shares.set(to, shares.get(to, 0) + count))


def apply_transfer(ledger: Ledger, sender: bytes, tx: Transfer) -> Ledger:
    return credit_accounts(debit_account(ledger, sender, tx.amount), {tx.to: tx.amount})


def apply_register_pool(ledger: Ledger, sender: bytes, public_key: bytes, tx: RegisterPool) -> Ledger:
    pool = Pool(
        address=sender,
        name=f"pool-{sender.hex()[:8]}",
        public_key=public_key,
        operator=sender,
        pledge=tx.pledge,
        fixed_cost=tx.fixed_cost,
        margin_ppm=tx.margin_ppm,
        shares=FrozenMap(),
        compounding=tx.compounding,
    )
    return set_pool(debit_account(ledger, sender, tx.pledge), pool)


def apply_delegate(ledger: Ledger, sender: bytes, tx: Delegate) -> Ledger:
    if ledger.liquid and sender != ledger.pools[tx.pool].operator:
        return label(ledger, sender, tx.pool)
    return set_pool(
        debit_account(ledger, sender, tx.amount), deposit(ledger.pools[tx.pool], sender, tx.amount)
    )


def label(ledger: Ledger, holder: bytes, pool: bytes) -> Ledger:
    """Liquid delegation: the account's balance counts for `pool` from the next epoch's snapshot (b"": none)."""
    account = replace(account_of(ledger, holder), delegated_to=pool)
    return replace(ledger, accounts=ledger.accounts.set(holder, account))


def apply_undelegate(ledger: Ledger, sender: bytes, tx: Undelegate, params: Params) -> Ledger:
    if ledger.liquid and sender != ledger.pools[tx.pool].operator:
        return label(ledger, sender, b"")
    entry = Unbonding(sender, tx.pool, tx.amount, ledger.epoch + params.unbonding_epochs + 1)
    ledger = set_pool(ledger, withdraw(ledger.pools[tx.pool], sender, tx.amount))
    return replace(ledger, unbonding=(*ledger.unbonding, entry))


def apply_redelegate(ledger: Ledger, sender: bytes, tx: Redelegate, params: Params) -> Ledger:
    entry = Redelegation(sender, tx.source, tx.target, tx.amount, ledger.epoch + params.unbonding_epochs + 1)
    ledger = set_pool(ledger, withdraw(ledger.pools[tx.source], sender, tx.amount))
    ledger = set_pool(ledger, deposit(ledger.pools[tx.target], sender, tx.amount))
    return replace(ledger, redelegations=Redelegations.of(ledger.redelegations).appended(entry))


def apply_retire_pool(ledger: Ledger, sender: bytes, tx: RetirePool) -> Ledger:
    return set_pool(ledger, replace(ledger.pools[sender], retiring_epoch=tx.epoch))


def retire(ledger: Ledger, address: bytes, epoch: int, params: Params) -> tuple[Ledger, LedgerEvent]:
    """The pool leaves the set: every holder's stake and the pledge go to unbonding, still slashable.

    What the members' shares are worth goes to each holder; what their
    floors leave, with the pledge, to the operator.
    """
    pool = ledger.pools[address]
    release = epoch + params.unbonding_epochs + 1
    members = {} if ledger.liquid else member_stakes(pool)
    leftover = (
        0 if ledger.liquid else pool.member_tokens - sum(members.values())
    )  # liquid: members kept theirs
    owed = {**members, pool.operator: pool.pledge + leftover}
    entries = tuple(Unbonding(holder, address, amount, release) for holder, amount in owed.items() if amount)
    retired = replace(pool, pledge=0, shares=FrozenMap(), member_tokens=0, status=RETIRED, retiring_epoch=0)
    ledger = replace(set_pool(ledger, retired), unbonding=(*ledger.unbonding, *entries))
    total = sum(owed.values())
    return ledger, LedgerEvent(
        "retired", address, total, f"retired at epoch {epoch}; its stake unbonds until epoch {release}"
    )


def apply_transfer_shares(ledger: Ledger, sender: bytes, tx: TransferShares) -> Ledger:
    if tx.to not in ledger.accounts:  # the new holder must be able to sign an undelegate
        ledger = replace(ledger, accounts=ledger.accounts.set(tx.to, Account()))
    return set_pool(ledger, move_shares(ledger.pools[tx.pool], sender, tx.to, tx.shares))


def apply_rotate_key(ledger: Ledger, sender: bytes, tx: RotateKey) -> Ledger:
    """The key waits in the pool until the next epoch; its address can never hold funds from now on."""
    ledger = set_pool(ledger, replace(ledger.pools[sender], next_public_key=tx.public_key))
    address = address_of(tx.public_key)
    if address == sender:
        return ledger
    return replace(ledger, signing_accounts=ledger.signing_accounts | {address})


def rotate_keys(ledger: Ledger, epoch: int) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """At an epoch start, every pool with a next signing key signs with it from now on."""
    rotated = {
        address: replace(pool, public_key=pool.next_public_key, next_public_key=b"")
        for address, pool in sorted(ledger.pools.items())
        if pool.next_public_key
    }
    events = tuple(
        LedgerEvent(
            "key_rotated", address, 0, f"signs with key {pool.public_key.hex()[:16]} from epoch {epoch}"
        )
        for address, pool in rotated.items()
    )
    return replace(ledger, pools=ledger.pools.update(rotated)), events


def apply_unjail(ledger: Ledger, sender: bytes) -> Ledger:
    return set_pool(ledger, replace(ledger.pools[sender], status=ACTIVE, missed=0))


def apply_tx(ledger: Ledger, signed: SignedTx, params: Params) -> Ledger:
    """Apply a transaction already known to be valid (see signed_tx_problem)."""
    ledger = bump_nonce(ledger, signed.sender, signed.public_key)
    sender, tx = signed.sender, signed.tx
    if isinstance(tx, Transfer):
        return apply_transfer(ledger, sender, tx)
    if isinstance(tx, RegisterPool):
        return apply_register_pool(ledger, sender, signed.public_key, tx)
    if isinstance(tx, Delegate):
        return apply_delegate(ledger, sender, tx)
    if isinstance(tx, Undelegate):
        return apply_undelegate(ledger, sender, tx, params)
    if isinstance(tx, TransferShares):
        return apply_transfer_shares(ledger, sender, tx)
    if isinstance(tx, Redelegate):
        return apply_redelegate(ledger, sender, tx, params)
    if isinstance(tx, RetirePool):
        return apply_retire_pool(ledger, sender, tx)
    if isinstance(tx, RotateKey):
        return apply_rotate_key(ledger, sender, tx)
    if isinstance(tx, UpdatePool):
        return set_pool(
            ledger, replace(ledger.pools[sender], fixed_cost=tx.fixed_cost, margin_ppm=tx.margin_ppm)
        )
    return apply_unjail(ledger, sender)


def tx_events(signed: SignedTx) -> tuple[LedgerEvent, ...]:
    applied = LedgerEvent("tx_applied", signed.sender, tx_amount(signed.tx), tx_type_name(signed.tx))
    if isinstance(signed.tx, Unjail):
        return (applied, LedgerEvent("unjailed", signed.sender, 0, "unjail transaction"))
    return (applied,)


def process_tx(
    ledger: Ledger, chain_id: str, tx: bytes, params: Params
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Apply one transaction from a block, or leave the ledger untouched and say why not."""
    try:
        signed, signature_ok = checked_tx(chain_id, tx)
    except DecodeError as exc:
        return ledger, (LedgerEvent("tx_rejected", b"", 0, f"malformed: {exc}"),)
    problem = _checked_tx_problem(ledger, signed, signature_ok, params)
    if problem:
        return ledger, (LedgerEvent("tx_rejected", signed.sender, tx_amount(signed.tx), problem),)
    return apply_tx(ledger, signed, params), tx_events(signed)


def apply_txs(
    ledger: Ledger, txs: tuple[bytes, ...], params: Params, chain_id: str
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Transactions in block order, each judged against the ledger the previous ones left."""
    events: tuple[LedgerEvent, ...] = ()
    for tx in txs:
        ledger, applied = process_tx(ledger, chain_id, tx, params)
        events += applied
    return ledger, events


# --------------------------------------------------------------- blocks and epochs


def apply_block(
    ledger: Ledger, ctx: BlockContext, txs: tuple[bytes, ...], params: Params, chain_id: str
) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """The ledger after a finalized block: evidence, downtime, rewards, then transactions."""
    ledger = replace(ledger, epoch=ctx.epoch)
    ledger, evidence_events = apply_evidence(ledger, ctx, params)
    ledger, downtime_events = apply_downtime(ledger, ctx, params)
    ledger, reward_events = apply_rewards(ledger, ctx, params)
    ledger, transaction_events = apply_txs(ledger, txs, params, chain_id)
    return ledger, evidence_events + downtime_events + reward_events + transaction_events


def start_epoch(ledger: Ledger, epoch: int, params: Params) -> tuple[Ledger, tuple[LedgerEvent, ...]]:
    """Enter `epoch`: pools due retire, rotated signing keys take over, unbonding entries due
    return to their owners' balances, and redelegations past their slashable period are forgotten."""
    ledger = pay_accrued(ledger)
    ledger, rotated = rotate_keys(ledger, epoch)
    retired: tuple[LedgerEvent, ...] = ()
    for address in sorted(ledger.pools):
        pool = ledger.pools[address]
        if pool.retiring_epoch and pool.retiring_epoch <= epoch and pool.status not in (TOMBSTONED, RETIRED):
            ledger, event = retire(ledger, address, epoch, params)
            retired += (event,)
    slashable = Redelegations(e for e in ledger.redelegations if e.release_epoch > epoch)
    ledger = replace(ledger, redelegations=slashable)
    due = tuple(e for e in ledger.unbonding if e.release_epoch <= epoch)
    kept = tuple(e for e in ledger.unbonding if e.release_epoch > epoch)
    ledger = credit_accounts(ledger, merge_amounts((e.delegator, e.amount) for e in due))
    if ledger.liquid:
        ledger = snapshot_liquid_stake(ledger)
    events = tuple(
        LedgerEvent("released", e.delegator, e.amount, f"unbonded from pool {e.pool.hex()[:8]}") for e in due
    )
    return replace(ledger, unbonding=kept, epoch=epoch), rotated + retired + events
