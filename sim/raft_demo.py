"""A narrated Raft run: five RaftNodes in a tiny simpy world.

The scenario, in virtual time: the cluster boots and elects a leader; clients
propose a few entries; the leader is killed (it loses what it had not fsynced)
and the others elect a new one; the old leader restarts from its disk and
catches up; then the leader is partitioned away, the majority elects another
leader and keeps committing, and the partition heals. Every role change, kill,
restart, partition and commit is printed as a timeline, and Raft's safety
properties (paper Figure 3) are checked throughout by
``kv.raft.invariants.SafetyChecker``. Exit status 0 iff no property broke and
every node ends with the same applied log.

The member driver is DESIGN.md's loop, written as a simpy generator: wait for a
message or the node's deadline, tick, feed it in, then persist / send / apply
each Ready. The full simulator (``python -m sim run``) adds the etcd data
model, clients, nemeses and the linearizability checker on top of the same loop.

    python -m sim.raft_demo [--seed N] [--bug NAME]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Generator
from dataclasses import dataclass, field

import simpy

from kv.bugs import TeachingBug
from kv.raft.config import RaftConfig
from kv.raft.invariants import Property, SafetyChecker, Violation
from kv.raft.log import CommittedEntryConflict
from kv.raft.messages import EntryType, HardState, Message, Role, Snapshot
from kv.raft.node import RaftNode, Ready
from kv.raft.storage import MemoryStorage
from kv.errors import ProposalDropped

RANDOM_SEED = 1
NODES = (1, 2, 3, 4, 5)
LATENCY = (0.001, 0.005)  # one-way network delay, uniform, seconds
FSYNC = 0.002  # seconds a Ready with must_sync spends in fsync before its messages go out
PROPOSALS_PER_PHASE = 3
PHASE_TIMEOUT = 5.0  # virtual seconds a phase may take to reach its goal

Event = simpy.events.Event
Proc = Generator[Event, object, None]


@dataclass
class Disk:
    """Writes in order; the first `synced` survive a crash (a restart replays them)."""

    writes: list[tuple[str, object]] = field(default_factory=list)
    synced: int = 0

    def record(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.writes.append(("snap", rd.snapshot))
        if rd.entries:
            self.writes.append(("ents", rd.entries))
        if rd.hard_state is not None:
            self.writes.append(("hs", rd.hard_state))
        if rd.must_sync:
            self.synced = len(self.writes)

    def crash(self) -> MemoryStorage:
        del self.writes[self.synced :]
        st = MemoryStorage()
        for kind, payload in self.writes:
            if kind == "hs":
                assert isinstance(payload, HardState)
                st.set_hard_state(payload)
            elif kind == "ents":
                assert isinstance(payload, tuple)
                st.append(payload)
            else:
                assert isinstance(payload, Snapshot)
                st.apply_snapshot(payload)
        return st


class DemoWorld:
    """The shared state the actors touch: nodes, their disks and inboxes, the cut links."""

    def __init__(self, env: simpy.Environment, seed: int, bugs: frozenset[TeachingBug]) -> None:
        self.env = env
        self.seed = seed
        self.bugs = bugs
        self.net_rng = random.Random(f"{seed}/network")
        self.nodes: dict[int, RaftNode] = {}
        self.disks: dict[int, Disk] = {i: Disk() for i in NODES}
        self.inbox: dict[int, list[Message]] = {i: [] for i in NODES}
        self.proposals: dict[int, list[bytes]] = {i: [] for i in NODES}
        self.wake: dict[int, Event] = {}
        self.drivers: dict[int, simpy.Process] = {}
        self.incarnation: dict[int, int] = {i: 0 for i in NODES}
        self.cut: set[tuple[int, int]] = set()
        self.applied: dict[int, list[bytes]] = {i: [] for i in NODES}
        self.checker = SafetyChecker()
        self.violations: list[Violation] = []
        self.roles: dict[int, tuple[Role, int]] = {}

    def say(self, text: str) -> None:
        print(f"{self.env.now:8.3f}s  {text}")

    def start(self, node_id: int, storage: MemoryStorage) -> None:
        rng = random.Random(f"{self.seed}/node{node_id}/{self.incarnation[node_id]}")
        cfg = RaftConfig(id=node_id, bugs=self.bugs)
        self.nodes[node_id] = RaftNode(cfg, storage, rng, initial_voters=NODES, now=self.env.now)
        self.applied[node_id] = []
        self.drivers[node_id] = self.env.process(member_driver(self.env, self, node_id, storage))

    def kill(self, node_id: int) -> None:
        self.drivers.pop(node_id).interrupt("killed")
        del self.nodes[node_id]
        self.inbox[node_id].clear()
        self.proposals[node_id].clear()
        self.roles.pop(node_id, None)

    def restart(self, node_id: int) -> None:
        self.incarnation[node_id] += 1
        self.checker.node_restarted(node_id)
        self.start(node_id, self.disks[node_id].crash())

    def leader(self) -> int | None:
        """The live leader of the highest term, if any."""
        leaders = [(n.term, i) for i, n in self.nodes.items() if n.role == Role.LEADER]
        return max(leaders)[1] if leaders else None

    def send(self, m: Message) -> None:
        if (m.from_, m.to) in self.cut:
            return
        delay = self.net_rng.uniform(*LATENCY)
        self.env.process(message_in_flight(self.env, self, m, delay))

    def check(self) -> None:
        self.violations += self.checker.observe(self.nodes)


def message_in_flight(env: simpy.Environment, world: DemoWorld, m: Message, delay: float) -> Proc:
    """One message crossing the network: it arrives after `delay` unless its link was cut meanwhile."""
    yield env.timeout(delay)
    if (m.from_, m.to) in world.cut or m.to not in world.nodes:
        return
    world.inbox[m.to].append(m)
    wake = world.wake.get(m.to)
    if wake is not None and not wake.triggered:
        wake.succeed()


def member_driver(env: simpy.Environment, world: DemoWorld, node_id: int, storage: MemoryStorage) -> Proc:
    """DESIGN.md's loop for one node: wait for a message or the deadline, feed it in, drain Ready."""
    node = world.nodes[node_id]
    disk = world.disks[node_id]
    try:
        while True:
            node.tick(env.now)
            inbox = world.inbox[node_id]
            proposals = world.proposals[node_id]
            while proposals:
                data = proposals.pop(0)
                try:
                    node.propose(data)
                except ProposalDropped as e:
                    world.say(f"n{node_id} drops proposal {data.decode()!r}: {e}")
            while inbox:
                m = inbox.pop(0)
                try:
                    node.step(m)
                except CommittedEntryConflict as e:
                    world.violations.append(Violation(Property.STATE_MACHINE_SAFETY, f"node {node_id}: {e}"))
            narrate_role(world, node_id, node)
            yield from drain(env, world, node_id, node, disk, storage)
            if not inbox and not proposals:
                world.wake[node_id] = env.event()
                wait = max(0.0, node.deadline() - env.now)
                yield world.wake[node_id] | env.timeout(wait)
    except simpy.Interrupt:
        return


