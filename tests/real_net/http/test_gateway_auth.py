"""Auth through the v3 JSON gateway, as etcd 3.4's grpc-gateway: `/v3/auth/...` answers field by
field as etcd's, and a token from `/v3/auth/authenticate` in the `Authorization` header is
the user a request runs as (etcd's gateway forwards that header as the token)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .support import PortThread, RealEtcd, call, free_port, normalize_v3
from .test_gateway import Side, b64

pytestmark = pytest.mark.timeout(60)


def post(side: Side, path: str, body: Any, token: str = "") -> tuple[int, Any]:
    r = call(side.base, "POST", path, json.dumps(body).encode(), headers={"Authorization": token} if token else None)
    try:
        doc = r.json
    except ValueError:
        doc = r.text
    return r.status, normalize_v3(doc, side.subs)


@pytest.fixture
def sides() -> Iterator[tuple[Side, Side]]:
    peer_port = free_port()
    with RealEtcd() as etcd, PortThread(peer_urls=(f"http://127.0.0.1:{peer_port}",)) as raftkv:
        yield Side("etcd", f"http://{etcd.endpoint}", etcd.peer_port), Side("raftkv", raftkv.url, peer_port)


def test_auth_over_the_gateway_answers_as_etcd(sides: tuple[Side, Side]) -> None:
    tokens: dict[str, dict[str, str]] = {s.name: {} for s in sides}

    def same(path: str, body: Any, user: str = "") -> tuple[int, Any]:
        outs = [post(s, path, body, tokens[s.name].get(user, "")) for s in sides]
        assert outs[1] == outs[0], f"POST {path} {body!r} as {user or 'nobody'}: raftkv (right) differs from etcd (left)"
        return outs[0]

    def login(user: str, password: str) -> None:
        for s in sides:
            status, body = post(s, "/v3/auth/authenticate", {"name": user, "password": password})
            assert status == 200, body
            tokens[s.name][user] = body["token"]

    same("/v3/auth/user/add", {"name": "root", "password": "rootpw"})
    same("/v3/auth/user/grant", {"user": "root", "role": "root"})
    same("/v3/auth/user/add", {"name": "alice", "password": "alicepw"})
    same("/v3/auth/role/add", {"name": "ra"})
    same("/v3/auth/role/grant", {"name": "ra", "perm": {"permType": "READWRITE", "key": b64("a/"), "range_end": b64("a0")}})
    same("/v3/auth/user/grant", {"user": "alice", "role": "ra"})
    assert same("/v3/auth/authenticate", {"name": "alice", "password": "x"})[0] == 412  # auth not enabled yet
    assert same("/v3/auth/enable", {})[0] == 200
    assert same("/v3/kv/range", {"key": b64("a/1")})[0] == 400  # user name is empty
    assert same("/v3/auth/authenticate", {"name": "alice", "password": "wrong"})[0] == 400
    login("alice", "alicepw")
    login("root", "rootpw")
    same("/v3/kv/put", {"key": b64("a/1"), "value": b64("v")}, "alice")
    same("/v3/kv/range", {"key": b64("a/1")}, "alice")
    assert same("/v3/kv/put", {"key": b64("b"), "value": b64("v")}, "alice")[0] == 403
    assert same("/v3/auth/user/list", {}, "alice")[0] == 403
    same("/v3/auth/user/list", {}, "root")
    same("/v3/auth/role/get", {"role": "ra"}, "root")
    same("/v3/auth/user/get", {"name": "alice"}, "alice")
    same("/v3/auth/disable", {}, "root")
