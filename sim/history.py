"""The history format: what a client saw, one operation per line.

This module is the one place the format is written down (DESIGN.md, "Shared
formats"). The simulator writes it, the real cluster's fault tests write it,
and ``sim.check`` reads it; users may write it by hand.

Kv history (JSON Lines)
=======================

Each line is one JSON object describing one client operation::

    {"client": 3, "op": "put", "key": "k1", "value": "v7", "output": null,
     "call": 1.234567, "return": 1.240001, "status": "ok"}

Lines appear in order of ``call`` (ties in any order). Fields:

``client``
    An integer naming the client process. A client has at most one operation
    outstanding: its next operation is called no earlier than its previous one
    returned. A client whose operation ended ``info`` never appears again; it
    carries on under a fresh id (the convention Jepsen uses, because the old
    operation may still take effect at any later moment).
``op``, ``key``, ``value``, ``output``
    ``get``: ``value`` is null; ``output`` is the string read, or null when
    the key was absent.
    ``put``: ``value`` is the string stored; ``output`` is null.
    ``delete``: ``value`` and ``output`` are null.
    ``cas``: ``value`` is ``{"expect": E, "new": N}``; E null means "only if
    the key is absent". ``output`` is ``true`` when the key held E and now
    holds N, ``false`` when it did not hold E (nothing changed). Both are
    definite observations, so both have status ``ok``.
    ``txn``: ``value`` is a list of micro-operations
    ``{"op": "get"|"put"|"delete", "key": K, "value": V}`` (V as for the
    top-level op of that name) applied atomically, in order; ``output`` is the
    list of their outputs (the string or null read by each get, null for each
    put and delete). The top-level ``key`` of a txn may be null.
    Keys and values are strings. Every key starts absent.
``call``, ``return``
    Seconds, as numbers. The operation took effect at one instant of the
    closed interval [call, return]. Operation a precedes b in real time only
    when a's return is strictly smaller than b's call; otherwise they are
    concurrent.
``status``
    ``ok``: it happened, with this output. ``fail``: it certainly did not
    happen (say, rejected before it was proposed); the checker ignores it.
    ``info``: unknown (the client timed out or crashed): ``return`` and
    ``output`` are null, and the operation took effect at one instant after
    ``call``, or never.

Extra fields are allowed and ignored, so a producer may add its own (a node
id, a request id). :func:`read_history` checks every rule above and raises
:class:`HistoryError` naming the first bad line.

Watch, lock and lease histories
===============================

The sibling checkers read their own JSON Lines files; each format is specified
in full in its checker's module docstring. In short:

* watch (``sim.check.watch``): ``{"record": "commit", "revision": R,
  "events": [...]}`` lines give the committed revisions, and ``{"record":
  "response", "watcher": W, "key": K, "range_end": E, "start_revision": S,
  "events": [...], "time": T}`` lines give what each watcher received; an
  event is ``{"type": "PUT"|"DELETE", "key", "value", "mod_revision",
  "create_revision", "version"}`` as in etcd's mvccpb.Event.
* lock (``sim.check.lock``): ``acquire``, ``write`` and ``release``
  operations of clients on a named lock, each carrying the lock key's
  ``create_revision`` (the fencing token), with ``call``, ``return`` and
  ``status`` as above.
* lease (``sim.check.lease``): ``grant``, ``keepalive``, ``revoke``, ``put``
  (with a ``lease``), ``delete`` and ``get`` operations of clients, with
  ``call``, ``return`` and ``status`` as above, plus ``expire`` lines written
  by whoever knows when the leader's lessor expired a lease (the simulator).

All of them share this module's rules for ``call``, ``return`` and
``status``, and its :class:`HistoryError` for bad input.
"""

from __future__ import annotations

import enum
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO, TypeAlias

from kv.errors import GrpcCode, RaftKVError


