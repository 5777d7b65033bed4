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

This module holds the layout, nodes, snapshots and events; the write planner
is real_net/v2write.py.
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


# ------------------------------------------------------------------ events


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
