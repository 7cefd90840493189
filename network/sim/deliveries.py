"""The run's own delivery record, as the penalty oracle needs it.

Downtime may only charge a validator for what it did: a precommit that
reached the proposer of a block that could still count it, before that block
was built, is not a miss of the validator's. To judge that after the run,
the simulator keeps, for every precommit, when each node first held a copy
(received from the network, or sent: its own, or a relay), and when each
proposed block was built (its proposal first sent). Nothing here changes a
run: it only watches bytes the network already moves.

It stays cheap: each distinct envelope is decoded once, and a precommit's
receipts are forgotten as soon as every honest chain counted its signer at
that height (`counted`), so what remains is the misses and the heights
still open.
"""

from __future__ import annotations

from collections.abc import Iterable

from node.core.codec import DecodeError
from node.core.messages import Kind, Proposal, Vote, parse_envelope

DECODED_KEPT = 50_000  # distinct envelopes remembered as decoded; past it the memo starts over

PrecommitKey = tuple[int, bytes, int, bytes | None]  # (height, validator, round, block id or None: nil)


class DeliveryRecord:
    """When each node first held each precommit, and when each proposed block was built."""

    def __init__(self) -> None:
        # height -> validator -> (round, block id) -> node -> first virtual ms it held the precommit
        self._held: dict[int, dict[bytes, dict[tuple[int, bytes | None], dict[str, int]]]] = {}
        self._built: dict[bytes, int] = {}  # block id -> virtual ms its first proposal was sent
        self._decoded: dict[bytes, PrecommitKey | bytes | None] = {}
        self._counted: dict[int, set[bytes]] = {}  # height -> signers every honest chain counted there

    def _decode(self, data: bytes) -> PrecommitKey | bytes | None:
        """A precommit's key, a proposal's block id, or None for anything else (once per envelope)."""
        if data in self._decoded:
            return self._decoded[data]
        if len(self._decoded) >= DECODED_KEPT:
            self._decoded.clear()
        found: PrecommitKey | bytes | None = None
        try:
            envelope = parse_envelope(data)
            if envelope.kind == Kind.PRECOMMIT:
                vote = Vote.from_body(envelope.kind, envelope.body, envelope.signature)
                found = (vote.height, vote.validator, vote.round, vote.block_id)
            elif envelope.kind == Kind.PROPOSAL:
                found = Proposal.from_body(envelope.body, envelope.signature).block_id
        except DecodeError:
            found = None
        self._decoded[data] = found
        return found

    def sent(self, node: str, data: bytes, now_ms: int) -> None:
        """`node` sent `data`: it holds that precommit, or built that block (if first to propose it)."""
        found = self._decode(data)
        if isinstance(found, bytes):
            self._built.setdefault(found, now_ms)
        elif found is not None:
            self._hold(node, found, now_ms)

    def delivered(self, node: str, data: bytes, now_ms: int) -> None:
        """A copy of `data` reached the running `node`."""
        found = self._decode(data)
        if isinstance(found, tuple):
            self._hold(node, found, now_ms)

    def _hold(self, node: str, key: PrecommitKey, now_ms: int) -> None:
        height, validator, round_, block_id = key
        if validator in self._counted.get(height, ()):
            return  # counted on every honest chain already: no oracle will ask
        by_node = (
            self._held.setdefault(height, {}).setdefault(validator, {}).setdefault((round_, block_id), {})
        )
        if node not in by_node:
            by_node[node] = now_ms

    def counted(self, height: int, signers: Iterable[bytes]) -> None:
        """Every honest chain counted these signers at `height`: their receipts are not needed."""
        counted = self._counted.setdefault(height, set())
        at = self._held.get(height, {})
        for validator in signers:
            counted.add(validator)
            at.pop(validator, None)

    def held(self, height: int, validator: bytes, round_: int, block_id: bytes) -> dict[str, int]:
        """node -> when it first held `validator`'s precommit at (height, round) for `block_id` or nil."""
        votes = self._held.get(height, {}).get(validator, {})
        merged: dict[str, int] = {}
        for choice in (block_id, None):
            for node, at in votes.get((round_, choice), {}).items():
                merged[node] = min(at, merged.get(node, at))
        return merged

    def built_ms(self, block_id: bytes) -> int | None:
        """When the block was built (its first proposal sent), if any node was seen proposing it."""
        return self._built.get(block_id)
