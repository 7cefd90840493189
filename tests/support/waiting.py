"""Polling with a deadline: how every real-process test waits for something to happen.

Tests must pass on a loaded 2-core machine, so they never assert on timing;
they poll for the outcome and fail, naming what they waited for (and any
diagnostics), only after a generous timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def _timed_out(what: str, timeout: float, diagnostics: Callable[[], str] | None) -> AssertionError:
    detail = f"\n{diagnostics()}" if diagnostics is not None else ""
    return AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


async def wait_until(
    predicate: Callable[[], bool],
    what: str = "condition",
    timeout: float = 30.0,
    *,
    interval: float = 0.02,
    diagnostics: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` from async code until true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, diagnostics)
        await asyncio.sleep(interval)


def wait_for(
    predicate: Callable[[], bool],
    what: str = "condition",
    timeout: float = 90.0,
    *,
    interval: float = 0.25,
    diagnostics: Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` from plain code until true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, diagnostics)
        time.sleep(interval)
