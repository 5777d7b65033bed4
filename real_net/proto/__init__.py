"""etcd's v3 API as protobuf messages and gRPC stubs (generated; see scripts/gen_proto.sh).

The ``*.proto`` files here are raftkv's own transcription of etcd's
``etcdserverpb/rpc.proto``, ``mvccpb/kv.proto`` and ``authpb/auth.proto``:
same packages, services, messages and field numbers, so etcd clients and
raftkv agree on every byte. The ``*_pb2*.py`` modules are generated from them
and committed, so a deployment needs only the grpcio and protobuf runtimes.
Nothing outside ``real_net.convert`` and ``real_net.grpc_server`` should need
to touch these messages: the rest of raftkv speaks ``kv.api``.
"""
