"""Fault schedules: drawn from the seed, written to JSON, read back, and checked on the way in."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import schedule
from sim.schedule import Action, Fault, ScheduleError, generate, parse_faults


def test_nemesis_names_are_jepsens_and_compose() -> None:
    assert parse_faults("partition,kill,pause") == (Fault.PARTITION, Fault.KILL, Fault.PAUSE)
    assert parse_faults("none") == () and parse_faults("") == ()
    assert {f.value for f in Fault} >= {
        "partition", "partition-leader", "bridge", "majorities-ring", "one-way", "kill", "kill-leader",
        "pause", "clock", "disk", "membership", "drop", "duplicate", "reorder",
    }


def test_an_unknown_nemesis_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ScheduleError, match="unknown nemesis 'partitoin'.*partition"):
        parse_faults("partitoin")


@given(seed=st.integers(0, 10_000), nodes=st.integers(1, 7), phase=st.floats(0.0, 60.0))
@settings(max_examples=60)
def test_every_start_has_one_stop_within_the_fault_phase_and_a_kind_never_overlaps_itself(
    seed: int, nodes: int, phase: float
) -> None:
    events = generate(list(Fault), nodes, phase, random.Random(seed))
    starts = {e.id: e for e in events if e.action is Action.START}
    stops = {e.id: e for e in events if e.action is Action.STOP}
    assert starts.keys() == stops.keys()
    for i, s in starts.items():
        assert s.at <= stops[i].at <= phase
    assert [e.at for e in events] == sorted(e.at for e in events)
    for f in Fault:
        spans = sorted((starts[i].at, stops[i].at) for i in starts if starts[i].fault is f)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


@given(seed=st.integers(0, 10_000), nodes=st.integers(2, 7))
@settings(max_examples=30)
def test_targets_name_existing_members(seed: int, nodes: int) -> None:
    for e in generate(list(Fault), nodes, 40.0, random.Random(seed)):
        p = e.params
        named = list(p.get("nodes", [])) + ([p["node"]] if "node" in p else []) + list(p.get("order", []))
        named += [n for g in p.get("groups", []) for n in g]
        assert all(0 <= n <= nodes for n in named)
        if "groups" in p:
            assert sorted(n for g in p["groups"] for n in g) == list(range(1, nodes + 1))


def test_same_seed_same_schedule_and_a_different_seed_differs() -> None:
    faults = parse_faults("partition,kill,pause,clock")
    a = generate(faults, 5, 30.0, random.Random("7/schedule"))
    b = generate(faults, 5, 30.0, random.Random("7/schedule"))
    c = generate(faults, 5, 30.0, random.Random("8/schedule"))
    assert a == b and a != c


def test_a_schedule_file_round_trips(tmp_path: Path) -> None:
    events = generate(parse_faults("partition,one-way,clock,drop"), 5, 20.0, random.Random(3))
    path = tmp_path / "schedule.json"
    schedule.write(path, {"seed": 3, "nodes": 5}, events)
    options, back = schedule.read(path)
    assert options == {"seed": 3, "nodes": 5}
    assert [e.to_json() for e in back] == [e.to_json() for e in events]


@pytest.mark.parametrize(
    "doc, why",
    [
        ({"format": "nope"}, "not a raftkv schedule"),
        ({"format": "raftkv-schedule", "version": 9, "events": []}, "unsupported schedule version"),
        ({"format": "raftkv-schedule", "version": 1, "events": [{"at": 1}]}, "event 0 lacks 'fault'"),
        ({"format": "raftkv-schedule", "version": 1,
          "events": [{"at": 1, "fault": "flood", "action": "start", "id": 0}]}, "event 0"),
        ({"format": "raftkv-schedule", "version": 1,
          "events": [{"at": -1, "fault": "kill", "action": "start", "id": 0}]}, "must not be negative"),
    ],
)
def test_a_bad_schedule_file_is_refused_saying_where(tmp_path: Path, doc: dict, why: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ScheduleError, match=why):
        schedule.read(path)


def test_events_print_as_one_readable_line() -> None:
    ev = schedule.FaultEvent(3.25, Fault.PARTITION, Action.START, 4, {"groups": [[1, 2], [3, 4, 5]]})
    assert ev.describe() == "    3.250s  start partition#4 groups=[[1,2],[3,4,5]]"
