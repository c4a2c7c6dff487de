"""The two training modes of the remote modules, freezing, and the functional
forms, against local PyTorch (nn.Embedding(Bag)(sparse=True) and the
matching torch optimizer) as the oracle, step for step.

- push="step" with RemoteOptimizer: gradient accumulation over micro-batches,
  a module called twice in one forward pass, and clip_grad_norm_ over all
  parameters give what the local model gives, after every step.
- push="backward": each backward() is a server step (two calls, two steps).
- Frozen tables (requires_grad_(False) anywhere above them, or no_grad) push
  nothing: the server's step counter does not move.
"""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from embedding_client import SGD, Adagrad, SparseAdam
from embedding_client.nn import (RemoteEmbedding, RemoteEmbeddingBag,
                                 RemoteOptimizer, functional, local_parameters)

ROWS, DIM = 30, 6
LR = 0.3

# The server's optimizer and the torch optimizer of the local oracle.
OPTIMIZERS = {
    "sgd": (SGD(lr=LR), lambda params: torch.optim.SGD(params, lr=LR)),
    "adagrad": (Adagrad(lr=LR),
                lambda params: torch.optim.Adagrad(params, lr=LR)),
    "sparse_adam": (SparseAdam(lr=0.05),
                    lambda params: torch.optim.SparseAdam(params, lr=0.05)),
}


class Model(nn.Module):
    """An embedding table and a local linear head: score = head(rows)."""

    def __init__(self, embedding):
        super().__init__()
        self.embedding = embedding
        torch.manual_seed(1)
        self.head = nn.Linear(DIM, 1)

    def forward(self, indices, second=None):
        rows = self.embedding(indices)
        if second is not None:  # The table used twice in one forward pass.
            rows = rows + 0.5 * self.embedding(second)
        return self.head(rows).squeeze(-1)


def _local_embedding(**options):
    torch.manual_seed(0)
    return nn.Embedding(ROWS, DIM, sparse=True, **options)


def _models(client, table, optimizer, push, **options):
    """(local model, remote model) from the same initial weights."""
    local = Model(_local_embedding(**options))
    remote = Model(RemoteEmbedding.from_embedding(
        client, table, _local_embedding(**options), optimizer=optimizer,
        push=push))
    return local, remote


def _batches(steps, micro_batches, size=8):
    generator = torch.Generator().manual_seed(7)
    for _ in range(steps):
        yield [(torch.randint(ROWS, (size,), generator=generator),
                torch.randint(ROWS, (size,), generator=generator),
                torch.randn(size, generator=generator))
               for _ in range(micro_batches)]


def _train_step(model, optimizers, batch, *, two_calls, clip):
    """One optimizer step over the micro-batches of `batch`; returns the
    loss and the total gradient norm (None without clipping)."""
    for optimizer in optimizers:
        optimizer.zero_grad()
    total = 0.0
    for first, second, target in batch:
        output = model(first, second if two_calls else None)
        loss = F.mse_loss(output, target) / len(batch)
        loss.backward()
        total += loss.item()
    norm = (nn.utils.clip_grad_norm_(model.parameters(), clip).item()
            if clip else None)
    for optimizer in optimizers:
        optimizer.step()
    return total, norm


