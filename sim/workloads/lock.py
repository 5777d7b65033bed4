"""The lock workload: etcd's mutex recipe under faults, judged by its fencing tokens.

Each client loops: open a session (a lease it keeps alive every TTL/3), take
the lock with ``kv.recipes.lock`` (its token is the lock key's create
revision), write the protected resource, release, end the session.

The write is what Jepsen's etcd 3.4.3 analysis was about. A client can pause
(a GC pause, a SIGSTOP) while it holds the lock; its keep-alives stop, the
lease expires, the lock key is deleted and the next waiter takes the lock,
and the paused client wakes up still *believing* it holds it. With
``fencing`` (the default) the write is a Txn that puts the resource only if
the lock key still has the holder's create revision, so the stale holder's
write is refused. Without fencing (``--lock-fencing false``) it is a plain Put,
and the lock checker finds the write that landed after a newer holder got
the lock: the lost update. The clients pause themselves like that when the
run's nemesis includes ``pause``.

Records: ``lock.jsonl`` in the lock checker's format (sim/check/lock.py);
the kv history gets the resource's reads and writes (a refused fenced write
is a definite failure), so linearizability is checked on them too.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Sequence
from typing import Any

import simpy

from kv import api, recipes
from kv.errors import RaftKVError
from sim.check import Verdict, check_lock, render_text
from sim.clients import ClientContext, Record, classify_error, request
from sim.history import Operation, Status
from sim.recipe_client import Session, Unanswered, open_session, run_recipe
from sim.schedule import Fault, parse_faults
from sim.workloads.base import Invocation, Workload, WorkloadCheck

LOCK = b"lock"
RESOURCE = "resource"
SESSION_TTL = 2  # seconds; the cluster raises it to its minimum TTL if need be
PAUSE_PROBABILITY = 0.3  # of a critical section, when the nemesis includes pause

Proc = Generator[simpy.events.Event, Any, Any]


class LockWorkload(Workload):
    name = "lock"
    description = "etcd's mutex recipe; writes fenced by the lock key's create revision (checked with sim/check lock)"

    def __init__(self, keys: int, fencing: bool = True, pauses: bool = False) -> None:
        super().__init__(keys)
        self.fencing = fencing
        self.pauses = pauses
        self.lock_records: list[dict[str, Any]] = []
        self.values = 0

    def configure(self, options: Any) -> None:
        self.fencing = options.lock_fencing
        self.pauses = Fault.PAUSE in parse_faults(options.nemesis)

    def spawn_clients(self, ctx: ClientContext) -> None:
        for i in range(ctx.clients):
            ctx.env.process(self._client(ctx, ctx.rng_for(i), i))

    # --------------------------------------------------------------- client

    def _client(self, ctx: ClientContext, rng: random.Random, client: int) -> Proc:
        env, cluster = ctx.env, ctx.cluster
        slots = sorted(cluster.slots)
        while env.now < ctx.stop_at:
            slot = rng.choice(slots)
            session = yield from open_session(env, cluster, slot, SESSION_TTL, ctx.timeout)
            if session is None:
                yield env.timeout(rng.uniform(0.05, 0.2))
                continue
            yield from self._round(ctx, rng, client, slot, session)
            yield from session.close()
            yield env.timeout(rng.expovariate(ctx.rate / ctx.clients))

    def _round(self, ctx: ClientContext, rng: random.Random, client: int, slot: int, session: Session) -> Proc:
        env = ctx.env
        call = env.now
        try:
            held = yield from run_recipe(env, ctx.cluster, slot, recipes.lock(LOCK, session.lease), ctx.timeout,
                                         give_up_at=ctx.stop_at)
        except (RaftKVError, recipes.LockLost) as e:
            self._lock_record(client, "acquire", None, call, env.now, classify_error(e, False))
            return
        except Unanswered:
            self._lock_record(client, "acquire", None, call, None, Status.INFO)
            return
        self._lock_record(client, "acquire", held.revision, call, env.now, Status.OK)
        # Read the resource, then write it: the kv history sees both.
        yield from self._kv(ctx, client, slot, "get", None, api.RangeRequest(key=RESOURCE.encode()))
        if self.pauses and rng.random() < PAUSE_PROBABILITY:
            # A process pause past the session's TTL: keep-alives stop, the lease expires.
            session.paused = True
            yield env.timeout(session.ttl * rng.uniform(1.5, 3.0))
            session.paused = False
        self.values += 1
        value = f"w{self.values}"
        if self.fencing:
            req: Any = api.TxnRequest(
                compare=(api.Compare(key=held.key, target=api.CompareTarget.CREATE, result=api.CompareResult.EQUAL,
                                     create_revision=held.revision),),
                success=(api.RequestOp(request_put=api.PutRequest(key=RESOURCE.encode(), value=value.encode())),),
            )
        else:
            req = api.PutRequest(key=RESOURCE.encode(), value=value.encode())
        call = env.now
        status = yield from self._kv(ctx, client, slot, "put", value, req)
        self._lock_record(client, "write", held.revision, call, None if status is Status.INFO else env.now, status,
                          key=RESOURCE, value=value, fenced=self.fencing)
        call = env.now
        answered, out = yield from request(env, ctx.cluster, slot, api.DeleteRangeRequest(key=held.key), ctx.timeout)
        status = Status.INFO if not answered else Status.FAIL if isinstance(out, RaftKVError) else Status.OK
        self._lock_record(client, "release", held.revision, call, None if status is Status.INFO else env.now, status)

    def _kv(self, ctx: ClientContext, client: int, slot: int, op: str, value: Any, req: Any) -> Proc:
        """One resource operation, recorded in the kv history; its status."""
        env = ctx.env
        is_read = op == "get"
        inv = Invocation(op, RESOURCE, value, req, _output(op), is_read=is_read)
        rec = Record(client, inv, env.now, slot=slot)
        ctx.records.append(rec)
        answered, outcome = yield from request(env, ctx.cluster, slot, req, ctx.timeout)
        if not answered:
            return Status.INFO
        rec.return_ = env.now
        if isinstance(outcome, RaftKVError):
            rec.status = classify_error(outcome, is_read)
            rec.error = type(outcome).__name__
        elif isinstance(outcome, api.TxnResponse) and not outcome.succeeded:
            rec.status = Status.FAIL  # fenced off: the store refused the stale holder's write
        else:
            rec.status = Status.OK
            rec.output = inv.output(outcome)
        return rec.status

    def _lock_record(self, client: int, op: str, token: int | None, call: float, ret: float | None, status: Status,
                     **extra: Any) -> None:
        rec = {"client": client, "op": op, "lock": LOCK.decode(), "create_revision": token, "call": round(call, 6),
               "return": None if ret is None or status is Status.INFO else round(ret, 6), "status": status.value}
        rec.update(extra)
        self.lock_records.append(rec)

    # -------------------------------------------------------------- checks

    def next_invocation(self, rng: random.Random) -> Invocation:
        raise NotImplementedError("the lock workload runs its own clients")

    def files(self) -> dict[str, list[dict[str, Any]]]:
        return {"lock.jsonl": sorted(self.lock_records, key=lambda r: (r["call"], r["client"]))}

    def check(self, history: Sequence[Operation]) -> WorkloadCheck:
        result = check_lock(self.files()["lock.jsonl"])
        ok = result.verdict is Verdict.OK
        problems = () if ok else tuple(render_text(result).splitlines()[:10])
        return WorkloadCheck("lock: fenced mutual exclusion", ok, problems)


def _output(op: str) -> Any:
    if op == "get":
        return lambda r: r.kvs[0].value.decode() if r.kvs else None
    return lambda _r: None
