"""Membership changes: single-server (dissertation §4.1) and joint consensus (§4.3).

Pure functions from (config, progress) to a new (config, progress); the node
swaps them in when the change entry is *applied* (etcd's approach: the new
configuration takes effect on apply, and at most one change is pending).
"""

from __future__ import annotations

from kv.errors import RaftKVError
from kv.raft.messages import ConfChangeSingle, ConfChangeType, ConfState
from kv.raft.progress import Progress
from kv.raft.tracker import TrackerConfig


class ConfChangeError(RaftKVError):
    """A membership change that would leave the configuration invalid."""

    message = "invalid configuration change"


Changed = tuple[TrackerConfig, dict[int, Progress]]


def simple(cfg: TrackerConfig, prs: dict[int, Progress], last_index: int, max_inflight: int,
           changes: tuple[ConfChangeSingle, ...]) -> Changed:
    """Apply changes that alter at most one voter, without a joint phase."""
    if cfg.joint:
        raise ConfChangeError("can't apply simple config change in joint config")
    new_cfg, new_prs = _apply(cfg.copy(), dict(prs), last_index, max_inflight, changes)
    if len(cfg.voters ^ new_cfg.voters) > 1:
        raise ConfChangeError("more than one voter changed without entering joint config")
    _check(new_cfg, new_prs)
    return new_cfg, new_prs


def enter_joint(cfg: TrackerConfig, prs: dict[int, Progress], last_index: int, max_inflight: int,
                auto_leave: bool, changes: tuple[ConfChangeSingle, ...]) -> Changed:
    if cfg.joint:
        raise ConfChangeError("config is already joint")
    if not cfg.voters:
        raise ConfChangeError("can't make a zero-voter config joint")
    new_cfg = cfg.copy()
    new_cfg.voters_outgoing = set(cfg.voters)
    new_cfg, new_prs = _apply(new_cfg, dict(prs), last_index, max_inflight, changes)
    new_cfg.auto_leave = auto_leave
    _check(new_cfg, new_prs)
    return new_cfg, new_prs


def leave_joint(cfg: TrackerConfig, prs: dict[int, Progress]) -> Changed:
    if not cfg.joint:
        raise ConfChangeError("can't leave a non-joint config")
    new_cfg = cfg.copy()
    new_prs = dict(prs)
    for node_id in new_cfg.learners_next:
        new_cfg.learners.add(node_id)
        new_prs[node_id].is_learner = True
    new_cfg.learners_next = set()
    for node_id in new_cfg.voters_outgoing:
        if node_id not in new_cfg.voters and node_id not in new_cfg.learners:
            new_prs.pop(node_id, None)
    new_cfg.voters_outgoing = set()
    new_cfg.auto_leave = False
    _check(new_cfg, new_prs)
    return new_cfg, new_prs


def restore(cs: ConfState, last_index: int, max_inflight: int) -> Changed:
    """Rebuild a configuration from a snapshot's ConfState (as etcd's confchange.Restore)."""
    cfg = TrackerConfig()
    prs: dict[int, Progress] = {}
    if not (cs.voters or cs.learners or cs.voters_outgoing):
        return cfg, prs  # a new node that will learn its configuration from the leader
    if cs.voters_outgoing:
        # Build the outgoing config first, then enter joint with the incoming one.
        cfg, prs = _apply(cfg, prs, last_index, max_inflight,
                          tuple(ConfChangeSingle(ConfChangeType.ADD_NODE, v) for v in cs.voters_outgoing))
        changes = [ConfChangeSingle(ConfChangeType.REMOVE_NODE, v) for v in cs.voters_outgoing]
        changes += [ConfChangeSingle(ConfChangeType.ADD_NODE, v) for v in cs.voters]
        changes += [ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, v) for v in cs.learners]
        changes += [ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, v) for v in cs.learners_next]
        return enter_joint(cfg, prs, last_index, max_inflight, cs.auto_leave, tuple(changes))
    changes = [ConfChangeSingle(ConfChangeType.ADD_NODE, v) for v in cs.voters]
    changes += [ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, v) for v in cs.learners]
    cfg, prs = _apply(cfg, prs, last_index, max_inflight, tuple(changes))
    _check(cfg, prs)
    return cfg, prs


def _apply(cfg: TrackerConfig, prs: dict[int, Progress], last_index: int, max_inflight: int,
           changes: tuple[ConfChangeSingle, ...]) -> Changed:
    for cc in changes:
        node_id = cc.node_id
        if node_id == 0:
            continue  # etcd ignores changes for node 0
        if cc.type == ConfChangeType.ADD_NODE:
            cfg.voters.add(node_id)
            cfg.learners.discard(node_id)
            cfg.learners_next.discard(node_id)
            _ensure_progress(prs, node_id, last_index, max_inflight, is_learner=False)
        elif cc.type == ConfChangeType.ADD_LEARNER_NODE:
            pr = _ensure_progress(prs, node_id, last_index, max_inflight, is_learner=True)
            cfg.voters.discard(node_id)
            if node_id in cfg.voters_outgoing:
                # Still a voter of the outgoing half: it becomes a learner only on leaving joint.
                cfg.learners_next.add(node_id)
                pr.is_learner = False
            else:
                cfg.learners.add(node_id)
                pr.is_learner = True
        elif cc.type == ConfChangeType.REMOVE_NODE:
            cfg.voters.discard(node_id)
            cfg.learners.discard(node_id)
            cfg.learners_next.discard(node_id)
            if node_id not in cfg.voters_outgoing:
                prs.pop(node_id, None)
        elif cc.type == ConfChangeType.UPDATE_NODE:
            pass  # carries new URLs for the application; nothing changes in Raft
        else:  # pragma: no cover - enum is closed
            raise ConfChangeError(f"unexpected conf change type {cc.type}")
    if not cfg.voters:
        raise ConfChangeError("removed all voters")
    return cfg, prs


def _ensure_progress(prs: dict[int, Progress], node_id: int, last_index: int, max_inflight: int,
                     is_learner: bool) -> Progress:
    pr = prs.get(node_id)
    if pr is None:
        # A new peer: probe from our last index; count it as active so that adding
        # it does not make CheckQuorum step the leader down at once (etcd does the same).
        pr = Progress(next_index=max(last_index, 1), max_inflight=max_inflight, is_learner=is_learner)
        pr.recent_active = True
        prs[node_id] = pr
    return pr


def _check(cfg: TrackerConfig, prs: dict[int, Progress]) -> None:
    for node_id in cfg.all_voters() | cfg.learners | cfg.learners_next:
        if node_id not in prs:
            raise ConfChangeError(f"no progress for {node_id}")
    if cfg.learners & cfg.all_voters():
        raise ConfChangeError(f"{sorted(cfg.learners & cfg.all_voters())} is in learners and voters")
    if not cfg.learners_next <= cfg.voters_outgoing:
        raise ConfChangeError("learners_next must be outgoing voters")
    if not cfg.joint and cfg.auto_leave:
        raise ConfChangeError("auto_leave must be false when not joint")
