"""Terminal colour without click: the escape codes click.style writes, and an echo that drops them off a terminal.

The testnet modules colour their warnings and verdicts as the command line
always has. The command line hands them click.echo (which strips the codes
when the output is not a terminal); other callers get `echo` here, which does
the same, so a log file or a pipe never receives escape codes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from node.runtime.eventlog import RESET

Echo = Callable[[str], None]
"""Where a testnet's lines go: one call per line, without its newline."""

_FOREGROUND = {"red": 31, "green": 32, "yellow": 33, "cyan": 36}


def style(text: str, fg: str | None = None, bold: bool = False) -> str:
    """`text` in colour `fg` (red, green, yellow, cyan), maybe bold: byte for byte what click.style writes."""
    codes = f"\x1b[{_FOREGROUND[fg]}m" if fg is not None else ""
    if bold:
        codes += "\x1b[1m"
    return f"{codes}{text}{RESET}"


def strip_ansi(text: str) -> str:
    """`text` without its colour escape codes (each runs from ESC to its closing `m`)."""
    out, skip = [], False
    for ch in text:
        if ch == "\x1b":
            skip = True
        elif skip and ch == "m":
            skip = False
        elif not skip:
            out.append(ch)
    return "".join(out)


def echo(line: str) -> None:
    """Print a line to stdout, with its colours on a terminal and without them anywhere else."""
    out = sys.stdout
    out.write((line if out.isatty() else strip_ansi(line)) + "\n")
    out.flush()
