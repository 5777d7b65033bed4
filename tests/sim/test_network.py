"""The network: reachability graph, named cuts, FIFO links, loss, duplication, reordering."""

from __future__ import annotations

import random

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from kv.raft.messages import Message, MessageType
from sim.distributions import Latency
from sim.network import LinkFaults, Network

NODES = (1, 2, 3, 4, 5)


def make(
    seed: int = 0, latency: str = "uniform:0.001:0.010", faults: LinkFaults = LinkFaults()
) -> tuple[simpy.Environment, Network, list[tuple[float, Message]]]:
    env = simpy.Environment()
    got: list[tuple[float, Message]] = []
    net = Network(env, NODES, random.Random(seed), Latency.parse(latency), lambda m: got.append((env.now, m)), faults)
    return env, net, got


def msg(a: int, b: int, i: int = 0) -> Message:
    return Message(type=MessageType.APP, from_=a, to=b, index=i)


@given(seed=st.integers(0, 10_000), n=st.integers(1, 40))
@settings(max_examples=50)
def test_messages_on_one_link_arrive_in_the_order_sent(seed: int, n: int) -> None:
    env, net, got = make(seed)
    rng = random.Random(seed)

    def sender(env: simpy.Environment):
        for i in range(n):
            net.send(msg(1, 2, i))
            yield env.timeout(rng.uniform(0, 0.003))

    env.process(sender(env))
    env.run()
    assert [m.index for _, m in got] == list(range(n))


def test_every_message_is_delayed_by_a_latency_sample() -> None:
    env, net, got = make(latency="constant:0.004")
    net.send(msg(1, 2))
    env.run()
    assert got[0][0] == 0.004


def test_a_partition_blocks_both_directions_across_groups_only() -> None:
    env, net, got = make()
    net.cut_between("p", [[1, 2], [3, 4, 5]])
    for a in NODES:
        for b in NODES:
            if a != b:
                net.send(msg(a, b))
    env.run()
    pairs = {(m.from_, m.to) for _, m in got}
    assert pairs == {(1, 2), (2, 1)} | {(a, b) for a in (3, 4, 5) for b in (3, 4, 5) if a != b}
    assert net.components() == [[1, 2], [3, 4, 5]]


def test_a_one_way_cut_blocks_one_direction() -> None:
    env, net, got = make()
    net.cut("one-way", [(1, 2)])
    net.send(msg(1, 2))
    net.send(msg(2, 1))
    env.run()
    assert [(m.from_, m.to) for _, m in got] == [(2, 1)]


def test_a_cut_made_while_a_message_is_in_flight_drops_it() -> None:
    env, net, got = make(latency="constant:0.010")
    net.send(msg(1, 2))

    def cutter(env: simpy.Environment):
        yield env.timeout(0.005)
        net.cut("late", [(1, 2)])

    env.process(cutter(env))
    env.run()
    assert got == [] and net.stats.dropped_cut == 1


def test_healing_one_cut_leaves_the_others_in_place() -> None:
    env, net, got = make()
    net.cut("a", [(1, 2)])
    net.cut("b", [(1, 3)])
    net.heal("a")
    assert net.reachable(1, 2) and not net.reachable(1, 3)
    net.heal()
    assert all(net.reachable(a, b) for a in NODES for b in NODES if a != b)


def test_total_loss_drops_everything_and_counts_it() -> None:
    env, net, got = make(faults=LinkFaults(loss=1.0))
    for i in range(10):
        net.send(msg(1, 2, i))
    env.run()
    assert got == [] and net.stats.dropped_loss == 10


def test_certain_duplication_delivers_every_message_twice() -> None:
    env, net, got = make(faults=LinkFaults(duplicate=1.0))
    for i in range(5):
        net.send(msg(1, 2, i))
    env.run()
    assert sorted(m.index for _, m in got) == sorted(list(range(5)) * 2)


def test_reordering_delivers_everything_but_not_in_order() -> None:
    env, net, got = make(seed=3, faults=LinkFaults(reorder=0.5))
    for i in range(50):
        net.send(msg(1, 2, i))
    env.run()
    order = [m.index for _, m in got]
    assert sorted(order) == list(range(50))
    assert order != list(range(50))


def test_set_faults_none_restores_the_baseline_rates() -> None:
    env, net, got = make(faults=LinkFaults(loss=0.1))
    net.set_faults(LinkFaults(loss=0.9))
    net.set_faults(None)
    assert net.faults == LinkFaults(loss=0.1)


def test_a_node_added_later_is_reachable_both_ways() -> None:
    env, net, got = make()
    net.cut("p", [(1, 2)])
    net.add_node(9)
    assert net.reachable(9, 1) and net.reachable(1, 9) and not net.reachable(1, 2)


@given(seed=st.integers(0, 1000))
@settings(max_examples=20)
def test_same_seed_gives_the_same_deliveries(seed: int) -> None:
    runs = []
    for _ in range(2):
        env, net, got = make(seed, faults=LinkFaults(loss=0.2, duplicate=0.2, reorder=0.2))
        for i in range(30):
            net.send(msg(1 + i % 5, 1 + (i + 1) % 5, i))
        env.run()
        runs.append([(t, m.index) for t, m in got])
    assert runs[0] == runs[1]
