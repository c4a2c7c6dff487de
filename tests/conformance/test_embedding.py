"""nn.Embedding semantics of the server (issue 2), torch as the oracle:
lookups of index tensors of any shape, padding_idx, max_norm, SGD pushes with
duplicates and scale_grad_by_freq, fp16/bf16 outputs and the initializer."""

import grpc
import numpy as np
import pytest
import torch

from embedding.v1 import embedding_service_pb2 as pb

from .oracle import (Opt, TorchTable, assert_close, assert_table_matches,
                     check_lookup, check_push, from_proto, lookup,
                     random_grad, random_indices, read_rows, to_proto)

NUM, DIM = 23, 8
SHAPES = [(9,), (4, 5), (2, 3, 4)]


@pytest.mark.parametrize("padding_idx", [None, 3, -2])
@pytest.mark.parametrize("shape", SHAPES)
def test_lookup_matches_torch(stub, table, shape, padding_idx):
    ref = TorchTable(NUM, DIM, padding_idx=padding_idx, seed=1)
    info = ref.create_on(stub, table)
    if padding_idx is not None:
        assert info.spec.padding_idx == ref.padding_idx
    idx = random_indices(np.random.default_rng(2), NUM, shape,
                         ref.padding_idx)
    got = lookup(stub, table, idx)
    assert tuple(got.shape) == shape + (DIM,)
    assert_close(got, ref.lookup(idx), "lookup")


