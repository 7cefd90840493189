"""Child processes the product starts find the package from the checkout, installed or not.

The broker and node launchers put the repository root on the child's
PYTHONPATH. After the layout moved those modules one package deeper, one
root pointed at `network/` instead: it went unnoticed because an editable
install hides it. These tests pin the roots to the directory that holds
pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from network.testnet import processes
from network.transport import broker


def _is_repo_root(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() and (path / "node" / "core").is_dir()


def test_the_embedded_broker_child_gets_the_repository_root_on_its_path() -> None:
    assert _is_repo_root(broker._REPO_ROOT), broker._REPO_ROOT


def test_node_processes_get_the_repository_root_on_their_path() -> None:
    assert _is_repo_root(processes.REPO_ROOT), processes.REPO_ROOT
