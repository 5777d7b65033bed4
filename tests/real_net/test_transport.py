"""Specifications of real_net.transport: Raft messages between members over mutual TLS on 127.0.0.1.

Every test runs its own event loop and checks at the end that the transports
left no task running and no file descriptor open.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections import defaultdict
from collections.abc import Awaitable, Callable

import pytest

from kv import codec
from kv.raft.messages import Entry, Message, MessageType, Snapshot, SnapshotMetadata
from real_net import certs
from real_net.transport import Transport, encode_hello

NAMES = {1: "n1", 2: "n2", 3: "n3"}


@pytest.fixture(scope="module")
def cluster_certs(tmp_path_factory: pytest.TempPathFactory) -> certs.CertPaths:
    return certs.ensure_certs(tmp_path_factory.mktemp("certs"), list(NAMES.values()))


@pytest.fixture(scope="module")
def rogue_certs(tmp_path_factory: pytest.TempPathFactory) -> certs.CertPaths:
    return certs.ensure_certs(tmp_path_factory.mktemp("rogue"), ["n1"])


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def run_clean(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` in a fresh loop; fail if it leaves tasks behind or file descriptors open."""
    before = open_fds()

    async def checked() -> None:
        await asyncio.wait_for(main(), timeout=20)
        await asyncio.sleep(0)  # let cancelled callbacks settle
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert leftover == [], f"tasks left running: {leftover}"

    asyncio.run(checked())
    leaked = open_fds() - before
    assert not leaked, f"file descriptors left open: {[os.readlink(f'/proc/self/fd/{fd}') for fd in leaked]}"


class Member:
    """A transport plus what it received and reported."""

    def __init__(self, member_id: int, paths: certs.CertPaths, name: str | None = None, port: int = 0) -> None:
        name = name or NAMES[member_id]
        self.received: dict[int, list[Message]] = defaultdict(list)
        self.unreachable: list[int] = []
        self.snapshot_status: list[tuple[int, bool]] = []
        self.arrived = asyncio.Event()
        self.transport = Transport(
            member_id,
            {},
            listen=("127.0.0.1", port),
            server_ssl=certs.member_peer_server_context(paths, name),
            client_ssl=certs.member_peer_client_context(paths, name),
            on_message=self._on_message,
            on_unreachable=self.unreachable.append,
            on_snapshot_status=lambda peer, failed: self.snapshot_status.append((peer, failed)),
            backoff_min=0.02,
            backoff_max=0.2,
        )

    def _on_message(self, m: Message) -> None:
        self.received[m.from_].append(m)
        self.arrived.set()

    @property
    def port(self) -> int:
        assert self.transport.port is not None
        return self.transport.port


async def start_cluster(paths: certs.CertPaths, ids: tuple[int, ...] = (1, 2, 3)) -> dict[int, Member]:
    members = {i: Member(i, paths) for i in ids}
    for m in members.values():
        await m.transport.start()
    for m in members.values():
        for other in members.values():
            m.transport.add_peer(other.transport.member_id, ("127.0.0.1", other.port))
    for m in members.values():
        await m.transport.wait_connected()
    return members


async def close_all(members: dict[int, Member]) -> None:
    for m in members.values():
        await m.transport.close()


def heartbeat(frm: int, to: int, seq: int) -> Message:
    return Message(type=MessageType.HEARTBEAT, from_=frm, to=to, term=1, commit=seq)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def test_messages_arrive_in_order_per_peer(cluster_certs: certs.CertPaths) -> None:
    n = 300

    async def main() -> None:
        members = await start_cluster(cluster_certs)
        try:
            for batch in range(0, n, 7):  # many sends, as many Readies would make
                for m in members.values():
                    me = m.transport.member_id
                    m.transport.send(
                        heartbeat(me, to, seq) for seq in range(batch, min(batch + 7, n)) for to in members if to != me
                    )
                await asyncio.sleep(0)
            await until(lambda: all(len(m.received[f]) == n for m in members.values() for f in members
                                    if f != m.transport.member_id))
            for m in members.values():
                for frm, msgs in m.received.items():
                    assert [x.commit for x in msgs] == list(range(n)), f"{frm} -> {m.transport.member_id}"
                    assert all(x.to == m.transport.member_id for x in msgs)
            assert all(not m.unreachable for m in members.values())
        finally:
            await close_all(members)

    run_clean(main)


def test_one_send_to_a_peer_is_one_socket_write(cluster_certs: certs.CertPaths) -> None:
    async def main() -> None:
        members = await start_cluster(cluster_certs, (1, 2))
        try:
            t1 = members[1].transport
            writes = t1.stats(2).writes
            entries = tuple(Entry(term=1, index=i, data=b"x" * 100) for i in range(1, 6))
            t1.send([Message(type=MessageType.APP, from_=1, to=2, term=1, entries=entries)] * 50)
            await until(lambda: len(members[2].received[1]) == 50)
            assert t1.stats(2).writes == writes + 1
            assert members[2].received[1][0].entries == entries
        finally:
            await close_all(members)

    run_clean(main)


