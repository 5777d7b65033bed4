"""Persistence through Ready, restart after a crash, snapshots and log compaction."""

from __future__ import annotations

import random

from kv.raft.config import RaftConfig
from kv.raft.messages import NONE, HardState, Message, MessageType, Role
from kv.raft.node import RaftNode
from kv.raft.ready import DriverError
from kv.raft.progress import ProgressState
from kv.raft.storage import MemoryStorage
import pytest

from tests.kv.raft.harness import Cluster


def started(node_id: int, voters: tuple[int, ...]) -> tuple[RaftNode, MemoryStorage]:
    """A node whose bootstrap Ready (the initial membership entries) was persisted and applied."""
    st = MemoryStorage()
    n = RaftNode(RaftConfig(id=node_id), st, random.Random(node_id), initial_voters=voters)
    rd = n.ready()
    assert rd is not None
    assert [e.index for e in rd.committed_entries] == list(range(1, len(voters) + 1))
    assert rd.hard_state == HardState(term=1, vote=0, commit=len(voters))
    st.append(rd.entries)
    assert rd.hard_state is not None
    st.set_hard_state(rd.hard_state)
    n.advance(rd)
    return n, st


def test_bootstrap_writes_the_initial_membership_into_the_log() -> None:
    n, st = started(1, (1, 2, 3))
    assert n.conf_state().voters == (1, 2, 3)
    assert st.last_index() == 3 and n.log.applied == 3


def test_ready_holds_hard_state_entries_and_messages_to_persist_then_send() -> None:
    n, st = started(1, (1, 2, 3))
    n.campaign()
    rd = n.ready()
    assert rd is not None
    assert rd.hard_state is None  # a pre-candidate changes neither term nor vote
    # Pre-vote first: no term change yet, two PRE_VOTE messages out.
    assert sorted((m.type, m.to) for m in rd.messages) == [(MessageType.PRE_VOTE, 2), (MessageType.PRE_VOTE, 3)]
    n.advance(rd)
    n.step(Message(type=MessageType.PRE_VOTE_RESP, from_=2, to=1, term=2))
    rd = n.ready()
    assert rd is not None and rd.hard_state == HardState(term=2, vote=1, commit=3)
    assert rd.must_sync
    assert {m.type for m in rd.messages} == {MessageType.VOTE}


def test_feeding_input_before_advance_is_a_driver_error() -> None:
    n, _ = started(1, (1, 2, 3))
    n.campaign()
    rd = n.ready()
    assert rd is not None
    with pytest.raises(DriverError):
        n.tick(1.0)
    with pytest.raises(DriverError):
        n.advance(rd.__class__(**{f: getattr(rd, f) for f in rd.__slots__}))  # not the same Ready
    n.advance(rd)


def test_leader_counts_its_own_entry_only_after_advance() -> None:
    n, st = started(1, (1,))
    n.campaign()
    rd = n.ready()
    assert rd is not None and n.role == Role.LEADER
    assert rd.entries and rd.committed_entries == ()  # the no-op is not committed before it is durable
    assert n.log.committed == 1
    st.append(rd.entries)
    n.advance(rd)
    assert n.log.committed == 2
    rd = n.ready()
    assert rd is not None and [e.index for e in rd.committed_entries] == [2]
    n.advance(rd)


def test_restarted_node_keeps_its_term_vote_and_log() -> None:
    c = Cluster((1, 2, 3), seed=21)
    lead = c.elect()
    for k in range(5):
        c.propose(lead, f"v{k}".encode())
    follower = next(i for i in c.nodes if i != lead)
    before = c.nodes[follower]
    term, vote, last = before.term, before.vote, before.log.last_index()
    c.crash(follower)
    n = c.restart(follower)
    assert (n.term, n.vote, n.log.last_index()) == (term, vote, last)
    c.run_for(0.5)
    assert c.applied_data(follower) == [f"v{k}".encode() for k in range(5)]
    c.assert_safe()


