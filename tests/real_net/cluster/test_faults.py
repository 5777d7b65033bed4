"""Linearizable under crashes and pauses: clients against a 3-member raftkv cluster while a nemesis strikes.

The scenario (about 20 s of faults):

* clients (asyncio, real_net's generated stubs over TLS) run get, put and cas
  (an etcd Txn: compare the value, or absence, then put) with unique values on
  three keys, each through one member and moving to another after an error;
* a nemesis thread, one fault at a time: SIGKILL a member and restart it from
  its command line, SIGSTOP a member and SIGCONT it, or SIGKILL whoever leads
  (found through Maintenance Status) and restart it;
* then every member is healed, the clients run on a moment and read each key.

The history is written in ``sim.history``'s format (an error of unknown
outcome is ``info`` and the client continues under a fresh id, an error that
proves the request never entered the log is ``fail``) and judged by
``sim.check.check``: it must be linearizable, which also means no acknowledged
write is lost. At the end every member must report the same HashKV.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from real_net.client import Stubs, aio_channel
from real_net.proto import rpc_pb2 as pb
from sim.check import Verdict, check, render_text
from sim.history import Operation, Status, make_operation, write_history

from .support import Cluster, raftkv_cluster

pytestmark = pytest.mark.timeout(240)

SEED = 20240917
CHAOS_SECONDS = 20.0
QUIET_SECONDS = 2.0
CLIENTS = 6
KEYS = ("a", "b", "c")
OP_TIMEOUT = 1.5
# Faster failover than etcd's defaults, so many faults fit in the run.
RAFT_FLAGS = ("--election-timeout", "400", "--heartbeat-interval", "50")
# Reconnect quickly to a member that was restarted (gRPC's default backoff grows to 120 s).
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
# gRPC details that prove a write never entered the log: the member refused it before
# proposing, or the client never reached a member.
DEFINITE_FAILURES = (
    "etcdserver: no leader",
    "etcdserver: leader changed",
    "etcdserver: too many requests",
    "failed to connect to all addresses",
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with raftkv_cluster(tmp_path, extra=RAFT_FLAGS) as c:
        yield c


class Recorder:
    """The history, as sim.history Operations (indexed in call order at the end)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows: list[dict[str, Any]] = []
        self.client_ids = itertools.count(1)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def operations(self) -> list[Operation]:
        ordered = sorted(self.rows, key=lambda r: r["call"])
        return [make_operation(i, **r) for i, r in enumerate(ordered)]


async def client(
    rec: Recorder, channels: dict[str, aio.Channel], rng: random.Random, until: float, final: bool = False
) -> None:
    cid = next(rec.client_ids)
    names = sorted(channels)
    member = rng.choice(names)
    seen: dict[str, str | None] = {}
    n = 0
    keys = list(KEYS) if final else []
    while (final and keys) or (not final and rec.now() < until):
        kv = Stubs(channels[member]).kv
        key = keys.pop() if final else rng.choice(KEYS)
        roll = rng.random()
        op = "get" if final or roll < 0.4 else ("put" if roll < 0.7 else "cas")
        n += 1
        value: Any = None
        call = rec.now()
        try:
            if op == "get":
                resp = await kv.Range(pb.RangeRequest(key=key.encode()), timeout=OP_TIMEOUT)
                output: Any = resp.kvs[0].value.decode() if resp.kvs else None
                seen[key] = output
            elif op == "put":
                value = f"{cid}-{n}"
                await kv.Put(pb.PutRequest(key=key.encode(), value=value.encode()), timeout=OP_TIMEOUT)
                output = None
                seen[key] = value
            else:
                expect, new = seen.get(key), f"{cid}-{n}"
                value = {"expect": expect, "new": new}
                if expect is None:
                    cmp = pb.Compare(key=key.encode(), target=pb.Compare.CREATE, result=pb.Compare.EQUAL,
                                     create_revision=0)  # fmt: skip
                else:
                    cmp = pb.Compare(key=key.encode(), target=pb.Compare.VALUE, result=pb.Compare.EQUAL,
                                     value=expect.encode())  # fmt: skip
                put = pb.RequestOp(request_put=pb.PutRequest(key=key.encode(), value=new.encode()))
                txn = await kv.Txn(pb.TxnRequest(compare=[cmp], success=[put]), timeout=OP_TIMEOUT)
                output = bool(txn.succeeded)
                if output:
                    seen[key] = new
        except grpc.RpcError as e:
            details = e.details() or ""
            definite = op == "get" or any(details.startswith(d) for d in DEFINITE_FAILURES)
            if definite:
                rec.add(client=cid, op=op, key=key, value=value, output=None, call=call, return_=rec.now(),
                        status=Status.FAIL)  # fmt: skip
            else:  # it may yet take effect: Jepsen's rule is a fresh client from here on
                rec.add(client=cid, op=op, key=key, value=value, output=None, call=call, return_=None,
                        status=Status.INFO)  # fmt: skip
                cid = next(rec.client_ids)
            member = rng.choice(names)
            if final:
                keys.append(key)
            await asyncio.sleep(0.05)
            continue
        rec.add(client=cid, op=op, key=key, value=value, output=output, call=call, return_=rec.now(),
                status=Status.OK)  # fmt: skip


