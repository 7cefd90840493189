"""The Tendermint consensus state machine for one validator, sans-I/O.

It follows the upon-rules of "The latest gossip on BFT consensus" (Buchman,
Kwon, Milosevic 2018), weighted by stake: "2f+1" reads "more than 2/3 of the
committee's stake" and "f+1" reads "more than 1/3". Inputs are messages that
the caller has already authenticated, timeouts that fired, and the current
time as a number; outputs are values telling the caller what to do (sign and
broadcast, schedule a timeout, persist a finalized block, ask peers for
blocks). No sockets, no asyncio, no clock, no randomness: the simulator and
the real runtime drive the very same object, like h11's Connection.

The machine never signs. It emits `Sign` requests; the caller checks them
against the durable signing record, signs, broadcasts and feeds the signed
message back in. That keeps the no-double-signing rule in one place that
survives crashes, outside the protocol logic.

One module past 500 lines: the upon-rules, the vote sets, what the
heartbeat gossips and the late-precommit bookkeeping all read and write the
same height and round state; split apart, each piece would take that state
as arguments without becoming simpler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import IntEnum

from node.core.accountability import certificate_conflict_evidence
from node.core.evidence_pool import EvidencePool
from node.core.genesis import Params
from node.core.ledger import LedgerEvent, Participation
from node.core.mempool import Mempool, Refusal, block_tx_budget
from node.core.messages import (
    MAX_LATE_PRECOMMITS_PER_BLOCK,
    Block,
    CommitCertificate,
    Evidence,
    Kind,
    Proposal,
    Vote,
    make_certificate,
    make_evidence,
)
from node.core.state import (
    ChainState,
    Committee,
    apply_block,
    block_problem,
    certificate_problem,
    committee_at,
    late_precommit_misfit,
    opened_participation,
    proposer_of,
)

MAX_ROUND_AHEAD = 64  # votes further ahead than this are ignored (bounded memory)
MAX_BUFFERED_NEXT = 4096  # messages kept for later heights while this one is still open
BUFFER_AHEAD = 32  # heights ahead whose messages are kept; further ahead we ask for blocks
RELAY_EVERY_BEATS = 8
FORK_LOOKBACK = 20  # on a fork, the heights before it whose certificates we ask for and compare
MAX_LATE_KEPT = 16_384  # late precommits kept for inclusion (bounded memory)
SYNC_RETRY_MS = 1000
CLOCK_PRECISION_MS = 1000
"""How far ahead of our clock a new block's time may be when its proposal reaches us (see `_is_timely`)."""


def is_relay_beat(beat: int) -> bool:
    """Relay others' messages on beats 1, 2, 4, 8 of a round, then every 8th.

    Our own messages go out on every beat (a handful per round). Others' are
    many more, and a peer that missed one usually gets it from its sender
    soon; backing off keeps a long stall cheap while every message is still
    re-sent at a bounded interval, which is what eventual delivery needs.
    """
    return beat & (beat - 1) == 0 or beat % RELAY_EVERY_BEATS == 0


class Phase(IntEnum):
    NEW_HEIGHT = 0  # waiting out commit_wait (slot mode) before round 0
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    HEARTBEAT = 9  # not a step: the timer that re-sends our messages while a height stays open


# ------------------------------------------------------------------ outputs


@dataclass(frozen=True)
class Sign:
    """Sign `item` (after checking the signing record) and broadcast it, with `block` for proposals.

    `justification` rides along into the signing journal: for a precommit of a
    block it is the polka (the prevotes) that made us lock, so a restarted
    node can still prove its lock to the others (see `restore`).
    """

    item: Vote | Proposal
    block: Block | None = None
    justification: tuple[Vote, ...] = ()


@dataclass(frozen=True)
class Timeout:
    height: int
    round: int
    phase: Phase


@dataclass(frozen=True)
class ScheduleTimeout:
    timeout: Timeout
    delay_ms: int


@dataclass(frozen=True)
class BroadcastEvidence:
    evidence: Evidence


@dataclass(frozen=True)
class RequestSync:
    """Ask peers for finalized blocks from `from_height` on."""

    from_height: int


@dataclass(frozen=True)
class Decided:
    """A block is final: persist it (with its certificate) before anything else."""

    block: Block
    certificate: CommitCertificate
    round: int
    state: ChainState  # the state after applying the block
    events: tuple[LedgerEvent, ...]
    started_ms: int  # when this height began locally (for finality latency)
    via_sync: bool


@dataclass(frozen=True)
class Rebroadcast:
    """Send these already-signed messages again (no new signature is made).

    Tendermint assumes messages between honest nodes eventually arrive;
    over a lossy network, or after a partition heals, that only holds if
    they are sent again. CometBFT's reactor re-gossips votes; here every
    heartbeat of a height that stays open re-sends what `gossip_set` picks:
    our own messages and the votes we hold from others, bounded per beat.
    """

    items: tuple[tuple[Vote | Proposal, Block | None], ...]


