"""The signing record as a file: exported from one home, imported into another, it keeps the key safe.

A key moved to a new machine, or a store rebuilt from nothing, must refuse
what the key signed before; `posnet keys export-protection` and
`import-protection` carry the record across (EIP-3076's idea).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from network.cli import cli
from node.core.genesis import genesis_to_toml, make_genesis
from node.core.keys import Keypair
from node.core.messages import Kind, Vote
from node.core.protection import ProtectionError, export_document, merged, parse_document
from node.core.safety import SignMark, Step
from node.core.signer import GuardedSigner
from node.runtime.store import Store

CHAIN_ID = "posnet-protection"
KEY = Keypair.deterministic(f"{CHAIN_ID}/v1")
OTHER = Keypair.deterministic(f"{CHAIN_ID}/v2")
BLOCK = b"\x0c" * 32


def write_genesis(root: Path, chain_id: str = CHAIN_ID) -> Path:
    path = root / f"{chain_id}.toml"
    path.write_text(genesis_to_toml(make_genesis(chain_id, {"v1": KEY, "v2": OTHER})))
    return path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


marks = st.builds(
    SignMark,
    st.integers(0, 10**6),
    st.integers(0, 100),
    st.sampled_from(list(Step)),
    st.one_of(st.none(), st.binary(min_size=32, max_size=32)),
)


@given(st.dictionaries(st.binary(min_size=20, max_size=20), marks, max_size=5))
def test_a_document_gives_back_the_marks_it_was_made_of(record: dict[bytes, SignMark]) -> None:
    doc = json.loads(json.dumps(export_document(CHAIN_ID, record)))
    assert parse_document(doc, CHAIN_ID) == record


@given(marks, marks)
def test_an_import_only_ever_moves_a_mark_forward(kept: SignMark, imported: SignMark) -> None:
    result = merged(kept, imported)
    key = (imported.height, imported.round, int(imported.step))
    assert (result is not None) == (key > (kept.height, kept.round, int(kept.step)))


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({}, "no metadata"),
        ({"metadata": {"format": "other", "version": 1, "chain_id": CHAIN_ID}, "data": []}, "format"),
        ({"metadata": {"format": "posnet-signing-protection", "version": 1, "chain_id": "x"}}, "chain_id"),
        (
            {
                "metadata": {"format": "posnet-signing-protection", "version": 1, "chain_id": CHAIN_ID},
                "data": [{"validator": "zz", "height": 1, "round": 0, "step": "prevote", "block_id": None}],
            },
            "data[0]",
        ),
        (
            {
                "metadata": {"format": "posnet-signing-protection", "version": 1, "chain_id": CHAIN_ID},
                "data": [
                    {"validator": "00" * 20, "height": -1, "round": 0, "step": "prevote", "block_id": None}
                ],
            },
            "data[0]: height",
        ),
    ],
)
def test_a_bad_document_is_refused_naming_what_is_wrong(doc: object, problem: str) -> None:
    with pytest.raises(ProtectionError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_document(doc, CHAIN_ID)


def test_export_then_import_carries_the_record_and_the_new_home_refuses_a_conflict(tmp_path: Path) -> None:
    genesis = write_genesis(tmp_path)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    with Store(old / "node.sqlite3") as store:
        signer = GuardedSigner(CHAIN_ID, KEY, store)
        assert signer.sign(Vote(Kind.PREVOTE, 7, 2, BLOCK, KEY.address)) is not None
    out = tmp_path / "protection.json"
    assert (
        run("keys", "export-protection", "--home", str(old), "--genesis", str(genesis), "--out", str(out))[0]
        == 0
    )
    code, output = run("keys", "import-protection", str(out), "--home", str(new), "--genesis", str(genesis))
    assert code == 0 and "1 of 1" in output
    with Store(new / "node.sqlite3") as store:
        assert store.last_signed(KEY.address) == SignMark(7, 2, Step.PREVOTE, BLOCK)
        signer = GuardedSigner(CHAIN_ID, KEY, store)
        assert signer.sign(Vote(Kind.PREVOTE, 7, 2, None, KEY.address)) is None  # nil beside our block
        assert signer.sign(Vote(Kind.PREVOTE, 7, 1, None, KEY.address)) is None  # behind
        assert signer.sign(Vote(Kind.PRECOMMIT, 7, 2, BLOCK, KEY.address)) is not None


def test_importing_an_older_file_never_lowers_the_record(tmp_path: Path) -> None:
    genesis = write_genesis(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    with Store(home / "node.sqlite3") as store:
        store.record_signing(KEY.address, SignMark(9, 0, Step.PRECOMMIT, BLOCK))
    old = export_document(CHAIN_ID, {KEY.address: SignMark(3, 0, Step.PREVOTE, None)})
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    code, output = run("keys", "import-protection", str(path), "--home", str(home), "--genesis", str(genesis))
    assert code == 0 and "0 of 1" in output
    with Store(home / "node.sqlite3") as store:
        assert store.last_signed(KEY.address) == SignMark(9, 0, Step.PRECOMMIT, BLOCK)


def test_a_file_of_another_chain_is_refused_in_one_line(tmp_path: Path) -> None:
    other = export_document("another-chain", {KEY.address: SignMark(3, 0, Step.PREVOTE, None)})
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    code, output = run(
        "keys",
        "import-protection",
        str(path),
        "--home",
        str(tmp_path / "h"),
        "--genesis",
        str(write_genesis(tmp_path)),
    )
    assert code == 2 and "chain_id" in output and len(output.strip().splitlines()) == 1


def test_exporting_from_a_home_without_a_store_says_so(tmp_path: Path) -> None:
    code, output = run(
        "keys", "export-protection", "--home", str(tmp_path), "--genesis", str(write_genesis(tmp_path))
    )
    assert code == 2 and "no store here" in output
