"""Request and response values of etcd's v3 API (rpc.proto, kv.proto), one dataclass per message.

Field names are etcd's, in snake_case, so a gRPC or HTTP/JSON layer maps them
1:1 (``TTL`` and ``ID`` keep etcd's capitals, as in the proto). Keys and values
are ``bytes``; repeated fields are tuples, so every value is hashable and
immutable and ``kv.codec.encode_api`` round-trips it exactly.

Validation here is only for *programming* errors (a ``str`` where etcd has
bytes, two arms of a one-of set at once): those raise ``TypeError`` /
``ValueError``. What a *client* can get wrong (an empty key, too many txn ops,
``ignore_value`` with a value) is checked by ``kv.request_checks.check_*_request`` and
answered with etcd's own error, because etcd answers it too.

Enums are ``IntEnum`` with etcd's numeric values, so the wire value is the
Python value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

# Reported by StatusResponse.version: the etcd release whose behaviour we mirror.
ETCD_VERSION = "3.5.0"


class SortOrder(enum.IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(enum.IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareResult(enum.IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(enum.IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class EventType(enum.IntEnum):
    PUT = 0
    DELETE = 1


class WatchFilterType(enum.IntEnum):
    NOPUT = 0  # drop PUT events
    NODELETE = 1  # drop DELETE events


def _need_bytes(owner: str, **fields: object) -> None:
    for name, value in fields.items():
        if not isinstance(value, bytes):
            raise TypeError(f"{owner}.{name} must be bytes, not {type(value).__name__}")


# --------------------------------------------------------------------- common


@dataclass(frozen=True, slots=True)
class ResponseHeader:
    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0  # the store's revision when the response was made
    raft_term: int = 0


@dataclass(frozen=True, slots=True)
class KeyValue:
    # No __post_init__: the store builds these on every write, and builds them right.
    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0  # 1 on creation; reset by delete
    value: bytes = b""
    lease: int = 0  # 0 = no lease


# ---------------------------------------------------------------------- range


@dataclass(frozen=True, slots=True)
class RangeRequest:
    key: bytes = b""
    # b"" = just `key`; b"\0" = every key >= key; otherwise the half-open [key, range_end).
    range_end: bytes = b""
    limit: int = 0  # 0 = no limit
    revision: int = 0  # <= 0 = the current revision
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0

    def __post_init__(self) -> None:
        _need_bytes("RangeRequest", key=self.key, range_end=self.range_end)


@dataclass(frozen=True, slots=True)
class RangeResponse:
    header: ResponseHeader = ResponseHeader()
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False  # more keys matched than `limit` returned
    count: int = 0  # keys in the range at the revision, before limit (and before rev filters, as etcd)


# ------------------------------------------------------------------------ put


@dataclass(frozen=True, slots=True)
class PutRequest:
    key: bytes = b""
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False  # keep the current value (key must exist)
    ignore_lease: bool = False  # keep the current lease (key must exist)

    def __post_init__(self) -> None:
        _need_bytes("PutRequest", key=self.key, value=self.value)


@dataclass(frozen=True, slots=True)
class PutResponse:
    header: ResponseHeader = ResponseHeader()
    prev_kv: KeyValue | None = None


# --------------------------------------------------------------- delete range


@dataclass(frozen=True, slots=True)
class DeleteRangeRequest:
    key: bytes = b""
    range_end: bytes = b""  # same conventions as RangeRequest.range_end
    prev_kv: bool = False

    def __post_init__(self) -> None:
        _need_bytes("DeleteRangeRequest", key=self.key, range_end=self.range_end)


@dataclass(frozen=True, slots=True)
class DeleteRangeResponse:
    header: ResponseHeader = ResponseHeader()
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


# ------------------------------------------------------------------------ txn


@dataclass(frozen=True, slots=True)
class Compare:
    """One guard of a Txn: ``<target of key(s)> <result> <the field named by target>``.

    etcd's ``target_union`` one-of is spread over one field per target; only the
    field that ``target`` names is read. Comparing a range (``range_end`` set)
    holds only if it holds for every key in it.
    """

    result: CompareResult = CompareResult.EQUAL
    target: CompareTarget = CompareTarget.VERSION
    key: bytes = b""
    version: int = 0
    create_revision: int = 0
    mod_revision: int = 0
    value: bytes = b""
    lease: int = 0
    range_end: bytes = b""

    def __post_init__(self) -> None:
        _need_bytes("Compare", key=self.key, value=self.value, range_end=self.range_end)


@dataclass(frozen=True, slots=True)
class RequestOp:
    """etcd's one-of ``request``: set exactly one arm. All unset is legal on the wire;
    the request check answers it with ErrKeyNotFound, as etcd does."""

    request_range: RangeRequest | None = None
    request_put: PutRequest | None = None
    request_delete_range: DeleteRangeRequest | None = None
    request_txn: TxnRequest | None = None

    def __post_init__(self) -> None:
        arms = (self.request_range, self.request_put, self.request_delete_range, self.request_txn)
        if sum(a is not None for a in arms) > 1:
            raise ValueError("RequestOp is a one-of: set at most one of its requests")

    @property
    def request(self) -> RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest | None:
        return self.request_range or self.request_put or self.request_delete_range or self.request_txn


@dataclass(frozen=True, slots=True)
class ResponseOp:
    response_range: RangeResponse | None = None
    response_put: PutResponse | None = None
    response_delete_range: DeleteRangeResponse | None = None
    response_txn: TxnResponse | None = None

    @property
    def response(self) -> RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse | None:
        return self.response_range or self.response_put or self.response_delete_range or self.response_txn


@dataclass(frozen=True, slots=True)
class TxnRequest:
    compare: tuple[Compare, ...] = ()
    success: tuple[RequestOp, ...] = ()
    failure: tuple[RequestOp, ...] = ()

    def __post_init__(self) -> None:
        for name in ("compare", "success", "failure"):
            if not isinstance(getattr(self, name), tuple):
                raise TypeError(f"TxnRequest.{name} must be a tuple")


@dataclass(frozen=True, slots=True)
class TxnResponse:
    header: ResponseHeader = ResponseHeader()
    succeeded: bool = False
    responses: tuple[ResponseOp, ...] = ()


# ----------------------------------------------------------------- compaction


@dataclass(frozen=True, slots=True)
class CompactionRequest:
    revision: int = 0
    # etcd waits for the backend to drop the data before answering; here compaction
    # is immediate, so the flag is accepted and changes nothing.
    physical: bool = False


@dataclass(frozen=True, slots=True)
class CompactionResponse:
    header: ResponseHeader = ResponseHeader()


# ---------------------------------------------------------------------- watch


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    # For DELETE: only key and mod_revision (the delete's revision) are set, as etcd.
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchCreateRequest:
    key: bytes = b""  # b"" means b"\0", the smallest key (etcd)
    range_end: bytes = b""
    start_revision: int = 0  # 0 = the next revision (only future events)
    progress_notify: bool = False
    filters: tuple[WatchFilterType, ...] = ()
    prev_kv: bool = False
    watch_id: int = 0  # 0 = let the stream assign one
    fragment: bool = False

    def __post_init__(self) -> None:
        _need_bytes("WatchCreateRequest", key=self.key, range_end=self.range_end)


@dataclass(frozen=True, slots=True)
class WatchCancelRequest:
    watch_id: int = 0


@dataclass(frozen=True, slots=True)
class WatchProgressRequest:
    pass


@dataclass(frozen=True, slots=True)
class WatchResponse:
    header: ResponseHeader = ResponseHeader()
    watch_id: int = 0  # -1: not about one watcher (a stream-wide progress report, a failed create)
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0  # set when the watcher's start revision was compacted away
    cancel_reason: str = ""
    fragment: bool = False
    events: tuple[Event, ...] = ()


# ---------------------------------------------------------------------- lease


@dataclass(frozen=True, slots=True)
class LeaseGrantRequest:
    TTL: int = 0  # seconds; raised to the lessor's minimum TTL
    ID: int = 0  # 0 = the server picks one


@dataclass(frozen=True, slots=True)
class LeaseGrantResponse:
    header: ResponseHeader = ResponseHeader()
    ID: int = 0
    TTL: int = 0
    error: str = ""


@dataclass(frozen=True, slots=True)
class LeaseRevokeRequest:
    ID: int = 0


@dataclass(frozen=True, slots=True)
class LeaseExpireRequest:
    """The leader's expiry of a lease, carried out through the log (internal: no etcd
    message). It revokes only if the lease was not renewed after log index
    ``renewed_index``, the last renewal the leader had applied when it decided: a
    keep-alive already in the log ahead of it wins, so a keep-alive answered "ok" is
    never followed by the expiry it should have prevented."""

    ID: int = 0
    renewed_index: int = 0


@dataclass(frozen=True, slots=True)
class LeaseRevokeResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveRequest:
    ID: int = 0


@dataclass(frozen=True, slots=True)
class LeaseKeepAliveResponse:
    header: ResponseHeader = ResponseHeader()
    ID: int = 0
    TTL: int = 0  # 0 when the lease is unknown (etcd)


@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveRequest:
    ID: int = 0
    keys: bool = False


@dataclass(frozen=True, slots=True)
class LeaseTimeToLiveResponse:
    header: ResponseHeader = ResponseHeader()
    ID: int = 0
    TTL: int = 0  # remaining seconds; -1 when the lease does not exist (etcd)
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class LeaseLeasesRequest:
    pass


@dataclass(frozen=True, slots=True)
class LeaseStatus:
    ID: int = 0


@dataclass(frozen=True, slots=True)
class LeaseLeasesResponse:
    header: ResponseHeader = ResponseHeader()
    leases: tuple[LeaseStatus, ...] = ()


# ------------------------------------------------------------------- cluster


@dataclass(frozen=True, slots=True)
class Member:
    ID: int = 0
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class MemberAddRequest:
    peer_urls: tuple[str, ...] = ()
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class MemberAddResponse:
    header: ResponseHeader = ResponseHeader()
    member: Member | None = None
    members: tuple[Member, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberRemoveRequest:
    ID: int = 0


@dataclass(frozen=True, slots=True)
class MemberRemoveResponse:
    header: ResponseHeader = ResponseHeader()
    members: tuple[Member, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberUpdateRequest:
    ID: int = 0
    peer_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberUpdateResponse:
    header: ResponseHeader = ResponseHeader()
    members: tuple[Member, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberListRequest:
    linearizable: bool = False


@dataclass(frozen=True, slots=True)
class MemberListResponse:
    header: ResponseHeader = ResponseHeader()
    members: tuple[Member, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberPromoteRequest:
    ID: int = 0


@dataclass(frozen=True, slots=True)
class MemberPromoteResponse:
    header: ResponseHeader = ResponseHeader()
    members: tuple[Member, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberAttrSetRequest:
    """A member announcing its name and client URLs once it has started (etcd's
    internal ClusterMemberAttrSetRequest, the "publish" every member does on start):
    MemberAdd knows only peer URLs, so this is how the list learns the rest."""

    ID: int = 0
    name: str = ""
    client_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberAttrSetResponse:
    header: ResponseHeader = ResponseHeader()


# ------------------------------------------------------------- maintenance


@dataclass(frozen=True, slots=True)
class StatusRequest:
    pass


@dataclass(frozen=True, slots=True)
class StatusResponse:
    header: ResponseHeader = ResponseHeader()
    version: str = ETCD_VERSION
    db_size: int = 0
    leader: int = 0
    raft_index: int = 0
    raft_term: int = 0
    raft_applied_index: int = 0
    errors: tuple[str, ...] = ()
    db_size_in_use: int = 0
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class MoveLeaderRequest:
    target_id: int = 0  # rpc.proto's targetID


@dataclass(frozen=True, slots=True)
class MoveLeaderResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class DefragmentRequest:
    pass


@dataclass(frozen=True, slots=True)
class DefragmentResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class HashKVRequest:
    revision: int = 0  # 0 = the current revision


@dataclass(frozen=True, slots=True)
class HashKVResponse:
    header: ResponseHeader = ResponseHeader()
    hash: int = 0  # uint32
    compact_revision: int = 0
    hash_revision: int = 0  # the revision the hash covers (etcd >= 3.5.5)


# ----------------------------------------------------------------------- auth
# etcd's Auth service (rpc.proto) and its records (authpb). Names are etcd's; the
# odd ones are etcd's too: AuthUserGrantRoleRequest says ``user`` where the
# others say ``name``, AuthRoleGetRequest and friends say ``role``.


class PermissionType(enum.IntEnum):
    READ = 0
    WRITE = 1
    READWRITE = 2


@dataclass(frozen=True, slots=True)
class Permission:
    perm_type: PermissionType = PermissionType.READ  # authpb's permType
    key: bytes = b""
    range_end: bytes = b""  # same conventions as RangeRequest.range_end

    def __post_init__(self) -> None:
        _need_bytes("Permission", key=self.key, range_end=self.range_end)


@dataclass(frozen=True, slots=True)
class UserAddOptions:
    no_password: bool = False


@dataclass(frozen=True, slots=True)
class AuthEnableRequest:
    pass


@dataclass(frozen=True, slots=True)
class AuthEnableResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class AuthDisableRequest:
    pass


@dataclass(frozen=True, slots=True)
class AuthDisableResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class AuthStatusRequest:
    pass


@dataclass(frozen=True, slots=True)
class AuthStatusResponse:
    header: ResponseHeader = ResponseHeader()
    enabled: bool = False
    auth_revision: int = 0  # rpc.proto's authRevision


@dataclass(frozen=True, slots=True)
class AuthenticateRequest:
    name: str = ""
    password: str = ""


@dataclass(frozen=True, slots=True)
class AuthenticateResponse:
    header: ResponseHeader = ResponseHeader()
    token: str = ""


@dataclass(frozen=True, slots=True)
class InternalAuthenticateRequest:
    """An Authenticate through the log (etcd's InternalAuthenticateRequest): the member
    that received it checked the password at ``auth_revision`` and picked the token's
    random part, ``simple_token``; applying it hands every member the same token,
    ``<simple_token>.<log index>``. No password travels in the log."""

    name: str = ""
    simple_token: str = ""
    auth_revision: int = 0


@dataclass(frozen=True, slots=True)
class AuthUserAddRequest:
    name: str = ""
    password: str = ""  # never in the log: the member hashes it into hashed_password first
    options: UserAddOptions | None = None
    hashed_password: str = ""


@dataclass(frozen=True, slots=True)
class AuthUserAddResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class AuthUserGetRequest:
    name: str = ""


@dataclass(frozen=True, slots=True)
class AuthUserGetResponse:
    header: ResponseHeader = ResponseHeader()
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthUserDeleteRequest:
    name: str = ""


@dataclass(frozen=True, slots=True)
class AuthUserDeleteResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class AuthUserChangePasswordRequest:
    name: str = ""
    password: str = ""  # never in the log, as AuthUserAddRequest.password
    hashed_password: str = ""


@dataclass(frozen=True, slots=True)
class AuthUserChangePasswordResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class AuthUserGrantRoleRequest:
    user: str = ""
    role: str = ""


@dataclass(frozen=True, slots=True)
class AuthUserGrantRoleResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class AuthUserRevokeRoleRequest:
    name: str = ""
    role: str = ""


@dataclass(frozen=True, slots=True)
class AuthUserRevokeRoleResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class AuthRoleAddRequest:
    name: str = ""


@dataclass(frozen=True, slots=True)
class AuthRoleAddResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class AuthRoleGetRequest:
    role: str = ""


@dataclass(frozen=True, slots=True)
class AuthRoleGetResponse:
    header: ResponseHeader = ResponseHeader()
    perm: tuple[Permission, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthUserListRequest:
    pass


@dataclass(frozen=True, slots=True)
class AuthUserListResponse:
    header: ResponseHeader = ResponseHeader()
    users: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthRoleListRequest:
    pass


@dataclass(frozen=True, slots=True)
class AuthRoleListResponse:
    header: ResponseHeader = ResponseHeader()
    roles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthRoleDeleteRequest:
    role: str = ""


@dataclass(frozen=True, slots=True)
class AuthRoleDeleteResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class AuthRoleGrantPermissionRequest:
    name: str = ""
    perm: Permission | None = None


@dataclass(frozen=True, slots=True)
class AuthRoleGrantPermissionResponse:
    header: ResponseHeader = ResponseHeader()


@dataclass(frozen=True, slots=True)
class AuthRoleRevokePermissionRequest:
    role: str = ""
    key: bytes = b""
    range_end: bytes = b""

    def __post_init__(self) -> None:
        _need_bytes("AuthRoleRevokePermissionRequest", key=self.key, range_end=self.range_end)


@dataclass(frozen=True, slots=True)
class AuthRoleRevokePermissionResponse:
    header: ResponseHeader = ResponseHeader()


# ------------------------------------------------------------ log envelope


@dataclass(frozen=True, slots=True)
class Proposal:
    """What a Member puts in a log entry: a request plus who proposed it (for dedup
    and for routing the answer back). Lives here so ``kv.codec.encode_api`` knows it;
    it plays the part of etcd's ``InternalRaftRequest`` header."""

    incarnation: int
    seq: int
    request: Any = field(default=None)
    # Who asked, when auth is on (etcd's RequestHeader.username / auth_revision): the
    # user of the client's token and the auth store's revision when the member took
    # the request. Applying checks the user's permissions against the auth store as it
    # is at that point of the log, and refuses a request whose revision is older.
    username: str = ""
    auth_revision: int = 0


def fill_header(response: Any, base: ResponseHeader) -> Any:
    """``response`` with its top-level header set to ``base``, keeping the revision the
    store put there if it put one (etcd's ``header.fill`` does the same: only the
    outer header gets cluster_id, member_id and raft_term; nested txn ones do not)."""
    from dataclasses import replace

    old: ResponseHeader = response.header
    revision = old.revision if old.revision else base.revision
    return replace(response, header=replace(base, revision=revision))
