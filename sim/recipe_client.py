"""Runs kv.recipes generators for simulated clients: requests to members, waits as watches.

A recipe yields kv.api requests and ``WaitDelete``/``WaitChange`` (kv/recipes.py).
``run_recipe`` sends each request to the client's member and feeds the answer
back (an error is thrown into the recipe, which may handle it); a wait becomes
a watch on the member from the revision after the one the recipe saw. A watch
can die with its member, so every wait also re-checks with a plain read after
``timeout`` and re-creates the watch if the condition still does not hold. A
request that gets no answer in time ends the recipe with an unknown outcome,
and the caller decides (recipes are written to be re-run safely).
"""

from __future__ import annotations

import itertools
from collections.abc import Generator
from typing import Any

import simpy

from kv import api, recipes
from kv.errors import RaftKVError
from sim.clients import request
from sim.cluster import SimCluster

Proc = Generator[simpy.events.Event, Any, Any]

_streams = itertools.count(1)


class Unanswered(Exception):
    """A request of the recipe got no answer within the timeout: its outcome is unknown."""


def run_recipe(
    env: simpy.Environment, cluster: SimCluster, slot: int, recipe: recipes.Recipe[Any], timeout: float,
    give_up_at: float,
) -> Proc:
    """Run `recipe` against the member in `slot`; its return value. Raises the RaftKVError the
    recipe did not handle, or Unanswered."""
    try:
        op = next(recipe)
        while True:
            if isinstance(op, (recipes.WaitDelete, recipes.WaitChange)):
                rev = yield from wait(env, cluster, slot, op, timeout, give_up_at)
                op = recipe.send(rev)
                continue
            answered, outcome = yield from request(env, cluster, slot, op, timeout)
            if not answered:
                recipe.close()
                raise Unanswered(type(op).__name__)
            op = recipe.throw(outcome) if isinstance(outcome, RaftKVError) else recipe.send(outcome)
    except StopIteration as done:
        return done.value


def wait(
    env: simpy.Environment, cluster: SimCluster, slot: int, op: recipes.WaitDelete | recipes.WaitChange,
    timeout: float, give_up_at: float,
) -> Proc:
    """Block until `op` happened; the revision it happened at (or the current one, when a
    re-check found it done). Raises Unanswered at `give_up_at`."""
    if isinstance(op, recipes.WaitDelete):
        create = api.WatchCreateRequest(key=op.key, start_revision=op.revision + 1,
                                        filters=(api.WatchFilterType.NOPUT,))
    else:
        create = api.WatchCreateRequest(key=op.key, range_end=op.range_end, start_revision=op.revision + 1)
    while env.now < give_up_at:
        stream = ("recipe-watch", next(_streams))
        done = env.event()

        def handler(resp: api.WatchResponse | RaftKVError, done: simpy.Event = done) -> None:
            if isinstance(resp, RaftKVError):
                if not done.triggered:
                    done.succeed(None)  # the member crashed: re-check and watch again
            elif resp.events and not done.triggered:
                done.succeed(resp.events[0].kv.mod_revision)
            elif resp.canceled and not done.triggered:
                done.succeed(None)  # compacted away: fall back to the re-check

        cluster.watch(cluster.slots[slot], stream, create, handler)
        yield done | env.timeout(min(timeout, max(0.0, give_up_at - env.now)))
        cluster.close_watch(cluster.slots[slot], stream)
        if done.triggered and done.value is not None:
            return done.value
        rev = yield from _recheck(env, cluster, slot, op, timeout)
        if rev is not None:
            return rev
    raise Unanswered("wait")


def _recheck(env: simpy.Environment, cluster: SimCluster, slot: int, op: Any, timeout: float) -> Proc:
    """A linearizable read: the current revision if `op` has happened, else None."""
    if isinstance(op, recipes.WaitDelete):
        answered, got = yield from request(env, cluster, slot, api.RangeRequest(key=op.key), timeout)
        if answered and isinstance(got, api.RangeResponse) and not got.kvs:
            return got.header.revision
        return None
    answered, got = yield from request(env, cluster, slot, api.RangeRequest(key=op.key, range_end=op.range_end),
                                       timeout)
    # A deletion in the range leaves no trace in a read; the re-created watch replays it
    # from history, so the read only has to catch what a compaction hid.
    if answered and isinstance(got, api.RangeResponse) and any(kv.mod_revision > op.revision for kv in got.kvs):
        return got.header.revision
    return None


class Session:
    """A client's etcd session (concurrency.Session): a lease it keeps alive every TTL/3
    from a process of its own until ``close``. ``paused`` stops the keep-alives, as a
    process pause (GC, SIGSTOP) would."""

    def __init__(self, env: simpy.Environment, cluster: SimCluster, slot: int, lease: int, ttl: int,
                 timeout: float) -> None:
        self.env, self.cluster, self.slot = env, cluster, slot
        self.lease, self.ttl, self.timeout = lease, ttl, timeout
        self.paused = False
        self._keeper = env.process(self._keep_alive())

    def _keep_alive(self) -> Proc:
        try:
            while True:
                yield self.env.timeout(self.ttl / 3)
                if not self.paused:
                    req = api.LeaseKeepAliveRequest(ID=self.lease)
                    yield from request(self.env, self.cluster, self.slot, req, self.timeout)
        except simpy.Interrupt:
            return

    def close(self) -> Proc:
        """Stop the keep-alives and revoke the lease (best effort: it expires anyway)."""
        if self._keeper.is_alive:
            self._keeper.interrupt()
        yield from request(self.env, self.cluster, self.slot, api.LeaseRevokeRequest(ID=self.lease), self.timeout)


def open_session(env: simpy.Environment, cluster: SimCluster, slot: int, ttl: int, timeout: float) -> Proc:
    """Grant a lease on the member in `slot` and keep it alive: the Session, or None."""
    answered, grant = yield from request(env, cluster, slot, api.LeaseGrantRequest(TTL=ttl), timeout)
    if not answered or isinstance(grant, RaftKVError):
        return None
    return Session(env, cluster, slot, grant.ID, grant.TTL, timeout)


def watch_while_alive(
    env: simpy.Environment, cluster: SimCluster, slot: int, stream: Any, create: api.WatchCreateRequest,
    on_response: Any, until: float, silence: float, progress_every: float = 1.0, leave: Any = None,
) -> Proc:
    """Hold a watch stream on the member in `slot` the way an etcd client does: every
    response goes to `on_response`; a progress request every `progress_every` seconds
    shows the member still answers. The stream ends when it breaks (the member crashed, or
    the watch was cancelled), when the member has said nothing for `silence` seconds
    (paused or cut off), at `until`, or when `leave()` says so. True if it ended early."""
    heard = {"at": env.now}
    broken = env.event()

    def handler(resp: api.WatchResponse | RaftKVError) -> None:
        if isinstance(resp, RaftKVError) or resp.canceled:
            if not broken.triggered:
                broken.succeed()
            if isinstance(resp, RaftKVError):
                return
        heard["at"] = env.now
        on_response(resp)

    target = cluster.slots[slot]
    cluster.watch(target, stream, create, handler)
    while env.now < until and not broken.triggered:
        yield broken | env.timeout(progress_every)
        if broken.triggered or env.now - heard["at"] > silence or (leave is not None and leave()):
            break
        cluster.watch(target, stream, api.WatchProgressRequest(), handler)
    cluster.close_watch(target, stream)
    return env.now < until
