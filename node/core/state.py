"""The chain state and its transition: `apply_block(state, block) -> state`.

Everything here is a pure function of frozen values. The ledger (stake,
pools, penalties, rewards) lives in `node.core.ledger`; this module adds what
consensus needs on top of it: the validator set in effect, proposer
priorities, the epoch seed, the committee seats of this epoch and the next,
and the committee for the next height.

Timing rules (quorum intersection depends on them):
- the committee for height h is computed from the state after h-1 and is
  fixed for every round of h;
- stake changes enter the validator set only at epoch boundaries; a pool
  that is jailed or tombstoned leaves it at the next height, so an offender
  stops voting at once;
- the seats of epoch e+1 are drawn at the boundary that starts epoch e, from
  the validator set and seed of that moment (epochs 0 and 1 from genesis).
  Nothing done during epoch e, its last block included, can re-draw them.
  During an epoch a member that leaves the validator set loses its seats at
  the next height, and nobody else's seats change.

Just past 500 lines: the state, its hash, block validity and `apply_block`
are one contract (what a block may do to the state), so the checks and the
transition stay side by side where a change to one shows in the other.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import ChainMap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from operator import attrgetter

from node.core import ledger as L
from node.core import randao as R
from node.core import signing_keys as SK
from node.core.canonical import canonical, hashed_fields, participation_digest
from node.core.codec import encode
from node.core.genesis import HASHED_WHEN_SET, Genesis, Params
from node.core.messages import (
    ZERO_HASH,
    Block,
    CommitCertificate,
    Evidence,
    Kind,
    Proposal,
    Vote,
    evidence_shape_problem,
    sha256,
    signer_of,
    verify_signed,
)
from node.core.selection import (
    ProposerPriorities,
    committee_powers,
    increment_proposer_priority,
    new_priorities,
    proposer_for_round,
    update_validators,
)

GENESIS_SEED_DOMAIN = b"posnet-epoch-seed"
COMMITTEE_SEED_DOMAIN = b"posnet-committee-seats"
# Left out of the digest: `committee` is a function of `seats`, `validator_set`
# and `height`, and `recent_committees` are earlier states' committees.
DERIVED_FIELDS = frozenset({"committee", "recent_committees"})


@dataclass(frozen=True)
class Seats:
    """The committee of one epoch, drawn an epoch ahead: (address, voting power).

    The power is a number of seats when the set had more validators than
    `committee_size`. Otherwise everyone sat and the power is the stake (see
    `node.core.selection.committee_powers`).
    """

    epoch: int
    members: tuple[tuple[bytes, int], ...]  # sorted by address
    # The stake reward sharing reads for this epoch's blocks, taken when these seats were drawn (None while
    # sharing is off: nothing reads it). See `with_stake`.
    stake: L.StakeSnapshot | None = field(default=None, metadata={HASHED_WHEN_SET: True})

    @cached_property
    def holders(self) -> frozenset[bytes]:
        """Who holds a seat: asked by every node after every block (node.core.routes), built once."""
        return frozenset(address for address, _ in self.members)

    @cached_property
    def holders_digest(self) -> str:
        """A short name for who holds these seats: the same holders in two epochs give the same name."""
        return sha256(b"".join(address for address, _ in self.members)).hex()[:16]


@dataclass(frozen=True)
class Committee:
    """The validators who vote at one height, with their voting power (seats, or stake if everyone sits)."""

    height: int
    members: tuple[tuple[bytes, int], ...]  # (address, power), sorted by address
    total: int
    stake: L.StakeSnapshot | None = None  # its seats' stake snapshot: what its signers' rewards are capped by

    @cached_property
    def power(self) -> Mapping[bytes, int]:
        return dict(self.members)

    def power_of(self, address: bytes) -> int:
        return self.power.get(address, 0)

    def is_quorum(self, power: int) -> bool:
        """Strictly more than 2/3 of the committee's voting power."""
        return 3 * power > 2 * self.total

    def is_one_third(self, power: int) -> bool:
        """Strictly more than 1/3: at least one honest validator is among them."""
        return 3 * power > self.total


