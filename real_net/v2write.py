"""v2 writes as etcd's v2 applier does them, planned as one v3 Txn over the v2 keyspace.

A v2 PUT, POST or DELETE (``WriteRequest``) is read against a ``Snapshot`` of
the keys it touches (real_net/v2store.py) and turned into a ``Plan``: the
compares that guard what was read, the puts and deletes, the node and previous
node etcd answers with, and the event it records (``encode_event``). The
caller sends the plan as a Txn and, if a guard failed (someone wrote
meanwhile), reads and plans again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kv import api
from real_net.v2store import (
    EVENT_KEY,
    Node,
    Snapshot,
    V2Error,
    ancestors,
    clean_path,
    encode_node,
    subtree_range,
    v3_key,
)


@dataclass(slots=True)
class WriteRequest:
    """A parsed v2 PUT, POST or DELETE (etcd's RequestV2, as its applier reads it)."""

    method: str  # PUT, POST, DELETE
    path: str
    value: str = ""
    dir: bool = False
    prev_value: str = ""
    prev_index: int = 0
    prev_exist: bool | None = None
    refresh: bool = False
    recursive: bool = False
    expiration: int | None = None  # Unix ns, from ttl
    ttl: int | None = None  # seconds as given


@dataclass(slots=True)
class Plan:
    """One v2 write as a v3 Txn: guards, operations, and the event it records."""

    action: str
    path: str
    compares: list[api.Compare] = field(default_factory=list)
    ops: list[api.RequestOp] = field(default_factory=list)
    node: dict[str, Any] = field(default_factory=dict)  # indexes 0 = "this revision"
    prev_node: dict[str, Any] | None = None
    refresh: bool = False
    lease_needed: bool = False  # the new node gets the lease the caller granted
    old_leases: list[int] = field(default_factory=list)  # leases to revoke after the write

    @property
    def created(self) -> bool:
        return self.action == "create" or (self.action == "set" and self.prev_node is None)


def _guard(node_or_none: Node | None, path: str) -> api.Compare:
    """Compare: the key is as read (mod_revision 0 = absent)."""
    mod = node_or_none.raw_mod if node_or_none is not None else 0
    return api.Compare(result=api.CompareResult.EQUAL, target=api.CompareTarget.MOD, key=v3_key(path), mod_revision=mod)


def _put(key: bytes, value: bytes, lease: int = 0) -> api.RequestOp:
    return api.RequestOp(request_put=api.PutRequest(key=key, value=value, lease=lease))


def _delete(key: bytes, range_end: bytes = b"") -> api.RequestOp:
    return api.RequestOp(request_delete_range=api.DeleteRangeRequest(key=key, range_end=range_end))


def _compare_fail_cause(node: Node, prev_value: str, prev_index: int) -> str | None:
    index_match = prev_index == 0 or node.modified_index == prev_index
    value_match = prev_value == "" or node.value == prev_value
    if index_match and value_match:
        return None
    if index_match:
        return f"[{prev_value} != {node.value}]"
    if value_match:
        return f"[{prev_index} != {node.modified_index}]"
    return f"[{prev_value} != {node.value}] [{prev_index} != {node.modified_index}]"


def write_kind(req: WriteRequest) -> str:
    """The store operation etcd's applierV2 picks for `req` (its stats are counted by it)."""
    if req.method == "DELETE":
        return "compareAndDelete" if req.prev_index > 0 or req.prev_value != "" else "delete"
    if req.method == "POST":
        return "create"
    if req.prev_exist is not None:
        if req.prev_exist:
            return "update" if req.prev_index == 0 and req.prev_value == "" else "compareAndSwap"
        return "create"
    return "compareAndSwap" if req.prev_index > 0 or req.prev_value != "" else "set"


def plan_write(req: WriteRequest, snap: Snapshot, now_ns: int, lease: int) -> Plan:
    """Decide `req` against `snap` as etcd 3.4's applierV2 + v2store would; V2Error if it
    fails. `lease` is the lease granted for a TTL (0 when none)."""
    if req.method == "DELETE":
        if req.prev_index > 0 or req.prev_value != "":
            return _compare_and_delete(req, snap, now_ns)
        return _delete_node(req, snap, now_ns)
    if req.method == "POST":
        return _create(req, snap, now_ns, lease, unique=True)
    if req.prev_exist is not None:
        if req.prev_exist:
            if req.prev_index == 0 and req.prev_value == "":
                return _update(req, snap, now_ns, lease)
            return _compare_and_swap(req, snap, now_ns, lease)
        return _create(req, snap, now_ns, lease, unique=False)
    if req.prev_index > 0 or req.prev_value != "":
        return _compare_and_swap(req, snap, now_ns, lease)
    return _set(req, snap, now_ns, lease)


def _read_only_root(path: str, snap: Snapshot) -> None:
    if path == "/":
        raise V2Error(107, "/", snap.revision)


def _new_dirs_and_guards(path: str, snap: Snapshot, plan: Plan) -> list[str]:
    """etcd's walk with checkDir over `path`'s ancestors: missing ones are created (returned),
    a file among them is 104. Guards every ancestor read."""
    created: list[str] = []
    for p in ancestors(path):
        node = snap.keys.get(p)
        plan.compares.append(_guard(node if node is not None else snap.orphans.get(p), p))
        if node is None:
            created.append(p)
        elif not node.dir:
            raise V2Error(104, p, snap.revision)
    return created


def _emit_new(plan: Plan, path: str, new_dirs: list[str], *, dir: bool, value: str, expiration: int | None,
              lease: int, created: int | None) -> None:  # fmt: skip
    """Put the new dirs and the node; clear stale keys under every directory created here."""
    put_keys = [v3_key(d) for d in new_dirs] + [v3_key(path)]
    for d in new_dirs:
        plan.ops.append(_put(v3_key(d), encode_node(dir=True, value="", expiration=None, created=None)))
    plan.ops.append(_put(v3_key(path), encode_node(dir=dir, value=value, expiration=expiration, created=created), lease))
    tops = new_dirs[:1] + ([path] if dir and not new_dirs else [])
    for top in tops:
        start, end = subtree_range(top)
        plan.ops.extend(_delete_except(start, end, sorted(k for k in put_keys if start <= k < end)))


def _delete_except(start: bytes, end: bytes, keep: list[bytes]) -> list[api.RequestOp]:
    """Delete [start, end) except the keys in `keep` (sorted): a Txn may not put a key
    that one of its deletes covers."""
    ops: list[api.RequestOp] = []
    lo = start
    for k in keep:
        if lo < k:
            ops.append(_delete(lo, k))
        lo = k + b"\x00"
    if lo < end:
        ops.append(_delete(lo, end))
    return ops


def _ttl_fields(req: WriteRequest, now_ns: int, lease: int) -> tuple[int | None, int]:
    return (req.expiration, lease) if req.expiration is not None else (None, 0)


def _create(req: WriteRequest, snap: Snapshot, now_ns: int, lease: int, unique: bool) -> Plan:
    path = req.path
    if unique:
        # etcd names the key after the index that creates it; here that is the next
        # revision if nothing else writes first. The Txn guards EVENT_KEY, so no other
        # v2 write slips in between and in-order keys increase in commit order.
        path = clean_path(f"{path}/{snap.revision + 1:020d}")
    _read_only_root(path, snap)
    plan = Plan("create", path)
    if unique:
        plan.compares.append(api.Compare(target=api.CompareTarget.MOD, key=EVENT_KEY, mod_revision=snap.event_mod))
    new_dirs = _new_dirs_and_guards(path, snap, plan)
    existing = snap.keys.get(path)
    if existing is not None:
        raise V2Error(105, path, snap.revision)
    plan.compares.append(_guard(snap.orphans.get(path), path))
    expiration, node_lease = _ttl_fields(req, now_ns, lease)
    _emit_new(plan, path, new_dirs, dir=req.dir, value=req.value, expiration=expiration, lease=node_lease, created=None)
    plan.node = _new_extern(path, req.dir, req.value, expiration, now_ns, created=0)
    plan.lease_needed = node_lease != 0
    return plan


def _set(req: WriteRequest, snap: Snapshot, now_ns: int, lease: int) -> Plan:
    path = req.path
    plan = Plan("set", path)
    value = req.value
    existing: Node | None = None
    try:
        existing = snap.get(path)
    except V2Error as e:
        if e.code != 100:
            raise
        if req.refresh:
            raise
    if req.refresh:
        assert existing is not None
        value = existing.value
        plan.refresh = True
    _read_only_root(path, snap)
    new_dirs = _new_dirs_and_guards(path, snap, plan)
    if existing is not None:
        if existing.dir:
            raise V2Error(102, path, snap.revision)
        plan.prev_node = existing.extern(now_ns)
        if existing.lease:
            plan.old_leases.append(existing.lease)
    plan.compares.append(_guard(existing if existing is not None else snap.orphans.get(path), path))
    expiration, node_lease = _ttl_fields(req, now_ns, lease)
    _emit_new(plan, path, new_dirs, dir=req.dir, value=value, expiration=expiration, lease=node_lease, created=None)
    plan.node = _new_extern(path, req.dir, value, expiration, now_ns, created=0)
    plan.lease_needed = node_lease != 0
    return plan


def _existing_for_change(req: WriteRequest, snap: Snapshot, plan: Plan) -> Node:
    _read_only_root(req.path, snap)
    node = snap.get(req.path)
    for p in ancestors(req.path):
        plan.compares.append(_guard(snap.keys[p], p))
    plan.compares.append(_guard(node, req.path))
    return node


def _rewrite(plan: Plan, node: Node, value: str, req: WriteRequest, now_ns: int, lease: int) -> None:
    """Write `node` again with a new value and TTL, keeping its createdIndex."""
    expiration, node_lease = _ttl_fields(req, now_ns, lease)
    plan.ops.append(
        _put(v3_key(node.path), encode_node(dir=node.dir, value=value, expiration=expiration,
                                            created=node.created_index), node_lease)  # fmt: skip
    )
    if node.lease and node.lease != node_lease:
        plan.old_leases.append(node.lease)
    plan.prev_node = node.extern(now_ns)
    plan.node = _new_extern(node.path, node.dir, value, expiration, now_ns, created=node.created_index)
    plan.lease_needed = node_lease != 0


def _update(req: WriteRequest, snap: Snapshot, now_ns: int, lease: int) -> Plan:
    plan = Plan("update", req.path)
    node = _existing_for_change(req, snap, plan)
    if node.dir and req.value:
        raise V2Error(102, req.path, snap.revision)
    value = node.value if req.refresh else req.value
    plan.refresh = req.refresh
    _rewrite(plan, node, value, req, now_ns, lease)
    return plan


def _compare_and_swap(req: WriteRequest, snap: Snapshot, now_ns: int, lease: int) -> Plan:
    plan = Plan("compareAndSwap", req.path)
    node = _existing_for_change(req, snap, plan)
    if node.dir:
        raise V2Error(102, req.path, snap.revision)
    cause = _compare_fail_cause(node, req.prev_value, req.prev_index)
    if cause is not None:
        raise V2Error(101, cause, snap.revision)
    value = node.value if req.refresh else req.value
    plan.refresh = req.refresh
    _rewrite(plan, node, value, req, now_ns, lease)
    return plan


def _remove(plan: Plan, node: Node, snap: Snapshot) -> None:
    plan.ops.append(_delete(v3_key(node.path)))
    if node.dir:
        start, end = subtree_range(node.path)
        plan.ops.append(_delete(start, end))
        # Nothing may have been created below since the snapshot (deletes do not matter).
        plan.compares.append(
            api.Compare(result=api.CompareResult.LESS, target=api.CompareTarget.MOD, key=start, range_end=end,
                        mod_revision=snap.revision + 1)  # fmt: skip
        )
    if node.lease:
        plan.old_leases.append(node.lease)


def _delete_node(req: WriteRequest, snap: Snapshot, now_ns: int) -> Plan:
    plan = Plan("delete", req.path)
    node = _existing_for_change(req, snap, plan)
    if node.dir:
        if not (req.dir or req.recursive):
            raise V2Error(102, req.path, snap.revision)
        if snap.children(req.path) and not req.recursive:
            raise V2Error(108, req.path, snap.revision)
    _remove(plan, node, snap)
    plan.prev_node = node.extern(now_ns)
    plan.node = {"key": node.path, **({"dir": True} if node.dir else {}), "modifiedIndex": 0,
                 "createdIndex": node.created_index}  # fmt: skip
    return plan


def _compare_and_delete(req: WriteRequest, snap: Snapshot, now_ns: int) -> Plan:
    plan = Plan("compareAndDelete", req.path)
    node = snap.get(req.path)  # etcd checks neither the root nor dir/recursive here
    for p in ancestors(req.path):
        plan.compares.append(_guard(snap.keys[p], p))
    plan.compares.append(_guard(node, req.path))
    if node.dir:
        raise V2Error(102, req.path, snap.revision)
    cause = _compare_fail_cause(node, req.prev_value, req.prev_index)
    if cause is not None:
        raise V2Error(101, cause, snap.revision)
    _remove(plan, node, snap)
    plan.prev_node = node.extern(now_ns)
    plan.node = {"key": node.path, "modifiedIndex": 0, "createdIndex": node.created_index}
    return plan


def _new_extern(path: str, dir: bool, value: str, expiration: int | None, now_ns: int, created: int) -> dict[str, Any]:
    node = Node(path, dir, value, created, 0, expiration, 0, 0)
    out = node.extern(now_ns)
    out["modifiedIndex"] = 0
    out["createdIndex"] = created
    return out


def encode_event(plan: Plan) -> bytes:
    doc: dict[str, Any] = {"action": plan.action, "node": plan.node}
    if plan.prev_node is not None:
        doc["prevNode"] = plan.prev_node
    if plan.refresh:
        doc["refresh"] = True
    return json.dumps(doc, separators=(",", ":")).encode()
