"""State snapshots: exact round trips of rich chain states, and a restart that starts from one.

A snapshot must give back a state equal to the one taken, down to what the
state hash does not cover, or a node restarted from it would drift from its
peers; and a restart must use one only when the chain vouches for it.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.econ.config import load_economy
from network.econ.engine import FastForward
from node.core.snapshot import SnapshotError, decode_state, encode_state
from node.core.state import ChainState, genesis_state
from node.runtime.recovery import CorruptStore, recover_chain, snapshot_problem
from node.runtime.store import Store
from tests.support.chain import finalize, genesis, make_block, state0

ROOT = Path(__file__).resolve().parent.parent


def economy_states(name: str, epochs: int) -> list[ChainState]:
    engine = FastForward(load_economy(ROOT / "scenarios" / "economy" / f"{name}.toml"))
    return [engine.state for _ in engine.run(epochs)]


def rich_states() -> list[ChainState]:
    """States with shares, redelegations, unbonding, a tombstone, evidence and a reserve: economy runs."""
    return economy_states("equivocation", 8) + economy_states("saturation", 4)


def test_rich_states_come_back_equal_with_the_same_digest() -> None:
    states = rich_states()
    assert any(s.ledger.redelegations for s in states) and any(s.ledger.unbonding for s in states)
    assert any(s.ledger.slashed_evidence for s in states) and any(s.ledger.reserve for s in states)
    for state in states:
        back = decode_state(encode_state(state))
        assert back == state
        assert back.digest == state.digest
        assert back.committee == state.committee and back.recent_committees == state.recent_committees
        assert list(back.ledger.accounts) == list(state.ledger.accounts)  # map order kept, not only contents


def test_a_run_continued_from_a_snapshot_is_the_run_that_never_stopped() -> None:
    config = load_economy(ROOT / "scenarios" / "economy" / "equivocation.toml")
    straight = FastForward(config)
    records = list(straight.run(6))
    resumed = FastForward(config)
    first = list(resumed.run(3))
    resumed.state = decode_state(encode_state(resumed.state))
    assert first + list(resumed.run(3))[0:] == records[: len(first)] + records[len(first) :]
    assert resumed.state.digest == straight.state.digest


def test_rotated_keys_and_participation_survive_a_snapshot() -> None:
    state = state0()
    rotated = replace(state, key_history=((b"\x01" * 20, 7, b"\x02" * 32),))
    back = decode_state(encode_state(rotated))
    assert back.key_history == rotated.key_history and back.digest == rotated.digest


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_are_a_state_or_a_snapshot_error_never_a_crash(data: bytes) -> None:
    with contextlib.suppress(SnapshotError):
        decode_state(data)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_a_damaged_snapshot_is_a_snapshot_error_or_a_state_never_a_crash(where: int, flip: int) -> None:
    data = bytearray(encode_state(state0()))
    data[where % len(data)] ^= flip
    with contextlib.suppress(SnapshotError):
        decode_state(bytes(data))


def test_a_snapshot_of_another_version_is_refused_by_name() -> None:
    import msgpack

    with pytest.raises(SnapshotError, match="format 99"):
        decode_state(msgpack.packb([99, []]))


# ------------------------------------------------------------------ restart


def stored_chain(store: Store, blocks: int, snapshot_at: tuple[int, ...] = ()) -> ChainState:
    """`blocks` real finalized blocks in `store`, with snapshots after the given heights."""
    state, cert = state0(), None
    for _ in range(blocks):
        block = make_block(state, last_commit=cert)
        state, cert = finalize(state, block)
        store.put_finalized(block.height, block.hash, block.encoded, _wire(cert))
        if block.height in snapshot_at:
            store.put_snapshot(block.height, encode_state(state))
    return state


def _wire(cert: object) -> bytes:
    from node.core.codec import encode

    return encode(cert.to_wire())  # type: ignore[attr-defined]


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "node.sqlite3") as s:
        yield s


def test_restart_starts_from_the_newest_snapshot_and_replays_only_what_came_after(store: Store) -> None:
    tip = stored_chain(store, 30, snapshot_at=(10, 20))
    recovery = recover_chain(store, genesis_state(genesis()))
    assert (recovery.snapshot_height, recovery.replayed) == (20, 10)
    assert recovery.state == tip and recovery.state.digest == tip.digest
    assert recovery.certificate is not None and recovery.certificate.height == 30


def test_blocks_before_the_snapshot_are_not_read_again(store: Store, tmp_path: Path) -> None:
    stored_chain(store, 25, snapshot_at=(20,))
    raw = store._conn  # the store is its process's alone: edit it through its own connection
    assert raw is not None
    raw.execute("UPDATE finalized SET block = x'00' WHERE height = 3")
    assert recover_chain(store, genesis_state(genesis())).snapshot_height == 20
    raw.execute("DELETE FROM snapshots")
    with pytest.raises(CorruptStore, match="finalized height 3"):
        recover_chain(store, genesis_state(genesis()))


def test_a_snapshot_at_the_tip_waits_for_a_block_that_vouches_for_it(store: Store) -> None:
    tip = stored_chain(store, 12, snapshot_at=(6, 12))
    recovery = recover_chain(store, genesis_state(genesis()))
    assert recovery.snapshot_height == 6 and recovery.state == tip
    assert recovery.passed_over == ("snapshot of height 12: no later block vouches for it yet",)


def test_a_snapshot_the_next_block_disagrees_with_is_passed_over(store: Store) -> None:
    tip = stored_chain(store, 15, snapshot_at=(10,))
    wrong = replace(decode_state(store.snapshots()[0][1]), last_timestamp_ms=1)
    store.put_snapshot(10, encode_state(wrong))
    recovery = recover_chain(store, genesis_state(genesis()))
    assert recovery.snapshot_height == 0 and recovery.replayed == 15 and recovery.state == tip
    assert recovery.passed_over == (
        "snapshot of height 10: its digest is not the state hash block 11 carries",
    )


def test_unreadable_and_foreign_snapshots_are_passed_over_with_the_reason(store: Store) -> None:
    stored_chain(store, 12, snapshot_at=(4,))
    store.put_snapshot(8, b"not a snapshot")
    recovery = recover_chain(store, genesis_state(genesis()))
    assert recovery.snapshot_height == 4
    assert recovery.passed_over[0].startswith("snapshot of height 8: unreadable (not a snapshot")
    other_chain = genesis_state(genesis(chain_id="posnet-other"))
    assert "of another chain" in str(snapshot_problem(store, other_chain, 4, store.snapshots()[-1][1]))
