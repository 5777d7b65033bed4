"""Lease expiry on a member: the leader revokes expired leases *through the log*.

Only the leader's clock decides (etcd's lessor runs on the leader), and the
revoke it proposes is conditional (``LeaseExpireRequest`` carries the lease's
``renewed_index``): a keep-alive applied after the leader decided keeps the
lease. A revoke that has not applied after ``LEASE_REVOKE_RETRY`` is proposed
again; with no leader to propose to, the member tries again a heartbeat later.

These functions are Member's methods, written here to keep one idea per module;
kv/member.py binds each as a method of the same name with a leading underscore,
so ``self`` is the member.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from kv import api
from kv.bugs import TeachingBug
from kv.errors import RaftKVError
from kv.raft.messages import Role

if TYPE_CHECKING:
    from kv.member import Member

# A revoke of an expired lease that has not applied after this long is proposed again
# (etcd's expiredLeaseRetryInterval): the first may have been lost with a leader.
LEASE_REVOKE_RETRY = 3.0


def expires_leases(self: Member) -> bool:
    return self.node.role == Role.LEADER or self.node.config.has_bug(TeachingBug.LEASE_FOLLOWER_CLOCK)

def expire_leases(self: Member) -> None:
    if not self._expires_leases():
        return
    # TEACHING BUG lease-follower-clock: every member, not only the leader, revokes
    # the leases that expired by its own clock (force=True). A follower that was
    # paused or cut off has missed the keep-alives and revokes a live lease.
    force = self.node.config.has_bug(TeachingBug.LEASE_FOLLOWER_CLOCK)
    if self.now < self.revoke_blocked_until:
        return
    expired = self.sm.lessor.expired(self.now, force=force)
    if self.revoking:
        # A lease renewed (or revoked) meanwhile is not being revoked any more.
        self.revoking = {i: t for i, t in self.revoking.items() if i in expired}
    for lease_id in expired:
        if self.now < self.revoking.get(lease_id, -math.inf) + LEASE_REVOKE_RETRY:
            continue  # its revoke is on the way
        lease = self.sm.lessor.lookup(lease_id)
        if force:
            # (the bug again) and unconditionally: renewals this member missed cannot stop it.
            expire: Any = api.LeaseRevokeRequest(ID=lease_id)
        else:
            expire = api.LeaseExpireRequest(ID=lease_id, renewed_index=lease.renewed_index if lease else 0)
        try:
            self._propose(None, expire)
        except RaftKVError:
            # No leader (or a transfer) right now: try again a heartbeat later.
            self.revoke_blocked_until = self.now + self.config.raft.heartbeat_interval
            return
        self.revoking[lease_id] = self.now

def next_lease_deadline(self: Member) -> float | None:
    """When the next lease expires or a lost revoke is due again."""
    force = self.node.config.has_bug(TeachingBug.LEASE_FOLLOWER_CLOCK)
    due = min(self.revoking.values(), default=math.inf) + LEASE_REVOKE_RETRY
    for deadline, lease_id in self.sm.lessor.deadlines(force=force):
        if lease_id not in self.revoking:
            due = min(due, deadline)
            break
    return None if due == math.inf else max(due, self.revoke_blocked_until)
