"""Following a growing JSON-lines log: the new complete events since the last read.

The supervisor streams node logs with it, `watch` folds them into its screen,
and `tx --wait` looks for a transaction's outcome in them.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from network.testnet.logcheck import Event


class LogTail:
    """New complete lines of a growing file; a partial last line waits for its newline."""

    def __init__(self, path: Path, from_end: bool = True) -> None:
        self.path = path
        self.offset = path.stat().st_size if from_end and path.exists() else 0
        self._partial = b""

    def read_events(self) -> list[Event]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # truncated or replaced: start over
            self.offset, self._partial = 0, b""
        if size == self.offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        self.offset += len(chunk)
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        events = []
        for line in lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and "event" in event:
                    events.append(event)
        return events
