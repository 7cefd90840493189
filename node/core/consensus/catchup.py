"""Catching up: messages kept for heights ahead, certificates learned from them, sync requests, forks.

Algorithm 1 runs one height at a time and assumes a node hears that
height's messages. A real node falls behind (fast peers, lost messages, a
restart) and must still reach the others without being judged absent, and
must notice when a peer's chain parted from its own. None of that changes
how the open height is decided, so it is kept here with the state it owns:
- messages for the next few heights, replayed when we get there;
- which certificates carried by the next height's proposals we have already
  taken our height's precommits from;
- when we last asked peers for blocks, so a stall asks at a bounded rate;
- the heights whose conflicting certificate already sent us looking back.
The machine feeds what this hands back through its own rules.
"""

from __future__ import annotations

from node.core.accountability import certificate_conflict_evidence
from node.core.certificate_checks import PLAIN_CHECKS, CertificateChecks
from node.core.messages import Block, CommitCertificate, Evidence, Proposal, Vote
from node.core.state import ChainState, committee_at

MAX_BUFFERED_NEXT = 4096  # messages kept for later heights while this one is still open
MAX_PRECOMMITS_AHEAD = 4096  # kept for heights past BUFFER_AHEAD, one per (height, validator, round)
BUFFER_AHEAD = 32  # heights ahead whose messages are kept; further ahead we ask for blocks
FORK_LOOKBACK = 20  # on a fork, the heights before it whose certificates we ask for and compare
SYNC_RETRY_MS = 1000

Buffered = Vote | tuple[Proposal, Block]


def height_of(item: Buffered) -> int:
    return item.height if isinstance(item, Vote) else item[0].height


class NextHeights:
    """Messages for heights after ours, kept while this one is still open.

    A validator that follows a height by its messages precommits it (see
    `ConsensusMachine._attest_decision`); one that jumps ahead by sync does
    not, and is charged downtime for heights it could have followed.
    """

    def __init__(self) -> None:
        self._items: list[Buffered] = []
        self._ahead: dict[tuple[int, bytes, int], Vote] = {}

    def keep(self, item: Buffered) -> None:
        """Keep a message of a later height (up to `MAX_BUFFERED_NEXT` of them)."""
        if len(self._items) < MAX_BUFFERED_NEXT:
            self._items.append(item)

    def keep_precommit_ahead(self, vote: Vote) -> None:
        """Keep a precommit for a height further ahead than we buffer: it may count for its signer later.

        We will pass that height by sync, not by its votes, and the block we
        then propose may still count the precommit as a late one; dropped, it
        was a miss charged to a validator whose precommit reached us in time.
        One per (height, validator, round), a bounded number in all: the
        admission window already bounds how far ahead a height may be.
        """
        key = (vote.height, vote.validator, vote.round)
        if key not in self._ahead and len(self._ahead) < MAX_PRECOMMITS_AHEAD:
            self._ahead[key] = vote

    def release(self, height: int) -> list[Buffered]:
        """Now that `height` is open: its messages, and the proposals of `height + 1`, in arrival order.

        The messages of `height` leave the buffer; those of later heights stay
        (the proposals of `height + 1` too: handed back only for the
        certificate of `height` they carry); older ones are dropped. Precommits
        kept from further ahead come back once `height` reached theirs: as
        votes of the open height, or as late ones for heights passed by sync.
        """
        buffered, self._items = self._items, []
        released: list[Buffered] = []
        for item in buffered:
            item_height = height_of(item)
            if item_height > height:
                self._items.append(item)
                if item_height == height + 1 and not isinstance(item, Vote):
                    released.append(item)
            elif item_height == height:
                released.append(item)
        reached = [key for key in self._ahead if key[0] <= height]
        released += [self._ahead.pop(key) for key in sorted(reached)]
        return released


class LearnedCertificates:
    """The certificates of the open height that next-height proposals brought us, each taken once."""

    def __init__(self, checks: CertificateChecks = PLAIN_CHECKS) -> None:
        self._learned: set[tuple[tuple[bytes, bytes], ...]] = set()
        self._checks = checks

    def votes_from(self, state: ChainState, certificate: CommitCertificate | None) -> tuple[Vote, ...]:
        """A block of the next height carries our height's certificate: its precommits are votes we missed.

        The proposer that decided our height does not send its precommits
        again once it moved on, so a lagging validator that lost one of them
        would wait for a sync round trip (and be judged absent meanwhile)
        although the next proposal already proves the decision. Verified
        like any certificate; the machine counts its precommits, and its
        decision rule then decides (precommitting the block first, see
        `ConsensusMachine._attest_decision`) or fetches a block we never
        received.
        """
        if certificate is None or certificate.height != state.next_height:
            return ()
        if certificate.signatures in self._learned:
            return ()
        self._learned.add(certificate.signatures)
        if self._checks.problem(state, certificate, state.committee, certificate.block_id):
            return ()
        return self._checks.votes(certificate)


class SyncPacer:
    """When to ask peers for blocks from our height: once per height we reach, then once per SYNC_RETRY_MS.

    Per height as well as per time: a request sent the moment a node fell
    behind may find peers with nothing newer yet, and the next height's
    request must not wait out the retry interval.
    """

    def __init__(self) -> None:
        self._requested_ms = -SYNC_RETRY_MS
        self._requested_height = 0

    def due(self, now_ms: int, height: int) -> bool:
        """Whether to ask now for blocks from `height` (and, if so, noted as asked)."""
        if now_ms - self._requested_ms >= SYNC_RETRY_MS or height > self._requested_height:
            self._requested_ms = now_ms
            self._requested_height = height
            return True
        return False


def is_fork(ours: CommitCertificate | None, theirs: CommitCertificate) -> bool:
    """Whether `theirs` finalizes another block than our certificate `ours` at the same height."""
    return ours is not None and theirs.height == ours.height and theirs.block_id != ours.block_id


def is_sound(state: ChainState, theirs: CommitCertificate, checks: CertificateChecks = PLAIN_CHECKS) -> bool:
    """Whether a peer's certificate for a past height is a quorum of that height's committee."""
    committee = committee_at(state, theirs.height)
    return committee is not None and not checks.problem(state, theirs, committee, theirs.block_id)


def conflict_evidence(
    state: ChainState,
    theirs: CommitCertificate,
    ours: CommitCertificate,
    checks: CertificateChecks = PLAIN_CHECKS,
) -> tuple[Evidence, ...]:
    """The double signs two certificates for one height prove, if the peer's certificate is sound.

    Both certificates are quorums of one committee, so they overlap in more
    than 1/3; at the same round every validator in both precommitted two
    blocks, and that is ordinary equivocation evidence.
    """
    if not is_sound(state, theirs, checks):
        return ()
    return certificate_conflict_evidence(ours, theirs)


class ForkTrace:
    """The heights whose conflicting certificate already sent us looking back for where the chains parted."""

    def __init__(self) -> None:
        self._traced: set[int] = set()

    def first_sight(self, height: int) -> int | None:
        """The height to ask blocks from, the first time a fork at `height` is seen; else None.

        The chains may have parted earlier, and the validators who signed
        both sides there need not be the ones who did here: ask for the
        other chain's recent blocks, whose certificates the driver compares
        with ours (see Driver._check_fork).
        """
        if height in self._traced:
            return None
        self._traced.add(height)
        return max(1, height - FORK_LOOKBACK)
