"""The PNG of an economy run: concentration, saturation, yields and the largest pools, events marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.core.genesis import PPM

TOP_POOLS = 8


def plot_run(records: list[dict[str, Any]], out: Path, title: str) -> Path:
    """Draw the run's records to `out` (Agg canvas: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in records if "halted" not in r]
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(12, 10), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    concentration, shares, yields, pools = fig.subplots(4, 1, sharex=True)
    concentration.plot(epochs, [r["nakamoto"] for r in rows], label="Nakamoto coefficient", color="C0")
    concentration.plot(epochs, [r["saturated"] for r in rows], label="saturated pools", color="C3", ls="--")
    if rows and "half_saturated" in rows[-1]:  # records from before these metrics lack them
        concentration.plot(
            epochs, [r["half_saturated"] for r in rows], label="pools at half of 1/k or more", color="C2"
        )
    concentration.set_ylabel("pools")
    concentration.set_title(title, loc="left", fontsize=11)
    for key, label in (("gini_ppm", "Gini"), ("hhi_ppm", "HHI"), ("top3_ppm", "top-3 share")):
        shares.plot(epochs, [r[key] / PPM for r in rows], label=label)
    if rows and "paid_ppm" in rows[-1]:
        shares.plot(epochs, [r["paid_ppm"] / PPM for r in rows], label="rewards paid (of possible)", ls=":")
    shares.set_ylabel("of active stake")
    shares.set_ylim(0, 1)
    for name in rows[0]["classes"] if rows else ():
        yields.plot(epochs, [r["classes"][name]["yield_ppm"] / 10_000 for r in rows], label=name)
    yields.set_ylabel("class yield (% / epoch)")
    final = rows[-1]["pools"] if rows else {}
    top = sorted(final, key=lambda name: -final[name][0])[:TOP_POOLS]
    for name in top:
        pools.plot(epochs, [r["pools"].get(name, [0])[0] for r in rows], label=name)
    pools.set_ylabel(f"stake, {len(top)} largest pools")
    pools.set_xlabel("epoch")
    for ax in (concentration, shares, yields, pools):
        ax.legend(loc="upper left", fontsize=8, ncols=4)
        for r in rows:
            if r["events"]:  # the timeline's events, not the penalties they led to
                ax.axvline(r["epoch"], color="grey", lw=0.8, ls=":")
    for r in rows:
        for event in r["events"]:
            concentration.annotate(
                event, (r["epoch"], 0), xytext=(2, 2), textcoords="offset points", fontsize=7, rotation=90
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
