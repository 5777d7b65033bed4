"""etcdctl 3.4 against a 3-member raftkv TLS cluster prints what it prints against 3 etcd members.

One module-scoped pair of clusters (real processes on free ports, the same
certificates and cluster token): three ``raftkv serve`` members and three
``etcd`` members. Every command runs on both, aimed at the member in the same
role (a follower for writes, *another* follower for reads and watches, so
requests are forwarded and reads go through ReadIndex), and the outputs must
be equal once each side's own identifiers are replaced by placeholders:
member and cluster IDs by member name, URLs by member name, lease IDs by
label. Both clusters start at revision 1 and receive the same writes in the
same order, so revisions, versions and counts must agree exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from real_net.server import cluster_id_from, member_id_from

from ..api.support import Result, etcdctl_stream, read_lines
from .support import TOKEN, Cluster, etcd_cluster, member_ids, raftkv_cluster

pytestmark = pytest.mark.timeout(180)

Fuzz = tuple[tuple[str, str | Callable[[re.Match[str]], str]], ...]


class Side:
    """One cluster under test, and what in its output is its own."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.subs: dict[str, str] = {}
        self.vars: dict[str, str] = {}
        self.roles: dict[str, str] = {}

    def learn(self) -> None:
        ids = member_ids(self.cluster)
        status = json.loads(self.cluster.etcdctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]
        cluster_id = status["header"]["cluster_id"]
        self.subs.update({str(cluster_id): "<cluster>", format(cluster_id, "x"): "<cluster>"})
        for name, node in self.cluster.nodes.items():
            mid = ids[name]
            self.vars[f"ID_{name}"] = format(mid, "x")
            self.subs.update({str(mid): f"<id:{name}>", format(mid, "x"): f"<id:{name}>"})
            for url, label in ((node.client_url, "client"), (node.peer_url, "peer")):
                self.subs[url] = f"<{label}:{name}>"
                self.subs[url.split("://", 1)[1]] = f"<{label}:{name}>"
        lead = self.cluster.leader()
        followers = sorted(n for n in self.cluster.nodes if n != lead)
        self.roles = {"leader": lead, "follower": followers[0], "other": followers[1]}

    def learn_lease(self, label: str, lease_id_hex: str) -> None:
        self.vars[label] = lease_id_hex
        self.subs[lease_id_hex] = f"<{label}>"
        self.subs[str(int(lease_id_hex, 16))] = f"<{label}>"

    def run(self, *args: str, on: str = "follower", stdin: str | None = None) -> Result:
        names = tuple(self.cluster.nodes) if on == "all" else (self.roles[on],)
        return self.cluster.etcdctl(*(a.format(**self.vars) for a in args), on=names, stdin=stdin)

    def normalize(self, text: str) -> str:
        for old in sorted(self.subs, key=len, reverse=True):  # longest first: no cut IDs
            text = text.replace(old, self.subs[old])
        # Members are named by role, not by name: which member leads differs between the sides.
        for role, name in self.roles.items():
            text = text.replace(f":{name}>", f":{role}>")
            text = re.sub(rf"\b{name}\b", f"<{role}>", text)
        text = re.sub(r'"raft_term":\d+', '"raft_term":<term>', text)
        text = re.sub(r"took = [0-9.]+[µmn]?s", "took = <t>", text)
        return "\n".join(
            re.sub(r" +", " ", re.sub(r"-+", "-", line)) if line[:1] in ("+", "|") else line
            for line in text.split("\n")
        )


class Pair:
    def __init__(self, etcd: Side, raftkv: Side) -> None:
        self.etcd, self.raftkv = etcd, raftkv
        self.sides = (etcd, raftkv)

    def same(
        self, *args: str, on: str = "follower", stdin: str | None = None, fuzz: Fuzz = (), sort: bool = False
    ) -> str:
        """Run on both sides (on the member in role `on`), normalize, compare."""
        outs = []
        for side in self.sides:
            out = side.normalize(side.run(*args, on=on, stdin=stdin).text)
            for pattern, repl in fuzz:
                out = re.sub(pattern, repl, out)
            if sort:
                out = "\n".join(sorted(out.split("\n")))
            outs.append(out)
        assert outs[1] == outs[0], f"etcdctl {' '.join(args)} on {on}: raftkv (right) differs from etcd (left)"
        return outs[0]

    def grant(self, label: str, ttl: int) -> str:
        outs = []
        for side in self.sides:
            r = side.run("lease", "grant", str(ttl))
            m = re.fullmatch(r"lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n", r.stdout)
            assert m, r.text
            side.learn_lease(label, m.group(1))
            outs.append(side.normalize(r.text))
        assert outs[1] == outs[0]
        return outs[0]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root: Path = tmp_path_factory.mktemp("pair")
    with raftkv_cluster(root / "raftkv") as raftkv, etcd_cluster(root / "etcd", raftkv.paths) as etcd:
        p = Pair(Side(etcd), Side(raftkv))
        for side in p.sides:
            side.learn()
        yield p


