"""A `posnet testnet up` run driven the way a user drives it: commands as subprocesses, logs as files.

Shared by the tests that start one real testnet per module and check it only
through `posnet ...` commands and the nodes' JSON-line logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from network.testnet.layout import Layout
from network.testnet.logcheck import read_log
from tests.support import waiting

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class UserTestnet:
    """One running `posnet testnet up` and the folder its user works in."""

    root: Path  # where the user's own key files live; commands run here
    directory: Path  # the testnet --dir
    process: subprocess.Popen[bytes]
    output: Path
    names: Sequence[str]
    wait_s: float = 60.0

    @property
    def layout(self) -> Layout:
        return Layout.of(self.directory)

    def events(self, node: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in read_log(self.layout.log(node)).events if e["event"] == kind]

    def height(self, node: str) -> int:
        finalized = self.events(node, "finalized")
        return finalized[-1]["height"] if finalized else 0

    def posnet(self, *args: object, check: int | None = 0) -> subprocess.CompletedProcess[str]:
        """Run a `posnet` command as the user would (its own process); assert its exit code."""
        argv = [sys.executable, "-m", "network.cli", *map(str, args)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=self.wait_s + 30, env=env, cwd=self.root
        )
        if check is not None:
            assert result.returncode == check, (
                f"{args}: exit {result.returncode}\n{result.stdout}{result.stderr}"
            )
        return result

    def diagnostics(self) -> str:
        lines = [self.output.read_text(errors="replace")[-3000:]]
        for node in self.names:
            events = read_log(self.layout.log(node)).events
            lines.append(f"--- {node}: {len(events)} events, last: {events[-3:]}")
        return "\n".join(lines)

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        waiting.wait_for(predicate, what, self.wait_s, interval=0.2, diagnostics=self.diagnostics)


@contextmanager
def running_testnet(
    root: Path, directory: Path, names: Sequence[str], up_args: Sequence[str], wait_s: float = 60.0
) -> Iterator[UserTestnet]:
    """`posnet testnet up --dir DIRECTORY UP_ARGS...` in its own session, stopped (SIGTERM, then SIGKILL) after."""
    output = root / "up.out"
    argv = [sys.executable, "-m", "network.cli", "testnet", "up", "--dir", str(directory), *up_args]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    with open(output, "wb") as out:
        process = subprocess.Popen(
            argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield UserTestnet(root, directory, process, output, names, wait_s)
    finally:
        process.send_signal(signal.SIGTERM)  # the orchestrator stops the nodes, the relay and the broker
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: only what this test started
            process.wait(timeout=30)
