"""Specifications of kv.recipes: etcd's mutex, election, discovery and config patterns over real Members."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kv import api, recipes
from kv.errors import RaftKVError
from tests.kv.member_cluster import NO_ANSWER, MemberCluster


class Client:
    """Runs one recipe a step at a time against a member, so tests can interleave many."""

    def __init__(self, c: MemberCluster, member: int, recipe: recipes.Recipe[Any]) -> None:
        self.c, self.member, self.recipe = c, member, recipe
        self.op: Any = next(recipe)
        self.done = False
        self.result: Any = None

    def ready(self) -> bool:
        """Whether the pending op can make progress now (a wait is over, or a request)."""
        if isinstance(self.op, recipes.WaitDelete):
            got = self.c.call(self.member, api.RangeRequest(key=self.op.key))
            return not got.kvs
        if isinstance(self.op, recipes.WaitChange):
            got = self.c.call(self.member, api.RangeRequest(key=self.op.key, range_end=self.op.range_end))
            return any(kv.mod_revision > self.op.revision for kv in got.kvs) or got.header.revision > self.op.revision
        return True

    def step(self) -> None:
        if isinstance(self.op, (recipes.WaitDelete, recipes.WaitChange)):
            rev = self.c.call(self.member, api.RangeRequest(key=b"\0", range_end=b"\0", count_only=True)).header.revision
            self._resume(lambda: self.recipe.send(rev))
            return
        resp = self.c.call(self.member, self.op)
        assert resp is not NO_ANSWER, f"no answer to {self.op}"
        if isinstance(resp, RaftKVError):
            self._resume(lambda: self.recipe.throw(resp))
        else:
            self._resume(lambda: self.recipe.send(resp))

    def _resume(self, f: Any) -> None:
        try:
            self.op = f()
        except StopIteration as e:
            self.done, self.result = True, e.value


def sync(c: MemberCluster, member: int, recipe: recipes.Recipe[Any]) -> Any:
    def call(req: Any) -> Any:
        resp = c.call(member, req)
        if isinstance(resp, RaftKVError):
            raise resp
        return resp

    def wait(op: Any) -> int:
        raise AssertionError(f"a single client should not have to wait here: {op}")

    return recipes.run(recipe, call, wait)


def lock_then_unlock(prefix: bytes, lease: int, log: list[tuple[str, int, int]], who: int, hold: int) -> recipes.Recipe[None]:
    held = yield from recipes.lock(prefix, lease)
    log.append(("acquire", who, held.revision))
    for _ in range(hold):  # work while holding: a few reads
        yield api.RangeRequest(key=b"work")
    log.append(("release", who, held.revision))
    yield from recipes.unlock(held)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 5), schedule_seed=st.integers(0, 2**32 - 1), holds=st.lists(st.integers(0, 3), min_size=5, max_size=5))
def test_the_mutex_never_has_two_holders_and_grants_in_request_order(n: int, schedule_seed: int, holds: list[int]) -> None:
    c = MemberCluster(3, seed=schedule_seed % 1000)
    c.elect()
    rng = random.Random(schedule_seed)
    log: list[tuple[str, int, int]] = []
    clients = []
    enqueued: list[int] = []
    for who in range(n):
        lease = sync(c, 1 + who % 3, recipes.grant_session(60))
        clients.append(Client(c, 1 + who % 3, lock_then_unlock(b"lock", lease, log, who, holds[who])))
    while not all(cl.done for cl in clients):
        runnable = [cl for cl in clients if not cl.done and cl.ready()]
        assert runnable, "deadlock: every unfinished client is waiting"
        cl = rng.choice(runnable)
        if isinstance(cl.op, api.TxnRequest) and cl.op.compare and cl.op.compare[0].target == api.CompareTarget.CREATE:
            enqueued.append(clients.index(cl))
        cl.step()
    holder = None
    for kind, who, _ in log:
        if kind == "acquire":
            assert holder is None, f"client {who} acquired while {holder} held the lock"
            holder = who
        else:
            assert holder == who
            holder = None
    acquired = [who for kind, who, _ in log if kind == "acquire"]
    assert acquired == enqueued  # fair: in the order the contenders queued
    tokens = [rev for kind, _, rev in log if kind == "acquire"]
    assert tokens == sorted(tokens) and len(set(tokens)) == n  # fencing tokens only grow


def test_a_holder_whose_session_expires_loses_the_lock_to_the_next_waiter_with_a_higher_token() -> None:
    c = MemberCluster(3, seed=31)
    lead = c.elect()
    s1 = sync(c, lead, recipes.grant_session(1))
    s2 = sync(c, lead, recipes.grant_session(30))
    first = sync(c, lead, recipes.lock(b"m", s1))
    waiter = Client(c, c.followers()[0], recipes.lock(b"m", s2))
    while not isinstance(waiter.op, recipes.WaitDelete):
        waiter.step()
    assert not waiter.ready()
    c.run_for(2.5)  # s1 is never kept alive: its lease expires and its key goes
    assert waiter.ready()
    while not waiter.done:
        waiter.step()
    assert waiter.result.revision > first.revision
    # The first holder, had it been paused, would now present a stale token: storage that
    # keeps the highest token it has seen refuses it.


def test_a_session_ended_while_waiting_raises_lock_lost() -> None:
    c = MemberCluster(3, seed=32)
    lead = c.elect()
    s1 = sync(c, lead, recipes.grant_session(30))
    s2 = sync(c, lead, recipes.grant_session(30))
    sync(c, lead, recipes.lock(b"m", s1))
    waiter = Client(c, lead, recipes.lock(b"m", s2))
    while not isinstance(waiter.op, recipes.WaitDelete):
        waiter.step()
    sync(c, lead, recipes.end_session(s2))
    sync(c, lead, recipes.end_session(s1))
    assert waiter.ready()
    try:
        while not waiter.done:
            waiter.step()
        raise AssertionError("expected LockLost")
    except recipes.LockLost:
        pass


def test_election_campaign_proclaim_observe_and_resign() -> None:
    c = MemberCluster(3, seed=33)
    lead = c.elect()
    a = sync(c, lead, recipes.grant_session(30))
    b = sync(c, lead, recipes.grant_session(30))
    won = sync(c, lead, recipes.campaign(b"e", a, b"alpha"))
    kv, rev = sync(c, lead, recipes.leader(b"e"))
    assert kv is not None and kv.value == b"alpha" and kv.create_revision == won.revision
    contender = Client(c, c.followers()[1], recipes.campaign(b"e", b, b"beta"))
    while not isinstance(contender.op, recipes.WaitDelete):
        contender.step()
    sync(c, lead, recipes.proclaim(won, b"alpha-2"))
    observer = Client(c, c.followers()[0], recipes.observe(b"e", rev))
    assert observer.ready()
    while not observer.done:
        observer.step()
    assert observer.result[0].value == b"alpha-2"
    sync(c, lead, recipes.resign(won))
    try:
        sync(c, lead, recipes.proclaim(won, b"stale"))
        raise AssertionError("a resigned leader must not proclaim")
    except recipes.NotLeader:
        pass
    while not contender.done:
        assert contender.ready()
        contender.step()
    kv, _ = sync(c, lead, recipes.leader(b"e"))
    assert kv is not None and kv.value == b"beta"


def test_service_discovery_and_config_watch_see_every_change_once() -> None:
    c = MemberCluster(3, seed=34)
    lead = c.elect()
    f = c.followers()[0]
    config, start = sync(c, f, recipes.read_then_watch(b"cfg/"))
    assert config == {}
    c.watch(f, "cfg", api.WatchCreateRequest(key=b"cfg/", range_end=b"cfg0", start_revision=start))
    s = sync(c, lead, recipes.grant_session(1))
    sync(c, lead, recipes.register(b"svc", b"i1", b"10.0.0.1:80", s))
    c.watch(f, "svc", api.WatchCreateRequest(key=b"svc/", range_end=b"svc0"))
    for i in range(3):
        c.call(lead, api.PutRequest(key=b"cfg/limit", value=str(i).encode()))
    c.run_for(2.5)  # the instance's session is not kept alive: it disappears
    assert [kv.value for kv in (e.kv for e in c.events("cfg"))] == [b"0", b"1", b"2"]
    svc = c.events("svc")
    assert [(e.type, e.kv.key) for e in svc] == [(api.EventType.DELETE, b"svc/i1")]
    assert c.call(f, api.RangeRequest(key=b"svc/", range_end=b"svc0")).kvs == ()
