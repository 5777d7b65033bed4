"""``raftkv snapshot restore``: a new raftkv member's data dir from an etcd (or raftkv) snapshot.

Why: a user with a real etcd takes ``etcdctl snapshot save etcd.db`` and wants
that data in raftkv. This is etcdctl 3.4's ``snapshot restore`` for raftkv's
data dir, with its flags and rules (clientv3/snapshot/v3_snapshot.go):

* The file's sha256 trailer is checked (``real_net.snapshot_file``); a file
  without one needs ``--skip-hash-check``.
* The *replicated* state is kept: every version in the ``key`` bucket (create
  and mod revisions, versions, leases, tombstones), the compaction point and
  the leases with their TTLs (``real_net.etcd_db.from_buckets``); each key is
  attached to its lease, as etcd's restore attaches them.
* The membership is *new*: the old members are dropped, and the members of
  ``--initial-cluster`` get the IDs a founding raftkv (or etcd) member derives
  from its peer URL and ``--initial-cluster-token`` (``real_net.server``), so
  every member restored with the same flags agrees on them.
* As etcd does, the Raft log starts at a snapshot at index N (the number of
  members), term 1, whose configuration is every member as a voter; the hard
  state commits it. The snapshot's data is the state machine's own snapshot
  (``kv.applier.StateMachine.snapshot``), built by restoring the store from the
  file's contents and granting its leases, so its format stays kv's. The
  member's identity is written beside it, so ``raftkv serve`` starts from it
  as from any restart. Lease deadlines start again when a leader is elected
  (as in etcd, no lease expires during a restore).
* A data dir that exists is refused (etcd: ``data-dir "D" exists``). The new
  one is written under a temporary name and renamed into place, so a failed
  restore leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from kv import api, mvcc
from kv.applier import StateMachine
from kv.errors import ConfigError, CorruptRecord
from kv.raft.messages import ConfState, HardState, Snapshot, SnapshotMetadata
from real_net.disk_storage import DiskStorage
from real_net.etcd_db import BackendState
from real_net.server import IDENTITY_FILE, Identity, founding_identity_of, parse_initial_cluster
from real_net.snapshot_file import SnapshotFile

# etcdctl's defaults (etcdctl/ctlv3/command/snapshot_command.go).
DEFAULT_NAME = "default"
DEFAULT_PEER_URL = "http://localhost:2380"
DEFAULT_TOKEN = "etcd-cluster"
RAFT_TERM = 1  # the term of the snapshot and hard state a restore writes (etcd's)


@dataclass(frozen=True, slots=True)
class RestoreConfig:
    """etcdctl snapshot restore's flags (``data_dir`` None: ``<name>.etcd``, etcd's default)."""

    snapshot_path: Path
    name: str = DEFAULT_NAME
    data_dir: Path | None = None
    initial_cluster: str = f"{DEFAULT_NAME}={DEFAULT_PEER_URL}"
    initial_cluster_token: str = DEFAULT_TOKEN
    initial_advertise_peer_urls: str = DEFAULT_PEER_URL
    skip_hash_check: bool = False

    @property
    def target(self) -> Path:
        return self.data_dir if self.data_dir is not None else Path(f"{self.name}.etcd")


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore wrote, for the command's report."""

    data_dir: Path
    identity: Identity
    revision: int
    compact_revision: int
    keys: int  # keys live at the current revision
    leases: int


def load(path: Path, skip_hash_check: bool = False) -> BackendState:
    """Read and check a snapshot file: its digest (unless skipped), bbolt's consistency
    rules, etcd's schema. CorruptRecord (or OSError) with etcd's or a plain reason."""
    f = SnapshotFile.parse(Path(path).read_bytes())
    try:
        f.verify(skip_hash_check)
        return f.state()
    except CorruptRecord as e:
        raise CorruptRecord(f"{path}: {e}") from None


