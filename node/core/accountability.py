"""Accountability: who is provably to blame when two commit certificates conflict.

Tendermint's accountable-safety theorem: if two certificates finalize
different blocks at one height, validators holding more than 1/3 of that
height's committee power broke a protocol rule, and their own signed votes
prove it. A fork with nobody to blame would mean the protocol (or this
implementation of it) is unsafe even with an honest two-thirds; a fork with
blame lets the honest chain slash the culprits instead of merely noticing.

Two users:
- the consensus machine, which sees a valid certificate conflicting with
  the block it finalized: `certificate_conflict_evidence` gives it ordinary
  equivocation evidence (gossiped, included and slashed like any other);
- a checker that saw every signed vote of the height (a global observer,
  like a raw subscriber on the broker): `fork_culprits` names everyone the
  votes convict and their committee power, so it can assert the theorem.

The offences (each is something an honest validator never does):
- double sign: two votes of one kind for one (height, round), different blocks;
- amnesia: precommitted V at round r, then prevoted a block W != V at a
  later round r' although no polka (prevotes from more than 2/3 of the
  committee's power) for W was formed at any round in [r, r'): an honest
  validator is locked on V from r on and unlocks only on such a polka;
- unjustified precommit: precommitted a block at round r with no polka for
  it at r: an honest validator precommits a block only on seeing that polka.
The last two rest on the observer having seen every vote sent, which is
what "global observer" means; a double sign needs nothing but the two votes.
Together they always convict more than 1/3 (see `fork_culprits`).

Everything here is a pure function of frozen values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from node.core.messages import (
    CommitCertificate,
    Evidence,
    Kind,
    Vote,
    evidence_shape_problem,
    make_evidence,
    verify_signed,
)
from node.core.state import Committee

DOUBLE_SIGN = "double_sign"
AMNESIA = "amnesia"
UNJUSTIFIED_PRECOMMIT = "unjustified_precommit"
OFFENCES = (
    DOUBLE_SIGN,
    AMNESIA,
    UNJUSTIFIED_PRECOMMIT,
)  # strongest proof first: only a double sign is slashable

Polkas = Mapping[int, frozenset[bytes]]  # round -> non-nil block ids with a polka at that round


@dataclass(frozen=True)
class Culprit:
    """One validator the votes convict, with the signed votes that show it.

    `proof` is (first, second) for a double sign, (precommit, prevote) for
    amnesia and (precommit,) for an unjustified precommit.
    """

    validator: bytes
    offence: str
    proof: tuple[Vote, ...]

    def evidence(self) -> Evidence | None:
        """The slashable evidence, for a double sign (the other offences have no evidence format)."""
        return make_evidence(*self.proof) if self.offence == DOUBLE_SIGN else None


@dataclass(frozen=True)
class ForkAccount:
    """The blame for one pair of conflicting certificates, against that height's committee."""

    height: int
    block_ids: tuple[bytes, bytes]
    rounds: tuple[int, int]
    culprits: tuple[Culprit, ...]  # one per validator, sorted by address
    power: int  # the culprits' committee power, each counted once
    total: int  # the committee's total power

    @property
    def covers_one_third(self) -> bool:
        """What the theorem promises: two quorums of more than 2/3 overlap in more than 1/3."""
        return 3 * self.power > self.total

    def validators(self) -> tuple[bytes, ...]:
        return tuple(culprit.validator for culprit in self.culprits)


def certificates_conflict(a: CommitCertificate, b: CommitCertificate) -> bool:
    """Two certificates finalize different blocks at the same height."""
    return a.height == b.height and a.block_id != b.block_id


def certificate_conflict_evidence(a: CommitCertificate, b: CommitCertificate) -> tuple[Evidence, ...]:
    """Equivocation evidence against every validator whose precommit is in both certificates.

    Only certificates of the same round convict from their signatures alone:
    a precommit for A and one for B at the same (height, round) is a double
    sign. Certificates of different rounds need the prevotes in between to
    blame anyone (see `fork_culprits`), so they give nothing here. The
    result is ordered by validator and is the same for (a, b) and (b, a).
    """
    if not certificates_conflict(a, b) or a.round != b.round:
        return ()
    theirs = {vote.validator: vote for vote in b.votes()}
    return tuple(
        make_evidence(vote, theirs[vote.validator]) for vote in a.votes() if vote.validator in theirs
    )