def test_member_and_cluster_ids_are_derived_as_etcd_derives_them(pair: Pair) -> None:
    for side in pair.sides:
        ids = member_ids(side.cluster)
        for name, node in side.cluster.nodes.items():
            assert ids[name] == member_id_from([node.peer_url], TOKEN), (side.cluster.kind, name)
        status = side.cluster.status("n1")
        assert status.header.cluster_id == cluster_id_from(ids.values()), side.cluster.kind


def test_put_get_del_through_a_follower_print_what_etcd_prints(pair: Pair) -> None:
    assert pair.same("put", "foo", "bar") == "OK\n\n[exit 0]"
    pair.same("put", "foo", "baz", "--prev-kv")
    for k, v in (("fop", "1"), ("foz", "2"), ("zz", "3")):
        pair.same("put", k, v)
    # Read on the other follower: the write went through the leader, the read through ReadIndex.
    assert pair.same("get", "foo", on="other") == "foo\nbaz\n\n[exit 0]"
    pair.same("get", "fo", "--prefix", "-w", "json", on="other")
    pair.same("get", "fo", "--prefix", "--limit=2", "-w", "json", on="leader")
    pair.same("get", "fo", "--prefix", "--keys-only", "--sort-by=VALUE", "--order=DESCEND", on="other")
    pair.same("get", "fo", "--prefix", "--count-only", "-w", "json", on="other")
    pair.same("get", "foo", "--rev=2", "-w", "json", on="other")
    pair.same("get", "foo", "--consistency=s", on="leader")
    pair.same("get", "nothing", on="other")
    assert "etcdserver: requested lease not found" in pair.same("put", "k", "v", "--lease=1234")
    pair.same("del", "fo", "--prefix", "--prev-kv")
    pair.same("del", "zz", "-w", "json")
    pair.same("get", "", "--prefix", "-w", "json", on="other")


def test_txn_from_stdin_through_a_follower_prints_what_etcd_prints(pair: Pair) -> None:
    pair.same("put", "key1", "v1")
    swap = 'mod("key1") > "0"\n\nput key1 "overwrote"\nget key1\n\nput key1 "created"\n\n'
    assert pair.same("txn", stdin=swap).startswith("SUCCESS\n")
    miss = 'value("key1") = "v1"\n\nput key1 "never"\n\nput key2 "other"\ndel key1 --prev-kv\nget key1\n\n'
    assert pair.same("txn", "-w", "json", stdin=miss).startswith("{")
    pair.same("get", "key", "--prefix", "-w", "json", on="other")


def test_watch_on_another_member_prints_what_etcd_prints(pair: Pair) -> None:
    for v in ("1", "2", "3"):
        pair.same("put", "w", v)
    pair.same("del", "w")
    rev = json.loads(pair.raftkv.run("get", "w", "-w", "json").stdout)["header"]["revision"]
    outs = []
    for side in pair.sides:
        with etcdctl_stream(side.cluster.endpoints(side.roles["other"]), "watch", "w", f"--rev={rev - 3}",
                            "--prev-kv", tls=side.cluster.tls_args) as proc:  # fmt: skip
            outs.append(side.normalize("\n".join(read_lines(proc, 14))))
    assert outs[1] == outs[0]
    # Live: watch on the other follower, write through the first.
    procs: list[Any] = []
    with etcdctl_stream(pair.etcd.cluster.endpoints(pair.etcd.roles["other"]), "watch", "--prefix", "lw",
                        tls=pair.etcd.cluster.tls_args) as p1, \
            etcdctl_stream(pair.raftkv.cluster.endpoints(pair.raftkv.roles["other"]), "watch", "--prefix", "lw",
                           tls=pair.raftkv.cluster.tls_args) as p2:  # fmt: skip
        procs = [p1, p2]
        import time

        time.sleep(1.0)  # the watches are registered (etcdctl prints nothing until an event)
        pair.same("put", "lw/a", "1")
        pair.same("txn", stdin="\nput lw/b x\ndel lw/a\n\n\n")
        outs = [side.normalize("\n".join(read_lines(p, 8))) for side, p in zip(pair.sides, procs)]
    assert outs[1] == outs[0]
    assert outs[0] == "PUT\nlw/a\n1\nPUT\nlw/b\nx\nDELETE\nlw/a"


