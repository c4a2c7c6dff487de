"""Moving a whole table between a local nn.Embedding(Bag) and a server."""

import torch
from torch import nn

from embedding_client.errors import FailedPreconditionError


def upload_embedding(client, table, embedding, *, optimizer=None, seed=0,
                     **table_options):
    """Creates `table` with the spec and weights of a local nn.Embedding(Bag).

    Weights larger than one message are uploaded in chunks. Returns TableInfo.
    """
    return client.create_table(
        table, embedding.num_embeddings, embedding.embedding_dim,
        padding_idx=embedding.padding_idx, max_norm=embedding.max_norm,
        norm_type=embedding.norm_type,
        scale_grad_by_freq=embedding.scale_grad_by_freq,
        optimizer=optimizer, seed=seed,
        weights=embedding.weight.detach().cpu().numpy(), **table_options)


def download_embedding(client, table, *, sparse=False):
    """Returns a local nn.Embedding with the spec and rows of `table`.
    Raises FailedPreconditionError for a dynamic table (its rows cannot be
    read all at once yet, and nn.Embedding takes no int64 ids)."""
    info = client.get_table(table)
    if info.dynamic is not None:
        raise FailedPreconditionError(
            f"table {table} is dynamic: an nn.Embedding of it needs rows "
            "[0, num_embeddings), and a dynamic table has none (reading "
            "every row it holds is not served yet)")
    rows = client.read_rows(table)
    return nn.Embedding(
        info.num_embeddings, info.embedding_dim,
        padding_idx=info.padding_idx, max_norm=info.max_norm,
        norm_type=info.norm_type, scale_grad_by_freq=info.scale_grad_by_freq,
        sparse=sparse, _weight=torch.from_numpy(rows))


__all__ = ["upload_embedding", "download_embedding"]
