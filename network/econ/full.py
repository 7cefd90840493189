"""The message-level economy: the same delegators and timeline, every vote a message in the simulator.

Each pool is a simulated node (`network.sim.node.SimNode`: the real driver,
consensus machine, admission and signatures) on the simulator's virtual-time
network. The economy's side is the fast-forward engine's, unchanged: at
each epoch boundary the delegators decide on the state a node finalized,
and their signed transactions (and the timeline's) are published to every
node, as a client publishes to the broker; the nodes' proposers put them in
blocks. An offline pool's node is crashed and later rebooted from its
chain; an equivocating pool's double sign reaches the nodes as evidence.

Certificates carry every precommit when the chain is paced: a proposer
waits `commit_wait_ms` after a decision before proposing, so the votes of
the whole committee are in. A file that leaves it at 0 runs here at 200 ms.
With no faults, both modes then build the same ledger at every epoch (the
same proposers, signers, transactions and rewards; `ledger_hash` in each
record), which a test checks. A pool with `performance_ppm` below one runs
as an `UnreliableNode`: for a seeded share of (height, round) pairs its own
precommit, first send and re-sends alike, reaches nobody, so the others'
certificates lack it as fast-forward's draw leaves it out (when it proposes
the next block itself, its certificate still carries its own vote).
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from network.econ.config import EconomyConfig, TimelineEvent
from network.econ.engine import FastForward, Halted
from network.econ.policies import Policy
from network.econ.record import EpochLog
from network.sim.net import SimNetwork
from network.sim.node import SharedCore, SimNode
from network.sim.plans import FaultPlan
from node.core.envelopes import evidence_bytes, tx_bytes
from node.core.genesis import PPM
from node.core.messages import sha256
from node.core.safety import SigningRecordError, SignMark, Step
from node.core.signer import SigningRecord
from node.core.state import ChainState, genesis_state

PACED_COMMIT_WAIT_MS = 200
ROUNDS_PER_HEIGHT = 3  # an epoch gets this many failed rounds per height before the run counts it halted


class UnreliableNode(SimNode):
    """A pool's node that makes only `performance_ppm` of its precommits.

    Which ones is a pure function of (run, pool, height, round), so a seed
    replays the same absences. A missed precommit is never signed (its
    signing record refuses it), not merely withheld: a proposer now puts
    its own uncounted precommits into its blocks, so one signed and held
    back would still count, and the message level would no longer match
    fast-forward's draw.
    """

    def __init__(self, *args: Any, performance_ppm: int, draw_seed: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.performance_ppm = performance_ppm
        self.draw_seed = draw_seed
        self.withheld = 0
        for driver in self.host.drivers:
            driver.signer.record = _Absent(driver.signer.record, self)

    def misses(self, mark: SignMark) -> bool:
        """Whether this node is absent for the precommit at `mark` (and counts the absence)."""
        if mark.step != Step.PRECOMMIT:
            return False
        digest = sha256(f"{self.draw_seed}/{self.name}/{mark.height}/{mark.round}".encode())
        absent = int.from_bytes(digest[:8], "big") % PPM >= self.performance_ppm
        self.withheld += absent
        return absent


class _Absent:
    """A signing record that refuses the precommits its node is drawn to miss."""

    def __init__(self, record: SigningRecord, node: UnreliableNode) -> None:
        self._record = record
        self._node = node

    def record_signed(self, validator: bytes, mark: SignMark, height: int, item: bytes, block: bytes) -> None:
        if self._node.misses(mark):
            raise SigningRecordError("absent (performance_ppm)")
        self._record.record_signed(validator, mark, height, item, block)

    def journal(self, validator: bytes, height: int) -> list[tuple[bytes, bytes]]:
        return self._record.journal(validator, height)

    def last_signed(self, validator: bytes) -> SignMark | None:
        return self._record.last_signed(validator)


class MessageLevel(FastForward):
    """One economy run through the simulator; `run()` yields the same records as fast-forward."""

    def __init__(
        self, config: EconomyConfig, seed: int | None = None, policies: dict[str, Policy] | None = None
    ) -> None:
        if config.params.commit_wait_ms == 0:
            config = replace(config, params=replace(config.params, commit_wait_ms=PACED_COMMIT_WAIT_MS))
        super().__init__(config, seed, policies)
        # a node for every pool and for every potential operator (idle until its pool registers)
        performance = {pool.name: pool.performance_ppm for pool in self.config.pools}  # the attacker's too
        performance.update((operator.name, PPM) for operator in self.world.operators)
        self.net = SimNetwork(list(performance), FaultPlan(), random.Random(f"econ-net/{self.seed}"))
        self.core = SharedCore()
        self.log_lines: list[dict[str, Any]] = []
        start = genesis_state(self.world.genesis)
        self.nodes = {name: self._node(name, ppm, start) for name, ppm in performance.items()}
        for node in self.nodes.values():
            node.boot()

    def _node(self, name: str, performance_ppm: int, start: ChainState) -> SimNode:
        args = (name, self.world.owners[name], start, self.net, self.core, None, self.log_lines)
        if performance_ppm >= PPM:
            return SimNode(*args)
        return UnreliableNode(
            *args, performance_ppm=performance_ppm, draw_seed=f"econ-absent/{self.config.name}/{self.seed}"
        )

    def _epoch(self, log: EpochLog) -> None:
        txs = self._boundary_txs(log)
        self._publish_evidence()
        self._publish(txs)
        target = self.state.height + self.config.epoch_length
        budget = self.config.epoch_length * self.config.params.failed_rounds_ms(ROUNDS_PER_HEIGHT)
        seen = len(self.log_lines)
        self.net.run_until(lambda: self._leader().height >= target, self.net.now_ms + budget)
        leader = self._leader()
        if leader.height < target:
            raise Halted(f"height {leader.height + 1}: not finalized within {budget} ms of network time")
        self.state = leader.chain[target - 1][2]
        penalties = ("jailed", "tombstoned", "unjailed")
        log.penalties += [
            f"{line['validator']} {line['event']}"
            for line in self.log_lines[seen:]
            if line["event"] in penalties and line["node"] == leader.name
        ]

    def _leader(self) -> SimNode:
        """The running node furthest ahead: whose state the delegators read."""
        running = [node for node in self.nodes.values() if node.name not in self.net.down]
        return max(running or self.nodes.values(), key=lambda node: (node.height, node.name))

    def _event(self, event: TimelineEvent) -> list[bytes]:
        node = self.nodes[event.pool]
        if event.kind == "offline" and node.name not in self.net.down:
            node.crash()
        elif event.kind == "online" and node.name in self.net.down:
            node.boot()
        return super()._event(event)

    def _publish(self, txs: list[bytes]) -> None:
        """Every transaction to every running node's mempool, in order, as a broker delivers them."""
        leader = self._leader()
        keypair = leader.driver.keypair
        for tx in txs:
            envelope = tx_bytes(self.state.chain_id, tx, keypair)
            for node in self.nodes.values():
                if node.name not in self.net.down:
                    node.host.receive(envelope)

    def _publish_evidence(self) -> None:
        """A double sign the timeline called for, as evidence gossiped to every node."""
        evidence, self.pending_evidence = self.pending_evidence, []
        leader = self._leader()
        for item in evidence:
            data = evidence_bytes(self.state.chain_id, item, leader.driver.keypair)
            for node in self.nodes.values():
                if node.name not in self.net.down:
                    node.host.receive(data)