def test_leases_and_lock_and_elect_print_what_etcd_prints(pair: Pair) -> None:
    pair.grant("L1", 60)
    pair.same("put", "lk", "v", "--lease={L1}")
    pair.same("put", "lk2", "v", "--lease={L1}")
    assert pair.same("lease", "keep-alive", "--once", "{L1}", on="other") == (
        "lease <L1> keepalived with TTL(60)\n\n[exit 0]"
    )
    ttl = pair.same("lease", "timetolive", "{L1}", "--keys", on="other", fuzz=(
        (r"remaining\((5[89]|60)s\)", "remaining(60s)"),
        (r"keys\(\[([^]]*)\]\)", lambda m: "keys([" + " ".join(sorted(m.group(1).split())) + "])"),
    ))  # fmt: skip
    assert ttl.startswith("lease <L1> granted with TTL(60s), remaining(60s), attached keys([lk lk2])")
    assert pair.same("lease", "list", on="leader") == "found 1 leases\n<L1>\n\n[exit 0]"
    assert pair.same("lease", "revoke", "{L1}") == "lease <L1> revoked\n\n[exit 0]"
    assert pair.same("lease", "timetolive", "{L1}", on="other") == "lease <L1> already expired\n\n[exit 0]"
    pair.same("get", "lk", "--prefix", "-w", "json", on="other")
    pair.same("lease", "revoke", "abc123")
    assert pair.same("lock", "mylock", "echo", "hello") == "hello\n\n[exit 0]"
    outs = []
    for side in pair.sides:
        with etcdctl_stream(side.cluster.endpoints(side.roles["follower"]), "elect", "ballot", "p1",
                            tls=side.cluster.tls_args) as proc:  # fmt: skip
            outs.append(re.sub(r"ballot/[0-9a-f]+", "ballot/<lease>", "\n".join(read_lines(proc, 2))))
    assert outs[1] == outs[0] == "ballot/<lease>\np1"


def test_compaction_prints_what_etcd_prints(pair: Pair) -> None:
    rev = json.loads(pair.raftkv.run("get", "w", "-w", "json").stdout)["header"]["revision"]
    assert rev == json.loads(pair.etcd.run("get", "w", "-w", "json").stdout)["header"]["revision"]
    assert pair.same("compact", str(rev - 2)) == f"compacted revision {rev - 2}\n\n[exit 0]"
    assert "required revision has been compacted" in pair.same("get", "w", f"--rev={rev - 3}", on="other")
    assert "required revision has been compacted" in pair.same("compact", str(rev - 3))


def test_member_list_and_endpoint_commands_print_what_etcd_prints(pair: Pair) -> None:
    listed = pair.same("member", "list", on="other", sort=True)
    assert "<id:leader>, started, " in listed
    outs = []
    for side in pair.sides:
        body = json.loads(side.run("member", "list", "-w", "json", on="other").stdout)
        body["header"]["raft_term"] = 0
        members = sorted(side.normalize(json.dumps(m, sort_keys=True)) for m in body.pop("members"))
        outs.append((side.normalize(json.dumps(body, sort_keys=True)), members))
    assert outs[1] == outs[0]
    health = pair.same("endpoint", "health", on="all", sort=True)
    assert health.count("is healthy: successfully committed proposal") == 3
    pair.same("alarm", "list", on="leader")
    statuses = []
    for side in pair.sides:
        rows = json.loads(side.run("endpoint", "status", "--write-out=json", on="all").stdout)
        leaders = {r["Status"]["leader"] for r in rows}
        assert len(leaders) == 1, (side.cluster.kind, rows)
        assert sum(r["Status"]["header"]["member_id"] == r["Status"]["leader"] for r in rows) == 1
        shape = []
        for r in rows:
            s = r["Status"]
            volatile = ("version", "dbSize", "dbSizeInUse", "raftIndex", "raftTerm", "raftAppliedIndex")
            shape.append(side.normalize(json.dumps({
                "Endpoint": r["Endpoint"],
                "header": {**s["header"], "raft_term": 0},
                "leader": s["leader"],
                **{k: v for k, v in s.items() if k not in volatile and k not in ("header", "leader")},
            }, sort_keys=True)))  # fmt: skip
        statuses.append(sorted(shape))
    assert statuses[1] == statuses[0]


def test_move_leader_and_back_and_defrag_print_what_etcd_prints(pair: Pair) -> None:
    # Leadership goes to the follower and comes back, so the roles other tests use hold.
    for side in pair.sides:
        side.vars["TO_FOLLOWER"] = side.vars[f"ID_{side.roles['follower']}"]
        side.vars["TO_LEADER"] = side.vars[f"ID_{side.roles['leader']}"]
    moved = pair.same("move-leader", "{TO_FOLLOWER}", on="leader")
    assert "Leadership transferred from <id:leader> to <id:follower>" in moved
    back = pair.same("move-leader", "{TO_LEADER}", on="follower")
    assert "Leadership transferred from <id:follower> to <id:leader>" in back
    refused = pair.same("move-leader", "{TO_FOLLOWER}", on="other")
    assert "no leader endpoint given" in refused
    defrag = pair.same("defrag", on="all", sort=True)
    assert defrag.count("Finished defragmenting etcd member[") == 3
