"""EtcdWorld: a simulated raftkv cluster that a notebook scripts step by step, with etcd clients.

``sim.run.simulate`` runs whole workloads under a random fault schedule and
judges them. The recipes notebook also tells small stories in order: three
service instances register, one dies, a tracker watches the list change; a
lock holder pauses past its lease. ``EtcdWorld`` is the same world
(``sim.cluster.SimCluster``: ``kv.member.Member`` unchanged, the modelled
network, disks and clocks) with the story's actors written as simpy
generators, as the simpy examples do, and its faults placed at chosen times.

Actors are plain generators started with ``world.start(name, generator)``. In
them, ``yield from world.call(member, request)`` sends one kv.api request
(raising the member's RaftKVError, or ``Unanswered`` after the timeout),
``yield from world.recipe(member, recipe)`` runs a ``kv.recipes`` generator
(``sim.recipe_client``: waits become watches), and
``yield from world.session(name, member, ttl)`` opens an etcd session, a
lease kept alive every TTL/3 by its own actor until ``close`` (or while its
owner is paused, not at all: that is the point of Jepsen's lock lesson).
``PrefixTracker`` keeps a client's view of a prefix by read-then-watch
(``kv.recipes.read_then_watch``), recording every change it sees.

Everything the story does is logged (``world.log``) for tables and plots.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from kv import api, recipes
from kv.errors import RaftKVError
from kv.keyrange import prefix_range_end
from sim.cluster import SimCluster
from sim.clients import request
from sim.options import RunOptions
from sim.recipe_client import Unanswered, run_recipe

Proc = Generator[simpy.events.Event, Any, Any]
_streams = itertools.count(1)


@dataclass(frozen=True, slots=True)
class LogLine:
    time: float
    actor: str
    event: str
    detail: str = ""


@dataclass(slots=True)
class Session:
    """An etcd session: a lease its owner keeps alive (kv.recipes.grant_session)."""

    owner: str
    member: int
    lease: int
    ttl: int
    opened_at: float
    paused: bool = False  # the owner is paused: no keep-alives go out
    closed: bool = False
    lost_at: float | None = None  # when a keep-alive was answered "unknown lease" (TTL 0)


class EtcdWorld:
    """A SimCluster plus the actors of one story; time in simulated seconds."""

    def __init__(self, *, seed: int = 1, nodes: int = 3, timeout: float = 1.0, **options: Any) -> None:
        """`options`: ``sim.options.RunOptions`` fields (latencies, timeouts, ...); no clients or
        nemesis run by themselves. `timeout`: how long a client waits for an answer."""
        self.options = RunOptions(seed=seed, nodes=nodes, clients=0, nemesis="", **options)
        self.env = simpy.Environment()
        self.cluster = SimCluster(self.env, self.options)
        self.cluster.start()
        self.timeout = timeout
        self.log: list[LogLine] = []
        self.sessions: list[Session] = []
        self._cut = itertools.count(1)

    @property
    def now(self) -> float:
        return float(self.env.now)

    def run_to(self, t: float) -> None:
        self.env.run(until=t)

    def run_for(self, seconds: float) -> None:
        self.env.run(until=self.env.now + seconds)

    def note(self, actor: str, event: str, detail: str = "") -> None:
        self.log.append(LogLine(self.now, actor, event, detail))

    def start(self, name: str, actor: Proc, at: float | None = None) -> simpy.Process:
        """Run the generator `actor` as a simpy process (from time `at`, default now)."""

        def delayed() -> Proc:
            if at is not None and at > self.env.now:
                yield self.env.timeout(at - self.env.now)
            self.note(name, "starts")
            return (yield from actor)

        return self.env.process(delayed())

    def at(self, t: float, action: Callable[[], None]) -> None:
        """Do `action` (e.g. a fault) at simulated time t."""

        def later() -> Proc:
            yield self.env.timeout(max(0.0, t - self.env.now))
            action()

        self.env.process(later())

    # ------------------------------------------------------------ client steps

    def call(self, member: int, req: Any) -> Proc:
        """Send one kv.api request to a member: its response; raises its RaftKVError, or
        Unanswered when nothing came back within the timeout."""
        answered, outcome = yield from request(self.env, self.cluster, member, req, self.timeout)
        if not answered:
            raise Unanswered(type(req).__name__)
        if isinstance(outcome, RaftKVError):
            raise outcome
        return outcome

    def recipe(self, member: int, recipe: recipes.Recipe[Any], give_up_at: float = float("inf")) -> Proc:
        """Run a kv.recipes generator against a member (waits become watches); its value."""
        return (yield from run_recipe(self.env, self.cluster, member, recipe, self.timeout, give_up_at))

    def session(self, owner: str, member: int, ttl: int) -> Proc:
        """Open an etcd session for `owner` and keep it alive until closed: the Session."""
        lease = yield from self.recipe(member, recipes.grant_session(ttl))
        s = Session(owner, member, lease, ttl, self.now)
        self.sessions.append(s)
        self.note(owner, "session", f"lease {lease:x}, TTL {ttl} s")
        self.env.process(self._keep_alive(s))
        return s

    def _keep_alive(self, s: Session) -> Proc:
        while not s.closed:
            yield self.env.timeout(s.ttl / 3)
            if s.closed or s.paused:
                continue
            try:
                ka = yield from self.call(s.member, api.LeaseKeepAliveRequest(ID=s.lease))
            except (RaftKVError, Unanswered):
                continue
            if ka.TTL <= 0 and s.lost_at is None:
                s.lost_at = self.now
                self.note(s.owner, "session lost", f"lease {s.lease:x} expired")

    def close(self, s: Session) -> Proc:
        """End the session: revoke its lease (everything attached to it is deleted)."""
        s.closed = True
        try:
            yield from self.recipe(s.member, recipes.end_session(s.lease))
        except (RaftKVError, Unanswered):
            pass
        self.note(s.owner, "session closed", f"lease {s.lease:x}")

    def crash(self, s: Session) -> None:
        """The session's owner dies: its keep-alives stop and nothing is revoked, so what it
        held stays until the lease's TTL runs out on the leader."""
        s.closed = True
        self.note(s.owner, "crashes", f"lease {s.lease:x} left to expire")

    def pause(self, s: Session, seconds: float) -> Proc:
        """The session's owner stops for `seconds` (a GC pause, SIGSTOP): nothing it does happens,
        its keep-alives included."""
        s.paused = True
        self.note(s.owner, "paused", f"for {seconds:g} s")
        yield self.env.timeout(seconds)
        s.paused = False
        self.note(s.owner, "resumed")

    # ------------------------------------------------------------ faults

    def kill(self, member: int) -> None:
        if self.cluster.kill(self.cluster.slots[member]):
            self.note("nemesis", "kill", f"m{member}")

    def restart(self, member: int) -> None:
        if self.cluster.restart(self.cluster.slots[member]):
            self.note("nemesis", "restart", f"m{member}")

    def partition(self, *groups: list[int]) -> str:
        """Cut the network between the groups of members; returns the cut's name for heal."""
        name = f"cut{next(self._cut)}"
        self.cluster.network.cut_between(name, groups)
        self.note("nemesis", "partition", " | ".join(",".join(f"m{m}" for m in g) for g in groups))
        return name

    def heal(self, name: str | None = None) -> None:
        self.cluster.network.heal(name)
        self.note("nemesis", "heal")

    # ------------------------------------------------------------ queries

    def leader(self) -> int | None:
        slot = self.cluster.leader()
        return None if slot is None else slot.slot

    def stored(self, prefix: bytes) -> dict[bytes, bytes]:
        """What the most up-to-date member's store holds under `prefix` now (a look behind the
        scenes for the narrative, not a client read)."""
        members = [s.member for s in self.cluster.slots.values() if s.member is not None]
        best = max(members, key=lambda m: m.applied_index)
        resp = best.sm.store.range(api.RangeRequest(key=prefix, range_end=prefix_range_end(prefix)))
        return {kv.key: kv.value for kv in resp.kvs}


