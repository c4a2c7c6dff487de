"""nn.EmbeddingBag's arithmetic in the client, as the server does it.

A sharded client cannot ask one server to pool a bag whose rows live on
several: it looks the rows up (routed) and pools them here, replicating
common/bag_math.h (PoolBagRows, ForEachBagGradient: the server's and the
C++ client's arithmetic) bit for bit:
- float32 arithmetic; each bag summed from +0 in position order, adding
  `weight * row` (1.0 without per_sample_weights);
- entries equal to the padding row are skipped and left out of MEAN's count;
  MEAN divides each element by the float count; empty bags give zeros;
- MAX keeps the first strictly greater value (ties stay with the earlier
  position) and names the winning global row per element, or for an empty
  bag the table's marker (empty_bag_marker: -1, or in a dynamic table
  RESERVED_ID, since -1 is an id there);
- scale_grad_by_freq counts a row over all of `indices`, past the last bag
  too (include_last_offset), as the server counts it.
The checks (ValidateBagBatch, CheckBagMode, ScatterMaxGradients) raise the
server's messages, so a bad batch is refused before anything is sent.

    batch = BagBatch(indices, offsets, "sum", weights, False, padding_row,
                     empty_bag_marker(dynamic))
    pooled, max_indices = batch.pool(rows_at_kept_positions)
    rows, grads = batch.scatter(grad, max_indices, dim)  # to push per row

Vectorised: Python loops run once per position within a bag (the largest
bag's size), never once per index.
"""

import numpy as np

from embedding_client.errors import InvalidArgumentError
from embedding_client.options import RESERVED_ID


def empty_bag_marker(dynamic):
    """What max_indices hold where no row won (an empty bag), as the
    server's BagMarkers: -1 in a dense table, RESERVED_ID in a dynamic one,
    whose ids may be -1."""
    return RESERVED_ID if dynamic else -1


def _check_offsets(offsets, size, include_last_offset):
    """ValidateBagBatch's CheckOffsets, with its messages."""
    if len(offsets) == 0 or (include_last_offset and len(offsets) < 2):
        raise InvalidArgumentError(
            "offsets needs at least 2 entries with include_last_offset"
            if include_last_offset else
            "offsets is empty: a batch needs at least one bag")
    if offsets[0] != 0:
        raise InvalidArgumentError(f"offsets[0] must be 0, got {offsets[0]}")
    decreasing = np.flatnonzero(np.diff(offsets) < 0)
    if len(decreasing):
        i = int(decreasing[0]) + 1
        raise InvalidArgumentError(
            f"offsets must be non-decreasing: offsets[{i}] = {offsets[i]} < "
            f"offsets[{i - 1}] = {offsets[i - 1]}")
    if offsets[-1] > size:
        raise InvalidArgumentError(
            f"offsets[{len(offsets) - 1}] = {offsets[-1]} is past the end "
            f"of indices ({size})")


def _check_weights(weights, mode, size):
    """ValidateBagBatch's CheckPerSampleWeights, with its messages."""
    if mode != "sum":
        raise InvalidArgumentError(
            "per_sample_weights are only supported with mode SUM, as in "
            "torch")
    if len(weights) != size:
        raise InvalidArgumentError(
            f"per_sample_weights has {len(weights)} entries, expected one "
            f"per index ({size})")
    bad = np.flatnonzero(~np.isfinite(weights))
    if len(bad):
        raise InvalidArgumentError(
            f"per_sample_weights[{bad[0]}] is not finite")


