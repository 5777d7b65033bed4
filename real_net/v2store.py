"""etcd's v2 store semantics as plans over the v3 key space (sans-IO).

Why: the v2 keys API (real_net/v2keys.py) must keep its data in the same
replicated, durable, linearizable store as v3, not in a second store. So a
v2 node is a v3 key under a reserved prefix, and each v2 write is *one* v3
transaction: read a snapshot, decide as etcd 3.4's v2store would (this
module, no I/O), then commit a Txn whose compares say "what I read has not
changed" and retry if it has. The Txn's revision is the v2 index.

Layout in the v3 key space (all under ``V2_PREFIX``, "\\x00v2/"):

    \\x00v2/keys/a/b    the node /a/b: JSON {"value": ...} or {"dir": true},
                       plus "exp" (expiry, Unix ns) for a TTL node, which is
                       also attached to a v3 lease of that TTL (the lease's
                       revocation is the expiry), and "created" when its
                       createdIndex is not the revision that wrote it;
    \\x00v2/event       the v2 event of the last v2 write, rewritten by every
                       write in the same Txn: a watcher reads history from
                       the v3 watch of the prefix, one v2 event per revision
                       (a revision that deletes nodes without writing an
                       event is a TTL expiry).

Indexes: a node's ``modifiedIndex`` is the v3 ``mod_revision`` of its key,
``createdIndex`` the revision of the write that created it (a plain set over
a key creates it anew; update and compare-and-swap keep it), and
``X-Etcd-Index`` the store's revision. So v2 indexes are v3 revisions: they
grow with v3 writes too, and a v2 watch from index N sees the v2 events at
revisions >= N.

Directories exist as nodes of their own; a directory whose TTL ran out is
deleted alone (its lease holds only it), and nodes left under a missing
directory are invisible to reads and removed when the directory is created
again, so etcd's "a directory expires with its subtree" holds for clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kv import api

V2_PREFIX = b"\x00v2/"
KEYS_PREFIX = V2_PREFIX + b"keys"
EVENT_KEY = V2_PREFIX + b"event"

# v2 error codes (etcd's v2error): message and HTTP status.
ERRORS: dict[int, tuple[str, int]] = {
    100: ("Key not found", 404),
    101: ("Compare failed", 412),
    102: ("Not a file", 403),
    104: ("Not a directory", 400),
    105: ("Key already exists", 412),
    107: ("Root is read only", 400),
    108: ("Directory not empty", 403),
    110: ("The request requires user authentication", 401),
    201: ("PrevValue is Required in POST form", 400),
    202: ("The given TTL in POST form is not a number", 400),
    203: ("The given index in POST form is not a number", 400),
    209: ("Invalid field", 400),
    210: ("Invalid POST form", 400),
    211: ("Value provided on refresh", 400),
    212: ("A TTL must be provided on refresh", 400),
    300: ("Raft Internal Error", 500),
    301: ("During Leader Election", 500),
    400: ("watcher is cleared due to etcd recovery", 400),
    401: ("The event in requested index is outdated and cleared", 400),
}


class V2Error(Exception):
    """A v2 API error: etcd's ``{"errorCode", "message", "cause", "index"}``."""

    def __init__(self, code: int, cause: str = "", index: int = 0) -> None:
        self.code = code
        self.message, self.status = ERRORS[code]
        self.cause = cause
        self.index = index
        super().__init__(f"{self.message} ({cause})")

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"errorCode": self.code, "message": self.message}
        if self.cause:
            out["cause"] = self.cause
        out["index"] = self.index
        return out


# ------------------------------------------------------------------- paths


def clean_path(p: str) -> str:
    """Go's path.Clean(path.Join("/", p)): "/" for the root, no trailing slash."""
    parts: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        parts.append(seg)
    return "/" + "/".join(parts)


def ancestors(path: str) -> list[str]:
    """The directories above `path`, top first, without the root: /a/b/c -> [/a, /a/b]."""
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))] if path != "/" else []


