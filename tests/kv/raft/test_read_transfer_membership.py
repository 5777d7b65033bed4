"""ReadIndex (dissertation §6.4), leadership transfer (§3.10), membership changes (§4)."""

from __future__ import annotations

import pytest

from kv.errors import ProposalDropped
from kv.raft.messages import ConfChangeTransition, ConfChangeType, MessageType, Role
from tests.kv.raft.harness import Cluster

ADD = ConfChangeType.ADD_NODE
REMOVE = ConfChangeType.REMOVE_NODE
LEARNER = ConfChangeType.ADD_LEARNER_NODE


# ---------------------------------------------------------------- ReadIndex


def test_read_index_on_leader_returns_commit_index_after_a_heartbeat_quorum() -> None:
    c = Cluster((1, 2, 3), seed=31)
    lead = c.elect()
    c.propose(lead, b"x")
    commit = c.nodes[lead].log.committed
    beats = len(c.messages_of(MessageType.HEARTBEAT))
    c.nodes[lead].read_index(b"r1")
    c.process(lead)
    c.deliver_all()
    assert c.read_states[lead] == [(commit, b"r1")]
    assert len(c.messages_of(MessageType.HEARTBEAT)) > beats  # confirmed leadership by a round
    assert c.nodes[lead].log.last_index() == commit  # and wrote nothing to the log


def test_read_index_on_follower_is_answered_through_the_leader() -> None:
    c = Cluster((1, 2, 3), seed=32)
    lead = c.elect()
    c.propose(lead, b"x")
    follower = next(i for i in c.nodes if i != lead)
    c.nodes[follower].read_index(b"r2")
    c.process(follower)
    c.deliver_all()
    assert c.read_states[follower] == [(c.nodes[lead].log.committed, b"r2")]


def test_partitioned_leader_cannot_answer_read_index() -> None:
    c = Cluster((1, 2, 3), seed=33, check_quorum=False)
    lead = c.elect()
    c.isolate(lead)
    c.nodes[lead].read_index(b"stale?")
    c.process(lead)
    c.run_for(1.0)
    assert c.read_states[lead] == []


def test_new_leader_serves_no_read_until_an_entry_of_its_term_commits() -> None:
    c = Cluster((1, 2, 3), seed=34, pre_vote=False)
    lead = c.elect()
    c.propose(lead, b"x")
    c.crash(lead)
    # Hold back the next leader's appends so its no-op cannot commit yet.
    c.drop_filter = lambda m: m.type == MessageType.APP
    new = c.elect()
    assert c.nodes[new].log.term(c.nodes[new].log.committed) != c.nodes[new].term
    c.nodes[new].read_index(b"r3")
    c.process(new)
    c.deliver_all()
    assert c.read_states[new] == []
    c.drop_filter = None
    c.run_for(0.5)
    assert len(c.read_states[new]) == 1
    index, ctx = c.read_states[new][0]
    assert ctx == b"r3" and c.nodes[new].log.term(index) == c.nodes[new].term


def test_read_index_without_leader_is_refused_to_the_caller() -> None:
    c = Cluster((1, 2, 3), seed=35)
    with pytest.raises(ProposalDropped):
        c.nodes[1].read_index(b"r")


# ----------------------------------------------------- leadership transfer


def test_leadership_transfer_elects_the_transferee_without_waiting_for_a_timeout() -> None:
    c = Cluster((1, 2, 3), seed=36, election_timeout_min=1.0, election_timeout_max=2.0, heartbeat_interval=0.1)
    lead = c.elect()
    target = next(i for i in c.nodes if i != lead)
    term = c.nodes[lead].term
    c.nodes[lead].transfer_leadership(target)
    c.process(lead)
    c.deliver_all()
    assert c.leaders() == [target]
    assert c.nodes[target].term == term + 1
    assert c.messages_of(MessageType.TIMEOUT_NOW)
    c.assert_safe()


def test_transfer_to_a_lagging_follower_first_catches_it_up() -> None:
    c = Cluster((1, 2, 3), seed=37, election_timeout_min=1.0, election_timeout_max=2.0, heartbeat_interval=0.1)
    lead = c.elect()
    target = next(i for i in c.nodes if i != lead)
    c.isolate(target)
    for k in range(5):
        c.propose(lead, f"v{k}".encode())
    c.heal()
    c.nodes[lead].transfer_leadership(target)
    c.process(lead)
    with pytest.raises(ProposalDropped):
        c.nodes[lead].propose(b"during transfer")  # proposals are refused while transferring
    c.run_for(0.5)
    assert c.leaders() == [target]
    assert len(c.applied_data(target)) == 5


def test_transfer_requested_on_a_follower_is_forwarded() -> None:
    c = Cluster((1, 2, 3), seed=38)
    lead = c.elect()
    target = next(i for i in c.nodes if i != lead)
    c.nodes[target].transfer_leadership(target)
    c.process(target)
    c.deliver_all()
    assert c.leaders() == [target]


