"""The transactions a validator holds for the blocks it will propose.

A collaborator of the consensus machine, not part of its rules: the machine
adds what it is gossiped, takes a block's worth when it proposes, and drops
what a finalized block included. Kept in arrival order (a dict used as an
ordered set), bounded so a flood cannot grow it without limit.
"""

from __future__ import annotations

from collections.abc import Iterable

MEMPOOL_BLOCKS = 10
"""How many full blocks' worth of transactions the pool keeps; more are dropped on arrival."""


class Mempool:
    """Pending transactions, oldest first, at most ``MEMPOOL_BLOCKS`` blocks' worth."""

    def __init__(self) -> None:
        self._txs: dict[bytes, None] = {}

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx: object) -> bool:
        return tx in self._txs

    def add(self, tx: bytes, max_block_txs: int) -> None:
        """Keep `tx` for a later block, unless the pool already holds its bound."""
        if len(self._txs) < MEMPOOL_BLOCKS * max_block_txs:
            self._txs[tx] = None

    def take(self, limit: int) -> tuple[bytes, ...]:
        """The oldest `limit` transactions (they stay until a finalized block includes them)."""
        return tuple(self._txs)[:limit]

    def drop(self, included: Iterable[bytes]) -> None:
        """Forget the transactions a finalized block included."""
        for tx in included:
            self._txs.pop(tx, None)