class HistoryError(RaftKVError, ValueError):
    """A history (or watch/lock/lease) file broke a rule of its format.

    ``line`` is the 1-based line number of the offending line (None when the
    problem is not one line's, e.g. an empty file); the text always names it.
    """

    message = "history: bad input"
    grpc_code = GrpcCode.INVALID_ARGUMENT

    def __init__(self, detail: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {detail}" if line is not None else detail)


class OpKind(enum.Enum):
    GET = "get"
    PUT = "put"
    DELETE = "delete"
    CAS = "cas"
    TXN = "txn"


class MicroKind(enum.Enum):
    """What a txn may contain: plain reads and writes, no nested cas or txn."""

    GET = "get"
    PUT = "put"
    DELETE = "delete"


class Status(enum.Enum):
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class CasValue:
    """The input of a cas: store ``new`` only if the key holds ``expect`` (None: absent)."""

    expect: str | None
    new: str


@dataclass(frozen=True, slots=True)
class MicroOp:
    """One step of a txn: ``value`` is the string a put stores, else None."""

    op: MicroKind
    key: str
    value: str | None


Value: TypeAlias = str | CasValue | tuple[MicroOp, ...] | None
Output: TypeAlias = str | bool | tuple[str | None, ...] | None


@dataclass(frozen=True, slots=True)
class Operation:
    """One line of a kv history.

    ``index`` is the operation's position in its history (0-based); ``line``
    is the line it was read from (1-based), None when built in memory.
    ``return_`` is None exactly when the status is ``info`` (its return is
    infinitely late).
    """

    index: int
    client: int
    op: OpKind
    key: str | None
    value: Value
    output: Output
    call: float
    return_: float | None
    status: Status
    line: int | None = None

    @property
    def end(self) -> float:
        """The latest instant the operation may take effect (infinity for info)."""
        return math.inf if self.return_ is None else self.return_

    def keys(self) -> tuple[str, ...]:
        """Every key the operation touches, in first-mention order."""
        if self.op is OpKind.TXN:
            assert isinstance(self.value, tuple)
            return tuple(dict.fromkeys(m.key for m in self.value))
        assert self.key is not None
        return (self.key,)

    def describe(self) -> str:
        """A short human reading, e.g. ``c3 put(k1, v7) [1.234, 1.240] ok``."""
        ret = "∞" if self.return_ is None else f"{self.return_:.6g}"
        return f"c{self.client} {describe_call(self)} [{self.call:.6g}, {ret}] {self.status.value}"


def describe_call(op: Operation) -> str:
    """The operation as an expression with its result, e.g. ``get(k1) -> v7``."""

    def show(v: object) -> str:
        return "absent" if v is None else str(v)

    if op.op is OpKind.GET:
        text = f"get({op.key})"
        return text if op.status is not Status.OK else f"{text} -> {show(op.output)}"
    if op.op is OpKind.PUT:
        return f"put({op.key}, {op.value})"
    if op.op is OpKind.DELETE:
        return f"delete({op.key})"
    if op.op is OpKind.CAS:
        assert isinstance(op.value, CasValue)
        text = f"cas({op.key}, {show(op.value.expect)} -> {op.value.new})"
        return text if op.status is not Status.OK else f"{text} -> {str(op.output).lower()}"
    assert isinstance(op.value, tuple)
    outs: Sequence[str | None] = op.output if isinstance(op.output, tuple) else ()
    parts = []
    for i, m in enumerate(op.value):
        if m.op is MicroKind.GET:
            parts.append(f"get({m.key})" + (f"->{show(outs[i])}" if outs else ""))
        elif m.op is MicroKind.PUT:
            parts.append(f"put({m.key}, {m.value})")
        else:
            parts.append(f"delete({m.key})")
    return "txn[" + "; ".join(parts) + "]"


# --- decoding --------------------------------------------------------------------

_REQUIRED = ("client", "op", "key", "value", "output", "call", "return", "status")


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _str_or_null(v: object) -> bool:
    return v is None or isinstance(v, str)


def _parse_micro_ops(raw: object, line: int | None) -> tuple[MicroOp, ...]:
    if not isinstance(raw, list) or not raw:
        raise HistoryError("txn value must be a non-empty list of micro-ops", line)
    micro = []
    for i, m in enumerate(raw):
        where = f"txn micro-op {i}"
        if not isinstance(m, dict):
            raise HistoryError(f"{where} must be an object", line)
        for f in ("op", "key", "value"):
            if f not in m:
                raise HistoryError(f"{where} is missing field {f!r}", line)
        try:
            kind = MicroKind(m["op"])
        except ValueError:
            raise HistoryError(f"{where} has unknown op {m['op']!r} (get, put or delete)", line) from None
        if not isinstance(m["key"], str):
            raise HistoryError(f"{where} key must be a string", line)
        if kind is MicroKind.PUT and not isinstance(m["value"], str):
            raise HistoryError(f"{where} is a put whose value must be a string", line)
        if kind is not MicroKind.PUT and m["value"] is not None:
            raise HistoryError(f"{where} is a {kind.value} whose value must be null", line)
        micro.append(MicroOp(kind, m["key"], m["value"]))
    return tuple(micro)


def _parse_value_output(
    kind: OpKind, raw_key: object, raw_value: object, raw_output: object, status: Status, line: int | None
) -> tuple[str | None, Value, Output]:
    name = kind.value
    if kind is OpKind.TXN:
        if not _str_or_null(raw_key):
            raise HistoryError("txn key must be a string or null", line)
    elif not isinstance(raw_key, str):
        raise HistoryError(f"{name} key must be a string", line)
    key = raw_key if isinstance(raw_key, str) else None
    if status is not Status.OK and raw_output is not None:
        raise HistoryError(f"a {status.value} operation's output must be null", line)
    ok = status is Status.OK
    value: Value
    output: Output = None
    if kind is OpKind.GET:
        if raw_value is not None:
            raise HistoryError("get value must be null", line)
        if not _str_or_null(raw_output):
            raise HistoryError("get output must be the string read or null (absent)", line)
        value, output = None, raw_output if isinstance(raw_output, str) else None
    elif kind is OpKind.PUT:
        if not isinstance(raw_value, str):
            raise HistoryError("put value must be a string", line)
        if raw_output is not None:
            raise HistoryError("put output must be null", line)
        value = raw_value
    elif kind is OpKind.DELETE:
        if raw_value is not None or raw_output is not None:
            raise HistoryError("delete value and output must be null", line)
        value = None
    elif kind is OpKind.CAS:
        if not isinstance(raw_value, dict) or set(raw_value) != {"expect", "new"}:
            raise HistoryError('cas value must be {"expect": E, "new": N}', line)
        if not _str_or_null(raw_value["expect"]) or not isinstance(raw_value["new"], str):
            raise HistoryError("cas expect must be a string or null and new a string", line)
        if ok and not isinstance(raw_output, bool):
            raise HistoryError("an ok cas output must be true or false", line)
        value = CasValue(raw_value["expect"], raw_value["new"])
        output = raw_output if isinstance(raw_output, bool) else None
    else:
        micro = _parse_micro_ops(raw_value, line)
        value = micro
        if ok:
            if not isinstance(raw_output, list) or len(raw_output) != len(micro):
                raise HistoryError("an ok txn output must be a list with one entry per micro-op", line)
            for i, (m, o) in enumerate(zip(micro, raw_output)):
                if m.op is MicroKind.GET and not _str_or_null(o):
                    raise HistoryError(f"txn output {i} (a get) must be a string or null", line)
                if m.op is not MicroKind.GET and o is not None:
                    raise HistoryError(f"txn output {i} (a {m.op.value}) must be null", line)
            output = tuple(raw_output)
    return key, value, output


def operation_from_dict(obj: object, index: int, line: int | None = None) -> Operation:
    """Decode one history line (already parsed JSON); raises HistoryError naming ``line``."""
    if not isinstance(obj, dict):
        raise HistoryError("each line must be a JSON object", line)
    missing = [f for f in _REQUIRED if f not in obj]
    if missing:
        raise HistoryError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}", line)
    client = obj["client"]
    if not isinstance(client, int) or isinstance(client, bool):
        raise HistoryError("client must be an integer", line)
    try:
        kind = OpKind(obj["op"])
    except (ValueError, TypeError):
        raise HistoryError(f"unknown op {obj['op']!r} (get, put, delete, cas or txn)", line) from None
    try:
        status = Status(obj["status"])
    except (ValueError, TypeError):
        raise HistoryError(f"unknown status {obj['status']!r} (ok, fail or info)", line) from None
    call, ret = obj["call"], obj["return"]
    if not _is_number(call):
        raise HistoryError("call must be a finite number of seconds", line)
    if status is Status.INFO:
        if ret is not None:
            raise HistoryError("an info operation's return must be null", line)
    else:
        if not _is_number(ret):
            raise HistoryError(f"a {status.value} operation's return must be a finite number", line)
        if ret < call:
            raise HistoryError(f"return {ret} is before call {call}", line)
    key, value, output = _parse_value_output(kind, obj["key"], obj["value"], obj["output"], status, line)
    return Operation(
        index=index,
        client=client,
        op=kind,
        key=key,
        value=value,
        output=output,
        call=float(call),
        return_=None if ret is None else float(ret),
        status=status,
        line=line,
    )


