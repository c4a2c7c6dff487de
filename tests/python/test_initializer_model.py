"""tests/testing/initializer_model.py's fill_rows equals the real server's
initial rows (FillRow, server/core/initializer.cc): bit for bit for uniform
and constant initializers, within one float32 ulp for normal ones (numpy's
log/cos/sin against libm's).

Ids beyond a dense table (10**12 + k, negative) cannot be looked up yet;
dynamic tables will read FillRow(id) for an absent id, so the model is only
checked to be deterministic and per-id there.
"""

import warnings

import numpy as np
import pytest

from embedding_client import Constant, Normal, Uniform
from tests.testing.initializer_model import fill_rows

ROWS = 5000
ONE_ABOVE_ONE = float(np.nextafter(np.float32(1), np.float32(2)))

# (kind, a, b) as fill_rows takes them. The narrow uniform rounds about half
# its draws to b, which FillRow steps back below b; the wide one has b - a
# beyond float32's range.
INITIALIZERS = [
    ("normal", 0.0, 1.0),
    ("normal", 0.25, 3.0),
    ("uniform", -0.5, 0.5),
    ("uniform", 1.0, ONE_ABOVE_ONE),
    ("uniform", -3e38, 3e38),
    ("constant", 0.75, 0.0),
]


def client_initializer(kind, a, b):
    if kind == "normal":
        return Normal(mean=a, std=b)
    if kind == "uniform":
        return Uniform(low=a, high=b)
    return Constant(a)


def assert_model_matches(kind, got, expected):
    assert got.dtype == expected.dtype == np.float32
    assert got.shape == expected.shape
    if kind == "normal":
        np.testing.assert_array_max_ulp(got, expected, maxulp=1)
    else:  # Bit for bit, signed zeros included.
        np.testing.assert_array_equal(got.view(np.uint32),
                                      expected.view(np.uint32))


@pytest.fixture(autouse=True)
def warnings_are_errors():
    """numpy overflow and cast warnings fail the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("dim", [64, 3])
@pytest.mark.parametrize("seed", [1234567, 2**63 + 5])
@pytest.mark.parametrize("kind,a,b", INITIALIZERS)
def test_model_equals_server_initial_rows(client, table, kind, a, b, seed,
                                          dim):
    client.create_table(table, ROWS, dim, seed=seed,
                        initializer=client_initializer(kind, a, b))
    try:
        got = client.lookup(table, np.arange(ROWS, dtype=np.int64))
    finally:
        client.delete_table(table)
    assert_model_matches(kind, got,
                         fill_rows(kind, a, b, seed, np.arange(ROWS), dim))


def test_narrow_uniform_steps_back_below_b():
    rows = fill_rows("uniform", 1.0, ONE_ABOVE_ONE, 9, np.arange(100), 64)
    assert np.all(rows == np.float32(1.0))


@pytest.mark.parametrize("kind,a,b", INITIALIZERS)
def test_far_and_negative_ids_are_deterministic_and_per_id(kind, a, b):
    ids = np.concatenate([10**12 + np.arange(50), -1 - np.arange(50),
                          [-2**63, 2**63 - 1]]).astype(np.int64)
    rows = fill_rows(kind, a, b, 2**63 + 5, ids, 64)
    assert np.all(np.isfinite(rows))
    np.testing.assert_array_equal(rows,
                                  fill_rows(kind, a, b, 2**63 + 5, ids, 64))
    # A row depends on its id only, not on the batch; a narrower row is a
    # prefix (normal columns 2k, 2k + 1 share pair k).
    np.testing.assert_array_equal(
        rows[::-1], fill_rows(kind, a, b, 2**63 + 5, ids[::-1], 64))
    np.testing.assert_array_equal(
        rows[:, :3], fill_rows(kind, a, b, 2**63 + 5, ids, 3))
    if kind == "uniform":
        assert np.all((rows >= np.float32(a)) & (rows < np.float32(b)))
    if kind == "normal" or (kind == "uniform" and a != 1.0):
        assert len(np.unique(rows[:, 0])) == len(ids)


def test_seed_changes_every_row():
    ids = np.arange(-100, 100)
    first = fill_rows("normal", 0.0, 1.0, 1, ids, 8)
    second = fill_rows("normal", 0.0, 1.0, 2, ids, 8)
    assert not np.any(np.all(first == second, axis=1))


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown initializer kind 'xavier'"):
        fill_rows("xavier", 0.0, 1.0, 0, [0], 4)