def parent_of(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def is_hidden(path: str) -> bool:
    return path.rsplit("/", 1)[-1].startswith("_")


def v3_key(path: str) -> bytes:
    return KEYS_PREFIX + path.encode()


def subtree_range(path: str) -> tuple[bytes, bytes]:
    """[start, end) of every key below `path` (not `path` itself)."""
    base = KEYS_PREFIX + (b"" if path == "/" else path.encode())
    return base + b"/", base + b"0"  # "0" is the byte after "/"


def path_of(key: bytes) -> str:
    return key[len(KEYS_PREFIX) :].decode(errors="replace")


# ------------------------------------------------------------------- nodes


def go_time(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC (fraction without trailing zeros)."""
    import datetime

    secs, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.datetime.fromtimestamp(secs, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        stamp += "." + f"{frac:09d}".rstrip("0")
    return stamp + "Z"


def go_ttl(expiration_ns: int, now_ns: int) -> int:
    """etcd's expirationAndTTL: the seconds left, rounded up (Go integer division)."""
    left = expiration_ns - now_ns
    ttl = int(left / 1_000_000_000)  # truncates toward zero, as Go's Duration division
    if left % 1_000_000_000 and left > 0:
        ttl += 1
    return ttl


@dataclass(slots=True)
class Node:
    """One v2 node as read from its v3 key."""

    path: str
    dir: bool
    value: str
    created_index: int
    modified_index: int
    expiration: int | None  # Unix ns
    lease: int
    raw_mod: int  # the v3 key's mod_revision (what a write compares against)

    @staticmethod
    def from_kv(kv: api.KeyValue) -> Node:
        try:
            doc = json.loads(kv.value)
        except ValueError:
            doc = {"value": kv.value.decode(errors="replace")}  # written by a v3 client
        if not isinstance(doc, dict):
            doc = {"value": kv.value.decode(errors="replace")}
        return Node(
            path=path_of(kv.key),
            dir=bool(doc.get("dir")),
            value=str(doc.get("value", "")),
            created_index=int(doc.get("created") or kv.mod_revision),
            modified_index=kv.mod_revision,
            expiration=doc.get("exp"),
            lease=kv.lease,
            raw_mod=kv.mod_revision,
        )

    def extern(self, now_ns: int, nodes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """etcd's NodeExtern JSON, fields in its order; `nodes` for a listed directory."""
        out: dict[str, Any] = {}
        if self.path != "/":
            out["key"] = self.path
        if not self.dir:
            out["value"] = self.value
        else:
            out["dir"] = True
        if self.expiration is not None:
            out["expiration"] = go_time(self.expiration)
            ttl = go_ttl(self.expiration, now_ns)
            if ttl:
                out["ttl"] = ttl
        if nodes:
            out["nodes"] = nodes
        if self.modified_index:
            out["modifiedIndex"] = self.modified_index
        if self.created_index:
            out["createdIndex"] = self.created_index
        return out


ROOT = Node("/", True, "", 0, 0, None, 0, 0)


def encode_node(*, dir: bool, value: str, expiration: int | None, created: int | None) -> bytes:
    doc: dict[str, Any] = {"dir": True} if dir else {"value": value}
    if expiration is not None:
        doc["exp"] = expiration
    if created:
        doc["created"] = created
    return json.dumps(doc, separators=(",", ":")).encode()


# ---------------------------------------------------------------- snapshot


@dataclass(slots=True)
class Snapshot:
    """What one read-only Txn saw: the revision and the raw v3 keys read."""

    revision: int
    raft_term: int
    keys: dict[str, Node]  # the live nodes read, by path
    event_mod: int = 0  # mod_revision of EVENT_KEY
    orphans: dict[str, Node] = field(default_factory=dict)  # keys read under a missing directory
    _kids: dict[str, list[Node]] | None = None

    def get(self, path: str) -> Node:
        """The live node at `path`, or V2Error 100/104 as etcd's internalGet walks."""
        if path == "/":
            return ROOT
        for p in [*ancestors(path), path]:
            node = self.keys.get(p)
            if node is None:
                raise V2Error(100, p, self.revision)
            if p != path and not node.dir:
                raise V2Error(104, p, self.revision)
        return self.keys[path]

    def children(self, path: str) -> list[Node]:
        """The direct children of the live directory `path`, sorted by key."""
        if self._kids is None:
            kids: dict[str, list[Node]] = {}
            for p in sorted(self.keys):
                kids.setdefault(parent_of(p), []).append(self.keys[p])
            self._kids = kids
        return self._kids.get(path, [])

    def repr_node(self, node: Node, now_ns: int, recursive: bool, listing: bool) -> dict[str, Any]:
        """The node as GET shows it: a directory lists its visible children (one level,
        or the whole tree with `recursive`), sorted by key."""
        if not node.dir or not (listing or recursive):
            return node.extern(now_ns)
        kids = [
            self.repr_node(c, now_ns, recursive, listing=False) for c in self.children(node.path) if not is_hidden(c.path)
        ]
        return node.extern(now_ns, kids)


def read_ops(path: str, subtree: bool) -> tuple[api.RequestOp, ...]:
    """The ranges of one snapshot: each ancestor, the node, optionally its subtree, and EVENT_KEY."""
    ops = [api.RequestOp(request_range=api.RangeRequest(key=v3_key(p))) for p in [*ancestors(path), path] if p != "/"]
    if subtree:
        start, end = subtree_range(path)
        ops.append(api.RequestOp(request_range=api.RangeRequest(key=start, range_end=end)))
    ops.append(api.RequestOp(request_range=api.RangeRequest(key=EVENT_KEY)))
    return tuple(ops)


def snapshot_from(resp: api.TxnResponse) -> Snapshot:
    keys: dict[str, Node] = {}
    event_mod = 0
    for op in resp.responses:
        assert op.response_range is not None
        for kv in op.response_range.kvs:
            if kv.key == EVENT_KEY:
                event_mod = kv.mod_revision
            elif kv.key.startswith(KEYS_PREFIX):
                node = Node.from_kv(kv)
                keys[node.path] = node
    snap = Snapshot(resp.header.revision, resp.header.raft_term, {}, event_mod)
    # Only live nodes count: a key whose ancestors are not all directories is an orphan.
    for p in sorted(keys, key=lambda p: p.count("/")):
        parent = parent_of(p)
        if parent == "/" or (parent in snap.keys and snap.keys[parent].dir):
            snap.keys[p] = keys[p]
    snap.orphans = {p: n for p, n in keys.items() if p not in snap.keys}
    return snap


# ------------------------------------------------------------------- writes


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


# ------------------------------------------------------------------ events


def encode_event(plan: Plan) -> bytes:
    doc: dict[str, Any] = {"action": plan.action, "node": plan.node}
    if plan.prev_node is not None:
        doc["prevNode"] = plan.prev_node
    if plan.refresh:
        doc["refresh"] = True
    return json.dumps(doc, separators=(",", ":")).encode()


def event_at(doc: dict[str, Any], revision: int) -> dict[str, Any]:
    """A recorded event with its "this revision" indexes (0) filled in; the output
    order of etcd's Event (action, node, prevNode)."""
    node = dict(doc["node"])
    for name in ("modifiedIndex", "createdIndex"):
        if node.get(name) == 0:
            node[name] = revision
    out: dict[str, Any] = {"action": doc["action"], "node": _order(node)}
    if doc.get("prevNode") is not None:
        out["prevNode"] = _order(doc["prevNode"])
    return out


_NODE_ORDER = ("key", "value", "dir", "expiration", "ttl", "nodes", "modifiedIndex", "createdIndex")


def _order(node: dict[str, Any]) -> dict[str, Any]:
    return {k: node[k] for k in _NODE_ORDER if k in node}


def events_of_revision(revision: int, events: Iterable[api.Event], now_ns: int) -> tuple[dict[str, Any], bool] | None:
    """The v2 event of one revision's v3 events under V2_PREFIX, and whether it is a
    refresh (not sent to watchers). A revision that wrote no event but deleted nodes is
    a TTL expiry: the top-most deleted node expired. None when nothing v2 happened."""
    deleted: list[api.Event] = []
    for ev in events:
        if ev.kv is None:
            continue
        if ev.kv.key == EVENT_KEY and ev.type == api.EventType.PUT:
            doc = json.loads(ev.kv.value)
            return event_at(doc, revision), bool(doc.get("refresh"))
        if ev.type == api.EventType.DELETE and ev.kv.key.startswith(KEYS_PREFIX):
            deleted.append(ev)
    if not deleted:
        return None
    top = min(deleted, key=lambda e: (path_of(e.kv.key).count("/"), e.kv.key))
    prev = Node.from_kv(top.prev_kv) if top.prev_kv is not None else None
    path = path_of(top.kv.key)
    node: dict[str, Any] = {"key": path}
    if prev is not None and prev.dir:
        node["dir"] = True
    node["modifiedIndex"] = revision
    if prev is not None:
        node["createdIndex"] = prev.created_index
    out: dict[str, Any] = {"action": "expire", "node": node}
    if prev is not None:
        out["prevNode"] = prev.extern(now_ns)
    return out, False


def watch_matches(event: dict[str, Any], key: str, recursive: bool) -> bool:
    """Does a v2 watcher on `key` see `event`? etcd's EventHistory.scan and
    watcherHub.notify: the key itself; below it when recursive (unless hidden below
    the watched path); and any key under a deleted or expired directory."""
    node_key = event["node"].get("key", "/")
    if node_key == key:
        return True
    prefix = key if key.endswith("/") else key + "/"
    if recursive and node_key.startswith(prefix):
        rest = node_key[len(prefix) - 1 :]
        if "/_" not in rest:
            return True
    prev = event.get("prevNode")
    if event["action"] in ("delete", "expire", "compareAndDelete") and prev is not None and prev.get("dir"):
        if key.startswith(prev.get("key", "") + "/"):
            return True
    return False
