"""The chain a testnet runs: its validators' keys and its genesis, created once and reused after.

Reuse is what makes a testnet restartable (the nodes' stores belong to that
genesis), so an existing directory is verified against what was asked for,
never silently overwritten.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from network.testnet.errors import TestnetError
from network.testnet.layout import Layout
from node.core.genesis import (
    Genesis,
    GenesisAccount,
    GenesisError,
    Params,
    genesis_to_toml,
    load_genesis,
    make_genesis,
    validator_names,
)
from node.core.keys import Keypair, load_key_file, save_key_file

DEFAULT_CHAIN_ID = "posnet-local"
DEFAULT_SLOT_MS = 1000  # paced heights: a human can read the stream


ACCOUNT_BALANCE = 1_000_000  # each funded account's genesis balance (`testnet up --accounts`)


def prepare(
    layout: Layout,
    validators: int,
    chain_id: str | None,
    slot_ms: int | None,
    cold_keys: bool | None = None,
    accounts: int | None = None,
) -> Genesis:
    """Create the keys and genesis that are missing; reuse (and verify) the ones that exist.

    Reuse is what makes a testnet restartable: the nodes' stores belong to
    that genesis. Options that contradict an existing genesis are refused
    rather than ignored, since silently running a different chain than asked
    for is the worse surprise. With `cold_keys` each pool gets an owner key
    (DIR/owners/NAME.json, kept away from the node) and the node's key file
    is a separate signing key. None for `chain_id`, `slot_ms`, `cold_keys`
    or `accounts` means "not asked for": the default for a new genesis,
    no check against an existing one.
    """
    names = validator_names(validators)
    if layout.genesis.exists():
        return _reuse_genesis(layout, names, chain_id, slot_ms, cold_keys, accounts)
    signing: dict[str, Keypair] | None = None
    if cold_keys:
        keypairs = {name: _key_for(layout, name, layout.owner_key(name), "owner") for name in names}
        signing = {name: _key_for(layout, name, layout.key(name), "signing") for name in names}
    else:
        keypairs = {name: _key_for(layout, name, layout.key(name)) for name in names}
    params = Params(commit_wait_ms=DEFAULT_SLOT_MS if slot_ms is None else slot_ms)
    doc = make_genesis(chain_id or DEFAULT_CHAIN_ID, keypairs, params=params, signing_keys=signing)
    funded = [
        _key_for(layout, f"a{i:02d}", layout.account_key(i), "account") for i in range(1, (accounts or 0) + 1)
    ]
    doc = replace(doc, accounts=tuple(GenesisAccount(key.public, ACCOUNT_BALANCE) for key in funded))
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.genesis.write_text(genesis_to_toml(doc))
    try:
        return load_genesis(layout.genesis)  # the node's own checks, before any node starts
    except GenesisError as exc:
        layout.genesis.unlink()
        raise TestnetError(str(exc)) from None


def _key_for(layout: Layout, name: str, path: Path, kind: str = "validator") -> Keypair:
    if not path.exists():
        keypair = Keypair.generate()
        save_key_file(path, name, keypair, kind)
        return keypair
    stored_name, keypair = _load_key(path)
    if stored_name != name:
        raise TestnetError(f"{path}: key is named {stored_name!r}, expected {name!r}")
    return keypair


def _load_key(path: Path) -> tuple[str, Keypair]:
    try:
        return load_key_file(path)
    except ValueError as exc:
        raise TestnetError(str(exc)) from None


def _reuse_genesis(
    layout: Layout,
    names: list[str],
    chain_id: str | None,
    slot_ms: int | None,
    cold_keys: bool | None = None,
    accounts: int | None = None,
) -> Genesis:
    try:
        doc = load_genesis(layout.genesis)
    except GenesisError as exc:
        raise TestnetError(str(exc)) from None
    existing = [v.name for v in doc.validators]
    fresh = "use a fresh --dir (or delete it) for a new chain"
    if existing != names:
        raise TestnetError(
            f"{layout.genesis} has validators {', '.join(existing)}, but --validators {len(names)} "
            f"means {names[0]}..{names[-1]}; {fresh}"
        )
    if chain_id is not None and chain_id != doc.chain_id:
        raise TestnetError(f"{layout.genesis} is chain {doc.chain_id!r}, not {chain_id!r}; {fresh}")
    if slot_ms is not None and slot_ms != doc.params.commit_wait_ms:
        raise TestnetError(
            f"{layout.genesis} has commit_wait_ms {doc.params.commit_wait_ms}, not --slot-ms {slot_ms}; {fresh}"
        )
    _check_genesis_only(layout, doc, cold_keys, accounts, fresh)
    for validator in doc.validators:
        if not layout.key(validator.name).exists():
            raise TestnetError(
                f"{layout.key(validator.name)} is missing but {layout.genesis} names {validator.name}"
            )
        _, keypair = _load_key(layout.key(validator.name))
        if keypair.public != validator.signing_public_key:
            raise TestnetError(
                f"{layout.key(validator.name)} does not match {validator.name}'s key in {layout.genesis}"
            )
    return doc


def _check_genesis_only(
    layout: Layout, doc: Genesis, cold_keys: bool | None, accounts: int | None, fresh: str
) -> None:
    """Refuse `--cold-keys` / `--accounts N` that the existing genesis does not have.

    Both only shape a new genesis; ignoring them on an existing directory
    left the user with a chain that lacks what they asked for, and the error
    came much later from another command (`testnet load`: "start the testnet
    with --accounts N", which they had done).
    """
    has_cold = any(v.signing_key for v in doc.validators)
    if cold_keys is not None and cold_keys != has_cold:
        flag = "--cold-keys" if cold_keys else "--no-cold-keys"
        has = "separate owner keys" if has_cold else "no separate owner keys"
        raise TestnetError(f"{layout.genesis} has {has}, not {flag}; {fresh}")
    if accounts is not None and accounts != len(doc.accounts):
        raise TestnetError(
            f"{layout.genesis} funds {len(doc.accounts)} accounts, not --accounts {accounts}; {fresh}"
        )
