"""RemoteEmbedding, RemoteEmbeddingBag: nn.Embedding(Bag) on a remote table.

Two training modes (push=):
- "backward" (default): backward() pushes the gradient of the rows looked
  up and the server applies one optimizer step per push. The module owns
  one empty Parameter, `anchor`, that only carries requires_grad: freezing
  it (model.requires_grad_(False)) stops the pushes.
- "step": backward() leaves the sparse gradient torch would give
  nn.Embedding(sparse=True).weight in `weight.grad` (`weight` is an empty
  sparse Parameter of the table's shape: it holds no rows); it accumulates
  over backward calls, gradient clipping sees it, and RemoteOptimizer.step()
  pushes it, once per table.

Both modes look up without pushing under torch.no_grad(). state_dict()
holds the table's rows under "weight", as nn.Embedding's (see state.py).

Dynamic tables (any int64 ids, e.g. 10**12 + k) work with push="backward".
push="step" raises ValueError for them: its `weight` would be a sparse
Parameter of 2**63 rows, which torch 1.13 cannot make (the numel
overflows); that needs the ids translated to positions (not done yet).
state_dict() and to_embedding() need every row of the table, which a
server does not serve for dynamic tables yet: they raise, and
state_dict_weights=False leaves the rows out.
Pipelined training (pushes in the background, prefetched lookups; off by
default) is described in pipeline.py.
"""

import collections
import copy

import torch
from torch import nn

from embedding_client.client import DEFAULT_BAG_MODE, DEFAULT_LOOKUP_DTYPE
from embedding_client.nn import functional, pipeline, state, transfer

# A state_dict() copies the rows into this process: above this size it
# raises instead (use the server's checkpoints, or state_dict_weights=False).
STATE_DICT_MAX_BYTES = 1 << 30


def _empty_sparse_weight(num_embeddings, embedding_dim, requires_grad=True):
    """A Parameter of the table's shape that holds no rows."""
    empty = torch.sparse_coo_tensor(
        torch.zeros(1, 0, dtype=torch.int64), torch.zeros(0, embedding_dim),
        (num_embeddings, embedding_dim))
    return nn.Parameter(empty, requires_grad=requires_grad)


class _RemoteTable(nn.Module):
    """What both modules share: the table, its spec, the training mode and
    the state_dict of a table."""

    def __init__(self, client, table, *, push=functional.PUSH_ON_BACKWARD,
                 wire_dtype=DEFAULT_LOOKUP_DTYPE, learning_rate=None,
                 max_pushes_in_flight=0, state_dict_weights=True,
                 state_dict_max_bytes=STATE_DICT_MAX_BYTES):
        super().__init__()
        if push not in functional.PUSH_MODES:
            raise ValueError(f"push must be one of {functional.PUSH_MODES}, "
                             f"got {push!r}")
        if max_pushes_in_flight < 0 or (
                max_pushes_in_flight and push != functional.PUSH_ON_BACKWARD):
            raise ValueError(
                "max_pushes_in_flight must be >= 0, and 0 unless "
                f"push='backward'; got {max_pushes_in_flight} with "
                f"push={push!r}")
        info = client.get_table(table)
        if push == functional.PUSH_ON_STEP and info.dynamic is not None:
            raise ValueError(
                f"remote table {table!r} is dynamic: push='step' would need "
                "a sparse weight of 2**63 rows, which torch 1.13 cannot "
                "make (the numel overflows), and translating its ids to "
                "positions is not implemented yet; use push='backward'")
        self.client = client
        self.table = table
        self.num_embeddings = info.num_embeddings  # None when dynamic.
        self.dynamic = info.dynamic
        self.embedding_dim = info.embedding_dim
        self.padding_idx = info.padding_idx
        self.max_norm = info.max_norm
        self.norm_type = info.norm_type
        self.scale_grad_by_freq = info.scale_grad_by_freq
        self.push = push
        self.wire_dtype = wire_dtype
        self.learning_rate = learning_rate
        self.max_pushes_in_flight = max_pushes_in_flight
        self.state_dict_weights = state_dict_weights
        self.state_dict_max_bytes = state_dict_max_bytes
        self._pipeline = None  # Made on first use; never pickled or copied.
        if push == functional.PUSH_ON_STEP:
            self.weight = _empty_sparse_weight(info.num_embeddings,
                                               info.embedding_dim)
        else:
            # Autograd calls a Function's backward only when an input
            # requires grad; this empty Parameter is that input.
            self.anchor = nn.Parameter(torch.empty(0))

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
        transfer.upload_embedding(client, table, embedding,
                                  optimizer=optimizer, seed=seed)
        return cls(client, table, **module_options)

    def info(self):
        """Returns the table's current TableInfo."""
        return self.client.get_table(self.table)

    def to_embedding(self, sparse=False):
        """Returns a local nn.Embedding holding the table's current rows."""
        return transfer.download_embedding(self.client, self.table,
                                           sparse=sparse)

    def identity(self):
        """What names this table: addresses, table, spec, module options
        (a dict; state_dict metadata carries it, state.rebuild uses it)."""
        return state.identity_of(self)

    def _grad_input(self):
        """The tensor whose requires_grad decides whether backward runs."""
        if self.push == functional.PUSH_ON_BACKWARD:
            return self.anchor
        if self.weight._nnz():
            raise RuntimeError(
                f"the weight of remote table {self.table!r} was changed "
                "locally (a torch optimizer stepped it?); it holds no rows: "
                "give torch optimizers embedding_client.nn.local_parameters("
                "model) and step remote tables with RemoteOptimizer")
        return self.weight

    # ---- pipelined training (pipeline.py) ---------------------------------

    def _pipelined(self):
        if self._pipeline is None:
            self._pipeline = pipeline.Pipeline(self.max_pushes_in_flight)
        return self._pipeline

    def run_lookup(self, request, lookup):
        """The rows of a lookup request: prefetched ones if they match."""
        if self._pipeline is None:
            return lookup()
        return self._pipeline.lookup(request, lookup)

    def run_push(self, send):
        """Sends a push now, or queues it (max_pushes_in_flight > 0)."""
        if self.max_pushes_in_flight:
            self._pipelined().push(send)
        else:
            send()

    def flush(self):
        """Waits until this module's queued pushes are applied; raises the
        first that failed. (Nothing to wait for when pushes are
        synchronous.)"""
        if self._pipeline is not None:
            self._pipeline.flush()

    def _prefetch(self, request, lookup):
        # Copies: the caller may refill its input tensors before forward().
        request = tuple(None if array is None else array.copy()
                        for array in request)
        self._pipelined().prefetch(request, lookup)

    def __getstate__(self):
        state_of = self.__dict__.copy()
        state_of["_pipeline"] = None  # Threads: the copy makes its own.
        return state_of

    # ---- state_dict (state.py does the work) -----------------------------

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        state.save_table(self, destination, prefix)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        state.load_table(self, state_dict, prefix, strict, missing_keys,
                         unexpected_keys, error_msgs)

    def __deepcopy__(self, memo):
        # A copy uses the same remote table through the same client (a
        # connection, like a file handle). Parameter's own deepcopy cannot
        # copy a sparse weight, so it is made anew (with a copy of its grad).
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            if key == "_parameters":
                value = collections.OrderedDict(
                    (name, _copy_parameter(parameter, memo))
                    for name, parameter in value.items())
            elif key == "_pipeline":
                value = None  # Threads: the copy makes its own.
            else:
                value = copy.deepcopy(value, memo)
            clone.__dict__[key] = value
        return clone

    def extra_repr(self):
        return (f"{self.table!r}, {self.num_embeddings}, "
                f"{self.embedding_dim}, client={self.client.address!r}, "
                f"push={self.push!r}")


