"""Specifications of etcd's auth in the core: kv/auth.py (the store and its permission
rules), kv/authorize.py (who may do what, checked at apply) and the Member's
Authenticate, tokens and checks over the in-memory cluster."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kv import api
from kv.applier import StateMachine
from kv.auth import (
    ROOT_ROLE,
    ROOT_USER,
    AuthInfo,
    AuthStore,
    covers,
    hash_password,
    password_matches,
)
from kv.errors import (
    CorruptRecord,
    ErrAuthFailed,
    ErrAuthNotEnabled,
    ErrAuthOldRevision,
    ErrInvalidAuthMgmt,
    ErrInvalidAuthToken,
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
    GrpcCode,
)
from kv.keyrange import prefix_range_end
from kv.simple_token import SIMPLE_TOKEN_TTL, SimpleTokens
from tests.kv.member_cluster import MemberCluster

R, W, RW = api.PermissionType.READ, api.PermissionType.WRITE, api.PermissionType.READWRITE


def perm(t: api.PermissionType, key: str, end: str = "") -> api.Permission:
    return api.Permission(perm_type=t, key=key.encode(), range_end=end.encode())


ROOT_HASH = hash_password("rootpw", random.Random(1))
PW_HASH = hash_password("pw", random.Random(2))


def store_with_root() -> AuthStore:
    s = AuthStore()
    s.user_add(api.AuthUserAddRequest(name=ROOT_USER, hashed_password=ROOT_HASH))
    s.user_grant_role(api.AuthUserGrantRoleRequest(user=ROOT_USER, role=ROOT_ROLE))
    return s


def enabled_store_with(user: str, *perms: api.Permission) -> AuthStore:
    s = store_with_root()
    s.user_add(api.AuthUserAddRequest(name=user, hashed_password=PW_HASH))
    s.role_add(api.AuthRoleAddRequest(name="r"))
    for p in perms:
        s.role_grant_permission(api.AuthRoleGrantPermissionRequest(name="r", perm=p))
    s.user_grant_role(api.AuthUserGrantRoleRequest(user=user, role="r"))
    s.auth_enable()
    return s


# ----------------------------------------------------------------- errors


def test_auth_errors_carry_etcds_text_and_grpc_code() -> None:
    assert str(ErrRootUserNotExist()) == "etcdserver: root user does not exist"
    assert ErrRootUserNotExist.grpc_code == GrpcCode.FAILED_PRECONDITION
    assert str(ErrUserAlreadyExist()) == "etcdserver: user name already exists"
    assert str(ErrUserNotFound()) == "etcdserver: user name not found"
    assert str(ErrRoleNotFound()) == "etcdserver: role name not found"
    assert (str(ErrPermissionDenied()), ErrPermissionDenied.grpc_code) == (
        "etcdserver: permission denied", GrpcCode.PERMISSION_DENIED)
    assert (str(ErrAuthFailed()), ErrAuthFailed.grpc_code) == (
        "etcdserver: authentication failed, invalid user ID or password", GrpcCode.INVALID_ARGUMENT)
    assert (str(ErrInvalidAuthToken()), ErrInvalidAuthToken.grpc_code) == (
        "etcdserver: invalid auth token", GrpcCode.UNAUTHENTICATED)
    assert (str(ErrUserEmpty()), ErrUserEmpty.grpc_code) == ("etcdserver: user name is empty", GrpcCode.INVALID_ARGUMENT)
    assert str(ErrAuthOldRevision()) == "etcdserver: revision of auth store is old"


# ------------------------------------------------------------ passwords


def test_a_password_hash_checks_the_password_and_never_contains_it() -> None:
    h = hash_password("s3cret", random.Random(7))
    assert "s3cret" not in h
    assert password_matches("s3cret", h)
    assert not password_matches("s3cret!", h)
    assert not password_matches("s3cret", "garbage")


def test_the_same_rng_state_gives_the_same_hash_and_another_salt_another_hash() -> None:
    assert hash_password("pw", random.Random(3)) == hash_password("pw", random.Random(3))
    assert hash_password("pw", random.Random(3)) != hash_password("pw", random.Random(4))


# ------------------------------------------------------------ store rules


def test_auth_enable_needs_user_root_holding_role_root() -> None:
    s = AuthStore()
    with pytest.raises(ErrRootUserNotExist):
        s.auth_enable()
    s.user_add(api.AuthUserAddRequest(name=ROOT_USER, hashed_password="x"))
    with pytest.raises(ErrRootRoleNotExist):
        s.auth_enable()
    # Role root may be granted before it exists.
    s.user_grant_role(api.AuthUserGrantRoleRequest(user=ROOT_USER, role=ROOT_ROLE))
    rev = s.revision
    s.auth_enable()
    assert s.enabled and s.revision == rev  # enabling does not bump the revision (etcd)


def test_every_change_bumps_the_auth_revision_and_a_failed_one_does_not() -> None:
    s = AuthStore()
    assert s.revision == 1
    s.user_add(api.AuthUserAddRequest(name="a", hashed_password="x"))
    s.role_add(api.AuthRoleAddRequest(name="r"))
    s.user_grant_role(api.AuthUserGrantRoleRequest(user="a", role="r"))
    assert s.revision == 4
    s.user_grant_role(api.AuthUserGrantRoleRequest(user="a", role="r"))  # already granted: no change
    with pytest.raises(ErrUserAlreadyExist):
        s.user_add(api.AuthUserAddRequest(name="a"))
    assert s.revision == 4


def test_user_and_role_errors_are_etcds() -> None:
    s = AuthStore()
    with pytest.raises(ErrUserEmpty):
        s.user_add(api.AuthUserAddRequest(name=""))
    with pytest.raises(ErrRoleEmpty):
        s.role_add(api.AuthRoleAddRequest(name=""))
    with pytest.raises(ErrUserNotFound):
        s.user_get(api.AuthUserGetRequest(name="nobody"))
    with pytest.raises(ErrUserNotFound):
        s.user_delete(api.AuthUserDeleteRequest(name="nobody"))
    with pytest.raises(ErrRoleNotFound):
        s.role_get(api.AuthRoleGetRequest(role="nothing"))
    s.user_add(api.AuthUserAddRequest(name="u"))
    with pytest.raises(ErrRoleNotFound):
        s.user_grant_role(api.AuthUserGrantRoleRequest(user="u", role="nothing"))
    with pytest.raises(ErrRoleNotGranted):
        s.user_revoke_role(api.AuthUserRevokeRoleRequest(name="u", role="r"))
    s.role_add(api.AuthRoleAddRequest(name="r"))
    with pytest.raises(ErrRoleAlreadyExist):
        s.role_add(api.AuthRoleAddRequest(name="r"))
    with pytest.raises(ErrPermissionNotGranted):
        s.role_revoke_permission(api.AuthRoleRevokePermissionRequest(role="r", key=b"k"))


def test_root_cannot_be_deleted_nor_lose_role_root_nor_role_root_go_while_auth_is_on() -> None:
    s = store_with_root()
    s.role_add(api.AuthRoleAddRequest(name=ROOT_ROLE))
    s.auth_enable()
    for bad in (
        lambda: s.user_delete(api.AuthUserDeleteRequest(name=ROOT_USER)),
        lambda: s.user_revoke_role(api.AuthUserRevokeRoleRequest(name=ROOT_USER, role=ROOT_ROLE)),
        lambda: s.role_delete(api.AuthRoleDeleteRequest(role=ROOT_ROLE)),
    ):
        with pytest.raises(ErrInvalidAuthMgmt):
            bad()
    s.auth_disable()
    s.role_delete(api.AuthRoleDeleteRequest(role=ROOT_ROLE))
    s.user_delete(api.AuthUserDeleteRequest(name=ROOT_USER))


def test_deleting_a_role_takes_it_from_every_user() -> None:
    s = AuthStore()
    s.role_add(api.AuthRoleAddRequest(name="r"))
    for u in ("a", "b"):
        s.user_add(api.AuthUserAddRequest(name=u))
        s.user_grant_role(api.AuthUserGrantRoleRequest(user=u, role="r"))
    s.role_delete(api.AuthRoleDeleteRequest(role="r"))
    assert s.user_get(api.AuthUserGetRequest(name="a")).roles == ()


def test_granting_the_same_range_again_updates_its_type_and_permissions_stay_sorted_by_key() -> None:
    s = AuthStore()
    s.role_add(api.AuthRoleAddRequest(name="r"))
    for p in (perm(R, "m"), perm(W, "a", "c"), perm(RW, "m")):
        s.role_grant_permission(api.AuthRoleGrantPermissionRequest(name="r", perm=p))
    assert s.role_get(api.AuthRoleGetRequest(role="r")).perm == (perm(W, "a", "c"), perm(RW, "m"))


def test_users_and_roles_are_listed_sorted() -> None:
    s = AuthStore()
    for n in ("b", "a", "c"):
        s.user_add(api.AuthUserAddRequest(name=n))
        s.role_add(api.AuthRoleAddRequest(name=n))
    assert s.user_list().users == ("a", "b", "c")
    assert s.role_list().roles == ("a", "b", "c")


def test_check_password_fails_alike_for_a_wrong_password_an_unknown_user_and_a_no_password_user() -> None:
    s = enabled_store_with("alice")
    assert s.check_password("alice", "pw") == s.revision
    s.user_add(api.AuthUserAddRequest(name="np", options=api.UserAddOptions(no_password=True)))
    for name, pw in (("alice", "bad"), ("bob", "pw"), ("np", "")):
        with pytest.raises(ErrAuthFailed):
            s.check_password(name, pw)
    s.auth_disable()
    with pytest.raises(ErrAuthNotEnabled):
        s.check_password("alice", "pw")


# --------------------------------------------------------- permission rules


def test_with_auth_off_everything_is_permitted_even_for_nobody() -> None:
    s = AuthStore()
    s.is_range_permitted(AuthInfo(), b"k", b"")
    s.is_put_permitted(AuthInfo(), b"k")
    s.is_admin_permitted(AuthInfo())


def test_with_auth_on_nobody_is_refused_with_user_name_is_empty() -> None:
    s = enabled_store_with("alice", perm(RW, "k"))
    with pytest.raises(ErrUserEmpty):
        s.is_range_permitted(AuthInfo(), b"k", b"")
    with pytest.raises(ErrUserEmpty):
        s.is_admin_permitted(AuthInfo())


def test_an_auth_revision_older_than_the_store_is_refused() -> None:
    s = enabled_store_with("alice", perm(RW, "k"))
    old = s.revision
    s.role_add(api.AuthRoleAddRequest(name="other"))
    with pytest.raises(ErrAuthOldRevision):
        s.is_put_permitted(AuthInfo("alice", old), b"k")
    s.is_put_permitted(AuthInfo("alice", s.revision), b"k")


def test_root_may_do_anything_and_others_only_what_their_roles_cover() -> None:
    s = enabled_store_with("alice", perm(R, "a"), perm(W, "p/", prefix_range_end(b"p/").decode()), perm(RW, "z", "\x00"))
    rev = s.revision
    root, alice = AuthInfo(ROOT_USER, rev), AuthInfo("alice", rev)
    s.is_admin_permitted(root)
    s.is_delete_range_permitted(root, b"", b"\x00")
    with pytest.raises(ErrPermissionDenied):
        s.is_admin_permitted(alice)
    s.is_range_permitted(alice, b"a", b"")
    with pytest.raises(ErrPermissionDenied):
        s.is_put_permitted(alice, b"a")
    s.is_put_permitted(alice, b"p/x")
    s.is_delete_range_permitted(alice, b"p/", prefix_range_end(b"p/"))
    with pytest.raises(ErrPermissionDenied):
        s.is_range_permitted(alice, b"p/x", b"")
    s.is_range_permitted(alice, b"zz", b"\x00")  # from-key
    s.is_put_permitted(alice, b"\xff\xff")
    with pytest.raises(ErrPermissionDenied):
        s.is_range_permitted(alice, b"a", b"\x00")
    with pytest.raises(ErrPermissionDenied):
        s.is_range_permitted(AuthInfo("mallory", rev), b"a", b"")


def test_adjacent_permissions_together_cover_a_range_neither_covers_alone() -> None:
    s = enabled_store_with("alice", perm(R, "a", "c"), perm(R, "c", "e"))
    info = AuthInfo("alice", s.revision)
    s.is_range_permitted(info, b"b", b"d")
    with pytest.raises(ErrPermissionDenied):
        s.is_range_permitted(info, b"b", b"f")


def test_an_empty_or_inverted_range_is_never_permitted() -> None:
    s = enabled_store_with("alice", perm(R, "", "\x00"))
    info = AuthInfo("alice", s.revision)
    with pytest.raises(ErrPermissionDenied):
        s.is_range_permitted(info, b"b", b"b")
    with pytest.raises(ErrPermissionDenied):
        s.is_range_permitted(info, b"c", b"b")


# A model over keys: a range is covered iff every key in it that could start a gap is in
# some permission. A gap in the union starts at the request's key or at some permission's
# end, so checking those keys (plus a few more) decides coverage exactly.
ALPHABET = b"ab\x00"
short_keys = st.binary(min_size=0, max_size=3).map(lambda b: bytes(ALPHABET[x % 3] for x in b))


def model_in(k: bytes, key: bytes, end: bytes) -> bool:
    if not end:
        return k == key
    if end == b"\x00":
        return k >= key
    return key <= k < end


@st.composite
def range_ends(draw: st.DrawFn, key: bytes) -> bytes:
    kind = draw(st.sampled_from(["point", "from", "prefix", "range"]))
    if kind == "point":
        return b""
    if kind == "from":
        return b"\x00"
    if kind == "prefix":
        return prefix_range_end(key)
    end = draw(short_keys)
    return end if end not in (b"", b"\x00") else b"b"


@st.composite
def permissions(draw: st.DrawFn) -> api.Permission:
    key = draw(short_keys)
    return api.Permission(perm_type=draw(st.sampled_from(list(api.PermissionType))), key=key,
                          range_end=draw(range_ends(key)))


@settings(max_examples=400, deadline=None)
@given(perms=st.lists(permissions(), max_size=5), key=short_keys, data=st.data(),
       op=st.sampled_from(["read", "write"]))
def test_range_checks_agree_with_a_model_over_keys(perms: list[api.Permission], key: bytes,
                                                   data: st.DataObject, op: str) -> None:
    end = data.draw(range_ends(key))
    s = enabled_store_with("alice", *perms)
    info = AuthInfo("alice", s.revision)
    wanted = api.PermissionType.READ if op == "read" else api.PermissionType.WRITE
    # Granting the same range again replaces its type: the last grant of each range counts.
    granted = {(p.key, p.range_end): p for p in perms}
    usable = [p for p in granted.values() if p.perm_type in (wanted, api.PermissionType.READWRITE)]
    # Candidates where a gap could start, and every short key for good measure.
    candidates = {key, *(p.range_end for p in usable), *(p.key + b"\x00" for p in usable if not p.range_end)}
    candidates |= {bytes(c) for c in ([], [97], [98], [97, 97], [97, 98], [98, 97], [98, 98], [0])}
    if end and end != b"\x00" and end <= key:
        expected = False
    else:
        expected = all(any(model_in(k, p.key, p.range_end) for p in usable)
                       for k in candidates if model_in(k, key, end))
    check = s.is_range_permitted if op == "read" else s.is_delete_range_permitted
    try:
        check(info, key, end)
        permitted = True
    except ErrPermissionDenied:
        permitted = False
    assert permitted == expected


@given(ivs=st.lists(st.tuples(short_keys, short_keys), max_size=4), key=short_keys)
def test_a_single_key_is_covered_iff_some_interval_holds_it(ivs: list[tuple[bytes, bytes]], key: bytes) -> None:
    intervals = [(b, e if e > b else None) for b, e in ivs]
    expected = any(b <= key and (e is None or key < e) for b, e in intervals)
    assert covers(list(intervals), key, b"") == expected


# ------------------------------------------------------------- snapshots


def test_the_auth_store_survives_a_snapshot_round_trip() -> None:
    s = enabled_store_with("alice", perm(R, "a"), perm(W, "p/", "p0"))
    t = AuthStore()
    t.restore(s.snapshot())
    assert (t.enabled, t.revision, t.users, t.roles) == (s.enabled, s.revision, s.users, s.roles)
    with pytest.raises(CorruptRecord):
        t.restore(b"\x93garbage")


def test_a_member_snapshot_of_the_old_format_restores_with_auth_off() -> None:
    sm = StateMachine(1, {1: api.Member(name="m1")})
    sm.apply(api.Proposal(1, 1, api.PutRequest(key=b"k", value=b"v")), 1, 0.0)
    fmt, *rest = msgpack.unpackb(sm.snapshot(), raw=False)
    old = msgpack.packb([1, *rest[:-1]], use_bin_type=True)
    again = StateMachine(1, {})
    again.restore(old, 0.0)
    assert again.revision == 2 and not again.auth.enabled
    assert fmt == 2


# ---------------------------------------------------------------- tokens


def test_a_simple_token_expires_ttl_after_its_last_use() -> None:
    t = SimpleTokens()
    t.assign("abc.5", "alice", 3, now=0.0)
    assert t.info("abc.5", SIMPLE_TOKEN_TTL - 1, current_revision=9) == AuthInfo("alice", 9)
    assert t.info("abc.5", 2 * SIMPLE_TOKEN_TTL - 2, current_revision=9) is not None  # renewed by the use
    assert t.info("abc.5", 4 * SIMPLE_TOKEN_TTL, current_revision=9) is None
    assert t.info("nope", 0.0, 1) is None


# ------------------------------------------------------- through the cluster


def auth_session(c: MemberCluster) -> str:
    """root and alice (read+write on "a/" prefix, read on "r"), auth on; alice's token."""
    assert isinstance(c.call(1, api.AuthUserAddRequest(name="root", password="rootpw")), api.AuthUserAddResponse)
    c.call(1, api.AuthUserGrantRoleRequest(user="root", role="root"))
    c.call(1, api.AuthUserAddRequest(name="alice", password="alicepw"))
    c.call(1, api.AuthRoleAddRequest(name="ra"))
    c.call(1, api.AuthRoleGrantPermissionRequest(name="ra", perm=perm(RW, "a/", "a0")))
    c.call(1, api.AuthRoleGrantPermissionRequest(name="ra", perm=perm(R, "r")))
    c.call(1, api.AuthUserGrantRoleRequest(user="alice", role="ra"))
    assert isinstance(c.call(1, api.AuthEnableRequest()), api.AuthEnableResponse)
    resp = c.call(2, api.AuthenticateRequest(name="alice", password="alicepw"))
    assert isinstance(resp, api.AuthenticateResponse), resp
    return str(resp.token)


