"""The v2 keys API answers as etcd 3.4's (--enable-v2), on raftkv's one store.

Side by side with a real etcd: the same requests, and the same statuses,
bodies and X-Etcd-Index once etcd's index is shifted to raftkv's (etcd's v2
index starts past its own membership writes; raftkv's is the v3 revision),
``expiration`` times are masked and ``ttl`` may differ by a second. Then the
article's recipes under 24 concurrent clients, the python-etcd client, and
the corners (TTL expiry, the history window, directories that expire).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from real_net.v2store import clean_path, go_time, go_ttl

from .support import PortThread, Reply, V2Etcd, call

pytestmark = pytest.mark.timeout(60)


def form(**kw: Any) -> str:
    return urllib.parse.urlencode(kw)


class V2Pair:
    def __init__(self, etcd: str, raftkv: str) -> None:
        self.etcd, self.raftkv = etcd, raftkv
        e0 = int(call(etcd, "GET", "/v2/keys/").headers["x-etcd-index"])
        r0 = int(call(raftkv, "GET", "/v2/keys/").headers["x-etcd-index"])
        self.offset = e0 - r0  # etcd's index minus raftkv's

    def _shift(self, obj: Any, by: int) -> Any:
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if k in ("modifiedIndex", "createdIndex", "index") and isinstance(v, int) and v:
                    out[k] = v - by
                elif k == "key" and isinstance(v, str):
                    out[k] = re.sub(r"/(\d{20})", lambda m: "/%020d" % (int(m.group(1)) - by), v)
                elif k == "expiration":
                    out[k] = "<expiration>"
                elif k == "ttl":
                    out[k] = "<ttl>" if isinstance(v, int) and v > 0 else v
                elif k == "nodes":
                    out[k] = sorted((self._shift(n, by) for n in v), key=lambda n: n.get("key", ""))
                else:
                    out[k] = self._shift(v, by)
            return out
        if isinstance(obj, list):
            return [self._shift(x, by) for x in obj]
        return obj

    def one(self, base: str, by: int, method: str, path: str, body: str | None, index_cause: bool) -> Any:
        # "{i:N}" in a path is raftkv's index N, shifted to the side's own.
        path = re.sub(r"\{i:(\d+)\}", lambda m: str(int(m.group(1)) + by), path)
        r = call(base, method, path, body)
        try:
            doc = self._shift(json.loads(r.body), by) if r.body.strip() else None
        except ValueError:
            doc = r.text
        if index_cause and doc is not None and "cause" in doc:
            doc["cause"] = re.sub(r"!= (\d+)\]", lambda m: f"!= {int(m.group(1)) - by}]", doc["cause"])
        index = int(r.headers.get("x-etcd-index", "0"))
        raft = ("x-raft-index" in r.headers, "x-raft-term" in r.headers, "x-etcd-cluster-id" in r.headers)
        return r.status, (index - by if index else 0), raft, doc

    def same(self, method: str, path: str, body: str | None = None, index_cause: bool = False) -> Any:
        a = self.one(self.etcd, self.offset, method, path, body, index_cause)
        b = self.one(self.raftkv, 0, method, path, body, index_cause)
        assert b == a, f"{method} {path} {body or ''}: raftkv (right) differs from etcd (left)"
        return a


@pytest.fixture
def pair() -> Iterator[V2Pair]:
    with V2Etcd() as etcd, PortThread(min_lease_ttl=1) as raftkv:
        yield V2Pair(etcd.url, raftkv.url)


def test_writes_reads_and_errors_match_etcd(pair: V2Pair) -> None:
    s = pair.same
    s("GET", "/v2/keys/")
    assert s("PUT", "/v2/keys/a/b", form(value=1))[0] == 201
    assert s("PUT", "/v2/keys/a/b", form(value=2))[0] == 200  # set again: createdIndex renewed
    s("PUT", "/v2/keys/a/b?prevExist=false", form(value=3))  # 105
    s("PUT", "/v2/keys/a/b?prevValue=2", form(value=3))  # compareAndSwap
    s("PUT", "/v2/keys/a/b?prevValue=9", form(value=3))  # 101
    s("PUT", "/v2/keys/a/b?prevIndex=9", form(value=3), index_cause=True)
    s("PUT", "/v2/keys/a/b/c", form(value=3))  # 104
    s("PUT", "/v2/keys/a", form(value=3))  # 102
    s("GET", "/v2/keys/a?recursive=true&sorted=true")
    s("GET", "/v2/keys/a/b/c")  # 104 through a file
    s("GET", "/v2/keys/nope/deeper")  # 100 names the first missing one
    s("DELETE", "/v2/keys/a")  # 102
    s("DELETE", "/v2/keys/a?dir=true")  # 108
    s("PUT", "/v2/keys/x")  # empty value
    s("PUT", "/v2/keys/x?prevExist=true", form(value=1))  # update
    s("PUT", "/v2/keys/a/b?prevExist=true&prevValue=3", form(value=5))
    s("DELETE", "/v2/keys/a/b?prevValue=4")
    s("DELETE", "/v2/keys/a/b?prevIndex=1", index_cause=True)
    s("DELETE", "/v2/keys/x?prevValue=1")  # compareAndDelete
    s("DELETE", "/v2/keys/a?recursive=true")
    s("PUT", "/v2/keys/d?dir=true")
    s("PUT", "/v2/keys/d?dir=true")  # 102
    s("PUT", "/v2/keys/d/_hidden", form(value=1))
    s("PUT", "/v2/keys/d/seen", form(value=1))
    s("GET", "/v2/keys/d")  # hidden nodes are not listed
    s("DELETE", "/v2/keys/d?dir=true")  # 108: hidden children count
    s("POST", "/v2/keys/q", form(value="j1"))
    s("POST", "/v2/keys/q", form(value="j2"))
    s("GET", "/v2/keys/q?sorted=true&quorum=true")
    s("PUT", "/v2/keys/nv?noValueOnSuccess=true", form(value=1))
    s("PUT", "/v2/keys/t", form(value="x", ttl=100))
    s("PUT", "/v2/keys/t?refresh=true&ttl=50")  # refresh: a set keeping the value
    s("PUT", "/v2/keys/t?prevExist=true", form(value="y"))  # update without ttl: permanent
    s("GET", "/v2/keys/")
    s("DELETE", "/v2/keys/")  # 107
    s("PUT", "/v2/keys/x%20y/..%2Fz", form(value=1))  # escapes decoded, path cleaned
    s("GET", "/v2/keys/x%20y?recursive=true")
    s("HEAD", "/v2/keys/q")
    for bad in ("ttl=abc", "prevIndex=-1", "prevExist=maybe", "refresh=true", "refresh=true&ttl=5&value=v",
                "prevValue=", "wait=true", "value=%zz", "recursive=yes"):  # fmt: skip
        s("PUT", f"/v2/keys/bad?{bad}")
    s("PATCH", "/v2/keys/x")


def test_watches_match_etcd(pair: V2Pair) -> None:
    s = pair.same
    s("PUT", "/v2/keys/w/k", form(value=1))
    status, index, _, _ = s("PUT", "/v2/keys/w/k", form(value=2))
    s("GET", f"/v2/keys/w/k?wait=true&waitIndex={{i:{index}}}")  # from history
    s("GET", f"/v2/keys/w?wait=true&recursive=true&waitIndex={{i:{index - 1}}}")
    outs: dict[str, Any] = {}

    def watch(name: str, base: str, by: int, path: str) -> None:
        outs[name] = pair.one(base, by, "GET", path, None, False)

    for path, change in (
        ("/v2/keys/w/k?wait=true", ("PUT", "/v2/keys/w/k", form(value=3))),
        ("/v2/keys/w/k?wait=true", ("DELETE", "/v2/keys/w?recursive=true", None)),  # a dir delete notifies its keys
        ("/v2/keys/w?wait=true&recursive=true", ("PUT", "/v2/keys/w/new", form(value=1))),
        ("/v2/keys/ttl?wait=true", ("PUT", "/v2/keys/ttl", form(value="x", ttl=1))),
        ("/v2/keys/ttl?wait=true", None),  # the expiry
    ):
        threads = [threading.Thread(target=watch, args=("etcd", pair.etcd, pair.offset, path)),
                   threading.Thread(target=watch, args=("raftkv", pair.raftkv, 0, path))]  # fmt: skip
        for t in threads:
            t.start()
        time.sleep(0.3)
        if change is not None:
            s(*change)
        for t in threads:
            t.join(10)
        # A long poll's X-Etcd-Index is the index when it started: equal after the shift.
        assert outs["raftkv"] == outs["etcd"], path
    assert outs["etcd"][3]["action"] == "expire"


def test_an_index_out_of_the_history_window_is_error_401_as_etcd() -> None:
    with V2Etcd() as etcd, PortThread() as raftkv:
        raftkv.port.v2.history_window = 20  # type: ignore[union-attr]  # etcd keeps 1000 events
        replies: list[Reply] = []
        for base, writes in ((etcd.url, 1005), (raftkv.url, 25)):
            import http.client

            host, port = base.rsplit("//", 1)[1].split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            for i in range(writes):
                conn.request("PUT", "/v2/keys/many", body=f"value={i}",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
                conn.getresponse().read()
            conn.close()
            replies.append(call(base, "GET", "/v2/keys/many?wait=true&waitIndex=2"))
        for r in replies:
            body = r.json
            assert r.status == 400 and body["errorCode"] == 401
            assert body["message"] == "The event in requested index is outdated and cleared"
            start, asked = map(int, re.fullmatch(r"the requested history has been cleared \[(\d+)/(\d+)\]",
                                                 body["cause"]).groups())  # fmt: skip
            assert asked == 2 and body["index"] == int(r.headers["x-etcd-index"])
        e, k = replies[0].json, replies[1].json
        assert int(e["cause"].split("[")[1].split("/")[0]) == e["index"] - 999
        assert int(k["cause"].split("[")[1].split("/")[0]) == k["index"] - 19


def test_members_machines_and_stats_have_etcds_shapes(pair: V2Pair) -> None:
    for base in (pair.etcd, pair.raftkv):
        members = call(base, "GET", "/v2/members").json["members"]
        assert len(members) == 1 and set(members[0]) == {"id", "name", "peerURLs", "clientURLs"}
        assert set(call(base, "GET", "/v2/members/leader").json) == {"id", "name", "peerURLs", "clientURLs"}
        assert call(base, "GET", "/v2/machines").text.startswith("http://")
        me = call(base, "GET", "/v2/stats/self").json
        assert set(me) == {"name", "id", "state", "startTime", "leaderInfo", "recvAppendRequestCnt",
                           "sendAppendRequestCnt"} and me["state"] == "StateLeader"  # fmt: skip
        assert set(call(base, "GET", "/v2/stats/leader").json) == {"leader", "followers"}
        store = call(base, "GET", "/v2/stats/store").json
        assert {"getsSuccess", "setsSuccess", "compareAndSwapFail", "expireCount", "watchers"} <= set(store)
        r = call(base, "DELETE", "/v2/members/zz")
        assert (r.status, r.json) == (404, {"message": "No such member: zz"})
        r = call(base, "POST", "/v2/members", b'{"peerURLs":["http://127.0.0.1:1"]}')
        assert r.status == 415


# ------------------------------------------------------------------ recipes


@pytest.fixture
def port() -> Iterator[PortThread]:
    with PortThread(min_lease_ttl=1) as p:
        yield p


def _together(n: int, fn: Any) -> list[Any]:
    """Run fn(i) in n threads released at once; their results in order of i."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_exclusive_lock_with_prev_exist_false_has_exactly_one_winner_of_24(port: PortThread) -> None:
    replies = _together(24, lambda i: call(port.url, "PUT", "/v2/keys/lock?prevExist=false", form(value=i)))
    winners = [r for r in replies if r.status == 201]
    assert len(winners) == 1 and winners[0].json["action"] == "create"
    losers = [r.json for r in replies if r.status != 201]
    assert len(losers) == 23 and all(r["errorCode"] == 105 for r in losers)
    assert call(port.url, "GET", "/v2/keys/lock").json["node"]["value"] == winners[0].json["node"]["value"]


