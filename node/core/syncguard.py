"""Sync requests and answers that cannot be replayed to effect.

A sync request carries no height of its own to go stale by, and anyone on
the broker can copy one off the wire and publish it again. Unguarded, every
copy drew a full answer from every peer to the requester named in it: one
captured request, replayed, flooded that validator with blocks until it
missed its precommits and was jailed. So, following the threat model (a
signed item without a height binds a nonce; work done for a message is
bounded by the sender's right to ask):

- the requester binds a fresh nonce into what it signs: its clock in
  milliseconds, or one more than its last nonce when the clock has not
  moved on (deterministic, so the simulator stays reproducible);
- an answerer answers each (requester, nonce) once, nothing older than
  `REQUEST_MAX_AGE_MS` before the newest nonce it has seen from that
  requester (so an old copy replayed after the answerer forgot it is not
  answered either; measured on the requester's own clock, so clock skew
  between hosts does not matter), and no more
  than a token bucket of bytes per requester allows: `BUCKET_BYTES` at
  once, then `REFILL_BYTES_PER_MS` (about 1 MB a second); each answer
  costs its size plus `ANSWER_COST_BYTES`. The bucket counts bytes, not
  answers, because a node one height behind a fast chain rightly asks at
  every height it reaches (tens of small answers a second), while a node
  far behind asks for full batches, each up to the budget below;
- an answer carries at most `ANSWER_BUDGET_BYTES` (a single block bigger
  than that still goes alone, or a chain of large blocks could never be
  synced) and echoes the request's nonce under the answerer's signature;
- the requester acts only on answers to its own recent nonces, each
  (answerer, nonce) once: a replayed or unsolicited answer costs one
  signature check and is counted as dropped.

Everything here is pure: time is what the driver's effects say it is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from node.core.codec import MAX_MESSAGE_BYTES, encode
from node.core.messages import Block, CommitCertificate

ANSWER_BUDGET_BYTES = 256 * 1024
"""Most bytes of blocks one sync answer carries: a quarter of the message limit."""

ENVELOPE_ALLOWANCE = 1024
"""Room left in the budget for the envelope around the blocks (chain id, sender, nonce, signature)."""

BUCKET_BYTES = 1 << 20
REFILL_BYTES_PER_MS = 1024
ANSWER_COST_BYTES = 1024
"""An answerer's token bucket per requester: 1 MiB at once, then 1,024,000 bytes a second, and a
kilobyte more per answer for the work of signing and sending it (so at most 1,000 answers a second)."""

REQUEST_MAX_AGE_MS = 60_000
"""A request whose nonce is older than this before the requester's newest one seen is stale."""

ANSWERED_KEPT = 4096
"""(requester, nonce) pairs an answerer remembers having answered."""

OUTSTANDING_KEPT = 64
"""A requester's own latest nonces whose answers it still takes (a catch-up asks many in a row)."""

TAKEN_KEPT = 1024
"""(answerer, nonce) pairs a requester remembers having taken an answer from."""

BUCKETS_KEPT = 4096
"""Requesters an answerer keeps a token bucket for (the validators; oldest forgotten first)."""


def _remember(memory: OrderedDict, key: object, value: object, limit: int) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > limit:
        memory.popitem(last=False)


class SyncGuard:
    """One driver's memory of the sync requests it issued and answered, and the answers it took."""

    def __init__(self) -> None:
        self._last_nonce = 0
        self._outstanding: OrderedDict[int, None] = OrderedDict()
        self._taken: OrderedDict[tuple[bytes, int], None] = OrderedDict()
        self._answered: OrderedDict[tuple[bytes, int], None] = OrderedDict()
        self._buckets: OrderedDict[bytes, tuple[int, int]] = OrderedDict()  # requester: (credit, at ms)
        self._newest: OrderedDict[bytes, int] = OrderedDict()  # requester: its newest nonce seen

    # ------------------------------------------------------------ requester

    def issue(self, now_ms: int) -> int:
        """A fresh nonce for our next request: our clock, strictly increasing; its answers are taken."""
        self._last_nonce = max(now_ms, self._last_nonce + 1)
        _remember(self._outstanding, self._last_nonce, None, OUTSTANDING_KEPT)
        return self._last_nonce

    def answer_problem(self, answerer: bytes, nonce: int) -> str | None:
        """Why an answer is dropped (a reject reason), or None: it is taken, and will not be again."""
        if nonce not in self._outstanding:
            return "unsolicited"
        if (answerer, nonce) in self._taken:
            return "replayed"
        _remember(self._taken, (answerer, nonce), None, TAKEN_KEPT)
        return None

    # ------------------------------------------------------------- answerer

    def request_problem(self, requester: bytes, nonce: int) -> str | None:
        """Why a request goes unanswered (a reject reason), or None: it is new, and now handled.

        Handled means never answered again, whether or not there turns out to
        be anything to send; answering also needs `spend` to allow it.
        """
        newest = max(nonce, self._newest.get(requester, nonce))
        if nonce < newest - REQUEST_MAX_AGE_MS:
            return "stale"
        if (requester, nonce) in self._answered:
            return "replayed"
        _remember(self._answered, (requester, nonce), None, ANSWERED_KEPT)
        _remember(self._newest, requester, newest, BUCKETS_KEPT)
        return None

    def spend(self, requester: bytes, answer_bytes: int, now_ms: int) -> str | None:
        """Take an answer's cost from the requester's token bucket, or say it is short ("rate_limited")."""
        credit, at_ms = self._buckets.get(requester, (BUCKET_BYTES, now_ms))
        credit = min(BUCKET_BYTES, credit + max(0, now_ms - at_ms) * REFILL_BYTES_PER_MS)
        cost = answer_bytes + ANSWER_COST_BYTES
        allowed = credit >= cost
        if allowed:
            credit -= cost
        _remember(self._buckets, requester, (credit, now_ms), BUCKETS_KEPT)
        return None if allowed else "rate_limited"


def answer_batch(
    pairs: Sequence[tuple[Block, CommitCertificate]], budget: int = ANSWER_BUDGET_BYTES
) -> list[tuple[Block, CommitCertificate]]:
    """The longest prefix of `pairs` whose encoded answer stays within `budget` bytes.

    The first block goes alone when it is bigger than the budget but still
    fits a message: otherwise a chain that holds one could never be synced.
    """
    batch: list[tuple[Block, CommitCertificate]] = []
    used = ENVELOPE_ALLOWANCE
    for block, cert in pairs:
        used += len(encode((block.to_wire(), cert.to_wire())))
        limit = budget if batch else MAX_MESSAGE_BYTES
        if used > limit:
            break
        batch.append((block, cert))
    return batch
