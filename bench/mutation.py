"""Mutation testing of the core's rule modules: which small changes to a rule no test notices.

    pip install -e '.[mutation]'
    python bench/mutation.py                     # safety and consensus' voting rules
    python bench/mutation.py ledger-slashing state --children 2

Each target names the module to mutate, the tests that pin it (a fast
selection: every mutant runs them) and, for a large module, the functions
whose mutants count. mutmut (3.x) makes the mutants; it copies the code it
mutates into a `mutants/` folder, so the run happens in a scratch copy of
node/, network/, tests/ and pyproject.toml, never in the checkout. It
prints each surviving mutant as a diff and, per target, killed/total: the
score the README's tests section quotes.

Not a test and not run by CI: a run is minutes of CPU, and a survivor is a
question for a person (a missing test, or an equivalent mutant to note),
not a failure. mutmut rather than cosmic-ray: it runs the test selection
in forked workers over one collection, about 5 mutants a second here
against one pytest start per mutant, and needs no session database.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COPIED = ("node", "network", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Target:
    """A module to mutate, the tests that judge its mutants, and which of its mutants count."""

    module: str  # path under the repository
    tests: tuple[str, ...]
    functions: tuple[str, ...] = ("*",)  # mutmut's mangled names, fnmatch patterns: x_name, xǁClassǁmethod

    def patterns(self) -> list[str]:
        dotted = self.module.removesuffix(".py").replace("/", ".")
        return [f"{dotted}.{function}__mutmut_*" for function in self.functions]

    def counts(self, mutant: str) -> bool:
        return any(fnmatch(mutant, pattern) for pattern in self.patterns())


TARGETS = {
    "safety": Target("node/core/safety.py", ("tests/test_safety.py", "tests/test_signer.py")),
    "consensus": Target(
        "node/core/consensus/machine.py",
        ("tests/test_consensus.py", "tests/test_locking.py", "tests/test_vote_sets.py"),
        (
            "xǁConsensusMachineǁ_rule_*",
            "xǁConsensusMachineǁ_locked_on",
            "xǁConsensusMachineǁ_is_timely",
            "xǁConsensusMachineǁ_prevote",
            "xǁConsensusMachineǁ_precommit",
        ),
    ),
    "consensus-votes": Target(
        "node/core/consensus/votes.py",
        ("tests/test_consensus.py", "tests/test_locking.py", "tests/test_vote_sets.py"),
    ),
    "canonical": Target("node/core/canonical.py", ("tests/test_state.py", "tests/test_canonical.py")),
    "state": Target(
        "node/core/state.py",
        (
            "tests/test_state.py",
            "tests/test_late_precommits.py",
            "tests/test_downtime.py",
            "tests/test_accountability.py",
            "tests/test_signing_keys.py",
            "tests/test_consensus.py",
            "tests/test_reward_snapshot.py",
        ),
    ),
    "selection": Target("node/core/selection.py", ("tests/test_selection.py",)),
    "rewards": Target("node/core/rewards.py", ("tests/test_rewards.py", "tests/test_reward_snapshot.py")),
    "shares": Target("node/core/shares.py", ("tests/test_pool_shares.py", "tests/test_share_arithmetic.py")),
    **{
        f"ledger-{name}": Target(f"node/core/ledger/{name}.py", ("tests/test_ledger.py", *extra))
        for name, extra in {
            "slashing": (
                "tests/test_ledger_penalties.py",
                "tests/test_pool_shares.py",
                "tests/test_liquid_delegation.py",
            ),
            "evidence": ("tests/test_ledger_penalties.py",),
            "downtime": ("tests/test_ledger_penalties.py", "tests/test_downtime.py"),
            "rewards": ("tests/test_rewards.py", "tests/test_reward_snapshot.py"),
            "transactions": (
                "tests/test_tx.py",
                "tests/test_tx_rules.py",
                "tests/test_liquid_delegation.py",
                "tests/test_pool_shares.py",
                "tests/test_signing_keys.py",
                "tests/test_ledger_penalties.py",
            ),
            "epochs": (
                "tests/test_liquid_delegation.py",
                "tests/test_pool_shares.py",
                "tests/test_rewards.py",
                "tests/test_signing_keys.py",
                "tests/test_ledger_penalties.py",
            ),
        }.items()
    },
}

EQUIVALENT = {
    "node.core.consensus.machine.xǁConsensusMachineǁ_rule_prevote_step__mutmut_39": (
        "_polka_seen.add(None): line 36 may fire again at the same round, but only while past the "
        "prevote step, where it sets the valid value and round to what they already are"
    ),
    "node.core.consensus.votes.xǁVoteSetǁadd__mutmut_20": (
        "blocks_of.get(validator, 1) in the bound check: differs only for a voter's first block, "
        "where 0 and 1 are both below MAX_BLOCKS_PER_VOTER"
    ),
    # rewards
    "node.core.rewards.x_block_shares__mutmut_3": (
        "the proposer's ppm share taken with no signers too: the split of the rest over no signers is "
        "empty, so the remainder hands the proposer the whole block reward all the same"
    ),
    "node.core.rewards.x_saturation_point__mutmut_9": (
        "k > 1 instead of k > 0: for k = 1 it returns NO_SATURATION, which is 1 = Fraction(1, 1)"
    ),
    "node.core.rewards.x_expected_member_rate_terms__mutmut_11": (
        "(0, 2) for no added stake: the same rate 0 as (0, 1), and callers read only the ratio "
        "(a Fraction of it, or numerator * PPM // denominator)"
    ),
    "node.core.rewards.x_split_pool_reward__mutmut_4": (
        "reward < fixed_cost instead of <=: at reward == fixed_cost the formula gives the operator "
        "c + floor(0) = the whole reward and every member 0, no dust: the same payout"
    ),
    "node.core.ledger.rewards.x_rewarded_signers__mutmut_7": (
        "power >= 0 lets a zero-power signer in: its split is 0, which block_shares drops, and with "
        "only such signers the remainder still gives the proposer the whole reward"
    ),
    # state, selection, ledger-transactions, ledger-epochs
    "node.core.selection.x__apply_power_map__mutmut_41": (
        "zip(strict=None): the priorities are built one per entry of `ordered`, so the lengths always match"
    ),
    "node.core.selection.x__apply_power_map__mutmut_44": (
        "zip without strict: the priorities are built one per entry of `ordered`, so the lengths always match"
    ),
    "node.core.selection.x__apply_power_map__mutmut_45": (
        "zip(strict=False): the priorities are built one per entry of `ordered`, so the lengths always match"
    ),
    "node.core.selection.x__sorted_power_map__mutmut_8": (
        "sorted(key=None) sorts (address, power) pairs: the same order for distinct addresses, and equal addresses are rejected either way"
    ),
    "node.core.selection.x__sorted_power_map__mutmut_10": (
        "sorted without key sorts (address, power) pairs: the same order for distinct addresses, and equal addresses are rejected either way"
    ),
    "node.core.selection.x_clip_all_int64__mutmut_4": (
        "clipping when the minimum equals INT64_MIN returns an equal list"
    ),
    "node.core.selection.x_clip_all_int64__mutmut_6": (
        "clipping when the maximum equals INT64_MAX returns an equal list"
    ),
    "node.core.selection.x_compute_max_min_priority_diff__mutmut_14": (
        "negating a wrapped spread of 0 gives 0"
    ),
    "node.core.selection.x_compute_max_min_priority_diff__mutmut_15": (
        "diff < 1 on ints is diff <= 0, and negating 0 gives 0"
    ),
    "node.core.selection.x_compute_shuffled_index__mutmut_22": (
        "(pivot - count - index) % count equals (pivot + count - index) % count"
    ),
    "node.core.selection.x_shuffle_list__mutmut_47": (
        "(pivot - count - index) % count equals (pivot + count - index) % count"
    ),
    "node.core.selection.x_shuffled_indices__mutmut_24": (
        "pivot - count instead of pivot + count as the mirror: the same value modulo count"
    ),
    "node.core.selection.x_go_quotient__mutmut_13": (
        "a <= 0 differs from a < 0 only at a = 0, whose quotient 0 has no sign"
    ),
    "node.core.selection.x_go_quotient__mutmut_14": (
        "a < 1 on ints is a <= 0, which differs from a < 0 only at a = 0, whose quotient 0 has no sign"
    ),
    "node.core.selection.x_go_quotient__mutmut_16": (
        "b <= 0 differs from b < 0 only at b = 0, rejected above"
    ),
    "node.core.selection.x_go_quotient__mutmut_17": (
        "b < 1 on ints is b <= 0, which differs from b < 0 only at b = 0, rejected above"
    ),
    "node.core.selection.x_increment_priorities__mutmut_19": (
        "chosen's initial value is overwritten: times >= 1, so the loop runs at least once"
    ),
    "node.core.selection.x_increment_priorities__mutmut_20": (
        "chosen's initial value is overwritten: times >= 1, so the loop runs at least once"
    ),
    "node.core.selection.x_increment_priorities__mutmut_21": (
        "chosen's initial value is overwritten: times >= 1, so the loop runs at least once"
    ),
    "node.core.selection.x_rescale_priorities__mutmut_19": (
        "rescaling a spread equal to the window divides by ceil(1) = 1"
    ),
    "node.core.selection.x_shuffle_list__mutmut_15": (
        "(count + 256) // 256 hashes one more block only when count is a multiple of 256, and no position reaches it"
    ),
    "node.core.selection.x_shuffled_indices__mutmut_38": (
        "index >= flip differs only when index == flip, where both choices are the same position"
    ),
    "node.core.selection.x_shuffled_indices__mutmut_42": (
        "no source-block cache: each block is hashed again, with the same digest"
    ),
    "node.core.selection.x_shuffled_indices__mutmut_43": (
        "sources.get(None) always misses (keys are ints): each block is hashed again, with the same digest"
    ),
    "node.core.selection.x_wrap_int64__mutmut_3": (
        "value + INT64_MIN and value - INT64_MIN differ by 2**64, the modulus"
    ),
    "node.core.canonical.x_canonical__mutmut_1": (
        "kind = None skips the int-or-bytes fast path; the later branches return the same int or bytes"
    ),
    "node.core.canonical.x_canonical__mutmut_2": (
        "kind = type(None) skips the int-or-bytes fast path; the later branches return the same int or bytes"
    ),
    "node.core.canonical.x_canonical__mutmut_3": (
        "`and` in the fast path never holds; the later branches return the same int or bytes"
    ),
    "node.core.canonical.x__canonical_fields__mutmut_13": (
        "canonical() of an int or bytes field is that value, so skipping the shortcut changes nothing"
    ),
    "node.core.canonical.x__canonical_fields__mutmut_15": (
        "canonical() of an int or bytes field is that value, so skipping the shortcut changes nothing"
    ),
    "node.core.state.x_committee_seed__mutmut_7": (
        "int.to_bytes' byteorder defaults to 'big' since Python 3.11, the oldest the project supports"
    ),
    "node.core.state.x_with_stake__mutmut_1": (
        "always replace(seats, stake=stake): with no snapshot that sets stake to None, its default, "
        "an equal Seats (the copy only loses the shared value's cached holders)"
    ),
    "node.core.state.x_signing_keys_after__mutmut_3": (
        "re-reading keys from an unchanged pool map gives the keys already current (the block before made them so)"
    ),
    "node.core.state.x_certificate_problem__mutmut_29": (
        "the key fallback is unreachable: a committee member is always in public_keys; b'XXXX' is no valid key either"
    ),
    "node.core.ledger.transactions.x_tx_type_problem__mutmut_59": (
        "unjail_problem does not read its tx argument (an Unjail carries only a nonce, judged before)"
    ),
}
"""Survivors that no test can kill because they behave as the original, and why.

