"""The register workload: get / put / delete / cas on a few keys, every written value unique.

Operations map onto etcd's v3 API as a client library would: ``get`` is a
linearizable Range, ``put`` a Put, ``delete`` a DeleteRange, and ``cas`` a
Txn comparing the key's VALUE (or ``VERSION == 0`` for "absent") then Putting
the new value. Values are unique across the run (``v<n>``), which is what
lets the linearizability checker pin every read to one write.

Its own checker: every value read was written by some operation (a cheap,
always-decisive refutation; the linearizability checker covers the rest).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from kv import api
from sim.history import CasValue, OpKind, Operation, Status
from sim.workloads.base import Invocation, Workload, WorkloadCheck

# Operation mix (weights): reads are cheap and what exposes stale reads; cas exposes lost writes.
MIX = (("get", 4), ("put", 3), ("cas", 2), ("delete", 1))


def _first_value(resp: api.RangeResponse) -> str | None:
    return resp.kvs[0].value.decode() if resp.kvs else None


class RegisterWorkload(Workload):
    name = "register"
    description = "get/put/delete/cas on a few keys with unique values (the default)"

    def __init__(self, keys: int) -> None:
        super().__init__(keys)
        self.values = itertools.count(1)
        self.recent: dict[str, list[str]] = {}  # key -> values recently written (cas expectations)
        self._ops = [op for op, w in MIX for _ in range(w)]
        self.prefix = ""  # key names are f"{prefix}k<n>"

    def next_invocation(self, rng: random.Random) -> Invocation:
        key = f"{self.prefix}k{rng.randrange(self.keys)}"
        kb = key.encode()
        op = rng.choice(self._ops)
        if op == "get":
            return Invocation("get", key, None, api.RangeRequest(key=kb), _first_value, is_read=True)
        if op == "delete":
            return Invocation("delete", key, None, api.DeleteRangeRequest(key=kb), lambda _r: None)
        value = f"v{next(self.values)}"
        recent = self.recent.setdefault(key, [])
        if op == "put":
            recent.append(value)
            del recent[:-4]
            return Invocation("put", key, value, api.PutRequest(key=kb, value=value.encode()), lambda _r: None)
        # cas: expect a recently written value (likely current) or absence.
        expect = rng.choice(recent) if recent and rng.random() < 0.8 else None
        recent.append(value)
        del recent[:-4]
        if expect is None:
            cmp = api.Compare(result=api.CompareResult.EQUAL, target=api.CompareTarget.VERSION, key=kb, version=0)
        else:
            cmp = api.Compare(result=api.CompareResult.EQUAL, target=api.CompareTarget.VALUE, key=kb,
                              value=expect.encode())
        req = api.TxnRequest(
            compare=(cmp,), success=(api.RequestOp(request_put=api.PutRequest(key=kb, value=value.encode())),)
        )
        return Invocation("cas", key, {"expect": expect, "new": value}, req, lambda r: bool(r.succeeded))

    def check(self, history: Sequence[Operation]) -> WorkloadCheck:
        written: set[str] = set()
        for op in history:
            if op.op is OpKind.PUT and isinstance(op.value, str):
                written.add(op.value)
            elif op.op is OpKind.CAS and isinstance(op.value, CasValue):
                written.add(op.value.new)
        problems = [
            f"{op.describe()} read a value nobody wrote"
            for op in history
            if op.op is OpKind.GET and op.status is Status.OK and op.output is not None and op.output not in written
        ]
        return WorkloadCheck("register: reads see written values", not problems, tuple(problems[:10]))
