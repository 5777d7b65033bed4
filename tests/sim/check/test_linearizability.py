"""sim.check.check: verdicts, counterexamples, time and memory limits."""

from __future__ import annotations

import random

import pytest

from sim.check import ModelKind, Verdict, check
from sim.check.generate import Shape, Workload, generate
from sim.check.linearizability import Method, decide_component
from sim.check.wgl import search
from sim.history import HistoryError

from .bruteforce import brute_force_linearizable
from .examples import history, stale_read


def test_stale_read_is_not_linearizable_and_the_fragment_is_the_three_ops() -> None:
    result = check(stale_read())
    assert result.verdict is Verdict.VIOLATION
    cx = result.counterexample
    assert cx is not None and cx.keys == ("x",) and cx.minimal
    assert [op.index for op in cx.ops] == [0, 1, 2]
    assert [op.index for op in cx.prefix] == [0, 1]
    assert [op.index for op in cx.stuck()] == [2]


def test_result_reports_time_explored_and_components() -> None:
    result = check(stale_read())
    assert result.seconds > 0 and result.explored > 0 and result.components == 2


def test_concurrent_write_may_be_seen_or_not() -> None:
    ops = history(
        (1, "put", "x", "a", None, 0.0, 10.0),
        (2, "get", "x", None, "a", 1.0, 2.0),
        (3, "get", "x", None, None, 0.5, 0.7),
    )
    assert check(ops).verdict is Verdict.OK


def test_intervals_are_closed_so_touching_ops_are_concurrent() -> None:
    ops = history((1, "get", "x", None, "a", 0.0, 1.0), (2, "put", "x", "a", None, 1.0, 2.0))
    assert check(ops).verdict is Verdict.OK


def test_read_of_a_value_never_written_is_refuted_without_search() -> None:
    ops = history((1, "put", "x", "a", None, 0.0, 1.0), (2, "get", "x", None, "zz", 2.0, 3.0))
    result = check(ops)
    assert result.verdict is Verdict.VIOLATION
    assert result.counterexample is not None
    assert [op.index for op in result.counterexample.ops] == [1]
    assert "never written" in result.counterexample.reason
    assert decide_component(ops, None, deadline=None).method is Method.REFUTED


def test_read_whose_only_write_came_later_is_refuted_with_both_ops() -> None:
    ops = history((1, "get", "x", None, "a", 0.0, 1.0), (2, "put", "x", "a", None, 2.0, 3.0))
    result = check(ops)
    assert result.counterexample is not None
    assert [op.index for op in result.counterexample.ops] == [0, 1]


def test_info_write_may_take_effect_long_after_its_call() -> None:
    ops = history(
        (1, "put", "x", "a", None, 0.0, None, "info"),
        (2, "get", "x", None, None, 5.0, 6.0),
        (3, "get", "x", None, "a", 7.0, 8.0),
    )
    assert check(ops).verdict is Verdict.OK


def test_info_write_may_never_happen_but_cannot_be_undone() -> None:
    ops = history(
        (1, "put", "x", "a", None, 0.0, None, "info"),
        (2, "get", "x", None, "a", 5.0, 6.0),
        (3, "get", "x", None, None, 7.0, 8.0),
    )
    assert check(ops).verdict is Verdict.VIOLATION


def test_fail_ops_are_ignored() -> None:
    ops = history((1, "put", "x", "a", None, 0.0, 1.0, "fail"), (2, "get", "x", None, None, 2.0, 3.0))
    assert check(ops).verdict is Verdict.OK


def test_unobserved_info_writes_are_dropped_and_reported() -> None:
    ops = history(
        (1, "put", "x", "a", None, 0.0, 1.0),
        *[(10 + i, "put", "x", f"lost{i}", None, 1.5, None, "info") for i in range(30)],
        (2, "get", "x", None, "a", 2.0, 3.0),
    )
    result = check(ops)
    assert result.verdict is Verdict.OK
    assert any("30 info writes" in n for n in result.notes)


def test_refused_cas_keeps_info_writes_that_could_explain_it() -> None:
    # Only the info write of b explains why cas(a -> c) found x != a.
    ops = history(
        (1, "put", "x", "a", None, 0.0, 1.0),
        (2, "put", "x", "b", None, 0.5, None, "info"),
        (3, "cas", "x", {"expect": "a", "new": "c"}, False, 2.0, 3.0),
    )
    assert check(ops).verdict is Verdict.OK
    assert brute_force_linearizable(ops)


