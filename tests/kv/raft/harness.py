"""An in-memory, deterministic network of RaftNodes for scenario and property tests.

Shaped like etcd-io/raft's test ``network``: messages queue on one bus and are
delivered in order by ``deliver_all`` (or one at a time, picked by a test);
``drop``/``cut``/``isolate``/``heal`` edit who can reach whom. No simpy here:
time moves only when a test calls ``advance_to``/``run_for``.

Each node has a small *disk* that records what the driver persisted and which
part was fsynced (a Ready with ``must_sync`` syncs everything before it), so
``crash`` loses exactly the unsynced writes, and ``restart`` rebuilds the node
from what its disk kept.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import msgpack

from kv.errors import ProposalDropped
from kv.raft.config import RaftConfig
from kv.raft.invariants import Property, SafetyChecker, Violation
from kv.raft.log import CommittedEntryConflict
from kv.raft.messages import (
    NONE,
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Role,
    Snapshot,
)
from kv.raft.node import RaftNode
from kv.raft.ready import Ready
from kv.raft.storage import MemoryStorage


@dataclass
class Disk:
    """Writes in order; the first `synced` of them survive a crash."""

    writes: list[tuple[str, object]] = field(default_factory=list)
    synced: int = 0

    def rebuild(self) -> MemoryStorage:
        st = MemoryStorage()
        for kind, payload in self.writes[: self.synced]:
            _replay(st, kind, payload)
        return st


def _replay(st: MemoryStorage, kind: str, payload: object) -> None:
    if kind == "hs":
        assert isinstance(payload, HardState)
        st.set_hard_state(payload)
    elif kind == "ents":
        assert isinstance(payload, tuple)
        st.append(payload)
    elif kind == "snap":
        assert isinstance(payload, Snapshot)
        if payload.metadata.index > st.snapshot().metadata.index:
            if payload.metadata.index <= st.last_index() and st.term(payload.metadata.index) == payload.metadata.term:
                # The application's own snapshot: keep the log after it.
                st.create_snapshot(payload.metadata.index, payload.metadata.conf_state, payload.data)
                st.compact(payload.metadata.index)
            else:
                st.apply_snapshot(payload)


@dataclass
class StateMachine:
    """The application: the data of applied normal entries, in index order."""

    applied_index: int = 0
    data: list[tuple[int, bytes]] = field(default_factory=list)

    def snapshot_data(self) -> bytes:
        return bytes(msgpack.packb([self.applied_index, self.data]))

    @staticmethod
    def from_snapshot(data: bytes) -> StateMachine:
        if not data:
            return StateMachine()
        idx, items = msgpack.unpackb(data)
        return StateMachine(applied_index=idx, data=[(i, bytes(d)) for i, d in items])


class Cluster:
    def __init__(
        self,
        ids: Iterable[int] = (1, 2, 3),
        *,
        seed: int = 0,
        learners: Iterable[int] = (),
        check: bool = True,
        **config: object,
    ) -> None:
        self.voters = tuple(sorted(ids))
        self.learners = tuple(sorted(learners))
        self.config_overrides = config
        self.seed = seed
        self.now = 0.0
        self.bus: list[Message] = []
        self.blocked: set[tuple[int, int]] = set()  # (from, to) pairs whose messages are dropped
        self.drop_filter: Callable[[Message], bool] | None = None  # True = drop this message
        self.disks: dict[int, Disk] = {}
        self.storages: dict[int, MemoryStorage] = {}
        self.nodes: dict[int, RaftNode] = {}
        self.apps: dict[int, StateMachine] = {}
        self.read_states: dict[int, list[tuple[int, bytes]]] = {}
        self.crashed: set[int] = set()
        self.checker = SafetyChecker()
        self.check = check
        self.violations: list[Violation] = []
        self.sent: list[Message] = []  # every message ever put on the bus, for transcripts
        for i in self.voters + self.learners:
            self._start(i, MemoryStorage(), Disk())
        self.process_all()  # persist and apply the bootstrap membership entries

    # ---------------------------------------------------------- node lifecycle

    def make_config(self, node_id: int) -> RaftConfig:
        return RaftConfig(id=node_id, **self.config_overrides)  # type: ignore[arg-type]

    def _start(self, node_id: int, storage: MemoryStorage, disk: Disk) -> None:
        rng = random.Random(f"{self.seed}/{node_id}/{len(disk.writes)}")
        self.storages[node_id] = storage
        self.disks[node_id] = disk
        snap = storage.snapshot()
        self.apps[node_id] = StateMachine.from_snapshot(snap.data) if not snap.is_empty else StateMachine()
        self.nodes[node_id] = RaftNode(
            self.make_config(node_id),
            storage,
            rng,
            initial_voters=self.voters,
            initial_learners=self.learners,
            now=self.now,
        )
        self.read_states[node_id] = []
        self.crashed.discard(node_id)

    def add_node(self, node_id: int) -> RaftNode:
        """Start a brand-new, empty node that is not (yet) in anyone's configuration."""
        storage = MemoryStorage()
        self.storages[node_id] = storage
        self.disks[node_id] = Disk()
        self.apps[node_id] = StateMachine()
        self.read_states[node_id] = []
        self.nodes[node_id] = RaftNode(self.make_config(node_id), storage, random.Random(f"{self.seed}/{node_id}"),
                                       initial_voters=(), now=self.now)
        return self.nodes[node_id]

    def crash(self, node_id: int) -> None:
        """Stop a node; it loses its volatile state and anything not fsynced."""
        self.nodes.pop(node_id)
        self.crashed.add(node_id)
        self.bus = [m for m in self.bus if m.to != node_id]

    def restart(self, node_id: int) -> RaftNode:
        disk = self.disks[node_id]
        del disk.writes[disk.synced :]
        storage = disk.rebuild()
        self._start(node_id, storage, disk)
        self.checker.node_restarted(node_id)
        self.process(node_id)
        return self.nodes[node_id]

    def load_log(self, node_id: int, terms: list[int], term: int, vote: int = NONE, commit: int = 0) -> None:
        """Replace a (fresh) node's persisted state by a log with the given terms, and restart it."""
        disk = Disk()
        ents = tuple(Entry(term=t, index=i + 1, data=f"{t}/{i + 1}".encode()) for i, t in enumerate(terms))
        disk.writes = [("ents", ents), ("hs", HardState(term=term, vote=vote, commit=commit))]
        disk.synced = len(disk.writes)
        self.nodes.pop(node_id, None)
        self._start(node_id, disk.rebuild(), disk)
        # A scenario set-up, not a history: forget what the bootstrap applied.
        self.checker = SafetyChecker()
        self.violations = []

    # -------------------------------------------------------- driving readies

    def process(self, node_id: int) -> None:
        """Run DESIGN.md's driver loop for one node until it has nothing ready."""
        node = self.nodes.get(node_id)
        if node is None:
            return
        while (rd := node.ready()) is not None:
            self._persist(node_id, rd)
            for m in rd.messages:
                self.sent.append(m)
                self.bus.append(m)
            self._apply(node_id, rd)
            node.advance(rd)
        if self.check:
            self.violations += self.checker.observe({i: n for i, n in self.nodes.items()})

    def process_all(self) -> None:
        for i in sorted(self.nodes):
            self.process(i)

    def _persist(self, node_id: int, rd: Ready) -> None:
        disk = self.disks[node_id]
        self.storages[node_id].save(rd.hard_state, rd.entries, rd.snapshot)
        if rd.snapshot is not None:
            disk.writes.append(("snap", rd.snapshot))
        if rd.entries:
            disk.writes.append(("ents", rd.entries))
        if rd.hard_state is not None:
            disk.writes.append(("hs", rd.hard_state))
        if rd.must_sync:
            disk.synced = len(disk.writes)

    def _apply(self, node_id: int, rd: Ready) -> None:
        app = self.apps[node_id]
        if rd.snapshot is not None:
            self.apps[node_id] = app = StateMachine.from_snapshot(rd.snapshot.data)
        for e in rd.committed_entries:
            if e.index <= app.applied_index:
                continue
            if e.type == EntryType.NORMAL and e.data:
                app.data.append((e.index, e.data))
            app.applied_index = e.index
        if self.check:
            self.violations += self.checker.observe_applied(node_id, rd.committed_entries)
        for rs in rd.read_states:
            self.read_states[node_id].append((rs.index, rs.request_ctx))

    # ------------------------------------------------------------- the network

    def deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None:
            return
        node.tick(self.now)  # the driver contract: tick on every wake, before feeding input
        self.process(m.to)
        try:
            node.step(m)
        except CommittedEntryConflict as e:
            self.violations.append(Violation(Property.STATE_MACHINE_SAFETY, f"node {m.to}: {e}"))
        self.process(m.to)

    def _droppable(self, m: Message) -> bool:
        return (m.from_, m.to) in self.blocked or (self.drop_filter is not None and self.drop_filter(m))

    def deliver_all(self, limit: int = 100_000) -> int:
        """Deliver queued messages in order until none are left; returns how many were delivered."""
        self.process_all()
        n = 0
        while self.bus and n < limit:
            m = self.bus.pop(0)
            if self._droppable(m):
                continue
            self.deliver(m)
            n += 1
        return n

    def cut(self, a: int, b: int) -> None:
        self.blocked |= {(a, b), (b, a)}

    def cut_one_way(self, a: int, b: int) -> None:
        self.blocked.add((a, b))

    def isolate(self, node_id: int) -> None:
        for other in self.all_ids():
            if other != node_id:
                self.cut(node_id, other)

    def partition(self, *groups: Iterable[int]) -> None:
        sets = [set(g) for g in groups]
        for i, g in enumerate(sets):
            for h in sets[i + 1 :]:
                for a in g:
                    for b in h:
                        self.cut(a, b)

    def heal(self) -> None:
        self.blocked.clear()
        self.drop_filter = None

    def all_ids(self) -> list[int]:
        return sorted(set(self.nodes) | self.crashed)

    # --------------------------------------------------------------- time

    def advance_to(self, t: float) -> None:
        """Move the clock to t, firing every node's timers that fall due on the way, in order."""
        while True:
            due = [(n.deadline(), i) for i, n in self.nodes.items() if n.deadline() <= t]
            if not due:
                break
            when, _ = min(due)
            self.now = max(self.now, when)
            for i in sorted(self.nodes):
                n = self.nodes.get(i)
                if n is not None and n.deadline() <= self.now:
                    n.tick(self.now)
                    self.process(i)
            self.deliver_all()
        self.now = max(self.now, t)
        for i in sorted(self.nodes):
            self.nodes[i].tick(self.now)
            self.process(i)
        self.deliver_all()

    def run_for(self, seconds: float) -> None:
        self.advance_to(self.now + seconds)

    def run_until(self, pred: Callable[[], bool], timeout: float = 30.0, step: float = 0.01) -> bool:
        end = self.now + timeout
        while self.now < end:
            if pred():
                return True
            self.advance_to(self.now + step)
        return pred()

    # --------------------------------------------------------------- queries

    def leaders(self) -> list[int]:
        return sorted(i for i, n in self.nodes.items() if n.role == Role.LEADER)

    def leader(self) -> int:
        """The one node that is leader of the highest term (after deliver_all, exactly one in a healthy cluster)."""
        ls = [(self.nodes[i].term, i) for i in self.leaders()]
        assert ls, "no leader"
        return max(ls)[1]

    def elect(self, timeout: float = 30.0) -> int:
        assert self.run_until(lambda: bool(self.leaders()) and self._leader_known(), timeout), "no leader elected"
        return self.leader()

    def _leader_known(self) -> bool:
        lead = self.leader()
        term = self.nodes[lead].term
        return all(
            n.lead == lead and n.term == term
            for i, n in self.nodes.items()
            if i not in self.isolated_ids() and not n.is_learner and i in n.tracker.progress
        )

    def isolated_ids(self) -> set[int]:
        ids = self.all_ids()
        return {i for i in ids if all((i, j) in self.blocked for j in ids if j != i)}

    def propose(self, node_id: int, data: bytes) -> None:
        self.nodes[node_id].tick(self.now)
        self.process(node_id)
        self.nodes[node_id].propose(data)
        self.process(node_id)
        self.deliver_all()

    def try_propose(self, node_id: int, data: bytes) -> bool:
        try:
            self.propose(node_id, data)
            return True
        except ProposalDropped:
            return False

    def conf_change(self, node_id: int, *changes: tuple[ConfChangeType, int], **kw: object) -> None:
        cc = ConfChange(changes=tuple(ConfChangeSingle(t, i) for t, i in changes), **kw)  # type: ignore[arg-type]
        self.nodes[node_id].propose_conf_change(cc)
        self.process(node_id)
        self.deliver_all()

    def applied_data(self, node_id: int) -> list[bytes]:
        return [d for _, d in self.apps[node_id].data]

    def compact(self, node_id: int, index: int | None = None) -> Snapshot:
        """The application snapshots its state at its applied index and compacts the log there."""
        node = self.nodes[node_id]
        app = self.apps[node_id]
        index = app.applied_index if index is None else index
        assert index == app.applied_index, "harness snapshots only at the applied index"
        snap = self.storages[node_id].create_snapshot(index, node.conf_state(), app.snapshot_data())
        self.storages[node_id].compact(index)
        disk = self.disks[node_id]
        disk.writes.append(("snap", snap))
        disk.synced = len(disk.writes)
        return snap

    def messages_of(self, kind: MessageType) -> list[Message]:
        return [m for m in self.sent if m.type == kind]

    def assert_safe(self) -> None:
        assert not self.violations, "\n".join(str(v) for v in self.violations)


