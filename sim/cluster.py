"""SimCluster: N etcd members (``kv.member.Member``, unchanged) on simulated machines.

Each *slot* is one machine: a member, its disk, its clock, its inbox. The
member is driven by ``member_driver``, a simpy process running DESIGN.md's
loop — wait for a message, a client request or the member's deadline; tick;
feed it in; then for each Ready persist (through the disk model, fsyncing if
``must_sync``), send, answer clients, advance. Faults act on slots: kill
(crash, losing unsynced writes) and restart from what the disk kept, pause
and resume, clock changes, a slow disk, removal and re-addition.

The cluster also carries the in-run observers: ``RunChecks`` (Raft's safety
properties and the state-machine checks) and ``Timeline`` (roles, terms,
commit indexes and faults over time, for the summary and the plots).
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import simpy

from kv import api
from kv.errors import ErrStopped
from kv.raft.config import RaftConfig
from kv.raft.log import CommittedEntryConflict
from kv.raft.messages import Message, Role
from kv.raft.storage import MemoryStorage
from sim.checks import RunChecks
from sim.clock import Clock
from sim.disk import Disk, DiskProfile, persist
from sim.distributions import Latency
from sim.network import LinkFaults, Network
from sim.options import RunOptions
from sim.seeds import child_rng
from sim.timeline import Timeline

if TYPE_CHECKING:
    from kv.member import Member, MemberReady

Event = simpy.events.Event
Proc = Generator[Event, Any, None]
Reply = Callable[[Any], None]  # receives a response dataclass or a RaftKVError

CLUSTER_ID = 0x5A5A
MAX_WAKES_AT_ONE_INSTANT = 10_000
CLOSE_WATCH = object()  # queued in place of a request: the client closed this watch stream


def peer_url(slot: int, incarnation: int = 0) -> str:
    """A member's peer URL; a member re-added to a slot gets a new one (a new machine)."""
    return f"http://m{slot}:2380" if incarnation == 0 else f"http://m{slot}-{incarnation}:2380"


def make_member(
    options: RunOptions,
    slot: int,
    raft: RaftConfig,
    storage: MemoryStorage,
    rng: random.Random,
    now: float,
    members: Mapping[int, api.Member],
    join: bool,
) -> Member:
    """An etcd member from kv.member, unchanged."""
    from kv.member import Member, MemberConfig

    cfg = MemberConfig(
        raft=raft,
        name=f"m{slot}",
        cluster_id=CLUSTER_ID,
        snapshot_count=options.snapshot_count,
        snapshot_catchup_entries=min(500, options.snapshot_count),
        bugs=frozenset(options.bugs),
    )
    return Member(cfg, storage, rng, now, members, join=join)


@dataclass(eq=False)
class Slot:
    """One simulated machine hosting one member."""

    slot: int
    raft_id: int
    disk: Disk
    clock: Clock
    member: Member | None = None
    process: simpy.Process | None = None
    inbox: deque[Message] = field(default_factory=deque)
    requests: deque[tuple[int, Any]] = field(default_factory=deque)
    replies: dict[int, Reply] = field(default_factory=dict)  # token -> the client waiting for it
    wake: Event | None = None  # the driver is asleep on this event
    timer_at: float = -1.0  # the true time of the pending deadline timer
    paused: bool = False
    resume: Event | None = None
    removed: bool = False  # taken out of the cluster by a membership change
    # Set when the member was re-added to a running cluster: the membership it joins
    # (etcd's --initial-cluster-state=existing); None for a founding member.
    join_members: dict[int, api.Member] | None = None
    # The membership fault's operator at work on this slot (removing or re-adding its
    # member); no second membership fault may touch the slot meanwhile.
    operator: simpy.Process | None = None
    incarnation: int = 0
    last_applied: int = 0

    @property
    def alive(self) -> bool:
        return self.member is not None

    @property
    def name(self) -> str:
        return f"m{self.slot}"


