"""The equivocation evidence a validator knows of, and what it still has to include.

A collaborator of the consensus machine: evidence arrives two ways (derived
from conflicting messages the machine was shown, or gossiped by a peer),
waits in the pool until a finalized block includes it or it is too old to
count, and each piece is taken once (`seen` remembers every key, included
or expired, so the same offence is neither re-broadcast nor re-added).
What waits is noted for the node's durable memory (`node.core.memory`): a
crash must not let an offender whose evidence reached an honest node go free.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from node.core.codec import encode
from node.core.memory import NOTE_EVIDENCE, Note, NotedDict
from node.core.messages import Evidence
from node.core.state import ChainState, evidence_problem

EvidenceKey = tuple[bytes, int, int, int]
"""(offender, height, round, step): one offence, however many pairs of messages prove it."""

MAX_EVIDENCE_PER_BLOCK = 10


class EvidencePool(Mapping[EvidenceKey, Evidence]):
    """Evidence waiting for a block (read as a mapping by key), and the keys of every offence taken in."""

    def __init__(self) -> None:
        self.pending: NotedDict[EvidenceKey, Evidence] = NotedDict(NOTE_EVIDENCE, _key_bytes, _evidence_bytes)
        self.seen: set[EvidenceKey] = set()

    def __getitem__(self, key: EvidenceKey) -> Evidence:
        found = self.pending.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[EvidenceKey]:
        return iter(self.pending)

    def __len__(self) -> int:
        return len(self.pending)

    def record(self, evidence: Evidence, state: ChainState) -> bool:
        """Evidence we derived ourselves: True when it is new and valid, so it should be gossiped.

        Its key counts as seen even when `state` finds a problem with it, so
        the same pair of messages is not examined again.
        """
        key = evidence.key()
        if key in self.seen:
            return False
        self.seen.add(key)
        if evidence_problem(state, evidence) is not None:
            return False
        self.pending.put(key, evidence)
        return True

    def accept(self, evidence: Evidence, state: ChainState) -> None:
        """Gossiped evidence: keep it for a block we propose, if it is new and checks out."""
        key = evidence.key()
        if key in self.seen or evidence_problem(state, evidence) is not None:
            return
        self.seen.add(key)
        self.pending.put(key, evidence)

    def for_block(self, state: ChainState) -> tuple[Evidence, ...]:
        """What a block built on `state` includes: the pending evidence still valid there, bounded."""
        valid = tuple(ev for ev in self.pending.values() if evidence_problem(state, ev) is None)
        return valid[:MAX_EVIDENCE_PER_BLOCK]

    def prune(self, included: Iterable[Evidence], height: int, max_age: int) -> None:
        """Drop what the block at `height` included and what is now too old to be included."""
        for evidence in included:
            self.pending.pop(evidence.key())
        self.pending.keep_only(lambda _, ev: ev.height + max_age > height)

    def changes(self) -> list[Note]:
        """What changed in the pending evidence since last asked, for the durable memory."""
        return self.pending.changes()


def _key_bytes(key: EvidenceKey) -> bytes:
    return encode(list(key))


def _evidence_bytes(evidence: Evidence) -> bytes:
    return encode(evidence.to_wire())