def with_term(m: Message, term: int) -> Message:
    return replace(m, term=term)


# ---------------------------------------------------------------------------
# Scripted driving: one message at a time, clocks without delivery, transcripts.
# Used by the Figure 8 and teaching-bug scenarios and the stateful property test.

MessagePredicate = Callable[[Message], bool]


def msg(kind: MessageType, from_: int | None = None, to: int | None = None) -> MessagePredicate:
    """A predicate matching messages of `kind`, optionally from/to given nodes."""

    def match(m: Message) -> bool:
        return m.type == kind and (from_ is None or m.from_ == from_) and (to is None or m.to == to)

    return match


def carries_term(term: int) -> MessagePredicate:
    """Matches an append carrying at least one entry of `term`."""
    return lambda m: m.type == MessageType.APP and any(e.term == term for e in m.entries)


class ScriptedCluster(Cluster):
    """A Cluster a test drives by hand, that also records every Ready it processed.

    ``readies`` is (node id, Ready) in processing order; together with ``sent``
    it is the run's transcript (``transcript()`` encodes it with kv.codec).
    """

    def __init__(self, ids: Iterable[int] = (1, 2, 3), **kw: object) -> None:
        self.readies: list[tuple[int, Ready]] = []
        super().__init__(ids, **kw)  # type: ignore[arg-type]

    def _persist(self, node_id: int, rd: Ready) -> None:
        self.readies.append((node_id, rd))
        super()._persist(node_id, rd)

    # --- the bus, one message at a time ---

    def queued(self, pred: MessagePredicate) -> list[Message]:
        return [m for m in self.bus if pred(m)]

    def take(self, pred: MessagePredicate) -> Message:
        """Remove and return the first queued message matching pred (it must exist)."""
        self.process_all()
        for pos, m in enumerate(self.bus):
            if pred(m):
                return self.bus.pop(pos)
        raise AssertionError(f"no queued message matches; bus: {[(m.type.name, m.from_, m.to) for m in self.bus]}")

    def deliver_first(self, pred: MessagePredicate) -> Message:
        """Deliver the first queued message matching pred, ignoring cuts and filters."""
        m = self.take(pred)
        self.deliver(m)
        return m

    def drop_where(self, pred: MessagePredicate) -> list[Message]:
        """Lose every queued message matching pred."""
        self.process_all()
        dropped = [m for m in self.bus if pred(m)]
        self.bus = [m for m in self.bus if not pred(m)]
        return dropped

    def deliver_at(self, pos: int) -> Message:
        """Deliver the message at bus position pos (reordering), unless cut or filtered."""
        m = self.bus.pop(pos)
        if not self._droppable(m):
            self.deliver(m)
        return m

    def duplicate_at(self, pos: int) -> None:
        """The network delivers the message at pos twice: a copy joins the end of the bus."""
        self.bus.append(self.bus[pos])

    # --- inputs without the implicit deliver_all of Cluster.propose ---

    def tick_to(self, t: float) -> None:
        """Move the clock to t and fire due timers in order, delivering nothing."""
        while True:
            due = sorted((n.deadline(), i) for i, n in self.nodes.items() if n.deadline() <= t)
            if not due:
                break
            self.now = max(self.now, due[0][0])
            for i in sorted(self.nodes):
                n = self.nodes.get(i)
                if n is not None and n.deadline() <= self.now:
                    n.tick(self.now)
                    self.process(i)
        self.now = max(self.now, t)
        for i in sorted(self.nodes):
            self.nodes[i].tick(self.now)
            self.process(i)

    def submit(self, node_id: int, data: bytes) -> bool:
        """Propose at node_id and run its driver loop; False if the proposal was dropped."""
        node = self.nodes[node_id]
        node.tick(self.now)
        self.process(node_id)
        try:
            node.propose(data)
        except ProposalDropped:
            return False
        finally:
            self.process(node_id)
        return True

    def transcript(self) -> bytes:
        """Every Ready of the run (with its messages), encoded with kv.codec, in order."""
        from kv.codec import encode_entry, encode_hard_state, encode_message, encode_snapshot

        out = bytearray()
        for node_id, rd in self.readies:
            out += f"ready {node_id} {rd.soft_state.role.value} {rd.soft_state.leader} {rd.must_sync}\n".encode()
            if rd.hard_state is not None:
                out += encode_hard_state(rd.hard_state)
            if rd.snapshot is not None:
                out += encode_snapshot(rd.snapshot)
            for e in rd.entries + rd.committed_entries:
                out += encode_entry(e)
            for rs in rd.read_states:
                out += f"read {rs.index} ".encode() + rs.request_ctx
            for m in rd.messages:
                out += encode_message(m)
        return bytes(out)
