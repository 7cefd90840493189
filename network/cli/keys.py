"""`posnet keys` and `posnet genesis`: make the files a validator starts from.

A testnet is a directory of key files and one genesis TOML. These commands
write them with the same checks the node applies when it reads them, so a
mistake shows up here, as one line naming the field, and not later as a node
that refuses to start.

Exit codes: 0 success, 2 for anything the user has to fix (a bad or missing
file, a bad value, a file that would be overwritten without --force).
"""

from __future__ import annotations

import tomllib
from dataclasses import fields, replace
from pathlib import Path

import click

from network.cli.errors import UserError
from node.core.genesis import (
    Genesis,
    GenesisAccount,
    GenesisError,
    Params,
    genesis_to_toml,
    load_genesis,
    make_genesis,
    parse_genesis,
    parse_params,
)
from node.core.keys import KEY_KINDS, Keypair, key_file_kind, load_key_file, save_key_file

DEFAULT_CHAIN_ID = "posnet-local"
DEFAULT_STAKE = 1000


def _refuse_overwrite(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")


# ------------------------------------------------------------------ keys


@click.group()
def keys() -> None:
    """Validator key files (Ed25519, readable by their owner only)."""


@keys.command("generate")
@click.option("--name", required=True, help="validator name, e.g. v1")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="overwrite an existing key file")
@click.option(
    "--kind",
    type=click.Choice(KEY_KINDS),
    default="validator",
    show_default=True,
    help="validator: owns a pool and signs its votes; owner: a pool's cold key (funds, pool changes); "
    "signing: a pool's hot key (votes only, holds nothing); account: an ordinary account",
)
def keys_generate(name: str, out: Path, force: bool, kind: str) -> None:
    """Generate a new key and write it to OUT with mode 0600."""
    if not name.strip():
        raise UserError("--name must not be empty")
    _refuse_overwrite(out, force)
    keypair = Keypair.generate()
    try:
        save_key_file(out, name, keypair, kind)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out} (mode 0600): {name} {kind} key, address {keypair.address.hex()}")


@keys.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def keys_show(file: Path) -> None:
    """Print a key file's name, address and public key (never the private seed)."""
    name, keypair = load_key(file)
    click.echo(f"name:       {name}")
    click.echo(f"kind:       {key_file_kind(file)}")
    click.echo(f"address:    {keypair.address.hex()}")
    click.echo(f"public key: {keypair.public.hex()}")


def load_key(path: Path) -> tuple[str, Keypair]:
    """A key file read by the node's own reader, its one-line complaint turned into a UserError."""
    try:
        return load_key_file(path)
    except ValueError as exc:
        raise UserError(str(exc)) from None


# ------------------------------------------------------------------ genesis


@click.group()
def genesis() -> None:
    """Genesis files: the chain id, the parameters and the initial stake pools."""


@genesis.command("create")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_files",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="a validator key file (repeat once per validator); its name becomes the validator's name",
)
@click.option("--chain-id", default=DEFAULT_CHAIN_ID, show_default=True)
@click.option(
    "--stake", type=click.IntRange(1), default=DEFAULT_STAKE, show_default=True, help="pledge per validator"
)
@click.option(
    "--slot-ms", type=click.IntRange(0), default=None, help="commit_wait_ms: 0 = fast, >0 = paced slots"
)
@click.option("--committee-size", type=click.IntRange(1), default=None)
@click.option("--epoch-length", type=click.IntRange(1), default=None)
@click.option(
    "--param", "param_items", multiple=True, metavar="NAME=VALUE", help="any other parameter (repeatable)"
)
@click.option(
    "--account",
    "account_items",
    multiple=True,
    metavar="KEYFILE=BALANCE",
    help="fund an account at genesis, e.g. alice.json=5000 (a key file from `posnet keys generate`; repeatable)",
)
@click.option(
    "--signing-key",
    "signing_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="a separate signing (hot) key for the validator of the same name; its --key is then the owner's",
)
@click.option("--force", is_flag=True, help="overwrite an existing genesis file")
def genesis_create(
    out: Path,
    key_files: tuple[Path, ...],
    signing_files: tuple[Path, ...],
    chain_id: str,
    stake: int,
    slot_ms: int | None,
    committee_size: int | None,
    epoch_length: int | None,
    param_items: tuple[str, ...],
    account_items: tuple[str, ...],
    force: bool,
) -> None:
    """Write a genesis with one stake pool per key file (and funded accounts per --account)."""
    _refuse_overwrite(out, force)
    overrides = parse_param_items(param_items)
    named = {"commit_wait_ms": slot_ms, "committee_size": committee_size, "epoch_length": epoch_length}
    overrides.update({k: v for k, v in named.items() if v is not None})
    keypairs: dict[str, Keypair] = {}
    for path in key_files:
        name, keypair = load_key(path)
        if name in keypairs:
            raise UserError(f"{path}: validator name {name!r} is already used by another --key")
        keypairs[name] = keypair
    signing: dict[str, Keypair] = {}
    for path in signing_files:
        name, keypair = load_key(path)
        if name not in keypairs:
            raise UserError(f"--signing-key {path}: no --key names validator {name!r}")
        if name in signing:
            raise UserError(f"--signing-key {path}: validator {name!r} already has a signing key")
        signing[name] = keypair
    accounts = parse_account_items(account_items)
    try:
        doc = build_genesis(chain_id, keypairs, stake, overrides, accounts, signing)
    except GenesisError as exc:
        raise UserError(str(exc)) from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(genesis_to_toml(doc))
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    funded = f", {len(accounts)} funded accounts" if accounts else ""
    click.echo(
        f"wrote {out}: chain {doc.chain_id}, {len(doc.validators)} validators, stake {stake} each{funded}"
    )


