"""EmbeddingClient data methods against torch: lookup, lookup_bag,
push_gradients, push_bag_gradients, write_rows, read_rows."""

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embedding_client import SGD, InvalidArgumentError
from tests.testing.errors import raises


def _weights(rows, dim, seed=0):
    return np.random.default_rng(seed).standard_normal(
        (rows, dim)).astype(np.float32)


@pytest.fixture
def filled(client, table):
    """A 20 x 6 SGD(lr=0.5) table with known weights: (name, weights)."""
    weights = _weights(20, 6)
    client.create_table(table, 20, 6, optimizer=SGD(lr=0.5), weights=weights)
    return table, weights


@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3), (2, 0, 4),
                                   (2, 3, 4)])
def test_lookup_returns_index_shape_plus_dim(client, filled, shape):
    table, weights = filled
    indices = np.random.default_rng(1).integers(0, 20, size=shape)
    rows = client.lookup(table, indices)
    assert rows.shape == shape + (6,) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows, weights[indices])
    rows[...] = 0  # Results are writable arrays of their own.


def test_lookup_accepts_lists_and_torch_tensors(client, filled):
    table, weights = filled
    np.testing.assert_array_equal(client.lookup(table, [[1, 2]]),
                                  weights[[[1, 2]]])
    np.testing.assert_array_equal(
        client.lookup(table, torch.tensor([3, 3], dtype=torch.int32)),
        weights[[3, 3]])


@pytest.mark.parametrize("dtype, torch_dtype, result_dtype", [
    ("float16", torch.float16, np.float16),
    ("bfloat16", torch.bfloat16, np.float32)])
def test_lookup_in_half_precision_rounds_as_torch(client, filled, dtype,
                                                  torch_dtype, result_dtype):
    table, weights = filled
    rows = client.lookup(table, [[0, 5], [19, 7]], dtype=dtype)
    assert rows.dtype == result_dtype and rows.shape == (2, 2, 6)
    expected = torch.from_numpy(weights[[[0, 5], [19, 7]]]).to(torch_dtype)
    np.testing.assert_array_equal(rows.astype(np.float32),
                                  expected.float().numpy())


def test_lookup_out_of_range_names_index_and_position(client, filled):
    table, _ = filled
    with pytest.raises(InvalidArgumentError) as error:
        client.lookup(table, [0, 1, 20])
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "20" in error.value.message and "position 2" in error.value.message


def test_lookup_rejects_bad_arguments_in_the_client(client, filled):
    table, _ = filled
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match="integers"):
        client.lookup(table, [0.5])
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match="dtype"):
        client.lookup(table, [0], dtype="float64")


def test_lookup_with_max_norm_renorms_as_torch(client, table):
    weights = _weights(10, 4) * 3
    client.create_table(table, 10, 4, max_norm=1.0, weights=weights)
    reference = torch.from_numpy(weights.copy())
    expected = F.embedding(torch.tensor([1, 4, 4]), reference, max_norm=1.0)
    np.testing.assert_allclose(client.lookup(table, [1, 4, 4]),
                               expected.numpy(), rtol=1e-6)
    np.testing.assert_allclose(client.read_rows(table), reference.numpy(),
                               rtol=1e-6)  # Renormed in place, as torch.


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_lookup_bag_matches_embedding_bag(client, filled, mode,
                                          include_last_offset):
    table, weights = filled
    indices = np.array([1, 2, 4, 5, 4, 3, 2, 9])
    offsets = np.array([0, 2, 2, 5] + ([8] if include_last_offset else []))
    rows = client.lookup_bag(table, indices, offsets, mode=mode,
                             include_last_offset=include_last_offset)
    expected = F.embedding_bag(torch.from_numpy(indices),
                               torch.from_numpy(weights),
                               torch.from_numpy(offsets), mode=mode,
                               include_last_offset=include_last_offset)
    np.testing.assert_allclose(rows, expected.numpy(), rtol=1e-6, atol=1e-6)


def test_lookup_bag_takes_2d_indices_and_sample_weights(client, filled):
    table, weights = filled
    indices = np.array([[1, 2, 3], [4, 5, 6]])
    sample = np.array([0.5, 1, 2, -1, 0, 3], np.float32)
    rows = client.lookup_bag(table, indices, mode="sum",
                             per_sample_weights=sample)
    expected = F.embedding_bag(torch.from_numpy(indices),
                               torch.from_numpy(weights), mode="sum",
                               per_sample_weights=torch.from_numpy(
                                   sample.reshape(2, 3)))
    np.testing.assert_allclose(rows, expected.numpy(), rtol=1e-6, atol=1e-6)


