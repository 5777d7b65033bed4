"""Lessor: grant, attach, revoke, keep-alive, time-to-live, primary-only expiry, snapshot."""

from __future__ import annotations

import pytest

from kv.api import (
    DeleteRangeRequest,
    EventType,
    LeaseGrantRequest,
    LeaseKeepAliveRequest,
    LeaseStatus,
    LeaseTimeToLiveRequest,
    PutRequest,
    RangeRequest,
)
from kv.errors import CorruptRecord, ErrLeaseExist, ErrLeaseNotFound, ErrLeaseTTLTooLarge, GrpcCode
from kv.lease import MAX_LEASE_TTL, Lessor, lease_id_for_index, min_lease_ttl
from kv.mvcc import MVCCStore


def world(min_ttl: int = 1) -> tuple[Lessor, MVCCStore]:
    lessor = Lessor(min_ttl=min_ttl)
    return lessor, MVCCStore(leases=lessor)


def test_min_lease_ttl_is_one_and_a_half_election_timeouts_rounded_up() -> None:
    assert min_lease_ttl(1.0, 0.1) == 2  # etcd defaults: 1000 ms election, 100 ms heartbeat
    assert min_lease_ttl(2.0, 0.1) == 3
    assert min_lease_ttl(0.3, 0.05) == 1


def test_grant_raises_ttl_to_the_minimum_and_keeps_a_client_id() -> None:
    lessor = Lessor(min_ttl=5)
    resp = lessor.grant(LeaseGrantRequest(TTL=1, ID=42), now=0.0)
    assert (resp.ID, resp.TTL, resp.error) == (42, 5, "")
    assert lessor.grant(LeaseGrantRequest(TTL=60, ID=43), now=0.0).TTL == 60


def test_grant_errors_are_etcds() -> None:
    lessor = Lessor()
    lessor.grant(LeaseGrantRequest(TTL=10, ID=1), now=0.0)
    with pytest.raises(ErrLeaseExist) as e:
        lessor.grant(LeaseGrantRequest(TTL=10, ID=1), now=0.0)
    assert str(e.value) == "etcdserver: lease already exists" and e.value.grpc_code == GrpcCode.FAILED_PRECONDITION
    with pytest.raises(ErrLeaseTTLTooLarge):
        lessor.grant(LeaseGrantRequest(TTL=MAX_LEASE_TTL + 1, ID=2), now=0.0)
    assert lessor.grant(LeaseGrantRequest(TTL=MAX_LEASE_TTL, ID=2), now=0.0).TTL == MAX_LEASE_TTL


def test_assigned_ids_come_from_the_log_index_and_are_the_same_everywhere() -> None:
    a, b = Lessor(), Lessor()
    ida = a.grant(LeaseGrantRequest(TTL=10), now=0.0, index=17).ID
    idb = b.grant(LeaseGrantRequest(TTL=10), now=5.0, index=17).ID
    assert ida == idb == lease_id_for_index(17) and 0 < ida < 2**63
    # A collision with a client-chosen ID moves on deterministically.
    c = Lessor()
    c.grant(LeaseGrantRequest(TTL=10, ID=lease_id_for_index(17)), now=0.0)
    assert c.grant(LeaseGrantRequest(TTL=10), now=0.0, index=17).ID == lease_id_for_index(17) + 1


def test_revoke_returns_attached_keys_and_they_are_deleted_in_one_revision() -> None:
    lessor, store = world()
    lessor.grant(LeaseGrantRequest(TTL=10, ID=7), now=0.0)
    for k in [b"b", b"a", b"c"]:
        store.put(PutRequest(key=k, lease=7))
    store.put(PutRequest(key=b"free"))
    keys = lessor.revoke(7)
    assert keys == (b"a", b"b", b"c")
    rev, events = store.delete_keys(keys)
    assert rev == 6 and [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
        (EventType.DELETE, b"a", 6), (EventType.DELETE, b"b", 6), (EventType.DELETE, b"c", 6)]
    assert [kv.key for kv in store.range(RangeRequest(key=b"\x00", range_end=b"\x00")).kvs] == [b"free"]
    with pytest.raises(ErrLeaseNotFound):
        lessor.revoke(7)


def test_revoking_a_lease_without_keys_makes_no_revision() -> None:
    lessor, store = world()
    lessor.grant(LeaseGrantRequest(TTL=10, ID=7), now=0.0)
    assert store.delete_keys(lessor.revoke(7)) == (1, [])


