"""Precommits that arrive after their height was decided, and ours that no block has counted yet.

Downtime is judged from the certificates blocks carry, so a precommit that
reached us a moment too late must still find its way into the chain, or a
validator that was online is charged as absent. That bookkeeping has nothing
to do with deciding the open height, and the rules never read it; it lives
here with the state it owns:
- others' precommits for the height still open, noted only so that a crash
  before deciding it does not lose them (`note_open`);
- the precommits for the height we finalized last (`last_precommits`),
  which grow the certificate we put in our next proposal;
- late precommits for older pending heights, to include in a later block;
- our own precommits, re-sent once per new height until a block counts them;
- a cache of which heights are still pending judgement.

The open height's precommits, the late ones and our own uncounted ones are noted for the node's
durable memory (`node.core.memory`), so a crash does not cost the validators
they prove online a miss; `recall` takes them back, checked like new arrivals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from node.core.codec import encode
from node.core.consensus.votes import VoteSet
from node.core.ledger import Participation
from node.core.memory import NOTE_LATE, NOTE_OPEN, NOTE_OWN, Note, NotedDict
from node.core.messages import MAX_LATE_PRECOMMITS_PER_BLOCK, CommitCertificate, Kind, Vote, make_certificate
from node.core.state import ChainState, late_precommit_misfit, opened_entry, opened_pending

MAX_LATE_KEPT = 16_384  # late precommits kept for inclusion (bounded memory)
MAX_OPEN_KEPT = 16_384  # open-height precommits noted for a crash (a committee's worth over many rounds)


class LatePrecommits:
    """The precommits one validator keeps after their height closed: others' to include, ours to re-send."""

    def __init__(self) -> None:
        self.last_precommits: VoteSet | None = None  # the decided round's precommits, while we hold them
        # precommits that certificates missed, to include
        self._late: NotedDict[tuple[int, bytes], Vote] = NotedDict(NOTE_LATE, _key_bytes, _vote_bytes)
        self._pending_cache: (
            tuple[ChainState, CommitCertificate | None, Participation | None, Mapping[int, Participation]]
            | None
        ) = None
        # ours, until the chain has counted them
        self._own_precommits: NotedDict[tuple[int, int], Vote] = NotedDict(NOTE_OWN, _key_bytes, _vote_bytes)
        # others' precommits for the open height, by (height, round, validator): only for a crash
        self._open: NotedDict[tuple[int, int, bytes], Vote] = NotedDict(NOTE_OPEN, _key_bytes, _vote_bytes)

    def note_open(self, vote: Vote) -> None:
        """Another validator's first precommit of a round at the open height, counted by our vote set.

        Which round decides is not known yet, so each round's is kept. If we
        crash before deciding and catch up by sync, the certificate we are
        handed may lack it; recalled into the vote set, `carry` keeps it for
        our next block as it would have without the crash.
        """
        if len(self._open) < MAX_OPEN_KEPT:
            self._open.setdefault((vote.height, vote.round, vote.validator), vote)

    def note_ahead(self, vote: Vote, ours: bytes, max_round: int) -> None:
        """Another validator's precommit for a height ahead of ours, noted for a crash as the open height's are.

        Kept only in memory, it was lost when we crashed before reaching its
        height, and the block we built after catching up by sync went without
        it: a miss charged to a validator whose precommit had reached us.
        """
        if vote.kind == Kind.PRECOMMIT and vote.validator != ours and vote.round <= max_round:
            self.note_open(vote)

    def note_own(self, vote: Vote) -> None:
        """One of our own precommits: kept until a block counts it (see `resend_uncounted`)."""
        self._own_precommits.setdefault((vote.height, vote.round), vote)

    def decided(self, height: int, precommits: VoteSet | None) -> None:
        """A height was decided: with the deciding round's precommits when we saw them, else None (sync).

        Its open-height notes are forgotten: `carry` keeps, as late precommits,
        those that may still count.
        """
        self.last_precommits = precommits
        self._open.keep_only(lambda key, _: key[0] > height)

    def add(self, vote: Vote, state: ChainState, cert: CommitCertificate | None) -> Vote | None:
        """A precommit for a finalized height: into the next certificate, or a later block.

        One for another block than ours, at our certificate's round, by a
        validator who also precommitted ours, is a double sign across a fork:
        then our copy of its precommit is returned, for evidence, and nothing
        is kept.
        """
        if vote.kind != Kind.PRECOMMIT:
            return None
        late = self.last_precommits
        if cert is not None and vote.height == cert.height and vote.round == cert.round:
            if vote.block_id == cert.block_id and late is not None and not late.holds(vote):
                late.add(vote)  # into the certificate we propose, if we propose before deciding again
            ours = self.precommit_by(vote.validator, cert)
            if ours is not None and vote.block_id is not None and ours.block_id != vote.block_id:
                return ours
        # Or into a later block, if the certificate went without it. Only one that can count is
        # kept: the first to arrive may be a nil precommit of a round that did not decide, and
        # keeping it (one per validator and height) turned away the one that counts.
        key = _shared_key(vote.height, vote.validator)
        if key not in self._late and len(self._late) < MAX_LATE_KEPT and self._may_count(vote, state, cert):
            self._late.put(key, vote)
        return None

    def carry(self, held: VoteSet | None, state: ChainState, cert: CommitCertificate) -> None:
        """At a decision: every precommit we hold of the deciding round, for the block or nil, may count.

        A nil precommit of that round, or one for the block that arrived
        after our certificate was made (or that our sync answer's certificate
        lacks), shows its validator online as much as a signature in the
        certificate does; without this it was forgotten with the height.
        """
        if held is None:
            return
        for voters in held.by_block.values():
            for vote in voters.values():
                self.add(vote, state, cert)

    def _may_count(self, vote: Vote, state: ChainState, cert: CommitCertificate | None) -> bool:
        """Whether `vote` may still be counted for its height by some block.

        Judged against what the chain holds, never against our own
        certificate: the one that goes on chain is the next proposer's,
        which may lack a signer ours has. So for the height our certificate
        closes, nobody counts as already counted yet.
        """
        opened, pending = self._pending(state, cert)
        entry = opened if opened is not None and opened.height == vote.height else pending.get(vote.height)
        if entry is not None and cert is not None and entry.height == cert.height:
            entry = self._uncounted(entry)
        return late_precommit_misfit(entry, vote) is None

    @staticmethod
    def _uncounted(entry: Participation) -> Participation:
        """`entry` with no signer counted yet: made once per record, not once per precommit `carry` weighs
        (nor per machine: the followers of a height weigh against the one record `_opened_entry` shared)."""
        if not _last_uncounted or _last_uncounted[0][0] is not entry:
            _last_uncounted[:] = [(entry, replace(entry, signers=frozenset()))]
        return _last_uncounted[0][1]

    def precommit_by(self, validator: bytes, cert: CommitCertificate | None) -> Vote | None:
        """`validator`'s precommit for the block we finalized last (certified by `cert`), if we hold one."""
        if cert is None:
            return None
        if self.last_precommits is not None:
            return self.last_precommits.by_block.get(cert.block_id, {}).get(validator)
        return next((vote for vote in cert.votes() if vote.validator == validator), None)

    def to_include(self, state: ChainState, last_commit: CommitCertificate | None) -> tuple[Vote, ...]:
        """The kept late precommits a block carrying `last_commit` may include.

        They were authenticated on arrival, so only their fit is checked here.
        Those the chain can no longer count (their height judged, or their
        signer counted by a block already final) are forgotten first, so the
        work per block follows what is still to include, not everything that
        arrived within the grace period (thousands of heights when blocks
        come every millisecond).
        """
        if not self._late and not self._own_precommits:
            return ()
        self._late.keep_only(lambda _, vote: self._chain_may_count(vote, state, last_commit))
        pending = opened_pending(state, last_commit)
        candidates = dict(self._late.items())
        for (height, _), vote in sorted(self._own_precommits.items()):
            if late_precommit_misfit(pending.get(height), vote) is None:
                candidates.setdefault((height, vote.validator), vote)  # ours count like anyone's
        chosen = [
            vote
            for _, vote in sorted(candidates.items())
            if late_precommit_misfit(pending[vote.height], vote) is None
        ]
        return tuple(chosen[:MAX_LATE_PRECOMMITS_PER_BLOCK])

    @staticmethod
    def _chain_may_count(vote: Vote, state: ChainState, last_commit: CommitCertificate | None) -> bool:
        """Whether a block on `state` may still count `vote`: our certificate is not the chain's yet."""
        if last_commit is not None and vote.height == last_commit.height:
            return True
        entry = state.pending_by_height.get(vote.height)
        return late_precommit_misfit(entry, vote) is None

    def certificate_for_proposal(
        self, height: int, last_certificate: CommitCertificate | None
    ) -> CommitCertificate | None:
        """The previous height's certificate, with late precommits folded in."""
        if height == 1:
            return None
        late = self.last_precommits
        if late is not None and last_certificate is not None:
            votes = late.votes_for(last_certificate.block_id)
            if len(votes) > len(last_certificate.signatures):
                return make_certificate(votes)
        return last_certificate

    def full_certificate(self, ours: CommitCertificate) -> CommitCertificate:
        """Our certificate with every precommit for its block we hold (to weigh against a conflicting one)."""
        late = self.last_precommits
        if late is not None:
            return make_certificate(late.votes_for(ours.block_id))
        return ours

    def resend_uncounted(self, state: ChainState, height: int) -> tuple[tuple[Vote, None], ...]:
        """Our precommits for pending heights that no block has counted yet: to send again.

        After a height closes nobody relays its votes, so a precommit lost on
        the way to every proposer would be charged as downtime although we
        were online. Each new height re-sends each such precommit once, until
        a block counts it or its height is judged: at most one message per
        pending height. Those the chain counted or judged are forgotten.
        `height` is the height now open.
        """
        self._own_precommits.keep_only(
            lambda key, vote: (
                key[0] >= height - 1
                or late_precommit_misfit(state.pending_by_height.get(key[0]), vote) is None
            )
        )
        return tuple(
            (vote, None)
            for (h, _), vote in sorted(self._own_precommits.items())
            if is_resend_due(height - h, state.params.late_precommit_heights)
            and late_precommit_misfit(state.pending_by_height.get(h), vote) is None
        )

    def changes(self) -> list[Note]:
        """What changed in the precommits kept (late, ours, the open height's) since last asked, for the durable memory."""
        return self._late.changes() + self._own_precommits.changes() + self._open.changes()

    def _pending(
        self, state: ChainState, certificate: CommitCertificate | None
    ) -> tuple[Participation | None, Mapping[int, Participation]]:
        """The participation records waiting to be judged: the one our certificate opens, and the chain's by height.

        `opened_pending` as its two parts, looked up in that order (a ChainMap's
        lookup costs more than the rest of weighing a precommit). Asked for
        every late precommit that arrives, so it is worked out once per
        (state, certificate) pair, not once per message.
        """
        cached = self._pending_cache
        if cached is None or cached[0] is not state or cached[1] is not certificate:
            opened = _opened_entry(state, certificate)
            cached = self._pending_cache = (state, certificate, opened, state.pending_by_height)
        return cached[2], cached[3]


