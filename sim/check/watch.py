"""Watch checker: did every watcher receive exactly the committed events?

The properties are the ones etcd's robustness tests check of watch streams
(tests/robustness/validate in etcd): events ordered by revision, no
duplicates, all events of one revision delivered together (a txn is atomic to
watchers too), none missing between the start revision and the last revision
the watcher saw, each event exactly as committed, and resumable: a watch
re-created from revision r+1 after seeing r misses nothing.

Input format (JSON Lines, two kinds of record, any order)
--------------------------------------------------------

``{"record": "commit", "revision": R, "events": [EVENT, ...]}``
    What revision R of the store committed, as the simulator's MVCC store (or
    anyone who knows) records it. One line per revision that changed keys.
``{"record": "response", "watcher": W, "key": K, "range_end": E,
"start_revision": S, "events": [EVENT, ...], "time": T}``
    One watch response delivered to watcher W (an integer; a re-created watch
    is a new W). K/E is the watched range as in etcd's WatchCreateRequest:
    E null watches K alone, E ``"\\u0000"`` every key >= K, otherwise
    [K, E). S (>= 1) is the first revision the watch asked for. T is the
    delivery time (seconds). Optional ``"resumes": W0`` says W was created to
    carry on after watcher W0. Responses of one watcher appear in delivery
    order; a response with no events (progress notification) is allowed.

EVENT is ``{"type": "PUT"|"DELETE", "key": K, "value": V, "mod_revision": M,
"create_revision": C, "version": N}`` as in etcd's mvccpb.Event (for a DELETE,
V is null and C and N are 0, as etcd reports a tombstone).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sim.check.records import Source, integer, records, require, string, with_line
from sim.check.result import CheckKind, CheckResult, Verdict, Violation
from sim.history import HistoryError

_EVENT_FIELDS = ("type", "key", "value", "mod_revision", "create_revision", "version")


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    key: str
    value: str | None
    mod_revision: int
    create_revision: int
    version: int


@dataclass(slots=True)
class _Watcher:
    id: int
    key: str
    range_end: str | None
    start_revision: int
    resumes: int | None
    responses: list[tuple[int, Mapping[str, Any], tuple[Event, ...]]] = field(default_factory=list)

    def matches(self, key: str) -> bool:
        if self.range_end is None:
            return key == self.key
        if self.range_end == "\x00":
            return key >= self.key
        return self.key <= key < self.range_end


def _event(raw: object, line: int) -> Event:
    if not isinstance(raw, Mapping):
        raise HistoryError("each event must be an object", line)
    require(raw, line, *_EVENT_FIELDS)
    if raw["type"] not in ("PUT", "DELETE"):
        raise HistoryError(f"event type must be PUT or DELETE, not {raw['type']!r}", line)
    return Event(
        raw["type"],
        string(raw, "key", line) or "",
        string(raw, "value", line, nullable=True),
        integer(raw, "mod_revision", line) or 0,
        integer(raw, "create_revision", line) or 0,
        integer(raw, "version", line) or 0,
    )


def _events(obj: Mapping[str, Any], line: int) -> tuple[Event, ...]:
    raw = obj.get("events")
    if not isinstance(raw, list):
        raise HistoryError("events must be a list", line)
    return tuple(_event(e, line) for e in raw)


def check_watch(source: Source) -> CheckResult:
    """Check watch responses against the committed revisions (format above)."""
    started = time.perf_counter()
    committed: dict[int, tuple[Event, ...]] = {}
    watchers: dict[int, _Watcher] = {}
    examined = 0
    for line, obj in records(source):
        examined += 1
        require(obj, line, "record")
        if obj["record"] == "commit":
            require(obj, line, "revision", "events")
            rev = integer(obj, "revision", line)
            assert rev is not None
            if rev in committed:
                raise HistoryError(f"revision {rev} is committed twice", line)
            events = _events(obj, line)
            if any(e.mod_revision != rev for e in events):
                raise HistoryError(f"every event of revision {rev} must have mod_revision {rev}", line)
            committed[rev] = events
        elif obj["record"] == "response":
            require(obj, line, "watcher", "key", "range_end", "start_revision", "events")
            wid = integer(obj, "watcher", line)
            assert wid is not None
            start = integer(obj, "start_revision", line)
            assert start is not None
            if start < 1:
                raise HistoryError("start_revision must be at least 1 (the revision the watch starts at)", line)
            w = watchers.get(wid)
            if w is None:
                w = watchers[wid] = _Watcher(
                    wid,
                    string(obj, "key", line) or "",
                    string(obj, "range_end", line, nullable=True),
                    start,
                    integer(obj, "resumes", line, nullable=True) if "resumes" in obj else None,
                )
            elif start != w.start_revision or obj["key"] != w.key:
                raise HistoryError(f"watcher {wid} changes its key or start_revision", line)
            w.responses.append((line, obj, _events(obj, line)))
        else:
            raise HistoryError(f"record must be 'commit' or 'response', not {obj['record']!r}", line)

    violations: list[Violation] = []
    last_seen: dict[int, int] = {}
    for w in watchers.values():
        violations += _check_one(w, committed, last_seen)
    for w in watchers.values():
        if w.resumes is None:
            continue
        before = last_seen.get(w.resumes)
        if w.resumes not in watchers:
            violations.append(Violation(f"watcher {w.id} resumes unknown watcher {w.resumes}", w.key))
        elif before is not None and any(
            c for r in range(before + 1, w.start_revision) for c in committed.get(r, ()) if w.matches(c.key)
        ):
            # Revisions in the gap that changed nothing this watcher watches (a progress
            # notification may legitimately have carried it past them) are no loss.
            line, obj, _ = w.responses[0]
            violations.append(
                Violation(
                    f"watcher {w.id} resumes watcher {w.resumes} at revision {w.start_revision}, "
                    f"but that watcher last saw {before}: revisions {before + 1}..{w.start_revision - 1} are skipped",
                    w.key,
                    (with_line(obj, line),),
                )
            )
    return CheckResult(
        kind=CheckKind.WATCH,
        verdict=Verdict.VIOLATION if violations else Verdict.OK,
        seconds=time.perf_counter() - started,
        explored=examined,
        components=len(watchers),
        violations=tuple(violations),
    )


def _check_one(w: _Watcher, committed: Mapping[int, tuple[Event, ...]], last_seen: dict[int, int]) -> list[Violation]:
    out: list[Violation] = []
    seen: set[tuple[int, str]] = set()
    previous = w.start_revision - 1  # last revision delivered so far
    delivered_at: dict[int, int] = {}  # revision -> line of the response carrying it
    for line, obj, events in w.responses:
        rec = (with_line(obj, line),)
        revisions_here: defaultdict[int, list[Event]] = defaultdict(list)
        for e in events:
            if (e.mod_revision, e.key) in seen:
                out.append(Violation(f"watcher {w.id} received {e.key}@{e.mod_revision} twice", e.key, rec))
                continue
            seen.add((e.mod_revision, e.key))
            if e.mod_revision < previous or (e.mod_revision == previous and e.mod_revision in delivered_at):
                out.append(
                    Violation(
                        f"watcher {w.id} received revision {e.mod_revision} after revision {previous} "
                        "(out of order, or one revision split across responses)",
                        e.key,
                        rec,
                    )
                )
            if e.mod_revision < w.start_revision or not w.matches(e.key):
                out.append(Violation(f"watcher {w.id} received {e.key}@{e.mod_revision}, outside what it watches", e.key, rec))
            expected = [c for c in committed.get(e.mod_revision, ()) if c.key == e.key]
            if not expected:
                out.append(Violation(f"watcher {w.id} received {e.key}@{e.mod_revision}, which was never committed", e.key, rec))
            elif e not in expected:
                out.append(
                    Violation(
                        f"watcher {w.id} received {e} but revision {e.mod_revision} committed {expected[0]}",
                        e.key,
                        rec,
                    )
                )
            revisions_here[e.mod_revision].append(e)
            previous = max(previous, e.mod_revision)
        for rev, got in revisions_here.items():
            delivered_at[rev] = line
            wanted = [c for c in committed.get(rev, ()) if w.matches(c.key)]
            missing = [c for c in wanted if c not in got]
            if missing and got:
                out.append(
                    Violation(
                        f"watcher {w.id} got only part of revision {rev}: "
                        f"{', '.join(c.key for c in missing)} missing from the same response",
                        missing[0].key,
                        rec,
                    )
                )
    last = previous
    last_seen[w.id] = last
    for rev in sorted(r for r in committed if w.start_revision <= r <= last and r not in delivered_at):
        wanted = [c for c in committed[rev] if w.matches(c.key)]
        if wanted:
            where = next(((ln, o) for ln, o, evs in w.responses if any(e.mod_revision > rev for e in evs)), None)
            recs = (with_line(where[1], where[0]),) if where else ()
            out.append(
                Violation(
                    f"watcher {w.id} missed revision {rev} ({', '.join(f'{c.type} {c.key}' for c in wanted)}) "
                    f"although it saw revision {last}",
                    wanted[0].key,
                    recs,
                )
            )
    return out
