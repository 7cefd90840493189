"""The options that send a sweep to Dask (`posnet sim --seeds`, `posnet econ run --sweep`), defined once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def _workers(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    """'auto' -> 0 (every core), else a positive count."""
    if value == "auto":
        return 0
    try:
        count = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a number of workers or 'auto'") from None
    if count < 1:
        raise click.BadParameter(f"{value!r}: at least 1 worker")
    return count


FLEET_OPTIONS: list[Callable[[Any], Any]] = [
    click.option(
        "--workers",
        default="1",
        show_default=True,
        callback=_workers,
        help="sweep on this many local Dask worker processes ('auto': every core; needs the 'sweep' extra)",
    ),
    click.option(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        default=None,
        help="sweep on a running Dask cluster (`dask scheduler` / `dask worker`) instead of this machine",
    ),
]
