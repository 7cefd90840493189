"""Signing records the runtime puts between a hosted key's guarded signer and the store.

The signer sees one `SigningRecord`; what the process does around each
record write (end the node when the store fails, or, in tests, die at the
most delicate instant) lives here so the runtime's module keeps to wiring.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence

from node.core.memory import NOTE_EVIDENCE, Note, ProtocolMemory
from node.core.safety import SignMark
from node.core.signer import SigningRecord
from node.runtime.store import StorageError


class FailOnStorageError:
    """A signing record that reports a store failure to the runtime before the signer sees it.

    The guarded signer treats any record failure as "do not sign", which is
    right for the signature but would leave a node that can no longer write
    its marks running silently; the runtime ends it with a ``fatal`` event.
    """

    def __init__(self, record: SigningRecord, failed: Callable[[str], None]) -> None:
        self._record = record
        self._failed = failed

    def record_signed(self, validator: bytes, mark: SignMark, height: int, item: bytes, block: bytes) -> None:
        try:
            self._record.record_signed(validator, mark, height, item, block)
        except StorageError as exc:
            self._failed(f"storage: {exc}")
            raise

    def journal(self, validator: bytes, height: int) -> list[tuple[bytes, bytes]]:
        return self._record.journal(validator, height)

    def last_signed(self, validator: bytes) -> SignMark | None:
        return self._record.last_signed(validator)


class CrashAfterRecord:
    """A signing record that SIGKILLs its process after the n-th mark is durably recorded.

    Test-only fault injection (``POSNET_CRASH_AFTER_SIGN_RECORD``, read by node.runtime.testhooks): it stops the
    node at the most delicate instant, with a mark on disk for a signature
    that was never published.
    """

    def __init__(self, record: SigningRecord, crash_after: int) -> None:
        self._record = record
        self._left = crash_after

    def record_signed(self, validator: bytes, mark: SignMark, height: int, item: bytes, block: bytes) -> None:
        self._record.record_signed(validator, mark, height, item, block)
        self._left -= 1
        if self._left <= 0:
            os.kill(os.getpid(), signal.SIGKILL)

    def journal(self, validator: bytes, height: int) -> list[tuple[bytes, bytes]]:
        return self._record.journal(validator, height)

    def last_signed(self, validator: bytes) -> SignMark | None:
        return self._record.last_signed(validator)


CRASH_AFTER_EVIDENCE_KEPT_ENV = "POSNET_CRASH_AFTER_EVIDENCE_KEPT"
"""Test hook: SIGKILL the node right after evidence first reaches its protocol memory on disk."""


class CrashAfterEvidenceKept:
    """A protocol memory that SIGKILLs its process once it has durably kept a piece of evidence.

    Test-only fault injection (``POSNET_CRASH_AFTER_EVIDENCE_KEPT``): the node
    dies between learning of an equivocation and any block that includes it,
    so only what it kept can still bring the offender to account.
    """

    def __init__(self, memory: ProtocolMemory) -> None:
        self._memory = memory

    def keep_notes(self, validator: bytes, notes: Sequence[Note]) -> None:
        self._memory.keep_notes(validator, notes)
        if any(kind == NOTE_EVIDENCE and value is not None for kind, _, value in notes):
            os.kill(os.getpid(), signal.SIGKILL)

    def notes(self, validator: bytes) -> list[tuple[int, bytes, bytes]]:
        return self._memory.notes(validator)


def protocol_memory(store: ProtocolMemory) -> ProtocolMemory:
    """The node's protocol memory: its store, wrapped in the crash hook when the environment asks for it."""
    return CrashAfterEvidenceKept(store) if os.environ.get(CRASH_AFTER_EVIDENCE_KEPT_ENV) else store
