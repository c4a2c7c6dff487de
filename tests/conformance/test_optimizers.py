"""Server-side sparse optimizers (issue 3) against torch.optim on
nn.Embedding(sparse=True), compared after every push; row-wise Adagrad
against FBGEMM's formula (oracle.RowwiseAdagrad), FTRL against TensorFlow's
(oracle.Ftrl; its own cases are in test_ftrl.py).

Each runs on a dense table and on a dynamic one (issue 15): with
admit_after 1 and a capacity above NUM, training a dynamic table on ids
[0, NUM) equals nn.Embedding(NUM) started from the same rows (FillRow of
those ids), for every optimizer."""

import numpy as np
import pytest

from embedding.v1 import embedding_service_pb2 as pb

from .oracle import Opt, TorchTable, check_push, check_training, random_grad

NUM, DIM = 24, 6
SHAPES = [(15,), (3, 6), (2, 2, 4)]

OPTIMIZERS = {
    "sgd": Opt("sgd", lr=0.2),
    "adagrad": Opt("adagrad", lr=0.3, lr_decay=0.05,
                   initial_accumulator_value=0.2, eps=1e-6),
    "adagrad_defaults": Opt("adagrad", lr=0.3),
    "sparse_adam": Opt("sparse_adam", lr=0.05, betas=(0.8, 0.95), eps=1e-6),
    "sparse_adam_defaults": Opt("sparse_adam", lr=0.05),
    "rowwise_adagrad": Opt("rowwise_adagrad", lr=0.3, eps=1e-6),
    "rowwise_adagrad_defaults": Opt("rowwise_adagrad", lr=0.3),
    "ftrl": Opt("ftrl", lr=0.2, lr_power=-0.6, l1=0.05, l2=0.1, beta=0.5,
                initial_accumulator_value=0.2),
}

# TorchTable arguments of each table kind (see oracle.TorchTable).
KINDS = {"dense": {}, "dynamic": dict(dynamic_capacity=2 * NUM)}

VARIANTS = {
    "plain": dict(),
    "padding_scale_grad_by_freq": dict(padding_idx=-2,
                                       scale_grad_by_freq=True),
    "padding_max_norm": dict(padding_idx=4, max_norm=2.0),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_matches_torch_after_every_push(stub, table, optimizer,
                                                   variant, kind):
    ref = TorchTable(NUM, DIM, optimizer=OPTIMIZERS[optimizer], seed=21,
                     **VARIANTS[variant], **KINDS[kind])
    ref.create_on(stub, table)
    check_training(stub, table, ref, np.random.default_rng(22), 21, SHAPES)
    info = stub.GetTable(pb.GetTableRequest(name=table))
    assert info.step == ref.pushes


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "sparse_adam",
                                       "rowwise_adagrad", "ftrl"])
def test_learning_rate_override_applies_to_one_push(stub, table, optimizer,
                                                    kind):
    ref = TorchTable(NUM, DIM, optimizer=OPTIMIZERS[optimizer], seed=23,
                     padding_idx=0, **KINDS[kind])
    ref.create_on(stub, table)
    check_training(stub, table, ref, np.random.default_rng(24), 8, SHAPES,
                   learning_rates=lambda step: (0.5 / (step + 1) if step % 2
                                                else None))


SET_OPTIMIZER = {
    "sgd": dict(lr=0.05),
    "adagrad": dict(lr=0.1, lr_decay=0.2, initial_accumulator_value=0.2,
                    eps=1e-4),
    "sparse_adam": dict(lr=0.02, betas=(0.5, 0.9), eps=1e-3),
    "rowwise_adagrad": dict(lr=0.1, eps=1e-3),
    "ftrl": dict(lr=0.1, lr_power=-0.8, l1=0.2, l2=0.05, beta=1.0),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer", SET_OPTIMIZER)
def test_set_optimizer_keeps_state_and_replaces_hyperparameters(
        stub, table, optimizer, kind):
    ref = TorchTable(NUM, DIM, optimizer=OPTIMIZERS[optimizer], seed=25,
                     scale_grad_by_freq=True, **KINDS[kind])
    ref.create_on(stub, table)
    rng = np.random.default_rng(26)
    if kind == "dynamic":
        # Every row gets its state now, as a dense table's has from the
        # start: a row admitted after SetOptimizer starts from the new
        # optimizer's initial state (FTRL's initial_accumulator_value).
        check_push(stub, table, ref, np.arange(NUM),
                   random_grad(rng, (NUM, DIM)), "admit every row")
    check_training(stub, table, ref, rng, 4, SHAPES)
    ref.set_hparams(**SET_OPTIMIZER[optimizer])
    info = stub.SetOptimizer(pb.SetOptimizerRequest(
        table=table, optimizer=ref.opt.proto()))
    assert info.spec.optimizer.WhichOneof("kind") == optimizer
    check_training(stub, table, ref, rng, 5, SHAPES)
