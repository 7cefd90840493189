"""Genesis: the chain id, the parameters and the initial stake pools, from TOML.

All quantities are integers (stake units, parts-per-million, milliseconds):
floats would make the state transition depend on the machine. A bad genesis
is refused with one line naming the field, because a testnet that starts
from a silently-defaulted genesis teaches the wrong lesson.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from node.core.fields import FieldReader
from node.core.keys import PUBLIC_KEY_LEN, Keypair, address_of
from node.core.randao import commitment

PPM = 1_000_000


class GenesisError(ValueError):
    """A genesis that cannot be used; the message is one line naming the field."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split("\n")).replace("\r", " "))


# Field metadata: the state hash leaves such a field out while it holds its default, so adding
# it did not change the hash of any chain that does not use it (see node.core.canonical.canonical).
HASHED_WHEN_SET = "hashed_when_set"


@dataclass(frozen=True)
class Params:
    """Protocol parameters fixed at genesis."""

    timeout_propose_ms: int = 1000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 500
    timeout_prevote_delta_ms: int = 250
    timeout_precommit_ms: int = 500
    timeout_precommit_delta_ms: int = 250
    commit_wait_ms: int = 0  # 0 = "fast": heights back to back; >0 = "slot" pacing
    committee_size: int = 128
    epoch_length: int = 10
    block_reward: int = 100
    proposer_reward_ppm: int = 200_000  # the rest goes to signers of the previous certificate
    slash_fraction_double_sign_ppm: int = 50_000
    whistleblower_reward_ppm: int = 100_000  # of the slashed amount, to the including proposer
    slash_fraction_downtime_ppm: int = 10_000
    downtime_window: int = 20
    max_missed_in_window: int = 10  # jailed past half the window missed (CometBFT's default ratio)
    late_precommit_ms: int = 2000  # a height is judged for downtime this long after its block
    jail_epochs: int = 2
    unbonding_epochs: int = 2
    evidence_max_age: int = 100
    max_block_txs: int = 1000
    # Reward sharing (node.core.rewards): k pools at most earn a full share (0 = no saturation);
    # a0 in ppm, how much pledge raises a pool's reward (0 = off). Both off = the plain shares.
    saturation_k: int = field(default=0, metadata={HASHED_WHEN_SET: True})
    pledge_influence_ppm: int = field(default=0, metadata={HASHED_WHEN_SET: True})
    # A pool's stake may be at most its pledge times this (0 = no cap): delegations past it are refused.
    max_leverage: int = field(default=0, metadata={HASHED_WHEN_SET: True})
    # 0 = locked delegation (stake leaves the balance, unbonds, is slashable); 1 = liquid (Cardano: a
    # delegation labels the account, its balance at each epoch start is the stake, only pledge is slashed).
    liquid_delegation: int = field(default=0, metadata={HASHED_WHEN_SET: True})
    # 0 = each block's rewards are paid at once (operator, members); 1 = they accrue in the pool and are
    # paid at the next epoch start (Cardano's rhythm: the fixed cost is then per epoch, and a small
    # delegator's part is not floored away block by block).
    epoch_rewards: int = field(default=0, metadata={HASHED_WHEN_SET: True})
    # ... and at least this many blocks after it: after a stall the first block must not judge every
    # height at once, before the proposers that follow had a chance to carry the precommits (at least 2:
    # block h + 1 carries h's certificate, later ones its late precommits).
    late_precommit_heights: int = field(default=4, metadata={HASHED_WHEN_SET: True})
    # What reward sharing measures a pool's stake share sigma (and pledge share) against: 0 = the bonded
    # stake (every pool's stake but the tombstoned); 1 = the circulating supply, everything but the
    # reserve, as Cardano does. Measured against supply, saturation sits at 1/k of the supply, and the
    # part of each block's reward that unstaked units would have earned goes to the reserve.
    sigma_of_supply: int = field(default=0, metadata={HASHED_WHEN_SET: True})
    # Where the epoch seed's randomness comes from: 0 = finalized block hashes, which the proposer of an
    # epoch's last block can grind (node.core.grinding); 1 = RANDAO, each block mixes its proposer's hash-onion
    # reveal for the epoch, so a proposer can only withhold its block (node.core.randao). Off by default, so
    # existing genesis files, chains, goldens and stores keep their hashes.
    randao: int = field(default=0, metadata={HASHED_WHEN_SET: True})

    def timeout_ms(self, step: str, round_: int) -> int:
        """base + delta * round: the Tendermint rule that lets rounds outgrow network delay."""
        base = getattr(self, f"timeout_{step}_ms")
        return base + getattr(self, f"timeout_{step}_delta_ms") * round_

    def failed_rounds_ms(self, rounds: int) -> int:
        """How long `rounds` rounds in a row take when each one fails: every step waits out its timeout.

        The liveness promise "finality resumes within R rounds", in time; the
        simulator and the testnet's scenarios both measure recovery against it.
        """
        return sum(
            self.timeout_ms(step, r) for r in range(rounds) for step in ("propose", "prevote", "precommit")
        )


