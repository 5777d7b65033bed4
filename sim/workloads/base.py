"""The workload plug-in interface."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim.history import Operation

if TYPE_CHECKING:
    from sim.clients import ClientContext


@dataclass(frozen=True, slots=True)
class Invocation:
    """One client operation: how the history records it, and the kv.api request that performs it."""

    op: str  # history op: get, put, delete, cas, txn
    key: str | None
    value: Any  # the history's value (JSON-shaped)
    request: Any  # a kv.api request dataclass
    output: Callable[[Any], Any]  # response dataclass -> the history's output
    is_read: bool = False  # a read has no effect: any error is a definite failure


@dataclass(frozen=True, slots=True)
class WorkloadCheck:
    """The verdict of a workload's own checker."""

    name: str
    ok: bool
    problems: tuple[str, ...] = field(default=())


class Workload:
    name = "?"
    description = ""

    def __init__(self, keys: int) -> None:
        self.keys = keys

    def configure(self, options: Any) -> None:
        """Read workload-specific run options (sim.options.RunOptions); most have none."""

    def next_invocation(self, rng: random.Random) -> Invocation:
        raise NotImplementedError

    def files(self) -> dict[str, list[dict[str, Any]]]:
        """Extra JSON Lines files the run writes next to history.jsonl (name -> records),
        e.g. the lock workload's lock.jsonl for ``python -m sim check --kind lock``."""
        return {}

    def spawn_clients(self, ctx: ClientContext) -> None:
        """Start the client actors; by default ``ctx.clients`` one-request-at-a-time kv clients."""
        from sim.clients import kv_client

        for i in range(ctx.clients):
            ctx.env.process(kv_client(ctx.env, ctx, self, ctx.rng_for(i), i))

    def check(self, history: Sequence[Operation]) -> WorkloadCheck | None:
        """The workload's own checker, beyond linearizability; None if it has none."""
        return None
