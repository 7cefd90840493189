"""Genesis TOML: valid files round-trip; every bad field is refused with one line naming it."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.genesis import (
    PPM,
    Delegation,
    Genesis,
    GenesisAccount,
    GenesisError,
    GenesisValidator,
    Params,
    genesis_to_toml,
    load_genesis,
    parse_genesis,
)
from node.core.keys import Keypair
from tests.support.chain import KEYS, genesis

DELEGATOR = Keypair.deterministic("t/delegator")


def full_genesis() -> Genesis:
    """The test genesis with a delegation and an account, so every table is exercised."""
    base = genesis(Params(committee_size=3, epoch_length=5, commit_wait_ms=100))
    first = base.validators[0]
    validators = (
        GenesisValidator(
            first.name,
            first.public_key,
            first.pledge,
            fixed_cost=7,
            margin_ppm=PPM,
            delegations=(Delegation(DELEGATOR.public, 250),),
            compounding=True,
        ),
        *base.validators[1:],
    )
    accounts = (GenesisAccount(DELEGATOR.public, 5000),)
    return Genesis(base.chain_id, 1_700_000_000_000, base.params, validators, accounts)


def raw_genesis() -> dict[str, Any]:
    return tomllib.loads(genesis_to_toml(full_genesis()))


def refusal(raw: Any) -> str:
    with pytest.raises(GenesisError) as info:
        parse_genesis(raw)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
    return message


# --------------------------------------------------------------- round trip


def test_a_valid_genesis_round_trips_through_toml() -> None:
    original = full_genesis()
    assert parse_genesis(tomllib.loads(genesis_to_toml(original))) == original


def test_a_reward_mode_that_is_not_a_boolean_is_refused_naming_the_field() -> None:
    raw = raw_genesis()
    raw["validators"][0]["compounding"] = "yes"
    assert refusal(raw) == "validators[0].compounding: expected true or false"
    raw = raw_genesis()
    raw["params"]["max_leverage"] = -1
    assert "params.max_leverage" in refusal(raw)


def test_load_genesis_reads_what_genesis_to_toml_wrote(tmp_path: Path) -> None:
    path = tmp_path / "genesis.toml"
    path.write_text(genesis_to_toml(full_genesis()))
    assert load_genesis(path) == full_genesis()
    assert load_genesis(str(path)) == full_genesis()


def test_omitted_optional_fields_take_their_defaults() -> None:
    raw = {
        "chain_id": "c",
        "validators": [{"name": "a", "public_key": KEYS["alice"].public.hex(), "pledge": 1}],
    }
    parsed = parse_genesis(raw)
    assert parsed.params == Params()
    assert parsed.genesis_time_ms == 0
    assert parsed.accounts == ()
    assert parsed.validators[0].delegations == ()


param_values = st.fixed_dictionaries(
    {},
    optional={
        "committee_size": st.integers(1, 100_000),
        "epoch_length": st.integers(1, 1_000_000),
        "proposer_reward_ppm": st.integers(0, PPM),
        "slash_fraction_double_sign_ppm": st.integers(0, PPM),
        "timeout_propose_ms": st.integers(0, 1 << 40),
        "max_block_txs": st.integers(0, 10_000),
        "jail_epochs": st.integers(0, 1_000_000),
        "saturation_k": st.integers(0, 100_000),
        "pledge_influence_ppm": st.integers(0, PPM),
    },
)


@settings(max_examples=40)
@given(
    param_values,
    st.text(st.sampled_from("abcXYZ019-_."), min_size=1, max_size=64),
    st.lists(st.integers(1, 1 << 62), min_size=1, max_size=4),
)
def test_random_valid_genesis_round_trips(params: dict[str, int], chain_id: str, pledges: list[int]) -> None:
    validators = tuple(
        GenesisValidator(f"v{i}", Keypair.deterministic(f"t/v{i}").public, pledge)
        for i, pledge in enumerate(pledges)
    )
    original = Genesis(chain_id, 0, Params(**params), validators)
    assert parse_genesis(tomllib.loads(genesis_to_toml(original))) == original


# ------------------------------------------------------------ bad fields

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """Set a dotted path (list indices as numbers) in the raw document."""

    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return mutate


SHORT_KEY = "ab" * 16
CASES: list[tuple[str, Mutation, str]] = [
    ("missing-chain-id", _delete("chain_id"), "genesis.chain_id"),
    ("empty-chain-id", _set("chain_id", ""), "genesis.chain_id"),
    ("long-chain-id", _set("chain_id", "c" * 65), "genesis.chain_id"),
    ("chain-id-with-slash", _set("chain_id", "a/b"), "genesis.chain_id"),
    ("chain-id-not-text", _set("chain_id", 5), "genesis.chain_id"),
    ("bad-key-hex", _set("validators.0.public_key", "zz" * 32), "validators[0].public_key"),
    ("short-key", _set("validators.2.public_key", SHORT_KEY), "validators[2].public_key"),
    ("key-not-text", _set("validators.0.public_key", 12), "validators[0].public_key"),
    ("missing-key", _delete("validators.1.public_key"), "validators[1].public_key"),
    ("zero-pledge", _set("validators.1.pledge", 0), "validators[1].pledge"),
    ("negative-pledge", _set("validators.1.pledge", -5), "validators[1].pledge"),
    ("float-pledge", _set("validators.1.pledge", 1.5), "validators[1].pledge"),
    ("bool-pledge", _set("validators.1.pledge", True), "validators[1].pledge"),
    ("missing-pledge", _delete("validators.3.pledge"), "validators[3].pledge"),
    ("missing-name", _delete("validators.0.name"), "validators[0].name"),
    ("empty-name", _set("validators.0.name", ""), "validators[0].name"),
    ("unknown-top-field", _set("colour", "blue"), "genesis.colour"),
    ("unknown-validator-field", _set("validators.0.colour", "blue"), "validators[0].colour"),
    ("unknown-param", _set("params.speed", 3), "params.speed"),
    ("unknown-delegation-field", _set("validators.0.delegations.0.note", "x"), "delegations[0].note"),
    ("duplicate-name", _set("validators.2.name", "alice"), "validators[2].name"),
    (
        "duplicate-key",
        _set("validators.3.public_key", KEYS["alice"].public.hex()),
        "validators[3].public_key",
    ),
    ("param-ppm-over-million", _set("params.proposer_reward_ppm", PPM + 1), "params.proposer_reward_ppm"),
    (
        "slash-ppm-over-million",
        _set("params.slash_fraction_downtime_ppm", PPM + 1),
        "slash_fraction_downtime_ppm",
    ),
    ("margin-ppm-over-million", _set("validators.0.margin_ppm", PPM + 1), "validators[0].margin_ppm"),
    ("committee-size-zero", _set("params.committee_size", 0), "params.committee_size"),
    ("epoch-length-zero", _set("params.epoch_length", 0), "params.epoch_length"),
    ("unbonding-epochs-zero", _set("params.unbonding_epochs", 0), "params.unbonding_epochs"),
    ("negative-timeout", _set("params.timeout_propose_ms", -1), "params.timeout_propose_ms"),
    ("float-timeout", _set("params.timeout_prevote_ms", 0.5), "params.timeout_prevote_ms"),
    ("params-not-table", _set("params", 3), "params"),
    ("no-validators", _set("validators", []), "genesis.validators"),
    ("validators-not-list", _set("validators", "alice"), "genesis.validators"),
    ("validator-not-table", _set("validators.0", "alice"), "validators[0]"),
    ("zero-delegation", _set("validators.0.delegations.0.amount", 0), "delegations[0].amount"),
    ("bad-delegation-key", _set("validators.0.delegations.0.account", "00"), "delegations[0].account"),
    ("negative-balance", _set("accounts.0.balance", -1), "accounts[0].balance"),
    ("bad-account-key", _set("accounts.0.public_key", "xyz"), "accounts[0].public_key"),
    ("negative-genesis-time", _set("genesis_time_ms", -1), "genesis.genesis_time_ms"),
    ("negative-fixed-cost", _set("validators.0.fixed_cost", -1), "validators[0].fixed_cost"),
]


@pytest.mark.parametrize(("mutate", "field"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_each_bad_field_is_refused_with_one_line_naming_it(mutate: Mutation, field: str) -> None:
    raw = raw_genesis()
    mutate(raw)
    assert field in refusal(raw)


def test_a_duplicate_account_is_refused() -> None:
    raw = raw_genesis()
    raw["accounts"].append(dict(raw["accounts"][0]))
    assert "accounts[1].public_key" in refusal(raw)


def test_reward_sharing_is_off_by_default_and_bounded() -> None:
    """k = 0 and a0 = 0 are today's rewards; k past 100,000 pools or a0 past 1 is refused by name."""
    assert (Params().saturation_k, Params().pledge_influence_ppm) == (0, 0)
    raw = raw_genesis()
    raw["params"]["saturation_k"] = 100_001
    assert "params.saturation_k" in refusal(raw)
    raw = raw_genesis()
    raw["params"]["pledge_influence_ppm"] = PPM + 1
    assert "params.pledge_influence_ppm" in refusal(raw)


