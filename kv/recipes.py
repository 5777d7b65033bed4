"""etcd's concurrency recipes, written once for both worlds as sans-IO generators.

A recipe is a generator that *yields* what it needs done and is *sent* the
result: a kv.api request (the driver sends it to a member and sends back the
response, or throws the RaftKVError into the generator), or a ``WaitDelete`` /
``WaitChange`` (the driver watches and resumes the recipe once the awaited
event happened, sending back the event's revision). The simulator's clients
and real_net's asyncio client run the same recipes; ``run`` below is the
synchronous driver the tests use.

The recipes follow etcd's ``clientv3/concurrency`` package (behaviour, not
code):

* a **session** is a lease its owner keeps alive; everything a client holds
  is attached to it, so a crashed client lets go after the TTL;
* **mutex**: each contender creates ``prefix/<lease id hex>`` in a txn that
  also reads the prefix's first key by create revision; the contender whose
  key has the lowest create revision holds the lock, the others wait for the
  deletion of the key just before theirs (no thundering herd), so the lock is
  granted in request order. The holder's create revision is a *fencing
  token*: storage that remembers the highest token it saw can refuse a stale
  holder (the lesson of Jepsen's etcd 3.4.3 analysis: a paused holder's lease
  can expire while it still believes it holds the lock);
* **election**: campaign is the mutex with a value; the leader proclaims new
  values only while its key is the one it created (compare on create
  revision); resign deletes the key; observe reads the leader (the prefix's
  first key by create revision) and waits for it to change;
* **service discovery**: an instance registers ``prefix/<name>`` with its
  session's lease; a watcher lists the prefix and then watches from the next
  revision;
* **config watch**: read the configuration, then watch from the revision after
  the read, so no change is missed or seen twice.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from kv import api
from kv.errors import RaftKVError
from kv.keyrange import prefix_range_end

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WaitDelete:
    """Resume once `key` has been deleted at a revision after `revision`; the driver
    sends back the deletion's revision. (etcd's waitDelete: a watch on the key from
    revision + 1 until a DELETE event.)"""

    key: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class WaitChange:
    """Resume once anything in [key, range_end) changes after `revision`; the driver
    sends back the revision of the first change."""

    key: bytes
    range_end: bytes
    revision: int


Op = Any  # a kv.api request, WaitDelete or WaitChange
Recipe = Generator[Op, Any, T]


class LockLost(RaftKVError):
    """The session's lease expired (or the key was deleted) before the lock was acquired."""

    message = "raftkv: lock key vanished while waiting: the session expired"


class NotLeader(RaftKVError):
    """A proclaim or resign by a candidate that no longer leads (etcd's ErrElectionNotLeader)."""

    message = "election: not leader"


# ------------------------------------------------------------------- sessions


def grant_session(ttl: int) -> Recipe[int]:
    """A session: a lease the caller must keep alive (LeaseKeepAliveRequest every ttl/3)."""
    resp = yield api.LeaseGrantRequest(TTL=ttl)
    return int(resp.ID)


def end_session(lease_id: int) -> Recipe[None]:
    """Revoke the session's lease: every key it holds is deleted in one revision."""
    yield api.LeaseRevokeRequest(ID=lease_id)


def _key(prefix: bytes, lease_id: int) -> bytes:
    return prefix + b"/" + format(lease_id, "x").encode()


def _first_by_create(prefix: bytes) -> api.RangeRequest:
    return api.RangeRequest(
        key=prefix + b"/",
        range_end=prefix_range_end(prefix + b"/"),
        sort_order=api.SortOrder.ASCEND,
        sort_target=api.SortTarget.CREATE,
        limit=1,
    )


# ---------------------------------------------------------------------- mutex


@dataclass(frozen=True, slots=True)
class Held:
    """A held lock (or won election): the key and its create revision, the fencing token."""

    key: bytes
    revision: int
    lease_id: int


def _enqueue(prefix: bytes, lease_id: int, value: bytes) -> Recipe[tuple[bytes, int, int]]:
    """Create our key if it is not there yet (a retry after an unknown outcome finds it):
    returns (key, our create revision, the revision of the read)."""
    key = _key(prefix, lease_id)
    resp = yield api.TxnRequest(
        compare=(api.Compare(key=key, target=api.CompareTarget.CREATE, result=api.CompareResult.EQUAL,
                             create_revision=0),),
        success=(api.RequestOp(request_put=api.PutRequest(key=key, value=value, lease=lease_id)),),
        failure=(api.RequestOp(request_range=api.RangeRequest(key=key)),),
    )
    if resp.succeeded:
        my_rev = resp.header.revision
    else:
        my_rev = resp.responses[0].response_range.kvs[0].create_revision
    return key, my_rev, resp.header.revision


