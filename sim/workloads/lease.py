"""The lease workload: keys attached to leases vanish after the lease ends, never while it is kept alive.

Each client loops: grant a lease, put a key of its own with it, then either
keep the lease alive for a while (keep-alives every TTL/3, reading the key
now and then: it must be there) or abandon it (it must expire, and its key
with it: reads after the expiry must not find it). Expiry is the leader's
decision carried out through the log (kv/member.py); the simulator records
when each expiry's revoke first applied as the server-side fact the lease
checker needs (``{"op": "expire", ...}``).

``lease.jsonl`` is judged by sim/check/lease.py: never gone while certainly
in force, always gone once certainly ended, no expiry before TTL after the
last renewal. The ``lease-follower-clock`` teaching bug (a follower that
revokes by its own clock, e.g. right after a pause) is caught here.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Generator, Sequence
from typing import Any

import simpy

from kv import api
from kv.errors import RaftKVError
from kv.raft.messages import EntryType
from sim.check import check_lease
from sim.clients import ClientContext, request
from sim.history import Operation, Status
from sim.schedule import Fault, parse_faults
from sim.workloads.base import Invocation, Workload, WorkloadCheck

TTL = 2  # requested; the cluster raises it to its minimum
KEEP_PROBABILITY = 0.6  # a lease is kept alive for a while, else abandoned

Proc = Generator[simpy.events.Event, Any, Any]


class LeaseWorkload(Workload):
    name = "lease"
    description = "keys with leases: kept-alive ones stay, abandoned ones expire (checked with sim/check lease)"

    def __init__(self, keys: int) -> None:
        super().__init__(keys)
        self.records: list[dict[str, Any]] = []
        self.expired: dict[int, float] = {}  # lease -> when its revoke first applied
        self.client_revokes: set[int] = set()
        self._keys = itertools.count(1)
        self.clock_faults = False

    def spawn_clients(self, ctx: ClientContext) -> None:
        ctx.cluster.apply_observers.append(self._observe_applied)
        for i in range(ctx.clients):
            ctx.env.process(self._client(ctx, ctx.rng_for(i), i))

    def next_invocation(self, rng: random.Random) -> Invocation:
        raise NotImplementedError("the lease workload runs its own clients")

    # --------------------------------------------------------------- client

    def _client(self, ctx: ClientContext, rng: random.Random, client: int) -> Proc:
        env = ctx.env
        slots = sorted(ctx.cluster.slots)
        while env.now < ctx.stop_at:
            slot = rng.choice(slots)
            grant = yield from self._op(ctx, client, slot, "grant", api.LeaseGrantRequest(TTL=TTL))
            if not isinstance(grant, api.LeaseGrantResponse):
                yield env.timeout(rng.uniform(0.05, 0.3))
                continue
            lease, ttl = grant.ID, grant.TTL
            key = f"l/{client}/{next(self._keys)}"
            put = yield from self._op(ctx, client, slot, "put", api.PutRequest(key=key.encode(), value=b"x", lease=lease),
                                      key=key, value="x", lease=lease)
            if not isinstance(put, api.PutResponse):
                continue
            if rng.random() < KEEP_PROBABILITY:
                until = env.now + rng.uniform(1.0, 3.0) * ttl
                while env.now < until and env.now < ctx.stop_at:
                    yield env.timeout(ttl / 3)
                    ka = yield from self._op(ctx, client, slot, "keepalive", api.LeaseKeepAliveRequest(ID=lease),
                                             lease=lease)
                    if isinstance(ka, api.LeaseKeepAliveResponse) and ka.TTL <= 0:
                        break  # gone (expired while we were cut off): nothing more to keep
                    yield from self._get(ctx, client, slot, key)
            # Abandon it: after the TTL (plus an election's worth of slack) it must be gone.
            yield env.timeout(ttl * rng.uniform(0.5, 2.5))
            yield from self._get(ctx, client, rng.choice(slots), key)

    def _get(self, ctx: ClientContext, client: int, slot: int, key: str) -> Proc:
        yield from self._op(ctx, client, slot, "get", api.RangeRequest(key=key.encode()), key=key)

    def _op(self, ctx: ClientContext, client: int, slot: int, op: str, req: Any, **fields: Any) -> Proc:
        env = ctx.env
        call = env.now
        answered, out = yield from request(env, ctx.cluster, slot, req, ctx.timeout)
        rec: dict[str, Any] = {"client": client, "op": op, "call": round(call, 6), **fields}
        if not answered:
            status, ret = Status.INFO, None
        elif isinstance(out, RaftKVError):
            # Reads and grants surely did nothing; a keep-alive's error is as good as none.
            status, ret = (Status.FAIL, round(env.now, 6)) if op in ("get", "grant", "keepalive") else (Status.INFO, None)
        else:
            status, ret = Status.OK, round(env.now, 6)
        rec.update({"return": ret, "status": status.value})
        if op == "grant":
            rec.update({"lease": out.ID if status is Status.OK else 0, "ttl": out.TTL if status is Status.OK else 0})
            if status is not Status.OK:
                return out  # a failed grant has no lease to record
        elif op == "keepalive":
            rec["ttl"] = out.TTL if status is Status.OK else 0
        elif op == "get":
            kvs = out.kvs if status is Status.OK else ()
            rec["output"] = {"value": kvs[0].value.decode(), "lease": kvs[0].lease or None} if kvs else None
        self.records.append(rec)
        return out

    # ------------------------------------------------------ expiry facts

    def _observe_applied(self, now: float, slot: Any, entries: Sequence[Any]) -> None:
        from kv.member import decode_proposal

        member = slot.member
        for e in entries:
            if e.type != EntryType.NORMAL or not e.data:
                continue
            req = decode_proposal(e.data, e.index).request
            if not isinstance(req, (api.LeaseRevokeRequest, api.LeaseExpireRequest)) or req.ID in self.expired:
                continue
            # The first member to apply it. An expiry that found the lease renewed since the
            # leader decided is a no-op: count it only if the lease is gone on that member.
            if member is not None and member.sm.lessor.lookup(req.ID) is None:
                self.expired[req.ID] = now

    # -------------------------------------------------------------- checks

    def files(self) -> dict[str, list[dict[str, Any]]]:
        expiries = [{"op": "expire", "lease": lease, "time": round(t, 6)} for lease, t in sorted(self.expired.items())]
        return {"lease.jsonl": sorted(self.records, key=lambda r: (r["call"], r["client"])) + expiries}

    def configure(self, options: Any) -> None:
        self.clock_faults = Fault.CLOCK in parse_faults(options.nemesis)

    def check(self, history: Sequence[Operation]) -> WorkloadCheck:
        result = check_lease(self.files()["lease.jsonl"])
        violations = list(result.violations)
        if self.clock_faults:
            # A lease's TTL is measured on the leader's clock (etcd's lessor, on its monotonic
            # clock). The clock fault moves a simulated member's only clock, so a leader whose
            # clock jumps ahead expires leases early *in true time*: with it, only the other
            # half is judged (keys never outlive their lease).
            violations = [v for v in violations if "before its TTL ran out" not in v.reason
                          and "was certainly alive" not in v.reason]
        ok = not violations
        problems = () if ok else tuple(v.reason for v in violations[:10])
        what = "kept late" if self.clock_faults else "lost early nor kept late"
        return WorkloadCheck(f"lease: {len(self.expired)} expiries, keys never {what}", ok, problems)
