"""Every shortcut taken for speed gives what the plain computation gives.

The economy's fast-forward (issue 12) made some core functions and the
engine's own bookkeeping incremental or integer-only. Each is checked here
against the computation it replaced, written out plainly, so a shortcut that
drifts fails here rather than as a changed state hash somewhere later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import fields, replace
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.econ.digest import fast_canonical, ledger_hash
from network.econ.engine import FastForward
from network.econ.policies import Market, Quote
from network.econ.quotes import member_yield_ppm
from node.core import ledger as L
from node.core import rewards as R
from node.core import signing_keys as SK
from node.core.canonical import canonical
from node.core.codec import DecodeError, encode
from node.core.genesis import PPM, Params, make_genesis
from node.core.keys import Keypair
from node.core.ledger import Account, FrozenMap, Ledger, Pool, Redelegation, Redelegations, Unbonding
from node.core.messages import (
    Block,
    CommitCertificate,
    Evidence,
    Kind,
    Vote,
    make_evidence,
    sha256,
    sign_item,
)
from node.core.query import SetView, member_rate, pools_view
from node.core.selection import (
    INT64_MAX,
    INT64_MIN,
    MAX_TOTAL_VOTING_POWER,
    PRIORITY_WINDOW_SIZE_FACTOR,
    PrioritizedValidator,
    ProposerPriorities,
    clip_all_int64,
    clip_int64,
    compute_shuffled_index,
    increment_priorities,
    increment_proposer_priority,
    rescale_priorities,
    safe_add_clip,
    safe_sub_clip,
    shuffled_indices,
)
from node.core.state import ChainState, apply_block, genesis_state, proposer_of
from node.core.tx import Delegate, RotateKey, Transfer, Undelegate, Unjail, decode_tx, sign_tx, verify_tx
from tests.test_econ import SMALL, economy

ADDRESSES = [bytes([i]) * 20 for i in range(6)]

# ------------------------------------------------------------------ rewards


def plain_member_rate(
    pool: Pool, added: int, active_total: int, bonded_total: int, performance_ppm: int, params: Params
) -> Fraction:
    """`expected_member_rate` as it was written before it kept integers: one Fraction step at a time."""
    stake = R.pool_stake(pool) + added
    if added <= 0 or active_total + added <= 0:
        return Fraction(0)
    block = Fraction(params.block_reward * stake * performance_ppm, (active_total + added) * PPM)
    if R.sharing_is_on(params):
        block *= R.reward_factor(stake, pool.pledge, bonded_total + added, params)
    if params.epoch_rewards:
        after_cost = max(block * params.epoch_length - pool.fixed_cost, Fraction(0))
        return after_cost * (PPM - pool.margin_ppm) / PPM / stake
    after_cost = max(block - pool.fixed_cost, Fraction(0))
    return after_cost * (PPM - pool.margin_ppm) / PPM / stake * params.epoch_length


def plain_reward_factor(stake: int, pledge: int, total: int, params: Params) -> Fraction:
    """Cardano's factor by the general formula, whatever a0 is."""
    a0 = Fraction(params.pledge_influence_ppm, PPM)
    if stake <= 0 or total <= 0:
        return 1 / (1 + a0)
    sigma = Fraction(stake, total)
    pledge_share = Fraction(min(pledge, stake), total)
    return R.max_pool_share(sigma, pledge_share, R.saturation_point(params.saturation_k), a0) / sigma


params_strategy = st.builds(
    Params,
    block_reward=st.integers(0, 10**9),
    epoch_length=st.integers(1, 500),
    saturation_k=st.integers(0, 500),
    pledge_influence_ppm=st.sampled_from([0, 0, 300_000, PPM]),
    epoch_rewards=st.integers(0, 1),
)
pool_strategy = st.builds(
    lambda pledge, tokens, cost, margin: Pool(
        ADDRESSES[0], "p", b"k", ADDRESSES[0], pledge, cost, margin, FrozenMap(), member_tokens=tokens
    ),
    st.integers(0, 10**12),
    st.integers(0, 10**12),
    st.integers(0, 10**9),
    st.integers(0, PPM),
)


