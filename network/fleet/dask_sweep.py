"""A sweep of seeds on Dask: every local core, or a cluster someone already runs.

`dask.distributed` is an optional extra (`pip install -e '.[sweep]'`): a
validator never needs it. Locally a `LocalCluster` of single-threaded worker
processes takes one seed each (the simulator is pure Python, so threads
would only share one core); with a scheduler address the seeds go to that
cluster instead (`dask scheduler` and `dask worker` on other machines, or
dask-jobqueue / dask-kubernetes). Results stream back as each run ends; an
interrupt cancels what has not run and keeps what did.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from network.sim.sweep import SeedOutcome, SweepSpec, run_seed

T = TypeVar("T")
R = TypeVar("R")

INSTALL_HINT = "dask is not installed: pip install -e '.[sweep]'"


class FleetError(Exception):
    """A sweep that cannot start (no dask, an unreachable scheduler): one line for the user."""


@dataclass(frozen=True)
class Fleet:
    """Where the runs go: `workers` local processes, or the cluster behind `scheduler`."""

    workers: int = 0  # 0: every core
    scheduler: str | None = None

    def describe(self) -> str:
        return (
            f"Dask cluster at {self.scheduler}"
            if self.scheduler
            else f"{self.local_workers()} local Dask workers"
        )

    def local_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


def run_on_dask(
    spec: SweepSpec, seeds: Sequence[int], fleet: Fleet, on_outcome: Callable[[SeedOutcome], None]
) -> tuple[list[SeedOutcome], bool]:
    """Run every seed on the fleet; `on_outcome` sees each as it lands. Returns (outcomes, interrupted)."""
    return map_on_dask(partial(run_seed, spec), seeds, fleet, on_outcome)


def map_on_dask(
    task: Callable[[T], R], items: Sequence[T], fleet: Fleet, on_result: Callable[[R], None]
) -> tuple[list[R], bool]:
    """`task` of every item on the fleet (a picklable, pure task); results in finishing order, (results, interrupted).

    Seed sweeps and economy sweeps both go this way.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise FleetError(INSTALL_HINT) from None
    cluster = None
    try:
        if fleet.scheduler:
            client = Client(fleet.scheduler, timeout="10s")
        else:
            cluster = LocalCluster(
                n_workers=fleet.local_workers(),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                host="127.0.0.1",
            )
            client = Client(cluster)
    except OSError as exc:
        raise FleetError(f"cannot reach the Dask scheduler at {fleet.scheduler}: {exc}") from None
    results: list[R] = []
    futures = client.map(task, list(items), pure=False)
    try:
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            on_result(result)
        return results, False
    except KeyboardInterrupt:
        client.cancel(futures)
        return results, True
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
