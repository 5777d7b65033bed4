"""The Raft-level teaching bugs: each breaks a named safety property on a schedule the correct core survives.

For every bug the same in-memory schedule runs twice: with the correct core the
SafetyChecker stays silent (and the core visibly does the right thing); with
the bug switched on it reports the property the bug's description names
(kv/bugs.py, DESIGN.md "Teaching bugs").
"""

from __future__ import annotations

import pytest

from kv.bugs import TeachingBug, parse_bugs
from kv.errors import ConfigError
from kv.raft.config import RaftConfig
from kv.raft.invariants import Property
from kv.raft.messages import MessageType, Role
from tests.kv.raft.harness import ScriptedCluster, msg
from tests.kv.raft.test_figure8 import OLD_TERM_ENTRY, figure8

RAFT_BUGS = ("commit-old-term", "forget-vote", "no-log-check", "ack-before-persist")


def properties(c: ScriptedCluster) -> set[Property]:
    return {v.property for v in c.violations}


# --- configuration ------------------------------------------------------------


def test_no_teaching_bug_is_on_by_default() -> None:
    assert RaftConfig(id=1).bugs == frozenset()
    c = ScriptedCluster((1, 2, 3))
    assert all(n.config.bugs == frozenset() for n in c.nodes.values())


@pytest.mark.parametrize("name", RAFT_BUGS)
def test_raft_bug_names_switch_on_exactly_that_bug(name: str) -> None:
    cfg = RaftConfig(id=1, bugs=frozenset({name}))  # type: ignore[arg-type]  # names are accepted
    assert cfg.bugs == frozenset({TeachingBug(name)})
    assert cfg.has_bug(TeachingBug(name))
    assert [b for b in TeachingBug if cfg.has_bug(b)] == [TeachingBug(name)]