def parse_jsonl(text: str | TextIO) -> Iterator[tuple[int, object]]:
    """Yield ``(line number, parsed JSON)`` for each non-blank line; HistoryError on bad JSON."""
    stream = io.StringIO(text) if isinstance(text, str) else text
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as e:
            raise HistoryError(f"not valid JSON ({e.msg} at column {e.colno})", number) from None


def validate_history(ops: Sequence[Operation]) -> None:
    """Check the rules that span lines: order of call, one op outstanding per client.

    Raises HistoryError naming the first line (or index) that breaks one.
    """
    busy_until: dict[int, tuple[float, int | None]] = {}  # client -> (return, its line)
    retired: dict[int, int | None] = {}  # client whose op went info -> that line
    previous_call = -math.inf
    for op in ops:
        line = op.line if op.line is not None else op.index + 1
        if op.call < previous_call:
            raise HistoryError(
                f"call {op.call} is earlier than the previous line's call {previous_call}; "
                "lines must be in order of call",
                line,
            )
        previous_call = op.call
        if op.client in retired:
            raise HistoryError(
                f"client {op.client} is reused after its info operation on line {retired[op.client]}; "
                "continue under a fresh client id",
                line,
            )
        if op.client in busy_until:
            until, where = busy_until[op.client]
            if op.call < until:
                raise HistoryError(
                    f"client {op.client} calls at {op.call} while its operation on line {where} "
                    f"is outstanding until {until}",
                    line,
                )
        if op.status is Status.INFO:
            retired[op.client] = line
        else:
            assert op.return_ is not None
            busy_until[op.client] = (op.return_, line)


