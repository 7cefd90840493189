"""The node's SQLite store: finalized chain and crash-proof slashing protection.

The crash tests use real processes killed with SIGKILL, no mocks: what they
check is that a mark reported as recorded is on disk when the process dies at
any instant, and that what is on disk is never a torn mark.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.safety import DoubleSignRefused, SignMark, Step, may_sign, position
from node.runtime.store import ConflictingBlock, StorageError, Store

REPO = Path(__file__).resolve().parents[1]
VAL = b"\x01" * 32
OTHER_VAL = b"\x02" * 32
A = b"\xaa" * 32
B = b"\xbb" * 32


def block_hash(height: int) -> bytes:
    return hashlib.sha256(b"block %d" % height).digest()


def fill_chain(store: Store, up_to: int) -> None:
    for h in range(1, up_to + 1):
        store.put_finalized(h, block_hash(h), b"block %d" % h, b"cert %d" % h)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "node.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as s:
        yield s


# -- finalized chain ----------------------------------------------------------


def test_empty_store_has_no_chain_or_marks(store: Store) -> None:
    assert store.last_height() == 0
    assert store.finalized(1) is None
    assert store.finalized_range(1, 10) == []
    assert store.last_signed(VAL) is None


def test_finalized_block_round_trips(store: Store) -> None:
    store.put_finalized(1, block_hash(1), b"the block", b"the cert")
    assert store.finalized(1) == (block_hash(1), b"the block", b"the cert")
    assert store.last_height() == 1


def test_reputting_the_same_hash_is_a_no_op_that_keeps_the_original(store: Store) -> None:
    store.put_finalized(1, block_hash(1), b"the block", b"cert one")
    store.put_finalized(1, block_hash(1), b"the block", b"cert two")
    assert store.finalized(1) == (block_hash(1), b"the block", b"cert one")
    assert store.last_height() == 1


def test_a_different_hash_at_a_finalized_height_is_a_conflicting_block(store: Store) -> None:
    fill_chain(store, 3)
    with pytest.raises(ConflictingBlock):
        store.put_finalized(2, b"\xff" * 32, b"evil", b"evil cert")
    assert store.finalized(2) == (block_hash(2), b"block 2", b"cert 2")
    assert issubclass(ConflictingBlock, StorageError)


@pytest.mark.parametrize(
    ("chain_length", "height"),
    [(0, 0), (0, -1), (0, 2), (1, 3), (3, 9)],
    ids=["zero", "negative", "not-starting-at-one", "skip-one", "gap"],
)
def test_non_contiguous_heights_are_refused(store: Store, chain_length: int, height: int) -> None:
    fill_chain(store, chain_length)
    with pytest.raises(StorageError):
        store.put_finalized(height, b"\x00" * 32, b"b", b"c")
    assert store.last_height() == chain_length
    assert store.finalized(height) is None


def test_an_imported_run_of_blocks_lands_whole_or_not_at_all(store: Store) -> None:
    fill_chain(store, 2)
    rows = [(h, block_hash(h), b"block %d" % h, b"cert %d" % h) for h in (3, 4, 5)]
    store.put_finalized_many(rows)
    assert store.last_height() == 5 and store.finalized(4) == (block_hash(4), b"block 4", b"cert 4")
    with pytest.raises(StorageError, match="contiguous from 6"):
        store.put_finalized_many([(h, block_hash(h), b"b", b"c") for h in (6, 8)])
    with pytest.raises(StorageError):
        store.put_finalized_many([(5, block_hash(5), b"b", b"c")])
    assert store.last_height() == 5


def test_snapshots_need_their_block_and_only_the_newest_are_kept(store: Store) -> None:
    with pytest.raises(StorageError, match="no finalized block at height 1"):
        store.put_snapshot(1, b"state")
    fill_chain(store, 4)
    for height in (1, 2, 3, 4):
        store.put_snapshot(height, b"state %d" % height)
    assert store.snapshots() == [(4, b"state 4"), (3, b"state 3")]


def test_finalized_range_is_consecutive_and_bounded_by_limit(store: Store) -> None:
    fill_chain(store, 5)
    assert [row[0] for row in store.finalized_range(2, 3)] == [2, 3, 4]
    assert store.finalized_range(4, 10) == [
        (h, block_hash(h), b"block %d" % h, b"cert %d" % h) for h in (4, 5)
    ]
    assert store.finalized_range(6, 10) == []
    assert store.finalized_range(1, 0) == []
    with pytest.raises(ValueError):
        store.finalized_range(1, -1)


# -- slashing protection ------------------------------------------------------


def test_record_signing_round_trips_the_mark(store: Store) -> None:
    store.record_signing(VAL, SignMark(5, 1, Step.PRECOMMIT, None))
    got = store.last_signed(VAL)
    assert got == SignMark(5, 1, Step.PRECOMMIT, None)
    assert got is not None and got.step is Step.PRECOMMIT


def test_record_signing_refuses_a_conflict_and_leaves_the_stored_mark_unchanged(store: Store) -> None:
    first = SignMark(5, 0, Step.PREVOTE, A)
    store.record_signing(VAL, first)
    for conflicting in (
        SignMark(5, 0, Step.PREVOTE, B),
        SignMark(5, 0, Step.PREVOTE, None),
        SignMark(5, 0, Step.PROPOSAL, A),
        SignMark(4, 7, Step.PRECOMMIT, A),
    ):
        with pytest.raises(DoubleSignRefused):
            store.record_signing(VAL, conflicting)
        assert store.last_signed(VAL) == first


def test_record_signing_accepts_the_identical_mark_and_later_ones(store: Store) -> None:
    store.record_signing(VAL, SignMark(5, 0, Step.PREVOTE, A))
    store.record_signing(VAL, SignMark(5, 0, Step.PREVOTE, A))
    store.record_signing(VAL, SignMark(5, 0, Step.PRECOMMIT, None))
    store.record_signing(VAL, SignMark(6, 0, Step.PROPOSAL, B))
    assert store.last_signed(VAL) == SignMark(6, 0, Step.PROPOSAL, B)


def test_record_signed_keeps_the_mark_and_the_message_together(store: Store) -> None:
    store.record_signed(VAL, SignMark(5, 0, Step.PREVOTE, A), 5, b"prevote", b"")
    assert store.last_signed(VAL) == SignMark(5, 0, Step.PREVOTE, A)
    assert store.journal(VAL, 5) == [(b"prevote", b"")]


def test_record_signed_refused_writes_neither_mark_nor_message(store: Store) -> None:
    store.record_signed(VAL, SignMark(5, 0, Step.PREVOTE, A), 5, b"prevote A", b"")
    with pytest.raises(DoubleSignRefused):
        store.record_signed(VAL, SignMark(5, 0, Step.PREVOTE, B), 5, b"prevote B", b"")
    assert store.last_signed(VAL) == SignMark(5, 0, Step.PREVOTE, A)
    assert store.journal(VAL, 5) == [(b"prevote A", b"")]


def test_record_signed_whose_journal_entry_fails_leaves_no_mark(store: Store) -> None:
    store.record_signed(VAL, SignMark(5, 0, Step.PREVOTE, A), 5, b"prevote", b"")
    with pytest.raises(StorageError):  # a journal entry below the kept height: the mark must not stay
        store.record_signed(VAL, SignMark(6, 0, Step.PREVOTE, A), 4, b"stale", b"")
    assert store.last_signed(VAL) == SignMark(5, 0, Step.PREVOTE, A)


def test_the_guarded_signer_commits_once_per_signature(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mark and journal entry in one fsynced transaction: the node's largest per-message cost, halved."""
    from node.core.keys import Keypair
    from node.core.messages import Kind, Vote
    from node.core.signer import GuardedSigner

    writes = []
    write = store._write
    monkeypatch.setattr(store, "_write", lambda: writes.append(1) or write())
    keypair = Keypair.deterministic("storage/one-commit")
    signer = GuardedSigner("c", keypair, store)
    for height in (1, 2, 3):
        assert signer.sign(Vote(Kind.PREVOTE, height, 0, A, keypair.address)) is not None
    assert len(writes) == 3
    assert [len(store.journal(keypair.address, h)) for h in (3, 2)] == [1, 0]