def parse_account_items(items: tuple[str, ...]) -> tuple[GenesisAccount, ...]:
    """`KEYFILE=BALANCE` strings to genesis accounts; a bad file, balance or repeated key is one line."""
    accounts: dict[bytes, GenesisAccount] = {}
    for item in items:
        path, sep, raw = item.rpartition("=")
        if not sep or not path:
            raise UserError(f"--account {item!r}: expected KEYFILE=BALANCE")
        try:
            balance = int(raw.strip())
        except ValueError:
            raise UserError(f"--account {item!r}: balance must be an integer") from None
        if balance < 1:
            raise UserError(f"--account {item!r}: balance must be at least 1")
        _, keypair = load_key(Path(path))
        if keypair.public in accounts:
            raise UserError(f"--account {item!r}: that key is already funded by another --account")
        accounts[keypair.public] = GenesisAccount(keypair.public, balance)
    return tuple(accounts.values())


def parse_param_items(items: tuple[str, ...]) -> dict[str, int]:
    """`NAME=VALUE` strings to a dict, refusing non-integers with the offending item named."""
    values: dict[str, int] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--param {item!r}: expected NAME=VALUE")
        try:
            values[name.strip()] = int(raw.strip())
        except ValueError:
            raise UserError(f"--param {item!r}: params.{name.strip()} must be an integer") from None
    return values


def build_genesis(
    chain_id: str,
    keypairs: dict[str, Keypair],
    stake: int,
    overrides: dict[str, int],
    accounts: tuple[GenesisAccount, ...] = (),
    signing_keys: dict[str, Keypair] | None = None,
) -> Genesis:
    """A genesis that is known to load: built, rendered, and parsed back with the node's own checks.

    Parsing the rendered TOML (instead of trusting the dataclass) is what makes
    "create succeeded" imply "the node accepts it".
    """
    params = parse_params(overrides)
    stakes = {name: stake for name in keypairs}
    doc = make_genesis(chain_id, keypairs, stakes=stakes, params=params, signing_keys=signing_keys)
    doc = replace(doc, accounts=accounts)
    return parse_genesis(tomllib.loads(genesis_to_toml(doc)))


@genesis.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def genesis_check(file: Path) -> None:
    """Validate a genesis file and print a summary; exit 2 with one line naming the bad field."""
    try:
        doc = load_genesis(file)
    except GenesisError as exc:
        raise UserError(str(exc)) from None
    for line in genesis_summary(doc):
        click.echo(line)


def genesis_summary(doc: Genesis) -> list[str]:
    """Human-readable lines: the chain, the pacing, the parameters that differ from defaults, the pools."""
    total = sum(v.stake for v in doc.validators)
    pacing = "fast" if doc.params.commit_wait_ms == 0 else f"slot {doc.params.commit_wait_ms} ms"
    lines = [
        f"chain {doc.chain_id}: {len(doc.validators)} validators, total stake {total}, {pacing}",
        f"committee_size {doc.params.committee_size}, epoch_length {doc.params.epoch_length}",
    ]
    defaults = Params()
    changed = [
        f"{f.name}={getattr(doc.params, f.name)}"
        for f in fields(Params)
        if getattr(doc.params, f.name) != getattr(defaults, f.name)
    ]
    lines.append("params changed from defaults: " + (", ".join(changed) if changed else "none"))
    for v in doc.validators:
        share = 100 * v.stake / total
        lines.append(
            f"  {v.name:<8} {v.address.hex()}  stake {v.stake:>8} ({share:4.1f}%)  "
            f"margin {v.margin_ppm / 10_000:.1f}%  delegations {len(v.delegations)}"
            + (f"  signing key {v.signing_key.hex()[:16]}" if v.signing_key else "")
        )
    if doc.accounts:
        lines.append(f"{len(doc.accounts)} funded accounts, {sum(a.balance for a in doc.accounts)} in total")
    return lines