def polkas(votes: Iterable[Vote], committee: Committee) -> dict[int, frozenset[bytes]]:
    """Per round, the blocks whose prevotes carry more than 2/3 of the committee's power.

    A validator counts toward every block it prevoted, as in the consensus
    machine's vote sets: the observer's polkas must include every polka any
    honest node could have acted on, or honest nodes would be blamed.
    """
    voters: dict[tuple[int, bytes], set[bytes]] = {}
    for vote in votes:
        if vote.kind == Kind.PREVOTE and vote.block_id is not None:
            voters.setdefault((vote.round, vote.block_id), set()).add(vote.validator)
    found: dict[int, set[bytes]] = {}
    for (round_, block_id), validators in voters.items():
        if committee.is_quorum(sum(committee.power_of(v) for v in validators)):
            found.setdefault(round_, set()).add(block_id)
    return {round_: frozenset(ids) for round_, ids in found.items()}


def polka_between(found: Polkas, block_id: bytes, first: int, stop: int) -> bool:
    """A polka for `block_id` at some round in [first, stop): what lets a locked validator move on."""
    return any(first <= round_ < stop and block_id in ids for round_, ids in found.items())


def _vote_order(vote: Vote) -> tuple[bytes, int, int, bytes, bytes]:
    """A total order on votes, so the same votes give the same proofs in any input order."""
    return (vote.validator, vote.round, int(vote.kind), vote.block_id or b"", vote.signature)


def double_signers(votes: Iterable[Vote]) -> dict[bytes, Culprit]:
    """Validators with two votes of one kind at one (height, round) for different blocks."""
    first: dict[tuple[bytes, int, int, int], Vote] = {}
    found: dict[bytes, Culprit] = {}
    for vote in sorted(votes, key=_vote_order):
        key = (vote.validator, vote.height, vote.round, int(vote.kind))
        earlier = first.setdefault(key, vote)
        if earlier.block_id != vote.block_id and vote.validator not in found:
            evidence = make_evidence(earlier, vote)
            found[vote.validator] = Culprit(vote.validator, DOUBLE_SIGN, (evidence.first, evidence.second))  # type: ignore[arg-type]
    return found


def amnesia_culprits(votes: Iterable[Vote], found: Polkas) -> dict[bytes, Culprit]:
    """Validators that prevoted away from a block they had precommitted, with no polka to unlock them."""
    precommits: dict[bytes, list[Vote]] = {}
    prevotes: dict[bytes, list[Vote]] = {}
    for vote in sorted(votes, key=_vote_order):
        if vote.block_id is not None:
            (precommits if vote.kind == Kind.PRECOMMIT else prevotes).setdefault(vote.validator, []).append(
                vote
            )
    culprits: dict[bytes, Culprit] = {}
    for validator, locks in precommits.items():
        proof = next(
            (
                (lock, prevote)
                for lock in locks
                for prevote in prevotes.get(validator, ())
                if prevote.height == lock.height
                and prevote.round > lock.round
                and prevote.block_id != lock.block_id
                and not polka_between(found, prevote.block_id, lock.round, prevote.round)  # type: ignore[arg-type]
            ),
            None,
        )
        if proof is not None:
            culprits[validator] = Culprit(validator, AMNESIA, proof)
    return culprits


def unjustified_precommits(votes: Iterable[Vote], found: Polkas) -> dict[bytes, Culprit]:
    """Validators that precommitted a block at a round where no polka for it was formed."""
    culprits: dict[bytes, Culprit] = {}
    for vote in sorted(votes, key=_vote_order):
        if (
            vote.kind == Kind.PRECOMMIT
            and vote.block_id is not None
            and vote.block_id not in found.get(vote.round, ())
            and vote.validator not in culprits
        ):
            culprits[vote.validator] = Culprit(vote.validator, UNJUSTIFIED_PRECOMMIT, (vote,))
    return culprits