@dataclass(frozen=True)
class ChainState:
    """What every node agrees on after finalizing `height`."""

    chain_id: str
    params: Params
    height: int
    last_block_hash: bytes
    last_timestamp_ms: int
    ledger: L.Ledger
    public_keys: Mapping[bytes, bytes]  # every pool ever registered: address -> its signing key now
    names: Mapping[bytes, str]
    epoch: int
    epoch_seed: bytes
    seed_accumulator: bytes
    validator_set: tuple[tuple[bytes, int], ...]  # (address, power) in effect, sorted by address
    priorities: ProposerPriorities
    seats: Seats  # this epoch's (`epoch`), drawn at the boundary before the previous one
    next_seats: Seats  # epoch + 1's, drawn at the boundary that started this epoch
    committee: Committee  # for height + 1: `seats` minus members no longer in the validator set
    recent_committees: tuple[Committee, ...]  # for checking certificates and evidence of recent heights
    participation: tuple[L.Participation, ...] = ()  # finalized heights not yet judged for downtime
    # signing keys rotated out, oldest first: (address, last height it signed, key), kept while those
    # heights' certificates, late precommits and evidence can still arrive (node.core.signing_keys)
    key_history: SK.KeyHistory = field(default=(), metadata={HASHED_WHEN_SET: True})
    # RANDAO chains (params.randao): each committed validator's last reveal and its epoch (node.core.randao)
    reveals: R.Reveals | None = field(default=None, metadata={HASHED_WHEN_SET: True})

    @property
    def next_height(self) -> int:
        return self.height + 1

    @cached_property
    def pending_by_height(self) -> PendingByHeight:
        """`participation` by height: asked for every late precommit a proposer weighs."""
        return PendingByHeight(self.participation)

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 over everything nodes must agree on (the seats included; the committees are derived).

        Pending participation enters as one two-level digest
        (`canonical.participation_digest`): a height's record is the same
        object from block to block until a late precommit changes it, so only
        what a block changed is hashed again, where hashing the records in full
        cost every block a pass over thousands of heights times a committee
        when blocks came every millisecond.
        """
        agreed = tuple(
            participation_digest(self.participation)
            if f.name == "participation"
            else canonical(getattr(self, f.name))
            for f in hashed_fields(self)
            if f.name not in DERIVED_FIELDS
        )
        return sha256(encode(agreed))


class PendingByHeight(Mapping[int, L.Participation]):
    """Pending records by height, found by bisection in the records themselves.

    The records are in ascending height (`participation_after` appends the
    height a block closes and judges from the front), so nothing is copied:
    a dict built per block was a pass over thousands of pending heights when
    a lone supermajority decides every millisecond.
    """

    __slots__ = ("_records",)

    def __init__(self, records: tuple[L.Participation, ...]) -> None:
        self._records = records

    def __getitem__(self, height: int) -> L.Participation:
        index = bisect_left(self._records, height, key=_height_of)
        if index < len(self._records) and self._records[index].height == height:
            return self._records[index]
        raise KeyError(height)

    def __iter__(self) -> Iterator[int]:
        return (record.height for record in self._records)

    def __len__(self) -> int:
        return len(self._records)


_height_of = attrgetter("height")


# ------------------------------------------------------------- construction


def genesis_seed(chain_id: str) -> bytes:
    return sha256(GENESIS_SEED_DOMAIN + chain_id.encode())


def genesis_state(genesis: Genesis) -> ChainState:
    """The state before height 1."""
    ledger = L.genesis_ledger(genesis)
    validator_set = L.active_powers(ledger)
    if not validator_set:
        raise ValueError("genesis has no validator with stake")
    seed = genesis_seed(genesis.chain_id)
    size = genesis.params.committee_size
    stake = L.stake_snapshot(ledger, genesis.params)  # epochs 0 and 1 are both drawn from genesis
    seats = with_stake(draw_epoch_seats(0, validator_set, size, seed), stake)
    committee = committee_for(1, seats, validator_set)
    return ChainState(
        chain_id=genesis.chain_id,
        params=genesis.params,
        height=0,
        last_block_hash=ZERO_HASH,
        last_timestamp_ms=genesis.genesis_time_ms,
        ledger=ledger,
        public_keys={v.address: v.signing_public_key for v in genesis.validators},
        names={v.address: v.name for v in genesis.validators},
        epoch=0,
        epoch_seed=seed,
        seed_accumulator=seed,
        validator_set=validator_set,
        priorities=new_priorities(committee.members),
        seats=seats,
        next_seats=with_stake(draw_epoch_seats(1, validator_set, size, seed), stake),
        committee=committee,
        recent_committees=(),
        reveals=R.genesis_reveals({v.address: v.randao_commitment for v in genesis.validators})
        if genesis.params.randao
        else None,
    )


def committee_seed(epoch_seed: bytes, epoch: int) -> bytes:
    """The seed that draws `epoch`'s seats.

    Domain-separated from the epoch seed, and bound to the epoch served, so
    epochs 0 and 1 (both drawn from the genesis seed) get different seats.
    """
    return sha256(COMMITTEE_SEED_DOMAIN + epoch.to_bytes(8, "big") + epoch_seed)


# Every node in one simulator process applies the same boundary block, so the
# draw is shared rather than repeated per node.
@lru_cache(maxsize=16)
def draw_epoch_seats(
    epoch: int, validator_set: tuple[tuple[bytes, int], ...], size: int, epoch_seed: bytes
) -> Seats:
    """`epoch`'s seats, drawn from the validator set and epoch seed of the boundary an epoch before.

    Drawing a whole epoch ahead is what stops re-rolls. A committee drawn
    from the current set would be drawn again whenever a pool got itself
    jailed or tombstoned, so a validator could re-roll the next committee
    by sacrificing a small pool. These seats are fixed before anyone acts in
    the epoch before the one they serve.
    """
    return Seats(epoch, committee_powers(validator_set, size, committee_seed(epoch_seed, epoch)))


def with_stake(seats: Seats, stake: L.StakeSnapshot | None) -> Seats:
    """`seats` with the stake snapshot taken at the moment they were drawn.

    Reward sharing caps what a pool earns by its stake share; the shares it
    caps are by committee power, so the cap must read the stake of the same
    moment the power came from, as Cardano's rewards read the stake
    distribution snapshot its leader schedule was drawn from. A cap read
    from the stake when the block is paid, an epoch or two later, could be
    dodged by moving stake out of a saturated pool after it earned, and
    would cut a pool for stake it received after earning. The seats (drawn
    once per process and shared) are left as they are; the snapshot goes on
    a copy.
    """
    return seats if stake is None else replace(seats, stake=stake)


def committee_for(height: int, seats: Seats, validator_set: tuple[tuple[bytes, int], ...]) -> Committee:
    """The committee of `height`: the epoch's seats, minus members no longer in the validator set.

    A jailed or tombstoned member loses its seats at the next height and is
    never replaced, so dropping your own seats cannot change anyone else's.
    The total shrinks with it, and it is still fixed for every round of the
    height. If no member is left (every one of them penalized), the whole
    validator set votes by stake. That fallback is deterministic and uses no
    seed, so it cannot be re-rolled either.
    """
    in_set = {address for address, _ in validator_set}
    members = tuple((address, power) for address, power in seats.members if address in in_set)
    members = members or validator_set
    return Committee(height, members, sum(power for _, power in members), seats.stake)


def proposer_of(state: ChainState, round_: int) -> bytes:
    """The proposer of (state.height + 1, round_), CometBFT's weighted round-robin over its committee."""
    return proposer_for_round(state.priorities, round_)


