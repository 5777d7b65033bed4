"""The narrated demo (`python -m sim.raft_demo`, the README's main command) is a real, checked run."""

from __future__ import annotations

import pytest

from sim import raft_demo


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_elects_survives_crash_and_partition_and_is_safe(seed: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert raft_demo.main(["--seed", str(seed)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"seed={seed} ")
    assert out.count("becomes LEADER") >= 3  # boot, after the kill, after the partition
    assert "KILL" in out and "RESTART" in out and "PARTITION" in out and "HEAL" in out
    assert "all nodes applied the same log: yes" in out
    assert "verdict: SAFE" in out


def test_demo_is_deterministic_for_a_seed(capsys: pytest.CaptureFixture[str]) -> None:
    raft_demo.main(["--seed", "9"])
    first = capsys.readouterr().out
    raft_demo.main(["--seed", "9"])
    assert capsys.readouterr().out == first
