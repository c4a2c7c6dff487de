"""torch modules backed by a remote table: RemoteEmbedding, RemoteEmbeddingBag.

    client = EmbeddingClient("127.0.0.1:50051")
    items = RemoteEmbedding.from_embedding(
        client, "items", nn.Embedding(1000, 32), optimizer=SGD(lr=0.1))
    loss = head(items(batch)).sum()
    loss.backward()          # pushes d loss / d rows; the server steps
    dense_optimizer.step()   # the model's other (local) parameters

The optimizer of a remote table lives on the server: `backward()` pushes the
gradient of the looked-up rows and the server applies one optimizer step per
push. No local optimizer step is needed for these rows, and the modules own
no Parameter to give a torch optimizer (`parameters()` is empty). Each
forward call pushes its own gradient, so a module called twice in one
forward pass makes two server steps (the same result for SGD; for stateful
optimizers, look up all indices in one call as nn.Embedding would sum them).

Forward under `torch.no_grad()` (inference) only looks up.
"""

import numpy as np
import torch
from torch import nn

from embedding_client.client import DEFAULT_BAG_MODE, DEFAULT_LOOKUP_DTYPE


def _as_float32_tensor(rows, like):
    """Returns a numpy lookup result as a float32 tensor on `like`'s device."""
    out = torch.from_numpy(rows.astype(np.float32, copy=False))
    return out.to(like.device) if like.device.type != "cpu" else out


def _grad_array(grad):
    return grad.detach().to("cpu", torch.float32).contiguous().numpy()


class _Lookup(torch.autograd.Function):
    """Forward: Lookup. Backward: PushGradients (the server's step)."""

    @staticmethod
    def forward(ctx, anchor, module, indices):
        index_array = indices.detach().cpu().numpy()
        ctx.module, ctx.indices = module, index_array
        rows = module.client.lookup(module.table, index_array,
                                    dtype=module.wire_dtype)
        return _as_float32_tensor(rows, indices)

    @staticmethod
    def backward(ctx, grad_output):
        module = ctx.module
        module.client.push_gradients(module.table, ctx.indices,
                                     _grad_array(grad_output),
                                     learning_rate=module.learning_rate)
        return None, None, None


class _LookupBag(torch.autograd.Function):
    """Forward: LookupBag. Backward: PushBagGradients."""

    @staticmethod
    def forward(ctx, anchor, module, indices, offsets, per_sample_weights):
        bag = dict(
            indices=indices.detach().cpu().numpy(),
            offsets=None if offsets is None else offsets.detach().cpu().numpy(),
            mode=module.mode,
            per_sample_weights=(None if per_sample_weights is None else
                                _grad_array(per_sample_weights)),
            include_last_offset=module.include_last_offset)
        rows = module.client.lookup_bag(
            module.table, dtype=module.wire_dtype,
            return_max_indices=module.mode == "max", **bag)
        if module.mode == "max":
            rows, bag["max_indices"] = rows
        ctx.module, ctx.bag = module, bag
        return _as_float32_tensor(rows, indices)

    @staticmethod
    def backward(ctx, grad_output):
        module = ctx.module
        module.client.push_bag_gradients(
            module.table, grad=_grad_array(grad_output),
            learning_rate=module.learning_rate, **ctx.bag)
        return None, None, None, None, None


class _RemoteTable(nn.Module):
    """What both modules share: the table, its spec and the autograd anchor."""

    def __init__(self, client, table, *, wire_dtype=DEFAULT_LOOKUP_DTYPE,
                 learning_rate=None):
        super().__init__()
        info = client.get_table(table)
        self.client = client
        self.table = table
        self.num_embeddings = info.num_embeddings
        self.embedding_dim = info.embedding_dim
        self.padding_idx = info.padding_idx
        self.max_norm = info.max_norm
        self.norm_type = info.norm_type
        self.scale_grad_by_freq = info.scale_grad_by_freq
        self.wire_dtype = wire_dtype
        self.learning_rate = learning_rate
        # Autograd calls a Function's backward only when an input requires
        # grad; this empty tensor is that input. It is not a Parameter, so
        # no local optimizer sees it.
        self._anchor = torch.empty(0, requires_grad=True)

    @classmethod
    def create(cls, client, table, num_embeddings, embedding_dim, *,
               module_options=None, **table_options):
        """Creates the table (EmbeddingClient.create_table arguments)."""
        client.create_table(table, num_embeddings, embedding_dim,
                            **table_options)
        return cls(client, table, **(module_options or {}))

    @classmethod
    def from_embedding(cls, client, table, embedding, *, optimizer=None,
                       seed=0, **module_options):
        """Creates the table from a local nn.Embedding(Bag): spec, weights."""
        upload_embedding(client, table, embedding, optimizer=optimizer,
                         seed=seed)
        return cls(client, table, **module_options)

    def info(self):
        """Returns the table's current TableInfo."""
        return self.client.get_table(self.table)

    def to_embedding(self, sparse=False):
        """Returns a local nn.Embedding holding the table's current rows."""
        return download_embedding(self.client, self.table, sparse=sparse)

    def extra_repr(self):
        return (f"{self.table!r}, {self.num_embeddings}, "
                f"{self.embedding_dim}, client={self.client.address!r}")


class RemoteEmbedding(_RemoteTable):
    """nn.Embedding whose table lives on an embedding_server.

    forward(input) takes an index tensor of any shape and returns
    `input.shape + (embedding_dim,)`; backward pushes the gradient.
    wire_dtype "float16"/"bfloat16" halves the lookup bytes (rows are
    rounded); learning_rate overrides the table's for this module's pushes.
    """

    def forward(self, input):
        return _Lookup.apply(self._anchor, self, input)


class RemoteEmbeddingBag(_RemoteTable):
    """nn.EmbeddingBag whose table lives on an embedding_server.

    forward(input, offsets=None, per_sample_weights=None) as
    nn.EmbeddingBag: 1-D input with offsets, or 2-D (bags, n) input.
    per_sample_weights get no gradient (they must not require grad).
    """

    def __init__(self, client, table, mode=DEFAULT_BAG_MODE,
                 include_last_offset=False, **options):
        super().__init__(client, table, **options)
        self.mode = mode
        self.include_last_offset = include_last_offset

    @classmethod
    def from_embedding(cls, client, table, embedding, **options):
        """As RemoteEmbedding's; mode and include_last_offset default to
        the local nn.EmbeddingBag's."""
        for name in ("mode", "include_last_offset"):
            if hasattr(embedding, name):
                options.setdefault(name, getattr(embedding, name))
        return super().from_embedding(client, table, embedding, **options)

    def forward(self, input, offsets=None, per_sample_weights=None):
        if per_sample_weights is not None and per_sample_weights.requires_grad:
            raise NotImplementedError(
                "RemoteEmbeddingBag computes no gradient for "
                "per_sample_weights; pass them detached")
        return _LookupBag.apply(self._anchor, self, input, offsets,
                                per_sample_weights)

    def extra_repr(self):
        return f"{super().extra_repr()}, mode={self.mode!r}"


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
    """Returns a local nn.Embedding with the spec and rows of `table`."""
    info = client.get_table(table)
    rows = client.read_rows(table)
    return nn.Embedding(
        info.num_embeddings, info.embedding_dim,
        padding_idx=info.padding_idx, max_norm=info.max_norm,
        norm_type=info.norm_type, scale_grad_by_freq=info.scale_grad_by_freq,
        sparse=sparse, _weight=torch.from_numpy(rows))


__all__ = ["RemoteEmbedding", "RemoteEmbeddingBag", "upload_embedding",
           "download_embedding"]
