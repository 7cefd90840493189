"""The PNG of an economy run: concentration, every pool's share against saturation, yields, issuance.

Every figure says what it measures in its own title: pools as shares of the
active stake (the committee's shares) with the saturation point 1/k drawn,
so "past saturation" is read off the line rather than computed; k, z0 and
a0 in the title; yields as rewards over staked value; issuance in units,
with what saturation and pledge withheld summed over the run (the reserve
alone rises and falls: it pays later rewards first).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.core.genesis import PPM

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_NAMED = 24  # pools drawn one by one at most; the rest are summed as "others"
OTHERS_BELOW_PPM = 50_000  # without saturation (k = 0): pools that never reach 5% are "others"


def named_pools(rows: list[dict[str, Any]], k: int) -> list[str]:
    """The pools drawn one by one: those that ever held half the saturation point (5% when k = 0),
    the largest first, at most `MAX_NAMED`; every other pool is summed into "others"."""
    peak: dict[str, int] = {}
    for r in rows:
        total = _active_total(r)
        for name, (stake, _quote, status) in r["pools"].items():
            if total and status == "active":
                peak[name] = max(peak.get(name, 0), stake * PPM // total)
    floor = PPM // (2 * k) if k > 0 else OTHERS_BELOW_PPM
    big = sorted((name for name, share in peak.items() if share >= floor), key=lambda n: (-peak[n], n))
    return big[:MAX_NAMED]


def _active_total(record: dict[str, Any]) -> int:
    return sum(stake for stake, _quote, status in record["pools"].values() if status == "active")


def _share(record: dict[str, Any], names: set[str] | None, exclude: frozenset[str] = frozenset()) -> float:
    """The share of active stake of the pools in `names` (every pool but `exclude` when None)."""
    total = _active_total(record)
    held = sum(
        stake
        for name, (stake, _quote, status) in record["pools"].items()
        if status == "active" and (name in names if names is not None else name not in exclude)
    )
    return held / total if total else 0.0


def figure_of(records: list[dict[str, Any]], title: str) -> Figure:
    """The run's figure (Agg canvas: no display needed), five panels sharing the epoch axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in records if "halted" not in r]
    epochs = [r["epoch"] for r in rows]
    last = rows[-1] if rows else {}
    k = last.get("saturation_k", 0)
    a0 = last.get("pledge_influence_ppm", 0) / PPM
    fig = Figure(figsize=(12, 14), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    concentration, pools, shares, yields, issuance = fig.subplots(5, 1, sharex=True)
    z0 = f"z0 = 1/k = {100 / k:.1f}% of the active stake" if k else "no saturation (k = 0)"
    fig.suptitle(f"{title}: k = {k}, {z0}, a0 = {a0:g}", x=0.01, ha="left", fontsize=12)

    concentration.plot(epochs, [r["nakamoto"] for r in rows], label="Nakamoto coefficient", color="C0")
    concentration.plot(epochs, [r["saturated"] for r in rows], label="saturated pools", color="C3", ls="--")
    if rows and "half_saturated" in last:  # records from before these metrics lack them
        concentration.plot(
            epochs, [r["half_saturated"] for r in rows], label="pools at half of 1/k or more", color="C2"
        )
    concentration.set_ylabel("pools")
    concentration.set_title("concentration: pools", loc="left", fontsize=10)

    named = named_pools(rows, k)
    for name in named:
        pools.plot(epochs, [_share(r, {name}) for r in rows], label=name, lw=1)
    rest = {name for r in rows for name in r["pools"]} - set(named)
    if rest:
        pools.plot(
            epochs,
            [_share(r, None, frozenset(named)) for r in rows],
            label=f"others ({len(rest)} pools, summed)",
            color="grey",
            ls="--",
        )
    if k:
        pools.axhline(1 / k, color="black", lw=1.2, ls=":", label=f"saturation 1/k = {100 / k:.1f}%")
    pools.set_ylabel("share of active stake")
    pools.set_title(
        f"every pool's share of the active stake (= its committee share), k = {k}", loc="left", fontsize=10
    )

    for key, label in (("gini_ppm", "Gini"), ("hhi_ppm", "HHI"), ("top3_ppm", "top-3 share")):
        shares.plot(epochs, [r[key] / PPM for r in rows], label=label)
    ran = [r for r in rows if r["epoch"] >= 0]  # genesis (epoch -1) paid nothing and earned nothing yet
    if rows and "paid_ppm" in last:
        shares.plot(
            [r["epoch"] for r in ran],
            [r["paid_ppm"] / PPM for r in ran],
            label="rewards paid (of possible)",
            ls=":",
        )
    shares.set_ylim(0, 1)
    shares.set_title(
        "concentration indices, and the share of each epoch's rewards paid", loc="left", fontsize=10
    )

    for name in rows[0]["classes"] if rows else ():
        yields.plot(
            [r["epoch"] for r in ran], [r["classes"][name]["yield_ppm"] / 10_000 for r in ran], label=name
        )
    yields.set_ylabel("% per epoch")
    yields.set_title(
        "yield by delegator class: rewards over staked value, per epoch", loc="left", fontsize=10
    )

    if rows and "forgone" in last:
        unit = PPM
        issuance.plot(epochs, [r["issued"] / unit for r in rows], label="minted so far", color="C0")
        issuance.plot(
            epochs, [r["forgone"] / unit for r in rows], label="forgone so far (withheld, summed)", color="C3"
        )
        issuance.plot(
            epochs, [r["reserve"] / unit for r in rows], label="reserve (pays later rewards)", ls=":"
        )
    issuance.set_ylabel("units")
    issuance.set_title(
        "issuance: minted, and forgone by saturation and pledge influence, summed over the run",
        loc="left",
        fontsize=10,
    )
    issuance.set_xlabel("epoch")

    for ax in (concentration, pools, shares, yields, issuance):
        ax.legend(loc="upper left", fontsize=7, ncols=6)
        for r in rows:
            if r["events"]:  # the timeline's events, not the penalties they led to
                ax.axvline(r["epoch"], color="grey", lw=0.8, ls=":")
    for r in rows:
        for event in r["events"]:
            concentration.annotate(
                event, (r["epoch"], 0), xytext=(2, 2), textcoords="offset points", fontsize=7, rotation=90
            )
    return fig


def plot_run(records: list[dict[str, Any]], out: Path, title: str) -> Path:
    """Draw the run's records to `out` (`figure_of`)."""
    fig = figure_of(records, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
