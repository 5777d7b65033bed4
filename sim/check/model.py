"""The sequential specification the checkers linearize against.

A model here is a step function per operation: given the state of the keys an
operation's component owns, return the state after it, or :data:`ILLEGAL` when
the operation could not have returned what it returned from that state. This
is the "sequential specification" of Herlihy & Wing and the ``Step`` function
of Porcupine's models; compiling each operation into a closure once keeps the
search loop free of dispatch on op kinds.

Two shapes of state:

* a component with one key holds the value itself (``str`` or None for
  absent): the register of Knossos's ``cas-register``, and by far the common
  case after per-key decomposition;
* a component with several keys (tied together by txns) holds a tuple of
  values indexed by the component's key slots.

An ``info`` operation's output is unknown, so any output is legal: its step
only applies its effect (a cas applies ``new`` if ``expect`` matches, else
changes nothing, which is the same as "it took effect and returned false").
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Set
from typing import Final, TypeAlias

from sim.history import CasValue, MicroKind, MicroOp, Operation, OpKind, Status


class ModelKind(enum.Enum):
    """``kv``: every key its own register, txns across keys; ``register``: one register."""

    KV = "kv"
    REGISTER = "register"


class _Illegal:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ILLEGAL"


ILLEGAL: Final = _Illegal()


class _Unobserved:
    """The value of a key after a write whose value no operation ever observes.

    Every such value behaves the same for all later operations (it equals no
    output and no cas expectation), so the search may treat them as one state:
    configurations that differ only in which unobserved value is current are
    merged in Lowe's cache, which is where most of the search space goes.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNOBSERVED"


UNOBSERVED: Final = _Unobserved()

State: TypeAlias = "str | None | tuple[str | None, ...]"
Step: TypeAlias = Callable[[State], "State | _Illegal"]


def compile_step(
    op: Operation, slots: Mapping[str, int] | None, observed: Set[tuple[str, str | None]] | None = None
) -> Step:
    """The step function of ``op``; ``slots`` None means a one-key (scalar) state.

    With ``observed`` (every exact (key, value) observation of the component),
    writes of values outside it store :data:`UNOBSERVED` instead.
    """

    def canon(key: str, value: str | None) -> str | None:
        if observed is None or value is None or (key, value) in observed:
            return value
        return UNOBSERVED  # type: ignore[return-value]

    if op.op is OpKind.TXN:
        assert isinstance(op.value, tuple)
        micro = tuple(
            MicroOp(m.op, m.key, canon(m.key, m.value)) if m.op is MicroKind.PUT else m for m in op.value
        )
        return _compile_txn(op, micro, slots)
    if slots is not None:
        # A single-key op inside a multi-key component: lift the scalar step.
        assert op.key is not None
        inner = compile_step(op, None, observed)
        i = slots[op.key]

        def lifted(state: State) -> State | _Illegal:
            assert isinstance(state, tuple)
            after = inner(state[i])
            if after is ILLEGAL:
                return ILLEGAL
            if after == state[i]:
                return state
            return state[:i] + (after,) + state[i + 1 :]  # type: ignore[operator]

        return lifted
    info = op.status is Status.INFO
    if op.op is OpKind.GET:
        expected = op.output

        def get(state: State) -> State | _Illegal:
            return state if info or state == expected else ILLEGAL

        return get
    if op.op is OpKind.PUT:
        assert isinstance(op.value, str) and op.key is not None
        written = canon(op.key, op.value)

        def put(state: State) -> State | _Illegal:
            return written  # type: ignore[return-value]

        return put
    if op.op is OpKind.DELETE:

        def delete(state: State) -> State | _Illegal:
            return None

        return delete
    assert isinstance(op.value, CasValue)
    assert op.key is not None
    expect, new = op.value.expect, canon(op.key, op.value.new)
    if info:

        def cas_maybe(state: State) -> State | _Illegal:
            return new if state == expect else state

        return cas_maybe
    if op.output is True:

        def cas_ok(state: State) -> State | _Illegal:
            return new if state == expect else ILLEGAL

        return cas_ok

    def cas_refused(state: State) -> State | _Illegal:
        return state if state != expect else ILLEGAL

    return cas_refused


