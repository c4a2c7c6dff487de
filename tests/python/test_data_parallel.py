"""Two data-parallel trainer processes on one remote table.

Each test starts two spawned trainers (tests/testing/trainer_worker.py):
they join a gloo process group, connect their own EmbeddingClient to the
module's server and train on their half of every batch. The oracle is local
PyTorch in this process, on the same initial rows and batches: the final
table, the server's step counter and every rank's loss at every step must
match it.
"""

import numpy as np
import pytest
import torch
from torch import nn

from embedding_client import SGD, Adagrad
from embedding_client.nn import download_embedding, upload_embedding
from tests.testing.trainer_worker import Job, loss_of, start_trainers

ROWS, DIM = 20, 4
HALF_BATCH = 6
WORLD_SIZE = 2
STEPS = 5
LR = 0.1
# Adagrad with a starting accumulator: a stateful optimizer (a step on each
# half differs from one step on their mean) whose step also depends on the
# gradient's scale (with a zero accumulator, Adagrad's step is the same for
# g and 2 g, so a sum would pass for a mean).
ADAGRAD_ACCUMULATOR = 0.1


def _initial_rows(seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(ROWS, DIM, generator=generator)


def _job(table, push, seed, skips=()):
    """A job of STEPS steps on random batches. Indices are drawn from few
    rows, so the ranks' halves share rows (their gradients must be summed
    on a row) and repeat rows. skips: the (step, rank) pairs where that rank
    skips the forward pass."""
    generator = np.random.default_rng(seed)
    steps = [[None if (step, rank) in skips else
              (generator.integers(0, ROWS // 2, HALF_BATCH),
               generator.standard_normal(HALF_BATCH).astype(np.float32))
              for rank in range(WORLD_SIZE)]
             for step in range(STEPS)]
    projection = generator.standard_normal(DIM).astype(np.float32)
    return Job(table=table, push=push, projection=projection, steps=steps)


def _local_table(rows):
    return nn.Embedding.from_pretrained(rows.clone(), freeze=False,
                                        sparse=True)


def _rank_losses(embedding, job, shares):
    """Each rank's loss on the local table as it is now (None: skipped)."""
    with torch.no_grad():
        return [None if share is None else
                loss_of(embedding(torch.as_tensor(share[0])), job.projection,
                        share[1]).item()
                for share in shares]


def _train_averaged_locally(rows, job):
    """What DistributedDataParallel would give: one Adagrad step per step on
    the gradient of the mean loss over the whole batch; a rank that skips
    adds nothing but still counts in the world size (DDP divides the summed
    gradient by the world size whoever took part). Returns (table, losses
    per step per rank)."""
    embedding = _local_table(rows)
    optimizer = torch.optim.Adagrad(
        embedding.parameters(), lr=LR,
        initial_accumulator_value=ADAGRAD_ACCUMULATOR)
    losses = []
    for shares in job.steps:
        losses.append(_rank_losses(embedding, job, shares))
        optimizer.zero_grad()
        present = [share for share in shares if share is not None]
        if len(present) == WORLD_SIZE:  # The whole batch at once.
            indices = np.concatenate([share[0] for share in present])
            targets = np.concatenate([share[1] for share in present])
            loss = loss_of(embedding(torch.as_tensor(indices)),
                           job.projection, targets)
        else:
            loss = sum(loss_of(embedding(torch.as_tensor(indices)),
                               job.projection, targets)
                       for indices, targets in present) / WORLD_SIZE
        loss.backward()
        optimizer.step()
    return embedding.weight.detach(), losses


def _train_asynchronously_locally(rows, job):
    """Each rank's SGD step on the gradient of its own loss, both computed
    from the same rows: W <- W - lr * (g_0 + g_1). Returns (table, losses
    per step per rank)."""
    embedding = _local_table(rows)
    optimizer = torch.optim.SGD(embedding.parameters(), lr=LR)
    losses = []
    for shares in job.steps:
        losses.append(_rank_losses(embedding, job, shares))
        optimizer.zero_grad()
        sum(loss_of(embedding(torch.as_tensor(indices)), job.projection,
                    targets) for indices, targets in shares).backward()
        optimizer.step()
    return embedding.weight.detach(), losses


def _run_trainers(job, server, tmp_path):
    """Per-step losses as [step][rank] (the trainers report [rank][step])."""
    by_rank = start_trainers(job, server.address, tmp_path).results()
    return [list(step) for step in zip(*by_rank)]


def _assert_losses_equal(remote, local):
    assert len(remote) == len(local) == STEPS
    for step, (remote_step, local_step) in enumerate(zip(remote, local)):
        assert [loss is None for loss in remote_step] == [
            loss is None for loss in local_step], f"step {step}"
        np.testing.assert_allclose(
            [loss for loss in remote_step if loss is not None],
            [loss for loss in local_step if loss is not None], rtol=1e-5,
            err_msg=f"step {step}")


@pytest.mark.parametrize("skips", [
    (),
    # Rank 1 has no gradient in steps 0 (its grad is None) and 2 (zeroed);
    # rank 0, the one that pushes, has none in step 3.
    ((0, 1), (2, 1), (3, 0)),
], ids=["full-batches", "ranks-skip-steps"])
def test_process_group_averages_like_data_parallel(server, client, table,
                                                   tmp_path, skips):
    """push="step" + RemoteOptimizer(process_group=WORLD): each step()
    averages the two ranks' sparse gradients and rank 0 pushes once, so the
    server's Adagrad steps as a single trainer on the whole batch would."""
    rows = _initial_rows(seed=1)
    upload_embedding(client, table, _local_table(rows),
                     optimizer=Adagrad(
                         lr=LR, initial_accumulator_value=ADAGRAD_ACCUMULATOR))
    job = _job(table, "step", seed=2, skips=skips)

    remote_losses = _run_trainers(job, server, tmp_path)

    local_rows, local_losses = _train_averaged_locally(rows, job)
    _assert_losses_equal(remote_losses, local_losses)
    torch.testing.assert_close(download_embedding(client, table).weight,
                               local_rows, rtol=0, atol=1e-5)
    assert client.get_table(table).step == STEPS  # One push per step.


def test_pushes_on_backward_are_steps_of_their_own(server, client, table,
                                                   tmp_path):
    """push="backward", the asynchronous parameter server: every trainer's
    backward() is a push and every push a server step of its own, with no
    averaging across trainers. The trainers go in lockstep (a barrier after
    both lookups, another after both pushes), so in each round both
    gradients g_0, g_1 are computed from the same rows W and, the server's
    optimizer being SGD, the round leaves W - lr * (g_0 + g_1) (the sum, not
    the mean: twice a DDP step) and adds 2 to the table's step counter.
    Without the lockstep a trainer may read rows the other already moved
    (stale gradients, as in Hogwild); the lockstep makes it exact."""
    rows = _initial_rows(seed=3)
    upload_embedding(client, table, _local_table(rows), optimizer=SGD(lr=LR))
    job = _job(table, "backward", seed=4)

    remote_losses = _run_trainers(job, server, tmp_path)

    local_rows, local_losses = _train_asynchronously_locally(rows, job)
    _assert_losses_equal(remote_losses, local_losses)
    torch.testing.assert_close(download_embedding(client, table).weight,
                               local_rows, rtol=0, atol=1e-5)
    assert client.get_table(table).step == WORLD_SIZE * STEPS
