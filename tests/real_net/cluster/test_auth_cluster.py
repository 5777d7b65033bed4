"""Auth across a 3-member raftkv TLS cluster (real processes): users, roles and permissions
are replicated state, so a user created through one member authenticates on every
other, and its permissions hold on every member; a restarted member still has them.
Every process is killed on exit (raftkv_cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import raftkv_cluster

pytestmark = pytest.mark.timeout(180)

ALICE = ("--user", "alice:alicepw")
ROOT = ("--user", "root:rootpw")


def test_a_user_made_on_one_member_authenticates_on_every_member_with_the_same_rights(tmp_path: Path) -> None:
    with raftkv_cluster(tmp_path) as c:
        one = ("n1",)
        for cmd in (
            ("user", "add", "root:rootpw"),
            ("user", "add", "alice:alicepw"),
            ("role", "add", "ra"),
            ("role", "grant-permission", "ra", "readwrite", "a/", "--prefix"),
            ("user", "grant-role", "alice", "ra"),
            ("auth", "enable"),
        ):
            r = c.etcdctl(*cmd, on=one)
            assert r.returncode == 0, r.text
        for name in ("n1", "n2", "n3"):
            on = (name,)
            r = c.etcdctl(*ALICE, "put", f"a/{name}", name, on=on)
            assert r.stdout == "OK\n", r.text
            r = c.etcdctl(*ALICE, "get", "a/", "--prefix", "--keys-only", on=on)
            assert r.returncode == 0 and f"a/{name}" in r.stdout, r.text
            r = c.etcdctl(*ALICE, "put", "b", "x", on=on)
            assert (r.returncode, r.stderr) == (1, "Error: etcdserver: permission denied\n"), r.text
            r = c.etcdctl(*ALICE, "get", "b", on=on)
            assert r.stderr == "Error: etcdserver: permission denied\n", r.text
            r = c.etcdctl("get", "a/n1", on=on)
            assert r.stderr == "Error: etcdserver: user name is empty\n", r.text
            r = c.etcdctl("--user", "alice:wrong", "get", "a/n1", on=on)
            assert "authentication failed, invalid user ID or password" in r.stderr, r.text
            r = c.etcdctl(*ALICE, "user", "list", on=on)
            assert r.stderr == "Error: etcdserver: permission denied\n", r.text
        # A password changed through one member is the password on every member.
        r = c.etcdctl(*ROOT, "user", "passwd", "alice", "--interactive=false", on=("n3",), stdin="newpw\n")
        assert r.stdout == "Password updated\n", r.text
        for name in ("n1", "n2", "n3"):
            assert c.etcdctl(*ALICE, "get", "a/n1", on=(name,)).returncode != 0
            r = c.etcdctl("--user", "alice:newpw", "get", "a/n1", "--print-value-only", on=(name,))
            assert r.stdout == "n1\n", r.text
        # A restarted member keeps the auth store (WAL replay or snapshot).
        c.nodes["n2"].terminate()
        c.nodes["n2"].start()
        c.wait_ready(["n2"])
        r = c.etcdctl("--user", "alice:newpw", "get", "a/n2", "--print-value-only", on=("n2",))
        assert r.stdout == "n2\n", r.text
        r = c.etcdctl(*ROOT, "user", "list", on=("n2",))
        assert r.stdout == "alice\nroot\n", r.text
