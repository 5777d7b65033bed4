"""Each teaching bug is caught by the register workload in a seed sweep; the same seeds pass without it.

Every sweep is at most 50 seeds of a short run (3 members, 10 simulated
seconds of faults, fast Raft timers so many elections happen). The run
settings favour the bug's window — PreVote and CheckQuorum off, as in
tests/kv/raft/test_teaching_bugs.py, and faults that open the window — but
are the same with and without the bug. A sweep stops at the first seed that
fails; the same seeds up to it must pass with the correct core.
"""

from __future__ import annotations

import pytest

from sim.options import RunOptions
from sim.run import simulate

MAX_SEEDS = 50
FAST = RunOptions(
    nodes=3,
    duration=10.0,
    quiet=3.0,
    rate=50.0,
    clients=5,
    election_timeout_min=0.15,
    election_timeout_max=0.3,
    heartbeat_interval=0.05,
    pre_vote=False,
    check_quorum=False,
    nemesis_interval=0.5,
)

# bug -> (nemesis, the property whose failure we expect to see)
CAUGHT = {
    "no-log-check": ("kill,partition,one-way", "invariants"),
    "ack-before-persist": ("kill,partition,one-way", "invariants"),
    "stale-read": ("partition-leader,pause", "linearizability"),
}


def first_failing_seed(opts: RunOptions) -> tuple[int, list[str]] | None:
    for seed in range(1, MAX_SEEDS + 1):
        r = simulate(opts.with_(seed=seed))
        if not r.ok:
            return seed, r.summary["failures"]
    return None


@pytest.mark.parametrize("bug", sorted(CAUGHT))
def test_a_seed_sweep_catches_the_bug_and_the_same_seeds_pass_without_it(bug: str) -> None:
    nemesis, caught_by = CAUGHT[bug]
    opts = FAST.with_(nemesis=nemesis)
    found = first_failing_seed(opts.with_(bugs=(bug,)))
    assert found is not None, f"{bug}: no failure in {MAX_SEEDS} seeds"
    seed, failures = found
    assert any(f.startswith(caught_by) for f in failures), failures
    for s in range(1, seed + 1):
        r = simulate(opts.with_(seed=s))
        assert r.ok, (s, r.summary["failures"])