def test_no_password_is_ever_in_the_log() -> None:
    c = MemberCluster()
    c.elect()
    auth_session(c)
    c.call(1, api.AuthUserChangePasswordRequest(name="alice", password="newalicepw"),
           auth_token=c.call(1, api.AuthenticateRequest(name="root", password="rootpw")).token)
    for e in c.storages[1].entries(c.storages[1].first_index(), c.storages[1].last_index() + 1):
        assert b"rootpw" not in e.data and b"alicepw" not in e.data


def test_a_token_from_one_member_works_on_every_member_and_permissions_hold_on_every_member() -> None:
    c = MemberCluster()
    c.elect()
    tok = auth_session(c)
    for i in (1, 2, 3):
        assert isinstance(c.call(i, api.PutRequest(key=f"a/{i}".encode(), value=b"v"), auth_token=tok),
                          api.PutResponse)
        assert isinstance(c.call(i, api.RangeRequest(key=b"r"), auth_token=tok), api.RangeResponse)
        assert isinstance(c.call(i, api.PutRequest(key=b"r", value=b"v"), auth_token=tok), ErrPermissionDenied)
        assert isinstance(c.call(i, api.RangeRequest(key=b"b"), auth_token=tok), ErrPermissionDenied)
        assert isinstance(c.call(i, api.RangeRequest(key=b"a/1")), ErrUserEmpty)
        assert isinstance(c.call(i, api.RangeRequest(key=b"a/1"), auth_token="bogus.1"), ErrInvalidAuthToken)
        assert isinstance(c.call(i, api.AuthUserListRequest(), auth_token=tok), ErrPermissionDenied)
    hashes = {m.hash_kv()[0] for m in c.members.values()}
    assert len(hashes) == 1


