"""Conversion both ways between etcd's protobuf messages and the ``kv.api`` dataclasses.

Why this module exists: the core speaks ``kv.api`` (frozen dataclasses, no
protobuf), the wire speaks etcd's ``etcdserverpb``/``mvccpb`` messages. This is
the one place that knows both, so the gRPC servicers, the HTTP/JSON gateway
and any test client translate the same way.

How: one table row per message pair lists every field with its proto name and
its kind (scalar, enum, optional message, always-present header, repeated ...).
``to_pb`` and ``from_pb`` walk the table, so a field cannot be forgotten in one
direction only, and ``tests/real_net/api/test_convert.py`` checks that each row
names every field of both sides. Names differ only where etcd's proto uses
camelCase (``peerURLs`` -> ``peer_urls``, ``dbSize`` -> ``db_size``,
``grantedTTL`` -> ``granted_ttl``).

What is special, each as etcd does it:

* ``ResponseHeader`` is always present on the wire (etcd fills a header on
  every response, nested txn responses included; clients read
  ``header.revision`` without checking presence).
* ``Compare.target_union`` is a one-of: only the arm that ``target`` names is
  sent. Reading, whichever arm is set lands in the field of its own name, so
  an arm that does not match ``target`` reads as zero, as in etcd's compare.
* ``RequestOp``/``ResponseOp`` one-ofs map to ``None``-able fields.
* Enums are open in proto3: an unknown ``sort_order``/``sort_target`` is
  etcd's ``ErrGRPCInvalidSortOption``; unknown watch filters are dropped (etcd's
  ``FiltersFromRequest`` ignores them); any other unknown enum value is an
  InvalidArgument naming the field.
* ``WatchRequest``'s ``request_union`` has no dataclass of its own: see
  ``watch_request_from_pb`` (an empty union is ``None``: etcd skips such a
  request rather than failing the stream).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from kv import api
from kv.errors import ErrEmptyKey, GrpcCode, RaftKVError
from real_net.proto import auth_pb2, kv_pb2, rpc_pb2

__all__ = [
    "ErrInvalidSortOption",
    "ErrUnknownEnumValue",
    "from_pb",
    "to_pb",
    "watch_request_from_pb",
    "watch_request_to_pb",
]


class ErrInvalidSortOption(RaftKVError):
    """etcd 3.5's rpctypes.ErrGRPCInvalidSortOption (v3rpc checkRangeRequest)."""

    message = "etcdserver: invalid sort option"
    grpc_code = GrpcCode.INVALID_ARGUMENT


class ErrUnknownEnumValue(RaftKVError):
    """A proto3 enum field carried a number its enum does not define."""

    message = "raftkv: unknown enum value"
    grpc_code = GrpcCode.INVALID_ARGUMENT


class _Kind(enum.Enum):
    SCALAR = "scalar"  # int, bool, bytes, str: copied as is
    ENUM = "enum"  # kv.api IntEnum <-> proto enum number
    MESSAGE = "message"  # optional nested message <-> dataclass or None
    HEADER = "header"  # ResponseHeader: always on the wire, never None in kv.api
    REPEATED = "repeated"  # repeated scalar <-> tuple
    REPEATED_ENUM = "repeated_enum"
    REPEATED_MESSAGE = "repeated_message"


@dataclass(frozen=True, slots=True)
class _Field:
    api: str
    pb: str
    kind: _Kind
    enum_type: type[enum.IntEnum] | None = None


@dataclass(frozen=True, slots=True)
class _Spec:
    api_type: type
    pb_type: type[Message]
    fields: tuple[_Field, ...]


S, E, M, H, R, RE, RM = (
    _Kind.SCALAR,
    _Kind.ENUM,
    _Kind.MESSAGE,
    _Kind.HEADER,
    _Kind.REPEATED,
    _Kind.REPEATED_ENUM,
    _Kind.REPEATED_MESSAGE,
)


