"""The glue between one validator's state machine and the outside world.

The same driver runs in the simulator and in a real node: it admits raw
bytes, dispatches them to the machine, and turns the machine's outputs into
effects through a small `Effects` interface (send, schedule, persist, log).
It takes no hooks from either: what differs between them is behind
`Effects` (a simulated network can address single nodes, a broker cannot:
`Effects.audience`). Signing goes through the guarded signer; a Byzantine
behaviour, when set, is applied here and only here (see
node/core/behaviours.py for what each does). Several drivers behind one
chain (a node hosting several keys) are `node.core.hosting.Host`'s job.

Past 500 lines: every output of the machine passes here on its way to an
effect, and what may stop or bend it (a Byzantine behaviour, the wait
before signing of `node.core.doppelganger`, the sync answers) decides on
that one path; the rules themselves live in their own modules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from node.core import doppelganger, startgate
from node.core.admission import (
    AdmissionContext,
    Admitted,
    AuthCache,
    EvidenceMsg,
    ProposalMsg,
    Rejected,
    StatusMsg,
    SyncRequest,
    SyncResponse,
    TxMsg,
    admit,
)
from node.core.behaviours import (
    COLLUDING_MODES,
    EQUIVOCATING_MODES,
    Equivocator,
    amnesiac_prevote,
    is_strike_height,
    late_delay_ms,
    withhold_recipients,
)
from node.core.channels import EVIDENCE as EVIDENCE_CHANNEL
from node.core.channels import SYNC_REQ
from node.core.checkpoint import TrustedPath, trusting
from node.core.codec import MAX_MESSAGE_BYTES
from node.core.consensus import (
    BroadcastEvidence,
    ConsensusMachine,
    Decided,
    Output,
    Rebroadcast,
    RequestSync,
    RoundTimedOut,
    ScheduleTimeout,
    Sign,
    Timeout,
)
from node.core.envelopes import evidence_bytes, signed_item_bytes, sync_request_bytes, sync_response_bytes
from node.core.events import (
    CHECKPOINT,
    DOPPELGANGER,
    PROPOSAL_UNSENT,
    SIGNING_ENABLED,
    SIGNING_KEY,
    TX_REFUSED,
)
from node.core.grinding import Grinder, finish_proposal
from node.core.keys import Keypair
from node.core.memory import ProtocolMemory
from node.core.mempool import Refusal, refusal_log_fields
from node.core.messages import Block, CommitCertificate, Proposal, Vote, signer_of
from node.core.query import epoch_log, evidence_log, finalized_log, ledger_event_logs, round_timeout_log
from node.core.routes import item_channels
from node.core.signer import GuardedSigner
from node.core.state import ChainState, block_problem, proposer_of, signing_key_at
from node.core.syncguard import SyncGuard, answer_batch

SYNC_BATCH = 20
LISTEN_CHECK_MS = 250  # how often a node listening before signing looks whether it may sign now
WITHHELD_KEPT = 8  # signatures the machine asked for while we listened, kept to make once we may


@dataclass(frozen=True)
class Audience:
    """The nodes a validator can address one by one, grouped the way `split` and `withhold` need.

    Honest nodes in two halves (a split equivocator shows each half one
    version) and the colluding Byzantine nodes (shown everything).
    """

    first_half: tuple[str, ...]
    second_half: tuple[str, ...]
    colluders: tuple[str, ...]

    @property
    def honest(self) -> tuple[str, ...]:
        return self.first_half + self.second_half


class Effects(Protocol):
    """What a driver needs from its environment (simulated or real)."""

    def now_ms(self) -> int: ...

    def broadcast(self, channel: str, data: bytes) -> None: ...

    def send_to(self, node: str, data: bytes) -> None: ...

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None: ...

    def finalized(self, decided: Decided) -> None:
        """Persist a finalized block durably (called before anything else learns of it)."""

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]: ...

    def log(self, event: dict[str, Any]) -> None: ...

    def audience(self) -> Audience | None:
        """Whom `send_to` can reach one by one, or None when every send reaches everyone.

        A broker broadcast reaches every subscriber, so a real node answers
        None and its `split` and `withhold` modes send like everyone else;
        a simulated network can address single nodes.
        """


@dataclass
class DriverStats:
    rejected: Counter[str]
    round_timeouts: int = 0
    signed: int = 0
    synced_blocks: int = 0  # blocks finalized from sync answers (catch-up), ever
    synced_to: int = 0  # the height of the last of them
    withheld: int = 0  # signatures not made while listening before signing (node.core.doppelganger)
    unsent_proposals: int = 0  # signed, but too large for any peer to accept
    sync_answers: int = 0  # sync answers taken (answers to our own requests, each once)


class Driver:
    """Runs one validator: admission, dispatch, outputs, Byzantine behaviour."""

    def __init__(
        self,
        name: str,
        keypair: Keypair,
        signer: GuardedSigner,
        effects: Effects,
        behaviour: str | None = None,
    ) -> None:
        self.name = name
        self.keypair = keypair
        self.validator = signer.validator  # the pool address this driver signs as
        self.signer = signer
        self.effects = effects
        self.behaviour = behaviour
        self.equivocator = Equivocator(signer.chain_id, keypair) if behaviour in EQUIVOCATING_MODES else None
        self._strike_height: int | None = None  # coordinated: the height the coalition forks at, once known
        self.machine: ConsensusMachine | None = None
        self.waiting: ChainState | None = None  # before boot: the state messages are admitted against
        self.chain_began = False  # a vote or proposal arrived while waiting: someone signs already
        self.incarnation = 0
        self.stats = DriverStats(Counter())
        self.peers: dict[str, StatusMsg] = {}
        self._applied: ChainState | None = None  # the state the next decided block applies to (for its logs)
        self._held: set[bytes] = set()  # late mode: signatures of our messages not yet released
        # A node hosting several keys asks its peers for blocks once, through its primary key: the
        # answers reach every key, and each key asking would multiply the requests and the answers.
        self.requests_sync = True
        # Doppelganger protection (node.core.doppelganger), when the runtime asks for it: a listening
        # wait before the first signature, and a watch for messages of our key we did not sign.
        self.listening: doppelganger.Listening | None = None
        self._withheld: list[Sign] = []
        self.watch_own = False
        self.halted: str | None = None  # why this key signs no more (another copy of it signs)
        self.sync = SyncGuard()  # nonces of our requests, requests answered, answers taken
        self._context: tuple[ChainState, int, AdmissionContext] | None = None  # the last one `admit` made
        self.memory: ProtocolMemory | None = None  # where what penalties depend on is kept (node.core.memory)
        self.trust: TrustedPath | None = None  # --trust: no block off the path to a trusted checkpoint
        self.grind_variants = 1  # `grind`: blocks tried at each boundary it proposes (node.core.grinding)

    @property
    def chain_id(self) -> str:
        return self.signer.chain_id

    # ------------------------------------------------------------ lifecycle

    def boot(
        self, state: ChainState, last_certificate: CommitCertificate | None, **machine_args: Any
    ) -> None:
        """(Re)start the machine from persisted state, replaying our journal first."""
        self.waiting = None
        if self.trust is not None:
            check = machine_args.get("check_block", block_problem)
            machine_args = {**machine_args, "check_block": trusting(self.trust, check)}
        self.machine = ConsensusMachine(
            state, self.validator, last_certificate=last_certificate, **machine_args
        )
        self._applied = state
        now = self.effects.now_ms()
        if self.listening is not None:
            self.listening.horizon = max(self.listening.horizon, self.machine.height)
        if self.memory is not None:
            self.run(self.machine.recall(self.memory.notes(self.validator)))
        self.run(self.machine.restore(self.signer.journal(self.machine.height), now))
        self.run(self.machine.start(now))

    def listen_first(self, quiet_ms: int) -> None:
        """Before `boot`: sign nothing until the chain's height is reached and our key has been quiet."""
        self.watch_own = True
        self.listening = doppelganger.begin(self.effects.now_ms(), quiet_ms, 0)
        self._withheld = []
        self._check_listening(self.incarnation)

    def _check_listening(self, incarnation: int) -> None:
        """While listening, look every `LISTEN_CHECK_MS` whether the wait is over; then sign what the
        machine asked for meanwhile that is still its current step (nobody else may ever ask again:
        a committee that all waited has no prevotes to time out on)."""
        machine = self.machine
        if incarnation != self.incarnation or self.listening is None:
            return
        if machine is not None and self._may_sign_now(machine):
            pending, self._withheld = self._withheld, []
            current = [o for o in pending if (o.item.height, o.item.round) == (machine.height, machine.round)]
            self.run(list(current))
            return
        self.effects.schedule(LISTEN_CHECK_MS, lambda: self._check_listening(incarnation))

    def await_boot(self, state: ChainState) -> None:
        """Admit messages against `state` before the machine runs, so statuses are heard (start gate)."""
        self.waiting = state

    def stop(self) -> None:
        self.machine = None
        self.waiting = None
        self.incarnation += 1
        self._held.clear()  # held messages die with the process (their releases check the incarnation)

    # -------------------------------------------------------------- inbound

    def receive(self, data: bytes) -> Admitted | Rejected | None:
        """Admit raw bytes and act on them; returns what admission made of them."""
        message = self.admit(data)
        if message is not None and not isinstance(message, Rejected):
            self.dispatch(message)
        return message

    def admit(self, data: bytes, cache: AuthCache | None = None) -> Admitted | Rejected | None:
        """Authenticate raw bytes against our current view, counting rejections (None: not running).

        `cache` shares authentication results between drivers of one process
        (see `admission.admit`); the result is the same with or without it.
        """
        machine = self.machine
        if machine is not None:
            state, height = machine.state, machine.height
        elif self.waiting is not None:
            state, height = self.waiting, self.waiting.next_height
        else:
            return None
        made = self._context
        if made is None or made[0] is not state or made[1] != height:  # made once per state and height
            oldest = state.participation[0].height if state.participation else None
            ctx = AdmissionContext(
                self.chain_id, state.public_keys, height, oldest, key_history=state.key_history
            )
            made = self._context = (state, height, ctx)
        message = admit(data, made[2], cache)
        if isinstance(message, Rejected):
            self.stats.rejected[message.reason] += 1
        return message

    def dispatch(self, message: Admitted) -> None:
        if isinstance(message, StatusMsg):
            # Kept while waiting to start too (the start gate reads them); a replayed older copy changes nothing.
            if startgate.newer(self.peers.get(message.node), message):
                self.peers[message.node] = message
            return
        machine = self.machine
        if machine is None:
            if self.waiting is not None and isinstance(message, Vote | ProposalMsg):
                self.chain_began = True
            return
        now = self.effects.now_ms()
        if self.watch_own and isinstance(message, Vote | ProposalMsg):
            self._watch_own(message)
            if self.machine is None:
                return
        if isinstance(message, ProposalMsg) and self.equivocator:
            self.equivocator.observe_proposal(message.proposal, message.block)
        if isinstance(message, Vote | ProposalMsg) and self._shuns(message, machine):
            return
        if isinstance(message, Vote):
            self.run(machine.on_vote(message, now))
        elif isinstance(message, ProposalMsg):
            self.run(machine.on_proposal(message.proposal, message.block, now))
        elif isinstance(message, EvidenceMsg):
            self.run(machine.on_evidence(message.evidence))
        elif isinstance(message, SyncRequest):
            self._answer_sync(message)
        elif isinstance(message, SyncResponse):
            if self.requests_sync and not self._take_sync_answer(message):
                return
            # Every certificate the answer carries, once: the first block's last
            # commit, then each block's own (the next block's last commit repeats it).
            first_commit = message.blocks[0][0].last_commit if message.blocks else None
            if first_commit is not None:
                self._check_fork(first_commit)
            for block, cert in message.blocks:
                if self.machine is not None:
                    self._check_fork(cert)
                    if self.trust is not None and self.trust.active(self.machine.height):
                        self.trust.offer(block, cert)
                    else:
                        self.run(self.machine.on_commit(block, cert, self.effects.now_ms()))
            self._decide_trusted_path()
        elif isinstance(message, TxMsg):
            self._count_refusal(machine.on_tx(message.tx))

    def _count_refusal(self, refusal: Refusal | None) -> None:
        """A refused transaction is counted by reason; logged only when its sender deserves an answer."""
        if refusal is None:
            return
        self.stats.rejected[f"tx_{refusal.reason}"] += 1
        if refusal.report:
            self.effects.log({"event": TX_REFUSED, **refusal_log_fields(refusal)})

    def _watch_own(self, message: Vote | ProposalMsg) -> None:
        """A message signed by our key that we did not just send: adopt it while listening, else a twin."""
        item, block = (message, None) if isinstance(message, Vote) else (message.proposal, message.block)
        if signer_of(item) != self.validator or self.halted:
            return
        why = doppelganger.on_own_message(self.listening, self.signer, item, block, self.effects.now_ms())
        if why is not None:
            self.halted = (
                why  # another copy of this key signs: sign nothing more (the runtime stops the node)
            )
            self.effects.log(
                {"event": DOPPELGANGER, "validator": self._name_of(self.validator), "height": item.height}
                | {"round": item.round, "why": why}
            )

    def _name_of(self, address: bytes) -> str:
        machine = self.machine
        return (machine.state.names if machine is not None else {}).get(address, address.hex()[:8])

    def _may_sign_now(self, machine: ConsensusMachine) -> bool:
        """False while listening before signing (the first True is logged and ends the wait) or halted."""
        if self.listening is not None:
            now = self.effects.now_ms()
            opened = doppelganger.try_open(
                self.listening, machine.state, machine.height, self.peers.values(), (self.validator,), now
            )
            if opened is None:
                return False
            self.listening = None
            self.effects.log(
                {"event": SIGNING_ENABLED, "validator": self._name_of(self.validator)}
                | opened
                | {"withheld": self.stats.withheld}
            )
        return self.halted is None

    def _check_fork(self, cert: CommitCertificate) -> None:
        """A certificate for a height we finalized another block at: the machine derives evidence."""
        machine = self.machine
        if machine is None or cert.height >= machine.height:
            return
        ours = self.effects.chain_range(cert.height, 1)
        if ours and ours[0][1].block_id != cert.block_id:
            self.run(machine.on_conflicting_certificate(cert, ours[0][1]))

    def _decide_trusted_path(self) -> None:
        """Under --trust, decide the held blocks once they link our tip to the checkpoint, oldest first."""
        trust, machine = self.trust, self.machine
        if trust is None or machine is None or not trust.active(machine.height):
            return
        refused, trust.refused = trust.refused, 0
        if refused:
            self.stats.rejected["untrusted_history"] += refused
        for block, cert in trust.path_from(machine.state.last_block_hash, machine.height):
            if self.machine is not None:
                self.run(self.machine.on_commit(block, cert, self.effects.now_ms()))
        for stray in trust.strays(self.machine.height if self.machine else 0):
            self._check_fork(stray)  # the history the checkpoint ruled out, reported

    def _take_sync_answer(self, answer: SyncResponse) -> bool:
        """Whether an answer is to a request of ours and new; if not, it is counted as dropped.

        A key that asks for no blocks (a co-hosted one) takes what its host
        hands it: the host's primary asked, and took the answer already.
        """
        problem = self.sync.answer_problem(answer.sender, answer.nonce)
        if problem is not None:
            self.stats.rejected[problem] += 1
            return False
        self.stats.sync_answers += 1
        return True

    def _answer_sync(self, request: SyncRequest) -> None:
        """Answer a request once, within its requester's allowance and the answer byte budget."""
        if self.behaviour == "silent" or request.reply_to == self.name:  # nor our own host's request
            return
        now = self.effects.now_ms()
        problem = self.sync.request_problem(request.sender, request.nonce)
        batch = [] if problem else answer_batch(self.effects.chain_range(request.from_height, SYNC_BATCH))
        data = sync_response_bytes(self.chain_id, request.nonce, batch, *self.sealing()) if batch else b""
        if data:  # nothing to send costs the requester nothing
            problem = self.sync.spend(request.sender, len(data), now)
        if problem is not None:
            self.stats.rejected[problem] += 1
        elif data:
            self.effects.send_to(request.reply_to, data)

    # ------------------------------------------------------------- outbound

    def sealing(self) -> tuple[Keypair, bytes]:
        """(key, sender) for messages without a height: the key in force now when this node holds it."""
        machine = self.machine
        current = machine.state.public_keys.get(self.validator) if machine is not None else None
        return self.signer.ring.get(current) or self.keypair, self.validator

    def _send(self, channel: str, data: bytes) -> None:
        if self.behaviour != "silent":
            self.effects.broadcast(channel, data)

    def _send_signed(self, item: Vote | Proposal, data: bytes) -> None:
        """A vote or proposal, on the channels of those who must hear it (see `node.core.routes`)."""
        machine = self.machine
        if machine is None:
            return
        for channel in item_channels(item, machine.state):
            self._send(channel, data)

    def request_blocks(self, from_height: int) -> None:
        """Ask peers for finalized blocks from `from_height` on (even a silent validator follows the chain)."""
        nonce = self.sync.issue(self.effects.now_ms())
        self.effects.broadcast(
            SYNC_REQ, sync_request_bytes(self.chain_id, from_height, self.name, nonce, *self.sealing())
        )

    def run(self, outputs: list[Output]) -> None:
        """Carry out outputs in order; outputs they cause are queued behind them."""
        queue = list(outputs)
        while queue and self.machine is not None:
            queue.extend(self._handle(queue.pop(0)))
        self._keep_notes()

    def _keep_notes(self) -> None:
        """Hand what the machine noted for the durable memory to it, once per input the machine took."""
        machine = self.machine
        if self.memory is not None and machine is not None:
            notes = machine.memory_changes()
            if notes:
                self.memory.keep_notes(self.validator, notes)

    def _handle(self, output: Output) -> list[Output]:
        machine = self.machine
        assert machine is not None
        if isinstance(output, Sign):
            return self._sign_and_send(output, machine)
        if isinstance(output, ScheduleTimeout):
            incarnation = self.incarnation
            self.effects.schedule(output.delay_ms, lambda: self._on_timeout(output.timeout, incarnation))
        elif (
            isinstance(output, BroadcastEvidence) and self.behaviour not in COLLUDING_MODES
        ):  # colluders do not report each other
            self._send(EVIDENCE_CHANNEL, evidence_bytes(self.chain_id, output.evidence, *self.sealing()))
            self.effects.log(evidence_log(machine.state, output.evidence))
        elif isinstance(output, RequestSync) and self.requests_sync:
            trust, height = self.trust, output.from_height
            self.request_blocks(
                trust.ask_from(height, SYNC_BATCH) if trust and trust.active(height) else height
            )
        elif isinstance(output, Decided):
            self._on_decided(output)
        elif isinstance(output, RoundTimedOut):
            self.stats.round_timeouts += 1
            self.effects.log(round_timeout_log(output.height, output.round, output.phase.name.lower()))
        elif isinstance(output, Rebroadcast) and self.behaviour != "split":
            for item, block in output.items:
                if item.signature in self._held:
                    continue  # late: not even a re-send may come before the release
                if self.behaviour == "coordinated" and item.height == self._strike_height:
                    continue  # a re-send would show each half what the other half was shown
                if self.behaviour == "withhold" and signer_of(item) == self.validator:
                    self._withhold(item, signed_item_bytes(self.chain_id, item, block))
                else:
                    self._send_signed(item, signed_item_bytes(self.chain_id, item, block))
        return []

    def _sign_and_send(self, output: Sign, machine: ConsensusMachine) -> list[Output]:
        if (self.listening is not None or self.halted is not None) and not self._may_sign_now(machine):
            self.stats.withheld += 1
            if self.listening is not None:
                self._withheld = [*self._withheld[-(WITHHELD_KEPT - 1) :], output]
            return []
        if self.behaviour == "amnesia" and isinstance(output.item, Vote):
            output = self._forget_lock(output, machine)
        if isinstance(output.item, Proposal) and output.item.pol_round < 0:
            finished = finish_proposal(output, machine.state, self.keypair.seed, self._grinder())
            if finished is None:
                return []  # `grind` withholds its block
            output = finished
        key = signing_key_at(machine.state, self.validator, output.item.height)
        signed = self.signer.sign(output.item, output.block, output.justification, key)
        if signed is None:
            return []
        self.stats.signed += 1
        sendable = self._sendable(signed, output.block)
        if sendable and (self.equivocator is None or not self._equivocates_at(signed.height, machine)):
            self._send_own(signed, signed_item_bytes(self.chain_id, signed, output.block), machine)
        elif sendable:
            twin = self.equivocator.twin(signed, output.block, self.signer.ring.get(key))
            self._send_conflicting((signed, output.block), twin)
        now = self.effects.now_ms()
        if isinstance(signed, Proposal):
            assert output.block is not None
            return machine.on_proposal(signed, output.block, now)
        return machine.on_vote(signed, now)

    def _grinder(self) -> Grinder | None:
        """`grind`: whom it grinds for (its colluders, by name) and how many blocks it tries."""
        if self.behaviour != "grind":
            return None
        audience = self.effects.audience()
        return Grinder(audience.colluders if audience else (), self.grind_variants)

    def _sendable(self, item: Vote | Proposal, block: Block | None) -> bool:
        """False for a proposal whose envelope is over the message limit: it is logged and counted, not sent.

        Block building keeps this from happening (node.core.mempool.block_tx_budget); a proposal
        that gets here anyway (a re-proposed block, evidence and late precommits past the limit)
        would be refused by every peer and dropped by the transport without a word.
        """
        if not isinstance(item, Proposal):
            return True
        size = len(signed_item_bytes(self.chain_id, item, block))
        if size <= MAX_MESSAGE_BYTES:
            return True
        self.stats.unsent_proposals += 1
        self.effects.log(
            {
                "event": PROPOSAL_UNSENT,
                "height": item.height,
                "round": item.round,
                "bytes": size,
                "limit": MAX_MESSAGE_BYTES,
                "txs": len(block.txs) if block is not None else 0,
            }
        )
        return False

    def _send_own(self, signed: Vote | Proposal, data: bytes, machine: ConsensusMachine) -> None:
        """Send a message we just signed: at once, or as `late` and `withhold` distort it."""
        if self.behaviour == "late":
            self._held.add(signed.signature)
            incarnation = self.incarnation
            self.effects.schedule(
                late_delay_ms(signed, machine.params),
                lambda: self._release(signed, data, incarnation),
            )
        elif self.behaviour == "withhold":
            self._withhold(signed, data)
        else:
            self._send_signed(signed, data)

    def _release(self, signed: Vote | Proposal, data: bytes, incarnation: int) -> None:
        """Late mode: the step's timeout has passed, send what we held (unless we crashed since)."""
        if incarnation == self.incarnation and self.machine is not None:
            self._held.discard(signed.signature)
            self._send_signed(signed, data)

    def _equivocates_at(self, height: int, machine: ConsensusMachine) -> bool:
        """Whether a message of `height` goes out with its twin: always, but for `coordinated` at its strike only."""
        return self.behaviour != "coordinated" or height == self._strike(machine)

    def _strike(self, machine: ConsensusMachine) -> int | None:
        """`coordinated`: the height the coalition forks at, once the chain has reached it."""
        if self._strike_height is None:
            audience = self.effects.audience()
            coalition = frozenset((self.name, *audience.colluders)) if audience is not None else frozenset()
            proposer = machine.state.names.get(proposer_of(machine.state, 0))
            if is_strike_height(machine.height, proposer, coalition):
                self._strike_height = machine.height
        return self._strike_height

    def _shuns(self, message: Vote | ProposalMsg, machine: ConsensusMachine) -> bool:
        """`coordinated`: at the strike, a member takes nothing for the second half's block.

        Honest nodes relay what they hear, so members would otherwise see both
        blocks reach a quorum and split between the forks; kept on the first
        half's, the coalition gives that fork the votes to live on.
        """
        if self.behaviour != "coordinated" or self.equivocator is None:
            return False
        item = message if isinstance(message, Vote) else message.proposal
        if item.height != self._strike(machine):
            return False
        seen = self.equivocator.proposals_seen.get((item.height, item.round), [])
        return len(seen) >= 2 and item.block_id is not None and item.block_id != min(seen)

    def _withhold(self, item: Vote | Proposal, data: bytes) -> None:
        """Withhold mode: our message to the colluders and a seeded half of the honest nodes only.

        Without an audience (a real node, where a broadcast reaches everyone)
        there is nobody to leave out, so it is sent as usual.
        """
        audience = self.effects.audience()
        if audience is None:
            self._send_signed(item, data)
            return
        for node in (*withhold_recipients(item, audience.honest), *audience.colluders):
            self.effects.send_to(node, data)

    def _forget_lock(self, output: Sign, machine: ConsensusMachine) -> Sign:
        """Amnesia: prevote this round's proposal instead of nil or our locked block."""
        assert isinstance(output.item, Vote)
        entry = machine.proposals.get(output.item.round)
        locked = machine.locked_block.hash if machine.locked_block is not None else None
        vote = amnesiac_prevote(output.item, locked, entry[1].hash if entry is not None else None)
        if vote is output.item:
            return output
        self.effects.log(
            {
                "event": "amnesia",
                "height": vote.height,
                "round": vote.round,
                "locked_round": machine.locked_round,
            }
        )
        return replace(output, item=vote)

    def _send_conflicting(
        self, honest: tuple[Vote | Proposal, Block | None], twin: tuple[Vote | Proposal, Block | None]
    ) -> None:
        """Equivocate: both versions to everyone, or one version per half in split mode."""
        audience = self.effects.audience() if self.behaviour in COLLUDING_MODES else None
        if audience is None:
            for item, block in (honest, twin):
                self._send_signed(item, signed_item_bytes(self.chain_id, item, block))
            return
        first, second = Equivocator.split_order(honest, twin)
        data = [signed_item_bytes(self.chain_id, item, block) for item, block in (first, second)]
        for node in audience.first_half:
            self.effects.send_to(node, data[0])
        for node in audience.second_half:
            self.effects.send_to(node, data[1])
        for node in audience.colluders:  # `coordinated` stays on the first half's fork, so it lives on
            for payload in data[:1] if self.behaviour == "coordinated" else data:
                self.effects.send_to(node, payload)

    def _log_key_change(self, before: ChainState | None, state: ChainState) -> None:
        """Say when the chain hands this validator a new signing key, and whether this node holds it."""
        key = state.public_keys.get(self.validator)
        if before is None or key is None or before.public_keys.get(self.validator) == key:
            return
        self.effects.log(
            {
                "event": SIGNING_KEY,
                "validator": state.names.get(self.validator, self.validator.hex()[:8]),
                "from_height": state.height + 1,
                "key": key.hex(),
                "held": key in self.signer.ring,
            }
        )

    def _on_timeout(self, timeout: Timeout, incarnation: int) -> None:
        if self.machine is not None and incarnation == self.incarnation:
            self.run(self.machine.on_timeout(timeout, self.effects.now_ms()))

    def _on_decided(self, decided: Decided) -> None:
        self.effects.finalized(decided)
        if self.listening is not None and self._applied is not None:
            member = self._applied.committee.power_of(self.validator) > 0
            doppelganger.note_decided(self.listening, member, decided.via_sync)
        block, state = decided.block, decided.state
        if self.trust is not None and block.height == self.trust.checkpoint.height:
            self.effects.log({"event": CHECKPOINT, "height": block.height, "hash": block.hash.hex()})
        if decided.via_sync:
            self.stats.synced_blocks += 1
            self.stats.synced_to = block.height
        before, self._applied = self._applied, state
        self._log_key_change(before, state)
        latency_ms = max(0, self.effects.now_ms() - decided.started_ms)
        self.effects.log(
            finalized_log(state, block, decided.round, latency_ms, decided.certificate, decided.via_sync)
        )
        for line in ledger_event_logs(before, state, block, decided.events):
            self.effects.log(line)
        if before is not None and state.epoch != before.epoch:
            self.effects.log(epoch_log(state))
