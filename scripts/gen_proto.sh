#!/bin/sh
# Regenerate real_net/proto/*_pb2*.py from real_net/proto/*.proto.
#
# The generated modules are committed, so running raftkv needs only the
# protobuf and grpcio runtimes; run this (it needs grpcio-tools, in the dev
# extra) after editing a .proto file. Paths are relative to the repository
# root so the generated imports read `from real_net.proto import kv_pb2`.
#
# The generated code checks its runtimes when imported: it needs protobuf at
# least the version of the protoc that made it and grpcio at least the
# grpcio-tools version (both are printed at the end, and written in the
# generated files' headers); pyproject.toml's pins must not be lower.
#
# Usage: scripts/gen_proto.sh [PYTHON]   (default: .venv/bin/python, else python3)
set -eu
cd "$(dirname "$0")/.."
PY=${1:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
rm -f real_net/proto/*_pb2.py real_net/proto/*_pb2.pyi real_net/proto/*_pb2_grpc.py
# Messages (with .pyi type stubs) for every file; gRPC stubs only where services are.
"$PY" -m grpc_tools.protoc --proto_path=. --python_out=. --pyi_out=. \
    real_net/proto/kv.proto real_net/proto/auth.proto real_net/proto/rpc.proto
"$PY" -m grpc_tools.protoc --proto_path=. --grpc_python_out=. real_net/proto/rpc.proto
echo "generated with $("$PY" -m grpc_tools.protoc --version) (grpcio-tools $("$PY" -c 'import importlib.metadata as m; print(m.version("grpcio-tools"))'))"