@dataclass
class PrefixTracker:
    """A client's copy of everything under `prefix`: read, then watch from the next revision
    (kv.recipes.read_then_watch), so that no change is missed or seen twice. When its stream
    breaks (the member crashed) it reads and watches again on the next member.

    ``changes``: (time, key, value or None for a deletion, revision) as the tracker saw them;
    ``lists``: (time, member, revision) of each full read."""

    world: EtcdWorld
    name: str
    prefix: bytes
    view: dict[bytes, bytes] = field(default_factory=dict)
    changes: list[tuple[float, bytes, bytes | None, int]] = field(default_factory=list)
    lists: list[tuple[float, int, int]] = field(default_factory=list)

    def run(self, member: int, until: float) -> Proc:
        world = self.world
        members = sorted(world.cluster.slots)
        while world.now < until:
            try:
                kvs, start = yield from world.recipe(member, recipes.read_then_watch(self.prefix), give_up_at=until)
            except (RaftKVError, Unanswered):
                member = members[(members.index(member) + 1) % len(members)]
                yield world.env.timeout(0.1)
                continue
            view = {key: kv.value for key, kv in kvs.items()}
            self.lists.append((world.now, member, start - 1))
            world.note(self.name, "list", f"m{member} at revision {start - 1}: {len(view)} keys")
            for key in set(self.view) | set(view):
                if self.view.get(key) != view.get(key):
                    self.changes.append((world.now, key, view.get(key), start - 1))
            self.view = dict(view)
            yield from self._watch(member, start, until)
            member = members[(members.index(member) + 1) % len(members)]

    def _watch(self, member: int, start: int, until: float) -> Proc:
        world = self.world
        slot = world.cluster.slots[member]
        stream = ("tracker", self.name, next(_streams))
        broken = world.env.event()

        def on_response(resp: api.WatchResponse | RaftKVError) -> None:
            if isinstance(resp, RaftKVError) or resp.canceled:
                if not broken.triggered:
                    broken.succeed()
                return
            for ev in resp.events:
                value = ev.kv.value if ev.type == api.EventType.PUT else None
                if value is None:
                    self.view.pop(ev.kv.key, None)
                else:
                    self.view[ev.kv.key] = value
                self.changes.append((world.now, ev.kv.key, value, ev.kv.mod_revision))

        world.cluster.watch(slot, stream, api.WatchCreateRequest(
            key=self.prefix, range_end=prefix_range_end(self.prefix), start_revision=start), on_response)
        yield broken | world.env.timeout(max(0.0, until - world.now))
        world.cluster.close_watch(slot, stream)
        if broken.triggered:
            world.note(self.name, "stream broken", f"m{member}")


__all__ = ["EtcdWorld", "LogLine", "PrefixTracker", "Session", "Unanswered"]
