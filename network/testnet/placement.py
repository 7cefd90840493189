"""Which node process hosts which validators, and faults named by validator mapped onto processes.

`posnet testnet up --processes P` spreads N validators over P node processes
so that many validators fit a small machine: each process carries its own
interpreter, event loop, store and broker connection, and a node process can
host several validator keys (node/core/hosting.py).

The spreading is in contiguous blocks (v1..v4 in p1, v5..v8 in p2, ...), not
round-robin: a partition or a fault plan is almost always written as ranges
of validators ("the first half against the second"), and contiguous blocks
keep such a range on whole processes, where round-robin would split every
process at once. When N does not divide evenly the first N mod P processes
take one more validator.

Processes are named `p1..pP`; with one process per validator (the default)
each process is named after its validator, exactly as before, so every
existing directory, command and test reads the same. A process name and a
validator name never collide (`p` against `v`), so a command may name either.

A process cannot be on two sides of a partition, so a partition that splits
the validators of one process is refused, naming them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from network.testnet.errors import TestnetError

# The most validators a local testnet (and a scenario) runs: 128 fit a 2-core machine
# only spread over a few processes; the genesis's default committee_size (128) seats them all.
MAX_VALIDATORS = 128


def spread(validators: Sequence[str], processes: int | None) -> dict[str, list[str]]:
    """Process name -> the validators it hosts, in contiguous blocks; one per validator when `processes` is None or N."""
    count = len(validators)
    if processes is None or processes == count:
        return {name: [name] for name in validators}
    if not 1 <= processes <= count:
        raise TestnetError(
            f"--processes {processes}: must be between 1 and the number of validators ({count})"
        )
    size, extra = divmod(count, processes)
    out: dict[str, list[str]] = {}
    start = 0
    for index in range(processes):
        end = start + size + (1 if index < extra else 0)
        out[f"p{index + 1}"] = list(validators[start:end])
        start = end
    return out


def host_of(hosts: Mapping[str, Sequence[str]], name: str) -> str | None:
    """The process that is, or hosts, `name` (a process or a validator name); None when there is none."""
    if name in hosts:
        return name
    for process, validators in hosts.items():
        if name in validators:
            return process
    return None


def describe_hosts(hosts: Mapping[str, Sequence[str]]) -> str:
    """`p1..p3 hosting v1..v12` or `v1..v4` (one process each): for error messages that list what exists."""
    processes = list(hosts)
    validators = [v for vs in hosts.values() for v in vs]
    if processes == validators:
        return ", ".join(processes)
    return f"processes {processes[0]}..{processes[-1]} hosting {validators[0]}..{validators[-1]}"


def hosted_note(hosts: Mapping[str, Sequence[str]], name: str) -> str:
    """What a command acting on `name` actually touches: `v5 runs in p2 with v6, v7, v8: ` or ``.

    Empty when `name` is a process that hosts only itself (one process per
    validator): the output then reads exactly as it always did.
    """
    process = host_of(hosts, name)
    if process is None:
        return ""
    validators = list(hosts[process])
    if validators == [process]:
        return ""
    if name == process:
        return f"{process} hosts {', '.join(validators)}: "
    others = [v for v in validators if v != name]
    return f"{name} runs in {process}" + (f" with {', '.join(others)}" if others else " alone") + ": "


def describe_islands(hosts: Mapping[str, Sequence[str]], groups: Sequence[Sequence[str]]) -> str:
    """`p1 (v1,v2) | p2 (v3,v4)` for processes hosting several validators, else `v1,v2 | v3,v4`."""
    return " | ".join(
        ",".join(p if list(hosts.get(p, [p])) == [p] else f"{p} ({','.join(hosts[p])})" for p in group)
        for group in groups
    )


def map_groups(hosts: Mapping[str, Sequence[str]], groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """Partition groups of validator (or process) names as groups of process names.

    Validators not named join the first group (as in any partition), so a
    process whose named validators sit in a later group while others of it
    are unnamed, or in another group, would be on both sides: refused in one
    line naming the process and its validators on each side.
    """
    side: dict[str, int] = {}  # validator -> group index
    for index, group in enumerate(groups):
        for name in group:
            process = host_of(hosts, name)
            if process is None:
                raise TestnetError(f"unknown node {name!r}; this testnet has {describe_hosts(hosts)}")
            members = hosts[process] if name == process else [name]
            for validator in members:
                if validator in side:
                    raise TestnetError(f"{validator} is named in two partition groups")
                side[validator] = index
    mapped: list[list[str]] = [[] for _ in groups]
    for process, validators in hosts.items():
        sides = {side.get(v, 0) for v in validators}
        if len(sides) > 1:
            split = " | ".join(",".join(v for v in validators if side.get(v, 0) == s) for s in sorted(sides))
            raise TestnetError(
                f"the partition splits {process} ({split}): a process cannot be on both sides; "
                f"put all of {', '.join(validators)} in one group"
            )
        mapped[sides.pop()].append(process)
    for index, group in enumerate(mapped):
        if not group:
            raise TestnetError(f"partition group {index + 1} is empty")
    return mapped
