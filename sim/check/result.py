"""What every checker returns: a verdict, what it cost, and what went wrong.

The linearizability, watch, lock and lease checkers all answer with one
:class:`CheckResult`, printed the same way (:func:`render_text`) and encoded
as the same one-line JSON object (:meth:`CheckResult.to_json`), so the CLI,
the simulator and the real cluster's fault tests treat them alike.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sim.history import Operation, describe_call, operation_to_dict


class CheckKind(enum.Enum):
    LINEARIZABILITY = "linearizability"
    WATCH = "watch"
    LOCK = "lock"
    LEASE = "lease"


class Verdict(enum.Enum):
    """The three answers; ``UNKNOWN`` means "ran out of time", never "probably fine"."""

    OK = "ok"
    VIOLATION = "violation"
    UNKNOWN = "unknown"

    def text(self, kind: CheckKind) -> str:
        """``linearizable`` / ``not linearizable`` for histories, ``valid`` / ``invalid`` otherwise."""
        if self is Verdict.UNKNOWN:
            return "unknown"
        if kind is CheckKind.LINEARIZABILITY:
            return "linearizable" if self is Verdict.OK else "not linearizable"
        return "valid" if self is Verdict.OK else "invalid"

    @property
    def exit_status(self) -> int:
        """The CLI's exit status: 0 ok, 1 violation, 2 unknown (3 is bad input)."""
        return {Verdict.OK: 0, Verdict.VIOLATION: 1, Verdict.UNKNOWN: 2}[self]


@dataclass(frozen=True, slots=True)
class Counterexample:
    """The smallest failing fragment of a non-linearizable history.

    ``keys``: the component (one key unless txns tie several together).
    ``ops``: a sub-history that on its own cannot be linearized, and whose
    non-linearizability implies the whole history's (see ``minimize``).
    ``prefix``: the longest sequence of those ops the search could linearize,
    in linearization order (Porcupine's "partial linearization"); the ops of
    ``ops`` not in ``prefix`` are the ones that cannot be placed after it.
    ``reason``: one sentence on why, e.g. "get(x) -> v3 reads a value never written".
    ``minimal``: False when minimisation stopped at its time budget.
    """

    keys: tuple[str, ...]
    ops: tuple[Operation, ...]
    prefix: tuple[Operation, ...]
    reason: str
    minimal: bool = True

    def stuck(self) -> tuple[Operation, ...]:
        placed = {op.index for op in self.prefix}
        return tuple(op for op in self.ops if op.index not in placed)

    def to_dict(self) -> dict[str, Any]:
        def line(op: Operation) -> dict[str, Any]:
            return {"line": op.line, **operation_to_dict(op)}

        return {
            "keys": list(self.keys),
            "reason": self.reason,
            "minimal": self.minimal,
            "ops": [line(op) for op in self.ops],
            "linearizable_prefix": [line(op) for op in self.prefix],
            "cannot_be_ordered": [line(op) for op in self.stuck()],
        }


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken property found by the watch, lock or lease checker.

    ``records`` are the offending input lines as JSON objects (each with its
    ``line`` number), so the report points straight into the file.
    """

    reason: str
    key: str | None = None
    records: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "key": self.key, "records": [dict(r) for r in self.records]}


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer of any checker.

    ``explored``: for linearizability, the search configurations visited
    (Lowe's (linearized set, state) pairs) plus one per operation decided by
    the polynomial checks; for the other checkers, the records examined.
    ``components``: independent parts checked (keys or key groups; watchers;
    locks; leases).
    """

    kind: CheckKind
    verdict: Verdict
    seconds: float
    explored: int
    components: int = 0
    counterexample: Counterexample | None = None
    violations: tuple[Violation, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def verdict_text(self) -> str:
        return self.verdict.text(self.kind)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "verdict": self.verdict_text,
            "seconds": round(self.seconds, 6),
            "explored": self.explored,
            "components": self.components,
        }
        if self.counterexample is not None:
            out["fragment"] = self.counterexample.to_dict()
        if self.violations:
            out["violations"] = [v.to_dict() for v in self.violations]
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def to_json(self) -> str:
        """One JSON object on one line."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


def render_text(result: CheckResult, *, max_prefix: int = 12) -> str:
    """A readable multi-line report."""
    lines = [
        f"{result.kind.value}: {result.verdict_text} "
        f"({result.seconds:.3f} s, {result.explored} explored, {result.components} components)"
    ]
    lines += [f"  note: {n}" for n in result.notes]
    cx = result.counterexample
    if cx is not None:
        keys = ", ".join(cx.keys) if cx.keys else "(register)"
        lines.append(f"counterexample on key{'s' if len(cx.keys) > 1 else ''} {keys}: {cx.reason}")
        lines.append(f"  the {len(cx.ops)} operations that cannot be linearized together"
                     f"{'' if cx.minimal else ' (minimisation stopped at its time budget)'}:")
        for op in cx.ops:
            where = f"line {op.line}" if op.line is not None else f"op {op.index}"
            lines.append(f"    {where:>10}  {op.describe()}")
        shown = cx.prefix[-max_prefix:]
        lines.append(f"  longest linearizable prefix ({len(cx.prefix)} ops"
                     f"{', last ' + str(len(shown)) if len(shown) < len(cx.prefix) else ''}):")
        for op in shown:
            lines.append(f"    {describe_call(op)}")
        stuck = cx.stuck()
        if stuck:
            lines.append("  after which none of these can be placed: "
                         + "; ".join(f"c{op.client} {describe_call(op)}" for op in stuck))
    for v in result.violations:
        lines.append(f"violation{' on ' + v.key if v.key is not None else ''}: {v.reason}")
        for r in v.records:
            lines.append(f"    {json.dumps(dict(r), separators=(', ', ': '))}")
    return "\n".join(lines)
