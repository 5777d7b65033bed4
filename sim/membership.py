"""The operator of the ``membership`` fault: removes a member, later adds a new one in its slot.

What an etcd operator does, through the cluster's own API (so the core's
membership path runs under traffic and faults): ``MemberRemove`` the member
and stop it; later ``MemberAdd`` a new member with a fresh peer URL and start
it on an empty data directory with ``--initial-cluster-state=existing``
(``SimCluster.rejoin``). Requests go to the current leader when there is one
and are retried until the fault phase's operator gives up; an answer lost in
a fault is resolved by listing the members, as an operator would.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from kv import api
from kv.errors import ErrMemberNotFound, ErrPeerURLExist, RaftKVError
from sim.clients import request
from sim.cluster import SimCluster, Slot, peer_url

Proc = Generator[simpy.events.Event, Any, Any]

ATTEMPT_TIMEOUT = 2.0  # seconds an admin request waits for its answer
RETRY_GAP = 0.25
MAX_ATTEMPTS = 60


def _admin_call(env: simpy.Environment, cluster: SimCluster, req: Any) -> Proc:
    """Send `req` to the leader (or any live member) until it is answered: the outcome, or None."""
    for _ in range(MAX_ATTEMPTS):
        target = cluster.leader()
        if target is None:
            live = [s for s in cluster.live() if not s.paused]
            target = live[0] if live else None
        if target is not None:
            answered, outcome = yield from request(env, cluster, target.slot, req, ATTEMPT_TIMEOUT)
            if answered and not _retryable(outcome):
                return outcome
        yield env.timeout(RETRY_GAP)
    return None


def _retryable(outcome: Any) -> bool:
    return isinstance(outcome, RaftKVError) and not isinstance(outcome, (ErrMemberNotFound, ErrPeerURLExist))


def _members(env: simpy.Environment, cluster: SimCluster) -> Proc:
    resp = yield from _admin_call(env, cluster, api.MemberListRequest(linearizable=True))
    return resp.members if isinstance(resp, api.MemberListResponse) else None


def remove_member(env: simpy.Environment, cluster: SimCluster, slot: Slot) -> Proc:
    """MemberRemove the slot's member, then stop it. True when it is out."""
    try:
        outcome = yield from _admin_call(env, cluster, api.MemberRemoveRequest(ID=slot.raft_id))
    except simpy.Interrupt:
        return False  # the fault ended first; add_member sorts out whether it took effect
    if isinstance(outcome, (api.MemberRemoveResponse, ErrMemberNotFound)):
        cluster.remove(slot)
        return True
    return False


def add_member(env: simpy.Environment, cluster: SimCluster, slot: Slot, removing: simpy.Process | None = None) -> Proc:
    """Put a member back in the slot: let the removal in progress finish (or finish it: a
    MemberRemove whose answer was lost may still commit later, so the operator makes sure it
    did), then MemberAdd a new one and start it."""
    try:
        if removing is not None and removing.is_alive:
            yield removing
        if not slot.removed:
            ok = yield from remove_member(env, cluster, slot)
            if not ok:
                return False
        return (yield from _add(env, cluster, slot))
    finally:
        slot.operator = None


def _add(env: simpy.Environment, cluster: SimCluster, slot: Slot) -> Proc:
    url = peer_url(slot.slot, slot.incarnation + 1)
    outcome = yield from _admin_call(env, cluster, api.MemberAddRequest(peer_urls=(url,)))
    if isinstance(outcome, ErrPeerURLExist):  # an earlier attempt got in; find its ID
        members = yield from _members(env, cluster)
        new = [m for m in members or () if url in m.peer_urls]
        if not new:
            return False
        outcome = api.MemberAddResponse(member=new[0], members=tuple(members or ()))
    if not isinstance(outcome, api.MemberAddResponse) or outcome.member is None:
        return False
    cluster.rejoin(slot, outcome.member.ID, {m.ID: m for m in outcome.members})
    return True
