"""Lease checker: keys of a lease are gone after it ends, never before."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sim.__main__ import main
from sim.check import Verdict, check_lease
from sim.history import HistoryError


def op(kind: str, call: float, ret: float | None, status: str = "ok", client: int = 1, **extra: Any) -> dict[str, Any]:
    return {"client": client, "op": kind, "call": call, "return": ret, "status": status, **extra}


def base() -> list[dict[str, Any]]:
    return [
        op("grant", 0.0, 0.1, lease=7, ttl=5.0),
        op("put", 0.2, 0.3, key="k", value="v", lease=7),
        op("get", 1.0, 1.1, key="k", output={"value": "v", "lease": 7}),
    ]


def test_key_present_while_alive_and_gone_after_expiry_is_valid() -> None:
    records = [*base(), {"op": "expire", "lease": 7, "time": 5.5}, op("get", 6.0, 6.1, key="k", output=None)]
    assert check_lease(records).verdict is Verdict.OK


def test_key_still_present_after_revoke_returned_is_a_violation() -> None:
    records = [*base(), op("revoke", 2.0, 2.1, lease=7), op("get", 3.0, 3.1, key="k", output={"value": "v", "lease": 7})]
    result = check_lease(records)
    assert result.verdict is Verdict.VIOLATION
    assert "after the lease ended" in result.violations[0].reason


def test_key_gone_while_lease_certainly_alive_is_a_violation() -> None:
    records = [*base(), op("get", 2.0, 2.1, key="k", output=None)]
    result = check_lease(records)
    assert result.verdict is Verdict.VIOLATION
    assert "certainly alive" in result.violations[0].reason


def test_key_gone_after_its_ttl_could_have_run_out_is_allowed() -> None:
    records = [*base(), op("get", 6.0, 6.1, key="k", output=None)]
    assert check_lease(records).verdict is Verdict.OK


def test_keepalive_extends_the_time_the_key_must_stay() -> None:
    records = [*base(), op("keepalive", 4.0, 4.1, lease=7, ttl=5.0), op("get", 7.0, 7.1, key="k", output=None)]
    assert check_lease(records).verdict is Verdict.VIOLATION


def test_expiry_recorded_before_the_ttl_is_a_violation() -> None:
    records = [*base(), {"op": "expire", "lease": 7, "time": 3.0}]
    result = check_lease(records)
    assert any("before its TTL" in v.reason for v in result.violations)


def test_an_explicit_delete_may_remove_the_key_early() -> None:
    records = [*base(), op("delete", 1.5, 1.6, key="k"), op("get", 2.0, 2.1, key="k", output=None)]
    assert check_lease(records).verdict is Verdict.OK


def test_bad_lease_lines_name_the_line() -> None:
    with pytest.raises(HistoryError, match="line 2: unknown op 'renew'"):
        check_lease([op("grant", 0.0, 0.1, lease=7, ttl=5.0), op("renew", 1.0, 1.1, lease=7)])


def test_cli_kind_lease(tmp_path) -> None:
    path = tmp_path / "lease.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*base(), op("get", 2.0, 2.1, key="k", output=None)]))
    assert main(["check", "--kind", "lease", str(path)]) == 1
