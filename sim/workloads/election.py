"""The election workload: etcd's election recipe (campaign, proclaim, resign, observe) under faults.

Candidates open a session, campaign (``kv.recipes.campaign``: the lock
recipe with a value), proclaim a few new values while they lead, and resign.
Observers follow the election (``kv.recipes.leader`` / ``observe``).

A leader's "term" in the recipe is its key's create revision. Its own checker
judges what the candidates *did*, not what they believed (a paused leader
may believe too long; its proclaims must then be refused, as they are
guarded by the create revision):

* at most one leader per term: no two candidates won with the same revision;
* a proclaim that succeeded under term t was not called after a newer term
  t' > t had certainly been won (two leaders acting at once);
* observers see leaders in order: the terms an observer reads never go back.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Sequence
from typing import Any

import simpy

from kv import recipes
from kv.errors import RaftKVError
from sim.clients import ClientContext
from sim.history import Operation
from sim.recipe_client import Unanswered, open_session, run_recipe
from sim.workloads.base import Invocation, Workload, WorkloadCheck

ELECTION = b"election"
SESSION_TTL = 2

Proc = Generator[simpy.events.Event, Any, Any]


class ElectionWorkload(Workload):
    name = "election"
    description = "etcd's election recipe: one leader per term, proclaims fenced, observers see leaders in order"

    def __init__(self, keys: int) -> None:
        super().__init__(keys)
        self.records: list[dict[str, Any]] = []
        self.values = 0

    def spawn_clients(self, ctx: ClientContext) -> None:
        observers = max(1, ctx.clients // 4)
        for i in range(ctx.clients - observers):
            ctx.env.process(self._candidate(ctx, ctx.rng_for(i), i))
        for j in range(observers):
            ctx.env.process(self._observer(ctx, ctx.rng_for(1000 + j), 1000 + j))

    def next_invocation(self, rng: random.Random) -> Invocation:
        raise NotImplementedError("the election workload runs its own clients")

    # ------------------------------------------------------------ clients

    def _candidate(self, ctx: ClientContext, rng: random.Random, client: int) -> Proc:
        env, cluster = ctx.env, ctx.cluster
        slots = sorted(cluster.slots)
        while env.now < ctx.stop_at:
            slot = rng.choice(slots)
            session = yield from open_session(env, cluster, slot, SESSION_TTL, ctx.timeout)
            if session is None:
                yield env.timeout(rng.uniform(0.05, 0.3))
                continue
            call = env.now
            try:
                held = yield from run_recipe(env, cluster, slot, recipes.campaign(ELECTION, session.lease, b"candidate"),
                                             ctx.timeout, give_up_at=ctx.stop_at)
            except (RaftKVError, recipes.LockLost, Unanswered):
                held = None
            if held is not None:
                self._record(client, "won", held.revision, call, env.now)
                for _ in range(rng.randint(1, 3)):
                    yield env.timeout(rng.uniform(0.05, 0.5))
                    self.values += 1
                    call = env.now
                    try:
                        yield from run_recipe(env, cluster, slot, recipes.proclaim(held, f"p{self.values}".encode()),
                                              ctx.timeout, give_up_at=ctx.stop_at)
                        self._record(client, "proclaim", held.revision, call, env.now, value=f"p{self.values}")
                    except (RaftKVError, recipes.NotLeader, Unanswered):
                        break  # refused or unknown: no claim to check
                try:
                    yield from run_recipe(env, cluster, slot, recipes.resign(held), ctx.timeout, give_up_at=ctx.stop_at)
                except (RaftKVError, recipes.NotLeader, Unanswered):
                    pass
            yield from session.close()
            yield env.timeout(rng.expovariate(ctx.rate / ctx.clients))

    def _observer(self, ctx: ClientContext, rng: random.Random, client: int) -> Proc:
        env, cluster = ctx.env, ctx.cluster
        slots = sorted(cluster.slots)
        after = 0
        while env.now < ctx.stop_at:
            slot = rng.choice(slots)
            try:
                if after == 0:
                    kv, rev = yield from run_recipe(env, cluster, slot, recipes.leader(ELECTION), ctx.timeout,
                                                    give_up_at=ctx.stop_at)
                else:
                    kv, rev = yield from run_recipe(env, cluster, slot, recipes.observe(ELECTION, after),
                                                    min(ctx.timeout, 1.0), give_up_at=env.now + 3.0)
            except (RaftKVError, Unanswered):
                yield env.timeout(0.1)
                continue
            after = rev
            if kv is not None:
                self._record(client, "observe", kv.create_revision, env.now, env.now, value=kv.value.decode())

    def _record(self, client: int, op: str, term: int, call: float, ret: float, **extra: Any) -> None:
        self.records.append({"client": client, "op": op, "term": term, "call": round(call, 6),
                             "return": round(ret, 6), **extra})

    # -------------------------------------------------------------- checks

    def files(self) -> dict[str, list[dict[str, Any]]]:
        return {"election.jsonl": sorted(self.records, key=lambda r: (r["call"], r["client"]))}

    def check(self, history: Sequence[Operation]) -> WorkloadCheck:
        problems = check_election(self.records)
        wins = sum(1 for r in self.records if r["op"] == "won")
        return WorkloadCheck(f"election: {wins} terms won, one leader each, observed in order", not problems,
                             tuple(problems[:10]))


def check_election(records: Sequence[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    won: dict[int, dict[str, Any]] = {}
    for r in records:
        if r["op"] == "won":
            if r["term"] in won and won[r["term"]]["client"] != r["client"]:
                problems.append(f"term {r['term']} won by clients {won[r['term']]['client']} and {r['client']}")
            won.setdefault(r["term"], r)
    for p in (r for r in records if r["op"] == "proclaim"):
        newer = [w for t, w in won.items() if t > p["term"] and w["return"] < p["call"]]
        if newer:
            w = max(newer, key=lambda x: x["term"])
            problems.append(
                f"client {p['client']} proclaimed {p['value']} as leader of term {p['term']} at {p['call']:.3f}, "
                f"after client {w['client']} had won term {w['term']} at {w['return']:.3f}: two leaders at once"
            )
    last: dict[int, int] = {}
    for o in sorted((r for r in records if r["op"] == "observe"), key=lambda r: r["call"]):
        prev = last.get(o["client"], 0)
        if o["term"] < prev:
            problems.append(f"observer {o['client']} saw term {o['term']} after term {prev} (leaders out of order)")
        last[o["client"]] = max(prev, o["term"])
    return problems
