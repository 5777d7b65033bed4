"""Violations visible without any search: reads of values that were never there.

A read of value v needs some write of v that it does not precede. If no
operation ever wrote v, or every write of v was called after the read had
returned, no order can work, whatever else the history holds. Checking this
first costs one pass, and it is the most common shape of a real bug (a stale
or invented read), so the answer comes at once with a two- or three-line
counterexample instead of after an exponential search.

The fragment returned (the read and the writes of its value) is itself not
linearizable, and every linearization of the whole history would restrict to
one of it, so it is a faithful counterexample (see ``minimize``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sim.check.model import external_reads, external_writes
from sim.history import Operation, describe_call


@dataclass(frozen=True, slots=True)
class Refutation:
    """Why ``ops`` cannot be linearized, in one sentence."""

    reason: str
    ops: tuple[Operation, ...]


def unwritten_read(ops: Sequence[Operation]) -> Refutation | None:
    """The first read whose value no write could have supplied, if any."""
    writers: dict[tuple[str, str | None], list[Operation]] = defaultdict(list)
    for op in ops:
        for kv in external_writes(op):
            writers[kv].append(op)
    for op in ops:
        for key, value in external_reads(op):
            if value is None:
                continue  # every key starts absent
            candidates = [w for w in writers.get((key, value), ()) if w is not op]
            if not candidates:
                return Refutation(f"{describe_call(op)} observes {key}={value}, which was never written", (op,))
            if all(w.call > op.end for w in candidates):
                return Refutation(
                    f"{describe_call(op)} observes {key}={value}, but every write of it "
                    "was called after that operation returned",
                    tuple(sorted((op, *candidates), key=lambda o: o.index)),
                )
    return None
