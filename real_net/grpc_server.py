"""etcd's v3 gRPC API served over a Backend (grpc.aio).

Why: clients built for etcd (etcdctl, clientv3, the Python libraries) must
work against raftkv unchanged. They depend on the RPC paths and message
bytes (real_net/proto), on the status codes and the exact error texts (they
match on strings such as "etcdserver: requested lease not found"), and on
the streaming behaviour of Watch and LeaseKeepAlive. This module is that
face and nothing else: each servicer converts protobuf to ``kv.api``
(real_net/convert.py), checks the request as etcd's v3rpc layer does, asks
the Backend (real_net/backend.py), and maps a ``kv.errors.RaftKVError`` to a
gRPC status with its ``grpc_code`` and etcd's text, in one place (``_abort``).

What each service answers
    KV, Watch, Lease, Cluster: everything, through the Backend.
    Maintenance: Status, HashKV, Defragment and MoveLeader through the
    Backend; Snapshot streams the Backend's state as etcd's bbolt backend file
    (real_net/etcd_db.py) and Hash is etcd's CRC-32C of that backend; Alarm
    GET lists no alarms (raftkv raises none); Downgrade (not in etcd 3.4
    either) and alarm changes answer UNIMPLEMENTED, saying so.
    Auth: every RPC through the Backend (etcd 3.4's auth: users, roles,
    permissions, simple tokens; kv/auth.py). Every servicer reads the client's
    token from the gRPC metadata ``token`` (what etcd's clients send after
    Authenticate) and passes it to the Backend, which checks the user's rights.

Limits as etcd's defaults: a write request larger than --max-request-bytes
(1.5 MiB) is refused with ErrRequestTooLarge, and gRPC itself refuses to
receive a message larger than that plus 512 KiB (etcd's grpcOverheadBytes).
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

import grpc
from grpc import aio

from kv import api
from kv.errors import (
    ErrLeaseNotFound,
    ErrMemberBadURLs,
    ErrRequestTooLarge,
    RaftKVError,
)
from kv.request_checks import DEFAULT_MAX_TXN_OPS, check_request, is_read_only_txn
from real_net import convert, etcd_db, snapshot_file
from real_net.backend import Backend
from real_net.proto import rpc_pb2 as pb
from real_net.proto import rpc_pb2_grpc as pb_grpc

# etcd's --max-request-bytes default, and the slack its gRPC server allows on top.
DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024
GRPC_OVERHEAD_BYTES = 512 * 1024
# etcd's snapshotSendBufferSize: the database is streamed in chunks of this size.
SNAPSHOT_CHUNK_BYTES = 32 * 1024

# grpc.aio.ServicerContext; grpc ships no type information that mypy can use here.
Context: TypeAlias = Any


async def _abort(context: Any, err: RaftKVError) -> NoReturn:
    """End the call with etcd's status code and text for `err` (the single place
    where kv.errors become gRPC statuses)."""
    await context.abort(grpc.StatusCode[err.grpc_code.name], str(err))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


async def _unimplemented(context: Any, what: str) -> NoReturn:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"raftkv: {what} is not implemented")
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def check_urls(urls: tuple[str, ...]) -> None:
    """etcd's types.NewURLs, as MemberAdd/MemberUpdate apply it: every URL is
    http(s)://host:port or unix(s)://..., with no path (not even "/")."""
    for raw in urls:
        u = urllib.parse.urlsplit(raw)
        if u.scheme not in ("http", "https", "unix", "unixs"):
            raise ErrMemberBadURLs()
        if u.scheme in ("http", "https"):
            try:
                port = u.port
            except ValueError:
                raise ErrMemberBadURLs() from None
            if not u.hostname or port is None:
                raise ErrMemberBadURLs()
        if u.path:
            raise ErrMemberBadURLs()


