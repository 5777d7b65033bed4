"""The peer transport: Raft messages between members over mutually authenticated TLS.

Why it is shaped like this (etcd's ``rafthttp`` is the model; facts, not code):

* **One outbound stream per peer.** Each member dials every peer once and
  writes all its messages to that peer down that one connection, so messages
  to a peer arrive in the order they were sent (Raft tolerates loss and
  reordering, but in-order delivery keeps the leader's pipelining effective).
  Messages *from* a peer arrive on the connection that peer dialed. etcd
  likewise keeps long-lived streams per peer in each direction.
* **Drop, never block.** ``send`` only queues. A message to a peer that is not
  connected, or whose queue is full, is dropped and the peer is reported
  unreachable (etcd drops when a stream's buffer is full and calls
  ``ReportUnreachable``); Raft retries on its own (heartbeats, probes), and the
  driver turns the report into ``RaftNode.report_unreachable`` so the leader
  stops pipelining to that follower.
* **Reconnect with exponential backoff** (with jitter) after a failed dial or a
  lost connection; a restarted peer on the same address is found again.
* **Batching.** All messages queued for a peer when its writer runs are
  encoded and written with one ``write`` (Raft's Ready already batches them).
  A large batch — a snapshot — is written in chunks, waiting for the socket to
  drain after each, so the event loop keeps serving everything else.
* **Snapshot status.** Once a snapshot message has been handed to the socket
  (or has failed), ``on_snapshot_status(peer, failed)`` fires, for the driver's
  ``RaftNode.report_snapshot`` (etcd reports a snapshot's end the same way).
* **Frames.** Every frame is ``kv.codec.frame`` (length, CRC32, payload). The
  first frame on a connection is a hello naming the cluster, the sender and
  the intended receiver; the receiver refuses a connection meant for another
  member or another cluster (etcd checks ``X-Etcd-Cluster-ID`` and the target
  member ID on every stream). The rest carry ``kv.codec.encode_message``
  payloads. A malformed frame closes that connection only.
* **Mutual TLS.** The server context must require a certificate signed by the
  cluster CA (``real_net.certs.peer_server_context``): a peer without one never
  gets a message through. ``None`` contexts mean plain TCP, for tests only.
* **Membership for joiners.** A member started with etcd's
  ``--initial-cluster-state=existing`` knows only its peers' URLs, not its own
  member ID nor the cluster ID (MemberAdd chose them). etcd asks a peer's
  ``/members`` endpoint; here the first frame may instead be a membership query,
  answered with one JSON frame (cluster ID and members, from the ``membership``
  callback) before the connection closes: ``fetch_membership``.
* **Removed members are told so.** A member that was removed from the cluster
  may never apply its own removal (the leader stops replicating to it). As
  etcd answers such a peer's streams with "410 Gone", a hello from a member the
  ``is_removed`` callback names is answered with a removed notice, and the
  dialing side calls ``on_removed`` so its member can shut down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from kv import api, codec
from kv.errors import CorruptRecord
from kv.raft.messages import Message, MessageType

log = logging.getLogger(__name__)

Address = tuple[str, int]
OnMessage = Callable[[Message], None]
OnUnreachable = Callable[[int], None]
OnSnapshotStatus = Callable[[int, bool], None]  # (peer id, failed)
MembershipSource = Callable[[], tuple[int, Sequence[api.Member]]]  # (cluster id, members)

PROTOCOL_VERSION = 1
_MAGIC = b"RKVP"
_HELLO = struct.Struct(">4sHQQQ")  # magic, protocol version, cluster id, from member, to member
_QUERY_MAGIC = b"RKVM"
_QUERY = struct.Struct(">4sH")  # magic, protocol version: "send me the membership"
_REMOVED = b"RKVR removed"  # the answer to a hello from a member removed from the cluster
_LENGTH = struct.Struct(">I")
MAX_FRAME = 1 << 30  # a frame announcing more is garbage, not a snapshot
CHUNK = 1 << 20  # large batches are written in pieces of this size, draining between them
MAX_QUEUED_MESSAGES = 4096  # per peer, as etcd's stream buffer (4096 messages)
MAX_QUEUED_BYTES = 256 << 20
_NETWORK_ERRORS = (OSError, EOFError, asyncio.IncompleteReadError, ssl.SSLError)


@dataclass(slots=True)
class PeerStats:
    """Counters for one outbound peer (what etcd exports as peer metrics)."""

    messages_sent: int = 0
    bytes_sent: int = 0
    writes: int = 0  # socket writes of whole batches (a chunked snapshot counts once)
    dropped: int = 0  # messages dropped: peer down, queue full, or connection lost
    connects: int = 0  # successful dials


class _Peer:
    __slots__ = ("id", "address", "queue", "queued_bytes", "waiter", "task", "connected", "stats")

    def __init__(self, peer_id: int, address: Address) -> None:
        self.id = peer_id
        self.address = address
        self.queue: list[Message] = []
        self.queued_bytes = 0
        # The writer's sleep: a future that send() (or the connection closing) resolves. A
        # bare future, not an Event and a task, because this runs once per Ready per peer.
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.connected = False
        self.stats = PeerStats()


def _approx_size(m: Message) -> int:
    size = 64 + sum(len(e.data) + 24 for e in m.entries)
    if m.snapshot is not None:
        size += len(m.snapshot.data)
    return size


def _wake(peer: _Peer) -> None:
    w = peer.waiter
    if w is not None and not w.done():
        w.set_result(None)


def encode_hello(cluster_id: int, from_id: int, to_id: int) -> bytes:
    return codec.frame(_HELLO.pack(_MAGIC, PROTOCOL_VERSION, cluster_id, from_id, to_id))


def encode_membership_query() -> bytes:
    return codec.frame(_QUERY.pack(_QUERY_MAGIC, PROTOCOL_VERSION))


def encode_membership(cluster_id: int, members: Sequence[api.Member]) -> bytes:
    body = {
        "cluster_id": cluster_id,
        "members": [
            {"id": m.ID, "name": m.name, "peer_urls": list(m.peer_urls), "client_urls": list(m.client_urls),
             "is_learner": m.is_learner}
            for m in members
        ],
    }  # fmt: skip
    return json.dumps(body).encode()


def decode_membership(payload: bytes) -> tuple[int, tuple[api.Member, ...]]:
    try:
        body = json.loads(payload)
        members = tuple(
            api.Member(ID=int(m["id"]), name=str(m["name"]), peer_urls=tuple(map(str, m["peer_urls"])),
                       client_urls=tuple(map(str, m["client_urls"])), is_learner=bool(m["is_learner"]))
            for m in body["members"]
        )  # fmt: skip
        return int(body["cluster_id"]), members
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptRecord(f"malformed membership answer: {e!r}") from None


async def fetch_membership(
    address: Address, client_ssl: ssl.SSLContext | None, timeout: float = 5.0
) -> tuple[int, tuple[api.Member, ...]]:
    """Ask the member listening for peers at `address` for the cluster ID and membership
    (what a member joining a running cluster needs first). Raises OSError, TimeoutError
    or CorruptRecord when that peer cannot answer."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(*address, ssl=client_ssl)
        try:
            writer.write(encode_membership_query())
            await writer.drain()
            return decode_membership(await read_frame(reader))
        finally:
            writer.transport.abort()


