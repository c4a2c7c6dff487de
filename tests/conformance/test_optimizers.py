"""Server-side sparse optimizers (issue 3) against torch.optim on
nn.Embedding(sparse=True), compared after every push; row-wise Adagrad
against FBGEMM's formula (oracle.RowwiseAdagrad)."""

import numpy as np
import pytest

from embedding.v1 import embedding_service_pb2 as pb

from .oracle import (Opt, TorchTable, check_lookup, check_push, random_grad,
                     random_indices)

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
}

VARIANTS = {
    "plain": dict(),
    "padding_scale_grad_by_freq": dict(padding_idx=-2,
                                       scale_grad_by_freq=True),
    "padding_max_norm": dict(padding_idx=4, max_norm=2.0),
}


def _train(stub, table, ref, rng, steps, learning_rates=None):
    for step in range(steps):
        idx = random_indices(rng, NUM, SHAPES[step % len(SHAPES)],
                             ref.padding_idx)
        check_lookup(stub, table, ref, idx, f"step {step}")
        lr = learning_rates(step) if learning_rates else None
        check_push(stub, table, ref, idx, random_grad(rng, idx.shape + (DIM,)),
                   f"step {step}", learning_rate=lr)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_matches_torch_after_every_push(stub, table, optimizer,
                                                   variant):
    ref = TorchTable(NUM, DIM, optimizer=OPTIMIZERS[optimizer], seed=21,
                     **VARIANTS[variant])
    ref.create_on(stub, table)
    _train(stub, table, ref, np.random.default_rng(22), steps=21)
    info = stub.GetTable(pb.GetTableRequest(name=table))
    assert info.step == ref.pushes


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "sparse_adam",
                                       "rowwise_adagrad"])
def test_learning_rate_override_applies_to_one_push(stub, table, optimizer):
    ref = TorchTable(NUM, DIM, optimizer=OPTIMIZERS[optimizer], seed=23,
                     padding_idx=0)
    ref.create_on(stub, table)
    _train(stub, table, ref, np.random.default_rng(24), steps=8,
           learning_rates=lambda step: 0.5 / (step + 1) if step % 2 else None)


SET_OPTIMIZER = {
    "sgd": dict(lr=0.05),
    "adagrad": dict(lr=0.1, lr_decay=0.2, initial_accumulator_value=0.2,
                    eps=1e-4),
    "sparse_adam": dict(lr=0.02, betas=(0.5, 0.9), eps=1e-3),
    "rowwise_adagrad": dict(lr=0.1, eps=1e-3),
}


@pytest.mark.parametrize("optimizer", SET_OPTIMIZER)
def test_set_optimizer_keeps_state_and_replaces_hyperparameters(
        stub, table, optimizer):
    ref = TorchTable(NUM, DIM, optimizer=OPTIMIZERS[optimizer], seed=25,
                     scale_grad_by_freq=True)
    ref.create_on(stub, table)
    rng = np.random.default_rng(26)
    _train(stub, table, ref, rng, steps=4)
    ref.set_hparams(**SET_OPTIMIZER[optimizer])
    info = stub.SetOptimizer(pb.SetOptimizerRequest(
        table=table, optimizer=ref.opt.proto()))
    assert info.spec.optimizer.WhichOneof("kind") == optimizer
    _train(stub, table, ref, rng, steps=5)
