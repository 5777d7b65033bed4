"""The txn workload: multi-key transactions, checked for linearizability across keys.

Each operation is one etcd Txn with no guard whose success branch runs two to
four micro-operations (get / put) on the shared keys, atomically in
one revision. Written values are unique, so the checker can pin every read to
one write; a txn joins the keys it touches into one component of the check
(sim/check decomposes by key otherwise).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from kv import api
from sim.workloads.base import Invocation, Workload

# No deletes: a read of "absent" could be explained by any pending (info) delete of the
# key, which keeps every such txn in the search; with unique put values an unobserved
# pending txn can be dropped instead (sim/check/decompose.py). The register workload
# covers deletes.
MICRO_MIX = (("get", 1), ("put", 1))
# Txns over few keys tie every operation to every other; with many `info` txns (a
# harsh nemesis) the linearizability search then explodes. Ten keys keep it quick.
MIN_KEYS = 10


class TxnWorkload(Workload):
    name = "txn"
    description = "multi-key transactions (get/put micro-ops in one Txn), linearizable across keys"

    def __init__(self, keys: int) -> None:
        super().__init__(max(keys, MIN_KEYS))
        self.values = itertools.count(1)
        self._ops = [op for op, w in MICRO_MIX for _ in range(w)]

    def next_invocation(self, rng: random.Random) -> Invocation:
        n = rng.randint(2, 4)
        micro: list[dict[str, Any]] = []
        ops: list[api.RequestOp] = []
        touched: set[str] = set()
        for _ in range(n):
            key = f"k{rng.randrange(self.keys)}"
            kind = rng.choice(self._ops)
            if kind != "get" and key in touched:
                kind = "get"  # etcd refuses two writes of one key in a txn ("duplicate key given")
            kb = key.encode()
            if kind == "get":
                micro.append({"op": "get", "key": key, "value": None})
                ops.append(api.RequestOp(request_range=api.RangeRequest(key=kb)))
            elif kind == "put":
                value = f"t{next(self.values)}"
                micro.append({"op": "put", "key": key, "value": value})
                ops.append(api.RequestOp(request_put=api.PutRequest(key=kb, value=value.encode())))
                touched.add(key)
            else:
                micro.append({"op": "delete", "key": key, "value": None})
                ops.append(api.RequestOp(request_delete_range=api.DeleteRangeRequest(key=kb)))
                touched.add(key)
        read_only = all(m["op"] == "get" for m in micro)
        return Invocation("txn", None, micro, api.TxnRequest(success=tuple(ops)), _outputs, is_read=read_only)


def _outputs(resp: api.TxnResponse) -> list[Any]:
    out: list[Any] = []
    for r in resp.responses:
        if r.response_range is not None:
            kvs = r.response_range.kvs
            out.append(kvs[0].value.decode() if kvs else None)
        else:
            out.append(None)
    return out
