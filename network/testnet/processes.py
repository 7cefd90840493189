"""Node processes: their command line, spawning them, and knowing a recorded pid is still ours.

Nodes run as real OS processes (`python -m network.cli node run ...`) in their
own sessions, so that a Ctrl-C in the terminal reaches only the orchestrator,
which then stops the nodes first and the broker last, in that order. Every
signal sent to a recorded pid is preceded by an identity check against its
command line (`/proc/PID/cmdline`), so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from network.testnet.layout import Layout, NodeProc

STOP_TIMEOUT_S = 10.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def repo_env() -> dict[str, str]:
    """This process's environment with the repository first on PYTHONPATH: children run this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def cmdline(pid: int) -> list[str] | None:
    """The argv `pid` runs (None when it is gone): what tells our process from a recycled pid."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def process_state(pid: int | None, command: Sequence[str] | None = None) -> str:
    """`alive`, `paused` (SIGSTOPped) or `dead` — where a zombie or a recycled pid counts as dead.

    `os.kill(pid, 0)` alone would call a zombie alive and a reused pid ours;
    /proc tells both apart. Without /proc (not Linux) it is the best we have.
    """
    if not pid:
        return "dead"
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "dead"
        except PermissionError:
            pass
        return "alive"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "dead"
    fields_after_name = stat.rpartition(")")[2].split()
    code = fields_after_name[0] if fields_after_name else "?"
    if code in ("Z", "X", "x"):
        return "dead"
    if command is not None and cmdline(pid) != list(command):
        return "dead"
    return "paused" if code in ("T", "t") else "alive"


def signal_process(pid: int | None, command: Sequence[str] | None, sig: int) -> bool:
    """Send `sig` if `pid` is still the process we started; False when it is gone."""
    if pid is None or process_state(pid, command) == "dead":
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop_processes(
    procs: Sequence[tuple[int | None, Sequence[str] | None, subprocess.Popen[bytes] | None]],
    timeout: float = STOP_TIMEOUT_S,
    force: Callable[[], bool] = lambda: False,
) -> None:
    """SIGTERM (and SIGCONT, or a paused process never sees it) all, wait, SIGKILL the stragglers.

    Stopping them together rather than one by one keeps shutdown at one
    timeout, not N. `force()` turning true (a second Ctrl-C) skips the wait.
    """

    def alive(pid: int | None, command: Sequence[str] | None, popen: subprocess.Popen[bytes] | None) -> bool:
        if popen is not None:
            return popen.poll() is None
        return process_state(pid, command) != "dead"

    for pid, command, _ in procs:
        if signal_process(pid, command, signal.SIGTERM):
            signal_process(pid, command, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while any(alive(*p) for p in procs) and time.monotonic() < deadline and not force():
        time.sleep(0.05)
    for pid, command, popen in procs:
        if alive(pid, command, popen):
            signal_process(pid, command, signal.SIGKILL)
            if popen is not None:
                popen.wait(timeout=STOP_TIMEOUT_S)


GENESIS_WAIT_S = 60.0
"""How long a testnet node at genesis waits for the others before it starts height 1 alone.

The processes boot one after another, seconds apart on a loaded machine;
without the wait the first three would finalize while the fourth still
boots, and charge it the missed heights (see `node.core.startgate`).
"""


def node_argv(
    *,
    home: Path,
    genesis: Path,
    broker_url: str,
    log: Path,
    name: str | None = None,
    metrics_port: int = 0,
    behaviour: str = "honest",
    mqtt_protocol: str | None = None,
    key_files: Sequence[Path] = (),
    mqtt_username: str | None = None,
    mqtt_password_file: Path | None = None,
    genesis_wait_s: float = 0,
) -> list[str]:
    """The ``posnet node run`` argv: the one definition the testnet, benchmarks and tests all start nodes with.

    `python -m` (this interpreter) rather than the console script: it works
    before `pip install` and never picks up another installation. Metrics,
    when on, bind to loopback only: a local node has no business listening
    on every interface.
    """
    command = [
        sys.executable,
        "-m",
        "network.cli",
        "node",
        "run",
        "--home",
        str(home),
        "--genesis",
        str(genesis),
        "--broker",
        broker_url,
    ]
    if name is not None:
        command += ["--name", name]
    command += ["--log", str(log), "--behaviour", behaviour]
    if metrics_port:
        command += ["--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"]
    if mqtt_protocol:
        command += ["--mqtt-protocol", mqtt_protocol]
    for key_file in key_files:
        command += ["--key", str(key_file)]
    if mqtt_username is not None:
        command += ["--mqtt-username", mqtt_username]
    if mqtt_password_file is not None:
        command += ["--mqtt-password-file", str(mqtt_password_file)]
    if genesis_wait_s:
        command += ["--genesis-wait-s", f"{genesis_wait_s:g}"]
    return command


def node_command(
    layout: Layout,
    name: str,
    broker_url: str,
    metrics_port: int,
    behaviour: str,
    mqtt_protocol: str | None,
    validators: Sequence[str] = (),
) -> list[str]:
    """The argv of testnet node `name`: its files where `layout` puts them.

    `validators`, when the process hosts others than its namesake, are passed
    as `--key nodes/vI/key.json` each: the keys stay where the genesis was
    made from, and the process keeps its own home, store and log.
    """
    hosted = [] if list(validators) in ([], [name]) else [layout.key(v) for v in validators]
    return node_argv(
        home=layout.home(name),
        genesis=layout.genesis,
        broker_url=broker_url,
        log=layout.log(name),
        name=name,
        metrics_port=metrics_port,
        behaviour=behaviour,
        mqtt_protocol=mqtt_protocol,
        key_files=hosted,
        genesis_wait_s=GENESIS_WAIT_S,
    )


def spawn_node(layout: Layout, node: NodeProc) -> subprocess.Popen[bytes]:
    """Start the node's recorded command in its own session, output appended to node.out."""
    output = layout.output(node.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    layout.logs.mkdir(parents=True, exist_ok=True)
    env = repo_env()
    env["PYTHONUNBUFFERED"] = "1"
    with open(output, "ab") as out:
        out.write(
            f"--- posnet testnet: starting {node.name} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
        )
        out.flush()
        return subprocess.Popen(
            node.command,
            cwd=layout.home(node.name),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def describe_exit(code: int | None) -> str:
    """`exit code 1`, `killed by SIGKILL`, or `exit code unknown` for a process that was not our child."""
    if code is None:
        return "exit code unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def output_tail(layout: Layout, name: str, lines: int = 5) -> list[str]:
    """The last lines a node printed: usually the reason it died."""
    return output_tail_of(layout.output(name), lines)


def output_tail_of(path: Path, lines: int = 5) -> list[str]:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return text[-lines:]


def wait_dead(pid: int | None, command: Sequence[str] | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_state(pid, command) != "dead":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