_PARAM_LIMITS: dict[str, tuple[int, int]] = {
    "committee_size": (1, 100_000),
    "epoch_length": (1, 1_000_000),
    "downtime_window": (1, 100_000),
    "jail_epochs": (0, 1_000_000),
    # At least one: committees are drawn an epoch ahead from the stake of that moment, so
    # stake must stay slashable at least until the epoch it was seated for has ended.
    "unbonding_epochs": (1, 1_000_000),
    "evidence_max_age": (1, 1_000_000),
    "max_block_txs": (0, 10_000),
    "saturation_k": (0, 100_000),
    "max_leverage": (0, 1_000_000),
    "liquid_delegation": (0, 1),
    "epoch_rewards": (0, 1),
    "late_precommit_heights": (2, 100_000),
    "sigma_of_supply": (0, 1),
    "randao": (0, 1),
}
_PPM_FIELDS = {name for name in (f.name for f in fields(Params)) if name.endswith("_ppm")}


@dataclass(frozen=True)
class Delegation:
    account: bytes  # delegator's public key
    amount: int


@dataclass(frozen=True)
class GenesisValidator:
    """A stake pool at genesis: the owner's key, its own pledge, and delegations.

    `public_key` is the owner's (cold) key: the pool's address, its funds.
    `signing_key`, when set, is the separate (hot) key its votes are signed
    with; unset, the owner's key signs too.
    """

    name: str
    public_key: bytes
    pledge: int
    fixed_cost: int = 0
    margin_ppm: int = 0
    delegations: tuple[Delegation, ...] = ()
    # members' rewards stay in the pool (each share's value rises) instead of being paid out
    compounding: bool = False
    signing_key: bytes = b""
    # RANDAO chains: H^D of the onion secret of the key that signs (node.core.randao); empty: none
    randao_commitment: bytes = b""

    @property
    def address(self) -> bytes:
        return address_of(self.public_key)

    @property
    def signing_public_key(self) -> bytes:
        return self.signing_key or self.public_key

    @property
    def stake(self) -> int:
        return self.pledge + sum(d.amount for d in self.delegations)


@dataclass(frozen=True)
class GenesisAccount:
    public_key: bytes
    balance: int

    @property
    def address(self) -> bytes:
        return address_of(self.public_key)


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    params: Params
    validators: tuple[GenesisValidator, ...]
    accounts: tuple[GenesisAccount, ...] = field(default=())


# ------------------------------------------------------------------ parsing

_read = FieldReader(GenesisError)
_int, _table, _required, _flag, _list, _bad = (
    _read.integer,
    _read.table,
    _read.required,
    _read.flag,
    _read.tables,
    _read.expected,
)


def _key(value: Any, where: str) -> bytes:
    try:
        key = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise GenesisError(f"{where}: expected a hex Ed25519 public key") from None
    if len(key) != PUBLIC_KEY_LEN:
        raise GenesisError(f"{where}: expected {PUBLIC_KEY_LEN} bytes, got {len(key)}")
    return key


def parse_params(raw: Any) -> Params:
    table = _table(raw, "params", {f.name for f in fields(Params)})
    values = {}
    for name, value in table.items():
        lo, hi = _PARAM_LIMITS.get(name, (0, 1 << 40))
        if name in _PPM_FIELDS:
            lo, hi = 0, PPM
        values[name] = _int(value, f"params.{name}", lo, hi)
    return Params(**values)