def proposer_priorities_after(
    priorities: ProposerPriorities, committee: Committee, next_committee: Committee
) -> ProposerPriorities:
    """The next height's proposer priorities: over its committee's members, by their voting power.

    The proposer is drawn from the committee it proposes to, as CometBFT
    draws it from the set that votes: votes travel only among the committee
    (see `node.core.routes`), and a proposer outside it would hold none of
    the precommits its block must carry as the last commit. When everyone
    sits this is the validator set by stake, as before; when seats are
    sampled it weighs each member by its seats, so stake does not count
    twice (once for the seats, again for the proposer's turn). Priorities
    change their members only when the committee does: at an epoch
    boundary, or when a member leaves the validator set.
    """
    if next_committee.members != committee.members:
        priorities = update_validators(priorities, next_committee.members)
    return increment_proposer_priority(priorities, 1)


def committee_at(state: ChainState, height: int) -> Committee | None:
    """The committee of a recent height (or the next one), if still remembered."""
    if height == state.next_height:
        return state.committee
    for committee in state.recent_committees:
        if committee.height == height:
            return committee
    return None


# ------------------------------------------------------------- signing keys


def signing_key_at(state: ChainState, address: bytes, height: int) -> bytes | None:
    """The key `address` signs `height` with (None: not a validator); see node.core.signing_keys."""
    return SK.key_at(state.public_keys, state.key_history, address, height)


def signing_keys_at(state: ChainState, height: int) -> Mapping[bytes, bytes]:
    """Every validator's key for `height`, as one mapping."""
    return SK.keys_at(state.public_keys, state.key_history, height)


