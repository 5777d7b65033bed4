"""Where a simulation's wall time goes, by layer: ``python -m sim bench --profile``.

Why: the simulator's speed is bounded by the work it simulates, and deciding
what to optimise needs the split between the core (kv: Raft, the state
machine, the Member) and the world around it (sim: network, disk, clients,
checks; simpy's event loop). cProfile's self time of every function is
summed by the layer its file belongs to. cProfile slows Python calls down
(roughly 2x here), evenly enough that the shares, not the seconds, are the
figure to read.
"""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

# Layers in report order; a function's file decides its layer (first match wins).
LAYERS: tuple[tuple[str, str], ...] = (
    ("kv/raft/invariants", "kv.raft.invariants: the in-run Raft safety checks"),
    ("kv/raft", "kv.raft: the Raft protocol"),
    ("kv/", "kv: member, state machine, MVCC, leases, watches, codec"),
    ("sim/check", "sim.check: the linearizability checker"),
    ("sim/", "sim: network, disk, clients, nemesis, in-run checks, history"),
    ("simpy/", "simpy: the event loop"),
)
OTHER = "other: the standard library and builtins"


@dataclass(frozen=True, slots=True)
class LayerTime:
    layer: str
    seconds: float
    share: float


@dataclass(frozen=True, slots=True)
class Profile:
    total: float  # seconds of self time, all functions
    layers: tuple[LayerTime, ...]
    top: tuple[tuple[str, float], ...]  # (function, self seconds), the costliest first


def layer_of(filename: str) -> str:
    path = PurePath(filename).as_posix()
    for marker, name in LAYERS:
        if f"/{marker}" in path or path.startswith(marker):
            return name
    return OTHER


def _short(filename: str) -> str:
    """A file name as a reader knows it: from the package on (kv/raft/node.py, simpy/core.py)."""
    path = PurePath(filename).as_posix()
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[1]
    for marker in ("/kv/", "/sim/"):
        if marker in path:
            return marker[1:] + path.rsplit(marker, 1)[1]
    return PurePath(path).name


def profile(fn: Callable[[], Any], top: int = 15) -> Profile:
    """Run `fn` under cProfile; self time summed per layer, and the `top` costliest functions."""
    prof = cProfile.Profile()
    prof.runcall(fn)
    stats: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    by_layer: dict[str, float] = {}
    funcs: list[tuple[str, float]] = []
    for (filename, line, name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        layer = layer_of(filename)
        by_layer[layer] = by_layer.get(layer, 0.0) + tottime
        funcs.append((f"{name} ({_short(filename)}:{line})", tottime))
    total = sum(by_layer.values()) or 1.0
    order = [name for _, name in LAYERS] + [OTHER]
    layers = tuple(LayerTime(name, by_layer.get(name, 0.0), by_layer.get(name, 0.0) / total) for name in order)
    funcs.sort(key=lambda f: -f[1])
    return Profile(total, layers, tuple(funcs[:top]))


def render(p: Profile) -> str:
    lines = [f"self time under cProfile: {p.total:.2f} s", "", f"{'layer':62} {'s':>6} {'share':>6}"]
    for lt in p.layers:
        lines.append(f"{lt.layer:62} {lt.seconds:6.2f} {lt.share:6.1%}")
    lines += ["", "costliest functions (self time):"]
    for name, secs in p.top:
        lines.append(f"  {secs:6.3f} s  {name}")
    return "\n".join(lines)
