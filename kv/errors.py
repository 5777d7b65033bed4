"""One error family for the whole core.

Every error a client can see carries etcd's exact text and the gRPC status
code etcd returns with it (etcd's ``api/v3rpc/rpctypes``), so ``real_net`` can
map them to gRPC and HTTP in one place and clients that match on error strings
(many do) behave as they do against etcd.

``RaftKVError`` is never raised directly: raise the subclass that names what
went wrong. Errors that are the *caller's* fault (bad config, misuse of the
sans-IO API) are separate from errors a *peer or disk* caused (``CorruptRecord``),
as h11 separates local from remote protocol errors.
"""

from __future__ import annotations

import enum


class GrpcCode(enum.IntEnum):
    """gRPC status codes (google.golang.org/grpc/codes); kv must not import grpc."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RaftKVError(Exception):
    """Base of every raftkv error. Subclasses set ``message`` and ``grpc_code``."""

    message: str = "raftkv: error"
    grpc_code: GrpcCode = GrpcCode.UNKNOWN

    def __init__(self, detail: str | None = None) -> None:
        if type(self) is RaftKVError:
            raise TypeError("raise a subclass of RaftKVError, not the base")
        # ``detail`` replaces the default text only where etcd's text varies
        # (config errors, corrupt records); client-visible errors keep etcd's.
        self.detail = detail
        super().__init__(detail if detail is not None else self.message)

    def __str__(self) -> str:
        return self.detail if self.detail is not None else self.message

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash((type(self), str(self)))


# --- the caller misused the API or gave a bad configuration -----------------


class ConfigError(RaftKVError, ValueError):
    """A configuration field broke a rule; the text names the field and the rule."""

    grpc_code = GrpcCode.INVALID_ARGUMENT


class ProposalDropped(RaftKVError):
    """A proposal could not be accepted (no leader known, transfer in progress, ...)."""

    message = "raft proposal dropped"
    grpc_code = GrpcCode.UNAVAILABLE


# --- bytes from a peer or a disk were not what they must be -----------------


class CorruptRecord(RaftKVError):
    """Bytes on the wire or on disk failed to decode or failed their CRC."""

    message = "raftkv: corrupt record"
    grpc_code = GrpcCode.DATA_LOSS


# --- etcd's client-visible errors (text and code as etcd returns them) -------


def _etcd(name: str, text: str, code: GrpcCode) -> type[RaftKVError]:
    cls = type(name, (RaftKVError,), {"message": text, "grpc_code": code, "__doc__": text})
    cls.__module__ = __name__
    return cls


ErrEmptyKey = _etcd("ErrEmptyKey", "etcdserver: key is not provided", GrpcCode.INVALID_ARGUMENT)
ErrKeyNotFound = _etcd("ErrKeyNotFound", "etcdserver: key not found", GrpcCode.INVALID_ARGUMENT)
ErrValueProvided = _etcd("ErrValueProvided", "etcdserver: value is provided", GrpcCode.INVALID_ARGUMENT)
ErrLeaseProvided = _etcd("ErrLeaseProvided", "etcdserver: lease is provided", GrpcCode.INVALID_ARGUMENT)
ErrTooManyOps = _etcd(
    "ErrTooManyOps", "etcdserver: too many operations in txn request", GrpcCode.INVALID_ARGUMENT
)
ErrDuplicateKey = _etcd(
    "ErrDuplicateKey", "etcdserver: duplicate key given in txn request", GrpcCode.INVALID_ARGUMENT
)
ErrCompacted = _etcd(
    "ErrCompacted", "etcdserver: mvcc: required revision has been compacted", GrpcCode.OUT_OF_RANGE
)
ErrFutureRev = _etcd(
    "ErrFutureRev", "etcdserver: mvcc: required revision is a future revision", GrpcCode.OUT_OF_RANGE
)
ErrNoSpace = _etcd("ErrNoSpace", "etcdserver: mvcc: database space exceeded", GrpcCode.RESOURCE_EXHAUSTED)

ErrLeaseNotFound = _etcd("ErrLeaseNotFound", "etcdserver: requested lease not found", GrpcCode.NOT_FOUND)
ErrLeaseExist = _etcd("ErrLeaseExist", "etcdserver: lease already exists", GrpcCode.FAILED_PRECONDITION)
ErrLeaseTTLTooLarge = _etcd("ErrLeaseTTLTooLarge", "etcdserver: too large lease TTL", GrpcCode.OUT_OF_RANGE)

ErrMemberExist = _etcd("ErrMemberExist", "etcdserver: member ID already exist", GrpcCode.FAILED_PRECONDITION)
ErrPeerURLExist = _etcd("ErrPeerURLExist", "etcdserver: Peer URLs already exists", GrpcCode.FAILED_PRECONDITION)
ErrMemberNotEnoughStarted = _etcd(
    "ErrMemberNotEnoughStarted",
    "etcdserver: re-configuration failed due to not enough started members",
    GrpcCode.FAILED_PRECONDITION,
)
# Raft refused a committed conf change (e.g. it would leave no voter). etcd validates
# first and so rarely gets here; the text starts like etcd's reconfiguration errors.
ErrConfChangeRejected = _etcd(
    "ErrConfChangeRejected", "etcdserver: re-configuration failed", GrpcCode.FAILED_PRECONDITION
)
ErrMemberBadURLs = _etcd("ErrMemberBadURLs", "etcdserver: given member URLs are invalid", GrpcCode.INVALID_ARGUMENT)
ErrMemberNotFound = _etcd("ErrMemberNotFound", "etcdserver: member not found", GrpcCode.NOT_FOUND)
ErrMemberNotLearner = _etcd(
    "ErrMemberNotLearner", "etcdserver: can only promote a learner member", GrpcCode.FAILED_PRECONDITION
)
ErrLearnerNotReady = _etcd(
    "ErrLearnerNotReady",
    "etcdserver: can only promote a learner member which is in sync with leader",
    GrpcCode.FAILED_PRECONDITION,
)
ErrTooManyLearners = _etcd(
    "ErrTooManyLearners", "etcdserver: too many learner members in cluster", GrpcCode.FAILED_PRECONDITION
)

ErrRequestTooLarge = _etcd("ErrRequestTooLarge", "etcdserver: request is too large", GrpcCode.INVALID_ARGUMENT)
ErrTooManyRequests = _etcd("ErrTooManyRequests", "etcdserver: too many requests", GrpcCode.RESOURCE_EXHAUSTED)

ErrNoLeader = _etcd("ErrNoLeader", "etcdserver: no leader", GrpcCode.UNAVAILABLE)
ErrNotLeader = _etcd("ErrNotLeader", "etcdserver: not leader", GrpcCode.FAILED_PRECONDITION)
ErrLeaderChanged = _etcd("ErrLeaderChanged", "etcdserver: leader changed", GrpcCode.UNAVAILABLE)
ErrStopped = _etcd("ErrStopped", "etcdserver: server stopped", GrpcCode.UNAVAILABLE)
ErrTimeout = _etcd("ErrTimeout", "etcdserver: request timed out", GrpcCode.UNAVAILABLE)
ErrTimeoutDueToLeaderFail = _etcd(
    "ErrTimeoutDueToLeaderFail",
    "etcdserver: request timed out, possibly due to previous leader failure",
    GrpcCode.UNAVAILABLE,
)
ErrUnhealthy = _etcd("ErrUnhealthy", "etcdserver: unhealthy cluster", GrpcCode.UNAVAILABLE)
ErrCorrupt = _etcd("ErrCorrupt", "etcdserver: corrupt cluster", GrpcCode.DATA_LOSS)
ErrNotSupportedForLearner = _etcd(
    "ErrNotSupportedForLearner", "etcdserver: rpc not supported for learner", GrpcCode.UNAVAILABLE
)
ErrTimeoutLeaderTransfer = _etcd(
    "ErrTimeoutLeaderTransfer", "etcdserver: request timed out, leader transfer took too long", GrpcCode.UNAVAILABLE
)
ErrBadLeaderTransferee = _etcd(
    "ErrBadLeaderTransferee", "etcdserver: bad leader transferee", GrpcCode.FAILED_PRECONDITION
)

# Authentication and authorization (etcd's auth store, rpctypes' ErrGRPCRootUserNotExist ...).
ErrRootUserNotExist = _etcd(
    "ErrRootUserNotExist", "etcdserver: root user does not exist", GrpcCode.FAILED_PRECONDITION
)
ErrRootRoleNotExist = _etcd(
    "ErrRootRoleNotExist", "etcdserver: root user does not have root role", GrpcCode.FAILED_PRECONDITION
)
ErrUserAlreadyExist = _etcd(
    "ErrUserAlreadyExist", "etcdserver: user name already exists", GrpcCode.FAILED_PRECONDITION
)
ErrUserEmpty = _etcd("ErrUserEmpty", "etcdserver: user name is empty", GrpcCode.INVALID_ARGUMENT)
ErrUserNotFound = _etcd("ErrUserNotFound", "etcdserver: user name not found", GrpcCode.FAILED_PRECONDITION)
ErrRoleAlreadyExist = _etcd(
    "ErrRoleAlreadyExist", "etcdserver: role name already exists", GrpcCode.FAILED_PRECONDITION
)
ErrRoleNotFound = _etcd("ErrRoleNotFound", "etcdserver: role name not found", GrpcCode.FAILED_PRECONDITION)
ErrRoleEmpty = _etcd("ErrRoleEmpty", "etcdserver: role name is empty", GrpcCode.INVALID_ARGUMENT)
ErrAuthFailed = _etcd(
    "ErrAuthFailed", "etcdserver: authentication failed, invalid user ID or password", GrpcCode.INVALID_ARGUMENT
)
ErrPermissionDenied = _etcd("ErrPermissionDenied", "etcdserver: permission denied", GrpcCode.PERMISSION_DENIED)
ErrRoleNotGranted = _etcd(
    "ErrRoleNotGranted", "etcdserver: role is not granted to the user", GrpcCode.FAILED_PRECONDITION
)
ErrPermissionNotGranted = _etcd(
    "ErrPermissionNotGranted", "etcdserver: permission is not granted to the role", GrpcCode.FAILED_PRECONDITION
)
ErrAuthNotEnabled = _etcd(
    "ErrAuthNotEnabled", "etcdserver: authentication is not enabled", GrpcCode.FAILED_PRECONDITION
)
ErrInvalidAuthToken = _etcd("ErrInvalidAuthToken", "etcdserver: invalid auth token", GrpcCode.UNAUTHENTICATED)
ErrInvalidAuthMgmt = _etcd("ErrInvalidAuthMgmt", "etcdserver: invalid auth management", GrpcCode.INVALID_ARGUMENT)
ErrAuthOldRevision = _etcd(
    "ErrAuthOldRevision", "etcdserver: revision of auth store is old", GrpcCode.INVALID_ARGUMENT
)
