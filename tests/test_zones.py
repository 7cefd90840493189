"""Geography (issue 27 item 4): zones files, and what they do to the simulator's network.

A zones file is read by both the simulator and the testnet's relay, so its
mistakes are caught once, here, each as one line that names the problem.
The simulator's part: a copy never arrives sooner than its zones' one-way
latency (a property over random matrices and traffic), two zones far apart
slow finality by about their round trip, and a run stays a pure function
of its seed and its file.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from network.cli import cli
from network.sim.config import SimConfig, replay_command
from network.sim.net import SimNetwork
from network.sim.plans import FaultPlan
from network.sim.runner import run_simulation
from network.sim.zones import Zones, ZonesError, load_zones

REPO = Path(__file__).resolve().parent.parent
FIVE_REGIONS = REPO / "scenarios" / "zones" / "five-regions.toml"

TWO_FAR = """
[rtt_ms]
near = { near = 0, far = 200 }
far = { far = 0 }

[assign]
rule = "round-robin"
"""

ONE_PLACE = """
[rtt_ms]
here = { here = 0 }

[assign]
rule = "round-robin"
"""


def _names(n: int) -> list[str]:
    return [f"v{i}" for i in range(1, n + 1)]


# ------------------------------------------------------------------ the file


def test_the_shipped_five_regions_parse_as_halved_round_trips() -> None:
    zones = load_zones(FIVE_REGIONS.read_text(), str(FIVE_REGIONS))
    assert zones.names == ("us-east", "us-west", "eu-west", "ap-southeast", "sa-east")
    assert zones.one_way_ms("us-east", "eu-west") == 40  # 80.5 ms round trip
    assert zones.one_way_ms("ap-southeast", "sa-east") == zones.one_way_ms("sa-east", "ap-southeast") == 164
    assert zones.one_way_ms("us-west", "us-west") == 1
    assert zones.jitter_ms == 5
    placed = zones.assign(_names(7))
    assert placed["v1"] == placed["v6"] == "us-east" and placed["v5"] == "sa-east"


def test_weights_place_contiguous_blocks_and_named_validators_win() -> None:
    zones = load_zones(
        """
        [rtt_ms]
        a = { a = 2, b = 10 }
        b = { b = 2 }
        [assign]
        rule = "weights"
        weights = { a = 3, b = 1 }
        validators = { v1 = "b" }
        """
    )
    placed = zones.assign(_names(8))
    assert [placed[name] for name in _names(8)] == ["b", "a", "a", "a", "a", "a", "b", "b"]
    assert zones.one_way_ms("a", "b") == 5 and zones.one_way_ms("a", "a") == 1


def test_named_validators_alone_must_cover_everyone() -> None:
    zones = load_zones('[rtt_ms]\na = {a = 0}\n[assign]\nvalidators = { v1 = "a" }\n')
    assert zones.assign(["v1"]) == {"v1": "a"}
    with pytest.raises(ZonesError, match="'v2' has no zone"):
        zones.assign(["v1", "v2"])


BAD_FILES = [
    ("rtt_ms = [", "not valid TOML"),
    ('[assign]\nrule = "round-robin"\n', "rtt_ms: expected a table"),
    ('[rtt_ms]\na = { a = 0, mars = 3 }\n[assign]\nrule = "round-robin"\n', "unknown zone 'mars'"),
    ('[rtt_ms]\na = { b = 10 }\nb = { a = 12 }\n[assign]\nrule = "round-robin"\n', "asymmetric"),
    ('[rtt_ms]\na = { b = -10 }\nb = {}\n[assign]\nrule = "round-robin"\n', "negative round-trip time"),
    ('[rtt_ms]\na = { a = 0 }\nb = {}\n[assign]\nrule = "round-robin"\n', "no round-trip time between"),
    ('[rtt_ms]\na = { a = "fast" }\n[assign]\nrule = "round-robin"\n', "expected a round-trip time"),
    ('[rtt_ms]\na = { a = 0 }\n[assign]\nrule = "nearest"\n', "not one of round-robin, weights"),
    ('[rtt_ms]\na = { a = 0 }\n[assign]\nrule = "weights"\n', "needs a table of zone = weight"),
    ('[rtt_ms]\na = { a = 0 }\n[assign]\nvalidators = { v1 = "b" }\n', "unknown zone 'b'"),
    ("[rtt_ms]\na = { a = 0 }\n", "give a rule"),
    ('jitter_ms = -1\n[rtt_ms]\na = { a = 0 }\n[assign]\nrule = "round-robin"\n', "jitter_ms"),
    ('latency = 3\n[rtt_ms]\na = { a = 0 }\n[assign]\nrule = "round-robin"\n', "unknown key 'latency'"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_FILES, ids=[problem for _, problem in BAD_FILES])
def test_a_bad_zones_file_is_one_line_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ZonesError) as caught:
        load_zones(text)
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unknown_validator_is_named() -> None:
    zones = load_zones('[rtt_ms]\na = { a = 0 }\n[assign]\nrule = "round-robin"\nvalidators = { v9 = "a" }\n')
    with pytest.raises(ZonesError, match="unknown validator 'v9'"):
        zones.assign(_names(4))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[rtt_ms]\na = { b = 10 }\nb = { a = 12 }\n[assign]\nrule = "round-robin"\n', "asymmetric"),
        ('[rtt_ms]\na = { a = 0 }\n[assign]\nvalidators = { v9 = "a" }\n', "unknown validator 'v9'"),
    ],
)
def test_the_cli_refuses_a_bad_zones_file_in_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "zones.toml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["sim", "--validators", "4", "--zones", str(path)])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and problem in errors[0] and str(path) in errors[0], result.output


def test_the_cli_names_a_missing_zones_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["sim", "--zones", str(tmp_path / "nowhere.toml")])
    assert result.exit_code == 2 and "cannot read" in result.output


# ------------------------------------------------------------------ the simulator


@st.composite
def _geographies(draw: st.DrawFn) -> tuple[Zones, dict[str, str]]:
    count = draw(st.integers(1, 4))
    zones = [f"z{i}" for i in range(count)]
    rows = []
    for i in range(count):
        cells = ", ".join(f"z{j} = {draw(st.integers(0, 400))}" for j in range(i, count))
        rows.append(f"z{i} = {{ {cells} }}")
    jitter = draw(st.integers(0, 30))
    zoned = load_zones(
        f"jitter_ms = {jitter}\n[rtt_ms]\n" + "\n".join(rows) + '\n[assign]\nrule = "round-robin"\n'
    )
    names = _names(draw(st.integers(2, 6)))
    placement = {name: draw(st.sampled_from(zones)) for name in names}
    return zoned, placement


@settings(max_examples=60, deadline=None)
@given(
    geography=_geographies(),
    delay=st.tuples(st.integers(0, 30), st.integers(0, 50)),
    reorder=st.sampled_from((0.0, 0.3)),
    dup=st.sampled_from((0.0, 0.2)),
    sends=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 5), st.integers(0, 5)), max_size=40),
    seed=st.integers(0, 1000),
)
def test_no_copy_arrives_sooner_than_its_zones_latency(
    geography: tuple[Zones, dict[str, str]],
    delay: tuple[int, int],
    reorder: float,
    dup: float,
    sends: list[tuple[int, int, int]],
    seed: int,
) -> None:
    zones, placement = geography
    names = list(placement)
    plan = FaultPlan(delay_ms=(delay[0], delay[0] + delay[1]), reorder=reorder, dup=dup)
    net = SimNetwork(names, plan, random.Random(seed), zones, placement)
    arrivals: list[tuple[int, str, str, int]] = []
    for name in names:
        net.attach(
            name, lambda sender, data, name=name: arrivals.append((net.now_ms, sender, name, int(data)))
        )
    for at, a, b in sends:
        sender, recipient = names[a % len(names)], names[b % len(names)]
        net.schedule(at, lambda s=sender, r=recipient, at=at: net.send(s, r, str(at).encode()))
    net.run_until(lambda: False, 1_000_000)
    assert len(arrivals) >= len(sends)
    for arrived, sender, recipient, sent in arrivals:
        one_way = zones.one_way_ms(placement[sender], placement[recipient])
        assert arrived - sent >= one_way + plan.delay_ms[0]
        assert arrived - sent <= one_way + zones.jitter_ms + 11 * max(plan.delay_ms[1], 1)


def _run(zones: Zones | None, seed: int = 7, validators: int = 4, heights: int = 8):  # type: ignore[no-untyped-def]
    return run_simulation(SimConfig(validators=validators, heights=heights, seed=seed, zones=zones))


def test_two_zones_far_apart_slow_finality_by_about_their_round_trip() -> None:
    """2 + 2 validators 200 ms apart: no quorum without the other zone, so each step crosses it."""
    near = _run(load_zones(ONE_PLACE, "one.toml"))
    far = _run(load_zones(TWO_FAR, "two.toml"))
    assert near.ok and far.ok
    slower = far.finality.p50_ms - near.finality.p50_ms
    assert 200 <= slower <= 2 * 200, (near.finality, far.finality)
    assert far.finality.p99_ms >= 200


def test_one_place_without_distance_or_jitter_is_the_run_without_zones() -> None:
    """Zones add no random draw where they add no delay, so the plain run is untouched."""
    plain, placed = _run(None), _run(load_zones(ONE_PLACE, "one.toml"))
    assert (plain.state_hash, plain.delivered, plain.virtual_ms) == (
        placed.state_hash,
        placed.delivered,
        placed.virtual_ms,
    )
    assert "finality_ms" not in plain.to_json() and "finality_ms" in placed.to_json()


def test_same_seed_and_same_zones_file_make_the_same_run() -> None:
    zones = load_zones(FIVE_REGIONS.read_text(), "five-regions.toml")
    first, second = _run(zones, seed=3, validators=5), _run(zones, seed=3, validators=5)
    assert first.to_json() | {"wall_s": 0} == second.to_json() | {"wall_s": 0}
    assert first.state_hash != _run(zones, seed=4, validators=5).state_hash


def test_the_replay_line_and_the_trace_header_carry_the_zones_file(tmp_path: Path) -> None:
    zones = load_zones(FIVE_REGIONS.read_text(), "scenarios/zones/five-regions.toml")
    config = SimConfig(validators=5, heights=3, seed=1, zones=zones)
    assert replay_command(config).endswith("--zones scenarios/zones/five-regions.toml")
    result = CliRunner().invoke(
        cli,
        [
            "sim",
            "--validators",
            "5",
            "--heights",
            "3",
            "--zones",
            str(FIVE_REGIONS),
            "--trace",
            str(tmp_path / "t.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "finality (proposal to decision): p50" in result.output
    header = (tmp_path / "t.jsonl").read_text().splitlines()[0]
    assert '"zones":' in header and '"placement":{"v1":"us-east"' in header and zones.digest in header