@settings(max_examples=300)
@given(
    pool_strategy,
    st.integers(-5, 10**9),
    st.integers(-(10**6), 10**13),
    st.integers(0, 10**13),
    st.integers(0, PPM),
    params_strategy,
)
def test_the_integer_member_rate_is_the_fraction_one(
    pool: Pool, added: int, active: int, bonded: int, performance: int, params: Params
) -> None:
    assert R.expected_member_rate(pool, added, active, bonded, performance, params) == plain_member_rate(
        pool, added, active, bonded, performance, params
    )


ENGINE = FastForward(economy())  # type: ignore[arg-type]


@settings(max_examples=300)
@given(
    pool_strategy,
    st.sampled_from(["active", "active", "jailed"]),
    st.integers(0, 2**40),
    st.integers(-(10**6), 10**13),
    st.integers(0, 10**13),
    params_strategy,
)
def test_a_quotes_yield_is_the_floor_of_the_views_rate(
    pool: Pool, status: str, missed: int, active: int, bonded: int, params: Params
) -> None:
    pool = replace(pool, status=status, missed=missed)
    state = replace(ENGINE.state, params=replace(params, downtime_window=ENGINE.state.params.downtime_window))
    context = SetView(active, {}, bonded)
    assert member_yield_ppm(state, pool, context) == (member_rate(state, pool, context) * PPM).__floor__()


@settings(max_examples=200)
@given(
    st.dictionaries(st.sampled_from(ADDRESSES), st.tuples(pool_strategy, st.integers(0, 10**9)), max_size=6),
    st.integers(-5, 10**13),
    params_strategy,
)
def test_a_blocks_shared_rewards_are_each_pools_shared_reward(
    paid: dict[bytes, tuple[Pool, int]], total: int, params: Params
) -> None:
    pools = {address: pool for address, (pool, _) in paid.items()}
    shares = {address: share for address, (_, share) in paid.items()}
    plain = {
        address: amount
        for address, share in shares.items()
        if (
            amount := R.shared_reward(
                share, R.pool_stake(pools[address]), pools[address].pledge, total, params
            )
        )
        > 0
    }
    stakes = {address: (R.pool_stake(pool), pool.pledge) for address, pool in pools.items()}
    rewards = R.shared_rewards(shares, stakes, total, params)
    assert rewards == plain and list(rewards) == list(plain)


@settings(max_examples=300)
@given(
    st.integers(-5, 10**12),
    st.integers(0, 10**12),
    st.integers(-5, 10**13),
    st.integers(0, 10**9),
    params_strategy,
)
def test_the_reward_factor_and_its_floor_are_the_general_formulas(
    stake: int, pledge: int, total: int, share: int, params: Params
) -> None:
    factor = R.reward_factor(stake, pledge, total, params)
    assert factor == plain_reward_factor(stake, pledge, total, params)
    assert R.shared_reward(share, stake, pledge, total, params) == (share * factor).__floor__()


# ------------------------------------------------------------------ the redelegation index


def scan(entries: tuple[Redelegation, ...], delegator: bytes, target: bytes) -> int | None:
    """What `Redelegations.into` answers, by the scan it replaced: the oldest matching entry's release."""
    matching = [e for e in entries if e.delegator == delegator and e.target == target]
    return matching[0].release_epoch if matching else None


redelegation = st.builds(
    Redelegation,
    st.sampled_from(ADDRESSES[:3]),
    st.sampled_from(ADDRESSES),
    st.sampled_from(ADDRESSES[3:]),
    st.integers(1, 100),
    st.integers(0, 9),
)


