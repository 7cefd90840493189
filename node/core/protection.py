"""The signing record as a file that travels with a key, in the spirit of EIP-3076.

A key moved to a new machine (or a store rebuilt from nothing) knows nothing
of what it signed; the record's last mark per validator is all it needs to
refuse anything that conflicts. `posnet keys export-protection` writes it,
`import-protection` merges it into a node's store: a mark only ever moves
forward, so importing an old file, or the same file twice, is harmless.

Document (JSON)::

    {"metadata": {"format": "posnet-signing-protection", "version": 1, "chain_id": "..."},
     "data": [{"validator": "<40 hex>", "height": 12, "round": 0,
               "step": "precommit", "block_id": "<64 hex>" | null}, ...]}

Pure: the conversion and its checks; the CLI reads and writes the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from node.core.keys import ADDRESS_LEN
from node.core.safety import SignMark, Step, position

FORMAT = "posnet-signing-protection"
VERSION = 1


class ProtectionError(ValueError):
    """A protection file that cannot be used: the message is one line naming what is wrong."""


def export_document(chain_id: str, marks: Mapping[bytes, SignMark]) -> dict[str, Any]:
    """The record's marks as a JSON-ready document, validators in address order."""
    return {
        "metadata": {"format": FORMAT, "version": VERSION, "chain_id": chain_id},
        "data": [_entry(validator, marks[validator]) for validator in sorted(marks)],
    }


def _entry(validator: bytes, mark: SignMark) -> dict[str, Any]:
    return {
        "validator": validator.hex(),
        "height": mark.height,
        "round": mark.round,
        "step": mark.step.name.lower(),
        "block_id": None if mark.block_id is None else mark.block_id.hex(),
    }


def parse_document(doc: Any, chain_id: str) -> dict[bytes, SignMark]:
    """The marks a document holds, checked field by field; ProtectionError names the first problem."""
    if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        raise ProtectionError("not a signing-protection file: no metadata object")
    meta = doc["metadata"]
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ProtectionError(f"metadata: expected format {FORMAT!r} version {VERSION}")
    if meta.get("chain_id") != chain_id:
        raise ProtectionError(f"metadata.chain_id {meta.get('chain_id')!r} is not this chain's {chain_id!r}")
    data = doc.get("data")
    if not isinstance(data, list):
        raise ProtectionError("data: expected a list")
    marks: dict[bytes, SignMark] = {}
    for index, item in enumerate(data):
        validator, mark = _parse_entry(item, f"data[{index}]")
        if validator in marks:
            raise ProtectionError(f"data[{index}]: validator {validator.hex()} appears twice")
        marks[validator] = mark
    return marks


def _parse_entry(item: Any, where: str) -> tuple[bytes, SignMark]:
    if not isinstance(item, dict):
        raise ProtectionError(f"{where}: expected an object")
    try:
        validator = bytes.fromhex(item["validator"])
        block_hex = item["block_id"]
        block_id = None if block_hex is None else bytes.fromhex(block_hex)
        step = Step[str(item["step"]).upper()]
        height, round_ = item["height"], item["round"]
        if len(validator) != ADDRESS_LEN:
            raise ValueError(f"validator: expected {ADDRESS_LEN} bytes")
        return validator, SignMark(height, round_, step, block_id)
    except KeyError as exc:
        raise ProtectionError(f"{where}: missing or unknown {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ProtectionError(f"{where}: {exc}") from None


def merged(kept: SignMark | None, imported: SignMark) -> SignMark | None:
    """The mark to store after importing `imported` over `kept` (None: keep what is there).

    Only forward: a mark behind the kept one, or beside it at the same
    position, adds nothing the record does not already refuse.
    """
    if kept is None or position(imported) > position(kept):
        return imported
    return None
