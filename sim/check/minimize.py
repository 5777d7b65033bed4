"""Shrinking a non-linearizable component to the few operations that matter.

Dropping operations from a history can make it *less* linearizable (drop the
write a read saw, and the read becomes impossible), so a sub-history that
fails on its own is not automatically evidence against the whole. We only
drop sets that keep it faithful: a sub-history S is *closed* when every exact
observation in S (a get's output, a matched cas's ``expect``, a txn's reads,
an info cas's ``expect``) keeps every write of that key and value, and a key
observed by a cas that returned false keeps all its writes. Then any
linearization of the whole history, restricted to S, is a linearization of S
(each observer's last preceding write is still there), so "S is not
linearizable" proves "the history is not linearizable".

The search for a small closed failing S is Zeller's ddmin (delta debugging,
TSE 2002) over chunks of operations, each removal extended to the observers it
would orphan. Each candidate is decided by the same pipeline as the checker
with a short time limit; an ``unknown`` counts as "keep". The whole thing
has a time budget and says when it stopped early.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sim.check.decompose import observations
from sim.check.model import external_writes, is_refused_cas
from sim.check.result import Verdict
from sim.history import Operation

Decide = Callable[[Sequence[Operation], float], Verdict]


def orphans(kept: Sequence[Operation], removed: set[int]) -> set[int]:
    """``removed`` grown until the rest is closed (indices are ``Operation.index``)."""
    removed = set(removed)
    by_index = {op.index: op for op in kept}
    while True:
        lost_values: set[tuple[str, str | None]] = set()
        lost_keys: set[str] = set()
        for i in removed:
            op = by_index.get(i)
            if op is None:
                continue
            for kv in external_writes(op):
                lost_values.add(kv)
                lost_keys.add(kv[0])
        grown = False
        for op in kept:
            if op.index in removed:
                continue
            orphaned = any(kv in lost_values for kv in observations(op)) or (
                is_refused_cas(op) and op.key in lost_keys
            )
            if orphaned:
                removed.add(op.index)
                grown = True
        if not grown:
            return removed


def close(fragment: Sequence[Operation], ops: Sequence[Operation]) -> tuple[Operation, ...]:
    """``fragment`` plus, from ``ops``, every write it needs to stay faithful (see above)."""
    chosen = {op.index: op for op in fragment}
    writers: dict[tuple[str, str | None], list[Operation]] = {}
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        for kv in external_writes(op):
            writers.setdefault(kv, []).append(op)
            by_key.setdefault(kv[0], []).append(op)
    todo = list(fragment)
    while todo:
        op = todo.pop()
        needed = [w for kv in observations(op) for w in writers.get(kv, ())]
        if is_refused_cas(op):
            assert op.key is not None
            needed += by_key.get(op.key, [])
        for w in needed:
            if w.index not in chosen:
                chosen[w.index] = w
                todo.append(w)
    return tuple(sorted(chosen.values(), key=lambda o: o.index))


def ddmin(ops: Sequence[Operation], decide: Decide, deadline: float) -> tuple[tuple[Operation, ...], bool]:
    """A 1-minimal closed failing subset of ``ops`` (which must fail), and whether minimal.

    ``decide(candidate, deadline)`` answers for one candidate.
    """
    current = list(ops)
    granularity = 2
    while len(current) >= 2:
        if time.monotonic() > deadline:
            return tuple(current), False
        size = max(1, -(-len(current) // granularity))
        shrunk = False
        # Later operations first: a violation is usually found early and the
        # tail of the history is irrelevant to it.
        starts = list(range(0, len(current), size))[::-1]
        for start in starts:
            if time.monotonic() > deadline:
                return tuple(current), False
            chunk = {op.index for op in current[start : start + size]}
            removed = orphans(current, chunk)
            candidate = [op for op in current if op.index not in removed]
            if candidate and decide(candidate, deadline) is Verdict.VIOLATION:
                current = candidate
                granularity = max(granularity - 1, 2)
                shrunk = True
                break
        if not shrunk:
            if size == 1:
                break
            granularity = min(len(current), granularity * 2)
    return tuple(current), True