SCENARIOS = {  # name: (micro-batches, two calls per forward, clip norm)
    "accumulate_4": (4, False, None),
    "two_calls": (1, True, None),
    "clip_grad_norm": (2, True, 0.05),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_step_mode_trains_as_local(client, table, optimizer, scenario):
    server_optimizer, torch_optimizer = OPTIMIZERS[optimizer]
    micro_batches, two_calls, clip = SCENARIOS[scenario]
    local, remote = _models(client, table, server_optimizer, "step",
                            padding_idx=3)
    local_optimizers = [torch_optimizer(local.embedding.parameters()),
                        torch.optim.SGD(local.head.parameters(), lr=LR)]
    remote_optimizers = [RemoteOptimizer(remote),
                         torch.optim.SGD(local_parameters(remote), lr=LR)]
    for step, batch in enumerate(_batches(4, micro_batches), 1):
        expected = _train_step(local, local_optimizers, batch,
                               two_calls=two_calls, clip=clip)
        got = _train_step(remote, remote_optimizers, batch,
                          two_calls=two_calls, clip=clip)
        assert got == pytest.approx(expected, rel=1e-5), f"step {step}"
        torch.testing.assert_close(remote.embedding.to_embedding().weight,
                                   local.embedding.weight, atol=1e-5,
                                   rtol=1e-5, msg=f"rows after step {step}")
        torch.testing.assert_close(remote.head.weight, local.head.weight,
                                   atol=1e-5, rtol=1e-5)
        # One push per optimizer step, whatever the backward calls.
        assert remote.embedding.info().step == step
    if clip:  # The clip bound was hit, so the norm mattered.
        assert expected[1] > clip


def test_step_mode_scale_grad_by_freq_as_dense_torch(client, table):
    """torch has no sparse gradient with scale_grad_by_freq; the remote
    gradient equals its dense one (oracle: a dense local nn.Embedding)."""
    torch.manual_seed(0)
    local = nn.Embedding(ROWS, DIM, scale_grad_by_freq=True, padding_idx=2)
    remote = RemoteEmbedding.from_embedding(client, table, local,
                                            optimizer=SGD(lr=LR), push="step")
    local_optimizer = torch.optim.SGD(local.parameters(), lr=LR)
    remote_optimizer = RemoteOptimizer([remote])
    indices = torch.tensor([[1, 2, 2, 5], [5, 5, 7, 1]])
    for _ in range(3):
        for module, optimizer in ((local, local_optimizer),
                                  (remote, remote_optimizer)):
            optimizer.zero_grad()
            for micro in (indices, indices[:, :2]):
                out = module(micro)
                (out * torch.linspace(-1, 1, out.numel()).reshape(
                    out.shape)).sum().backward()
            optimizer.step()
        torch.testing.assert_close(remote.to_embedding().weight,
                                   local.weight)


@pytest.mark.parametrize("mode,sample_weights", [
    ("sum", True), ("mean", False), ("max", False)])
def test_step_mode_bags_train_as_local(client, table, mode, sample_weights):
    torch.manual_seed(0)
    # torch has no sparse gradient for max bags; the dense one with
    # Adagrad leaves the rows without gradient as they are, as sparse does.
    local = nn.EmbeddingBag(ROWS, DIM, mode=mode, sparse=mode != "max",
                            padding_idx=4)
    remote = RemoteEmbeddingBag.from_embedding(
        client, table, local, optimizer=Adagrad(lr=LR), push="step")
    local_optimizer = torch.optim.Adagrad(local.parameters(), lr=LR)
    remote_optimizer = RemoteOptimizer(remote)
    generator = torch.Generator().manual_seed(3)
    for step in range(3):
        micro_batches = []
        for _ in range(2):
            indices = torch.randint(ROWS, (12,), generator=generator)
            offsets = torch.tensor([0, 3, 3, 7])  # Bag 1 is empty.
            weights = (torch.rand(12, generator=generator)
                       if sample_weights else None)
            micro_batches.append((indices, offsets, weights))
        for module, optimizer in ((local, local_optimizer),
                                  (remote, remote_optimizer)):
            optimizer.zero_grad()
            for indices, offsets, weights in micro_batches:
                out = module(indices, offsets, per_sample_weights=weights)
                (out * torch.linspace(-1, 1, out.numel()).reshape(
                    out.shape)).sum().backward()
            optimizer.step()
        torch.testing.assert_close(remote.to_embedding().weight,
                                   local.weight, msg=f"step {step}")


def test_backward_mode_steps_on_every_backward(client, table):
    """Documented: push="backward" makes one server step per backward
    call of the module: two calls in one forward pass are two steps."""
    _, remote = _models(client, table, SGD(lr=LR), "backward")
    batch = next(_batches(1, 1))
    _train_step(remote, [torch.optim.SGD(local_parameters(remote), lr=LR)],
                batch, two_calls=True, clip=None)
    assert remote.embedding.info().step == 2


def _freeze_module(model):
    model.embedding.requires_grad_(False)


def _freeze_parent(model):
    model.requires_grad_(False)
    model.head.requires_grad_(True)  # The loss still has a gradient.


def _freeze_parameters(model):
    for parameter in model.embedding.parameters():
        parameter.requires_grad = False


FREEZES = {"module": _freeze_module, "parent": _freeze_parent,
           "parameters": _freeze_parameters}


@pytest.mark.parametrize("push", ["backward", "step"])
@pytest.mark.parametrize("freeze", FREEZES)
def test_frozen_tables_push_nothing(client, table, push, freeze):
    _, remote = _models(client, table, SGD(lr=LR), push)
    FREEZES[freeze](remote)
    before = remote.embedding.info()
    optimizers = [torch.optim.SGD(local_parameters(remote), lr=LR)]
    if push == "step":
        optimizers.append(RemoteOptimizer(remote))
    _train_step(remote, optimizers, next(_batches(1, 2)), two_calls=True,
                clip=None)
    assert remote.head.weight.grad is not None  # The model did train.
    after = remote.embedding.info()
    assert (after.step, after.version) == (before.step, before.version)
    if push == "step":
        assert remote.embedding.weight.grad is None


@pytest.mark.parametrize("push", ["backward", "step"])
def test_no_grad_and_eval(client, table, push):
    """Under no_grad nothing is pushed; eval() freezes nothing (as for
    nn.Embedding, whose weight eval() does not freeze either)."""
    _, remote = _models(client, table, SGD(lr=LR), push)
    first, second, _ = next(_batches(1, 1))[0]
    with torch.no_grad():
        assert not remote(first, second).requires_grad
    assert remote.embedding.info().step == 0
    remote.eval()
    remote(first).sum().backward()
    if push == "step":
        RemoteOptimizer(remote).step()
    assert remote.embedding.info().step == 1


def test_remote_optimizer_lr_follows_a_torch_scheduler(client, table):
    local, remote = _models(client, table, SGD(lr=99.0), "step")
    local_optimizer = torch.optim.SGD(local.embedding.parameters(), lr=LR)
    remote_optimizer = RemoteOptimizer(remote, lr=LR)  # Not the table's 99.
    schedulers = [torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
                  for optimizer in (local_optimizer, remote_optimizer)]
    for batch in _batches(3, 1):
        for model, optimizer in ((local, local_optimizer),
                                 (remote, remote_optimizer)):
            _train_step(model, [optimizer], batch, two_calls=False,
                        clip=None)
        for scheduler in schedulers:
            scheduler.step()
        torch.testing.assert_close(remote.embedding.to_embedding().weight,
                                   local.embedding.weight)
    assert remote_optimizer.param_groups[0]["lr"] == LR / 8


def test_a_torch_optimizer_on_a_remote_weight_is_caught(client, table):
    _, remote = _models(client, table, SGD(lr=LR), "step")
    wrong = torch.optim.SGD(remote.parameters(), lr=LR)  # Not local_...
    first, _, target = next(_batches(1, 1))[0]
    F.mse_loss(remote(first), target).backward()
    wrong.step()  # Writes into the empty sparse weight.
    with pytest.raises(RuntimeError, match="local_parameters"):
        remote(first)


def test_remote_optimizer_takes_only_step_modules(client, table):
    _, remote = _models(client, table, SGD(lr=LR), "backward")
    with pytest.raises(ValueError, match="push='step'"):
        RemoteOptimizer(remote)
    with pytest.raises(ValueError, match="no remote table"):
        RemoteOptimizer(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="push must be one of"):
        RemoteEmbedding(remote.embedding.client, table, push="later")


def test_functional_forms_as_torch_functional(client, table):
    client.create_table(table, ROWS, DIM, optimizer=SGD(lr=LR))
    weight = torch.from_numpy(client.read_rows(table)).requires_grad_()
    indices = torch.tensor([[1, 2], [2, 9]])
    offsets = torch.tensor([0, 1, 3])
    flat = indices.reshape(-1)
    got = (functional.embedding(indices, client, table),
           functional.embedding_bag(flat, client, table, offsets,
                                    mode="sum"))
    expected = (F.embedding(indices, weight),
                F.embedding_bag(flat, weight, offsets, mode="sum"))
    for value, oracle in zip(got, expected):
        torch.testing.assert_close(value, oracle)
    (got[0].sum() + (2 * got[1]).sum()).backward()  # Two pushes.
    (expected[0].sum() + (2 * expected[1]).sum()).backward()
    with torch.no_grad():
        weight -= LR * weight.grad
    torch.testing.assert_close(torch.from_numpy(client.read_rows(table)),
                               weight.detach())
    assert client.get_table(table).step == 2
    functional.embedding(indices, client, table,
                         requires_grad=False).sum().sum()
    assert not functional.embedding(indices, client, table,
                                    requires_grad=False).requires_grad
