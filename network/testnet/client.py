"""A client of one running node's read-only JSON endpoint (``/query/...`` on its metrics port).

The node answers from its own ledger (see `node.core.query`), so a client
reads balances, pools and transaction outcomes without touching the node's
files, and can dry-run a transaction (``/query/check/...``) by the ledger's
own rules before anyone publishes it. Every failure is one `ClientError` line.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from network.testnet.target import ClientError, Target
from node.core.keys import ADDRESS_LEN, PUBLIC_KEY_LEN, address_of, load_key_file

HTTP_TIMEOUT_S = 5.0

JSON = dict[str, Any]


class QueryClient:
    """GETs JSON from one node's ``/query/`` endpoint; every failure is a one-line ClientError."""

    def __init__(self, target: Target) -> None:
        if target.query_url is None:
            raise ClientError(f"{target.label}: no query URL to ask")
        self.url = target.query_url
        self.label = target.label

    def get(self, path: str) -> JSON:
        try:
            with urllib.request.urlopen(self.url + path, timeout=HTTP_TIMEOUT_S) as response:
                return json.load(response)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            raise ClientError(f"{self.label}: {_error_text(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            who = f"node {self.label} at {self.url}" if self.label != self.url else f"a node at {self.url}"
            raise ClientError(
                f"cannot reach {who} ({reason}); is it running with a --metrics-port?"
            ) from None
        except ValueError:
            raise ClientError(
                f"{self.label}: answered something that is not JSON at {self.url + path}"
            ) from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc)["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code}"


def parse_account(text: str, target: Target | None = None, client: QueryClient | None = None) -> bytes:
    """An address from 40 hex digits, a 64-hex public key, a pool or account name, or a key file.

    Pool names come from the genesis first, then (only if needed) from the
    node's pool list, which also knows pools registered by transaction.
    """
    raw = text.strip()
    hex_text = raw[2:] if raw.lower().startswith("0x") else raw
    with contextlib.suppress(ValueError):
        value = bytes.fromhex(hex_text)
        if len(value) == ADDRESS_LEN:
            return value
        if len(value) == PUBLIC_KEY_LEN:
            return address_of(value)
    names = dict(target.names) if target is not None else {}
    if raw in names:
        return names[raw]
    path = Path(raw).expanduser()
    if path.is_file():
        return _key_address(path)
    if client is not None:
        with contextlib.suppress(ClientError, KeyError, TypeError, ValueError):
            for pool in client.get("/query/pools")["pools"]:
                names.setdefault(pool["name"], bytes.fromhex(pool["address"]))
        if raw in names:
            return names[raw]
    raise ClientError(
        f"{text!r} is not an address (40 hex digits), a public key, a key file, or a pool or account name"
        + (f" ({', '.join(sorted(names))})" if names else "")
    )


def _key_address(path: Path) -> bytes:
    try:
        return load_key_file(path)[1].address
    except ValueError as exc:
        raise ClientError(str(exc)) from None
