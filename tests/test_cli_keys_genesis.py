"""`posnet keys` and `posnet genesis`: files with the right modes, and one-line errors with exit code 2.

The commands are driven through click's runner (the real command objects,
in-process); one test runs the real `python -m network.cli` to prove a bad
genesis reaches the terminal as one line and no traceback.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from network.cli import cli
from node.core.genesis import load_genesis
from node.core.keys import load_key_file

REPO_ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result: Result, *needles: str) -> None:
    """Exit 2, exactly one non-empty line on stderr naming what is wrong, and no Python traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def two_keys(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "v1.json", tmp_path / "v2.json"]
    for i, path in enumerate(paths, 1):
        assert run("keys", "generate", "--name", f"v{i}", "--out", path).exit_code == 0
    return paths


# ------------------------------------------------------------------ keys


def test_keys_generate_writes_owner_only_file(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "k.json"
    result = run("keys", "generate", "--name", "v1", "--out", out)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    name, keypair = load_key_file(out)
    assert name == "v1"
    assert keypair.address.hex() in result.output


def test_keys_generate_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    run("keys", "generate", "--name", "v1", "--out", out)
    before = out.read_bytes()
    assert_one_line_error(run("keys", "generate", "--name", "v1", "--out", out), str(out), "--force")
    assert out.read_bytes() == before
    assert run("keys", "generate", "--name", "v1", "--out", out, "--force").exit_code == 0
    assert out.read_bytes() != before
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_keys_show_prints_public_parts_only(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    run("keys", "generate", "--name", "v7", "--out", out)
    _, keypair = load_key_file(out)
    result = run("keys", "show", out)
    assert result.exit_code == 0
    assert "v7" in result.output
    assert keypair.address.hex() in result.output
    assert keypair.public.hex() in result.output
    assert keypair.seed.hex() not in result.output


@pytest.mark.parametrize(
    "content", ["not json", '{"name": "v1"}', '{"name": "v1", "seed": "zz", "public": ""}']
)
def test_keys_show_bad_file_is_one_line(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert_one_line_error(run("keys", "show", path), str(path))


def test_keys_show_missing_file_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(run("keys", "show", tmp_path / "nope.json"), "nope.json")


# ------------------------------------------------------------------ genesis create


def test_genesis_create_then_check(tmp_path: Path, two_keys: list[Path]) -> None:
    out = tmp_path / "genesis.toml"
    result = run(
        "genesis", "create", "--out", out, "--key", two_keys[0], "--key", two_keys[1],
        "--chain-id", "lab-1", "--stake", "500", "--slot-ms", "250",
        "--committee-size", "7", "--epoch-length", "5", "--param", "jail_epochs=3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = load_genesis(out)
    assert doc.chain_id == "lab-1"
    assert [v.name for v in doc.validators] == ["v1", "v2"]
    assert [v.stake for v in doc.validators] == [500, 500]
    assert doc.params.commit_wait_ms == 250
    assert doc.params.committee_size == 7
    assert doc.params.epoch_length == 5
    assert doc.params.jail_epochs == 3
    checked = run("genesis", "check", out)
    assert checked.exit_code == 0
    assert "lab-1" in checked.output and "2 validators" in checked.output
    assert "slot 250 ms" in checked.output and "jail_epochs=3" in checked.output


def test_genesis_create_defaults_to_fast(tmp_path: Path, two_keys: list[Path]) -> None:
    out = tmp_path / "g.toml"
    assert run("genesis", "create", "--out", out, "--key", two_keys[0]).exit_code == 0
    assert load_genesis(out).params.commit_wait_ms == 0
    assert "fast" in run("genesis", "check", out).output


def test_genesis_create_refuses_to_overwrite(tmp_path: Path, two_keys: list[Path]) -> None:
    out = tmp_path / "g.toml"
    out.write_text("keep me")
    assert_one_line_error(run("genesis", "create", "--out", out, "--key", two_keys[0]), "--force")
    assert out.read_text() == "keep me"
    assert run("genesis", "create", "--out", out, "--key", two_keys[0], "--force").exit_code == 0


@pytest.mark.parametrize(
    ("param", "needle"),
    [
        ("nonsense=1", "params.nonsense"),
        ("committee_size=0", "params.committee_size"),
        ("slash_fraction_double_sign_ppm=2000000", "params.slash_fraction_double_sign_ppm"),
        ("jail_epochs=three", "params.jail_epochs"),
        ("jail_epochs", "NAME=VALUE"),
    ],
)
def test_genesis_create_bad_param_is_one_line(
    tmp_path: Path, two_keys: list[Path], param: str, needle: str
) -> None:
    out = tmp_path / "g.toml"
    result = run("genesis", "create", "--out", out, "--key", two_keys[0], "--param", param)
    assert_one_line_error(result, needle)
    assert not out.exists()


def test_genesis_create_bad_chain_id_is_one_line(tmp_path: Path, two_keys: list[Path]) -> None:
    result = run("genesis", "create", "--out", tmp_path / "g.toml", "--key", two_keys[0], "--chain-id", "a b")
    assert_one_line_error(result, "chain_id")


def test_genesis_create_rejects_duplicate_validator_names(tmp_path: Path, two_keys: list[Path]) -> None:
    result = run(
        "genesis", "create", "--out", tmp_path / "g.toml", "--key", two_keys[0], "--key", two_keys[0]
    )
    assert_one_line_error(result, "'v1'")


def test_genesis_create_needs_a_key(tmp_path: Path) -> None:
    result = run("genesis", "create", "--out", tmp_path / "g.toml")
    assert result.exit_code == 2
    assert "--key" in result.stderr


# ------------------------------------------------------------------ genesis check


@pytest.fixture
def good_genesis(tmp_path: Path, two_keys: list[Path]) -> Path:
    out = tmp_path / "good.toml"
    assert run("genesis", "create", "--out", out, "--key", two_keys[0], "--key", two_keys[1]).exit_code == 0
    return out


def _edit(source: Path, old: str, new: str, target: Path) -> Path:
    text = source.read_text()
    assert old in text, old
    target.write_text(text.replace(old, new, 1))
    return target


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("committee_size = 128", 'committee_size = "big"', "params.committee_size"),
        ("epoch_length = 10", "epoch_length = 0", "params.epoch_length"),
        ('chain_id = "posnet-local"', 'chain_id = "no spaces allowed"', "genesis.chain_id"),
        ("pledge = 1000", "pledge = 0", "validators[0].pledge"),
        ("margin_ppm = 50000", "margin_ppm = 5000000", "validators[0].margin_ppm"),
        ('public_key = "', 'public_key = "zz', "validators[0].public_key"),
        ('name = "v2"', 'name = "v1"', "validators[1].name"),
        ("jail_epochs = 2", "jail_epochs = 2\nsurprise = 1", "params.surprise"),
        ('chain_id = "posnet-local"', "chain_id = ", "not valid TOML"),
    ],
)
def test_genesis_check_bad_field_is_one_line(
    tmp_path: Path, good_genesis: Path, old: str, new: str, needle: str
) -> None:
    bad = _edit(good_genesis, old, new, tmp_path / "bad.toml")
    assert_one_line_error(run("genesis", "check", bad), needle, str(bad))


def test_genesis_check_missing_validators(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('chain_id = "x"\n')
    assert_one_line_error(run("genesis", "check", bad), "genesis.validators")


def test_genesis_check_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(run("genesis", "check", tmp_path / "absent.toml"), "absent.toml", "cannot read")


def test_created_genesis_is_plain_toml(good_genesis: Path) -> None:
    raw = tomllib.loads(good_genesis.read_text())
    assert raw["params"]["commit_wait_ms"] == 0
    assert len(raw["validators"]) == 2


@pytest.mark.integration
def test_bad_genesis_in_a_real_process_prints_one_line(tmp_path: Path, good_genesis: Path) -> None:
    """The same through the interpreter, as a user runs it: stderr is one line, exit code 2."""
    bad = _edit(good_genesis, "epoch_length = 10", "epoch_length = -1", tmp_path / "bad.toml")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "network.cli", "genesis", "check", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0
    assert "params.epoch_length" in proc.stderr
