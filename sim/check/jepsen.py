"""Jepsen register histories (``history.edn``) in and out of the kv history format.

Why: people who test with Jepsen already hold histories that Knossos checks
(``knossos.model/cas-register``, keyed with ``jepsen.independent``). Reading
them lets ``python -m sim check history.edn`` judge the same runs, and writing
ours as EDN lets a user hand raftkv's histories to Knossos and compare verdicts.

What is read (Jepsen's history conventions, as jepsen.history documents them):

* One op map per top-level form (Jepsen writes one per line), or one vector
  of them (older histories). Fields used: ``:type`` (``:invoke``, ``:ok``,
  ``:fail``, ``:info``), ``:f``, ``:value``, ``:process`` and ``:time``
  (nanoseconds; the form's position when absent). Other fields are ignored.
* An invocation is completed by the next op of the same process. ``:ok``: it
  happened, with the completion's value; ``:fail``: it did not happen (dropped,
  as Knossos drops it; for a cas this includes "the compare failed");
  ``:info``, or no completion at all: it may have happened (``info``). A process
  that ended ``:info`` continues under a fresh client id (our format's rule,
  which is Jepsen's own convention).
* ``:f`` ``:read`` (value: what was read; nil is "absent", the initial state),
  ``:write`` (value), ``:cas`` (value ``[old new]``). Values become strings
  (``5`` -> ``"5"``). Ops of a non-integer process (``:nemesis``) are skipped;
  any other ``:f`` is refused with a HistoryError naming the line.
* Keys: when every invocation's value is a ``[key value]`` pair (cas:
  ``[key [old new]]``), as ``jepsen.independent`` writes them, each key is its
  own register; otherwise the whole history is the one key ``"r"``.

The EDN reader is a small one for what histories contain (maps, vectors,
lists, sets, keywords, symbols, strings, characters, integers, floats, nil and
booleans; ``#tag form`` reads as ``form``; ``#_`` discards). A general EDN
library (edn_format) would add two dependencies for this one file and report
errors without line numbers.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sim.history import CasValue, HistoryError, OpKind, Operation, Status, validate_history

SINGLE_KEY = "r"  # the key of a history without jepsen.independent tuples


@dataclass(frozen=True, slots=True)
class Keyword:
    """An EDN keyword such as ``:ok`` (``name`` without the colon)."""

    name: str

    def __str__(self) -> str:
        return ":" + self.name


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str


# ------------------------------------------------------------------ EDN reader

_DELIMS = set("{}[]()\"; ,\t\r\n")
_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?[NM]?$")
_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r", "backspace": "\b", "formfeed": "\f"}
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def error(self, what: str, line: int | None = None) -> HistoryError:
        return HistoryError(f"EDN: {what}", line if line is not None else self.line)

    def skip_space(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c == "\n":
                self.line += 1
                self.pos += 1
            elif c in " ,\t\r":
                self.pos += 1
            elif c == ";":
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            elif text.startswith("#_", self.pos):
                self.pos += 2
                self.read()
            else:
                return

    def forms(self) -> Iterator[tuple[int, Any]]:
        """Every top-level form with the line it starts on."""
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                return
            line = self.line
            yield line, self.read()

    def read(self) -> Any:
        self.skip_space()
        if self.pos >= len(self.text):
            raise self.error("unexpected end of input")
        c = self.text[self.pos]
        if c in "[(":
            return self._seq("]" if c == "[" else ")")
        if c == "{":
            items = self._seq("}")
            if len(items) % 2:
                raise self.error("a map needs an even number of forms")
            return {_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}
        if c in "]})":
            raise self.error(f"unexpected {c!r}")
        if c == '"':
            return self._string()
        if c == "\\":
            return self._char()
        if c == "#":
            if self.text.startswith("#{", self.pos):
                self.pos += 1
                return frozenset(_hashable(x) for x in self._seq("}"))
            self.pos += 1
            self._token()  # a tag: #inst, #uuid, #jepsen.history.Op ... reads as its form
            return self.read()
        return self._atom(self._token())

    def _seq(self, close: str) -> list[Any]:
        start = self.line
        self.pos += 1
        items: list[Any] = []
        while True:
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.error(f"{close!r} never comes for the form opened here", start)
            if self.text[self.pos] == close:
                self.pos += 1
                return items
            items.append(self.read())

    def _string(self) -> str:
        out: list[str] = []
        self.pos += 1
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\n":
                self.line += 1
            if c == "\\":
                if self.pos >= len(text):
                    break
                e = text[self.pos]
                self.pos += 1
                if e == "u":
                    out.append(chr(int(text[self.pos : self.pos + 4], 16)))
                    self.pos += 4
                elif e in _ESCAPES:
                    out.append(_ESCAPES[e])
                else:
                    raise self.error(f"unknown string escape \\{e}")
            else:
                out.append(c)
        raise self.error("a string never ends")

    def _char(self) -> str:
        self.pos += 1
        tok = self._token(at_least_one=True)
        if len(tok) == 1:
            return tok
        if tok in _CHARS:
            return _CHARS[tok]
        if tok.startswith("u") and len(tok) == 5:
            return chr(int(tok[1:], 16))
        raise self.error(f"unknown character \\{tok}")

    def _token(self, at_least_one: bool = False) -> str:
        start = self.pos
        text = self.text
        if at_least_one and self.pos < len(text):
            self.pos += 1
        while self.pos < len(text) and text[self.pos] not in _DELIMS:
            self.pos += 1
        return text[start : self.pos]

    def _atom(self, tok: str) -> Any:
        if tok == "nil":
            return None
        if tok == "true":
            return True
        if tok == "false":
            return False
        if tok.startswith(":") and len(tok) > 1:
            return Keyword(tok[1:])
        if _NUMBER.match(tok):
            body = tok.rstrip("NM")
            return float(body) if any(ch in body for ch in ".eE") else int(body)
        if not tok:
            raise self.error(f"unexpected {self.text[self.pos]!r}")
        return Symbol(tok)


def _hashable(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_hashable(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted(((repr(k), _hashable(v)) for k, v in x.items())))
    return x


def read_edn(text: str) -> list[tuple[int, Any]]:
    """Every top-level EDN form of `text` with its first line; HistoryError on bad EDN."""
    return list(_Reader(text).forms())


# --------------------------------------------------------- Jepsen -> kv history


@dataclass(slots=True)
class _Open:
    client: int
    f: str
    value: Any
    call: float
    line: int


def _field(op: dict[Any, Any], name: str) -> Any:
    return op.get(Keyword(name))


def _name(x: Any) -> str | None:
    return x.name if isinstance(x, (Keyword, Symbol)) else None


def _ops(forms: list[tuple[int, Any]]) -> list[tuple[int, dict[Any, Any]]]:
    if len(forms) == 1 and isinstance(forms[0][1], list):
        line, items = forms[0]
        forms = [(line, x) for x in items]
    out = []
    for line, op in forms:
        if not isinstance(op, dict):
            raise HistoryError("a Jepsen op must be a map such as {:type :invoke, :f :read, ...}", line)
        out.append((line, op))
    return out


def _is_pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2


def _independent(ops: Iterable[tuple[int, dict[Any, Any]]]) -> bool:
    invokes = [op for _, op in ops if _name(_field(op, "type")) == "invoke" and isinstance(_field(op, "process"), int)]
    if not invokes:
        return False
    for op in invokes:
        v = _field(op, "value")
        if not _is_pair(v):
            return False
        if _name(_field(op, "f")) == "cas" and not _is_pair(v[1]):
            return False
    return True


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (Keyword, Symbol)):
        return str(v) if isinstance(v, Keyword) else v.name
    return str(v)


def read_jepsen(source: str | os.PathLike[str]) -> list[Operation]:
    """A Jepsen register history (``history.edn``) as kv operations, validated."""
    with open(source, encoding="utf-8") as f:
        return parse_jepsen(f.read())


def parse_jepsen(text: str) -> list[Operation]:
    ops = _ops(read_edn(text))
    keyed = _independent(ops)
    next_client = 0
    clients: dict[int, int] = {}  # Jepsen process -> our client id (fresh after an :info)
    open_: dict[int, _Open] = {}
    drafts: list[tuple[_Open, str, Any, float | None]] = []  # (invocation, status, completion value, return)
    for position, (line, op) in enumerate(ops):
        process = _field(op, "process")
        if not isinstance(process, int) or isinstance(process, bool):
            continue  # the nemesis and other non-client processes
        kind = _name(_field(op, "type"))
        f = _name(_field(op, "f"))
        t = _field(op, "time")
        now = t / 1e9 if isinstance(t, (int, float)) and not isinstance(t, bool) else float(position)
        if kind == "invoke":
            if process in open_:
                raise HistoryError(f"process {process} invokes again before its last op completed", line)
            if f not in ("read", "write", "cas"):
                raise HistoryError(
                    f"unsupported :f {_field(op, 'f')} (register histories have :read, :write and :cas)", line
                )
            if process not in clients:
                clients[process] = next_client
                next_client += 1
            open_[process] = _Open(clients[process], f, _field(op, "value"), now, line)
        elif kind in ("ok", "fail", "info"):
            inv = open_.pop(process, None)
            if inv is None:
                raise HistoryError(f"process {process} completes an op it never invoked", line)
            if f is not None and f != inv.f:
                raise HistoryError(f"process {process} invoked :{inv.f} but completes :{f}", line)
            drafts.append((inv, kind, _field(op, "value"), now if kind != "info" else None))
            if kind == "info":
                clients.pop(process)  # the process carries on as a new client
        else:
            raise HistoryError(f"unknown :type {_field(op, 'type')} (expected :invoke, :ok, :fail or :info)", line)
    for inv in open_.values():
        drafts.append((inv, "info", None, None))
    drafts.sort(key=lambda d: (d[0].call, d[0].line))
    out = [_operation(i, inv, status, value, ret, keyed) for i, (inv, status, value, ret) in enumerate(drafts)]
    validate_history(out)
    return out


def _operation(index: int, inv: _Open, status: str, done: Any, ret: float | None, keyed: bool) -> Operation:
    key = SINGLE_KEY
    value = inv.value
    if keyed:
        key, value = _text(value[0]) or "nil", value[1]
        if status == "ok" and _is_pair(done):
            done = done[1]
    st = Status(status)
    if inv.f == "read":
        output = _text(done) if st is Status.OK else None
        return Operation(index, inv.client, OpKind.GET, key, None, output, inv.call, ret, st, inv.line)
    if inv.f == "write":
        text = _text(value)
        if text is None:
            raise HistoryError("a :write of nil (the register's initial state) cannot be expressed", inv.line)
        return Operation(index, inv.client, OpKind.PUT, key, text, None, inv.call, ret, st, inv.line)
    if not _is_pair(value):
        raise HistoryError(f"a :cas value must be [old new], not {value!r}", inv.line)
    new = _text(value[1])
    if new is None:
        raise HistoryError("a :cas to nil cannot be expressed", inv.line)
    cas = CasValue(expect=_text(value[0]), new=new)
    return Operation(index, inv.client, OpKind.CAS, key, cas, True if st is Status.OK else None, inv.call, ret, st,
                     inv.line)  # fmt: skip


# --------------------------------------------------------- kv history -> Jepsen


def _edn(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, list):
        return "[" + " ".join(_edn(x) for x in v) + "]"
    return str(v)


def write_jepsen(ops: Sequence[Operation]) -> str:
    """The history as Jepsen ops (one map per line, keyed with independent tuples), for
    Knossos' cas-register model. Only get, put and cas translate; a cas that answered
    false becomes a :fail (Knossos' convention: it did not happen). Ops are written in
    time order, a completion before an invocation at the same instant."""
    events: list[tuple[float, int, int, str]] = []  # (time, phase, op index, EDN lines)
    for op in ops:
        inv_value: Any
        ok_value: Any
        if op.op is OpKind.GET:
            f, inv_value, ok_value = "read", None, op.output
        elif op.op is OpKind.PUT:
            f, inv_value, ok_value = "write", op.value, op.value
        elif op.op is OpKind.CAS:
            assert isinstance(op.value, CasValue)
            f, inv_value = "cas", [op.value.expect, op.value.new]
            ok_value = inv_value
        else:
            raise HistoryError(f"{op.op.value} has no Jepsen register counterpart", op.line)
        status = op.status.value
        if op.op is OpKind.CAS and op.status is Status.OK and op.output is False:
            status = "fail"
        invoke = _op_edn("invoke", f, [op.key, inv_value], op.client, op.call)
        if op.return_ is None:
            events.append((op.call, 1, op.index, invoke))
            events.append((math.inf, 0, op.index, _op_edn("info", f, [op.key, inv_value], op.client, None)))
            continue
        done = _op_edn(status, f, [op.key, ok_value if status == "ok" else inv_value], op.client, op.return_)
        if op.return_ > op.call:
            events.append((op.call, 1, op.index, invoke))
            events.append((op.return_, 0, op.index, done))
        else:  # an instantaneous op: both lines together, so nothing comes between them
            events.append((op.call, 1, op.index, invoke + done))
    events.sort(key=lambda e: e[:3])
    return "".join(e[3] for e in events)


def _op_edn(kind: str, f: str, value: list[Any], process: int, at: float | None) -> str:
    time = "" if at is None else f", :time {int(round(at * 1e9))}"
    return f"{{:type :{kind}, :f :{f}, :value {_edn(value)}, :process {process}{time}}}\n"
