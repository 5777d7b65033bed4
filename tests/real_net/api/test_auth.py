"""etcd 3.4's authentication through the real `etcdctl`, against raftkv and a real etcd side by side.

One scripted session per test, run command by command on both servers (a fresh
etcd and a fresh raftkv over LocalBackend, as tests/real_net/api/test_etcdctl.py
does): every command must print the same stdout and stderr and exit the same.
The session covers etcdctl's `user` and `role` commands, `auth enable/disable`,
`--user name:password` for allowed and denied get/put/del/txn/watch, a wrong
password, `user passwd`, revoking a role or a permission, and the root rules.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .support import Pair, Target, etcdctl_stream

pytestmark = pytest.mark.timeout(240)

ROOT = ("--user", "root:rootpw")
ALICE = ("--user", "alice:alicepw")


def setup_root_and_alice(pair: Pair) -> None:
    """root, and alice with role ra: readwrite on prefix a/, read on r, write from w on."""
    assert "root user does not exist" in pair.same("auth", "enable")
    assert pair.same("user", "add", "root:rootpw") == "User root created\n\n[exit 0]"
    pair.same("user", "add", "alice:alicepw")
    pair.same("role", "add", "ra")
    pair.same("role", "grant-permission", "ra", "readwrite", "a/", "--prefix")
    pair.same("role", "grant-permission", "ra", "read", "r")
    pair.same("role", "grant-permission", "ra", "write", "w", "--from-key")
    pair.same("role", "grant-permission", "ra", "read", "m", "p")
    pair.same("user", "grant-role", "alice", "ra")
    pair.same("put", "r", "rv")
    # etcdctl's `auth enable` adds role root and grants it to user root when missing.
    assert pair.same("auth", "enable") == "Authentication Enabled\n\n[exit 0]"


def test_user_and_role_management_prints_what_etcd_prints(pair: Pair) -> None:
    setup_root_and_alice(pair)
    assert "user name is empty" in pair.same("user", "list")
    assert pair.same(*ROOT, "user", "list") == "alice\nroot\n\n[exit 0]"
    pair.same(*ROOT, "role", "list")
    assert "user name already exists" in pair.same(*ROOT, "user", "add", "alice:x")
    assert "role name already exists" in pair.same(*ROOT, "role", "add", "ra")
    assert "role name not found" in pair.same(*ROOT, "role", "grant-permission", "nothing", "read", "m")
    assert "role name not found" in pair.same(*ROOT, "role", "get", "nothing")
    assert "role name not found" in pair.same(*ROOT, "user", "grant-role", "alice", "nothing")
    assert "user name not found" in pair.same(*ROOT, "user", "grant-role", "nobody", "ra")
    assert "user name not found" in pair.same(*ROOT, "user", "get", "nobody")
    assert "[w, <open ended>" in pair.same(*ROOT, "role", "get", "ra")
    pair.same(*ROOT, "role", "get", "root")
    pair.same(*ROOT, "user", "get", "alice")
    pair.same(*ROOT, "user", "get", "alice", "--detail")
    pair.same(*ROOT, "user", "get", "root", "-w", "json", fuzz=((r'"raft_term":<term>', "T"),))
    # A user may read its own record and its own roles, nothing else.
    pair.same(*ALICE, "user", "get", "alice")
    pair.same(*ALICE, "role", "get", "ra")
    assert "permission denied" in pair.same(*ALICE, "role", "get", "root")
    assert "permission denied" in pair.same(*ALICE, "user", "list")
    assert "permission denied" in pair.same(*ALICE, "user", "add", "bob:x")
    assert "permission denied" in pair.same(*ALICE, "auth", "disable")
    # The root rules while auth is on.
    for cmd in (("user", "delete", "root"), ("role", "delete", "root"), ("user", "revoke-role", "root", "root")):
        assert "invalid auth management" in pair.same(*ROOT, *cmd)
    assert "role is not granted to the user" in pair.same(*ROOT, "user", "revoke-role", "alice", "nothing")
    assert "is revoked from role ra" in pair.same(*ROOT, "role", "revoke-permission", "ra", "r")
    assert "permission is not granted to the role" in pair.same(*ROOT, "role", "revoke-permission", "ra", "r")
    pair.same(*ROOT, "role", "revoke-permission", "ra", "a/", "--prefix")
    pair.same(*ROOT, "role", "revoke-permission", "ra", "w", "--from-key")
    pair.same(*ROOT, "role", "get", "ra")
    pair.same(*ROOT, "user", "revoke-role", "alice", "ra")
    pair.same(*ROOT, "user", "get", "alice")
    pair.same(*ROOT, "role", "delete", "ra")
    assert "role name not found" in pair.same(*ROOT, "role", "delete", "ra")
    pair.same(*ROOT, "user", "delete", "alice")
    assert "user name not found" in pair.same(*ROOT, "user", "delete", "alice")
    assert pair.same(*ROOT, "auth", "disable") == "Authentication Disabled\n\n[exit 0]"
    pair.same("auth", "disable")
    pair.same("user", "list")
    pair.same("role", "list")
    pair.same("user", "delete", "root")
    pair.same("role", "delete", "root")


def test_permissions_allow_and_deny_as_etcd_does(pair: Pair, tmp_path: Path) -> None:
    setup_root_and_alice(pair)
    assert pair.same(*ALICE, "put", "a/1", "v1") == "OK\n\n[exit 0]"
    pair.same(*ALICE, "get", "a/1")
    pair.same(*ALICE, "get", "a/", "--prefix", "-w", "json")
    pair.same(*ALICE, "get", "r")
    pair.same(*ALICE, "get", "m", "p")
    assert "permission denied" in pair.same(*ALICE, "get", "m", "q")
    assert "permission denied" in pair.same(*ALICE, "put", "r", "x")
    assert "permission denied" in pair.same(*ALICE, "get", "b")
    assert "permission denied" in pair.same(*ALICE, "get", "", "--prefix")
    assert "permission denied" in pair.same(*ALICE, "get", "a/", "--from-key")
    assert "permission denied" in pair.same(*ALICE, "del", "r")
    pair.same(*ALICE, "put", "wz", "1")
    assert "permission denied" in pair.same(*ALICE, "get", "wz")
    pair.same(*ALICE, "put", "a/2", "v2", "--prev-kv")
    pair.same(*ALICE, "del", "a/", "--prefix", "--prev-kv")
    # No token at all, a wrong password, an unknown user.
    assert "user name is empty" in pair.same("get", "a/1")
    assert "user name is empty" in pair.same("put", "a/1", "x")
    assert "authentication failed" in pair.same("--user", "alice:wrong", "get", "a/1")
    assert "authentication failed" in pair.same("--user", "nobody:x", "get", "a/1")
    pair.same("--user", "alice", "--password", "alicepw", "get", "r")
    # Txn: every compare and every op of both branches needs its permission.
    pair.same(*ALICE, "txn", "-i", stdin='value("r") = "rv"\n\nput a/t 1\n\nget r\n\n')
    assert "permission denied" in pair.same(*ALICE, "txn", "-i", stdin='value("b") = "1"\n\nput a/t 1\n\n\n')
    assert "permission denied" in pair.same(*ALICE, "txn", "-i", stdin="\nput a/t 2\n\nput b 1\n\n")
    # Compaction is not root's alone in etcd 3.4; defragment and member changes are.
    pair.same(*ALICE, "compaction", "2")
    assert "permission denied" in pair.same(*ALICE, "defrag")
    assert "permission denied" in pair.same(*ALICE, "endpoint", "hashkv")
    assert "permission denied" in pair.same(*ALICE, "member", "add", "x", "--peer-urls=http://127.0.0.1:1")
    pair.same(*ALICE, "member", "list")
    pair.same(*ROOT, "defrag")
    for t in pair.targets:
        t.vars["SNAP"] = str(tmp_path / f"{t.name}.db")
    assert "permission denied" in pair.same(*ALICE, "snapshot", "save", "{SNAP}")
    assert "Snapshot saved" in pair.targets[1].run(*ROOT, "snapshot", "save", "{SNAP}").stdout
    # A new password: the old one fails, the new one works.
    assert pair.same(*ROOT, "user", "passwd", "alice", "--interactive=false", stdin="newpw\n") == (
        "Password updated\n\n[exit 0]")
    assert "authentication failed" in pair.same(*ALICE, "get", "r")
    pair.same("--user", "alice:newpw", "get", "r")
    # A revoked role takes its permissions with it.
    pair.same(*ROOT, "user", "revoke-role", "alice", "ra")
    assert "permission denied" in pair.same("--user", "alice:newpw", "get", "r")
    pair.same(*ROOT, "auth", "disable")
    pair.same("get", "", "--prefix")


def watch_output(t: Target, *args: str, put: tuple[str, ...] = ()) -> tuple[str, str]:
    with etcdctl_stream(t.endpoint, *args) as proc:
        time.sleep(1.0)
        if put:
            assert t.run(*put).returncode == 0
            time.sleep(0.5)
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    return t.normalize(out), err


def test_a_watch_is_allowed_or_canceled_as_etcd_does(pair: Pair) -> None:
    setup_root_and_alice(pair)
    for args, put in (
        ((*ALICE, "watch", "b"), ()),
        (("watch", "a/x"), ()),
        ((*ALICE, "watch", "a/", "--prefix"), (*ALICE, "put", "a/w", "1")),
    ):
        outs = [watch_output(t, *args, put=put) for t in pair.targets]
        assert outs[1] == outs[0], f"etcdctl {' '.join(args)}"
    assert outs[0][0] == "PUT\na/w\n1\n"