def is_resend_due(distance: int, every_height_for: int) -> bool:
    """Whether our uncounted precommit `distance` heights back goes out again as a new height opens.

    At every height while the chain still guarantees it a block to count it
    (`late_precommit_heights`), then at distances that double: when a lone
    supermajority decides every few milliseconds, a height stays pending for
    thousands of heights, and sending each uncounted precommit at each of
    them made every height cost messages in proportion to that backlog.
    A copy lost on the way still gets a fresh chance at 8, 16, 32 ... heights.
    """
    return distance <= every_height_for or distance & (distance - 1) == 0


_last_uncounted: list[tuple[Participation, Participation]] = []
_last_opened: list[tuple[ChainState, CommitCertificate | None, Participation | None]] = []


def _opened_entry(state: ChainState, cert: CommitCertificate | None) -> Participation | None:
    """`state.opened_entry`, the last answer remembered per process: the same record for every machine
    that decided the same height with an equal certificate on the same state (the simulator's thousands),
    instead of a copy of the committee and its signers each. Asked again only for that very state and
    an equal certificate (every signature)."""
    if _last_opened and _last_opened[0][0] is state and _last_opened[0][1] == cert:
        return _last_opened[0][2]
    entry = opened_entry(state, cert)
    _last_opened[:] = [(state, cert, entry)]
    return entry


