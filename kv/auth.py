"""etcd's auth store (etcd 3.4 auth/store.go, auth/range_perm_cache.go): users, roles, permissions.

What is replicated
    Users (a password hash, sorted roles, the no-password option), roles (key
    permissions sorted by key), the enabled flag and the auth *revision*, bumped
    by every change that takes effect (enable does not bump it, disable does, as
    in etcd). Every member applies the same auth requests from the log, so every
    member's store is the same; ``snapshot()``/``restore()`` carry it in the
    member snapshot.

The rules etcd enforces, each where etcd enforces it
    * auth enable needs user ``root`` holding role ``root``; while auth is on,
      user ``root`` cannot be deleted, lose role ``root``, nor role ``root`` be
      deleted (ErrInvalidAuthMgmt);
    * role ``root`` may be granted before it exists, and a user holding it may
      do anything (``is_admin_permitted`` and every range check);
    * a permission covers the key alone (empty range_end), the half-open range
      [key, range_end), or every key from key on (range_end ``b"\\0"``); a
      request is allowed only if the union of the user's permissions of that
      kind covers its whole range (etcd's interval tree ``Contains``), READWRITE
      counting as both.

Passwords
    Hashed with PBKDF2-HMAC-SHA256 from the standard library (``hash_password``)
    *before* a request is proposed, by the member that received it, with a salt
    from that member's own ``random.Random``: the log and every snapshot hold
    the same hash bytes on every member, never the password. Why PBKDF2 and not
    scrypt: both are in hashlib, but scrypt needs an OpenSSL built with it and
    is memory-hard by design (tens of MiB per hash), which a member loop that
    also serves Raft should not pay on every Authenticate; PBKDF2's cost is one
    knob (iterations), recorded in the hash so it can be raised later. etcd
    uses bcrypt, which the standard library does not have.

Tokens are kv/simple_token.py.

Nothing here reads a clock or the global random module.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import random
from dataclasses import dataclass, field

import msgpack

from kv import api
from kv.errors import (
    CorruptRecord,
    ErrAuthFailed,
    ErrAuthNotEnabled,
    ErrAuthOldRevision,
    ErrInvalidAuthMgmt,
    ErrPermissionDenied,
    ErrPermissionNotGranted,
    ErrRoleAlreadyExist,
    ErrRoleEmpty,
    ErrRoleNotFound,
    ErrRoleNotGranted,
    ErrRootRoleNotExist,
    ErrRootUserNotExist,
    ErrUserAlreadyExist,
    ErrUserEmpty,
    ErrUserNotFound,
)

ROOT_USER = "root"
ROOT_ROLE = "root"
PBKDF2_ITERATIONS = 100_000  # ~35 ms per hash in CPython; etcd's bcrypt cost 10 is ~60 ms
PASSWORD_SALT_BYTES = 16
SNAPSHOT_FORMAT = 1
# etcd's auth store starts at revision 1 (NewAuthStore commits a revision when it finds 0).
INITIAL_REVISION = 1

_HASH_SCHEME = "pbkdf2-sha256"


# ------------------------------------------------------------------ passwords


def hash_password(password: str, rng: random.Random, iterations: int = PBKDF2_ITERATIONS) -> str:
    """``pbkdf2-sha256$<iterations>$<salt hex>$<digest hex>``; the salt comes from `rng`."""
    salt = rng.getrandbits(8 * PASSWORD_SALT_BYTES).to_bytes(PASSWORD_SALT_BYTES, "big")
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{_HASH_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def password_matches(password: str, hashed: str) -> bool:
    try:
        scheme, iterations, salt, digest = hashed.split("$")
        if scheme != _HASH_SCHEME:
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(got, bytes.fromhex(digest))


# ----------------------------------------------------------------- key ranges

_INF = None  # an interval end of None: no end (every key from begin on)
Interval = tuple[bytes, "bytes | None"]


def _interval(key: bytes, range_end: bytes) -> Interval:
    """etcd's range conventions as a half-open interval: a key alone is [key, key\\0)."""
    if not range_end:
        return (key, key + b"\x00")
    if range_end == b"\x00":
        return (key, _INF)
    return (key, range_end)