def test_in_order_keys_of_24_clients_strictly_increase_and_list_in_order(port: PortThread) -> None:
    replies = _together(24, lambda i: call(port.url, "POST", "/v2/keys/queue", form(value=i)))
    assert all(r.status == 201 for r in replies)
    created = sorted((r.json["node"]["createdIndex"], r.json["node"]["key"]) for r in replies)
    keys = [k for _, k in created]
    assert keys == sorted(keys) and len(set(keys)) == 24  # names increase in commit order
    listed = call(port.url, "GET", "/v2/keys/queue?sorted=true").json["node"]["nodes"]
    assert [n["key"] for n in listed] == keys
    # The ordered lock: the holder is the lowest key; deleting it hands over to the next.
    call(port.url, "DELETE", f"/v2/keys{keys[0]}")
    listed = call(port.url, "GET", "/v2/keys/queue?sorted=true").json["node"]["nodes"]
    assert listed[0]["key"] == keys[1]


def test_a_configuration_watcher_sees_every_change(port: PortThread) -> None:
    seen: list[str] = []
    start = int(call(port.url, "GET", "/v2/keys/").headers["x-etcd-index"])

    def watcher() -> None:
        index = start + 1
        while len(seen) < 30:
            r = call(port.url, "GET", f"/v2/keys/config?wait=true&recursive=true&waitIndex={index}", timeout=10)
            ev = r.json
            seen.append(ev["node"]["value"])
            index = ev["node"]["modifiedIndex"] + 1

    t = threading.Thread(target=watcher)
    t.start()
    for i in range(30):
        call(port.url, "PUT", f"/v2/keys/config/k{i % 3}", form(value=f"v{i}"))
    t.join(20)
    assert seen == [f"v{i}" for i in range(30)]


