"""Simulated clients: submit kv.api requests to a member, with timeouts, and record a history.

A client has at most one operation outstanding. It picks a member at random
and keeps using it (an etcd client pinned to an endpoint) until something goes
wrong, then picks another. Each outcome becomes one history line
(DESIGN.md's format):

* a response -> ``ok`` with the output the workload reads from it;
* an error the member raised before proposing anything (``ErrNoLeader``, a
  dropped proposal, a refused request), or any error on a read -> ``fail``:
  surely not applied;
* no answer within ``client_timeout`` (member down, paused, partitioned, the
  proposal lost in a leader change) -> ``info``: it may still take effect, so
  the client carries on under a fresh id (Jepsen's convention).

``liveness_probe`` is the actor of the quiet phase: it writes until one write
commits, timing how long the healed cluster takes to serve again.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import simpy

from kv import api
from kv.errors import RaftKVError
from sim.history import Operation, Status, make_operation
from sim.seeds import child_rng

if TYPE_CHECKING:
    from sim.cluster import SimCluster
    from sim.workloads.base import Invocation, Workload

# Errors a member returns only for requests it did not propose: the write surely did not happen.
DEFINITE_ERRORS = frozenset(
    {
        "ErrNoLeader",
        "ProposalDropped",
        "ErrTooManyRequests",
        "ErrRequestTooLarge",
        "ErrEmptyKey",
        "ErrTooManyOps",
        "ErrDuplicateKey",
        "ErrKeyNotFound",
        "ErrValueProvided",
        "ErrLeaseProvided",
        "ErrCompacted",
        "ErrFutureRev",
        "ErrNotCapable",
    }
)


def classify_error(err: BaseException, is_read: bool) -> Status:
    if is_read or type(err).__name__ in DEFINITE_ERRORS:
        return Status.FAIL
    return Status.INFO


@dataclass(slots=True)
class Record:
    """One operation as it happened; becomes a history line at the end."""

    client: int
    invocation: Invocation
    call: float
    return_: float | None = None
    status: Status = Status.INFO
    output: Any = None
    slot: int = 0
    error: str = ""


@dataclass
class ClientContext:
    env: simpy.Environment
    cluster: SimCluster
    seed: int
    clients: int
    rate: float  # operations per second, all clients together
    timeout: float
    stop_at: float  # no new operation is called after this
    records: list[Record] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(0))

    def __post_init__(self) -> None:
        self._ids = itertools.count(self.clients)  # ids 0..clients-1 are the first incarnations

    def rng_for(self, i: int) -> random.Random:
        return child_rng(self.seed, "client", i)

    def fresh_client_id(self) -> int:
        return next(self._ids)

    def history(self) -> list[Operation]:
        """The recorded operations in order of call (ties by client), as history Operations."""
        recs = sorted(self.records, key=lambda r: (r.call, r.client))
        ops = []
        for i, r in enumerate(recs):
            inv = r.invocation
            ok = r.status is Status.OK
            ops.append(
                make_operation(
                    i,
                    r.client,
                    inv.op,
                    inv.key,
                    inv.value,
                    r.output if ok else None,
                    round(r.call, 6),
                    round(r.return_, 6) if r.status is not Status.INFO and r.return_ is not None else None,
                    r.status,
                )
            )
        return ops


def request(
    env: simpy.Environment, cluster: SimCluster, slot_no: int, req: Any, timeout: float
) -> Generator[simpy.events.Event, Any, tuple[bool, Any]]:
    """Send `req` to a member and wait for its answer or the timeout: (answered, outcome)."""
    done = env.event()

    def reply(outcome: Any) -> None:
        if not done.triggered:
            done.succeed(outcome)

    cluster.request(cluster.slots[slot_no], req, reply)
    timer = env.timeout(timeout)
    yield done | timer
    if done.triggered:
        return True, done.value
    return False, None


def kv_client(
    env: simpy.Environment, ctx: ClientContext, workload: Workload, rng: random.Random, client_id: int
) -> Generator[simpy.events.Event, Any, None]:
    """One client: think, call, wait, record; again until the fault phase ends."""
    slots = sorted(ctx.cluster.slots)
    slot = rng.choice(slots)
    mean_gap = ctx.clients / ctx.rate
    while True:
        yield env.timeout(rng.expovariate(1.0 / mean_gap))
        if env.now >= ctx.stop_at:
            return
        inv = workload.next_invocation(rng)
        rec = Record(client_id, inv, env.now, slot=slot)
        ctx.records.append(rec)
        answered, outcome = yield from request(env, ctx.cluster, slot, inv.request, ctx.timeout)
        if not answered:
            rec.status = Status.INFO
            client_id = ctx.fresh_client_id()
            slot = rng.choice(slots)
            continue
        rec.return_ = env.now
        if isinstance(outcome, RaftKVError):
            rec.status = classify_error(outcome, inv.is_read)
            rec.error = type(outcome).__name__
            if rec.status is Status.INFO:
                client_id = ctx.fresh_client_id()
            slot = rng.choice(slots)
            continue
        rec.status = Status.OK
        rec.output = inv.output(outcome)


@dataclass(slots=True)
class Probe:
    """What the liveness probe saw."""

    started: float = 0.0
    committed_at: float | None = None
    attempts: int = 0


def liveness_probe(
    env: simpy.Environment, cluster: SimCluster, rng: random.Random, probe: Probe, timeout: float
) -> Generator[simpy.events.Event, Any, None]:
    """Write a probe key until one write is acknowledged (VOPR's liveness mode)."""
    probe.started = env.now
    slots = sorted(cluster.slots)
    while True:
        live = [s for s in slots if cluster.slots[s].member is not None]
        slot = rng.choice(live or slots)
        probe.attempts += 1
        req = api.PutRequest(key=b"__liveness_probe__", value=str(probe.attempts).encode())
        answered, outcome = yield from request(env, cluster, slot, req, timeout)
        if answered and not isinstance(outcome, RaftKVError):
            probe.committed_at = env.now
            return
        if answered:
            yield env.timeout(0.05)  # ErrNoLeader and the like: wait a moment before retrying


Invoker = Callable[[random.Random], "Invocation"]
