"""Functional forms of the remote lookups, as torch.nn.functional's.

    from embedding_client.nn import functional as RF

    rows = RF.embedding(ids, client, "items")          # F.embedding
    bags = RF.embedding_bag(ids, client, "items", offsets, mode="sum")
    loss(rows, bags).backward()   # pushes both gradients; the server steps

Where F.embedding takes the weight, these take the client and the table:
the spec (padding_idx, max_norm, norm_type, scale_grad_by_freq) is the
table's, applied by the server. backward() pushes the gradient of the rows
looked up (one server step per call), unless grad is off (torch.no_grad(),
or requires_grad=False), as RemoteEmbedding(push="backward") does.

The autograd Functions here also serve the modules, in both their modes:
- push="backward": backward() pushes, the server steps;
- push="step": backward() returns the sparse gradient torch would give
  nn.Embedding(sparse=True).weight, which accumulates in the module's
  `weight.grad` until RemoteOptimizer.step() pushes it.
"""

import dataclasses
from typing import Optional

import numpy as np
import torch
from torch.nn import functional as F

from embedding_client.client import DEFAULT_BAG_MODE, DEFAULT_LOOKUP_DTYPE

PUSH_ON_BACKWARD = "backward"
PUSH_ON_STEP = "step"
PUSH_MODES = (PUSH_ON_BACKWARD, PUSH_ON_STEP)


@dataclasses.dataclass(frozen=True)
class _Binding:
    """What a lookup needs to know of its table; the modules have the same
    attributes (and, for push="step", the spec's)."""
    client: object
    table: str
    wire_dtype: str = DEFAULT_LOOKUP_DTYPE
    learning_rate: Optional[float] = None
    push: str = PUSH_ON_BACKWARD

    def run_lookup(self, request, lookup):
        """Returns lookup()'s rows (a module may have them prefetched)."""
        del request
        return lookup()

    def run_push(self, send):
        """Sends a push (a module may queue it, see pipeline.py)."""
        send()


def _as_float32_tensor(rows, like):
    """Returns a numpy lookup result as a float32 tensor on `like`'s device."""
    out = torch.from_numpy(rows.astype(np.float32, copy=False))
    return out.to(like.device) if like.device.type != "cpu" else out


def _grad_array(grad):
    return grad.detach().to("cpu", torch.float32).contiguous().numpy()


def _index_tensor(indices):
    return torch.as_tensor(np.ascontiguousarray(indices), dtype=torch.int64)


def _table_grad(remote, distinct, values):
    """The sparse gradient of the table's shape holding `values` (one row
    per distinct row index), without the padding row, as torch leaves it
    out of nn.Embedding(sparse=True)'s gradient."""
    if remote.padding_idx is not None:
        kept = distinct != remote.padding_idx
        distinct, values = distinct[kept], values[kept]
    return torch.sparse_coo_tensor(
        distinct.unsqueeze(0), values,
        (remote.num_embeddings, remote.embedding_dim))


def _weight_grad(remote, indices, output_of, grad_output):
    """The gradient torch gives nn.Embedding(Bag)(sparse=True).weight.

    torch computes it, on a stand-in weight holding only the distinct rows
    looked up (zeros: the gradients of a lookup, a sum and a mean do not
    depend on the rows), so padding_idx, scale_grad_by_freq, per-sample
    weights and offsets are torch's own. (The stand-in's gradient is dense:
    torch has no sparse gradient with scale_grad_by_freq; the dense one is
    the same numbers.) output_of(local_indices, local_padding_idx,
    stand_in) is the module's output computed from the stand-in. Returns a
    sparse COO tensor of the table's shape.
    """
    index_tensor = _index_tensor(indices)
    distinct, local = torch.unique(index_tensor.reshape(-1),
                                   return_inverse=True)
    padding = None  # Rows that are not looked up need no padding_idx.
    if remote.padding_idx is not None:
        hits = (distinct == remote.padding_idx).nonzero()
        padding = int(hits[0]) if len(hits) else None
    stand_in = torch.zeros(len(distinct), remote.embedding_dim,
                           requires_grad=True)
    with torch.enable_grad():  # backward() runs with grad off.
        output = output_of(local.reshape(index_tensor.shape), padding,
                           stand_in)
        (grad,) = torch.autograd.grad(
            output, stand_in, grad_output.detach().to("cpu", torch.float32))
    return _table_grad(remote, distinct, grad)


def _max_bag_weight_grad(remote, max_indices, grad_output):
    """The weight gradient of mode="max" bags: each bag's gradient goes, per
    column, to the row that held the maximum (max_indices, -1 for an empty
    bag), as torch routes it. Only push="step" needs it, which dynamic
    tables (empty bags marked INT64_MIN) do not take."""
    max_indices = _index_tensor(max_indices)
    grad = grad_output.detach().to("cpu", torch.float32)
    hit = max_indices >= 0
    distinct, local = torch.unique(max_indices[hit], return_inverse=True)
    columns = torch.arange(remote.embedding_dim).expand_as(max_indices)[hit]
    values = torch.zeros(len(distinct), remote.embedding_dim)
    values.index_put_((local, columns), grad[hit], accumulate=True)
    return _table_grad(remote, distinct, values)


def _lookup_weight_grad(remote, indices, grad_output):
    def output_of(local, padding, stand_in):
        return F.embedding(local, stand_in, padding_idx=padding,
                           scale_grad_by_freq=remote.scale_grad_by_freq)

    return _weight_grad(remote, indices, output_of, grad_output)