def fork_culprits(
    a: CommitCertificate, b: CommitCertificate, votes: Iterable[Vote], committee: Committee
) -> ForkAccount:
    """Everyone the signed votes of the height convict, given two conflicting certificates.

    `votes` should be every signed vote sent at that height (the
    certificates' own precommits are added); `committee` is the height's
    committee, which both certificates must have a quorum of. Why this
    always convicts more than 1/3 of its power: let A be certified at r1 <=
    r2, B at r2. If r1 == r2 the two quorums of precommits overlap in more
    than 1/3, all double signers. Otherwise take the first round r* >= r1
    with a polka for a block other than A (r2 has one for B, or B's
    precommitters are all unjustified). If r* == r1, either A has no polka
    at r1 (A's precommitters are unjustified) or the two polkas overlap in
    double signers. If r* > r1, A's precommitters and r*'s prevoters
    overlap in more than 1/3, each of whom prevoted away from A with no
    polka in [r1, r*): amnesia. Each validator is named once, with its
    strongest proof (a double sign, which is slashable, first).
    """
    if not certificates_conflict(a, b):
        raise ValueError("the certificates do not conflict")
    voted = {
        vote
        for vote in (*votes, *a.votes(), *b.votes())
        if vote.height == a.height and committee.power_of(vote.validator) > 0
    }
    found = polkas(voted, committee)
    convicted: dict[bytes, Culprit] = {}
    for finder in (
        double_signers(voted),
        amnesia_culprits(voted, found),
        unjustified_precommits(voted, found),
    ):
        for validator, culprit in finder.items():
            convicted.setdefault(validator, culprit)
    culprits = tuple(convicted[validator] for validator in sorted(convicted))
    return ForkAccount(
        height=a.height,
        block_ids=(a.block_id, b.block_id),
        rounds=(a.round, b.round),
        culprits=culprits,
        power=sum(committee.power_of(culprit.validator) for culprit in culprits),
        total=committee.total,
    )


def culprit_proof_problem(culprit: Culprit, chain_id: str, public_keys: Mapping[bytes, bytes]) -> str | None:
    """Why `culprit.proof` does not show its offence, or None: anyone holding the keys can run this.

    Signatures and the shape of the offence are checked here. For amnesia
    and unjustified precommits the missing polka is a claim about all votes
    of the height; `polkas` over the same votes re-checks it.
    """
    key = public_keys.get(culprit.validator)
    if key is None:
        return "unknown validator"
    if any(vote.validator != culprit.validator for vote in culprit.proof):
        return "proof has a vote by someone else"
    if not all(verify_signed(chain_id, vote, key) for vote in culprit.proof):
        return "proof has a bad signature"
    if culprit.offence == DOUBLE_SIGN:
        if len(culprit.proof) != 2:
            return "a double sign needs two votes"
        return evidence_shape_problem(make_evidence(*culprit.proof))
    if culprit.offence == AMNESIA:
        if len(culprit.proof) != 2:
            return "amnesia needs a precommit and a later prevote"
        lock, prevote = culprit.proof
        if (lock.kind, prevote.kind) != (Kind.PRECOMMIT, Kind.PREVOTE) or lock.height != prevote.height:
            return "amnesia needs a precommit and a prevote of one height"
        if lock.block_id is None or prevote.block_id in (None, lock.block_id) or prevote.round <= lock.round:
            return "the prevote is not for another block at a later round"
        return None
    if culprit.offence == UNJUSTIFIED_PRECOMMIT:
        if (
            len(culprit.proof) != 1
            or culprit.proof[0].kind != Kind.PRECOMMIT
            or culprit.proof[0].block_id is None
        ):
            return "an unjustified precommit is one precommit for a block"
        return None
    return f"unknown offence {culprit.offence!r}"
