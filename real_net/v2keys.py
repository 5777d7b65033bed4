"""etcd's v2 HTTP API (keys, members, machines, stats) over a Backend, for the classic recipes.

Why: the recipes of the etcd article (an exclusive lock with
``prevExist=false``, ordered locks and queues with in-order keys, a
configuration watch) and the v2 clients (``python-etcd``, used by kombu and
Salt) speak etcd's v2 keys API. raftkv serves the part they need and keeps
the data in the one replicated store: real_net/v2store.py maps the v2 model
onto v3 keys and decides each write as etcd 3.4's v2store does; this module
parses requests as etcd's ``v2http`` does, runs each write as read-plan-Txn
(retrying when the Txn's guards fail because another client wrote first),
serves ``wait=true`` long polls from a v3 watch, and writes etcd's bodies,
statuses and headers (``X-Etcd-Index``, ``X-Raft-Index``, ``X-Raft-Term``,
``X-Etcd-Cluster-Id``).

How raftkv's v2 indexes relate to revisions: see real_net/v2store.py (a v2
index *is* a v3 revision). The watch history window is the last
``HISTORY_WINDOW`` revisions (etcd keeps its last 1000 v2 events), narrowed
by compaction; a ``waitIndex`` older than that is error 401 as in etcd.

TTLs are v3 leases: a node written with ``ttl`` gets a lease of its own
(raised to the member's minimum lease TTL, as any lease), and the lease's
expiry on the leader deletes it, which watchers see as an ``expire`` event.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

from kv import api
from kv.errors import (
    ErrCompacted,
    ErrFutureRev,
    ErrMemberExist,
    ErrMemberNotFound,
    ErrPeerURLExist,
    RaftKVError,
)
from kv.keyrange import prefix_range_end
from real_net.backend import Backend
from real_net.gateway import CORS_HEADERS, ChunkStream, HttpRequest, HttpResponse
from real_net.v2store import (
    EVENT_KEY,
    V2_PREFIX,
    Snapshot,
    V2Error,
    clean_path,
    event_at,
    events_of_revision,
    go_time,
    read_ops,
    snapshot_from,
    watch_matches,
)
from real_net.v2write import WriteRequest, encode_event, plan_write, write_kind

__all__ = ["HISTORY_WINDOW", "V2Keys"]

HISTORY_WINDOW = 1000
# A write whose guards keep failing (others keep writing what it read) gives up after this.
MAX_WRITE_ATTEMPTS = 200
_KEYS = "/v2/keys"
_STAT_NAMES = {
    "get": "gets", "set": "sets", "delete": "delete", "update": "update", "create": "create",
    "compareAndSwap": "compareAndSwap", "compareAndDelete": "compareAndDelete",
}  # fmt: skip
_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})(.{0,2})")


# ------------------------------------------------------------------ parsing


class _FormError(Exception):
    pass


def _parse_query(qs: str, into: dict[str, list[str]]) -> None:
    """Go's url.ParseQuery: '&'-separated, '+' is a space, a bad %-escape is an error."""
    for part in qs.split("&"):
        if not part:
            continue
        if ";" in part:
            raise _FormError("invalid semicolon separator in query")
        key, _, value = part.partition("=")
        for text in (key, value):
            bad = _ESCAPE.search(text)
            if bad is not None:
                raise _FormError(f'invalid URL escape "%{bad.group(1)}"')
        into.setdefault(urllib.parse.unquote_plus(key), []).append(urllib.parse.unquote_plus(value))


def _form(req: HttpRequest) -> dict[str, list[str]]:
    """Go's Request.ParseForm: a form-encoded PUT/POST/PATCH body first, then the query."""
    form: dict[str, list[str]] = {}
    ctype = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if req.method in ("POST", "PUT", "PATCH") and ctype == "application/x-www-form-urlencoded":
        try:
            _parse_query(req.body.decode(), form)
        except UnicodeDecodeError:
            raise _FormError("invalid UTF-8 in form body") from None
    _parse_query(req.query, form)
    return form


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _bool(form: dict[str, list[str]], name: str, code: int = 209, cause: str | None = None) -> bool | None:
    """strconv.ParseBool of the first value; None when absent."""
    if name not in form:
        return None
    v = form[name][0]
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise V2Error(code, cause if cause is not None else f'invalid value for "{name}"')


def _uint(form: dict[str, list[str]], name: str, code: int) -> int:
    if name not in form:
        return 0
    v = form[name][0]
    if not v.isdigit() or not v.isascii() or int(v) >= 2**64:
        raise V2Error(code, f'invalid value for "{name}"')
    return int(v)