def _f(name: str, kind: _Kind = S, pb: str | None = None, enum: type[enum.IntEnum] | None = None) -> _Field:
    return _Field(api=name, pb=pb or name, kind=kind, enum_type=enum)


_HEADER = _f("header", H)

# One row per message pair, in rpc.proto's order. Field numbers live in the .proto.
_TABLE: tuple[_Spec, ...] = (
    _Spec(api.ResponseHeader, rpc_pb2.ResponseHeader,
          (_f("cluster_id"), _f("member_id"), _f("revision"), _f("raft_term"))),
    _Spec(api.KeyValue, kv_pb2.KeyValue,
          (_f("key"), _f("create_revision"), _f("mod_revision"), _f("version"), _f("value"), _f("lease"))),
    _Spec(api.Event, kv_pb2.Event,
          (_f("type", E, enum=api.EventType), _f("kv", M), _f("prev_kv", M))),
    # --- KV
    _Spec(api.RangeRequest, rpc_pb2.RangeRequest,
          (_f("key"), _f("range_end"), _f("limit"), _f("revision"),
           _f("sort_order", E, enum=api.SortOrder), _f("sort_target", E, enum=api.SortTarget),
           _f("serializable"), _f("keys_only"), _f("count_only"),
           _f("min_mod_revision"), _f("max_mod_revision"),
           _f("min_create_revision"), _f("max_create_revision"))),
    _Spec(api.RangeResponse, rpc_pb2.RangeResponse,
          (_HEADER, _f("kvs", RM), _f("more"), _f("count"))),
    _Spec(api.PutRequest, rpc_pb2.PutRequest,
          (_f("key"), _f("value"), _f("lease"), _f("prev_kv"), _f("ignore_value"), _f("ignore_lease"))),
    _Spec(api.PutResponse, rpc_pb2.PutResponse, (_HEADER, _f("prev_kv", M))),
    _Spec(api.DeleteRangeRequest, rpc_pb2.DeleteRangeRequest,
          (_f("key"), _f("range_end"), _f("prev_kv"))),
    _Spec(api.DeleteRangeResponse, rpc_pb2.DeleteRangeResponse,
          (_HEADER, _f("deleted"), _f("prev_kvs", RM))),
    _Spec(api.RequestOp, rpc_pb2.RequestOp,
          (_f("request_range", M), _f("request_put", M), _f("request_delete_range", M), _f("request_txn", M))),
    _Spec(api.ResponseOp, rpc_pb2.ResponseOp,
          (_f("response_range", M), _f("response_put", M), _f("response_delete_range", M),
           _f("response_txn", M))),
    # Compare's target_union arms are handled by _compare_to_pb / _compare_from_pb.
    _Spec(api.Compare, rpc_pb2.Compare,
          (_f("result", E, enum=api.CompareResult), _f("target", E, enum=api.CompareTarget),
           _f("key"), _f("range_end"))),
    _Spec(api.TxnRequest, rpc_pb2.TxnRequest,
          (_f("compare", RM), _f("success", RM), _f("failure", RM))),
    _Spec(api.TxnResponse, rpc_pb2.TxnResponse,
          (_HEADER, _f("succeeded"), _f("responses", RM))),
    _Spec(api.CompactionRequest, rpc_pb2.CompactionRequest, (_f("revision"), _f("physical"))),
    _Spec(api.CompactionResponse, rpc_pb2.CompactionResponse, (_HEADER,)),
    # --- watch
    _Spec(api.WatchCreateRequest, rpc_pb2.WatchCreateRequest,
          (_f("key"), _f("range_end"), _f("start_revision"), _f("progress_notify"),
           _f("filters", RE, enum=api.WatchFilterType), _f("prev_kv"), _f("watch_id"), _f("fragment"))),
    _Spec(api.WatchCancelRequest, rpc_pb2.WatchCancelRequest, (_f("watch_id"),)),
    _Spec(api.WatchProgressRequest, rpc_pb2.WatchProgressRequest, ()),
    _Spec(api.WatchResponse, rpc_pb2.WatchResponse,
          (_HEADER, _f("watch_id"), _f("created"), _f("canceled"), _f("compact_revision"),
           _f("cancel_reason"), _f("fragment"), _f("events", RM))),
    # --- lease
    _Spec(api.LeaseGrantRequest, rpc_pb2.LeaseGrantRequest, (_f("TTL"), _f("ID"))),
    _Spec(api.LeaseGrantResponse, rpc_pb2.LeaseGrantResponse,
          (_HEADER, _f("ID"), _f("TTL"), _f("error"))),
    _Spec(api.LeaseRevokeRequest, rpc_pb2.LeaseRevokeRequest, (_f("ID"),)),
    _Spec(api.LeaseRevokeResponse, rpc_pb2.LeaseRevokeResponse, (_HEADER,)),
    _Spec(api.LeaseKeepAliveRequest, rpc_pb2.LeaseKeepAliveRequest, (_f("ID"),)),
    _Spec(api.LeaseKeepAliveResponse, rpc_pb2.LeaseKeepAliveResponse, (_HEADER, _f("ID"), _f("TTL"))),
    _Spec(api.LeaseTimeToLiveRequest, rpc_pb2.LeaseTimeToLiveRequest, (_f("ID"), _f("keys"))),
    _Spec(api.LeaseTimeToLiveResponse, rpc_pb2.LeaseTimeToLiveResponse,
          (_HEADER, _f("ID"), _f("TTL"), _f("granted_ttl", pb="grantedTTL"), _f("keys", R))),
    _Spec(api.LeaseLeasesRequest, rpc_pb2.LeaseLeasesRequest, ()),
    _Spec(api.LeaseStatus, rpc_pb2.LeaseStatus, (_f("ID"),)),
    _Spec(api.LeaseLeasesResponse, rpc_pb2.LeaseLeasesResponse, (_HEADER, _f("leases", RM))),
    # --- cluster
    _Spec(api.Member, rpc_pb2.Member,
          (_f("ID"), _f("name"), _f("peer_urls", R, pb="peerURLs"), _f("client_urls", R, pb="clientURLs"),
           _f("is_learner", pb="isLearner"))),
    _Spec(api.MemberAddRequest, rpc_pb2.MemberAddRequest,
          (_f("peer_urls", R, pb="peerURLs"), _f("is_learner", pb="isLearner"))),
    _Spec(api.MemberAddResponse, rpc_pb2.MemberAddResponse,
          (_HEADER, _f("member", M), _f("members", RM))),
    _Spec(api.MemberRemoveRequest, rpc_pb2.MemberRemoveRequest, (_f("ID"),)),
    _Spec(api.MemberRemoveResponse, rpc_pb2.MemberRemoveResponse, (_HEADER, _f("members", RM))),
    _Spec(api.MemberUpdateRequest, rpc_pb2.MemberUpdateRequest,
          (_f("ID"), _f("peer_urls", R, pb="peerURLs"))),
    _Spec(api.MemberUpdateResponse, rpc_pb2.MemberUpdateResponse, (_HEADER, _f("members", RM))),
    _Spec(api.MemberListRequest, rpc_pb2.MemberListRequest, (_f("linearizable"),)),
    _Spec(api.MemberListResponse, rpc_pb2.MemberListResponse, (_HEADER, _f("members", RM))),
    _Spec(api.MemberPromoteRequest, rpc_pb2.MemberPromoteRequest, (_f("ID"),)),
    _Spec(api.MemberPromoteResponse, rpc_pb2.MemberPromoteResponse, (_HEADER, _f("members", RM))),
    # --- maintenance
    _Spec(api.StatusRequest, rpc_pb2.StatusRequest, ()),
    _Spec(api.StatusResponse, rpc_pb2.StatusResponse,
          (_HEADER, _f("version"), _f("db_size", pb="dbSize"), _f("leader"),
           _f("raft_index", pb="raftIndex"), _f("raft_term", pb="raftTerm"),
           _f("raft_applied_index", pb="raftAppliedIndex"), _f("errors", R),
           _f("db_size_in_use", pb="dbSizeInUse"), _f("is_learner", pb="isLearner"))),
    _Spec(api.DefragmentRequest, rpc_pb2.DefragmentRequest, ()),
    _Spec(api.DefragmentResponse, rpc_pb2.DefragmentResponse, (_HEADER,)),
    _Spec(api.MoveLeaderRequest, rpc_pb2.MoveLeaderRequest, (_f("target_id", pb="targetID"),)),
    _Spec(api.MoveLeaderResponse, rpc_pb2.MoveLeaderResponse, (_HEADER,)),
    _Spec(api.HashKVRequest, rpc_pb2.HashKVRequest, (_f("revision"),)),
    _Spec(api.HashKVResponse, rpc_pb2.HashKVResponse,
          (_HEADER, _f("hash"), _f("compact_revision"), _f("hash_revision"))),
    # --- auth (authpb records, then rpc.proto's Auth messages)
    _Spec(api.Permission, auth_pb2.Permission,
          (_f("perm_type", E, pb="permType", enum=api.PermissionType), _f("key"), _f("range_end"))),
    _Spec(api.UserAddOptions, auth_pb2.UserAddOptions, (_f("no_password"),)),
    _Spec(api.AuthEnableRequest, rpc_pb2.AuthEnableRequest, ()),
    _Spec(api.AuthEnableResponse, rpc_pb2.AuthEnableResponse, (_HEADER,)),
    _Spec(api.AuthDisableRequest, rpc_pb2.AuthDisableRequest, ()),
    _Spec(api.AuthDisableResponse, rpc_pb2.AuthDisableResponse, (_HEADER,)),
    _Spec(api.AuthStatusRequest, rpc_pb2.AuthStatusRequest, ()),
    _Spec(api.AuthStatusResponse, rpc_pb2.AuthStatusResponse,
          (_HEADER, _f("enabled"), _f("auth_revision", pb="authRevision"))),
    _Spec(api.AuthenticateRequest, rpc_pb2.AuthenticateRequest, (_f("name"), _f("password"))),
    _Spec(api.AuthenticateResponse, rpc_pb2.AuthenticateResponse, (_HEADER, _f("token"))),
    _Spec(api.AuthUserAddRequest, rpc_pb2.AuthUserAddRequest,
          (_f("name"), _f("password"), _f("options", M), _f("hashed_password", pb="hashedPassword"))),
    _Spec(api.AuthUserAddResponse, rpc_pb2.AuthUserAddResponse, (_HEADER,)),
    _Spec(api.AuthUserGetRequest, rpc_pb2.AuthUserGetRequest, (_f("name"),)),
    _Spec(api.AuthUserGetResponse, rpc_pb2.AuthUserGetResponse, (_HEADER, _f("roles", R))),
    _Spec(api.AuthUserDeleteRequest, rpc_pb2.AuthUserDeleteRequest, (_f("name"),)),
    _Spec(api.AuthUserDeleteResponse, rpc_pb2.AuthUserDeleteResponse, (_HEADER,)),
    _Spec(api.AuthUserChangePasswordRequest, rpc_pb2.AuthUserChangePasswordRequest,
          (_f("name"), _f("password"), _f("hashed_password", pb="hashedPassword"))),
    _Spec(api.AuthUserChangePasswordResponse, rpc_pb2.AuthUserChangePasswordResponse, (_HEADER,)),
    _Spec(api.AuthUserGrantRoleRequest, rpc_pb2.AuthUserGrantRoleRequest, (_f("user"), _f("role"))),
    _Spec(api.AuthUserGrantRoleResponse, rpc_pb2.AuthUserGrantRoleResponse, (_HEADER,)),
    _Spec(api.AuthUserRevokeRoleRequest, rpc_pb2.AuthUserRevokeRoleRequest, (_f("name"), _f("role"))),
    _Spec(api.AuthUserRevokeRoleResponse, rpc_pb2.AuthUserRevokeRoleResponse, (_HEADER,)),
    _Spec(api.AuthRoleAddRequest, rpc_pb2.AuthRoleAddRequest, (_f("name"),)),
    _Spec(api.AuthRoleAddResponse, rpc_pb2.AuthRoleAddResponse, (_HEADER,)),
    _Spec(api.AuthRoleGetRequest, rpc_pb2.AuthRoleGetRequest, (_f("role"),)),
    _Spec(api.AuthRoleGetResponse, rpc_pb2.AuthRoleGetResponse, (_HEADER, _f("perm", RM))),
    _Spec(api.AuthUserListRequest, rpc_pb2.AuthUserListRequest, ()),
    _Spec(api.AuthUserListResponse, rpc_pb2.AuthUserListResponse, (_HEADER, _f("users", R))),
    _Spec(api.AuthRoleListRequest, rpc_pb2.AuthRoleListRequest, ()),
    _Spec(api.AuthRoleListResponse, rpc_pb2.AuthRoleListResponse, (_HEADER, _f("roles", R))),
    _Spec(api.AuthRoleDeleteRequest, rpc_pb2.AuthRoleDeleteRequest, (_f("role"),)),
    _Spec(api.AuthRoleDeleteResponse, rpc_pb2.AuthRoleDeleteResponse, (_HEADER,)),
    _Spec(api.AuthRoleGrantPermissionRequest, rpc_pb2.AuthRoleGrantPermissionRequest,
          (_f("name"), _f("perm", M))),
    _Spec(api.AuthRoleGrantPermissionResponse, rpc_pb2.AuthRoleGrantPermissionResponse, (_HEADER,)),
    _Spec(api.AuthRoleRevokePermissionRequest, rpc_pb2.AuthRoleRevokePermissionRequest,
          (_f("role"), _f("key"), _f("range_end"))),
    _Spec(api.AuthRoleRevokePermissionResponse, rpc_pb2.AuthRoleRevokePermissionResponse, (_HEADER,)),
)  # fmt: skip

