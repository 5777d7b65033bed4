"""One simulated run: safety phase under faults, then a quiet liveness phase, then the checks.

``simulate(options)`` builds the world from the seed (``SimCluster``, the
workload's clients, the nemesis), runs the fault phase for
``options.duration`` simulated seconds with invariants checked as it goes,
heals everything (``Nemesis.heal_all``), runs the quiet phase
(``options.quiet`` seconds: a leader must emerge, a probe write must commit,
every member must converge), checks the history for linearizability and with
the workload's own checker, and returns a ``RunResult`` whose ``summary`` is
what ``summary.json`` holds.

Safety and liveness are reported separately (TigerBeetle's VOPR): a run
passes only if both hold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import simpy

from sim.check import CheckResult, Verdict, check
from sim.cluster import SimCluster
from sim.clients import ClientContext, Probe, liveness_probe
from sim.history import Operation, Status
from sim.nemesis import Nemesis, nemesis
from sim.options import RunOptions
from sim.schedule import FaultEvent, generate, parse_faults
from sim.schedule import read as read_schedule
from sim.seeds import child_rng
from sim.workloads import WorkloadCheck, make_workload

# Fields of summary.json that depend on the machine, not the seed (the determinism test drops them).
WALL_CLOCK_FIELDS = ("wall_seconds", "sim_seconds_per_wall_second", "events_per_wall_second", "check_seconds")


@dataclass
class RunResult:
    options: RunOptions
    events: list[FaultEvent]
    history: list[Operation]
    summary: dict[str, Any]
    cluster: SimCluster
    linearizability: CheckResult | None
    workload_check: WorkloadCheck | None
    records: list[Any] = field(default_factory=list)
    workload_files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.summary["ok"])


def schedule_for(options: RunOptions) -> list[FaultEvent]:
    """The run's faults: from the schedule file if one is given, else drawn from the seed."""
    if options.schedule_file:
        _, events = read_schedule(Path(options.schedule_file))
        return events
    return generate(
        parse_faults(options.nemesis),
        options.nodes,
        options.duration,
        child_rng(options.seed, "schedule"),
        options.nemesis_interval,
    )


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    v = sorted(values)

    def at(q: float) -> float:
        return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 3)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": round(v[-1] * 1000, 3)}


def simulate(
    options: RunOptions,
    events: list[FaultEvent] | None = None,
    *,
    linearizability: bool = True,
) -> RunResult:
    wall_start = time.perf_counter()
    if events is None:
        events = schedule_for(options)
    env = simpy.Environment()
    cluster = SimCluster(env, options)
    cluster.start()
    workload = make_workload(options.workload, options.keys)
    workload.configure(options)
    ctx = ClientContext(
        env, cluster, options.seed, options.clients, options.rate, options.client_timeout, stop_at=options.duration
    )
    workload.spawn_clients(ctx)
    nem = Nemesis(env, cluster, child_rng(options.seed, "nemesis"))
    env.process(nemesis(env, nem, events, options.duration))

    # ---- safety phase: faults on, invariants checked as the run goes
    env.run(until=options.duration)
    nem.heal_all()
    # ---- liveness phase: everything healed; a leader must emerge and a write must commit
    probe = Probe()
    env.process(liveness_probe(env, cluster, child_rng(options.seed, "probe"), probe, options.client_timeout))
    end = options.duration + options.quiet
    env.run(until=end)
    # The quiet phase may end in the middle of an ordinary election (a heartbeat held up
    # in the latency tail): give the cluster a few election timeouts to settle before
    # judging liveness, stepping a heartbeat at a time so a settled run stops early.
    settle_until = end + SETTLE_ELECTION_TIMEOUTS * options.election_timeout_max
    while not _settled(cluster) and env.now < settle_until:
        env.run(until=min(settle_until, env.now + options.heartbeat_interval))
    cluster.checks.check_now(env.now, cluster)
    sim_wall = time.perf_counter() - wall_start

    history = ctx.history()
    check_start = time.perf_counter()
    lin = check(history, timeout=options.check_timeout) if linearizability and history else None
    wl = workload.check(history)
    check_seconds = time.perf_counter() - check_start

    liveness = _liveness(cluster, probe, options)
    summary = _summary(options, cluster, nem, history, ctx, lin, wl, liveness, env, sim_wall, check_seconds)
    return RunResult(options, events, history, summary, cluster, lin, wl, ctx.records, workload.files())


SETTLE_ELECTION_TIMEOUTS = 10


def _convergence(cluster: SimCluster) -> tuple[dict[str, int], bool]:
    live = [s for s in cluster.slots.values() if s.member is not None and not s.removed]
    applied = {s.name: s.member.applied_index for s in live if s.member is not None}
    hashes = {s.member.hash_kv() for s in live if s.member is not None}
    return applied, len(set(applied.values())) <= 1 and len(hashes) <= 1


def _settled(cluster: SimCluster) -> bool:
    return cluster.leader() is not None and _convergence(cluster)[1]