def validator_of_key(state: ChainState, public_key: bytes) -> bytes | None:
    """The validator `public_key` signs for: now, from the next epoch, or recently (None: no one)."""
    for address, key in state.public_keys.items():
        if key == public_key:
            return address
    for address, pool in state.ledger.pools.items():
        if pool.next_public_key == public_key:
            return address
    for address, _, key in state.key_history:
        if key == public_key:
            return address
    return None


# ------------------------------------------------------------- verification


def certificate_problem(
    state: ChainState, cert: CommitCertificate, committee: Committee, block_id: bytes
) -> str | None:
    """Why `cert` does not prove `block_id` final for `committee`, or None."""
    if cert.block_id != block_id:
        return "certificate is for another block"
    if cert.height != committee.height:
        return "certificate is for another height"
    power = 0
    for vote in cert.votes():
        member_power = committee.power_of(vote.validator)
        if member_power == 0:
            return "certificate signer outside the committee"
        if not verify_signed(state.chain_id, vote, signing_key_at(state, vote.validator, vote.height) or b""):
            return "certificate has a bad signature"
        power += member_power
    if not committee.is_quorum(power):
        return "certificate lacks more than 2/3 of committee stake"
    return None


def signed_item_problem(state: ChainState, item: Vote | Proposal) -> str | None:
    """Signature check for a vote or proposal by a known validator."""
    public_key = signing_key_at(state, signer_of(item), item.height)
    if public_key is None:
        return "unknown signer"
    if not verify_signed(state.chain_id, item, public_key):
        return "bad signature"
    return None


def evidence_problem(state: ChainState, evidence: Evidence) -> str | None:
    """Verify evidence in full: shape, signatures, membership, age, novelty."""
    shape = evidence_shape_problem(evidence)
    if shape:
        return shape
    for item in (evidence.first, evidence.second):
        problem = signed_item_problem(state, item)
        if problem:
            return problem
    if isinstance(evidence.first, Vote):
        committee = committee_at(state, evidence.height)
        if committee is None or committee.power_of(evidence.offender) == 0:
            return "offender was not in the committee at that height (or it is too old)"
    return L.evidence_problem(state.ledger, evidence, state.next_height, state.params)


def block_problem(state: ChainState, block: Block) -> str | None:
    """Why `block` cannot be the next block, or None if it is valid."""
    if block.height != state.next_height:
        return f"height {block.height} is not {state.next_height}"
    if block.prev_hash != state.last_block_hash:
        return "prev_hash does not match the last finalized block"
    if block.state_hash != state.digest:
        return "state_hash does not match the state after the previous block"
    if block.proposer not in dict(state.validator_set):
        return "proposer is not in the validator set"  # a re-proposed block keeps its original proposer
    if block.timestamp_ms < state.last_timestamp_ms:
        return "timestamp goes backwards"
    if len(block.txs) > state.params.max_block_txs:
        return "too many transactions"
    if block.height > 1:
        previous = committee_at(state, block.height - 1)
        if block.last_commit is None or previous is None:
            return "missing last commit"
        problem = certificate_problem(state, block.last_commit, previous, state.last_block_hash)
        if problem:
            return f"last commit: {problem}"
    problem = late_precommits_problem(state, block)
    if problem:
        return f"late precommit: {problem}"
    problem = R.block_reveal_problem(state.reveals, state.epoch, block)
    if problem:
        return f"reveal: {problem}"
    keys = set()
    for evidence in block.evidence:
        problem = evidence_problem(state, evidence)
        if problem:
            return f"evidence: {problem}"
        if evidence.key() in keys:
            return "evidence: duplicate in block"
        keys.add(evidence.key())
    return None


# --------------------------------------------------------------- transition


def block_context(
    state: ChainState, block: Block, judged: tuple[L.Participation, ...] = ()
) -> L.BlockContext:
    """What the ledger needs of consensus to apply `block`.

    Rewards read one stake snapshot per block: that of the committee whose
    certificate the block carries (height - 1's), the committee that earned
    most of the reward. Its epoch's seats and this snapshot were drawn at one
    moment. At an epoch's first block the proposer sits in the new epoch's
    committee while the signers sat in the old one, and the old snapshot
    rules the whole block (a proposer missing from it is measured as having
    no stake: `rewards.reward_factor`'s limit). Height 1 has no certificate
    and reads its own committee's, genesis's.
    """
    previous = committee_at(state, block.height - 1)
    earned = previous if previous and block.last_commit else None
    return L.BlockContext(
        height=block.height,
        epoch=state.epoch,
        proposer=block.proposer,
        prev_committee=earned.members if earned else (),
        prev_signers=block.last_commit.signers() if block.last_commit else frozenset(),
        evidence=block.evidence,
        judged=judged,
        stake=(earned or state.committee).stake,
    )


