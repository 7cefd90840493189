"""One node: one or more validator keys, a `Driver` each, behind one chain and one name.

What a node does beyond what one driver does is protocol too, so it lives
here where the simulator runs it as well as the real process:

- admission once: the first (primary) key admits each inbound message and
  counts what it rejects; the other hosted keys are handed what it admitted
  (not the sync requests and statuses, which the node answers and tracks once,
  nor a sync answer the primary, which asked for blocks for all of them, did
  not take: see `node.core.syncguard`);
- co-hosted keys hear each other: what one key broadcasts goes straight to
  the others (a broker does not deliver our own messages back to us, or the
  runtime drops its echo), through the scheduler, as if it had arrived;
- catch-up is pipelined: a sync answer that finalized a full batch of blocks
  is followed at once by a request for the next batch, instead of waiting
  for the machine's next retry (at most once a second), which would let a
  node far behind a fast chain gain only one batch a second; and each such
  catch-up is logged once per node as a ``synced`` event.

A node hosting one key (the common case, and every simulated node) is the
driver plus the pipelined catch-up.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from node.core import routes, startgate
from node.core.admission import (
    Admitted,
    AuthCache,
    ProposalMsg,
    Rejected,
    StatusMsg,
    SyncRequest,
    SyncResponse,
)
from node.core.consensus import Decided
from node.core.driver import SYNC_BATCH, Audience, Driver, Effects
from node.core.events import SYNCED
from node.core.memory import ProtocolMemory
from node.core.messages import Block, CommitCertificate, Vote
from node.core.signer import GuardedSigner
from node.core.state import ChainState

HANDLED_KEPT = 20_000
"""Votes and proposals remembered as taken by every key: a few heights of a large committee's gossip."""

NodeLog = Callable[[dict[str, Any]], None]
"""Where the node's own events (not one key's) are logged."""