_BY_API: dict[type, _Spec] = {s.api_type: s for s in _TABLE}
_BY_PB: dict[type, _Spec] = {s.pb_type: s for s in _TABLE}

# Compare.target_union: the arm carrying each target's operand (rpc.proto fields 4-8).
_COMPARE_ARM: dict[api.CompareTarget, str] = {
    api.CompareTarget.VERSION: "version",
    api.CompareTarget.CREATE: "create_revision",
    api.CompareTarget.MOD: "mod_revision",
    api.CompareTarget.VALUE: "value",
    api.CompareTarget.LEASE: "lease",
}

_WATCH_ARMS: dict[type, str] = {
    api.WatchCreateRequest: "create_request",
    api.WatchCancelRequest: "cancel_request",
    api.WatchProgressRequest: "progress_request",
}

WatchRequest = api.WatchCreateRequest | api.WatchCancelRequest | api.WatchProgressRequest


# ------------------------------------------------------------------ to_pb


def to_pb(value: Any) -> Any:
    """The protobuf message for a ``kv.api`` dataclass (every field, nested ones too)."""
    spec = _BY_API.get(type(value))
    if spec is None:
        raise TypeError(f"no protobuf message for {type(value).__name__}")
    kwargs: dict[str, Any] = {}
    for f in spec.fields:
        v = getattr(value, f.api)
        kind = f.kind
        if kind is S:
            kwargs[f.pb] = v
        elif kind is E:
            kwargs[f.pb] = int(v)
        elif kind is H:
            kwargs[f.pb] = to_pb(v)
        elif kind is M:
            if v is not None:
                kwargs[f.pb] = to_pb(v)
        elif kind is R:
            kwargs[f.pb] = v
        elif kind is RE:
            kwargs[f.pb] = [int(x) for x in v]
        else:
            kwargs[f.pb] = [to_pb(x) for x in v]
    if spec.api_type is api.Compare:
        # Only the arm that `target` names goes on the wire (a one-of holds one arm),
        # always set so the receiver sees which one (etcd's clientv3 sets it too).
        arm = _COMPARE_ARM[value.target]
        kwargs[arm] = getattr(value, arm)
    return spec.pb_type(**kwargs)