def test_unknown_bug_name_raises_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown teaching bug 'commit-new-term' \(known: commit-old-term, "):
        RaftConfig(id=1, bugs=frozenset({"commit-new-term"}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown teaching bug 'FORGET_VOTE'"):
        parse_bugs(["FORGET_VOTE"])  # the enum's value is the name, not its Python identifier


def test_every_raft_bug_description_names_the_rule_it_breaks() -> None:
    assert "§5.4.2" in TeachingBug.COMMIT_OLD_TERM.description
    assert "Election Safety" in TeachingBug.FORGET_VOTE.description
    assert "Leader Completeness" in TeachingBug.NO_LOG_CHECK.description
    assert "fsync" in TeachingBug.ACK_BEFORE_PERSIST.description


# --- commit-old-term (Raft §5.4.2, Figure 8) -----------------------------------


def test_commit_old_term_loses_a_committed_entry_in_figure8() -> None:
    correct = figure8()
    correct.assert_safe()
    assert OLD_TERM_ENTRY not in correct.applied_data(5)
    buggy = figure8(frozenset({"commit-old-term"}))
    assert {Property.LEADER_COMPLETENESS, Property.STATE_MACHINE_SAFETY} <= properties(buggy)


# --- forget-vote (Raft §5.2, Figure 2: votedFor is persistent) -------------------


def forget_vote_schedule(bugs: frozenset[str]) -> ScriptedCluster:
    """Node 2 votes for 1 in term 2, crashes and restarts, then 3 asks it for its vote in term 2."""
    c = ScriptedCluster((1, 2, 3), seed=31, pre_vote=False, check_quorum=False, bugs=bugs)
    c.nodes[1].campaign()
    c.process(1)
    c.drop_where(msg(MessageType.VOTE, 1, 3))  # node 3 stays in term 1
    c.deliver_first(msg(MessageType.VOTE, 1, 2))
    c.deliver_first(msg(MessageType.VOTE_RESP, 2, 1))
    assert c.nodes[1].role == Role.LEADER and c.nodes[1].term == 2
    c.crash(2)
    c.restart(2)
    c.nodes[3].campaign()  # term 1 -> 2, the term node 1 already leads
    c.process(3)
    c.drop_where(msg(MessageType.VOTE, 3, 1))
    c.deliver_first(msg(MessageType.VOTE, 3, 2))
    c.deliver_first(msg(MessageType.VOTE_RESP, 2, 3))
    return c


def test_restarted_voter_remembers_its_vote_and_refuses_a_second_candidate() -> None:
    c = forget_vote_schedule(frozenset())
    assert (c.nodes[2].term, c.nodes[2].vote) == (2, 1)
    assert c.nodes[3].role == Role.CANDIDATE
    assert c.leaders() == [1]
    c.assert_safe()


def test_forget_vote_elects_two_leaders_in_one_term() -> None:
    c = forget_vote_schedule(frozenset({"forget-vote"}))
    assert c.leaders() == [1, 3]
    assert {c.nodes[1].term, c.nodes[3].term} == {2}
    assert Property.ELECTION_SAFETY in properties(c)
    assert "nodes 1 and 3 were both leader in term 2" in str(c.violations[0])


# --- no-log-check (Raft §5.4.1: the up-to-date check on votes) ---------------------


def no_log_check_schedule(bugs: frozenset[str]) -> tuple[ScriptedCluster, int]:
    """A node that missed three committed entries campaigns once their leader is down."""
    c = ScriptedCluster((1, 2, 3), seed=32, pre_vote=False, check_quorum=False, bugs=bugs)
    lead = c.elect()
    lagging = next(i for i in sorted(c.nodes) if i != lead)
    c.isolate(lagging)
    for k in range(3):
        c.propose(lead, f"v{k}".encode())
    assert c.applied_data(lead) == [b"v0", b"v1", b"v2"]
    c.heal()
    c.crash(lead)
    c.nodes[lagging].campaign()
    c.deliver_all()
    return c, lagging


def test_voter_refuses_a_candidate_missing_committed_entries() -> None:
    c, lagging = no_log_check_schedule(frozenset())
    assert c.nodes[lagging].role != Role.LEADER
    c.run_for(2.0)  # the up-to-date node wins instead and catches the lagging one up
    assert c.applied_data(lagging) == [b"v0", b"v1", b"v2"]
    c.assert_safe()


def test_no_log_check_elects_a_leader_missing_committed_entries() -> None:
    c, lagging = no_log_check_schedule(frozenset({"no-log-check"}))
    assert c.nodes[lagging].role == Role.LEADER
    assert Property.LEADER_COMPLETENESS in properties(c)
    c.run_for(2.0)  # it then overwrites them and applies its own entry at their index
    assert Property.STATE_MACHINE_SAFETY in properties(c)


# --- ack-before-persist (Figure 2: respond/count only after stable storage) ----------


def ack_before_persist_schedule(bugs: frozenset[str]) -> tuple[ScriptedCluster, int, bool]:
    """The leader commits b"x" with one follower, crashes, and the other follower campaigns.

    Returns the cluster, the follower that campaigned and whether the leader still
    had x after its restart.
    """
    c = ScriptedCluster((1, 2, 3), seed=33, pre_vote=False, check_quorum=False, bugs=bugs)
    lead = c.elect()
    _, behind = [i for i in sorted(c.nodes) if i != lead]
    c.cut(lead, behind)
    c.propose(lead, b"x")
    assert c.applied_data(lead) == [b"x"]  # committed by the leader's copy + one follower
    c.crash(lead)
    c.heal()
    c.restart(lead)
    kept_x = any(e.data == b"x" for e in c.nodes[lead].log.all_entries())
    c.nodes[behind].campaign()
    c.deliver_all()
    return c, behind, kept_x


def test_leader_entry_is_durable_before_it_counts_toward_commit() -> None:
    c, behind, kept_x = ack_before_persist_schedule(frozenset())
    assert kept_x  # the crash lost nothing: x had been fsynced before it counted
    assert c.nodes[behind].role != Role.LEADER  # both others hold x; the behind node cannot win
    c.run_for(2.0)
    assert all(c.applied_data(i) == [b"x"] for i in c.nodes)
    c.assert_safe()


def test_ack_before_persist_loses_a_committed_entry_in_a_crash() -> None:
    c, behind, kept_x = ack_before_persist_schedule(frozenset({"ack-before-persist"}))
    assert not kept_x  # x was never fsynced on the leader
    assert c.nodes[behind].role == Role.LEADER  # the restarted leader voted for a log without x
    c.run_for(2.0)
    assert b"x" not in c.applied_data(behind)
    assert {Property.LEADER_COMPLETENESS, Property.STATE_MACHINE_SAFETY} <= properties(c)
