"""What a timeline picture shows: which operations, in which lanes, over what time.

Shared by the PNG (``plot``) and the HTML page (``page``), drawn the way
Porcupine's visualization is: one lane per client, a bar from call to return,
the counterexample's operations highlighted. A history of 100k operations
cannot be read as one picture, so for a violation we show the operations on
the counterexample's keys in a window around it; otherwise the first
``max_ops`` operations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sim.check.result import CheckResult
from sim.history import Operation, Status


@dataclass(frozen=True, slots=True)
class Bar:
    op: Operation
    lane: int
    start: float
    end: float  # the window's end for an info op
    open_ended: bool  # info: may take effect any time after call
    highlighted: bool  # part of the counterexample


@dataclass(frozen=True, slots=True)
class Timeline:
    bars: tuple[Bar, ...]
    lanes: tuple[int, ...]  # client id of each lane
    start: float
    end: float
    title: str


def layout(ops: Sequence[Operation], result: CheckResult | None, *, max_ops: int = 300) -> Timeline:
    """Choose and place the bars."""
    cx = result.counterexample if result is not None else None
    chosen: list[Operation]
    if cx is not None and cx.ops:
        marked = {op.index for op in cx.ops}
        keys = set(cx.keys)
        lo = min(op.call for op in cx.ops)
        hi = max((op.end for op in cx.ops if op.return_ is not None), default=lo)
        hi = max(hi, max(op.call for op in cx.ops))
        margin = max((hi - lo) * 0.5, 1e-6)
        lo, hi = lo - margin, hi + margin
        nearby = [
            op
            for op in ops
            if op.status is not Status.FAIL
            and (not keys or keys.intersection(op.keys()))
            and op.call <= hi
            and op.end >= lo
        ]
        centre = (lo + hi) / 2
        nearby.sort(key=lambda op: (op.index not in marked, abs(op.call - centre)))
        chosen = sorted(nearby[:max_ops], key=lambda op: op.index)
        ids = {op.index for op in chosen}
        chosen += [op for op in cx.ops if op.index not in ids]
        title = f"counterexample on {', '.join(cx.keys) or 'the register'}: {len(cx.ops)} operations highlighted"
    else:
        marked = set()
        chosen = [op for op in ops if op.status is not Status.FAIL][:max_ops]
        title = f"first {len(chosen)} operations" if len(ops) > len(chosen) else f"{len(chosen)} operations"
    if result is not None:
        title = f"{result.verdict_text} — {title}"
    if not chosen:
        return Timeline((), (), 0.0, 1.0, title)
    start = min(op.call for op in chosen)
    finite_ends = [op.end for op in chosen if op.return_ is not None]
    end = max([*finite_ends, *(op.call for op in chosen)])
    pad = max((end - start) * 0.05, 1e-6)
    end += pad
    lanes = tuple(sorted({op.client for op in chosen}))
    lane_of = {c: i for i, c in enumerate(lanes)}
    bars = tuple(
        Bar(
            op=op,
            lane=lane_of[op.client],
            start=op.call,
            end=end if math.isinf(op.end) else op.end,
            open_ended=op.return_ is None,
            highlighted=op.index in marked,
        )
        for op in sorted(chosen, key=lambda o: o.index)
    )
    return Timeline(bars, lanes, start - pad, end, title)
