"""Where the rows of a table split over M servers live, vectorised.

Global row g lives on shard g % M (common/shard_layout.h says the same for
the server); servers take and return global ids. The sharded client splits
a batch of indices by owner shard, keeping the caller's order within each
shard, and puts the shards' replies back in the caller's order:

    check_indices(flat, num_embeddings)        # the server's message
    split = Split(flat, shard_count)
    for shard in split.shards():
        part = flat[split.positions[shard]]    # sent to that shard
    rows = split.gather({shard: rows_of_shard}, trailing_shape, dtype)

No Python loop runs per index: only per shard.
"""

import numpy as np

from embedding_client.errors import InvalidArgumentError


def check_indices(indices, num_embeddings):
    """Raises InvalidArgumentError as a server does (EmbeddingTable::
    ValidateIndices) for the first of the flat `indices` outside
    [0, num_embeddings); positions are the caller's."""
    outside = (indices < 0) | (indices >= num_embeddings)
    if outside.any():
        position = int(np.argmax(outside))
        raise InvalidArgumentError(
            f"index {indices[position]} at position {position} is outside "
            f"[0, {num_embeddings})")


def owner_shards(indices, shard_count):
    """The shard holding each global row."""
    return indices % shard_count


def rows_of_range(shard, shard_count, start_row, end_row):
    """The global rows of [start_row, end_row) that `shard` holds."""
    first = start_row + (shard - start_row) % shard_count
    return np.arange(first, end_row, shard_count, dtype=np.int64)


class Split:
    """Positions of flat indices grouped by owner shard.

    positions[k]: the positions (into the flat batch) of the indices shard
    k holds, in the caller's order.
    """

    def __init__(self, indices, shard_count):
        owners = owner_shards(indices, shard_count)
        order = np.argsort(owners, kind="stable")
        bounds = np.zeros(shard_count + 1, np.int64)
        np.cumsum(np.bincount(owners, minlength=shard_count),
                  out=bounds[1:])
        self.size = len(indices)
        self.positions = [order[bounds[k]:bounds[k + 1]]
                          for k in range(shard_count)]

    def shards(self):
        """The shards holding at least one of the indices."""
        return [k for k, positions in enumerate(self.positions)
                if len(positions)]

    def gather(self, parts, trailing_shape, dtype):
        """Returns [size, *trailing_shape]: parts[k] (one row per position
        of shard k) put back at the caller's positions."""
        out = np.empty((self.size, *trailing_shape), dtype)
        for shard, part in parts.items():
            out[self.positions[shard]] = part
        return out