def auth_token(context: Any) -> str:
    """The client's token: gRPC metadata ``token`` (etcd's TokenFieldNameGRPC), or
    ``authorization`` (TokenFieldNameSwagger, what the HTTP gateway forwards); "" if none.
    A context without metadata (the HTTP gateway's own) has none."""
    metadata = getattr(context, "invocation_metadata", None)
    if metadata is None:
        return ""
    found = {k: v for k, v in (metadata() or ())}
    token = found.get("token", found.get("authorization", ""))
    return token if isinstance(token, str) else token.decode()


class _Servicer:
    """What every service shares: the Backend, the limits, and the call path.

    The servicers do not inherit the generated ``*Servicer`` bases: every method of
    every service is written out here (unimplemented ones say so), and
    ``add_*Servicer_to_server`` looks methods up by name."""

    def __init__(self, backend: Backend, max_request_bytes: int, max_txn_ops: int) -> None:
        self.backend = backend
        self.max_request_bytes = max_request_bytes
        self.max_txn_ops = max_txn_ops

    async def _call(self, context: Any, request_pb: Any, write: bool = False) -> Any:
        """Convert, check, ask the Backend, convert back; any RaftKVError ends the call."""
        try:
            req = convert.from_pb(request_pb)
            if write and request_pb.ByteSize() > self.max_request_bytes:
                # etcd measures the proposal it would put in the log; the request is most of it.
                raise ErrRequestTooLarge()
            resp = await self.backend.call(req, auth_token(context))
        except RaftKVError as e:
            await _abort(context, e)
        return convert.to_pb(resp)

    async def _header(self, context: Any) -> pb.ResponseHeader:
        """A filled header for answers that do not come from the Backend."""
        try:
            status = await self.backend.call(api.StatusRequest())
        except RaftKVError as e:
            await _abort(context, e)
        header: pb.ResponseHeader = convert.to_pb(status.header)
        return header


# ----------------------------------------------------------------------- KV


class KVServicer(_Servicer):
    async def _kv(self, context: Any, request_pb: Any) -> Any:
        try:
            req = convert.from_pb(request_pb)
            # etcd's v3rpc checkRangeRequest / checkPutRequest / checkDeleteRequest /
            # checkTxnRequest, before anything reaches the server.
            check_request(req, self.max_txn_ops)
            write = not isinstance(req, api.RangeRequest) and not (
                isinstance(req, api.TxnRequest) and is_read_only_txn(req)
            )
            if write and request_pb.ByteSize() > self.max_request_bytes:
                raise ErrRequestTooLarge()
            resp = await self.backend.call(req, auth_token(context))
        except RaftKVError as e:
            await _abort(context, e)
        return convert.to_pb(resp)

    async def Range(self, request: pb.RangeRequest, context: Context) -> pb.RangeResponse:
        resp: pb.RangeResponse = await self._kv(context, request)
        return resp

    async def Put(self, request: pb.PutRequest, context: Context) -> pb.PutResponse:
        resp: pb.PutResponse = await self._kv(context, request)
        return resp

    async def DeleteRange(self, request: pb.DeleteRangeRequest, context: Context) -> pb.DeleteRangeResponse:
        resp: pb.DeleteRangeResponse = await self._kv(context, request)
        return resp

    async def Txn(self, request: pb.TxnRequest, context: Context) -> pb.TxnResponse:
        resp: pb.TxnResponse = await self._kv(context, request)
        return resp

    async def Compact(self, request: pb.CompactionRequest, context: Context) -> pb.CompactionResponse:
        resp: pb.CompactionResponse = await self._call(context, request, write=True)
        return resp


# -------------------------------------------------------------------- Watch


