"""Certificate checks shared by many consensus machines of one process.

A commit certificate is judged by `state.certificate_problem`: its block and
height, each signer's committee seat, each signature under the signer's key
for that height, and the quorum. The verdict is a pure function of the
certificate, the block id it must prove, the committee and the key set
(chain id, current keys, rotated-out keys). One process that runs many
machines (the simulator runs thousands, each following every height by the
certificate the next proposal carries) would otherwise re-check the same
85-odd signatures once per machine per height; `SharedCertificateChecks`
checks each certificate once against each key set, as `admission.admit`'s
cache authenticates identical bytes once, and hands the machines the
precommits it proves as one shared tuple.

A machine is handed its `CertificateChecks`; by default (`PLAIN_CHECKS`)
it calls `certificate_problem` each time, as a real node with one key does.
"""

from __future__ import annotations

from collections.abc import Mapping

from node.core.messages import CommitCertificate, Vote
from node.core.signing_keys import KeyHistory
from node.core.state import ChainState, Committee, certificate_problem

MAX_CHECKS = 10_000  # certificates remembered (a few per height; cleared past this, like admission's)

CertificateKey = tuple[int, int, bytes, tuple[tuple[bytes, bytes], ...], bytes]
"""Everything of the certificate the verdict reads (height, round, block, signatures) and the block it must prove."""


class CertificateChecks:
    """How a machine judges a certificate and reads its precommits: each time afresh (a real node's way)."""

    def problem(
        self, state: ChainState, cert: CommitCertificate, committee: Committee, block_id: bytes
    ) -> str | None:
        """Why `cert` does not prove `block_id` final for `committee` on `state`'s keys, or None."""
        return certificate_problem(state, cert, committee, block_id)

    def votes(self, cert: CommitCertificate) -> tuple[Vote, ...]:
        """The precommits `cert` carries."""
        return cert.votes()


PLAIN_CHECKS = CertificateChecks()


class SharedCertificateChecks(CertificateChecks):
    """`certificate_problem`, remembered per certificate and key set: each is checked once per process.

    A remembered verdict is handed back only to a question about the same
    certificate (every field and every signature) and the same block id,
    asked against the same chain id, the same rotated-out keys, the very
    current-key mapping and the very committee it was judged against (by
    identity, as admission's cache holds its key sets: equal states share
    them in one process, and a mapping of thousands of keys is not compared
    whole per question). Anything else is checked afresh and replaces it.
    """

    def __init__(self, limit: int = MAX_CHECKS) -> None:
        self._limit = limit
        self._verdicts: dict[
            CertificateKey, tuple[str, Mapping[bytes, bytes], KeyHistory, Committee, str | None]
        ] = {}
        self._votes: dict[tuple[int, int, bytes, tuple[tuple[bytes, bytes], ...]], tuple[Vote, ...]] = {}
        self.checked = 0  # certificates actually verified (the rest were answered from memory)
        self.answered = 0  # questions answered from memory

    def problem(
        self, state: ChainState, cert: CommitCertificate, committee: Committee, block_id: bytes
    ) -> str | None:
        """`certificate_problem`, from memory when this very question was answered before."""
        key = (cert.height, cert.round, cert.block_id, cert.signatures, block_id)
        hit = self._verdicts.get(key)
        if (
            hit is not None
            and hit[1] is state.public_keys
            and hit[3] is committee
            and hit[0] == state.chain_id
            and hit[2] == state.key_history
        ):
            self.answered += 1
            return hit[4]
        if len(self._verdicts) >= self._limit:
            self._verdicts.clear()
        self.checked += 1
        verdict = certificate_problem(state, cert, committee, block_id)
        self._verdicts[key] = (state.chain_id, state.public_keys, state.key_history, committee, verdict)
        return verdict

    def votes(self, cert: CommitCertificate) -> tuple[Vote, ...]:
        """`cert.votes()`, built once per certificate: the same precommits for every machine that counts them."""
        key = (cert.height, cert.round, cert.block_id, cert.signatures)
        votes = self._votes.get(key)
        if votes is None:
            if len(self._votes) >= self._limit:
                self._votes.clear()
            votes = self._votes[key] = cert.votes()
        return votes