def test_ttl_keys_and_directories_expire(port: PortThread) -> None:
    r = call(port.url, "PUT", "/v2/keys/session", form(value="s", ttl=1))
    node = r.json["node"]
    assert node["ttl"] == 1 and node["expiration"].endswith("Z")
    call(port.url, "PUT", "/v2/keys/tdir?dir=true&ttl=1")
    call(port.url, "PUT", "/v2/keys/tdir/inner", form(value="i"))
    expired = call(port.url, "GET", "/v2/keys/session?wait=true", timeout=10).json
    assert expired["action"] == "expire" and expired["prevNode"]["value"] == "s"
    deadline = time.monotonic() + 5
    while call(port.url, "GET", "/v2/keys/tdir").status != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert call(port.url, "GET", "/v2/keys/session").status == 404
    assert call(port.url, "GET", "/v2/keys/tdir/inner").json["errorCode"] == 100  # went with its directory
    call(port.url, "PUT", "/v2/keys/tdir/again", form(value="a"))
    nodes = call(port.url, "GET", "/v2/keys/tdir?recursive=true").json["node"]["nodes"]
    assert [n["key"] for n in nodes] == ["/tdir/again"]
    assert call(port.url, "GET", "/v2/stats/store").json["expireCount"] >= 1


def test_python_etcd_client_works_against_the_port(port: PortThread) -> None:
    import etcd  # python-etcd, a dev dependency (pyproject)
    c = etcd.Client(host="127.0.0.1", port=port.port.port)
    assert c.write("/pe/k", "v1").newKey
    assert c.read("/pe/k").value == "v1"
    with pytest.raises(etcd.EtcdAlreadyExist):
        c.write("/pe/k", "v2", prevExist=False)
    assert c.test_and_set("/pe/k", "v2", "v1").value == "v2"
    with pytest.raises(etcd.EtcdCompareFailed):
        c.test_and_set("/pe/k", "v3", "nope")
    c.write("/pe/q", "job", append=True)
    assert sorted(x.key for x in c.read("/pe", recursive=True).leaves)[0] == "/pe/k"
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(c.watch("/pe/k", timeout=10).value))
    t.start()
    time.sleep(0.3)
    c.write("/pe/k", "v3")
    t.join(10)
    assert got == ["v3"]
    assert c.write("/pe/ttl", "x", ttl=5).ttl == 5
    assert list(c.members.values())[0]["clientURLs"] == [port.url]
    assert c.leader["clientURLs"] == [port.url]
    assert c.machines == [port.url]
    lock = etcd.Lock(c, "mylock")
    lock.acquire(blocking=True, lock_ttl=10)
    assert lock.is_acquired
    lock.release()
    c.delete("/pe", recursive=True)
    with pytest.raises(etcd.EtcdKeyNotFound):
        c.read("/pe/k")