def watch_request_to_pb(request: WatchRequest) -> rpc_pb2.WatchRequest:
    """A WatchCreate/Cancel/ProgressRequest wrapped in etcd's WatchRequest one-of."""
    arm = _WATCH_ARMS.get(type(request))
    if arm is None:
        raise TypeError(f"not a watch request: {type(request).__name__}")
    return rpc_pb2.WatchRequest(**{arm: to_pb(request)})


# ---------------------------------------------------------------- from_pb


def from_pb(msg: Message) -> Any:
    """The ``kv.api`` dataclass for a protobuf message (every field, nested ones too).

    Raises ErrInvalidSortOption / ErrUnknownEnumValue / ErrEmptyKey (see the module
    docstring) for enum numbers the API does not define."""
    spec = _BY_PB.get(type(msg))
    if spec is None:
        raise TypeError(f"no kv.api dataclass for {type(msg).__name__}")
    kwargs: dict[str, Any] = {}
    for f in spec.fields:
        kind = f.kind
        if kind is S:
            kwargs[f.api] = getattr(msg, f.pb)
        elif kind is E:
            kwargs[f.api] = _enum_from_pb(msg, f)
        elif kind is H:
            kwargs[f.api] = from_pb(getattr(msg, f.pb))
        elif kind is M:
            kwargs[f.api] = from_pb(getattr(msg, f.pb)) if msg.HasField(f.pb) else None
        elif kind is R:
            kwargs[f.api] = tuple(getattr(msg, f.pb))
        elif kind is RE:
            enum_type = f.enum_type
            assert enum_type is not None
            known = enum_type._value2member_map_
            # etcd's FiltersFromRequest skips filter numbers it does not know.
            kwargs[f.api] = tuple(enum_type(x) for x in getattr(msg, f.pb) if x in known)
        else:
            kwargs[f.api] = tuple(from_pb(x) for x in getattr(msg, f.pb))
    if spec.api_type is api.Compare:
        arm = msg.WhichOneof("target_union")
        if arm is not None:
            kwargs[arm] = getattr(msg, arm)
    return spec.api_type(**kwargs)


