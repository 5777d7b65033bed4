"""Jepsen register histories (history.edn) read into, and written from, the kv history format."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.__main__ import main
from sim.check.generate import Shape, Workload, generate
from sim.check.jepsen import Keyword, Symbol, parse_jepsen, read_edn, write_jepsen
from sim.check.linearizability import check
from sim.check.result import Verdict
from sim.history import CasValue, HistoryError, OpKind, Status

# ------------------------------------------------------------------- EDN


def test_edn_reads_what_histories_hold() -> None:
    text = """; a comment
    {:type :ok, :f :read, :value [1 nil "s\\"q\\n"], :time 12N, :x 1.5, :t true, :set #{1 2}}
    #_ {:discarded 1}
    #jepsen.history.Op{:index 3} (a \\b sym/bol)
    """
    forms = read_edn(text)
    assert [line for line, _ in forms] == [2, 4, 4]
    first, second, third = (form for _, form in forms)
    assert first[Keyword("type")] == Keyword("ok")
    assert first[Keyword("value")] == [1, None, 's"q\n']
    assert first[Keyword("time")] == 12 and first[Keyword("x")] == 1.5 and first[Keyword("t")] is True
    assert first[Keyword("set")] == frozenset({1, 2})
    assert second == {Keyword("index"): 3}  # a tagged record reads as its map
    assert third == [Symbol("a"), "b", Symbol("sym/bol")]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ('{:a 1}\n{:b [1 2}', 2, "unexpected '}'"),
        ("{:a 1}\n\n[1 2", 3, "never comes"),
        ('"abc', 1, "never ends"),
        ("{:a}", 1, "even number"),
        ('"\\q"', 1, "escape"),
    ],
)
def test_bad_edn_is_an_error_naming_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(HistoryError) as e:
        read_edn(text)
    assert e.value.line == line and words in str(e.value)


# ------------------------------------------------------------- Jepsen -> kv

SINGLE = """
{:type :invoke, :f :write, :value 1, :process 0, :time 1000000000}
{:type :invoke, :f :read, :value nil, :process 1, :time 1100000000}
{:type :info, :f :start-partition, :value nil, :process :nemesis, :time 1150000000}
{:type :ok, :f :write, :value 1, :process 0, :time 1200000000}
{:type :ok, :f :read, :value nil, :process 1, :time 1300000000}
{:type :invoke, :f :cas, :value [1 2], :process 0, :time 1400000000}
{:type :fail, :f :cas, :value [1 2], :process 0, :time 1500000000}
{:type :invoke, :f :write, :value 3, :process 1, :time 1600000000}
{:type :info, :f :write, :value 3, :process 1, :time 1700000000}
{:type :invoke, :f :read, :value nil, :process 6, :time 1800000000}
"""


def test_a_single_register_history_becomes_kv_operations() -> None:
    ops = parse_jepsen(SINGLE)
    got = [(o.client, o.op, o.key, o.value, o.output, o.call, o.return_, o.status) for o in ops]
    assert got == [
        (0, OpKind.PUT, "r", "1", None, 1.0, 1.2, Status.OK),
        (1, OpKind.GET, "r", None, None, 1.1, 1.3, Status.OK),  # nil read: the initial, absent state
        (0, OpKind.CAS, "r", CasValue("1", "2"), None, 1.4, 1.5, Status.FAIL),  # Knossos drops a :fail
        (1, OpKind.PUT, "r", "3", None, 1.6, None, Status.INFO),
        (2, OpKind.GET, "r", None, None, 1.8, None, Status.INFO),  # never completed: indefinite
    ]
    assert ops[0].line == 2 and ops[4].line == 11
    assert check(ops).verdict is Verdict.OK


def test_independent_keys_are_separate_registers_and_a_crashed_process_is_a_new_client() -> None:
    text = """
    {:type :invoke, :f :write, :value [0 5], :process 0, :time 10}
    {:type :ok, :f :write, :value [0 5], :process 0, :time 20}
    {:type :invoke, :f :cas, :value [1 [nil 7]], :process 0, :time 30}
    {:type :info, :f :cas, :value [1 [nil 7]], :process 0, :time 40}
    {:type :invoke, :f :read, :value [1 nil], :process 0, :time 50}
    {:type :ok, :f :read, :value [1 7], :process 0, :time 60}
    {:type :invoke, :f :read, :value [0 nil], :process 2, :time 70}
    {:type :ok, :f :read, :value [0 6], :process 2, :time 80}
    """
    ops = parse_jepsen(text)
    assert [(o.client, o.key, o.op) for o in ops] == [
        (0, "0", OpKind.PUT), (0, "1", OpKind.CAS), (1, "1", OpKind.GET), (2, "0", OpKind.GET)
    ]  # fmt: skip
    assert ops[1].value == CasValue(None, "7") and ops[1].status is Status.INFO
    result = check(ops)
    assert result.verdict is Verdict.VIOLATION  # key 0 read 6, which nobody wrote
    assert result.counterexample is not None and tuple(result.counterexample.keys) == ("0",)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("{:type :invoke, :f :append, :value [[:r 1 nil]], :process 0}", 1, "unsupported :f :append"),
        ("{:type :ok, :f :read, :value 1, :process 0}", 1, "never invoked"),
        ("{:type :invoke, :f :read, :process 0}\n{:type :invoke, :f :read, :process 0}", 2, "invokes again"),
        ("{:type :invoke, :f :read, :process 0}\n{:type :ok, :f :write, :process 0}", 2, "completes :write"),
        ("{:type :weird, :f :read, :process 0}", 1, "unknown :type"),
        ("[1 2]", 1, "must be a map"),
    ],
)
def test_what_is_not_a_register_history_is_refused_naming_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(HistoryError) as e:
        parse_jepsen(text)
    assert e.value.line == line and words in str(e.value)


def test_an_old_style_history_is_one_vector_of_ops() -> None:
    text = "[{:type :invoke, :f :write, :value 1, :process 0, :time 1}\n {:type :ok, :f :write, :value 1, :process 0, :time 2}]"
    (op,) = parse_jepsen(text)
    assert (op.op, op.value, op.status) == (OpKind.PUT, "1", Status.OK)


# ---------------------------------------------------------------- round trip


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), invalid=st.booleans(), clients=st.integers(1, 6), keys=st.integers(1, 3))
def test_writing_then_reading_as_jepsen_keeps_operations_and_verdict(
    seed: int, invalid: bool, clients: int, keys: int
) -> None:
    shape = Shape(ops=40, clients=clients, keys=keys, workload=Workload.REGISTER, invalid=invalid,
                  info_fraction=0.1, fail_fraction=0.05)  # fmt: skip
    ops = generate(shape, random.Random(seed))
    back = parse_jepsen(write_jepsen(ops))

    # Times go through whole nanoseconds: equal to within one.
    assert len(back) == len(ops)
    for a, b in zip(sorted(back, key=lambda o: o.call), sorted(ops, key=lambda o: o.call)):
        assert (a.op, a.key, a.value, a.output, a.status) == (b.op, b.key, b.value, b.output, b.status)
        assert a.call == pytest.approx(b.call, abs=1e-9)
        assert (a.return_ is None) == (b.return_ is None)
        assert a.return_ is None or a.return_ == pytest.approx(b.return_, abs=1e-9)
    assert check(back).verdict is check(ops).verdict


def test_a_cas_that_answered_false_is_written_as_a_jepsen_fail() -> None:
    ops = parse_jepsen(
        "{:type :invoke, :f :cas, :value [1 2], :process 0, :time 1}\n{:type :ok, :f :cas, :value [1 2], :process 0, :time 2}"
    )
    ops = [dataclasses.replace(o, output=False) for o in ops]
    assert ":type :fail, :f :cas" in write_jepsen(ops)


# ---------------------------------------------------------------- command line


def test_sim_check_reads_an_edn_history_and_can_write_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "history.edn"
    bad.write_text(SINGLE.replace(":value nil, :process 1, :time 1300000000", ":value 9, :process 1, :time 1300000000"))
    assert main(["check", str(bad)]) == 1  # read 9, never written
    assert "not linearizable" in capsys.readouterr().out
    good = tmp_path / "h.txt"
    good.write_text(SINGLE)
    out = tmp_path / "again.edn"
    assert main(["check", "--format", "jepsen", str(good), "--write-edn", str(out)]) == 0
    assert main(["check", str(out)]) == 0
    assert main(["check", "--kind", "lock", "--format", "jepsen", str(good)]) == 3


def test_write_edn_refuses_what_jepsen_registers_cannot_say_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "h.jsonl"
    history.write_text(
        '{"client": 0, "op": "delete", "key": "k", "value": null, "output": null, "call": 1, "return": 2, "status": "ok"}\n'
    )
    out = tmp_path / "out.edn"
    assert main(["check", str(history), "--write-edn", str(out)]) == 3
    assert "delete has no Jepsen register counterpart" in capsys.readouterr().err and not out.exists()
