"""Log replication (Raft §5.3), the commit rule (§5.4.2), flow control and batching."""

from __future__ import annotations

import pytest

from kv.raft.messages import MessageType, Role
from kv.raft.progress import ProgressState
from tests.kv.raft.harness import Cluster

# Raft paper, Figure 7: the leader's log (terms by index) and followers (a)-(f).
FIG7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIG7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def test_committed_proposal_is_applied_on_every_node_in_order() -> None:
    c = Cluster((1, 2, 3), seed=11)
    lead = c.elect()
    for k in range(20):
        c.propose(lead, f"v{k}".encode())
    c.run_for(0.5)
    expected = [f"v{k}".encode() for k in range(20)]
    for i in c.nodes:
        assert c.applied_data(i) == expected
    c.assert_safe()


def test_proposal_on_a_follower_is_forwarded_to_the_leader() -> None:
    c = Cluster((1, 2, 3), seed=12)
    lead = c.elect()
    follower = next(i for i in c.nodes if i != lead)
    c.propose(follower, b"via-follower")
    c.run_for(0.2)
    assert all(c.applied_data(i) == [b"via-follower"] for i in c.nodes)


def test_minority_side_cannot_commit() -> None:
    c = Cluster((1, 2, 3, 4, 5), seed=13, check_quorum=False)
    lead = c.elect()
    others = [i for i in c.nodes if i != lead]
    c.partition([lead, others[0]], others[1:])
    c.propose(lead, b"lost")
    c.run_for(0.5)
    assert c.nodes[lead].log.committed < c.nodes[lead].log.last_index()
    assert b"lost" not in c.applied_data(lead)


@pytest.mark.parametrize("name", sorted(FIG7_FOLLOWERS))
def test_figure7_follower_log_converges_to_the_leaders(name: str) -> None:
    # Seven nodes: the leader, the follower under test and five voters holding the
    # leader's log, so the leader (term 8) wins whatever the follower's log is.
    c = Cluster(range(1, 8), seed=14, pre_vote=False)
    c.load_log(1, FIG7_LEADER, term=7)
    c.load_log(2, FIG7_FOLLOWERS[name], term=7)
    for i in range(3, 8):
        c.load_log(i, FIG7_LEADER[:4], term=7)
    c.nodes[1].campaign()
    c.deliver_all()
    assert c.nodes[1].role == Role.LEADER and c.nodes[1].term == 8
    c.run_for(0.5)
    leader_log = [(e.index, e.term, e.data) for e in c.nodes[1].log.all_entries()]
    follower_log = [(e.index, e.term, e.data) for e in c.nodes[2].log.all_entries()]
    assert follower_log == leader_log
    assert [t for _, t, _ in leader_log] == FIG7_LEADER + [8]  # plus the new leader's no-op
    c.assert_safe()


def test_fast_backtracking_needs_one_round_trip_per_conflicting_term() -> None:
    # Follower (f) differs from the leader in terms 2 and 3 (8 entries); with the
    # conflict hint the leader skips whole terms instead of one index per round trip.
    c = Cluster(range(1, 8), seed=15, pre_vote=False)
    c.load_log(1, FIG7_LEADER, term=7)
    c.load_log(2, FIG7_FOLLOWERS["f"], term=7)
    for i in range(3, 8):
        c.load_log(i, FIG7_LEADER, term=7)
    c.nodes[1].campaign()
    c.deliver_all()
    rejections = [m for m in c.messages_of(MessageType.APP_RESP) if m.from_ == 2 and m.reject]
    assert 1 <= len(rejections) <= 3
    assert c.nodes[2].log.last_index() == 11


def test_leader_only_commits_entries_of_its_own_term_by_counting() -> None:
    # Old-term entries present on a majority stay uncommitted until an entry of the
    # leader's term (its no-op) reaches a majority too (Raft §5.4.2).
    c = Cluster((1, 2, 3), seed=16, pre_vote=False)
    for i in (1, 2, 3):
        c.load_log(i, [1, 2], term=2)
    # Only node 1 may receive appends: its no-op cannot reach a majority.
    c.drop_filter = lambda m: m.type == MessageType.APP
    c.nodes[1].campaign()
    c.deliver_all()
    assert c.nodes[1].role == Role.LEADER
    c.run_for(0.3)
    assert c.nodes[1].log.committed == 0  # index 2 is on all three nodes, yet not committed
    c.heal()
    c.run_for(0.3)
    assert c.nodes[1].log.committed == 3  # the no-op (term 3) commits, and everything before it


def test_entries_are_batched_per_message_within_the_size_limit() -> None:
    c = Cluster((1, 2, 3), seed=17, max_size_per_msg=200)
    lead = c.elect()
    follower = next(i for i in c.nodes if i != lead)
    c.isolate(follower)
    for k in range(30):
        c.propose(lead, bytes(50))  # 50 bytes of data each
    c.heal()
    start = len(c.sent)
    c.run_for(0.5)
    apps = [m for m in c.sent[start:] if m.type == MessageType.APP and m.to == follower and m.entries]
    assert apps
    assert max(len(m.entries) for m in apps) > 1  # batched
    assert all(sum(len(e.data) + 16 for e in m.entries) <= 200 for m in apps if len(m.entries) > 1)
    assert len(c.applied_data(follower)) == 30


def test_inflight_window_bounds_unacknowledged_appends() -> None:
    c = Cluster((1, 2, 3), seed=18, max_inflight_msgs=4)
    lead = c.elect()
    follower = next(i for i in c.nodes if i != lead)
    pr = c.nodes[lead].tracker.progress[follower]
    assert pr.state == ProgressState.REPLICATE
    c.cut_one_way(follower, lead)  # acks are lost: nothing frees the window
    for k in range(10):
        c.propose(lead, f"v{k}".encode())
    assert pr.inflights.count() == 4
    assert pr.is_paused()
    pr.check_invariants()
    c.heal()
    c.run_for(1.0)
    assert len(c.applied_data(follower)) == 10


def test_lost_appends_do_not_stall_replication() -> None:
    c = Cluster((1, 2, 3), seed=19, max_inflight_msgs=2)
    lead = c.elect()
    follower = next(i for i in c.nodes if i != lead)
    c.drop_filter = lambda m: m.type == MessageType.APP and m.to == follower and bool(m.entries)
    for k in range(6):
        c.propose(lead, f"v{k}".encode())
    c.heal()
    c.run_for(1.0)
    assert len(c.applied_data(follower)) == 6
    c.assert_safe()


def test_duplicated_and_reordered_messages_are_harmless() -> None:
    c = Cluster((1, 2, 3), seed=20)
    lead = c.elect()
    for k in range(10):
        c.nodes[lead].propose(f"v{k}".encode())
        c.process(lead)
    # Deliver everything twice, in reverse order.
    pending = list(c.bus)
    c.bus = list(reversed(pending)) + list(reversed(pending))
    c.deliver_all()
    c.run_for(1.0)
    expected = [f"v{k}".encode() for k in range(10)]
    assert all(c.applied_data(i) == expected for i in c.nodes)
    c.assert_safe()