def _wait_turn(prefix: bytes, key: bytes, my_rev: int) -> Recipe[None]:
    """Wait until no key of the prefix was created before ours: each round waits for the
    deletion of the nearest older key only (etcd's waitDeletes)."""
    while True:
        older = yield api.RangeRequest(
            key=prefix + b"/",
            range_end=prefix_range_end(prefix + b"/"),
            max_create_revision=my_rev - 1,
            sort_order=api.SortOrder.DESCEND,
            sort_target=api.SortTarget.CREATE,
            limit=1,
        )
        if not older.kvs:
            mine = yield api.RangeRequest(key=key)
            if not mine.kvs or mine.kvs[0].create_revision != my_rev:
                raise LockLost()
            return
        yield WaitDelete(older.kvs[0].key, older.header.revision)


def lock(prefix: bytes, lease_id: int) -> Recipe[Held]:
    """Acquire the mutex at `prefix` for the session `lease_id`; fair: in request order."""
    key, my_rev, _ = yield from _enqueue(prefix, lease_id, b"")
    yield from _wait_turn(prefix, key, my_rev)
    return Held(key, my_rev, lease_id)


def unlock(held: Held) -> Recipe[None]:
    yield api.DeleteRangeRequest(key=held.key)


# ------------------------------------------------------------------- election


def campaign(prefix: bytes, lease_id: int, value: bytes) -> Recipe[Held]:
    """Wait to become leader of the election at `prefix`, announcing `value`."""
    key, my_rev, _ = yield from _enqueue(prefix, lease_id, value)
    yield from _wait_turn(prefix, key, my_rev)
    return Held(key, my_rev, lease_id)


def proclaim(held: Held, value: bytes) -> Recipe[None]:
    """Announce a new value, only while still holding the key this campaign created."""
    resp = yield api.TxnRequest(
        compare=(api.Compare(key=held.key, target=api.CompareTarget.CREATE, result=api.CompareResult.EQUAL,
                             create_revision=held.revision),),
        success=(api.RequestOp(request_put=api.PutRequest(key=held.key, value=value, lease=held.lease_id)),),
    )
    if not resp.succeeded:
        raise NotLeader()


def resign(held: Held) -> Recipe[None]:
    resp = yield api.TxnRequest(
        compare=(api.Compare(key=held.key, target=api.CompareTarget.CREATE, result=api.CompareResult.EQUAL,
                             create_revision=held.revision),),
        success=(api.RequestOp(request_delete_range=api.DeleteRangeRequest(key=held.key)),),
    )
    if not resp.succeeded:
        raise NotLeader()


def leader(prefix: bytes) -> Recipe[tuple[api.KeyValue | None, int]]:
    """The current leader's key-value (None if nobody leads) and the revision read at."""
    resp = yield _first_by_create(prefix)
    return (resp.kvs[0] if resp.kvs else None), resp.header.revision


def observe(prefix: bytes, after: int) -> Recipe[tuple[api.KeyValue | None, int]]:
    """Wait for the election at `prefix` to change after revision `after`; the new leader."""
    yield WaitChange(prefix + b"/", prefix_range_end(prefix + b"/"), after)
    return (yield from leader(prefix))


# --------------------------------------------------------- discovery and config


def register(prefix: bytes, name: bytes, address: bytes, lease_id: int) -> Recipe[int]:
    """Announce an instance under `prefix` for as long as its session lives; its revision."""
    resp = yield api.PutRequest(key=prefix + b"/" + name, value=address, lease=lease_id)
    return int(resp.header.revision)


def read_then_watch(prefix: bytes) -> Recipe[tuple[dict[bytes, api.KeyValue], int]]:
    """Everything under `prefix` (key -> KeyValue) and the revision to watch from (the
    next one), so every later change is seen exactly once."""
    resp = yield api.RangeRequest(key=prefix, range_end=prefix_range_end(prefix))
    return {kv.key: kv for kv in resp.kvs}, resp.header.revision + 1


# ---------------------------------------------------------------- the driver


def run(recipe: Recipe[T], call: Callable[[Any], Any], wait: Callable[[Any], int]) -> T:
    """Run a recipe synchronously: `call(request)` returns the response or raises the
    RaftKVError; `wait(WaitDelete | WaitChange)` blocks until it happened."""
    try:
        op = next(recipe)
        while True:
            if isinstance(op, (WaitDelete, WaitChange)):
                op = recipe.send(wait(op))
                continue
            try:
                resp = call(op)
            except RaftKVError as e:
                op = recipe.throw(e)
            else:
                op = recipe.send(resp)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