def _compile_txn(op: Operation, micro: tuple[MicroOp, ...], slots: Mapping[str, int] | None) -> Step:
    check_outputs = op.status is Status.OK
    outputs = op.output if isinstance(op.output, tuple) else (None,) * len(micro)
    if slots is None:
        # Every micro-op is on the component's single key.
        plan1 = [(m.op, m.value, o) for m, o in zip(micro, outputs)]

        def txn1(state: State) -> State | _Illegal:
            for kind, value, out in plan1:
                if kind is MicroKind.GET:
                    if check_outputs and state != out:
                        return ILLEGAL
                else:
                    state = value
            return state

        return txn1
    plan = [(m.op, slots[m.key], m.value, o) for m, o in zip(micro, outputs)]

    def txn(state: State) -> State | _Illegal:
        assert isinstance(state, tuple)
        values = list(state)
        for kind, i, value, out in plan:
            if kind is MicroKind.GET:
                if check_outputs and values[i] != out:
                    return ILLEGAL
            else:
                values[i] = value
        return tuple(values)

    return txn


def initial_state(slots: Mapping[str, int] | None) -> State:
    """Every key starts absent."""
    return None if slots is None else (None,) * len(slots)


def external_reads(op: Operation) -> list[tuple[str, str | None]]:
    """The (key, value) pairs ``op`` observed in the store, if it is ``ok``.

    A get observes its output; a cas that returned true observes ``expect``;
    a txn observes what its gets read of keys it had not yet written itself
    (a read of its own write says nothing about other operations).
    """
    if op.status is not Status.OK:
        return []
    if op.op is OpKind.GET:
        assert op.key is not None and not isinstance(op.output, (bool, tuple))
        return [(op.key, op.output)]
    if op.op is OpKind.CAS:
        assert isinstance(op.value, CasValue) and op.key is not None
        return [(op.key, op.value.expect)] if op.output is True else []
    if op.op is OpKind.TXN:
        assert isinstance(op.value, tuple) and isinstance(op.output, tuple)
        written: set[str] = set()
        seen = []
        for m, out in zip(op.value, op.output):
            if m.op is MicroKind.GET:
                if m.key not in written:
                    seen.append((m.key, out))
            else:
                written.add(m.key)
        return seen
    return []


def external_writes(op: Operation) -> list[tuple[str, str | None]]:
    """The (key, value) pairs ``op`` may leave in the store (None: deleted).

    Only a txn's last write of each key is visible to others. A cas that
    returned false wrote nothing; an info cas may have written ``new``.
    """
    if op.status is Status.FAIL:
        return []
    if op.op is OpKind.PUT:
        assert op.key is not None and isinstance(op.value, str)
        return [(op.key, op.value)]
    if op.op is OpKind.DELETE:
        assert op.key is not None
        return [(op.key, None)]
    if op.op is OpKind.CAS:
        assert isinstance(op.value, CasValue) and op.key is not None
        return [] if op.output is False else [(op.key, op.value.new)]
    if op.op is OpKind.TXN:
        assert isinstance(op.value, tuple)
        last: dict[str, str | None] = {}
        for m in op.value:
            if m.op is not MicroKind.GET:
                last[m.key] = m.value
        return list(last.items())
    return []


def observed_values(ops: Iterable[Operation]) -> set[tuple[str, str | None]]:
    """Every (key, value) some operation compares the store with.

    Reads of ok operations (a txn's reads of its own writes included), and
    the ``expect`` of every cas whatever its status (a refused or pending cas
    compares too).
    """
    seen: set[tuple[str, str | None]] = set()
    for op in ops:
        seen.update(external_reads(op))
        if op.op is OpKind.TXN and op.status is Status.OK:
            assert isinstance(op.value, tuple) and isinstance(op.output, tuple)
            seen.update((m.key, out) for m, out in zip(op.value, op.output) if m.op is MicroKind.GET)
        if op.op is OpKind.CAS and op.status is not Status.FAIL:
            assert isinstance(op.value, CasValue) and op.key is not None
            seen.add((op.key, op.value.expect))
    return seen


def is_read_only(op: Operation) -> bool:
    """An ok operation that cannot change the store: a get, a refused cas, a txn of gets."""
    if op.status is not Status.OK:
        return False
    if op.op is OpKind.GET:
        return True
    if op.op is OpKind.CAS:
        return op.output is False
    if op.op is OpKind.TXN:
        assert isinstance(op.value, tuple)
        return all(m.op is MicroKind.GET for m in op.value)
    return False


def is_refused_cas(op: Operation) -> bool:
    """An ok cas that returned false: it observed "the key does not hold expect"."""
    return op.op is OpKind.CAS and op.status is Status.OK and op.output is False


def has_effect(op: Operation) -> bool:
    """Whether ``op`` constrains or changes anything (a fail or an info read does not)."""
    if op.status is Status.FAIL:
        return False
    if op.status is Status.INFO:
        return bool(external_writes(op))
    return True
