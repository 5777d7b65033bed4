"""Leases: TTLs that keys hang on (etcd server/lease, the Lessor), pure and clock-free.

A lease is granted with a TTL, keys are attached to it by puts, and when it
ends (revoked by a client, or expired) its keys are deleted, all of them in
one MVCC revision.

Who decides expiry
    Only the *primary* lessor, the one on the Raft leader, decides that a
    lease expired, and then the Member proposes a LeaseRevoke *through the
    log*, so every member deletes the same keys at the same revision. The
    lessor never deletes keys itself; ``expired(now)`` only names leases.
    A non-primary lessor keeps deadlines too (so TimeToLive answers), but its
    ``expired()`` is always empty: followers' clocks decide nothing.

Leader changes
    ``promote(now)`` on becoming leader sets every deadline to now + TTL (plus
    an optional ``extend``), as etcd's ``Promote`` does, so no lease expires
    early because the old leader's renewals are unknown here or because the
    election took time. ``demote()`` on losing it.

Time is passed in as float seconds (``now``); nothing here reads a clock.
Lease IDs the lessor picks itself come from the caller's log ``index``, so
every member picks the same one. Everything iterates in ID or deadline order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
from sortedcontainers import SortedList

from kv.api import (
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseLeasesResponse,
    LeaseStatus,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
)
from kv.errors import CorruptRecord, ErrLeaseExist, ErrLeaseNotFound, ErrLeaseTTLTooLarge

NO_LEASE = 0
# etcd's MaxLeaseTTL: about 285 years; larger TTLs are refused.
MAX_LEASE_TTL = 9_000_000_000
SNAPSHOT_FORMAT = 2  # 2: each lease carries its renewed_index
_INT63 = (1 << 63) - 1


def min_lease_ttl(election_timeout: float, heartbeat_interval: float) -> int:
    """etcd's minimum TTL: 1.5 election timeouts, counted in whole heartbeat ticks
    and rounded up to seconds (``(3*ElectionTicks/2) * heartbeat``), so a lease
    outlives the election that follows a leader's death."""
    if heartbeat_interval <= 0:
        raise ValueError("heartbeat_interval must be greater than 0")
    election_ticks = round(election_timeout / heartbeat_interval)
    return max(1, math.ceil((3 * election_ticks // 2) * heartbeat_interval - 1e-9))


def lease_id_for_index(index: int) -> int:
    """A positive int63 lease ID derived from a log index (splitmix64), the same on
    every member that applies that entry."""
    z = (index + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z ^= z >> 31
    return (z & _INT63) or 1


@dataclass(slots=True)
class Lease:
    ID: int
    ttl: int  # granted TTL, seconds (after the minimum is applied)
    deadline: float  # when it expires, on this member's clock
    keys: set[bytes] = field(default_factory=set)
    renewed_index: int = 0  # log index of the grant or the last keep-alive applied (replicated)

    def sorted_keys(self) -> tuple[bytes, ...]:
        return tuple(sorted(self.keys))


class Lessor:
    """Implements kv.mvcc.LeaseIndex (exists/attach/detach) for the store."""

    def __init__(self, min_ttl: int = 1) -> None:
        if min_ttl < 1:
            raise ValueError("min_ttl must be at least 1 second")
        self.min_ttl = min_ttl
        self.is_primary = False
        self._leases: dict[int, Lease] = {}
        self._deadlines: Any = SortedList()  # (deadline, ID)

    # ---------------------------------------------------------- LeaseIndex

    def exists(self, lease_id: int) -> bool:
        return lease_id in self._leases

    def attach(self, lease_id: int, key: bytes) -> None:
        lease = self._leases.get(lease_id)
        if lease is None:
            # The store checks existence before a put; getting here is a caller bug.
            raise ErrLeaseNotFound()
        lease.keys.add(key)

    def detach(self, lease_id: int, key: bytes) -> None:
        lease = self._leases.get(lease_id)
        if lease is not None:
            lease.keys.discard(key)

    # ----------------------------------------------------------- requests

    def lookup(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def grant(self, req: LeaseGrantRequest, now: float, index: int = 0) -> LeaseGrantResponse:
        """Grant a lease. ``req.ID == 0`` picks an ID from `index` (the log index of the
        grant, so every member picks the same one). The TTL is raised to min_ttl."""
        if req.TTL > MAX_LEASE_TTL:
            raise ErrLeaseTTLTooLarge()
        lease_id = req.ID
        if lease_id == NO_LEASE:
            lease_id = lease_id_for_index(index)
            while lease_id in self._leases:
                lease_id = (lease_id + 1) & _INT63 or 1
        elif lease_id in self._leases:
            raise ErrLeaseExist()
        ttl = max(req.TTL, self.min_ttl)
        lease = Lease(ID=lease_id, ttl=ttl, deadline=now + ttl, renewed_index=index)
        self._leases[lease_id] = lease
        self._deadlines.add((lease.deadline, lease_id))
        return LeaseGrantResponse(ID=lease_id, TTL=ttl)

    def revoke(self, lease_id: int) -> tuple[bytes, ...]:
        """Forget the lease; returns its keys in key order. The caller deletes them all
        in one MVCC revision (``MVCCStore.delete_keys``), as etcd's Revoke does."""
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            raise ErrLeaseNotFound()
        self._deadlines.remove((lease.deadline, lease_id))
        return lease.sorted_keys()

    def renew(self, lease_id: int, now: float) -> int:
        """Keep-alive: the deadline becomes now + TTL; returns the TTL.

        ErrLeaseNotFound for an unknown lease, and on the primary also for one whose
        deadline passed: its revoke is on the way (etcd waits for that revoke and then
        answers lease-not-found; a sans-IO lessor cannot wait, so it answers at once)."""
        lease = self._leases.get(lease_id)
        if lease is None or (self.is_primary and lease.deadline <= now):
            raise ErrLeaseNotFound()
        self._set_deadline(lease, now + lease.ttl)
        return lease.ttl

    def renew_at(self, lease_id: int, now: float, index: int) -> int:
        """A keep-alive applied from the log at `index`: renews whatever the local deadline
        says (the outcome must be the same on every member), records the index; the TTL,
        or 0 for a lease that does not exist (etcd answers keep-alives that way)."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return 0
        lease.renewed_index = index
        self._set_deadline(lease, now + lease.ttl)
        return lease.ttl

    def keep_alive(self, req: LeaseKeepAliveRequest, now: float) -> LeaseKeepAliveResponse:
        """etcd answers a keep-alive for a lease it does not know with TTL 0, not an error."""
        try:
            ttl = self.renew(req.ID, now)
        except ErrLeaseNotFound:
            ttl = 0
        return LeaseKeepAliveResponse(ID=req.ID, TTL=ttl)

    def time_to_live(self, req: LeaseTimeToLiveRequest, now: float) -> LeaseTimeToLiveResponse:
        """Remaining whole seconds (truncated, as etcd's int64(Remaining().Seconds()));
        TTL -1 for a lease that does not exist (etcd's v3rpc answers that, not an error)."""
        lease = self._leases.get(req.ID)
        if lease is None:
            return LeaseTimeToLiveResponse(ID=req.ID, TTL=-1)
        remaining = max(0, int(lease.deadline - now))
        return LeaseTimeToLiveResponse(
            ID=req.ID,
            TTL=remaining,
            granted_ttl=lease.ttl,
            keys=lease.sorted_keys() if req.keys else (),
        )

    def leases(self) -> LeaseLeasesResponse:
        return LeaseLeasesResponse(leases=tuple(LeaseStatus(ID=i) for i in sorted(self._leases)))

    # -------------------------------------------------------------- expiry

    def promote(self, now: float, extend: float = 0.0) -> None:
        """Become primary: every lease gets a full TTL from now (+ extend)."""
        self.is_primary = True
        self._deadlines = SortedList()
        for lease_id in sorted(self._leases):
            lease = self._leases[lease_id]
            lease.deadline = now + extend + lease.ttl
            self._deadlines.add((lease.deadline, lease_id))

    def demote(self) -> None:
        self.is_primary = False

    def expired(self, now: float, force: bool = False) -> list[int]:
        """Leases whose deadline is at or before `now`, earliest first (ties by ID);
        empty unless primary. They stay listed until revoked, so a revoke that was
        lost (leader change) is proposed again. `force` ignores primary-ness: only
        the lease-follower-clock teaching bug uses it."""
        if not (self.is_primary or force):
            return []
        out: list[int] = []
        for deadline, lease_id in self._deadlines:
            if deadline > now:
                break
            out.append(lease_id)
        return out

    def deadlines(self, force: bool = False) -> Iterator[tuple[float, int]]:
        """(deadline, ID) of every lease, earliest first; nothing unless primary (or `force`)."""
        if self.is_primary or force:
            yield from self._deadlines

    def next_expiry(self) -> float | None:
        """The earliest deadline, for the driver's sleep; None unless primary."""
        if not self.is_primary or not self._deadlines:
            return None
        deadline: float = self._deadlines[0][0]
        return deadline

    # ------------------------------------------------------------ snapshot

    def snapshot(self) -> bytes:
        """Leases, their TTLs and attached keys: the replicated part. Deadlines are
        this member's clock and are not replicated (etcd does not persist them)."""
        body = [
            [i, self._leases[i].ttl, list(self._leases[i].sorted_keys()), self._leases[i].renewed_index]
            for i in sorted(self._leases)
        ]
        packed: bytes = msgpack.packb([SNAPSHOT_FORMAT, body], use_bin_type=True)
        return packed

    def restore(self, data: bytes, now: float) -> None:
        """Replace all leases with a snapshot's; each gets a full TTL from `now`."""
        try:
            fmt, body = msgpack.unpackb(data, raw=False)
            if fmt != SNAPSHOT_FORMAT:
                raise CorruptRecord(f"unsupported lease snapshot format {fmt!r}")
            leases = {
                int(i): Lease(ID=int(i), ttl=int(ttl), deadline=now + ttl, keys={bytes(k) for k in keys},
                              renewed_index=int(renewed))
                for i, ttl, keys, renewed in body
            }
        except CorruptRecord:
            raise
        except Exception as e:  # msgpack raises many types on garbage; all mean the same here
            raise CorruptRecord(f"malformed lease snapshot: {type(e).__name__}: {e}") from None
        self._leases = leases
        self._deadlines = SortedList((lease.deadline, i) for i, lease in leases.items())

    # ------------------------------------------------------------- helpers

    def _set_deadline(self, lease: Lease, deadline: float) -> None:
        self._deadlines.remove((lease.deadline, lease.ID))
        lease.deadline = deadline
        self._deadlines.add((deadline, lease.ID))
