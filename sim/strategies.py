"""Hypothesis strategies for simulator runs: fault schedules and run options.

Seeded sweeps (``sim sweep``) draw schedules from a seed, and a failure is one
long schedule. Drawn through these strategies instead, a failing schedule
*shrinks*: hypothesis removes faults, moves them earlier, shortens them and
simplifies their parameters until every remaining part is needed to fail, and
the minimal schedule can be written as a replayable file (``sim.schedule``)
for ``python -m sim replay``.

    @given(run=runs(faults=(Fault.PARTITION_LEADER, Fault.PAUSE)))
    def test_register_is_linearizable(run):
        options, events = run
        assert simulate(options, events).ok
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from sim.options import RunOptions
from sim.schedule import Action, Fault, FaultEvent, fault_params
from sim.workloads import WORKLOADS

Faults = Sequence[Fault]


@st.composite
def _fault(draw: st.DrawFn, faults: Faults, nodes: int, fault_phase: float) -> tuple[Fault, float, float, dict[str, Any]]:
    fault = draw(st.sampled_from(list(faults)))
    # Times on a 10 ms grid: shrinking then moves them in steps a reader can follow.
    start = draw(st.integers(0, max(0, int(fault_phase * 100) - 1))) / 100
    hold = draw(st.integers(1, max(1, int((fault_phase - start) * 100)))) / 100
    # Parameters (which member, which halves, ...) come from the same helper the seeded
    # schedules use, fed by a hypothesis-controlled Random, so they shrink too.
    rng = draw(st.randoms(use_true_random=False))
    return fault, start, hold, fault_params(fault, nodes, rng, hold)


def schedules(
    faults: Faults = tuple(Fault), nodes: int = 3, fault_phase: float = 6.0, max_faults: int = 6
) -> st.SearchStrategy[list[FaultEvent]]:
    """Fault schedules over [0, fault_phase): up to `max_faults` faults, each a start and a stop."""

    def build(drawn: list[tuple[Fault, float, float, dict[str, Any]]]) -> list[FaultEvent]:
        events: list[FaultEvent] = []
        for ident, (fault, start, hold, params) in enumerate(drawn):
            events.append(FaultEvent(start, fault, Action.START, ident, params))
            events.append(FaultEvent(min(start + hold, fault_phase), fault, Action.STOP, ident, {}))
        events.sort(key=lambda e: (e.at, e.action is Action.START, e.id))
        return events

    return st.lists(_fault(faults, nodes, fault_phase), max_size=max_faults).map(build)


def run_options(
    base: RunOptions | None = None, workloads: Sequence[str] = tuple(sorted(WORKLOADS)), bugs: Sequence[str] = (),
    seeds: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[RunOptions]:
    """Run options around `base` (short runs by default): the seed and the workload vary.
    Pass ``seeds=st.just(n)`` to search over schedules alone (and not spend the shrinking
    on the seed)."""
    base = base or RunOptions(nodes=3, duration=6.0, quiet=3.0, clients=5, rate=50.0)
    return st.builds(
        lambda seed, workload: base.with_(seed=seed, workload=workload, bugs=tuple(bugs)),
        seeds if seeds is not None else st.integers(1, 2**31 - 1),
        st.sampled_from(list(workloads)),
    )


def runs(
    faults: Faults = tuple(Fault), base: RunOptions | None = None, workloads: Sequence[str] = ("register",),
    bugs: Sequence[str] = (), max_faults: int = 6, seeds: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[tuple[RunOptions, list[FaultEvent]]]:
    """(options, schedule) pairs for ``sim.run.simulate(options, schedule)``."""
    return run_options(base, workloads, bugs, seeds).flatmap(
        lambda o: st.tuples(st.just(o), schedules(faults, o.nodes, o.duration, max_faults))
    )
