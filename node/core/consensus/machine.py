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

Read it as Algorithm 1: `_start_round` is StartRound, the `_rule_*`
methods are the upon-rules (their docstrings give the paper's lines), the
`on_timeout` branches are OnTimeoutPropose/Prevote/Precommit. What the paper
leaves to its gossip assumption lives beside it, each part with its state:
vote tallies (`votes`), heartbeat re-sends (`gossip`), precommits that
arrive after their height closed (`late`), and falling behind or parting
from the others (`catchup`).

Past 500 lines, and one module still: what is left is the per-height state
of Algorithm 1 (round, step, lock, valid block, proposals, vote sets) and
the rules, steps and timeouts that all read and write it. Every concern with
state of its own has moved out; cutting the rules from the steps would pass
that state between modules without making either easier to read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from node.core.certificate_checks import PLAIN_CHECKS, CertificateChecks
from node.core.consensus.catchup import (
    BUFFER_AHEAD,
    ForkTrace,
    LearnedCertificates,
    NextHeights,
    SyncPacer,
    conflict_evidence,
    is_fork,
    is_sound,
)
from node.core.consensus.gossip import Beats, beats_before_stuck, gossip_set, heartbeat_ms, is_relay_beat
from node.core.consensus.late import LatePrecommits
from node.core.consensus.outputs import (
    BroadcastEvidence,
    Decided,
    Output,
    Phase,
    Rebroadcast,
    RequestSync,
    RoundTimedOut,
    ScheduleTimeout,
    Sign,
    Timeout,
)
from node.core.consensus.votes import VoteSet
from node.core.evidence_pool import EvidencePool
from node.core.genesis import Params
from node.core.ledger import LedgerEvent
from node.core.memory import NOTE_EVIDENCE, NOTE_LATE, NOTE_OPEN, NOTE_OWN, Note, recalled_item
from node.core.mempool import Mempool, Refusal, block_tx_budget
from node.core.messages import (
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
    apply_block,
    block_problem,
    proposer_of,
    signed_item_problem,
)

MAX_ROUND_AHEAD = 64  # votes further ahead than this are ignored (bounded memory)
CLOCK_PRECISION_MS = 1000
"""How far ahead of our clock a new block's time may be when its proposal reaches us (see `_is_timely`)."""

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
        certificates: CertificateChecks = PLAIN_CHECKS,
        last_certificate: CommitCertificate | None = None,
        relays_others: bool = True,
    ) -> None:
        """`relays_others`: whether heartbeats re-send others' messages too. A node hosting several
        keys lets one of them relay: the others hold the same messages, and every key relaying
        them would multiply the node's gossip by its key count. `transition`, `check_block` and
        `certificates` may be shared memos of the pure functions (`node.core.certificate_checks`)."""
        self.address = address
        self.relays_others = relays_others
        self._transition = transition
        self._check_block = check_block
        self._certificates = certificates
        self.mempool = Mempool()
        self.evidence_pool = EvidencePool()
        self.last_certificate = last_certificate
        self._late = LatePrecommits()
        self._forks = ForkTrace()
        self._sync = SyncPacer()
        self._next = NextHeights()
        self._resume_round = 0  # a restarted node resumes the round it had reached
        self._forgotten: list[Note] = []  # recalled notes, forgotten unless they are kept again
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

    def recall(self, notes: list[tuple[int, bytes, bytes]]) -> list[Output]:
        """Take back what the durable memory kept before a restart (see `node.core.memory`), before `start`.

        Nothing is trusted: each note is decoded and checked like a message
        off the network against the state we recovered (signature, fit,
        evidence in full), so a stale, damaged or planted entry is dropped,
        and forgotten by the memory too (every recalled key is forgotten,
        and what still fits is noted again). Recalled evidence is gossiped
        again: its first broadcast may have been lost with the crash.
        """
        out: list[Output] = []
        self._forgotten = [(kind, key, None) for kind, key, _ in notes]
        for kind, _, value in notes:
            item = recalled_item(kind, value)
            if isinstance(item, Evidence) and kind == NOTE_EVIDENCE:
                if item.key() not in self.evidence_pool.seen:
                    self.evidence_pool.accept(item, self.state)
                    if item.key() in self.evidence_pool:
                        out.append(BroadcastEvidence(item))
            elif isinstance(item, Vote) and item.kind == Kind.PRECOMMIT and item.height > self.height:
                if kind == NOTE_OPEN and signed_item_problem(self.state, item) is None:
                    self.on_vote(item, self._now)  # kept for its height again, and noted again
            elif isinstance(item, Vote) and item.kind == Kind.PRECOMMIT and item.height <= self.height:
                if signed_item_problem(self.state, item) is not None:
                    continue
                if kind == NOTE_OPEN and item.height == self.height and item.validator != self.address:
                    self._add_vote(item, out)
                elif item.height == self.height:
                    continue
                elif kind == NOTE_OWN and item.validator == self.address:
                    self._late.note_own(item)
                elif kind in (NOTE_LATE, NOTE_OPEN):
                    self._add_late_precommit(item, out)
        return out

    def memory_changes(self) -> list[Note]:
        """What to keep in, or forget from, the durable memory since last asked (see `node.core.memory`)."""
        forgotten, self._forgotten = self._forgotten, []
        return forgotten + self._late.changes() + self.evidence_pool.changes()

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
            self._next.keep((proposal, block))
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
            self._late.note_own(vote)
        if vote.height == self.height:
            self._add_vote(vote, out)
            self._evaluate(out)
        elif vote.height < self.height:
            self._add_late_precommit(vote, out)
        elif vote.height <= self.height + BUFFER_AHEAD:
            self._next.keep(vote)
            self._late.note_ahead(vote, self.address, MAX_ROUND_AHEAD)
        else:
            if vote.kind == Kind.PRECOMMIT:
                self._next.keep_precommit_ahead(vote)
                self._late.note_ahead(vote, self.address, MAX_ROUND_AHEAD)
            self._maybe_sync(out)
        return out

    def on_timeout(self, timeout: Timeout, now_ms: int) -> list[Output]:
        """A timer fired: the heartbeat, the end of a commit wait, or OnTimeoutPropose/Prevote/Precommit."""
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

    def on_commit(self, block: Block, certificate: CommitCertificate, now_ms: int) -> list[Output]:
        """A finalized block from a peer (catch-up): verify its certificate, then decide."""
        self._now = now_ms
        out: list[Output] = []
        if block.height == self.height and block.last_commit is not None:
            self._check_fork(block.last_commit, out)  # a peer's chain that finalized another block
        if block.height != self.height or certificate.height != block.height:
            return out
        if self._certificates.problem(self.state, certificate, self.state.committee, block.hash):
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

    def on_conflicting_certificate(self, theirs: CommitCertificate, ours: CommitCertificate) -> list[Output]:
        """A peer's certificate for a height we finalized differently (from a sync answer, say)."""
        out: list[Output] = []
        for evidence in conflict_evidence(self.state, theirs, ours, self._certificates):
            self._record_evidence(evidence, out)
        return out

    def gossip_set(self, relay_others: bool = True) -> tuple[tuple[Vote | Proposal, Block | None], ...]:
        """What a heartbeat re-sends while the height stays open (see `gossip.gossip_set`)."""
        return gossip_set(
            proposals=self.proposals,
            votes=self.votes,
            round_=self.round,
            valid_round=self.valid_round,
            valid_block=self.valid_block,
            address=self.address,
            relay_others=relay_others,
        )

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

    def _rule_skip_round(self, out: list[Output]) -> None:
        """Messages from more than 1/3 of stake at a higher round: join it (lines 55-56)."""
        for round_, senders in self.round_senders.items():
            if round_ > self.round and self.state.committee.is_one_third(sum(senders.values())):
                self._start_round(round_, out)
                return

    def _is_valid(self, block: Block) -> bool:
        cached = self._valid_cache.get(block.hash)
        if cached is None:
            cached = self._valid_cache[block.hash] = self._check_block(self.state, block) is None
        return cached

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

    # ------------------------------------------------------------ actions

    def _start_round(self, round_: int, out: list[Output]) -> None:
        """StartRound(r): the proposer proposes, everyone else waits for it (with a timeout)."""
        self.round = round_
        self.phase = Phase.PROPOSE
        self._beats.in_round = 0
        if proposer_of(self.state, round_) == self.address:
            self._propose(out)
        out.append(
            ScheduleTimeout(
                Timeout(self.height, round_, Phase.PROPOSE), self.params.timeout_ms("propose", round_)
            )
        )

    def _propose(self, out: list[Output]) -> None:
        """StartRound as proposer: re-propose our valid block from an earlier round, else build a new one."""
        if self.valid_block is not None and self.valid_round < self.round:
            block, pol_round = self.valid_block, self.valid_round
        else:
            block, pol_round = self._build_block(), -1
        proposal = Proposal(self.height, self.round, block.hash, pol_round, self.address)
        out.append(Sign(proposal, block))

    def _build_block(self) -> Block:
        evidence = self.evidence_pool.for_block(self.state)
        last_commit = self._late.certificate_for_proposal(self.height, self.last_certificate)
        block = Block(
            height=self.height,
            prev_hash=self.state.last_block_hash,
            proposer=self.address,
            timestamp_ms=max(self._now, self.state.last_timestamp_ms),
            txs=(),
            evidence=evidence,
            last_commit=last_commit,
            state_hash=self.state.digest,
            late_precommits=self._late.to_include(self.state, last_commit),
        )
        if not self.mempool:
            return block
        # Transactions only while the proposal carrying the block still fits a message.
        budget = block_tx_budget(len(block.encoded), self.state.chain_id)
        txs = self.mempool.take(self.state.ledger, self.params.max_block_txs, budget)
        return replace(block, txs=txs) if txs else block

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
        held = self.votes.get((certificate.round, Kind.PRECOMMIT))
        self._late.decided(block.height, None if via_sync else held)
        self._reset(new_state, self._now)
        self._late.carry(held, self.state, certificate)
        resend = self._late.resend_uncounted(self.state, self.height)
        if resend:
            out.append(Rebroadcast(resend))
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

    def _reset(self, state: ChainState, started_ms: int) -> None:
        """A new height: the per-height state of Algorithm 1, and our bookkeeping of it, from scratch."""
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
        self._beats = Beats()
        self._learned = LearnedCertificates(self._certificates)
        self.height_started_ms = started_ms

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
            if vote.kind == Kind.PRECOMMIT and vote.validator != self.address:
                self._late.note_open(vote)

    def _note_sender(self, round_: int, sender: bytes) -> None:
        self.round_senders.setdefault(round_, {})[sender] = self.state.committee.power_of(sender)

    def _add_late_precommit(self, vote: Vote, out: list[Output]) -> None:
        """A precommit for a finalized height: kept by `late`; a double sign across a fork is evidence."""
        ours = self._late.add(vote, self.state, self.last_certificate)
        if ours is not None:
            self._record_equivocation(ours, vote, out)

    def _record_equivocation(self, a: Vote | Proposal, b: Vote | Proposal, out: list[Output]) -> None:
        self._record_evidence(make_evidence(a, b), out)

    def _record_evidence(self, evidence: Evidence, out: list[Output]) -> None:
        if self.evidence_pool.record(evidence, self.state):
            out.append(BroadcastEvidence(evidence))

    # ----------------------------------------------------------- catching up

    def _replay_buffered(self, out: list[Output]) -> None:
        """The messages kept for the height just opened, and the certificates next-height proposals carry."""
        for item in self._next.release(self.height):
            if isinstance(item, Vote) and item.height < self.height:
                self._add_late_precommit(item, out)  # a height we passed by sync
            elif isinstance(item, Vote):
                self._add_vote(item, out)
            elif item[0].height == self.height:
                self._add_proposal(item[0], item[1], out)
            else:
                self._learn_certificate(item[1].last_commit, out)

    def _learn_certificate(self, certificate: CommitCertificate | None, out: list[Output]) -> None:
        """Count the precommits of our height's certificate a next-height block carries (see `catchup`)."""
        for vote in self._learned.votes_from(self.state, certificate):
            self._add_vote(vote, out)

    def _maybe_sync(self, out: list[Output]) -> None:
        """Ask peers for blocks from our height, at the pace `SyncPacer` allows."""
        if self._sync.due(self._now, self.height):
            out.append(RequestSync(self.height))

    def _check_fork(self, theirs: CommitCertificate, out: list[Output]) -> None:
        """A proposal whose certificate finalizes another block than ours at the last height: a fork.

        The double signs both certificates prove become evidence (see
        `catchup.conflict_evidence`); the first time, we also ask for the
        other chain's recent blocks, to find where the chains parted.
        """
        ours = self.last_certificate
        if ours is None or not is_fork(ours, theirs):
            return
        ours = self._late.full_certificate(ours)
        if not is_sound(self.state, theirs, self._certificates):
            return
        out.extend(self.on_conflicting_certificate(theirs, ours))
        start = self._forks.first_sight(theirs.height)
        if start is not None:
            out.append(RequestSync(start))

    # ---------------------------------------------------------------- gossip

    def _heartbeat(self, timeout: Timeout, out: list[Output]) -> None:
        """Re-send what `gossip_set` picks while the height stays open; ask for blocks once stuck."""
        if timeout.height != self.height:
            return
        self._beats.tick()
        member = self.in_committee()
        relay = member and self.relays_others and is_relay_beat(self._beats.in_round)
        items = self.gossip_set(relay_others=relay) if member else ()
        if items:
            out.append(Rebroadcast(items))
        if (
            self._beats.in_height >= beats_before_stuck(self.params, member)
            and self.phase != Phase.NEW_HEIGHT
        ):
            self._maybe_sync(out)  # stuck, not merely pacing slots
        self._schedule_heartbeat(out)

    def _schedule_heartbeat(self, out: list[Output]) -> None:
        out.append(ScheduleTimeout(Timeout(self.height, 0, Phase.HEARTBEAT), heartbeat_ms(self.params)))