def watch_request_from_pb(msg: rpc_pb2.WatchRequest) -> WatchRequest | None:
    """The request inside etcd's WatchRequest one-of; None when no arm is set
    (etcd's watch server skips such a request and keeps the stream open)."""
    arm = msg.WhichOneof("request_union")
    if arm is None:
        return None
    request: WatchRequest = from_pb(getattr(msg, arm))
    return request


def _enum_from_pb(msg: Message, f: _Field) -> enum.IntEnum:
    enum_type = f.enum_type
    assert enum_type is not None
    number = getattr(msg, f.pb)
    member = enum_type._value2member_map_.get(number)
    if member is not None:
        return member  # type: ignore[return-value]
    if enum_type in (api.SortOrder, api.SortTarget):
        # etcd's checkRangeRequest looks at the key first, then the sort options.
        if not getattr(msg, "key", b"x"):
            raise ErrEmptyKey()
        raise ErrInvalidSortOption()
    raise ErrUnknownEnumValue(f"raftkv: unknown {type(msg).__name__}.{f.pb} value {number}")


# ------------------------------------------------------- for the table test


def table() -> dict[type, tuple[type[Message], dict[str, str]]]:
    """The conversion table as {api type: (pb type, {api field: pb field})}, Compare's
    one-of arms included: what the tests compare against both sides' field lists."""
    out: dict[type, tuple[type[Message], dict[str, str]]] = {}
    for s in _TABLE:
        names = {f.api: f.pb for f in s.fields}
        if s.api_type is api.Compare:
            names.update({arm: arm for arm in _COMPARE_ARM.values()})
        out[s.api_type] = (s.pb_type, names)
    return out