class _KeyRequest:
    """etcd's parseKeyRequest: the v2 request a /v2/keys call makes, checked in its order."""

    def __init__(self, req: HttpRequest, now_ns: int) -> None:
        try:
            form = _form(req)
        except _FormError as e:
            raise V2Error(210, str(e)) from None
        raw = req.path[len(_KEYS) :]
        self.path = clean_path(urllib.parse.unquote(raw, errors="replace"))
        self.method = req.method
        self.prev_index = _uint(form, "prevIndex", 203)
        self.wait_index = _uint(form, "waitIndex", 203)
        self.recursive = bool(_bool(form, "recursive"))
        self.sorted = bool(_bool(form, "sorted"))
        self.wait = bool(_bool(form, "wait"))
        self.dir = bool(_bool(form, "dir"))
        self.quorum = bool(_bool(form, "quorum"))
        self.stream = bool(_bool(form, "stream"))
        if self.wait and req.method != "GET":
            raise V2Error(209, '"wait" can only be used with GET requests')
        self.prev_value = form.get("prevValue", [""])[0]
        if "prevValue" in form and self.prev_value == "":
            raise V2Error(201, '"prevValue" cannot be empty')
        self.no_value_on_success = bool(_bool(form, "noValueOnSuccess"))
        self.ttl: int | None = None
        if form.get("ttl", [""])[0]:
            self.ttl = _uint(form, "ttl", 202)
        self.prev_exist = _bool(form, "prevExist", cause="invalid value for prevExist")
        self.refresh = _bool(form, "refresh", cause="invalid value for refresh")
        self.value = form.get("value", [""])[0]
        if self.refresh:
            if self.value:
                raise V2Error(211, "A value was provided on a refresh")
            if self.ttl is None:
                raise V2Error(212, "No TTL value set")
        self.expiration = now_ns + self.ttl * 1_000_000_000 if self.ttl is not None else None

    def write_request(self) -> WriteRequest:
        return WriteRequest(
            method=self.method, path=self.path, value=self.value, dir=self.dir, prev_value=self.prev_value,
            prev_index=self.prev_index, prev_exist=self.prev_exist, refresh=bool(self.refresh),
            recursive=self.recursive, expiration=self.expiration, ttl=self.ttl,
        )  # fmt: skip


# ------------------------------------------------------------------ output


def _body(obj: Any) -> bytes:
    # Go's json.Encoder: compact, HTML-safe escapes, a newline after each value.
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + "\n").encode()


def _go_duration(seconds: float) -> str:
    """Go's time.Duration.String for a positive duration."""
    ns = int(seconds * 1e9)
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.6f}".rstrip("0").rstrip(".") + "ms" if ns >= 1_000_000 else f"{ns}ns"
    h, rest = divmod(ns, 3_600_000_000_000)
    m, rest = divmod(rest, 60_000_000_000)
    s = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".")
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{s}s"