def test_a_restarted_peer_on_the_same_port_is_reconnected(cluster_certs: certs.CertPaths) -> None:
    async def main() -> None:
        members = await start_cluster(cluster_certs)
        restarted: Member | None = None
        try:
            port = members[3].port
            await members[3].transport.close()
            await until(lambda: not members[1].transport.is_connected(3))
            members[1].transport.send([heartbeat(1, 3, 0)])
            assert 3 in members[1].unreachable  # dropped, and said so
            restarted = Member(3, cluster_certs, port=port)
            await restarted.transport.start()
            seq = 1
            while not restarted.received[1]:  # Raft resends on its own; so does this test
                members[1].transport.send([heartbeat(1, 3, seq)])
                seq += 1
                await asyncio.sleep(0.02)
            assert restarted.received[1][0].commit >= 1
        finally:
            await close_all(members)
            if restarted is not None:
                await restarted.transport.close()

    run_clean(main)


def test_a_peer_whose_certificate_is_not_signed_by_the_cluster_ca_is_refused(
    cluster_certs: certs.CertPaths, rogue_certs: certs.CertPaths
) -> None:
    async def main() -> None:
        members = await start_cluster(cluster_certs, (1,))
        rogue_pair = rogue_certs.member("n1")
        rogue_reports: list[int] = []
        rogue = Transport(
            9, {1: ("127.0.0.1", members[1].port)},
            server_ssl=None,
            # It even trusts the real CA, so only the server's check of its certificate stops it.
            client_ssl=certs.peer_client_context(rogue_pair.cert, rogue_pair.key, cluster_certs.ca),
            on_message=lambda m: None, on_unreachable=rogue_reports.append,
            backoff_min=0.02, backoff_max=0.1,
        )
        await rogue.start()
        try:
            for seq in range(30):
                rogue.send([heartbeat(9, 1, seq)])
                await asyncio.sleep(0.01)
            # The refused handshake is reported as "unreachable"; on a loaded machine that
            # can take longer than the sends above.
            await until(lambda: 1 in rogue_reports, timeout=10)
            assert members[1].received == {}
        finally:
            await rogue.close()
            await close_all(members)

    run_clean(main)


async def raw_connection(port: int, ctx: ssl.SSLContext) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx)


async def closed_by_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(1), 5)
        return data == b""
    except (ConnectionError, ssl.SSLError):
        return True
    finally:
        writer.transport.abort()


def test_a_client_without_a_certificate_is_refused(cluster_certs: certs.CertPaths) -> None:
    async def main() -> None:
        members = await start_cluster(cluster_certs, (1,))
        try:
            try:
                reader, writer = await raw_connection(members[1].port, certs.client_context(cluster_certs.ca))
            except (ConnectionError, ssl.SSLError):
                pass  # refused during the handshake (TLS 1.2)
            else:  # TLS 1.3: the refusal arrives after the client's side of the handshake
                writer.write(encode_hello(0, 2, 1) + codec.frame(codec.encode_message(heartbeat(2, 1, 0))))
                assert await closed_by_server(reader, writer)
            assert members[1].received == {}
        finally:
            await close_all(members)

    run_clean(main)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # not a frame at all
        codec.frame(b"hello?"),  # a frame, but not a hello
        encode_hello(7, 2, 1),  # another cluster
        encode_hello(0, 2, 5),  # meant for another member
        encode_hello(0, 2, 1) + b"\xff\xff\xff\xff" + bytes(8),  # a frame announcing 4 GiB
        encode_hello(0, 2, 1) + codec.frame(b"\x93\x01\xa3msg\x90"),  # a frame that is not a message
        encode_hello(0, 2, 1) + codec.frame(codec.encode_message(heartbeat(3, 1, 0))),  # forged sender
    ],
    ids=["http", "no-hello", "other-cluster", "other-member", "oversized", "not-a-message", "forged-from"],
)
def test_malformed_frames_close_that_connection_and_the_member_keeps_serving(
    cluster_certs: certs.CertPaths, garbage: bytes
) -> None:
    async def main() -> None:
        members = await start_cluster(cluster_certs, (1, 2))
        try:
            # A CA-signed client certificate gets through TLS; the frames are what is wrong.
            ctx = certs.client_context(cluster_certs.ca, cluster_certs.client.cert, cluster_certs.client.key)
            reader, writer = await raw_connection(members[1].port, ctx)
            writer.write(garbage)
            assert await closed_by_server(reader, writer)
            assert members[1].received == {}
            members[2].transport.send([heartbeat(2, 1, 42)])
            await until(lambda: bool(members[1].received[2]))
            assert members[1].received[2][0].commit == 42
        finally:
            await close_all(members)

    run_clean(main)