def read_history(source: str | os.PathLike[str] | TextIO, *, validate: bool = True) -> list[Operation]:
    """Read a kv history from a path or an open text stream.

    Every line is schema-checked; with ``validate`` the cross-line rules are
    checked too. The first problem raises HistoryError naming its line.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as f:
            return read_history(f, validate=validate)
    ops = [operation_from_dict(obj, i, number) for i, (number, obj) in enumerate(parse_jsonl(source))]
    if validate:
        validate_history(ops)
    return ops


# --- encoding --------------------------------------------------------------------


def operation_to_dict(op: Operation) -> dict[str, Any]:
    """The JSON object of one line, fields in the documented order."""
    value: Any = op.value
    if isinstance(op.value, CasValue):
        value = {"expect": op.value.expect, "new": op.value.new}
    elif isinstance(op.value, tuple):
        value = [{"op": m.op.value, "key": m.key, "value": m.value} for m in op.value]
    output: Any = list(op.output) if isinstance(op.output, tuple) else op.output
    return {
        "client": op.client,
        "op": op.op.value,
        "key": op.key,
        "value": value,
        "output": output,
        "call": op.call,
        "return": op.return_,
        "status": op.status.value,
    }


def write_history(ops: Iterable[Operation], target: str | os.PathLike[str] | TextIO) -> None:
    """Write operations as JSON Lines (one compact object per line)."""
    if isinstance(target, (str, os.PathLike)):
        with open(target, "w", encoding="utf-8") as f:
            write_history(ops, f)
            return
    for op in ops:
        target.write(json.dumps(operation_to_dict(op), separators=(", ", ": ")) + "\n")


def _jsonable_value(value: object) -> object:
    if isinstance(value, CasValue):
        return {"expect": value.expect, "new": value.new}
    if isinstance(value, tuple):
        return [{"op": m.op.value, "key": m.key, "value": m.value} if isinstance(m, MicroOp) else m for m in value]
    return value


def make_operation(
    index: int,
    client: int,
    op: OpKind | str,
    key: str | None,
    value: object,
    output: object,
    call: float,
    return_: float | None,
    status: Status | str = Status.OK,
) -> Operation:
    """Build an Operation from JSON-shaped values, with the reader's checks.

    Convenient in tests and generators: ``make_operation(0, 1, "cas", "k",
    {"expect": None, "new": "a"}, True, 0.0, 1.0)``.
    """
    obj: Mapping[str, object] = {
        "client": client,
        "op": op.value if isinstance(op, OpKind) else op,
        "key": key,
        "value": _jsonable_value(value),
        "output": list(output) if isinstance(output, tuple) else output,
        "call": call,
        "return": return_,
        "status": status.value if isinstance(status, Status) else status,
    }
    return operation_from_dict(dict(obj), index)