@dataclass(frozen=True)
class RoundTimedOut:
    """A round ended without a decision (an event for logs and metrics)."""

    height: int
    round: int
    phase: Phase


Output = Sign | ScheduleTimeout | BroadcastEvidence | RequestSync | Decided | RoundTimedOut | Rebroadcast


# ---------------------------------------------------------------- vote sets


MAX_BLOCKS_PER_VOTER = 4  # conflicting votes counted per validator per (round, kind); more are only evidence


@dataclass
class VoteSet:
    """Votes of one kind at one (height, round), tallied by block id.

    A validator's vote counts toward every block it voted for (up to a few),
    not only the first one we happened to receive: otherwise an equivocator
    can show different honest nodes different "first" votes and keep them
    from ever seeing the same polka (CometBFT tracks conflicting votes for
    the same reason). This stays safe: two quorums of more than 2/3 still
    overlap in more than 1/3, which holds an honest validator, and honest
    validators vote once. `total` counts each validator once.
    """

    committee: Committee
    first: dict[bytes, Vote] = field(default_factory=dict)
    by_block: dict[bytes | None, dict[bytes, Vote]] = field(default_factory=dict)
    blocks_of: dict[bytes, int] = field(default_factory=dict)
    power_for: dict[bytes | None, int] = field(default_factory=dict)
    total: int = 0

    def add(self, vote: Vote) -> Vote | None:
        """Count `vote`; return an earlier conflicting vote if this is an equivocation."""
        power = self.committee.power_of(vote.validator)
        earlier = self.first.get(vote.validator)
        if earlier is None:
            self.first[vote.validator] = vote
            self.total += power
        voters = self.by_block.setdefault(vote.block_id, {})
        if vote.validator not in voters and self.blocks_of.get(vote.validator, 0) < MAX_BLOCKS_PER_VOTER:
            voters[vote.validator] = vote
            self.blocks_of[vote.validator] = self.blocks_of.get(vote.validator, 0) + 1
            self.power_for[vote.block_id] = self.power_for.get(vote.block_id, 0) + power
        return earlier if earlier is not None and earlier.block_id != vote.block_id else None

    def has_quorum_for(self, block_id: bytes | None) -> bool:
        return self.committee.is_quorum(self.power_for.get(block_id, 0))

    def has_quorum_any(self) -> bool:
        return self.committee.is_quorum(self.total)

    def votes_for(self, block_id: bytes | None) -> list[Vote]:
        return list(self.by_block.get(block_id, {}).values())


# ------------------------------------------------------------------ machine


Transition = Callable[[ChainState, Block], tuple[ChainState, tuple[LedgerEvent, ...]]]
BlockCheck = Callable[[ChainState, Block], str | None]