def test_a_wrong_password_fails_and_a_txn_needs_every_op_permitted() -> None:
    c = MemberCluster()
    c.elect()
    tok = auth_session(c)
    assert isinstance(c.call(3, api.AuthenticateRequest(name="alice", password="nope")), ErrAuthFailed)
    ok = api.TxnRequest(compare=(api.Compare(key=b"r"),),
                        success=(api.RequestOp(request_put=api.PutRequest(key=b"a/x", value=b"1")),))
    assert isinstance(c.call(1, ok, auth_token=tok), api.TxnResponse)
    bad = api.TxnRequest(failure=(api.RequestOp(request_put=api.PutRequest(key=b"b", value=b"1")),),
                         success=(api.RequestOp(request_range=api.RangeRequest(key=b"r")),))
    assert isinstance(c.call(1, bad, auth_token=tok), ErrPermissionDenied)


def test_a_denied_watch_is_created_and_canceled_with_permission_denied() -> None:
    c = MemberCluster()
    c.elect()
    tok = auth_session(c)
    c.watch(2, "s", api.WatchCreateRequest(key=b"b"), auth_token=tok)
    (resp,) = c.watch_log["s"]
    assert resp.created and resp.canceled
    assert resp.cancel_reason == "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    c.watch(2, "t", api.WatchCreateRequest(key=b"a/", range_end=b"a0"), auth_token=tok)
    assert c.watch_log["t"][0].created and not c.watch_log["t"][0].canceled


