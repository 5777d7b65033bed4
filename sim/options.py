"""Everything a run depends on, resolved and printable: the seed plus every option.

``RunOptions`` is what ``sim run`` parses, what the first output line prints,
what ``schedule.json`` stores under ``"options"`` and what ``replay_command``
turns back into the exact command that reruns a run. Same options (seed
included) -> the same run, byte for byte.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from kv.bugs import parse_bugs
from sim.distributions import Latency
from sim.schedule import parse_faults

DEFAULT_NEMESIS = "partition,kill,pause"


@dataclass(frozen=True, slots=True)
class RunOptions:
    seed: int = 1
    nodes: int = 5
    duration: float = 30.0  # the fault phase, simulated seconds
    quiet: float = 10.0  # the liveness phase after healing: a leader must emerge and work finish
    nemesis: str = DEFAULT_NEMESIS
    nemesis_interval: float = 3.0  # typical seconds a fault holds and between faults
    workload: str = "register"
    clients: int = 10
    rate: float = 100.0  # client operations per simulated second, all clients together
    keys: int = 3  # register workload: how many keys the clients share
    lock_fencing: bool = True  # lock workload: writes carry the lock's create revision as a fencing token
    client_timeout: float = 1.0  # a client gives up (info) after this long
    latency: str = "lognormal:0.002:0.4"  # member <-> member one-way delay
    client_latency: str = "uniform:0.0005:0.002"  # client <-> member one-way delay
    loss: float = 0.0  # baseline message loss rate (faults raise it for a while)
    duplicate: float = 0.0
    reorder: float = 0.0
    disk_write: str = "uniform:0.0001:0.0005"
    disk_fsync: str = "lognormal:0.002:0.5"
    clock_drift: float = 100e-6  # each member's clock drift is drawn from [-x, x]
    clock_offset: float = 0.05  # ... and its initial offset from [-x, x] seconds
    election_timeout_min: float = 0.5
    election_timeout_max: float = 1.0
    heartbeat_interval: float = 0.1
    pre_vote: bool = True
    check_quorum: bool = True
    max_msg_bytes: int = 1 << 20  # Raft's max_size_per_msg: entries per append message (at least one)
    snapshot_count: int = 2000  # a member snapshots (and compacts) every this many applied entries
    check_interval: float = 2.0  # run the in-run invariant checks every this many simulated seconds
    check_timeout: float = 60.0  # wall seconds the linearizability check may take
    bugs: tuple[str, ...] = ()
    schedule_file: str = ""  # faults from this file instead of the seed
    out: str = ""

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError("nodes must be at least 1")
        if self.duration < 0 or self.quiet < 0:
            raise ValueError("duration and quiet must not be negative")
        if self.clients < 0:
            raise ValueError("clients must not be negative")
        if self.rate <= 0:
            raise ValueError("rate must be greater than 0")
        if self.nemesis_interval <= 0:
            raise ValueError("nemesis_interval must be greater than 0")
        if self.keys < 1:
            raise ValueError("keys must be at least 1")
        parse_faults(self.nemesis)
        parse_bugs(self.bugs)
        for spec in (self.latency, self.client_latency, self.disk_write, self.disk_fsync):
            Latency.parse(spec)
        object.__setattr__(self, "bugs", tuple(sorted(set(self.bugs))))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["bugs"] = list(self.bugs)
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> RunOptions:
        known = {f.name for f in fields(RunOptions)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        if "bugs" in d:
            d["bugs"] = tuple(d["bugs"])
        return RunOptions(**d)

    def with_(self, **changes: Any) -> RunOptions:
        return replace(self, **changes)

    def banner(self) -> str:
        """The first line of every run: the seed, then every resolved option."""
        parts = [f"seed={self.seed}"]
        for f in fields(self):
            if f.name in ("seed", "out"):
                continue
            v = getattr(self, f.name)
            if f.name == "bugs":
                v = ",".join(v) or "none"
            elif f.name == "schedule_file" and not v:
                continue
            parts.append(f"{f.name}={v}")
        return " ".join(parts)

    def replay_args(self) -> list[str]:
        """Command-line flags that reproduce this run (options equal to the default are left out)."""
        default = RunOptions()
        args: list[str] = []
        for f in fields(self):
            if f.name == "out":
                continue
            v = getattr(self, f.name)
            if f.name != "seed" and v == getattr(default, f.name):
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.name == "bugs":
                for b in v:
                    args += ["--bug", b]
            elif f.name == "schedule_file":
                args += ["--schedule", v]
            else:
                args += [flag, _fmt(v)]
        return args

    def replay_command(self) -> str:
        return "python -m sim run " + " ".join(shlex.quote(a) for a in self.replay_args())


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return repr(v) if v != int(v) else str(int(v)) if abs(v) < 1e15 else repr(v)
    return str(v)


__all__ = ["RunOptions", "DEFAULT_NEMESIS", "field"]