def _liveness(cluster: SimCluster, probe: Probe, options: RunOptions) -> dict[str, Any]:
    leader = cluster.leader()
    applied, converged = _convergence(cluster)
    problems = []
    if leader is None:
        grace = SETTLE_ELECTION_TIMEOUTS * options.election_timeout_max
        problems.append(f"no leader at the end of the {options.quiet:g}s quiet phase (and {grace:g}s more)")
    if probe.committed_at is None:
        problems.append(f"the probe write did not commit within the {options.quiet:g}s quiet phase "
                        f"({probe.attempts} attempts)")
    if not converged:
        problems.append("members did not converge: applied index " + ", ".join(f"{k}={v}" for k, v in applied.items()))
    return {
        "ok": not problems,
        "problems": problems,
        "leader": leader.name if leader is not None else None,
        "term": leader.member.node.term if leader is not None and leader.member is not None else None,
        "probe_committed_after": None if probe.committed_at is None else round(probe.committed_at - probe.started, 6),
        "probe_attempts": probe.attempts,
        "applied_index": applied,
        "converged": converged,
    }


def _summary(
    options: RunOptions,
    cluster: SimCluster,
    nem: Nemesis,
    history: list[Operation],
    ctx: ClientContext,
    lin: CheckResult | None,
    wl: WorkloadCheck | None,
    liveness: dict[str, Any],
    env: simpy.Environment,
    sim_wall: float,
    check_seconds: float,
) -> dict[str, Any]:
    counts = {s.value: 0 for s in Status}
    for op in history:
        counts[op.status.value] += 1
    latencies = [op.return_ - op.call for op in history if op.status is Status.OK and op.return_ is not None]
    by_op: dict[str, list[float]] = {}
    for op in history:
        if op.status is Status.OK and op.return_ is not None:
            by_op.setdefault(op.op.value, []).append(op.return_ - op.call)
    checks = cluster.checks
    failures: list[str] = []
    if checks.total:
        first = checks.violations[0]
        failures.append(f"invariants: {checks.total} violation(s), first: {first}")
    linearizable: bool | None = None
    if lin is not None:
        linearizable = {Verdict.OK: True, Verdict.VIOLATION: False}.get(lin.verdict)
        if lin.verdict is Verdict.VIOLATION:
            reason = lin.counterexample.reason if lin.counterexample is not None else ""
            failures.append(f"linearizability: not linearizable{': ' + reason if reason else ''}")
        elif lin.verdict is Verdict.UNKNOWN:
            failures.append(f"linearizability: unknown (the checker ran out of its {options.check_timeout:g}s)")
    if wl is not None and not wl.ok:
        failures.append(f"workload check '{wl.name}': " + (wl.problems[0] if wl.problems else "failed"))
    if not liveness["ok"]:
        failures.append("liveness: " + "; ".join(liveness["problems"]))
    events = _events(env, cluster)
    sim_seconds = env.now
    net = cluster.network.stats
    return {
        "seed": options.seed,
        "ok": not failures,
        "failures": failures,
        "options": options.to_json(),
        "ops": {"total": len(history), **counts},
        "elections": cluster.timeline.elections,
        "leader_changes": cluster.timeline.leader_changes,
        "faults_injected": dict(sorted(nem.injected.items())),
        "fault_log": list(cluster.timeline.fault_log),
        "latency_ms": {"all": percentiles(latencies), **{k: percentiles(v) for k, v in sorted(by_op.items())}},
        "linearizable": linearizable,
        "linearizability": lin.to_dict() if lin is not None else None,
        "workload_check": None if wl is None else {"name": wl.name, "ok": wl.ok, "problems": list(wl.problems)},
        "invariant_violations": checks.total,
        "invariants": {
            "violations": [v.to_json() for v in checks.violations],
            "by_property": dict(sorted(checks.counts.items())),
            "full_checks": checks.observes,
            "hashkv_comparisons": checks.hash_checks,
        },
        "liveness": liveness,
        "network": {
            "sent": net.sent,
            "delivered": net.delivered,
            "dropped_cut": net.dropped_cut,
            "dropped_loss": net.dropped_loss,
            "duplicated": net.duplicated,
            "reordered": net.reordered,
        },
        "disk": {
            s.name: {"writes": s.disk.stats.writes, "fsyncs": s.disk.stats.fsyncs, "crashes": s.disk.stats.crashes,
                     "lost_writes": s.disk.stats.lost_writes}
            for s in cluster.slots.values()
        },
        "sim_seconds": sim_seconds,
        "events": events,
        "wall_seconds": round(sim_wall, 6),
        "sim_seconds_per_wall_second": round(sim_seconds / sim_wall, 3) if sim_wall > 0 else None,
        "events_per_wall_second": round(events / sim_wall, 1) if sim_wall > 0 else None,
        "check_seconds": round(check_seconds, 6),
        "replay": options.replay_command(),
    }


def _events(env: simpy.Environment, cluster: SimCluster) -> int:
    """Simulated events scheduled in the run (simpy numbers every event it schedules)."""
    eid = getattr(env, "_eid", None)
    if eid is not None:
        return next(eid)
    return cluster.events_processed
