"""The scenario shared by the two synchronous clients (etcd3 and its fork etcd-sdk-python).

Runs inside the library's own virtualenv, never imports raftkv. Everything it
prints is normalised so that two runs against two fresh clusters (raftkv and
etcd) print the same JSON: revisions relative to the first write, lease IDs as
booleans, member URLs replaced by member names, timings as coarse buckets.

`a` talks to the first endpoint (the one written to), `b` to the second (reads,
watches), so reads and watches are served by a member other than the writer.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

P = "/scenario/"


def s(b: bytes | None) -> str | None:
    return None if b is None else b.decode()


def collect(iterator: Any, cancel: Callable[[], None], n: int, timeout: float = 10.0) -> list[Any]:
    """The first n events of a watch iterator, or fewer if `timeout` passes first."""
    timer = threading.Timer(timeout, cancel)
    timer.start()
    got = []
    try:
        for ev in iterator:
            got.append(ev)
            if len(got) == n:
                break
    finally:
        timer.cancel()
        cancel()
    return got


def run(lib: Any, a: Any, b: Any, c: Any, events_mod: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t = a.transactions

    # ------------------------------------------------------------- put / get
    base = a.put(P + "k", "v1").header.revision

    def rel(rev: int) -> int:
        return rev - base

    v, m = b.get(P + "k")
    prev = a.put(P + "k", "v2", prev_kv=True)
    v2, m2 = b.get(P + "k")
    missing = b.get(P + "missing")
    out["put_get"] = {
        "value": s(v), "create": rel(m.create_revision), "mod": rel(m.mod_revision), "version": m.version,
        "lease": m.lease_id, "prev_kv": s(prev.prev_kv.value), "after": [s(v2), rel(m2.mod_revision), m2.version],
        "missing": [missing[0], missing[1]], "serving_member_differs": m.response_header.member_id != prev.header.member_id,
    }  # fmt: skip

    # ------------------------------------------------------------ prefix get
    for x in "cab":
        a.put(P + "p/" + x, x.upper())
    a.put(P + "pz", "outside")
    out["prefix"] = {
        "asc": [[s(md.key), s(val)] for val, md in b.get_prefix(P + "p/")],
        "desc": [s(md.key) for _, md in b.get_prefix(P + "p/", sort_order="descend")],
        "by_mod": [s(md.key) for _, md in b.get_prefix(P + "p/", sort_order="ascend", sort_target="mod")],
        "keys_only": [[s(md.key), s(val)] for val, md in b.get_prefix(P + "p/", keys_only=True)],
        "range": [s(md.key) for _, md in b.get_range(P + "p/a", P + "p/c")],
    }

    # ---------------------------------------------------------------- delete
    d1 = a.delete(P + "p/a")
    d2 = a.delete(P + "p/a")
    gone = b.get(P + "p/a")[0]
    dp = a.delete(P + "p/b", prev_kv=True, return_response=True)
    dpre = a.delete_prefix(P + "p/")
    out["delete"] = {
        "first": d1, "again": d2, "get_after": gone,
        "prev_kvs": [[s(kv.key), s(kv.value)] for kv in dp.prev_kvs], "prefix_deleted": dpre.deleted,
        "prefix_left": [s(md.key) for _, md in b.get_prefix(P + "p/")],
        "rev": rel(dpre.header.revision),
    }  # fmt: skip

    # ------------------------------------------------------------------- txn
    k = P + "k"
    ok, resp = a.transaction(compare=[t.value(k) == "v2"], success=[t.put(k, "v3")], failure=[t.get(k)])
    bad, resp_bad = a.transaction(compare=[t.value(k) == "v2"], success=[t.put(k, "v4")], failure=[t.get(k)])
    _, mk = b.get(k)
    meta_ok, _ = a.transaction(
        compare=[t.version(k) == 3, t.create(k) == base, t.mod(k) == mk.mod_revision, t.version(P + "nope") == 0,
                 t.value(k) != "zzz", t.mod(k) > base, t.create(k) < base + 1],
        success=[], failure=[],
    )  # fmt: skip
    nested_ok, nested = a.transaction(
        compare=[t.version(k) > 0],
        success=[
            t.txn(compare=[t.value(k) == "nope"], success=[t.put(k, "inner-success")],
                  failure=[t.put(P + "n", "inner-failure"), t.get(k)]),
            t.get(P + "n"),
        ],
        failure=[t.put(P + "n", "outer-failure")],
    )  # fmt: skip
    inner = nested[0].response_txn
    out["txn"] = {
        "cas": [ok, [r.WhichOneof("response") if hasattr(r, "WhichOneof") else "range" for r in resp]],
        "cas_fail": [bad, [[s(val), md.version] for val, md in resp_bad[0]]],
        "value_after": s(b.get(k)[0]),
        "compare_meta": meta_ok,
        "nested": {
            "outer": nested_ok, "inner": inner.succeeded,
            "inner_ops": [r.WhichOneof("response") for r in inner.responses],
            "inner_get": [s(kv.value) for kv in inner.responses[1].response_range.kvs],
            "same_txn_get": [[s(val)] for val, _ in nested[1]],
            "n": s(b.get(P + "n")[0]), "k": s(b.get(k)[0]),
        },
    }  # fmt: skip

    # ----------------------------------------------------------------- watch
    w = P + "w"

    def ev(e: Any) -> list[Any]:
        kind = "PUT" if isinstance(e, events_mod.PutEvent) else "DELETE"
        pv = e._event.prev_kv
        return [kind, s(e.key), s(e.value), rel(e.mod_revision), s(pv.value) if pv.key else None]

    it, cancel = b.watch(w, prev_kv=True)  # returns once the member has created the watch
    r1 = a.put(w, "1").header.revision
    a.put(w, "2")
    a.delete(w)
    live = [ev(e) for e in collect(it, cancel, 3)]
    it, cancel = c.watch(w, prev_kv=True, start_revision=r1)
    past = [ev(e) for e in collect(it, cancel, 3)]
    it, cancel = b.watch_prefix(P + "p/", start_revision=base)
    hist = [ev(e)[:4] for e in collect(it, cancel, 6)]
    out["watch"] = {"live": live, "past": past, "prefix_history": hist}

    # ----------------------------------------------------------------- lease
    lease = a.lease(30)
    granted = lease.granted_ttl
    a.put(P + "l", "leased", lease=lease)
    _, ml = b.get(P + "l")
    info = b.get_lease_info(lease.id)
    ka = list(b.refresh_lease(lease.id))
    rev_before = lease.remaining_ttl
    lease.revoke()
    info_after = b.get_lease_info(lease.id)
    out["lease"] = {
        "id_nonzero": lease.id != 0, "granted": granted, "key_lease_is_lease": ml.lease_id == lease.id,
        "ttl_ok": 25 <= info.TTL <= 30, "info_granted": info.grantedTTL, "keys": [s(x) for x in info.keys],
        "keepalive": [[r.ID == lease.id, r.TTL] for r in ka], "remaining_ok": 25 <= rev_before <= 30,
        "after_revoke": {"get": b.get(P + "l")[0], "ttl": info_after.TTL, "keys": [s(x) for x in info_after.keys]},
    }  # fmt: skip

    # lease queries on another member see grants and revokes already acknowledged (etcd
    # forwards them to the leader); 20 rounds, as a lagging follower shows up in ~1 in 5
    stale = 0
    for _ in range(20):
        lx = a.lease(30)
        a.put(P + "lx", "x", lease=lx)
        i1 = b.get_lease_info(lx.id)
        lx.revoke()
        i2 = b.get_lease_info(lx.id)
        stale += (i1.TTL <= 0 or list(i1.keys) != [(P + "lx").encode()]) + (i2.TTL != -1 or len(i2.keys) > 0)
    out["lease"]["stale_time_to_live"] = stale

    # expiry: a 2 s lease, its key watched on another member
    short = a.lease(2)
    short_granted = short.granted_ttl
    it, cancel = b.watch(P + "e", prev_kv=True)
    a.put(P + "e", "expiring", lease=short)
    t0 = time.monotonic()
    evs = collect(it, cancel, 2, timeout=15)
    took = time.monotonic() - t0
    out["lease_expiry"] = {
        "granted": short_granted,
        "events": [[("PUT" if isinstance(e, events_mod.PutEvent) else "DELETE"), s(e.key)] for e in evs],
        "within_2_to_8_s": 1.5 <= took <= 8, "get_after": b.get(P + "e")[0],
        "ttl_after": b.get_lease_info(short.id).TTL,
    }  # fmt: skip
    out["timing"] = {"expiry_s": round(took, 2)}

    # ------------------------------------------------------------------ lock
    log: list[str] = []
    l1 = a.lock("L", ttl=20)
    l2 = b.lock("L", ttl=20)
    log.append(f"1 acquire {l1.acquire(timeout=5)}")
    log.append(f"1 holds {l1.is_acquired()}")
    log.append(f"2 try {l2.acquire(timeout=1)}")
    got: dict[str, Any] = {}

    def contender() -> None:
        t1 = time.monotonic()
        got["ok"] = l2.acquire(timeout=15)
        got["waited"] = time.monotonic() - t1

    th = threading.Thread(target=contender)
    th.start()
    time.sleep(1.0)
    log.append(f"2 waiting {th.is_alive()}")
    log.append(f"1 release {l1.release()}")
    th.join(20)
    log.append(f"2 acquire {got.get('ok')}")
    log.append(f"2 holds {l2.is_acquired()} 1 holds {l1.is_acquired()}")
    lock_value, lock_meta = c.get("/locks/L")
    log.append(f"lock key leased {lock_meta is not None and lock_meta.lease_id != 0}")
    log.append(f"2 release {l2.release()}")
    log.append(f"lock key after {c.get('/locks/L')[0]}")
    out["lock"] = log
    out["timing"]["lock_wait_s"] = round(got.get("waited", -1), 2)

    # -------------------------------------------------- member list / status
    members = sorted(a.members, key=lambda mm: mm.name)
    urls = {u: mm.name for mm in members for u in (*mm.client_urls, *mm.peer_urls)}
    out["members"] = [
        {"name": mm.name, "client": [urls[u] for u in mm.client_urls], "peer": [urls[u] for u in mm.peer_urls],
         "id_nonzero": mm.id != 0}
        for mm in members
    ]  # fmt: skip
    statuses = [x.status() for x in (a, b, c)]
    out["status"] = {
        "leader_agreed": len({st.leader.id for st in statuses if st.leader}) == 1 and all(st.leader for st in statuses),
        "leader_is_member": statuses[0].leader.name in {mm.name for mm in members},
        "version": statuses[0].version, "db_size_positive": all(st.db_size > 0 for st in statuses),
        "raft_index_positive": all(st.raft_index > 0 for st in statuses),
        "raft_term_positive": all(st.raft_term > 0 for st in statuses),
    }  # fmt: skip
    out["raw"] = {"urls": urls}
    return out