def _bag_weight_grad(remote, bag, grad_output):
    if remote.mode == "max":
        return _max_bag_weight_grad(remote, bag["max_indices"], grad_output)

    def output_of(local, padding, stand_in):
        offsets, weights = bag["offsets"], bag["per_sample_weights"]
        return F.embedding_bag(
            local, stand_in,
            None if offsets is None else _index_tensor(offsets),
            mode=remote.mode, scale_grad_by_freq=remote.scale_grad_by_freq,
            per_sample_weights=(None if weights is None else
                                torch.from_numpy(weights)),
            include_last_offset=remote.include_last_offset,
            padding_idx=padding)

    return _weight_grad(remote, bag["indices"], output_of, grad_output)


def lookup_request(remote, indices):
    """(request, lookup) of a Lookup: the numpy arrays that name it, and
    the call that answers it."""
    index_array = indices.detach().cpu().numpy()
    return (index_array,), lambda: remote.client.lookup(
        remote.table, index_array, dtype=remote.wire_dtype)


_BAG_ARRAYS = ("indices", "offsets", "per_sample_weights")


def bag_request(remote, indices, offsets, per_sample_weights):
    """(request, lookup) of a LookupBag, as lookup_request's."""
    request = (indices.detach().cpu().numpy(),
               None if offsets is None else offsets.detach().cpu().numpy(),
               (None if per_sample_weights is None else
                _grad_array(per_sample_weights)))
    return request, lambda: remote.client.lookup_bag(
        remote.table, dtype=remote.wire_dtype,
        return_max_indices=remote.mode == "max", **_bag(remote, request))


def _bag(remote, request):
    """The lookup_bag / push_bag_gradients arguments of a bag request."""
    return dict(zip(_BAG_ARRAYS, request), mode=remote.mode,
                include_last_offset=remote.include_last_offset)


class _Lookup(torch.autograd.Function):
    """Forward: Lookup. Backward: a push (push="backward") or the sparse
    weight gradient (push="step")."""

    @staticmethod
    def forward(ctx, grad_input, remote, indices):
        request, lookup = lookup_request(remote, indices)
        ctx.remote, (ctx.indices,) = remote, request
        return _as_float32_tensor(remote.run_lookup(request, lookup), indices)

    @staticmethod
    def backward(ctx, grad_output):
        remote, indices = ctx.remote, ctx.indices
        return _gradients(
            remote, 3, lambda: _lookup_weight_grad(remote, indices,
                                                   grad_output),
            lambda: remote.client.push_gradients(
                remote.table, indices, _grad_array(grad_output),
                learning_rate=remote.learning_rate))


class _LookupBag(torch.autograd.Function):
    """Forward: LookupBag. Backward: PushBagGradients (push="backward") or
    the sparse weight gradient (push="step")."""

    @staticmethod
    def forward(ctx, grad_input, remote, indices, offsets, per_sample_weights):
        request, lookup = bag_request(remote, indices, offsets,
                                      per_sample_weights)
        rows = remote.run_lookup(request, lookup)
        bag = _bag(remote, request)
        if remote.mode == "max":
            rows, bag["max_indices"] = rows
        ctx.remote, ctx.bag = remote, bag
        return _as_float32_tensor(rows, indices)

    @staticmethod
    def backward(ctx, grad_output):
        remote, bag = ctx.remote, ctx.bag
        return _gradients(
            remote, 5, lambda: _bag_weight_grad(remote, bag, grad_output),
            lambda: remote.client.push_bag_gradients(
                remote.table, grad=_grad_array(grad_output),
                learning_rate=remote.learning_rate, **bag))


def _gradients(remote, inputs, weight_grad, push):
    """What a lookup Function's backward returns for its `inputs` inputs:
    push="step": weight_grad() for the weight, the first input;
    push="backward": nothing, after push() (the anchor's gradient stays
    None: optimizers skip it)."""
    if remote.push == PUSH_ON_STEP:
        return (weight_grad(),) + (None,) * (inputs - 1)
    remote.run_push(push)
    return (None,) * inputs


def _anchor(requires_grad):
    return torch.empty(0, requires_grad=requires_grad)


def embedding(input, client, table, *, wire_dtype=DEFAULT_LOOKUP_DTYPE,
              learning_rate=None, requires_grad=True):
    """F.embedding on a remote table: the rows of `table` at `input` (an
    index tensor of any shape), `input.shape + (embedding_dim,)`, float32.

    backward() pushes their gradient (learning_rate: this push's, instead of
    the table's), unless requires_grad is False or grad is off.
    """
    binding = _Binding(client, table, wire_dtype, learning_rate)
    return _Lookup.apply(_anchor(requires_grad), binding, input)


@dataclasses.dataclass(frozen=True)
class _BagBinding(_Binding):
    mode: str = DEFAULT_BAG_MODE
    include_last_offset: bool = False


def embedding_bag(input, client, table, offsets=None, *,
                  mode=DEFAULT_BAG_MODE, per_sample_weights=None,
                  include_last_offset=False, wire_dtype=DEFAULT_LOOKUP_DTYPE,
                  learning_rate=None, requires_grad=True):
    """F.embedding_bag on a remote table: 1-D input with offsets, or 2-D
    (bags, n) input; mode "sum", "mean" or "max". backward() pushes the
    bags' gradient as embedding() does. per_sample_weights get no gradient
    (pass them detached)."""
    _check_sample_weights(per_sample_weights)
    binding = _BagBinding(client, table, wire_dtype, learning_rate,
                          mode=mode, include_last_offset=include_last_offset)
    return _LookupBag.apply(_anchor(requires_grad), binding, input, offsets,
                            per_sample_weights)


def _check_sample_weights(per_sample_weights):
    if per_sample_weights is not None and per_sample_weights.requires_grad:
        raise NotImplementedError(
            "remote bags compute no gradient for per_sample_weights; pass "
            "them detached")


__all__ = ["embedding", "embedding_bag"]
