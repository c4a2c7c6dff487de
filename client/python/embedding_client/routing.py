"""Where the rows of a table split over M servers live, vectorised.

A dense table's global row g lives on shard g % M (owner_shards); a dynamic
table's id x, any int64, on shard SplitMix64(uint64(x)) % M
(hash_owner_shards). The server computes the same (common/shard_layout.h,
with SplitMix64 from common/hash64.h); servers take and return global ids.
The sharded client splits a batch of indices by owner shard, keeping the
caller's order within each shard, and puts the shards' replies back in the
caller's order:

    check_indices(flat, num_embeddings)        # the server's message
    split = Split(flat, shard_count)           # hashed=True: dynamic
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
    """The shard holding each global row of a dense table."""
    return indices % shard_count


# SplitMix64's constants (common/hash64.h), as uint64 so that the arithmetic
# stays in uint64 arrays: those wrap silently, numpy scalars would warn.
_GOLDEN_GAMMA = np.uint64(0x9e3779b97f4a7c15)
_MULTIPLIER_1 = np.uint64(0xbf58476d1ce4e5b9)
_MULTIPLIER_2 = np.uint64(0x94d049bb133111eb)
_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31))


def splitmix64(indices):
    """SplitMix64(uint64(x)) of each int64 x, as uint64 in `indices`' shape:
    common/hash64.h's SplitMix64, bit for bit (negative x wraps as in C++).
    """
    ids = np.asarray(indices).astype(np.int64)
    # 1-d, so that every step is an array operation (0-d ones give scalars).
    x = ids.reshape(-1).view(np.uint64) + _GOLDEN_GAMMA
    x ^= x >> _SHIFTS[0]
    x *= _MULTIPLIER_1
    x ^= x >> _SHIFTS[1]
    x *= _MULTIPLIER_2
    x ^= x >> _SHIFTS[2]
    return x.reshape(ids.shape)


def hash_owner_shards(indices, shard_count):
    """The shard holding each id of a dynamic table, as int64:
    SplitMix64(uint64(id)) % shard_count (ShardLayout's hash routing)."""
    return (splitmix64(indices) % np.uint64(shard_count)).astype(np.int64)


def rows_of_range(shard, shard_count, start_row, end_row):
    """The global rows of [start_row, end_row) that `shard` holds."""
    first = start_row + (shard - start_row) % shard_count
    return np.arange(first, end_row, shard_count, dtype=np.int64)


class Split:
    """Positions of flat indices grouped by owner shard.

    positions[k]: the positions (into the flat batch) of the indices shard
    k holds, in the caller's order. hashed: route by hash_owner_shards (a
    dynamic table) instead of owner_shards (a dense one).
    """

    def __init__(self, indices, shard_count, hashed=False):
        route = hash_owner_shards if hashed else owner_shards
        owners = route(indices, shard_count)
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