@given(st.lists(redelegation, max_size=12), st.lists(redelegation, max_size=12), st.integers(0, 9))
def test_the_redelegation_index_answers_what_a_scan_answers(
    first: list[Redelegation], then: list[Redelegation], epoch: int
) -> None:
    entries = Redelegations(first)
    if first:
        assert entries.into is not None  # indexed: appending must extend it, not drop it
    for entry in then:
        entries = entries.appended(entry)
    entries = Redelegations.of(tuple(e for e in entries if e.release_epoch > epoch)) if epoch % 2 else entries
    plain = tuple(e for e in (*first, *then) if not epoch % 2 or e.release_epoch > epoch)
    assert entries == plain and hash(entries) == hash(plain) and isinstance(entries, tuple)
    for delegator in ADDRESSES[:3]:
        for target in ADDRESSES[3:]:
            assert entries.into.get((delegator, target)) == scan(plain, delegator, target)


# ------------------------------------------------------------------ proposer priorities


def plain_increment(powers: list[int], priorities: list[int], times: int) -> tuple[tuple[int, ...], int]:
    """`increment_priorities` with every clip taken one by one and the leader found by `max` over indices."""
    diff_max = PRIORITY_WINDOW_SIZE_FACTOR * sum(powers)
    current = list(rescale_priorities(priorities, diff_max))
    average = sum(current) // len(current)
    current = [safe_sub_clip(p, average) for p in current]
    chosen = -1
    for _ in range(times):
        current = [safe_add_clip(p, w) for p, w in zip(current, powers, strict=True)]
        chosen = max(range(len(current)), key=current.__getitem__)
        current[chosen] = safe_sub_clip(current[chosen], sum(powers))
    return tuple(current), chosen


@given(st.lists(st.integers(INT64_MIN - 10, INT64_MAX + 10), max_size=8))
def test_clipping_all_at_once_clips_each(values: list[int]) -> None:
    assert clip_all_int64(list(values)) == [clip_int64(v) for v in values]


@given(
    st.lists(st.tuples(st.integers(1, 1000), st.integers(-3000, 3000)), min_size=1, max_size=8),
    st.integers(1, 5),
)
def test_incrementing_priorities_elects_as_the_one_by_one_version(
    pairs: list[tuple[int, int]], times: int
) -> None:
    powers, priorities = [w for w, _ in pairs], [p for _, p in pairs]
    assert increment_priorities(powers, priorities, times) == plain_increment(powers, priorities, times)


def plain_incremented(p: ProposerPriorities, times: int) -> ProposerPriorities:
    """`increment_proposer_priority` with every record built, and checked, by its constructor."""
    powers = [v.power for v in p.validators]
    priorities, chosen = increment_priorities(powers, [v.priority for v in p.validators], times)
    validators = tuple(
        PrioritizedValidator(v.address, v.power, priority)
        for v, priority in zip(p.validators, priorities, strict=True)
    )
    return ProposerPriorities(validators, validators[chosen].address)


