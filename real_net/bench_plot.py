"""The picture of a ``raftkv bench`` run: requests per second and latency, system beside system.

Why a plot: the bench's point is raftkv beside etcd on the same machine, and
grouped bars show the ratio at a glance where a table needs reading. Left:
requests/s per workload, one bar per system. Right: p50 (solid) and p99
(hatched) latency per workload, log scale (puts and gets differ by 10x).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

if TYPE_CHECKING:
    from real_net.bench import Result


def plot_results(results: Sequence[Result], title: str, out: Path) -> None:
    """Write the two panels to `out` (PNG)."""
    systems = list(dict.fromkeys(r.system for r in results))
    workloads = list(dict.fromkeys(r.workload for r in results))
    by = {(r.system, r.workload): r for r in results}
    width = 0.8 / max(1, len(systems))
    fig, (rate_ax, lat_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, system in enumerate(systems):
        xs = [w + (i - (len(systems) - 1) / 2) * width for w in range(len(workloads))]
        rows = [by.get((system, wl)) for wl in workloads]
        rates = [r.rate if r else 0.0 for r in rows]
        bars = rate_ax.bar(xs, rates, width, label=system)
        rate_ax.bar_label(bars, fmt="%.0f", fontsize=8)
        color = bars.patches[0].get_facecolor() if bars.patches else None
        p50 = [r.percentile(0.5) * 1e3 if r and r.latencies else 0.0 for r in rows]
        p99 = [r.percentile(0.99) * 1e3 if r and r.latencies else 0.0 for r in rows]
        lat_ax.bar([x - width / 4 for x in xs], p50, width / 2, color=color, label=f"{system} p50")
        lat_ax.bar([x + width / 4 for x in xs], p99, width / 2, color=color, alpha=0.5, hatch="//",
                   label=f"{system} p99")  # fmt: skip
    for ax in (rate_ax, lat_ax):
        ax.set_xticks(range(len(workloads)), workloads)
        ax.grid(axis="y", alpha=0.3)
    rate_ax.legend(fontsize=8)
    # Below the panel: the p50/p99 bars fill its height, a legend inside would cover them.
    lat_ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2 * len(systems))
    rate_ax.set_ylabel("requests per second")
    rate_ax.set_title("throughput")
    lat_ax.set_ylabel("latency (ms, log scale)")
    lat_ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    lat_ax.yaxis.set_major_formatter(plain)
    lat_ax.yaxis.set_minor_formatter(plain)
    lat_ax.set_title("latency: p50 and p99")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