def test_restarted_node_never_votes_twice_in_a_term() -> None:
    c = Cluster((1, 2, 3), seed=22, pre_vote=False, check_quorum=False)
    c.nodes[1].campaign()
    c.process(1)
    c.bus = [m for m in c.bus if m.to == 3]
    c.deliver_all()  # 3 votes for 1 in term 2 and persists it
    assert c.nodes[3].vote == 1
    c.crash(3)
    c.restart(3)
    assert c.nodes[3].vote == 1 and c.nodes[3].term == 2
    # Node 2 campaigns in the same term 2 with an equally up-to-date log: 3 must refuse.
    c.nodes[3].step(Message(type=MessageType.VOTE, from_=2, to=3, term=2, index=3, log_term=1))
    c.process(3)
    answer = [m for m in c.bus if m.from_ == 3 and m.to == 2 and m.type == MessageType.VOTE_RESP]
    assert answer and answer[-1].reject


def test_whole_cluster_restart_recovers_every_committed_entry() -> None:
    c = Cluster((1, 2, 3), seed=23)
    lead = c.elect()
    for k in range(8):
        c.propose(lead, f"v{k}".encode())
    c.run_for(0.2)
    for i in (1, 2, 3):
        c.crash(i)
    for i in (1, 2, 3):
        c.restart(i)
    lead = c.elect()
    c.propose(lead, b"after")
    c.run_for(0.5)
    expected = [f"v{k}".encode() for k in range(8)] + [b"after"]
    assert all(c.applied_data(i) == expected for i in (1, 2, 3))
    c.assert_safe()


def test_compaction_drops_the_log_before_the_snapshot() -> None:
    c = Cluster((1, 2, 3), seed=24)
    lead = c.elect()
    for k in range(10):
        c.propose(lead, f"v{k}".encode())
    c.run_for(0.2)
    snap = c.compact(lead)
    node = c.nodes[lead]
    assert node.log.first_index() == snap.metadata.index + 1
    assert node.log.term(snap.metadata.index) == snap.metadata.term
    assert node.log.term(snap.metadata.index - 1) is None  # compacted away


def test_lagging_follower_is_caught_up_by_install_snapshot() -> None:
    c = Cluster((1, 2, 3), seed=25)
    lead = c.elect()
    lagging = next(i for i in c.nodes if i != lead)
    c.isolate(lagging)
    for k in range(30):
        c.propose(lead, f"v{k}".encode())
    c.run_for(0.2)
    c.compact(lead)
    c.heal()
    c.run_for(1.0)
    assert c.messages_of(MessageType.SNAP), "the leader must send a snapshot"
    assert c.nodes[lagging].log.first_index() > 1  # its log now starts after the snapshot
    assert c.applied_data(lagging) == [f"v{k}".encode() for k in range(30)]
    c.propose(lead, b"after-snapshot")
    c.run_for(0.3)
    assert c.applied_data(lagging)[-1] == b"after-snapshot"
    assert c.nodes[lead].tracker.progress[lagging].state == ProgressState.REPLICATE
    c.assert_safe()


def test_lost_snapshot_is_sent_again() -> None:
    c = Cluster((1, 2, 3), seed=26)
    lead = c.elect()
    lagging = next(i for i in c.nodes if i != lead)
    c.isolate(lagging)
    for k in range(5):
        c.propose(lead, f"v{k}".encode())
    c.compact(lead)
    c.heal()
    c.drop_filter = lambda m: m.type == MessageType.SNAP
    c.run_for(0.5)
    c.drop_filter = None
    c.run_for(1.0)
    assert c.applied_data(lagging) == [f"v{k}".encode() for k in range(5)]


def test_restart_from_snapshot_and_log_replays_only_entries_after_it() -> None:
    c = Cluster((1, 2, 3), seed=27)
    lead = c.elect()
    for k in range(6):
        c.propose(lead, f"v{k}".encode())
    c.run_for(0.2)
    follower = next(i for i in c.nodes if i != lead)
    c.compact(follower)
    c.propose(lead, b"v6")
    c.run_for(0.2)
    c.crash(follower)
    n = c.restart(follower)
    assert n.log.applied == n.log.first_index() - 1
    c.run_for(0.3)
    assert c.applied_data(follower) == [f"v{k}".encode() for k in range(7)]
    assert n.term == c.nodes[lead].term and n.vote in (lead, NONE, n.vote)
