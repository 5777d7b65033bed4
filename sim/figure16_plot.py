"""Figure 16's two panels as one PNG: the CDF of the time without a leader, one line per timeout range.

As in the paper: the top panel varies the randomness (150 ms minimum, 150-150
to 150-300), the bottom one scales the minimum (12-24 to 150-300); x is the
time without a leader in ms on a log scale, y the cumulative percent of trials.
A range outside the figure goes to the top panel if its minimum is 150 ms, else
to the bottom one.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the simulator and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

from sim.figure16 import BOTTOM_PANEL, TOP_PANEL, RangeSummary, TimeoutRange  # noqa: E402

TOP_TITLE = "Varying randomness: election timeout 150 ms + random range"
BOTTOM_TITLE = "Scaling the minimum election timeout (range = minimum)"


def panels(labels: list[str]) -> tuple[list[str], list[str]]:
    """Which ranges each panel shows, in the figure's legend order, then any others."""
    top = [r.label for r in TOP_PANEL if r.label in labels]
    bottom = [r.label for r in BOTTOM_PANEL if r.label in labels]
    for label in labels:
        if label not in top and label not in bottom:
            (top if TimeoutRange.parse(label).min_ms == 150 else bottom).append(label)
    return top, bottom


def plot_figure16(summaries: dict[str, RangeSummary], path: Path, subtitle: str = "") -> Path:
    top, bottom = panels(list(summaries))
    fig, axes = plt.subplots(2, 1, figsize=(8, 9))
    for ax, labels, title in ((axes[0], top, TOP_TITLE), (axes[1], bottom, BOTTOM_TITLE)):
        for label in labels:
            s = summaries[label]
            xs = [s.downtimes_ms[0], *s.downtimes_ms]
            ys = [0.0, *(100 * (i + 1) / s.trials for i in range(s.trials))]
            capped = f", {s.censored} capped" if s.censored else ""
            ax.step(xs, ys, where="post", lw=1.5, label=f"{label} ms ({s.trials} trials{capped})")
        ax.set_xscale("log")
        ax.set_ylim(0, 100)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("time without leader (ms)")
        ax.set_ylabel("cumulative percent")
        ax.grid(True, which="both", alpha=0.3)
        if labels:
            ax.legend(loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no range of this panel was run", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Raft paper Figure 16: time to detect and replace a crashed leader (5 servers)"
                 + (f"\n{subtitle}" if subtitle else ""), fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
