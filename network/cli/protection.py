"""`posnet keys export-protection` / `import-protection`: the signing record travels with the key.

Move a validator key to a new machine, or rebuild a node's store, and its
new store knows nothing of what the key signed. Export the record from the
old home, import it into the new one before the node starts: the node then
refuses anything that conflicts with what the key signed before. (A node
also listens for its key's recent messages before signing, see
`posnet node run --doppelganger-ms`; the file covers what the network no
longer re-sends.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from network.cli.errors import UserError
from node.core.genesis import GenesisError, load_genesis
from node.core.protection import ProtectionError, export_document, merged, parse_document
from node.runtime.node import STORE_FILE
from node.runtime.store import StorageError, Store

HOME = click.option(
    "--home",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="the node's home directory",
)
GENESIS = click.option(
    "--genesis",
    "genesis_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the chain's genesis (its chain id is written into, and checked against, the file)",
)


def _chain_id(path: Path) -> str:
    try:
        return load_genesis(path).chain_id
    except GenesisError as exc:
        raise UserError(f"genesis {exc}") from None


def _open_store(home: Path, *, create: bool) -> Store:
    path = home / STORE_FILE
    if not create and not path.exists():
        raise UserError(f"{path}: no store here (has a node run with --home {home}?)")
    home.mkdir(parents=True, exist_ok=True)
    try:
        return Store(path)
    except StorageError as exc:
        raise UserError(f"{path}: {exc}") from None


@click.command("export-protection")
@HOME
@GENESIS
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="file (default: stdout)"
)
def export_protection(home: Path, genesis_path: Path, out: Path | None) -> None:
    """Write the signing record (each validator's last signed position) of a node's store as JSON."""
    chain_id = _chain_id(genesis_path)
    with _open_store(home, create=False) as store:
        doc = export_document(chain_id, store.signing_marks())
    text = json.dumps(doc, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}: {len(doc['data'])} validator(s)", err=True)


@click.command("import-protection")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@HOME
@GENESIS
def import_protection(file: Path, home: Path, genesis_path: Path) -> None:
    """Merge a signing-protection file into a node's store (marks only move forward). Stop the node first."""
    chain_id = _chain_id(genesis_path)
    try:
        marks = parse_document(json.loads(file.read_text()), chain_id)
    except OSError as exc:
        raise UserError(f"{file}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{file}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except ProtectionError as exc:
        raise UserError(f"{file}: {exc}") from None
    raised = 0
    with _open_store(home, create=True) as store:
        for validator, mark in marks.items():
            forward = merged(store.last_signed(validator), mark)
            if forward is not None:
                store.record_signing(validator, forward)
                raised += 1
    click.echo(f"imported {file}: {raised} of {len(marks)} validator mark(s) moved forward", err=True)
