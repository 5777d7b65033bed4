"""Fault schedules: generated from the seed, or read from a JSON file, and always written out.

A schedule is the list of fault events a run injects, each a start or a stop
of one fault (Jepsen's nemesis names), with the concrete targets drawn when
the schedule was made (which halves a partition splits, which member is
killed), so a schedule file alone replays the faults of a run. Faults aimed
at "the leader" (``partition-leader``, ``kill-leader``) name no member: the
leader is whoever leads when the fault starts.

Each enabled fault kind has its own timeline (start, hold for a while, stop,
wait, again) over the fault phase, so kinds overlap — a kill during a
partition — while one kind never overlaps itself.

File format (``schedule.json``)::

    {"format": "raftkv-schedule", "version": 1,
     "options": {...the run's resolved options: seed, nodes, ...},
     "events": [{"at": 3.25, "fault": "partition", "action": "start", "id": 0,
                 "params": {"groups": [[1, 4], [2, 3, 5]]}},
                {"at": 7.5, "fault": "partition", "action": "stop", "id": 0, "params": {}}, ...]}

Members are named by *slot* (1..nodes): a member removed and re-added by the
``membership`` fault gets a new Raft ID but keeps its slot.
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "raftkv-schedule"
VERSION = 1


class Fault(enum.Enum):
    PARTITION = "partition"  # random halves
    PARTITION_LEADER = "partition-leader"  # isolate the current leader
    BRIDGE = "bridge"  # two halves joined through one member that sees both
    MAJORITIES_RING = "majorities-ring"  # each member sees a majority, each a different one
    ONE_WAY = "one-way"  # a member cannot send (or cannot receive)
    KILL = "kill"  # crash members (losing unsynced writes), restart them later
    KILL_LEADER = "kill-leader"
    PAUSE = "pause"  # SIGSTOP: process nothing, then resume with a backlog
    CLOCK = "clock"  # bump, strobe or skew a member's clock
    DISK = "disk"  # slow fsync, then a power loss (crash losing unsynced writes)
    MEMBERSHIP = "membership"  # remove a member, re-add it later with an empty disk
    DROP = "drop"  # lose messages at a rate
    DUPLICATE = "duplicate"  # duplicate messages at a rate
    REORDER = "reorder"  # hold messages back past later ones at a rate

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Fault.PARTITION: "split the members into two random halves",
    Fault.PARTITION_LEADER: "isolate the current leader from everyone",
    Fault.BRIDGE: "two halves that only a bridge member in the middle can talk across",
    Fault.MAJORITIES_RING: "every member sees a majority, but each a different one",
    Fault.ONE_WAY: "a member can no longer send (or no longer receive): an asymmetric cut",
    Fault.KILL: "crash random members (unsynced writes lost); restart them from disk later",
    Fault.KILL_LEADER: "crash the current leader; restart it from disk later",
    Fault.PAUSE: "pause a member (SIGSTOP / GC pause); it resumes with messages queued, timers late",
    Fault.CLOCK: "bump, strobe or skew a member's clock",
    Fault.DISK: "slow a member's fsync, then crash it as in a power loss",
    Fault.MEMBERSHIP: "remove a member while traffic runs; re-add it later with an empty disk",
    Fault.DROP: "drop messages at a random rate",
    Fault.DUPLICATE: "duplicate messages at a random rate",
    Fault.REORDER: "reorder messages at a random rate",
}

# How long a fault holds (uniform range, seconds) and the quiet gap before its next start.
HOLD = {
    Fault.KILL: (1.0, 5.0),
    Fault.KILL_LEADER: (1.0, 5.0),
    Fault.PAUSE: (0.5, 4.0),
    Fault.MEMBERSHIP: (3.0, 8.0),
}
DEFAULT_HOLD = (2.0, 8.0)
GAP = (1.0, 5.0)
LEAD_IN = (0.5, 2.0)  # the cluster elects and warms up before the first fault


class ScheduleError(ValueError):
    """A fault list or schedule file is malformed; the text says where."""


class Action(enum.Enum):
    START = "start"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class FaultEvent:
    at: float
    fault: Fault
    action: Action
    id: int  # pairs a stop with its start
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": round(self.at, 6),
            "fault": self.fault.value,
            "action": self.action.value,
            "id": self.id,
            "params": dict(self.params),
        }

    def describe(self) -> str:
        params = " ".join(f"{k}={_show(v)}" for k, v in self.params.items())
        return f"{self.at:9.3f}s  {self.action.value:5} {self.fault.value}#{self.id} {params}".rstrip()


def _show(v: object) -> str:
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (list, dict)) else str(v)


def parse_faults(text: str) -> tuple[Fault, ...]:
    """``"partition,kill,pause"`` -> faults; "" or "none" -> no faults; "all" -> every fault;
    an unknown name is an error."""
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() != "none"]
    if "all" in names:
        return tuple(Fault)
    out: list[Fault] = []
    for n in names:
        try:
            f = Fault(n)
        except ValueError:
            known = ", ".join(f.value for f in Fault)
            raise ScheduleError(f"unknown nemesis {n!r} (known: {known})") from None
        if f not in out:
            out.append(f)
    return tuple(out)


DEFAULT_INTERVAL = 3.0  # the typical hold / gap the HOLD and GAP ranges are written for


def generate(
    faults: Iterable[Fault], nodes: int, fault_phase: float, rng: random.Random, interval: float = DEFAULT_INTERVAL
) -> list[FaultEvent]:
    """Draw a schedule over [0, fault_phase): each fault kind on its own timeline.

    `interval` scales how long faults hold and the gaps between them (Jepsen's
    nemesis interval): 0.3 makes faults ten times as brief and as frequent.
    """
    scale = interval / DEFAULT_INTERVAL
    events: list[FaultEvent] = []
    next_id = 0
    for fault in faults:
        t = rng.uniform(*LEAD_IN)
        lo, hi = HOLD.get(fault, DEFAULT_HOLD)
        while t < fault_phase:
            stop = min(t + rng.uniform(lo, hi) * scale, fault_phase)
            params = fault_params(fault, nodes, rng, stop - t)
            events.append(FaultEvent(t, fault, Action.START, next_id, params))
            events.append(FaultEvent(stop, fault, Action.STOP, next_id, {}))
            next_id += 1
            t = stop + rng.uniform(*GAP) * scale
    # Stable order: by time, stops before starts at the same instant, then by id.
    events.sort(key=lambda e: (e.at, e.action is Action.START, e.id))
    return events


def fault_params(fault: Fault, nodes: int, rng: random.Random, hold: float) -> dict[str, Any]:
    slots = list(range(1, nodes + 1))
    if fault is Fault.PARTITION:
        rng.shuffle(slots)
        half = nodes // 2
        return {"groups": [sorted(slots[:half]), sorted(slots[half:])]}
    if fault in (Fault.BRIDGE, Fault.MAJORITIES_RING):
        rng.shuffle(slots)
        return {"order": slots}
    if fault is Fault.ONE_WAY:
        return {"node": rng.choice(slots), "direction": rng.choice(["out", "in"])}
    if fault is Fault.KILL:
        r = rng.random()
        minority = (nodes - 1) // 2
        count = 1 if r < 0.6 or minority < 2 else (minority if r < 0.9 else minority + 1)
        return {"nodes": sorted(rng.sample(slots, count))}
    if fault is Fault.PAUSE:
        return {"node": rng.choice(slots + [0])}  # 0: whoever leads when the pause starts
    if fault is Fault.CLOCK:
        mode = rng.choice(["bump", "strobe", "skew"])
        node = rng.choice(slots)
        if mode == "bump":
            return {"node": node, "mode": mode, "delta": round(rng.uniform(0.05, 5.0), 6)}
        if mode == "strobe":
            return {"node": node, "mode": mode, "delta": round(rng.uniform(0.01, 0.3), 6),
                    "period": round(rng.uniform(0.005, 0.05), 6)}
        return {"node": node, "mode": mode, "rate": round(rng.choice([rng.uniform(0.5, 0.9), rng.uniform(1.1, 2.0)]), 6)}
    if fault is Fault.DISK:
        return {"node": rng.choice(slots), "slow_factor": round(rng.uniform(10.0, 200.0), 3)}
    if fault is Fault.MEMBERSHIP:
        return {"node": rng.choice(slots)}
    if fault in (Fault.DROP, Fault.DUPLICATE, Fault.REORDER):
        return {"rate": round(rng.uniform(0.05, 0.4), 6)}
    return {}  # partition-leader, kill-leader: resolved when the fault starts


# ------------------------------------------------------------------ files


def to_json(options: Mapping[str, Any], events: Iterable[FaultEvent]) -> str:
    doc = {"format": FORMAT, "version": VERSION, "options": dict(options), "events": [e.to_json() for e in events]}
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


def write(path: Path, options: Mapping[str, Any], events: Iterable[FaultEvent]) -> None:
    path.write_text(to_json(options, events))


def read(path: Path) -> tuple[dict[str, Any], list[FaultEvent]]:
    """(options, events) from a schedule file; raises ScheduleError naming the bad part."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ScheduleError(f"{path}: not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ScheduleError(f"{path}: not a raftkv schedule (missing \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise ScheduleError(f"{path}: unsupported schedule version {doc.get('version')!r}")
    options = doc.get("options", {})
    if not isinstance(options, dict):
        raise ScheduleError(f"{path}: \"options\" must be an object")
    raw = doc.get("events")
    if not isinstance(raw, list):
        raise ScheduleError(f"{path}: \"events\" must be a list")
    events = [event_from_json(e, i, path) for i, e in enumerate(raw)]
    return options, sorted(events, key=lambda e: (e.at, e.action is Action.START, e.id))


def event_from_json(obj: object, i: int, where: object = "schedule") -> FaultEvent:
    if not isinstance(obj, dict):
        raise ScheduleError(f"{where}: event {i} must be an object")
    try:
        at = float(obj["at"])
        fault = Fault(obj["fault"])
        action = Action(obj["action"])
        ident = int(obj["id"])
    except KeyError as e:
        raise ScheduleError(f"{where}: event {i} lacks {e.args[0]!r}") from None
    except (ValueError, TypeError) as e:
        raise ScheduleError(f"{where}: event {i}: {e}") from None
    params = obj.get("params", {})
    if not isinstance(params, dict):
        raise ScheduleError(f"{where}: event {i}: params must be an object")
    if at < 0:
        raise ScheduleError(f"{where}: event {i}: at must not be negative")
    return FaultEvent(at, fault, action, ident, params)
