"""Training with RemoteEmbedding equals training with local nn.Embedding.

The example's matrix-factorisation model is trained for 4 epochs (316 steps)
from the same initial weights on the same batches, once with local sparse
tables and a torch optimizer, once with remote tables stepped by the server,
in both training modes (push="backward": each backward pushes; push="step":
RemoteOptimizer.step() pushes).
Losses must agree step by step and the final tables to 1e-5, on one server
and on a 3-shard cluster (the sharded client: pushes reach every shard, so
every shard counts every step). (They agree to
float rounding, not bit for bit: torch's `add_(g, alpha=-lr)` rounds once,
as a fused multiply-add, and the server may round twice.)
"""

import numpy as np
import pytest
import torch

from embedding_client import EmbeddingClient
from embedding_client.nn import download_embedding
from tests.testing.cluster import Cluster


@pytest.fixture(scope="module", params=[1, 3], ids=["1-shard", "3-shards"])
def trainer_client(request):
    """A client to one server, or to a cluster of 3 (the sharded client)."""
    if request.param == 1:
        yield request.getfixturevalue("client")
        return
    with Cluster(request.param) as cluster:
        with EmbeddingClient(cluster.addresses) as sharded:
            yield sharded


@pytest.mark.parametrize("push", ["backward", "step"])
@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_remote_training_matches_local(trainer_client, example, optimizer,
                                       push):
    client = trainer_client
    config = example.Config(optimizer=optimizer, push=push, epochs=4)
    data = example.make_ratings(config)
    local_losses, local_model = example.train_local(config, data)
    remote_losses, remote_model = example.train_remote(
        client, config, data, prefix=f"equivalence_{optimizer}_{push}")

    assert len(remote_losses) == len(local_losses) == 316
    np.testing.assert_allclose(remote_losses, local_losses, rtol=1e-5)
    assert local_losses[-1] < 0.25 * local_losses[0]  # It did learn.
    for name in ("users", "items"):
        table = f"equivalence_{optimizer}_{push}_{name}"
        torch.testing.assert_close(download_embedding(client, table).weight,
                                   getattr(local_model, name).weight,
                                   rtol=0, atol=1e-5)
        assert client.get_table(table).step == 316  # One step per push.
    torch.testing.assert_close(remote_model.bias, local_model.bias,
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("push", ["backward", "step"])
def test_example_prints_both_losses_per_epoch(server, example, capsys, push):
    assert example.main(["--server", server.address, "--epochs", "2",
                         "--push", push]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"remote tables push on {push}")
    assert lines[1].split() == ["epoch", "local", "loss", "remote", "loss"]
    for epoch, line in enumerate(lines[2:4], 1):
        number, local, remote = line.split()
        assert int(number) == epoch
        assert float(local) == pytest.approx(float(remote), rel=1e-5)
    assert lines[4].startswith("largest difference of the trained item rows")


def test_example_pipelined_learns_as_local(server, example, capsys):
    """--pipeline 2: rows up to 3 steps stale, so the losses differ from the
    local run's, but it learns as much (last epoch within 25%)."""
    assert example.main(["--server", server.address, "--epochs", "3",
                         "--pipeline", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("pipelined (2 pushes queued, prefetch)")
    losses = [tuple(map(float, line.split()[1:])) for line in lines[2:5]]
    assert losses[-1][1] < 0.1 * losses[0][1]  # It learned.
    assert losses[-1][1] == pytest.approx(losses[-1][0], rel=0.25)
