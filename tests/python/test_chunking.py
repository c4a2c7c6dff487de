"""Bulk transfers larger than the gRPC message limit round-trip bit-exactly.

The server runs with --max_message_bytes=1 MiB (and the client is told the
same: the small_client fixture), so a 3 MiB table needs several messages
each way.
"""

import grpc
import numpy as np

from tests.testing.errors import raises

ROWS, DIM = 24_000, 32  # 3 MiB of float32.


def _bits(array):
    return np.ascontiguousarray(array, np.float32).view(np.uint32)


def _random_weights(seed):
    """float32 rows with every exponent and sign, subnormals and -0.0."""
    bits = np.random.default_rng(seed).integers(
        0, 2**32, size=(ROWS, DIM), dtype=np.uint32)
    weights = bits.view(np.float32)
    weights[~np.isfinite(weights)] = -0.0
    return weights


def test_one_message_cannot_hold_the_table(small_client, table):
    small_client.create_table(table, ROWS, DIM)
    with raises(grpc.StatusCode.RESOURCE_EXHAUSTED):
        small_client.lookup(table, np.arange(ROWS))


def test_upload_and_download_round_trip_bit_exactly(small_client, table):
    weights = _random_weights(0)
    info = small_client.create_table(table, ROWS, DIM, weights=weights)
    assert info.num_embeddings == ROWS
    np.testing.assert_array_equal(_bits(small_client.read_rows(table)),
                                  _bits(weights))


def test_chunked_upload_zeroes_the_padding_row(small_client, table):
    weights = _random_weights(1)
    small_client.create_table(table, ROWS, DIM, padding_idx=-1,
                              weights=weights)
    rows = small_client.read_rows(table)
    assert not rows[-1].any()
    np.testing.assert_array_equal(_bits(rows[:-1]), _bits(weights[:-1]))


def test_scattered_write_and_read_round_trip(small_client, table):
    small_client.create_table(table, ROWS, DIM)
    order = np.random.default_rng(2).permutation(ROWS)
    weights = _random_weights(3)
    assert small_client.write_rows(table, weights, order) == ROWS
    np.testing.assert_array_equal(
        _bits(small_client.read_rows(table, order)), _bits(weights))
    ids, rows = small_client.read_rows(table, start_row=1000,
                                       return_indices=True)
    np.testing.assert_array_equal(ids, np.arange(1000, ROWS))
    expected = np.empty_like(weights)
    expected[order] = weights
    np.testing.assert_array_equal(_bits(rows), _bits(expected[1000:]))