class SimCluster:
    def __init__(self, env: simpy.Environment, options: RunOptions) -> None:
        self.env = env
        self.options = options
        seed = options.seed
        self.raft_config = dict(
            election_timeout_min=options.election_timeout_min,
            election_timeout_max=options.election_timeout_max,
            heartbeat_interval=options.heartbeat_interval,
            pre_vote=options.pre_vote,
            check_quorum=options.check_quorum,
            max_size_per_msg=options.max_msg_bytes,
        )
        self.network = Network(
            env,
            range(1, options.nodes + 1),
            child_rng(seed, "network"),
            Latency.parse(options.latency),
            self._deliver,
            LinkFaults(options.loss, options.duplicate, options.reorder),
        )
        self.client_latency = Latency.parse(options.client_latency)
        self.client_net_rng = child_rng(seed, "client-network")
        disk_profile = DiskProfile(Latency.parse(options.disk_write), Latency.parse(options.disk_fsync))
        clock_rng = child_rng(seed, "clocks")
        self.slots: dict[int, Slot] = {}
        for s in range(1, options.nodes + 1):
            clock = Clock.start(
                0.0,
                clock_rng.uniform(-options.clock_offset, options.clock_offset),
                clock_rng.uniform(-options.clock_drift, options.clock_drift),
            )
            self.slots[s] = Slot(s, s, Disk(disk_profile, child_rng(seed, "disk", s)), clock)
        self.by_id: dict[int, Slot] = {s.raft_id: s for s in self.slots.values()}
        self.initial_ids: tuple[int, ...] = tuple(sorted(self.by_id))
        # The membership every founding member is started with (etcd's --initial-cluster).
        self.initial_members = {
            s.raft_id: api.Member(ID=s.raft_id, name=s.name, peer_urls=(peer_url(s.slot),)) for s in self.slots.values()
        }
        self.checks = RunChecks()
        self.timeline = Timeline()
        self.tokens = itertools.count(1)
        # Watch streams: stream token -> the client's handler of each WatchResponse.
        self.watch_handlers: dict[Any, Callable[[Any], None]] = {}
        self._watch_last: dict[Any, float] = {}  # stream -> when its last response arrives
        self._watch_slot: dict[Any, Slot] = {}  # stream -> the member it is open on
        # Workloads that need server-side facts (e.g. when a lease's expiry applied) see
        # every committed entry as members apply it: (true time, the slot, entries).
        self.apply_observers: list[Callable[[float, Slot, tuple[Any, ...]], None]] = []
        self.events_processed = 0

    # ----------------------------------------------------------- lifecycle

    def start(self) -> None:
        for slot in self.slots.values():
            self._boot(slot, MemoryStorage())
        self.env.process(self.checks.monitor(self.env, self, self.options.check_interval))

    def _boot(self, slot: Slot, storage: MemoryStorage) -> None:
        opts = self.options
        raft = RaftConfig(id=slot.raft_id, **self.raft_config)  # type: ignore[arg-type]
        rng = child_rng(opts.seed, "member", slot.slot, slot.incarnation)
        now = slot.clock.local(self.env.now)
        members = slot.join_members if slot.join_members is not None else self.initial_members
        slot.member = make_member(opts, slot.slot, raft, storage, rng, now, members, slot.join_members is not None)
        slot.last_applied = slot.member.applied_index
        slot.timer_at = -1.0
        slot.paused = False
        slot.process = self.env.process(member_driver(self.env, self, slot, storage))
        self.timeline.member_up(self.env.now, slot)

    def kill(self, slot: Slot, why: str = "kill") -> bool:
        """Crash the member: volatile state gone, unsynced writes lost. False if it was down already."""
        if slot.member is None:
            return False
        if slot.process is not None and slot.process.is_alive:
            slot.process.interrupt(why)
        slot.member = None
        slot.process = None
        slot.inbox.clear()
        slot.requests.clear()
        slot.replies.clear()  # its clients will time out: their operations become info
        slot.wake = None
        if slot.resume is not None and not slot.resume.triggered:
            slot.resume.succeed()
        slot.resume = None
        slot.paused = False
        # Its watch streams' connections are reset: each client hears it (after the
        # network delay) as ErrStopped, as an etcd client sees its stream end.
        for stream in [s for s, at in self._watch_slot.items() if at is slot]:
            handler = self.watch_handlers.get(stream)
            if handler is not None:
                self._watch_response(stream, ErrStopped())
            del self._watch_slot[stream]
        self.timeline.member_down(self.env.now, slot)
        return True

    def restart(self, slot: Slot) -> bool:
        """Start the member again from what its disk kept (kv's restore). False if it is running."""
        if slot.member is not None or slot.removed:
            return False
        storage = slot.disk.crash()
        slot.incarnation += 1
        self.checks.member_restarted(slot)
        self._boot(slot, storage)
        return True

    def remove(self, slot: Slot) -> None:
        """The member was removed from the configuration: stop it for good (etcd's removed
        member shuts itself down) until ``rejoin`` gives the slot a new member."""
        self.kill(slot, "removed")
        slot.removed = True
        self.timeline.fault_log.append(f"{self.env.now:9.3f}s  {slot.name} (id {slot.raft_id:x}) removed")

    def rejoin(self, slot: Slot, member_id: int, members: Mapping[int, api.Member]) -> None:
        """Start a new member with `member_id` in the slot, on an empty disk, joining the
        cluster whose membership is `members` (what MemberAdd answered)."""
        del self.by_id[slot.raft_id]
        slot.raft_id = member_id
        self.by_id[member_id] = slot
        self.network.add_node(member_id)
        slot.disk.wipe()
        slot.removed = False
        slot.incarnation += 1
        slot.join_members = dict(members)
        self.checks.member_restarted(slot)
        self._boot(slot, MemoryStorage())

    def pause(self, slot: Slot) -> bool:
        if slot.member is None or slot.paused:
            return False
        slot.paused = True
        slot.resume = self.env.event()
        self.timeline.paused(self.env.now, slot, True)
        return True

    def unpause(self, slot: Slot) -> bool:
        if not slot.paused:
            return False
        slot.paused = False
        if slot.resume is not None and not slot.resume.triggered:
            slot.resume.succeed()
        slot.resume = None
        self.timeline.paused(self.env.now, slot, False)
        self.poke(slot)
        return True

    def poke(self, slot: Slot) -> None:
        """Wake the driver now (new input, or its clock changed so its deadline moved)."""
        slot.timer_at = -1.0
        wake = slot.wake
        if wake is not None and not wake.triggered:
            wake.succeed()

    # ------------------------------------------------------------ queries

    def live(self) -> list[Slot]:
        return [s for s in self.slots.values() if s.member is not None]

    def leader(self) -> Slot | None:
        """The live, unpaused leader of the highest term, if any."""
        best: Slot | None = None
        best_term = -1
        for s in self.slots.values():
            m = s.member
            if m is not None and not s.paused and m.node.role == Role.LEADER and m.node.term > best_term:
                best, best_term = s, m.node.term
        return best

    def slot_of(self, raft_id: int) -> Slot | None:
        return self.by_id.get(raft_id)

    # ------------------------------------------------------------ network

    def _deliver(self, m: Message) -> None:
        slot = self.by_id.get(m.to)
        if slot is None or slot.member is None:
            return
        slot.inbox.append(m)
        wake = slot.wake
        if wake is not None and not wake.triggered:
            wake.succeed()

    # ------------------------------------------------------------ clients

    def request(self, slot: Slot, request: Any, reply: Reply) -> None:
        """A client sends `request` to the member in `slot`; `reply` gets the outcome, if any comes."""
        delay = self.client_latency.sample(self.client_net_rng)
        ev = self.env.timeout(delay)
        ev.callbacks.append(lambda _ev: self._arrive_request(slot, request, reply))

    def _arrive_request(self, slot: Slot, request: Any, reply: Reply) -> None:
        if slot.member is None:
            return  # connection refused: the client times out
        token = next(self.tokens)
        slot.replies[token] = reply
        slot.requests.append((token, request))
        self.poke_input(slot)

    def poke_input(self, slot: Slot) -> None:
        wake = slot.wake
        if wake is not None and not wake.triggered:
            wake.succeed()

    def _respond(self, slot: Slot, token: int, outcome: Any) -> None:
        reply = slot.replies.pop(token, None)
        if reply is None:
            return
        delay = self.client_latency.sample(self.client_net_rng)
        ev = self.env.timeout(delay)
        ev.callbacks.append(lambda _ev: reply(outcome))


    # ------------------------------------------------------------ watches

    def watch(self, slot: Slot, stream: Any, request: Any, handler: Callable[[Any], None]) -> None:
        """A client sends a watch request on `stream` (any hashable token of its own) to the
        member in `slot`; `handler` gets every WatchResponse of the stream, after the
        client-network delay, and ErrStopped if the member crashes (the connection is
        reset). A paused or cut-off member just goes quiet: clients need timeouts."""
        self.watch_handlers[stream] = handler
        self._watch_slot[stream] = slot
        delay = self.client_latency.sample(self.client_net_rng)
        ev = self.env.timeout(delay)
        ev.callbacks.append(lambda _ev: self._arrive_watch(slot, stream, request))

    def _arrive_watch(self, slot: Slot, stream: Any, request: Any) -> None:
        if slot.member is None:
            # Connection refused: the client hears it at once, as it would from a dead host.
            self._watch_slot.pop(stream, None)
            self._watch_response(stream, ErrStopped())
            return
        slot.requests.append((stream, request))
        self.poke_input(slot)

    def close_watch(self, slot: Slot, stream: Any) -> None:
        """The client is done with the stream (etcd: the gRPC Watch call ends)."""
        self.watch_handlers.pop(stream, None)
        self._watch_last.pop(stream, None)
        self._watch_slot.pop(stream, None)
        if slot.member is not None:
            slot.requests.append((stream, CLOSE_WATCH))
            self.poke_input(slot)

    def _watch_response(self, stream: Any, resp: Any) -> None:
        handler = self.watch_handlers.get(stream)
        if handler is None:
            return
        # One stream is one connection: its responses arrive in the order they were sent.
        at = max(self.env.now + self.client_latency.sample(self.client_net_rng), self._watch_last.get(stream, 0.0))
        self._watch_last[stream] = at
        ev = self.env.timeout(at - self.env.now)
        ev.callbacks.append(lambda _ev: self._deliver_watch(stream, handler, resp))

    def _deliver_watch(self, stream: Any, handler: Callable[[Any], None], resp: Any) -> None:
        if self.watch_handlers.get(stream) is handler:
            handler(resp)