def test_sending_to_a_peer_that_is_down_drops_without_blocking_and_reports_it(
    cluster_certs: certs.CertPaths,
) -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]

    async def main() -> None:
        members = await start_cluster(cluster_certs, (1,))
        t1 = members[1].transport
        t1.add_peer(2, ("127.0.0.1", dead_port))
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            snap = Snapshot(SnapshotMetadata(index=5, term=1), b"s")
            t1.send([heartbeat(1, 2, i) for i in range(1000)] + [Message(MessageType.SNAP, to=2, from_=1, snapshot=snap)])
            t1.send([heartbeat(1, 4, 0)])  # not a peer at all
            assert loop.time() - began < 0.5
            assert members[1].unreachable == [2, 4]
            assert members[1].snapshot_status == [(2, True)]
            assert t1.stats(2).dropped == 1001
        finally:
            await close_all(members)

    run_clean(main)


def test_a_large_snapshot_streams_without_stalling_the_event_loop(cluster_certs: certs.CertPaths) -> None:
    data = os.urandom(1 << 16) * 256  # 16 MiB

    async def main() -> None:
        members = await start_cluster(cluster_certs, (1, 2))
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            last = loop.time()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = loop.time()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        try:
            snap = Snapshot(SnapshotMetadata(index=100, term=3), data)
            members[1].transport.send([Message(MessageType.SNAP, to=2, from_=1, term=3, snapshot=snap)])
            members[1].transport.send([heartbeat(1, 2, 7)])
            await until(lambda: len(members[2].received[1]) == 2, timeout=15)
            got = members[2].received[1]
            assert got[0].snapshot is not None and got[0].snapshot.data == data
            assert got[1].commit == 7
            assert members[1].snapshot_status == [(2, False)]
            # Encoding and decoding 16 MiB happen in one go; the socket writes do not.
            assert sorted(gaps)[-3] < 0.25, f"the loop stalled: {sorted(gaps)[-5:]}"
        finally:
            stop.set()
            await tick
            await close_all(members)

    run_clean(main)


def test_remove_peer_stops_its_stream_and_add_peer_starts_one(cluster_certs: certs.CertPaths) -> None:
    async def main() -> None:
        members = await start_cluster(cluster_certs, (1, 2))
        try:
            t1 = members[1].transport
            t1.remove_peer(2)
            assert t1.peers() == {}
            t1.send([heartbeat(1, 2, 0)])
            assert members[1].unreachable == [2]
            t1.add_peer(2, ("127.0.0.1", members[2].port))
            await t1.wait_connected()
            t1.send([heartbeat(1, 2, 1)])
            await until(lambda: bool(members[2].received[1]))
            assert [m.commit for m in members[2].received[1]] == [1]
        finally:
            await close_all(members)

    run_clean(main)


def test_member_id_zero_is_refused(cluster_certs: certs.CertPaths) -> None:
    with pytest.raises(ValueError, match="member_id"):
        Transport(0, {}, server_ssl=None, client_ssl=None, on_message=lambda m: None)


def test_a_membership_query_is_answered_with_the_cluster_id_and_members(cluster_certs: certs.CertPaths) -> None:
    from kv import api
    from real_net.transport import fetch_membership

    listed = (api.Member(ID=1, name="n1", peer_urls=("https://127.0.0.1:1",), client_urls=("https://x:2",)),
              api.Member(ID=7, peer_urls=("https://127.0.0.1:3",), is_learner=True))  # fmt: skip

    async def main() -> None:
        m = Member(1, cluster_certs)
        m.transport.membership = lambda: (0xC1, listed)
        await m.transport.start()
        try:
            client_ssl = certs.member_peer_client_context(cluster_certs, "n2")
            assert await fetch_membership(("127.0.0.1", m.port), client_ssl) == (0xC1, listed)
        finally:
            await m.transport.close()

    run_clean(main)


def test_a_removed_member_is_told_so_even_on_a_connection_it_already_had(cluster_certs: certs.CertPaths) -> None:
    async def main() -> None:
        members = await start_cluster(cluster_certs, (1, 2))
        removed: set[int] = set()
        told: list[int] = []
        members[1].transport.is_removed = removed.__contains__
        members[2].transport.on_removed = lambda: told.append(2)
        try:
            members[2].transport.send([heartbeat(2, 1, 0)])
            await until(lambda: len(members[1].received[2]) == 1)
            removed.add(2)  # member 1 applies member 2's removal while they are connected
            members[2].transport.send([heartbeat(2, 1, 1)])
            await until(lambda: bool(told))
            assert len(members[1].received[2]) == 1, "nothing from a removed member is delivered"
        finally:
            await close_all(members)

    run_clean(main)
