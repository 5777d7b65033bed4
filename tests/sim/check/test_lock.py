"""Lock checker: exclusion judged by the fencing token (the lock key's create revision)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from sim.__main__ import main
from sim.check import Verdict, check_lock
from sim.history import HistoryError


def op(client: int, kind: str, token: int | None, call: float, ret: float | None, status: str = "ok",
       **extra: Any) -> dict[str, Any]:
    return {"client": client, "op": kind, "lock": "L", "create_revision": token, "call": call,
            "return": ret, "status": status, **extra}


def paused_holder(fenced: bool) -> list[dict[str, Any]]:
    """Jepsen's etcd 3.4.3 scenario: client 1 pauses past its lease, client 2 acquires, 1 wakes and writes."""
    return [
        op(1, "acquire", 10, 0.0, 1.0),
        op(1, "write", 10, 1.5, 2.0, key="x", value="1"),
        # client 1 pauses; its session lease expires; client 2 gets the lock
        op(2, "acquire", 14, 3.0, 9.0),
        op(2, "write", 14, 9.5, 10.0, key="x", value="2"),
        # client 1 wakes up still believing it holds the lock
        op(1, "write", 10, 11.0, 11.5, "fail" if fenced else "ok", key="x", value="3", fenced=fenced),
        op(2, "release", 14, 12.0, 12.5),
    ]


def test_paused_holder_writing_after_a_new_holder_acquired_is_caught() -> None:
    result = check_lock(paused_holder(fenced=False))
    assert result.verdict is Verdict.VIOLATION
    [v] = result.violations
    assert "token 10 after token 14" in v.reason
    assert [r["line"] for r in v.records] == [3, 5]


def test_the_same_pause_with_fencing_by_create_revision_is_safe() -> None:
    assert check_lock(paused_holder(fenced=True)).verdict is Verdict.OK


def test_orderly_handover_is_valid() -> None:
    records = [
        op(1, "acquire", 10, 0.0, 1.0),
        op(1, "write", 10, 1.0, 2.0, key="x", value="1"),
        op(1, "release", 10, 2.0, 3.0),
        op(2, "acquire", 14, 0.5, 3.5),
        op(2, "write", 14, 4.0, 5.0, key="x", value="2"),
    ]
    result = check_lock(records)
    assert result.verdict is Verdict.OK and result.components == 1


def test_a_write_concurrent_with_the_new_acquire_is_not_blamed() -> None:
    records = [op(1, "acquire", 10, 0.0, 1.0), op(2, "acquire", 14, 2.0, 5.0),
               op(1, "write", 10, 4.0, 6.0, key="x", value="1")]
    assert check_lock(records).verdict is Verdict.OK


def test_one_token_granted_to_two_clients_is_a_violation() -> None:
    result = check_lock([op(1, "acquire", 10, 0.0, 1.0), op(2, "acquire", 10, 2.0, 3.0)])
    assert any("granted twice" in v.reason for v in result.violations)


def test_tokens_going_backwards_in_real_time_is_a_violation() -> None:
    result = check_lock([op(1, "acquire", 10, 0.0, 1.0), op(1, "release", 10, 1.0, 1.5),
                         op(2, "acquire", 7, 2.0, 3.0)])
    assert any("backwards" in v.reason for v in result.violations)


def test_writing_after_releasing_is_a_violation() -> None:
    result = check_lock([op(1, "acquire", 10, 0.0, 1.0), op(1, "release", 10, 1.0, 1.5),
                         op(1, "write", 10, 2.0, 3.0, key="x", value="late")])
    assert any("after releasing" in v.reason for v in result.violations)


def test_bad_lock_lines_name_the_line() -> None:
    with pytest.raises(HistoryError, match="line 2: a write must carry the create_revision"):
        check_lock([op(1, "acquire", 10, 0.0, 1.0), op(1, "write", None, 1.0, 2.0, key="x", value="v")])


def test_cli_kind_lock_reads_jsonl_and_exits_1_on_the_lost_update(tmp_path, capsys) -> None:
    path = tmp_path / "lock.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in paused_holder(fenced=False)))
    assert main(["check", "--kind", "lock", str(path), "--json"]) == 1
    obj = json.loads(capsys.readouterr().out)
    assert obj["kind"] == "lock" and obj["verdict"] == "invalid" and obj["violations"]


def test_a_text_stream_is_accepted() -> None:
    text = "".join(json.dumps(r) + "\n" for r in paused_holder(fenced=True))
    assert check_lock(io.StringIO(text)).verdict is Verdict.OK
