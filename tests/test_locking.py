"""The locking rules of the propose step, pinned by hand and against the paper.

The hand-made case is the one a mutation audit found unpinned: the propose
step's proof-of-lock check (`lockedRound <= vr`, line 29 of Algorithm 1 in
Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus") could be
replaced with `True` and every other test still passed. The property test
then feeds random inputs for one height to the machine and to a small
transcription of the paper's upon-rules, and compares what each signs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from itertools import combinations
from typing import TypeVar

from hypothesis import event, given, settings
from hypothesis import strategies as st

from node.core.consensus import (
    MAX_BLOCKS_PER_VOTER,
    ConsensusMachine,
    Decided,
    Output,
    Phase,
    ScheduleTimeout,
    Sign,
    Timeout,
)
from node.core.messages import Block, Kind, Proposal, Vote
from node.core.state import block_problem, proposer_of
from tests.support.chain import ADDR, NAME_OF, make_block, prevote, proposal, signed, vote
from tests.test_consensus import (
    BLOCK_A,
    BLOCK_B,
    OTHERS,
    STATE,
    A,
    B,
    Node,
    locked_on_a_at_round_0,
    precommits,
    prevotes,
    restarted,
    the_sign,
    the_vote,
    to_round_1_by_nil_precommits,
)


def locked_on_a_at_round_1_after_a_silent_round_0(node: Node) -> None:
    """Round 0: alice sees no proposal and prevotes nil; the others precommit nil; round 1 locks on A.

    Nobody's round-0 prevote reaches alice yet, so the round-0 polka for B
    that arrives later is one that honest validators could have sent: they
    prevoted B at round 0, precommitted nil (no precommit quorum for B in
    time) and prevoted A at round 1 (none of them was locked).
    """
    node.echo(node.start())
    node.echo(node.timeout(Phase.PROPOSE, 0))
    node.votes(precommits(OTHERS, 0, None))
    node.echo(node.timeout(Phase.PRECOMMIT, 0))
    assert node.m.round == 1
    node.echo(node.propose(proposal("bob", 1, 1, A), BLOCK_A))
    out = node.votes(prevotes(OTHERS, 1, A))
    assert the_vote(out, Kind.PRECOMMIT).block_id == A
    node.echo(out)
    assert node.m.locked_block == BLOCK_A and node.m.locked_round == 1


def test_locked_at_round_1_a_proposal_citing_an_older_round_0_polka_for_b_gets_a_nil_prevote() -> None:
    """Line 29: a proof of lock older than our lock does not unlock us (lockedRound 1 > vr 0)."""
    node = Node("alice")
    locked_on_a_at_round_1_after_a_silent_round_0(node)
    node.votes(prevotes(OTHERS, 0, B))  # a full round-0 polka for B, late
    node.votes(precommits(OTHERS, 1, None))
    node.echo(node.timeout(Phase.PRECOMMIT, 1))
    assert node.m.round == 2 and node.m.phase == Phase.PROPOSE
    out = node.propose(proposal("dave", 1, 2, B, pol_round=0), BLOCK_B)
    assert the_vote(out, Kind.PREVOTE) == Vote(Kind.PREVOTE, 1, 2, None, ADDR["alice"])
    assert node.m.locked_block == BLOCK_A and node.m.locked_round == 1


def test_locked_at_round_1_a_proposal_citing_a_round_1_polka_for_b_is_prevoted() -> None:
    """The control: a proof of lock as recent as our lock (vr 1 == lockedRound 1) is enough."""
    node = Node("alice")
    locked_on_a_at_round_1_after_a_silent_round_0(node)
    node.votes([prevote(name, 1, 1, B) for name in OTHERS])  # they equivocate: a polka for B at round 1
    node.votes(precommits(OTHERS, 1, None))
    node.echo(node.timeout(Phase.PRECOMMIT, 1))
    out = node.propose(proposal("dave", 1, 2, B, pol_round=1), BLOCK_B)
    assert the_vote(out, Kind.PREVOTE).block_id == B


def test_a_nil_precommit_is_journaled_without_a_block_so_a_restart_keeps_the_lock_round() -> None:
    """A restarted node relocks on its latest precommit that carries a block; a nil one must not carry any."""
    node = Node("alice")
    locked_on_a_at_round_0(node)
    to_round_1_by_nil_precommits(node)
    node.echo(node.propose(proposal("bob", 1, 1, B), BLOCK_B))  # nil: locked on A
    out = node.votes(prevotes(OTHERS, 1, None))
    request = the_sign(out)
    assert request.item == Vote(Kind.PRECOMMIT, 1, 1, None, ADDR["alice"]) and request.block is None
    node.echo(out)
    again = restarted(node)
    assert again.m.locked_block == BLOCK_A and again.m.locked_round == 0


# ------------------------------------------------ against the paper, by property

PROPOSE_STEP, PREVOTE_STEP, PRECOMMIT_STEP = 0, 1, 2
FRESH = b"getValue()"  # what the paper's proposer proposes without a valid value: a new block

Message = tuple[object, ...]  # ("proposal", round, value, vr) | ("prevote" | "precommit", round, value id)


@dataclass
class Paper:
    """Algorithm 1 of "The latest gossip on BFT consensus" for one height, from the paper's text.

    Transcribed line by line, not from node.core.consensus: `2f+1` reads
    "more than 2/3 of the stake", `f+1` "more than 1/3", and a message is
    counted once per sender and value. The process receives its own
    messages like everyone's (the harness delivers them back).
    `valid` is the paper's valid(v), by value id.
    """

    me: bytes
    power: dict[bytes, int]
    proposer: Callable[[int], bytes]
    valid: dict[bytes, bool]
    round_p: int = 0
    step_p: int = PROPOSE_STEP
    decision: bytes | None = None
    locked_value: bytes | None = None
    locked_round: int = -1
    valid_value: bytes | None = None
    valid_round: int = -1
    proposals: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    votes: dict[tuple[str, int], dict[bytes | None, set[bytes]]] = field(default_factory=dict)
    senders: dict[int, set[bytes]] = field(default_factory=dict)
    first_time: set[tuple[int, int]] = field(default_factory=set)  # (line, round) of rules that fire once
    scheduled: set[tuple[str, int]] = field(default_factory=set)
    out: list[Message] = field(default_factory=list)
    timers: list[tuple[str, int]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # which rules fired how, for the test's statistics

    # the arithmetic of "2f+1" and "f+1", by stake

    def _weight(self, who: set[bytes]) -> int:
        return sum(self.power.get(p, 0) for p in who)

    def _two_f_plus_one(self, who: set[bytes]) -> bool:
        return 3 * self._weight(who) > 2 * sum(self.power.values())

    def _f_plus_one(self, who: set[bytes]) -> bool:
        return 3 * self._weight(who) > sum(self.power.values())

    def _for(self, kind: str, round_: int, value: bytes | None) -> set[bytes]:
        return self.votes.get((kind, round_), {}).get(value, set())

    def _any(self, kind: str, round_: int) -> set[bytes]:
        return set().union(*self.votes.get((kind, round_), {}).values())

    # inputs: each returns what the process broadcast and which timeouts it scheduled

    def start(self) -> tuple[list[Message], list[tuple[str, int]]]:
        self._start_round(0)
        return self._run()

    def on_proposal(self, round_: int, value: bytes, vr: int, sender: bytes) -> tuple[list[Message], list]:
        if sender == self.proposer(round_):
            self.proposals[round_] = (value, vr)
            self.senders.setdefault(round_, set()).add(sender)
        return self._run()

    def on_vote(
        self, kind: str, round_: int, value: bytes | None, sender: bytes
    ) -> tuple[list[Message], list]:
        self.votes.setdefault((kind, round_), {}).setdefault(value, set()).add(sender)
        self.senders.setdefault(round_, set()).add(sender)
        return self._run()

    def on_timeout(self, kind: str, round_: int) -> tuple[list[Message], list]:
        if (kind, round_) in self.scheduled:  # only a scheduled timeout is ever executed
            self.scheduled.discard((kind, round_))
            if kind == "propose" and round_ == self.round_p and self.step_p == PROPOSE_STEP:  # 57-60
                self._broadcast(("prevote", self.round_p, None))
                self.step_p = PREVOTE_STEP
            elif kind == "prevote" and round_ == self.round_p and self.step_p == PREVOTE_STEP:  # 61-64
                self._broadcast(("precommit", self.round_p, None))
                self.step_p = PRECOMMIT_STEP
            elif kind == "precommit" and round_ == self.round_p:  # 65-67
                self._start_round(self.round_p + 1)
        return self._run()

    # StartRound (lines 11-21)

    def _start_round(self, round_: int) -> None:
        self.round_p, self.step_p = round_, PROPOSE_STEP
        if self.proposer(round_) == self.me:
            value = self.valid_value if self.valid_value is not None else FRESH
            self._broadcast(("proposal", round_, value, self.valid_round))
        else:
            self._schedule("propose", round_)

    def _broadcast(self, message: Message) -> None:
        self.out.append(message)

    def _schedule(self, kind: str, round_: int) -> None:
        self.scheduled.add((kind, round_))
        self.timers.append((kind, round_))

    def _once(self, line: int, round_: int) -> bool:
        if (line, round_) in self.first_time:
            return False
        self.first_time.add((line, round_))
        return True

    def _run(self) -> tuple[list[Message], list[tuple[str, int]]]:
        """Fire upon-rules until none is enabled; what was broadcast and scheduled meanwhile."""
        while self.decision is None and any(
            rule()
            for rule in (
                self._line_22,
                self._line_28,
                self._line_34,
                self._line_36,
                self._line_44,
                self._line_47,
                self._line_49,
                self._line_55,
            )
        ):
            pass
        out, timers = self.out, self.timers
        self.out, self.timers = [], []
        return out, timers

    # the upon-rules; each returns whether it fired

    def _line_22(self) -> bool:
        proposal = self.proposals.get(self.round_p)
        if self.step_p != PROPOSE_STEP or proposal is None or proposal[1] != -1:
            return False
        v = proposal[0]
        if self.locked_round != -1 and self.locked_value != v:
            self.seen.add("line 22: a new value while locked on another")
        if self.valid[v] and (self.locked_round == -1 or self.locked_value == v):
            self._broadcast(("prevote", self.round_p, v))
        else:
            self._broadcast(("prevote", self.round_p, None))
        self.step_p = PREVOTE_STEP
        return True

    def _line_28(self) -> bool:
        proposal = self.proposals.get(self.round_p)
        if self.step_p != PROPOSE_STEP or proposal is None:
            return False
        v, vr = proposal
        if not (vr >= 0 and vr < self.round_p) or not self._two_f_plus_one(self._for("prevote", vr, v)):
            return False
        if self.valid[v] and (self.locked_round <= vr or self.locked_value == v):
            self._broadcast(("prevote", self.round_p, v))
        else:
            self._broadcast(("prevote", self.round_p, None))
        if vr < self.locked_round and v != self.locked_value:
            self.seen.add("line 28: a proof of lock older than a lock on another value")
        self.step_p = PREVOTE_STEP
        return True

    def _line_34(self) -> bool:
        if self.step_p != PREVOTE_STEP or not self._two_f_plus_one(self._any("prevote", self.round_p)):
            return False
        if not self._once(34, self.round_p):
            return False
        self._schedule("prevote", self.round_p)
        return True

    def _line_36(self) -> bool:
        proposal = self.proposals.get(self.round_p)
        if proposal is None or self.step_p < PREVOTE_STEP:
            return False
        v = proposal[0]
        if not (self._two_f_plus_one(self._for("prevote", self.round_p, v)) and self.valid[v]):
            return False
        if not self._once(36, self.round_p):
            return False
        if self.step_p == PREVOTE_STEP:
            self.seen.add("line 36: locked" if self.locked_round == -1 else "line 36: locked again")
            self.locked_value, self.locked_round = v, self.round_p
            self._broadcast(("precommit", self.round_p, v))
            self.step_p = PRECOMMIT_STEP
        self.valid_value, self.valid_round = v, self.round_p
        return True

    def _line_44(self) -> bool:
        if self.step_p != PREVOTE_STEP or not self._two_f_plus_one(self._for("prevote", self.round_p, None)):
            return False
        self._broadcast(("precommit", self.round_p, None))
        self.step_p = PRECOMMIT_STEP
        return True

    def _line_47(self) -> bool:
        if not self._two_f_plus_one(self._any("precommit", self.round_p)) or not self._once(47, self.round_p):
            return False
        self._schedule("precommit", self.round_p)
        return True

    def _line_49(self) -> bool:
        for r, (v, _vr) in sorted(self.proposals.items()):
            if self._two_f_plus_one(self._for("precommit", r, v)) and self.valid[v]:
                self.decision = v
                return True
        return False

    def _line_55(self) -> bool:
        later = [r for r, who in self.senders.items() if r > self.round_p and self._f_plus_one(who)]
        if not later:
            return False
        self._start_round(min(later))
        return True


STEP_NAME = {Phase.PROPOSE: "propose", Phase.PREVOTE: "prevote", Phase.PRECOMMIT: "precommit"}
KIND_NAME = {Kind.PREVOTE: "prevote", Kind.PRECOMMIT: "precommit"}
BLOCK_X = make_block(STATE, "carol", state_hash=b"\x03" * 32)  # invalid: valid(X) is false
ROUNDS = range(5)
PROPOSERS = [proposer_of(STATE, r) for r in range(64)]  # a machine at a round past 63 fails the test


def proposer(round_: int) -> bytes:
    return PROPOSERS[round_]


T = TypeVar("T")
ME = ADDR["alice"]


@cache
def signed_vote(name: str, kind: Kind, round_: int, block_id: bytes | None) -> Vote:
    return vote(name, kind, 1, round_, block_id)


class Lockstep:
    """alice's machine and the paper's process, fed the same inputs; after each, both must agree.

    What is compared: the messages each asks to sign (proposals, prevotes,
    precommits), the prevote and precommit timeouts each schedules, the
    lock and the valid value, and the decision. The machine's own messages
    are signed and delivered back to both, as the paper's broadcast
    reaches its sender too. Two things of the machine's that the paper does
    not have are left out of the comparison: its proposer also arms a
    propose timeout (harmless: its own proposal reaches it first), and on
    deciding it precommits the decided block if it had not (a downtime
    matter; the height is over).
    """

    def __init__(self) -> None:
        self.machine = ConsensusMachine(STATE, ME)
        self.blocks = {A: BLOCK_A, B: BLOCK_B, BLOCK_X.hash: BLOCK_X}
        valid = {A: True, B: True, BLOCK_X.hash: False}
        power = {ADDR[name]: STATE.committee.power_of(ADDR[name]) for name in ("alice", *OTHERS)}
        self.paper = Paper(ME, power, proposer, valid)
        self.own_block: Block | None = None
        self.pending: list[Timeout] = []
        self.decided = False

    def start(self) -> None:
        self.check(self.machine.start(0), self.paper.start())

    def propose(self, round_: int, block: Block, pol_round: int) -> None:
        name = NAME_OF[proposer(round_)]
        item = proposal(name, 1, round_, block.hash, pol_round)
        out = self.machine.on_proposal(item, block, 0)
        self.check(out, self.paper.on_proposal(round_, block.hash, pol_round, item.proposer))

    def vote(self, name: str, kind: Kind, round_: int, block_id: bytes | None) -> None:
        out = self.machine.on_vote(signed_vote(name, kind, round_, block_id), 0)
        self.check(out, self.paper.on_vote(KIND_NAME[kind], round_, block_id, ADDR[name]))

    def fire(self, timeout: Timeout) -> None:
        self.pending.remove(timeout)
        out = self.machine.on_timeout(timeout, 0)
        self.check(out, self.paper.on_timeout(STEP_NAME[timeout.phase], timeout.round))

    def check(self, out: list[Output], paper: tuple[list[Message], list[tuple[str, int]]]) -> None:
        said, timers = paper
        decided = [o.block.hash for o in out if isinstance(o, Decided) and o.via_sync is False]
        assert decided == ([self.paper.decision] if self.paper.decision is not None else [])
        if decided:
            self.decided = True
            return
        signs = [o for o in out if isinstance(o, Sign)]
        assert sorted(map(repr, map(self.message, signs))) == sorted(map(repr, said))
        scheduled = [
            o.timeout for o in out if isinstance(o, ScheduleTimeout) and o.timeout.phase in STEP_NAME
        ]
        self.pending += scheduled
        armed = [(STEP_NAME[t.phase], t.round) for t in scheduled]
        armed = [t for t in armed if t[0] != "propose" or proposer(t[1]) != ME]
        assert sorted(armed) == sorted(timers)
        m = self.machine
        assert (m.locked_round, m.locked_block.hash if m.locked_block else None) == (
            self.paper.locked_round,
            self.paper.locked_value,
        )
        assert (m.valid_round, m.valid_block.hash if m.valid_block else None) == (
            self.paper.valid_round,
            self.paper.valid_value,
        )
        for sign in signs:  # delivered back to both, one at a time
            if not self.decided:
                self.deliver_own(sign)

    def message(self, sign: Sign) -> Message:
        """What the machine asks to sign, as the paper writes it.

        A proposal of a block none of the inputs carried, with no proof of
        lock, is the paper's getValue(): it must be a new valid block.
        """
        item = sign.item
        if isinstance(item, Vote):
            return (KIND_NAME[item.kind], item.round, item.block_id)
        if item.pol_round == -1 and item.block_id not in (A, B, BLOCK_X.hash):
            assert sign.block is not None and block_problem(STATE, sign.block) is None
            return ("proposal", item.round, FRESH, -1)
        return ("proposal", item.round, item.block_id, item.pol_round)

    def deliver_own(self, sign: Sign) -> None:
        item = sign.item
        if isinstance(item, Proposal):
            assert sign.block is not None and sign.block.hash == item.block_id
            if item.block_id not in self.blocks:  # getValue(): the paper now knows it, and it is valid
                self.blocks[item.block_id] = self.own_block = sign.block
                self.paper.valid[item.block_id] = True
            mine = signed(item, "alice")
            assert isinstance(mine, Proposal)
            out = self.machine.on_proposal(mine, sign.block, 0)
            self.check(out, self.paper.on_proposal(item.round, item.block_id, item.pol_round, ME))
        else:
            self.check(
                self.machine.on_vote(signed_vote("alice", item.kind, item.round, item.block_id), 0),
                self.paper.on_vote(KIND_NAME[item.kind], item.round, item.block_id, ME),
            )


INDEX = tuple(st.integers(0, n) for n in range(64))  # built once: a strategy per draw is what costs
ACTIONS = st.sampled_from(("proposal", "votes", "votes", "votes", "timeout", "next round"))
KINDS = st.sampled_from((Kind.PREVOTE, Kind.PREVOTE, Kind.PREVOTE, Kind.PRECOMMIT))
BLOCKS = st.sampled_from((BLOCK_A, BLOCK_B, BLOCK_X))
SENDERS = st.sampled_from((*(OTHERS,) * 6, *((n,) for n in OTHERS), *combinations(OTHERS, 2)))


def pick(data: st.DataObject, items: list[T], label: str) -> T:
    return items[data.draw(INDEX[len(items) - 1], label=label)]


def around(round_now: int, rounds: list[int]) -> list[int]:
    """`rounds`, weighted towards the current one: where the locking rules act."""
    return [round_now] * 2 * len(rounds) * (round_now in rounds) + rounds


def proof_of_lock(paper: Paper, value: bytes, round_: int) -> list[int]:
    """A proposal's `vr`: any round before it, half the time one with a polka for its value."""
    polkas = [r for r in range(round_) if len(paper.votes.get(("prevote", r), {}).get(value, ())) >= 3]
    anything = list(range(-1, round_))
    return polkas * (len(anything) // max(len(polkas), 1)) + anything


def cast(
    run: Lockstep,
    values_of: dict[tuple[str, Kind, int], set[bytes | None]],
    name: str,
    kind: Kind,
    round_: int,
    block_id: bytes | None,
) -> None:
    """`name`'s vote, unless the height is decided or it already voted four other values there."""
    values = values_of.setdefault((name, kind, round_), set())
    if not run.decided and (block_id in values or len(values) < MAX_BLOCKS_PER_VOTER):
        values.add(block_id)
        run.vote(name, kind, round_, block_id)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_machine_signs_and_locks_what_algorithm_1_says_for_any_inputs_of_one_height(
    data: st.DataObject,
) -> None:
    """Random proposals (A, B or an invalid X, any proof-of-lock round), votes and fired timeouts.

    Others may equivocate, up to the four values per validator, round and
    kind that a vote set counts (node.core.consensus.MAX_BLOCKS_PER_VOTER);
    at most one proposal per round, as the paper's rules assume of a
    proposal they act on.
    """
    run = Lockstep()
    run.start()
    values_of: dict[tuple[str, Kind, int], set[bytes | None]] = {}
    for _ in range(data.draw(st.integers(1, 80), label="inputs")):
        if run.decided:
            break
        action = data.draw(ACTIONS, label="action")
        if action == "proposal":
            rounds = [r for r in ROUNDS if proposer(r) != ME and r not in run.paper.proposals]
            if not rounds:
                continue
            round_ = pick(data, around(run.paper.round_p, rounds), "round")
            block = data.draw(BLOCKS, label="block")
            run.propose(round_, block, pick(data, proof_of_lock(run.paper, block.hash, round_), "pol_round"))
        elif action == "votes":
            kind = data.draw(KINDS, label="kind")
            round_ = pick(data, around(run.paper.round_p, list(ROUNDS)), "round")
            choices: list[bytes | None] = [A, B, BLOCK_X.hash, None]
            choices += [run.own_block.hash] if run.own_block else []
            if kind == Kind.PREVOTE and round_ in run.paper.proposals:  # half the time the proposed value
                choices = [run.paper.proposals[round_][0]] * len(choices) + choices
            block_id = pick(data, choices, "value")
            for name in data.draw(SENDERS, label="senders"):
                cast(run, values_of, name, kind, round_, block_id)
        elif action == "next round":  # the others precommit nil and the precommit timeout fires
            round_ = run.paper.round_p
            for name in OTHERS:
                cast(run, values_of, name, Kind.PRECOMMIT, round_, None)
            timeout = Timeout(1, round_, Phase.PRECOMMIT)
            if timeout in run.pending and not run.decided:
                run.fire(timeout)
        elif run.pending:
            run.fire(pick(data, run.pending, "timeout"))
    for note in sorted(run.paper.seen) + (["decided"] if run.decided else []):
        event(note)
