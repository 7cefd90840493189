"""A trusted checkpoint (`posnet node run --trust HEIGHT:HASH`): parsing, the period, and the path to it.

A long-range attacker serves a second history whose certificates all check
out; the node must decide no block of it, at any height up to the
checkpoint, whatever order and mixture of the two branches its peers send.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from network.cli import cli
from node.core.checkpoint import (
    OFF_PATH,
    Checkpoint,
    TrustedPath,
    parse_checkpoint,
    stored_conflict,
    trusting,
    weak_subjectivity_heights,
)
from node.core.genesis import Params
from node.core.messages import ZERO_HASH, Block, CommitCertificate

PROPOSER = bytes(20)


def branch(tag: int, top: int, base: bytes = ZERO_HASH, start: int = 1) -> list[Block]:
    """Blocks `start`..`top`, each linked to the one before; `tag` makes the branch's hashes its own."""
    blocks, prev = [], base
    for height in range(start, top + 1):
        block = Block(height, prev, PROPOSER, 1_000 * height + tag, (), (), None)
        blocks.append(block)
        prev = block.hash
    return blocks


def cert(block: Block) -> CommitCertificate:
    return CommitCertificate(block.height, 0, block.hash, ())


def test_parse_takes_height_and_hash_and_names_what_is_wrong() -> None:
    digest = "ab" * 32
    assert parse_checkpoint(f"12:{digest}") == Checkpoint(12, bytes.fromhex(digest))
    for text, why in [
        ("12", "HEIGHT:HASH"),
        (f"0:{digest}", "positive"),
        (f"x:{digest}", "positive"),
        ("12:abcd", "64 hex digits"),
        (f"12:{'zz' * 32}", "hex digits"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_checkpoint(text)


def test_the_period_is_the_shorter_of_the_evidence_age_and_the_unbonding_time() -> None:
    assert weak_subjectivity_heights(Params(evidence_max_age=100, unbonding_epochs=2, epoch_length=10)) == 20
    assert weak_subjectivity_heights(Params(evidence_max_age=15, unbonding_epochs=2, epoch_length=10)) == 15


def test_a_store_on_another_history_is_named_and_one_on_the_checkpoint_is_not() -> None:
    checkpoint = Checkpoint(5, b"\x01" * 32)
    assert stored_conflict(checkpoint, None) is None
    assert stored_conflict(checkpoint, b"\x01" * 32) is None
    assert "another history" in (stored_conflict(checkpoint, b"\x02" * 32) or "")


@given(
    top=st.integers(1, 30),
    at=st.integers(1, 30),
    fork_from=st.integers(1, 30),
    order=st.randoms(use_true_random=False),
)
def test_only_the_trusted_branch_is_handed_out_whatever_peers_send_and_in_what_order(
    top: int, at: int, fork_from: int, order: object
) -> None:
    """Two branches sharing blocks below `fork_from`; the trusted block is the honest one at `at`."""
    at, fork_from = min(at, top), min(fork_from, top)
    honest = branch(0, top)
    shared = honest[: fork_from - 1]
    forged = shared + branch(7, top, shared[-1].hash if shared else ZERO_HASH, fork_from)
    checkpoint = Checkpoint(at, honest[at - 1].hash)
    path = TrustedPath(checkpoint)
    offered = honest + forged
    order.shuffle(offered)  # type: ignore[attr-defined]
    for block in offered:
        path.offer(block, cert(block))
        got = path.path_from(ZERO_HASH, 1)
        assert [b for b, _ in got] in ([], honest[:at])
    assert [b for b, _ in path.path_from(ZERO_HASH, 1)] == honest[:at]
    forged_off = [b for b in forged if b.height <= at and b.hash != honest[b.height - 1].hash]
    assert not any(path.is_on_path(b) for b in forged_off)
    assert all(path.is_on_path(b) for b in honest)  # above the checkpoint nothing is judged here
    assert path.refused == (at >= fork_from)  # the forged block at the trusted height, once


def test_ask_from_fetches_the_trusted_block_first_then_fills_down_to_our_tip() -> None:
    honest = branch(0, 50)
    forged = branch(9, 50)
    path = TrustedPath(Checkpoint(45, honest[44].hash))
    assert path.ask_from(1, 20) == 1  # nothing held: from our height
    for block in forged[:44]:
        path.offer(block, cert(block))
    assert path.ask_from(1, 20) == 45  # every height below is held (by the attacker): the trusted one
    for block in honest[40:45]:
        path.offer(block, cert(block))
    assert path.ask_from(1, 20) == 21  # linked down to 41: the batch that ends just below
    for block in honest[20:40]:
        path.offer(block, cert(block))
    assert path.ask_from(1, 20) == 1
    assert path.path_from(ZERO_HASH, 1) == []  # heights 1..20 still missing
    for block in honest[:20]:
        path.offer(block, cert(block))
    assert [b.height for b, _ in path.path_from(ZERO_HASH, 1)] == list(range(1, 46))
    assert path.ask_from(46, 20) == 46


def test_a_path_that_does_not_reach_our_tip_is_not_handed_out() -> None:
    honest = branch(0, 10)
    path = TrustedPath(Checkpoint(10, honest[9].hash))
    for block in honest:
        path.offer(block, cert(block))
    assert path.path_from(b"\x05" * 32, 1) == []  # our tip is on another history
    assert [b.height for b, _ in path.path_from(honest[3].hash, 5)] == list(range(5, 11))


def test_the_held_blocks_are_bounded() -> None:
    forged = branch(3, 40)
    path = TrustedPath(Checkpoint(40, b"\x07" * 32), limit=10)
    for block in forged:
        path.offer(block, cert(block))
    assert len(path._held) == 10


def test_trusting_refuses_a_block_off_the_path_before_any_other_check() -> None:
    honest, forged = branch(0, 5), branch(4, 5)
    path = TrustedPath(Checkpoint(5, honest[4].hash))
    for block in honest:
        path.offer(block, cert(block))
    calls: list[int] = []

    def base(state: object, block: Block) -> str | None:
        calls.append(block.height)
        return None

    check = trusting(path, base)  # type: ignore[arg-type]
    assert check(None, forged[2]) == OFF_PATH  # type: ignore[arg-type]
    assert check(None, honest[2]) is None and calls == [3]  # type: ignore[arg-type]
    above = branch(1, 6, honest[4].hash, 6)[0]
    assert check(None, above) is None  # type: ignore[arg-type]


def test_node_run_takes_the_checkpoint_from_the_option_or_posnet_trust_and_names_a_bad_one(
    tmp_path: Path,
) -> None:
    """Compose passes POSNET_TRUST through to every node, empty when unset: empty means no checkpoint."""
    args = ["node", "run", "--home", str(tmp_path), "--genesis", str(tmp_path / "none.toml")]
    args += ["--broker", "mqtt://127.0.0.1:1"]
    runner = CliRunner()
    bad = runner.invoke(cli, args, env={"POSNET_TRUST": "12:beef"})
    assert bad.exit_code == 2 and "--trust" in bad.output and "64 hex digits" in bad.output
    flag = runner.invoke(cli, [*args, "--trust", "x:y"], env={"POSNET_TRUST": ""})
    assert flag.exit_code == 2 and "positive integer" in flag.output
    unset = runner.invoke(cli, args, env={"POSNET_TRUST": ""})
    assert unset.exit_code != 0 and "--trust" not in unset.output  # it got as far as the genesis
