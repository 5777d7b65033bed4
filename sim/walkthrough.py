"""RaftWorld: a handful of RaftNodes on an in-memory network, every step recorded.

The walkthrough notebooks (``notebooks/``) look at Raft one message and one
``Ready`` at a time, which the full simulator (``sim.run``, with the etcd data
model, clients and nemeses) summarises away. ``RaftWorld`` is the smallest
world that shows it: ``kv.raft.RaftNode`` unchanged, driven by DESIGN.md's
loop (tick, step, then for each Ready persist, send, apply, advance), on a
network with a latency distribution and a disk with an fsync time.

It can be driven two ways:

* **by the clock**: ``run_for`` / ``run_until`` deliver messages when they
  arrive and fire timers when they fall due, in time order; ``crash``,
  ``restart``, ``partition``, ``isolate`` and ``heal`` change the world in
  between (as the paper's experiments and etcd's robustness tests do);
* **by hand**, as etcd-io/raft's test ``network``: ``campaign`` a node, then
  ``deliver`` or ``drop`` chosen messages (``pending`` lists them), without
  moving the clock. The Raft paper's Figure 8 is told like that.

Everything is recorded for the plots in ``sim.walkthrough_plots``: each
message's flight (``flights``: sent, arrived, or lost and why), each Ready
(``readies``), role and term changes (``roles``), commit indexes
(``commits``), applied entries (``applied``) and narrated events (``notes``).
Raft's safety properties (paper Figure 3) are checked after every step by
``kv.raft.invariants.SafetyChecker``; what it finds is in ``violations``.

Randomness comes from one seed (``sim.seeds.child_rng``): the same seed and
the same calls give the same run.

The last section reads a full simulated run (``sim.run.RunResult``) the way the
notebooks need: which member served a client operation (``member_of``), what
that member was at a given time (``role_at``) and which faults were in force
(``faults_at``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kv.errors import ProposalDropped
from kv.raft import Entry, EntryType, HardState, MemoryStorage, Message, MessageType, RaftConfig, RaftNode, Role
from kv.raft.invariants import Property, SafetyChecker, Violation
from kv.raft.log import CommittedEntryConflict
from kv.raft.ready import Ready
from sim.distributions import Latency
from sim.seeds import child_rng

if TYPE_CHECKING:
    from sim.history import Operation
    from sim.run import RunResult
    from sim.timeline import FaultSpan

DOWN = "down"  # the role recorded for a crashed node


@dataclass(slots=True)
class Flight:
    """One message on the network: when it left, when it arrives, and what became of it."""

    message: Message
    sent_at: float
    arrive_at: float
    seq: int
    outcome: str = "in flight"  # "delivered", "cut" (partition), "dropped" (by hand), "lost" (recipient down)
    done_at: float | None = None


@dataclass(frozen=True, slots=True)
class ReadyRecord:
    """One Ready as the driver handled it: taken at ``time``, durable (and sent) at ``persisted_at``."""

    time: float
    persisted_at: float
    node: int
    role: Role
    term: int
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    committed_entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    must_sync: bool


@dataclass(frozen=True, slots=True)
class RoleChange:
    time: float
    node: int
    role: str  # a Role value, or DOWN
    term: int
    leader: int


@dataclass(frozen=True, slots=True)
class Note:
    time: float
    text: str
    kind: str = "note"  # "crash", "restart", "partition", "heal", "propose", "note"


@dataclass(frozen=True, slots=True)
class Applied:
    time: float
    entry: Entry


@dataclass
class _Disk:
    """What the driver persisted, in order; the first ``synced`` writes survive a crash."""

    writes: list[tuple[str, Any]] = field(default_factory=list)
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

    def recover(self) -> MemoryStorage:
        del self.writes[self.synced :]
        st = MemoryStorage()
        for kind, payload in self.writes:
            if kind == "hs":
                st.set_hard_state(payload)
            elif kind == "ents":
                st.append(payload)
            else:
                st.apply_snapshot(payload)
        return st


MessageFilter = Callable[[Message], bool]


def matches(type: MessageType | None = None, from_: int | None = None, to: int | None = None) -> MessageFilter:
    """A predicate on messages: of this type, from this node, to this node (None: any)."""

    def match(m: Message) -> bool:
        return (type is None or m.type == type) and (from_ is None or m.from_ == from_) and (to is None or m.to == to)

    return match


class RaftWorld:
    """Raft nodes on an in-memory network with virtual time (seconds, from 0)."""

    def __init__(
        self,
        ids: Iterable[int] = (1, 2, 3),
        *,
        seed: int = 1,
        latency: str = "uniform:0.002:0.004",
        fsync: str = "constant:0.001",
        check: bool = True,
        **config: Any,
    ) -> None:
        """``latency``/``fsync``: ``sim.distributions`` specs (one-way per message; per Ready that
        must be durable). ``config``: ``RaftConfig`` fields for every node (timeouts, pre_vote,
        check_quorum, bugs, ...)."""
        self.ids = tuple(sorted(ids))
        self.seed = seed
        self.latency = Latency.parse(latency)
        self.fsync = Latency.parse(fsync)
        self.config = config
        self.check = check
        self.now = 0.0
        self.net_rng = child_rng(seed, "walkthrough", "network")
        self.disk_rng = child_rng(seed, "walkthrough", "disk")
        self.nodes: dict[int, RaftNode] = {}
        self.storages: dict[int, MemoryStorage] = {}
        self.disks: dict[int, _Disk] = {}
        self.busy_until: dict[int, float] = {}
        self.incarnation: dict[int, int] = {i: 0 for i in self.ids}
        self.blocked: set[tuple[int, int]] = set()
        self.pending: list[Flight] = []
        self._seq = 0
        self.flights: list[Flight] = []
        self.readies: list[ReadyRecord] = []
        self.roles: list[RoleChange] = []
        self.commits: dict[int, list[tuple[float, int]]] = {i: [] for i in self.ids}
        self.applied: dict[int, list[Applied]] = {i: [] for i in self.ids}
        self.notes: list[Note] = []
        self.checker = SafetyChecker()
        self.violations: list[Violation] = []
        self._last_role: dict[int, tuple[str, int, int]] = {}
        for i in self.ids:
            self._start(i, MemoryStorage(), _Disk())
        for i in self.ids:
            self._process(i)  # the bootstrap: the membership entries, committed at term 1

    # ------------------------------------------------------------ node lifecycle

    def _start(self, i: int, storage: MemoryStorage, disk: _Disk) -> None:
        rng = child_rng(self.seed, "walkthrough", "node", i, self.incarnation[i])
        self.storages[i] = storage
        self.disks[i] = disk
        self.busy_until[i] = self.now
        self.nodes[i] = RaftNode(RaftConfig(id=i, **self.config), storage, rng, initial_voters=self.ids, now=self.now)
        self.applied[i] = []
        self._observe(i)

    def crash(self, i: int) -> None:
        """Stop node i: its volatile state, and whatever it had not fsynced, are gone.
        Messages it already sent are on the wire and still arrive."""
        del self.nodes[i]
        self.note(f"n{i} crashes", "crash")
        self._last_role[i] = (DOWN, 0, 0)
        self.roles.append(RoleChange(self.now, i, DOWN, 0, 0))

    def restart(self, i: int) -> RaftNode:
        """Start node i again from what its disk kept (Raft's persistent state, Figure 2)."""
        self.incarnation[i] += 1
        self.checker.node_restarted(i)  # its commit index restarts from what the disk kept
        self._start(i, self.disks[i].recover(), self.disks[i])
        self.note(f"n{i} restarts from its disk", "restart")
        self._process(i)
        return self.nodes[i]

    def load_log(self, i: int, terms: list[int], term: int, vote: int = 0, commit: int = 0) -> None:
        """Replace node i by one whose disk holds entries of these `terms` (index 1, 2, ...) and
        this hard state: the set-up of the paper's Figures 7 and 8. Entry data is ``b"<term>/<index>"``.
        Forgets earlier checker observations (a set-up, not a history)."""
        ents = tuple(Entry(term=t, index=k + 1, data=f"{t}/{k + 1}".encode()) for k, t in enumerate(terms))
        disk = _Disk([("ents", ents), ("hs", HardState(term=term, vote=vote, commit=commit))], synced=2)
        self.nodes.pop(i, None)
        self._last_role.pop(i, None)
        self._start(i, disk.recover(), disk)
        self.checker = SafetyChecker()
        self.violations = []

    # ------------------------------------------------------------ the driver loop

    def _process(self, i: int) -> None:
        """DESIGN.md's loop for node i: persist each Ready (fsync if it must), send, apply, advance."""
        node = self.nodes.get(i)
        if node is None:
            return
        while (rd := node.ready()) is not None:
            start = max(self.now, self.busy_until[i])
            self.storages[i].save(rd.hard_state, rd.entries, rd.snapshot)
            self.disks[i].record(rd)
            done = start + (self.fsync.sample(self.disk_rng) if rd.must_sync else 0.0)
            self.busy_until[i] = done  # nothing else is handled until the write is durable
            for m in rd.messages:
                self._send(m, done)
            for e in rd.committed_entries:
                self.applied[i].append(Applied(done, e))
            if self.check:
                self.violations += self.checker.observe_applied(i, rd.committed_entries)
            self.readies.append(ReadyRecord(self.now, done, i, node.role, node.term, rd.hard_state, rd.entries,
                                            rd.committed_entries, rd.messages, rd.must_sync))
            node.advance(rd)
        self._observe(i)

    def _observe(self, i: int) -> None:
        node = self.nodes[i]
        key = (node.role.value, node.term, node.lead)
        if self._last_role.get(i) != key:
            self._last_role[i] = key
            self.roles.append(RoleChange(self.now, i, *key))
        commits = self.commits[i]
        if not commits or commits[-1][1] != node.log.committed:
            commits.append((self.now, node.log.committed))
        if self.check:
            self.violations += self.checker.observe(self.nodes)

    def _send(self, m: Message, at: float) -> None:
        self._seq += 1
        f = Flight(m, at, at + self.latency.sample(self.net_rng), self._seq)
        self.flights.append(f)
        if (m.from_, m.to) in self.blocked:
            f.outcome, f.done_at = "cut", at
            return
        self.pending.append(f)

    def _arrive(self, f: Flight, *, force: bool = False) -> None:
        m = f.message
        node = self.nodes.get(m.to)
        f.done_at = self.now
        if node is None:
            f.outcome = "lost"
            return
        if not force and (m.from_, m.to) in self.blocked:
            f.outcome = "cut"
            return
        f.outcome = "delivered"
        node.tick(self.now)  # the driver contract: tick on every wake, before feeding input
        self._process(m.to)
        try:
            node.step(m)
        except CommittedEntryConflict as e:
            self.violations.append(Violation(Property.STATE_MACHINE_SAFETY, f"node {m.to}: {e}"))
        self._process(m.to)

    # ------------------------------------------------------------ by the clock

    def _step(self, until: float) -> bool:
        """Handle the earliest message arrival or timer at or before `until`; False if none."""
        flight = min(self.pending, key=lambda f: (f.arrive_at, f.seq), default=None)
        msg_at = flight.arrive_at if flight is not None else float("inf")
        timers = [(max(n.deadline(), self.busy_until[i]), i) for i, n in self.nodes.items()]
        timer_at, tid = min(timers) if timers else (float("inf"), 0)
        if min(msg_at, timer_at) > until:
            return False
        if flight is not None and msg_at <= timer_at:
            self.now = max(self.now, msg_at)
            to = flight.message.to
            if to in self.nodes and self.busy_until[to] > self.now:
                flight.arrive_at = self.busy_until[to]  # waits until the recipient's disk write is done
                return True
            self.pending.remove(flight)
            self._arrive(flight)
        else:
            self.now = max(self.now, timer_at)
            self.nodes[tid].tick(self.now)
            self._process(tid)
        return True

    def run_to(self, t: float) -> None:
        """Run the world until virtual time t."""
        while self._step(t):
            pass
        self.now = max(self.now, t)

    def run_for(self, seconds: float) -> None:
        self.run_to(self.now + seconds)

    def run_until(self, done: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Run until done() holds (checked after every event) or `timeout` seconds passed."""
        end = self.now + timeout
        while not done():
            if not self._step(end):
                self.now = end
                return done()
        return True

    # ------------------------------------------------------------ by hand

    def campaign(self, i: int) -> None:
        """Node i starts an election now, as if its election timeout fired."""
        node = self.nodes[i]
        node.tick(self.now)
        self._process(i)
        node.campaign()
        self._process(i)

    def hold_election(self, candidate: int, voters: Iterable[int]) -> bool:
        """By hand: `candidate` campaigns, its vote requests reach only `voters` (the others are
        lost), and their answers come back. Whether it won. (With pre_vote, the pre-vote round
        goes the same way first.)"""
        voters = tuple(voters)
        self.campaign(candidate)
        for kind, answer in ((MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP), (MessageType.VOTE, MessageType.VOTE_RESP)):
            if not self.pending_messages(matches(kind, candidate)):
                continue
            for v in voters:
                self.deliver(kind, candidate, v)
            self.drop(kind, from_=candidate)
            for v in voters:
                self.deliver(answer, v, candidate)
        return self.nodes[candidate].role == Role.LEADER

    def pending_messages(self, pred: MessageFilter | None = None) -> list[Message]:
        """Messages on the wire (matching pred), in the order they would arrive."""
        return [f.message for f in sorted(self.pending, key=lambda f: (f.arrive_at, f.seq))
                if pred is None or pred(f.message)]

    def deliver(self, type: MessageType | None = None, from_: int | None = None, to: int | None = None) -> Message:
        """Deliver now the first message on the wire of this type, from, to (it must exist),
        whatever the partitions say."""
        pred = matches(type, from_, to)
        for f in sorted(self.pending, key=lambda f: (f.arrive_at, f.seq)):
            if pred(f.message):
                self.pending.remove(f)
                self._arrive(f, force=True)
                return f.message
        on_wire = [(m.type.name, m.from_, m.to) for m in self.pending_messages()]
        raise LookupError(f"no message {type and type.name} from {from_} to {to} on the wire: {on_wire}")

    def drop(self, type: MessageType | None = None, from_: int | None = None, to: int | None = None,
             where: MessageFilter | None = None) -> int:
        """Lose every message on the wire that matches; how many were lost."""
        pred = matches(type, from_, to)
        lost = [f for f in self.pending if pred(f.message) and (where is None or where(f.message))]
        for f in lost:
            self.pending.remove(f)
            f.outcome, f.done_at = "dropped", self.now
        return len(lost)

    def deliver_all(self, limit: int = 100_000) -> int:
        """Deliver what is on the wire, in arrival order, until nothing is left (the clock stays)."""
        n = 0
        while self.pending and n < limit:
            f = min(self.pending, key=lambda f: (f.arrive_at, f.seq))
            self.pending.remove(f)
            self._arrive(f)
            n += 1
        return n

    # ------------------------------------------------------------ clients and faults

    def propose(self, i: int, data: bytes) -> bool:
        """A client proposes `data` at node i (a follower forwards it to its leader);
        False if the node refused it (ProposalDropped: e.g. no leader known)."""
        node = self.nodes[i]
        node.tick(self.now)
        self._process(i)
        self.note(f"client proposes {data.decode(errors='replace')!r} at n{i}", "propose")
        try:
            node.propose(data)
        except ProposalDropped:
            return False
        finally:
            self._process(i)
        return True

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut every link between the groups (both ways)."""
        sets = [set(g) for g in groups]
        for k, g in enumerate(sets):
            for h in sets[k + 1 :]:
                self.blocked |= {(a, b) for a in g for b in h} | {(b, a) for a in g for b in h}
        self.note("partition " + " | ".join(",".join(f"n{i}" for i in sorted(g)) for g in sets), "partition")

    def isolate(self, i: int) -> None:
        self.partition([i], [j for j in self.ids if j != i])

    def heal(self) -> None:
        self.blocked.clear()
        self.note("heal: every link works again", "heal")

    def note(self, text: str, kind: str = "note") -> None:
        self.notes.append(Note(self.now, text, kind))

    # ------------------------------------------------------------ queries

    def leader(self) -> int | None:
        """The live node that leads the highest term, if any."""
        leaders = [(n.term, i) for i, n in self.nodes.items() if n.role == Role.LEADER]
        return max(leaders)[1] if leaders else None

    def known_leader(self) -> int | None:
        """A leader every live node it can reach follows in its term (the paper's "leader
        elected": the others received its first heartbeat), if any."""
        for i, n in self.nodes.items():
            if n.role == Role.LEADER and all(
                o.term == n.term and o.lead == i
                for j, o in self.nodes.items()
                if j != i and (i, j) not in self.blocked
            ):
                return i
        return None

    def log_terms(self, i: int) -> list[int]:
        """The terms of node i's entries, index 1 first (after a snapshot: from its first index);
        for a crashed node, what its disk holds."""
        node = self.nodes.get(i)
        if node is not None:
            return [e.term for e in node.log.all_entries()]
        st = self.storages[i]
        return [e.term for e in st.entries(st.first_index(), st.last_index() + 1)]

    def commit_index(self, i: int) -> int:
        """Node i's commit index (for a crashed node, the one its disk holds)."""
        node = self.nodes.get(i)
        return node.log.committed if node is not None else self.storages[i].initial_state()[0].commit

    def logs(self) -> dict[int, list[int]]:
        return {i: self.log_terms(i) for i in sorted(self.nodes)}

    def applied_data(self, i: int) -> list[bytes]:
        """What node i's state machine applied: the data of normal entries, in order."""
        return [a.entry.data for a in self.applied[i] if a.entry.type == EntryType.NORMAL and a.entry.data]

    def distinct_violations(self) -> list[tuple[str, str, int]]:
        """(property, detail, times seen) for each different violation, first seen first
        (the checker reports a broken property again on every step while it stays broken)."""
        seen: dict[tuple[str, str], int] = {}
        for v in self.violations:
            key = (v.property.value, v.detail)
            seen[key] = seen.get(key, 0) + 1
        return [(p, d, n) for (p, d), n in seen.items()]

    def elections(self) -> list[RoleChange]:
        """Each time a node became leader, in order."""
        return [r for r in self.roles if r.role == Role.LEADER.value]

    def terms(self, i: int) -> list[tuple[float, int]]:
        """Node i's term over time (crashed spans left out)."""
        return [(r.time, r.term) for r in self.roles if r.node == i and r.role != DOWN]


# ------------------------------------------------------------ reading a simulated run


def member_of(result: RunResult, op: Operation) -> int:
    """The slot of the member that a history operation was sent to."""
    for rec in result.records:
        if rec.client == op.client and round(rec.call, 6) == round(op.call, 6):
            return int(rec.slot)
    raise LookupError(f"no client record for {op.describe()}")


def role_at(result: RunResult, slot: int, t: float) -> tuple[str, int] | None:
    """(role, term) of the member in `slot` at time t, as the run's timeline recorded it
    ("down" and "paused" are roles there too); None before its first record."""
    last = None
    for r in result.cluster.timeline.roles:
        if r.slot == slot and r.time <= t:
            last = (r.role, r.term)
    return last


def faults_at(result: RunResult, t: float, fault: str | None = None) -> list[FaultSpan]:
    """The faults (of this kind, e.g. "partition") in force at time t."""
    end = result.options.duration
    return [f for f in result.cluster.timeline.faults
            if (fault is None or f.fault == fault) and f.start <= t <= (end if f.stop is None else f.stop)]


__all__ = ["DOWN", "Applied", "Flight", "Note", "RaftWorld", "ReadyRecord", "RoleChange", "faults_at", "matches",
           "member_of", "role_at"]
