"""The invariants a simulated run is checked against, read from the nodes' histories.

- safety: no two honest nodes finalized different blocks at one height;
- liveness: every honest node reaches the target height, and after the last
  fault heals each honest node finalizes again within a bounded number of rounds;
- accountability: every equivocation an honest node was shown, at the height
  it was working on, produced evidence (`OffenceWatch`); and when honest nodes
  finalized conflicting blocks, the signed votes a global observer saw
  (`VoteObserver`) convict more than 1/3 of that height's committee power
  (accountable safety), and every validator whose precommit is in both
  certificates ends tombstoned on the honest chains that ran on long enough
  to include the evidence;
- penalties: no honest validator is jailed for a miss it did not make
  (`network.sim.penalties` judges each miss from the run's delivery record).

The guarantees hold only while Byzantine validators hold less than 1/3 of
each height's committee power. `byzantine_share` measures that share per
height and `classify` sorts every violation into inside the bound (a bug)
or outside it (expected, reported, not a failure); the accountable-safety
checks are bugs whatever the share, since they are exactly what must hold
when the bound does not.

The checks see a node through `History` (its name, finalized chain, and
machine), not through the simulator's node class, so they depend on
nothing but the core.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Any, Protocol

from network.sim.config import SimConfig
from node.core import ledger as L
from node.core.accountability import (
    ForkAccount,
    certificate_conflict_evidence,
    culprit_proof_problem,
    fork_culprits,
)
from node.core.admission import Admitted, ProposalMsg
from node.core.codec import DecodeError
from node.core.consensus import MAX_ROUND_AHEAD, ConsensusMachine
from node.core.genesis import PPM, Params
from node.core.messages import (
    VOTE_KINDS,
    Block,
    CommitCertificate,
    Proposal,
    Vote,
    parse_envelope,
    signed_kind,
    signer_of,
)
from node.core.state import ChainState, proposer_of, signing_keys_at
from node.core.verdicts import conflicting_finality

RESUME_ROUNDS = 10
EVIDENCE_INCLUSION_HEIGHTS = 5  # honest proposers' blocks past a fork: time enough to include its evidence
VIOLATION_KINDS = ("safety", "liveness", "accountability", "penalty")


class History(Protocol):
    """What the checks read of one simulated node."""

    name: str
    genesis: ChainState
    chain: list[tuple[Block, CommitCertificate, ChainState]]  # finalized: (block, certificate, state after)
    finalized_at: list[tuple[int, int]]  # (virtual ms, height)

    @property
    def height(self) -> int: ...

    @property
    def state(self) -> ChainState: ...

    @property
    def machine(self) -> ConsensusMachine | None: ...

    @property
    def address(self) -> bytes: ...


@dataclass(frozen=True)
class Violation:
    """One broken invariant, and whether the run was inside the model where it broke.

    `height` is the height whose committee judges it: when Byzantine
    validators held 1/3 or more of that committee's power the protocol
    promises nothing there, so the violation is expected (`outside_bound`).
    None means a bug whatever the Byzantine share (accountable safety).
    """

    kind: str  # one of VIOLATION_KINDS
    message: str
    height: int | None = None
    outside_bound: bool = False


@dataclass(frozen=True)
class ByzantineShare:
    """How much of each height's committee power the Byzantine validators held."""

    exceeded_heights: tuple[int, ...]  # heights where it was 1/3 or more: outside the model
    max_share_ppm: int
    forked_outside: int | None = None  # honest chains parted here, outside the bound

    def exceeded(self, height: int | None) -> bool:
        """Outside the model at `height`: too much Byzantine power there, or past a fork it caused.

        Once honest nodes finalized different blocks outside the bound they
        sit on different chains, each with too few honest voters to go on:
        the stall that follows is the fork's consequence, not a new bug.
        """
        if height is None:
            return False
        return height in self.exceeded_heights or (
            self.forked_outside is not None and height > self.forked_outside
        )


