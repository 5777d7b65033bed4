"""Small named histories used by several test modules."""

from __future__ import annotations

from typing import Any

from sim.history import Operation, make_operation


def history(*rows: tuple[Any, ...]) -> list[Operation]:
    """Rows of (client, op, key, value, output, call, return[, status])."""
    return [make_operation(i, *row) for i, row in enumerate(rows)]


def stale_read() -> list[Operation]:
    """x=a, then x=b, then a read of a: the classic stale read."""
    return history(
        (1, "put", "x", "a", None, 0.0, 1.0),
        (2, "put", "x", "b", None, 2.0, 3.0),
        (3, "get", "x", None, "a", 4.0, 5.0),
        (4, "put", "y", "q", None, 4.5, 9.0),
    )