def test_a_changed_password_or_deleted_user_invalidates_its_tokens_everywhere() -> None:
    c = MemberCluster()
    c.elect()
    tok = auth_session(c)
    root = c.call(1, api.AuthenticateRequest(name="root", password="rootpw")).token
    c.call(1, api.AuthUserChangePasswordRequest(name="alice", password="x"), auth_token=root)
    for i in (1, 2, 3):
        assert isinstance(c.call(i, api.RangeRequest(key=b"r"), auth_token=tok), ErrInvalidAuthToken)
    assert isinstance(c.call(2, api.AuthenticateRequest(name="alice", password="x")), api.AuthenticateResponse)


def test_auth_disabled_again_lets_everybody_in_and_restarts_keep_the_auth_store() -> None:
    c = MemberCluster(snapshot_count=5)
    c.elect()
    auth_session(c)
    root = c.call(1, api.AuthenticateRequest(name="root", password="rootpw")).token
    c.crash(3)
    c.restart(3)
    c.run_for(1.0)
    assert c.members[3].sm.auth.enabled
    assert c.members[3].sm.auth.users.keys() == {"root", "alice"}
    assert isinstance(c.call(1, api.AuthDisableRequest(), auth_token=root), api.AuthDisableResponse)
    for i in (1, 2, 3):
        assert isinstance(c.call(i, api.PutRequest(key=b"b", value=b"v")), api.PutResponse)


