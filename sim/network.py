"""The simulated network: who can reach whom, how long a message takes, what goes wrong on the way.

Reachability is a ``networkx.DiGraph``: an edge a -> b means a's messages can
reach b. Every partition is a *named cut* (a set of directed edges removed by
one fault), so faults compose: healing one partition leaves another in place,
and a one-way cut is simply an edge removed in one direction only. A message is
dropped if its edge is missing when it is sent or when it would arrive (as an
iptables DROP rule eats packets already on the wire).

Between two members messages are FIFO (etcd's peers talk over TCP streams):
a message never overtakes an earlier one on the same link, unless the
*reorder* fault holds it back. Loss, duplication and reordering happen at
configurable rates (``LinkFaults``) that faults can change for a while.

A message in flight is a simpy ``Timeout`` whose callback hands it to the
receiver: a process per message would double the event count of the
hottest path of the simulator (measured with cProfile).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import networkx as nx
import simpy

from kv.raft.messages import Message
from sim.distributions import Latency


@dataclass(frozen=True, slots=True)
class LinkFaults:
    """Per-message probabilities of loss, duplication and reordering."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} rate must be in [0, 1], not {p}")


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped_cut: int = 0  # edge missing at send or at arrival
    dropped_loss: int = 0
    duplicated: int = 0
    reordered: int = 0


class Network:
    """Links between members, edited by faults; hands arriving messages to `deliver`."""

    def __init__(
        self,
        env: simpy.Environment,
        node_ids: Iterable[int],
        rng: random.Random,
        latency: Latency,
        deliver: Callable[[Message], None],
        faults: LinkFaults = LinkFaults(),
        reorder_delay: float | None = None,
    ) -> None:
        self.env = env
        self.rng = rng
        self.latency = latency
        self.deliver = deliver
        self.baseline = faults
        self.faults = faults
        # A reordered message is held back by up to this long (default: 10 mean latencies).
        self.reorder_delay = reorder_delay if reorder_delay is not None else 10 * max(latency.mean(), 1e-4)
        self.graph: nx.DiGraph = nx.DiGraph()
        self.cuts: dict[str, frozenset[tuple[int, int]]] = {}
        self.stats = NetworkStats()
        self._last_arrival: dict[tuple[int, int], float] = {}
        self._in_flight: dict[tuple[int, int], deque[tuple[Message, bool]]] = {}
        for n in node_ids:
            self.add_node(n)

    # ------------------------------------------------------------ topology

    @property
    def nodes(self) -> list[int]:
        return sorted(self.graph.nodes)

    def add_node(self, n: int) -> None:
        """A new member joins, reachable from and to everyone (minus the active cuts)."""
        if n in self.graph:
            return
        others = list(self.graph.nodes)
        self.graph.add_node(n)
        for o in others:
            self.graph.add_edge(n, o)
            self.graph.add_edge(o, n)
        self._rebuild()

    def cut(self, name: str, edges: Iterable[tuple[int, int]]) -> None:
        """Remove the directed edges `edges` until `heal(name)`; a name already in use is replaced."""
        self.cuts[name] = frozenset((a, b) for a, b in edges if a != b)
        self._rebuild()

    def cut_between(self, name: str, groups: Iterable[Iterable[int]]) -> None:
        """Partition: no message crosses between different groups, in either direction."""
        sets = [set(g) for g in groups]
        edges = [(a, b) for i, g in enumerate(sets) for h in sets[:i] + sets[i + 1 :] for a in g for b in h]
        self.cut(name, edges)

    def heal(self, name: str | None = None) -> None:
        """Remove one named cut, or (None) every cut."""
        if name is None:
            self.cuts.clear()
        else:
            self.cuts.pop(name, None)
        self._rebuild()

    def _rebuild(self) -> None:
        blocked = set().union(*self.cuts.values()) if self.cuts else set()
        nodes = list(self.graph.nodes)
        self.graph.clear_edges()
        self.graph.add_edges_from((a, b) for a in nodes for b in nodes if a != b and (a, b) not in blocked)
        self._succ = self.graph._succ  # adjacency dict: the per-message reachability test

    def reachable(self, a: int, b: int) -> bool:
        succ = self._succ.get(a)
        return succ is not None and b in succ

    def components(self) -> list[list[int]]:
        """Groups of members that can all reach each other (strongly connected components)."""
        return sorted(sorted(c) for c in nx.strongly_connected_components(self.graph))

    # ---------------------------------------------------------- message faults

    def set_faults(self, faults: LinkFaults | None) -> None:
        """Change the loss / duplicate / reorder rates (None: back to the baseline)."""
        self.faults = faults if faults is not None else self.baseline

    # -------------------------------------------------------------- sending

    def send(self, m: Message) -> None:
        stats = self.stats
        stats.sent += 1
        if not self.reachable(m.from_, m.to):
            stats.dropped_cut += 1
            return
        faults = self.faults
        rng = self.rng
        if faults.loss and rng.random() < faults.loss:
            stats.dropped_loss += 1
            return
        self._schedule(m)
        if faults.duplicate and rng.random() < faults.duplicate:
            stats.duplicated += 1
            self._schedule(m)

    def _schedule(self, m: Message) -> None:
        now = self.env.now
        at = now + self.latency.sample(self.rng)
        faults = self.faults
        if faults.reorder and self.rng.random() < faults.reorder:
            # Held back past later messages on the same link; FIFO order is not kept for it.
            self.stats.reordered += 1
            at += self.rng.uniform(0.0, self.reorder_delay)
            ev = self.env.timeout(at - now, m)
            ev.callbacks.append(self._arrive_reordered)
            return
        link = (m.from_, m.to)
        queue = self._in_flight.get(link)
        if queue is None:
            queue = self._in_flight[link] = deque()
        if queue and at <= self._last_arrival[link]:
            # FIFO holds it behind the last message in flight on this link, so it arrives
            # with that one: it rides along on its timer (profiling: ~12% of messages; one
            # event and one wake of the receiver fewer each).
            queue.append((m, True))
            return
        self._last_arrival[link] = at
        queue.append((m, False))
        # The timer says *when*; the link's queue says *which*: the oldest message on it and
        # those riding along behind it. (Two timers due at the same instant may fire in
        # either order after float rounding, hence no arrival times in the queue.)
        ev = self.env.timeout(at - now, queue)
        ev.callbacks.append(self._arrive_fifo)

    def _arrive_fifo(self, ev: simpy.events.Event) -> None:
        queue = ev._value
        m, _ = queue.popleft()
        self._arrive(m)
        while queue and queue[0][1]:
            self._arrive(queue.popleft()[0])

    def _arrive_reordered(self, ev: simpy.events.Event) -> None:
        self._arrive(ev._value)

    def _arrive(self, m: Message) -> None:
        if self.reachable(m.from_, m.to):
            self.stats.delivered += 1
            self.deliver(m)
        else:
            self.stats.dropped_cut += 1
