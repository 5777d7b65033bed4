"""LocalBackend: the Backend contract on one in-memory store, without Raft."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from kv import api
from kv.errors import ErrAuthNotEnabled, ErrLeaseNotFound, ErrRootUserNotExist, ErrStopped
from real_net.backend import UNARY_REQUESTS, Backend, WatchStream
from real_net.local_backend import ErrNoRaft, LocalBackend
from real_net.proto import rpc_pb2 as pb
from real_net.proto import rpc_pb2_grpc as pb_grpc

from .support import ServerThread


def run(test: Callable[[LocalBackend], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        async with LocalBackend(**options) as backend:
            await test(backend)

    asyncio.run(main())


def test_it_implements_the_backend_protocol() -> None:
    async def check(b: LocalBackend) -> None:
        assert isinstance(b, Backend)
        stream = b.watch_stream()
        assert isinstance(stream, WatchStream)
        stream.close()

    run(check)


def test_every_unary_request_is_answered_with_its_response_type() -> None:
    async def check(b: LocalBackend) -> None:
        lease = await b.call(api.LeaseGrantRequest(TTL=10))
        requests = {
            api.RangeRequest: api.RangeRequest(key=b"k"),
            api.PutRequest: api.PutRequest(key=b"k", value=b"v"),
            api.DeleteRangeRequest: api.DeleteRangeRequest(key=b"x"),
            api.TxnRequest: api.TxnRequest(),
            api.CompactionRequest: api.CompactionRequest(revision=1),
            api.LeaseGrantRequest: api.LeaseGrantRequest(TTL=5),
            api.LeaseRevokeRequest: api.LeaseRevokeRequest(ID=lease.ID),
            api.LeaseKeepAliveRequest: api.LeaseKeepAliveRequest(ID=1),
            api.LeaseTimeToLiveRequest: api.LeaseTimeToLiveRequest(ID=1),
            api.LeaseLeasesRequest: api.LeaseLeasesRequest(),
            api.MemberListRequest: api.MemberListRequest(),
            api.MemberUpdateRequest: api.MemberUpdateRequest(ID=b.member.ID, peer_urls=("http://127.0.0.1:1",)),
            api.StatusRequest: api.StatusRequest(),
            api.HashKVRequest: api.HashKVRequest(),
            api.DefragmentRequest: api.DefragmentRequest(),
            api.MoveLeaderRequest: api.MoveLeaderRequest(target_id=b.member.ID),
            api.AuthStatusRequest: api.AuthStatusRequest(),
            api.AuthUserAddRequest: api.AuthUserAddRequest(name="u", password="p"),
            api.AuthUserGetRequest: api.AuthUserGetRequest(name="u"),
            api.AuthUserListRequest: api.AuthUserListRequest(),
            api.AuthUserChangePasswordRequest: api.AuthUserChangePasswordRequest(name="u", password="q"),
            api.AuthRoleAddRequest: api.AuthRoleAddRequest(name="r"),
            api.AuthRoleGetRequest: api.AuthRoleGetRequest(role="r"),
            api.AuthRoleListRequest: api.AuthRoleListRequest(),
            api.AuthRoleGrantPermissionRequest: api.AuthRoleGrantPermissionRequest(
                name="r", perm=api.Permission(key=b"k")),
            api.AuthRoleRevokePermissionRequest: api.AuthRoleRevokePermissionRequest(role="r", key=b"k"),
            api.AuthUserGrantRoleRequest: api.AuthUserGrantRoleRequest(user="u", role="r"),
            api.AuthUserRevokeRoleRequest: api.AuthUserRevokeRoleRequest(name="u", role="r"),
            api.AuthRoleDeleteRequest: api.AuthRoleDeleteRequest(role="r"),
            api.AuthUserDeleteRequest: api.AuthUserDeleteRequest(name="u"),
            api.AuthDisableRequest: api.AuthDisableRequest(),
        }
        for req_type, req in requests.items():
            resp = await b.call(req)
            assert type(resp).__name__ == req_type.__name__.replace("Request", "Response")
            assert resp.header.member_id == b.member.ID and resp.header.cluster_id == b.cluster_id
        for req in (api.MemberAddRequest(peer_urls=("http://10.0.0.9:2380",)),
                    api.MemberRemoveRequest(ID=b.member.ID)):  # fmt: skip
            with pytest.raises(ErrNoRaft):
                await b.call(req)
        with pytest.raises(ErrRootUserNotExist):
            await b.call(api.AuthEnableRequest())
        with pytest.raises(ErrAuthNotEnabled):
            await b.call(api.AuthenticateRequest(name="u", password="q"))
        answered = {api.MemberAddRequest, api.MemberRemoveRequest, api.MemberPromoteRequest,
                    api.AuthEnableRequest, api.AuthenticateRequest}  # fmt: skip
        assert set(requests) | answered == set(UNARY_REQUESTS)

    run(check)


def test_raft_index_counts_writes_not_reads() -> None:
    async def check(b: LocalBackend) -> None:
        await b.call(api.PutRequest(key=b"a", value=b"1"))
        await b.call(api.RangeRequest(key=b"a"))
        await b.call(api.TxnRequest(success=(api.RequestOp(request_range=api.RangeRequest(key=b"a")),)))
        await b.call(api.DeleteRangeRequest(key=b"a"))
        status = await b.call(api.StatusRequest())
        assert (status.raft_index, status.raft_applied_index, status.leader) == (2, 2, b.member.ID)

    run(check)


def test_an_expired_lease_is_revoked_with_all_its_keys_in_one_revision() -> None:
    async def check(b: LocalBackend) -> None:
        lease = await b.call(api.LeaseGrantRequest(TTL=1))
        for k in (b"a", b"b"):
            await b.call(api.PutRequest(key=k, value=b"v", lease=lease.ID))
        stream = b.watch_stream()
        await stream.send(api.WatchCreateRequest(key=b"a", range_end=b"c"))
        assert (await stream.recv()).created
        resp = await asyncio.wait_for(stream.recv(), 3)
        assert [(e.type, e.kv.key, e.kv.mod_revision) for e in resp.events] == [
            (api.EventType.DELETE, b"a", 4),
            (api.EventType.DELETE, b"b", 4),
        ]
        with pytest.raises(ErrLeaseNotFound):
            await b.call(api.LeaseRevokeRequest(ID=lease.ID))
        stream.close()

    run(check, min_lease_ttl=1)


def test_the_minimum_lease_ttl_is_etcds_default() -> None:
    async def check(b: LocalBackend) -> None:
        assert (await b.call(api.LeaseGrantRequest(TTL=1))).TTL == 2

    run(check)


def test_stop_ends_watch_streams_and_refuses_calls() -> None:
    async def main() -> None:
        b = LocalBackend()
        await b.start()
        stream = b.watch_stream()
        waiting = asyncio.ensure_future(stream.recv())
        await asyncio.sleep(0)
        await b.stop()
        with pytest.raises(ErrStopped):
            await waiting
        with pytest.raises(ErrStopped):
            await b.call(api.RangeRequest(key=b"k"))
        with pytest.raises(ErrStopped):
            b.watch_stream()

    asyncio.run(main())


def test_member_and_cluster_ids_depend_only_on_the_configuration() -> None:
    a, b = LocalBackend(peer_urls=("http://127.0.0.1:5",)), LocalBackend(peer_urls=("http://127.0.0.1:5",))
    c = LocalBackend(peer_urls=("http://127.0.0.1:6",))
    assert (a.member.ID, a.cluster_id) == (b.member.ID, b.cluster_id)
    assert a.member.ID != c.member.ID


def test_a_stopping_backend_ends_grpc_watch_calls_with_server_stopped() -> None:
    with ServerThread() as s, grpc.insecure_channel(s.endpoint) as channel:
        responses = pb_grpc.WatchStub(channel).Watch(
            iter([pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k"))]), timeout=10
        )
        assert next(responses).created
        s.run(s.backend.stop())
        with pytest.raises(grpc.RpcError) as e:
            next(responses)
        assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNAVAILABLE, "etcdserver: server stopped")
