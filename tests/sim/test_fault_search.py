"""Hypothesis-driven fault search: schedules drawn by sim.strategies shrink to a minimal replayable one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import schedule
from sim.options import RunOptions
from sim.run import simulate
from sim.schedule import Fault, FaultEvent
from sim.strategies import runs

SHORT = RunOptions(nodes=3, duration=6.0, quiet=3.0, clients=5, rate=50.0)


def write_replay(directory: Path, options: RunOptions, events: list[FaultEvent]) -> Path:
    opts = options.to_json()
    opts.pop("out", None)
    path = directory / "schedule.json"
    schedule.write(path, opts, events)
    return path


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(run=runs(faults=tuple(Fault), base=SHORT, workloads=("register", "txn", "lock", "watch")))
def test_drawn_fault_schedules_never_break_the_correct_core(run: tuple[RunOptions, list[FaultEvent]],
                                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    options, events = run
    r = simulate(options, events)
    if not r.ok:
        path = write_replay(tmp_path_factory.mktemp("failing"), options, events)
        raise AssertionError(f"{r.summary['failures']}; replay: python -m sim replay {path}")


def test_a_failure_shrinks_to_a_minimal_schedule_that_replays(tmp_path: Path) -> None:
    """With the stale-read bug, hypothesis finds a failing schedule and shrinks it: a
    follower that lags serves stale reads even with no fault at all, and the shrunk
    schedule says so (at most what the first failure had, and at most two faults);
    written out, the file replays to the same failure."""
    found: list[tuple[RunOptions, list[FaultEvent]]] = []

    # derandomize: the same examples on every machine, so the search is a specification
    # that either finds the bug or does not, not a coin toss.
    @settings(max_examples=30, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(run=runs(faults=(Fault.PARTITION_LEADER, Fault.PAUSE, Fault.PARTITION, Fault.KILL),
                    base=SHORT.with_(duration=3.0, quiet=2.0, clients=4, rate=40.0), bugs=("stale-read",),
                    max_faults=4, seeds=st.just(1)))
    def search(run: tuple[RunOptions, list[FaultEvent]]) -> None:
        options, events = run
        if not simulate(options, events).ok:
            found.append(run)  # hypothesis replays the shrunk example last
            raise AssertionError("stale read found")

    with pytest.raises(AssertionError, match="stale read found"):
        search()
    options, events = found[-1]
    starts = [e for e in events if e.action is schedule.Action.START]
    first = [e for e in found[0][1] if e.action is schedule.Action.START]
    assert len(starts) <= min(2, len(first)), [e.describe() for e in events]
    path = write_replay(tmp_path, options, events)
    doc = json.loads(path.read_text())
    assert doc["format"] == schedule.FORMAT
    opts, replayed = schedule.read(path)
    again = simulate(RunOptions.from_json(opts), replayed)
    assert not again.ok and any(f.startswith("linearizability") for f in again.summary["failures"])
