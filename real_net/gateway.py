"""etcd's v3 JSON gateway: the v3 API as HTTP/1.1 POSTs of JSON, over the gRPC servicers.

Why: etcd is usable with nothing but curl, and HTTP-only clients (``etcd3gw``,
used by OpenStack) speak this face. etcd serves it with grpc-gateway, which
turns each JSON body into the protobuf request and makes a gRPC call to the
member itself. This module does the same without the loopback call: it
parses the body into the protobuf request (``real_net/proto``) and calls the
method of the very servicer that gRPC calls (real_net/grpc_server.py), with
a context whose ``abort`` raises. So request checks, limits, error texts and
codes, cluster headers and keep-alive behaviour are the gRPC ones by
construction, not by copy.

Encoding, as etcd 3.4's grpc-gateway
    * bodies are read and written by real_net/jsonpb.py (proto field names,
      base64 bytes, int64 as strings, enum names, zero values left out,
      unknown fields ignored); malformed JSON or base64 is a 400 with Go's text;
    * an empty body is the empty request (grpc-gateway ignores io.EOF);
    * errors are ``{"error", "message", "code"}`` with the gRPC code, under the
      HTTP status grpc-gateway maps it to (``HTTP_STATUS``).
    Streams (``/v3/watch``, ``/v3/lease/keepalive``) take one or more JSON
    requests in the body and answer ``{"result": ...}`` lines, chunked, until
    the server ends the call (keep-alive: when the requests are answered) or
    the client goes away; an error ends the stream with ``{"error": {...}}``.

Where raftkv differs from etcd 3.4, on purpose (README "HTTP/JSON"):
    * malformed input is always a 400, also inside a watch request (etcd
      answers a bad base64 there with a 500);
    * a wrong method or unknown path under ``/v3/`` gets a JSON error body
      (405 with code 12, 404 with code 5) where Go answers in plain text;
    * a request body is read whole before the call starts, so a watch's
      creates must all be in the first body (curl sends them that way).

The HTTP message types (``HttpRequest``, ``HttpResponse``) live here because
this is the first HTTP face; real_net/v2keys.py uses them too and
real_net/client_port.py serves both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import grpc
from google.protobuf.message import Message

from kv import api
from kv.errors import RaftKVError
from kv.request_checks import DEFAULT_MAX_TXN_OPS
from real_net import grpc_server as gs
from real_net.backend import Backend
from real_net.jsonpb import JSONError, dumps, loads, loads_many, message_to_json, parse_message
from real_net.proto import rpc_pb2 as pb

__all__ = [
    "CORS_HEADERS",
    "GRPC_JSON_HEADERS",
    "HTTP_STATUS",
    "ChunkStream",
    "Gateway",
    "HttpRequest",
    "HttpResponse",
    "error_response",
    "json_response",
]

# ------------------------------------------------------------------ HTTP types


@dataclass(slots=True)
class HttpRequest:
    """One HTTP/1.1 request, its body read whole (real_net/client_port.py builds it)."""

    method: str
    path: str  # the path as sent, percent-escapes kept
    query: str = ""  # the raw query string, without "?"
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""


@dataclass(slots=True)
class HttpResponse:
    """A response: a whole ``body``, or a ``stream`` of chunks sent as they come
    (chunked transfer encoding; the headers go out before the first chunk)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: ChunkStream | None = None


class ChunkStream:
    """The chunks of a streamed response, and what must be released when it ends.

    ``aclose`` runs ``cleanup`` even if the stream was never iterated (a client that
    hangs up before the first chunk): an async generator's ``finally`` would not."""

    def __init__(self, chunks: AsyncIterator[bytes], cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        self._chunks = chunks
        self._cleanup = cleanup
        self._closed = False

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        closer = getattr(self._chunks, "aclose", None)
        try:
            if closer is not None:
                await closer()
        finally:
            if self._cleanup is not None:
                await self._cleanup()


# etcd's HTTP handlers put these on every response (its CORS wrapper with --cors "*").
CORS_HEADERS = [
    ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
    ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
    ("Access-Control-Allow-Origin", "*"),
]
JSON_HEADERS = [("Content-Type", "application/json")]
# grpc-gateway forwards the gRPC response's metadata: a successful call carries this.
GRPC_JSON_HEADERS = [*JSON_HEADERS, ("Grpc-Metadata-Content-Type", "application/grpc")]

# grpc-gateway v1's HTTPStatusFromCode (what etcd 3.4 answers with).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 408,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 412,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


def json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status, [*CORS_HEADERS, *(headers if headers is not None else JSON_HEADERS)], dumps(obj))


