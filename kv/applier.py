"""The replicated state machine: what applying one committed log entry does.

Everything a member replicates lives here: the MVCC store, the lessor, the
membership table, the auth store (kv/auth.py) and the table of proposals
already applied. When auth is on, each proposal is first checked against the
auth store as the log has it at that entry (kv/authorize.py, etcd's
authApplierV3). Simple tokens live here too, though they are not replicated
state: Authenticate is applied on every member, which hands each the same
token, and a snapshot does not carry them (etcd keeps them in memory only).
Applying is a function of the log alone, so every member that applies the same entries
reaches the same state (the simulator checks that with HashKV). The one input
that is not from the log is ``now``: it sets lease *deadlines*, which etcd does
not replicate either (each member's lessor counts on its own clock; only the
leader's deadlines ever revoke anything).

The Member (kv/member.py) decides *when* things are applied and who gets the
answers; this module only decides *what* applying means. It is etcd's
``applierV3`` (etcdserver/apply.go) and the membership part of
``applyConfChange`` (etcdserver/server.go).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import msgpack

from kv import api
from kv.auth import NO_USER, AuthInfo, AuthStore
from kv.authorize import ADMIN_LOCAL_REQUESTS, AUTH_WRITE_REQUESTS, check_apply, check_read
from kv.errors import (
    CorruptRecord,
    ErrAuthOldRevision,
    ErrConfChangeRejected,
    ErrInvalidAuthToken,
    ErrMemberExist,
    ErrMemberNotFound,
    ErrMemberNotLearner,
    ErrPeerURLExist,
    ErrTooManyLearners,
    RaftKVError,
)
from kv.lease import Lessor
from kv.mvcc import MVCCStore
from kv.request_checks import check_request, is_read_only_txn
from kv.simple_token import SimpleTokens

Outcome = Any  # a kv.api response dataclass, or the RaftKVError it failed with

SNAPSHOT_FORMAT = 2  # 2: the auth store; 1 (no auth store) is still read
# How many applied proposals the duplicate filter remembers, counted in log
# entries. A proposal is duplicated when the network delivers a forwarded
# MsgProp twice; both copies land within a few entries of each other.
DEDUP_WINDOW = 10_000
# etcd 3.4 allows one learner at a time (membership.maxLearners).
MAX_LEARNERS = 1

WRITE_REQUESTS = (
    api.PutRequest,
    api.DeleteRangeRequest,
    api.TxnRequest,
    api.CompactionRequest,
    api.LeaseGrantRequest,
    api.LeaseRevokeRequest,
    api.LeaseKeepAliveRequest,
    api.LeaseExpireRequest,
    api.MemberAttrSetRequest,
    *AUTH_WRITE_REQUESTS,
)
MEMBER_REQUESTS = (
    api.MemberAddRequest,
    api.MemberRemoveRequest,
    api.MemberUpdateRequest,
    api.MemberPromoteRequest,
)


def is_read(req: object) -> bool:
    """A request answered from the store without going through the log."""
    return isinstance(req, api.RangeRequest) or (isinstance(req, api.TxnRequest) and is_read_only_txn(req))


def new_member_id(peer_urls: tuple[str, ...], salt: bytes) -> int:
    """A member ID as etcd makes one: a hash of the peer URLs and something unique
    to this add (etcd uses the wall clock; a member uses its proposal id), as a
    non-zero uint64."""
    h = hashlib.sha1()
    for url in sorted(peer_urls):
        h.update(url.encode())
    h.update(salt)
    return int.from_bytes(h.digest()[:8], "big") or 1


class StateMachine:
    def __init__(self, min_lease_ttl: int, members: Mapping[int, api.Member]) -> None:
        self.lessor = Lessor(min_ttl=min_lease_ttl)
        self.store = MVCCStore(leases=self.lessor)
        # The membership table (etcd's RaftCluster): ID -> member, plus IDs once
        # removed, which may never come back (etcd: "membership: ID removed").
        self.members: dict[int, api.Member] = {i: replace(m, ID=i) for i, m in sorted(members.items())}
        self.removed: set[int] = set()
        self.auth = AuthStore()
        self.tokens = SimpleTokens()
        self._seen: OrderedDict[tuple[int, int], int] = OrderedDict()  # (incarnation, seq) -> log index

    @property
    def revision(self) -> int:
        return self.store.revision

    # ------------------------------------------------------------- reads

    def read(self, req: Any, now: float) -> Outcome:
        """A Range, a read-only Txn, a member list or a lease query against the current state."""
        if isinstance(req, (api.MemberListRequest, api.LeaseTimeToLiveRequest, api.LeaseLeasesRequest)):
            return self.query(req, now)
        try:
            resp, _ = self.store.apply(req)
        except RaftKVError as e:
            return e
        return resp

    def query(self, req: object, now: float) -> Outcome:
        """Requests answered from local state with no log round (etcd answers these
        locally too, except that it forwards lease queries to the leader)."""
        try:
            if isinstance(req, api.LeaseTimeToLiveRequest):
                return self.lessor.time_to_live(req, now)
            if isinstance(req, api.LeaseLeasesRequest):
                return self.lessor.leases()
            if isinstance(req, api.MemberListRequest):
                return api.MemberListResponse(members=self.member_list())
            if isinstance(req, api.HashKVRequest):
                return self.store.hash_kv(req.revision)
        except RaftKVError as e:
            return e
        raise TypeError(f"not a local query: {type(req).__name__}")

    def member_list(self) -> tuple[api.Member, ...]:
        return tuple(self.members[i] for i in sorted(self.members))

    # ------------------------------------------------------------ checks

    @staticmethod
    def check_write(req: object) -> None:
        """etcd's API-layer checks, before anything is proposed."""
        if not isinstance(req, WRITE_REQUESTS):
            raise TypeError(f"not a write request: {type(req).__name__}")
        check_request(req)

    def check_member_change(self, req: object) -> None:
        """What etcd checks against its membership table before proposing a change
        (membership.ValidateConfigurationChange); checks that need the leader's view
        of the followers' progress are the Member's."""
        if isinstance(req, api.MemberAddRequest):
            urls = {u for m in self.members.values() for u in m.peer_urls}
            if urls & set(req.peer_urls):
                raise ErrPeerURLExist()
            if req.is_learner and sum(m.is_learner for m in self.members.values()) >= MAX_LEARNERS:
                raise ErrTooManyLearners()
        elif isinstance(req, (api.MemberRemoveRequest, api.MemberUpdateRequest)):
            if req.ID not in self.members:
                raise ErrMemberNotFound()
            if isinstance(req, api.MemberUpdateRequest):
                urls = {u for i, m in self.members.items() if i != req.ID for u in m.peer_urls}
                if urls & set(req.peer_urls):
                    raise ErrPeerURLExist()
        elif isinstance(req, api.MemberPromoteRequest):
            m = self.members.get(req.ID)
            if m is None:
                raise ErrMemberNotFound()
            if not m.is_learner:
                raise ErrMemberNotLearner()
        else:
            raise TypeError(f"not a membership request: {type(req).__name__}")

    # ---------------------------------------------------------- applying

    def is_duplicate(self, prop: api.Proposal) -> bool:
        return (prop.incarnation, prop.seq) in self._seen

    def _remember(self, prop: api.Proposal, index: int) -> None:
        self._seen[(prop.incarnation, prop.seq)] = index
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest > index - DEDUP_WINDOW:
                break
            self._seen.popitem(last=False)

    def apply(self, prop: api.Proposal, index: int, now: float) -> tuple[Outcome, list[api.Event]]:
        """Apply one proposal from the log: (its response or error, the store's events)."""
        self._remember(prop, index)
        req = prop.request
        try:
            if self.auth.enabled:
                check_apply(self.auth, self.lessor, AuthInfo(prop.username, prop.auth_revision), req)
            if isinstance(req, AUTH_WRITE_REQUESTS):
                return self._apply_auth(req), []
            if isinstance(req, api.InternalAuthenticateRequest):
                return self._authenticate(req, index, now), []
            if isinstance(req, api.LeaseGrantRequest):
                # An ID of 0 is derived from the entry's index: the same on every member.
                return self.lessor.grant(req, now, index), []
            if isinstance(req, api.LeaseRevokeRequest):
                keys = self.lessor.revoke(req.ID)
                # All of the lease's keys go in one revision (etcd's lessor.Revoke).
                _, events = self.store.delete_keys(keys)
                return api.LeaseRevokeResponse(), events
            if isinstance(req, api.LeaseExpireRequest):
                lease = self.lessor.lookup(req.ID)
                if lease is None or lease.renewed_index > req.renewed_index:
                    return api.LeaseRevokeResponse(), []  # gone already, or renewed since: keep it
                _, events = self.store.delete_keys(self.lessor.revoke(req.ID))
                return api.LeaseRevokeResponse(), events
            if isinstance(req, api.LeaseKeepAliveRequest):
                return api.LeaseKeepAliveResponse(ID=req.ID, TTL=self.lessor.renew_at(req.ID, now, index)), []
            if isinstance(req, api.MemberAttrSetRequest):
                old = self.members.get(req.ID)
                if old is None:
                    return ErrMemberNotFound(), []  # removed meanwhile
                self.members[req.ID] = replace(old, name=req.name, client_urls=tuple(req.client_urls))
                return api.MemberAttrSetResponse(), []
            resp, events = self.store.apply(req)
            return resp, events
        except RaftKVError as e:
            return e, []

    def _apply_auth(self, req: Any) -> Outcome:
        auth = self.auth
        if isinstance(req, api.AuthEnableRequest):
            return auth.auth_enable()
        if isinstance(req, api.AuthDisableRequest):
            self.tokens.clear()  # etcd's simple token provider forgets every token
            return auth.auth_disable()
        if isinstance(req, api.AuthUserAddRequest):
            return auth.user_add(req)
        if isinstance(req, api.AuthUserDeleteRequest):
            resp = auth.user_delete(req)
            self.tokens.invalidate_user(req.name)
            return resp
        if isinstance(req, api.AuthUserChangePasswordRequest):
            changed = auth.user_change_password(req)
            self.tokens.invalidate_user(req.name)
            return changed
        if isinstance(req, api.AuthUserGrantRoleRequest):
            return auth.user_grant_role(req)
        if isinstance(req, api.AuthUserRevokeRoleRequest):
            return auth.user_revoke_role(req)
        if isinstance(req, api.AuthUserGetRequest):
            return auth.user_get(req)
        if isinstance(req, api.AuthUserListRequest):
            return auth.user_list()
        if isinstance(req, api.AuthRoleAddRequest):
            return auth.role_add(req)
        if isinstance(req, api.AuthRoleGetRequest):
            return auth.role_get(req)
        if isinstance(req, api.AuthRoleListRequest):
            return auth.role_list()
        if isinstance(req, api.AuthRoleDeleteRequest):
            return auth.role_delete(req)
        if isinstance(req, api.AuthRoleGrantPermissionRequest):
            return auth.role_grant_permission(req)
        if isinstance(req, api.AuthRoleRevokePermissionRequest):
            return auth.role_revoke_permission(req)
        raise TypeError(f"not an auth request: {type(req).__name__}")

    def _authenticate(self, req: api.InternalAuthenticateRequest, index: int, now: float) -> Outcome:
        """The apply half of etcd's Authenticate. The password was checked by the member
        that took the request at ``req.auth_revision``; if the store changed since (the
        password may have), ErrAuthOldRevision makes that member check again."""
        self.auth.authenticate(req.name)
        if req.auth_revision != self.auth.revision:
            raise ErrAuthOldRevision()
        token = f"{req.simple_token}.{index}"
        self.tokens.assign(token, req.name, self.auth.revision, now)
        return api.AuthenticateResponse(token=token)

    def check_served(self, info: AuthInfo, req: Any) -> None:
        """With auth on, what the member serving a request checks itself: reads and the
        admin requests answered locally (everything else is checked when it applies)."""
        if self.auth.enabled and (is_read(req) or isinstance(req, ADMIN_LOCAL_REQUESTS)):
            check_read(self.auth, info, req)

    def watch_refusal(self, req: Any, token: str, now: float) -> RaftKVError | None:
        """With auth on, why a watch create may not be served to the client holding `token`
        (etcd then answers created-and-canceled: ``authorize.denied_watch``), else None."""
        if not (self.auth.enabled and isinstance(req, api.WatchCreateRequest)):
            return None
        try:
            check_read(self.auth, self.auth_info(token, now), req)
        except RaftKVError as e:
            return e
        return None

    def auth_info(self, token: str, now: float) -> AuthInfo:
        """The user a client's token names (etcd's AuthInfoFromCtx): no token, or auth
        off, is nobody; an unknown or expired token is ErrInvalidAuthToken."""
        if not token or not self.auth.enabled:
            return NO_USER
        info = self.tokens.info(token, now, self.auth.revision)
        if info is None:
            raise ErrInvalidAuthToken()
        return info

    def apply_member_change(
        self, prop: api.Proposal, index: int, member_id: int, rejected: str | None
    ) -> Outcome:
        """Update the membership table for a committed conf change that Raft applied
        (or refused: `rejected` says why; then the table stays as it was)."""
        self._remember(prop, index)
        req = prop.request
        if rejected is not None:
            return ErrConfChangeRejected(f"{ErrConfChangeRejected.message}: {rejected}")
        if isinstance(req, api.MemberAddRequest):
            if member_id in self.members or member_id in self.removed:
                return ErrMemberExist()
            m = api.Member(ID=member_id, peer_urls=tuple(req.peer_urls), is_learner=req.is_learner)
            self.members[member_id] = m
            return api.MemberAddResponse(member=m, members=self.member_list())
        if isinstance(req, api.MemberRemoveRequest):
            if self.members.pop(member_id, None) is None:
                return ErrMemberNotFound()
            self.removed.add(member_id)
            return api.MemberRemoveResponse(members=self.member_list())
        if isinstance(req, api.MemberUpdateRequest):
            old = self.members.get(member_id)
            if old is None:
                return ErrMemberNotFound()
            self.members[member_id] = replace(old, peer_urls=tuple(req.peer_urls))
            return api.MemberUpdateResponse(members=self.member_list())
        if isinstance(req, api.MemberPromoteRequest):
            old = self.members.get(member_id)
            if old is None:
                return ErrMemberNotFound()
            self.members[member_id] = replace(old, is_learner=False)
            return api.MemberPromoteResponse(members=self.member_list())
        raise CorruptRecord(f"conf change entry {index} carries {type(req).__name__}, not a membership request")

    # ---------------------------------------------------------- snapshot

    def snapshot(self) -> bytes:
        members = [[m.ID, m.name, list(m.peer_urls), list(m.client_urls), m.is_learner] for m in self.member_list()]
        seen = [[inc, seq, idx] for (inc, seq), idx in self._seen.items()]
        packed: bytes = msgpack.packb(
            [
                SNAPSHOT_FORMAT,
                self.store.snapshot(),
                self.lessor.snapshot(),
                members,
                sorted(self.removed),
                seen,
                self.auth.snapshot(),
            ],
            use_bin_type=True,
        )
        return packed

    def restore(self, data: bytes, now: float) -> None:
        """Replace everything with a snapshot's state (lease deadlines restart from `now`)."""
        try:
            fmt, store, lessor, members, removed, seen, *rest = msgpack.unpackb(data, raw=False)
        except Exception as e:  # msgpack raises many types on garbage; all mean the same here
            raise CorruptRecord(f"malformed member snapshot: {type(e).__name__}: {e}") from None
        if fmt not in (1, SNAPSHOT_FORMAT) or len(rest) != (0 if fmt == 1 else 1):
            raise CorruptRecord(f"unsupported member snapshot format {fmt!r}")
        auth = AuthStore()
        if fmt == SNAPSHOT_FORMAT:
            auth.restore(rest[0])
        self.store.restore(store)
        self.lessor.restore(lessor, now)
        self.members = {
            int(i): api.Member(ID=int(i), name=name, peer_urls=tuple(p), client_urls=tuple(c), is_learner=bool(lr))
            for i, name, p, c, lr in members
        }
        self.removed = {int(i) for i in removed}
        self._seen = OrderedDict(((int(inc), int(seq)), int(idx)) for inc, seq, idx in seen)
        self.auth = auth
        # Tokens are not in snapshots; keep those whose user the new state still has.
        for name in self.tokens.usernames() - set(auth.users):
            self.tokens.invalidate_user(name)
        if not auth.enabled:
            self.tokens.clear()

