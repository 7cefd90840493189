"""Storage faults on a real node: one ``fatal`` event naming the cause, a clean non-zero exit.

A validator's store can go bad under it: garbage written into the file,
the file made unwritable, the disk filled. Whatever happens, the node must
end the way an operator can act on: exactly one ``fatal`` event in its log,
one line on stderr, an exit code (not a signal: SQLite's shared-memory map
used to turn an unwritable file into SIGBUS), and never a Python traceback.

Every test runs a real 4-validator testnet over a real mosquitto and faults
one node (v4) while the other three keep the chain going. Faults that need
root (``chattr +i``, a private mount namespace for a full disk) are skipped
without it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from network.transport.broker import BrokerProcess, mosquitto_available
from tests.support.nodes import REPO_ROOT, LocalNet, NodeProc, make_localnet, running, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.broker,
    pytest.mark.skipif(not mosquitto_available(), reason="mosquitto not installed"),
]

VICTIM = "v4"
GARBAGE = 4096


def as_root(*tools: str) -> pytest.MarkDecorator:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    return pytest.mark.skipif(os.geteuid() != 0 or bool(missing), reason=f"needs root and {', '.join(tools)}")


def store_path(node: NodeProc) -> Path:
    return node.home / "node.sqlite3"


def write_garbage_in_the_middle(path: Path) -> None:
    """Overwrite 4 KB in the middle of the file with random bytes (a torn or rotten disk sector)."""
    size = path.stat().st_size  # while a node runs its chain may still be in the WAL, the file one page
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(GARBAGE))
        f.flush()
        os.fsync(f.fileno())


def store_is_sound(path: Path) -> bool:
    """What SQLite itself says of a stopped node's store."""
    try:
        with sqlite3.connect(path) as conn:
            return conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    except sqlite3.DatabaseError:
        return False


async def wait_exit(net: LocalNet, node: NodeProc) -> int:
    await wait_until(lambda: not node.running, what=f"{node.name} to exit", net=net)
    assert node.process is not None
    return node.process.returncode


def assert_ended_cleanly(node: NodeProc, code: int, cause: str) -> None:
    """Exactly one fatal event naming the cause; an exit code, one stderr line, no traceback."""
    stderr = node.stderr()
    assert code > 0, f"{node.name} ended with {code} (negative: killed by a signal); stderr: {stderr}"
    assert "Traceback" not in stderr, stderr
    fatal = node.events("fatal")
    assert len(fatal) == 1, fatal
    assert cause in fatal[0]["reason"], fatal
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr


async def started(net: LocalNet, height: int = 4) -> None:
    await wait_until(lambda: min(net.heights().values()) >= height, what=f"height {height}", net=net)


async def test_garbage_in_the_middle_of_a_stopped_store_ends_its_restart_in_one_fatal_event(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    victim = net.nodes[VICTIM]
    with running(net):
        await started(net, 6)
        assert victim.terminate() == 0
        write_garbage_in_the_middle(store_path(victim))
        victim.start()
        code = await wait_exit(net, victim)
    assert_ended_cleanly(victim, code, "store")
    assert code == 2  # a store it cannot start from is an input it cannot start with


async def test_garbage_written_while_a_node_runs_never_ends_in_a_traceback(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    """The node may not read the rotten page before it stops; then its restart must refuse the store."""
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    victim = net.nodes[VICTIM]
    with running(net):
        await started(net, 6)
        write_garbage_in_the_middle(store_path(victim))
        mark = victim.height()
        await wait_until(
            lambda: not victim.running or min(net.heights().values()) >= mark + 3,
            what="three more heights or the victim's exit",
            net=net,
        )
        code = victim.terminate()
        if code == 0 and not store_is_sound(store_path(victim)):
            victim.start()
            code = await wait_exit(net, victim)
    assert code is not None
    if code == 0:  # the rotten bytes were rewritten by a checkpoint before anyone read them
        assert store_is_sound(store_path(victim)) and not victim.events("fatal")
        assert "Traceback" not in victim.stderr()
    else:
        assert_ended_cleanly(victim, code, "store")


@as_root("chattr")
async def test_a_store_made_immutable_while_the_node_runs_ends_in_one_fatal_event_not_sigbus(
    mosquitto: BrokerProcess, tmp_path: Path
) -> None:
    """``chattr +i`` denies writes even to root (chmod does not); the node's next commit fails."""
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    victim = net.nodes[VICTIM]
    files = [p for p in victim.home.glob("node.sqlite3*")]
    try:
        with running(net):
            await started(net)
            files = sorted(victim.home.glob("node.sqlite3*"))
            subprocess.run(["chattr", "+i", *map(str, files)], check=True)
            code = await wait_exit(net, victim)
            await wait_until(
                lambda: min(n.height() for n in net.nodes.values() if n is not victim) >= victim.height() + 2,
                what="the other three to go on",
                net=net,
            )
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=False)
    assert_ended_cleanly(victim, code, "storage")
    assert code == 1


def start_on_a_small_disk(node: NodeProc, size: str) -> None:
    """Start the node with its HOME on a tmpfs of ``size`` in a private mount namespace (unshare -m)."""
    saved = node.home.parent / f"{node.name}-saved"
    script = (
        'set -e; cp -a "$HOME_DIR/." "$SAVED/"; mount -t tmpfs -o size="$SIZE" tmpfs "$HOME_DIR"; '
        'cp -a "$SAVED/." "$HOME_DIR/"; exec "$@"'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HOME_DIR": str(node.home), "SAVED": str(saved)}
    env["SIZE"] = size
    saved.mkdir()
    node.stderr_path = node.home.parent / f"{node.name}-stderr.log"
    with open(node.stderr_path, "ab") as err:
        node.process = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *node.argv()],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
        )


@as_root("unshare", "nsenter")
async def test_a_full_disk_ends_the_node_in_one_fatal_event(mosquitto: BrokerProcess, tmp_path: Path) -> None:
    net = make_localnet(tmp_path / "net", mosquitto.url, 4)
    victim = net.nodes[VICTIM]
    with running(net):
        victim.terminate()
        start_on_a_small_disk(victim, "8m")
        await started(net)
        assert victim.process is not None
        fill = f"dd if=/dev/zero of={victim.home / 'filler'} bs=64k 2>/dev/null; true"
        subprocess.run(["nsenter", "-t", str(victim.process.pid), "-m", "sh", "-c", fill], check=True)
        code = await wait_exit(net, victim)
    assert_ended_cleanly(victim, code, "full")
    assert code == 1