# ------------------------------------------------------------ participation
#
# Downtime is judged on who was seen precommitting at a height, not on the
# certificate the next block carries: that holds only what its proposer had
# when it proposed, the first 2/3 in fast mode. A height stays pending for
# `late_precommit_ms` of block time and `late_precommit_heights` blocks,
# whichever ends later; meanwhile proposers include precommits that arrived
# late, as Ethereum includes late attestations. A precommit for the decided
# block or for nil at the decided round counts: either shows the validator
# online and following. There is no cap on how many heights are pending: one
# shortened the grace period to a fraction of a second when blocks came every
# millisecond. Pending are the heights of the last `late_precommit_ms` of
# block time, or the last `late_precommit_heights`, whichever are more: as
# many as the chain makes in that time (a few thousand at most in a
# simulation whose lone supermajority decides every millisecond).


def opened_entry(state: ChainState, cert: CommitCertificate | None) -> L.Participation | None:
    """The record of the height `cert` (the next block's last commit) closes."""
    committee = committee_at(state, cert.height) if cert is not None else None
    if cert is None or committee is None:
        return None
    members = tuple(address for address, _ in committee.members)
    return L.Participation(
        cert.height, cert.round, cert.block_id, state.last_timestamp_ms, members, cert.signers()
    )


def opened_participation(state: ChainState, cert: CommitCertificate | None) -> tuple[L.Participation, ...]:
    """The pending heights plus the one `cert` (the next block's last commit) closes."""
    opened = opened_entry(state, cert)
    return state.participation if opened is None else (*state.participation, opened)


def opened_pending(state: ChainState, cert: CommitCertificate | None) -> Mapping[int, L.Participation]:
    """`opened_participation` by height, without copying the pending records (thousands, in a fast chain)."""
    opened = opened_entry(state, cert)
    return (
        state.pending_by_height
        if opened is None
        else ChainMap({opened.height: opened}, state.pending_by_height)
    )


def late_precommit_problem(state: ChainState, entry: L.Participation | None, vote: Vote) -> str | None:
    """Why `vote` cannot count as a late precommit for `entry` (its height's pending record), or None."""
    return late_precommit_misfit(entry, vote) or signed_item_problem(state, vote)


def late_precommit_misfit(entry: L.Participation | None, vote: Vote) -> str | None:
    """`late_precommit_problem` without the signature check, for votes already authenticated."""
    if vote.kind != Kind.PRECOMMIT:
        return "not a precommit"
    if entry is None:
        return f"height {vote.height} is not pending"
    if vote.round != entry.round or vote.block_id not in (entry.block_id, None):
        return "not for the decided round's block or nil"
    if vote.validator not in entry.members:
        return "signer outside that height's committee"
    if vote.validator in entry.signers:
        return "signer already counted"
    return None


def late_precommits_problem(state: ChainState, block: Block) -> str | None:
    pending = opened_pending(state, block.last_commit)
    seen: set[tuple[int, bytes]] = set()
    for vote in block.late_precommits:
        problem = late_precommit_problem(state, pending.get(vote.height), vote)
        if problem:
            return problem
        if (vote.height, vote.validator) in seen:
            return "duplicate"
        seen.add((vote.height, vote.validator))
    return None


def with_late_precommits(
    pending: tuple[L.Participation, ...], votes: tuple[Vote, ...]
) -> tuple[L.Participation, ...]:
    if not votes:
        return pending
    added: dict[int, set[bytes]] = {}
    for vote in votes:
        added.setdefault(vote.height, set()).add(vote.validator)
    return tuple(replace(p, signers=p.signers | added[p.height]) if p.height in added else p for p in pending)


def is_mature(entry: L.Participation, block: Block, params: Params) -> bool:
    """Its grace period is over, in blocks and in block time: judged with this block."""
    return (
        block.height - entry.height >= params.late_precommit_heights
        and block.timestamp_ms - entry.timestamp_ms >= params.late_precommit_ms
    )


def participation_after(
    state: ChainState, block: Block
) -> tuple[tuple[L.Participation, ...], tuple[L.Participation, ...]]:
    """(judged now, still pending) once `block` is applied; heights are judged oldest first."""
    pending = with_late_precommits(opened_participation(state, block.last_commit), block.late_precommits)
    cut = 0
    while cut < len(pending) and is_mature(pending[cut], block, state.params):
        cut += 1
    return pending[:cut], pending[cut:]