def test_lookup_bag_needs_offsets_for_1d_indices(client, filled):
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match="offsets"):
        client.lookup_bag(filled[0], [1, 2, 3])
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match="mode"):
        client.lookup_bag(filled[0], [[1, 2]], mode="median")


def _torch_sgd_step(weights, lr, loss_of_weight):
    """Returns weights after one SGD step on loss_of_weight(weight)."""
    weight = torch.from_numpy(weights.copy()).requires_grad_()
    loss_of_weight(weight).backward()
    with torch.no_grad():
        weight -= lr * weight.grad
    return weight.detach().numpy()


def test_push_gradients_is_one_sgd_step(client, filled):
    table, weights = filled
    indices = np.array([[1, 2, 1], [7, 1, 0]])
    grad = _weights(2 * 3, 6, seed=2).reshape(2, 3, 6)
    result = client.push_gradients(table, indices, grad)
    assert (result.rows_updated, result.version, result.duplicate) == (
        4, client.get_table(table).version, False)
    expected = _torch_sgd_step(weights, 0.5, lambda w: (
        F.embedding(torch.from_numpy(indices), w)
        * torch.from_numpy(grad)).sum())
    np.testing.assert_allclose(client.read_rows(table), expected, rtol=1e-6,
                               atol=1e-6)
    assert client.get_table(table).step == 1


def test_push_with_learning_rate_override(client, filled):
    table, weights = filled
    client.push_gradients(table, [3], np.ones((1, 6)), learning_rate=0.125)
    np.testing.assert_allclose(client.read_rows(table, [3])[0],
                               weights[3] - 0.125, rtol=1e-6)


def test_repeated_sequence_is_applied_once(client, filled):
    table, weights = filled
    first = client.push_gradients(table, [3], np.ones((1, 6)), sequence=10**6)
    again = client.push_gradients(table, [3], np.ones((1, 6)), sequence=10**6)
    assert not first.duplicate and again.duplicate
    np.testing.assert_allclose(client.read_rows(table, [3])[0],
                               weights[3] - 0.5, rtol=1e-6)


def test_push_of_nan_or_wrong_shape_is_invalid_argument(client, filled):
    table, weights = filled
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match="non-finite"):
        client.push_gradients(table, [3], np.full((1, 6), np.nan))
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match="grad"):
        client.push_gradients(table, [3, 4], np.ones((3, 6)))
    np.testing.assert_array_equal(client.read_rows(table), weights)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_push_bag_gradients_is_one_sgd_step(client, filled, mode):
    table, weights = filled
    indices, offsets = np.array([1, 2, 4, 1, 4, 3]), np.array([0, 2, 2])
    grad = _weights(3, 6, seed=3)
    _, max_indices = client.lookup_bag(table, indices, offsets, mode=mode,
                                       return_max_indices=True)
    client.push_bag_gradients(
        table, indices, offsets, grad, mode=mode,
        max_indices=max_indices if mode == "max" else None)
    expected = _torch_sgd_step(weights, 0.5, lambda w: (F.embedding_bag(
        torch.from_numpy(indices), w, torch.from_numpy(offsets), mode=mode)
        * torch.from_numpy(grad)).sum())
    np.testing.assert_allclose(client.read_rows(table), expected, rtol=1e-6,
                               atol=1e-6)


def test_write_rows_by_indices_and_by_range(client, filled):
    table, weights = filled
    assert client.write_rows(table, np.full((2, 6), 7.0), [4, 2]) == 2
    assert client.write_rows(table, np.full((3, 6), -1.0), start_row=10) == 3
    expected = weights.copy()
    expected[[4, 2]] = 7.0
    expected[10:13] = -1.0
    np.testing.assert_array_equal(client.read_rows(table), expected)


def test_write_rows_rejects_mismatched_arguments(client, filled):
    with raises(grpc.StatusCode.INVALID_ARGUMENT,
                match="2 indices for 1 rows"):
        client.write_rows(filled[0], np.ones((1, 6)), [1, 2])
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match="outside"):
        client.write_rows(filled[0], np.ones((1, 6)), [20])


def test_read_rows_by_indices_range_and_with_ids(client, filled):
    table, weights = filled
    np.testing.assert_array_equal(client.read_rows(table, [5, 0, 5]),
                                  weights[[5, 0, 5]])
    np.testing.assert_array_equal(
        client.read_rows(table, start_row=3, end_row=8), weights[3:8])
    ids, rows = client.read_rows(table, start_row=15, return_indices=True)
    np.testing.assert_array_equal(ids, np.arange(15, 20))
    np.testing.assert_array_equal(rows, weights[15:])
    assert client.read_rows(table, []).shape == (0, 6)