def test_marks_are_kept_per_validator(store: Store) -> None:
    store.record_signing(VAL, SignMark(9, 0, Step.PRECOMMIT, A))
    store.record_signing(OTHER_VAL, SignMark(1, 0, Step.PREVOTE, B))
    assert store.last_signed(VAL) == SignMark(9, 0, Step.PRECOMMIT, A)
    assert store.last_signed(OTHER_VAL) == SignMark(1, 0, Step.PREVOTE, B)


_validators = (i.to_bytes(8, "big") for i in itertools.count())


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with Store(tmp_path_factory.mktemp("shared") / "node.db") as s:
        yield s


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.builds(
            SignMark,
            height=st.integers(0, 3),
            round=st.integers(0, 2),
            step=st.sampled_from(Step),
            block_id=st.sampled_from([None, A, B]),
        ),
        max_size=15,
    )
)
def test_the_store_enforces_exactly_the_pure_rule(shared_store: Store, candidates: list[SignMark]) -> None:
    validator = next(_validators)
    last: SignMark | None = None
    for candidate in candidates:
        if may_sign(last, candidate):
            shared_store.record_signing(validator, candidate)
            last = candidate
        else:
            with pytest.raises(DoubleSignRefused):
                shared_store.record_signing(validator, candidate)
        assert shared_store.last_signed(validator) == last