class Host:
    """The drivers of one node's hosted keys; the first one is the primary."""

    def __init__(
        self,
        name: str,
        keys: Sequence[tuple[GuardedSigner, Effects]],
        behaviour: str | None,
        *,
        log: NodeLog,
        auth_cache: AuthCache | None = None,
        memory: ProtocolMemory | None = None,
    ) -> None:
        """`keys`: each hosted key's guarded signer and the effects its driver acts through.

        `auth_cache`, when given, is shared by every node of the process that
        admits through it (the simulator runs many): identical bytes are
        authenticated once against an identical key set. `memory`, when
        given, keeps what penalties depend on across a crash for every key
        (see `node.core.memory`).
        """
        if not keys:
            raise ValueError("a node hosts at least one validator key")
        self.name = name
        self._log = log
        # Co-hosted keys hand each other their broadcasts: one cache lets the node verify each once.
        self._auth_cache = auth_cache if auth_cache is not None or len(keys) == 1 else {}
        # signatures of the votes and proposals every key has taken, with the height they were at then
        self._handled: OrderedDict[bytes, int] = OrderedDict()
        self.duplicates = 0
        self.drivers: list[Driver] = []
        for signer, effects in keys:
            through = effects if len(keys) == 1 else _CoHosted(effects, self, len(self.drivers))
            driver = Driver(name, signer.keypair, signer, through, behaviour)
            driver.requests_sync = not self.drivers  # the primary asks for blocks for all the keys
            driver.memory = memory
            self.drivers.append(driver)

    @property
    def primary(self) -> Driver:
        return self.drivers[0]

    def boot(
        self, state: ChainState, last_certificate: CommitCertificate | None, **machine_args: Any
    ) -> None:
        """Start every key's machine; one key relays others' messages (they all hold them)."""
        for index, driver in enumerate(self.drivers):
            driver.boot(state, last_certificate, relays_others=index == 0, **machine_args)
        self.choose_relay()

    def choose_relay(self) -> None:
        """Let the first key on its height's committee relay others' messages for the node.

        Only committee members relay votes (non-members do not hear them), so
        a node whose primary left the committee hands relaying to a key that
        sits on it, and still to one key only. Asked at boot and whenever a
        key finalized a block (committees change at those moments only).
        """
        chosen = False
        for driver in self.drivers:
            machine = driver.machine
            if machine is not None:
                machine.relays_others = not chosen and machine.in_committee()
                chosen = chosen or machine.relays_others
        if not chosen and self.primary.machine is not None:
            self.primary.machine.relays_others = True

    def vote_channels(self) -> frozenset[str]:
        """The vote channels this node listens to now: its keys' committees' (see `node.core.routes`)."""
        channels: frozenset[str] = frozenset()
        for driver in self.drivers:
            state = driver.machine.state if driver.machine is not None else driver.waiting
            if state is not None:
                channels |= routes.listened_vote_channels(state, (driver.validator,))
        return channels

    def listen_first(self, quiet_ms: int) -> None:
        """Every key waits before its first signature (node.core.doppelganger), reading the statuses
        the primary hears: only the primary admits them for the node."""
        for driver in self.drivers:
            driver.peers = self.primary.peers
            driver.listen_first(quiet_ms)

    def await_boot(self, state: ChainState) -> None:
        """Before boot: hear statuses against `state` (only the primary admits for the node)."""
        self.primary.await_boot(state)

    def start_gate(self, waited_ms: int, wait_ms: int) -> startgate.GateDecision:
        """Whether a node awaiting boot may start now: what it heard meanwhile, against its genesis."""
        primary = self.primary
        if primary.waiting is None:
            raise RuntimeError("start_gate is only asked between await_boot and boot")
        return startgate.decide(
            primary.waiting,
            self.validators,
            primary.peers.values(),
            chain_began=primary.chain_began,
            waited_ms=waited_ms,
            wait_ms=wait_ms,
            now_ms=primary.effects.now_ms(),
        )

    @property
    def validators(self) -> tuple[bytes, ...]:
        """The pools this node signs for, the primary's first."""
        return tuple(driver.validator for driver in self.drivers)

    def stop(self) -> None:
        self._handled.clear()  # a restarted machine has forgotten them
        for driver in self.drivers:
            driver.stop()

    # -------------------------------------------------------------- inbound

    def receive(self, data: bytes) -> Admitted | Rejected | None:
        """Admit raw bytes once and act on them; returns what admission made of them."""
        message = self.admit(data)
        if message is not None and not isinstance(message, Rejected):
            self.dispatch(message)
        return message

    def admit(self, data: bytes) -> Admitted | Rejected | None:
        """Authenticate raw bytes with the primary's view (None: the node is not running)."""
        return self.primary.admit(data, self._auth_cache)

    def dispatch(self, message: Admitted) -> None:
        """Hand an admitted message to every hosted key, then pipeline the catch-up it advanced."""
        primary = self.primary
        before = primary.machine.height if primary.machine is not None else None
        synced_before, answers_before = primary.stats.synced_blocks, primary.stats.sync_answers
        again = self._seen_at_this_height(message)
        primary.dispatch(message)
        if isinstance(message, SyncResponse):
            again = primary.stats.sync_answers == answers_before  # unsolicited or replayed: dropped
        if not isinstance(message, SyncRequest | StatusMsg) and not again:
            for other in self.drivers[1:]:
                other.dispatch(message)
        blocks = primary.stats.synced_blocks - synced_before
        if blocks:
            self._log(
                {
                    "event": SYNCED,
                    "from_height": before,
                    "to_height": primary.stats.synced_to,
                    "blocks": blocks,
                }
            )
            self._pipeline_sync(blocks)

    def _seen_at_this_height(self, message: Admitted) -> bool:
        """Whether the co-hosted keys already took this vote or proposal at the height they are at.

        Gossip re-sends every vote many times (each node relays what it holds).
        The primary still takes every copy, exactly as a node with one key does
        (a copy can be a late precommit now, or prompt a sync request). The
        other keys hold the same messages, and a copy taken at the same height
        changes nothing for them, so it costs them nothing: without this, a
        process's work per copy grew with its key count. A message of a height
        still ahead is never taken as seen: a machine may have had no room to
        buffer it.
        """
        machine = self.primary.machine
        if len(self.drivers) == 1 or machine is None or not isinstance(message, Vote | ProposalMsg):
            return False
        item = message if isinstance(message, Vote) else message.proposal
        if self._handled.get(item.signature) == machine.height:
            self.duplicates += 1
            return True
        if item.height <= machine.height:
            self._handled[item.signature] = machine.height
            self._handled.move_to_end(item.signature)
            if len(self._handled) > HANDLED_KEPT:
                self._handled.popitem(last=False)
        return False

    def _pipeline_sync(self, blocks: int) -> None:
        """After a full sync batch, ask for the next one at once instead of at the machine's next retry."""
        machine = self.primary.machine
        if blocks >= SYNC_BATCH and machine is not None:  # silent validators follow the chain too
            self.primary.request_blocks(machine.height)

    # ------------------------------------------------------------- outbound

    def feed_others(self, source: int, data: bytes) -> None:
        """What hosted key `source` broadcast reaches the other hosted keys, as if it had arrived.

        Each admits it against its own height, but through the node's shared
        cache, so the signature is checked once for all of them.
        """
        effects = self.drivers[source].effects
        for index, driver in enumerate(self.drivers):
            if index != source:
                effects.schedule(0, _receiving(driver, data, self._auth_cache))


def _receiving(driver: Driver, data: bytes, cache: AuthCache | None) -> Callable[[], None]:
    def receive() -> None:
        message = driver.admit(data, cache)
        if message is not None and not isinstance(message, Rejected):
            driver.dispatch(message)

    return receive


class _CoHosted:
    """A hosted key's effects when the node hosts several: its broadcasts also reach the others."""

    def __init__(self, inner: Effects, host: Host, index: int) -> None:
        self._inner = inner
        self._host = host
        self._index = index

    def broadcast(self, channel: str, data: bytes) -> None:
        self._inner.broadcast(channel, data)
        self._host.feed_others(self._index, data)

    def now_ms(self) -> int:
        return self._inner.now_ms()

    def send_to(self, node: str, data: bytes) -> None:
        self._inner.send_to(node, data)  # a reply to one node: nobody else's business

    def schedule(self, delay_ms: int, action: Callable[[], None]) -> None:
        self._inner.schedule(delay_ms, action)

    def finalized(self, decided: Decided) -> None:
        self._inner.finalized(decided)
        self._host.choose_relay()

    def chain_range(self, start: int, limit: int) -> list[tuple[Block, CommitCertificate]]:
        return self._inner.chain_range(start, limit)

    def log(self, event: dict[str, Any]) -> None:
        self._inner.log(event)

    def audience(self) -> Audience | None:
        return self._inner.audience()