class ConsensusMachine:
    """One validator's view of consensus at the current height."""

    def __init__(
        self,
        state: ChainState,
        address: bytes,
        *,
        transition: Transition = apply_block,
        check_block: BlockCheck = block_problem,
        last_certificate: CommitCertificate | None = None,
        relays_others: bool = True,
    ) -> None:
        """`relays_others`: whether heartbeats re-send others' messages too. A node hosting several
        keys lets one of them relay: the others hold the same messages, and every key relaying
        them would multiply the node's gossip by its key count."""
        self.address = address
        self.relays_others = relays_others
        self._transition = transition
        self._check_block = check_block
        self.mempool = Mempool()
        self.evidence_pool = EvidencePool()
        self.last_certificate = last_certificate
        self._last_precommits: VoteSet | None = None
        self._late: dict[tuple[int, bytes], Vote] = {}  # precommits that certificates missed, to include
        self._pending_cache: tuple[ChainState, CommitCertificate | None, dict[int, Participation]] | None = (
            None
        )
        self._own_precommits: dict[tuple[int, int], Vote] = {}  # ours, until the chain has counted them
        self._forks_traced: set[int] = set()  # heights whose conflicting certificate sent us looking back
        self._sync_requested_ms = -SYNC_RETRY_MS
        self._sync_requested_height = 0
        self._next_height: list[Vote | tuple[Proposal, Block]] = []
        self._resume_round = 0  # a restarted node resumes the round it had reached
        self._now = 0
        self._reset(state, 0)

    # ---------------------------------------------------------- inspection

    @property
    def height(self) -> int:
        return self.state.next_height

    @property
    def params(self) -> Params:
        return self.state.params

    def in_committee(self) -> bool:
        return self.state.committee.power_of(self.address) > 0

    # --------------------------------------------------------------- inputs

    def restore(self, journal: list[tuple[Vote | Proposal, Block | None]], now_ms: int) -> list[Output]:
        """Replay our journal of this height after a restart, before `start`.

        An honest validator locks exactly when it precommits a block, so the
        lock is its latest non-nil precommit. Without this a restarted node
        would forget its lock (amnesia) and could block a polka it is part of.
        The journal also holds the polka each such precommit rests on (others'
        prevotes, written with it): without them the restarted node could
        re-propose its locked block with a `pol_round` nobody else can check,
        and if it sits in every quorum the height would never end.
        """
        self._now = now_ms
        out: list[Output] = []
        for item, block in journal:
            if item.height != self.height:
                continue
            self._resume_round = max(self._resume_round, item.round)
            if isinstance(item, Proposal) and block is not None:
                self._add_proposal(item, block, out)
                continue
            if isinstance(item, Vote) and item.validator != self.address:
                self._add_vote(item, out)  # the polka we journaled with our precommit
                continue
            if isinstance(item, Vote):
                self._add_vote(item, out)
                if item.kind == Kind.PRECOMMIT and block is not None and item.round >= self.locked_round:
                    self.locked_block, self.locked_round = block, item.round
                    self.valid_block, self.valid_round = block, item.round
        return out

    def start(self, now_ms: int) -> list[Output]:
        """Begin the current height (after construction or a restart)."""
        self._now = now_ms
        self.height_started_ms = now_ms  # latency of this height counts from here, not from the epoch
        out: list[Output] = []
        self._schedule_heartbeat(out)
        self._start_round(self._resume_round, out)
        self._evaluate(out)
        return out

    def on_proposal(self, proposal: Proposal, block: Block, now_ms: int) -> list[Output]:
        """An authenticated proposal with its block (hash already equal to proposal.block_id)."""
        self._now = now_ms
        out: list[Output] = []
        if proposal.height == self.height:
            if block.last_commit is not None:
                self._check_fork(block.last_commit, out)
            self._add_proposal(proposal, block, out)
            self._evaluate(out)
        elif proposal.height <= self.height + BUFFER_AHEAD:
            self._buffer_next((proposal, block))
            if proposal.height == self.height + 1:
                self._learn_certificate(block.last_commit, out)
                self._evaluate(out)
            else:
                self._maybe_sync(out)  # two heights behind: no certificate here can finish ours
        elif proposal.height > self.height:
            self._maybe_sync(out)
        return out

    def on_vote(self, vote: Vote, now_ms: int) -> list[Output]:
        """An authenticated prevote or precommit."""
        self._now = now_ms
        out: list[Output] = []
        if vote.validator == self.address and vote.kind == Kind.PRECOMMIT:
            self._own_precommits.setdefault((vote.height, vote.round), vote)
        if vote.height == self.height:
            self._add_vote(vote, out)
            self._evaluate(out)
        elif vote.height < self.height:
            self._add_late_precommit(vote, out)
        elif vote.height <= self.height + BUFFER_AHEAD:
            self._buffer_next(vote)
        else:
            self._maybe_sync(out)
        return out

    def on_timeout(self, timeout: Timeout, now_ms: int) -> list[Output]:
        self._now = now_ms
        out: list[Output] = []
        if timeout.phase == Phase.HEARTBEAT:
            self._heartbeat(timeout, out)
            return out
        if timeout.height != self.height or timeout.round != self.round:
            return out
        if timeout.phase == Phase.NEW_HEIGHT and self.phase == Phase.NEW_HEIGHT:
            self._start_round(0, out)
        elif timeout.phase == Phase.PROPOSE and self.phase == Phase.PROPOSE:
            out.append(RoundTimedOut(self.height, self.round, Phase.PROPOSE))
            self._prevote(None, out)
        elif timeout.phase == Phase.PREVOTE and self.phase == Phase.PREVOTE:
            out.append(RoundTimedOut(self.height, self.round, Phase.PREVOTE))
            self._precommit(None, out)
        elif timeout.phase == Phase.PRECOMMIT:
            out.append(RoundTimedOut(self.height, self.round, Phase.PRECOMMIT))
            self._start_round(self.round + 1, out)
            self._maybe_sync(out)
        self._evaluate(out)
        return out

    def _heartbeat(self, timeout: Timeout, out: list[Output]) -> None:
        if timeout.height != self.height:
            return
        self._heartbeats += 1
        self._beats_in_round += 1
        member = self.in_committee()
        relay = member and self.relays_others and is_relay_beat(self._beats_in_round)
        items = self.gossip_set(relay_others=relay) if member else ()
        if items:
            out.append(Rebroadcast(items))
        if self._heartbeats >= self._beats_before_stuck(member) and self.phase != Phase.NEW_HEIGHT:
            self._maybe_sync(out)  # stuck, not merely pacing slots
        self._schedule_heartbeat(out)

    def _beats_before_stuck(self, member: bool) -> int:
        """Heartbeats without a decision after which we ask peers for blocks.

        A committee member hears the votes and is stuck after two. A node
        outside the committee (a follower, see `node.core.routes`) decides a
        height only when the next height's proposal brings its certificate,
        which takes the committee's commit wait and a proposal longer; asking
        before that would send every follower's sync request every height.
        """
        if member:
            return 2
        beat = self._heartbeat_ms()
        wait = self.params.commit_wait_ms + self.params.timeout_ms("propose", 0)
        return 2 + -(-wait // beat)

    def gossip_set(self, relay_others: bool = True) -> tuple[tuple[Vote | Proposal, Block | None], ...]:
        """What a heartbeat re-sends while the height stays open: ours and others' messages.

        Tendermint's liveness needs every honest message to reach every
        honest node eventually; relaying only our own would strand a vote
        that reached one peer and was lost on the way to the others. Each
        item is held once (vote sets are keyed by validator and block), and
        only the rounds that can still matter are sent, so a beat costs at
        most a constant times the committee however long the stall lasts:
        - proposals and votes of the current and the previous round (peers
          still there need them to catch up, and > 1/3 of them move a
          lagging node to our round);
        - the polka behind our valid block (so its re-proposal is accepted);
        - precommits of any round where a block has a quorum (a decision).
        Others' messages only on `relay_others` beats (see `is_relay_beat`).
        """
        rounds = {r for r in (self.round - 1, self.round) if r >= 0}
        items: dict[bytes, tuple[Vote | Proposal, Block | None]] = {}
        for round_ in sorted(rounds | {self.valid_round}):
            entry = self.proposals.get(round_)
            if entry is not None and (relay_others or entry[0].proposer == self.address):
                items[entry[0].signature] = entry
        for (round_, kind), vote_set in sorted(self.votes.items()):
            for vote in self._votes_to_gossip(round_, kind, vote_set, rounds):
                if relay_others or vote.validator == self.address:
                    items[vote.signature] = (vote, None)
        return tuple(items.values())

    def _votes_to_gossip(self, round_: int, kind: Kind, vote_set: VoteSet, rounds: set[int]) -> list[Vote]:
        if round_ in rounds:
            return [vote for voters in vote_set.by_block.values() for vote in voters.values()]
        if kind == Kind.PREVOTE and round_ == self.valid_round and self.valid_block is not None:
            return vote_set.votes_for(self.valid_block.hash)
        if kind == Kind.PRECOMMIT:
            decided = [b for b in vote_set.power_for if b is not None and vote_set.has_quorum_for(b)]
            return [vote for block_id in decided for vote in vote_set.votes_for(block_id)]
        return []

    def _heartbeat_ms(self) -> int:
        return max(self.params.timeout_precommit_ms, 100)

    def _schedule_heartbeat(self, out: list[Output]) -> None:
        out.append(ScheduleTimeout(Timeout(self.height, 0, Phase.HEARTBEAT), self._heartbeat_ms()))

    def on_commit(self, block: Block, certificate: CommitCertificate, now_ms: int) -> list[Output]:
        """A finalized block from a peer (catch-up): verify its certificate, then decide."""
        self._now = now_ms
        out: list[Output] = []
        if block.height == self.height and block.last_commit is not None:
            self._check_fork(block.last_commit, out)  # a peer's chain that finalized another block
        if block.height != self.height or certificate.height != block.height:
            return out
        if certificate_problem(self.state, certificate, self.state.committee, block.hash):
            return out
        if self._check_block(self.state, block) is not None:
            return out
        self._attest_fetched(block, certificate, out)
        self._decide(block, certificate, out, via_sync=True)
        self._evaluate(out)
        return out

    def on_evidence(self, evidence: Evidence) -> list[Output]:
        """Gossiped evidence: keep it for the next block we propose, if it checks out."""
        self.evidence_pool.accept(evidence, self.state)
        return []

    def on_tx(self, tx: bytes) -> Refusal | None:
        """A gossiped transaction: kept for a block if it is valid on our state, else why not."""
        state = self.state
        return self.mempool.add(tx, state.ledger, state.chain_id, self.params.max_block_txs)

    # --------------------------------------------------------- height/round

    def _reset(self, state: ChainState, started_ms: int) -> None:
        self.state = state
        self.round = 0
        self.phase = Phase.NEW_HEIGHT
        self.locked_block: Block | None = None
        self.locked_round = -1
        self.valid_block: Block | None = None
        self.valid_round = -1
        self.proposals: dict[int, tuple[Proposal, Block]] = {}
        self._arrived_ms: dict[int, int] = {}  # when each round's proposal first reached us (our clock)
        self.votes: dict[tuple[int, Kind], VoteSet] = {}
        self.round_senders: dict[int, dict[bytes, int]] = {}
        self._polka_seen: set[int] = set()
        self._prevote_timeout_set: set[int] = set()
        self._precommit_timeout_set: set[int] = set()
        self._valid_cache: dict[bytes, bool] = {}
        self._heartbeats = 0
        self._beats_in_round = 0
        self._learned: set[tuple[tuple[bytes, bytes], ...]] = set()
        self.height_started_ms = started_ms

    def _start_round(self, round_: int, out: list[Output]) -> None:
        """StartRound(r): the proposer proposes, everyone else waits for it (with a timeout)."""
        self.round = round_
        self.phase = Phase.PROPOSE
        self._beats_in_round = 0
        if proposer_of(self.state, round_) == self.address:
            self._propose(out)
        out.append(
            ScheduleTimeout(
                Timeout(self.height, round_, Phase.PROPOSE), self.params.timeout_ms("propose", round_)
            )
        )

    def _propose(self, out: list[Output]) -> None:
        if self.valid_block is not None and self.valid_round < self.round:
            block, pol_round = self.valid_block, self.valid_round
        else:
            block, pol_round = self._build_block(), -1
        proposal = Proposal(self.height, self.round, block.hash, pol_round, self.address)
        out.append(Sign(proposal, block))

    def _build_block(self) -> Block:
        evidence = self.evidence_pool.for_block(self.state)
        last_commit = self._certificate_for_proposal()
        block = Block(
            height=self.height,
            prev_hash=self.state.last_block_hash,
            proposer=self.address,
            timestamp_ms=max(self._now, self.state.last_timestamp_ms),
            txs=(),
            evidence=evidence,
            last_commit=last_commit,
            state_hash=self.state.digest,
            late_precommits=self._late_precommits_to_include(last_commit),
        )
        if not self.mempool:
            return block
        # Transactions only while the proposal carrying the block still fits a message.
        budget = block_tx_budget(len(block.encoded), self.state.chain_id)
        txs = self.mempool.take(self.state.ledger, self.params.max_block_txs, budget)
        return replace(block, txs=txs) if txs else block

    def _certificate_for_proposal(self) -> CommitCertificate | None:
        """The previous height's certificate, with late precommits folded in."""
        if self.height == 1:
            return None
        late = self._last_precommits
        if late is not None and self.last_certificate is not None:
            votes = late.votes_for(self.last_certificate.block_id)
            if len(votes) > len(self.last_certificate.signatures):
                return make_certificate(votes)
        return self.last_certificate

    # ------------------------------------------------------------ messages

    def _add_proposal(self, proposal: Proposal, block: Block, out: list[Output]) -> None:
        if proposal.proposer != proposer_of(self.state, proposal.round):
            return
        if proposal.round > self.round + MAX_ROUND_AHEAD:
            return
        earlier = self.proposals.get(proposal.round)
        if earlier is None:
            self.proposals[proposal.round] = (proposal, block)
            self._arrived_ms[proposal.round] = self._now
            self._note_sender(proposal.round, proposal.proposer)
        elif earlier[0].block_id != proposal.block_id:
            self._record_equivocation(earlier[0], proposal, out)

    def _add_vote(self, vote: Vote, out: list[Output]) -> None:
        if self.state.committee.power_of(vote.validator) == 0:
            return
        if vote.round > self.round + MAX_ROUND_AHEAD:
            return
        key = (vote.round, vote.kind)
        vote_set = self.votes.get(key)
        if vote_set is None:
            vote_set = self.votes[key] = VoteSet(self.state.committee)
        earlier = vote_set.add(vote)
        if earlier is not None:
            self._record_equivocation(earlier, vote, out)
        else:
            self._note_sender(vote.round, vote.validator)

    def _buffer_next(self, item: Vote | tuple[Proposal, Block]) -> None:
        """Keep messages for the next few heights: fast peers are often ahead of us.

        A validator that follows a height by its messages precommits it (see
        `_attest_decision`); one that jumps ahead by sync does not, and is
        charged downtime for heights it could have followed.
        """
        if len(self._next_height) < MAX_BUFFERED_NEXT:
            self._next_height.append(item)

    def _replay_buffered(self, out: list[Output]) -> None:
        buffered, self._next_height = self._next_height, []
        for item in buffered:
            height = item.height if isinstance(item, Vote) else item[0].height
            if height > self.height:
                self._next_height.append(item)
                if height == self.height + 1 and not isinstance(item, Vote):
                    self._learn_certificate(item[1].last_commit, out)
            elif isinstance(item, Vote):
                if height == self.height:
                    self._add_vote(item, out)
            elif height == self.height:
                self._add_proposal(item[0], item[1], out)

    def _learn_certificate(self, certificate: CommitCertificate | None, out: list[Output]) -> None:
        """A block of the next height carries our height's certificate: its precommits are votes we missed.

        The proposer that decided our height does not send its precommits
        again once it moved on, so a lagging validator that lost one of them
        would wait for a sync round trip (and be judged absent meanwhile)
        although the next proposal already proves the decision. Verified
        like any certificate; `_rule_decide` then decides (precommitting
        the block first, see `_attest_decision`) or fetches a block we
        never received.
        """
        if certificate is None or certificate.height != self.height:
            return
        if certificate.signatures in self._learned:
            return
        self._learned.add(certificate.signatures)
        if certificate_problem(self.state, certificate, self.state.committee, certificate.block_id):
            return
        for vote in certificate.votes():
            self._add_vote(vote, out)

    def _add_late_precommit(self, vote: Vote, out: list[Output]) -> None:
        """A precommit for a finalized height: into the next certificate, or a later block.

        One for another block than ours, at our certificate's round, by a
        validator who also precommitted ours, is a double sign across a fork.
        """
        if vote.kind != Kind.PRECOMMIT:
            return
        late, cert = self._last_precommits, self.last_certificate
        if cert is not None and (vote.height, vote.round) == (cert.height, cert.round):
            if vote.block_id == cert.block_id and late is not None:
                late.add(vote)  # into the certificate we propose, if we propose before deciding again
            ours = self._our_precommit_by(vote.validator)
            if ours is not None and vote.block_id is not None and ours.block_id != vote.block_id:
                self._record_equivocation(ours, vote, out)
                return
        # Or into a later block, if the certificate went without it. Only one that can count is
        # kept: the first to arrive may be a nil precommit of a round that did not decide, and
        # keeping it (one per validator and height) turned away the one that counts.
        key = (vote.height, vote.validator)
        if (
            key not in self._late
            and len(self._late) < MAX_LATE_KEPT
            and late_precommit_misfit(self._pending().get(vote.height), vote) is None
        ):
            self._late[key] = vote

    def _pending(self) -> dict[int, Participation]:
        """The participation records waiting to be judged, by height (the last one opened by our certificate).

        Asked for every late precommit that arrives, so it is worked out once
        per (state, certificate) pair, not once per message.
        """
        state, certificate = self.state, self.last_certificate
        cached = self._pending_cache
        if cached is None or cached[0] is not state or cached[1] is not certificate:
            by_height = {p.height: p for p in opened_participation(state, certificate)}
            cached = self._pending_cache = (state, certificate, by_height)
        return cached[2]

    def _resend_uncounted_precommits(self, out: list[Output]) -> None:
        """Our precommits for pending heights that no block has counted yet: send them again.

        After a height closes nobody relays its votes, so a precommit lost on
        the way to every proposer would be charged as downtime although we
        were online. Each new height re-sends each such precommit once, until
        a block counts it or its height is judged: at most one message per
        pending height.
        """
        pending = {p.height: p for p in self.state.participation}
        resend = tuple(
            (vote, None)
            for (height, _), vote in sorted(self._own_precommits.items())
            if late_precommit_misfit(pending.get(height), vote) is None
        )
        if resend:
            out.append(Rebroadcast(resend))
        oldest = min(pending, default=self.height - 1)
        self._own_precommits = {k: v for k, v in self._own_precommits.items() if k[0] >= oldest}

    def _our_precommit_by(self, validator: bytes) -> Vote | None:
        """`validator`'s precommit for the block we finalized last, if we hold one."""
        cert = self.last_certificate
        if cert is None:
            return None
        if self._last_precommits is not None:
            return self._last_precommits.by_block.get(cert.block_id, {}).get(validator)
        return next((vote for vote in cert.votes() if vote.validator == validator), None)

    def _late_precommits_to_include(self, last_commit: CommitCertificate | None) -> tuple[Vote, ...]:
        """The kept late precommits a block carrying `last_commit` may include.

        They were authenticated on arrival, so only their fit is checked here;
        those for heights no longer pending are dropped.
        """
        if not self._late:
            return ()
        pending = {p.height: p for p in opened_participation(self.state, last_commit)}
        self._late = {key: vote for key, vote in self._late.items() if key[0] in pending}
        chosen = [
            vote
            for _, vote in sorted(self._late.items())
            if late_precommit_misfit(pending[vote.height], vote) is None
        ]
        return tuple(chosen[:MAX_LATE_PRECOMMITS_PER_BLOCK])

    def _note_sender(self, round_: int, sender: bytes) -> None:
        self.round_senders.setdefault(round_, {})[sender] = self.state.committee.power_of(sender)

    def on_conflicting_certificate(self, theirs: CommitCertificate, ours: CommitCertificate) -> list[Output]:
        """A peer's certificate for a height we finalized differently (from a sync answer, say)."""
        out: list[Output] = []
        committee = committee_at(self.state, theirs.height)
        if committee is not None and not certificate_problem(self.state, theirs, committee, theirs.block_id):
            for evidence in certificate_conflict_evidence(ours, theirs):
                self._record_evidence(evidence, out)
        return out

    def _check_fork(self, theirs: CommitCertificate, out: list[Output]) -> None:
        """A proposal whose certificate finalizes another block than ours at the last height: a fork.

        Both certificates are quorums of one committee, so they overlap in
        more than 1/3; at the same round every validator in both precommitted
        two blocks, and that is ordinary equivocation evidence.
        """
        ours = self.last_certificate
        if ours is None or theirs.height != ours.height or theirs.block_id == ours.block_id:
            return
        late = self._last_precommits
        if late is not None:
            ours = make_certificate(late.votes_for(ours.block_id))
        committee = committee_at(self.state, theirs.height)
        if committee is None or certificate_problem(self.state, theirs, committee, theirs.block_id):
            return
        out.extend(self.on_conflicting_certificate(theirs, ours))
        if theirs.height not in self._forks_traced:
            # The chains may have parted earlier, and the validators who signed
            # both sides there need not be the ones who did here: ask for the
            # other chain's recent blocks, whose certificates the driver
            # compares with ours (see Driver._check_fork).
            self._forks_traced.add(theirs.height)
            out.append(RequestSync(max(1, theirs.height - FORK_LOOKBACK)))

    def _record_equivocation(self, a: Vote | Proposal, b: Vote | Proposal, out: list[Output]) -> None:
        self._record_evidence(make_evidence(a, b), out)

    def _record_evidence(self, evidence: Evidence, out: list[Output]) -> None:
        if self.evidence_pool.record(evidence, self.state):
            out.append(BroadcastEvidence(evidence))

    # ---------------------------------------------------------- the rules

    def _evaluate(self, out: list[Output]) -> None:
        """Apply the upon-rules until none fires (each fires at most once per trigger)."""
        for _ in range(16):
            height, round_, phase = self.height, self.round, self.phase
            self._rule_decide(out)
            if self.height == height:
                self._rule_skip_round(out)
                self._rule_propose_step(out)
                self._rule_prevote_step(out)
                self._rule_precommit_timeout(out)
            if (height, round_, phase) == (self.height, self.round, self.phase):
                return

    def _is_valid(self, block: Block) -> bool:
        cached = self._valid_cache.get(block.hash)
        if cached is None:
            cached = self._valid_cache[block.hash] = self._check_block(self.state, block) is None
        return cached

    def _rule_propose_step(self, out: list[Output]) -> None:
        """Prevote the proposal if it is valid and compatible with our lock (lines 22-33)."""
        if self.phase != Phase.PROPOSE or self.round not in self.proposals:
            return
        proposal, block = self.proposals[self.round]
        if proposal.pol_round == -1:
            ok = (
                self._is_valid(block)
                and self._is_timely(proposal.round, block)
                and (self.locked_round == -1 or self._locked_on(block))
            )
            self._prevote(block.hash if ok else None, out)
            return
        polka = self.votes.get((proposal.pol_round, Kind.PREVOTE))
        if polka is not None and polka.has_quorum_for(block.hash):
            ok = self._is_valid(block) and (self.locked_round <= proposal.pol_round or self._locked_on(block))
            self._prevote(block.hash if ok else None, out)

    def _is_timely(self, round_: int, block: Block) -> bool:
        """A new block's time is not ahead of our clock by more than `CLOCK_PRECISION_MS` when it arrived.

        Validity cannot judge this (a block synced a day later must still be
        valid), so like CometBFT's proposer-based timestamps it is a prevote
        rule, for fresh proposals only: a re-proposal (`pol_round` >= 0) was
        judged when its polka formed. Without it a proposer whose clock runs
        ahead drags every later block's time with it (block times only go
        forward). Only the upper bound: a late arrival is gossip, not a lie.
        """
        return block.timestamp_ms <= self._arrived_ms.get(round_, self._now) + CLOCK_PRECISION_MS

    def _locked_on(self, block: Block) -> bool:
        return self.locked_block is not None and self.locked_block.hash == block.hash

    def _rule_prevote_step(self, out: list[Output]) -> None:
        """Polka handling: schedule the prevote timeout, lock on a block, or precommit nil (lines 34-48)."""
        prevotes = self.votes.get((self.round, Kind.PREVOTE))
        if prevotes is None or self.phase < Phase.PREVOTE:
            return
        if (
            self.phase == Phase.PREVOTE
            and prevotes.has_quorum_any()
            and self.round not in self._prevote_timeout_set
        ):
            self._prevote_timeout_set.add(self.round)
            delay = self.params.timeout_ms("prevote", self.round)
            out.append(ScheduleTimeout(Timeout(self.height, self.round, Phase.PREVOTE), delay))
        entry = self.proposals.get(self.round)
        if entry is not None and self.round not in self._polka_seen:
            block = entry[1]
            if prevotes.has_quorum_for(block.hash) and self._is_valid(block):
                self._polka_seen.add(self.round)
                if self.phase == Phase.PREVOTE:
                    self.locked_block, self.locked_round = block, self.round
                    self._precommit(block.hash, out, justification=tuple(prevotes.votes_for(block.hash)))
                self.valid_block, self.valid_round = block, self.round
        if self.phase == Phase.PREVOTE and prevotes.has_quorum_for(None):
            self._precommit(None, out)

    def _rule_precommit_timeout(self, out: list[Output]) -> None:
        """Any +2/3 precommits at this round: give the round a last chance, then move on (lines 47-48)."""
        precommits = self.votes.get((self.round, Kind.PRECOMMIT))
        if (
            precommits is not None
            and precommits.has_quorum_any()
            and self.round not in self._precommit_timeout_set
        ):
            self._precommit_timeout_set.add(self.round)
            delay = self.params.timeout_ms("precommit", self.round)
            out.append(ScheduleTimeout(Timeout(self.height, self.round, Phase.PRECOMMIT), delay))

    def _rule_decide(self, out: list[Output]) -> None:
        """+2/3 precommits for a proposed valid block in any round: it is final (lines 49-54)."""
        for (round_, kind), precommits in self.votes.items():
            if kind != Kind.PRECOMMIT:
                continue
            for block_id, power in precommits.power_for.items():
                if block_id is None or not self.state.committee.is_quorum(power):
                    continue
                entry = self.proposals.get(round_)
                if entry is not None and entry[1].hash == block_id and self._is_valid(entry[1]):
                    certificate = make_certificate(precommits.votes_for(block_id))
                    self._attest_decision(round_, entry[1], out)
                    self._decide(entry[1], certificate, out, via_sync=False)
                    return
                self._maybe_sync(out)  # the network decided a block we never received

    def _attest_decision(self, round_: int, block: Block, out: list[Output]) -> None:
        """Precommit a block we see decided, if we have not got that far ourselves.

        A validator that lags the others (the rest of the quorum is fast, or
        one pool alone holds 2/3) would otherwise decide on their precommits
        without ever sending its own, and be jailed for downtime while online.
        The block is already final, so precommitting it cannot help decide
        anything else; the signing record still refuses it if we signed past
        this round.
        """
        if self.in_committee() and (self.round, self.phase) < (round_, Phase.PRECOMMIT):
            vote = Vote(Kind.PRECOMMIT, self.height, round_, block.hash, self.address)
            out.append(Sign(vote, block))

    def _attest_fetched(self, block: Block, certificate: CommitCertificate, out: list[Output]) -> None:
        """Precommit a block we had to fetch, as `_attest_decision` does one we saw decided.

        A validator that misses a height's proposal (a lost message: the
        proposer does not send it again once the height closed) decides by
        sync, and without this never precommitted the height it was online
        for. Only while its grace period may still be running: an older one
        has been judged, and a node catching up on many heights would send
        a precommit for each in vain.
        """
        recent = self._now - block.timestamp_ms < self.params.late_precommit_ms
        if recent and self.address not in certificate.signers():
            self._attest_decision(certificate.round, block, out)

    def _rule_skip_round(self, out: list[Output]) -> None:
        """Messages from more than 1/3 of stake at a higher round: join it (lines 55-56)."""
        for round_, senders in self.round_senders.items():
            if round_ > self.round and self.state.committee.is_one_third(sum(senders.values())):
                self._start_round(round_, out)
                return

    # ----------------------------------------------------------- actions

    def _prevote(self, block_id: bytes | None, out: list[Output]) -> None:
        self.phase = Phase.PREVOTE
        if self.in_committee():
            out.append(Sign(Vote(Kind.PREVOTE, self.height, self.round, block_id, self.address)))

    def _precommit(
        self, block_id: bytes | None, out: list[Output], justification: tuple[Vote, ...] = ()
    ) -> None:
        self.phase = Phase.PRECOMMIT
        if self.in_committee():
            block = self.locked_block if block_id is not None else None
            vote = Vote(Kind.PRECOMMIT, self.height, self.round, block_id, self.address)
            out.append(Sign(vote, block, justification))

    def _decide(
        self, block: Block, certificate: CommitCertificate, out: list[Output], via_sync: bool
    ) -> None:
        new_state, events = self._transition(self.state, block)
        out.append(
            Decided(
                block, certificate, certificate.round, new_state, events, self.height_started_ms, via_sync
            )
        )
        self._drop_included(block, new_state)
        self.last_certificate = certificate
        self._last_precommits = None
        if not via_sync:
            precommits = self.votes.get((certificate.round, Kind.PRECOMMIT))
            self._last_precommits = precommits
        self._reset(new_state, self._now)
        self._resend_uncounted_precommits(out)
        self._schedule_heartbeat(out)
        self._replay_buffered(out)
        # Through the clock even when there is no wait: a validator with more
        # than 2/3 of the stake decides on its own messages, and starting the
        # next height in this call would never hand control back to its caller.
        out.append(ScheduleTimeout(Timeout(self.height, 0, Phase.NEW_HEIGHT), self.params.commit_wait_ms))

    def _drop_included(self, block: Block, state: ChainState) -> None:
        self.mempool.drop(block.txs)
        self.mempool.recheck(state.ledger)  # nonces now used, funds now spent
        self.evidence_pool.prune(block.evidence, block.height, self.params.evidence_max_age)

    def _maybe_sync(self, out: list[Output]) -> None:
        """Ask peers for blocks from our height: once per height we reach, then once per SYNC_RETRY_MS.

        Per height as well as per time: a request sent the moment a node fell
        behind may find peers with nothing newer yet, and the next height's
        request must not wait out the retry interval.
        """
        if self._now - self._sync_requested_ms >= SYNC_RETRY_MS or self.height > self._sync_requested_height:
            self._sync_requested_ms = self._now
            self._sync_requested_height = self.height
            out.append(RequestSync(self.height))
