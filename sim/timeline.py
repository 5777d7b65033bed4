"""What happened when: roles, terms, commit indexes, member ups and downs, faults.

Recorded cheaply while the run goes (one comparison per driver wake-up) and
read afterwards by the summary (elections, leader changes) and the plots (the
timeline figure). Times are true simulation seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kv.raft.messages import Role

if TYPE_CHECKING:
    from kv.member import Member
    from sim.cluster import Slot

COMMIT_SAMPLE = 0.05  # seconds between two recorded commit indexes of one member


@dataclass(frozen=True, slots=True)
class RoleChange:
    time: float
    slot: int
    role: str  # a Role value, or "down" / "paused"
    term: int


@dataclass(frozen=True, slots=True)
class FaultSpan:
    start: float
    stop: float | None  # None while it lasts
    fault: str
    id: int
    detail: str


@dataclass(slots=True)
class Timeline:
    roles: list[RoleChange] = field(default_factory=list)
    commits: dict[int, list[tuple[float, int]]] = field(default_factory=dict)
    leaders: list[tuple[float, int, int]] = field(default_factory=list)  # (time, slot, term) new leaders
    faults: list[FaultSpan] = field(default_factory=list)
    fault_log: list[str] = field(default_factory=list)  # printed lines, in order
    _last_role: dict[int, tuple[str, int]] = field(default_factory=dict)
    _last_commit: dict[int, tuple[float, int]] = field(default_factory=dict)
    _leader_terms: set[int] = field(default_factory=set)

    def observe(self, now: float, slot: Slot, member: Member) -> None:
        node = member.node
        key = (node.role.value, node.term)
        s = slot.slot
        if self._last_role.get(s) != key:
            self._last_role[s] = key
            self.roles.append(RoleChange(now, s, key[0], key[1]))
            if node.role is Role.LEADER and node.term not in self._leader_terms:
                self._leader_terms.add(node.term)
                self.leaders.append((now, s, node.term))
        commit = node.log.committed
        last = self._last_commit.get(s)
        if last is None or (commit != last[1] and now - last[0] >= COMMIT_SAMPLE):
            self._last_commit[s] = (now, commit)
            self.commits.setdefault(s, []).append((now, commit))

    def member_up(self, now: float, slot: Slot) -> None:
        self._last_role.pop(slot.slot, None)
        self._last_commit.pop(slot.slot, None)

    def member_down(self, now: float, slot: Slot) -> None:
        self._last_role[slot.slot] = ("down", -1)
        self.roles.append(RoleChange(now, slot.slot, "down", 0))

    def paused(self, now: float, slot: Slot, paused: bool) -> None:
        if paused:
            self._last_role[slot.slot] = ("paused", -1)
            self.roles.append(RoleChange(now, slot.slot, "paused", 0))
        else:
            self._last_role.pop(slot.slot, None)

    def fault_started(self, now: float, fault: str, ident: int, detail: str) -> None:
        self.faults.append(FaultSpan(now, None, fault, ident, detail))
        self.fault_log.append(f"{now:9.3f}s  start {fault}#{ident}: {detail}")

    def fault_stopped(self, now: float, fault: str, ident: int, detail: str) -> None:
        for i in range(len(self.faults) - 1, -1, -1):
            f = self.faults[i]
            if f.id == ident and f.fault == fault and f.stop is None:
                self.faults[i] = FaultSpan(f.start, now, f.fault, f.id, f.detail)
                break
        self.fault_log.append(f"{now:9.3f}s  stop  {fault}#{ident}{': ' + detail if detail else ''}")

    @property
    def elections(self) -> int:
        """Terms that had a leader."""
        return len(self.leaders)

    @property
    def leader_changes(self) -> int:
        """New leaders that were a different member from the previous leader."""
        changes = 0
        prev = None
        for _, s, _ in self.leaders:
            if prev is not None and s != prev:
                changes += 1
            prev = s
        return changes
