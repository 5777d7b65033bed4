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

# bug -> (run settings that open its window, the property whose failure we expect to see)
CAUGHT: dict[str, tuple[RunOptions, str]] = {
    "no-log-check": (FAST.with_(nemesis="kill,partition,one-way"), "invariants"),
    "ack-before-persist": (FAST.with_(nemesis="kill,partition,one-way"), "invariants"),
    "stale-read": (FAST.with_(nemesis="partition-leader,pause"), "linearizability"),
    # Two leaders in one term need a voter that restarts between two vote requests of the
    # same term: very short crashes (the nemesis interval scales their length to ~10-50 ms),
    # nearly equal election timeouts (split votes), and duplicated, slow-tailed messages so
    # a vote request can arrive again after the restart.
    "forget-vote": (
        FAST.with_(nodes=5, nemesis="kill", nemesis_interval=0.02, election_timeout_max=0.151, duplicate=0.5,
                   latency="exponential:0.001:0.03", quiet=6.0),
        "invariants",
    ),
    # Figure 8 needs diverging uncommitted suffixes (leaders cut off after appending) and a
    # later leader that re-replicates an old-term entry, then loses to the other suffix.
    "commit-old-term": (FAST.with_(nodes=5, nemesis="partition-leader,kill,one-way", nemesis_interval=0.3),
                        "invariants"),
}


def first_failing_seed(opts: RunOptions) -> tuple[int, list[str]] | None:
    for seed in range(1, MAX_SEEDS + 1):
        r = simulate(opts.with_(seed=seed))
        if not r.ok:
            return seed, r.summary["failures"]
    return None


@pytest.mark.parametrize("bug", sorted(CAUGHT))
def test_a_seed_sweep_catches_the_bug_and_the_same_seeds_pass_without_it(bug: str) -> None:
    opts, caught_by = CAUGHT[bug]
    found = first_failing_seed(opts.with_(bugs=(bug,)))
    assert found is not None, f"{bug}: no failure in {MAX_SEEDS} seeds"
    seed, failures = found
    assert any(f.startswith(caught_by) for f in failures), failures
    for s in range(1, seed + 1):
        r = simulate(opts.with_(seed=s))
        assert r.ok, (s, r.summary["failures"])
