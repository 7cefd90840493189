"""A progress bar for long commands (seed sweeps, economy runs), drawn by rich only on a terminal."""

from __future__ import annotations

import sys
from typing import Any

import click


class BarProgress:
    """A progress bar on stderr while a long run goes, when stderr is a terminal (rich draws it)."""

    def __init__(self, total: int, label: str) -> None:
        self._bar: Any = None
        if sys.stderr.isatty():
            from rich.progress import Progress

            self._bar = Progress(transient=True, console=None)
            self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> BarProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def echo(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            click.echo(line)
