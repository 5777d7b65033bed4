"""Leader election (Raft §5.2, §5.4.1), PreVote (dissertation §9.6), CheckQuorum (§6.2)."""

from __future__ import annotations

import pytest

from kv.raft.messages import NONE, Message, MessageType, Role
from tests.kv.raft.harness import Cluster


@pytest.mark.parametrize("n", [3, 5])
def test_initial_election_yields_exactly_one_leader_that_everyone_follows(n: int) -> None:
    c = Cluster(range(1, n + 1), seed=n)
    lead = c.elect()
    assert c.leaders() == [lead]
    term = c.nodes[lead].term
    for i, node in c.nodes.items():
        assert node.term == term
        assert node.lead == lead
        if i != lead:
            assert node.role == Role.FOLLOWER
    c.assert_safe()


def test_election_timeouts_are_drawn_from_the_configured_range() -> None:
    c = Cluster((1, 2, 3), seed=1, election_timeout_min=1.0, election_timeout_max=2.0, heartbeat_interval=0.1)
    deadlines = [n.deadline() for n in c.nodes.values()]
    assert all(1.0 <= d <= 2.0 for d in deadlines)
    assert len(set(deadlines)) == 3  # randomized, so split votes are unlikely
    c.run_for(0.99)
    assert c.leaders() == []  # nobody campaigns before the minimum timeout


def test_leader_sends_heartbeats_at_the_configured_interval() -> None:
    c = Cluster((1, 2, 3), seed=2, heartbeat_interval=0.02, election_timeout_min=0.2, election_timeout_max=0.4)
    lead = c.elect()
    start = len(c.messages_of(MessageType.HEARTBEAT))
    c.run_for(1.0)
    beats = len(c.messages_of(MessageType.HEARTBEAT)) - start
    # 2 followers x 1.0 s / 0.02 s = 100 heartbeats, give or take the boundary.
    assert 96 <= beats <= 102
    assert c.leaders() == [lead]


def test_re_election_after_leader_crash_happens_in_a_higher_term() -> None:
    c = Cluster((1, 2, 3, 4, 5), seed=3)
    old = c.elect()
    old_term = c.nodes[old].term
    c.crash(old)
    new = c.elect()
    assert new != old
    assert c.nodes[new].term > old_term
    c.assert_safe()


def test_minority_partition_never_elects_a_leader() -> None:
    c = Cluster((1, 2, 3, 4, 5), seed=4)
    lead = c.elect()
    minority = [i for i in c.nodes if i != lead][:2]
    majority = [i for i in c.nodes if i not in minority]
    c.partition(minority, majority)
    c.run_for(10.0)
    assert not any(c.nodes[i].role == Role.LEADER for i in minority)
    assert [i for i in c.leaders() if i in majority] == [lead]
    c.assert_safe()


def test_vote_requires_candidate_log_at_least_as_up_to_date() -> None:
    c = Cluster((1, 2, 3), seed=5, pre_vote=False, check_quorum=False)
    lead = c.elect()
    lagging = [i for i in c.nodes if i != lead][0]
    c.isolate(lagging)
    for k in range(3):
        c.propose(lead, f"v{k}".encode())
    c.heal()
    # The lagging node campaigns at once; the others hold entries it lacks and refuse it.
    c.crash(lead)
    c.nodes[lagging].campaign()
    c.deliver_all()
    assert c.nodes[lagging].role != Role.LEADER
    resp = [m for m in c.messages_of(MessageType.VOTE_RESP) if m.to == lagging and m.term == c.nodes[lagging].term]
    assert resp and all(m.reject for m in resp)


def test_node_votes_at_most_once_per_term() -> None:
    c = Cluster((1, 2, 3), seed=6, pre_vote=False, check_quorum=False)
    voter = c.nodes[3]
    last = voter.log.last_index()
    # Two candidates with equally up-to-date logs ask for 3's vote in the same term 2.
    for cand in (1, 2):
        voter.step(Message(type=MessageType.VOTE, from_=cand, to=3, term=2, index=last, log_term=1))
    c.process(3)
    answers = [m for m in c.bus if m.from_ == 3 and m.type == MessageType.VOTE_RESP]
    assert [(m.to, m.term, m.reject) for m in answers] == [(1, 2, False), (2, 2, True)]
    assert voter.vote == 1


def test_prevote_keeps_a_rejoining_partitioned_node_from_bumping_the_term() -> None:
    c = Cluster((1, 2, 3), seed=7, pre_vote=True)
    lead = c.elect()
    term = c.nodes[lead].term
    away = [i for i in c.nodes if i != lead][0]
    c.isolate(away)
    c.run_for(5.0)  # many election timeouts pass for the isolated node
    assert c.nodes[away].term == term  # pre-votes failed, so it never incremented its term
    c.heal()
    c.run_for(2.0)
    assert c.leaders() == [lead]
    assert c.nodes[lead].term == term
    assert c.nodes[away].lead == lead
    c.assert_safe()


def test_without_prevote_a_rejoining_node_deposes_the_healthy_leader() -> None:
    c = Cluster((1, 2, 3), seed=7, pre_vote=False, check_quorum=False)
    lead = c.elect()
    term = c.nodes[lead].term
    away = [i for i in c.nodes if i != lead][0]
    c.isolate(away)
    c.run_for(5.0)
    assert c.nodes[away].term > term  # it kept campaigning in new terms
    c.heal()
    c.run_for(2.0)
    assert max(n.term for n in c.nodes.values()) > term  # the cluster's term was bumped
    c.assert_safe()


def test_check_quorum_leader_steps_down_when_it_cannot_reach_a_quorum() -> None:
    c = Cluster((1, 2, 3), seed=8, check_quorum=True, election_timeout_min=0.2, election_timeout_max=0.4)
    lead = c.elect()
    c.isolate(lead)
    c.run_for(0.45)  # at most two check-quorum rounds (every election_timeout_min)
    assert c.nodes[lead].role == Role.FOLLOWER
    assert c.nodes[lead].lead == NONE


def test_without_check_quorum_an_isolated_leader_stays_leader() -> None:
    c = Cluster((1, 2, 3), seed=8, check_quorum=False)
    lead = c.elect()
    c.isolate(lead)
    c.run_for(3.0)
    assert c.nodes[lead].role == Role.LEADER


def test_leader_lease_followers_ignore_vote_requests_while_leader_is_alive() -> None:
    c = Cluster((1, 2, 3), seed=9, pre_vote=False, check_quorum=True)
    lead = c.elect()
    term = c.nodes[lead].term
    rogue = [i for i in c.nodes if i != lead][0]
    # The rogue node cannot hear the leader but the third node can: it campaigns in a new term.
    c.cut_one_way(lead, rogue)
    c.run_for(3.0)
    assert c.nodes[rogue].term > term
    # The follower that hears the leader ignored it, and the leader is undisturbed.
    assert c.leaders() == [lead]
    assert c.nodes[lead].term == term
    c.assert_safe()
