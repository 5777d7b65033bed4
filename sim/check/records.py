"""Field readers shared by the watch, lock and lease formats.

Each raises :class:`sim.history.HistoryError` naming the line, with the same
wording as the kv history's schema check, and follows its rules for ``call``,
``return`` and ``status`` (info: return null; otherwise return >= call).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

from sim.history import HistoryError, Status, parse_jsonl

Source = str | os.PathLike[str] | TextIO | Iterable[Mapping[str, Any]]


def records(source: Source) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """``(line, object)`` pairs from a path, a text stream, or objects already parsed."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="utf-8") as f:
            yield from records(f)
        return
    if hasattr(source, "read"):
        items: Iterable[tuple[int, object]] = parse_jsonl(source)  # type: ignore[arg-type]
    else:
        items = enumerate(source, start=1)  # type: ignore[arg-type]
    for line, obj in items:
        if not isinstance(obj, Mapping):
            raise HistoryError("each line must be a JSON object", line)
        yield line, obj


def require(obj: Mapping[str, Any], line: int, *names: str) -> None:
    missing = [n for n in names if n not in obj]
    if missing:
        raise HistoryError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}", line)


def number(obj: Mapping[str, Any], name: str, line: int) -> float:
    v = obj.get(name)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        raise HistoryError(f"{name} must be a finite number", line)
    return float(v)


def integer(obj: Mapping[str, Any], name: str, line: int, *, nullable: bool = False) -> int | None:
    v = obj.get(name)
    if v is None and nullable:
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        raise HistoryError(f"{name} must be an integer{' or null' if nullable else ''}", line)
    return v


def string(obj: Mapping[str, Any], name: str, line: int, *, nullable: bool = False) -> str | None:
    v = obj.get(name)
    if v is None and nullable:
        return None
    if not isinstance(v, str):
        raise HistoryError(f"{name} must be a string{' or null' if nullable else ''}", line)
    return v


def interval(obj: Mapping[str, Any], line: int) -> tuple[float, float, Status]:
    """``call``, ``return`` (infinity for info) and ``status`` of an operation line."""
    require(obj, line, "call", "return", "status")
    try:
        status = Status(obj["status"])
    except (ValueError, TypeError):
        raise HistoryError(f"unknown status {obj['status']!r} (ok, fail or info)", line) from None
    call = number(obj, "call", line)
    if status is Status.INFO:
        if obj["return"] is not None:
            raise HistoryError("an info operation's return must be null", line)
        return call, math.inf, status
    ret = number(obj, "return", line)
    if ret < call:
        raise HistoryError(f"return {ret} is before call {call}", line)
    return call, ret, status


def with_line(obj: Mapping[str, Any], line: int) -> dict[str, Any]:
    """The record as reported in a Violation: its line number first."""
    return {"line": line, **obj}
