"""An in-memory cluster of kv.member.Members on a deterministic bus, for the member tests.

The same loop as DESIGN.md's drivers, with nothing in between: messages queue
on one bus and are delivered in order, time moves only when a test calls
``run_for``, and ``cut``/``isolate``/``heal`` edit who can reach whom. Storage
is a MemoryStorage per member that survives ``restart`` whole (every Ready is
treated as fsynced); crash-loss is the simulator's and the Raft harness's job.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kv import api
from kv.bugs import TeachingBug
from kv.member import Member, MemberConfig
from kv.raft.config import RaftConfig
from kv.raft.messages import Message, MessageType, Role
from kv.raft.storage import MemoryStorage

TICK = 0.005  # seconds between ticks: a quarter of the heartbeat interval
NO_ANSWER = object()


def peer_url(i: int) -> str:
    return f"http://m{i}:2380"


@dataclass
class MemberCluster:
    size: int = 3
    seed: int = 0
    bugs: frozenset[TeachingBug] = frozenset()
    snapshot_count: int = 100_000
    catchup_entries: int = 5
    pre_vote: bool = True
    check_quorum: bool = True
    now: float = 0.0
    members: dict[int, Member] = field(default_factory=dict)
    storages: dict[int, MemoryStorage] = field(default_factory=dict)
    bus: list[Message] = field(default_factory=list)
    cuts: set[tuple[int, int]] = field(default_factory=set)
    down: set[int] = field(default_factory=set)
    answers: dict[int, Any] = field(default_factory=dict)
    watch_log: dict[Any, list[api.WatchResponse]] = field(default_factory=lambda: defaultdict(list))
    sent: list[Message] = field(default_factory=list)
    # Called with each message before delivery; return the messages to deliver instead.
    filter: Callable[[Message], list[Message]] | None = None

    def __post_init__(self) -> None:
        self.tokens = itertools.count(1)
        self.restarts: dict[int, int] = defaultdict(int)
        self.initial = {i: api.Member(name=f"m{i}", peer_urls=(peer_url(i),)) for i in range(1, self.size + 1)}
        for i in self.initial:
            self.storages[i] = MemoryStorage()
            self.members[i] = self._make(i, self.initial, join=False)

    def _make(self, i: int, initial: dict[int, api.Member], join: bool) -> Member:
        cfg = MemberConfig(
            raft=RaftConfig(id=i, election_timeout_min=0.1, election_timeout_max=0.2, heartbeat_interval=0.02,
                            pre_vote=self.pre_vote, check_quorum=self.check_quorum),
            name=f"m{i}",
            cluster_id=0xC1,
            snapshot_count=self.snapshot_count,
            snapshot_catchup_entries=self.catchup_entries,
            bugs=self.bugs,
        )
        rng = random.Random(f"{self.seed}/{i}/{self.restarts[i]}")
        return Member(cfg, self.storages[i], rng, self.now, initial, join=join)

    # ------------------------------------------------------------ driving

    def drain(self) -> None:
        """Run every member's Ready loop until none has work; queue what they send."""
        busy = True
        while busy:
            busy = False
            for i, m in sorted(self.members.items()):
                if i in self.down:
                    continue
                while (rd := m.ready()) is not None:
                    busy = True
                    if rd.raft is not None:
                        self.storages[i].save(rd.raft.hard_state, rd.raft.entries, rd.raft.snapshot)
                        self.bus.extend(rd.raft.messages)
                        self.sent.extend(rd.raft.messages)
                    for token, outcome in rd.responses:
                        self.answers[token] = outcome
                    for stream, resp in rd.watch_responses:
                        self.watch_log[stream].append(resp)
                    m.advance(rd)

    def deliver_all(self) -> None:
        self.drain()
        while self.bus:
            batch, self.bus = self.bus, []
            for msg in batch:
                for out in self.filter(msg) if self.filter else [msg]:
                    if self._reachable(out.from_, out.to):
                        self.members[out.to].step(out)
            self.drain()

    def _reachable(self, a: int, b: int) -> bool:
        return (
            b in self.members
            and a not in self.down
            and b not in self.down
            and (a, b) not in self.cuts
        )

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end - 1e-12:
            self.now = min(end, self.now + TICK)
            for i, m in sorted(self.members.items()):
                if i not in self.down:
                    m.tick(self.now)
            self.deliver_all()
            for i, m in self.members.items():
                # The driver contract: once a tick has done what was due, the next deadline
                # is in the future, or a driver would spin at one instant forever.
                assert i in self.down or m.deadline() > self.now, f"member {i}: deadline {m.deadline()} <= now {self.now}"

    def run_until(self, cond: Callable[[], bool], limit: float = 10.0) -> None:
        end = self.now + limit
        self.deliver_all()
        while not cond():
            if self.now >= end:
                raise AssertionError(f"condition not reached within {limit} s")
            self.run_for(TICK)

    # ------------------------------------------------------------ clients

    def submit(self, i: int, req: Any, token: Any = None, auth_token: str = "") -> Any:
        token = next(self.tokens) if token is None else token
        self.members[i].submit(token, req, self.now, auth_token)
        self.deliver_all()
        return token

    def call(self, i: int, req: Any, limit: float = 3.0, auth_token: str = "") -> Any:
        """Submit and run until answered; NO_ANSWER if nothing came back in time."""
        token = self.submit(i, req, auth_token=auth_token)
        end = self.now + limit
        while token not in self.answers and self.now < end:
            self.run_for(TICK)
        return self.answers.pop(token, NO_ANSWER)

    def watch(self, i: int, stream: Any, req: api.WatchCreateRequest, auth_token: str = "") -> None:
        self.members[i].submit(stream, req, self.now, auth_token)
        self.deliver_all()

    def events(self, stream: Any) -> list[api.Event]:
        return [ev for r in self.watch_log[stream] for ev in r.events]

    # ------------------------------------------------------------- faults

    def leader(self) -> int:
        leaders = [i for i, m in self.members.items() if i not in self.down and m.node.role == Role.LEADER]
        return max(leaders, key=lambda i: self.members[i].node.term) if leaders else 0

    def elect(self, limit: float = 5.0) -> int:
        self.run_until(lambda: self.leader() != 0 and self._all_know_leader(), limit)
        return self.leader()

    def _all_know_leader(self) -> bool:
        lead = self.leader()
        reachable = [i for i in self.members if i not in self.down and (lead, i) not in self.cuts]
        return all(self.members[i].node.lead == lead for i in reachable)

    def followers(self) -> list[int]:
        lead = self.leader()
        return [i for i in sorted(self.members) if i != lead and i not in self.down]

    def isolate(self, i: int) -> None:
        for j in self.members:
            if j != i:
                self.cuts |= {(i, j), (j, i)}

    def heal(self) -> None:
        self.cuts.clear()

    def crash(self, i: int) -> None:
        self.down.add(i)

    def restart(self, i: int) -> None:
        """Start member i again from its storage (a new incarnation)."""
        self.restarts[i] += 1
        self.members[i] = self._make(i, self.initial, join=False)
        self.down.discard(i)

    def join(self, i: int) -> None:
        """Start a new member i on empty storage as a joiner of the running cluster."""
        self.storages[i] = MemoryStorage()
        current = {m.ID: m for m in self.members[self.leader()].sm.member_list()}
        self.members[i] = self._make(i, current, join=True)

    def message_count(self, kind: MessageType) -> int:
        return sum(1 for m in self.sent if m.type == kind)


def values(resp: api.RangeResponse) -> list[bytes]:
    return [kv.value for kv in resp.kvs]


def puts(keys: Iterable[str]) -> list[api.PutRequest]:
    return [api.PutRequest(key=k.encode(), value=f"v-{k}".encode()) for k in keys]