class WatchServicer(_Servicer):
    async def Watch(
        self, request_iterator: AsyncIterator[pb.WatchRequest], context: Context
    ) -> AsyncIterator[pb.WatchResponse]:
        """One gRPC stream = one Backend watch stream. Requests are fed in by a reader
        task while responses are written out here, so a client can create watchers
        while events flow. The client half-closing does not end the call: etcd keeps
        sending events until the client cancels it."""
        stream = self.backend.watch_stream(auth_token(context))
        failure: list[Exception] = []

        async def read_requests() -> None:
            try:
                async for msg in request_iterator:
                    req = convert.watch_request_from_pb(msg)
                    if req is not None:  # etcd skips a WatchRequest with no arm set
                        await stream.send(req)
            except Exception as e:  # handed to the writer below, which ends the call with it
                failure.append(e)
                stream.close()

        reader = asyncio.ensure_future(read_requests())
        try:
            while True:
                try:
                    resp = await stream.recv()
                except RaftKVError as e:
                    cause = failure[0] if failure else e
                    if isinstance(cause, RaftKVError):
                        await _abort(context, cause)
                    raise cause from e
                yield convert.to_pb(resp)
        finally:
            reader.cancel()
            stream.close()


# -------------------------------------------------------------------- Lease


class LeaseServicer(_Servicer):
    async def LeaseGrant(self, request: pb.LeaseGrantRequest, context: Context) -> pb.LeaseGrantResponse:
        resp: pb.LeaseGrantResponse = await self._call(context, request, write=True)
        return resp

    async def LeaseRevoke(self, request: pb.LeaseRevokeRequest, context: Context) -> pb.LeaseRevokeResponse:
        resp: pb.LeaseRevokeResponse = await self._call(context, request, write=True)
        return resp

    async def LeaseKeepAlive(
        self, request_iterator: AsyncIterator[pb.LeaseKeepAliveRequest], context: Context
    ) -> AsyncIterator[pb.LeaseKeepAliveResponse]:
        """One answer per request, in order. An unknown lease is answered with TTL 0,
        not an error (etcd's leaseKeepAlive); when the client half-closes, the call
        ends (etcd returns on io.EOF)."""
        async for msg in request_iterator:
            req = convert.from_pb(msg)
            try:
                resp = await self.backend.call(req, auth_token(context))
            except ErrLeaseNotFound:
                header = convert.from_pb(await self._header(context))
                resp = api.LeaseKeepAliveResponse(header=header, ID=req.ID, TTL=0)
            except RaftKVError as e:
                await _abort(context, e)
            yield convert.to_pb(resp)

    async def LeaseTimeToLive(
        self, request: pb.LeaseTimeToLiveRequest, context: Context
    ) -> pb.LeaseTimeToLiveResponse:
        resp: pb.LeaseTimeToLiveResponse = await self._call(context, request)
        return resp

    async def LeaseLeases(self, request: pb.LeaseLeasesRequest, context: Context) -> pb.LeaseLeasesResponse:
        resp: pb.LeaseLeasesResponse = await self._call(context, request)
        return resp


# ------------------------------------------------------------------ Cluster


class ClusterServicer(_Servicer):
    """Membership. etcd's cluster service fills its headers with the cluster ID, member
    ID and raft term but no revision (membership is not in the MVCC store), so the
    revision a Backend put there is cleared: `etcdctl member list -w json` then
    prints the same header as against etcd."""

    async def _member_call(self, context: Context, request: Any, urls: Any = None) -> Any:
        if urls is not None:
            try:
                check_urls(tuple(urls))
            except RaftKVError as e:
                await _abort(context, e)
        resp = await self._call(context, request)
        resp.header.revision = 0
        return resp

    async def MemberAdd(self, request: pb.MemberAddRequest, context: Context) -> pb.MemberAddResponse:
        resp: pb.MemberAddResponse = await self._member_call(context, request, request.peerURLs)
        return resp

    async def MemberRemove(self, request: pb.MemberRemoveRequest, context: Context) -> pb.MemberRemoveResponse:
        resp: pb.MemberRemoveResponse = await self._member_call(context, request)
        return resp

    async def MemberUpdate(self, request: pb.MemberUpdateRequest, context: Context) -> pb.MemberUpdateResponse:
        resp: pb.MemberUpdateResponse = await self._member_call(context, request, request.peerURLs)
        return resp

    async def MemberList(self, request: pb.MemberListRequest, context: Context) -> pb.MemberListResponse:
        resp: pb.MemberListResponse = await self._member_call(context, request)
        return resp

    async def MemberPromote(self, request: pb.MemberPromoteRequest, context: Context) -> pb.MemberPromoteResponse:
        resp: pb.MemberPromoteResponse = await self._member_call(context, request)
        return resp


