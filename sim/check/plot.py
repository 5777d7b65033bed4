"""A PNG timeline of a history, the counterexample in red (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from sim.check.result import CheckResult
from sim.check.timeline import layout
from sim.history import Operation, describe_call


def plot_timeline(
    ops: Sequence[Operation], result: CheckResult | None, path: str | os.PathLike[str], *, max_ops: int = 300
) -> None:
    """Write ``path`` (PNG): one lane per client, a bar from call to return per op."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the simulator and CI run headless
    import matplotlib.pyplot as plt

    tl = layout(ops, result, max_ops=max_ops)
    height = max(2.5, 0.45 * len(tl.lanes) + 1.5)
    fig, ax = plt.subplots(figsize=(12, height))
    try:
        for bar in tl.bars:
            colour = "#d62728" if bar.highlighted else "#7f9fbf"
            ax.barh(
                bar.lane,
                max(bar.end - bar.start, (tl.end - tl.start) * 0.002),
                left=bar.start,
                height=0.6,
                color=colour,
                alpha=0.45 if bar.open_ended else 0.9,
                hatch="//" if bar.open_ended else None,
                edgecolor="black" if bar.highlighted else colour,
                linewidth=1.2 if bar.highlighted else 0.3,
            )
            if bar.highlighted or len(tl.bars) <= 40:
                ax.text(
                    bar.start,
                    bar.lane + 0.38,
                    describe_call(bar.op),
                    fontsize=7,
                    color="#8b0000" if bar.highlighted else "#333333",
                    clip_on=True,
                )
        ax.set_yticks(range(len(tl.lanes)), [f"client {c}" for c in tl.lanes])
        ax.set_ylim(-0.8, max(len(tl.lanes), 1) - 0.2)
        ax.set_xlim(tl.start, tl.end)
        ax.invert_yaxis()
        ax.set_xlabel("time (s); hatched bars are info operations (return unknown)")
        ax.set_title(tl.title, fontsize=10)
        fig.tight_layout()
        fig.savefig(os.fspath(path), dpi=110)
    finally:
        plt.close(fig)
