"""Sweeps of seeds in this process, on local Dask workers, and on a real Dask cluster: the same summary.

The cluster is real: `dask scheduler` and `dask worker` started here as
separate processes on loopback ports of their own, as a user would start
them on other machines, and `posnet sim --scheduler` sends the seeds there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from network.sim.plans import FaultPlan, parse_fault_spec
from network.sim.sweep import SeedOutcome, SweepSpec, run_seed, summarize
from network.transport.broker import free_port
from tests.support.waiting import wait_for

SWEEP_ARGS = (
    "--validators", "5", "--byzantine", "1", "--byzantine-mode", "split", "--heights", "6",
    "--scenario", "random", "--faults", "random", "--seed", "40", "--seeds", "12",
)  # fmt: skip
DASK = Path(sys.executable).parent / "dask"


def sweep(*extra: str) -> tuple[dict[str, Any], str]:
    """`posnet sim` as a user runs it: its JSON summary without the wall time, and what ran it."""
    done = subprocess.run(
        [sys.executable, "-m", "network.cli", "sim", *SWEEP_ARGS, *extra, "--json"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode in (0, 1), done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    summary.pop("wall_s")
    return summary, summary.pop("executor")


def outcome(seed: int, ok: bool) -> SeedOutcome:
    return SeedOutcome(
        seed, ok, 5, False, () if ok else ("safety: boom",), f"posnet sim --seed {seed}", "ab", 0.1
    )


def test_the_summary_is_in_seed_order_whatever_order_the_runs_landed_in() -> None:
    seeds = range(10, 14)
    landed = [outcome(13, True), outcome(10, False), outcome(12, True), outcome(11, True)]
    summary = summarize(landed, seeds)
    assert summary == summarize(sorted(landed, key=lambda o: o.seed), seeds)
    assert [run["seed"] for run in summary["runs"]] == [10, 11, 12, 13]
    assert summary["failed"] == [
        {"seed": 10, "violations": ["safety: boom"], "replay": "posnet sim --seed 10"}
    ]


def test_an_interrupted_sweep_summarizes_what_ran() -> None:
    summary = summarize([outcome(3, True)], range(0, 5))
    assert (summary["ran"], summary["missing"], summary["ok"]) == (1, 4, 1)


def test_a_seed_of_a_spec_runs_exactly_what_the_single_run_command_runs() -> None:
    spec = SweepSpec(validators=4, heights=5, faults=parse_fault_spec("drop=0.1"))
    first, again = run_seed(spec, 7), run_seed(spec, 7)
    assert first.state_hash == again.state_hash and first.ok
    assert "--seed 7" in first.replay and "drop=0.1" in first.replay
    assert SweepSpec(validators=4, heights=5).faults == FaultPlan()


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A real Dask scheduler and a worker process (two single-threaded workers) on loopback."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = [(tmp_path / name).open("w") for name in ("scheduler.log", "worker.log")]
    scheduler = subprocess.Popen(
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [
            str(DASK), "worker", address, "--host", "127.0.0.1", "--nworkers", "2", "--nthreads", "1",
            "--no-dashboard", "--local-directory", str(tmp_path / "worker"),
        ],
        stdout=logs[1],
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(
            lambda: "Registered to" in (tmp_path / "worker.log").read_text(),
            "the Dask worker to register",
            timeout=120,
            diagnostics=lambda: (
                (tmp_path / "scheduler.log").read_text()[-2000:]
                + (tmp_path / "worker.log").read_text()[-2000:]
            ),
        )
        yield address
    finally:
        for process in (worker, scheduler):
            process.terminate()
        for process in (worker, scheduler):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
        time.sleep(0.1)


@pytest.mark.integration
@pytest.mark.sim
def test_a_sweep_on_a_real_dask_cluster_matches_the_one_process_sweep_run_by_run(dask_cluster: str) -> None:
    here, by = sweep()
    there, by_cluster = sweep("--scheduler", dask_cluster)
    assert (by, by_cluster) == ("this process", f"Dask cluster at {dask_cluster}")
    assert there == here  # the same seeds, failing set and state hash of every run
    assert here["ran"] == 12 and len({run["state_hash"] for run in here["runs"]}) == 12


@pytest.mark.integration
@pytest.mark.sim
def test_a_sweep_on_local_dask_workers_matches_the_one_process_sweep() -> None:
    (local, by), (here, _) = sweep("--workers", "2"), sweep()
    assert by == "2 local Dask workers" and local == here


def test_a_scheduler_nobody_runs_is_one_line_not_a_traceback() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "network.cli",
            "sim",
            "--seeds",
            "2",
            "--scheduler",
            f"tcp://127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: cannot reach the Dask scheduler at tcp://127.0.0.1:"), done.stderr
