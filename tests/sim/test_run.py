"""A whole run: deterministic by seed, writes its files, replays from its schedule, reports failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.cli import main as cli_main
from sim.options import RunOptions
from sim.report import write_outputs
from sim.run import WALL_CLOCK_FIELDS, simulate
from sim.schedule import Fault

SHORT = RunOptions(seed=7, nodes=3, duration=4.0, quiet=3.0, clients=4, rate=40.0)


def _summary_without_wall_clock(path: Path) -> dict:
    s = json.loads(path.read_text())
    for k in WALL_CLOCK_FIELDS:
        s.pop(k)
    if s.get("linearizability"):
        s["linearizability"].pop("seconds")
    return s


def test_same_seed_and_options_give_byte_identical_history_and_summary(tmp_path: Path) -> None:
    opts = SHORT.with_(nemesis="partition,kill,pause,clock,drop,duplicate,reorder")
    a, b = tmp_path / "a", tmp_path / "b"
    write_outputs(simulate(opts), a, plots=False)
    write_outputs(simulate(opts), b, plots=False)
    assert (a / "history.jsonl").read_bytes() == (b / "history.jsonl").read_bytes()
    assert (a / "schedule.json").read_bytes() == (b / "schedule.json").read_bytes()
    assert _summary_without_wall_clock(a / "summary.json") == _summary_without_wall_clock(b / "summary.json")
    assert (a / "history.jsonl").read_text().count("\n") > 50


def test_a_different_seed_gives_a_different_history(tmp_path: Path) -> None:
    h1 = simulate(SHORT).history
    h2 = simulate(SHORT.with_(seed=8)).history
    assert [(o.call, o.op) for o in h1] != [(o.call, o.op) for o in h2]


@pytest.mark.parametrize("fault", [f.value for f in Fault])
def test_the_correct_core_passes_every_check_under_each_nemesis(fault: str) -> None:
    r = simulate(SHORT.with_(nemesis=fault, duration=6.0, nemesis_interval=1.0))
    assert r.summary["failures"] == []
    assert r.summary["invariant_violations"] == 0 and r.summary["linearizable"] is True
    assert r.summary["liveness"]["ok"]


def test_summary_has_what_the_issue_asks_for() -> None:
    s = simulate(SHORT).summary
    for key in ("linearizable", "invariant_violations", "sim_seconds", "wall_seconds", "events", "ops",
                "elections", "leader_changes", "faults_injected", "latency_ms", "liveness"):
        assert key in s
    assert s["sim_seconds"] == 7.0 and s["events"] > 1000
    assert s["ops"]["total"] == s["ops"]["ok"] + s["ops"]["fail"] + s["ops"]["info"]


def test_run_command_prints_seed_first_writes_files_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    status = cli_main(["run", "--seed", "3", "--nodes", "3", "--duration", "3", "--quiet", "3", "--rate", "30",
                       "--out", str(out)])
    text = capsys.readouterr().out
    assert status == 0
    assert text.splitlines()[0].startswith("seed=3 nodes=3 ")
    for name in ("history.jsonl", "summary.json", "schedule.json", "timeline.png", "latency.png"):
        assert (out / name).stat().st_size > 0
    assert "linearizability: linearizable" in text and "PASS" in text


def test_replay_of_a_schedule_reproduces_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    cli_main(["run", "--seed", "5", "--nodes", "3", "--duration", "4", "--quiet", "2", "--rate", "30",
              "--nemesis", "partition-leader,kill-leader", "--no-plots", "--out", str(out)])
    again = tmp_path / "again"
    assert cli_main(["replay", str(out / "schedule.json"), "--no-plots", "--out", str(again)]) == 0
    capsys.readouterr()
    assert (out / "history.jsonl").read_bytes() == (again / "history.jsonl").read_bytes()


def test_a_failing_run_exits_1_and_prints_the_replay_command_and_history_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bad"
    args = ["run", "--seed", "1", "--nodes", "3", "--duration", "8", "--quiet", "3", "--rate", "50", "--clients", "5",
            "--nemesis", "partition-leader,pause", "--bug", "stale-read", "--no-plots", "--out", str(out)]
    assert cli_main(args) == 1
    text = capsys.readouterr().out
    assert "FAILED: " in text
    assert "replay: python -m sim run --seed 1 " in text and "--bug stale-read" in text
    assert f"history: {out / 'history.jsonl'}" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is False and summary["linearizable"] is False


def test_sweep_lists_failing_seeds_with_their_replay_commands(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sweep", "--seeds", "4", "--jobs", "2", "--nodes", "3", "--duration", "8", "--quiet", "3",
            "--rate", "50", "--clients", "5", "--nemesis", "partition-leader,pause", "--bug", "stale-read",
            "--no-progress"]
    assert cli_main(args) == 1
    text = capsys.readouterr().out
    assert "4 runs (4 seeds x 1 workloads)" in text and "failed" in text
    assert "python -m sim run --seed " in text