# -------------------------------------------------------------- Maintenance


class MaintenanceServicer(_Servicer):
    async def Status(self, request: pb.StatusRequest, context: Context) -> pb.StatusResponse:
        resp: pb.StatusResponse = await self._call(context, request)
        return resp

    async def HashKV(self, request: pb.HashKVRequest, context: Context) -> pb.HashKVResponse:
        resp: pb.HashKVResponse = await self._call(context, request)
        return resp

    async def Alarm(self, request: pb.AlarmRequest, context: Context) -> pb.AlarmResponse:
        # raftkv has no space quota and no corruption checker, so no alarm is ever
        # raised; listing them must still work (`etcdctl alarm list`, `endpoint health`).
        if request.action != pb.AlarmRequest.GET:
            await _unimplemented(context, "Maintenance.Alarm ACTIVATE/DEACTIVATE")
        return pb.AlarmResponse(header=await self._header(context))

    async def Defragment(self, request: pb.DefragmentRequest, context: Context) -> pb.DefragmentResponse:
        resp: pb.DefragmentResponse = await self._call(context, request)
        return resp

    async def Hash(self, request: pb.HashRequest, context: Context) -> pb.HashResponse:
        """etcd's Hash: a CRC-32C of the member's whole backend (every bucket, the consistent
        index left out), here computed over the backend this member's Snapshot streams.
        Members that applied the same log answer the same hash; etcd marks it as meant
        for testing, and HashKV is the check to compare members by."""
        try:
            state = await self.backend.snapshot(auth_token(context))
        except RaftKVError as e:
            await _abort(context, e)
        value = await asyncio.get_running_loop().run_in_executor(None, snapshot_file.state_hash, state)
        return pb.HashResponse(header=convert.to_pb(state.header), hash=value)

    async def Snapshot(
        self, request: pb.SnapshotRequest, context: Context
    ) -> AsyncIterator[pb.SnapshotResponse]:
        """The member's backend database as etcd 3.4 streams it (v3rpc/maintenance.go):
        chunks of SNAPSHOT_CHUNK_BYTES with remaining_bytes counting down to 0, then
        one more message, also remaining_bytes 0, whose blob is the sha256 of the whole
        database. etcdctl appends that digest to the file it saves and checks it on
        restore (the file is then 32 bytes past a multiple of 512). etcd 3.4 leaves
        the header empty; raftkv fills it (member, cluster, term and the revision the
        snapshot holds), which clients ignore."""
        try:
            state = await self.backend.snapshot(auth_token(context))
        except RaftKVError as e:
            await _abort(context, e)
        # Encoding is pure CPU work over immutable bytes: a worker thread keeps the
        # member's loop answering in the meantime.
        db = await asyncio.get_running_loop().run_in_executor(None, etcd_db.encode, state)
        header = convert.to_pb(state.header)
        digest = hashlib.sha256()
        total = len(db)
        for start in range(0, total, SNAPSHOT_CHUNK_BYTES):
            blob = db[start : start + SNAPSHOT_CHUNK_BYTES]
            digest.update(blob)
            remaining = total - start - len(blob)
            yield pb.SnapshotResponse(header=header, remaining_bytes=remaining, blob=blob)
        yield pb.SnapshotResponse(header=header, remaining_bytes=0, blob=digest.digest())

    async def MoveLeader(self, request: pb.MoveLeaderRequest, context: Context) -> pb.MoveLeaderResponse:
        resp: pb.MoveLeaderResponse = await self._call(context, request)
        return resp

    async def Downgrade(self, request: pb.DowngradeRequest, context: Context) -> pb.DowngradeResponse:
        await _unimplemented(context, "Maintenance.Downgrade")