def test_transfer_to_an_unreachable_node_is_abandoned_after_the_timeout() -> None:
    c = Cluster((1, 2, 3), seed=39, check_quorum=False)
    lead = c.elect()
    target = next(i for i in c.nodes if i != lead)
    c.isolate(target)
    c.nodes[lead].transfer_leadership(target)
    c.process(lead)
    c.run_for(1.0)
    assert c.nodes[lead].lead_transferee == 0
    assert c.try_propose(lead, b"accepted again")


# ------------------------------------------------------------- membership


def test_add_a_new_voter_which_catches_up_and_counts_toward_quorum() -> None:
    c = Cluster((1, 2, 3), seed=40)
    lead = c.elect()
    c.propose(lead, b"before")
    c.add_node(4)
    c.conf_change(lead, (ADD, 4))
    c.run_for(1.0)
    assert sorted(c.nodes[lead].conf_state().voters) == [1, 2, 3, 4]
    assert sorted(c.nodes[4].conf_state().voters) == [1, 2, 3, 4]
    assert c.applied_data(4) == [b"before"]
    # With 4 voters, quorum is 3: two nodes down blocks commits.
    down = [i for i in (1, 2, 3, 4) if i != lead][:2]
    for i in down:
        c.isolate(i)
    c.propose(lead, b"needs 3 of 4")
    c.run_for(0.3)
    assert b"needs 3 of 4" not in c.applied_data(lead)
    c.assert_safe()


def test_remove_a_follower_shrinks_the_quorum() -> None:
    c = Cluster((1, 2, 3), seed=41)
    lead = c.elect()
    gone = next(i for i in c.nodes if i != lead)
    c.conf_change(lead, (REMOVE, gone))
    c.run_for(0.3)
    assert gone not in c.nodes[lead].conf_state().voters
    c.crash(gone)
    c.propose(lead, b"two of two")
    c.run_for(0.3)
    assert b"two of two" in c.applied_data(lead)


def test_removing_the_current_leader_hands_over_to_another_voter() -> None:
    c = Cluster((1, 2, 3), seed=42)
    lead = c.elect()
    c.conf_change(lead, (REMOVE, lead))
    c.run_for(1.0)
    assert c.nodes[lead].role != Role.LEADER
    new = c.leader()
    assert new != lead
    assert lead not in c.nodes[new].conf_state().voters
    c.propose(new, b"after removal")
    c.run_for(0.3)
    assert b"after removal" in c.applied_data(new)
    c.assert_safe()


def test_learner_replicates_but_neither_votes_nor_campaigns_until_promoted() -> None:
    c = Cluster((1, 2, 3), seed=43)
    lead = c.elect()
    c.add_node(4)
    c.conf_change(lead, (LEARNER, 4))
    c.propose(lead, b"x")
    c.run_for(1.0)
    assert c.nodes[lead].conf_state().learners == (4,)
    assert c.applied_data(4) == [b"x"]
    assert not any(m.from_ == 4 for m in c.messages_of(MessageType.PRE_VOTE) + c.messages_of(MessageType.VOTE))
    c.conf_change(lead, (ADD, 4))  # promote
    c.run_for(0.5)
    assert sorted(c.nodes[lead].conf_state().voters) == [1, 2, 3, 4]
    assert c.nodes[lead].conf_state().learners == ()


def test_only_one_conf_change_may_be_pending() -> None:
    c = Cluster((1, 2, 3), seed=44)
    lead = c.elect()
    c.add_node(4)
    c.add_node(5)
    c.isolate(next(i for i in c.nodes if i not in (lead, 4, 5)))
    c.drop_filter = lambda m: m.type == MessageType.APP  # nothing commits
    c.conf_change(lead, (ADD, 4))
    with pytest.raises(ProposalDropped, match="unapplied conf change"):
        c.conf_change(lead, (ADD, 5))


def test_joint_consensus_replaces_two_voters_at_once_and_leaves_automatically() -> None:
    c = Cluster((1, 2, 3), seed=45)
    lead = c.elect()
    others = [i for i in (1, 2, 3) if i != lead]
    c.add_node(4)
    c.add_node(5)
    c.conf_change(lead, (ADD, 4), (ADD, 5), (REMOVE, others[0]), transition=ConfChangeTransition.AUTO)
    c.run_for(1.0)
    cs = c.nodes[lead].conf_state()
    assert sorted(cs.voters) == sorted([lead, others[1], 4, 5])
    assert cs.voters_outgoing == ()  # left the joint configuration on its own
    c.propose(lead, b"new config")
    c.run_for(0.3)
    assert all(b"new config" in c.applied_data(i) for i in (lead, others[1], 4, 5))
    c.assert_safe()


def test_more_than_one_voter_change_without_joint_is_refused() -> None:
    c = Cluster((1, 2, 3), seed=46)
    lead = c.elect()
    c.add_node(4)
    c.add_node(5)
    with pytest.raises(ProposalDropped):
        c.conf_change(lead, (ADD, 4), (ADD, 5), transition=ConfChangeTransition.JOINT_EXPLICIT)
        c.run_for(0.5)
        c.conf_change(lead, (ADD, 4))  # still joint: only leaving is allowed
