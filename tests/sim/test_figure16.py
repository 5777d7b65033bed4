"""``sim figure16``: the Raft paper's Figure 16 experiment, as specifications.

Every trial elects exactly one new leader that every survivor knows, with a log
long enough to win; downtime has the lower bound the set-up implies; more
randomness means fewer split votes; the run is a function of the seed alone
(not of --jobs); the CLI writes the JSON and PNG the issue describes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kv.raft import Role
from sim.__main__ import main as sim_main
from sim.distributions import Latency
from sim.figure16 import (
    FIGURE_RANGES,
    FIRST_LEADER,
    Conditions,
    PAPER_STATEMENTS,
    Figure16Trial,
    TimeoutRange,
    run_ranges,
    run_trial,
    summarize,
    summary_json,
)

NET = Conditions()  # the default: broadcast time about 15 ms, no disk, logs of different lengths
REQUIRED = ("trials", "median_ms", "mean_ms", "p99_ms", "max_ms")


def _trials(n: int):  # noqa: ANN202
    return lambda r: max(1, n // 10) if r.no_randomness else n


@pytest.mark.parametrize("label", ["150-150", "150-155", "150-300", "12-24", "100-200"])
def test_every_trial_ends_with_exactly_one_new_leader_every_survivor_knows(label: str) -> None:
    timeout = TimeoutRange.parse(label)
    for index in range(8):
        trial = Figure16Trial(timeout, NET, seed=3, index=index)
        result = trial.run()
        assert not result.censored
        assert FIRST_LEADER not in trial.nodes  # the old leader stays crashed
        leaders = [i for i, n in trial.nodes.items() if n.role == Role.LEADER]
        assert leaders == [result.winner]
        term = trial.nodes[result.winner].term
        assert all(n.term == term and n.lead == result.winner for n in trial.nodes.values())
        assert result.terms >= 1 and term == trial.crash_term + result.terms
        assert result.downtime > 0


def test_only_the_two_longest_surviving_logs_ever_win() -> None:
    # Leader Completeness (§5.4.1): the last entry only the two longest logs hold is
    # committed with them, so a survivor with a shorter log cannot collect three votes.
    winners = [run_trial(TimeoutRange(150, 300), NET, seed=5, index=i).winner_extra_entries for i in range(40)]
    assert set(winners) == {2, 3}


def test_with_equal_logs_every_survivor_can_win() -> None:
    equal = Conditions(equal_logs=True)
    winners = {run_trial(TimeoutRange(150, 300), equal, seed=5, index=i).winner for i in range(40)}
    assert winners == {2, 3, 4, 5}


@pytest.mark.parametrize("label", ["12-24", "25-50", "150-155", "150-300"])
def test_downtime_is_at_least_half_the_minimum_timeout_plus_four_one_way_delays(label: str) -> None:
    # The synchronized heartbeat (sent at most one heartbeat interval, min/2, before the crash)
    # reset every timer no earlier than one delay after it left; then a RequestVote, its
    # answer and the new leader's first message each take at least one more delay.
    timeout = TimeoutRange.parse(label)
    bound_ms = timeout.min_ms / 2 + 4 * NET.latency.a * 1000
    s = summarize([run_trial(timeout, NET, seed=11, index=i) for i in range(60)])
    assert s.min_ms >= bound_ms


def test_more_randomness_in_the_timeout_means_fewer_split_votes() -> None:
    ranges = [TimeoutRange(150, 151), TimeoutRange(150, 175), TimeoutRange(150, 300)]
    results = run_ranges(ranges, _trials(80), NET, seed=2)
    split = [summarize(results[r.label]).split_vote_trials for r in ranges]
    assert split[0] > split[1] > split[2]
    assert split[0] >= 75  # with 1 ms of randomness nearly every election splits


def test_no_randomness_is_slower_than_the_recommended_150_300() -> None:
    results = run_ranges([TimeoutRange(150, 150), TimeoutRange(150, 300)], lambda r: 30, NET, seed=4)
    fixed, wide = summarize(results["150-150"]), summarize(results["150-300"])
    assert fixed.median_ms > 1.5 * wide.median_ms
    assert fixed.split_vote_trials >= 0.9 * fixed.trials  # identical timeouts: elections nearly always split


def test_a_trial_without_a_leader_in_time_is_counted_at_the_cap() -> None:
    r = run_trial(TimeoutRange(150, 150), Conditions(max_downtime=0.05), seed=1, index=0)
    assert r.censored and r.winner == 0
    assert r.downtime == pytest.approx(0.05)


def test_same_seed_gives_the_same_results_for_any_number_of_jobs() -> None:
    ranges = [TimeoutRange(150, 150), TimeoutRange(150, 155), TimeoutRange(12, 24)]
    one = summary_json({k: summarize(v) for k, v in run_ranges(ranges, _trials(30), NET, seed=9, jobs=1).items()})
    two = summary_json({k: summarize(v) for k, v in run_ranges(ranges, _trials(30), NET, seed=9, jobs=2).items()})
    again = run_ranges(ranges, _trials(30), NET, seed=9, jobs=1)
    assert one == two == summary_json({k: summarize(v) for k, v in again.items()})
    other = run_ranges(ranges, _trials(30), NET, seed=10, jobs=1)
    assert summary_json({k: summarize(v) for k, v in other.items()}) != one


def test_a_range_s_trials_do_not_depend_on_which_other_ranges_run() -> None:
    alone = run_ranges([TimeoutRange(50, 100)], _trials(15), NET, seed=6)
    together = run_ranges([TimeoutRange(12, 24), TimeoutRange(50, 100)], _trials(15), NET, seed=6)
    assert alone["50-100"] == together["50-100"]


def test_with_a_disk_a_candidate_and_its_voters_persist_before_they_send() -> None:
    # Ready's contract, persist then send: the candidate's RequestVote leaves after its
    # term and vote are on disk, the vote after the voter's. Both add to the bound above.
    latency, disk = Latency.parse("uniform:0.0002:0.0006"), Latency.parse("uniform:0.001:0.003")
    lan_and_disk, lan = Conditions(latency, disk), Conditions(latency, None)
    assert lan_and_disk.broadcast_time(seed=1) >= lan.broadcast_time(seed=1) + disk.a
    timeout = TimeoutRange(150, 300)
    results = [run_trial(timeout, lan_and_disk, seed=1, index=i) for i in range(30)]
    assert not any(r.censored for r in results)
    assert min(r.downtime for r in results) >= timeout.min_ms / 2000 + 4 * latency.a + 2 * disk.a


def test_cli_writes_the_json_schema_and_the_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "f16"
    status = sim_main(["figure16", "--trials", "20", "--ranges", "150-150,150-155,12-24,150-300", "--out", str(out),
                       "--seed", "3", "--jobs", "2", "--no-progress"])
    assert status == 0
    data = json.loads((out / "figure16.json").read_text())
    assert list(data) == ["150-150", "150-155", "12-24", "150-300"]
    for label, entry in data.items():
        assert all(isinstance(entry[k], (int, float)) for k in REQUIRED), label
        assert entry["trials"] == (2 if label == "150-150" else 20)
        assert 0 < entry["min_ms"] <= entry["median_ms"] <= entry["p99_ms"] <= entry["max_ms"]
        assert entry["min_ms"] <= entry["mean_ms"] <= entry["max_ms"]
    assert (out / "figure16.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert printed.startswith("figure16 seed=3 ")
    assert "paper     287" in printed and '"Adding just 5ms of randomness' in printed


def test_cli_json_equals_the_library_s_and_does_not_depend_on_jobs(tmp_path: Path) -> None:
    args = ["figure16", "--trials", "10", "--ranges", "150-155,25-50", "--seed", "8", "--no-progress"]
    assert sim_main([*args, "--out", str(tmp_path / "a"), "--jobs", "1"]) == 0
    assert sim_main([*args, "--out", str(tmp_path / "b"), "--jobs", "2"]) == 0
    a = (tmp_path / "a" / "figure16.json").read_bytes()
    assert a == (tmp_path / "b" / "figure16.json").read_bytes()
    ranges = [TimeoutRange(150, 155), TimeoutRange(25, 50)]
    lib = summary_json({k: summarize(v) for k, v in run_ranges(ranges, _trials(10), NET, seed=8).items()})
    assert json.loads(a) == lib


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_main(["figure16", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--trials", "--fixed-trials", "--out", "--seed", "--jobs", "--ranges", "--latency", "--disk",
                   "--equal-logs", "--max-downtime", "--no-progress"):
        assert option in text
    assert "150-150,150-151" in text  # the default ranges are listed


@pytest.mark.parametrize("bad", [["--ranges", "300-150"], ["--ranges", "fast"], ["--trials", "0"],
                                 ["--latency", "normal:1"], ["--max-downtime", "-1"]])
def test_bad_usage_exits_3(bad: list[str], tmp_path: Path) -> None:
    assert sim_main(["figure16", "--out", str(tmp_path), "--no-progress", *bad]) == 3


def test_every_paper_statement_names_a_range_of_the_figure_and_a_metric_of_the_json() -> None:
    labels = {r.label for r in FIGURE_RANGES}
    summary = summary_json({"150-155": summarize([run_trial(TimeoutRange(150, 155), NET, 1, 0)])})["150-155"]
    for st in PAPER_STATEMENTS:
        assert st.range_label in labels
        assert st.metric in summary
        assert st.relation in ("=", ">")