Named by mutmut's numbering within a function, which shifts when the
function changes: after editing one, run its target and check these again.
"""

MUTMUT_CONFIG = """
[tool.mutmut]
source_paths = ["node/"]
only_mutate = [{modules}]
also_copy = ["network/"]
pytest_add_cli_args_test_selection = [{tests}]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-m", "not slow"]
"""

RESULT = re.compile(r"^\s*(\S+): (.+)$")


def scratch_copy(where: Path, targets: list[Target]) -> None:
    """The checkout's code and tests in `where`, with a mutmut section naming what to mutate."""
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, where / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, where / name)
    config = MUTMUT_CONFIG.format(
        modules=quoted(t.module for t in targets), tests=quoted(test for t in targets for test in t.tests)
    )
    with (where / "pyproject.toml").open("a") as handle:
        handle.write(config)


def quoted(items: Iterable[str]) -> str:
    return ", ".join(f'"{item}"' for item in sorted(set(items)))


def mutmut(where: Path, *args: str, nice: bool = False) -> str:
    """Run mutmut (the one beside this interpreter) in `where`; its standard output."""
    command = [str(Path(sys.executable).with_name("mutmut")), *args]
    if nice:
        command = ["nice", "-n", "10", *command]
    done = subprocess.run(command, cwd=where, capture_output=True, text=True, env={**os.environ, "CI": ""})
    if done.returncode != 0:
        sys.exit(
            f"mutmut {args[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}"
        )
    return done.stdout


