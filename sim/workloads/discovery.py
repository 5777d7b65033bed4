"""Two scenarios of the etcd article: service discovery and a configuration centre.

``discovery``: service instances register ``svc/<name>`` with their session's
lease (``kv.recipes.register``) and keep it alive; some instances die during
the run (their keep-alives stop, so their keys expire). An instance whose
lease was lost in a fault (keep-alive answered TTL 0) registers again, as a
real registry client does. Trackers list ``svc/`` and then watch from the
next revision (``kv.recipes.read_then_watch``), applying every event to their
view; a broken stream is re-listed and re-watched. After the faults heal and
the dead instances' TTLs run out, every tracker's view must equal the set of
instances still alive — and the store's.

``config``: writers update a few configuration keys ``cfg/*``; readers read
the configuration, then watch from the next revision and apply each change.
Within one stream a key's versions must arrive one by one (nothing missed,
reordered or seen twice); after the quiet phase every reader's copy must
equal the store's final configuration.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Sequence
from typing import Any

import simpy

from kv import api, recipes
from kv.errors import RaftKVError
from kv.keyrange import prefix_range_end
from sim.clients import ClientContext, request
from sim.history import Operation
from sim.recipe_client import Unanswered, run_recipe, watch_while_alive
from sim.workloads.base import Invocation, Workload, WorkloadCheck

SESSION_TTL = 2
DIE_PROBABILITY = 0.4  # of an instance, at a random moment of the fault phase

Proc = Generator[simpy.events.Event, Any, Any]


class _Tracker:
    """A client's view of a prefix, kept by read-then-watch, re-listed when a stream breaks."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.view: dict[bytes, api.KeyValue] = {}
        self.problems: list[str] = []
        self.streams = 0

    def run(self, ctx: ClientContext, rng: random.Random, until: float) -> Proc:
        env, cluster = ctx.env, ctx.cluster
        slots = sorted(cluster.slots)
        while env.now < until:
            slot = rng.choice(slots)
            try:
                self.view, start = yield from run_recipe(env, cluster, slot, recipes.read_then_watch(self.prefix),
                                                         ctx.timeout, give_up_at=until)
            except (RaftKVError, Unanswered):
                yield env.timeout(0.1)
                continue
            self.streams += 1
            broken = yield from self._watch(ctx, slot, start, until)
            if not broken:
                return

    def _watch(self, ctx: ClientContext, slot: int, start: int, until: float) -> Proc:
        """Apply the stream's events until it breaks or goes silent: True if it did."""
        def on_response(resp: api.WatchResponse) -> None:
            for ev in resp.events:
                self._apply(ev)

        create = api.WatchCreateRequest(key=self.prefix, range_end=prefix_range_end(self.prefix), start_revision=start)
        return (yield from watch_while_alive(ctx.env, ctx.cluster, slot, ("tracker", id(self), self.streams), create,
                                             on_response, until, silence=3.0))

    def _apply(self, ev: api.Event) -> None:
        key = ev.kv.key
        old = self.view.get(key)
        if ev.type == api.EventType.PUT:
            if old is not None and ev.kv.mod_revision <= old.mod_revision:
                self.problems.append(f"{key.decode()}: revision {ev.kv.mod_revision} after {old.mod_revision}")
            elif old is not None and ev.kv.create_revision == old.create_revision and ev.kv.version != old.version + 1:
                self.problems.append(
                    f"{key.decode()}: version {ev.kv.version} after {old.version} in one stream (a change was missed)")
            self.view[key] = ev.kv
        else:
            self.view.pop(key, None)


