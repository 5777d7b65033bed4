"""Specifications of the simulator's workloads beyond the register (issue 7)."""

from __future__ import annotations

import json

from sim.history import OpKind, Status, operation_to_dict
from sim.options import RunOptions
from sim.run import simulate

SHORT = RunOptions(nodes=3, duration=8.0, quiet=3.0, clients=5, rate=50.0, nemesis="partition,kill",
                   nemesis_interval=1.0)


def test_txn_workload_runs_multi_key_transactions_checked_across_keys() -> None:
    r = simulate(SHORT.with_(workload="txn", seed=3))
    assert r.ok, r.summary["failures"]
    txns = [op for op in r.history if op.op is OpKind.TXN and op.status is Status.OK]
    assert len(txns) > 50
    assert any(len({m.key for m in op.value}) > 1 for op in txns)  # keys joined by one txn
    assert r.summary["linearizable"] is True


def test_lock_fencing_prevents_the_lost_update_that_a_paused_holder_causes_without_it() -> None:
    """Jepsen's etcd 3.4.3 finding: a holder paused past its lease still believes it holds
    the lock. Unfenced writes then land after a newer holder's grant; fenced ones are refused."""
    opts = SHORT.with_(workload="lock", nemesis="pause,partition", nemesis_interval=1.0)
    unfenced_failure = None
    for seed in range(1, 11):
        r = simulate(opts.with_(seed=seed, lock_fencing=False))
        if not r.ok:
            unfenced_failure = seed, r.summary["failures"]
            break
    assert unfenced_failure is not None, "no lost update without fencing in 10 seeds"
    seed, failures = unfenced_failure
    assert any("lock" in f for f in failures), failures
    for s in range(1, seed + 1):
        r = simulate(opts.with_(seed=s))
        assert r.ok, (s, r.summary["failures"])
        records = r.workload_files["lock.jsonl"]
        assert any(rec["op"] == "acquire" and rec["status"] == "ok" for rec in records)
        json.dumps(records)  # the file is plain JSON Lines


def test_watch_streams_match_the_committed_history_across_resumes() -> None:
    r = simulate(SHORT.with_(workload="watch", nemesis="partition,kill,pause", seed=2))
    assert r.ok, r.summary["failures"]
    records = r.workload_files["watch.jsonl"]
    assert any(rec["record"] == "commit" for rec in records)
    assert any(rec.get("resumes") for rec in records if rec["record"] == "response")  # streams were resumed


def test_watch_workload_catches_watch_skip_and_the_same_seeds_pass_without_it() -> None:
    opts = SHORT.with_(workload="watch", nemesis="partition,kill,pause")
    found = next((s for s in range(1, 51) if not simulate(opts.with_(seed=s, bugs=("watch-skip",))).ok), None)
    assert found is not None, "watch-skip not caught in 50 seeds"
    for s in range(1, found + 1):
        r = simulate(opts.with_(seed=s))
        assert r.ok, (s, r.summary["failures"])


def test_lease_workload_sees_kept_leases_stay_and_abandoned_ones_expire() -> None:
    r = simulate(SHORT.with_(workload="lease", nemesis="partition,kill,pause", seed=1))
    assert r.ok, r.summary["failures"]
    records = r.workload_files["lease.jsonl"]
    assert any(rec["op"] == "expire" for rec in records)
    assert any(rec["op"] == "keepalive" and rec["status"] == "ok" for rec in records)


def test_lease_workload_catches_lease_follower_clock_and_the_same_seeds_pass_without_it() -> None:
    opts = SHORT.with_(workload="lease", nemesis="partition,kill,pause", clients=6)
    found = next((s for s in range(1, 51) if not simulate(opts.with_(seed=s, bugs=("lease-follower-clock",))).ok),
                 None)
    assert found is not None, "lease-follower-clock not caught in 50 seeds"
    for s in range(1, found + 1):
        r = simulate(opts.with_(seed=s))
        assert r.ok, (s, r.summary["failures"])


def test_election_discovery_and_config_workloads_pass_under_faults() -> None:
    for workload in ("election", "discovery", "config"):
        r = simulate(SHORT.with_(workload=workload, nemesis="partition,kill,pause", seed=4))
        assert r.ok, (workload, r.summary["failures"])
        assert r.summary["workload_check"]["ok"], workload


def test_the_election_checker_finds_two_leaders_acting_at_once() -> None:
    from sim.workloads.election import check_election

    records = [
        {"client": 1, "op": "won", "term": 5, "call": 0.0, "return": 1.0},
        {"client": 2, "op": "won", "term": 9, "call": 0.5, "return": 2.0},
        {"client": 1, "op": "proclaim", "term": 5, "call": 2.5, "return": 2.6, "value": "stale"},
        {"client": 7, "op": "observe", "term": 9, "call": 3.0, "return": 3.0},
        {"client": 7, "op": "observe", "term": 5, "call": 3.5, "return": 3.5},
    ]
    problems = check_election(records)
    assert any("two leaders at once" in p for p in problems)
    assert any("out of order" in p for p in problems)
    assert check_election(records[:2]) == []


def test_sweep_of_every_workload_under_every_nemesis_runs_clean() -> None:
    from sim.cli import sweep
    from sim.workloads import WORKLOADS

    runs = [SHORT.with_(seed=s, workload=w, nemesis="all", nodes=5) for s in (1, 2) for w in sorted(WORKLOADS)]
    results = sweep(runs, jobs=2, progress=False)
    failed = [(r["workload"], r["seed"], r["failures"]) for r in results if not r["ok"]]
    assert not failed, failed


def test_every_workload_is_deterministic_per_seed() -> None:
    import json as _json

    from sim.workloads import WORKLOADS

    for workload in sorted(WORKLOADS):
        opts = SHORT.with_(workload=workload, nemesis="partition,kill,pause,membership", seed=11, duration=5.0)
        a, b = simulate(opts), simulate(opts)
        assert [operation_to_dict(op) for op in a.history] == [operation_to_dict(op) for op in b.history], workload
        assert _json.dumps(a.workload_files, sort_keys=True) == _json.dumps(b.workload_files, sort_keys=True), workload
        assert a.summary["failures"] == b.summary["failures"] == [], (workload, a.summary["failures"])
