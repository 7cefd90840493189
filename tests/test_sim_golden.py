"""The simulator's summaries for a fixed set of runs, recorded once and compared byte for byte.

A refactor that claims "no behaviour change" is shown, not asserted: every
case below runs the real `posnet sim --json` command and its summary (wall
time aside) must equal the recorded line. A deliberate protocol change
re-records the file and says so in its commit:

    POSNET_GOLDEN_UPDATE=1 python -m pytest tests/test_sim_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from network.cli import cli

pytestmark = pytest.mark.sim

GOLDEN = Path(__file__).parent / "data" / "sim_golden.jsonl"

CASES: tuple[str, ...] = (
    "--validators 4 --heights 12 --seed 1",
    "--validators 7 --heights 10 --seed 2 --committee-size 5",
    "--stakes 605,896,2053,1761 --byzantine 1 --byzantine-mode split --committee-size 4 "
    "--faults delay=8-9,crash=v3@1508-2017 --seed 1106 --heights 10",
    "--validators 4 --byzantine 1 --byzantine-mode equivocate --heights 10 --seed 3",
    "--validators 5 --byzantine 1 --byzantine-mode silent --heights 10 --seed 4",
    "--validators 4 --byzantine 1 --byzantine-mode late --heights 10 --seed 5",
    "--validators 4 --byzantine 1 --byzantine-mode amnesia --heights 10 --seed 6 --faults drop=0.1",
    "--validators 6 --byzantine 1 --byzantine-mode withhold --heights 8 --seed 7",
    "--validators 4 --byzantine 1 --byzantine-mode twins --heights 8 --seed 8",
    "--validators 6 --heights 10 --seed 9 "
    "--faults drop=0.2,delay=5-80,dup=0.05,reorder=0.3,partition=v1+v2|v3+v4+v5+v6@500-3000",
    "--validators 8 --heights 10 --seed 10 --scenario random --faults random",
    "--validators 5 --heights 10 --seed 11 --scenario random --faults random --byzantine 1 "
    "--byzantine-mode split",
    "--stakes 7000,1000,1000,1000 --heights 30 --seed 12",
    "--validators 1 --heights 20 --seed 13",
    "--validators 12 --heights 6 --seed 14 --committee-size 7 --param downtime_window=8",
    "--validators 4 --heights 5 --seed 100 --seeds 3",
)


def _summary(args: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["sim", *args.split(), "--json"])
    assert result.exit_code in (0, 1), result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    summary.pop("wall_s", None)
    return {"args": args, "summary": summary}


@pytest.mark.skipif(not os.environ.get("POSNET_GOLDEN_UPDATE"), reason="only when re-recording")
def test_record_golden_summaries() -> None:
    GOLDEN.parent.mkdir(exist_ok=True)
    lines = [json.dumps(_summary(args), sort_keys=True) for args in CASES]
    GOLDEN.write_text("\n".join(lines) + "\n")


@pytest.mark.skipif(bool(os.environ.get("POSNET_GOLDEN_UPDATE")), reason="re-recording")
@pytest.mark.parametrize("index", range(len(CASES)))
def test_simulator_summary_matches_the_recorded_run(index: int) -> None:
    recorded = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    assert [entry["args"] for entry in recorded] == list(CASES), "cases changed: re-record the file"
    assert json.dumps(_summary(CASES[index]), sort_keys=True) == json.dumps(recorded[index], sort_keys=True)
