"""The chain state's digest: what every block commits to about the state it applies to."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from node.ledger import Account
from node.state import block_problem
from tests.chain import ADDR, finalize, make_block, state0

REPO = Path(__file__).resolve().parent.parent


def test_state_digest_changes_when_any_balance_changes() -> None:
    state = state0()
    ledger = state.ledger
    bumped = ledger.accounts.set(ADDR["bob"], replace(ledger.accounts.get(ADDR["bob"], Account()), balance=1))
    assert replace(state, ledger=replace(ledger, accounts=bumped)).digest != state.digest


def test_state_digest_ignores_committees_which_are_derived() -> None:
    state = state0()
    assert replace(state, recent_committees=(state.committee,)).digest == state.digest


def test_applying_a_block_changes_the_digest_and_the_next_block_must_carry_it() -> None:
    state = state0()
    block = make_block(state)
    after, cert = finalize(state, block)
    assert block.state_hash == state.digest and after.digest != state.digest
    following = make_block(after, last_commit=cert)
    assert following.state_hash == after.digest and block_problem(after, following) is None
    assert block_problem(after, replace(following, state_hash=state.digest)) is not None


def test_state_digest_is_the_same_in_processes_with_different_hash_seeds() -> None:
    code = "from tests.chain import state0; print(state0().digest.hex())"
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1 and len(digests.pop()) == 64