def drain(
    env: simpy.Environment, world: DemoWorld, node_id: int, node: RaftNode, disk: Disk, storage: MemoryStorage
) -> Proc:
    while (rd := node.ready()) is not None:
        narrate_role(world, node_id, node)
        storage.save(rd.hard_state, rd.entries, rd.snapshot)
        disk.record(rd)
        if rd.must_sync:
            yield env.timeout(FSYNC)  # nothing is sent before the fsync completes
        for m in rd.messages:
            world.send(m)
        for e in rd.committed_entries:
            if e.type == EntryType.NORMAL and e.data:
                world.applied[node_id].append(e.data)
                if node.role == Role.LEADER:
                    world.say(f"n{node_id} applies committed entry {e.index} ({e.data.decode()})")
        world.violations += world.checker.observe_applied(node_id, rd.committed_entries)
        node.advance(rd)
        world.check()


def narrate_role(world: DemoWorld, node_id: int, node: RaftNode) -> None:
    before = world.roles.get(node_id)
    now = (node.role, node.term)
    if before == now:
        return
    world.roles[node_id] = now
    if node.role == Role.LEADER:
        world.say(f"n{node_id} becomes LEADER of term {node.term}")
    elif before is not None and before[0] == Role.LEADER:
        world.say(f"n{node_id} steps down: now {node.role.value} in term {node.term}")


def wait_for_leader(env: simpy.Environment, world: DemoWorld, among: set[int] | None = None) -> Generator[Event, object, int]:
    deadline = env.now + PHASE_TIMEOUT
    while env.now < deadline:
        ids = among if among is not None else set(world.nodes)
        leaders = [(world.nodes[i].term, i) for i in ids if i in world.nodes and world.nodes[i].role == Role.LEADER]
        if leaders:
            return max(leaders)[1]
        yield env.timeout(0.01)
    raise RuntimeError(f"no leader within {PHASE_TIMEOUT}s")