def check_bootstrap(name: str, initial_cluster: str, peer_urls: str) -> tuple[tuple[str, str], ...]:
    """etcd's VerifyBootstrap for a restore: --name is in --initial-cluster, with the
    peer URL --initial-advertise-peer-urls gives (raftkv members have one each)."""
    cluster = parse_initial_cluster(initial_cluster)
    urls = [u for u in peer_urls.split(",") if u]
    if len(urls) != 1:
        raise ConfigError(f"initial-advertise-peer-urls must be one URL (a raftkv member has one), got {peer_urls!r}")
    mine = dict(cluster)
    if name not in mine:
        raise ConfigError(f"initial-cluster must include this member's name {name!r}")
    if mine[name] != urls[0]:
        raise ConfigError(
            f"initial-cluster has {name}={mine[name]} but initial-advertise-peer-urls is {urls[0]} (they must match)"
        )
    return cluster


def state_machine(state: BackendState, members: tuple[api.Member, ...], index: int) -> StateMachine:
    """A state machine holding `state`'s keys and leases and the membership `members`,
    as if it had applied the log up to `index`."""
    sm = StateMachine(min_lease_ttl=1, members={m.ID: m for m in members})
    sm.store.restore(state.mvcc)
    for lease_id, ttl in state.leases:
        # TTLs are kept as etcd stored them (its minimum TTL was applied at grant).
        sm.lessor.grant(api.LeaseGrantRequest(TTL=max(ttl, 1), ID=lease_id), now=0.0, index=index)
    for key, versions in mvcc.decode_snapshot(state.mvcc).keys:
        kv = versions[-1][2]
        # etcd attaches a key to its lease if the lease exists (and only warns otherwise).
        if kv is not None and kv.lease and sm.lessor.exists(kv.lease):
            sm.lessor.attach(kv.lease, key)
    return sm


def write_data_dir(data_dir: Path, identity: Identity, sm: StateMachine) -> None:
    """A member's data dir whose log is one snapshot of `sm` at index len(members), term 1,
    every member a voter; `data_dir` must not exist. Written aside, then renamed."""
    if data_dir.exists():
        raise ConfigError(f'data-dir "{data_dir}" exists')
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = data_dir.with_name(f".{data_dir.name}.restoring-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    index = len(identity.members)
    voters = tuple(sorted(m.ID for m in identity.members if not m.is_learner))
    meta = SnapshotMetadata(index=index, term=RAFT_TERM, conf_state=ConfState(voters=voters))
    try:
        member_dir = tmp / "member"
        with DiskStorage(member_dir) as storage:
            storage.save(HardState(term=RAFT_TERM, commit=index), (), Snapshot(meta, sm.snapshot()))
        identity.save(member_dir / IDENTITY_FILE)
        os.rename(tmp, data_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fd = os.open(data_dir.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def restore_member(
    state: BackendState, data_dir: Path, name: str, initial_cluster: str, token: str, peer_urls: str
) -> Restored:
    """One member's data dir from an already loaded snapshot (``raftkv cluster
    --restore`` loads the file once and calls this for every member)."""
    cluster = check_bootstrap(name, initial_cluster, peer_urls)
    identity = founding_identity_of(name, cluster, token)
    sm = state_machine(state, identity.members, len(identity.members))
    write_data_dir(data_dir, identity, sm)
    live = sum(1 for _, versions in mvcc.decode_snapshot(state.mvcc).keys if versions[-1][2] is not None)
    return Restored(data_dir, identity, sm.store.revision, sm.store.compact_revision, live, len(state.leases))


def restore(cfg: RestoreConfig) -> Restored:
    """``raftkv snapshot restore``: check the flags, then the file, then write the data dir."""
    check_bootstrap(cfg.name, cfg.initial_cluster, cfg.initial_advertise_peer_urls)
    if cfg.target.exists():
        raise ConfigError(f'data-dir "{cfg.target}" exists')
    state = load(cfg.snapshot_path, cfg.skip_hash_check)
    return restore_member(
        state, cfg.target, cfg.name, cfg.initial_cluster, cfg.initial_cluster_token, cfg.initial_advertise_peer_urls
    )


def report(r: Restored) -> str:
    """One line a user reads after a restore."""
    names = ", ".join(f"{m.name}={m.ID:x}" for m in r.identity.members)
    return (
        f"restored revision {r.revision} (compacted at {r.compact_revision}; {r.keys} keys, {r.leases} leases) "
        f"into {r.data_dir} as member {r.identity.name} ({r.identity.member_id:x}) of cluster "
        f"{r.identity.cluster_id:x}: {names}"
    )
