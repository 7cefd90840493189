"""The safety verdict, defined once for the simulator and for real testnets.

Safety is the property posnet exists to show: no two honest nodes finalize
different blocks at one height. The simulator reads finalized blocks off
its nodes' chains, the testnet's log checker off their ``finalized`` log
lines; both hand them to `conflicting_finality`, so "unsafe" means the same
thing in a simulated run, a process testnet and a compose testnet.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Hashable, Mapping
from typing import TypeVar

BlockId = TypeVar("BlockId", bound=Hashable)


def conflicting_finality(
    finalized: Mapping[str, Mapping[int, Collection[BlockId]]],
) -> dict[int, dict[BlockId, list[str]]]:
    """Heights at which the given nodes, together or one alone, finalized more than one block.

    ``finalized`` maps each node to the block ids it finalized per height (a
    node that logs two ids at one height contradicts itself). The answer maps
    each such height, lowest first, to the nodes behind each block id.
    """
    by_height: dict[int, dict[BlockId, set[str]]] = defaultdict(lambda: defaultdict(set))
    for node, heights in finalized.items():
        for height, ids in heights.items():
            for block_id in ids:
                by_height[height][block_id].add(node)
    return {
        height: {block_id: sorted(nodes) for block_id, nodes in ids.items()}
        for height, ids in sorted(by_height.items())
        if len(ids) > 1
    }
