"""The real `etcdctl` 3.4 against raftkv prints what it prints against a real etcd.

Each scenario starts a fresh etcd (Debian's etcd-server, one member, in a temp
dir on free ports) and a fresh raftkv gRPC server over LocalBackend, runs the
same etcdctl commands against both, and compares stdout, stderr (without
clientv3's timestamped retry logs) and the exit status. Both stores start at
revision 1, so revisions, versions and counts must agree exactly. What must
differ is replaced by a placeholder first: member and cluster IDs, lease IDs,
ports, the raft term (etcd has held an election; LocalBackend has no Raft and
says term 1), and in `endpoint status` the version, database size and raft
index.

The binaries are required: if they are missing the tests fail and say how to
install them.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from .support import Pair, ServerThread, etcdctl, etcdctl_stream, read_lines

pytestmark = pytest.mark.timeout(120)


def test_put_get_and_delete_print_what_etcd_prints(pair: Pair) -> None:
    assert pair.same("put", "foo", "bar") == "OK\n\n[exit 0]"
    pair.same("put", "foo", "baz", "--prev-kv")
    for k, v in (("fop", "1"), ("foz", "2"), ("zz", "3")):
        pair.same("put", k, v)
    assert pair.same("get", "foo") == "foo\nbaz\n\n[exit 0]"
    pair.same("get", "fo", "--prefix")
    pair.same("get", "fo", "--prefix", "--limit=2", "-w", "json")
    pair.same("get", "fo", "--prefix", "--keys-only")
    pair.same("get", "fo", "--prefix", "--print-value-only")
    pair.same("get", "fo", "--prefix", "--sort-by=VALUE", "--order=DESCEND")
    pair.same("get", "fo", "--prefix", "--sort-by=MODIFY", "--order=ASCEND", "-w", "json")
    pair.same("get", "foo", "--rev=2", "-w", "json")
    pair.same("get", "foo", "-w", "fields")
    pair.same("get", "", "--from-key", "--keys-only")
    pair.same("get", "foo", "zz")  # [foo, zz)
    pair.same("get", "nothing")
    pair.same("get", "foo", "--hex")
    pair.same("del", "fo", "--prefix", "--prev-kv")
    pair.same("del", "fo", "--prefix")
    pair.same("del", "zz", "-w", "json")
    pair.same("get", "", "--prefix", "-w", "json")


def test_errors_print_what_etcd_prints(pair: Pair) -> None:
    pair.same("put", "k", "v")
    assert "etcdserver: key is not provided" in pair.same("put", "", "v")
    assert "etcdserver: key not found" in pair.same("put", "absent", "--ignore-value")
    assert "etcdserver: mvcc: required revision is a future revision" in pair.same("get", "k", "--rev=100")
    assert "etcdserver: requested lease not found" in pair.same("put", "k", "v", "--lease=1234")
    pair.same("get", "k", "--sort-by=NOPE")  # etcdctl refuses it before sending


def test_txn_from_stdin_prints_what_etcd_prints(pair: Pair) -> None:
    pair.same("put", "key1", "v1")
    swap = 'mod("key1") > "0"\n\nput key1 "overwrote"\nget key1\n\nput key1 "created"\n\n'
    assert pair.same("txn", stdin=swap).startswith("SUCCESS\n")
    miss = 'value("key1") = "v1"\n\nput key1 "never"\n\nput key2 "other"\ndel key1 --prev-kv\nget key1\n\n'
    assert pair.same("txn", stdin=miss).startswith("FAILURE\n")
    both = 'version("key2") = "1"\ncreate("key1") = "0"\n\nput key3 "x"\n\n\n'
    pair.same("txn", "-w", "json", stdin=both)
    pair.same("txn", "-w", "fields", stdin='value("key3") != "y"\n\nget key3\ndel key3\n\n\n')
    assert "duplicate key" in pair.same("txn", stdin="\nput a 1\nput a 2\n\n\n")


def test_compaction_and_watch_history_print_what_etcd_prints(pair: Pair) -> None:
    for v in ("1", "2", "3"):
        pair.same("put", "w", v)
    pair.same("del", "w")
    # Watching from a past revision replays history: deterministic on both sides.
    for args, lines in ((("watch", "w", "--rev=2"), 12), (("watch", "w", "--rev=3", "--prev-kv"), 15)):
        outs = []
        for t in pair.targets:
            with etcdctl_stream(t.endpoint, *args) as proc:
                outs.append(t.normalize("\n".join(read_lines(proc, lines))))
        assert outs[1] == outs[0], args
    assert pair.same("compact", "4") == "compacted revision 4\n\n[exit 0]"
    assert "required revision has been compacted" in pair.same("get", "w", "--rev=3")
    assert "required revision has been compacted" in pair.same("compact", "3")
    # A watch from before the compaction is canceled with the reason (etcdctl exits).
    pair.same("watch", "w", "--rev=2")


def test_live_watch_prints_what_etcd_prints(pair: Pair) -> None:
    pair.same("put", "pre", "0")  # both now at revision 2
    procs: list[Any] = []
    with etcdctl_stream(pair.etcd.endpoint, "watch", "--prefix", "lw", "--rev=3", "--prev-kv") as p1, \
            etcdctl_stream(pair.raftkv.endpoint, "watch", "--prefix", "lw", "--rev=3", "--prev-kv") as p2:
        # --rev=3 is "from now": the events below arrive whenever the watch is registered.
        procs = [p1, p2]
        pair.same("put", "lw/a", "1")
        pair.same("put", "lw/a", "2")
        pair.same("txn", stdin='\nput lw/b x\ndel lw/a\n\n\n')
        outs = [t.normalize("\n".join(read_lines(p, 16))) for t, p in zip(pair.targets, procs)]
    assert outs[1] == outs[0]
    assert outs[0].startswith("PUT\nlw/a\n1\nPUT\nlw/a\n1\nlw/a\n2\n")


def test_leases_print_what_etcd_prints(pair: Pair) -> None:
    pair.grant("L1", 60)
    pair.same("put", "lk", "v", "--lease={L1}")
    pair.same("put", "lk2", "v", "--lease={L1}")
    assert pair.same("lease", "keep-alive", "--once", "{L1}") == "lease <L1> keepalived with TTL(60)\n\n[exit 0]"
    # Remaining seconds are truncated, so 59 or 60 depending on how long the commands took;
    # etcd lists a lease's keys in Go map order (random), raftkv in key order.
    ttl = pair.same("lease", "timetolive", "{L1}", "--keys", fuzz=(
        (r"remaining\((59|60)s\)", "remaining(60s)"),
        (r"keys\(\[([^]]*)\]\)", lambda m: "keys([" + " ".join(sorted(m.group(1).split())) + "])"),
    ))  # fmt: skip
    assert ttl.startswith("lease <L1> granted with TTL(60s), remaining(60s), attached keys([lk lk2])")
    pair.same("lease", "timetolive", "{L1}", "-w", "json", fuzz=((r'"ttl":(59|60),', '"ttl":60,'),))
    assert pair.same("lease", "list") == "found 1 leases\n<L1>\n\n[exit 0]"
    assert pair.same("lease", "revoke", "{L1}") == "lease <L1> revoked\n\n[exit 0]"
    assert pair.same("lease", "timetolive", "{L1}") == "lease <L1> already expired\n\n[exit 0]"
    pair.same("get", "lk", "--prefix", "-w", "json")
    # etcd's minimum TTL with its default election timeout is 2 s.
    assert pair.grant("L2", 1) == "lease <L2> granted with TTL(2s)\n\n[exit 0]"
    pair.same("lease", "keep-alive", "--once", "abc123")
    pair.same("lease", "revoke", "abc123")
    pair.same("lease", "timetolive", "abc123")
    # `lock` runs on leases, keep-alive streams, txns and watches (clientv3 concurrency).
    assert pair.same("lock", "mylock", "echo", "hello") == "hello\n\n[exit 0]"


def test_member_list_and_endpoint_commands_print_what_etcd_prints(pair: Pair) -> None:
    listed = pair.same("member", "list")
    assert listed == "<member>, started, default, http://<peer>, http://<client>, false\n\n[exit 0]"
    pair.same("member", "list", "-w", "json")
    pair.same("member", "list", "-w", "table")
    assert "member not found" in pair.same("member", "remove", "1234")
    assert "can only promote a learner member" in pair.same("member", "promote", "{MEMBER}")
    assert "URL scheme must be http" in pair.same("member", "add", "x", "--peer-urls=garbage")  # etcdctl's own check
    assert "Peer URLs already exists" in pair.same("member", "add", "x", "--peer-urls={PEER}")
    assert "is healthy: successfully committed proposal" in pair.same("endpoint", "health")
    pair.same("alarm", "list")
    pair.same("put", "k", "v")
    # Status: same shape; version, db size and raft index are each server's own.
    rows = [t.normalize(t.run("endpoint", "status").text).split(", ") for t in pair.targets]
    for row in rows:
        assert len(row) == 10, row
    # Without the version, db size, raft term, raft index and applied index columns:
    kept = [[f for i, f in enumerate(row) if i not in (2, 3, 6, 7, 8)] for row in rows]
    assert kept[1] == kept[0] == ["<client>", "<member>", "true", "false", "\n\n[exit 0]"]
    statuses = [json.loads(t.run("endpoint", "status", "-w", "json").stdout)[0]["Status"] for t in pair.targets]
    for s in statuses:
        assert s["leader"] == s["header"]["member_id"] and s["raftIndex"] == s["raftAppliedIndex"]
        assert s["header"]["revision"] == 2
    assert set(statuses[1]) == set(statuses[0])
    hashes = [t.normalize(t.run("endpoint", "hashkv").text) for t in pair.targets]
    assert all(re.fullmatch(r"<client>, \d+\n\n\[exit 0\]", h) for h in hashes), hashes


def test_etcdctl_over_tls_with_client_certificates(tmp_path: Any) -> None:
    from real_net.certs import ensure_certs
    from real_net.grpc_server import ServerTLS

    certs = ensure_certs(tmp_path, ["n1"])
    tls = ServerTLS(certs.member("n1").cert, certs.member("n1").key, certs.ca, client_cert_auth=True)
    with ServerThread(tls=tls) as s:
        with_cert = ("--cacert", str(certs.ca), "--cert", str(certs.client.cert), "--key", str(certs.client.key))
        assert etcdctl(s.endpoint, "put", "tls", "on", tls=with_cert).text == "OK\n\n[exit 0]"
        assert etcdctl(s.endpoint, "get", "tls", tls=with_cert).text == "tls\non\n\n[exit 0]"
        # --client-cert-auth: a client without a certificate signed by the CA gets nowhere.
        refused = etcdctl(s.endpoint, "--command-timeout=2s", "get", "tls", tls=("--cacert", str(certs.ca)))
        assert refused.returncode != 0 and "tls\non" not in refused.stdout
