"""One simulated validator process, and the pure work all of them share.

A `SimNode` is a real node's core (`node.core.hosting.Host`, its driver and
consensus machine, the guarded signer, admission) over a simulated network
and clock: it implements the driver's `Effects` the way the runtime does,
and keeps what a real node keeps on disk (finalized chain, signing record
and journal, protocol memory), which survives a simulated crash while everything else is lost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from network.sim.checks import OffenceWatch, VoteObserver
from network.sim.deliveries import DeliveryRecord
from network.sim.net import SimNetwork
from network.sim.trace import short
from node.core import ledger as L
from node.core.admission import AuthCache, Rejected
from node.core.certificate_checks import SharedCertificateChecks
from node.core.consensus import ConsensusMachine, Decided
from node.core.driver import Audience, Driver
from node.core.events import EVIDENCE, LEDGER_PENALTIES, ROUND_TIMEOUT, SIGNING_KEY
from node.core.hosting import Host
from node.core.keys import Keypair
from node.core.memory import MemoryNotes
from node.core.messages import Block, CommitCertificate
from node.core.routes import listened_vote_channels
from node.core.signer import GuardedSigner, MemoryRecord
from node.core.state import ChainState, apply_block, block_problem, validator_of_key

SIM_EVENTS = (*LEDGER_PENALTIES, "crashed", EVIDENCE, SIGNING_KEY)
TRACED_EVENTS = (*LEDGER_PENALTIES, EVIDENCE, ROUND_TIMEOUT, SIGNING_KEY)  # `crashed` is traced as `crash`
"""The events a run keeps (its penalty accounting reads them); the rest of a node's log is not kept."""


class SharedCore:
    """Memoised pure functions shared by all simulated nodes.

    Every honest node applies the same blocks to equal states; computing the
    transition once per (state, block) instead of once per node is what lets
    a thousand nodes run in one process. The functions are pure, so sharing
    results cannot change any outcome.
    """

    def __init__(self) -> None:
        self._applied: dict[tuple[int, bytes], tuple[ChainState, Any]] = {}
        self._checked: dict[tuple[int, bytes], tuple[ChainState, str | None]] = {}
        self.auth_cache: AuthCache = {}
        self.certificates = SharedCertificateChecks()  # each certificate verified once, not once per follower
        self._certificates_kept: dict[CommitCertificate, CommitCertificate] = {}
        self.finalizations = 0  # bumped by every node; lets the run loop skip its costly done check
        self.honest_progress_ms = 0  # when an honest node last finalized a block
        self.honest_reached: Counter[int] = Counter()  # height -> honest nodes that finalized it
        self._lowest = 0
        self._validator_of_key: dict[bytes, bytes] | None = None
        self._keys_of: ChainState | None = None

    def lowest_honest_height(self, honest: int) -> int:
        """The height every one of the `honest` nodes finalized: kept as they finalize, not recounted.

        Asking every node after each finalization cost n squared per height:
        at 3,000 validators it was most of a simulated height's wall time.
        """
        while self.honest_reached[self._lowest + 1] >= honest:
            self._lowest += 1
        return self._lowest

    def validator_of_key(self, genesis: ChainState, public_key: bytes) -> bytes | None:
        """`state.validator_of_key` at genesis, by one map for every node instead of a scan each."""
        if self._validator_of_key is None or self._keys_of is not genesis:
            self._validator_of_key, self._keys_of = {}, genesis
            for address, key in genesis.public_keys.items():
                self._validator_of_key.setdefault(key, address)
        found = self._validator_of_key.get(public_key)
        return found if found is not None else validator_of_key(genesis, public_key)

    def kept_certificate(self, certificate: CommitCertificate) -> CommitCertificate:
        """One object for the equal certificates nodes finalize a height with: each node's chain keeps it.

        Every follower makes its own certificate from the same precommits; kept
        once, a height costs the chains one certificate, not one per node.
        Equal values only, so nothing a node reads changes.
        """
        return self._certificates_kept.setdefault(certificate, certificate)

    def transition(self, state: ChainState, block: Block) -> tuple[ChainState, tuple[L.LedgerEvent, ...]]:
        key = (id(state), block.hash)
        hit = self._applied.get(key)
        if hit is None or hit[0] is not state:
            hit = self._applied[key] = (state, apply_block(state, block))
        return hit[1]

    def check(self, state: ChainState, block: Block) -> str | None:
        key = (id(state), block.hash)
        hit = self._checked.get(key)
        if hit is None or hit[0] is not state:
            hit = self._checked[key] = (state, block_problem(state, block))
        return hit[1]


