"""The watch workload: watchers' streams checked against the committed history.

Writers run the register workload's operations on keys under ``w/`` (so the
kv history is checked for linearizability as usual). Watchers watch the whole
``w/`` prefix on a member of their choice. A watcher asks for a progress
notification every second; when its member stops answering (it crashed, was
partitioned away, or paused) or at random moments, it gives the stream up and
resumes on another member from the revision after the last one it saw, as an
etcd client does after a disconnect. That is exactly where the ``watch-skip``
teaching bug bites: a restarted member resumes a watch one revision late.

At the end the committed events of ``w/`` are read from the most advanced
member's MVCC history, and ``watch.jsonl`` (commit and response records, the
watch checker's format: sim/check/watch.py) is judged: events ordered, unique,
atomic per revision, none missing between a watcher's start and the last
revision it saw, exactly as committed, and nothing lost across a resume.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Generator, Sequence
from typing import Any

import simpy

from kv import api
from kv.keyrange import prefix_range_end
from sim.check import Verdict, check_watch, render_text
from sim.clients import ClientContext, kv_client
from sim.recipe_client import watch_while_alive
from sim.history import Operation
from sim.workloads.base import Invocation, WorkloadCheck
from sim.workloads.register import RegisterWorkload

PREFIX = b"w/"
PROGRESS_EVERY = 1.0  # seconds between progress requests, the watcher's liveness probe
RESUME_PROBABILITY = 0.1  # per progress round: move to another member even if this one answers

Proc = Generator[simpy.events.Event, Any, Any]


class WatchWorkload(RegisterWorkload):
    name = "watch"
    description = "writers on w/* and watchers of the prefix that resume elsewhere after faults (checked with sim/check watch)"

    def __init__(self, keys: int) -> None:
        super().__init__(keys)
        self.prefix = PREFIX.decode()
        self.records: list[dict[str, Any]] = []
        self.cluster: Any = None
        self._ids = itertools.count(1)

    def spawn_clients(self, ctx: ClientContext) -> None:
        self.cluster = ctx.cluster
        watchers = max(1, ctx.clients // 3)
        for i in range(ctx.clients - watchers):
            ctx.env.process(kv_client(ctx.env, ctx, self, ctx.rng_for(i), i))
        for j in range(watchers):
            ctx.env.process(self._watcher(ctx, ctx.rng_for(10_000 + j)))

    def next_invocation(self, rng: random.Random) -> Invocation:
        return super().next_invocation(rng)

    # ------------------------------------------------------------- watcher

    def _watcher(self, ctx: ClientContext, rng: random.Random) -> Proc:
        env, cluster = ctx.env, ctx.cluster
        slots = sorted(cluster.slots)
        last_seen = 0  # the last revision this client saw (events or progress)
        previous: int | None = None
        start = rng.choice([1, 0])  # from the beginning of history, or from now
        while env.now < ctx.stop_at + 2.0:
            slot = rng.choice(slots)
            wid = next(self._ids)
            start_revision = last_seen + 1 if previous is not None else start
            state: dict[str, Any] = {"start": start_revision, "heard": False}

            def on_response(resp: api.WatchResponse, wid: int = wid, state: dict[str, Any] = state,
                            resumes: int | None = previous) -> None:
                nonlocal last_seen
                if resp.created and state["start"] == 0:
                    state["start"] = resp.header.revision + 1  # "from now": the revision after the create
                state["heard"] = True
                self._response(wid, state["start"], resp, env.now, resumes)
                if resp.events:
                    last_seen = max(last_seen, resp.events[-1].kv.mod_revision)
                elif resp.watch_id == -1 or not resp.created:
                    last_seen = max(last_seen, resp.header.revision)  # a progress mark: nothing before it is missing

            create = api.WatchCreateRequest(key=PREFIX, range_end=prefix_range_end(PREFIX),
                                            start_revision=start_revision)
            # Held while the member answers; left now and then (RESUME_PROBABILITY per second)
            # to resume elsewhere, as a client that reconnects would.
            yield from watch_while_alive(env, cluster, slot, ("watch-workload", wid), create, on_response,
                                         ctx.stop_at + 2.0, silence=ctx.timeout,
                                         leave=lambda: rng.random() < RESUME_PROBABILITY)
            if state["heard"]:
                previous = wid  # the next stream carries on from this one

    def _response(self, wid: int, start: int, resp: api.WatchResponse, now: float, resumes: int | None) -> None:
        rec: dict[str, Any] = {
            "record": "response", "watcher": wid, "key": PREFIX.decode(),
            "range_end": prefix_range_end(PREFIX).decode(), "start_revision": max(1, start),
            "events": [_event(e) for e in resp.events], "time": round(now, 6),
        }
        if resumes is not None:
            rec["resumes"] = resumes
        self.records.append(rec)

    # -------------------------------------------------------------- checks

    def _commits(self) -> list[dict[str, Any]]:
        members = [s.member for s in self.cluster.slots.values() if s.member is not None]
        if not members:
            return []
        store = max(members, key=lambda m: m.applied_index).sm.store
        by_rev: dict[int, list[dict[str, Any]]] = {}
        for e in store.events(PREFIX, prefix_range_end(PREFIX), 1):
            by_rev.setdefault(e.kv.mod_revision, []).append(_event(e))
        return [{"record": "commit", "revision": r, "events": evs} for r, evs in sorted(by_rev.items())]

    def files(self) -> dict[str, list[dict[str, Any]]]:
        return {"watch.jsonl": self._commits() + self.records}

    def check(self, history: Sequence[Operation]) -> WorkloadCheck:
        result = check_watch(self.files()["watch.jsonl"])
        ok = result.verdict is Verdict.OK
        problems = () if ok else tuple(render_text(result).splitlines()[:10])
        watchers = len({r["watcher"] for r in self.records})
        return WorkloadCheck(f"watch: {watchers} watch streams see exactly the committed events", ok, problems)


def _event(e: api.Event) -> dict[str, Any]:
    put = e.type == api.EventType.PUT
    return {
        "type": "PUT" if put else "DELETE",
        "key": e.kv.key.decode(),
        "value": e.kv.value.decode() if put else None,
        "mod_revision": e.kv.mod_revision,
        "create_revision": e.kv.create_revision if put else 0,
        "version": e.kv.version if put else 0,
    }