def test_every_param_is_bounded_and_named_when_out_of_range() -> None:
    for f in fields(Params):
        raw = raw_genesis()
        raw["params"][f.name] = -1
        assert f"params.{f.name}" in refusal(raw)


def test_a_top_level_that_is_not_a_table_is_refused() -> None:
    assert "genesis" in refusal(["chain_id"])


# ---------------------------------------------------------------- files


def _load_refusal(path: Path) -> str:
    with pytest.raises(GenesisError) as info:
        load_genesis(path)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    return message


def test_a_missing_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    message = _load_refusal(path)
    assert str(path) in message and "cannot read" in message


def test_a_directory_is_refused_naming_the_path(tmp_path: Path) -> None:
    assert str(tmp_path) in _load_refusal(tmp_path)


@pytest.mark.parametrize(
    "text",
    ["chain_id = \n", "[validators\n", 'chain_id = "a"\nchain_id = "b"\n', "{ json = true }"],
    ids=["no-value", "unclosed-table", "duplicate-key", "json"],
)
def test_a_non_toml_file_is_refused_as_not_valid_toml(tmp_path: Path, text: str) -> None:
    path = tmp_path / "genesis.toml"
    path.write_text(text)
    message = _load_refusal(path)
    assert str(path) in message and "not valid TOML" in message