class VoteObserver:
    """Every signed vote sent on the network, as a raw subscriber on the broker would see them.

    The fork check needs all votes of a height, not only those some node
    happened to receive. It stays cheap: each distinct message is decoded
    once, and heights every honest node finalized alike are dropped (no
    fork can appear there any more).
    """

    def __init__(self) -> None:
        self.votes: dict[int, set[Vote]] = {}
        self.settled = 0  # heights up to here are final and equal on every honest node
        self._seen: set[bytes] = set()

    def observe(self, data: bytes) -> None:
        if data in self._seen:
            return
        self._seen.add(data)
        try:
            envelope = parse_envelope(data)
            if envelope.kind not in VOTE_KINDS:
                return
            vote = Vote.from_body(envelope.kind, envelope.body, envelope.signature)
        except DecodeError:
            return
        if vote.height > self.settled:
            self.votes.setdefault(vote.height, set()).add(vote)

    def settle(self, height: int) -> None:
        """Forget the votes of heights up to `height`: every honest node finalized them alike."""
        if height <= self.settled:
            return
        for done in range(self.settled + 1, height + 1):
            self.votes.pop(done, None)
        self.settled = height
        self._seen.clear()

    def at(self, height: int) -> set[Vote]:
        return self.votes.get(height, set())


_UNSEEN = object()
_CONFLICTING = object()