def _parse_validator(raw: Any, where: str) -> GenesisValidator:
    allowed = {
        "name",
        "public_key",
        "signing_key",
        "pledge",
        "fixed_cost",
        "margin_ppm",
        "delegations",
        "compounding",
        "randao_commitment",
    }
    table = _table(raw, where, allowed)
    name = _required(table, "name", where, lambda v, w: v if isinstance(v, str) and v else _bad(w, "a name"))
    delegations = []
    for i, item in enumerate(_list(table.get("delegations", []), f"{where}.delegations")):
        dwhere = f"{where}.delegations[{i}]"
        dtable = _table(item, dwhere, {"account", "amount"})
        delegations.append(
            Delegation(
                _required(dtable, "account", dwhere, _key),
                _required(dtable, "amount", dwhere, lambda v, w: _int(v, w, 1)),
            )
        )
    return GenesisValidator(
        name=name,
        public_key=_required(table, "public_key", where, _key),
        pledge=_required(table, "pledge", where, lambda v, w: _int(v, w, 1)),
        fixed_cost=_int(table.get("fixed_cost", 0), f"{where}.fixed_cost"),
        margin_ppm=_int(table.get("margin_ppm", 0), f"{where}.margin_ppm", 0, PPM),
        delegations=tuple(delegations),
        compounding=_flag(table.get("compounding", False), f"{where}.compounding"),
        signing_key=_key(table["signing_key"], f"{where}.signing_key") if "signing_key" in table else b"",
        randao_commitment=_commitment(table.get("randao_commitment"), f"{where}.randao_commitment"),
    )


def _commitment(value: Any, where: str) -> bytes:
    """A RANDAO commitment: 32 bytes in hex, or absent."""
    if value is None:
        return b""
    try:
        commitment = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise GenesisError(f"{where}: expected 32 bytes in hex") from None
    if len(commitment) != 32:
        raise GenesisError(f"{where}: expected 32 bytes, got {len(commitment)}")
    return commitment


def parse_genesis(raw: Mapping[str, Any]) -> Genesis:
    """Build a Genesis from a decoded TOML document, refusing anything doubtful."""
    table = _table(raw, "genesis", {"chain_id", "genesis_time_ms", "params", "validators", "accounts"})
    chain_id = _required(
        table,
        "chain_id",
        "genesis",
        lambda v, w: v if isinstance(v, str) and 0 < len(v) <= 64 else _bad(w, "1-64 characters"),
    )
    if not all(c.isalnum() or c in "-_." for c in chain_id):
        raise GenesisError("genesis.chain_id: only letters, digits, '-', '_' and '.' are allowed")
    raw_validators = table.get("validators")
    if not isinstance(raw_validators, list) or not raw_validators:
        raise GenesisError("genesis.validators: at least one [[validators]] entry is required")
    validators = tuple(_parse_validator(v, f"validators[{i}]") for i, v in enumerate(raw_validators))
    _check_unique([v.name for v in validators], "validators", "name")
    _check_unique([v.public_key.hex() for v in validators], "validators", "public_key")
    accounts = tuple(
        GenesisAccount(
            _required(
                _table(a, f"accounts[{i}]", {"public_key", "balance"}), "public_key", f"accounts[{i}]", _key
            ),
            _int(a.get("balance", 0), f"accounts[{i}].balance"),
        )
        for i, a in enumerate(_list(table.get("accounts", []), "genesis.accounts"))
    )
    _check_unique([a.public_key.hex() for a in accounts], "accounts", "public_key")
    _check_signing_keys(validators, accounts)
    params = parse_params(table.get("params", {}))
    if params.liquid_delegation:
        _check_liquid(validators)
    return Genesis(
        chain_id=chain_id,
        genesis_time_ms=_int(table.get("genesis_time_ms", 0), "genesis.genesis_time_ms"),
        params=params,
        validators=validators,
        accounts=accounts,
    )