def statuses(where: Path, targets: list[Target]) -> dict[str, str]:
    """Every counted mutant's status (killed, survived, no tests, timeout...), by name."""
    found = {}
    for line in mutmut(where, "results", "--all", "true").splitlines():
        match = RESULT.match(line)
        if match and any(target.counts(match[1]) for target in targets):
            found[match[1]] = match[2]
    return found


def report(where: Path, chosen: dict[str, Target], found: dict[str, str]) -> None:
    """Each mutant that was not killed, as mutmut shows it, then the score per target.

    A known equivalent mutant gets one line with the reason instead of its diff,
    and counts apart: killed/total is over the mutants a test could kill.
    """
    for name in sorted(name for name, status in found.items() if status != "killed"):
        if name in EQUIVALENT and found[name] == "survived":
            print(f"# {name}: equivalent, {EQUIVALENT[name]}\n")
        else:
            print(mutmut(where, "show", name).rstrip(), end="\n\n")
    print("target                 killed/total  survived  equivalent  other")
    for label, target in chosen.items():
        mine = {name: status for name, status in found.items() if target.counts(name)}
        same = sum(status == "survived" and name in EQUIVALENT for name, status in mine.items())
        killed = sum(status == "killed" for status in mine.values())
        survived = sum(status == "survived" for status in mine.values()) - same
        total = len(mine) - same
        print(f"{label:22} {killed:6}/{total:<6} {survived:8}  {same:10}  {total - killed - survived:5}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "targets", nargs="*", default=["safety", "consensus"], help=f"of: {', '.join(TARGETS)}"
    )
    parser.add_argument(
        "--children", type=int, default=1, help="mutants run at once (default 1: a shared box)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy and print where it is")
    args = parser.parse_args()
    unknown = [name for name in args.targets if name not in TARGETS]
    if unknown:
        sys.exit(f"unknown target {unknown[0]!r}; known: {', '.join(TARGETS)}")
    if not Path(sys.executable).with_name("mutmut").exists():
        sys.exit("mutmut is not installed beside this Python: pip install -e '.[mutation]'")
    chosen = {name: TARGETS[name] for name in args.targets}
    where = Path(tempfile.mkdtemp(prefix="posnet-mutation-"))
    try:
        scratch_copy(where, list(chosen.values()))
        patterns = [p for t in chosen.values() for p in t.patterns()]
        mutmut(where, "run", "--max-children", str(args.children), *patterns, nice=True)
        report(where, chosen, statuses(where, list(chosen.values())))
    finally:
        if args.keep:
            print(f"scratch copy kept in {where} (mutmut browse / show / apply work there)")
        else:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