def _timer(slot: Slot, at: float, _ev: Event) -> None:
    if slot.timer_at == at:
        slot.timer_at = -1.0
        wake = slot.wake
        if wake is not None and not wake.triggered:
            wake.succeed()


def member_driver(env: simpy.Environment, cluster: SimCluster, slot: Slot, storage: MemoryStorage) -> Proc:
    """DESIGN.md's loop for one member: wait for input or the deadline, tick, feed, drain every Ready.

    Killing the member interrupts this process wherever it waits (even mid-fsync).
    """
    member = slot.member
    assert member is not None
    clock = slot.clock
    inbox = slot.inbox
    requests = slot.requests
    checks = cluster.checks
    stuck, stuck_at = 0, -1.0
    try:
        while True:
            if slot.paused:
                assert slot.resume is not None
                yield slot.resume
                continue
            cluster.events_processed += 1
            now = clock.local(env.now)
            member.tick(now)
            while inbox:
                m = inbox.popleft()
                try:
                    member.step(m)
                except CommittedEntryConflict as e:
                    checks.conflict(env.now, slot, e)
            while requests:
                token, req = requests.popleft()
                if req is CLOSE_WATCH:
                    member.close_watch_stream(token)
                else:
                    member.submit(token, req, now)
            while (rd := member.ready()) is not None:
                yield from _handle_ready(env, cluster, slot, member, storage, rd)
                member.advance(rd)
                checks.after_advance(env.now, slot, member)
            cluster.timeline.observe(env.now, slot, member)
            if inbox or requests or slot.paused:
                continue
            at = clock.true_time(member.deadline())
            if at <= env.now:
                # A deadline that does not move past the tick that served it would spin the
                # simulation at one instant: a core bug, reported rather than hung on.
                stuck = stuck + 1 if env.now == stuck_at else 1
                stuck_at = env.now
                if stuck > MAX_WAKES_AT_ONE_INSTANT:
                    raise RuntimeError(f"{slot.name}: deadline {member.deadline()} does not advance past now "
                                       f"{clock.local(env.now)} (member {member.id:x}, role {member.node.role.value})")
                at = env.now
            # Lazy timers (profiling: a follower's deadline moves on every heartbeat, and a fresh
            # timer per message doubled the event count): keep a pending earlier timer; when it
            # fires early the member ticks, finds nothing due, and re-arms for its real deadline.
            if slot.timer_at < 0 or at < slot.timer_at:
                slot.timer_at = at
                t = env.timeout(at - env.now)
                t.callbacks.append(lambda ev, s=slot, a=at: _timer(s, a, ev))
            slot.wake = env.event()
            yield slot.wake
            slot.wake = None
    except simpy.Interrupt:
        return