def covers(intervals: list[Interval], key: bytes, range_end: bytes) -> bool:
    """Does the union of `intervals` cover etcd's range (key, range_end)? An empty or
    inverted range is covered by nothing (etcd's interval tree finds no interval in it)."""
    begin, end = _interval(key, range_end)
    if end is not None and end <= begin:
        return False
    reach = begin  # everything in [begin, reach) is covered
    for b, e in sorted(intervals, key=lambda iv: iv[0]):
        if e is not None and e <= reach:
            continue
        if b > reach:
            return False  # a gap at `reach`
        if e is None:
            return True
        reach = e
        if end is not None and reach >= end:
            return True
    return False


# --------------------------------------------------------------------- records


@dataclass(slots=True)
class User:
    name: str
    password: str  # hash_password's string; "" for a no-password user
    roles: list[str] = field(default_factory=list)  # sorted, as etcd keeps them
    no_password: bool = False


@dataclass(slots=True)
class Role:
    name: str
    perms: list[api.Permission] = field(default_factory=list)  # sorted by key, as etcd keeps them


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """Who a request runs as: a user and the auth revision it was checked at (etcd's
    auth.AuthInfo). Revision 0 means no user (no token was given)."""

    username: str = ""
    revision: int = 0


NO_USER = AuthInfo()