def test_a_file_error_names_the_field_after_the_path(tmp_path: Path) -> None:
    raw = genesis_to_toml(full_genesis()).replace("committee_size = 3", "committee_size = 0")
    path = tmp_path / "genesis.toml"
    path.write_text(raw)
    message = _load_refusal(path)
    assert message.startswith(f"{path}: ") and "params.committee_size" in message


# ------------------------------------------- once bugs, now fixed


def test_delegations_that_are_not_a_list_are_refused() -> None:
    raw = raw_genesis()
    raw["validators"][0]["delegations"] = 5
    assert "validators[0].delegations" in refusal(raw)


def test_accounts_that_are_not_a_list_are_refused() -> None:
    raw = raw_genesis()
    raw["accounts"] = 5
    assert "accounts" in refusal(raw)


def test_a_binary_file_is_refused_as_a_genesis_error(tmp_path: Path) -> None:
    path = tmp_path / "genesis.toml"
    path.write_bytes(b"\xff\xfe\x00\x01 not text")
    assert str(path) in _load_refusal(path)


def test_an_unknown_field_with_a_newline_in_its_name_is_reported_on_one_line() -> None:
    raw = tomllib.loads(genesis_to_toml(full_genesis()) + '"evil\\nkey" = 1\n')
    refusal(raw)


def test_a_duplicate_name_with_a_newline_is_reported_on_one_line() -> None:
    raw = raw_genesis()
    raw["validators"][0]["name"] = "x\ny"
    raw["validators"][1]["name"] = "x\ny"
    refusal(raw)
