"""Raft's safety properties (paper Figure 3), checked from the outside on live nodes.

Used by the in-memory tests and by the simulator alike: feed it what every node
applies and, after each step, the nodes themselves; it returns violations as
values (it never raises), each naming the property it breaks.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kv.raft.messages import Entry, Role
from kv.raft.node import RaftNode


class Property(enum.Enum):
    ELECTION_SAFETY = "election safety"  # at most one leader per term
    LOG_MATCHING = "log matching"  # same index and term => identical prefixes
    LEADER_COMPLETENESS = "leader completeness"  # committed entries are in every later leader's log
    STATE_MACHINE_SAFETY = "state machine safety"  # no two different entries applied at one index
    MONOTONIC_COMMIT = "monotonic commit"  # commit and applied indexes never go back on a live node


@dataclass(frozen=True, slots=True)
class Violation:
    property: Property
    detail: str

    def __str__(self) -> str:
        return f"{self.property.value}: {self.detail}"


class SafetyChecker:
    """Accumulates what it has seen; each check returns only new violations."""

    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> the node that led it
        self.applied: dict[int, tuple[int, int, bytes]] = {}  # index -> (term, first applier, data)
        self.last_commit: dict[int, int] = {}
        self.violations: list[Violation] = []
        self._reported: set[Violation] = set()
        # Applied indexes in the order they were first seen, and for each (leader, term)
        # how far along that list its log has been checked: a leader's log only grows
        # during its term (Leader Append-Only), so what was verified stays verified.
        self._applied_order: list[int] = []
        self._completeness_checked: dict[tuple[int, int], int] = {}

    def _add(self, prop: Property, detail: str) -> list[Violation]:
        """Report a violation once, however many observations still show it."""
        v = Violation(prop, detail)
        if v in self._reported:
            return []
        self._reported.add(v)
        self.violations.append(v)
        return [v]

    def node_restarted(self, node_id: int) -> None:
        """Commit may legitimately restart lower after a crash (it is recovered from disk)."""
        self.last_commit.pop(node_id, None)

    def observe_applied(self, node_id: int, entries: Iterable[Entry]) -> list[Violation]:
        out: list[Violation] = []
        for e in entries:
            seen = self.applied.get(e.index)
            if seen is None:
                self.applied[e.index] = (e.term, node_id, e.data)
                self._applied_order.append(e.index)
            elif (seen[0], seen[2]) != (e.term, e.data):
                out += self._add(
                    Property.STATE_MACHINE_SAFETY,
                    f"node {node_id} applied (index {e.index}, term {e.term}) but node {seen[1]} "
                    f"applied (index {e.index}, term {seen[0]}) there",
                )
        return out

    def observe(self, nodes: Mapping[int, RaftNode]) -> list[Violation]:
        """Every property, across all nodes (Log Matching compares whole logs: the costly part)."""
        out: list[Violation] = []
        for node_id, n in sorted(nodes.items()):
            out += self.observe_node(node_id, n)
            if n.role == Role.LEADER:
                out += self._leader_completeness(node_id, n)
        out += self._log_matching(nodes)
        return out

    def observe_node(self, node_id: int, n: RaftNode) -> list[Violation]:
        """The cheap properties of one node (Election Safety, monotone commit): a driver can
        check them after every Ready."""
        out: list[Violation] = []
        if n.role == Role.LEADER:
            prev = self.leaders.setdefault(n.term, node_id)
            if prev != node_id:
                out += self._add(
                    Property.ELECTION_SAFETY, f"nodes {prev} and {node_id} were both leader in term {n.term}"
                )
        last = self.last_commit.get(node_id, 0)
        if n.log.committed < last:
            out += self._add(
                Property.MONOTONIC_COMMIT, f"node {node_id} commit went back from {last} to {n.log.committed}"
            )
        self.last_commit[node_id] = n.log.committed
        return out

    def _leader_completeness(self, node_id: int, n: RaftNode) -> list[Violation]:
        out: list[Violation] = []
        first = n.log.first_index()
        key = (node_id, n.term)
        start = self._completeness_checked.get(key, 0)
        self._completeness_checked[key] = len(self._applied_order)
        for index in self._applied_order[start:]:
            term = self.applied[index][0]
            if index < first or term > n.term:
                continue  # inside the leader's snapshot, or committed in a later term
            t = n.log.term(index)
            if t != term:
                out += self._add(
                    Property.LEADER_COMPLETENESS,
                    f"leader {node_id} of term {n.term} lacks committed entry (index {index}, term {term}); "
                    f"it has term {t} there",
                )
        return out

    def _log_matching(self, nodes: Mapping[int, RaftNode]) -> list[Violation]:
        out: list[Violation] = []
        logs = {i: _log_map(n) for i, n in sorted(nodes.items())}
        ids = sorted(logs)
        for a_pos, a in enumerate(ids):
            for b in ids[a_pos + 1 :]:
                la, lb = logs[a], logs[b]
                common = sorted(set(la) & set(lb), reverse=True)
                # The highest index where both hold an entry of the same term: everything
                # below it (that both still hold) must be identical.
                top = next((i for i in common if la[i][0] == lb[i][0]), None)
                if top is None:
                    continue
                for i in common:
                    if i <= top and la[i] != lb[i]:
                        out += self._add(
                            Property.LOG_MATCHING,
                            f"nodes {a} and {b} agree at (index {top}, term {la[top][0]}) "
                            f"but differ at index {i}: {la[i][0]} vs {lb[i][0]}",
                        )
                        break
        return out


def _log_map(n: RaftNode) -> dict[int, tuple[int, bytes]]:
    return {e.index: (e.term, e.data) for e in n.log.all_entries()}
