"""Lock checker: mutual exclusion, judged by the fencing token.

An etcd lock (the concurrency package's Mutex, or the v3lock service) is a key
``<lock>/<lease>``; holders queue by its create revision, and the holder is
the one with the smallest live create revision. Holding is a *belief* of the
client: if it pauses past its session lease's TTL, the key is deleted, the next
waiter acquires, and the paused client wakes up still believing. Jepsen's etcd
3.4.3 analysis (2020) showed exactly this losing updates. The cure is fencing
(Kleppmann, "How to do distributed locking", 2016): the protected resource
accepts a write only with the holder's token, here the lock key's create
revision, and refuses tokens older than one it has already seen.

So this checker does not compare beliefs, which may overlap legitimately; it
judges what each holder *did*. With tokens ordered by create revision, a
guarded write under token t that took effect after a larger token t' was
certainly granted happened while t no longer held the lock: a violation, the
lost update. A write that was fenced off (the store refused it: status
``fail``) did not happen and is fine; one whose outcome is unknown (``info``)
proves nothing either way. Also violations: two acquisitions with
the same token, tokens that go backwards in real time, a write under a token
before that token was granted, and a write after its holder released.

Input format (JSON Lines, in order of call)
-------------------------------------------

Every line is ``{"client": C, "op": OP, "lock": L, "create_revision": T,
"call": t0, "return": t1, "status": "ok"|"fail"|"info"}`` plus, for writes,
``"key"`` and ``"value"``. ``call``/``return``/``status`` follow the kv
history's rules (info: return null; may have happened, or not).

* ``acquire``: the client asked for lock L; when ok, T is the create revision
  of its lock key (its fencing token); T is null when it failed or timed out.
* ``write``: a write to the protected resource made while the client believed
  it held L with token T; ``status`` is what the resource said (``fail``: it
  refused it, e.g. a txn comparing the lock key's create revision to T).
  Optional ``"fenced": true|false`` records whether the write carried the
  token (shown in reports only).
* ``release``: the client released L (token T).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sim.check.records import Source, integer, interval, records, require, string, with_line
from sim.check.result import CheckKind, CheckResult, Verdict, Violation
from sim.history import HistoryError, Status

_OPS = ("acquire", "write", "release")


@dataclass(frozen=True, slots=True)
class LockOp:
    line: int
    client: int
    op: str
    lock: str
    token: int | None
    call: float
    ret: float  # infinity for info
    status: Status
    raw: Mapping[str, Any]

    def record(self) -> dict[str, Any]:
        return with_line(self.raw, self.line)


def _parse(line: int, obj: Mapping[str, Any]) -> LockOp:
    require(obj, line, "client", "op", "lock", "create_revision")
    if obj["op"] not in _OPS:
        raise HistoryError(f"unknown op {obj['op']!r} (acquire, write or release)", line)
    call, ret, status = interval(obj, line)
    token = integer(obj, "create_revision", line, nullable=True)
    if obj["op"] != "acquire" and token is None:
        raise HistoryError(f"a {obj['op']} must carry the create_revision it was made under", line)
    if obj["op"] == "acquire" and status is Status.OK and token is None:
        raise HistoryError("an ok acquire must carry the lock key's create_revision", line)
    if obj["op"] == "write":
        require(obj, line, "key", "value")
    client = integer(obj, "client", line)
    assert client is not None
    return LockOp(line, client, obj["op"], string(obj, "lock", line) or "", token, call, ret, status, obj)


def check_lock(source: Source) -> CheckResult:
    """Check lock acquisitions and guarded writes (format above)."""
    started = time.perf_counter()
    by_lock: dict[str, list[LockOp]] = defaultdict(list)
    examined = 0
    for line, obj in records(source):
        op = _parse(line, obj)
        by_lock[op.lock].append(op)
        examined += 1
    violations: list[Violation] = []
    for lock, ops in by_lock.items():
        violations += _check_one(lock, ops)
    return CheckResult(
        kind=CheckKind.LOCK,
        verdict=Verdict.VIOLATION if violations else Verdict.OK,
        seconds=time.perf_counter() - started,
        explored=examined,
        components=len(by_lock),
        violations=tuple(violations),
    )


def _check_one(lock: str, ops: list[LockOp]) -> list[Violation]:
    out: list[Violation] = []
    acquires = [op for op in ops if op.op == "acquire" and op.status is Status.OK]
    granted: dict[int, LockOp] = {}
    for a in acquires:
        assert a.token is not None
        if a.token in granted:
            b = granted[a.token]
            out.append(Violation(f"lock {lock}: token {a.token} granted twice (clients {b.client} and {a.client})",
                                 lock, (b.record(), a.record())))
        else:
            granted[a.token] = a
    for a in acquires:
        for b in acquires:
            if a.ret < b.call and a.token is not None and b.token is not None and a.token > b.token:
                out.append(Violation(
                    f"lock {lock}: token {b.token} was granted after token {a.token} (create revisions go backwards)",
                    lock, (a.record(), b.record())))
    # When each token was certainly in force: its acquire returned, or an ok
    # write under it completed (the resource saw it holding).
    in_force_by: dict[int, tuple[float, LockOp]] = {}
    for op in ops:
        if op.status is Status.OK and op.op in ("acquire", "write") and op.token is not None:
            if op.token not in in_force_by or op.ret < in_force_by[op.token][0]:
                in_force_by[op.token] = (op.ret, op)
    released_by: dict[int, LockOp] = {}
    for op in ops:
        if op.op == "release" and op.status is Status.OK and op.token is not None:
            released_by.setdefault(op.token, op)
    tokens = sorted(in_force_by)
    for w in ops:
        if w.op != "write" or w.status is not Status.OK or w.token is None:
            continue  # refused (fail) or unknown (info, it may never have happened): no evidence
        # The newest token certainly granted before this write was called.
        newer = [(t, in_force_by[t]) for t in tokens if t > w.token and in_force_by[t][0] < w.call]
        if newer:
            t, (_, evidence) = max(newer, key=lambda x: x[0])
            fenced = w.raw.get("fenced")
            out.append(Violation(
                f"lock {lock}: client {w.client} wrote {w.raw.get('key')} under token {w.token} after token {t} "
                f"was granted to client {evidence.client}: two holders at once"
                + (" (the write carried its token but was not refused)" if fenced else ""),
                lock, (evidence.record(), w.record())))
        if w.token not in granted and w.status is Status.OK:
            out.append(Violation(f"lock {lock}: write under token {w.token}, which no ok acquire granted",
                                 lock, (w.record(),)))
        elif w.token in granted and w.ret < granted[w.token].call:
            out.append(Violation(f"lock {lock}: write under token {w.token} before it was acquired",
                                 lock, (granted[w.token].record(), w.record())))
        rel = released_by.get(w.token)
        if rel is not None and rel.ret < w.call and rel.client == w.client:
            out.append(Violation(f"lock {lock}: client {w.client} wrote under token {w.token} after releasing it",
                                 lock, (rel.record(), w.record())))
    return out