def test_concurrent_threads_cannot_both_sign_one_position(store: Store) -> None:
    winners: list[bytes] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            store.record_signing(VAL, SignMark(5, 0, Step.PREVOTE, bytes([i]) * 32))
            winners.append(bytes([i]) * 32)
        except DoubleSignRefused:
            pass

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.last_signed(VAL) == SignMark(5, 0, Step.PREVOTE, winners[0])


# -- opening, reopening, configuration ----------------------------------------


def test_everything_survives_close_and_reopen(db_path: Path) -> None:
    with Store(db_path) as store:
        fill_chain(store, 3)
        store.record_signing(VAL, SignMark(4, 2, Step.PREVOTE, None))
    with Store(db_path) as store:
        assert store.last_height() == 3
        assert store.finalized(2) == (block_hash(2), b"block 2", b"cert 2")
        assert store.last_signed(VAL) == SignMark(4, 2, Step.PREVOTE, None)
        with pytest.raises(DoubleSignRefused):
            store.record_signing(VAL, SignMark(4, 2, Step.PREVOTE, A))


def test_the_store_runs_in_wal_mode_with_full_sync(store: Store, db_path: Path) -> None:
    conn = store._conn
    assert conn is not None
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # 2 == FULL
    store.close()
    assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_schema_version_row_is_written_and_checked_on_open(db_path: Path) -> None:
    Store(db_path).close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (1,)
        conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StorageError, match="schema version"):
        Store(db_path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        Store(path)


def test_an_in_memory_database_is_refused_for_lack_of_durability() -> None:
    with pytest.raises(StorageError, match="WAL"):
        Store(":memory:")


def test_a_closed_store_raises_storage_error(db_path: Path) -> None:
    store = Store(db_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        store.record_signing(VAL, SignMark(1, 0, Step.PREVOTE, A))


# -- signing journal ------------------------------------------------------------


def test_the_journal_returns_one_heights_entries_in_signing_order(store: Store) -> None:
    store.journal_append(VAL, 5, b"proposal", b"block")
    store.journal_append(VAL, 5, b"prevote", b"")
    store.journal_append(VAL, 5, b"precommit", b"block")
    assert store.journal(VAL, 5) == [(b"proposal", b"block"), (b"prevote", b""), (b"precommit", b"block")]
    assert store.journal(VAL, 4) == []
    assert store.journal(VAL, 6) == []


def test_a_newer_height_replaces_the_journal_and_an_older_one_is_refused(store: Store) -> None:
    store.journal_append(VAL, 5, b"old", b"")
    store.journal_append(VAL, 6, b"new", b"")
    assert store.journal(VAL, 5) == []
    assert store.journal(VAL, 6) == [(b"new", b"")]
    with pytest.raises(StorageError, match="journal holds height 6"):
        store.journal_append(VAL, 5, b"late", b"")
    assert store.journal(VAL, 6) == [(b"new", b"")]
    store.journal_append(VAL, 6, b"newer", b"")
    assert store.journal(VAL, 6) == [(b"new", b""), (b"newer", b"")]


def test_journals_are_kept_per_validator(store: Store) -> None:
    store.journal_append(VAL, 3, b"mine", b"")
    store.journal_append(OTHER_VAL, 9, b"theirs", b"")
    assert store.journal(VAL, 3) == [(b"mine", b"")]
    assert store.journal(OTHER_VAL, 9) == [(b"theirs", b"")]


def test_the_store_is_the_guarded_signers_record_across_a_reopen(db_path: Path) -> None:
    from node.core.keys import Keypair
    from node.core.messages import Kind, Vote
    from node.core.signer import GuardedSigner

    keypair = Keypair.deterministic("journal-test")
    prevote = Vote(Kind.PREVOTE, 7, 0, A, keypair.address)
    with Store(db_path) as store:
        signed = GuardedSigner("chain", keypair, store).sign(prevote)
        assert signed is not None
    with Store(db_path) as store:
        signer = GuardedSigner("chain", keypair, store)
        assert signer.journal(7) == [(signed, None)]
        assert signer.sign(Vote(Kind.PREVOTE, 7, 0, B, keypair.address)) is None
        assert signer.refused == 1
        # The identical vote may be re-signed (and Ed25519 signatures are deterministic).
        assert signer.sign(prevote) == signed


JOURNAL_THEN_DIE = """
    import os, signal, sys
    from node.runtime.store import Store

    store = Store(sys.argv[1])
    store.journal_append(bytes.fromhex(sys.argv[2]), 5, b"signed vote", b"its block")
    os.kill(os.getpid(), signal.SIGKILL)
"""


# -- crashes: real processes, SIGKILL ------------------------------------------


def run_child(code: str, *args: str, **popen: object) -> subprocess.Popen[bytes]:
    """Start a Python child that imports the repo's packages like the node does."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,  # type: ignore[arg-type]
    )


RECORD_THEN_DIE = """
    import os, signal, sys
    from node.core.safety import SignMark, Step
    from node.runtime.store import Store

    store = Store(sys.argv[1])
    store.record_signing(bytes.fromhex(sys.argv[2]), SignMark(5, 0, Step.PREVOTE, bytes.fromhex(sys.argv[3])))
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.integration
def test_a_mark_recorded_just_before_sigkill_blocks_a_conflicting_vote_after_restart(db_path: Path) -> None:
    child = run_child(RECORD_THEN_DIE, str(db_path), VAL.hex(), A.hex())
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err.decode()
    # The child never closed the store: what we read back comes from WAL recovery.
    assert Path(f"{db_path}-wal").stat().st_size > 0

    with Store(db_path) as store:
        assert store.last_signed(VAL) == SignMark(5, 0, Step.PREVOTE, A)
        with pytest.raises(DoubleSignRefused):
            store.record_signing(VAL, SignMark(5, 0, Step.PREVOTE, B))
        store.record_signing(VAL, SignMark(5, 0, Step.PREVOTE, A))


def loop_mark(height: int, step: int) -> SignMark:
    """The mark the looping child signs at (height, step): derivable, so a torn row shows."""
    round_ = height % 3
    if height % 4 == 0 and step == Step.PRECOMMIT:
        return SignMark(height, round_, Step(step), None)
    block_id = hashlib.sha256(b"%d/%d/%d" % (height, round_, step)).digest()
    return SignMark(height, round_, Step(step), block_id)


def next_loop_mark(m: SignMark) -> SignMark:
    if m.step < Step.PRECOMMIT:
        return loop_mark(m.height, m.step + 1)
    return loop_mark(m.height + 1, Step.PROPOSAL)


SIGN_IN_A_LOOP = (
    """
import hashlib, os, sys
from node.core.safety import SignMark, Step
from node.runtime.store import Store
"""
    + textwrap.dedent(inspect.getsource(loop_mark))
    + """
db_path, validator, ack_path = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
store = Store(db_path)
last = store.last_signed(validator)
height = 1 if last is None else last.height + 1
ack = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
while True:
    for step in Step:
        store.record_signing(validator, loop_mark(height, step))
        # Acknowledge only after record_signing returned, as the signer would sign.
        os.write(ack, b"%d %d\\n" % (height, step))
    height += 1
"""
)


def wait_for_acks(ack_path: Path, child: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (ack_path.exists() and ack_path.stat().st_size > 0):
        if child.poll() is not None:
            raise AssertionError(f"child died early: {child.stderr.read().decode()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise AssertionError("child never acknowledged a mark")
        time.sleep(0.001)


def last_ack(ack_path: Path) -> SignMark | None:
    complete = [line for line in ack_path.read_bytes().split(b"\n")[:-1] if line]
    if not complete:
        return None
    height, step = map(int, complete[-1].split())
    return loop_mark(height, step)


@pytest.mark.integration
def test_marks_survive_sigkill_at_random_moments_complete_and_never_behind_an_ack(tmp_path: Path) -> None:
    db_path = tmp_path / "node.db"
    rng = random.Random(20240601)
    delays = [0.0, 0.001, 0.003, 0.01, 0.03, 0.1]
    previous: SignMark | None = None
    for i, base_delay in enumerate(delays):
        ack_path = tmp_path / f"acks-{i}"
        child = run_child(SIGN_IN_A_LOOP, str(db_path), VAL.hex(), str(ack_path))
        try:
            wait_for_acks(ack_path, child)
            time.sleep(base_delay + rng.uniform(0, 0.005))
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            _, err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL, err.decode()

        acked = last_ack(ack_path)
        assert acked is not None
        with Store(db_path) as store:
            stored = store.last_signed(VAL)
            assert stored is not None
            # Complete and consistent: exactly the mark the child built for that position.
            assert stored == loop_mark(stored.height, stored.step)
            # Nothing acknowledged is lost; at most one mark was recorded but not yet acknowledged.
            assert stored in (acked, next_loop_mark(acked))
            if previous is not None:
                assert position(stored) > position(previous)

            other = b"\xee" * 32
            lower = SignMark(stored.height - 1, 0, Step.PRECOMMIT, other)
            same = SignMark(stored.height, stored.round, stored.step, other)
            same_nil = SignMark(stored.height, stored.round, stored.step, None)
            conflicts = [lower, same] + ([same_nil] if stored.block_id is not None else [])
            for conflicting in conflicts:
                with pytest.raises(DoubleSignRefused):
                    store.record_signing(VAL, conflicting)
            assert store.last_signed(VAL) == stored
        previous = stored


OPEN_AND_SIGN = """
import sys
from node.core.safety import SignMark, Step
from node.runtime.store import StorageError, Store

try:
    store = Store(sys.argv[1])
except StorageError as exc:
    print(f"refused: {exc}")
    raise SystemExit(0)
store.record_signing(bytes.fromhex(sys.argv[2]), SignMark(5, 0, Step.PREVOTE, bytes.fromhex(sys.argv[3])))
print("signed")
"""


@pytest.mark.integration
def test_a_second_process_cannot_open_a_store_another_holds_so_cannot_sign_from_it(db_path: Path) -> None:
    """Two nodes on one HOME would both sign: the second is refused the store outright."""
    with Store(db_path) as store:
        store.record_signing(VAL, SignMark(5, 0, Step.PREVOTE, A))
        child = run_child(OPEN_AND_SIGN, str(db_path), VAL.hex(), B.hex())
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
        assert out.decode().startswith("refused: in use by another process"), out.decode()
        assert store.last_signed(VAL) == SignMark(5, 0, Step.PREVOTE, A)
    child = run_child(OPEN_AND_SIGN, str(db_path), VAL.hex(), A.hex())  # once released, it opens
    out, err = child.communicate(timeout=120)
    assert out.decode().strip() == "signed", err.decode()


def test_the_store_maps_no_file_into_memory(store: Store, db_path: Path) -> None:
    """A mapped page that cannot be written back is SIGBUS; an unwritable file must be an error instead."""
    conn = store._conn
    assert conn is not None
    store.put_finalized(1, block_hash(1), b"block", b"cert")
    assert conn.execute("PRAGMA locking_mode").fetchone() == ("exclusive",)
    assert conn.execute("PRAGMA mmap_size").fetchone() == (0,)
    assert not Path(f"{db_path}-shm").exists()


def test_a_store_with_a_rotten_page_is_refused_when_it_opens(db_path: Path) -> None:
    with Store(db_path) as store:
        fill_chain(store, 300)
    size = db_path.stat().st_size
    with open(db_path, "r+b") as f:
        f.seek(size // 2)
        f.write(random.Random(7).randbytes(4096))
    with pytest.raises(StorageError, match="corrupt"):
        Store(db_path)


@pytest.mark.integration
def test_a_journal_entry_written_just_before_sigkill_is_there_after_restart(db_path: Path) -> None:
    child = run_child(JOURNAL_THEN_DIE, str(db_path), VAL.hex())
    _, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err.decode()
    with Store(db_path) as store:
        assert store.journal(VAL, 5) == [(b"signed vote", b"its block")]
