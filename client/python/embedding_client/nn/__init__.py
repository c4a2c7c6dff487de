"""torch modules backed by a remote table: RemoteEmbedding, RemoteEmbeddingBag.

    client = EmbeddingClient("127.0.0.1:50051")
    items = RemoteEmbedding.from_embedding(
        client, "items", nn.Embedding(1000, 32), optimizer=SGD(lr=0.1))
    loss = head(items(batch)).sum()
    loss.backward()          # pushes d loss / d rows; the server steps
    dense_optimizer.step()   # the model's other (local) parameters

The optimizer of a remote table lives on the server. Two training modes:
- push="backward" (default): each backward() pushes the gradient of the
  rows looked up and the server applies one optimizer step per push; a
  module called twice in one forward pass makes two steps.
- push="step": backward() accumulates the sparse gradient locally, in the
  module's `weight.grad`, as nn.Embedding(sparse=True) does, and
  RemoteOptimizer.step() pushes it once: gradient accumulation, several
  calls per forward pass and gradient clipping give what the local model
  gives.

Frozen tables (requires_grad_(False) on the module or any parent, or
forward under torch.no_grad()) push nothing; eval() freezes nothing, as for
nn.Embedding. state_dict() holds the rows (state.py); pickling keeps the
addresses and table and reconnects in the new process; copy.deepcopy
shares the client and the remote table.

Modules: modules (RemoteEmbedding, RemoteEmbeddingBag, local_parameters),
optim (RemoteOptimizer), functional (embedding, embedding_bag), state
(state_dict contents, remote_tables, rebuild), transfer (upload/download).
"""

from embedding_client.nn import functional
from embedding_client.nn.modules import (STATE_DICT_MAX_BYTES, RemoteEmbedding,
                                         RemoteEmbeddingBag, local_parameters,
                                         remote_modules)
from embedding_client.nn.optim import RemoteOptimizer
from embedding_client.nn.state import (StateDictTooLargeError,
                                       StateDictUnavailableError, rebuild,
                                       remote_tables)
from embedding_client.nn.transfer import download_embedding, upload_embedding

__all__ = ["RemoteEmbedding", "RemoteEmbeddingBag", "RemoteOptimizer",
           "local_parameters", "remote_modules", "functional",
           "upload_embedding", "download_embedding", "remote_tables",
           "rebuild", "StateDictTooLargeError", "StateDictUnavailableError",
           "STATE_DICT_MAX_BYTES"]
