"""MemberNode: one kv.member.Member driven on an asyncio loop, with a real disk and real sockets.

This is real_net's half of DESIGN.md's driver loop, the twin of
sim/cluster.py's ``member_driver``:

    wait for a message, a client request or the member's deadline
    tick(now); step each message; submit each request
    while (rd := member.ready()):
        persist rd (one WAL write + one fsync, in a worker thread)
        send rd's messages; answer clients; hand out watch responses
        advance(rd)

Group commit falls out of it: while one Ready's fsync runs in the worker
thread, new requests queue; the next pass proposes them all and one fsync
covers them (etcd batches proposals the same way).

A leader sends its messages *before* its own fsync when the core allows it
(``Ready.send_first``: etcd's raftNode does the same, per the Raft dissertation
§10.2.1), so its disk write overlaps the followers' replication.

Cheap per request and per Ready, because both happen thousands of times a
second: a request waits on a bare future (its timeout is enforced by the loop
sweeping an ordered deadline queue, not by a timer per request), and the loop
sleeps on a bare future with one timer handle, not an Event and a task.

The node is also the ``real_net.backend.Backend`` the gRPC servicers call:
``call`` queues a request with a future and waits for the member's answer
(``ErrTimeout`` after ``request_timeout``, as etcd's ``--request-timeout``);
``watch_stream`` opens a stream whose responses the member addresses by the
stream's token.

Time is the loop's monotonic clock (``loop.time()``); the member never reads
a clock of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from kv import api
from kv.authorize import check_maintenance
from kv.errors import ErrStopped, ErrTimeout, RaftKVError
from kv.member import Member, MemberReady
from kv.raft.messages import Message
from real_net import etcd_db
from real_net.backend import WatchRequest
from real_net.disk_storage import DiskStorage

log = logging.getLogger("raftkv.node")

DEFAULT_REQUEST_TIMEOUT = 7.0  # etcd: 5 s + 2 x election timeout by default


class Transport(Protocol):
    def send(self, messages: list[Message] | tuple[Message, ...]) -> None: ...


class MemberNode:
    def __init__(
        self,
        member: Member,
        storage: DiskStorage,
        transport: Transport | None = None,
        *,
        client_urls: tuple[str, ...] = (),
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.member = member
        self.storage = storage
        self.transport = transport
        self.client_urls = client_urls
        self.request_timeout = request_timeout
        self._clock = clock
        self._inbox: deque[Message] = deque()
        self._requests: deque[tuple[Any, Any]] = deque()
        self._futures: dict[Hashable, asyncio.Future[Any]] = {}
        self._streams: dict[Hashable, _WatchStream] = {}
        self._tokens = itertools.count(1)
        # (deadline, token) of requests in submission order; the timeout is constant, so
        # the deque is sorted and the loop expires requests from its front.
        self._deadlines: deque[tuple[float, int]] = deque()
        self._waiter: asyncio.Future[None] | None = None  # the loop's sleep, resolved by _kick
        self.stats = NodeStats()
        self._task: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._stopped = False
        self.unreachable: set[int] = set()
        self._snapshot_reports: list[tuple[int, bool]] = []

    # ----------------------------------------------------------- lifecycle

    def now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"member-{self.member.id:x}")
        # Publish name and client URLs once a leader takes them (etcd publishes on start).
        # The task is kept: the loop holds only a weak reference to a task.
        self._publisher = asyncio.get_running_loop().create_task(self._publish())

    async def stop(self) -> None:
        """Stop driving the member; pending requests fail with ErrStopped. The storage stays
        open (the owner closes it) so a stop can never lose an acknowledged write."""
        self._stopped = True
        self._kick()
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(ErrStopped())
        self._futures.clear()
        for s in list(self._streams.values()):
            s.fail(ErrStopped())

    async def _publish(self) -> None:
        while not self._stopped:
            try:
                await self._submit_and_wait(lambda tok, now: self.member.publish(tok, self.client_urls, now))
                return
            except RaftKVError:
                await asyncio.sleep(0.5)

    # -------------------------------------------------------------- inputs

    def _kick(self) -> None:
        """Wake the loop (new input)."""
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def deliver(self, m: Message) -> None:
        """A message from a peer (the transport's callback)."""
        self._inbox.append(m)
        self._kick()

    def peer_unreachable(self, peer: int) -> None:
        """The transport could not reach `peer` (Raft slows down to probing it)."""
        self.unreachable.add(peer)
        self._kick()

    def snapshot_status(self, peer: int, failed: bool) -> None:
        """The transport finished streaming a snapshot to `peer`, or dropped it."""
        self._snapshot_reports.append((peer, failed))
        self._kick()

    async def call(self, request: Any, auth_token: str = "") -> Any:
        """Backend.call: the member's answer to one request, or its error."""
        return await self._submit_and_wait(lambda tok, now: self.member.submit(tok, request, now, auth_token))

    async def _submit_and_wait(self, submit: Callable[[int, float], None]) -> Any:
        if self._stopped:
            raise ErrStopped()
        token = next(self._tokens)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[token] = fut
        self._requests.append((token, submit))
        self._deadlines.append((self.now() + self.request_timeout, token))
        self._kick()
        try:
            outcome = await fut
        finally:
            self._futures.pop(token, None)
        if isinstance(outcome, RaftKVError):
            raise outcome
        return outcome

    async def snapshot(self, auth_token: str = "") -> etcd_db.BackendState:
        """Backend.snapshot: captured by the loop where it takes requests, after one
        Ready's advance and before the next Ready applies anything, so the state is
        exactly the member's applied state at its applied index."""
        member = self.member

        def capture(token: int, now: float) -> None:
            fut = self._futures.get(token)
            if fut is None or fut.done():
                return
            try:
                check_maintenance(member.sm.auth, member.sm.auth_info(auth_token, now))
            except RaftKVError as e:
                fut.set_result(e)
                return
            fut.set_result(etcd_db.capture(member.sm, member.applied_index, member.header()))

        state: etcd_db.BackendState = await self._submit_and_wait(capture)
        return state

    def _expire_requests(self, now: float) -> None:
        """Fail requests older than request_timeout with ErrTimeout (etcd's "request timed out")."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, token = deadlines.popleft()
            fut = self._futures.get(token)
            if fut is not None and not fut.done():
                fut.set_exception(ErrTimeout())

    def watch_stream(self, auth_token: str = "") -> _WatchStream:
        token = next(self._tokens)
        stream = _WatchStream(self, token, auth_token)
        self._streams[token] = stream
        return stream

    def _watch_request(self, token: int, request: WatchRequest, auth_token: str = "") -> None:
        self._requests.append((token, lambda tok, now: self.member.submit(tok, request, now, auth_token)))
        self._kick()

    def _close_stream(self, token: int) -> None:
        self._streams.pop(token, None)
        self._requests.append((token, lambda tok, now: self.member.close_watch_stream(tok)))
        self._kick()

    # ----------------------------------------------------------- the loop

    async def _run(self) -> None:
        member = self.member
        loop = asyncio.get_running_loop()
        stats = self.stats
        while not self._stopped:
            # One pass of the event loop first: gRPC handlers and peer reads that are ready
            # now add their input, so this Ready carries all of it (fewer, larger batches).
            await asyncio.sleep(0)
            now = self.now()
            member.tick(now)
            while self.unreachable:
                member.node.report_unreachable(self.unreachable.pop())
            while self._snapshot_reports:
                peer, failed = self._snapshot_reports.pop(0)
                member.node.report_snapshot(peer, failed=failed)
            while self._inbox:
                try:
                    member.step(self._inbox.popleft())
                except RaftKVError as e:  # a corrupt or misdirected message: drop it, keep running
                    log.warning("dropped a message: %s", e)
            while self._requests:
                token, submit = self._requests.popleft()
                submit(token, now)
                stats.requests += 1
            while (rd := member.ready()) is not None:
                stats.readies += 1
                sent = self._send_early(rd)
                await self._persist(loop, rd)
                if not sent:
                    self._send(rd)
                self._answer(rd)
                member.advance(rd)
            if self._deadlines:
                self._expire_requests(self.now())
            if self._inbox or self._requests or self._stopped:
                continue
            wake_at = member.deadline()
            if self._deadlines:
                wake_at = min(wake_at, self._deadlines[0][0])
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiter = waiter
            timer = loop.call_later(max(0.0, wake_at - self.now()), _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None

    def _send_early(self, rd: MemberReady) -> bool:
        """Send before the fsync when the core says it may (Ready.send_first)."""
        r = rd.raft
        if r is None or not r.send_first or not r.messages or self.transport is None:
            return False
        self.transport.send(r.messages)
        return True

    async def _persist(self, loop: asyncio.AbstractEventLoop, rd: MemberReady) -> None:
        r = rd.raft
        if r is None or (r.hard_state is None and not r.entries and r.snapshot is None):
            return
        # The WAL write and the in-memory log change happen here on the loop; only the
        # fsync runs in a worker thread, and requests arriving meanwhile queue for the
        # next Ready (group commit). etcd fsyncs only when Raft needs it (MustSync: new
        # entries, term or vote); a commit-index-only change may be lost and relearned.
        self.storage.save(r.hard_state, r.entries, r.snapshot, sync=False)
        self.stats.entries += len(r.entries)
        if r.must_sync:
            self.stats.syncs += 1
            await loop.run_in_executor(None, self.storage.sync)

    def _send(self, rd: MemberReady) -> None:
        r = rd.raft
        if r is None or not r.messages or self.transport is None:
            return
        self.transport.send(r.messages)

    def _answer(self, rd: MemberReady) -> None:
        for token, outcome in rd.responses:
            fut = self._futures.get(token)
            if fut is not None and not fut.done():
                fut.set_result(outcome)
        for token, resp in rd.watch_responses:
            stream = self._streams.get(token)
            if stream is not None:
                stream.put(resp)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass(slots=True)
class NodeStats:
    """Counters of the loop's work (how well group commit batches: entries per sync)."""

    requests: int = 0
    readies: int = 0
    entries: int = 0
    syncs: int = 0


class _WatchStream:
    """real_net.backend.WatchStream over a MemberNode."""

    def __init__(self, node: MemberNode, token: int, auth_token: str = "") -> None:
        self._node = node
        self._token = token
        self._auth_token = auth_token
        self._queue: asyncio.Queue[api.WatchResponse | RaftKVError] = asyncio.Queue()
        self._closed = False

    def put(self, resp: api.WatchResponse) -> None:
        self._queue.put_nowait(resp)

    def fail(self, err: RaftKVError) -> None:
        self._queue.put_nowait(err)

    async def send(self, request: WatchRequest) -> None:
        if self._closed or self._node._stopped:
            raise ErrStopped()
        self._node._watch_request(self._token, request, self._auth_token)

    async def recv(self) -> api.WatchResponse:
        item = await self._queue.get()
        if isinstance(item, RaftKVError):
            raise item
        return item

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._node._close_stream(self._token)
        self._queue.put_nowait(ErrStopped())