@pytest.mark.parametrize("norm_type", [1.0, 2.0, float("inf")])
def test_max_norm_renorms_looked_up_rows_in_place(stub, table, norm_type):
    weight = TorchTable(NUM, DIM, seed=3).weight
    # Half the rows exceed the bound.
    max_norm = float(weight.norm(p=norm_type, dim=1).median())
    ref = TorchTable(NUM, DIM, max_norm=max_norm, norm_type=norm_type,
                     padding_idx=0, weight=weight)
    ref.create_on(stub, table)
    rng = np.random.default_rng(4)
    for step, shape in enumerate(SHAPES):
        idx = random_indices(rng, NUM // 2, shape, ref.padding_idx)
        assert_close(lookup(stub, table, idx), ref.lookup(idx),
                     f"lookup {step}")
        assert_table_matches(stub, table, ref, f"after lookup {step}")
    # Rows renormed once stay within the bound on a second lookup.
    idx = np.arange(NUM)
    assert_close(lookup(stub, table, idx), ref.lookup(idx), "full lookup")
    assert_table_matches(stub, table, ref, "after full lookup")


SGD_CASES = {
    "plain": dict(),
    "padding": dict(padding_idx=5),
    "negative_padding": dict(padding_idx=-1),
    "scale_grad_by_freq": dict(scale_grad_by_freq=True),
    "scale_grad_by_freq_padding": dict(scale_grad_by_freq=True,
                                       padding_idx=-3),
    "max_norm": dict(max_norm=2.5, padding_idx=2),
}


@pytest.mark.parametrize("case", SGD_CASES)
def test_sgd_pushes_match_torch(stub, table, case):
    ref = TorchTable(NUM, DIM, optimizer=Opt("sgd", lr=0.3), seed=5,
                     **SGD_CASES[case])
    ref.create_on(stub, table)
    rng = np.random.default_rng(6)
    for step in range(6):
        shape = SHAPES[step % len(SHAPES)]
        idx = random_indices(rng, NUM // 2, shape, ref.padding_idx)
        check_lookup(stub, table, ref, idx, f"step {step}")
        # The gradient's leading dims may be the index shape or flat.
        grad = random_grad(rng, shape + (DIM,))
        if step % 2:
            grad = grad.reshape(-1, DIM)
        check_push(stub, table, ref, idx, grad, f"step {step}")
    info = stub.GetTable(pb.GetTableRequest(name=table))
    assert info.step == ref.pushes


def test_default_optimizer_is_sgd_with_lr_0_01(stub, table):
    ref = TorchTable(NUM, DIM, seed=7)
    ref.create_on(stub, table)
    rng = np.random.default_rng(8)
    for step in range(3):
        idx = random_indices(rng, NUM, (10,))
        check_push(stub, table, ref, idx, random_grad(rng, (10, DIM)),
                   f"step {step}")


def _rounding_stress_weights(rng, num, dim):
    """Rows spanning many magnitudes (fp16 overflow and subnormals) plus
    exact midpoints between adjacent fp16 and bf16 values (ties to even)."""
    scales = 10.0 ** rng.integers(-9, 6, size=(num, 1))
    scales[:4] = 1
    weight = torch.from_numpy(
        (rng.standard_normal((num, dim)) * scales).astype(np.float32))
    half = weight[:2].half()
    next_half = (half.view(torch.int16) + 1).view(torch.float16).float()
    weight[:2] = (half.float() + next_half) / 2
    bf_bits = weight[2:4].view(torch.int32) & ~0xFFFF
    weight[2:4] = (bf_bits | 0x8000).view(torch.float32)
    weight[4, 0] = -0.0
    return weight


@pytest.mark.parametrize("dtype,convert", [
    (pb.DTYPE_FLOAT16, torch.Tensor.half),
    (pb.DTYPE_BFLOAT16, torch.Tensor.bfloat16),
])
def test_reduced_precision_lookup_rounds_like_torch(stub, table, dtype,
                                                    convert):
    rng = np.random.default_rng(9)
    weight = _rounding_stress_weights(rng, NUM, DIM)
    ref = TorchTable(NUM, DIM, weight=weight)
    ref.create_on(stub, table)
    idx = random_indices(rng, NUM, (3, 7))
    got = lookup(stub, table, idx, dtype=dtype)
    expected = convert(ref.lookup(idx))
    assert got.dtype == expected.dtype
    # Bit-exact (same NaN-free values, round to nearest even).
    assert torch.equal(got.view(torch.int16), expected.view(torch.int16)), (
        torch.nonzero(got.view(torch.int16) != expected.view(torch.int16)))


def _create_initialized(stub, name, num, dim, seed, initializer=None,
                        padding_idx=None):
    spec = pb.TableSpec(name=name, num_embeddings=num, embedding_dim=dim,
                        seed=seed)
    if initializer is not None:
        spec.initializer.CopyFrom(initializer)
    if padding_idx is not None:
        spec.padding_idx = padding_idx
    stub.CreateTable(pb.CreateTableRequest(spec=spec))
    return read_rows(stub, name)


def test_default_initializer_is_deterministic_normal(stub, table):
    a = _create_initialized(stub, table + "a", 256, 64, seed=42)
    b = _create_initialized(stub, table + "b", 256, 64, seed=42)
    c = _create_initialized(stub, table + "c", 256, 64, seed=43)
    assert torch.equal(a, b)
    assert (a != c).float().mean() > 0.99
    values = a.flatten().double()
    n = values.numel()
    assert abs(float(values.mean())) < 4 / n ** 0.5
    assert abs(float(values.std()) - 1) < 4 / (2 * n) ** 0.5
    # Kolmogorov-Smirnov distance to torch's N(0, 1) (alpha ~ 1e-3).
    sorted_values = values.sort().values
    cdf = torch.distributions.Normal(0.0, 1.0).cdf(sorted_values)
    steps = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum(steps - cdf, cdf - (steps - 1 / n)).max()
    assert float(ks) < 1.95 / n ** 0.5
    # Neighbouring rows and columns are uncorrelated.
    for x, y in ((a[:-1], a[1:]), (a[:, :-1], a[:, 1:])):
        corr = torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1]
        assert abs(float(corr)) < 4 / n ** 0.5


def test_initializer_is_a_function_of_seed_row_and_column(stub, table):
    small = _create_initialized(stub, table + "small", 40, 8, seed=7)
    big = _create_initialized(stub, table + "big", 90, 16, seed=7)
    assert torch.equal(big[:40, :8], small)


@pytest.mark.parametrize("initializer,check", [
    (pb.Initializer(normal=pb.Initializer.Normal(mean=3, std=0.5)),
     lambda v: (abs(v.mean() - 3) < 0.03 and abs(v.std() - 0.5) < 0.03)),
    (pb.Initializer(uniform=pb.Initializer.Uniform(low=-0.25, high=0.75)),
     lambda v: (v.min() >= -0.25 and v.max() <= 0.75
                and abs(v.mean() - 0.25) < 0.02
                and abs(v.std() - 1 / 12 ** 0.5) < 0.02)),
    (pb.Initializer(constant=pb.Initializer.Constant(value=1.5)),
     lambda v: bool((v == 1.5).all())),
], ids=["normal", "uniform", "constant"])
def test_initializers_and_zero_padding_row(stub, table, initializer, check):
    rows = _create_initialized(stub, table, 128, 32, seed=11,
                               initializer=initializer, padding_idx=-4)
    assert torch.equal(rows[124], torch.zeros(32))
    values = torch.cat([rows[:124], rows[125:]]).flatten().double()
    assert check(values), (float(values.mean()), float(values.std()))


@pytest.mark.parametrize("bad", [NUM, -1])
def test_out_of_range_index_is_rejected_as_torch_does(stub, table, bad):
    ref = TorchTable(NUM, DIM, max_norm=1.0, seed=12)
    ref.create_on(stub, table)
    idx = np.array([[1, 2, 3], [4, bad, 6]])
    with pytest.raises(IndexError):
        ref.lookup(idx)
    with pytest.raises(grpc.RpcError) as error:
        lookup(stub, table, idx)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(bad) in error.value.details()
    # Nothing renormed by the rejected lookup.
    assert_close(read_rows(stub, table), TorchTable(NUM, DIM, seed=12).weight,
                 "table after a rejected lookup")


def test_uploaded_weights_read_back_exactly(stub, table):
    ref = TorchTable(NUM, DIM, seed=13)
    ref.create_on(stub, table)
    assert torch.equal(read_rows(stub, table), ref.weight)
    idx = [5, 0, 5, 22]
    assert torch.equal(read_rows(stub, table, idx), ref.weight[idx])
    assert torch.equal(from_proto(to_proto(ref.weight)), ref.weight)