prioritized_sets = st.lists(
    st.tuples(
        st.integers(1, MAX_TOTAL_VOTING_POWER // 8) | st.integers(1, 1000),
        st.integers(INT64_MIN, INT64_MAX) | st.integers(-3000, 3000),
    ),
    min_size=1,
    max_size=len(ADDRESSES),
).map(
    lambda pairs: ProposerPriorities(
        tuple(PrioritizedValidator(ADDRESSES[i], w, p) for i, (w, p) in enumerate(pairs)), None
    )
)


@settings(max_examples=300)
@given(prioritized_sets, st.integers(1, 5))
def test_incremented_priorities_are_the_records_their_constructors_build(
    p: ProposerPriorities, times: int
) -> None:
    """Equal, hashed and hashed into the state alike, and still records the plain ones are: replace checks."""
    fast, plain = increment_proposer_priority(p, times), plain_incremented(p, times)
    assert fast == plain and hash(fast) == hash(plain) and repr(fast) == repr(plain)
    assert canonical(fast) == canonical(plain)
    assert all(
        type(v) is PrioritizedValidator and vars(v) == vars(w)
        for v, w in zip(fast.validators, plain.validators, strict=True)
    )
    assert increment_proposer_priority(fast, times) == plain_incremented(plain, times)
    with pytest.raises(ValueError):
        replace(fast.validators[0], priority=INT64_MAX + 1)


# ------------------------------------------------------------------ the market


quote_strategy = st.builds(
    lambda i, open_, stake, yield_: Quote(ADDRESSES[i], f"pool-{i}", open_, stake, yield_, PPM),
    st.integers(0, len(ADDRESSES) - 1),
    st.booleans(),
    st.integers(0, 50),
    st.integers(0, 50),
)


def views(market: Market) -> tuple[Any, ...]:
    return (market.quotes, market.by_address, market.open, market.best_yield, market.largest)


@given(
    st.lists(quote_strategy, max_size=6, unique_by=lambda q: q.address), st.lists(quote_strategy, max_size=3)
)
def test_a_requoted_market_is_the_market_of_its_new_quotes(old: list[Quote], fresh: list[Quote]) -> None:
    market = Market(tuple(old))
    views(market)  # worked out, as a running engine has them, so the new market carries them over
    changes = {q.address: q for q in fresh}
    requoted = market.requoted(changes)
    expected = Market(tuple(changes.get(q.address, q) for q in old))
    if all(address in market.by_address for address in changes):
        assert views(requoted) == views(expected)
    else:
        assert set(requoted.quotes) - set(expected.quotes) <= set(changes.values())


class CheckedRequotes(FastForward):
    """The engine, with each incremental requote compared to the pools query quoting every pool afresh."""

    checked = 0

    def _requote(self, market, before, after, touched):  # type: ignore[no-untyped-def]
        requoted = super()._requote(market, before, after, touched)
        context = self._context
        state = replace(self.state, ledger=after)
        scratch = Market(tuple(Quote.of(view) for view in pools_view(state)["pools"]))
        assert views(requoted)[1:] == views(scratch)[1:] == views(self._quotes(after))[1:]
        assert (context.active_total, context.bonded_total) == (
            self._context.active_total,
            self._context.bonded_total,
        )
        self.checked += 1
        return requoted


def test_every_incremental_requote_of_a_run_equals_quoting_from_scratch() -> None:
    """Moves between pools, into and out of a jailed pool, with and without liquid delegation."""
    for text in (SMALL, SMALL.replace("unbonding_epochs = 1", "unbonding_epochs = 1\nliquid_delegation = 1")):
        engine = CheckedRequotes(economy(text))  # type: ignore[arg-type]
        records = list(engine.run())
        assert engine.checked > 40 and all(r["supply_conserved"] for r in records)


# ------------------------------------------------------------------ small caches


def test_a_pool_value_sums_its_shares_once_and_a_changed_pool_anew() -> None:
    pool = Pool(ADDRESSES[0], "p", b"k", ADDRESSES[0], 1, 0, 0, FrozenMap({ADDRESSES[1]: 5}), member_tokens=5)
    assert pool.total_shares == 5
    assert replace(pool, shares=pool.shares.set(ADDRESSES[2], 7)).total_shares == 12


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(INT64_MIN, 2**64 - 1) | st.binary() | st.text() | st.floats(),
        st.tuples,
    )
)
def test_encoding_accepts_exactly_the_canonical_types(value: Any) -> None:
    def allowed(item: Any) -> bool:
        if type(item) is tuple:
            return all(allowed(i) for i in item)
        return item is None or type(item) in (bool, int, bytes, str)

    try:
        encode(value)
    except TypeError:
        assert not allowed(value)
    else:
        assert allowed(value)


# ------------------------------------------------------------------ the layered map

KEYS = st.integers(0, 40)
change = st.one_of(
    st.tuples(st.just("set"), KEYS, st.integers()),
    st.tuples(st.just("update"), st.dictionaries(KEYS, st.integers(), max_size=12)),
    st.tuples(st.just("without"), KEYS),
    st.tuples(st.just("read"), KEYS),
)