def error_response(code: grpc.StatusCode, message: str, status: int | None = None) -> HttpResponse:
    """grpc-gateway's error body: the gRPC code and text, under its HTTP status."""
    body = {"error": message, "message": message, "code": code.value[0]}
    return json_response(HTTP_STATUS[code] if status is None else status, body)


# ----------------------------------------------------------- calling servicers


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _Context:
    """The part of grpc.aio.ServicerContext the servicers use: ``abort`` ends the call,
    ``invocation_metadata`` carries the client's token (etcd's gateway forwards the HTTP
    ``Authorization`` header as the metadata etcd reads a token from)."""

    def __init__(self, token: str = "") -> None:
        self._token = token

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", self._token),) if self._token else ()

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise _Aborted(code, details)


@dataclass(frozen=True, slots=True)
class _Route:
    servicer: str  # attribute of Gateway holding the servicer
    method: str
    request: type[Message]
    stream: bool = False


_KV, _LEASE, _CLUSTER, _MAINT, _AUTH = "kv", "lease", "cluster", "maintenance", "auth"

# etcd 3.4's rpc.proto google.api.http bindings (all POST, body "*").
_ROUTES: dict[str, _Route] = {
    "kv/range": _Route(_KV, "Range", pb.RangeRequest),
    "kv/put": _Route(_KV, "Put", pb.PutRequest),
    "kv/deleterange": _Route(_KV, "DeleteRange", pb.DeleteRangeRequest),
    "kv/txn": _Route(_KV, "Txn", pb.TxnRequest),
    "kv/compaction": _Route(_KV, "Compact", pb.CompactionRequest),
    "watch": _Route("watch", "Watch", pb.WatchRequest, stream=True),
    "lease/grant": _Route(_LEASE, "LeaseGrant", pb.LeaseGrantRequest),
    "lease/revoke": _Route(_LEASE, "LeaseRevoke", pb.LeaseRevokeRequest),
    "kv/lease/revoke": _Route(_LEASE, "LeaseRevoke", pb.LeaseRevokeRequest),
    "lease/keepalive": _Route(_LEASE, "LeaseKeepAlive", pb.LeaseKeepAliveRequest, stream=True),
    "lease/timetolive": _Route(_LEASE, "LeaseTimeToLive", pb.LeaseTimeToLiveRequest),
    "kv/lease/timetolive": _Route(_LEASE, "LeaseTimeToLive", pb.LeaseTimeToLiveRequest),
    "lease/leases": _Route(_LEASE, "LeaseLeases", pb.LeaseLeasesRequest),
    "kv/lease/leases": _Route(_LEASE, "LeaseLeases", pb.LeaseLeasesRequest),
    "cluster/member/add": _Route(_CLUSTER, "MemberAdd", pb.MemberAddRequest),
    "cluster/member/remove": _Route(_CLUSTER, "MemberRemove", pb.MemberRemoveRequest),
    "cluster/member/update": _Route(_CLUSTER, "MemberUpdate", pb.MemberUpdateRequest),
    "cluster/member/list": _Route(_CLUSTER, "MemberList", pb.MemberListRequest),
    "cluster/member/promote": _Route(_CLUSTER, "MemberPromote", pb.MemberPromoteRequest),
    "maintenance/alarm": _Route(_MAINT, "Alarm", pb.AlarmRequest),
    "maintenance/status": _Route(_MAINT, "Status", pb.StatusRequest),
    "maintenance/defragment": _Route(_MAINT, "Defragment", pb.DefragmentRequest),
    # etcd 3.4 binds Hash and HashKV to the same path; grpc-gateway serves the first, Hash.
    "maintenance/hash": _Route(_MAINT, "Hash", pb.HashRequest),
    "maintenance/snapshot": _Route(_MAINT, "Snapshot", pb.SnapshotRequest, stream=True),
    "maintenance/transfer-leadership": _Route(_MAINT, "MoveLeader", pb.MoveLeaderRequest),
    "auth/enable": _Route(_AUTH, "AuthEnable", pb.AuthEnableRequest),
    "auth/disable": _Route(_AUTH, "AuthDisable", pb.AuthDisableRequest),
    "auth/authenticate": _Route(_AUTH, "Authenticate", pb.AuthenticateRequest),
    "auth/user/add": _Route(_AUTH, "UserAdd", pb.AuthUserAddRequest),
    "auth/user/get": _Route(_AUTH, "UserGet", pb.AuthUserGetRequest),
    "auth/user/list": _Route(_AUTH, "UserList", pb.AuthUserListRequest),
    "auth/user/delete": _Route(_AUTH, "UserDelete", pb.AuthUserDeleteRequest),
    "auth/user/changepw": _Route(_AUTH, "UserChangePassword", pb.AuthUserChangePasswordRequest),
    "auth/user/grant": _Route(_AUTH, "UserGrantRole", pb.AuthUserGrantRoleRequest),
    "auth/user/revoke": _Route(_AUTH, "UserRevokeRole", pb.AuthUserRevokeRoleRequest),
    "auth/role/add": _Route(_AUTH, "RoleAdd", pb.AuthRoleAddRequest),
    "auth/role/get": _Route(_AUTH, "RoleGet", pb.AuthRoleGetRequest),
    "auth/role/list": _Route(_AUTH, "RoleList", pb.AuthRoleListRequest),
    "auth/role/delete": _Route(_AUTH, "RoleDelete", pb.AuthRoleDeleteRequest),
    "auth/role/grant": _Route(_AUTH, "RoleGrantPermission", pb.AuthRoleGrantPermissionRequest),
    "auth/role/revoke": _Route(_AUTH, "RoleRevokePermission", pb.AuthRoleRevokePermissionRequest),
}


