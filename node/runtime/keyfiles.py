"""The keys a node signs with: which validator each belongs to, and new ones picked up while it runs.

A pool has an owner (cold) key and a signing (hot) key; the node holds only
the signing key. A key given with ``--key`` must be a validator's signing
key now, from the next epoch (a rotation under way) or just before (a node
restarted right after a rotation). An owner's key of a pool that signs with
another key is refused outright: it belongs off the validator's machine.

Rotation without a restart: the owner writes the new key into the node's
``HOME/keys/`` folder and sends `posnet tx rotate-key`. The node reads that
folder at start, at every epoch and whenever the chain asks for a key it
does not hold; the validator signs with the new key from the epoch the
chain puts it in force.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from node.core.genesis import Genesis
from node.core.keys import Keypair, load_key_file
from node.core.state import ChainState, validator_of_key

KEYS_DIR = "keys"


class KeyFileError(ValueError):
    """A key file the node cannot use: the message is one line naming the file and why."""


@dataclass(frozen=True)
class HostedKey:
    """A validator this node signs for: its name, pool address and the key it was started with."""

    name: str
    keypair: Keypair
    validator: bytes


def load_key_files(paths: Iterable[Path], missing_hint: str) -> list[tuple[Path, Keypair]]:
    """Each path's keypair, refusing a missing or unreadable file and a key given twice."""
    loaded: list[tuple[Path, Keypair]] = []
    for path in paths:
        if not path.is_file():
            raise KeyFileError(f"key file {path}: missing ({missing_hint})")
        try:
            keypair = load_key_file(path)[1]
        except ValueError as exc:
            raise KeyFileError(str(exc)) from None
        if any(other.public == keypair.public for _, other in loaded):
            raise KeyFileError(f"key file {path}: the same validator key is given twice")
        loaded.append((path, keypair))
    return loaded


def owner_key_problem(genesis: Genesis, path: Path, keypair: Keypair) -> str | None:
    """Why `keypair` must not sit on a validator's machine (an owner key of a separated pool), or None."""
    for validator in genesis.validators:
        if validator.public_key == keypair.public and validator.signing_key not in (b"", keypair.public):
            return (
                f"key file {path}: is {validator.name}'s owner (cold) key; the node signs with "
                f"{validator.name}'s signing key, and the owner key stays off the validator's machine"
            )
    return None


def resolve_hosted(
    state: ChainState, loaded: list[tuple[Path, Keypair]], spare: Iterable[Keypair] = ()
) -> tuple[list[HostedKey], list[Path]]:
    """(one `HostedKey` per validator the keys sign for, the key files that sign for nobody).

    Two keys of one validator (its old and new signing key around a
    rotation) host it once: both go into the node's key ring. `spare` keys
    (``HOME/keys/``) host their validator too: long after a rotation the
    node's first key file signs for nobody, and the rotated-in key there
    carries on. KeyFileError when no key signs for anyone.
    """
    hosted: list[HostedKey] = []
    stale: list[Path] = []
    candidates = [*loaded, *((None, keypair) for keypair in spare)]
    for path, keypair in candidates:
        validator = validator_of_key(state, keypair.public)
        if validator is None:
            if path is not None:
                stale.append(path)
        elif all(key.validator != validator for key in hosted):
            name = state.names.get(validator) or state.ledger.pools[validator].name
            hosted.append(HostedKey(name, keypair, validator))
    if not hosted:
        path, keypair = loaded[0]
        raise KeyFileError(
            f"key file {path}: public key {keypair.public.hex()[:16]}... "
            f"is not a validator of chain {state.chain_id!r}"
        )
    return hosted, stale


def scan_keys_dir(home: Path) -> tuple[list[Keypair], list[str]]:
    """The readable key files in ``HOME/keys/`` and a one-line complaint per unreadable one."""
    folder = home / KEYS_DIR
    keypairs: list[Keypair] = []
    problems: list[str] = []
    if not folder.is_dir():
        return keypairs, problems
    for path in sorted(folder.glob("*.json")):
        try:
            keypairs.append(load_key_file(path)[1])
        except ValueError as exc:
            problems.append(str(exc))
    return keypairs, problems
