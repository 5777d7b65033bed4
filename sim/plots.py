"""The run's figures, as PNG files: the timeline and latency over time.

* ``timeline.png``: one band per member coloured by role (follower,
  candidate, leader, down, paused) with the term written on each leadership,
  faults shaded behind, new leaders marked; below, each member's commit index.
* ``latency.png``: every operation's latency against the time it was called,
  by operation kind, with indefinite (info) and failed operations marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from sim.history import Operation, Status  # noqa: E402

if TYPE_CHECKING:
    from sim.run import RunResult

ROLE_COLOURS = {
    "follower": "#c6dbef",
    "pre-candidate": "#fdd0a2",
    "candidate": "#fd8d3c",
    "leader": "#238b45",
    "down": "#525252",
    "paused": "#9e9ac8",
}
FAULT_COLOURS = ["#fcbba1", "#fee391", "#c7e9c0", "#d0d1e6", "#fde0ef", "#e5f5e0", "#ffffcc"]


def plot_run(result: RunResult, out: Path) -> list[Path]:
    return [plot_timeline(result, out / "timeline.png"), plot_latency(result, out / "latency.png")]


def plot_timeline(result: RunResult, path: Path) -> Path:
    tl = result.cluster.timeline
    opts = result.options
    end = opts.duration + opts.quiet
    slots = sorted(result.cluster.slots)
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(13, 2.2 + 0.55 * len(slots) + 3), sharex=True, gridspec_kw={"height_ratios": [len(slots), 4]}
    )
    # Faults shaded behind both panels, one colour per fault kind.
    kinds = sorted({f.fault for f in tl.faults})
    colour = {k: FAULT_COLOURS[i % len(FAULT_COLOURS)] for i, k in enumerate(kinds)}
    for f in tl.faults:
        stop = f.stop if f.stop is not None else opts.duration
        for a in (ax, ax2):
            a.axvspan(f.start, stop, color=colour[f.fault], alpha=0.35, lw=0)
    for a in (ax, ax2):
        a.axvline(opts.duration, color="black", ls="--", lw=1)
    # Role bands.
    by_slot: dict[int, list[tuple[float, str, int]]] = {s: [] for s in slots}
    for rc in tl.roles:
        by_slot.setdefault(rc.slot, []).append((rc.time, rc.role, rc.term))
    for row, s in enumerate(slots):
        changes = by_slot.get(s, [])
        for i, (t, role, term) in enumerate(changes):
            t_end = changes[i + 1][0] if i + 1 < len(changes) else end
            if t_end <= t:
                continue
            ax.broken_barh([(t, t_end - t)], (row - 0.4, 0.8), color=ROLE_COLOURS.get(role, "#dddddd"))
            if role == "leader" and t_end - t > end / 60:
                ax.text(t + (t_end - t) / 2, row, f"t{term}", ha="center", va="center", fontsize=7, color="white")
    for t, s, term in tl.leaders:
        ax.plot([t], [slots.index(s) if s in slots else 0], marker="v", color="black", ms=5)
    ax.set_yticks(range(len(slots)), [f"m{s}" for s in slots])
    ax.set_ylim(-0.6, len(slots) - 0.4)
    ax.set_ylabel("member")
    ax.set_title(
        f"raftkv sim seed {opts.seed}: roles and terms ({opts.nodes} members, nemesis {opts.nemesis or 'none'}; "
        f"dashed line = heal, quiet phase after)"
    )
    handles = [Patch(color=c, label=r) for r, c in ROLE_COLOURS.items()]
    handles += [Patch(color=colour[k], alpha=0.35, label=f"fault: {k}") for k in kinds]
    handles.append(plt.Line2D([], [], marker="v", color="black", ls="", label="new leader"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    # Commit index.
    for s in slots:
        pts = tl.commits.get(s, [])
        if pts:
            ax2.step([p[0] for p in pts], [p[1] for p in pts], where="post", label=f"m{s}", lw=1)
    ax2.set_xlabel("simulated time (s)")
    ax2.set_ylabel("commit index")
    ax2.set_title("commit index per member")
    ax2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax2.set_xlim(0, end)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_latency(result: RunResult, path: Path) -> Path:
    opts = result.options
    history: list[Operation] = result.history
    fig, ax = plt.subplots(figsize=(13, 4.5))
    kinds = sorted({op.op.value for op in history})
    for k in kinds:
        pts = [(op.call, (op.return_ - op.call) * 1000) for op in history
               if op.op.value == k and op.status is Status.OK and op.return_ is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=4, label=f"{k} ok", alpha=0.6)
    timeout_ms = opts.client_timeout * 1000
    infos = [op.call for op in history if op.status is Status.INFO]
    fails = [(op.call, (op.return_ - op.call) * 1000) for op in history
             if op.status is Status.FAIL and op.return_ is not None]
    if infos:
        ax.scatter(infos, [timeout_ms] * len(infos), s=10, marker="x", color="red", label="info (timed out)")
    if fails:
        ax.scatter([f[0] for f in fails], [max(f[1], 1e-3) for f in fails], s=10, marker="+", color="black",
                   label="fail (definite)")
    for f in result.cluster.timeline.faults:
        ax.axvspan(f.start, f.stop if f.stop is not None else opts.duration, color="#fcbba1", alpha=0.25, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("simulated time of call (s)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(f"raftkv sim seed {opts.seed}: operation latency over time (shaded: faults active)")
    ax.set_xlim(0, opts.duration + opts.quiet)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
