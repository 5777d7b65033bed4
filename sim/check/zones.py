"""Polynomial-time linearizability of a register whose written values are unique.

When every write stores a distinct value, each read names the one write it
read from (the "read-mapping" of Gibbons & Korach, "Testing shared memories",
SIAM J. Computing 26(4), 1997). The search then collapses: group each write
with the reads of its value into a *cluster*. The value must be in the
register at every linearization point of its cluster, so

* the write takes effect no later than the earliest return in the cluster
  (``low``), and the last read no earlier than the latest call (``high``);
* if ``low < high`` the value must stay in place across the whole span
  [low, high]: a *forward zone*;
* otherwise every op of the cluster can be linearized together at one
  instant of [high, low]: a *backward zone*.

Gibbons & Korach show the history is linearizable iff no two forward zones
overlap and no backward zone lies inside a forward zone (and no read precedes
its write). Overlap is strict on both ends here, because intervals are closed
and operations may share an instant. That is two sorts and a scan, O(n log n),
where the Wing & Gong search is exponential in the number of concurrent ops:
this is what decides a single key with 50 clients and many timeouts.

An info write that some read observed certainly happened, at an instant after
its call: it is a write with return at infinity. The initial absent value is a
cluster whose write happened at minus infinity.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sim.check.model import external_reads, external_writes
from sim.check.refute import Refutation
from sim.history import Operation, OpKind, Status, describe_call


@dataclass(frozen=True, slots=True)
class Zone:
    value: str | None
    low: float  # earliest return of the cluster
    high: float  # latest call of the cluster
    ops: tuple[Operation, ...]

    @property
    def forward(self) -> bool:
        return self.low < self.high


def applicable(ops: Sequence[Operation]) -> bool:
    """True for ok gets and ok/info puts of one key, every put value distinct."""
    key: str | None = None
    seen: set[str] = set()
    for op in ops:
        if op.op is OpKind.GET:
            if op.status is not Status.OK:
                return False
        elif op.op is OpKind.PUT:
            assert isinstance(op.value, str)
            if op.value in seen:
                return False
            seen.add(op.value)
        else:
            return False
        if key is None:
            key = op.key
        elif op.key != key:
            return False
    return True


def zones(ops: Sequence[Operation]) -> list[Zone] | Refutation:
    """The zone of every cluster, or a refutation if a read has no usable write."""
    writer: dict[str | None, Operation] = {}
    readers: dict[str | None, list[Operation]] = {None: []}
    for op in ops:
        if op.op is OpKind.PUT:
            assert isinstance(op.value, str)
            writer[op.value] = op
            readers.setdefault(op.value, [])
        else:
            assert not isinstance(op.output, (bool, tuple))
            readers.setdefault(op.output, []).append(op)
    out: list[Zone] = []
    for value, reads in readers.items():
        if value is None:
            if reads:  # the initial write sits at minus infinity
                out.append(Zone(None, -math.inf, max(r.call for r in reads), tuple(reads)))
            continue
        w = writer.get(value)
        if w is None:
            return Refutation(f"{describe_call(reads[0])} reads a value that was never written", (reads[0],))
        for r in reads:
            if r.end < w.call:
                return Refutation(
                    f"{describe_call(r)} returned before the only write of its value was called", (w, r)
                )
        cluster = (w, *reads)
        out.append(Zone(value, min(o.end for o in cluster), max(o.call for o in cluster), cluster))
    return out


def zone_check(ops: Sequence[Operation]) -> Refutation | None:
    """None if linearizable, else the two clusters that cannot both fit."""
    found = zones(ops)
    if isinstance(found, Refutation):
        return found
    forward = sorted((z for z in found if z.forward), key=lambda z: z.low)
    widest: Zone | None = None
    for z in forward:
        if widest is not None and z.low < widest.high:
            return Refutation(
                f"the values {_show(widest.value)} and {_show(z.value)} must each stay in place over "
                "overlapping spans of time (each is read after the other must have been written)",
                _merge(widest, z),
            )
        if widest is None or z.high > widest.high:
            widest = z
    lows = [z.low for z in forward]
    for b in found:
        if b.forward:
            continue
        i = bisect.bisect_left(lows, b.high) - 1
        if i >= 0 and b.low < forward[i].high:
            f = forward[i]
            return Refutation(
                f"{_show(b.value)} must be written and read inside the span where "
                f"{_show(f.value)} must stay in place",
                _merge(f, b),
            )
    return None


def _show(value: str | None) -> str:
    return "absent" if value is None else repr(value)


def _merge(a: Zone, b: Zone) -> tuple[Operation, ...]:
    return tuple(sorted({op.index: op for op in (*a.ops, *b.ops)}.values(), key=lambda o: o.index))


def refute_unique_values(ops: Sequence[Operation]) -> Refutation | None:
    """A sound, incomplete zone check for components with cas, delete or txn.

    For a value v written exactly once to key k, the Gibbons & Korach argument
    still holds whatever else the history does: v must be in place over its
    forward zone, since nothing can write it again. So two such forward zones
    on one key may not overlap, and no operation that certainly writes k (an
    ok put, delete, matched cas or writing txn) may lie strictly inside one.
    Finding either refutes the history at once; finding neither proves
    nothing, and the search decides.
    """
    writers: dict[tuple[str, str | None], list[Operation]] = {}
    observers: dict[tuple[str, str | None], list[Operation]] = {}
    for op in ops:
        for kv in external_writes(op):
            writers.setdefault(kv, []).append(op)
        for kv in external_reads(op):
            observers.setdefault(kv, []).append(op)
    by_key: dict[str, list[Zone]] = {}
    for (key, value), seen in observers.items():
        ws = writers.get((key, value), [])
        if value is None or len(ws) != 1:
            continue
        cluster = (ws[0], *(o for o in seen if o is not ws[0]))
        by_key.setdefault(key, []).append(
            Zone(value, min(o.end for o in cluster), max(o.call for o in cluster), cluster)
        )
    for key, found in by_key.items():
        forward = sorted((z for z in found if z.forward), key=lambda z: z.low)
        widest: Zone | None = None
        for z in forward:
            if widest is not None and z.low < widest.high:
                return Refutation(
                    f"{key}={_show(widest.value)} and {key}={_show(z.value)}, each written once, must each "
                    "stay in place over overlapping spans of time",
                    _merge(widest, z),
                )
            if widest is None or z.high > widest.high:
                widest = z
        if not forward:
            continue
        lows = [z.low for z in forward]
        for op in ops:
            if op.status is not Status.OK or not any(k == key for k, _ in external_writes(op)):
                continue
            i = bisect.bisect_left(lows, op.call) - 1
            if i >= 0 and op.end < forward[i].high:
                f = forward[i]
                return Refutation(
                    f"{describe_call(op)} certainly overwrites {key} while {key}={_show(f.value)}, "
                    "written only once, must stay in place",
                    tuple(sorted({o.index: o for o in (*f.ops, op)}.values(), key=lambda o: o.index)),
                )
    return None
