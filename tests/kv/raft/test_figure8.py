"""Raft paper §5.4.2, Figure 8: why a leader must not commit an old term's entry by counting.

Five servers S1..S5. The schedule is the paper's, driven one message at a time:

(a) S1 leads term 2 and replicates its entry at index 2 to S2.
(b) S1 crashes; S5 wins term 3 with votes from S3, S4 and itself and writes a
    different entry at index 2.
(c) S5 crashes; S1 comes back and wins term 4 (its term-3 attempt fails: S3 and
    S4 already voted for S5 there). It replicates the term-2 entry to S3 and S4,
    so the entry is on a majority (S1..S4). The term-4 no-op S1 appended on
    election reaches nobody: every append carrying it is lost, and with one
    entry per message (``max_size_per_msg=1``) the term-2 entry travels alone.
(d) S1 crashes; S5 comes back and wins term 5 (S2..S4 have last term 2 < 3)
    and overwrites index 2 everywhere with its term-3 entry.

A leader that committed the term-2 entry in (c) by counting replicas (teaching
bug ``commit-old-term``) applied an entry that (d) erased. The correct rule
(commit only entries of the current term by counting) leaves it uncommitted.
"""

from __future__ import annotations

from kv.raft.invariants import Property
from kv.raft.messages import MessageType, Role
from tests.kv.raft.harness import ScriptedCluster, carries_term, msg

APP, APP_RESP = MessageType.APP, MessageType.APP_RESP
VOTE, VOTE_RESP = MessageType.VOTE, MessageType.VOTE_RESP

# Data of the two competing entries at index 2 (load_log writes b"<term>/<index>").
OLD_TERM_ENTRY = b"2/2"
S5_ENTRY = b"3/2"


def figure8_b(bugs: frozenset[str] = frozenset()) -> ScriptedCluster:
    """State (b): the logs after S5 took index 2 in term 3; S5 is down."""
    c = ScriptedCluster(
        range(1, 6), seed=8, pre_vote=False, check_quorum=False, max_size_per_msg=1, bugs=bugs
    )
    c.load_log(1, [1, 2], term=2, vote=1, commit=1)
    c.load_log(2, [1, 2], term=2, vote=1, commit=1)
    c.load_log(3, [1], term=3, vote=5, commit=1)
    c.load_log(4, [1], term=3, vote=5, commit=1)
    c.load_log(5, [1, 3], term=3, vote=5, commit=1)
    c.crash(5)
    return c


def elect_by_hand(c: ScriptedCluster, candidate: int, voters: tuple[int, ...]) -> None:
    """One campaign of `candidate`: its vote requests reach `voters`, and their answers come back."""
    c.nodes[candidate].campaign()
    c.process(candidate)
    for v in voters:
        c.deliver_first(msg(VOTE, candidate, v))
    c.drop_where(msg(VOTE, candidate))
    for v in voters:
        c.deliver_first(msg(VOTE_RESP, v, candidate))


def figure8_c(c: ScriptedCluster) -> None:
    """(c): S1 wins term 4 and puts the term-2 entry on S3 and S4, but not its own no-op."""
    elect_by_hand(c, 1, (2, 3, 4))
    assert c.nodes[1].role == Role.CANDIDATE and c.nodes[1].term == 3  # S3, S4 voted for S5 in term 3
    elect_by_hand(c, 1, (2, 3, 4))
    assert c.nodes[1].role == Role.LEADER and c.nodes[1].term == 4
    # S2 and S5 would take the no-op (S2 has index 2): lose those appends.
    c.drop_where(msg(APP, 1, 2))
    c.drop_where(msg(APP, 1, 5))
    # S3 and S4 lack index 2 and reject the no-op; S1 backs off and probes at index 1.
    for f in (3, 4):
        c.deliver_first(msg(APP, 1, f))
        reject = c.deliver_first(msg(APP_RESP, f, 1))
        assert reject.reject
    for f in (3, 4):
        probe = c.deliver_first(msg(APP, 1, f))
        assert [(e.index, e.term) for e in probe.entries] == [(2, 2)]
        c.deliver_first(msg(APP_RESP, f, 1))
        c.drop_where(carries_term(4))  # the no-op that follows is lost too
    assert all(c.nodes[i].log.term(2) == 2 for i in (1, 2, 3, 4))
    assert all(c.nodes[i].log.term(3) is None for i in (2, 3, 4))