class AuthStore:
    def __init__(self) -> None:
        self.enabled = False
        self.revision = INITIAL_REVISION
        self.users: dict[str, User] = {}
        self.roles: dict[str, Role] = {}

    def _commit(self) -> None:
        self.revision += 1

    # ------------------------------------------------------- enable/disable

    def auth_enable(self) -> api.AuthEnableResponse:
        if self.enabled:
            return api.AuthEnableResponse()  # etcd ignores a second enable
        root = self.users.get(ROOT_USER)
        if root is None:
            raise ErrRootUserNotExist()
        if ROOT_ROLE not in root.roles:
            raise ErrRootRoleNotExist()
        self.enabled = True  # no revision bump: etcd's AuthEnable does not commit one
        return api.AuthEnableResponse()

    def auth_disable(self) -> api.AuthDisableResponse:
        if self.enabled:
            self.enabled = False
            self._commit()
        return api.AuthDisableResponse()

    def status(self) -> api.AuthStatusResponse:
        return api.AuthStatusResponse(enabled=self.enabled, auth_revision=self.revision)

    # ---------------------------------------------------------------- users

    def user_add(self, req: api.AuthUserAddRequest) -> api.AuthUserAddResponse:
        if not req.name:
            raise ErrUserEmpty()
        if req.name in self.users:
            raise ErrUserAlreadyExist()
        no_password = req.options is not None and req.options.no_password
        self.users[req.name] = User(req.name, "" if no_password else req.hashed_password, [], no_password)
        self._commit()
        return api.AuthUserAddResponse()

    def user_delete(self, req: api.AuthUserDeleteRequest) -> api.AuthUserDeleteResponse:
        if self.enabled and req.name == ROOT_USER:
            raise ErrInvalidAuthMgmt()
        if self.users.pop(req.name, None) is None:
            raise ErrUserNotFound()
        self._commit()
        return api.AuthUserDeleteResponse()

    def user_change_password(self, req: api.AuthUserChangePasswordRequest) -> api.AuthUserChangePasswordResponse:
        user = self.users.get(req.name)
        if user is None:
            raise ErrUserNotFound()
        user.password = req.hashed_password
        self._commit()
        return api.AuthUserChangePasswordResponse()

    def user_grant_role(self, req: api.AuthUserGrantRoleRequest) -> api.AuthUserGrantRoleResponse:
        user = self.users.get(req.user)
        if user is None:
            raise ErrUserNotFound()
        if req.role != ROOT_ROLE and req.role not in self.roles:
            raise ErrRoleNotFound()
        if req.role in user.roles:
            return api.AuthUserGrantRoleResponse()  # already granted: nothing changes, no revision
        bisect.insort(user.roles, req.role)
        self._commit()
        return api.AuthUserGrantRoleResponse()

    def user_revoke_role(self, req: api.AuthUserRevokeRoleRequest) -> api.AuthUserRevokeRoleResponse:
        if self.enabled and req.name == ROOT_USER and req.role == ROOT_ROLE:
            raise ErrInvalidAuthMgmt()
        user = self.users.get(req.name)
        if user is None:
            raise ErrUserNotFound()
        if req.role not in user.roles:
            raise ErrRoleNotGranted()
        user.roles.remove(req.role)
        self._commit()
        return api.AuthUserRevokeRoleResponse()

    def user_get(self, req: api.AuthUserGetRequest) -> api.AuthUserGetResponse:
        user = self.users.get(req.name)
        if user is None:
            raise ErrUserNotFound()
        return api.AuthUserGetResponse(roles=tuple(user.roles))

    def user_list(self) -> api.AuthUserListResponse:
        return api.AuthUserListResponse(users=tuple(sorted(self.users)))

    # ---------------------------------------------------------------- roles

    def role_add(self, req: api.AuthRoleAddRequest) -> api.AuthRoleAddResponse:
        if not req.name:
            raise ErrRoleEmpty()
        if req.name in self.roles:
            raise ErrRoleAlreadyExist()
        self.roles[req.name] = Role(req.name)
        self._commit()
        return api.AuthRoleAddResponse()

    def role_delete(self, req: api.AuthRoleDeleteRequest) -> api.AuthRoleDeleteResponse:
        if self.enabled and req.role == ROOT_ROLE:
            raise ErrInvalidAuthMgmt()
        if self.roles.pop(req.role, None) is None:
            raise ErrRoleNotFound()
        for user in self.users.values():  # etcd takes the role from every user holding it
            if req.role in user.roles:
                user.roles.remove(req.role)
        self._commit()
        return api.AuthRoleDeleteResponse()

    def role_get(self, req: api.AuthRoleGetRequest) -> api.AuthRoleGetResponse:
        role = self.roles.get(req.role)
        if role is None:
            raise ErrRoleNotFound()
        return api.AuthRoleGetResponse(perm=tuple(role.perms))

    def role_list(self) -> api.AuthRoleListResponse:
        return api.AuthRoleListResponse(roles=tuple(sorted(self.roles)))

    def role_grant_permission(self, req: api.AuthRoleGrantPermissionRequest) -> api.AuthRoleGrantPermissionResponse:
        role = self.roles.get(req.name)
        if role is None:
            raise ErrRoleNotFound()
        perm = req.perm if req.perm is not None else api.Permission()
        for i, p in enumerate(role.perms):
            if p.key == perm.key and p.range_end == perm.range_end:
                role.perms[i] = perm  # the same range again: its type is updated
                break
        else:
            # Inserted after any permission with the same key (etcd appends, then sort.Sort).
            keys = [p.key for p in role.perms]
            role.perms.insert(bisect.bisect_right(keys, perm.key), perm)
        self._commit()
        return api.AuthRoleGrantPermissionResponse()

    def role_revoke_permission(
        self, req: api.AuthRoleRevokePermissionRequest
    ) -> api.AuthRoleRevokePermissionResponse:
        role = self.roles.get(req.role)
        if role is None:
            raise ErrRoleNotFound()
        kept = [p for p in role.perms if not (p.key == req.key and p.range_end == req.range_end)]
        if len(kept) == len(role.perms):
            raise ErrPermissionNotGranted()
        role.perms = kept
        self._commit()
        return api.AuthRoleRevokePermissionResponse()

    def has_role(self, username: str, role: str) -> bool:
        user = self.users.get(username)
        return user is not None and role in user.roles

    # --------------------------------------------------------- authentication

    def check_password(self, name: str, password: str) -> int:
        """The auth revision at which `password` is right for user `name` (etcd's
        CheckPassword); ErrAuthFailed otherwise, also for a no-password user."""
        if not self.enabled:
            raise ErrAuthNotEnabled()
        user = self.users.get(name)
        if user is None or user.no_password or not password_matches(password, user.password):
            raise ErrAuthFailed()
        return self.revision

    def authenticate(self, name: str) -> None:
        """The apply-time half of Authenticate: the user must still exist and have a password."""
        if not self.enabled:
            raise ErrAuthNotEnabled()
        user = self.users.get(name)
        if user is None or user.no_password:
            raise ErrAuthFailed()

    # ---------------------------------------------------------- authorization

    def _merged(self, user: User, write: bool) -> list[Interval]:
        out: list[Interval] = []
        want = api.PermissionType.WRITE if write else api.PermissionType.READ
        for name in user.roles:
            role = self.roles.get(name)
            if role is None:
                continue
            for p in role.perms:
                if p.perm_type in (want, api.PermissionType.READWRITE):
                    out.append(_interval(p.key, p.range_end))
        return out

    def _is_op_permitted(self, info: AuthInfo, key: bytes, range_end: bytes, write: bool) -> None:
        """etcd's isOpPermitted: raises ErrUserEmpty, ErrAuthOldRevision or ErrPermissionDenied."""
        if not self.enabled:
            return
        if info.revision == 0:
            raise ErrUserEmpty()
        if info.revision < self.revision:
            raise ErrAuthOldRevision()
        user = self.users.get(info.username)
        if user is None:
            raise ErrPermissionDenied()
        if ROOT_ROLE in user.roles:
            return
        if not covers(self._merged(user, write), key, range_end):
            raise ErrPermissionDenied()

    def is_range_permitted(self, info: AuthInfo, key: bytes, range_end: bytes) -> None:
        self._is_op_permitted(info, key, range_end, write=False)

    def is_put_permitted(self, info: AuthInfo, key: bytes) -> None:
        self._is_op_permitted(info, key, b"", write=True)

    def is_delete_range_permitted(self, info: AuthInfo, key: bytes, range_end: bytes) -> None:
        self._is_op_permitted(info, key, range_end, write=True)

    def is_admin_permitted(self, info: AuthInfo) -> None:
        """etcd's IsAdminPermitted: the user must hold role root (checked only when auth is on)."""
        if not self.enabled:
            return
        if not info.username:
            raise ErrUserEmpty()
        user = self.users.get(info.username)
        if user is None:
            raise ErrUserNotFound()
        if ROOT_ROLE not in user.roles:
            raise ErrPermissionDenied()

    # --------------------------------------------------------------- snapshot

    def snapshot(self) -> bytes:
        users = [[u.name, u.password, list(u.roles), u.no_password] for _, u in sorted(self.users.items())]
        roles = [
            [r.name, [[int(p.perm_type), p.key, p.range_end] for p in r.perms]]
            for _, r in sorted(self.roles.items())
        ]
        packed: bytes = msgpack.packb([SNAPSHOT_FORMAT, self.enabled, self.revision, users, roles], use_bin_type=True)
        return packed

    def restore(self, data: bytes) -> None:
        try:
            fmt, enabled, revision, users, roles = msgpack.unpackb(data, raw=False)
            if fmt != SNAPSHOT_FORMAT:
                raise CorruptRecord(f"unsupported auth snapshot format {fmt!r}")
            new_users = {
                str(n): User(str(n), str(pw), [str(r) for r in rs], bool(nopw)) for n, pw, rs, nopw in users
            }
            new_roles = {
                str(n): Role(str(n), [api.Permission(api.PermissionType(t), bytes(k), bytes(e)) for t, k, e in ps])
                for n, ps in roles
            }
        except CorruptRecord:
            raise
        except Exception as e:  # msgpack and the unpacking raise many types on garbage
            raise CorruptRecord(f"malformed auth snapshot: {type(e).__name__}: {e}") from None
        self.enabled = bool(enabled)
        self.revision = int(revision)
        self.users = new_users
        self.roles = new_roles


__all__ = [
    "AuthInfo",
    "AuthStore",
    "NO_USER",
    "ROOT_ROLE",
    "ROOT_USER",
    "covers",
    "hash_password",
    "password_matches",
]
