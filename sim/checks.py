"""In-run checks: Raft's safety properties and the state machine's, from every member's log and state.

* Election Safety, Log Matching, Leader Completeness, State Machine Safety and
  monotone commit come from ``kv.raft.invariants.SafetyChecker`` (paper
  Figure 3). What each member applies is fed to it at every Ready (cheap);
  the whole-log properties are checked by ``monitor`` every
  ``check_interval`` simulated seconds and once at the end, because they
  walk every member's log (profiling: checking at every Ready dominated the run).
* Cheap ones run at every advance: at most one leader per term, commit and
  applied indexes never go back on a live member.
* Equal HashKV at equal applied revision: members that applied up to the
  same MVCC revision must hold identical key-value state (etcd's
  corruption check compares HashKV across members the same way).

A violation is a value with the time, the property and a sentence; the first
``KEEP`` of each property are kept in full, the rest counted.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import simpy

from kv.raft.invariants import SafetyChecker
from kv.raft.messages import Entry

if TYPE_CHECKING:
    from kv.member import Member
    from sim.cluster import SimCluster, Slot

KEEP = 10


@dataclass(frozen=True, slots=True)
class InvariantViolation:
    time: float
    property: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"time": round(self.time, 6), "property": self.property, "detail": self.detail}

    def __str__(self) -> str:
        return f"t={self.time:.3f}s {self.property}: {self.detail}"


@dataclass(slots=True)
class RunChecks:
    safety: SafetyChecker = field(default_factory=SafetyChecker)
    violations: list[InvariantViolation] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    hash_checks: int = 0
    observes: int = 0

    def _add(self, now: float, prop: str, detail: str) -> None:
        n = self.counts.get(prop, 0)
        self.counts[prop] = n + 1
        if n < KEEP:
            self.violations.append(InvariantViolation(now, prop, detail))

    def _add_all(self, now: float, vs: Iterable[Any]) -> None:
        for v in vs:
            self._add(now, v.property.value, v.detail)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    # ------------------------------------------------------ driver hooks

    def applied(self, now: float, slot: Slot, entries: tuple[Entry, ...]) -> None:
        self._add_all(now, self.safety.observe_applied(slot.raft_id, entries))

    def after_advance(self, now: float, slot: Slot, member: Member) -> None:
        self._add_all(now, self.safety.observe_node(slot.raft_id, member.node))
        applied = member.applied_index
        if applied < slot.last_applied:
            self._add(now, "monotonic apply", f"{slot.name} applied index went back from {slot.last_applied} to {applied}")
        slot.last_applied = applied

    def conflict(self, now: float, slot: Slot, err: Exception) -> None:
        self._add(now, "state machine safety", f"{slot.name}: {err}")

    def member_restarted(self, slot: Slot) -> None:
        self.safety.node_restarted(slot.raft_id)

    # --------------------------------------------------------- periodic

    def check_now(self, now: float, cluster: SimCluster) -> None:
        live = [s for s in cluster.slots.values() if s.member is not None and not s.removed]
        nodes = {s.raft_id: s.member.node for s in live if s.member is not None}
        self.observes += 1
        self._add_all(now, self.safety.observe(nodes))
        self.check_hashes(now, live)

    def check_hashes(self, now: float, live: list[Slot]) -> None:
        # Only members at the same revision can be compared: hash those alone (hashing
        # is the costly part: it reads every kept version).
        revisions: dict[int, int] = {}
        for s in live:
            assert s.member is not None
            revisions[s.member.revision] = revisions.get(s.member.revision, 0) + 1
        by_revision: dict[int, tuple[int, str]] = {}
        for s in live:
            assert s.member is not None
            if revisions[s.member.revision] < 2:
                continue
            h, rev = s.member.hash_kv()
            self.hash_checks += 1
            seen = by_revision.setdefault(rev, (h, s.name))
            if seen[0] != h:
                self._add(
                    now, "hashkv", f"{seen[1]} and {s.name} differ at revision {rev} (hash {seen[0]:#x} vs {h:#x})"
                )

    def monitor(self, env: simpy.Environment, cluster: SimCluster, interval: float) -> Generator[Any, Any, None]:
        """The invariant checker as an actor: every `interval`, look at every live member."""
        if interval <= 0:
            return
        while True:
            yield env.timeout(interval)
            self.check_now(env.now, cluster)
