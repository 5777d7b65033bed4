"""``sim bench --profile``: self time summed by layer, the core told apart from the world."""

from __future__ import annotations

import pytest

from sim.cli import main
from sim.options import RunOptions
from sim.profiling import OTHER, layer_of, profile
from sim.run import simulate


@pytest.mark.parametrize(
    "filename, layer",
    [
        ("/x/kv/raft/node.py", "kv.raft: the Raft protocol"),
        ("/x/kv/raft/invariants.py", "kv.raft.invariants: the in-run Raft safety checks"),
        ("/x/kv/member.py", "kv: member, state machine, MVCC, leases, watches, codec"),
        ("/x/sim/check/wgl.py", "sim.check: the linearizability checker"),
        ("/x/sim/network.py", "sim: network, disk, clients, nemesis, in-run checks, history"),
        ("/venv/lib/python3.11/site-packages/simpy/core.py", "simpy: the event loop"),
        ("/usr/lib/python3.11/random.py", OTHER),
        ("~", OTHER),  # builtins
    ],
)
def test_a_function_belongs_to_the_layer_of_its_file(filename: str, layer: str) -> None:
    assert layer_of(filename) == layer


def test_the_layers_share_the_whole_run_and_the_core_does_real_work() -> None:
    opts = RunOptions(seed=3, nodes=3, clients=2, duration=2.0, quiet=1.0)
    p = profile(lambda: simulate(opts, linearizability=False))
    assert sum(lt.share for lt in p.layers) == pytest.approx(1.0)
    shares = {lt.layer: lt.share for lt in p.layers}
    assert shares["kv.raft: the Raft protocol"] > 0.05
    assert shares["simpy: the event loop"] > 0.0
    assert p.top and all(a[1] >= b[1] for a, b in zip(p.top, p.top[1:]))


def test_bench_profile_prints_the_layer_table(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import sim.cli

    monkeypatch.setattr(sim.cli, "BENCH", RunOptions(seed=1, nodes=3, clients=2, duration=2.0, quiet=1.0))
    assert main(["bench", "--profile", "--skip-check"]) == 0
    out = capsys.readouterr().out
    assert "kv.raft: the Raft protocol" in out and "costliest functions" in out