@settings(max_examples=300)
@given(st.dictionaries(KEYS, st.integers(), max_size=30), st.lists(change, max_size=40))
def test_a_layered_map_behaves_as_a_copied_dict(start: dict[int, int], changes: list[Any]) -> None:
    """Every version equals a dict copied and changed the same way: entries, order, length, lookups,
    and its plain view."""
    versions = [(FrozenMap(start), dict(start))]
    for step in changes:
        current, model = versions[-1]
        current.derived(summed)  # worked out on each version before it changes
        model = dict(model)
        if step[0] == "set":
            current = current.set(step[1], step[2])
            model[step[1]] = step[2]
        elif step[0] == "update":
            current = current.update(step[1])
            model.update(step[1])
        elif step[0] == "without":
            current = current.without(step[1])
            model.pop(step[1], None)
        else:
            list(current.items())  # iterating folds the layer in; nothing may change
        versions.append((current, model))
    for frozen, model in versions:  # the older versions too: a change leaves its origin as it was
        assert dict(frozen.plain()) == model and frozen.plain().get(41, "none") == "none"  # the C view
        assert all(
            frozen.get(k, "none") == model.get(k, "none") and (k in frozen) == (k in model) for k in range(41)
        )
        assert [frozen[k] for k in model] == list(model.values())
        assert list(frozen.items()) == list(model.items()) and len(frozen) == len(model)
        assert frozen == FrozenMap(model) and hash(frozen) == hash(FrozenMap(model))
        assert frozen.derived(summed) == sum(model.values())


def summed(values: FrozenMap[int, int]) -> int:
    return sum(values.values())


# ------------------------------------------------------------------ the transaction check

SIGNERS = [Keypair.deterministic(f"fast-paths/{i}") for i in range(2)]
CHAINS = ["chain-a", "chain-b"]


def plain_checked(chain_id: str, tx: bytes) -> tuple[Any, bool] | str:
    """Decoding and the signature check done afresh, or the decode error's text."""
    try:
        signed = decode_tx(tx)
    except DecodeError as exc:
        return str(exc)
    return signed, verify_tx(chain_id, signed)


def cached_checked(chain_id: str, tx: bytes) -> tuple[Any, bool] | str:
    try:
        return L.checked_tx(chain_id, tx)
    except DecodeError as exc:
        return str(exc)


signed_txs = st.builds(
    lambda signer, chain, nonce, transfer, flip: _tampered(
        sign_tx(
            CHAINS[chain],
            Transfer(nonce, ADDRESSES[1], 5) if transfer else Delegate(nonce, ADDRESSES[2], 7),
            SIGNERS[signer],
        ),
        flip,
    ),
    st.integers(0, 1),
    st.integers(0, 1),
    st.integers(0, 3),
    st.booleans(),
    st.none() | st.integers(0, 200),
)


def _tampered(tx: bytes, flip: int | None) -> bytes:
    """`tx` with one byte changed (a bad signature, another body, or bytes that do not decode)."""
    if flip is None:
        return tx
    at = flip % len(tx)
    return tx[:at] + bytes([tx[at] ^ 0x01]) + tx[at + 1 :]


@settings(max_examples=200)
@given(st.lists(signed_txs, max_size=8), st.booleans())
def test_a_checked_transaction_is_decoded_and_verified_as_afresh(txs: list[bytes], flipped: bool) -> None:
    """On either chain, in either order, again and again: the cached check is the plain one."""
    for tx in txs + txs[::-1]:
        for chain in CHAINS[::-1] if flipped else CHAINS:
            assert cached_checked(chain, tx) == plain_checked(chain, tx)
            assert cached_checked(chain, bytearray(tx)) == plain_checked(chain, tx)


# ------------------------------------------------------------------ the ledger hash