# --------------------------------------------------------------------- Auth

class AuthServicer(_Servicer):
    """etcd's Auth service: every method is one Backend call (the Backend proposes each
    change, and in etcd 3.4 each get and list too, through the log)."""

    async def AuthEnable(self, request: pb.AuthEnableRequest, context: Context) -> pb.AuthEnableResponse:
        resp: pb.AuthEnableResponse = await self._call(context, request)
        return resp

    async def AuthDisable(self, request: pb.AuthDisableRequest, context: Context) -> pb.AuthDisableResponse:
        resp: pb.AuthDisableResponse = await self._call(context, request)
        return resp

    async def AuthStatus(self, request: pb.AuthStatusRequest, context: Context) -> pb.AuthStatusResponse:
        resp: pb.AuthStatusResponse = await self._call(context, request)
        return resp

    async def Authenticate(self, request: pb.AuthenticateRequest, context: Context) -> pb.AuthenticateResponse:
        resp: pb.AuthenticateResponse = await self._call(context, request)
        return resp

    async def UserAdd(self, request: pb.AuthUserAddRequest, context: Context) -> pb.AuthUserAddResponse:
        resp: pb.AuthUserAddResponse = await self._call(context, request)
        return resp

    async def UserGet(self, request: pb.AuthUserGetRequest, context: Context) -> pb.AuthUserGetResponse:
        resp: pb.AuthUserGetResponse = await self._call(context, request)
        return resp

    async def UserList(self, request: pb.AuthUserListRequest, context: Context) -> pb.AuthUserListResponse:
        resp: pb.AuthUserListResponse = await self._call(context, request)
        return resp

    async def UserDelete(self, request: pb.AuthUserDeleteRequest, context: Context) -> pb.AuthUserDeleteResponse:
        resp: pb.AuthUserDeleteResponse = await self._call(context, request)
        return resp

    async def UserChangePassword(
        self, request: pb.AuthUserChangePasswordRequest, context: Context
    ) -> pb.AuthUserChangePasswordResponse:
        resp: pb.AuthUserChangePasswordResponse = await self._call(context, request)
        return resp

    async def UserGrantRole(
        self, request: pb.AuthUserGrantRoleRequest, context: Context
    ) -> pb.AuthUserGrantRoleResponse:
        resp: pb.AuthUserGrantRoleResponse = await self._call(context, request)
        return resp

    async def UserRevokeRole(
        self, request: pb.AuthUserRevokeRoleRequest, context: Context
    ) -> pb.AuthUserRevokeRoleResponse:
        resp: pb.AuthUserRevokeRoleResponse = await self._call(context, request)
        return resp

    async def RoleAdd(self, request: pb.AuthRoleAddRequest, context: Context) -> pb.AuthRoleAddResponse:
        resp: pb.AuthRoleAddResponse = await self._call(context, request)
        return resp

    async def RoleGet(self, request: pb.AuthRoleGetRequest, context: Context) -> pb.AuthRoleGetResponse:
        resp: pb.AuthRoleGetResponse = await self._call(context, request)
        return resp

    async def RoleList(self, request: pb.AuthRoleListRequest, context: Context) -> pb.AuthRoleListResponse:
        resp: pb.AuthRoleListResponse = await self._call(context, request)
        return resp

    async def RoleDelete(self, request: pb.AuthRoleDeleteRequest, context: Context) -> pb.AuthRoleDeleteResponse:
        resp: pb.AuthRoleDeleteResponse = await self._call(context, request)
        return resp

    async def RoleGrantPermission(
        self, request: pb.AuthRoleGrantPermissionRequest, context: Context
    ) -> pb.AuthRoleGrantPermissionResponse:
        resp: pb.AuthRoleGrantPermissionResponse = await self._call(context, request)
        return resp

    async def RoleRevokePermission(
        self, request: pb.AuthRoleRevokePermissionRequest, context: Context
    ) -> pb.AuthRoleRevokePermissionResponse:
        resp: pb.AuthRoleRevokePermissionResponse = await self._call(context, request)
        return resp


