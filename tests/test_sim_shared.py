"""What the simulator's nodes share in one process, and what it forgets: only ever equal values or dead entries.

Thousands of simulated nodes decide the same heights with the same
certificates; the simulator keeps one object for equal certificates in their
chains, checks each certificate once (node.core.certificate_checks, its own
tests), and its accountability watch forgets a height once its node left it.
None of that may change what any node reads.
"""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest

from network.sim.checks import OffenceWatch
from network.sim.config import SimConfig
from network.sim.node import SharedCore
from network.sim.runner import run_simulation
from node.core.consensus import ConsensusMachine
from tests.support.chain import ADDR, finalize, make_block, prevote, state0

STATE0 = state0()
BLOCK1 = make_block(STATE0)
STATE1, CERT1 = finalize(STATE0, BLOCK1)


def test_chains_keep_one_object_per_equal_certificate_and_each_unequal_one_as_it_is() -> None:
    core = SharedCore()
    assert core.kept_certificate(CERT1) is CERT1
    equal = replace(CERT1)
    assert equal is not CERT1 and core.kept_certificate(equal) is CERT1
    forged = replace(CERT1, signatures=(*CERT1.signatures[:-1], (CERT1.signatures[-1][0], bytes(64))))
    assert core.kept_certificate(forged) is forged
    other_round = replace(CERT1, round=1)
    assert core.kept_certificate(other_round) is other_round


def test_the_watch_forgets_a_height_its_node_left_and_still_convicts_at_the_next() -> None:
    watch = OffenceWatch("v1")
    at_1, at_2 = ConsensusMachine(STATE0, ADDR["alice"]), ConsensusMachine(STATE1, ADDR["alice"])
    watch.shown(prevote("bob", 1, 0, BLOCK1.hash), at_1)
    watch.check(at_1)
    watch.shown(prevote("bob", 2, 0, b"\x01" * 32), at_2)
    watch.check(at_2)
    assert list(watch._seen) == [(ADDR["bob"], 2, 0, 2)]  # height 1's message is never asked about again
    watch.shown(prevote("bob", 2, 0, b"\x02" * 32), at_2)  # the machine was not shown it: no evidence
    watch.check(at_2)
    assert [v.height for v in watch.violations] == [2]
    watch.shown(prevote("bob", 2, 0, b"\x01" * 32), at_2)  # a copy of the first completes a pair too
    watch.check(at_2)
    watch.shown(prevote("carol", 2, 0, b"\x01" * 32), at_2)  # one block id alone is no offence
    watch.check(at_2)
    assert [v.height for v in watch.violations] == [2, 2]


def test_a_run_with_followers_checks_each_certificate_about_once_and_answers_the_rest() -> None:
    result = run_simulation(SimConfig(validators=12, heights=4, seed=3, committee_size=5))
    assert result.ok and result.heights_finalized >= 4
    checked, answered = result.certificate_checks
    assert 0 < checked <= 3 * result.heights_finalized
    assert answered >= 7 * (result.heights_finalized - 1)  # the 7 followers learn each certificate


def test_a_run_pauses_the_cyclic_collector_and_leaves_it_as_it_found_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import network.sim.runner as runner

    seen: list[bool] = []
    real = runner._run

    def spy(config: SimConfig, trace: object, inspect: object) -> object:
        seen.append(gc.isenabled())
        return real(config, trace, inspect)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "_run", spy)
    assert gc.isenabled()
    run_simulation(SimConfig(validators=4, heights=2, seed=1))
    gc.disable()
    try:
        run_simulation(SimConfig(validators=4, heights=2, seed=1))
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert seen == [False, False] and gc.isenabled()