def _check_liquid(validators: tuple[GenesisValidator, ...]) -> None:
    """With liquid delegation an account is labelled with one pool, and there is no pooled stake to compound."""
    seen: dict[bytes, str] = {}
    for i, validator in enumerate(validators):
        if validator.compounding:
            raise GenesisError(f"validators[{i}].compounding: liquid delegation pays member rewards out")
        for j, delegation in enumerate(validator.delegations):
            if delegation.account in seen:
                raise GenesisError(
                    f"validators[{i}].delegations[{j}]: with liquid delegation an account delegates to one "
                    f"pool (it already does to {seen[delegation.account]})"
                )
            seen[delegation.account] = validator.name


def _check_signing_keys(
    validators: tuple[GenesisValidator, ...], accounts: tuple[GenesisAccount, ...]
) -> None:
    """A separate signing key is a hot key that holds nothing: no account, delegation or other pool may use it."""
    holders = {v.public_key for v in validators} | {a.public_key for a in accounts}
    holders |= {d.account for v in validators for d in v.delegations}
    signing: set[bytes] = set()
    for i, validator in enumerate(validators):
        key = validator.signing_key
        if key in (b"", validator.public_key):
            continue
        if key in holders:
            raise GenesisError(
                f"validators[{i}].signing_key: is also an owner, account or delegator key; "
                "a signing key must hold no funds"
            )
        if key in signing:
            raise GenesisError(f"validators[{i}].signing_key: duplicate {key.hex()[:16]}")
        signing.add(key)


def _check_unique(values: list[str], where: str, name: str) -> None:
    _read.unique(values, where, name, show=lambda value: value[:16])


def load_genesis(path: Path | str) -> Genesis:
    """Read and validate a genesis TOML file; GenesisError (one line) on any problem."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise GenesisError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise GenesisError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise GenesisError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_genesis(raw)
    except GenesisError as exc:
        raise GenesisError(f"{path}: {exc}") from None


def genesis_to_toml(genesis: Genesis) -> str:
    doc: dict[str, Any] = {
        "chain_id": genesis.chain_id,
        "genesis_time_ms": genesis.genesis_time_ms,
        "params": {f.name: getattr(genesis.params, f.name) for f in fields(Params)},
        "validators": [
            {
                "name": v.name,
                "public_key": v.public_key.hex(),
                **({"signing_key": v.signing_key.hex()} if v.signing_key else {}),
                "pledge": v.pledge,
                "fixed_cost": v.fixed_cost,
                "margin_ppm": v.margin_ppm,
                "delegations": [{"account": d.account.hex(), "amount": d.amount} for d in v.delegations],
                **({"compounding": True} if v.compounding else {}),
                **({"randao_commitment": v.randao_commitment.hex()} if v.randao_commitment else {}),
            }
            for v in genesis.validators
        ],
        "accounts": [{"public_key": a.public_key.hex(), "balance": a.balance} for a in genesis.accounts],
    }
    return tomli_w.dumps(doc)


def validator_names(count: int) -> list[str]:
    """v1, v2, ...: the names every testnet, simulation and compose file gives its validators."""
    return [f"v{i}" for i in range(1, count + 1)]


def make_genesis(
    chain_id: str,
    keys: Mapping[str, Keypair],
    *,
    stakes: Mapping[str, int] | None = None,
    params: Params | None = None,
    genesis_time_ms: int = 0,
    signing_keys: Mapping[str, Keypair] | None = None,
) -> Genesis:
    """A genesis with one pool per named (owner) key (pledge = its stake, default 1000).

    `signing_keys`, for the names it has, separates the key that signs from the owner's. On a RANDAO
    chain each pool commits to the onion of the key that signs for it (node.core.randao).
    """
    params = params or Params()
    validators = tuple(
        GenesisValidator(
            name=name,
            public_key=kp.public,
            pledge=(stakes or {}).get(name, 1000),
            margin_ppm=50_000,
            signing_key=signing.public if (signing := (signing_keys or {}).get(name)) else b"",
            randao_commitment=commitment((signing or kp).seed) if params.randao else b"",
        )
        for name, kp in keys.items()
    )
    return Genesis(chain_id, genesis_time_ms, params, validators)