def test_path_time_and_ttl_helpers_follow_go() -> None:
    assert clean_path("") == "/" and clean_path("a//b/./c/../d/") == "/a/b/d" and clean_path("/../x") == "/x"
    assert go_time(1_700_000_000_123_400_000) == "2023-11-14T22:13:20.1234Z"
    assert go_time(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert go_ttl(5_000_000_000, 0) == 5 and go_ttl(4_500_000_000, 0) == 5 and go_ttl(-500_000_000, 0) == 0


def test_a_stream_watch_sends_every_matching_event_until_the_client_hangs_up(port: PortThread) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", port.port.port), timeout=10) as s:
        s.sendall(b"GET /v2/keys/st?wait=true&stream=true&recursive=true HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        for i in range(3):
            call(port.url, "PUT", f"/v2/keys/st/k{i}", form(value=i))
        buf = b""
        deadline = time.monotonic() + 10
        while buf.count(b'"action"') < 3:
            assert time.monotonic() < deadline, buf
            buf += s.recv(65536)
    assert b"Transfer-Encoding: chunked" in buf
    values = re.findall(rb'"key":"/st/k(\d)"', buf)
    assert values == [b"0", b"1", b"2"]
    deadline = time.monotonic() + 10
    while call(port.url, "GET", "/v2/stats/store").json["watchers"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
