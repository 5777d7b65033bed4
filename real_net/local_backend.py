"""A single-process Backend: etcd's data model on one machine, without Raft.

Why it exists: the client API (gRPC servicers, conversions, etcdctl
compatibility) can be built and tested before, and independently of, the
replicated node; and it is an honest ``--no-raft`` mode for one member. It
runs the same state machine a ``kv.member.Member`` applies its log to
(``kv.applier.StateMachine``, plus a ``kv.watch.WatchHub``), but applies each
request the moment it arrives instead of after it commits.
Nothing is written to disk: a restart loses everything.

What it does not pretend: membership cannot change (there is no Raft to
change it), so MemberAdd/MemberRemove answer ``ErrNoRaft``; the "raft index"
in Status counts the writes that would have been log entries; the term is 1.

Time: lease deadlines are on the event loop's monotonic clock (or the
``clock`` given); a timer task sleeps until the next lease deadline or watch
progress deadline, revokes what expired (all of a lease's keys in one
revision, as etcd's lessor does) and sends progress notifications.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any, cast

from kv import api
from kv.errors import (
    ErrBadLeaderTransferee,
    ErrMemberNotFound,
    ErrMemberNotLearner,
    ErrPeerURLExist,
    ErrStopped,
    GrpcCode,
    RaftKVError,
)
from kv.applier import WRITE_REQUESTS, StateMachine, is_read
from kv.auth import NO_USER, AuthInfo
from kv.authorize import check_maintenance, denied_watch, hash_passwords
from kv.lease import min_lease_ttl
from kv.request_checks import DEFAULT_MAX_TXN_OPS, check_request
from kv.simple_token import new_simple_token_prefix
from kv.watch import DEFAULT_PROGRESS_INTERVAL, WatchHub
from real_net import etcd_db
from real_net.backend import WatchRequest

# etcd's defaults (--election-timeout 1000 ms, --heartbeat-interval 100 ms) give a
# minimum lease TTL of 2 s; using the same makes `lease grant 1` answer as etcd does.
DEFAULT_MIN_LEASE_TTL = min_lease_ttl(1.0, 0.1)
# With no lease or progress deadline pending, the timer still wakes this often.
_IDLE_WAKE = 1.0


class ErrNoRaft(RaftKVError):
    """A membership change asked of a member that runs without Raft."""

    message = "raftkv: membership cannot change: this member runs without raft (--no-raft)"
    grpc_code = GrpcCode.FAILED_PRECONDITION


def _id_from(*parts: str) -> int:
    """A non-zero uint64 ID from strings (etcd hashes the member's peer URLs and the
    cluster name the same way, so IDs are stable across restarts)."""
    h = hashlib.sha1("\x00".join(parts).encode())
    return int.from_bytes(h.digest()[:8], "big") or 1


class LocalBackend:
    """Implements real_net.backend.Backend over one in-memory store."""

    def __init__(
        self,
        *,
        name: str = "default",
        peer_urls: tuple[str, ...] = ("http://localhost:2380",),
        client_urls: tuple[str, ...] = ("http://localhost:2379",),
        cluster_token: str = "etcd-cluster",
        min_lease_ttl: int = DEFAULT_MIN_LEASE_TTL,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        member_id = _id_from(*sorted(peer_urls), cluster_token)
        self.cluster_id = _id_from(str(member_id), cluster_token)
        self.member = api.Member(
            ID=member_id, name=name, peer_urls=tuple(peer_urls), client_urls=tuple(client_urls)
        )
        self.max_txn_ops = max_txn_ops
        # The same state machine a Member applies its log to, fed each request directly.
        self.sm = StateMachine(min_lease_ttl, {member_id: self.member})
        self.lessor = self.sm.lessor
        self.store = self.sm.store
        self.hub = WatchHub(progress_interval=progress_interval)
        self._clock = clock
        # Writes that would each have been one Raft log entry (Status.raft_index).
        self._index = 0
        self._streams: set[LocalWatchStream] = set()
        self._timer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stopped = False
        # Password salts and token prefixes: this process's own randomness (a Member uses
        # its seeded Random; here nothing needs replaying).
        self._rng: random.Random = random.SystemRandom()

    def set_client_urls(self, client_urls: tuple[str, ...]) -> None:
        """Advertise these client URLs in MemberList (known only once the server has
        bound its port, e.g. an ephemeral one)."""
        self.member = replace(self.member, client_urls=tuple(client_urls))

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the lease/progress timer on the running loop. This member is the
        lessor's primary from now on: every lease counts down from here."""
        self._start_now()

    def _start_now(self) -> None:
        if self._timer is not None:
            return
        self._wake = asyncio.Event()
        self.lessor.promote(self._now())
        self._timer = asyncio.get_running_loop().create_task(self._timer_loop(), name="local-backend-timer")

    async def stop(self) -> None:
        """Stop the timer and end every watch stream (their ``recv`` raises ErrStopped);
        later calls raise ErrStopped too."""
        self._stopped = True
        for stream in list(self._streams):
            stream.close()
        if self._timer is not None:
            self._timer.cancel()
            try:
                await self._timer
            except asyncio.CancelledError:
                pass
            self._timer = None

    async def __aenter__(self) -> LocalBackend:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --------------------------------------------------------------- Backend

    async def call(self, request: Any, auth_token: str = "") -> Any:
        if self._stopped:
            raise ErrStopped()
        if self._timer is None:
            await self.start()
        return api.fill_header(self._answer(request, auth_token), self._header())

    def watch_stream(self, auth_token: str = "") -> LocalWatchStream:
        if self._stopped:
            raise ErrStopped()
        if self._timer is None:
            # No await possible here; start() does nothing that needs one.
            self._start_now()
        stream = LocalWatchStream(self, auth_token)
        self._streams.add(stream)
        return stream

    async def snapshot(self, auth_token: str = "") -> etcd_db.BackendState:
        """Backend.snapshot: requests apply one at a time on this loop, so any moment
        between two of them is a consistent one; the consistent index counts the
        writes that would have been log entries, and the member is this one."""
        if self._stopped:
            raise ErrStopped()
        check_maintenance(self.sm.auth, self.sm.auth_info(auth_token, self._now()))
        return etcd_db.capture(self.sm, self._index, self._header(), members=(self.member,))

    # ------------------------------------------------------------ internals

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _header(self) -> api.ResponseHeader:
        return api.ResponseHeader(
            cluster_id=self.cluster_id, member_id=self.member.ID, revision=self.store.revision, raft_term=1
        )

    def _answer(self, req: Any, auth_token: str = "") -> Any:
        now = self._now()
        if isinstance(req, api.AuthStatusRequest):
            return self.sm.auth.status()
        info = self.sm.auth_info(auth_token, now)
        if isinstance(req, api.AuthenticateRequest):
            # etcd's Authenticate: the password checked here, the token assigned by applying
            # InternalAuthenticate (as a Member does through its log).
            revision = self.sm.auth.check_password(req.name, req.password)
            internal = api.InternalAuthenticateRequest(
                name=req.name, simple_token=new_simple_token_prefix(self._rng), auth_revision=revision
            )
            return self._apply(internal, now)
        self.sm.check_served(info, req)
        if isinstance(req, (api.RangeRequest, api.TxnRequest)) and is_read(req):
            check_request(req, self.max_txn_ops)
            return self._outcome(self.sm.read(req, now))
        if isinstance(req, (api.LeaseTimeToLiveRequest, api.LeaseLeasesRequest, api.HashKVRequest)):
            return self._outcome(self.sm.query(req, now))
        if isinstance(req, WRITE_REQUESTS):
            check_request(req, self.max_txn_ops)
            return self._apply(hash_passwords(req, self._rng), now, info)
        if isinstance(req, api.StatusRequest):
            db_size = self.store.db_size()
            return api.StatusResponse(
                db_size=db_size,
                leader=self.member.ID,
                raft_index=self._index,
                raft_term=1,
                raft_applied_index=self._index,
                db_size_in_use=db_size,
            )
        if isinstance(req, api.DefragmentRequest):
            return api.DefragmentResponse()  # all in memory: nothing to give back
        if isinstance(req, api.MoveLeaderRequest):
            if req.target_id != self.member.ID:
                raise ErrBadLeaderTransferee()
            return api.MoveLeaderResponse()  # already the leader, as etcd answers for itself
        return self._membership(req)

    def _apply(self, req: Any, now: float, info: AuthInfo = NO_USER) -> Any:
        """A write, applied as the log entry it would have been (Status.raft_index counts them)."""
        self._index += 1
        prop = api.Proposal(
            incarnation=0, seq=self._index, request=req, username=info.username, auth_revision=info.revision
        )
        outcome, events = self.sm.apply(prop, self._index, now)
        self._notify(events)
        if isinstance(req, api.LeaseGrantRequest):
            self._poke()  # a new deadline for the timer
        return self._outcome(outcome)

    @staticmethod
    def _outcome(outcome: Any) -> Any:
        if isinstance(outcome, RaftKVError):
            raise outcome
        return outcome

    def _membership(self, req: Any) -> Any:
        me = self.member
        if isinstance(req, api.MemberListRequest):
            return api.MemberListResponse(members=(me,))
        if isinstance(req, api.MemberAddRequest):
            # etcd checks the URLs against the existing members before anything else.
            if set(req.peer_urls) & set(me.peer_urls):
                raise ErrPeerURLExist()
            raise ErrNoRaft()
        if isinstance(req, (api.MemberRemoveRequest, api.MemberUpdateRequest, api.MemberPromoteRequest)):
            if req.ID != me.ID:
                raise ErrMemberNotFound()
            if isinstance(req, api.MemberRemoveRequest):
                raise ErrNoRaft()
            if isinstance(req, api.MemberPromoteRequest):
                raise ErrMemberNotLearner()
            # Updating this member's own peer URLs needs no agreement from anyone.
            self.member = replace(me, peer_urls=tuple(req.peer_urls))
            self._index += 1
            return api.MemberUpdateResponse(members=(self.member,))
        raise TypeError(f"not a request a Backend answers: {type(req).__name__}")


    def _notify(self, events: list[api.Event]) -> None:
        if not events:
            return
        for stream, resp in self.hub.notify(events, self.store, self._header()):
            cast(LocalWatchStream, stream)._deliver(resp)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _timer_loop(self) -> None:
        assert self._wake is not None
        while True:
            now = self._now()
            for lease_id in self.lessor.expired(now):
                self._apply(api.LeaseRevokeRequest(ID=lease_id), now)
            for stream, resp in self.hub.progress_due(now, self._header()):
                cast(LocalWatchStream, stream)._deliver(resp)
            deadlines = [d for d in (self.lessor.next_expiry(), self.hub.next_progress_deadline()) if d is not None]
            timeout = max(0.0, min(deadlines) - now) if deadlines else _IDLE_WAKE
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(timeout, _IDLE_WAKE))
            except TimeoutError:
                pass


