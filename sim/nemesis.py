"""The nemesis: applies a fault schedule to a SimCluster, and heals everything at the end.

``nemesis`` is the actor (a simpy generator): it sleeps until each scheduled
event and starts or stops that fault. ``Nemesis`` holds what every active
fault needs to undo itself, so faults compose: two partitions are two named
cuts, a member killed by ``kill`` is restarted by that kill's stop and not by
another fault's. ``heal_all`` ends the fault phase (VOPR's transition to
liveness mode): every cut healed, message faults off, every member restarted,
resumed, its clock back to its nominal rate, its disk fast again.

Each start and stop is logged in the timeline with what it resolved to
("isolated m3 (the leader)"), which the run prints.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy

from sim.cluster import SimCluster, Slot
from sim.membership import add_member, remove_member
from sim.network import LinkFaults
from sim.schedule import Action, Fault, FaultEvent

_NETWORK_CUTS = (Fault.PARTITION, Fault.PARTITION_LEADER, Fault.BRIDGE, Fault.MAJORITIES_RING, Fault.ONE_WAY)
_MESSAGE_FAULTS = (Fault.DROP, Fault.DUPLICATE, Fault.REORDER)


@dataclass
class ActiveFault:
    event: FaultEvent
    slots: list[Slot] = field(default_factory=list)  # members this fault acts on
    strobe: simpy.Process | None = None
    operator: simpy.Process | None = None  # the membership fault's remove in progress


class Nemesis:
    def __init__(self, env: simpy.Environment, cluster: SimCluster, rng: random.Random) -> None:
        self.env = env
        self.cluster = cluster
        self.rng = rng
        self.active: dict[int, ActiveFault] = {}
        self.injected: dict[str, int] = {}  # fault name -> how many times it started

    # ------------------------------------------------------------- helpers

    def _slot(self, n: int) -> Slot | None:
        return self.cluster.slots.get(n)

    def _ids(self, slots: Sequence[int]) -> list[int]:
        return [self.cluster.slots[s].raft_id for s in slots if s in self.cluster.slots]

    def _log_start(self, ev: FaultEvent, detail: str) -> None:
        self.cluster.timeline.fault_started(self.env.now, ev.fault.value, ev.id, detail)

    def _refresh_message_faults(self) -> None:
        base = self.cluster.network.baseline
        loss, dup, reorder = base.loss, base.duplicate, base.reorder
        for a in self.active.values():
            rate = float(a.event.params.get("rate", 0.0))
            if a.event.fault is Fault.DROP:
                loss = max(loss, rate)
            elif a.event.fault is Fault.DUPLICATE:
                dup = max(dup, rate)
            elif a.event.fault is Fault.REORDER:
                reorder = max(reorder, rate)
        self.cluster.network.set_faults(LinkFaults(loss, dup, reorder))

    # ------------------------------------------------------------- events

    def apply(self, ev: FaultEvent) -> None:
        if ev.action is Action.START:
            if ev.id in self.active:
                return
            self.injected[ev.fault.value] = self.injected.get(ev.fault.value, 0) + 1
            self.active[ev.id] = a = ActiveFault(ev)
            self._start(a)
        else:
            a_or_none = self.active.pop(ev.id, None)
            if a_or_none is not None:
                self._stop(a_or_none)

    def _start(self, a: ActiveFault) -> None:
        ev, c, net, now = a.event, self.cluster, self.cluster.network, self.env.now
        p = ev.params
        name = f"{ev.fault.value}#{ev.id}"
        f = ev.fault
        if f is Fault.PARTITION:
            groups = [self._ids(g) for g in p.get("groups", [])]
            net.cut_between(name, groups)
            self._log_start(ev, "halves " + " | ".join(",".join(f"m{s}" for s in g) for g in p.get("groups", [])))
        elif f is Fault.PARTITION_LEADER:
            leader = c.leader()
            if leader is None:
                self._log_start(ev, "no leader to isolate")
                return
            net.cut_between(name, [[leader.raft_id], [s.raft_id for s in c.slots.values() if s is not leader]])
            self._log_start(ev, f"isolated {leader.name} (the leader, term {_term(leader)})")
        elif f is Fault.BRIDGE:
            order = list(p.get("order", []))
            half = len(order) // 2
            left, bridge, right = order[:half], order[half : half + 1], order[half + 1 :]
            net.cut_between(name, [self._ids(left), self._ids(right)])
            self._log_start(ev, f"{_names(left)} | bridge {_names(bridge)} | {_names(right)}")
        elif f is Fault.MAJORITIES_RING:
            order = list(p.get("order", []))
            n = len(order)
            k = math.ceil((n // 2) / 2)  # each member keeps k ring neighbours on each side: a majority
            cut = []
            for i, a_slot in enumerate(order):
                for j, b_slot in enumerate(order):
                    d = min((i - j) % n, (j - i) % n)
                    if d > k:
                        cut += [(c.slots[a_slot].raft_id, c.slots[b_slot].raft_id)]
            net.cut(name, cut)
            self._log_start(ev, f"ring {_names(order)}, each sees its {k} neighbours on each side")
        elif f is Fault.ONE_WAY:
            s = self._slot(int(p.get("node", 0)))
            if s is None:
                return
            others = [o.raft_id for o in c.slots.values() if o is not s]
            if p.get("direction") == "in":
                net.cut(name, [(o, s.raft_id) for o in others])
                self._log_start(ev, f"{s.name} cannot receive")
            else:
                net.cut(name, [(s.raft_id, o) for o in others])
                self._log_start(ev, f"{s.name} cannot send")
        elif f in (Fault.KILL, Fault.KILL_LEADER):
            if f is Fault.KILL_LEADER:
                leader = c.leader()
                targets = [leader] if leader is not None else []
            else:
                targets = [s for s in (self._slot(int(n)) for n in p.get("nodes", [])) if s is not None]
            a.slots = [s for s in targets if c.kill(s, name)]
            what = "the leader " if f is Fault.KILL_LEADER else ""
            self._log_start(ev, f"crashed {what}{_names([s.slot for s in a.slots])}" if a.slots else "nothing to crash")
        elif f is Fault.PAUSE:
            node = int(p.get("node", 0))
            s = c.leader() if node == 0 else self._slot(node)
            if s is not None and c.pause(s):
                a.slots = [s]
                self._log_start(ev, f"paused {s.name}{' (the leader)' if node == 0 else ''}")
            else:
                self._log_start(ev, "nothing to pause")
        elif f is Fault.CLOCK:
            s = self._slot(int(p.get("node", 0)))
            if s is None:
                return
            a.slots = [s]
            mode = p.get("mode", "bump")
            if mode == "bump":
                delta = float(p.get("delta", 1.0))
                s.clock.bump(now, delta)
                self._log_start(ev, f"{s.name} clock jumps {delta:+.3f}s")
            elif mode == "strobe":
                delta, period = float(p.get("delta", 0.1)), float(p.get("period", 0.01))
                a.strobe = self.env.process(clock_strobe(self.env, c, s, delta, period))
                self._log_start(ev, f"{s.name} clock strobes by {delta:.3f}s every {period * 1000:.0f}ms")
            else:
                rate = float(p.get("rate", 1.5))
                s.clock.set_rate(now, rate)
                self._log_start(ev, f"{s.name} clock runs at {rate:.3f}x")
            c.poke(s)
        elif f is Fault.DISK:
            s = self._slot(int(p.get("node", 0)))
            if s is None:
                return
            a.slots = [s]
            s.disk.slow_factor = float(p.get("slow_factor", 50.0))
            self._log_start(ev, f"{s.name} fsync {s.disk.slow_factor:.0f}x slower; power loss at the end")
        elif f is Fault.MEMBERSHIP:
            s = self._slot(int(p.get("node", 0)))
            busy = [o.name for o in c.slots.values() if o.operator is not None or o.removed]
            if busy:
                # One membership change at a time, as an operator following etcd's runbook
                # would (and etcd's strict reconfig check enforces): otherwise removals pile up
                # faster than replacements catch up and the cluster loses its quorum for good.
                self._log_start(ev, f"{', '.join(busy)} still being replaced: skipped")
                return
            if s is None or s.member is None:
                self._log_start(ev, "nothing to remove")
                return
            a.slots = [s]
            a.operator = s.operator = self.env.process(remove_member(self.env, c, s))
            self._log_start(ev, f"removing {s.name} (member {s.raft_id:x})")
        elif f in _MESSAGE_FAULTS:
            self._refresh_message_faults()
            self._log_start(ev, f"rate {float(p.get('rate', 0.0)):.2f}")

    def _stop(self, a: ActiveFault) -> None:
        ev, c, now = a.event, self.cluster, self.env.now
        f = ev.fault
        detail = ""
        if f in _NETWORK_CUTS:
            c.network.heal(f"{f.value}#{ev.id}")
        elif f in (Fault.KILL, Fault.KILL_LEADER):
            restarted = [s for s in a.slots if c.restart(s)]
            detail = f"restarted {_names([s.slot for s in restarted])}" if restarted else ""
        elif f is Fault.PAUSE:
            for s in a.slots:
                c.unpause(s)
            detail = f"resumed {_names([s.slot for s in a.slots])}" if a.slots else ""
        elif f is Fault.CLOCK:
            if a.strobe is not None and a.strobe.is_alive:
                a.strobe.interrupt()
            for s in a.slots:
                s.clock.reset_rate(now)
                c.poke(s)
        elif f is Fault.DISK:
            for s in a.slots:
                s.disk.slow_factor = 1.0
                if c.kill(s, "power loss"):
                    c.restart(s)
                    detail = f"{s.name} lost power and restarted from its synced writes"
        elif f is Fault.MEMBERSHIP:
            for s in a.slots:
                s.operator = self.env.process(add_member(self.env, c, s, a.operator))
            detail = f"re-adding {_names([s.slot for s in a.slots])} with an empty disk" if a.slots else ""
        elif f in _MESSAGE_FAULTS:
            self._refresh_message_faults()
        c.timeline.fault_stopped(now, f.value, ev.id, detail)

    def heal_all(self) -> None:
        """End of the fault phase: stop every active fault, then make sure everything is whole."""
        for ident in sorted(self.active):
            self._stop(self.active.pop(ident))
        c = self.cluster
        c.network.heal()
        c.network.set_faults(None)
        for s in c.slots.values():
            s.disk.slow_factor = 1.0
            s.clock.reset_rate(self.env.now)
            c.unpause(s)
            if s.member is None and not s.removed:
                c.restart(s)
            c.poke(s)
        c.timeline.fault_log.append(f"{self.env.now:9.3f}s  heal: all faults stopped, quiet phase begins")


def _names(slots: Sequence[Any]) -> str:
    return ",".join(f"m{s}" for s in slots) or "-"


def _term(s: Slot) -> int:
    return s.member.node.term if s.member is not None else 0


def clock_strobe(env: simpy.Environment, cluster: SimCluster, slot: Slot, delta: float, period: float) -> Generator[Any, Any, None]:
    """A clock flipping between two readings `delta` apart every `period` (Jepsen's strobe)."""
    sign = 1.0
    try:
        while True:
            slot.clock.bump(env.now, sign * delta)
            cluster.poke(slot)
            sign = -sign
            yield env.timeout(period)
    except simpy.Interrupt:
        if sign < 0:  # leave the clock where it started the strobe
            slot.clock.bump(env.now, -delta)


def nemesis(env: simpy.Environment, nem: Nemesis, events: Sequence[FaultEvent], until: float) -> Generator[Any, Any, None]:
    """The nemesis actor: inject each scheduled event at its time, up to the end of the fault phase."""
    for ev in events:
        if ev.at >= until:
            break
        if ev.at > env.now:
            yield env.timeout(ev.at - env.now)
        nem.apply(ev)
