"""Python client of the Embedding Service: remote torch.nn.Embedding tables.

    from embedding_client import EmbeddingClient, SGD, RemoteEmbedding

    client = EmbeddingClient("127.0.0.1:50051")
    client.create_table("items", 1000, 32, optimizer=SGD(lr=0.1))
    rows = client.lookup("items", [[1, 2], [3, 4]])   # numpy (2, 2, 32)
    items = RemoteEmbedding(client, "items")           # a torch module

    cluster = EmbeddingClient(["a:50051", "b:50051", "c:50051"])  # shards
    secure = EmbeddingClient("a:50051", tls=TlsOptions(ca_file="ca.pem"),
                             token=token)  # token None: $EMBEDDING_TOKEN

Modules:
- client:  EmbeddingClient, numpy in and out, one method per RPC;
- sharded: ShardedClient, what EmbeddingClient(list of addresses) makes:
           the same methods over a table split across servers (routing:
           where rows live; bags: the server's bag arithmetic, client-side);
- options: optimizer / initializer dataclasses (OPTIMIZERS lists the
           optimizers), TableInfo, PushResult, CheckpointInfo,
           SavedCheckpoint, Dynamic and DynamicStats (dynamic tables);
- security: TlsOptions and the bearer token (token=, $EMBEDDING_TOKEN);
- errors:  EmbeddingError and one subclass per gRPC code;
- nn:      RemoteEmbedding, RemoteEmbeddingBag and upload/download helpers
           (imports torch, so it is loaded on first use).
"""

from embedding_client.client import EmbeddingClient
from embedding_client.errors import (AlreadyExistsError, CancelledError,
                                     DeadlineExceededError, EmbeddingError,
                                     FailedPreconditionError, InternalError,
                                     InvalidArgumentError, NotFoundError,
                                     PermissionDeniedError,
                                     ResourceExhaustedError,
                                     UnauthenticatedError, UnavailableError)
from embedding_client.options import (OPTIMIZERS, SGD, Adagrad,
                                      CheckpointInfo, Constant, Dynamic,
                                      DynamicStats, Ftrl, Normal,
                                      OptimizerKind, PushResult,
                                      RowwiseAdagrad, SavedCheckpoint,
                                      SparseAdam, TableInfo, Uniform,
                                      optimizer_kind)
from embedding_client.security import TOKEN_ENVIRONMENT_VARIABLE, TlsOptions

__version__ = "0.1.0"

_TORCH_NAMES = ("RemoteEmbedding", "RemoteEmbeddingBag", "RemoteOptimizer",
                "upload_embedding",
                "download_embedding")


def __getattr__(name):
    # The torch modules load lazily: a numpy-only user never imports torch.
    if name in _TORCH_NAMES:
        from embedding_client import nn
        return getattr(nn, name)
    raise AttributeError(f"module 'embedding_client' has no attribute {name!r}")


__all__ = ["EmbeddingClient", "EmbeddingError", "InvalidArgumentError",
           "NotFoundError", "AlreadyExistsError", "ResourceExhaustedError",
           "FailedPreconditionError", "UnavailableError",
           "DeadlineExceededError", "CancelledError", "UnauthenticatedError",
           "PermissionDeniedError", "InternalError", "TlsOptions",
           "TOKEN_ENVIRONMENT_VARIABLE", "SGD",
           "Adagrad",
           "SparseAdam", "RowwiseAdagrad", "Ftrl", "OPTIMIZERS",
           "OptimizerKind", "optimizer_kind", "Normal", "Uniform", "Constant",
           "TableInfo", "PushResult", "CheckpointInfo", "SavedCheckpoint",
           "Dynamic", "DynamicStats", *_TORCH_NAMES]
