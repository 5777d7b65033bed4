"""RaftConfig validation: one early check per rule, each failure one sentence naming the field (etcd's Config.validate)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from kv.errors import ConfigError, GrpcCode
from kv.raft.config import RaftConfig

# (overrides, the exact ConfigError text), one per rule, in the order __post_init__ checks them.
RULES: list[tuple[dict[str, Any], str]] = [
    ({"id": 0}, "id must not be 0 (0 means 'no node')"),
    ({"id": -3}, "id must be positive"),
    ({"heartbeat_interval": 0.0}, "heartbeat_interval must be greater than 0"),
    ({"heartbeat_interval": -0.05}, "heartbeat_interval must be greater than 0"),
    ({"election_timeout_min": 0.0}, "election_timeout_min must be greater than 0"),
    (
        {"election_timeout_min": 0.3, "election_timeout_max": 0.2},
        "election_timeout_max must not be less than election_timeout_min",
    ),
    ({"heartbeat_interval": 0.15}, "heartbeat_interval must be less than election_timeout_min"),
    ({"heartbeat_interval": 0.2}, "heartbeat_interval must be less than election_timeout_min"),
    ({"max_size_per_msg": 0}, "max_size_per_msg must be greater than 0"),
    ({"max_inflight_msgs": 0}, "max_inflight_msgs must be greater than 0"),
    ({"max_uncommitted_entries_size": -1}, "max_uncommitted_entries_size must not be negative"),
    ({"transfer_timeout": -1.0}, "transfer_timeout must not be negative"),
]


@pytest.mark.parametrize(("overrides", "message"), RULES, ids=[m + " " + repr(o) for o, m in RULES])
def test_each_broken_rule_raises_config_error_naming_the_field(overrides: dict[str, Any], message: str) -> None:
    kw: dict[str, Any] = {"id": 1, **overrides}
    with pytest.raises(ConfigError) as info:
        RaftConfig(**kw)
    assert str(info.value) == message
    assert info.value.grpc_code == GrpcCode.INVALID_ARGUMENT


def test_config_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError):
        RaftConfig(id=0)


def test_rules_are_checked_in_field_order_and_the_first_broken_one_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"^id must not be 0"):
        RaftConfig(id=0, heartbeat_interval=0.0, max_size_per_msg=0)
    with pytest.raises(ConfigError, match=r"^heartbeat_interval must be greater than 0$"):
        RaftConfig(id=1, heartbeat_interval=0.0, max_size_per_msg=0)


@pytest.mark.parametrize(
    "field", ["heartbeat_interval", "election_timeout_min", "election_timeout_max", "transfer_timeout"]
)
def test_nan_times_are_rejected(field: str) -> None:
    # NaN compares false with everything, so a rule written as "x < bound -> error"
    # would let it through, and a NaN deadline never falls due: no election, or a
    # leadership transfer that never times out (and so blocks proposals forever).
    kw: dict[str, Any] = {field: math.nan}
    with pytest.raises(ConfigError, match=field):
        RaftConfig(id=1, **kw)


def test_defaults_are_valid_and_match_the_raft_paper_ranges() -> None:
    cfg = RaftConfig(id=1)
    assert (cfg.election_timeout_min, cfg.election_timeout_max, cfg.heartbeat_interval) == (0.150, 0.300, 0.050)
    assert cfg.pre_vote and cfg.check_quorum
    assert cfg.bugs == frozenset()


def test_equal_election_timeout_bounds_are_allowed() -> None:
    cfg = RaftConfig(id=1, election_timeout_min=0.2, election_timeout_max=0.2)
    assert cfg.election_timeout_max == cfg.election_timeout_min


def test_transfer_timeout_defaults_to_the_maximum_election_timeout() -> None:
    assert RaftConfig(id=1, election_timeout_max=0.9, election_timeout_min=0.3).transfer_timeout == 0.9
    assert RaftConfig(id=1, transfer_timeout=2.5).transfer_timeout == 2.5


def test_config_is_immutable_after_validation() -> None:
    cfg = RaftConfig(id=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.heartbeat_interval = 0.0  # type: ignore[misc]
