"""Histories shaped like a real cluster's, for benchmarks and tests.

Concurrent clients each run one operation at a time against a store that is
linearizable by construction: every operation takes effect at an instant
inside its interval, and outputs come from replaying those instants in order.
Some operations time out: they become ``info`` (took effect or not, at some
instant after the call) and the client continues under a fresh id, as a
Jepsen client does. An *invalid* history is made from a valid one by
perturbing one read so that it returns a value that was certainly overwritten
before the read began (a stale read, the classic bug).

Written values are unique (``v<n>``), the usual workload; the ``mixed``
workload adds cas and delete (values then repeat as cas expectations do).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from sim.history import CasValue, Operation, OpKind, Status


class Workload(enum.Enum):
    """``register``: gets and puts (Jepsen's register test); ``mixed``: also cas and delete."""

    REGISTER = "register"
    MIXED = "mixed"


@dataclass(frozen=True, slots=True)
class Shape:
    """What to generate. Latencies are seconds of (virtual) time."""

    ops: int
    clients: int
    keys: int
    workload: Workload = Workload.REGISTER
    read_fraction: float = 0.5
    info_fraction: float = 0.03  # timeouts
    fail_fraction: float = 0.01
    mean_latency: float = 0.005
    mean_think: float = 0.001
    timeout: float = 0.05
    invalid: bool = False


@dataclass(slots=True)
class _Draft:
    client: int
    op: OpKind
    key: str
    value: str | CasValue | None
    call: float
    ret: float | None
    status: Status
    point: float | None  # when it took effect, None: never
    output: str | bool | None = None


def generate(shape: Shape, rng: random.Random) -> list[Operation]:
    """A history of ``shape.ops`` operations, in order of call."""
    drafts: list[_Draft] = []
    next_id = shape.clients
    clock = [rng.expovariate(1 / shape.mean_think) for _ in range(shape.clients)]
    ids = list(range(shape.clients))
    counter = 0
    keys = [f"k{i}" for i in range(shape.keys)]
    while len(drafts) < shape.ops:
        lane = min(range(shape.clients), key=clock.__getitem__)
        call = clock[lane]
        key = rng.choice(keys)
        r = rng.random()
        value: str | CasValue | None = None
        if r < shape.read_fraction:
            kind = OpKind.GET
        elif shape.workload is Workload.MIXED and r < shape.read_fraction + 0.1:
            kind = OpKind.DELETE
        elif shape.workload is Workload.MIXED and r < shape.read_fraction + 0.25:
            kind = OpKind.CAS
            expect = None if rng.random() < 0.2 else f"v{rng.randrange(max(counter, 1))}"
            value = CasValue(expect, f"v{counter}")
            counter += 1
        else:
            kind = OpKind.PUT
            value = f"v{counter}"
            counter += 1
        latency = rng.expovariate(1 / shape.mean_latency)
        s = rng.random()
        if s < shape.info_fraction:
            status, ret = Status.INFO, None
            point = call + rng.uniform(0, latency * 4) if rng.random() < 0.5 else None
            clock[lane] = call + shape.timeout + rng.expovariate(1 / shape.mean_think)
            client = ids[lane]
            ids[lane] = next_id  # after an info op the client carries on under a fresh id
            next_id += 1
        else:
            status = Status.FAIL if s < shape.info_fraction + shape.fail_fraction else Status.OK
            ret = call + latency
            point = rng.uniform(call, ret) if status is Status.OK else None
            clock[lane] = ret + rng.expovariate(1 / shape.mean_think)
            client = ids[lane]
        drafts.append(_Draft(client, kind, key, value, call, ret, status, point))
    _replay(drafts)
    if shape.invalid:
        _make_stale_read(drafts, rng)
    drafts.sort(key=lambda d: d.call)
    return [
        Operation(
            index=i,
            client=d.client,
            op=d.op,
            key=d.key,
            value=d.value,
            output=d.output if d.status is Status.OK else None,
            call=d.call,
            return_=d.ret,
            status=d.status,
        )
        for i, d in enumerate(drafts)
    ]


def _replay(drafts: list[_Draft]) -> None:
    store: dict[str, str | None] = {}
    for d in sorted((d for d in drafts if d.point is not None), key=lambda d: d.point or 0.0):
        current = store.get(d.key)
        if d.op is OpKind.GET:
            d.output = current
        elif d.op is OpKind.PUT:
            assert isinstance(d.value, str)
            store[d.key] = d.value
        elif d.op is OpKind.DELETE:
            store[d.key] = None
        else:
            assert isinstance(d.value, CasValue)
            d.output = current == d.value.expect
            if d.output:
                store[d.key] = d.value.new


def _make_stale_read(drafts: list[_Draft], rng: random.Random) -> None:
    """Make one ok get return a value overwritten before it was called."""
    writes: dict[str, list[_Draft]] = {}
    for d in drafts:
        if d.op is OpKind.PUT and d.status is Status.OK:
            writes.setdefault(d.key, []).append(d)
    gets = [d for d in drafts if d.op is OpKind.GET and d.status is Status.OK]
    rng.shuffle(gets)
    for g in gets:
        done = sorted((w for w in writes.get(g.key, ()) if w.ret is not None and w.ret < g.call), key=lambda w: w.call)
        for older in done:
            assert older.ret is not None
            # Some write certainly after ``older`` and certainly before the read.
            if any(w.call > older.ret for w in done) and older.value != g.output:
                assert isinstance(older.value, str)
                g.output = older.value
                return
    raise ValueError("no read can be made stale: generate more operations per key")
