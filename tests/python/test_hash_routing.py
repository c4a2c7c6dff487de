"""Hash routing of dynamic tables in the Python client (routing.py): the
shard of id x is SplitMix64(uint64(x)) % M, bit for bit as the server's
common/hash64.h and common/shard_layout.h (Routing::kHash) compute it.

The golden vectors are frozen: changing them moves every cluster's rows.
Pure numpy; no server.
"""

import warnings

import numpy as np
import pytest

from embedding_client.routing import Split, hash_owner_shards, splitmix64

# SplitMix64(uint64(id)) for these ids (docs/dynamic_tables_design.md §5).
GOLDEN_IDS = np.array([0, 1, -1, 10**12 + 5, -2**63, 2**63 - 1], np.int64)
GOLDEN_HASHES = [16294208416658607535, 10451216379200822465,
                 16490336266968443936, 14134809305837172702,
                 5196802822362493915, 3055647633038352039]


@pytest.fixture(autouse=True)
def warnings_are_errors():
    """numpy overflow warnings (scalar arithmetic) fail the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_splitmix64_matches_golden_vectors():
    hashes = splitmix64(GOLDEN_IDS)
    assert hashes.dtype == np.uint64
    assert hashes.tolist() == GOLDEN_HASHES


def test_splitmix64_keeps_shape_and_takes_one_id():
    assert splitmix64(GOLDEN_IDS.reshape(2, 3)).tolist() == [
        GOLDEN_HASHES[:3], GOLDEN_HASHES[3:]]
    assert int(splitmix64(np.int64(-1))) == GOLDEN_HASHES[2]


@pytest.mark.parametrize("shard_count", [1, 2, 3, 7])
def test_hash_owner_shards_is_golden_hash_mod_shard_count(shard_count):
    shards = hash_owner_shards(GOLDEN_IDS, shard_count)
    assert shards.dtype == np.int64
    assert shards.tolist() == [h % shard_count for h in GOLDEN_HASHES]


def test_hash_routing_spreads_sequential_ids_evenly():
    shard_count, count = 3, 30000
    shards = hash_owner_shards(np.arange(count, dtype=np.int64), shard_count)
    per_shard = np.bincount(shards, minlength=shard_count)
    assert len(per_shard) == shard_count
    expected = count / shard_count
    assert np.all(np.abs(per_shard - expected) <= 0.05 * expected), per_shard


def test_split_hashed_groups_positions_by_hash_owner_in_caller_order():
    ids = np.array([10**12 + 5, 0, -1, 7, 1, -2**63, 2**63 - 1, 0, 42],
                   np.int64)
    owners = hash_owner_shards(ids, 3)
    split = Split(ids, 3, hashed=True)
    for shard in range(3):
        expected = np.flatnonzero(owners == shard)
        np.testing.assert_array_equal(split.positions[shard], expected)
    assert split.shards() == sorted(set(owners.tolist()))
    # Not the dense routing: 7 % 3 == 1, its hash sends it elsewhere.
    assert not np.array_equal(owners, ids % 3)


def test_split_hashed_gather_puts_rows_back_in_caller_order():
    ids = np.array([3, -9, 10**12 + 1, 3, 5, -2**63, 11], np.int64)
    rows = np.stack([ids.astype(np.float32), -ids.astype(np.float32)], 1)
    split = Split(ids, 2, hashed=True)
    parts = {shard: rows[split.positions[shard]]
             for shard in split.shards()}
    np.testing.assert_array_equal(split.gather(parts, (2,), np.float32),
                                  rows)


def test_empty_batch():
    empty = np.zeros(0, np.int64)
    assert splitmix64(empty).dtype == np.uint64
    assert hash_owner_shards(empty, 3).shape == (0,)
    split = Split(empty, 3, hashed=True)
    assert split.shards() == []
    assert split.gather({}, (4,), np.float32).shape == (0, 4)
