"""The checker agrees with trying every order, on thousands of small histories.

Each test pins one path of the pipeline against the brute-force reference
(tests/sim/check/bruteforce.py): the whole ``check`` on multi-key histories
with cas, txn, info and fail operations; the WGL search alone, without
decomposition or reductions; the zone check on unique-value registers; the
register model.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from sim.check import ModelKind, Verdict, check
from sim.check.linearizability import Method, decide_component
from sim.check.model import has_effect
from sim.check.wgl import search
from sim.history import Operation, Status

from .bruteforce import brute_force_linearizable
from .strategies import histories



def fast(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _expected(ops: list[Operation], register: bool = False) -> Verdict:
    return Verdict.OK if brute_force_linearizable(ops, register=register) else Verdict.VIOLATION


@fast(1500)
@given(histories())
def test_check_verdict_equals_brute_force_on_small_kv_histories(ops: list[Operation]) -> None:
    assert check(ops, timeout=None).verdict is _expected(ops)


@fast(600)
@given(histories(keys=("a", "b", "c"), kinds=("get", "put", "cas", "txn", "txn")))
def test_search_alone_equals_brute_force_without_decomposition(ops: list[Operation]) -> None:
    kept = [op for op in ops if op.status is not Status.FAIL]
    outcome = search(kept, {"a": 0, "b": 1, "c": 2})
    assert outcome.verdict is _expected(ops)


@fast(1000)
@given(histories(max_ops=7, keys=("a",), kinds=("get", "get", "put"), unique_values=True))
def test_zone_check_equals_brute_force_on_unique_value_registers(ops: list[Operation]) -> None:
    effective = [op for op in ops if has_effect(op)]
    decision = decide_component(effective, None, deadline=None)
    assert decision.method in (Method.ZONES, Method.REFUTED)
    assert decision.verdict is _expected(ops)


@fast(300)
@given(histories(kinds=("get", "put", "delete", "cas")))
def test_register_model_equals_brute_force_with_keys_merged(ops: list[Operation]) -> None:
    assert check(ops, model=ModelKind.REGISTER, timeout=None).verdict is _expected(ops, register=True)


@fast(150)
@given(histories(max_ops=16, keys=("a",), kinds=("get", "get", "put"), unique_values=True, max_time=20))
def test_zone_check_equals_search_on_larger_unique_value_registers(ops: list[Operation]) -> None:
    effective = [op for op in ops if has_effect(op)]
    zoned = decide_component(effective, None, deadline=None)
    searched = search(effective, None)
    assert zoned.verdict is searched.verdict


@fast(300)
@given(histories())
def test_counterexample_fragment_is_not_linearizable_on_its_own(ops: list[Operation]) -> None:
    result = check(ops, timeout=None)
    if result.verdict is Verdict.VIOLATION:
        assert result.counterexample is not None
        fragment = list(result.counterexample.ops)
        assert not brute_force_linearizable(fragment)
        assert {op.index for op in fragment} <= {op.index for op in ops}


@fast(700)
@given(histories(unique_values=True, keys=("a", "b")))
def test_check_verdict_equals_brute_force_when_written_values_are_unique(ops: list[Operation]) -> None:
    # Exercises the zone refutation for components with cas, delete and txn.
    assert check(ops, timeout=None).verdict is _expected(ops)


@fast(300)
@given(histories(unique_values=True, keys=("a",)))
def test_unique_value_counterexamples_are_not_linearizable_on_their_own(ops: list[Operation]) -> None:
    result = check(ops, timeout=None)
    if result.verdict is Verdict.VIOLATION:
        assert result.counterexample is not None
        assert not brute_force_linearizable(list(result.counterexample.ops))
