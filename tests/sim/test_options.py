"""Run options: validated, printed first, and turned back into the command that replays the run."""

from __future__ import annotations

import pytest

from sim.cli import main as cli_main
from sim.options import RunOptions


def test_banner_starts_with_the_seed_and_lists_resolved_options() -> None:
    line = RunOptions(seed=7, nodes=3).banner()
    assert line.startswith("seed=7 ")
    assert "nodes=3" in line and "nemesis=partition,kill,pause" in line and "bugs=none" in line


def test_replay_command_carries_the_seed_and_every_non_default_option() -> None:
    o = RunOptions(seed=9, nodes=3, duration=5.5, nemesis="kill", bugs=("stale-read",))
    cmd = o.replay_command()
    assert cmd.startswith("python -m sim run --seed 9 ")
    assert "--nodes 3" in cmd and "--duration 5.5" in cmd and "--nemesis kill" in cmd and "--bug stale-read" in cmd
    assert "--rate" not in cmd  # defaults are left out


def test_options_round_trip_through_json() -> None:
    o = RunOptions(seed=4, latency="constant:0.003", bugs=("forget-vote",))
    assert RunOptions.from_json(o.to_json()) == o


@pytest.mark.parametrize(
    "changes, why",
    [({"nodes": 0}, "nodes"), ({"rate": 0}, "rate"), ({"nemesis": "flood"}, "unknown nemesis"),
     ({"bugs": ("nope",)}, "unknown teaching bug"), ({"latency": "gauss:1"}, "unknown distribution")],
)
def test_bad_options_are_refused(changes: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        RunOptions(**changes)


def test_unknown_option_in_a_schedule_file_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        RunOptions.from_json({"seed": 1, "warp": 9})


def test_bug_list_names_every_teaching_bug_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["run", "--bug", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [ln.split()[0] for ln in lines]
    assert {"commit-old-term", "forget-vote", "no-log-check", "ack-before-persist", "stale-read"} <= set(names)


def test_every_run_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--seed", "--nodes", "--nemesis", "--latency", "--disk-fsync", "--bug", "--schedule", "--out"):
        assert flag in out
