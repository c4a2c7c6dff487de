"""Finds the protobuf/gRPC stubs generated from proto/embedding/v1.

Generated code is never committed. Two places can hold it:
- `embedding.v1` on sys.path: the CMake build writes it to build/python
  (ctest and the README put that directory on PYTHONPATH);
- `embedding_client._proto.embedding.v1`: written into the package by
  `pip install client/python` (see setup.py).
The build's copy wins when both exist, so a process that also imports
`embedding.v1` directly shares one copy of the descriptors.
"""

try:
    from embedding.v1 import embedding_service_pb2 as pb
    from embedding.v1 import embedding_service_pb2_grpc as pb_grpc
except ImportError:
    try:
        from embedding_client._proto.embedding.v1 import (
            embedding_service_pb2 as pb)
        from embedding_client._proto.embedding.v1 import (
            embedding_service_pb2_grpc as pb_grpc)
    except ImportError as error:
        raise ImportError(
            "embedding_client cannot find the generated stubs: build the "
            "project (cmake --build build) and put build/python on "
            "PYTHONPATH, or install the package with "
            "`pip install --no-deps --no-build-isolation client/python`"
        ) from error

__all__ = ["pb", "pb_grpc"]