def is_epoch_boundary(state: ChainState, height: int) -> bool:
    return height % state.params.epoch_length == 0


def next_validator_set(state: ChainState, ledger: L.Ledger, boundary: bool) -> tuple[tuple[bytes, int], ...]:
    """At an epoch boundary the ledger's powers; otherwise the same set minus the penalized."""
    if boundary:
        return L.active_powers(ledger)
    pools = ledger.pools  # every block asks this of every validator: one lookup each
    return tuple(
        (address, power)
        for address, power in state.validator_set
        if (pool := pools.get(address)) is not None and pool.status == L.ACTIVE
    )


def validator_set_after(state: ChainState, ledger: L.Ledger, boundary: bool) -> tuple[tuple[bytes, int], ...]:
    """The validator set for the next height: `next_validator_set`, or the current one if that is empty.

    Within an epoch, a block that leaves the ledger's pool map itself (most
    do: rewards accrue beside it) keeps the set as it is. The current set
    was worked out against these same pools (by the block before, or at
    genesis), so every member is still active in them, or, if that left
    nobody, none is and the fallback keeps it again.
    """
    if not boundary and ledger.pools is state.ledger.pools:
        return state.validator_set
    return next_validator_set(state, ledger, boundary) or state.validator_set


def signing_keys_after(
    state: ChainState, ledger: L.Ledger, height: int, keep_from: int
) -> tuple[Mapping[bytes, bytes], SK.KeyHistory]:
    """(current keys, key history) once `ledger`'s pools sign after `height` (`signing_keys.rotate`).

    A block that leaves the pool map itself changes no key: the current keys
    are already these pools' (the block before, or genesis, made them so),
    and only history older than `keep_from` is dropped.
    """
    pools = ledger.pools
    pool_keys = () if pools is state.ledger.pools else ((a, pool.public_key) for a, pool in pools.items())
    return SK.rotate(state.public_keys, state.key_history, pool_keys, height, keep_from)


def mix_seed(state: ChainState, block: Block) -> bytes:
    """The running seed (the next epoch's randomness) once `block` is finalized (`randao.mixed`)."""
    return R.mixed(state.reveals, state.seed_accumulator, block)


def apply_block(state: ChainState, block: Block) -> tuple[ChainState, tuple[L.LedgerEvent, ...]]:
    """Apply a valid, finalized block; returns the new state and the ledger's events."""
    judged, pending = participation_after(state, block)
    ledger, events = L.apply_block(
        state.ledger, block_context(state, block, judged), block.txs, state.params, state.chain_id
    )
    height = block.height
    boundary = is_epoch_boundary(state, height)
    accumulator = mix_seed(state, block)
    epoch, epoch_seed = state.epoch, state.epoch_seed
    if boundary:
        epoch, epoch_seed = epoch + 1, accumulator
        ledger, epoch_events = L.start_epoch(ledger, epoch, state.params)
        events += epoch_events
    validator_set = validator_set_after(state, ledger, boundary)
    seats, next_seats = state.seats, state.next_seats
    if boundary:
        size = state.params.committee_size
        drawn = draw_epoch_seats(epoch + 1, validator_set, size, epoch_seed)
        seats, next_seats = next_seats, with_stake(drawn, L.stake_snapshot(ledger, state.params))
    committee = committee_for(height + 1, seats, validator_set)
    priorities = proposer_priorities_after(state.priorities, state.committee, committee)
    keep_from = height - state.params.evidence_max_age
    recent = tuple(c for c in (state.committee, *state.recent_committees) if c.height > keep_from)
    oldest_pending = pending[0].height if pending else keep_from  # judged oldest first: in height order
    public_keys, key_history = signing_keys_after(state, ledger, height, min(keep_from, oldest_pending))
    new_state = replace(
        state,
        height=height,
        last_block_hash=block.hash,
        last_timestamp_ms=block.timestamp_ms,
        ledger=ledger,
        public_keys=public_keys,
        key_history=key_history,
        epoch=epoch,
        epoch_seed=epoch_seed,
        seed_accumulator=accumulator,
        validator_set=validator_set,
        priorities=priorities,
        seats=seats,
        next_seats=next_seats,
        committee=committee,
        recent_committees=recent,
        participation=pending,
        reveals=R.reveals_after(state.reveals, state.epoch, block),
    )
    return new_state, events