# ------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """Client-facing TLS, named after etcd's flags: --cert-file, --key-file,
    --trusted-ca-file, --client-cert-auth (PEM files)."""

    cert_file: str | Path
    key_file: str | Path
    trusted_ca_file: str | Path | None = None
    client_cert_auth: bool = False

    def __post_init__(self) -> None:
        if self.client_cert_auth and self.trusted_ca_file is None:
            raise ValueError("client_cert_auth needs trusted_ca_file: the CA that signs client certificates")

    def credentials(self) -> grpc.ServerCredentials:
        ca = Path(self.trusted_ca_file).read_bytes() if self.trusted_ca_file is not None else None
        return grpc.ssl_server_credentials(
            [(Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes())],
            root_certificates=ca,
            require_client_auth=self.client_cert_auth,
        )


class ClientAPIServer:
    """A running gRPC server for the client API; ``port`` is the bound port."""

    def __init__(self, server: aio.Server, host: str, port: int, tls: bool) -> None:
        self._server = server
        self.host = host
        self.port = port
        self.tls = tls

    @property
    def endpoint(self) -> str:
        """host:port, the form etcdctl's --endpoints takes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting calls; calls in flight get `grace` seconds, then are cancelled."""
        await self._server.stop(grace)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def start_server(
    backend: Backend,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tls: ServerTLS | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
) -> ClientAPIServer:
    """Serve etcd's v3 API for `backend` on host:port (0 = an ephemeral port) on the
    running event loop; with `tls`, only over TLS. Raises OSError if it cannot bind."""
    server = build_server(backend, max_request_bytes=max_request_bytes, max_txn_ops=max_txn_ops)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = add_port(server, address, tls)
    await server.start()
    return ClientAPIServer(server, host, bound, tls is not None)


def build_server(
    backend: Backend, *, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_txn_ops: int = DEFAULT_MAX_TXN_OPS
) -> aio.Server:
    """A grpc.aio server with every etcd v3 service over `backend`, not yet listening
    (real_net/client_port.py puts it behind the shared client port)."""
    options = [
        ("grpc.max_receive_message_length", max_request_bytes + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", 2**31 - 1),
        # etcd's --grpc-keepalive-min-time (5 s): clients (etcdctl sets keepalive) may
        # ping that often, also between calls, without being told "too many pings".
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 0),
    ]
    server = aio.server(options=options)
    args = (backend, max_request_bytes, max_txn_ops)
    pb_grpc.add_KVServicer_to_server(KVServicer(*args), server)
    pb_grpc.add_WatchServicer_to_server(WatchServicer(*args), server)
    pb_grpc.add_LeaseServicer_to_server(LeaseServicer(*args), server)
    pb_grpc.add_ClusterServicer_to_server(ClusterServicer(*args), server)
    pb_grpc.add_MaintenanceServicer_to_server(MaintenanceServicer(*args), server)
    pb_grpc.add_AuthServicer_to_server(AuthServicer(*args), server)
    return server


def add_port(server: aio.Server, address: str, tls: ServerTLS | None) -> int:
    """Listen on `address` (host:port or unix:PATH), over TLS if `tls`; the bound port
    (for unix: a non-zero number). Raises OSError if it cannot bind."""
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, tls.credentials())
    except RuntimeError as e:  # grpc raises RuntimeError when the bind fails
        raise OSError(f"cannot listen on {address}: {e}") from None
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    return int(bound)