class LocalWatchStream:
    """Implements real_net.backend.WatchStream for LocalBackend (the hub's stream token is
    this object itself)."""

    def __init__(self, backend: LocalBackend, auth_token: str = "") -> None:
        self._backend = backend
        self._auth_token = auth_token
        self._queue: asyncio.Queue[api.WatchResponse | None] = asyncio.Queue()
        self._closed = False

    async def send(self, request: WatchRequest) -> None:
        if self._closed:
            raise ErrStopped()
        b = self._backend
        refusal = b.sm.watch_refusal(request, self._auth_token, b._now())
        if refusal is not None:
            self._queue.put_nowait(denied_watch(b._header(), request, refusal))
            return
        for resp in b.hub.handle(self, request, b.store, b._header(), b._now()):
            self._queue.put_nowait(resp)
        if isinstance(request, api.WatchCreateRequest) and request.progress_notify:
            b._poke()

    async def recv(self) -> api.WatchResponse:
        if self._closed and self._queue.empty():
            raise ErrStopped()
        resp = await self._queue.get()
        if resp is None:
            raise ErrStopped()
        return resp

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._backend.hub.close_stream(self)
        self._backend._streams.discard(self)
        self._queue.put_nowait(None)

    def _deliver(self, resp: api.WatchResponse) -> None:
        if not self._closed:
            self._queue.put_nowait(resp)