def figure8_d(c: ScriptedCluster) -> None:
    """(d): S1 crashes with its messages in flight; S5 restarts and wins term 5."""
    c.crash(1)
    c.bus.clear()
    c.restart(5)
    elect_by_hand(c, 5, (2, 3, 4))  # term 4: S2..S4 voted for S1 there
    assert c.nodes[5].role == Role.FOLLOWER
    elect_by_hand(c, 5, (2, 3, 4))
    assert c.nodes[5].role == Role.LEADER and c.nodes[5].term == 5
    c.deliver_all()


def figure8(bugs: frozenset[str] = frozenset()) -> ScriptedCluster:
    """The whole schedule (a)-(d)."""
    c = figure8_b(bugs)
    figure8_c(c)
    figure8_d(c)
    return c


def test_old_term_entry_on_a_majority_is_not_committed_by_counting() -> None:
    c = figure8_b()
    figure8_c(c)
    leader = c.nodes[1]
    assert leader.tracker.committed() == 2  # a majority (S1..S4) holds index 2 ...
    assert leader.log.committed == 1  # ... yet it is of term 2, not 4: not committed
    assert c.applied_data(1) == [b"1/1"]
    c.assert_safe()


def test_figure8_later_leader_overwrites_only_an_uncommitted_entry() -> None:
    c = figure8()
    for i in (2, 3, 4, 5):
        assert [(e.index, e.term) for e in c.nodes[i].log.all_entries()] == [(1, 1), (2, 3), (3, 5)]
        assert c.applied_data(i) == [b"1/1", S5_ENTRY]
    c.assert_safe()


def test_figure8_with_commit_old_term_commits_the_entry_then_loses_it() -> None:
    c = figure8_b(frozenset({"commit-old-term"}))
    figure8_c(c)
    assert c.nodes[1].log.committed == 2
    assert c.applied_data(1) == [b"1/1", OLD_TERM_ENTRY]  # applied: clients were told it happened
    c.assert_safe()  # nothing is wrong *yet*
    figure8_d(c)
    assert c.applied_data(5) == [b"1/1", S5_ENTRY]  # the committed entry is gone
    found = {v.property for v in c.violations}
    assert Property.LEADER_COMPLETENESS in found  # S5 led term 5 without the committed entry
    assert Property.STATE_MACHINE_SAFETY in found  # index 2 applied as two different entries
    sms = [str(v) for v in c.violations if v.property == Property.STATE_MACHINE_SAFETY]
    assert "node 5 applied (index 2, term 3) but node 1 applied (index 2, term 2) there" in sms[0]


def test_figure8_e_current_term_entry_on_a_majority_commits_the_old_one_with_it() -> None:
    # Paper (e): had S1 replicated its term-4 no-op to a majority before crashing, that
    # no-op commits, taking index 2 with it, and S5 can no longer win an election.
    c = figure8_b()
    elect_by_hand(c, 1, (2, 3, 4))
    elect_by_hand(c, 1, (2, 3, 4))
    c.drop_where(msg(APP, 1, 4))  # S4 stays behind; S2, S3 get everything
    c.drop_where(msg(APP, 1, 5))
    c.deliver_all()
    assert c.nodes[1].log.committed == 3
    assert c.applied_data(1) == [b"1/1", OLD_TERM_ENTRY]
    c.crash(1)
    c.bus.clear()
    c.restart(5)
    for _ in range(3):
        c.nodes[5].campaign()
        c.deliver_all()
        assert c.nodes[5].role != Role.LEADER  # S2, S3 hold a term-4 entry: S5's log is behind
    c.assert_safe()
