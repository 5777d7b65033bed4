"""Cutting a history into independent parts, and dropping what cannot matter.

Per-key decomposition is P-compositionality (Horn & Kroening, "Faster
linearizability checking via P-compositionality", FORTE 2015), which for a
key-value store is Herlihy & Wing's locality theorem: a history of operations
on independent objects is linearizable iff each object's sub-history is. Each
key is an object; a txn touching several keys is one operation on their union,
so it ties them into one component (a union-find over keys).

Two reductions shrink each component before any search, both sound in both
directions (the reduced history is linearizable iff the original is):

* ``fail`` operations and ``info`` operations with no possible effect (an info
  get, an info txn of gets only) are dropped: they never happened, or
  happening changes nothing and their output is unknown.
* An ``info`` write whose value nobody could have observed is dropped. An info
  operation may take effect at any instant after its call, so placing it after
  every other operation is always allowed; conversely, take a linearization
  that includes it and delete it: the only operations whose outcome could
  change are those linearized between it and the next write of the same key,
  and those either read exactly its value (excluded by "nobody observed"), or
  are cas operations that returned false (excluded: we require none of those
  could follow it), or are info operations, which may simply not happen.
  Porcupine has no such rule and this is where it runs out of time: every
  pending write stays concurrent with the whole rest of the history.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sim.check.model import external_reads, external_writes, has_effect, is_refused_cas
from sim.history import CasValue, Operation, OpKind, Status


@dataclass(frozen=True, slots=True)
class Component:
    """Operations on ``keys`` (sorted) and on no other key, in history order."""

    keys: tuple[str, ...]
    ops: tuple[Operation, ...]


class _UnionFind:
    __slots__ = ("parent",)

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        parent = self.parent
        root = parent.setdefault(x, x)
        while root != parent[root]:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def decompose(ops: Iterable[Operation]) -> list[Component]:
    """Components of the operations that have an effect, ordered by first operation."""
    kept = [op for op in ops if has_effect(op)]
    uf = _UnionFind()
    for op in kept:
        keys = op.keys()
        uf.find(keys[0])
        for k in keys[1:]:
            uf.union(keys[0], k)
    groups: dict[str, list[Operation]] = defaultdict(list)
    members: dict[str, set[str]] = defaultdict(set)
    for op in kept:
        root = uf.find(op.keys()[0])
        groups[root].append(op)
        members[root].update(op.keys())
    return [Component(tuple(sorted(members[r])), tuple(g)) for r, g in groups.items()]


def observations(op: Operation) -> list[tuple[str, str | None]]:
    """Exact (key, value) observations, counting an info cas's ``expect``.

    An info cas that matched wrote ``new``; had the state been different it
    would have done nothing, so it depends on seeing ``expect`` exactly.
    """
    if op.status is Status.INFO and op.op is OpKind.CAS:
        assert isinstance(op.value, CasValue) and op.key is not None
        return [(op.key, op.value.expect)]
    return external_reads(op)


def drop_unobserved_info_writes(ops: Sequence[Operation]) -> tuple[tuple[Operation, ...], int]:
    """Drop info writes nobody could have observed (see the module docstring).

    Returns the kept operations and how many were dropped. An observer only
    counts if it could come after the write (it had not returned before the
    write was called); a refused cas on a key the write touches blocks the
    drop on the same condition.
    """
    # For each (key, value): the latest end of an operation observing it.
    last_observed: dict[tuple[str, str | None], float] = {}
    last_refusal: dict[str, float] = {}
    for op in ops:
        for kv in observations(op):
            if op.end > last_observed.get(kv, -math.inf):
                last_observed[kv] = op.end
        if is_refused_cas(op):
            assert op.key is not None
            if op.end > last_refusal.get(op.key, -math.inf):
                last_refusal[op.key] = op.end
    kept: list[Operation] = []
    dropped = 0
    for op in ops:
        if op.status is Status.INFO:
            writes = external_writes(op)
            unseen = all(
                last_observed.get(kv, -math.inf) < op.call and last_refusal.get(kv[0], -math.inf) < op.call
                for kv in writes
            )
            if unseen:
                dropped += 1
                continue
        kept.append(op)
    return tuple(kept), dropped