def propose_some(env: simpy.Environment, world: DemoWorld, leader: int, tag: str) -> Proc:
    """Propose a few entries at `leader` and wait until every node it can reach applied them."""
    for k in range(PROPOSALS_PER_PHASE):
        data = f"{tag}-{k}".encode()
        world.say(f"client proposes {data.decode()!r} to n{leader}")
        # Proposals go through the driver: the node may be between ready() and advance().
        world.proposals[leader].append(data)
        wake = world.wake.get(leader)
        if wake is not None and not wake.triggered:
            wake.succeed()
        yield env.timeout(0.02)
    yield env.timeout(0.2)


def scenario(env: simpy.Environment, world: DemoWorld) -> Proc:
    """The narrated story: boot, elect, replicate, kill the leader, partition the leader, heal."""
    world.say(f"boot: {len(NODES)} nodes {list(NODES)}, each with an empty disk")
    for i in NODES:
        world.start(i, MemoryStorage())
    leader = yield from wait_for_leader(env, world)
    yield from propose_some(env, world, leader, "a")

    world.say(f"KILL n{leader} (the leader): it loses everything it had not fsynced")
    world.kill(leader)
    killed = leader
    leader = yield from wait_for_leader(env, world)
    yield from propose_some(env, world, leader, "b")
    world.say(f"RESTART n{killed} from its disk")
    world.restart(killed)
    n = world.nodes[killed]
    world.say(f"n{killed} restarted with term {n.term}, vote {n.vote}, log up to index {n.log.last_index()}, "
              f"commit {n.log.committed}")
    yield env.timeout(0.5)

    others = set(NODES) - {leader}
    world.say(f"PARTITION n{leader} (the leader) away from {sorted(others)}")
    for o in others:
        world.cut |= {(leader, o), (o, leader)}
    isolated = leader
    leader = yield from wait_for_leader(env, world, among=others)
    yield from propose_some(env, world, leader, "c")
    n = world.nodes[isolated]
    world.say(f"n{isolated}, cut off, is {n.role.value} in term {n.term} (CheckQuorum: a leader that "
              "cannot hear a majority steps down)")
    world.say("HEAL the partition")
    world.cut.clear()
    yield env.timeout(1.0)
    leader = yield from wait_for_leader(env, world)
    yield from propose_some(env, world, leader, "d")
    yield env.timeout(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.raft_demo",
        description="Run a narrated 5-node Raft scenario (election, leader crash, partition, heal) "
        "in a simpy world and check Raft's safety properties.",
    )
    parser.add_argument("--seed", type=int, default=RANDOM_SEED, help="seed for every random choice (default %(default)s)")
    parser.add_argument(
        "--bug",
        action="append",
        default=[],
        metavar="NAME",
        help="switch on a Raft teaching bug (" + ", ".join(b.value for b in TeachingBug) + "); repeatable",
    )
    args = parser.parse_args(argv)
    bugs = frozenset(TeachingBug(b) for b in args.bug)
    print(f"seed={args.seed} nodes={len(NODES)} latency={LATENCY[0]}-{LATENCY[1]}s fsync={FSYNC}s "
          f"bugs={sorted(b.value for b in bugs) or 'none'}")
    env = simpy.Environment()
    world = DemoWorld(env, args.seed, bugs)
    story = env.process(scenario(env, world))
    env.run(until=story)

    logs = {i: world.applied[i] for i in sorted(world.nodes)}
    longest = max(logs.values(), key=len)
    converged = all(longest[: len(v)] == v for v in logs.values()) and all(len(v) == len(longest) for v in logs.values())
    print()
    print("applied entries per node: " + ", ".join(f"n{i}={len(v)}" for i, v in logs.items()))
    print(f"all nodes applied the same log: {'yes' if converged else 'NO'}")
    if world.violations:
        print(f"SafetyChecker: {len(world.violations)} violation(s)")
        for v in world.violations[:10]:
            print(f"  - {v}")
    else:
        print("SafetyChecker: election safety, log matching, leader completeness, state machine safety, "
              "monotonic commit: all hold")
    ok = converged and not world.violations
    print("verdict:", "SAFE" if ok else f"UNSAFE (replay: python -m sim.raft_demo --seed {args.seed}"
          + "".join(f" --bug {b}" for b in args.bug) + ")")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