def test_overwriting_or_deleting_a_key_detaches_it() -> None:
    lessor, store = world()
    lessor.grant(LeaseGrantRequest(TTL=10, ID=1), now=0.0)
    lessor.grant(LeaseGrantRequest(TTL=10, ID=2), now=0.0)
    store.put(PutRequest(key=b"k", lease=1))
    store.put(PutRequest(key=b"j", lease=1))
    store.put(PutRequest(key=b"k", lease=2))
    store.delete_range(DeleteRangeRequest(key=b"j"))
    assert lessor.revoke(1) == () and lessor.revoke(2) == (b"k",)


def test_keep_alive_refreshes_the_deadline_and_unknown_leases_get_ttl_zero() -> None:
    lessor = Lessor()
    lessor.promote(0.0)
    lessor.grant(LeaseGrantRequest(TTL=10, ID=1), now=0.0)
    assert lessor.keep_alive(LeaseKeepAliveRequest(ID=1), now=8.0).TTL == 10
    assert lessor.expired(17.9) == [] and lessor.expired(18.0) == [1]
    assert lessor.keep_alive(LeaseKeepAliveRequest(ID=99), now=8.0).TTL == 0


def test_keep_alive_of_an_expired_lease_on_the_primary_is_not_found() -> None:
    lessor = Lessor()
    lessor.promote(0.0)
    lessor.grant(LeaseGrantRequest(TTL=10, ID=1), now=0.0)
    with pytest.raises(ErrLeaseNotFound):
        lessor.renew(1, now=10.0)


def test_time_to_live_reports_remaining_granted_and_keys_and_minus_one_when_gone() -> None:
    lessor, store = world()
    lessor.grant(LeaseGrantRequest(TTL=30, ID=1), now=100.0)
    store.put(PutRequest(key=b"y", lease=1))
    store.put(PutRequest(key=b"x", lease=1))
    resp = lessor.time_to_live(LeaseTimeToLiveRequest(ID=1, keys=True), now=110.5)
    assert (resp.TTL, resp.granted_ttl, resp.keys) == (19, 30, (b"x", b"y"))
    assert lessor.time_to_live(LeaseTimeToLiveRequest(ID=1), now=110.5).keys == ()
    gone = lessor.time_to_live(LeaseTimeToLiveRequest(ID=2), now=0.0)
    assert (gone.ID, gone.TTL) == (2, -1)


def test_leases_lists_every_lease_by_id() -> None:
    lessor = Lessor()
    for i in (5, 3, 9):
        lessor.grant(LeaseGrantRequest(TTL=10, ID=i), now=0.0)
    assert lessor.leases().leases == (LeaseStatus(3), LeaseStatus(5), LeaseStatus(9))


def test_only_the_primary_reports_expired_leases() -> None:
    lessor = Lessor()
    lessor.grant(LeaseGrantRequest(TTL=10, ID=1), now=0.0)
    assert lessor.expired(100.0) == [] and lessor.next_expiry() is None
    assert lessor.expired(100.0, force=True) == [1]
    lessor.promote(100.0)
    assert lessor.next_expiry() == 110.0
    lessor.demote()
    assert lessor.expired(1000.0) == []


def test_promote_gives_every_lease_a_full_ttl_from_now() -> None:
    lessor = Lessor()
    lessor.grant(LeaseGrantRequest(TTL=10, ID=1), now=0.0)
    lessor.grant(LeaseGrantRequest(TTL=20, ID=2), now=0.0)
    lessor.promote(50.0)  # long after both deadlines: a new leader must not expire them at once
    assert lessor.expired(59.9) == []
    assert lessor.expired(60.0) == [1]
    assert lessor.expired(70.0) == [1, 2]
    lessor.promote(100.0, extend=1.0)
    assert lessor.next_expiry() == 111.0


def test_expired_is_ordered_by_deadline_then_id() -> None:
    lessor = Lessor()
    lessor.promote(0.0)
    for i, ttl in ((9, 5), (3, 5), (1, 7)):
        lessor.grant(LeaseGrantRequest(TTL=ttl, ID=i), now=0.0)
    assert lessor.expired(10.0) == [3, 9, 1]


def test_snapshot_restore_keeps_leases_ttls_and_keys_exactly() -> None:
    lessor, store = world(min_ttl=3)
    lessor.grant(LeaseGrantRequest(TTL=10, ID=2), now=0.0)
    lessor.grant(LeaseGrantRequest(TTL=1, ID=1), now=0.0)
    store.put(PutRequest(key=b"k", lease=2))
    data = lessor.snapshot()
    other = Lessor(min_ttl=3)
    other.restore(data, now=500.0)
    assert other.snapshot() == data
    assert other.time_to_live(LeaseTimeToLiveRequest(ID=2, keys=True), now=500.0).keys == (b"k",)
    assert other.time_to_live(LeaseTimeToLiveRequest(ID=1), now=500.0).TTL == 3
    with pytest.raises(CorruptRecord):
        other.restore(b"\x93garbage", now=0.0)
