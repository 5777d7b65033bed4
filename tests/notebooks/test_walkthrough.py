"""The notebooks' public helpers in sim (walkthrough, walkthrough_etcd, walkthrough_plots), as specifications."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from kv import api, recipes
from kv.raft import MessageType, Role
from kv.raft.invariants import Property
from sim.walkthrough import DOWN, RaftWorld
from sim.walkthrough_etcd import EtcdWorld, PrefixTracker
from sim.walkthrough_plots import Table, log_grids, role_timeline, sequence_diagram, span_figure

APP, APP_RESP = MessageType.APP, MessageType.APP_RESP


def test_raft_world_elects_one_known_leader_and_records_the_election() -> None:
    w = RaftWorld(range(1, 6), seed=3)
    assert w.run_until(lambda: w.known_leader() is not None, timeout=5.0)
    leader = w.known_leader()
    assert [r.node for r in w.elections()] == [leader]
    assert any(f.message.type == MessageType.VOTE and f.outcome == "delivered" for f in w.flights)
    assert all(r.persisted_at >= r.time for r in w.readies)
    assert not w.violations


def test_raft_world_is_a_function_of_its_seed() -> None:
    def run(seed: int) -> list[tuple[float, int, str, int]]:
        w = RaftWorld(range(1, 4), seed=seed)
        w.run_to(1.0)
        w.crash(w.known_leader() or 1)
        w.run_to(2.0)
        return [(r.time, r.node, r.role, r.term) for r in w.roles]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_a_committed_proposal_is_applied_everywhere_and_survives_the_leaders_crash() -> None:
    w = RaftWorld((1, 2, 3), seed=1)
    w.run_until(lambda: w.known_leader() is not None)
    leader = w.known_leader()
    assert leader is not None and w.propose(leader, b"x=1")
    w.run_for(0.05)
    assert all(w.applied_data(i) == [b"x=1"] for i in w.ids)
    w.crash(leader)
    w.run_for(1.0)
    w.restart(leader)
    w.run_for(1.0)
    assert w.applied_data(leader) == [b"x=1"]
    assert w.roles[-1].role != DOWN and not w.violations


def test_an_isolated_leader_without_check_quorum_stays_leader_and_its_write_is_overwritten() -> None:
    w = RaftWorld(range(1, 6), seed=1, check_quorum=False)
    w.run_to(1.0)
    old = w.known_leader()
    assert old is not None
    w.isolate(old)
    assert w.propose(old, b"lost")
    w.run_to(3.0)
    assert w.nodes[old].role == Role.LEADER and w.leader() != old  # two leaders, two terms
    w.heal()
    w.run_to(4.0)
    assert all(b"lost" not in w.applied_data(i) for i in w.ids)
    assert not w.violations


def figure8_c(bugs: tuple[str, ...]) -> RaftWorld:
    w = RaftWorld(range(1, 6), seed=8, pre_vote=False, check_quorum=False, max_size_per_msg=1, bugs=bugs)
    w.load_log(1, [1, 2], term=2, vote=1, commit=1)
    w.load_log(2, [1, 2], term=2, vote=1, commit=1)
    w.load_log(3, [1], term=3, vote=5, commit=1)
    w.load_log(4, [1], term=3, vote=5, commit=1)
    w.load_log(5, [1, 3], term=3, vote=5, commit=1)
    w.crash(5)
    assert not w.hold_election(1, voters=(2, 3, 4))
    assert w.hold_election(1, voters=(2, 3, 4))
    w.drop(APP, from_=1, to=2)
    w.drop(APP, from_=1, to=5)
    for f in (3, 4):
        w.deliver(APP, 1, f)
        w.deliver(APP_RESP, f, 1)
    for f in (3, 4):
        w.deliver(APP, 1, f)
        w.deliver(APP_RESP, f, 1)
        w.drop(APP, where=lambda m: any(e.term == 4 for e in m.entries))
    return w


def figure8_d(w: RaftWorld) -> None:
    w.crash(1)
    w.drop()
    w.restart(5)
    assert not w.hold_election(5, voters=(2, 3, 4))
    assert w.hold_election(5, voters=(2, 3, 4))
    w.deliver_all()


def test_figure8_by_hand_the_core_does_not_commit_the_old_term_entry() -> None:
    w = figure8_c(())
    assert w.log_terms(3) == [1, 2] and w.commit_index(1) == 1
    figure8_d(w)
    assert w.log_terms(2) == [1, 3, 5] and not w.violations


def test_figure8_by_hand_the_commit_old_term_bug_loses_a_committed_entry() -> None:
    w = figure8_c(("commit-old-term",))
    assert w.commit_index(1) == 2 and w.applied_data(1) == [b"1/1", b"2/2"]
    figure8_d(w)
    found = {p for p, _, _ in w.distinct_violations()}
    assert {Property.LEADER_COMPLETENESS.value, Property.STATE_MACHINE_SAFETY.value} <= found


def test_deliver_names_what_is_on_the_wire_when_nothing_matches() -> None:
    w = RaftWorld((1, 2, 3), seed=1)
    with pytest.raises(LookupError, match="on the wire"):
        w.deliver(MessageType.VOTE, 1, 2)


def test_raft_world_figures_are_figures_with_titles() -> None:
    w = RaftWorld((1, 2, 3), seed=1)
    w.run_to(0.5)
    for fig in (role_timeline(w, title="roles"), sequence_diagram(w, 0.0, 0.5, title="messages"),
                log_grids([("logs", {f"n{i}": w.log_terms(i) for i in w.ids})])):
        assert isinstance(fig, Figure)
        assert fig.axes[0].get_title() or fig.get_suptitle()


def test_table_renders_html_and_text() -> None:
    t = Table(["a", "b"], [[1, 2.5], ["<x>", None]], caption="c")
    assert "<th>a</th>" in t._repr_html_() and "&lt;x&gt;" in t._repr_html_()
    assert repr(t).splitlines()[0] == "c"


def test_etcd_world_tracker_sees_a_registration_and_its_lease_expiry() -> None:
    w = EtcdWorld(seed=1, nodes=3)
    w.run_to(2.0)
    tracker = PrefixTracker(w, "tracker", b"svc/")

    def instance() -> object:
        s = yield from w.session("i1", 1, ttl=2)
        yield from w.recipe(1, recipes.register(b"svc", b"i1", b"addr", s.lease))
        yield w.env.timeout(0.5)
        w.crash(s)

    w.start("tracker", tracker.run(member=2, until=8.0), at=2.1)
    w.start("i1", instance(), at=2.5)
    w.run_to(8.0)
    seen = [(k, v) for _, k, v, _ in tracker.changes]
    assert seen == [(b"svc/i1", b"addr"), (b"svc/i1", None)]
    assert w.stored(b"svc/") == {}


def test_etcd_world_call_raises_the_members_error() -> None:
    w = EtcdWorld(seed=1, nodes=3)
    w.run_to(2.0)
    errors: list[BaseException] = []

    def client() -> object:
        try:
            yield from w.call(1, api.LeaseRevokeRequest(ID=12345))
        except Exception as e:  # noqa: BLE001 - the test looks at which error it was
            errors.append(e)

    w.start("client", client())
    w.run_to(3.0)
    assert [type(e).__name__ for e in errors] == ["ErrLeaseNotFound"]


def test_span_figure_has_a_legend_entry_per_kind() -> None:
    fig = span_figure([("a", 0, 1, "x"), ("b", 1, 2, "y")], marks=[("a", 0.5, "m")], title="t", ylabel="lane")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["x", "y", "m"]
