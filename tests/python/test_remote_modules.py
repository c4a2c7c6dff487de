"""RemoteEmbedding / RemoteEmbeddingBag against nn.Embedding / nn.EmbeddingBag,
and the upload / download helpers."""

import pytest
import torch
from torch import nn

from embedding_client import SGD
from embedding_client.nn import (RemoteEmbedding, RemoteEmbeddingBag,
                                 download_embedding, local_parameters,
                                 upload_embedding)


def _local(rows=12, dim=5, **kwargs):
    torch.manual_seed(0)
    return nn.Embedding(rows, dim, **kwargs)


def _one_sgd_step(module, lr, *inputs):
    """Runs forward + backward of sum(out * w) and one SGD step if local."""
    module.zero_grad()
    out = module(*inputs)
    weight = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
    (out * weight).sum().backward()
    params = local_parameters(module)
    if params:
        torch.optim.SGD(params, lr=lr).step()
    return out


def test_helpers_round_trip_spec_and_weights(client, table):
    local = _local(padding_idx=3, max_norm=2.0, norm_type=1.0,
                   scale_grad_by_freq=True)
    info = upload_embedding(client, table, local, optimizer=SGD(lr=0.5))
    assert (info.padding_idx, info.max_norm, info.norm_type) == (3, 2.0, 1.0)
    copy = download_embedding(client, table, sparse=True)
    assert (copy.padding_idx, copy.max_norm, copy.norm_type,
            copy.scale_grad_by_freq, copy.sparse) == (3, 2.0, 1.0, True, True)
    torch.testing.assert_close(copy.weight, local.weight, rtol=0, atol=0)


def test_remote_embedding_trains_as_nn_embedding(client, table):
    local = _local(padding_idx=0, sparse=True)
    remote = RemoteEmbedding.from_embedding(client, table, local,
                                            optimizer=SGD(lr=0.5))
    # Its one parameter is the empty anchor of push="backward".
    assert [p.numel() for p in remote.parameters()] == [0]
    assert (remote.num_embeddings, remote.embedding_dim,
            remote.padding_idx) == (12, 5, 0)
    indices = torch.tensor([[1, 0, 4], [4, 4, 11]])
    for _ in range(3):
        expected = _one_sgd_step(local, 0.5, indices)
        got = _one_sgd_step(remote, 0.5, indices)
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(remote.to_embedding().weight, local.weight)
    assert remote.info().step == 3


def test_no_grad_forward_does_not_push(client, table):
    remote = RemoteEmbedding.create(client, table, 8, 3)
    with torch.no_grad():
        out = remote(torch.tensor([1, 2]))
    assert out.shape == (2, 3) and not out.requires_grad
    assert remote.info().version == 0


def test_half_precision_wire_gives_float32_outputs(client, table):
    local = _local()
    remote = RemoteEmbedding.from_embedding(client, table, local,
                                            wire_dtype="bfloat16")
    out = remote(torch.tensor([2, 3]))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, local.weight[[2, 3]].bfloat16().float(),
                               rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_remote_embedding_bag_trains_as_nn_embedding_bag(client, table,
                                                         mode):
    torch.manual_seed(0)
    local = nn.EmbeddingBag(12, 5, mode=mode, sparse=mode != "max")
    upload_embedding(client, table, local, optimizer=SGD(lr=0.5))
    remote = RemoteEmbeddingBag(client, table, mode=mode)
    indices, offsets = torch.tensor([1, 2, 4, 1, 4, 11]), torch.tensor([0, 2,
                                                                          3])
    for _ in range(3):
        expected = _one_sgd_step(local, 0.5, indices, offsets)
        got = _one_sgd_step(remote, 0.5, indices, offsets)
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(remote.to_embedding().weight, local.weight)


def test_remote_embedding_bag_with_sample_weights(client, table):
    torch.manual_seed(0)
    local = nn.EmbeddingBag(12, 5, mode="sum", sparse=True)
    remote = RemoteEmbeddingBag.from_embedding(client, table, local,
                                               optimizer=SGD(lr=0.5))
    assert remote.mode == "sum"
    indices = torch.tensor([[1, 2, 3], [3, 2, 1]])
    weights = torch.tensor([[0.5, 1.0, 2.0], [1.0, -1.0, 0.0]])
    expected = _one_sgd_step(local, 0.5, indices, None, weights)
    got = _one_sgd_step(remote, 0.5, indices, None, weights)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(remote.to_embedding().weight, local.weight)
    with pytest.raises(NotImplementedError, match="per_sample_weights"):
        remote(indices, None, weights.requires_grad_())
