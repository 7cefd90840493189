"""Ed25519 keys, addresses and signature checks.

An address is the first 20 bytes of SHA-256 of the public key, as in
CometBFT. Verification memoises *successful* checks keyed by the exact
(public key, message, signature) triple: a simulator with a thousand nodes
sees each vote a thousand times, and Ed25519 verification is a pure function
of those bytes, so caching a True result can never accept a forgery.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ADDRESS_LEN = 20
PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64
SEED_LEN = 32


def address_of(public_key: bytes) -> bytes:
    """The 20-byte address of an Ed25519 public key."""
    return hashlib.sha256(public_key).digest()[:ADDRESS_LEN]


@dataclass(frozen=True)
class Keypair:
    """A private key (its 32-byte seed) with its public key and address."""

    seed: bytes = field(repr=False)
    public: bytes
    _key: Ed25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> Keypair:
        if len(seed) != SEED_LEN:
            raise ValueError(f"an Ed25519 seed is {SEED_LEN} bytes, got {len(seed)}")
        key = Ed25519PrivateKey.from_private_bytes(seed)
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(seed=seed, public=public, _key=key)

    @classmethod
    def generate(cls) -> Keypair:
        return cls.from_seed(os.urandom(SEED_LEN))

    @classmethod
    def deterministic(cls, label: str) -> Keypair:
        """A key derived from a label: for the simulator and reproducible testnets only."""
        return cls.from_seed(hashlib.sha256(b"posnet-deterministic-key:" + label.encode()).digest())

    @cached_property
    def address(self) -> bytes:
        """Hashed once per key: an economy asks a delegator's address on every turn."""
        return address_of(self.public)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


@lru_cache(maxsize=4096)
def _public_key(public: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public)


_verified: dict[tuple[bytes, bytes, bytes], None] = {}
_VERIFIED_MAX = 200_000


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is `public`'s Ed25519 signature of `message`.

    Verified signatures are remembered by the message's digest, not the
    message: anyone can sign with a fresh key, and 200,000 remembered
    messages of up to 1 MiB each would pin any amount of memory.
    """
    if len(public) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    memo_key = (public, hashlib.sha256(message).digest(), signature)
    if memo_key in _verified:
        return True
    try:
        _public_key(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[memo_key] = None
    return True


def verify_uncached(public: bytes, message: bytes, signature: bytes) -> bool:
    """Verification without the memo: for benchmarks of the raw library rate."""
    try:
        _public_key(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


KEY_KINDS = ("validator", "owner", "signing", "account")
"""What a key file is for (a label for people; the chain decides what a key may do):
`validator` owns a pool and signs its votes, `owner` is a pool's cold key (funds, pool changes,
rotations), `signing` its hot key (votes only, no funds), `account` an ordinary account."""


def save_key_file(path: Path, name: str, keypair: Keypair, kind: str = "validator") -> None:
    """Write a key file readable by its owner only (0600), created atomically."""
    if kind not in KEY_KINDS:
        raise ValueError(f"key kind {kind!r}: must be one of {', '.join(KEY_KINDS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    record = {"name": name, "kind": kind, "seed": keypair.seed.hex(), "public": keypair.public.hex()}
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
    os.replace(tmp, path)


def key_file_kind(path: Path) -> str:
    """What a readable key file says it is for (files written before kinds existed are `validator`)."""
    try:
        kind = json.loads(Path(path).read_text()).get("kind", "validator")
    except (OSError, ValueError, AttributeError):
        return "validator"
    return kind if kind in KEY_KINDS else "validator"


def load_key_file(path: Path) -> tuple[str, Keypair]:
    """Read a key file; ValueError with a one-line reason when it is unusable."""
    try:
        raw = json.loads(Path(path).read_text())
        name, seed, public = raw["name"], bytes.fromhex(raw["seed"]), bytes.fromhex(raw["public"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"key file {path}: unreadable ({type(exc).__name__}: {exc})") from None
    keypair = Keypair.from_seed(seed)
    if keypair.public != public:
        raise ValueError(f"key file {path}: public key does not match the seed")
    return str(name), keypair
