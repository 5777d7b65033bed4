"""A reference checker too simple to be wrong: try every order.

It shares no code with ``sim.check``: its own reading of the key-value
semantics, no decomposition, no cache, no pruning. A history is linearizable
iff, for some subset of its info operations (the ones that happened) and some
permutation of those plus every ok operation, the permutation respects real
time (nothing is placed before an operation that returned before it was
called) and replaying it on an empty store reproduces every ok output.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from sim.history import CasValue, Operation, OpKind, Status

_REGISTER = "register"


def _replay(order: Sequence[Operation], register: bool) -> bool:
    store: dict[str, str | None] = {}
    for op in order:
        known = op.status is Status.OK

        def key(k: str | None) -> str:
            assert k is not None
            return _REGISTER if register else k

        if op.op is OpKind.GET:
            if known and store.get(key(op.key)) != op.output:
                return False
        elif op.op is OpKind.PUT:
            store[key(op.key)] = op.value  # type: ignore[assignment]
        elif op.op is OpKind.DELETE:
            store[key(op.key)] = None
        elif op.op is OpKind.CAS:
            assert isinstance(op.value, CasValue)
            matched = store.get(key(op.key)) == op.value.expect
            if known and matched != op.output:
                return False
            if matched:
                store[key(op.key)] = op.value.new
        else:
            assert isinstance(op.value, tuple)
            outputs = op.output if known else [None] * len(op.value)
            assert isinstance(outputs, (tuple, list))
            for m, out in zip(op.value, outputs):
                if m.op.value == "get":
                    if known and store.get(key(m.key)) != out:
                        return False
                else:
                    store[key(m.key)] = m.value
    return True


def _respects_real_time(order: Sequence[Operation]) -> bool:
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            if b.return_ is not None and b.return_ < a.call:
                return False
    return True


def brute_force_linearizable(ops: Sequence[Operation], *, register: bool = False) -> bool:
    ok = [op for op in ops if op.status is Status.OK]
    info = [op for op in ops if op.status is Status.INFO]
    for r in range(len(info) + 1):
        for happened in itertools.combinations(info, r):
            for order in itertools.permutations(ok + list(happened)):
                if _respects_real_time(order) and _replay(order, register):
                    return True
    return False