class SimNode:
    """One simulated validator process: the shared core plus a simulated 'disk'."""

    def __init__(
        self,
        name: str,
        keypair: Keypair,
        genesis: ChainState,
        net: SimNetwork,
        core: SharedCore,
        behaviour: str | None,
        events: list[dict[str, Any]],
        audience: Audience | None = None,
        observer: VoteObserver | None = None,
        deliveries: DeliveryRecord | None = None,
    ) -> None:
        self.name = name
        self.observer = observer
        self.deliveries = deliveries  # what this node held and built, for the penalty oracle (honest nodes)
        self.net = net
        self.core = core
        self.genesis = genesis
        self.events = events
        self.record = MemoryRecord()
        self.notes = MemoryNotes()  # late and own precommits, evidence: survive a crash like the record
        self.chain: list[tuple[Block, CommitCertificate, ChainState]] = []
        self.finalized_at: list[tuple[int, int]] = []  # (virtual ms, height)
        self._audience = audience
        self.watch = OffenceWatch(name) if behaviour is None else None  # honest nodes are held to account
        validator = (
            core.validator_of_key(genesis, keypair.public) or keypair.address
        )  # a separate signing key
        signer = GuardedSigner(genesis.chain_id, keypair, self.record, validator=validator)
        self.host = Host(
            name, [(signer, self)], behaviour, log=self.log, auth_cache=core.auth_cache, memory=self.notes
        )
        net.attach(name, self._deliver)
        # Listening from the start, as a real node subscribes before it boots: the first votes of
        # nodes booted before this one are on their way already.
        net.listen(name, listened_vote_channels(genesis, self.host.validators))

    @property
    def driver(self) -> Driver:
        return self.host.primary

    @property
    def behaviour(self) -> str | None:
        return self.driver.behaviour

    @property
    def machine(self) -> ConsensusMachine | None:
        return self.driver.machine

    @property
    def address(self) -> bytes:
        return self.driver.validator

    @property
    def height(self) -> int:
        return len(self.chain)

    @property
    def state(self) -> ChainState:
        return self.chain[-1][2] if self.chain else self.genesis

    def boot(self) -> None:
        if self.net.tracer is not None:
            self.net.tracer.emit(self.net.now_ms, "boot", node=self.name, height=self.height)
        self.net.down.discard(self.name)
        last_cert = self.chain[-1][1] if self.chain else None
        self.net.listen(self.name, listened_vote_channels(self.state, self.host.validators))
        self.host.boot(
            self.state,
            last_cert,
            transition=self.core.transition,
            check_block=self.core.check,
            certificates=self.core.certificates,
        )
        if self.net.tracer is not None:
            self.net.tracer.step(self.net.now_ms, self.name, self.machine)

    def crash(self) -> None:
        self.host.stop()
        if self.watch is not None:
            self.watch.forget()
        self.net.down.add(self.name)
        self.log({"event": "crashed"})
        if self.net.tracer is not None:
            self.net.tracer.emit(self.net.now_ms, "crash", node=self.name)

    def _deliver(self, _sender: str, data: bytes) -> None:
        """A message off the simulated network: admitted once, shown to the watch, then acted on."""
        if self.deliveries is not None:
            self.deliveries.delivered(self.name, data, self.net.now_ms)
        message = self.host.admit(data)
        if message is None or isinstance(message, Rejected):
            return
        machine = self.machine
        if self.watch is not None and machine is not None:
            self.watch.shown(message, machine)
        self.host.dispatch(message)
        if self.watch is not None:
            self.watch.check(self.machine)
        if self.net.tracer is not None:
            self.net.tracer.step(self.net.now_ms, self.name, self.machine)

    # --------------------------------------------------------------- effects

    def now_ms(self) -> int:
        return self.net.now_ms

    def broadcast(self, channel: str, data: bytes) -> None:
        if self.observer is not None:
            self.observer.observe(data)
        if self.deliveries is not None:
            self.deliveries.sent(self.name, data, self.net.now_ms)
        self.net.broadcast(self.name, data, channel)

    def send_to(self, node: str, data: bytes) -> None:
        if self.observer is not None:
            self.observer.observe(data)
        if self.deliveries is not None:
            self.deliveries.sent(self.name, data, self.net.now_ms)
        self.net.send(self.name, node, data)

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        """A timer fires at least 1 ms later: work takes time, so a validator that
        decides alone (more than 2/3 of the stake) cannot freeze virtual time."""
        tracer = self.net.tracer
        if tracer is None:
            self.net.schedule(max(1, delay_ms), action)
            return

        def traced() -> None:  # a timer may move the node on: trace its step after
            action()
            tracer.step(self.net.now_ms, self.name, self.machine)

        self.net.schedule(max(1, delay_ms), traced)

    def finalized(self, decided: Decided) -> None:
        if self.net.tracer is not None:
            block = short(decided.block.hash)
            self.net.tracer.emit(
                self.net.now_ms,
                "decide",
                node=self.name,
                h=decided.block.height,
                r=decided.round,
                block=block,
            )
        self.chain.append((decided.block, self.core.kept_certificate(decided.certificate), decided.state))
        self.net.listen(self.name, self.host.vote_channels())
        self.finalized_at.append((self.net.now_ms, decided.block.height))
        self.core.finalizations += 1
        if self.behaviour is None:
            self.core.honest_progress_ms = self.net.now_ms
            self.core.honest_reached[decided.block.height] += 1

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]:
        return [(block, cert) for block, cert, _ in self.chain[start - 1 : start - 1 + limit]]

    def log(self, event: dict[str, Any]) -> None:
        if event["event"] in SIM_EVENTS:
            self.events.append({**event, "node": self.name, "t_ms": self.net.now_ms})
        if self.net.tracer is not None and event["event"] in TRACED_EVENTS:
            self.net.tracer.node_event(self.net.now_ms, self.name, event)

    def audience(self) -> Audience | None:
        """A simulated network addresses single nodes: the split the run assigned this node."""
        return self._audience