def test_txn_ties_keys_into_one_component() -> None:
    # Each key alone is fine; the atomic txn read of both is not.
    ops = history(
        (1, "put", "a", "1", None, 0.0, 1.0),
        (2, "put", "b", "1", None, 2.0, 3.0),
        (3, "txn", None, ({"op": "get", "key": "a", "value": None}, {"op": "get", "key": "b", "value": None}),
         (None, "1"), 0.5, 4.0),
    )
    result = check(ops)
    assert result.verdict is Verdict.VIOLATION and result.components == 1
    assert result.counterexample is not None and result.counterexample.keys == ("a", "b")


def test_register_model_merges_keys_and_rejects_txn() -> None:
    ops = history((1, "put", "x", "a", None, 0.0, 1.0), (2, "get", "y", None, "a", 2.0, 3.0))
    assert check(ops).verdict is Verdict.VIOLATION
    assert check(ops, model=ModelKind.REGISTER).verdict is Verdict.OK
    txn = history((1, "txn", None, ({"op": "get", "key": "a", "value": None},), (None,), 0.0, 1.0))
    with pytest.raises(HistoryError, match="register model"):
        check(txn, model=ModelKind.REGISTER)


def test_delete_makes_the_key_absent_again() -> None:
    ops = history(
        (1, "put", "x", "a", None, 0.0, 1.0),
        (2, "delete", "x", None, None, 2.0, 3.0),
        (3, "get", "x", None, None, 4.0, 5.0),
        (4, "cas", "x", {"expect": None, "new": "b"}, True, 6.0, 7.0),
        (5, "get", "x", None, "b", 8.0, 9.0),
    )
    assert check(ops).verdict is Verdict.OK


def _hard_history() -> list:
    return generate(Shape(800, 50, 1, workload=Workload.MIXED, info_fraction=0.1), random.Random(7))


def test_tiny_timeout_on_a_hard_history_is_unknown_not_a_guess() -> None:
    result = check(_hard_history(), timeout=0.05)
    assert result.verdict is Verdict.UNKNOWN
    assert result.counterexample is None
    assert any("undecided" in n for n in result.notes)


def test_search_cache_never_grows_past_its_cap_and_the_verdict_holds() -> None:
    ops = generate(Shape(60, 6, 1, workload=Workload.MIXED), random.Random(3))
    free = search(ops, None)
    capped = search(ops, None, cache_cap=10)
    assert capped.cache_size <= 10 and capped.cache_full
    assert capped.verdict is free.verdict is Verdict.OK


def test_cache_cap_is_reported_in_the_notes() -> None:
    ops = generate(Shape(60, 6, 1, workload=Workload.MIXED), random.Random(3))
    result = check(ops, cache_cap=5)
    assert any("cap of 5" in n for n in result.notes)


def test_generated_valid_histories_are_linearizable_and_stale_reads_are_not() -> None:
    for seed in range(5):
        valid = generate(Shape(400, 8, 4), random.Random(seed))
        invalid = generate(Shape(400, 8, 4, invalid=True), random.Random(seed))
        assert check(valid).verdict is Verdict.OK
        assert check(invalid).verdict is Verdict.VIOLATION


def test_path_argument_reads_the_file(tmp_path) -> None:
    from sim.history import write_history

    path = tmp_path / "h.jsonl"
    write_history(stale_read(), path)
    result = check(str(path))
    assert result.verdict is Verdict.VIOLATION
    assert result.counterexample is not None and result.counterexample.ops[0].line == 1


# --- regressions: counterexamples hypothesis found, kept as explicit cases ---


def test_txn_reading_its_own_unobserved_write_is_linearizable() -> None:
    # Found by the brute-force comparison: the value x is read only inside
    # the txn that wrote it, and must not be collapsed as "unobserved".
    ops = history(
        (0, "get", "a", None, None, 0.0, 0.0),
        (1, "txn", None, ({"op": "put", "key": "a", "value": "x"}, {"op": "get", "key": "a", "value": None}),
         (None, "x"), 0.0, 0.0),
    )
    assert check(ops).verdict is Verdict.OK
