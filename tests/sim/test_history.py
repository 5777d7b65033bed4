"""sim.history: the format's rules, each bad input named by its line."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings

from kv.errors import RaftKVError
from sim.history import (
    CasValue,
    HistoryError,
    MicroKind,
    OpKind,
    Status,
    make_operation,
    read_history,
    write_history,
)

from .check.strategies import histories

GOOD = {"client": 3, "op": "put", "key": "k1", "value": "v7", "output": None,
        "call": 1.234567, "return": 1.240001, "status": "ok"}


def lines(*objs: object) -> io.StringIO:
    return io.StringIO("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))


def error_of(*objs: object) -> HistoryError:
    with pytest.raises(HistoryError) as e:
        read_history(lines(*objs))
    return e.value


def test_the_design_example_line_reads_as_one_put() -> None:
    [op] = read_history(lines(GOOD))
    assert (op.client, op.op, op.key, op.value, op.status) == (3, OpKind.PUT, "k1", "v7", Status.OK)
    assert (op.call, op.return_, op.line) == (1.234567, 1.240001, 1)


def test_history_error_is_a_raftkv_error_with_the_line_number() -> None:
    err = error_of(GOOD, "{not json")
    assert isinstance(err, RaftKVError)
    assert err.line == 2
    assert str(err).startswith("line 2: not valid JSON")


@pytest.mark.parametrize(
    ("bad", "text"),
    [
        ({k: v for k, v in GOOD.items() if k != "status"}, "missing field 'status'"),
        ({**GOOD, "op": "increment"}, "unknown op 'increment'"),
        ({**GOOD, "status": "maybe"}, "unknown status 'maybe'"),
        ({**GOOD, "return": 1.0}, "return 1.0 is before call 1.234567"),
        ({**GOOD, "status": "info"}, "info operation's return must be null"),
        ({**GOOD, "value": 7}, "put value must be a string"),
        ({**GOOD, "op": "get", "value": None, "output": 3}, "get output must be"),
        ({**GOOD, "op": "cas", "value": {"expect": "a"}, "output": True}, "cas value must be"),
        ({**GOOD, "op": "cas", "value": {"expect": "a", "new": "b"}, "output": None}, "ok cas output must be true or false"),
        ({**GOOD, "op": "txn", "key": None, "value": [{"op": "inc", "key": "a", "value": None}], "output": [None]},
         "unknown op 'inc'"),
        ({**GOOD, "op": "txn", "key": None, "value": [{"op": "get", "key": "a", "value": None}], "output": []},
         "one entry per micro-op"),
        ({**GOOD, "client": "three"}, "client must be an integer"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_lines_are_rejected_naming_the_line_and_the_rule(bad: object, text: str) -> None:
    err = error_of(GOOD, bad)
    assert err.line == 2
    assert text in str(err)


def test_lines_out_of_call_order_are_rejected() -> None:
    err = error_of({**GOOD, "call": 5.0, "return": 6.0}, {**GOOD, "client": 4})
    assert err.line == 2 and "in order of call" in str(err)


def test_a_client_with_an_outstanding_operation_cannot_call_again() -> None:
    err = error_of({**GOOD, "return": 9.0}, {**GOOD, "call": 2.0, "return": 3.0})
    assert err.line == 2 and "outstanding" in str(err)


def test_a_client_is_not_reused_after_an_info_operation() -> None:
    err = error_of({**GOOD, "return": None, "status": "info"}, {**GOOD, "call": 9.0, "return": 9.5})
    assert err.line == 2 and "fresh client id" in str(err)


def test_blank_lines_are_skipped_but_counted() -> None:
    [op] = read_history(io.StringIO("\n\n" + json.dumps(GOOD) + "\n"))
    assert op.line == 3


def test_txn_and_cas_decode_into_typed_values() -> None:
    txn = {**GOOD, "op": "txn", "key": None, "output": [None, "x"],
           "value": [{"op": "put", "key": "a", "value": "x"}, {"op": "get", "key": "a", "value": None}]}
    cas = {**GOOD, "client": 4, "op": "cas", "value": {"expect": None, "new": "n"}, "output": False}
    t, c = read_history(lines(txn, cas))
    assert isinstance(t.value, tuple) and t.value[0].op is MicroKind.PUT and t.output == (None, "x")
    assert t.keys() == ("a",)
    assert c.value == CasValue(None, "n") and c.output is False


@settings(max_examples=100, deadline=None)
@given(histories(max_ops=8))
def test_write_then_read_gives_back_the_same_operations(ops: list) -> None:
    buf = io.StringIO()
    write_history(ops, buf)
    again = read_history(io.StringIO(buf.getvalue()), validate=False)
    strip = lambda o: (o.client, o.op, o.key, o.value, o.output, o.call, o.return_, o.status)  # noqa: E731
    assert [strip(o) for o in again] == [strip(o) for o in ops]


def test_make_operation_applies_the_same_checks_as_the_reader() -> None:
    with pytest.raises(HistoryError, match="get value must be null"):
        make_operation(0, 1, "get", "k", "v", None, 0.0, 1.0)