class DiscoveryWorkload(Workload):
    name = "discovery"
    description = "service discovery: instances register with leases; trackers list then watch (etcd article)"

    def __init__(self, keys: int) -> None:
        super().__init__(keys)
        self.alive: dict[str, bool] = {}
        self.trackers: list[_Tracker] = []
        self.cluster: Any = None

    def spawn_clients(self, ctx: ClientContext) -> None:
        self.cluster = ctx.cluster
        trackers = max(1, ctx.clients // 3)
        end = ctx.stop_at + 1e9  # trackers and live instances run to the end of the run
        for i in range(ctx.clients - trackers):
            ctx.env.process(self._instance(ctx, ctx.rng_for(i), f"i{i}"))
        for j in range(trackers):
            t = _Tracker(b"svc/")
            self.trackers.append(t)
            ctx.env.process(t.run(ctx, ctx.rng_for(1000 + j), end))

    def next_invocation(self, rng: random.Random) -> Invocation:
        raise NotImplementedError("the discovery workload runs its own clients")

    def _instance(self, ctx: ClientContext, rng: random.Random, name: str) -> Proc:
        env, cluster = ctx.env, ctx.cluster
        slots = sorted(cluster.slots)
        dies_at = rng.uniform(0, ctx.stop_at) if rng.random() < DIE_PROBABILITY else float("inf")
        self.alive[name] = True
        lease = 0
        slot = rng.choice(slots)
        while env.now < dies_at:
            if lease == 0:
                try:
                    lease = yield from run_recipe(env, cluster, slot, recipes.grant_session(SESSION_TTL), ctx.timeout,
                                                  give_up_at=dies_at)
                    yield from run_recipe(env, cluster, slot, recipes.register(b"svc", name.encode(),
                                          f"10.0.0.{name[1:]}:80".encode(), lease), ctx.timeout, give_up_at=dies_at)
                except (RaftKVError, Unanswered):
                    lease = 0
                    slot = rng.choice(slots)
                    yield env.timeout(0.2)
                    continue
            yield env.timeout(min(SESSION_TTL / 3, max(0.0, dies_at - env.now)))
            if env.now >= dies_at:
                break
            answered, ka = yield from request(env, cluster, slot, api.LeaseKeepAliveRequest(ID=lease), ctx.timeout)
            if answered and isinstance(ka, api.LeaseKeepAliveResponse) and ka.TTL <= 0:
                lease = 0  # the lease was lost (a long fault): register again
            elif not answered or isinstance(ka, RaftKVError):
                slot = rng.choice(slots)
        self.alive[name] = False

    def check(self, history: Sequence[Operation]) -> WorkloadCheck:
        expected = {f"svc/{n}".encode() for n, up in self.alive.items() if up}
        members = [s.member for s in self.cluster.slots.values() if s.member is not None]
        store = max(members, key=lambda m: m.applied_index).sm.store if members else None
        stored = {kv.key for kv in store.range(api.RangeRequest(key=b"svc/", range_end=b"svc0")).kvs} if store else set()
        problems = []
        if stored != expected:
            problems.append(f"the store lists {sorted(k.decode() for k in stored)}, "
                            f"alive are {sorted(k.decode() for k in expected)}")
        for i, t in enumerate(self.trackers):
            problems += [f"tracker {i}: {p}" for p in t.problems[:3]]
            if set(t.view) != stored:
                problems.append(f"tracker {i} sees {sorted(k.decode() for k in t.view)}, "
                                f"the store has {sorted(k.decode() for k in stored)}")
        return WorkloadCheck(f"discovery: {len(expected)} live instances, {len(self.trackers)} trackers agree",
                             not problems, tuple(problems[:10]))


class ConfigWorkload(Workload):
    name = "config"
    description = "configuration centre: writers update cfg/*; readers read, then watch from the next revision"

    def __init__(self, keys: int) -> None:
        super().__init__(keys)
        self.readers: list[_Tracker] = []
        self.cluster: Any = None
        self.values = 0

    def spawn_clients(self, ctx: ClientContext) -> None:
        self.cluster = ctx.cluster
        readers = max(1, ctx.clients // 2)
        for i in range(ctx.clients - readers):
            ctx.env.process(self._writer(ctx, ctx.rng_for(i)))
        for j in range(readers):
            t = _Tracker(b"cfg/")
            self.readers.append(t)
            ctx.env.process(t.run(ctx, ctx.rng_for(1000 + j), ctx.stop_at + 1e9))

    def next_invocation(self, rng: random.Random) -> Invocation:
        raise NotImplementedError("the config workload runs its own clients")

    def _writer(self, ctx: ClientContext, rng: random.Random) -> Proc:
        env, cluster = ctx.env, ctx.cluster
        slots = sorted(cluster.slots)
        while env.now < ctx.stop_at:
            self.values += 1
            key = f"cfg/{rng.choice('abc'[: max(1, min(3, self.keys))])}".encode()
            yield from request(env, cluster, rng.choice(slots), api.PutRequest(key=key, value=str(self.values).encode()),
                               ctx.timeout)
            yield env.timeout(rng.expovariate(ctx.rate / ctx.clients))

    def check(self, history: Sequence[Operation]) -> WorkloadCheck:
        members = [s.member for s in self.cluster.slots.values() if s.member is not None]
        store = max(members, key=lambda m: m.applied_index).sm.store if members else None
        final = {kv.key: kv.value for kv in store.range(api.RangeRequest(key=b"cfg/", range_end=b"cfg0")).kvs} \
            if store else {}
        problems = []
        for i, t in enumerate(self.readers):
            problems += [f"reader {i}: {p}" for p in t.problems[:3]]
            view = {k: kv.value for k, kv in t.view.items()}
            if view != final:
                problems.append(f"reader {i} ends with {view}, the store with {final}")
        return WorkloadCheck(f"config: {len(self.readers)} readers saw every change in order and end up current",
                             not problems, tuple(problems[:10]))
