"""The real world for the one core: TLS sockets, files on disk, etcd's client API.

real_net drives ``kv`` (DESIGN.md) exactly as ``sim`` does, with asyncio instead of
simpy: certificates (``certs``), a durable log (``wal``, ``disk_storage``), the peer
transport (``transport``), and etcd's v3 API for clients.
"""
