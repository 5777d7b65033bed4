"""Watch checker: ordered, no duplicates, atomic revisions, nothing missing, resumable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sim.__main__ import main
from sim.check import Verdict, check_watch
from sim.history import HistoryError


def ev(key: str, rev: int, value: str | None = "v", kind: str = "PUT", create: int | None = None,
       version: int = 1) -> dict[str, Any]:
    if kind == "DELETE":
        return {"type": kind, "key": key, "value": None, "mod_revision": rev, "create_revision": 0, "version": 0}
    return {"type": kind, "key": key, "value": value, "mod_revision": rev,
            "create_revision": rev if create is None else create, "version": version}


COMMITS = [
    {"record": "commit", "revision": 2, "events": [ev("a", 2)]},
    {"record": "commit", "revision": 3, "events": [ev("b", 3)]},
    {"record": "commit", "revision": 4, "events": [ev("a", 4, "w", create=2, version=2), ev("c", 4)]},  # a txn
    {"record": "commit", "revision": 5, "events": [ev("a", 5, kind="DELETE")]},
]


def resp(watcher: int, events: list[dict[str, Any]], start: int = 2, key: str = "a", range_end: str | None = "\x00",
         **extra: Any) -> dict[str, Any]:
    return {"record": "response", "watcher": watcher, "key": key, "range_end": range_end,
            "start_revision": start, "events": events, "time": 1.0, **extra}


def everything(watcher: int = 1) -> list[dict[str, Any]]:
    return [resp(watcher, [ev("a", 2), ev("b", 3)]),
            resp(watcher, [ev("a", 4, "w", create=2, version=2), ev("c", 4)]),
            resp(watcher, [ev("a", 5, kind="DELETE")])]


def test_complete_ordered_stream_is_valid() -> None:
    result = check_watch([*COMMITS, *everything()])
    assert result.verdict is Verdict.OK and result.components == 1


def test_single_key_watch_sees_only_its_key() -> None:
    stream = [resp(1, [ev("a", 2)], range_end=None), resp(1, [ev("a", 4, "w", create=2, version=2)], range_end=None)]
    assert check_watch([*COMMITS, *stream]).verdict is Verdict.OK


def test_missing_revision_is_a_violation() -> None:
    stream = [resp(1, [ev("a", 2)]), resp(1, [ev("a", 4, "w", create=2, version=2), ev("c", 4)])]
    result = check_watch([*COMMITS, *stream])
    assert any("missed revision 3" in v.reason for v in result.violations)


def test_duplicate_event_is_a_violation() -> None:
    stream = [resp(1, [ev("a", 2), ev("b", 3)]), resp(1, [ev("b", 3)])]
    result = check_watch([*COMMITS, *stream])
    assert any("twice" in v.reason for v in result.violations)


def test_out_of_order_revisions_are_a_violation() -> None:
    stream = [resp(1, [ev("b", 3)]), resp(1, [ev("a", 2)])]
    result = check_watch([*COMMITS, *stream])
    assert any("out of order" in v.reason for v in result.violations)


def test_revision_split_across_responses_is_a_violation() -> None:
    stream = [resp(1, [ev("a", 2), ev("b", 3), ev("a", 4, "w", create=2, version=2)]), resp(1, [ev("c", 4)])]
    result = check_watch([*COMMITS, *stream])
    assert any("only part of revision 4" in v.reason for v in result.violations)


def test_event_differing_from_the_commit_is_a_violation() -> None:
    stream = [resp(1, [ev("a", 2, "forged")])]
    result = check_watch([*COMMITS, *stream])
    assert any("committed" in v.reason for v in result.violations)


def test_resumed_watch_from_next_revision_misses_nothing() -> None:
    first = [resp(1, [ev("a", 2), ev("b", 3)])]
    second = [resp(2, [ev("a", 4, "w", create=2, version=2), ev("c", 4)], start=4, resumes=1)]
    assert check_watch([*COMMITS, *first, *second]).verdict is Verdict.OK


def test_resumed_watch_that_skips_a_revision_is_a_violation() -> None:
    first = [resp(1, [ev("a", 2)])]
    second = [resp(2, [ev("a", 4, "w", create=2, version=2), ev("c", 4)], start=4, resumes=1)]
    result = check_watch([*COMMITS, *first, *second])
    assert any("skipped" in v.reason for v in result.violations)


def test_resuming_past_revisions_that_changed_nothing_watched_is_no_loss() -> None:
    # Watcher 1 watches only "a"; revision 3 changed "b". A progress notification may carry
    # it past 3, so resuming at 4 after seeing 2 skips nothing it watches.
    first = [resp(1, [ev("a", 2)], range_end=None)]
    second = [resp(2, [ev("a", 4, "w", create=2, version=2)], start=4, resumes=1, range_end=None)]
    assert check_watch([*COMMITS, *first, *second]).verdict is Verdict.OK


def test_bad_watch_lines_name_the_line() -> None:
    with pytest.raises(HistoryError, match="line 2: event type must be PUT or DELETE"):
        check_watch([COMMITS[0], resp(1, [{**ev("a", 2), "type": "POST"}])])


def test_cli_kind_watch(tmp_path, capsys) -> None:
    path = tmp_path / "watch.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*COMMITS, *everything()]))
    assert main(["check", "--kind", "watch", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "valid"