class BagBatch:
    """A checked batch of bags over flat global `indices`.

    mode: "sum", "mean" or "max". weights: float32 per index or None.
    padding_row: the table's padding row (or a dynamic table's padding id)
    or None. no_row: empty_bag_marker of the table.
    """

    def __init__(self, indices, offsets, mode, weights, include_last_offset,
                 padding_row, no_row=-1):
        _check_offsets(offsets, len(indices), include_last_offset)
        if weights is not None:
            weights = np.ascontiguousarray(weights, np.float32).ravel()
            _check_weights(weights, mode, len(indices))
        self.indices = indices
        self.mode = mode
        self.weights = weights
        self.padding_row = padding_row
        self.no_row = no_row
        bags = len(offsets) - 1 if include_last_offset else len(offsets)
        ends = np.append(offsets[1:], len(indices))[:bags]
        self.bags = bags
        # Bag of each position (positions past the last bag belong to none).
        self.bag_of = np.repeat(np.arange(bags), ends - offsets[:bags])
        size = len(self.bag_of)
        kept = np.ones(size, bool) if padding_row is None else (
            indices[:size] != padding_row)
        # The positions pooled: in a bag and not padding, in order.
        self.kept = np.flatnonzero(kept)
        self.counts = np.bincount(self.bag_of[self.kept], minlength=bags)

    def _by_rank(self):
        """Yields (k, kept positions at rank k in their bag, their bags)."""
        bags = self.bag_of[self.kept]
        starts = np.cumsum(self.counts) - self.counts
        rank = np.arange(len(self.kept)) - starts[bags]
        order = np.argsort(rank, kind="stable")  # By rank, then bag.
        bounds = np.append(0, np.cumsum(np.bincount(rank)))
        for k in range(len(bounds) - 1):
            at = order[bounds[k]:bounds[k + 1]]
            yield k, at, bags[at]

    def pool(self, rows):
        """F.embedding_bag's forward: (pooled float32 [bags, dim],
        max_indices int64 [bags, dim] in MAX mode, else None). rows: the
        float32 row of each kept position, in order."""
        pooled = np.zeros((self.bags, rows.shape[1]), np.float32)
        winners = (np.full(pooled.shape, self.no_row, np.int64)
                   if self.mode == "max" else None)
        kept_indices = self.indices[self.kept]
        for k, at, bags in self._by_rank():
            if self.mode == "max":
                candidate = rows[at]
                better = (np.ones(candidate.shape, bool) if k == 0 else
                          candidate > pooled[bags])
                pooled[bags] = np.where(better, candidate, pooled[bags])
                winners[bags] = np.where(better, kept_indices[at, None],
                                         winners[bags])
            elif self.weights is None:
                pooled[bags] += rows[at]
            else:
                pooled[bags] += self.weights[self.kept[at], None] * rows[at]
        if self.mode == "mean":
            full = self.counts > 0
            pooled[full] /= self.counts[full, None].astype(np.float32)
        return pooled, winners

    def scatter(self, grad, max_indices, dim):
        """Backward of pool: (rows, per-row gradients float32) to push as a
        PushGradients, summing to what ScatterBagGradients accumulates and
        counted by scale_grad_by_freq as the server counts.
        grad: float32 [bags, dim]. Raises InvalidArgumentError for
        max_indices that do not fit the batch (MAX mode)."""
        if self.mode == "max":
            return self._scatter_max(grad, max_indices, dim)
        bags = self.bag_of[self.kept]
        rows = self.indices[self.kept]
        if self.mode == "mean":
            scale = np.float32(1) / np.maximum(self.counts, 1).astype(
                np.float32)
            grads = scale[bags, None] * grad[bags]
        elif self.weights is not None:
            grads = self.weights[self.kept, None] * grad[bags]
        else:
            grads = grad[bags]
        return self._with_unpooled(rows, grads, dim)

    def _with_unpooled(self, rows, grads, dim):
        """With include_last_offset, the indices past the last bag: the
        server's scale_grad_by_freq counts a row over the whole batch, so
        those of rows that get a gradient go along with a gradient of -0.0,
        the one float that leaves every sum as it is, bit for bit."""
        past = self.indices[len(self.bag_of):]
        past = past[np.isin(past, rows)]
        if len(past) == 0:
            return rows, grads
        return (np.concatenate([rows, past]),
                np.concatenate([grads, np.full((len(past), dim), -0.0,
                                               np.float32)]))

    def _scatter_max(self, grad, max_indices, dim):
        expected = self.bags * dim
        winners = (np.zeros(0, np.int64) if max_indices is None else
                   np.asarray(max_indices, np.int64).ravel())
        if len(winners) != expected:
            raise InvalidArgumentError(
                f"max_indices has {len(winners)} entries, expected bags x "
                f"embedding_dim = {expected} (as LookupBag returned them)")
        used = winners != self.no_row
        if self.padding_row is not None:
            used &= winners != self.padding_row
        foreign = np.flatnonzero(used & ~np.isin(winners, self.indices))
        if len(foreign):
            i = int(foreign[0])
            raise InvalidArgumentError(
                f"max_indices[{i}] = {winners[i]} is not one of the batch's "
                "indices")
        # One gradient row per (bag, winning row), in bag order: each
        # element lands in exactly one, and a row's elements add up in bag
        # order, as the server adds them.
        elements = np.flatnonzero(used)
        pairs, pair_of = np.unique(
            np.stack([elements // dim, winners[elements]], axis=1), axis=0,
            return_inverse=True)
        grads = np.zeros((len(pairs), dim), np.float32)
        grads[pair_of.ravel(), elements % dim] = grad.ravel()[elements]
        return pairs[:, 1].copy(), grads
