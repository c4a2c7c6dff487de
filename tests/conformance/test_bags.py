"""LookupBag / PushBagGradients (issue 3) against F.embedding_bag and a
torch optimizer step: random offsets with empty bags, include_last_offset,
SUM / MEAN / MAX, per_sample_weights, padding_idx, max_norm and
scale_grad_by_freq.

The first two tests run on a dense table and on a dynamic one (issue 15;
more in test_bags_dynamic.py): with admit_after 1 and a capacity above NUM,
bags of ids [0, NUM) equal nn.EmbeddingBag over the same initial rows."""

import numpy as np
import pytest
import torch

from embedding.v1 import embedding_service_pb2 as pb
from embedding_client.options import RESERVED_ID

from .oracle import (Opt, TorchTable, assert_close, check_bag_step,
                     lookup_bag, random_bags)

NUM, DIM, BAGS, STEPS = 30, 5, 7, 4

# Table flags x request flags; torch refuses MAX with scale_grad_by_freq and
# per_sample_weights with MEAN/MAX, so those pairs are not listed.
CASES = [
    (mode, variant)
    for mode in ("sum", "mean", "max")
    for variant in ("plain", "include_last_offset", "padding", "max_norm",
                    "scale_grad_by_freq", "weighted", "weighted_padding")
    if not (mode == "max" and variant == "scale_grad_by_freq")
    and not (mode != "sum" and variant.startswith("weighted"))
]


class DynamicTorchTable(TorchTable):
    """A TorchTable of a dynamic table (see oracle.TorchTable): its MAX
    winners mark empty bags with RESERVED_ID, as the server does (-1 is an
    id there), and no row gets their gradient."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, dynamic_capacity=2 * NUM, **kwargs)

    def _max_winners(self, idx, off, include_last_offset):
        winners = super()._max_winners(idx, off, include_last_offset)
        winners[winners == -1] = RESERVED_ID
        return winners

    def _step(self, rows, learning_rate):
        super()._step(rows - {RESERVED_ID}, learning_rate)

    def push_bag(self, *args, **kwargs):
        return super().push_bag(*args, **kwargs) - {RESERVED_ID}


KINDS = {"dense": TorchTable, "dynamic": DynamicTorchTable}

TABLE_FLAGS = {
    "padding": dict(padding_idx=-3),
    "max_norm": dict(max_norm=1.5, norm_type=2.0, padding_idx=1),
    "scale_grad_by_freq": dict(scale_grad_by_freq=True, padding_idx=0),
    "weighted_padding": dict(padding_idx=2),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode,variant", CASES)
def test_bag_lookup_and_sgd_push_match_torch(stub, table, mode, variant,
                                             kind):
    ref = KINDS[kind](NUM, DIM, optimizer=Opt("sgd", lr=0.5), seed=31,
                      **TABLE_FLAGS.get(variant, {}))
    ref.create_on(stub, table)
    rng = np.random.default_rng(32)
    for step in range(STEPS):
        check_bag_step(stub, table, ref, rng, f"step {step}", bags=BAGS,
                       mode=mode,
                       include_last_offset=(variant == "include_last_offset"
                                            or step % 2 == 1),
                       weighted=variant.startswith("weighted"))


OPTIMIZERS = {
    "adagrad": Opt("adagrad", lr=0.3, lr_decay=0.1,
                   initial_accumulator_value=0.1, eps=1e-6),
    "sparse_adam": Opt("sparse_adam", lr=0.05, betas=(0.8, 0.95), eps=1e-6),
    "rowwise_adagrad": Opt("rowwise_adagrad", lr=0.3, eps=1e-6),
    "ftrl": Opt("ftrl", lr=0.2, l1=0.05, l2=0.1, beta=0.5),
}


# MAX with SparseAdam checks that only the winning rows move (torch's
# reference gradient is built from them); MEAN with scale_grad_by_freq the
# dense-to-sparse path.
@pytest.mark.parametrize("mode,flags", [
    ("sum", dict(padding_idx=3)),
    ("mean", dict(scale_grad_by_freq=True)),
    ("max", dict(padding_idx=-1, max_norm=2.0)),
], ids=["sum", "mean_scale_grad_by_freq", "max"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("kind", KINDS)
def test_bag_optimizer_steps_match_torch(stub, table, optimizer, mode, flags,
                                         kind):
    ref = KINDS[kind](NUM, DIM, optimizer=OPTIMIZERS[optimizer], seed=33,
                      **flags)
    ref.create_on(stub, table)
    rng = np.random.default_rng(34)
    for step in range(6):
        check_bag_step(stub, table, ref, rng, f"step {step}", bags=BAGS,
                       mode=mode, include_last_offset=step % 2 == 0,
                       weighted=(mode == "sum" and step % 3 == 0),
                       learning_rate=0.1 if step == 4 else None)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_bags_of_only_padding_are_zero_and_get_no_gradient(stub, table, mode):
    ref = TorchTable(NUM, DIM, padding_idx=4, optimizer=Opt("sgd", lr=0.5),
                     seed=35)
    ref.create_on(stub, table)
    batch = (np.array([4, 4, 1, 4, 4, 7, 7]), np.array([0, 2, 2, 4, 5]))
    check_bag_step(stub, table, ref, np.random.default_rng(36), "step",
                   mode=mode, batch=batch)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_indices_past_the_last_offset_belong_to_no_bag(stub, table, mode):
    ref = TorchTable(NUM, DIM, optimizer=Opt("sgd", lr=0.5), seed=37)
    ref.create_on(stub, table)
    batch = (np.array([3, 8, 8, 2, 11, 12, 3]), np.array([0, 1, 1, 4]))
    check_bag_step(stub, table, ref, np.random.default_rng(38), "step",
                   mode=mode, batch=batch, include_last_offset=True,
                   weighted=mode == "sum")


@pytest.mark.parametrize("dtype,convert", [
    (pb.DTYPE_FLOAT16, torch.Tensor.half),
    (pb.DTYPE_BFLOAT16, torch.Tensor.bfloat16),
])
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_reduced_precision_bag_lookup(stub, table, mode, dtype, convert):
    ref = TorchTable(NUM, DIM, padding_idx=0, seed=39)
    ref.create_on(stub, table)
    indices, offsets = random_bags(np.random.default_rng(40), NUM, BAGS,
                                   False, ref.padding_idx)
    got, _ = lookup_bag(stub, table, indices, offsets, mode, dtype=dtype)
    full, _ = lookup_bag(stub, table, indices, offsets, mode)
    expected, _ = ref.lookup_bag(indices, offsets, mode)
    # The rounding of the server's own float32 result, bit for bit ...
    assert torch.equal(got.view(torch.int16),
                       convert(full).view(torch.int16))
    # ... which is torch's result to 1e-5 before rounding.
    assert_close(full, expected, "float32 pooled output")
