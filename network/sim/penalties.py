"""The penalty check: every miss behind an honest validator's jailing, judged from the run's delivery record.

Penalties must judge what a validator did, never what a third party lost or
failed to record (DESIGN, threat model). So no fault excuses a whole run:
for each honest validator jailed on an honest node's chain, each miss in
the window that jailed it is classified on its own:

- class A: the validator's precommit for that height's decided round (for
  the block or nil; any copy, a re-send or a relay) was held by the honest
  proposer of a block that could still count it (one after the height, up
  to and including the block that judged it) strictly before that block was
  built. The validator did its part and the chain lost it: a violation.
- class B: no such block's honest proposer held a copy before building it:
  the validator was crashed, cut off from those proposers, or every copy was
  lost. Excused.

A proposer that is Byzantine owes nobody an inclusion, so only honest
proposers' blocks can make a miss class A. The rule itself is
`first_reached`; the rest reconstructs, from an honest node's chain, which
heights each block judged and which of them filled the window that jailed a
validator, exactly as the ledger counts them (`judge_participation`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from network.sim.checks import Violation
from network.sim.config import SimConfig
from network.sim.deliveries import DeliveryRecord
from node.core import ledger as L
from node.core.genesis import validator_names
from node.core.messages import Block, CommitCertificate
from node.core.state import ChainState, participation_after


class Chain(Protocol):
    """What the penalty check reads of one honest node: its name and finalized chain."""

    name: str
    genesis: ChainState
    chain: list[tuple[Block, CommitCertificate, ChainState]]


@dataclass(frozen=True)
class EligibleBlock:
    """A block that could still count a precommit: its height, its builder, when it was built."""

    height: int
    proposer: str  # the builder's node name
    built_ms: int | None  # None: nobody was seen proposing it, so nothing reached it in time
    honest: bool


@dataclass(frozen=True)
class Miss:
    """One counted miss: `validator` not among the signers of `height` when block `judged_at` judged it."""

    validator: str
    height: int
    judged_at: int
    reached: EligibleBlock | None  # class A: the first eligible block whose proposer held the precommit
    held_ms: int | None = None  # when that proposer first held it

    @property
    def unexcused(self) -> bool:
        """Class A: the precommit reached a proposer that could still count it, in time."""
        return self.reached is not None

    def describe(self) -> str:
        if self.reached is None:
            return f"height {self.height}: excused (no eligible honest proposer held its precommit in time)"
        block = self.reached
        return (
            f"height {self.height}: its precommit reached {block.proposer} at {self.held_ms} ms, "
            f"before {block.proposer} built block {block.height} at {block.built_ms} ms"
        )


@dataclass(frozen=True)
class MissTally:
    """Class A and class B misses of honest validators over the run, and those behind jailings."""

    class_a: int = 0
    class_b: int = 0
    jailing_a: int = 0
    jailing_b: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "misses_class_a": self.class_a,
            "misses_class_b": self.class_b,
            "jailing_misses_class_a": self.jailing_a,
            "jailing_misses_class_b": self.jailing_b,
        }


def first_reached(held: Mapping[str, int], blocks: Iterable[EligibleBlock]) -> EligibleBlock | None:
    """The oracle's rule: the first block that could still count the precommit and whose honest
    proposer held a copy strictly before building it (the miss is class A), or None (class B).

    `held` is node -> the virtual ms it first held the precommit (for the
    decided round's block or nil); `blocks` are the blocks after the height
    up to and including the one that judged it.
    """
    for block in blocks:
        if not block.honest or block.built_ms is None:
            continue
        at = held.get(block.proposer)
        if at is not None and at < block.built_ms:
            return block
    return None


# ------------------------------------------------------------------ reading a chain


@dataclass(frozen=True)
class Judged:
    """A height's participation as it was judged, and the height of the block that judged it."""

    entry: L.Participation
    judged_at: int


class ChainReader:
    """Which heights each block of an honest chain judged, computed once per distinct block.

    Honest nodes share state objects (the simulator memoises transitions),
    so a block every node finalized is read once however many chains hold it.
    """

    def __init__(self) -> None:
        self._judged: dict[tuple[int, bytes], tuple[ChainState, tuple[L.Participation, ...]]] = {}

    def judged(self, before: ChainState, block: Block) -> tuple[L.Participation, ...]:
        key = (id(before), block.hash)
        hit = self._judged.get(key)
        if hit is None or hit[0] is not before:
            hit = self._judged[key] = (before, participation_after(before, block)[0])
        return hit[1]

    def blocks(self, node: Chain) -> Iterable[tuple[ChainState, Block, ChainState]]:
        """(state before, block, state after) along the node's chain."""
        before = node.genesis
        for block, _, after in node.chain:
            yield before, block, after
            before = after


def jailing_windows(
    reader: ChainReader, node: Chain, validator: bytes
) -> list[tuple[int, tuple[Judged, ...]]]:
    """(height of the jailing block, the misses in the window that jailed it) for each jailing of
    `validator` on `node`'s chain, replaying the ledger's count (`judge_participation`): a pool
    records the heights whose committee held it while it is active, keeps the last
    `downtime_window` of them, is jailed once more than `max_missed_in_window` are misses, and
    starts an empty window then."""
    windows: list[tuple[int, tuple[Judged, ...]]] = []
    recorded: deque[tuple[Judged, bool]] | None = None
    for before, block, after in reader.blocks(node):
        params = before.params
        if recorded is None or recorded.maxlen != params.downtime_window:
            recorded = deque(maxlen=params.downtime_window)
        if L.pool_status(before.ledger, validator) != L.ACTIVE:
            recorded.clear()  # jailed or gone: the ledger clears the window when it jails and unjails
            continue
        for entry in reader.judged(before, block):
            if validator not in entry.committee:
                continue
            recorded.append((Judged(entry, block.height), validator in entry.signers))
            misses = tuple(judged for judged, signed in recorded if not signed)
            if len(misses) > params.max_missed_in_window:
                if L.pool_status(after.ledger, validator) == L.JAILED:
                    windows.append((block.height, misses))
                recorded.clear()
                break
    return windows


def eligible_blocks(
    node: Chain, judged: Judged, record: DeliveryRecord, byzantine: frozenset[str]
) -> list[EligibleBlock]:
    """The blocks on `node`'s chain that could still count a precommit of `judged`'s height."""
    names = node.genesis.names
    blocks = []
    for block, _, _ in node.chain[judged.entry.height : judged.judged_at]:
        proposer = names.get(block.proposer, block.proposer.hex()[:8])
        blocks.append(
            EligibleBlock(block.height, proposer, record.built_ms(block.hash), proposer not in byzantine)
        )
    return blocks


def classify_miss(
    node: Chain, judged: Judged, validator: bytes, record: DeliveryRecord, byzantine: frozenset[str]
) -> Miss:
    entry = judged.entry
    held = record.held(entry.height, validator, entry.round, entry.block_id)
    reached = first_reached(held, eligible_blocks(node, judged, record, byzantine)) if held else None
    name = node.genesis.names.get(validator, validator.hex()[:8])
    return Miss(
        name, entry.height, judged.judged_at, reached, held.get(reached.proposer) if reached else None
    )


# ------------------------------------------------------------------ the check


def honest_jailings(config: SimConfig, events: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """(height, validator, node) of each honest validator jailed on an honest node's chain.

    Only honest nodes' chains count: a silent validator whose committee
    seats reach 2/3 finalizes a private chain nobody else sees, and what its
    ledger does there punishes no one (seed 27546 of a sweep). Twins run
    under other names than the validators', so their chains are left out too.
    """
    byzantine = set(config.byzantine_names())
    honest_nodes = set(validator_names(config.validators)) - byzantine
    return sorted(
        {
            (int(event["height"]), str(event["validator"]), str(event["node"]))
            for event in events
            if event["event"] == "jailed"
            and event.get("validator") not in byzantine
            and event.get("node") in honest_nodes
        }
    )


def check_penalties(
    config: SimConfig, honest: list[Chain], events: list[dict[str, Any]], record: DeliveryRecord
) -> tuple[list[Violation], MissTally]:
    """A violation for each jailing with a class-A miss behind it, and the run's miss counts."""
    byzantine = frozenset(config.byzantine_names())
    reader = ChainReader()
    class_a, class_b = _all_misses(reader, honest, record, byzantine)
    by_name = {node.name: node for node in honest}
    violations: list[Violation] = []
    seen: set[tuple[bytes, str]] = set()
    jailing_misses: dict[tuple[str, int, bytes], Miss] = {}
    for height, name, node_name in honest_jailings(config, events):
        node = by_name.get(node_name)
        validator = next((a for a, n in (node.genesis.names.items() if node else ()) if n == name), None)
        if node is None or validator is None or len(node.chain) < height:
            continue
        if (node.chain[height - 1][0].hash, name) in seen:
            continue
        for jailed_at, misses in jailing_windows(reader, node, validator):
            key = (node.chain[jailed_at - 1][0].hash, name)
            if key in seen:
                continue
            seen.add(key)
            classified = [classify_miss(node, judged, validator, record, byzantine) for judged in misses]
            for judged, miss in zip(misses, classified, strict=True):
                jailing_misses[(name, miss.height, node.chain[judged.judged_at - 1][0].hash)] = miss
            unexcused = [miss for miss in classified if miss.unexcused]
            if unexcused:
                violations.append(
                    Violation(
                        "penalty",
                        f"honest validator {name} jailed at height {jailed_at} for "
                        f"{len(unexcused)} of {len(classified)} misses it did not make: {unexcused[0].describe()}",
                        jailed_at,
                    )
                )
    behind = list(jailing_misses.values())
    tally = MissTally(
        class_a,
        class_b,
        sum(1 for miss in behind if miss.unexcused),
        sum(1 for miss in behind if not miss.unexcused),
    )
    return violations, tally


def _all_misses(
    reader: ChainReader, honest: list[Chain], record: DeliveryRecord, byzantine: frozenset[str]
) -> tuple[int, int]:
    """(class A, class B) over every miss of an honest validator judged on an honest chain,
    each (validator, height, judging block) once."""
    seen_blocks: set[bytes] = set()
    class_a = class_b = 0
    for node in honest:
        names = node.genesis.names
        for before, block, _ in reader.blocks(node):
            if block.hash in seen_blocks:
                continue
            seen_blocks.add(block.hash)
            for entry in reader.judged(before, block):
                for validator in entry.committee:
                    if validator in entry.signers or names.get(validator) in byzantine:
                        continue
                    if L.pool_status(before.ledger, validator) != L.ACTIVE:
                        continue
                    miss = classify_miss(node, Judged(entry, block.height), validator, record, byzantine)
                    class_a += miss.unexcused
                    class_b += not miss.unexcused
    return class_a, class_b
