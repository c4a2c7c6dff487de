"""Builds the package, generating the gRPC stubs into embedding_client/_proto.

The stubs are never committed: `build_py` runs protoc (and the
grpc_python_plugin) on ../../proto, or on $EMBEDDING_PROTO_DIR, writing
embedding_client/_proto/embedding/v1/*.py into the build. Offline install:

    python3 -m pip install --no-deps --no-build-isolation client/python

Tools: $PROTOC or `protoc`, $GRPC_PYTHON_PLUGIN or `grpc_python_plugin`
(Debian: protobuf-compiler, protobuf-compiler-grpc).
"""

import os
import pathlib
import re
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

_HERE = pathlib.Path(__file__).resolve().parent
_PROTO = pathlib.Path("embedding") / "v1" / "embedding_service.proto"


def _tool(env, name):
    path = os.environ.get(env) or shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} not found: install it or set ${env}")
    return path


def generate_stubs(package_dir):
    """Writes the stubs under package_dir/_proto, importable as a package."""
    proto_dir = pathlib.Path(
        os.environ.get("EMBEDDING_PROTO_DIR", _HERE.parents[1] / "proto"))
    if not (proto_dir / _PROTO).exists():
        raise RuntimeError(f"{proto_dir / _PROTO} not found: set "
                           "$EMBEDDING_PROTO_DIR to the repository's proto/")
    out = pathlib.Path(package_dir) / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [_tool("PROTOC", "protoc"), f"--proto_path={proto_dir}",
         f"--python_out={out}", f"--grpc_python_out={out}",
         "--plugin=protoc-gen-grpc_python="
         + _tool("GRPC_PYTHON_PLUGIN", "grpc_python_plugin"),
         str(proto_dir / _PROTO)], check=True)
    for package in (out, out / "embedding", out / "embedding" / "v1"):
        (package / "__init__.py").touch()
    # The grpc stub imports its messages as top-level `embedding.v1`; inside
    # this package they are a sibling module.
    grpc_stub = out / "embedding" / "v1" / "embedding_service_pb2_grpc.py"
    grpc_stub.write_text(re.sub(
        r"^from embedding\.v1 import ", "from . import ",
        grpc_stub.read_text(), flags=re.MULTILINE))


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        generate_stubs(pathlib.Path(self.build_lib) / "embedding_client")


setup(cmdclass={"build_py": BuildWithStubs})