def _plain(status: int, text: str, extra: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(
        status, [*CORS_HEADERS, ("Content-Type", "text/plain; charset=utf-8"), *extra], (text + "\n").encode()
    )


def _method_not_allowed(*allowed: str) -> HttpResponse:
    return _plain(405, "Method Not Allowed", (("Allow", ",".join(allowed)),))


class V2Keys:
    """The v2 face of one Backend: ``handle`` answers ``/v2/...`` (None for other paths)."""

    def __init__(
        self,
        backend: Backend,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        history_window: int = HISTORY_WINDOW,
        rng: random.Random | None = None,
    ) -> None:
        self.backend = backend
        self.clock_ns = clock_ns
        self.history_window = history_window
        self._rng = rng or random.Random()
        self._cluster_id: int | None = None
        self.start_ns = clock_ns()
        self._leader: tuple[int, int] = (0, self.start_ns)  # (leader id, first seen as leader at)
        self.stats: dict[str, int] = {}
        for name in ("gets", "sets", "delete", "update", "create", "compareAndSwap", "compareAndDelete"):
            self.stats[f"{name}Success"] = 0
            self.stats[f"{name}Fail"] = 0
        self.stats["expireCount"] = 0
        self.watchers = 0
        self._background: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def handle(self, req: HttpRequest) -> HttpResponse | None:
        path = req.path
        if path == _KEYS or path.startswith(_KEYS + "/"):
            return await self._keys(req)
        if path == "/v2/members" or path.startswith("/v2/members/"):
            return await self._members(req)
        if path == "/v2/machines":
            return await self._machines(req)
        if path in ("/v2/stats/self", "/v2/stats/leader", "/v2/stats/store"):
            return await self._stats(req, path.rsplit("/", 1)[1])
        return None

    # ------------------------------------------------------------ helpers

    async def _cluster_header(self) -> list[tuple[str, str]]:
        if self._cluster_id is None:
            try:
                status = await self.backend.call(api.StatusRequest())
                self._cluster_id = status.header.cluster_id
            except RaftKVError:
                return []
        return [("X-Etcd-Cluster-Id", format(self._cluster_id, "x"))]

    async def _raft_headers(self, etcd_index: int) -> list[tuple[str, str]]:
        status = await self.backend.call(api.StatusRequest())
        self._cluster_id = status.header.cluster_id
        return [
            ("X-Etcd-Cluster-Id", format(status.header.cluster_id, "x")),
            ("X-Etcd-Index", str(etcd_index)),
            ("X-Raft-Index", str(status.raft_index)),
            ("X-Raft-Term", str(status.header.raft_term)),
        ]

    async def _error(self, err: V2Error) -> HttpResponse:
        headers = [*CORS_HEADERS, ("Content-Type", "application/json"), *await self._cluster_header(),
                   ("X-Etcd-Index", str(err.index))]  # fmt: skip
        return HttpResponse(err.status, headers, _body(err.body()))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _revoke(self, leases: list[int]) -> None:
        for lease in leases:
            try:
                await self.backend.call(api.LeaseRevokeRequest(ID=lease))
            except RaftKVError:
                pass  # already gone, or it expires by itself

    async def _snapshot(self, path: str, subtree: bool) -> Snapshot:
        resp = await self.backend.call(api.TxnRequest(success=read_ops(path, subtree)))
        return snapshot_from(resp)

    # --------------------------------------------------------------- keys

    async def _keys(self, req: HttpRequest) -> HttpResponse:
        if req.method not in ("HEAD", "GET", "PUT", "POST", "DELETE"):
            return _method_not_allowed("HEAD", "GET", "PUT", "POST", "DELETE")
        try:
            kr = _KeyRequest(req, self.clock_ns())
            if kr.method in ("GET", "HEAD"):
                if kr.wait:
                    return await self._watch(kr)
                return await self._get(kr)
            return await self._write(kr)
        except V2Error as e:
            return await self._error(e)
        except RaftKVError as e:
            # What etcd's writeKeyError does with a server error (no leader, timeout, ...).
            return await self._error(V2Error(300, str(e)))

    async def _get(self, kr: _KeyRequest) -> HttpResponse:
        snap = await self._snapshot(kr.path, subtree=True)
        try:
            node = snap.get(kr.path)
        except V2Error:
            self.stats["getsFail"] += 1
            raise
        self.stats["getsSuccess"] += 1
        now = self.clock_ns()
        event = {"action": "get", "node": snap.repr_node(node, now, kr.recursive, listing=True)}
        headers = [*CORS_HEADERS, ("Content-Type", "application/json"), *await self._raft_headers(snap.revision)]
        return HttpResponse(200, headers, _body(event))

    async def _write(self, kr: _KeyRequest) -> HttpResponse:
        wreq = kr.write_request()
        kind = _STAT_NAMES[write_kind(wreq)]
        lease = 0
        try:
            if wreq.expiration is not None and wreq.method != "DELETE":
                ttl = max(1, math.ceil((wreq.expiration - self.clock_ns()) / 1e9))
                lease = (await self.backend.call(api.LeaseGrantRequest(TTL=ttl))).ID
            plan, resp = await self._commit(wreq, lease)
        except (V2Error, RaftKVError):
            self.stats[f"{kind}Fail"] += 1
            if lease:
                self._spawn(self._revoke([lease]))
            raise
        self.stats[f"{kind}Success"] += 1
        leases = list(plan.old_leases)
        if lease and not plan.lease_needed:
            leases.append(lease)
        if leases:
            self._spawn(self._revoke(leases))
        revision = resp.header.revision
        event = event_at(json.loads(encode_event(plan)), revision)
        if kr.no_value_on_success and plan.action in ("set", "compareAndSwap", "create", "update"):
            event = {"action": plan.action}
        headers = [*CORS_HEADERS, ("Content-Type", "application/json"), *await self._raft_headers(revision)]
        return HttpResponse(201 if plan.created else 200, headers, _body(event))

    async def _commit(self, wreq: WriteRequest, lease: int) -> tuple[Any, api.TxnResponse]:
        """Read, plan, and commit the Txn; again while its guards fail."""
        for attempt in range(MAX_WRITE_ATTEMPTS):
            snap = await self._snapshot(wreq.path, subtree=wreq.method == "DELETE")
            plan = plan_write(wreq, snap, self.clock_ns(), lease)
            ops = (*plan.ops, api.RequestOp(request_put=api.PutRequest(key=EVENT_KEY, value=encode_event(plan))))
            resp: api.TxnResponse = await self.backend.call(api.TxnRequest(compare=tuple(plan.compares), success=ops))
            if resp.succeeded:
                return plan, resp
            if attempt >= 3:  # contended: step aside a little, at random, so someone wins
                await asyncio.sleep(self._rng.uniform(0, min(0.05, 0.001 * attempt)))
        raise V2Error(300, "raftkv: v2 write contended too long; try again")

    # -------------------------------------------------------------- watch

    async def _watch(self, kr: _KeyRequest) -> HttpResponse:
        since = kr.wait_index
        if since:
            try:
                probe = await self.backend.call(api.RangeRequest(key=EVENT_KEY, revision=since, count_only=True))
                current = probe.header.revision
                start = max(1, current - self.history_window + 1)
            except ErrFutureRev:
                current, start = 0, 0
            except ErrCompacted:
                hashed = await self.backend.call(api.HashKVRequest())
                current, start = hashed.header.revision, max(hashed.compact_revision, 1)
            if since < start:
                raise V2Error(401, f"the requested history has been cleared [{start}/{since}]", current)
        stream = self.backend.watch_stream()
        try:
            await stream.send(api.WatchCreateRequest(
                key=V2_PREFIX, range_end=prefix_range_end(V2_PREFIX), start_revision=since, prev_kv=True))  # fmt: skip
            created = await stream.recv()
            if created.canceled:
                raise V2Error(401, f"the requested history has been cleared [{created.compact_revision}/{since}]",
                              created.header.revision)  # fmt: skip
            headers = [*CORS_HEADERS, ("Content-Type", "application/json"),
                       *await self._raft_headers(created.header.revision)]  # fmt: skip
        except BaseException:
            stream.close()
            raise
        self.watchers += 1

        async def cleanup() -> None:
            self.watchers -= 1
            stream.close()

        return HttpResponse(200, headers, stream=ChunkStream(self._watch_events(stream, kr), cleanup))

    async def _watch_events(self, stream: Any, kr: _KeyRequest) -> AsyncIterator[bytes]:
        """The matching v2 events of a v3 watch (one for a long poll); the caller closes `stream`."""
        while True:
            try:
                resp = await stream.recv()
            except RaftKVError:
                return  # the member stopped: the long poll ends, the client asks again
            if resp.canceled:
                return
            by_revision: dict[int, list[api.Event]] = {}
            for ev in resp.events:
                assert ev.kv is not None
                by_revision.setdefault(ev.kv.mod_revision, []).append(ev)
            for revision in sorted(by_revision):
                found = events_of_revision(revision, by_revision[revision], self.clock_ns())
                if found is None:
                    continue
                event, refresh = found
                if event["action"] == "expire":
                    self.stats["expireCount"] += 1
                if refresh or not watch_matches(event, kr.path, kr.recursive):
                    continue
                yield _body(event)
                if not kr.stream:
                    return

    # ------------------------------------------------------------ members

    async def _members(self, req: HttpRequest) -> HttpResponse:
        if req.method not in ("GET", "POST", "DELETE", "PUT"):
            return _method_not_allowed("GET", "POST", "DELETE", "PUT")
        cluster = await self._cluster_header()
        rest = req.path[len("/v2/members") :].strip("/")

        def message(status: int, text: str) -> HttpResponse:
            return HttpResponse(status, [*CORS_HEADERS, ("Content-Type", "application/json"), *cluster],
                                _body({"message": text}))  # fmt: skip

        def ok(status: int, obj: Any) -> HttpResponse:
            return HttpResponse(status, [*CORS_HEADERS, ("Content-Type", "application/json"), *cluster], _body(obj))

        try:
            if req.method == "GET":
                members = (await self.backend.call(api.MemberListRequest(linearizable=False))).members
                if rest == "":
                    return ok(200, {"members": [_member_json(m) for m in members]})
                if rest == "leader":
                    leader = (await self.backend.call(api.StatusRequest())).leader
                    for m in members:
                        if m.ID == leader and leader:
                            return ok(200, _member_json(m))
                    return message(503, "During election")
                return message(404, "Not found")
            if req.method == "POST":
                urls = _peer_urls_body(req)
                if isinstance(urls, HttpResponse):
                    return urls
                added = await self.backend.call(api.MemberAddRequest(peer_urls=tuple(urls)))
                return ok(201, _member_json(added.member))
            if rest == "":
                return _method_not_allowed("GET", "POST", "DELETE", "PUT")
            try:
                member_id = int(rest, 16)
                if not 0 <= member_id < 2**64:
                    raise ValueError
            except ValueError:
                return message(404, f"No such member: {rest}")
            if req.method == "DELETE":
                await self.backend.call(api.MemberRemoveRequest(ID=member_id))
                return HttpResponse(204, [*CORS_HEADERS, *cluster])
            urls = _peer_urls_body(req)
            if isinstance(urls, HttpResponse):
                return urls
            await self.backend.call(api.MemberUpdateRequest(ID=member_id, peer_urls=tuple(urls)))
            return HttpResponse(204, [*CORS_HEADERS, *cluster])
        except (ErrPeerURLExist, ErrMemberExist) as e:
            text = "membership: peerURL exists" if isinstance(e, ErrPeerURLExist) else "membership: ID exists"
            return message(409, text)
        except ErrMemberNotFound:
            return message(404, f"No such member: {rest}")
        except RaftKVError as e:
            return message(500, str(e))

    async def _machines(self, req: HttpRequest) -> HttpResponse:
        if req.method not in ("GET", "HEAD"):
            return _method_not_allowed("GET", "HEAD")
        try:
            members = (await self.backend.call(api.MemberListRequest(linearizable=False))).members
        except RaftKVError as e:
            return _plain(500, str(e))
        urls = sorted(u for m in members for u in m.client_urls)
        return HttpResponse(200, [*CORS_HEADERS, ("Content-Type", "text/plain; charset=utf-8")], ", ".join(urls).encode())

    # -------------------------------------------------------------- stats

    async def _stats(self, req: HttpRequest, which: str) -> HttpResponse:
        if req.method != "GET":
            return _method_not_allowed("GET")
        json_headers = [*CORS_HEADERS, ("Content-Type", "application/json")]
        if which == "store":
            return HttpResponse(200, json_headers, _body({**self.stats, "watchers": self.watchers})[:-1])
        try:
            status = await self.backend.call(api.StatusRequest())
            members = (await self.backend.call(api.MemberListRequest(linearizable=False))).members
        except RaftKVError as e:
            return _plain(500, str(e))
        me = status.header.member_id
        now = self.clock_ns()
        if status.leader != self._leader[0]:
            # The first leader seen counts from this face's start; a change from the change.
            self._leader = (status.leader, self.start_ns if self._leader[0] == 0 else now)
        if which == "leader":
            if status.leader != me:
                return HttpResponse(403, json_headers, _body({"message": "not current leader"}))
            zero = {"current": 0, "average": 0, "standardDeviation": 0, "minimum": 0, "maximum": 0}
            followers = {format(m.ID, "x"): {"latency": zero, "counts": {"fail": 0, "success": 0}}
                         for m in members if m.ID != me}  # fmt: skip
            return HttpResponse(200, json_headers, _body({"leader": format(me, "x"), "followers": followers})[:-1])
        name = next((m.name for m in members if m.ID == me), "")
        body = {
            "name": name,
            "id": format(me, "x"),
            "state": "StateLeader" if status.leader == me else "StateFollower",
            "startTime": go_time(self.start_ns),
            "leaderInfo": {
                "leader": format(status.leader, "x") if status.leader else "",
                "uptime": _go_duration((now - self._leader[1]) / 1e9),
                "startTime": go_time(self._leader[1]),
            },
            "recvAppendRequestCnt": 0,
            "sendAppendRequestCnt": 0,
        }
        return HttpResponse(200, json_headers, _body(body)[:-1])


def _member_json(m: api.Member) -> dict[str, Any]:
    return {"id": format(m.ID, "x"), "name": m.name, "peerURLs": list(m.peer_urls), "clientURLs": list(m.client_urls)}


def _peer_urls_body(req: HttpRequest) -> list[str] | HttpResponse:
    """etcd's unmarshalRequest for MemberCreateRequest/MemberUpdateRequest."""
    ctype = req.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def bad(status: int, text: str) -> HttpResponse:
        return HttpResponse(status, [*CORS_HEADERS, ("Content-Type", "application/json")], _body({"message": text}))

    if ctype != "application/json":
        return bad(415, f"Bad Content-Type {ctype}, accept application/json")
    try:
        doc = json.loads(req.body)
        urls = doc["peerURLs"]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ValueError
        for u in urls:
            parsed = urllib.parse.urlsplit(u)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError
    except (ValueError, KeyError, TypeError):
        return bad(400, "raftkv: body must be {\"peerURLs\": [\"http(s)://host:port\", ...]}")
    return urls
