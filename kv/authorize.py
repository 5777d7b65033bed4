"""Who may do what, when auth is on: etcd's authApplierV3 (etcdserver/apply_auth.go) and
the checks etcd's server makes before it serves a read (v3_server.go, v3rpc/watch.go,
v3rpc/maintenance.go).

Where each check happens, as in etcd
    * writes (Put, DeleteRange, a Txn with writes, LeaseRevoke, Compaction and
      every auth change) carry the user and the auth revision the member saw into
      the proposal (``kv.api.Proposal.username`` / ``auth_revision``) and are
      checked *when they apply* (``check_apply``), against the auth store as it
      is at that point of the log, on every member alike. A revision older than
      the store's answers ErrAuthOldRevision: the user's rights may have changed
      in between;
    * reads (Range, a read-only Txn, a watch's range) are checked by the member
      that serves them, against its applied auth store (``check_read``);
    * Defragment, HashKV, MoveLeader, membership changes and auth management
      need role root (``is_admin_permitted``). Compaction does not: etcd 3.4
      lets any user compact (checked side by side with a real etcd 3.4).

With auth off every check passes, so nothing changes for anybody.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from kv import api
from kv.auth import AuthInfo, AuthStore, hash_password
from kv.errors import ErrPermissionDenied, ErrUserEmpty, ErrUserNotFound, GrpcCode, RaftKVError
from kv.lease import Lessor

# Auth requests that go through the log (etcd 3.4 proposes every one of them,
# the listings and gets included).
AUTH_WRITE_REQUESTS = (
    api.AuthEnableRequest,
    api.AuthDisableRequest,
    api.AuthUserAddRequest,
    api.AuthUserDeleteRequest,
    api.AuthUserChangePasswordRequest,
    api.AuthUserGrantRoleRequest,
    api.AuthUserRevokeRoleRequest,
    api.AuthUserGetRequest,
    api.AuthUserListRequest,
    api.AuthRoleAddRequest,
    api.AuthRoleGetRequest,
    api.AuthRoleListRequest,
    api.AuthRoleDeleteRequest,
    api.AuthRoleGrantPermissionRequest,
    api.AuthRoleRevokePermissionRequest,
)
# etcd's needAdminPermission: every auth request but the two a user may make about
# itself (its own user, a role it holds).
_ADMIN_AT_APPLY = tuple(t for t in AUTH_WRITE_REQUESTS if t not in (api.AuthUserGetRequest, api.AuthRoleGetRequest))
# Answered by the member itself, never through the log; root only (etcd's
# authMaintenanceServer for the maintenance ones).
ADMIN_LOCAL_REQUESTS = (
    api.DefragmentRequest,
    api.HashKVRequest,
    api.MoveLeaderRequest,
    api.MemberAddRequest,
    api.MemberRemoveRequest,
    api.MemberUpdateRequest,
    api.MemberPromoteRequest,
)


def hash_passwords(req: Any, rng: random.Random) -> Any:
    """A UserAdd or ChangePassword with its password replaced by its hash, ready for the
    log (every member then applies the same hash). A no-password user gets none. A
    ``hashed_password`` the client sent is not trusted: it is always computed here."""
    if isinstance(req, api.AuthUserAddRequest):
        if req.options is not None and req.options.no_password:
            return replace(req, password="", hashed_password="")
        return replace(req, password="", hashed_password=hash_password(req.password, rng))
    if isinstance(req, api.AuthUserChangePasswordRequest):
        return replace(req, password="", hashed_password=hash_password(req.password, rng))
    return req


def check_read(auth: AuthStore, info: AuthInfo, req: Any) -> None:
    """Before serving a Range, a read-only Txn or a watch create."""
    if not auth.enabled:
        return
    if isinstance(req, (api.RangeRequest, api.WatchCreateRequest)):
        key = req.key
        if isinstance(req, api.WatchCreateRequest) and not key:
            key = b"\x00"  # a watch's empty key is etcd's smallest key
        auth.is_range_permitted(info, key, req.range_end)
    elif isinstance(req, api.TxnRequest):
        check_txn(auth, info, req)
    elif isinstance(req, _MAINTENANCE):
        check_maintenance(auth, info)
    elif isinstance(req, ADMIN_LOCAL_REQUESTS):
        auth.is_admin_permitted(info)


def check_maintenance(auth: AuthStore, info: AuthInfo) -> None:
    """Root only, answered as etcd's authMaintenanceServer answers (Defragment, HashKV,
    MoveLeader, and the Snapshot and Hash that real_net serves from a backend capture)."""
    try:
        auth.is_admin_permitted(info)
    except RaftKVError as e:
        raise ErrMaintenanceAuth(_AUTH_PACKAGE_TEXT.get(type(e), str(e))) from None


def denied_watch(header: api.ResponseHeader, req: api.WatchCreateRequest, err: RaftKVError) -> api.WatchResponse:
    """etcd refuses a watch the user may not read with a created-and-canceled response
    whose reason is the gRPC status text of the check's error, as Go prints it
    (``rpc error: code = PermissionDenied desc = etcdserver: permission denied``)."""
    code = "".join(w.capitalize() for w in err.grpc_code.name.split("_"))
    return api.WatchResponse(
        header=header,
        watch_id=req.watch_id,
        created=True,
        canceled=True,
        cancel_reason=f"rpc error: code = {code} desc = {err}",
    )


# etcd's maintenance server answers with the auth package's own errors, which no
# rpctypes entry translates: clients see gRPC code Unknown and the "auth: ..." text.
class ErrMaintenanceAuth(RaftKVError):
    grpc_code = GrpcCode.UNKNOWN


_AUTH_PACKAGE_TEXT = {
    ErrPermissionDenied: "auth: permission denied",
    ErrUserEmpty: "auth: user name is empty",
    ErrUserNotFound: "auth: user not found",
}
_MAINTENANCE = (api.DefragmentRequest, api.HashKVRequest, api.MoveLeaderRequest)


def check_txn(auth: AuthStore, info: AuthInfo, req: api.TxnRequest) -> None:
    """Read on every compare's range, and every op of both branches (nested txns too:
    etcd 3.4 skips them, which would let a nested txn write anywhere)."""
    for c in req.compare:
        auth.is_range_permitted(info, c.key, c.range_end)
    for op in (*req.success, *req.failure):
        if op.request_range is not None:
            auth.is_range_permitted(info, op.request_range.key, op.request_range.range_end)
        elif op.request_put is not None:
            _check_put(auth, info, op.request_put, None)
        elif op.request_delete_range is not None:
            _check_delete(auth, info, op.request_delete_range)
        elif op.request_txn is not None:
            check_txn(auth, info, op.request_txn)


def _check_put(auth: AuthStore, info: AuthInfo, req: api.PutRequest, lessor: Lessor | None) -> None:
    auth.is_put_permitted(info, req.key)
    if lessor is not None and req.lease:
        _check_lease_puts(auth, info, lessor, req.lease)
    if req.prev_kv:
        auth.is_range_permitted(info, req.key, b"")


def _check_delete(auth: AuthStore, info: AuthInfo, req: api.DeleteRangeRequest) -> None:
    auth.is_delete_range_permitted(info, req.key, req.range_end)
    if req.prev_kv:
        auth.is_range_permitted(info, req.key, req.range_end)


def _check_lease_puts(auth: AuthStore, info: AuthInfo, lessor: Lessor, lease_id: int) -> None:
    """Write on every key of the lease (etcd's checkLeasePuts): revoking it deletes them,
    and attaching a key to it would let its holder's revoke delete ours."""
    lease = lessor.lookup(lease_id)
    if lease is not None:
        for key in lease.sorted_keys():
            auth.is_put_permitted(info, key)


def check_apply(auth: AuthStore, lessor: Lessor, info: AuthInfo, req: Any) -> None:
    """When a proposal applies: raises the etcd error that refuses it, or returns."""
    if not auth.enabled:
        return
    if isinstance(req, _ADMIN_AT_APPLY):
        auth.is_admin_permitted(info)
    elif isinstance(req, api.PutRequest):
        _check_put(auth, info, req, lessor)
    elif isinstance(req, api.DeleteRangeRequest):
        _check_delete(auth, info, req)
    elif isinstance(req, api.RangeRequest):
        auth.is_range_permitted(info, req.key, req.range_end)
    elif isinstance(req, api.TxnRequest):
        check_txn(auth, info, req)
        _check_txn_leases(auth, info, lessor, req)
    elif isinstance(req, api.LeaseRevokeRequest):
        _check_lease_puts(auth, info, lessor, req.ID)
    elif isinstance(req, api.AuthUserGetRequest):
        # A user may read its own record (etcd's authApplierV3.UserGet).
        if req.name != info.username:
            auth.is_admin_permitted(info)
    elif isinstance(req, api.AuthRoleGetRequest):
        # ... and the roles it holds (authApplierV3.RoleGet).
        if not auth.has_role(info.username, req.role):
            auth.is_admin_permitted(info)


def _check_txn_leases(auth: AuthStore, info: AuthInfo, lessor: Lessor, req: api.TxnRequest) -> None:
    for op in (*req.success, *req.failure):
        if op.request_put is not None and op.request_put.lease:
            _check_lease_puts(auth, info, lessor, op.request_put.lease)
        elif op.request_txn is not None:
            _check_txn_leases(auth, info, lessor, op.request_txn)