def nemesis(c: Cluster, rng: random.Random, stop: threading.Event, log: list[str]) -> None:
    """One fault at a time, each healed before the next."""
    t0 = time.monotonic()
    while not stop.wait(rng.uniform(0.3, 0.8)):
        kind = rng.choice(("kill", "pause", "kill-leader", "kill-leader"))
        if kind == "kill-leader":
            name = current_leader(c) or rng.choice(list(c.nodes))
        else:
            name = rng.choice(list(c.nodes))
        node = c.nodes[name]
        down = rng.uniform(0.5, 1.5)
        log.append(f"{time.monotonic() - t0:6.2f}s {kind} {name} for {down:.2f}s")
        if kind == "pause":
            node.signal(signal.SIGSTOP)
            stop.wait(down)
            node.signal(signal.SIGCONT)
        else:
            node.kill()
            stop.wait(down)
            node.start()


def current_leader(c: Cluster) -> str | None:
    for name, node in c.nodes.items():
        if not node.running:
            continue
        try:
            st = c.status(name, timeout=0.5)
        except grpc.RpcError:
            continue
        if st.leader == st.header.member_id:
            return name
    return None


async def hashes(c: Cluster, channels: dict[str, aio.Channel]) -> dict[str, tuple[int, int]]:
    """Each member's (HashKV hash, revision) once all have applied the same log."""
    deadline = time.monotonic() + 30
    while True:
        statuses = {}
        for name, ch in channels.items():
            try:
                statuses[name] = await Stubs(ch).maintenance.Status(pb.StatusRequest(), timeout=2)
            except grpc.RpcError:
                pass
        applied = {(s.header.revision, s.raftAppliedIndex) for s in statuses.values()}
        if len(statuses) == len(channels) and len(applied) == 1:
            break
        assert time.monotonic() < deadline, f"members did not converge: {statuses}"
        await asyncio.sleep(0.2)
    out = {}
    for name, ch in channels.items():
        resp = await Stubs(ch).maintenance.HashKV(pb.HashKVRequest(revision=0), timeout=5)
        out[name] = (resp.hash, resp.header.revision)
    return out


def test_history_under_kills_pauses_and_leader_kills_is_linearizable_and_members_converge(
    cluster: Cluster, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    rec = Recorder()
    faults: list[str] = []
    stop = threading.Event()
    chaos = threading.Thread(target=nemesis, args=(cluster, random.Random(rng.random()), stop, faults), daemon=True)

    async def run() -> dict[str, tuple[int, int]]:
        channels = {n: aio_channel(node.client_url, cluster.tls, CHANNEL_OPTIONS) for n, node in cluster.nodes.items()}
        try:
            chaos.start()
            clients = [client(rec, channels, random.Random(rng.random()), CHAOS_SECONDS + QUIET_SECONDS)
                       for _ in range(CLIENTS)]  # fmt: skip
            done = asyncio.gather(*clients)
            await asyncio.sleep(CHAOS_SECONDS)
            stop.set()
            await asyncio.to_thread(chaos.join, 10)
            for node in cluster.nodes.values():  # heal: anything the nemesis left down
                if not node.running:
                    node.start()
            await done
            await asyncio.to_thread(cluster.wait_ready)
            await client(rec, channels, random.Random(1), 0, final=True)
            return await hashes(cluster, channels)
        finally:
            for ch in channels.values():
                await ch.close()

    try:
        member_hashes = asyncio.run(run())
    finally:
        stop.set()
    ops = rec.operations()
    path = tmp_path / "history.jsonl"
    write_history(ops, path)
    counts = {s: sum(op.status is s for op in ops) for s in Status}
    summary = f"{len(ops)} ops {counts}; faults:\n" + "\n".join(faults)
    assert len(faults) >= 8, summary
    assert counts[Status.OK] > 200, summary
    result = check(ops, timeout=60)
    assert result.verdict is Verdict.OK, f"{render_text(result)}\nhistory: {path}\n{summary}"
    print(f"{summary}\nchecked in {result.seconds:.2f} s; hashes {member_hashes}")  # shown with pytest -s
    assert len(set(member_hashes.values())) == 1, f"members disagree: {member_hashes}"
    for node in cluster.nodes.values():
        assert "Traceback" not in node.log.read_text(errors="replace"), f"{node.name}: {node.tail()}"
