"""Pipelined training (embedding_client/nn/pipeline.py) against a real server.

- With staleness zero (flush() after each backward, prefetch after the
  flush) pipelined training equals synchronous training, which equals
  local nn.Embedding(sparse=True) + the torch optimizer (the oracle).
- At most max_pushes_in_flight pushes are queued: backward() blocks beyond.
- Rows looked up while pushes are queued miss exactly those pushes.
- A push that fails in the background is raised by the next call.
"""

import copy
import pickle
import threading

import numpy as np
import pytest
import torch
from torch import nn

from embedding_client import SGD, Adagrad, InvalidArgumentError
from embedding_client.nn import RemoteEmbedding, RemoteEmbeddingBag

ROWS, DIM = 25, 4


def _local(sparse=True):
    torch.manual_seed(0)
    return nn.Embedding(ROWS, DIM, sparse=sparse)


def _batches(count, size=6):
    generator = torch.Generator().manual_seed(11)
    return [torch.randint(ROWS, (size,), generator=generator)
            for _ in range(count)]


def _loss(rows):
    return (rows * torch.linspace(-1, 1, rows.numel()).reshape(
        rows.shape)).pow(2).sum()


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_zero_staleness_equals_local(client, table, optimizer):
    server_optimizer, torch_optimizer = {
        "sgd": (SGD(lr=0.2), torch.optim.SGD),
        "adagrad": (Adagrad(lr=0.2), torch.optim.Adagrad)}[optimizer]
    local = _local()
    local_optimizer = torch_optimizer(local.parameters(), lr=0.2)
    remote = RemoteEmbedding.from_embedding(
        client, table, _local(), optimizer=server_optimizer,
        max_pushes_in_flight=3)
    batches = _batches(6)
    remote.prefetch(batches[0])
    for step, batch in enumerate(batches):
        local_optimizer.zero_grad()
        expected = local(batch)
        _loss(expected).backward()
        local_optimizer.step()

        got = remote(batch)  # The prefetched rows.
        torch.testing.assert_close(got, expected, msg=f"step {step}")
        _loss(got).backward()  # Queued.
        remote.flush()  # Applied: staleness zero.
        if step + 1 < len(batches):
            remote.prefetch(batches[step + 1])
    torch.testing.assert_close(remote.to_embedding().weight, local.weight)
    assert remote._pipeline.prefetch_hits == len(batches)
    assert remote.info().step == len(batches)


class _GatedClient:
    """The real client, whose pushes wait until the gate opens."""

    def __init__(self, client):
        self._client = client
        self.gate = threading.Event()

    def push_gradients(self, *args, **kwargs):
        assert self.gate.wait(60), "the test never opened the gate"
        return self._client.push_gradients(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_queued_pushes_are_bounded_and_rows_miss_only_them(client, table):
    remote = RemoteEmbedding.from_embedding(
        client, table, _local(), optimizer=SGD(lr=0.5),
        max_pushes_in_flight=2)
    gated = _GatedClient(client)
    remote.client = gated
    batch = torch.tensor([1, 2, 3])
    initial = remote(batch).detach()
    for _ in range(2):  # Both queued (one being sent, waiting at the gate).
        _loss(remote(batch)).backward()
    # Two steps stale: the rows are still the initial ones.
    torch.testing.assert_close(remote(batch).detach(), initial)

    third = remote(batch)
    blocked = threading.Thread(target=lambda: _loss(third).backward())
    blocked.start()
    blocked.join(0.5)
    assert blocked.is_alive(), "a third push was queued past the bound"
    gated.gate.set()
    blocked.join(60)
    assert not blocked.is_alive()
    remote.flush()
    assert remote._pipeline.most_in_flight == 2
    assert remote.info().step == 3
    # All three gradients came from the initial rows; SGD applied each:
    expected = initial - 0.5 * 3 * torch.autograd.functional.jacobian(
        _loss, initial)
    torch.testing.assert_close(remote(batch).detach(), expected)


def test_a_failed_background_push_is_raised_by_the_next_call(client, table):
    remote = RemoteEmbedding.from_embedding(
        client, table, _local(), optimizer=SGD(lr=0.5),
        max_pushes_in_flight=4, learning_rate=-1.0)  # The server refuses.
    batch = torch.tensor([4, 5])
    _loss(remote(batch)).backward()  # Returns: the push is queued.
    remote._pipeline.wait()  # Sent and refused; not raised yet.
    with pytest.raises(InvalidArgumentError, match="learning_rate"):
        remote(batch)
    remote(batch)  # Raised once; the module goes on.
    _loss(remote(batch)).backward()
    with pytest.raises(InvalidArgumentError, match="learning_rate"):
        remote.flush()
    assert remote.info().step == 0


def test_prefetch_of_another_input_is_not_used(client, table):
    remote = RemoteEmbeddingBag.from_embedding(
        client, table, nn.EmbeddingBag(ROWS, DIM, mode="sum"),
        optimizer=SGD(lr=0.5))
    indices, offsets = torch.tensor([1, 2, 3, 4]), torch.tensor([0, 2])
    remote.prefetch(indices, offsets)
    other = torch.tensor([1, 2, 3, 5])
    rows = remote(other, offsets)
    expected = client.lookup_bag(table, other.numpy(), offsets.numpy(),
                                 mode="sum")
    np.testing.assert_array_equal(rows.detach().numpy(), expected)
    buffer = indices.clone()
    remote.prefetch(buffer, offsets)
    buffer.copy_(other)  # Refilled before forward(): a different request.
    remote(buffer, offsets)
    assert (remote._pipeline.prefetch_hits,
            remote._pipeline.prefetch_misses) == (0, 2)
    remote.prefetch(other, offsets)
    remote(other.clone(), offsets)
    assert remote._pipeline.prefetch_hits == 1


def test_pipelined_modules_copy_and_pickle(client, table):
    remote = RemoteEmbedding.from_embedding(
        client, table, _local(), optimizer=SGD(lr=0.5),
        max_pushes_in_flight=2)
    remote.prefetch(torch.tensor([1]))
    _loss(remote(torch.tensor([1]))).backward()
    for twin in (copy.deepcopy(remote), pickle.loads(pickle.dumps(remote))):
        assert twin._pipeline is None and twin.max_pushes_in_flight == 2
        _loss(twin(torch.tensor([2]))).backward()
        twin.flush()
    remote.flush()
    assert remote.info().step == 3


def test_pipelining_options_are_checked(client, table):
    client.create_table(table, ROWS, DIM)
    with pytest.raises(ValueError, match="max_pushes_in_flight"):
        RemoteEmbedding(client, table, max_pushes_in_flight=-1)
    with pytest.raises(ValueError, match="push='backward'"):
        RemoteEmbedding(client, table, push="step", max_pushes_in_flight=2)


def test_lookup_stream_of_a_module_equals_forward(client, table):
    remote = RemoteEmbedding.from_embedding(client, table, _local(),
                                            optimizer=SGD(lr=0.5))
    inputs = [torch.tensor([[1, 2], [3, 4]]), torch.tensor([7]),
              torch.tensor([0, 0, 24])]
    got = list(remote.lookup_stream(iter(inputs)))
    assert len(got) == len(inputs)
    for rows, input in zip(got, inputs):
        assert rows.dtype == torch.float32 and not rows.requires_grad
        torch.testing.assert_close(rows, remote(input).detach())