MAX_ENCODED = 4096
"""Encodings remembered per process. A machine notes each kept precommit for the durable memory,
and the simulator's thousands of machines keep the same precommits of a height: encoded once, and
one bytes object kept for all of them instead of a copy each. Keys and votes hold ints and bytes
only (no bool, whose equal int encodes otherwise), so equal values encode alike."""

_encoded_keys: dict[tuple[int, bytes] | tuple[int, int] | tuple[int, int, bytes], bytes] = {}
_encoded_votes: dict[Vote, bytes] = {}


_shared_keys: dict[tuple[int, bytes], tuple[int, bytes]] = {}


def _shared_key(height: int, validator: bytes) -> tuple[int, bytes]:
    """The (height, validator) key of a kept late precommit, one tuple per process for equal keys:
    every machine of a simulated height keeps the same committee's precommits until they are judged."""
    key = (height, validator)
    found = _shared_keys.get(key)
    if found is None:
        if len(_shared_keys) >= MAX_ENCODED:
            _shared_keys.clear()
        found = _shared_keys[key] = key
    return found


def _key_bytes(key: tuple[int, bytes] | tuple[int, int] | tuple[int, int, bytes]) -> bytes:
    data = _encoded_keys.get(key)
    if data is None:
        if len(_encoded_keys) >= MAX_ENCODED:
            _encoded_keys.clear()
        data = _encoded_keys[key] = encode(list(key))
    return data


def _vote_bytes(vote: Vote) -> bytes:
    data = _encoded_votes.get(vote)
    if data is None:
        if len(_encoded_votes) >= MAX_ENCODED:
            _encoded_votes.clear()
        data = _encoded_votes[vote] = encode(vote.to_wire())
    return data
