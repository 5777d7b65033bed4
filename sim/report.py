"""What a run leaves behind: the printed summary and the files in ``--out DIR``.

Files: ``history.jsonl`` (DESIGN.md's history format, via ``sim.history``),
``summary.json`` (the ``RunResult.summary``: ops, elections, faults, latency
percentiles, every check's verdict, ``linearizable``,
``invariant_violations``, ``sim_seconds``, ``wall_seconds``, ``events``),
``schedule.json`` (the options and the fault events: ``sim replay`` reads
it) and the plots ``timeline.png`` and ``latency.png``. JSON is written with
sorted keys so equal runs give equal bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim import schedule
from sim.history import write_history

if TYPE_CHECKING:
    from sim.run import RunResult


def write_outputs(result: RunResult, out: Path, plots: bool = True) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "history": out / "history.jsonl",
        "summary": out / "summary.json",
        "schedule": out / "schedule.json",
    }
    write_history(result.history, paths["history"])
    for name, recs in result.workload_files.items():
        paths[name] = out / name
        with open(paths[name], "w") as f:
            for rec in recs:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
    paths["summary"].write_text(json.dumps(result.summary, indent=1, sort_keys=True) + "\n")
    opts = result.options.to_json()
    opts.pop("out", None)
    opts["schedule_file"] = ""  # the events are in this file; replaying it needs nothing else
    schedule.write(paths["schedule"], opts, result.events)
    if plots:
        from sim.plots import plot_run

        timeline, latency = plot_run(result, out)
        paths["timeline"] = timeline
        paths["latency"] = latency
    return paths


def _lat(p: dict[str, Any]) -> str:
    if p.get("p50") is None:
        return "-"
    return f"p50 {p['p50']:.1f}  p90 {p['p90']:.1f}  p99 {p['p99']:.1f}  max {p['max']:.1f} ms"


def render_summary(result: RunResult, paths: dict[str, Path] | None = None) -> str:
    s = result.summary
    ops = s["ops"]
    lines = [
        "",
        f"== run seed {s['seed']}: {'PASS' if s['ok'] else 'FAIL'} ==",
        f"operations   {ops['total']} total: {ops['ok']} ok, {ops['fail']} fail (definite), "
        f"{ops['info']} info (indefinite)",
        f"leaders      {s['elections']} elections won, {s['leader_changes']} leader changes; "
        f"at the end: {s['liveness']['leader'] or 'none'} (term {s['liveness']['term']})",
        "faults       " + (", ".join(f"{k} x{v}" for k, v in s["faults_injected"].items()) or "none"),
        f"latency      {_lat(s['latency_ms']['all'])}",
    ]
    for k, v in s["latency_ms"].items():
        if k != "all":
            lines.append(f"  {k:10} {_lat(v)}")
    net = s["network"]
    lines.append(
        f"network      {net['sent']} sent, {net['delivered']} delivered, {net['dropped_cut']} cut, "
        f"{net['dropped_loss']} lost, {net['duplicated']} duplicated, {net['reordered']} reordered"
    )
    lines.append("checks")
    inv = s["invariant_violations"]
    lines.append(
        f"  invariants (election safety, log matching, leader completeness, state machine safety, "
        f"monotone commit/apply, HashKV): {'ok' if inv == 0 else f'{inv} VIOLATION(S)'}"
        f" [{s['invariants']['full_checks']} full checks]"
    )
    for v in s["invariants"]["violations"][:5]:
        lines.append(f"    - t={v['time']:.3f}s {v['property']}: {v['detail']}")
    lin = s["linearizability"]
    if lin is None:
        lines.append("  linearizability: not checked (no history)")
    else:
        lines.append(f"  linearizability: {lin['verdict']} ({lin['seconds']:.2f}s, {lin['components']} components)")
        frag = lin.get("fragment")
        if frag:
            lines.append(f"    reason: {frag['reason']}")
            for op in frag["ops"][:8]:
                lines.append(f"    {json.dumps(op)}")
    wl = s["workload_check"]
    if wl is not None:
        lines.append(f"  {wl['name']}: {'ok' if wl['ok'] else 'FAILED'}")
        for p in wl["problems"][:5]:
            lines.append(f"    - {p}")
    live = s["liveness"]
    probe = live["probe_committed_after"]
    lines.append(
        f"  liveness: {'ok' if live['ok'] else 'FAILED'} (probe write committed "
        f"{'after %.3fs' % probe if probe is not None else 'never'} of the quiet phase; "
        f"members {'converged' if live['converged'] else 'did NOT converge'})"
    )
    for p in live["problems"]:
        lines.append(f"    - {p}")
    lines.append(
        f"speed        {s['sim_seconds']:g} simulated s in {s['wall_seconds']:.2f} wall s "
        f"({s['sim_seconds_per_wall_second']:.1f} sim s/wall s, {s['events']} events, "
        f"{s['events_per_wall_second']:.0f} events/wall s); checks {s['check_seconds']:.2f}s"
    )
    if paths:
        lines.append("files        " + "  ".join(str(p) for p in paths.values()))
    if not s["ok"]:
        lines.append("FAILED: " + " | ".join(s["failures"]))
        lines.append(f"replay: {s['replay']}")
        if paths and "history" in paths:
            lines.append(f"history: {paths['history']}")
    return "\n".join(lines)