amounts = st.integers(0, 10**15) | st.booleans()  # a bool is an int but not `int`: the general path
some_address = st.sampled_from(ADDRESSES)
maybe = st.sampled_from([b"", ADDRESSES[1]])
accounts = st.builds(Account, amounts, st.integers(0, 9), st.binary(max_size=4), maybe)
pools = st.builds(
    lambda address, pledge, shares, tokens, status, compounding, retiring: Pool(
        address, "p", b"k", address, pledge, 3, 20_000, FrozenMap(shares), status, 0, 0, tokens,
        compounding, retiring,
    ),
    some_address,
    amounts,
    st.dictionaries(some_address, amounts, max_size=4),
    st.sampled_from([0, 0, 17]),
    st.sampled_from(["active", "jailed"]),
    st.booleans(),
    st.sampled_from([0, 4]),
)  # fmt: skip
ledgers = st.builds(
    lambda accts, pls, unbonding, reserve, redelegations, accrued, liquid: Ledger(
        FrozenMap(accts), FrozenMap(pls), tuple(unbonding), frozenset({(ADDRESSES[2], 1, 0, 0)}), 5, 1, 9,
        epoch=2, reserve=reserve, redelegations=Redelegations(redelegations), liquid=liquid,
        accrued=FrozenMap(accrued),
    ),
    st.dictionaries(some_address | st.binary(min_size=1, max_size=3), accounts, max_size=6),
    st.dictionaries(some_address, pools, max_size=3),
    st.lists(st.builds(Unbonding, some_address, some_address, amounts, st.integers(0, 3)), max_size=2),
    st.sampled_from([0, 0, 5]),
    st.lists(redelegation, max_size=2),
    st.dictionaries(some_address, amounts, max_size=3),
    st.booleans(),
)  # fmt: skip


@settings(max_examples=300)
@given(ledgers)
def test_the_ledgers_canonical_form_is_the_general_one(ledger: Ledger) -> None:
    assert fast_canonical(ledger) == canonical(ledger)
    assert ledger_hash(ledger) == sha256(encode(canonical(ledger)))


def test_every_epochs_ledger_hash_is_the_hash_of_the_general_form() -> None:
    for text in (SMALL, SMALL.replace("unbonding_epochs = 1", "unbonding_epochs = 1\nliquid_delegation = 1")):
        engine = FastForward(economy(text))  # type: ignore[arg-type]
        for record in engine.run():
            assert record["ledger_hash"] == sha256(encode(canonical(engine.state.ledger))).hex()


# ------------------------------------------------------------------ copying records


@settings(max_examples=200)
@given(ledgers, pools, accounts, st.data())
def test_the_ledgers_replace_is_dataclasses_replace(
    ledger: Ledger, pool: Pool, account: Account, data: st.DataObject
) -> None:
    """Each field changed or not, with what the old value's cached properties knew never carried over."""
    assert None not in (
        pool.total_shares,
        ledger.active_total,
        ledger.bonded_stake,
    )  # cached on the old values
    for value, other in (
        (ledger, data.draw(ledgers)),
        (pool, data.draw(pools)),
        (account, data.draw(accounts)),
    ):
        names = [f.name for f in fields(value)]
        changed = data.draw(st.lists(st.sampled_from(names), unique=True))
        changes = {name: getattr(other, name) for name in changed}
        copy, plain = L.replace(value, **changes), dataclasses.replace(value, **changes)
        assert copy == plain and type(copy) is type(plain) and hash(copy) == hash(plain)
        assert canonical(copy) == canonical(plain)
        if isinstance(copy, Pool):
            assert copy.total_shares == sum(copy.shares.values())
        if isinstance(copy, Ledger):
            assert (copy.active_total, copy.bonded_stake) == (plain.active_total, plain.bonded_stake)
        with pytest.raises(TypeError):
            L.replace(value, no_such_field=1)


@dataclasses.dataclass(frozen=True)
class Checked:
    """A record whose `__init__` does more than set fields: it must be built by it."""

    amount: int
    twice: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "twice", 2 * self.amount)


def test_the_ledgers_replace_builds_other_dataclasses_through_their_init() -> None:
    assert L.replace(Checked(1), amount=4).twice == 8
    participation = L.Participation(1, 0, b"b", 0, (ADDRESSES[0],), frozenset())
    assert L.replace(participation, round=2) == dataclasses.replace(participation, round=2)


# ------------------------------------------------------------------ a block's validator set and keys

CHAIN_KEYS = {f"v{i}": Keypair.deterministic(f"fast-paths/chain/v{i}") for i in range(6)}
FRESH_KEYS = [Keypair.deterministic(f"fast-paths/chain/hot{i}") for i in range(8)]
CHAIN_PARAMS = Params(
    committee_size=4, epoch_length=3, downtime_window=3, max_missed_in_window=1, late_precommit_ms=0,
    jail_epochs=0, unbonding_epochs=1, evidence_max_age=4,
)  # fmt: skip
CHAIN_GENESIS = make_genesis(
    "fast-paths",
    CHAIN_KEYS,
    params=CHAIN_PARAMS,
    stakes={n: 1000 * (i + 1) for i, n in enumerate(CHAIN_KEYS)},
)

