"""The seam between the client API (gRPC, HTTP/JSON) and whatever answers it.

Why a seam: the gRPC servicers must not know whether a request is answered by
a Raft cluster member (real_net/node.py driving kv.member.Member), by the
single-process store in real_net/local_backend.py, or by a test double. They
speak ``kv.api`` dataclasses to a ``Backend`` and map its ``kv.errors`` to gRPC
status codes; the Backend owns ordering, replication, headers and errors.

Contract (what a Backend promises the servicers)
    ``call(request)`` answers one unary request with its response dataclass,
    the top-level ``header`` filled as etcd fills it (cluster_id, member_id,
    raft_term and the store revision; ``kv.api.fill_header`` does it), or
    raises a ``kv.errors.RaftKVError`` subclass carrying etcd's text and gRPC
    code. It must be safe to call concurrently from many tasks on one event
    loop. A request may be cancelled (the client went away): the Backend may
    still apply it, as etcd does with a proposal already in the log.

    Request shapes checked by etcd's API layer (empty key, too many txn ops,
    ...) are checked again by the servicer before ``call``; a Backend still
    checks what its own correctness depends on.

    Keep-alives are unary too: the LeaseKeepAlive stream is the servicer's, and
    each request on it is one ``call(LeaseKeepAliveRequest)``; a lease that is
    not there is answered with TTL 0 (``kv.lease.Lessor.keep_alive``) or
    ``ErrLeaseNotFound``, which the servicer turns into TTL 0, as etcd does.

    ``watch_stream()`` opens one etcd watch stream: many watchers multiplexed
    by watch_id, as one gRPC Watch call carries them.

    ``snapshot()`` captures the replicated state at the current applied index,
    all of it at one instant (etcd snapshots its backend at its applied state);
    the servicer turns it into etcd's backend file (real_net/etcd_db.py) and
    streams that (Maintenance.Snapshot).

Requests and responses (all ``kv.api``):
    RangeRequest, PutRequest, DeleteRangeRequest, TxnRequest, CompactionRequest,
    LeaseGrantRequest, LeaseRevokeRequest, LeaseKeepAliveRequest,
    LeaseTimeToLiveRequest, LeaseLeasesRequest, MemberAddRequest,
    MemberRemoveRequest, MemberUpdateRequest, MemberListRequest,
    MemberPromoteRequest, StatusRequest, HashKVRequest, DefragmentRequest,
    MoveLeaderRequest and every Auth request (AuthEnableRequest ...
    AuthRoleRevokePermissionRequest) -> the matching ``...Response``.

Auth: the servicers pass the client's token (gRPC metadata ``token``) with each
call and each watch stream; the Backend resolves it to a user (an unknown or
expired one is ``ErrInvalidAuthToken``) and checks that user's rights as etcd
does (kv/authorize.py).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from kv import api
from kv.authorize import AUTH_WRITE_REQUESTS
from real_net.etcd_db import BackendState

WatchRequest = api.WatchCreateRequest | api.WatchCancelRequest | api.WatchProgressRequest

# Every request a Backend answers through call(); the servicers send nothing else.
UNARY_REQUESTS: tuple[type, ...] = (
    api.RangeRequest,
    api.PutRequest,
    api.DeleteRangeRequest,
    api.TxnRequest,
    api.CompactionRequest,
    api.LeaseGrantRequest,
    api.LeaseRevokeRequest,
    api.LeaseKeepAliveRequest,
    api.LeaseTimeToLiveRequest,
    api.LeaseLeasesRequest,
    api.MemberAddRequest,
    api.MemberRemoveRequest,
    api.MemberUpdateRequest,
    api.MemberListRequest,
    api.MemberPromoteRequest,
    api.StatusRequest,
    api.HashKVRequest,
    api.DefragmentRequest,
    api.MoveLeaderRequest,
    api.AuthStatusRequest,
    api.AuthenticateRequest,
    *AUTH_WRITE_REQUESTS,
)


@runtime_checkable
class WatchStream(Protocol):
    """One client watch stream (etcd's serverWatchStream): requests in, responses out.

    Responses come out in the order etcd sends them: a create is answered with
    ``created=True`` before any event of that watcher, creates are answered in
    request order, a watcher's events come in revision order with all events
    of one revision in one response."""

    async def send(self, request: WatchRequest) -> None:
        """Hand a create, cancel or progress request to the stream. Returns once the
        request is accepted (its answers may come later through ``recv``).
        Raises a RaftKVError if the stream can no longer take requests."""
        ...

    async def recv(self) -> api.WatchResponse:
        """The next response for this stream, waiting as long as it takes. Raises a
        RaftKVError (e.g. ``ErrStopped``, ``ErrNoLeader``) when the stream ends on the
        server's side; the servicer ends the gRPC call with that error."""
        ...

    def close(self) -> None:
        """The client went away: drop every watcher of the stream. Idempotent; a
        ``recv`` waiting at that moment raises ``ErrStopped``."""
        ...


@runtime_checkable
class Backend(Protocol):
    """What the client API servicers call (see the module docstring for the contract)."""

    async def call(self, request: Any, auth_token: str = "") -> Any:
        """Answer one request from ``UNARY_REQUESTS`` with its response dataclass, or
        raise the ``kv.errors.RaftKVError`` subclass etcd would answer with.
        `auth_token` is the client's token (gRPC metadata ``token``; "" for none): while
        auth is on, the request runs as the user it names."""
        ...

    def watch_stream(self, auth_token: str = "") -> WatchStream:
        """Open a new, empty watch stream; its watches run as `auth_token`'s user."""
        ...

    async def snapshot(self, auth_token: str = "") -> BackendState:
        """The state at the current applied index, captured at one instant, with the
        response header of that instant; raises a RaftKVError (e.g. ErrStopped)."""
        ...
