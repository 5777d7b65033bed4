"""MVCC store: etcd's range, put, delete, txn, compaction, hash and snapshot semantics, by example."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kv.api import (
    Compare,
    CompareResult,
    CompareTarget,
    CompactionRequest,
    DeleteRangeRequest,
    EventType,
    KeyValue,
    LeaseGrantRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    SortOrder,
    SortTarget,
    TxnRequest,
)
from kv.errors import (
    ErrCompacted,
    ErrDuplicateKey,
    ErrEmptyKey,
    ErrFutureRev,
    ErrKeyNotFound,
    ErrLeaseNotFound,
    ErrLeaseProvided,
    ErrTooManyOps,
    ErrValueProvided,
    GrpcCode,
)
from kv.lease import Lessor
from kv.keyrange import prefix_range_end
from kv.mvcc import MVCCStore
from kv.request_checks import (
    check_delete_range_request,
    check_put_request,
    check_range_request,
    check_txn_request,
    is_read_only_txn,
)


def put(s: MVCCStore, key: bytes, value: bytes = b"v", **kw: object) -> int:
    resp, _ = s.put(PutRequest(key=key, value=value, **kw))  # type: ignore[arg-type]
    return resp.header.revision


def keys_of(resp: object) -> list[bytes]:
    return [kv.key for kv in resp.kvs]  # type: ignore[attr-defined]


def op_put(key: bytes, value: bytes = b"v") -> RequestOp:
    return RequestOp(request_put=PutRequest(key=key, value=value))


def op_del(key: bytes, range_end: bytes = b"") -> RequestOp:
    return RequestOp(request_delete_range=DeleteRangeRequest(key=key, range_end=range_end))


def op_get(key: bytes, **kw: object) -> RequestOp:
    return RequestOp(request_range=RangeRequest(key=key, **kw))  # type: ignore[arg-type]


@pytest.fixture
def store() -> MVCCStore:
    s = MVCCStore()
    for k in [b"a", b"ab", b"abc", b"b", b"c\xff", b"d"]:
        put(s, k, k.upper())
    return s  # revisions 2..7


# ---------------------------------------------------------------- revisions


def test_empty_store_is_at_revision_one() -> None:
    s = MVCCStore()
    assert s.revision == 1
    assert s.range(RangeRequest(key=b"a")).header.revision == 1


def test_each_put_makes_one_revision_and_versions_count_puts() -> None:
    s = MVCCStore()
    assert put(s, b"k", b"1") == 2
    assert put(s, b"k", b"2") == 3
    kv = s.range(RangeRequest(key=b"k")).kvs[0]
    assert kv == KeyValue(b"k", create_revision=2, mod_revision=3, version=2, value=b"2")


def test_recreated_key_starts_again_at_version_one() -> None:
    s = MVCCStore()
    put(s, b"k")
    put(s, b"k")
    s.delete_range(DeleteRangeRequest(key=b"k"))
    put(s, b"k", b"new")
    kv = s.range(RangeRequest(key=b"k")).kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version) == (5, 5, 1)


def test_deleting_nothing_does_not_bump_the_revision() -> None:
    s = MVCCStore()
    put(s, b"a")
    resp, events = s.delete_range(DeleteRangeRequest(key=b"zz"))
    assert (resp.deleted, resp.header.revision, events, s.revision) == (0, 2, [], 2)


def test_tombstones_keep_past_reads_right() -> None:
    s = MVCCStore()
    put(s, b"k", b"1")  # 2
    s.delete_range(DeleteRangeRequest(key=b"k"))  # 3
    put(s, b"k", b"2")  # 4
    assert [kv.value for kv in s.range(RangeRequest(key=b"k", revision=2)).kvs] == [b"1"]
    assert s.range(RangeRequest(key=b"k", revision=3)).kvs == ()
    assert [kv.value for kv in s.range(RangeRequest(key=b"k", revision=4)).kvs] == [b"2"]
    # The header always carries the current revision, whatever revision was read.
    assert s.range(RangeRequest(key=b"k", revision=2)).header.revision == 4


# -------------------------------------------------------------------- range


def test_empty_range_end_reads_one_key(store: MVCCStore) -> None:
    assert keys_of(store.range(RangeRequest(key=b"ab"))) == [b"ab"]


def test_prefix_range_end_reads_the_prefix(store: MVCCStore) -> None:
    assert prefix_range_end(b"a") == b"b"
    assert prefix_range_end(b"c\xff") == b"d"
    assert prefix_range_end(b"\xff\xff") == b"\x00"
    resp = store.range(RangeRequest(key=b"a", range_end=prefix_range_end(b"a")))
    assert keys_of(resp) == [b"a", b"ab", b"abc"]


def test_nul_range_end_reads_every_key_from_key(store: MVCCStore) -> None:
    assert keys_of(store.range(RangeRequest(key=b"b", range_end=b"\x00"))) == [b"b", b"c\xff", b"d"]


def test_nul_key_and_nul_range_end_read_everything(store: MVCCStore) -> None:
    assert len(store.range(RangeRequest(key=b"\x00", range_end=b"\x00")).kvs) == 6


def test_range_end_at_or_below_key_is_empty(store: MVCCStore) -> None:
    assert store.range(RangeRequest(key=b"b", range_end=b"a")).count == 0


def test_limit_sets_more_and_count_is_the_total(store: MVCCStore) -> None:
    resp = store.range(RangeRequest(key=b"\x00", range_end=b"\x00", limit=2))
    assert (keys_of(resp), resp.more, resp.count) == ([b"a", b"ab"], True, 6)
    resp = store.range(RangeRequest(key=b"\x00", range_end=b"\x00", limit=6))
    assert (resp.more, resp.count) == (False, 6)


def test_count_only_returns_no_kvs(store: MVCCStore) -> None:
    resp = store.range(RangeRequest(key=b"a", range_end=b"b", count_only=True, limit=1))
    assert (resp.kvs, resp.count, resp.more) == ((), 3, False)


def test_keys_only_drops_values(store: MVCCStore) -> None:
    resp = store.range(RangeRequest(key=b"a", range_end=b"b", keys_only=True))
    assert [kv.value for kv in resp.kvs] == [b"", b"", b""]
    assert resp.kvs[0].mod_revision == 2


def test_sort_descend_by_key(store: MVCCStore) -> None:
    resp = store.range(RangeRequest(key=b"a", range_end=b"b", sort_order=SortOrder.DESCEND))
    assert keys_of(resp) == [b"abc", b"ab", b"a"]


def test_non_key_sort_target_with_order_none_sorts_ascending() -> None:
    # etcd: results come in key order, so a target other than KEY implies ASCEND.
    s = MVCCStore()
    put(s, b"a", b"z")
    put(s, b"b", b"m")
    put(s, b"c", b"a")
    resp = s.range(RangeRequest(key=b"a", range_end=b"d", sort_target=SortTarget.VALUE))
    assert keys_of(resp) == [b"c", b"b", b"a"]
    put(s, b"a", b"z2")
    resp = s.range(RangeRequest(key=b"a", range_end=b"d", sort_target=SortTarget.VERSION,
                                sort_order=SortOrder.DESCEND))
    assert keys_of(resp)[0] == b"a"
    resp = s.range(RangeRequest(key=b"a", range_end=b"d", sort_target=SortTarget.MOD,
                                sort_order=SortOrder.DESCEND, limit=1))
    assert (keys_of(resp), resp.more, resp.count) == ([b"a"], True, 3)


def test_revision_filters_prune_kvs_but_not_count(store: MVCCStore) -> None:
    everything = RangeRequest(key=b"\x00", range_end=b"\x00")
    resp = store.range(RangeRequest(key=b"\x00", range_end=b"\x00", min_mod_revision=4, max_mod_revision=5))
    assert (keys_of(resp), resp.count) == ([b"abc", b"b"], 6)
    resp = store.range(RangeRequest(key=b"\x00", range_end=b"\x00", max_create_revision=3))
    assert keys_of(resp) == [b"a", b"ab"]
    resp = store.range(RangeRequest(key=b"\x00", range_end=b"\x00", min_create_revision=7))
    assert keys_of(resp) == [b"d"]
    assert store.range(everything).count == 6


def test_future_revision_raises_err_future_rev(store: MVCCStore) -> None:
    with pytest.raises(ErrFutureRev) as e:
        store.range(RangeRequest(key=b"a", revision=8))
    assert str(e.value) == "etcdserver: mvcc: required revision is a future revision"
    assert e.value.grpc_code == GrpcCode.OUT_OF_RANGE


def test_compacted_revision_raises_err_compacted_but_the_compact_revision_reads(store: MVCCStore) -> None:
    store.compact(CompactionRequest(revision=5))
    with pytest.raises(ErrCompacted) as e:
        store.range(RangeRequest(key=b"a", revision=4))
    assert str(e.value) == "etcdserver: mvcc: required revision has been compacted"
    # etcd: rev < compactRev fails; reading *at* the compact revision is allowed.
    assert keys_of(store.range(RangeRequest(key=b"a", range_end=b"b", revision=5))) == [b"a", b"ab", b"abc"]


# ---------------------------------------------------------------------- put


def test_put_prev_kv_returns_the_previous_version() -> None:
    s = MVCCStore()
    put(s, b"k", b"1")
    resp, events = s.put(PutRequest(key=b"k", value=b"2", prev_kv=True))
    assert resp.prev_kv is not None and resp.prev_kv.value == b"1"
    assert events[0].type == EventType.PUT and events[0].prev_kv == resp.prev_kv


def test_ignore_value_keeps_the_value_and_needs_the_key() -> None:
    s = MVCCStore()
    with pytest.raises(ErrKeyNotFound):
        s.put(PutRequest(key=b"k", ignore_value=True))
    assert s.revision == 1
    put(s, b"k", b"keep")
    s.put(PutRequest(key=b"k", ignore_value=True))
    kv = s.range(RangeRequest(key=b"k")).kvs[0]
    assert (kv.value, kv.version) == (b"keep", 2)


def test_ignore_lease_keeps_the_lease() -> None:
    lessor = Lessor()
    s = MVCCStore(leases=lessor)
    lessor.grant(LeaseGrantRequest(TTL=10, ID=9), now=0.0)
    put(s, b"k", b"1", lease=9)
    s.put(PutRequest(key=b"k", value=b"2", ignore_lease=True))
    kv = s.range(RangeRequest(key=b"k")).kvs[0]
    assert (kv.value, kv.lease) == (b"2", 9)
    assert lessor.lookup(9) is not None and lessor.lookup(9).keys == {b"k"}  # type: ignore[union-attr]


def test_ignore_lease_on_a_key_whose_lease_is_gone_is_refused_before_any_change() -> None:
    # Only a damaged snapshot leaves such a key (restored with its lease ID, no lease).
    lessor = Lessor()
    lessor.grant(LeaseGrantRequest(TTL=10, ID=9), now=0.0)
    with_lease = MVCCStore(leases=lessor)
    put(with_lease, b"k", b"1", lease=9)
    s = MVCCStore(leases=Lessor())
    s.restore(with_lease.snapshot())  # the key keeps lease 9; this lessor has no lease 9
    before = s.snapshot()
    with pytest.raises(ErrLeaseNotFound):
        s.put(PutRequest(key=b"k", value=b"2", ignore_lease=True))
    with pytest.raises(ErrLeaseNotFound):
        s.txn(TxnRequest(success=(RequestOp(request_put=PutRequest(key=b"k", value=b"2", ignore_lease=True)),)))
    assert s.snapshot() == before and s.revision == 2


def test_put_with_unknown_lease_raises_err_lease_not_found() -> None:
    s = MVCCStore(leases=Lessor())
    with pytest.raises(ErrLeaseNotFound):
        s.put(PutRequest(key=b"k", lease=5))
    assert s.revision == 1


def test_request_checks_raise_etcds_errors() -> None:
    with pytest.raises(ErrEmptyKey) as e:
        check_range_request(RangeRequest())
    assert str(e.value) == "etcdserver: key is not provided" and e.value.grpc_code == GrpcCode.INVALID_ARGUMENT
    with pytest.raises(ErrEmptyKey):
        check_delete_range_request(DeleteRangeRequest())
    with pytest.raises(ErrValueProvided):
        check_put_request(PutRequest(key=b"k", value=b"x", ignore_value=True))
    with pytest.raises(ErrLeaseProvided):
        check_put_request(PutRequest(key=b"k", lease=3, ignore_lease=True))
    check_put_request(PutRequest(key=b"k", ignore_value=True, ignore_lease=True))


# ------------------------------------------------------------------- delete


def test_delete_range_returns_count_prev_kvs_and_one_revision(store: MVCCStore) -> None:
    resp, events = store.delete_range(DeleteRangeRequest(key=b"a", range_end=b"b", prev_kv=True))
    assert resp.deleted == 3 and [kv.key for kv in resp.prev_kvs] == [b"a", b"ab", b"abc"]
    assert {e.kv.mod_revision for e in events} == {8} and store.revision == 8
    assert all(e.type == EventType.DELETE and e.kv.version == 0 and e.kv.create_revision == 0 for e in events)


# ---------------------------------------------------------------------- txn


def cmp(key: bytes, target: CompareTarget, result: CompareResult, **val: object) -> Compare:
    return Compare(key=key, target=target, result=result, **val)  # type: ignore[arg-type]


def test_txn_writes_are_one_revision_with_sub_revision_order() -> None:
    s = MVCCStore()
    resp, events = s.txn(TxnRequest(success=(op_put(b"b"), op_put(b"a"), op_del(b"zz"))))
    assert resp.succeeded and resp.header.revision == 2 and s.revision == 2
    assert [e.kv.key for e in events] == [b"b", b"a"]
    assert resp.responses[2].response_delete_range is not None
    assert resp.responses[2].response_delete_range.deleted == 0


def test_txn_reads_see_its_own_earlier_writes() -> None:
    s = MVCCStore()
    resp, _ = s.txn(TxnRequest(success=(op_get(b"k"), op_put(b"k", b"1"), op_get(b"k"))))
    first, _, last = (r.response_range for r in resp.responses)
    assert first is not None and last is not None
    assert first.kvs == () and first.header.revision == 1
    assert [kv.value for kv in last.kvs] == [b"1"] and last.header.revision == 2


def test_read_only_txn_does_not_bump_the_revision(store: MVCCStore) -> None:
    req = TxnRequest(success=(op_get(b"a"),), failure=(op_get(b"b"),))
    assert is_read_only_txn(req)
    resp, events = store.txn(req)
    assert (resp.header.revision, events, store.revision) == (7, [], 7)
    assert not is_read_only_txn(TxnRequest(failure=(RequestOp(request_txn=TxnRequest(success=(op_put(b"x"),))),)))


def test_compare_targets_and_results() -> None:
    s = MVCCStore()
    put(s, b"k", b"m")  # rev 2, version 1
    T, R = CompareTarget, CompareResult
    holds = [
        cmp(b"k", T.VERSION, R.EQUAL, version=1),
        cmp(b"k", T.CREATE, R.LESS, create_revision=3),
        cmp(b"k", T.MOD, R.GREATER, mod_revision=1),
        cmp(b"k", T.VALUE, R.NOT_EQUAL, value=b"x"),
        cmp(b"k", T.VALUE, R.GREATER, value=b"a"),
        cmp(b"k", T.LEASE, R.EQUAL, lease=0),
        cmp(b"nope", T.VERSION, R.EQUAL, version=0),  # a missing key compares as zeros
        cmp(b"nope", T.CREATE, R.EQUAL, create_revision=0),
    ]
    fails = [
        cmp(b"k", T.VERSION, R.GREATER, version=1),
        cmp(b"nope", T.VALUE, R.EQUAL, value=b""),  # etcd: a value compare on a missing key always fails
        cmp(b"nope", T.VALUE, R.NOT_EQUAL, value=b"x"),
    ]
    for c in holds:
        assert s.txn(TxnRequest(compare=(c,)))[0].succeeded, c
    for c in fails:
        assert not s.txn(TxnRequest(compare=(c,)))[0].succeeded, c


def test_range_compare_must_hold_for_every_key() -> None:
    s = MVCCStore()
    put(s, b"a1", b"x")
    put(s, b"a2", b"y")
    c = Compare(key=b"a", range_end=b"b", target=CompareTarget.VERSION, result=CompareResult.EQUAL, version=1)
    assert s.txn(TxnRequest(compare=(c,)))[0].succeeded
    put(s, b"a2", b"z")
    assert not s.txn(TxnRequest(compare=(c,)))[0].succeeded


def test_nested_compares_see_the_state_before_the_txn() -> None:
    # etcd evaluates every compare, nested ones too, before any op runs.
    s = MVCCStore()
    inner = TxnRequest(
        compare=(cmp(b"k", CompareTarget.VERSION, CompareResult.EQUAL, version=0),),
        success=(op_put(b"inner-saw-nothing"),),
        failure=(op_put(b"inner-saw-k"),),
    )
    resp, _ = s.txn(TxnRequest(success=(op_put(b"k"), RequestOp(request_txn=inner))))
    assert s.range(RangeRequest(key=b"inner-saw-nothing")).count == 1
    inner_resp = resp.responses[1].response_txn
    assert inner_resp is not None and inner_resp.succeeded


def test_failing_txn_op_changes_nothing() -> None:
    s = MVCCStore()
    req = TxnRequest(success=(op_put(b"a"), RequestOp(request_put=PutRequest(key=b"b", ignore_value=True))))
    with pytest.raises(ErrKeyNotFound):
        s.txn(req)
    assert s.revision == 1 and s.range(RangeRequest(key=b"a")).count == 0
    with pytest.raises(ErrFutureRev):
        s.txn(TxnRequest(success=(op_put(b"a"), op_get(b"a", revision=2))))
    assert s.revision == 1


def test_txn_too_many_ops_raises_err_too_many_ops() -> None:
    ok = TxnRequest(success=tuple(op_put(b"k%d" % i) for i in range(128)))
    check_txn_request(ok)
    with pytest.raises(ErrTooManyOps) as e:
        check_txn_request(TxnRequest(success=tuple(op_put(b"k%d" % i) for i in range(129))))
    assert str(e.value) == "etcdserver: too many operations in txn request"
    # A nested txn only gets what the outer level left of the budget.
    nested = TxnRequest(success=(RequestOp(request_txn=TxnRequest(success=(op_put(b"x"), op_put(b"y")))),))
    with pytest.raises(ErrTooManyOps):
        check_txn_request(nested, max_txn_ops=2)
    check_txn_request(nested, max_txn_ops=3)


def test_txn_empty_compare_key_and_empty_op_are_refused() -> None:
    with pytest.raises(ErrEmptyKey):
        check_txn_request(TxnRequest(compare=(Compare(),)))
    with pytest.raises(ErrKeyNotFound):
        check_txn_request(TxnRequest(success=(RequestOp(),)))


@pytest.mark.parametrize(
    "ops",
    [
        (op_put(b"a"), op_put(b"a")),
        (op_del(b"a", b"c"), op_put(b"b")),
        (op_put(b"b"), op_del(b"a", b"c")),
        (op_del(b"a", b"\x00"), op_put(b"zzz")),
        (op_put(b"a"), RequestOp(request_txn=TxnRequest(success=(op_put(b"a"),)))),
        (op_del(b"a"), RequestOp(request_txn=TxnRequest(failure=(op_put(b"a"),)))),
        (RequestOp(request_txn=TxnRequest(success=(op_del(b"a"),))), op_put(b"a")),
        # Stricter than etcd: an earlier sibling's put under a later sibling's delete.
        (RequestOp(request_txn=TxnRequest(success=(op_put(b"a"),))),
         RequestOp(request_txn=TxnRequest(success=(op_del(b"a"),)))),
    ],
)
def test_overlapping_puts_and_deletes_in_one_branch_raise_err_duplicate_key(ops: tuple[RequestOp, ...]) -> None:
    with pytest.raises(ErrDuplicateKey) as e:
        check_txn_request(TxnRequest(success=ops))
    assert str(e.value) == "etcdserver: duplicate key given in txn request"
    with pytest.raises(ErrDuplicateKey):
        MVCCStore().txn(TxnRequest(success=ops))


def test_same_key_in_both_branches_or_in_then_and_else_of_a_nested_txn_is_allowed() -> None:
    check_txn_request(TxnRequest(success=(op_put(b"a"),), failure=(op_put(b"a"),)))
    inner = TxnRequest(success=(op_put(b"a"),), failure=(op_put(b"a"),))
    check_txn_request(TxnRequest(success=(RequestOp(request_txn=inner),)))
    check_txn_request(TxnRequest(success=(op_del(b"a"), op_del(b"a", b"c"))))  # overlapping deletes are fine


# --------------------------------------------------------------- compaction


def test_compaction_keeps_the_latest_version_of_each_live_key_and_drops_history() -> None:
    s = MVCCStore()
    put(s, b"k", b"1")  # 2
    put(s, b"k", b"2")  # 3
    put(s, b"gone")  # 4
    s.delete_range(DeleteRangeRequest(key=b"gone"))  # 5
    put(s, b"k", b"3")  # 6
    s.compact(CompactionRequest(revision=5))
    assert [kv.value for kv in s.range(RangeRequest(key=b"k", revision=5)).kvs] == [b"2"]
    assert s.range(RangeRequest(key=b"gone", revision=5)).count == 0
    assert [e.kv.mod_revision for e in s.events(b"\x00", b"\x00", 5)] == [5, 6]
    s.compact(CompactionRequest(revision=6))
    assert b"gone" not in s.snapshot()  # the tombstone at 5 is gone with the next compaction


def test_compaction_boundaries_raise_etcds_errors(store: MVCCStore) -> None:
    with pytest.raises(ErrFutureRev):
        store.compact(CompactionRequest(revision=8))
    store.compact(CompactionRequest(revision=4, physical=True))
    with pytest.raises(ErrCompacted):
        store.compact(CompactionRequest(revision=4))
    with pytest.raises(ErrCompacted):
        store.compact(CompactionRequest(revision=3))
    assert store.compact(CompactionRequest(revision=7)).header.revision == 7


# ------------------------------------------------------------------ hashing


def test_hash_kv_is_equal_on_stores_fed_the_same_writes_and_differs_otherwise(store: MVCCStore) -> None:
    twin = MVCCStore()
    for k in [b"a", b"ab", b"abc", b"b", b"c\xff", b"d"]:
        put(twin, k, k.upper())
    assert store.hash_kv() == twin.hash_kv()
    assert store.hash_kv(4) == twin.hash_kv(4)
    put(twin, b"a", b"A")  # same value, new revision: still a difference
    assert store.hash_kv().hash != twin.hash_kv().hash
    assert store.hash_kv(7).hash == twin.hash_kv(7).hash  # ...but not at the old revision


def test_hash_kv_boundaries(store: MVCCStore) -> None:
    store.compact(CompactionRequest(revision=4))
    with pytest.raises(ErrCompacted):
        store.hash_kv(3)
    with pytest.raises(ErrFutureRev):
        store.hash_kv(8)
    resp = store.hash_kv(4)
    assert (resp.compact_revision, resp.hash_revision, resp.header.revision) == (4, 4, 7)


# ----------------------------------------------------------------- snapshot


write_ops = st.lists(
    st.tuples(st.sampled_from(["put", "del", "compact"]), st.sampled_from([b"a", b"b", b"c"]), st.binary(max_size=3)),
    max_size=25,
)


def run(s: MVCCStore, ops: list[tuple[str, bytes, bytes]]) -> None:
    for kind, key, value in ops:
        if kind == "put":
            s.put(PutRequest(key=key, value=value))
        elif kind == "del":
            s.delete_range(DeleteRangeRequest(key=key, range_end=b"\x00" if value else b""))
        else:
            # At the current revision, or one below it when the value's length is odd.
            rev = s.revision - len(value) % 2
            if rev > s.compact_revision:
                s.compact(CompactionRequest(revision=rev))


@settings(max_examples=150, deadline=None)
@given(before=write_ops, after=write_ops)
def test_snapshot_restore_is_exact_and_the_restored_store_behaves_identically(
    before: list[tuple[str, bytes, bytes]], after: list[tuple[str, bytes, bytes]]
) -> None:
    s = MVCCStore()
    run(s, before)
    data = s.snapshot()
    r = MVCCStore()
    r.restore(data)
    assert r.snapshot() == data
    assert (r.revision, r.compact_revision, r.hash_kv()) == (s.revision, s.compact_revision, s.hash_kv())
    start = max(r.compact_revision, 1)
    assert r.events(b"\x00", b"\x00", start) == s.events(b"\x00", b"\x00", start)
    run(s, after)
    run(r, after)
    assert r.snapshot() == s.snapshot() and r.hash_kv() == s.hash_kv()
    start = max(r.compact_revision, 1)
    assert r.events(b"\x00", b"\x00", start) == s.events(b"\x00", b"\x00", start)


def test_snapshot_bytes_are_the_same_whatever_the_insertion_order_of_keys() -> None:
    a, b = MVCCStore(), MVCCStore()
    a.txn(TxnRequest(success=(op_put(b"x"), op_put(b"y"))))
    b.txn(TxnRequest(success=(op_put(b"x"), op_put(b"y"))))
    assert a.snapshot() == b.snapshot()
    c = MVCCStore()
    c.txn(TxnRequest(success=(op_put(b"y"), op_put(b"x"))))  # other sub-revisions
    assert c.snapshot() != a.snapshot() and c.hash_kv().hash != a.hash_kv().hash