# Per block: which members of the last committee sign its certificate (a bit mask), and one of nothing,
# an equivocation, a stake withdrawal, a signing key rotation or an unjail request by the named pool.
chain_steps = st.lists(
    st.tuples(
        st.integers(0, 15),
        st.sampled_from(["none", "none", "equivocate", "withdraw", "rotate", "unjail"]),
        st.sampled_from(sorted(CHAIN_KEYS)),
    ),
    min_size=1,
    max_size=14,
)


def step_block(
    state: ChainState, cert: CommitCertificate | None, action: str, name: str, fresh: int
) -> Block:
    key, chain = CHAIN_KEYS[name], state.chain_id
    nonce = L.account_of(state.ledger, key.address).nonce
    txs: tuple[bytes, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    if action == "withdraw":
        txs = (sign_tx(chain, Undelegate(nonce, key.address, 700), key),)
    elif action == "rotate":
        txs = (sign_tx(chain, RotateKey(nonce, FRESH_KEYS[fresh % len(FRESH_KEYS)].public), key),)
    elif action == "unjail":
        txs = (sign_tx(chain, Unjail(nonce), key),)
    elif action == "equivocate" and state.height:
        votes = [Vote(Kind.PREVOTE, state.height, 0, bytes([n]) * 32, key.address) for n in (1, 2)]
        evidence = (make_evidence(*(replace(v, signature=sign_item(chain, v, key)) for v in votes)),)
    proposer = proposer_of(state, 0)
    return Block(
        state.next_height, state.last_block_hash, proposer, state.last_timestamp_ms + 1, txs, evidence, cert
    )


def plain_validator_set(before: ChainState, after: ChainState) -> tuple[tuple[bytes, int], ...]:
    """The set every block used to work out: filtered against the new pools (or the ledger's, at a boundary)."""
    pools = after.ledger.pools
    if after.epoch != before.epoch:
        return L.active_powers(after.ledger) or before.validator_set
    kept = tuple((a, w) for a, w in before.validator_set if a in pools and pools[a].status == L.ACTIVE)
    return kept or before.validator_set


def plain_signing_keys(before: ChainState, after: ChainState) -> tuple[Any, SK.KeyHistory]:
    """The keys every block used to work out: every pool's key compared with the current ones."""
    keep_from = after.height - after.params.evidence_max_age
    oldest = min((entry.height for entry in after.participation), default=keep_from)
    pool_keys = ((address, pool.public_key) for address, pool in after.ledger.pools.items())
    return SK.rotate(before.public_keys, before.key_history, pool_keys, after.height, min(keep_from, oldest))


@settings(max_examples=60, deadline=None)
@given(chain_steps)
def test_a_blocks_validator_set_and_signing_keys_are_the_ones_worked_out_afresh(
    steps: list[tuple[int, str, str]],
) -> None:
    """Through jails, tombstones, withdrawals, key rotations and boundaries, kept pools or changed."""
    state, cert = genesis_state(CHAIN_GENESIS), None
    for fresh, (mask, action, name) in enumerate(steps):
        block = step_block(state, cert, action, name, fresh)
        after, _ = apply_block(state, block)
        assert after.validator_set == plain_validator_set(state, after)
        assert (after.public_keys, after.key_history) == plain_signing_keys(state, after)
        members = [a for a, _ in state.committee.members]
        signers = sorted(a for i, a in enumerate(members) if mask >> i & 1)
        cert = CommitCertificate(block.height, 0, block.hash, tuple((a, b"") for a in signers))
        state = after


# ------------------------------------------------------------------ downtime


def plain_judge(
    ledger: Ledger, participation: L.Participation, epoch: int, params: Params
) -> tuple[Ledger, tuple[L.LedgerEvent, ...]]:
    """`judge_participation` as three passes: record every active member, keep the changed, jail by address."""
    recorded = {
        address: L.record_participation(pool, address in participation.signers, params.downtime_window)
        for address in participation.committee
        if (pool := ledger.pools.get(address)) is not None and pool.status == L.ACTIVE
    }
    changed = {address: pool for address, pool in recorded.items() if pool is not ledger.pools[address]}
    ledger = replace(ledger, pools=ledger.pools.update(changed))
    events: tuple[L.LedgerEvent, ...] = ()
    for address in sorted(recorded):
        if L.missed_count(recorded[address]) > params.max_missed_in_window:
            ledger, jailed = L.jail_for_downtime(ledger, address, epoch, params)
            events += jailed
    return ledger, events


judged_pools = st.builds(
    lambda address, status, missed, pledge: Pool(
        address, "p", b"k", address, pledge, 0, 0, FrozenMap(), status, 0, missed, 0
    ),
    some_address,
    st.sampled_from(["active", "active", "jailed", "tombstoned"]),
    st.integers(0, 2**8 - 1),
    st.integers(0, 10**6),
)


@settings(max_examples=300)
@given(
    st.lists(judged_pools, max_size=len(ADDRESSES)),
    st.lists(some_address, max_size=len(ADDRESSES)),
    st.sets(some_address),
    st.integers(1, 8),
    st.integers(0, 8),
)
def test_judging_a_height_in_one_pass_records_and_jails_as_three_passes(
    pools: list[Pool], committee: list[bytes], signers: set[bytes], window: int, allowed: int
) -> None:
    """Members signed or not, active or not, missing from the ledger, past the allowed misses or not."""
    ledger = Ledger(FrozenMap(), FrozenMap((p.address, p) for p in pools), (), frozenset(), 0, 0, 0)
    participation = L.Participation(7, 0, b"b", 0, tuple(sorted(set(committee))), frozenset(signers))
    params = Params(downtime_window=window, max_missed_in_window=allowed)
    judged, plain = (
        L.judge_participation(ledger, participation, 3, params),
        plain_judge(ledger, participation, 3, params),
    )
    assert judged == plain and canonical(judged[0]) == canonical(plain[0])


# ------------------------------------------------------------------ the seat draw's shuffle


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 2**40) | st.integers(1, 600),
    st.binary(min_size=32, max_size=32),
    st.lists(st.integers(0, 2**40), max_size=40),
    st.integers(0, 12),
)
def test_following_indices_together_lands_each_where_the_one_index_shuffle_does(
    count: int, seed: bytes, picks: list[int], rounds: int
) -> None:
    """Counts from a few positions (lanes sharing source blocks) to the shuffle's limit, any round count."""
    indices = [pick % count for pick in picks]
    together = shuffled_indices(indices, count, seed, rounds)
    assert together == tuple(compute_shuffled_index(i, count, seed, rounds) for i in indices)


# ------------------------------------------------------------------ a block's paid signers


@settings(max_examples=200)
@given(
    st.lists(judged_pools, max_size=len(ADDRESSES)),
    st.lists(st.tuples(some_address, st.integers(0, 3)), max_size=len(ADDRESSES)),
    st.sets(some_address),
    judged_pools,
)
def test_the_paid_signers_are_those_each_pool_lookup_finds_rewardable(
    pools: list[Pool], committee: list[tuple[bytes, int]], signers: set[bytes], changed: Pool
) -> None:
    """Tombstoned, unknown and powerless members left out; asked again after a pool changes, afresh."""
    before = Ledger(FrozenMap(), FrozenMap((p.address, p) for p in pools), (), frozenset(), 0, 0, 0)
    ctx = L.BlockContext(5, 0, ADDRESSES[0], tuple(committee), frozenset(signers), ())
    for ledger in (before, L.set_pool(before, changed)):
        plain = tuple(
            (address, power)
            for address, power in committee
            if address in signers and power > 0 and L.is_rewardable(ledger, address)
        )
        assert L.rewarded_signers(ledger, ctx) == plain
