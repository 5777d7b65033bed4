"""Lease checker: a key attached to a lease is gone after the lease ends, never before.

etcd deletes every key attached to a lease when the lease is revoked or
expires, through the log, atomically (lessor.Revoke). It promises the TTL as a
minimum: a lease is never expired earlier than TTL after its last renewal
(a new leader even extends them). So, with real-time evidence only:

* **gone after**: a get called after the lease certainly ended (a revoke
  returned ok, or its expiry was recorded) must not return the key with that
  lease;
* **never before**: a get must not find the key absent while its attachment
  is certainly in force: the put with the lease had returned, nothing else
  touching the key could have happened yet, no revoke had been called, no
  expiry recorded, and less than TTL had passed since a renewal certainly
  began;
* an expiry record must not come before TTL after the lease's last renewal.

Input format (JSON Lines, in order of call or time)
---------------------------------------------------

Client operations, ``call``/``return``/``status`` as in the kv history::

    {"client": C, "op": "grant", "lease": L, "ttl": S, ...}      # S seconds granted
    {"client": C, "op": "keepalive", "lease": L, "ttl": S, ...}  # S: the TTL the response gave
    {"client": C, "op": "revoke", "lease": L, ...}
    {"client": C, "op": "put", "key": K, "value": V, "lease": L|null, ...}
    {"client": C, "op": "delete", "key": K, ...}
    {"client": C, "op": "get", "key": K, "output": null|{"value": V, "lease": L|null}, ...}

and server-side facts, written by whoever knows them (the simulator)::

    {"op": "expire", "lease": L, "time": T}    # the leader's lessor expired L at T
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sim.check.records import Source, integer, interval, number, records, require, string, with_line
from sim.check.result import CheckKind, CheckResult, Verdict, Violation
from sim.history import HistoryError, Status

_CLIENT_OPS = ("grant", "keepalive", "revoke", "put", "delete", "get")


@dataclass(frozen=True, slots=True)
class LeaseOp:
    line: int
    op: str
    lease: int | None
    key: str | None
    call: float
    ret: float  # infinity for info; == call for expire
    status: Status
    raw: Mapping[str, Any]

    def record(self) -> dict[str, Any]:
        return with_line(self.raw, self.line)


def _parse(line: int, obj: Mapping[str, Any]) -> LeaseOp:
    require(obj, line, "op")
    kind = obj["op"]
    if kind == "expire":
        require(obj, line, "lease", "time")
        t = number(obj, "time", line)
        return LeaseOp(line, kind, integer(obj, "lease", line), None, t, t, Status.OK, obj)
    if kind not in _CLIENT_OPS:
        raise HistoryError(f"unknown op {kind!r} (grant, keepalive, revoke, put, delete, get or expire)", line)
    require(obj, line, "client")
    call, ret, status = interval(obj, line)
    lease: int | None = None
    key: str | None = None
    if kind in ("grant", "keepalive"):
        require(obj, line, "lease", "ttl")
        lease = integer(obj, "lease", line)
        number(obj, "ttl", line)
    elif kind == "revoke":
        require(obj, line, "lease")
        lease = integer(obj, "lease", line)
    else:
        require(obj, line, "key")
        key = string(obj, "key", line)
        if kind == "put":
            require(obj, line, "value", "lease")
            lease = integer(obj, "lease", line, nullable=True)
        if kind == "get":
            require(obj, line, "output")
            out = obj["output"]
            if out is not None and (not isinstance(out, Mapping) or "value" not in out or "lease" not in out):
                raise HistoryError('get output must be null or {"value": V, "lease": L|null}', line)
    return LeaseOp(line, kind, lease, key, call, ret, status, obj)


def check_lease(source: Source) -> CheckResult:
    """Check lease expiry against what clients observed (format above)."""
    started = time.perf_counter()
    ops = [_parse(line, obj) for line, obj in records(source)]
    by_lease: dict[int, list[LeaseOp]] = defaultdict(list)
    by_key: dict[str, list[LeaseOp]] = defaultdict(list)
    for op in ops:
        if op.lease is not None and op.op != "get":
            by_lease[op.lease].append(op)
        if op.key is not None:
            by_key[op.key].append(op)
    violations: list[Violation] = []
    ended: dict[int, tuple[float, LeaseOp]] = {}  # lease -> (certainly ended by, evidence)
    for lease, lops in by_lease.items():
        for op in lops:
            if (op.op == "revoke" and op.status is Status.OK) or op.op == "expire":
                if lease not in ended or op.ret < ended[lease][0]:
                    ended[lease] = (op.ret, op)
        violations += _early_expiry(lease, lops)
    for key, kops in by_key.items():
        violations += _check_key(key, kops, by_lease, ended)
    return CheckResult(
        kind=CheckKind.LEASE,
        verdict=Verdict.VIOLATION if violations else Verdict.OK,
        seconds=time.perf_counter() - started,
        explored=len(ops),
        components=len(by_lease),
        violations=tuple(violations),
    )


def _renewals(lops: list[LeaseOp]) -> list[tuple[float, float, LeaseOp]]:
    """(instant the renewal certainly began by, ttl, op) of ok grants and keepalives."""
    return [(op.call, float(op.raw["ttl"]), op) for op in lops if op.op in ("grant", "keepalive") and op.status is Status.OK]


def alive_until(lops: list[LeaseOp], t: float) -> float:
    """The latest instant the lease is certainly alive through, judged at time t.

    A renewal took effect no earlier than its call, so the lease lives at least
    until call + ttl of the latest renewal called before t.
    """
    best = -math.inf
    for began, ttl, _ in _renewals(lops):
        if began <= t:
            best = max(best, began + ttl)
    return best


def _early_expiry(lease: int, lops: list[LeaseOp]) -> list[Violation]:
    out = []
    for e in lops:
        if e.op != "expire":
            continue
        renewed = [(b + ttl, op) for b, ttl, op in _renewals(lops) if b <= e.call]
        if renewed:
            limit, op = max(renewed, key=lambda x: x[0])
            if e.call < limit:
                out.append(Violation(
                    f"lease {lease} expired at {e.call}, before its TTL ran out at {limit} "
                    f"(renewal on line {op.line})",
                    None, (op.record(), e.record())))
    return out


def _check_key(
    key: str, kops: list[LeaseOp], by_lease: Mapping[int, list[LeaseOp]], ended: Mapping[int, tuple[float, LeaseOp]]
) -> list[Violation]:
    out: list[Violation] = []
    writes = [op for op in kops if op.op in ("put", "delete") and op.status is not Status.FAIL]
    for g in kops:
        if g.op != "get" or g.status is not Status.OK:
            continue
        output = g.raw["output"]
        if output is not None and output.get("lease") is not None:
            lease = output["lease"]
            end = ended.get(lease)
            if end is not None and end[0] < g.call:
                out.append(Violation(
                    f"key {key} still held lease {lease} at {g.call}, after the lease ended at {end[0]}",
                    key, (end[1].record(), g.record())))
        if output is None:
            # Was the key certainly present, attached to a live lease?
            for p in writes:
                if p.op != "put" or p.status is not Status.OK or p.lease is None or p.ret >= g.call:
                    continue
                others = [w for w in writes if w is not p and w.call <= g.ret and w.ret >= p.call]
                if others:
                    continue
                lops = by_lease.get(p.lease, [])
                revoked = [
                    op
                    for op in lops
                    if op.op in ("revoke", "expire") and op.status is not Status.FAIL and op.call <= g.ret
                ]
                if revoked:
                    continue
                if g.ret < alive_until(lops, g.call):
                    out.append(Violation(
                        f"key {key} was gone at {g.ret}, while its lease {p.lease} was certainly alive "
                        f"(until at least {alive_until(lops, g.call)})",
                        key, (p.record(), g.record())))
    return out
