"""raftkv with the Python etcd clients people use, each from the registry in its own virtualenv.

For each library (etcd3, etcd-sdk-python, aetcd) the test starts a 3-member
raftkv cluster and a 3-member etcd 3.4 cluster (TLS; plain for aetcd, which
cannot speak TLS) as processes on free ports, runs the library's scenario
script (scripts/<lib>_scenario.py, in the library's virtualenv, see support.py)
against each, and asserts that

* raftkv's results are the expected ones (EXPECTED below: put/get, prefix get,
  delete, txn with compare-and-swap and nesting, watches from now and from a
  past revision with prev_kv on a member other than the writer, leases with
  grant, attach, time-to-live, keep-alive, revoke and expiry, the library's
  lock with two contenders, member list and status), and
* etcd's results are the same (only the server version string differs).

The scenario writes through a follower and reads and watches through the other
follower (status and the lock's second contender too), so forwarding and
ReadIndex are on the path.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ..cluster.support import Cluster, raftkv_cluster
from .support import LIBRARIES, Library, ensure_venv, etcd_cluster, plain_raftkv_cluster, run_scenario, writer_first

pytestmark = pytest.mark.timeout(900)  # the first run also creates the venv (about 20 s each with a warm pip cache)

P = "/scenario/"

# What every library sees from a correct etcd 3.4 (revisions relative to the scenario's first put).
EXPECTED: dict[str, Any] = {
    "put_get": {
        "value": "v1", "create": 0, "mod": 0, "version": 1, "lease": 0, "prev_kv": "v1", "after": ["v2", 1, 2],
        "missing": [None, None], "serving_member_differs": True,
    },
    "prefix": {
        "asc": [[P + "p/a", "A"], [P + "p/b", "B"], [P + "p/c", "C"]],
        "desc": [P + "p/c", P + "p/b", P + "p/a"],
        "by_mod": [P + "p/c", P + "p/a", P + "p/b"],
        "keys_only": [[P + "p/a", ""], [P + "p/b", ""], [P + "p/c", ""]],
        "range": [P + "p/a", P + "p/b"],
    },
    "delete": {
        "first": True, "again": False, "get_after": None, "prev_kvs": [[P + "p/b", "B"]], "prefix_deleted": 1,
        "prefix_left": [], "rev": 8,
    },
    "txn": {
        "cas": [True, ["response_put"]],
        "cas_fail": [False, [["v3", 3]]],
        "value_after": "v3",
        "compare_meta": True,
        "nested": {
            "outer": True, "inner": False, "inner_ops": ["response_put", "response_range"], "inner_get": ["v3"],
            "same_txn_get": [["inner-failure"]], "n": "inner-failure", "k": "v3",
        },
    },
    "watch": {
        "live": [["PUT", P + "w", "1", 11, None], ["PUT", P + "w", "2", 12, "1"], ["DELETE", P + "w", "", 13, "2"]],
        "past": [["PUT", P + "w", "1", 11, None], ["PUT", P + "w", "2", 12, "1"], ["DELETE", P + "w", "", 13, "2"]],
        "prefix_history": [
            ["PUT", P + "p/c", "C", 2], ["PUT", P + "p/a", "A", 3], ["PUT", P + "p/b", "B", 4],
            ["DELETE", P + "p/a", "", 6], ["DELETE", P + "p/b", "", 7], ["DELETE", P + "p/c", "", 8],
        ],
    },
    "lease": {
        "id_nonzero": True, "granted": 30, "key_lease_is_lease": True, "ttl_ok": True, "info_granted": 30,
        "keys": [P + "l"], "keepalive": [[True, 30]], "remaining_ok": True,
        "after_revoke": {"get": None, "ttl": -1, "keys": []}, "stale_time_to_live": 0,
    },
    "lease_expiry": {
        "granted": 2, "events": [["PUT", P + "e"], ["DELETE", P + "e"]], "within_2_to_8_s": True,
        "get_after": None, "ttl_after": -1,
    },
    "lock": [
        "1 acquire True", "1 holds True", "2 try False", "2 waiting True", "1 release True", "2 acquire True",
        "2 holds True 1 holds False", "lock key leased True", "2 release True", "lock key after None",
    ],
    "members": [
        {"name": n, "client": [n], "peer": [n], "id_nonzero": True} for n in ("n1", "n2", "n3")
    ],
    "status": {
        "leader_agreed": True, "leader_is_member": True, "version": "<version>", "db_size_positive": True,
        "raft_index_positive": True, "raft_term_positive": True,
    },
}  # fmt: skip

NOT_COMPARED = ("timing", "raw", "library", "stderr")


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in result.items() if k not in NOT_COMPARED}
    out["status"]["version"] = "<version>"
    return out


def check_urls(result: dict[str, Any], cluster: Cluster) -> None:
    """The member list names each member's own URLs."""
    want = {u: n for n, node in cluster.nodes.items() for u in (node.client_url, node.peer_url)}
    assert result["raw"]["urls"] == want


def run_both(lib: Library, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    ensure_venv(lib)  # first: a missing venv fails before any cluster starts
    raftkv_cm = raftkv_cluster(tmp_path / "raftkv") if lib.tls else plain_raftkv_cluster(tmp_path / "raftkv")
    with raftkv_cm as rk, etcd_cluster(tmp_path / "etcd", plain=not lib.tls) as et:
        with ThreadPoolExecutor(2) as pool:  # the scenarios mostly wait (lease expiry, lock hand-over)
            futs = [pool.submit(run_scenario, lib, c, writer_first(c)) for c in (rk, et)]
            rk_result, et_result = (f.result() for f in futs)
        check_urls(rk_result, rk)
        check_urls(et_result, et)
    return rk_result, et_result


@pytest.mark.parametrize("name", list(LIBRARIES))
def test_client_library(name: str, tmp_path: Path) -> None:
    raftkv, etcd = run_both(LIBRARIES[name], tmp_path)
    for side, result in (("etcd 3.4 (if this fails, the scenario is wrong)", etcd), ("raftkv", raftkv)):
        got = comparable(result)
        assert sorted(got) == sorted(EXPECTED), side
        for section in EXPECTED:  # one section at a time: pytest shows its full difference
            assert (side, section, got[section]) == (side, section, EXPECTED[section])
    assert raftkv["status"]["version"].startswith("3.")
