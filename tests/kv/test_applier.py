"""Specifications of kv.applier.StateMachine: applying proposals is a function of the log."""

from __future__ import annotations

from kv import api
from kv.applier import StateMachine


def prop(seq: int, req: object) -> api.Proposal:
    return api.Proposal(incarnation=7, seq=seq, request=req)


def test_an_expiry_decided_before_a_keep_alive_in_the_log_does_not_revoke() -> None:
    sm = StateMachine(min_lease_ttl=1, members={})
    grant, _ = sm.apply(prop(1, api.LeaseGrantRequest(TTL=5)), index=1, now=0.0)
    sm.apply(prop(2, api.PutRequest(key=b"k", value=b"v", lease=grant.ID)), index=2, now=0.0)
    ka, _ = sm.apply(prop(3, api.LeaseKeepAliveRequest(ID=grant.ID)), index=3, now=4.0)
    assert ka.TTL == 5
    # The leader decided at renewed_index 1 (it had not applied the keep-alive yet): no-op.
    _, events = sm.apply(prop(4, api.LeaseExpireRequest(ID=grant.ID, renewed_index=1)), index=4, now=5.0)
    assert events == [] and sm.lessor.lookup(grant.ID) is not None
    # An expiry that knew of the last renewal revokes, deleting the keys in one revision.
    _, events = sm.apply(prop(5, api.LeaseExpireRequest(ID=grant.ID, renewed_index=3)), index=5, now=9.0)
    assert [(e.type, e.kv.key) for e in events] == [(api.EventType.DELETE, b"k")]
    assert sm.lessor.lookup(grant.ID) is None


def test_the_same_entries_give_the_same_state_whatever_the_local_clock() -> None:
    def run(clock_skew: float) -> tuple[bytes, int]:
        sm = StateMachine(min_lease_ttl=1, members={})
        g, _ = sm.apply(prop(1, api.LeaseGrantRequest(TTL=2)), index=1, now=0.0 + clock_skew)
        sm.apply(prop(2, api.PutRequest(key=b"a", value=b"1", lease=g.ID)), index=2, now=0.1 + clock_skew)
        sm.apply(prop(3, api.LeaseKeepAliveRequest(ID=g.ID)), index=3, now=50.0 + clock_skew)  # long past the TTL
        sm.apply(prop(4, api.LeaseExpireRequest(ID=g.ID, renewed_index=1)), index=4, now=51.0 + clock_skew)
        return sm.store.snapshot(), sm.store.hash_kv().hash

    assert run(0.0) == run(1000.0)


def test_a_duplicated_proposal_is_recognised_and_survives_a_snapshot() -> None:
    sm = StateMachine(min_lease_ttl=1, members={1: api.Member(name="m1")})
    p = prop(1, api.PutRequest(key=b"a", value=b"1"))
    sm.apply(p, index=1, now=0.0)
    assert sm.is_duplicate(p)
    other = StateMachine(min_lease_ttl=1, members={})
    other.restore(sm.snapshot(), now=3.0)
    assert other.is_duplicate(p) and other.member_list() == sm.member_list()
    assert other.store.hash_kv() == sm.store.hash_kv()
