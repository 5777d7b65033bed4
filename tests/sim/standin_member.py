"""A stand-in for kv.member.Member while the real one is being written: RaftNode + a dict.

Same interface as kv.member.Member (tick, step, submit, deadline, ready,
advance, node, hash_kv, applied_index, revision), same request routing for
what the register workload sends (linearizable reads through ReadIndex,
writes through the log), and the ``stale-read`` teaching bug. It exists so
the simulator's own tests can run today; the simulator itself only knows
kv.member. Delete it once kv.member imports.
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from typing import Any

from kv import api
from kv.bugs import TeachingBug
from kv.errors import ProposalDropped, RaftKVError
from kv.raft.config import RaftConfig
from kv.raft.messages import NONE, EntryType, Message, Role
from kv.raft.node import RaftNode, Ready
from kv.raft.storage import MemoryStorage
from sim.options import RunOptions


class ErrNoLeader(RaftKVError):
    message = "etcdserver: no leader"


@dataclass(frozen=True, slots=True)
class StandInReady:
    raft: Ready | None
    snapshot: None
    responses: tuple[tuple[Any, Any], ...]
    watch_responses: tuple[tuple[Any, Any], ...]


class StandInMember:
    def __init__(self, raft: RaftConfig, storage: MemoryStorage, rng: random.Random, now: float,
                 initial: tuple[int, ...], bugs: frozenset[TeachingBug]) -> None:
        self.node = RaftNode(raft, storage, rng, initial_voters=initial, now=now)
        self.bugs = bugs
        self.incarnation = rng.getrandbits(40)
        self.seq = 0
        self.kv: dict[str, str] = {}
        self.rev = 1
        self.seen: set[tuple[int, int]] = set()
        self.pending: dict[int, Any] = {}
        self.reads: dict[bytes, list[tuple[Any, Any]]] = {}
        self.ready_reads: list[tuple[int, list[tuple[Any, Any]]]] = []
        self.responses: list[tuple[Any, Any]] = []

    def tick(self, now: float) -> None:
        self.node.tick(now)

    def step(self, m: Message) -> None:
        self.node.step(m)

    def deadline(self) -> float:
        return self.node.deadline()

    @property
    def applied_index(self) -> int:
        return self.node.log.applied

    @property
    def revision(self) -> int:
        return self.rev

    def hash_kv(self) -> tuple[int, int]:
        return zlib.crc32(json.dumps(sorted(self.kv.items())).encode()), self.rev

    def _read(self, req: api.RangeRequest) -> api.RangeResponse:
        v = self.kv.get(req.key.decode())
        kvs = () if v is None else (api.KeyValue(key=req.key, value=v.encode()),)
        return api.RangeResponse(kvs=kvs, count=len(kvs))

    def submit(self, token: Any, req: Any, now: float) -> None:
        if isinstance(req, api.RangeRequest):
            if TeachingBug.STALE_READ in self.bugs:
                self.responses.append((token, self._read(req)))
                return
            if self.node.lead == NONE:
                self.responses.append((token, ErrNoLeader()))
                return
            self.seq += 1
            ctx = f"{self.incarnation}/{self.seq}".encode()
            try:
                self.node.read_index(ctx)
            except ProposalDropped:
                self.responses.append((token, ErrNoLeader()))
                return
            self.reads[ctx] = [(token, req)]
            return
        self.seq += 1
        if isinstance(req, api.PutRequest):
            op = {"op": "put", "k": req.key.decode(), "v": req.value.decode()}
        elif isinstance(req, api.DeleteRangeRequest):
            op = {"op": "del", "k": req.key.decode()}
        else:
            c = req.compare[0]
            put = req.success[0].request_put
            expect = None if c.target == api.CompareTarget.VERSION else c.value.decode()
            op = {"op": "cas", "k": c.key.decode(), "e": expect, "v": put.value.decode()}
        data = json.dumps({"i": self.incarnation, "s": self.seq, **op}).encode()
        try:
            self.node.propose(data)
        except ProposalDropped:
            self.responses.append((token, ErrNoLeader()))
            return
        self.pending[self.seq] = token

    def _apply(self, data: bytes) -> None:
        p = json.loads(data)
        if (p["i"], p["s"]) in self.seen:
            return
        self.seen.add((p["i"], p["s"]))
        k = p["k"]
        out: Any
        if p["op"] == "put":
            self.kv[k] = p["v"]
            self.rev += 1
            out = api.PutResponse()
        elif p["op"] == "del":
            n = int(self.kv.pop(k, None) is not None)
            self.rev += n
            out = api.DeleteRangeResponse(deleted=n)
        else:
            ok = self.kv.get(k) == p["e"]
            if ok:
                self.kv[k] = p["v"]
                self.rev += 1
            out = api.TxnResponse(succeeded=ok)
        if p["i"] == self.incarnation and p["s"] in self.pending:
            self.responses.append((self.pending.pop(p["s"]), out))

    def ready(self) -> StandInReady | None:
        rd = self.node.ready()
        if rd is not None:
            for e in rd.committed_entries:
                if e.type == EntryType.NORMAL and e.data:
                    self._apply(e.data)
            for rs in rd.read_states:
                waiting = self.reads.pop(rs.request_ctx, None)
                if waiting:
                    self.ready_reads.append((rs.index, waiting))
            if self.node.role != Role.LEADER and self.node.lead == NONE:
                for ctx in list(self.reads):  # no leader to answer: those reads never will
                    for token, _ in self.reads.pop(ctx):
                        self.responses.append((token, ErrNoLeader()))
        applied = self.node.log.applied if rd is None else max(self.node.log.applied,
                                                                rd.committed_entries[-1].index if rd.committed_entries else 0)
        keep = []
        for index, waiting in self.ready_reads:
            if index <= applied:
                self.responses += [(t, self._read(r)) for t, r in waiting]
            else:
                keep.append((index, waiting))
        self.ready_reads = keep
        if rd is None and not self.responses:
            return None
        out = StandInReady(rd, None, tuple(self.responses), ())
        self.responses = []
        return out

    def advance(self, rd: StandInReady) -> None:
        if rd.raft is not None:
            self.node.advance(rd.raft)


def standin_factory(options: RunOptions, slot: int, raft: RaftConfig, storage: MemoryStorage, rng: random.Random,
                    now: float, initial: tuple[int, ...]) -> StandInMember:
    bugs = frozenset(TeachingBug(b) for b in options.bugs)
    from dataclasses import replace

    return StandInMember(replace(raft, bugs=bugs), storage, rng, now, initial, bugs)