def _health_request() -> api.RangeRequest:
    # etcd 3.5's /health: a linearizable read that needs a leader and a quorum.
    return api.RangeRequest(key=b"health")


class Gateway:
    """The v3 JSON face of one Backend: ``handle`` answers ``/v3/...``, ``/v3beta/...``,
    ``/version`` and ``/health``; anything else is for another face (None)."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_request_bytes: int = gs.DEFAULT_MAX_REQUEST_BYTES,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        health_timeout: float = 1.0,
    ) -> None:
        args = (backend, max_request_bytes, max_txn_ops)
        self.backend = backend
        self.kv = gs.KVServicer(*args)
        self.watch = gs.WatchServicer(*args)
        self.lease = gs.LeaseServicer(*args)
        self.cluster = gs.ClusterServicer(*args)
        self.maintenance = gs.MaintenanceServicer(*args)
        self.auth = gs.AuthServicer(*args)
        # What gRPC itself would refuse to receive (grpc_server's receive limit).
        self.max_message_bytes = max_request_bytes + gs.GRPC_OVERHEAD_BYTES
        self.health_timeout = health_timeout

    async def handle(self, req: HttpRequest) -> HttpResponse | None:
        path = req.path.split("?", 1)[0]
        if path == "/version":
            return self._version(req)
        if path == "/health":
            return await self._health(req)
        for prefix in ("/v3/", "/v3beta/"):
            if path.startswith(prefix):
                return await self._v3(req, path[len(prefix) :])
        return None

    # ------------------------------------------------------------------ v3

    async def _v3(self, req: HttpRequest, name: str) -> HttpResponse:
        route = _ROUTES.get(name)
        if route is None:
            return error_response(grpc.StatusCode.NOT_FOUND, "Not Found")
        if req.method != "POST":
            return error_response(grpc.StatusCode.UNIMPLEMENTED, "Method Not Allowed", status=405)
        try:
            if route.stream:
                values = loads_many(req.body)
                requests = [parse_message(v, route.request) for v in values]
            else:
                value = loads(req.body) if req.body.strip() else {}
                requests = [parse_message(value, route.request)]
        except JSONError as e:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        for r in requests:
            size = r.ByteSize()
            if size > self.max_message_bytes:
                return error_response(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"grpc: received message larger than max ({size} vs. {self.max_message_bytes})",
                )
        method: Callable[..., Any] = getattr(getattr(self, route.servicer), route.method)
        token = req.headers.get("authorization", "")
        if route.stream:
            return await self._stream(method, route, requests, token)
        try:
            resp = await method(requests[0], _Context(token))
        except _Aborted as e:
            return error_response(e.code, e.details)
        return json_response(200, message_to_json(resp), GRPC_JSON_HEADERS)

    async def _stream(
        self, method: Callable[..., Any], route: _Route, requests: list[Message], token: str = ""
    ) -> HttpResponse:
        async def request_iterator() -> AsyncIterator[Message]:
            for r in requests:
                yield r

        if route.request is pb.SnapshotRequest:
            calls = method(requests[0] if requests else pb.SnapshotRequest(), _Context(token))
        else:
            calls = method(request_iterator(), _Context(token))
        responses: AsyncIterator[Message] = calls
        # The first answer decides the status: an error before any answer is a plain
        # error response (grpc-gateway does the same), later ones go in the stream.
        try:
            first = await anext(responses)
        except StopAsyncIteration:
            first = None
        except _Aborted as e:
            return error_response(e.code, e.details)
        except BaseException:
            # Cancelled (the connection went away) while waiting for the first answer:
            # end the servicer's call here, or the watch behind it would outlive the client.
            await responses.aclose()  # type: ignore[attr-defined]
            raise

        async def chunks() -> AsyncIterator[bytes]:
            if first is None:
                return
            yield dumps({"result": message_to_json(first)}) + b"\n"
            try:
                async for msg in responses:
                    yield dumps({"result": message_to_json(msg)}) + b"\n"
            except _Aborted as e:
                yield _stream_error(e.code, e.details)

        async def cleanup() -> None:
            await responses.aclose()  # type: ignore[attr-defined]  # ends the servicer's call

        return HttpResponse(200, [*CORS_HEADERS, *GRPC_JSON_HEADERS], stream=ChunkStream(chunks(), cleanup))

    # --------------------------------------------------------- /version, /health

    def _version(self, req: HttpRequest) -> HttpResponse:
        if req.method not in ("GET", "HEAD"):
            return _method_not_allowed()
        major, minor = api.ETCD_VERSION.split(".")[:2]
        return json_response(200, {"etcdserver": api.ETCD_VERSION, "etcdcluster": f"{major}.{minor}.0"})

    async def _health(self, req: HttpRequest) -> HttpResponse:
        if req.method not in ("GET", "HEAD"):
            return _method_not_allowed()
        healthy = True
        try:
            await asyncio.wait_for(self.backend.call(_health_request()), self.health_timeout)
        except (RaftKVError, TimeoutError):
            healthy = False
        body = {"health": "true" if healthy else "false"}
        return json_response(200 if healthy else 503, body, [("Content-Type", "text/plain; charset=utf-8")])


def _stream_error(code: grpc.StatusCode, message: str) -> bytes:
    """grpc-gateway v1's in-stream error object."""
    status = HTTP_STATUS[code]
    return (
        dumps({"error": {"grpc_code": code.value[0], "http_code": status, "message": message,
                          "http_status": HTTPStatus(status).phrase}})  # fmt: skip
        + b"\n"
    )


def _method_not_allowed() -> HttpResponse:
    return error_response(grpc.StatusCode.UNIMPLEMENTED, "Method Not Allowed", status=405)
