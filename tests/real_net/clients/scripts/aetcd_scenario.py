"""aetcd (asyncio fork of etcd3; no TLS support) against the plain endpoints on the command line.

Usage: aetcd_scenario.py URL,URL,URL. Prints one JSON object with the same keys
and the same normalisation as _sync_scenario.py (revisions relative to the first
write, URLs as member names), so the test can hold all three libraries to one
expectation. `a` writes through the first endpoint; `b` and `c` read and watch
through the others.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import aetcd
from aetcd import rtypes

P = b"/scenario/"


def s(b: bytes | None) -> str | None:
    return None if b is None else b.decode()


async def collect(watch: Any, n: int, timeout: float = 10.0) -> list[Any]:
    got: list[Any] = []

    async def take() -> None:
        async for e in watch:
            got.append(e)
            if len(got) == n:
                return

    try:
        await asyncio.wait_for(take(), timeout)
    except asyncio.TimeoutError:
        pass
    await watch.cancel()
    return got


async def run(a: aetcd.Client, b: aetcd.Client, c: aetcd.Client) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t = a.transactions

    # ------------------------------------------------------------- put / get
    base = (await a.put(P + b"k", b"v1")).header.revision

    def rel(rev: int) -> int:
        return rev - base

    g = await b.get(P + b"k")
    prev = await a.put(P + b"k", b"v2", prev_kv=True)
    g2 = await b.get(P + b"k")
    missing = await b.get(P + b"missing")
    out["put_get"] = {
        "value": s(g.value), "create": rel(g.create_revision), "mod": rel(g.mod_revision), "version": g.version,
        "lease": g.lease, "prev_kv": s(prev.prev_kv.value), "after": [s(g2.value), rel(g2.mod_revision), g2.version],
        "missing": [missing, missing], "serving_member_differs": g.header.member_id != prev.header.member_id,
    }  # fmt: skip

    # ------------------------------------------------------------ prefix get
    for x in b"cab":
        await a.put(P + b"p/" + bytes([x]), bytes([x]).upper())
    await a.put(P + b"pz", b"outside")
    out["prefix"] = {
        "asc": [[s(kv.key), s(kv.value)] for kv in await b.get_prefix(P + b"p/")],
        "desc": [s(kv.key) for kv in await b.get_prefix(P + b"p/", sort_order="descend")],
        "by_mod": [s(kv.key) for kv in await b.get_prefix(P + b"p/", sort_order="ascend", sort_target="mod")],
        "keys_only": [[s(kv.key), s(kv.value)] for kv in await b.get_prefix(P + b"p/", keys_only=True)],
        "range": [s(kv.key) for kv in await b.get_range(P + b"p/a", P + b"p/c")],
    }

    # ---------------------------------------------------------------- delete
    d1 = await a.delete(P + b"p/a")
    d2 = await a.delete(P + b"p/a")
    gone = await b.get(P + b"p/a")
    dp = await a.delete(P + b"p/b", prev_kv=True)
    dpre = await a.delete_prefix(P + b"p/")
    out["delete"] = {
        "first": bool(d1), "again": bool(d2), "get_after": gone,
        "prev_kvs": [[s(dp.prev_kv.key), s(dp.prev_kv.value)]] if dp.prev_kv else [],
        "prefix_deleted": dpre.deleted,
        "prefix_left": [s(kv.key) for kv in await b.get_prefix(P + b"p/")],
        "rev": rel(dpre.header.revision),
    }  # fmt: skip

    # ------------------------------------------------------------------- txn
    k = P + b"k"
    ok, resp = await a.transaction(compare=[t.value(k) == b"v2"], success=[t.put(k, b"v3")], failure=[t.get(k)])
    bad, resp_bad = await a.transaction(compare=[t.value(k) == b"v2"], success=[t.put(k, b"v4")], failure=[t.get(k)])
    mk = await b.get(k)
    meta_ok, _ = await a.transaction(
        compare=[t.version(k) == 3, t.create(k) == base, t.mod(k) == mk.mod_revision, t.version(P + b"nope") == 0,
                 t.value(k) != b"zzz", t.mod(k) > base, t.create(k) < base + 1],
        success=[], failure=[],
    )  # fmt: skip
    nested_ok, nested = await a.transaction(
        compare=[t.version(k) > 0],
        success=[
            t.txn(compare=[t.value(k) == b"nope"], success=[t.put(k, b"inner-success")],
                  failure=[t.put(P + b"n", b"inner-failure"), t.get(k)]),
            t.get(P + b"n"),
        ],
        failure=[t.put(P + b"n", b"outer-failure")],
    )  # fmt: skip
    inner = nested[0].response_txn
    out["txn"] = {
        "cas": [ok, [r.WhichOneof("response") if hasattr(r, "WhichOneof") else "range" for r in resp]],
        "cas_fail": [bad, [[s(val), md.version] for val, md in resp_bad[0]]],
        "value_after": s((await b.get(k)).value),
        "compare_meta": meta_ok,
        "nested": {
            "outer": nested_ok, "inner": inner.succeeded,
            "inner_ops": [r.WhichOneof("response") for r in inner.responses],
            "inner_get": [s(kv.value) for kv in inner.responses[1].response_range.kvs],
            "same_txn_get": [[s(val)] for val, _ in nested[1]],
            "n": s((await b.get(P + b"n")).value), "k": s((await b.get(k)).value),
        },
    }  # fmt: skip

    # ----------------------------------------------------------------- watch
    w = P + b"w"

    def ev(e: rtypes.Event) -> list[Any]:
        return [str(e.kind.value if hasattr(e.kind, "value") else e.kind), s(e.kv.key), s(e.kv.value),
                rel(e.kv.mod_revision), s(e.prev_kv.value) if e.prev_kv and e.prev_kv.key else None]  # fmt: skip

    watch = await b.watch(w, prev_kv=True)  # returns once the member has created the watch
    r1 = (await a.put(w, b"1")).header.revision
    await a.put(w, b"2")
    await a.delete(w)
    live = [ev(e) for e in await collect(watch, 3)]
    past = [ev(e) for e in await collect(await c.watch(w, prev_kv=True, start_revision=r1), 3)]
    hist = [ev(e)[:4] for e in await collect(await b.watch_prefix(P + b"p/", start_revision=base), 6)]
    out["watch"] = {"live": live, "past": past, "prefix_history": hist}

    # ----------------------------------------------------------------- lease
    lease = await a.lease(30)
    granted = await lease.granted_ttl()
    await a.put(P + b"l", b"leased", lease=lease)
    gl = await b.get(P + b"l")
    info = await b.get_lease_info(lease.id)
    ka = await b.refresh_lease(lease.id)
    remaining = await lease.remaining_ttl()
    await lease.revoke()
    info_after = await b.get_lease_info(lease.id)
    out["lease"] = {
        "id_nonzero": lease.id != 0, "granted": granted, "key_lease_is_lease": gl.lease == lease.id,
        "ttl_ok": 25 <= info.TTL <= 30, "info_granted": info.grantedTTL, "keys": [s(x) for x in info.keys],
        "keepalive": [[ka.ID == lease.id, ka.TTL]], "remaining_ok": 25 <= remaining <= 30,
        "after_revoke": {"get": await b.get(P + b"l"), "ttl": info_after.TTL, "keys": [s(x) for x in info_after.keys]},
    }  # fmt: skip

    # lease queries on another member see grants and revokes already acknowledged (etcd
    # forwards them to the leader); 20 rounds, as a lagging follower shows up in ~1 in 5
    stale = 0
    for _ in range(20):
        lx = await a.lease(30)
        await a.put(P + b"lx", b"x", lease=lx)
        i1 = await b.get_lease_info(lx.id)
        await lx.revoke()
        i2 = await b.get_lease_info(lx.id)
        stale += (i1.TTL <= 0 or list(i1.keys) != [P + b"lx"]) + (i2.TTL != -1 or len(i2.keys) > 0)
    out["lease"]["stale_time_to_live"] = stale

    short = await a.lease(2)
    short_granted = await short.granted_ttl()
    watch = await b.watch(P + b"e", prev_kv=True)
    await a.put(P + b"e", b"expiring", lease=short)
    t0 = time.monotonic()
    evs = await collect(watch, 2, timeout=15)
    took = time.monotonic() - t0
    out["lease_expiry"] = {
        "granted": short_granted,
        "events": [[ev(e)[0], s(e.kv.key)] for e in evs],
        "within_2_to_8_s": 1.5 <= took <= 8, "get_after": await b.get(P + b"e"),
        "ttl_after": (await b.get_lease_info(short.id)).TTL,
    }  # fmt: skip
    out["timing"] = {"expiry_s": round(took, 2)}

    # ------------------------------------------------------------------ lock
    log: list[str] = []
    lk = b"/locks/L"
    l1 = a.lock(lk, ttl=20)
    l2 = b.lock(lk, ttl=20)
    log.append(f"1 acquire {await l1.acquire(timeout=5)}")
    log.append(f"1 holds {await l1.is_acquired()}")
    log.append(f"2 try {await l2.acquire(timeout=1)}")
    t1 = time.monotonic()
    contender = asyncio.create_task(l2.acquire(timeout=15))
    await asyncio.sleep(1.0)
    log.append(f"2 waiting {not contender.done()}")
    log.append(f"1 release {await l1.release()}")
    got = await asyncio.wait_for(contender, 20)
    waited = time.monotonic() - t1
    log.append(f"2 acquire {got}")
    log.append(f"2 holds {await l2.is_acquired()} 1 holds {await l1.is_acquired()}")
    held = await c.get(lk)
    log.append(f"lock key leased {held is not None and held.lease != 0}")
    log.append(f"2 release {await l2.release()}")
    log.append(f"lock key after {await c.get(lk)}")
    out["lock"] = log
    out["timing"]["lock_wait_s"] = round(waited, 2)

    # -------------------------------------------------- member list / status
    members = sorted([m async for m in a.members()], key=lambda mm: mm.name)
    urls = {u: mm.name for mm in members for u in (*mm.client_urls, *mm.peer_urls)}
    out["members"] = [
        {"name": mm.name, "client": [urls[u] for u in mm.client_urls], "peer": [urls[u] for u in mm.peer_urls],
         "id_nonzero": mm.id != 0}
        for mm in members
    ]  # fmt: skip
    statuses = [await x.status() for x in (a, b, c)]
    out["status"] = {
        "leader_agreed": len({st.leader.id for st in statuses if st.leader}) == 1 and all(st.leader for st in statuses),
        "leader_is_member": statuses[0].leader.name in {mm.name for mm in members},
        "version": statuses[0].version, "db_size_positive": all(st.db_size > 0 for st in statuses),
        "raft_index_positive": all(st.raft_index > 0 for st in statuses),
        "raft_term_positive": all(st.raft_term > 0 for st in statuses),
    }  # fmt: skip
    out["raw"] = {"urls": urls}
    return out


async def amain() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoints")
    args = ap.parse_args()
    clients = []
    for url in args.endpoints.split(","):
        u = urlsplit(url)
        clients.append(aetcd.Client(host=u.hostname, port=u.port, timeout=10))
    try:
        out = await run(*clients)
    finally:
        for cl in clients:
            await cl.close()
    out["library"] = {"name": "aetcd", "version": getattr(aetcd, "__version__", "?")}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    asyncio.run(amain())