def test_a_write_checked_at_an_auth_revision_that_moved_before_it_applied_fails_as_old() -> None:
    c = MemberCluster()
    c.elect()
    tok = auth_session(c)
    root = c.call(1, api.AuthenticateRequest(name="root", password="rootpw")).token
    lead = c.leader()
    # Both taken at the same auth revision; the role add is ahead of the put in the log.
    c.members[lead].submit("grant", api.AuthRoleAddRequest(name="other"), c.now, root)
    c.members[lead].submit("put", api.PutRequest(key=b"a/1", value=b"v"), c.now, tok)
    c.run_until(lambda: "put" in c.answers)
    assert isinstance(c.answers["grant"], api.AuthRoleAddResponse)
    assert isinstance(c.answers["put"], ErrAuthOldRevision)
    # Taken again at the new revision, it goes through.
    assert isinstance(c.call(lead, api.PutRequest(key=b"a/1", value=b"v"), auth_token=tok), api.PutResponse)


def test_an_authenticate_racing_a_password_change_never_gets_a_token_for_the_old_password() -> None:
    c = MemberCluster()
    c.elect()
    auth_session(c)
    root = c.call(1, api.AuthenticateRequest(name="root", password="rootpw")).token
    lead = c.leader()
    c.members[lead].submit("passwd", api.AuthUserChangePasswordRequest(name="alice", password="new"), c.now, root)
    c.members[lead].submit("login", api.AuthenticateRequest(name="alice", password="alicepw"), c.now)
    c.run_until(lambda: "login" in c.answers)
    assert isinstance(c.answers["passwd"], api.AuthUserChangePasswordResponse)
    assert isinstance(c.answers["login"], ErrAuthFailed)


def test_an_authenticate_overtaken_by_an_auth_change_is_checked_again_and_succeeds() -> None:
    c = MemberCluster()
    c.elect()
    auth_session(c)
    root = c.call(1, api.AuthenticateRequest(name="root", password="rootpw")).token
    lead = c.leader()
    f = c.followers()[0]
    c.members[f].submit("login", api.AuthenticateRequest(name="alice", password="alicepw"), c.now)
    c.drain()
    # Deliver until the follower has checked the password and forwarded its token proposal.
    while not c.members[f].authenticating:
        batch, c.bus = c.bus, []
        for msg in batch:
            c.members[msg.to].step(msg)
        c.drain()
    proposed_at = c.members[f].sm.auth.revision
    # An auth change lands in the leader's log ahead of the forwarded proposal.
    c.members[lead].submit("other", api.AuthRoleAddRequest(name="other"), c.now, root)
    c.drain()
    c.run_until(lambda: "login" in c.answers)
    assert c.members[f].sm.auth.revision > proposed_at
    tok = c.answers["login"]
    assert isinstance(tok, api.AuthenticateResponse), tok
    assert isinstance(c.call(f, api.RangeRequest(key=b"r"), auth_token=tok.token), api.RangeResponse)
