"""``check``: is a kv history linearizable?

The pipeline, cheapest first, each step justified in its own module:

1. ``decompose``: drop fail and effect-free info ops; split by key, txns
   joining keys (P-compositionality, Horn & Kroening 2015).
2. per component, ``refute``: a read of a value never written, or written
   only after the read returned, is rejected at once;
3. ``decompose.drop_unobserved_info_writes``: info writes nobody could have
   seen are removed (they may be placed after everything);
4. ``zones``: if the component is gets and puts of unique values, decide it in
   O(n log n) (Gibbons & Korach 1997);
5. otherwise ``wgl``: the Wing & Gong / Lowe search with a capped cache, under
   the time limit.

A violating component decides the history (a linearization of the whole would
restrict to one of the component); it is then shrunk by ``minimize`` and its
longest partial linearization found. Running out of time is ``unknown``,
never a guess.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from sim.check import zones
from sim.check.decompose import Component, decompose, drop_unobserved_info_writes
from sim.check.minimize import close, ddmin
from sim.check.model import ModelKind
from sim.check.refute import Refutation, unwritten_read
from sim.check.result import CheckKind, CheckResult, Counterexample, Verdict
from sim.check.wgl import DEFAULT_CACHE_CAP, search
from sim.history import HistoryError, Operation, OpKind, read_history

DEFAULT_TIMEOUT = 60.0
# The key every operation is moved to under the register model.
REGISTER_KEY = "register"


class Method(enum.Enum):
    """Which step decided a component."""

    REFUTED = "refuted"
    ZONES = "zones"
    SEARCH = "search"


@dataclass(frozen=True, slots=True)
class ComponentDecision:
    verdict: Verdict
    explored: int
    method: Method
    refutation: Refutation | None = None
    dropped_info: int = 0
    cache_full: bool = False


def _slots(keys: Sequence[str]) -> dict[str, int] | None:
    return None if len(keys) <= 1 else {k: i for i, k in enumerate(keys)}


def decide_component(
    ops: Sequence[Operation],
    slots: Mapping[str, int] | None,
    *,
    deadline: float | None,
    cache_cap: int = DEFAULT_CACHE_CAP,
) -> ComponentDecision:
    """Steps 2-5 of the pipeline for one component."""
    refuted = unwritten_read(ops)
    if refuted is not None:
        return ComponentDecision(Verdict.VIOLATION, len(ops), Method.REFUTED, refuted)
    kept, dropped = drop_unobserved_info_writes(ops)
    if slots is None and zones.applicable(kept):
        refuted = zones.zone_check(kept)
        verdict = Verdict.OK if refuted is None else Verdict.VIOLATION
        return ComponentDecision(verdict, len(kept), Method.ZONES, refuted, dropped)
    refuted = zones.refute_unique_values(kept)
    if refuted is not None:
        closed = Refutation(refuted.reason, close(refuted.ops, kept))
        return ComponentDecision(Verdict.VIOLATION, len(kept), Method.ZONES, closed, dropped)
    outcome = search(kept, slots, deadline=deadline, cache_cap=cache_cap)
    return ComponentDecision(outcome.verdict, outcome.explored, Method.SEARCH, None, dropped, outcome.cache_full)


def _as_register(ops: Iterable[Operation]) -> list[Operation]:
    moved = []
    for op in ops:
        if op.op is OpKind.TXN:
            raise HistoryError("txn is not an operation of the register model (use --model kv)", op.line)
        moved.append(replace(op, key=REGISTER_KEY))
    return moved


def check(
    history: Iterable[Operation] | str | os.PathLike[str],
    *,
    model: ModelKind = ModelKind.KV,
    timeout: float | None = DEFAULT_TIMEOUT,
    cache_cap: int = DEFAULT_CACHE_CAP,
    minimize: bool = True,
    minimize_budget: float = 10.0,
) -> CheckResult:
    """Decide linearizability of a kv history (operations, or a JSONL path).

    ``timeout`` (seconds, None for none) bounds the decision; minimising a
    counterexample gets up to ``minimize_budget`` more. ``cache_cap`` bounds
    the search cache (configurations). Raises HistoryError for bad input.
    """
    started = time.perf_counter()
    deadline = None if timeout is None else time.monotonic() + timeout
    ops = read_history(history) if isinstance(history, (str, os.PathLike)) else list(history)
    originals = {op.index: op for op in ops}
    if model is ModelKind.REGISTER:
        ops = _as_register(ops)
    components = decompose(ops)
    explored = 0
    notes: list[str] = []
    counts = {m: 0 for m in Method}
    dropped = 0
    cache_full = False
    unknown: list[Component] = []
    violation: tuple[Component, ComponentDecision] | None = None

    # Cheap steps for every component first, so a violation anywhere is
    # found before any exponential search starts.
    hard: list[Component] = []
    for comp in components:
        d = decide_component(comp.ops, _slots(comp.keys), deadline=deadline, cache_cap=cache_cap) if _cheap(
            comp
        ) else None
        if d is None:
            hard.append(comp)
            continue
        explored += d.explored
        counts[d.method] += 1
        dropped += d.dropped_info
        if d.verdict is Verdict.VIOLATION:
            violation = (comp, d)
            break
    if violation is None:
        for comp in sorted(hard, key=lambda c: len(c.ops)):
            if deadline is not None and time.monotonic() > deadline:
                unknown.append(comp)
                continue
            d = decide_component(comp.ops, _slots(comp.keys), deadline=deadline, cache_cap=cache_cap)
            explored += d.explored
            counts[d.method] += 1
            dropped += d.dropped_info
            cache_full |= d.cache_full
            if d.verdict is Verdict.VIOLATION:
                violation = (comp, d)
                break
            if d.verdict is Verdict.UNKNOWN:
                unknown.append(comp)

    decided = ", ".join(f"{n} by {m.value}" for m, n in counts.items() if n)
    if decided:
        notes.append(f"components decided: {decided}")
    if dropped:
        notes.append(f"{dropped} info writes nobody could have observed were dropped")
    if cache_full:
        notes.append(f"the search cache reached its cap of {cache_cap} configurations")
    counterexample = None
    if violation is not None:
        verdict = Verdict.VIOLATION
        comp, d = violation
        counterexample = _counterexample(comp, d, cache_cap, minimize, minimize_budget, originals, model)
    elif unknown:
        verdict = Verdict.UNKNOWN
        biggest = max(unknown, key=lambda c: len(c.ops))
        notes.append(
            f"{len(unknown)} components undecided within {timeout} s "
            f"(largest: {len(biggest.ops)} ops on {', '.join(biggest.keys[:3])})"
        )
    else:
        verdict = Verdict.OK
    return CheckResult(
        kind=CheckKind.LINEARIZABILITY,
        verdict=verdict,
        seconds=time.perf_counter() - started,
        explored=explored,
        components=len(components),
        counterexample=counterexample,
        notes=tuple(notes),
    )


def _cheap(comp: Component) -> bool:
    """Whether the component can be decided without the exponential search."""
    if unwritten_read(comp.ops) is not None:
        return True
    kept, _ = drop_unobserved_info_writes(comp.ops)
    return len(comp.keys) == 1 and zones.applicable(kept)


def _counterexample(
    comp: Component,
    decision: ComponentDecision,
    cache_cap: int,
    minimize: bool,
    budget: float,
    originals: Mapping[int, Operation],
    model: ModelKind,
) -> Counterexample:
    slots = _slots(comp.keys)
    deadline = time.monotonic() + budget
    per_check = max(0.05, budget / 20)

    def decide(candidate: Sequence[Operation], limit: float) -> Verdict:
        dl = min(limit, time.monotonic() + per_check)
        return decide_component(candidate, slots, deadline=dl, cache_cap=cache_cap).verdict

    start: Sequence[Operation] = comp.ops
    if decision.refutation is not None and decide(decision.refutation.ops, deadline) is Verdict.VIOLATION:
        start = decision.refutation.ops
    else:
        start, _ = drop_unobserved_info_writes(comp.ops)
    if minimize:
        fragment, minimal = ddmin(start, decide, deadline)
    else:
        fragment, minimal = tuple(start), False
    # Porcupine-style partial linearization of the fragment: how far one gets.
    outcome = search(fragment, slots, deadline=max(deadline, time.monotonic() + 1.0), track_longest=True)
    prefix = tuple(fragment[i] for i in outcome.longest)
    reason = _reason(fragment, slots)
    if model is ModelKind.REGISTER:
        fragment = tuple(originals[op.index] for op in fragment)
        prefix = tuple(originals[op.index] for op in prefix)
    keys = () if model is ModelKind.REGISTER else tuple(sorted({k for op in fragment for k in op.keys()}))
    return Counterexample(keys=keys, ops=tuple(fragment), prefix=prefix, reason=reason, minimal=minimal)


def _reason(fragment: Sequence[Operation], slots: Mapping[str, int] | None) -> str:
    refuted = unwritten_read(fragment)
    if refuted is None and slots is None and zones.applicable(fragment):
        refuted = zones.zone_check(fragment)
    if refuted is None:
        refuted = zones.refute_unique_values(fragment)
    if refuted is not None:
        return refuted.reason
    return "no order of these operations respects both real time and the key-value semantics"


__all__ = ["DEFAULT_TIMEOUT", "check", "decide_component", "Method", "ComponentDecision", "REGISTER_KEY"]
