"""Hypothesis strategies for small kv histories, valid and invalid.

Outputs are computed by replaying a random legal execution (each operation
given an instant inside its interval), so most drawn histories are
linearizable; a drawn mutation then corrupts one output, which makes most of
those not linearizable. Times are small integers, so ties (which closed
intervals make concurrent) are frequent.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from sim.history import Operation, make_operation

VALUES = ("x", "y")
KINDS = ("get", "put", "delete", "cas", "txn")


@st.composite
def histories(
    draw: st.DrawFn,
    *,
    max_ops: int = 6,
    keys: tuple[str, ...] = ("a", "b"),
    kinds: tuple[str, ...] = KINDS,
    unique_values: bool = False,
    statuses: tuple[str, ...] = ("ok", "ok", "ok", "info", "fail"),
    max_time: int = 8,
) -> list[Operation]:
    n = draw(st.integers(1, max_ops))
    specs: list[dict[str, Any]] = []
    fresh = iter(f"v{i}" for i in range(10_000))

    def value() -> str:
        return next(fresh) if unique_values else draw(st.sampled_from(VALUES))

    for _ in range(n):
        kind = draw(st.sampled_from(kinds))
        key = draw(st.sampled_from(keys))
        status = draw(st.sampled_from(statuses))
        call = draw(st.integers(0, max_time))
        ret = call + draw(st.integers(0, 4))
        if kind == "put":
            v: Any = value()
        elif kind == "cas":
            v = {"expect": draw(st.sampled_from((None, *VALUES))), "new": value()}
        elif kind == "txn":
            micro = []
            for _ in range(draw(st.integers(1, 3))):
                mk = draw(st.sampled_from(("get", "put", "delete")))
                micro.append({"op": mk, "key": draw(st.sampled_from(keys)), "value": value() if mk == "put" else None})
            v = micro
        else:
            v = None
        # Where it takes effect in the drawn execution (info: maybe never).
        happens = status == "ok" or (status == "info" and draw(st.booleans()))
        point = draw(st.integers(call, ret if status != "info" else max_time + 5)) if happens else None
        specs.append(dict(kind=kind, key=key, value=v, status=status, call=call, ret=ret, point=point,
                          tie=draw(st.integers(0, 1000))))
    # Replay the drawn execution to get outputs.
    store: dict[str, str | None] = {}
    outputs: list[Any] = [None] * n
    for i in sorted((i for i, s in enumerate(specs) if s["point"] is not None),
                    key=lambda i: (specs[i]["point"], specs[i]["tie"])):
        s = specs[i]
        k = s["key"]
        if s["kind"] == "get":
            outputs[i] = store.get(k)
        elif s["kind"] == "put":
            store[k] = s["value"]
        elif s["kind"] == "delete":
            store[k] = None
        elif s["kind"] == "cas":
            matched = store.get(k) == s["value"]["expect"]
            outputs[i] = matched
            if matched:
                store[k] = s["value"]["new"]
        else:
            outs = []
            for m in s["value"]:
                if m["op"] == "get":
                    outs.append(store.get(m["key"]))
                else:
                    store[m["key"]] = m["value"]
                    outs.append(None)
            outputs[i] = outs
    # Maybe corrupt one ok output.
    readers = [i for i, s in enumerate(specs) if s["status"] == "ok" and s["kind"] in ("get", "cas", "txn")]
    written = [s["value"] for s in specs if s["kind"] == "put"]
    pool = (None, *VALUES) if not unique_values else (None, *written, "never-written")
    if readers and draw(st.integers(0, 2)) > 0:
        i = draw(st.sampled_from(readers))
        s = specs[i]
        if s["kind"] == "get":
            outputs[i] = draw(st.sampled_from([v for v in pool if v != outputs[i]]))
        elif s["kind"] == "cas":
            outputs[i] = not outputs[i]
        else:
            j = draw(st.integers(0, len(s["value"]) - 1))
            if s["value"][j]["op"] == "get":
                outputs[i] = list(outputs[i])
                outputs[i][j] = draw(st.sampled_from([v for v in pool if v != outputs[i][j]]))
    order = sorted(range(n), key=lambda i: specs[i]["call"])
    ops = []
    for index, i in enumerate(order):
        s = specs[i]
        info = s["status"] == "info"
        ops.append(make_operation(
            index, i, s["kind"], s["key"] if s["kind"] != "txn" else None, s["value"],
            None if s["status"] != "ok" else outputs[i], float(s["call"]),
            None if info else float(s["ret"]), s["status"],
        ))
    return ops
