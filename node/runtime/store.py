"""One node's durable state in a single SQLite file.

Five things live here: the finalized chain (blocks with their commit
certificates), snapshots of the chain state every so many blocks (so a
restart replays only what came after the newest usable one), the
slashing-protection marks (the last thing each hosted
validator key signed), the signing journal (the signed messages of each
key's newest height, so a restarted validator re-sends them and re-derives its
lock instead of forgetting it), and the protocol memory (late precommits,
our own uncounted precommits, pending evidence: see `node.core.memory`).

Durability beats speed. The database runs in WAL mode with
``synchronous=FULL``: in WAL mode ``NORMAL`` may lose the last transactions
on power loss, and for this store a lost transaction is not a lost cache
entry. A slashing-protection mark that vanishes after a signature went out
lets the restarted node sign a conflicting vote and be slashed; a finalized
block that vanishes breaks the promise that a node never loses finality.
With ``FULL`` every commit is fsynced before it returns, so "returned" means
"on disk". WAL keeps that cost to one append-and-fsync per commit and lets
readers proceed while a write is in flight.

One process owns the store (``locking_mode=EXCLUSIVE``, set before WAL is
first used). That is not only a guard against two nodes on one HOME (the
second refuses to open it): it keeps SQLite's WAL index in the process's
heap instead of a ``-shm`` file mapped into memory. A mapped page the kernel
can no longer write back (the file made immutable or read-only, the disk
full) is delivered as SIGBUS, which kills the node with no word of why; a
failed ``write`` on the heap index's behalf is an error SQLite returns, so
the node can end on a ``fatal`` event instead. Nothing else is mapped
(``mmap_size`` stays 0). Readers of a running node's store copy its files.

A store is checked (``PRAGMA quick_check``: every page's structure, not the
values) when it opens: garbage in a page the chain replay never reads
would otherwise surface at some later write, or in a peer's sync answer.

Every public call is one transaction. Writes use ``BEGIN IMMEDIATE`` so the
read-check-write of :meth:`Store.record_signing` and :meth:`Store.put_finalized`
holds the write lock from the read onwards, even between threads of the one
process that holds the store.

Past 500 lines: every table of the one file and every transaction on it
stay together, so the durability contract above is read in one place.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType

from node.core.memory import Note
from node.core.safety import DoubleSignRefused, SigningRecordError, SignMark, refusal_reason

SCHEMA_VERSION = 1
"""Bumped on any incompatible schema change; opening a mismatching file fails loudly."""

BUSY_TIMEOUT_SECONDS = 10.0
"""How long to wait for another connection's write lock before giving up."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS finalized (
        height INTEGER PRIMARY KEY CHECK (height >= 1),
        block_hash BLOB NOT NULL,
        block BLOB NOT NULL,
        cert BLOB NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS sign_marks (
        validator BLOB PRIMARY KEY,
        height INTEGER NOT NULL,
        round INTEGER NOT NULL,
        step INTEGER NOT NULL,
        block_id BLOB
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS sign_journal (
        validator BLOB NOT NULL,
        seq INTEGER NOT NULL,
        height INTEGER NOT NULL,
        item BLOB NOT NULL,
        block BLOB NOT NULL,
        PRIMARY KEY (validator, seq)
    ) WITHOUT ROWID""",
    # Added after schema 1 shipped; CREATE IF NOT EXISTS gives older stores the table as they open.
    """CREATE TABLE IF NOT EXISTS snapshots (
        height INTEGER PRIMARY KEY CHECK (height >= 1),
        state BLOB NOT NULL
    )""",
    # Added later still, the same way.
    """CREATE TABLE IF NOT EXISTS protocol_notes (
        validator BLOB NOT NULL,
        kind INTEGER NOT NULL,
        key BLOB NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (validator, kind, key)
    ) WITHOUT ROWID""",
)

SNAPSHOTS_KEPT = 2
"""Snapshots kept: the newest may be of the chain's tip, which no later block vouches for yet."""


class StorageError(SigningRecordError):
    """Base of everything the store fails to do (a refused double sign is `DoubleSignRefused`)."""


class ConflictingBlock(StorageError):
    """A different block hash offered for an already-finalized height.

    Finality is final: this means a safety violation somewhere (or a bug in
    the caller) and must never be papered over by overwriting.
    """


class Store:
    """A node's SQLite store; see the module docstring for the durability contract.

    Safe to share between threads (calls are serialised by a lock), so an
    asyncio runtime may call it via ``asyncio.to_thread``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open the database at ``path``, creating the schema if it is new."""
        self._lock = threading.Lock()
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each
            # public call is exactly one transaction and nothing is left open.
            conn = sqlite3.connect(
                os.fspath(path),
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open store at {os.fspath(path)!r}: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn
        try:
            _configure(conn)
            _check_integrity(conn)
            self._init_schema()
        except BaseException:
            conn.close()
            self._conn = None
            raise

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Close the database; idempotent. Every committed call is already durable."""
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                try:
                    conn.close()  # the last checkpoint: it writes, so it can fail like any write
                except sqlite3.Error as exc:
                    raise StorageError(f"storage failure on close: {exc}") from exc

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- finalized chain ---------------------------------------------------

    def put_finalized(self, height: int, block_hash: bytes, block: bytes, cert: bytes) -> None:
        """Append the block finalized at ``height`` with its commit certificate.

        Idempotent for the same hash (the stored block and certificate are
        kept: any valid certificate proves finality, and rewriting history
        gains nothing). A different hash raises :class:`ConflictingBlock`.
        Heights must be contiguous from 1 so the chain on disk never has
        holes that a restart would have to notice and refill.
        """
        with self._write() as conn:
            row = conn.execute("SELECT block_hash FROM finalized WHERE height = ?", (height,)).fetchone()
            if row is not None:
                if bytes(row[0]) != bytes(block_hash):
                    raise ConflictingBlock(
                        f"height {height} is finalized as {bytes(row[0]).hex()[:16]}, "
                        f"refusing {bytes(block_hash).hex()[:16]}"
                    )
                return
            last = _last_height(conn)
            if height != last + 1:
                raise StorageError(f"finalized heights must be contiguous: last is {last}, got {height}")
            conn.execute(
                "INSERT INTO finalized (height, block_hash, block, cert) VALUES (?, ?, ?, ?)",
                (height, block_hash, block, cert),
            )

    def put_finalized_many(self, rows: list[tuple[int, bytes, bytes, bytes]]) -> None:
        """Append consecutive (height, block_hash, block, cert) rows in one transaction (one fsync).

        For importing a chain known to be final (a benchmark's, a tool's): the
        same contiguity rule as `put_finalized`, but heights already stored are
        refused rather than compared, since an import starts at the tip.
        """
        if not rows:
            return
        with self._write() as conn:
            last = _last_height(conn)
            heights = [row[0] for row in rows]
            if heights != list(range(last + 1, last + 1 + len(rows))):
                raise StorageError(
                    f"finalized heights must be contiguous from {last + 1}: got {heights[0]}.."
                )
            conn.executemany(
                "INSERT INTO finalized (height, block_hash, block, cert) VALUES (?, ?, ?, ?)", rows
            )

    def finalized(self, height: int) -> tuple[bytes, bytes, bytes] | None:
        """(block_hash, block, cert) finalized at ``height``, or None if not (yet) stored."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT block_hash, block, cert FROM finalized WHERE height = ?", (height,)
            ).fetchone()
        if row is None:
            return None
        return (bytes(row[0]), bytes(row[1]), bytes(row[2]))

    def finalized_range(self, start: int, limit: int) -> list[tuple[int, bytes, bytes, bytes]]:
        """Up to ``limit`` consecutive (height, block_hash, block, cert) from ``start`` upwards.

        Meant for serving sync requests from peers, hence bounded by ``limit``.
        """
        if limit < 0:
            raise ValueError("limit must be >= 0")
        with self._read() as conn:
            rows = conn.execute(
                "SELECT height, block_hash, block, cert FROM finalized"
                " WHERE height >= ? ORDER BY height LIMIT ?",
                (start, limit),
            ).fetchall()
        return [(int(h), bytes(bh), bytes(b), bytes(c)) for h, bh, b, c in rows]

    def last_height(self) -> int:
        """Height of the highest finalized block stored; 0 when the chain is empty."""
        with self._read() as conn:
            return _last_height(conn)

    # -- state snapshots ---------------------------------------------------

    def put_snapshot(self, height: int, state: bytes) -> None:
        """Keep the state after ``height`` (a finalized height), dropping all but the newest few.

        A snapshot is only a shortcut: losing one costs a longer replay, so it
        is written in its own transaction after the block it follows.
        """
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM finalized WHERE height = ?", (height,)).fetchone() is None:
                raise StorageError(f"no finalized block at height {height} to snapshot the state after")
            conn.execute("INSERT OR REPLACE INTO snapshots (height, state) VALUES (?, ?)", (height, state))
            conn.execute(
                "DELETE FROM snapshots WHERE height NOT IN"
                " (SELECT height FROM snapshots ORDER BY height DESC LIMIT ?)",
                (SNAPSHOTS_KEPT,),
            )

    def snapshots(self) -> list[tuple[int, bytes]]:
        """(height, state) of the kept snapshots, newest first."""
        with self._read() as conn:
            rows = conn.execute("SELECT height, state FROM snapshots ORDER BY height DESC").fetchall()
        return [(int(height), bytes(state)) for height, state in rows]

    # -- slashing protection -----------------------------------------------

    def last_signed(self, validator: bytes) -> SignMark | None:
        """The last mark recorded for ``validator``, or None if it never signed here."""
        with self._read() as conn:
            return _read_mark(conn, validator)

    def signing_marks(self) -> dict[bytes, SignMark]:
        """Every validator's last mark (what `posnet keys export-protection` writes)."""
        with self._read() as conn:
            rows = conn.execute("SELECT validator FROM sign_marks ORDER BY validator").fetchall()
            marks = {bytes(v): _read_mark(conn, bytes(v)) for (v,) in rows}
        return {v: m for v, m in marks.items() if m is not None}

    def record_signing(self, validator: bytes, mark: SignMark) -> None:
        """Durably record that ``validator`` signs ``mark``, or refuse.

        Read the last mark, check :func:`node.core.safety.may_sign`, write the new
        mark and commit (fsynced), all in one transaction under the write lock.
        On refusal nothing is written and :class:`DoubleSignRefused` is raised.
        A signature may be released only after this returns; see
        :meth:`record_signed` for the signer's own path.
        """
        with self._write() as conn:
            _write_mark(conn, validator, mark)

    def record_signed(self, validator: bytes, mark: SignMark, height: int, item: bytes, block: bytes) -> None:
        """Record the mark and journal the signed message in one fsynced transaction, or refuse both.

        The guarded signer's path: it signs in memory, then calls this, and
        releases the signature only once it returns. One commit per
        signature instead of two (mark, then journal) halves the node's
        fsyncs, its largest per-message cost. A crash before the commit
        leaves neither, and a signature that never left the process binds
        nobody; a crash after it leaves both, as before.
        """
        with self._write() as conn:
            _write_mark(conn, validator, mark)
            _append_journal(conn, validator, height, item, block)

    # -- signing journal ---------------------------------------------------

    def journal_append(self, validator: bytes, height: int, item: bytes, block: bytes) -> None:
        """Durably keep one signed message of ``height`` (with its block, or b"").

        The guarded signer journals through :meth:`record_signed`, in the
        mark's own transaction; this is the journal alone. Only the newest height is
        kept per validator (older entries are deleted in the same
        transaction); an entry for a height below the kept one is refused,
        since the signing record can never have allowed it.
        """
        with self._write() as conn:
            _append_journal(conn, validator, height, item, block)

    def journal(self, validator: bytes, height: int) -> list[tuple[bytes, bytes]]:
        """(item, block) pairs journaled for ``height``, in signing order; [] for any other height."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT item, block FROM sign_journal WHERE validator = ? AND height = ? ORDER BY seq",
                (validator, height),
            ).fetchall()
        return [(bytes(item), bytes(block)) for item, block in rows]

    # -- protocol memory ---------------------------------------------------

    def keep_notes(self, validator: bytes, notes: Sequence[Note]) -> None:
        """Apply the notes (keep a value, or forget a key with value None) in one fsynced transaction."""
        kept = [(validator, kind, key, value) for kind, key, value in notes if value is not None]
        gone = [(validator, kind, key) for kind, key, value in notes if value is None]
        with self._write() as conn:
            conn.executemany("DELETE FROM protocol_notes WHERE validator = ? AND kind = ? AND key = ?", gone)
            conn.executemany("INSERT OR REPLACE INTO protocol_notes VALUES (?, ?, ?, ?)", kept)

    def notes(self, validator: bytes) -> list[tuple[int, bytes, bytes]]:
        """Every (kind, key, value) kept for ``validator``, in key order."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT kind, key, value FROM protocol_notes WHERE validator = ? ORDER BY kind, key",
                (validator,),
            ).fetchall()
        return [(int(kind), bytes(key), bytes(value)) for kind, key, value in rows]

    # -- internals ---------------------------------------------------------

    def _init_schema(self) -> None:
        """Create the tables on a new file; check the schema version on an existing one."""
        with self._write() as c:
            for statement in _SCHEMA:
                c.execute(statement)
            c.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
            (version,) = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version != SCHEMA_VERSION:
            raise StorageError(f"store schema version {version} is not the supported {SCHEMA_VERSION}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("store is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE, commit on success, roll back on any error.

        Low-level SQLite failures (locked too long, disk full, I/O error)
        surface as :class:`StorageError`; a caller must treat them as "not
        recorded" and, for signing, not sign.
        """
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"storage failure: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read: each single SELECT runs in its own consistent snapshot in autocommit mode."""
        with self._lock:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise StorageError(f"storage failure: {exc}") from exc


def _configure(conn: sqlite3.Connection) -> None:
    """Set the pragmas the durability contract depends on, and verify them.

    ``journal_mode`` persists in the file but can silently fall back (e.g.
    for in-memory databases), so the result is checked rather than assumed.
    ``synchronous`` is per connection and must be set on every open.
    ``fullfsync`` makes macOS really flush the disk cache; it is a no-op
    elsewhere.
    """
    try:
        (locking,) = conn.execute("PRAGMA locking_mode=EXCLUSIVE").fetchone()
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()  # the first access: takes the lock
        if str(mode).lower() != "wal":
            raise StorageError(f"store needs WAL journaling, got {mode!r} (is it a real file?)")
        if str(locking).lower() != "exclusive":
            raise StorageError(f"store needs exclusive locking, got {locking!r}")
        mmap_size = (conn.execute("PRAGMA mmap_size=0").fetchone() or (0,))[0]
        if mmap_size:
            raise StorageError(f"store must not be memory-mapped, got mmap_size {mmap_size}")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA fullfsync=ON")
        conn.execute("PRAGMA checkpoint_fullfsync=ON")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise StorageError(f"in use by another process ({exc})") from exc
        raise StorageError(f"cannot configure store: {exc}") from exc
    except sqlite3.Error as exc:
        raise StorageError(f"cannot configure store: {exc}") from exc


def _check_integrity(conn: sqlite3.Connection) -> None:
    """Refuse a store whose pages are not sound (see the module docstring)."""
    try:
        rows = conn.execute("PRAGMA quick_check(3)").fetchall()
    except sqlite3.Error as exc:
        raise StorageError(f"corrupt: {exc}") from exc
    if rows != [("ok",)]:
        lines = (line.strip() for row in rows for line in str(row[0]).splitlines())
        raise StorageError(
            "corrupt: " + "; ".join(line for line in lines if line and not line.startswith("***"))
        )


def _last_height(conn: sqlite3.Connection) -> int:
    (height,) = conn.execute("SELECT COALESCE(MAX(height), 0) FROM finalized").fetchone()
    return int(height)


def _read_mark(conn: sqlite3.Connection, validator: bytes) -> SignMark | None:
    row = conn.execute(
        "SELECT height, round, step, block_id FROM sign_marks WHERE validator = ?",
        (validator,),
    ).fetchone()
    if row is None:
        return None
    height, round_, step, block_id = row
    return SignMark(height, round_, step, None if block_id is None else bytes(block_id))


def _write_mark(conn: sqlite3.Connection, validator: bytes, mark: SignMark) -> None:
    """Inside a write transaction: refuse a conflicting mark, else store it (an identical one is a no-op)."""
    last = _read_mark(conn, validator)
    reason = refusal_reason(last, mark)
    if reason is not None:
        raise DoubleSignRefused(f"validator {bytes(validator).hex()[:16]}: {reason}")
    if last == mark:
        return  # identical re-sign: the mark on disk already covers it
    conn.execute(
        "INSERT INTO sign_marks (validator, height, round, step, block_id)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (validator) DO UPDATE SET height = excluded.height,"
        " round = excluded.round, step = excluded.step, block_id = excluded.block_id",
        (validator, mark.height, mark.round, int(mark.step), mark.block_id),
    )


def _append_journal(
    conn: sqlite3.Connection, validator: bytes, height: int, item: bytes, block: bytes
) -> None:
    """Inside a write transaction: keep one signed message, forgetting older heights (see journal_append)."""
    if height < 0:
        raise ValueError("journal height must be >= 0")
    row = conn.execute(
        "SELECT MAX(height), MAX(seq) FROM sign_journal WHERE validator = ?", (validator,)
    ).fetchone()
    kept, last_seq = row if row is not None else (None, None)
    if kept is not None and height < kept:
        raise StorageError(
            f"validator {bytes(validator).hex()[:16]}: journal holds height {kept}, refusing {height}"
        )
    if kept is not None and height > kept:
        conn.execute("DELETE FROM sign_journal WHERE validator = ?", (validator,))
    conn.execute(
        "INSERT INTO sign_journal (validator, seq, height, item, block) VALUES (?, ?, ?, ?, ?)",
        (validator, 0 if last_seq is None else last_seq + 1, height, item, block),
    )
