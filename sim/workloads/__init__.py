"""Workloads: what the simulated clients do, and how their history is judged.

A workload is a small plug-in (``Workload``): it makes the next client
operation (``next_invocation``: the history's view of it plus the kv.api
request that performs it), may replace the client actors altogether
(``spawn_clients``, for workloads whose clients are not one-request-at-a-time
kv clients, e.g. watchers), and may add its own checker (``check``) to the
linearizability check every kv history gets. Register a new one in
``WORKLOADS``.
"""

from __future__ import annotations

from sim.workloads.base import Invocation, Workload, WorkloadCheck
from sim.workloads.discovery import ConfigWorkload, DiscoveryWorkload
from sim.workloads.election import ElectionWorkload
from sim.workloads.lease import LeaseWorkload
from sim.workloads.lock import LockWorkload
from sim.workloads.register import RegisterWorkload
from sim.workloads.txn import TxnWorkload
from sim.workloads.watch import WatchWorkload

WORKLOADS: dict[str, type[Workload]] = {
    RegisterWorkload.name: RegisterWorkload,
    TxnWorkload.name: TxnWorkload,
    LockWorkload.name: LockWorkload,
    WatchWorkload.name: WatchWorkload,
    LeaseWorkload.name: LeaseWorkload,
    ElectionWorkload.name: ElectionWorkload,
    DiscoveryWorkload.name: DiscoveryWorkload,
    ConfigWorkload.name: ConfigWorkload,
}


def make_workload(name: str, keys: int) -> Workload:
    try:
        cls = WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r} (known: {', '.join(sorted(WORKLOADS))})") from None
    return cls(keys=keys)


__all__ = ["WORKLOADS", "Invocation", "Workload", "WorkloadCheck", "make_workload"]