class OffenceWatch:
    """Accountability as one honest node lives it: what it is shown, it must convict.

    Conflicting messages shown to the node at the height it works on (by a
    committee member, or by that round's proposer, at a round the machine
    still keeps) must have produced evidence by the time the machine is done
    with the message that completed the pair.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.violations: list[Violation] = []
        self._seen: dict[tuple[bytes, int, int, int], bytes | object | None] = {}  # or _CONFLICTING
        self._pending: tuple[bytes, int, int, int] | None = None
        self._height = 0  # the machine height `_seen` holds messages of

    def forget(self) -> None:
        """A crash: memory is lost, and the restarted machine starts afresh."""
        self._seen.clear()

    def shown(self, message: Admitted, machine: ConsensusMachine) -> None:
        """Record a message the node admitted, before its machine sees it."""
        item = message.proposal if isinstance(message, ProposalMsg) else message
        if not isinstance(item, Vote | Proposal) or item.height != machine.height:
            return
        if isinstance(item, Vote) and machine.state.committee.power_of(item.validator) == 0:
            return
        if isinstance(item, Proposal) and proposer_of(machine.state, item.round) != item.proposer:
            return
        if item.height != self._height:  # a new height: what was seen at the last is never asked again
            self._seen.clear()
            self._height = item.height
        key = (signer_of(item), item.height, item.round, int(signed_kind(item)))
        first = self._seen.get(key, _UNSEEN)
        if first is _UNSEEN:
            self._seen[key] = item.block_id  # the one block id seen for it so far
        elif first != item.block_id:  # _CONFLICTING equals no block id
            self._seen[key] = _CONFLICTING  # two different ones seen: every later copy completes a pair
            if item.round <= machine.round + MAX_ROUND_AHEAD:
                self._pending = key

    def check(self, machine: ConsensusMachine | None) -> None:
        """After the machine handled the message: evidence for the equivocation it completed."""
        key, self._pending = self._pending, None
        if key is None or machine is None or machine.height != key[1]:
            return
        if key not in machine.evidence_pool.seen:
            offender = machine.state.names.get(key[0], key[0].hex()[:8])
            self.violations.append(
                Violation(
                    "accountability",
                    f"{self.name} saw equivocation by {offender} at (h, r, step) {key[1:]} without evidence",
                    key[1],
                )
            )


def finalized_after(node: History, t: int) -> int | None:
    index = bisect_left(node.finalized_at, t, key=lambda item: item[0])  # in time order
    return node.finalized_at[index][0] if index < len(node.finalized_at) else None


def _height_at(node: History, t: int) -> int:
    """The height `node` was working on at virtual time `t` (`finalized_at` is in time order)."""
    return 1 + bisect_left(node.finalized_at, t, key=lambda item: item[0])


def _states_before(node: History) -> Iterable[ChainState]:
    """The states `node` voted from: before each height it finalized, and before the open one."""
    yield node.genesis
    for _, _, state in node.chain:
        yield state


def byzantine_share(honest: list[History], byzantine: Iterable[bytes]) -> ByzantineShare:
    """The Byzantine share of each height's committee power, over every honest node's chain.

    The committee of height h comes from the state after h-1 (`committee`
    is the next height's), so the open height counts too. Equal states are
    one object (the shared core memoises transitions), so each is weighed once.
    """
    addresses = tuple(byzantine)
    exceeded: set[int] = set()
    highest = 0
    weighed: set[int] = set()
    for node in honest:
        for state in _states_before(node):
            if id(state) in weighed:
                continue
            weighed.add(id(state))
            committee = state.committee
            power = sum(committee.power_of(address) for address in addresses)
            if committee.total:
                highest = max(highest, power * PPM // committee.total)
            if 3 * power >= committee.total:
                exceeded.add(committee.height)
    return ByzantineShare(tuple(sorted(exceeded)), highest)


def check_safety(honest: list[History]) -> list[Violation]:
    """No two honest nodes finalized different blocks at one height."""
    finalized = {
        node.name: {h: (block.hash,) for h, (block, *_) in enumerate(node.chain, 1)} for node in honest
    }
    return [
        Violation("safety", f"height {height}: honest nodes finalized {len(blocks)} different blocks", height)
        for height, blocks in conflicting_finality(finalized).items()
    ]


def check_liveness(
    config: SimConfig, honest: list[History], last_heal: int, params: Params, stopped_early: bool = False
) -> list[Violation]:
    violations = []
    lowest = min(node.height for node in honest)
    if lowest < config.heights:
        stuck = sorted(node.name for node in honest if node.height == lowest)
        why = f" (no honest node finalized for {RESUME_ROUNDS} rounds)" if stopped_early else ""
        violations.append(
            Violation(
                "liveness",
                f"stalled: honest nodes {','.join(stuck)} reached only height {lowest} of {config.heights}{why}",
                lowest + 1,
            )
        )
    if last_heal:
        bound = last_heal + params.failed_rounds_ms(RESUME_ROUNDS)
        for node in honest:
            resumed = finalized_after(node, last_heal)
            if resumed is None or resumed > bound:
                violations.append(
                    Violation(
                        "liveness",
                        f"{node.name} did not finalize within {RESUME_ROUNDS} rounds of the last heal at {last_heal} ms",
                        _height_at(node, last_heal),
                    )
                )
    return violations


def find_forks(honest: list[History], observer: VoteObserver) -> list[tuple[ChainState, ForkAccount]]:
    """Every pair of conflicting certificates on a common parent, with its culprits.

    Only the first height where two chains part is a fork in the theorem's
    sense (one committee, two certificates); the heights after it belong
    to different chains. Returns (the state both voted from, the account).
    """
    forks = []
    top = max((node.height for node in honest), default=0)
    for height in range(max(1, observer.settled + 1), top + 1):
        finalized: dict[bytes, tuple[Block, CommitCertificate, ChainState]] = {}
        for node in honest:
            if node.height >= height:
                block, cert, _ = node.chain[height - 1]
                before = node.chain[height - 2][2] if height > 1 else node.genesis
                finalized.setdefault(block.hash, (block, cert, before))
        for (block_a, cert_a, before), (block_b, cert_b, _) in combinations(
            sorted(finalized.values(), key=lambda f: f[0].hash), 2
        ):
            if block_a.prev_hash == block_b.prev_hash:
                forks.append((before, fork_culprits(cert_a, cert_b, observer.at(height), before.committee)))
    return forks


def check_forks(
    honest: list[History], forks: list[tuple[ChainState, ForkAccount]]
) -> tuple[list[Violation], list[dict[str, Any]]]:
    """Accountable safety: each fork's culprits are proven, all Byzantine, cover > 1/3, and the provable ones slashed.

    These are bugs whatever the Byzantine share (height None): the theorem
    is what must still hold when the 1/3 bound does not. An honest culprit
    means an honest node broke a rule (or the rules here are wrong).
    """
    honest_addresses = {node.address for node in honest}
    violations: list[Violation] = []
    reports: list[dict[str, Any]] = []
    for before, account in forks:
        names = before.names
        where = f"fork at height {account.height} (rounds {account.rounds[0]} and {account.rounds[1]})"
        for culprit in account.culprits:
            keys = signing_keys_at(before, account.height)  # a rotation may have changed them since
            problem = culprit_proof_problem(culprit, before.chain_id, keys)
            if problem:
                violations.append(
                    Violation(
                        "accountability",
                        f"{where}: the proof against {names[culprit.validator]} fails: {problem}",
                    )
                )
            if culprit.validator in honest_addresses:
                violations.append(
                    Violation(
                        "accountability",
                        f"{where}: honest {names[culprit.validator]} convicted of {culprit.offence}",
                    )
                )
        if not account.covers_one_third:
            violations.append(
                Violation(
                    "accountability",
                    f"{where}: culprits hold only {account.power} of {account.total} committee power, "
                    "accountable safety needs more than 1/3",
                )
            )
        violations += _unslashed(honest, account, names, where, honest_addresses)
        reports.append(
            {
                "height": account.height,
                "rounds": list(account.rounds),
                "culprits": {names[c.validator]: c.offence for c in account.culprits},
                "culprit_power": account.power,
                "committee_power": account.total,
            }
        )
    return violations, reports


def _knows_offence(node: History, offender: bytes, height: int) -> bool:
    """`offender` is tombstoned on the node's chain, or the node holds evidence of an equivocation
    by it at `height` or later (any one tombstones it: a validator is punished once, for good)."""
    if L.pool_status(node.state.ledger, offender) == L.TOMBSTONED:
        return True
    machine = node.machine
    return machine is not None and any(
        key[0] == offender and key[1] >= height for key in machine.evidence_pool.seen
    )


def honest_blocks_after(node: History, height: int, honest_addresses: set[bytes]) -> int:
    """How many blocks after `height` on `node`'s chain an honest validator proposed.

    Only those owe anyone an inclusion: a Byzantine proposer (one holding the
    only seat proposes every block) may leave evidence out for as long as it
    proposes, so the time a chain had is counted in honest proposers' blocks.
    """
    return sum(1 for block, _, _ in node.chain[height:] if block.proposer in honest_addresses)


def _unslashed(
    honest: list[History],
    account: ForkAccount,
    names: dict[bytes, str] | Any,
    where: str,
    honest_addresses: set[bytes],
) -> list[Violation]:
    """Validators whose precommits are in both certificates must not get away with it.

    Those two precommits are ordinary equivocation evidence, which a node
    can derive as soon as it sees the other certificate, then gossip,
    include and slash like any other. So: some honest node must hold the
    evidence (or have tombstoned the offender) even when every chain
    stalled at the fork, and every honest chain with EVIDENCE_INCLUSION_HEIGHTS
    blocks by honest proposers past the fork must have tombstoned it.
    """
    height = account.height
    certs = {node.chain[height - 1][1] for node in honest if node.height >= height}
    pair = [c for c in certs if c.block_id in account.block_ids]
    offenders = sorted(
        {ev.offender for a, b in combinations(pair, 2) for ev in certificate_conflict_evidence(a, b)}
    )
    long_enough = [
        node
        for node in honest
        if honest_blocks_after(node, height, honest_addresses) >= EVIDENCE_INCLUSION_HEIGHTS
    ]
    violations = []
    for offender in offenders:
        if not any(_knows_offence(node, offender, height) for node in honest):
            violations.append(
                Violation(
                    "accountability",
                    f"{where}: {names[offender]} precommitted in both certificates, "
                    "yet no honest node holds evidence against it",
                )
            )
        spared = [node for node in long_enough if L.pool_status(node.state.ledger, offender) != L.TOMBSTONED]
        if spared:
            violations.append(
                Violation(
                    "accountability",
                    f"{where}: {names[offender]} precommitted in both certificates but is still "
                    f"{L.pool_status(spared[0].state.ledger, offender)} on the chains of "
                    f"{','.join(node.name for node in spared)}",
                )
            )
    return violations


def classify(violations: list[Violation], share: ByzantineShare) -> list[Violation]:
    """Mark each violation outside the bound when its height's committee was 1/3 or more Byzantine."""
    return [replace(v, outside_bound=share.exceeded(v.height)) for v in violations]