def _handle_ready(
    env: simpy.Environment, cluster: SimCluster, slot: Slot, member: Member, storage: MemoryStorage, rd: MemberReady
) -> Proc:
    r = rd.raft
    if r is not None:
        send = cluster.network.send
        if r.send_first:  # the core allows it: the leader's disk write overlaps replication
            for m in r.messages:
                send(m)
        storage.save(r.hard_state, r.entries, r.snapshot)
        if r.hard_state is not None or r.entries or r.snapshot is not None:
            yield from persist(env, slot.disk, r.hard_state, r.entries, r.snapshot, r.must_sync)
        if rd.snapshot is not None:
            slot.disk.record_app_snapshot(rd.snapshot)
            slot.disk.fsync()
        while slot.paused:  # stopped mid-write: nothing leaves until it resumes
            assert slot.resume is not None
            yield slot.resume
        if not r.send_first:
            for m in r.messages:
                send(m)
        if r.committed_entries:
            cluster.checks.applied(env.now, slot, r.committed_entries)
            for observe in cluster.apply_observers:
                observe(env.now, slot, r.committed_entries)
    elif rd.snapshot is not None:
        slot.disk.record_app_snapshot(rd.snapshot)
        slot.disk.fsync()
    for token, outcome in rd.responses:
        cluster._respond(slot, token, outcome)
    for stream, resp in rd.watch_responses:
        cluster._watch_response(stream, resp)