def _copy_parameter(parameter, memo):
    if not parameter.is_sparse:
        return copy.deepcopy(parameter, memo)
    clone = _empty_sparse_weight(*parameter.shape, parameter.requires_grad)
    if parameter.grad is not None:
        clone.grad = parameter.grad.clone()
    memo[id(parameter)] = clone
    return clone


class RemoteEmbedding(_RemoteTable):
    """nn.Embedding whose table lives on an embedding_server.

    forward(input) takes an index tensor of any shape and returns
    `input.shape + (embedding_dim,)`, float32. push: "backward" (each
    backward pushes, the server steps) or "step" (RemoteOptimizer pushes
    the accumulated gradient). wire_dtype "float16"/"bfloat16" halves the
    lookup bytes (rows are rounded); learning_rate overrides the table's
    for this module's pushes. max_pushes_in_flight: pushes sent in the
    background (0: synchronous; see pipeline.py). state_dict_weights,
    state_dict_max_bytes: what state_dict() holds (see state.py).
    """

    def forward(self, input):
        return functional._Lookup.apply(self._grad_input(), self, input)

    def prefetch(self, input):
        """Starts looking up `input` in the background; forward(input) then
        takes those rows (see pipeline.py for how stale they may be)."""
        self._prefetch(*functional.lookup_request(self, input))

    def lookup_stream(self, inputs):
        """For inference loops: yields forward(input) of each index tensor
        of `inputs`, without gradient, in order, over one LookupStream call
        (the client's lookup_stream: batches go out without waiting for the
        replies before them)."""
        arrays = (input.detach().cpu().numpy() for input in inputs)
        for rows in self.client.lookup_stream(self.table, arrays,
                                              dtype=self.wire_dtype):
            yield functional._as_float32_tensor(rows, torch.empty(0))


class RemoteEmbeddingBag(_RemoteTable):
    """nn.EmbeddingBag whose table lives on an embedding_server.

    forward(input, offsets=None, per_sample_weights=None) as
    nn.EmbeddingBag: 1-D input with offsets, or 2-D (bags, n) input.
    per_sample_weights get no gradient (they must not require grad).
    Options as RemoteEmbedding's.
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
        functional._check_sample_weights(per_sample_weights)
        return functional._LookupBag.apply(self._grad_input(), self, input,
                                           offsets, per_sample_weights)

    def prefetch(self, input, offsets=None, per_sample_weights=None):
        """As RemoteEmbedding.prefetch, for forward(input, offsets,
        per_sample_weights)."""
        self._prefetch(*functional.bag_request(self, input, offsets,
                                               per_sample_weights))

    def extra_repr(self):
        return f"{super().extra_repr()}, mode={self.mode!r}"


def remote_modules(module):
    """The RemoteEmbedding(Bag) modules in `module` (itself included)."""
    return [m for m in module.modules() if isinstance(m, _RemoteTable)]


def local_parameters(module):
    """module.parameters() without the remote tables' (their `anchor` and
    `weight` hold no rows): what to give a torch optimizer."""
    remote = {id(p) for m in remote_modules(module) for p in m.parameters()}
    return [p for p in module.parameters() if id(p) not in remote]