async def read_frame(reader: asyncio.StreamReader, max_frame: int = MAX_FRAME) -> bytes:
    """One frame's payload. CorruptRecord for an oversized or CRC-failing frame."""
    header = await reader.readexactly(codec.HEADER_SIZE)
    (length,) = _LENGTH.unpack_from(header)
    if length > max_frame:
        raise CorruptRecord(f"peer frame of {length} bytes exceeds the {max_frame}-byte limit")
    payload, _ = codec.unframe(header + await reader.readexactly(length))
    return payload


class Transport:
    """Sends Raft messages to peers and hands received ones to `on_message`.

    `peers` maps member id to (host, port); an entry for `member_id` itself is
    used as the listen address unless `listen` is given (port 0 picks a free
    port: read ``port`` after ``start``). All methods run on the event loop.
    """

    def __init__(
        self,
        member_id: int,
        peers: Mapping[int, Address],
        *,
        server_ssl: ssl.SSLContext | None,
        client_ssl: ssl.SSLContext | None,
        on_message: OnMessage,
        on_unreachable: OnUnreachable | None = None,
        on_snapshot_status: OnSnapshotStatus | None = None,
        on_removed: Callable[[], None] | None = None,
        membership: MembershipSource | None = None,
        is_removed: Callable[[int], bool] | None = None,
        listen: Address | None = None,
        cluster_id: int = 0,
        backoff_min: float = 0.05,
        backoff_max: float = 2.0,
        dial_timeout: float = 2.0,
        max_frame: int = MAX_FRAME,
        rng: random.Random | None = None,
    ) -> None:
        if member_id == 0:
            raise ValueError("member_id must not be 0 (0 means no node in Raft)")
        self.member_id = member_id
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.on_message = on_message
        self.on_unreachable = on_unreachable
        self.on_snapshot_status = on_snapshot_status
        self.on_removed = on_removed
        self.membership = membership
        self.is_removed = is_removed
        self.listen = listen if listen is not None else peers.get(member_id)
        self.cluster_id = cluster_id
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.dial_timeout = dial_timeout
        self.max_frame = max_frame
        self.rng = rng if rng is not None else random.Random()
        self._peers: dict[int, _Peer] = {}
        for pid, addr in peers.items():
            if pid != member_id:
                self._peers[pid] = _Peer(pid, addr)
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.StreamWriter] = set()
        self._inbound_tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._closing = False
        self.port: int | None = None

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Listen for peers (if a listen address is known) and start dialing every peer."""
        if self._started:
            raise RuntimeError("transport already started")
        self._started = True
        if self.listen is not None:
            host, port = self.listen
            self._server = await asyncio.start_server(self._serve, host, port, ssl=self.server_ssl)
            self.port = self._server.sockets[0].getsockname()[1]
        for peer in self._peers.values():
            self._start_peer(peer)

    async def close(self) -> None:
        """Stop listening, close every connection and stop every task this transport started."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = [p.task for p in self._peers.values() if p.task is not None]
        for t in tasks:
            t.cancel()
        # Inbound handlers are not cancelled (asyncio's stream callback would report the
        # cancellation as an error): aborting their connections ends their reads instead.
        for w in list(self._inbound):
            w.transport.abort()
        await asyncio.gather(*tasks, *self._inbound_tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # --- peers --------------------------------------------------------------

    def add_peer(self, peer_id: int, address: Address) -> None:
        """Start talking to a new member (or to a member at a new address)."""
        if peer_id == self.member_id:
            return
        if peer_id in self._peers:
            if self._peers[peer_id].address == address:
                return
            self.remove_peer(peer_id)
        peer = _Peer(peer_id, address)
        self._peers[peer_id] = peer
        if self._started and not self._closing:
            self._start_peer(peer)

    def remove_peer(self, peer_id: int) -> None:
        """Stop talking to a member (queued messages to it are dropped)."""
        peer = self._peers.pop(peer_id, None)
        if peer is not None and peer.task is not None:
            peer.task.cancel()  # the task closes its connection as it unwinds

    def peers(self) -> dict[int, Address]:
        return {pid: p.address for pid, p in self._peers.items()}

    def is_connected(self, peer_id: int) -> bool:
        peer = self._peers.get(peer_id)
        return peer is not None and peer.connected

    def stats(self, peer_id: int) -> PeerStats:
        return self._peers[peer_id].stats

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait until every peer has an open outbound connection (for tests and start-up)."""
        async with asyncio.timeout(timeout):
            while not all(p.connected for p in self._peers.values()):
                await asyncio.sleep(0.01)

    # --- sending ------------------------------------------------------------

    def send(self, messages: Iterable[Message]) -> None:
        """Queue messages for their peers; never blocks. Undeliverable ones are dropped and reported."""
        unreachable: set[int] = set()
        for m in messages:
            peer = self._peers.get(m.to)
            if peer is None or not peer.connected:
                self._drop(peer, m, m.to, unreachable)
                continue
            size = _approx_size(m)
            if peer.queue and (
                len(peer.queue) >= MAX_QUEUED_MESSAGES or peer.queued_bytes + size > MAX_QUEUED_BYTES
            ):
                self._drop(peer, m, m.to, unreachable)
                continue
            peer.queue.append(m)
            peer.queued_bytes += size
            _wake(peer)
        for pid in unreachable:
            self._report_unreachable(pid)

    def _drop(self, peer: _Peer | None, m: Message, to: int, unreachable: set[int]) -> None:
        if peer is not None:
            peer.stats.dropped += 1
        unreachable.add(to)
        if m.type is MessageType.SNAP:
            self._report_snapshot(to, failed=True)

    def _report_unreachable(self, peer_id: int) -> None:
        if self.on_unreachable is not None:
            self.on_unreachable(peer_id)

    def _report_snapshot(self, peer_id: int, failed: bool) -> None:
        if self.on_snapshot_status is not None:
            self.on_snapshot_status(peer_id, failed)

    def _start_peer(self, peer: _Peer) -> None:
        peer.task = asyncio.create_task(self._run_peer(peer), name=f"raftkv-peer-{self.member_id}->{peer.id}")

    async def _run_peer(self, peer: _Peer) -> None:
        """Dial, stream, and redial with exponential backoff, until cancelled."""
        backoff = self.backoff_min
        loop = asyncio.get_running_loop()
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*peer.address, ssl=self.client_ssl), self.dial_timeout
                )
            except (*_NETWORK_ERRORS, TimeoutError) as e:
                log.debug("member %d: dialing peer %d at %s failed: %r", self.member_id, peer.id, peer.address, e)
            else:
                peer.stats.connects += 1
                began = loop.time()
                try:
                    await self._stream(peer, reader, writer)
                except Exception:  # a bug, not the network: say so, then redial
                    log.exception("member %d: stream to peer %d failed", self.member_id, peer.id)
                if loop.time() - began >= self.backoff_max:
                    backoff = self.backoff_min  # it was a working connection, not a refusal loop
            # Jitter keeps members that lost each other at once from redialing in lockstep.
            await asyncio.sleep(backoff * (0.5 + self.rng.random()))
            backoff = min(backoff * 2, self.backoff_max)

    async def _stream(self, peer: _Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The remote writes on this connection only to say this member was removed; any
        # other end of this read means the connection closed or failed.
        closed = asyncio.ensure_future(self._read_notice(reader))
        closed.add_done_callback(lambda _: _wake(peer))
        loop = asyncio.get_running_loop()
        try:
            writer.write(encode_hello(self.cluster_id, self.member_id, peer.id))
            await writer.drain()
            peer.connected = True
            while True:
                if not peer.queue and not closed.done():
                    peer.waiter = loop.create_future()
                    try:
                        await peer.waiter
                    finally:
                        peer.waiter = None
                if closed.done():
                    if not closed.cancelled() and closed.exception() is None and closed.result():
                        log.error("member %d: peer %d says this member was removed from the cluster",
                                  self.member_id, peer.id)  # fmt: skip
                        if self.on_removed is not None:
                            self.on_removed()
                    else:
                        log.info("member %d: peer %d closed the connection", self.member_id, peer.id)
                    return
                batch, peer.queue, peer.queued_bytes = peer.queue, [], 0
                try:
                    await self._write_batch(peer, writer, batch)
                except BaseException:
                    self._lost(peer, batch)
                    raise
        except _NETWORK_ERRORS as e:
            log.info("member %d: connection to peer %d lost: %r", self.member_id, peer.id, e)
        finally:
            peer.connected = False
            lost, peer.queue, peer.queued_bytes = peer.queue, [], 0
            self._lost(peer, lost)
            closed.cancel()
            await asyncio.wait({closed})  # never raises: a cancellation of this task still propagates
            if not closed.cancelled():
                closed.exception()  # retrieved, so asyncio does not report it as never retrieved
            writer.transport.abort()

    async def _read_notice(self, reader: asyncio.StreamReader) -> bool:
        """True if the peer sent the removed notice, False when the connection ends otherwise."""
        try:
            return await read_frame(reader, len(_REMOVED)) == _REMOVED
        except (*_NETWORK_ERRORS, CorruptRecord):
            return False

    async def _write_batch(self, peer: _Peer, writer: asyncio.StreamWriter, batch: list[Message]) -> None:
        data = b"".join(codec.frame(codec.encode_message(m)) for m in batch)
        if len(data) <= CHUNK:
            writer.write(data)
            await writer.drain()
        else:
            view = memoryview(data)
            for i in range(0, len(data), CHUNK):
                writer.write(view[i : i + CHUNK])
                await writer.drain()
        peer.stats.writes += 1
        peer.stats.messages_sent += len(batch)
        peer.stats.bytes_sent += len(data)
        for m in batch:
            if m.type is MessageType.SNAP:
                self._report_snapshot(peer.id, failed=False)

    def _lost(self, peer: _Peer, messages: list[Message]) -> None:
        if not messages:
            return
        peer.stats.dropped += len(messages)
        for m in messages:
            if m.type is MessageType.SNAP:
                self._report_snapshot(peer.id, failed=True)
        messages.clear()
        if not self._closing:
            self._report_unreachable(peer.id)

    # --- receiving ----------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inbound.add(writer)
        self._inbound_tasks.add(task)
        peername = writer.get_extra_info("peername")
        try:
            first = await read_frame(reader, self.max_frame)
            if self._is_membership_query(first):
                if self.membership is None:
                    raise CorruptRecord("membership query, but this member has no membership to tell")
                writer.write(codec.frame(encode_membership(*self.membership())))
                await writer.drain()
                return
            from_id = self._check_hello(first)
            frame: bytes | None = None
            while True:
                # Checked on every message, not only at the hello: a member removed while
                # connected keeps its connections and must still be told.
                if self.is_removed is not None and self.is_removed(from_id):
                    log.warning("member %d: refused member %x: it was removed from the cluster", self.member_id, from_id)
                    writer.write(codec.frame(_REMOVED))
                    await writer.drain()
                    return
                if frame is None:
                    frame = await read_frame(reader, self.max_frame)
                    continue  # check again: the removal may have applied while we waited
                m = codec.decode_message(frame)
                frame = None
                if m.from_ != from_id or m.to != self.member_id:
                    raise CorruptRecord(
                        f"message from {m.from_} to {m.to} on the stream from {from_id} to {self.member_id}"
                    )
                try:
                    self.on_message(m)
                except Exception:  # the driver's bug must not cut the peer off
                    log.exception("member %d: on_message failed for %s", self.member_id, m.type.name)
        except CorruptRecord as e:
            log.warning("member %d: peer connection from %s refused: %s", self.member_id, peername, e)
        except _NETWORK_ERRORS as e:
            log.debug("member %d: peer connection from %s ended: %r", self.member_id, peername, e)
        finally:
            self._inbound.discard(writer)
            self._inbound_tasks.discard(task)
            writer.transport.abort()

    @staticmethod
    def _is_membership_query(payload: bytes) -> bool:
        if len(payload) != _QUERY.size or payload[:4] != _QUERY_MAGIC:
            return False
        _, version = _QUERY.unpack(payload)
        if version != PROTOCOL_VERSION:
            raise CorruptRecord(f"peer speaks protocol version {version}, this member {PROTOCOL_VERSION}")
        return True

    def _check_hello(self, payload: bytes) -> int:
        if len(payload) != _HELLO.size:
            raise CorruptRecord("the first frame is not a raftkv peer hello")
        magic, version, cluster_id, from_id, to_id = _HELLO.unpack(payload)
        if magic != _MAGIC:
            raise CorruptRecord("the first frame is not a raftkv peer hello")
        if version != PROTOCOL_VERSION:
            raise CorruptRecord(f"peer speaks protocol version {version}, this member {PROTOCOL_VERSION}")
        if cluster_id != self.cluster_id:
            raise CorruptRecord(f"peer belongs to cluster {cluster_id:x}, this member to {self.cluster_id:x}")
        if to_id != self.member_id:
            raise CorruptRecord(f"peer {from_id} dialed member {to_id:x}, this is member {self.member_id:x}")
        return int(from_id)
