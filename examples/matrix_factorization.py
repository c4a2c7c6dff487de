"""A matrix-factorisation recommender trained with local and remote embeddings.

    /usr/bin/python3 examples/matrix_factorization.py --server 127.0.0.1:50051

Ratings are generated from hidden low-rank user and item factors plus noise.
The same model (rating = <user row, item row> + a global bias) is trained
twice, from the same initial weights on the same batches:
- local:  nn.Embedding(sparse=True) tables stepped by a torch optimizer;
- remote: RemoteEmbedding tables on an embedding_server, in one of the two
          training modes (--push):
          backward: the server's optimizer applies each gradient that
                    backward() pushes (one server step per backward);
          step:     backward() accumulates the gradient locally and
                    RemoteOptimizer.step() pushes it, next to the torch
                    optimizer's step (here too once per batch).
          --pipeline N (with backward) sends pushes in the background, up
          to N queued, and prefetches the next batch's rows while the
          current batch computes: rows may then be up to N + 1 steps stale,
          so its losses differ a little from the local run's.
The global bias is a local Parameter in both runs (stepped by torch), so the
example also shows remote and local parameters side by side. Both losses are
printed per epoch; they agree to float rounding.

Run from the repository root with the build's stubs on the path (see
examples/README.md), or after `pip install client/python`.
"""

import argparse
import dataclasses
import sys

import torch
from torch import nn

from embedding_client import EmbeddingClient, NotFoundError
from embedding_client.nn import (RemoteEmbedding, RemoteOptimizer,
                                 download_embedding, local_parameters)


@dataclasses.dataclass
class Config:
    users: int = 500
    items: int = 400
    dim: int = 16
    rank: int = 4          # Rank of the hidden factors that make the data.
    ratings: int = 20_000
    batch_size: int = 256
    epochs: int = 5
    optimizer: str = "sgd"  # "sgd" or "adagrad".
    push: str = "backward"  # The remote tables' mode: "backward" or "step".
    pipeline: int = 0  # Pushes queued in the background (0: synchronous).
    lr: float = 0.0        # Of the tables; 0: the default below.
    bias_lr: float = 0.01
    seed: int = 0

    def learning_rate(self):
        return self.lr or {"sgd": 20.0, "adagrad": 0.1}[self.optimizer]


def make_ratings(config):
    """Returns (user ids, item ids, ratings) drawn from hidden factors."""
    generator = torch.Generator().manual_seed(config.seed)
    user_factors = torch.randn(config.users, config.rank, generator=generator)
    item_factors = torch.randn(config.items, config.rank, generator=generator)
    users = torch.randint(config.users, (config.ratings,), generator=generator)
    items = torch.randint(config.items, (config.ratings,), generator=generator)
    ratings = ((user_factors[users] * item_factors[items]).sum(1) / 2 + 3
               + 0.1 * torch.randn(config.ratings, generator=generator))
    return users, items, ratings


def batches(config, data):
    """Yields (epoch, users, items, ratings) in a fixed, seeded order."""
    users, items, ratings = data
    generator = torch.Generator().manual_seed(config.seed + 1)
    for epoch in range(config.epochs):
        order = torch.randperm(len(ratings), generator=generator)
        for begin in range(0, len(order), config.batch_size):
            batch = order[begin:begin + config.batch_size]
            yield epoch, users[batch], items[batch], ratings[batch]


def initial_embeddings(config):
    """Returns the starting (users, items) tables as local nn.Embedding."""
    generator = torch.Generator().manual_seed(config.seed + 2)
    tables = []
    for rows in (config.users, config.items):
        table = nn.Embedding(rows, config.dim, sparse=True)
        with torch.no_grad():
            table.weight.copy_(
                0.1 * torch.randn(rows, config.dim, generator=generator))
        tables.append(table)
    return tables


class MatrixFactorization(nn.Module):
    """rating(user, item) = <users[user], items[item]> + bias."""

    def __init__(self, users, items):
        super().__init__()
        self.users = users
        self.items = items
        self.bias = nn.Parameter(torch.full((), 3.0))

    def forward(self, users, items):
        return (self.users(users) * self.items(items)).sum(-1) + self.bias


def torch_optimizer(config, model):
    """The torch optimizer matching config.optimizer, for local parameters.

    The bias gets its own small learning rate; the embedding tables, when
    local, get config.learning_rate(). (local_parameters leaves out the
    remote tables' parameters, which hold no rows.)
    """
    kind = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad}
    tables = [p for p in local_parameters(model) if p is not model.bias]
    groups = [{"params": [model.bias], "lr": config.bias_lr}]
    if tables:
        groups.append({"params": tables})
    return kind[config.optimizer](groups, lr=config.learning_rate())


def server_optimizer(config):
    """The server-side optimizer matching config.optimizer, in the dict form
    (its "type" is the optimizer's name in embedding_client.OPTIMIZERS)."""
    return {"type": config.optimizer, "lr": config.learning_rate()}


def train(model, optimizers, config, data, prefetch=False):
    """Trains `model`; returns the loss of every step, in order.

    prefetch: look the next batch's rows up while this one computes.
    """
    losses = []
    steps = list(batches(config, data))
    for step, (_, users, items, ratings) in enumerate(steps):
        for optimizer in optimizers:
            optimizer.zero_grad()
        predictions = model(users, items)
        if prefetch and step + 1 < len(steps):
            _, next_users, next_items, _ = steps[step + 1]
            model.users.prefetch(next_users)
            model.items.prefetch(next_items)
        loss = nn.functional.mse_loss(predictions, ratings)
        loss.backward()  # push="backward" tables push their gradients here,
        for optimizer in optimizers:  # push="step" ones in remote.step().
            optimizer.step()
        losses.append(loss.item())
    return losses


def train_local(config, data):
    """Returns (losses, model) of the all-local run."""
    users, items = initial_embeddings(config)
    model = MatrixFactorization(users, items)
    return train(model, [torch_optimizer(config, model)],
                 config, data), model


def train_remote(client, config, data, prefix="mf"):
    """Returns (losses, model) of the run with RemoteEmbedding tables.

    Creates the tables `<prefix>_users` and `<prefix>_items` (replacing old
    ones) from the same initial weights as the local run.
    """
    tables = []
    for name, local in zip(("users", "items"), initial_embeddings(config)):
        table = f"{prefix}_{name}"
        try:
            client.delete_table(table)
        except NotFoundError:
            pass
        tables.append(RemoteEmbedding.from_embedding(
            client, table, local, optimizer=server_optimizer(config),
            push=config.push, max_pushes_in_flight=config.pipeline))
    model = MatrixFactorization(*tables)
    # The torch optimizer steps the bias; the tables step on the server.
    optimizers = [torch_optimizer(config, model)]
    if config.push == "step":
        optimizers.append(RemoteOptimizer(model))
    losses = train(model, optimizers, config, data,
                   prefetch=config.pipeline > 0)
    for table in tables:
        table.flush()  # The last queued pushes.
    return losses, model


def epoch_means(config, losses):
    steps = len(losses) // config.epochs
    return [sum(losses[e * steps:(e + 1) * steps]) / steps
            for e in range(config.epochs)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="127.0.0.1:50051",
                        help="embedding_server address (host:port)")
    parser.add_argument("--optimizer", choices=("sgd", "adagrad"),
                        default="sgd")
    parser.add_argument("--push", choices=("backward", "step"),
                        default="backward",
                        help="training mode of the remote tables")
    parser.add_argument("--pipeline", type=int, default=0, metavar="N",
                        help="with --push backward: up to N pushes sent in "
                        "the background, and the next batch prefetched")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.0,
                        help="learning rate (default: 20 sgd, 0.1 adagrad)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = Config(optimizer=args.optimizer, push=args.push,
                    pipeline=args.pipeline, epochs=args.epochs, lr=args.lr,
                    seed=args.seed)
    data = make_ratings(config)

    local_losses, local_model = train_local(config, data)
    with EmbeddingClient(args.server) as client:
        remote_losses, remote_model = train_remote(client, config, data)
        trained = download_embedding(client, "mf_items")
        for table in ("mf_users", "mf_items"):
            client.delete_table(table)

    print(f"{config.optimizer}, lr {config.learning_rate()}, "
          f"{len(local_losses) // config.epochs} steps per epoch, "
          f"remote tables push on {config.push}"
          + (f", pipelined ({config.pipeline} pushes queued, prefetch)"
             if config.pipeline else ""))
    print("epoch  local loss  remote loss")
    for epoch, (local, remote) in enumerate(zip(
            epoch_means(config, local_losses),
            epoch_means(config, remote_losses)), 1):
        print(f"{epoch:5d}  {local:10.6f}  {remote:11.6f}")
    gap = (local_model.items.weight - trained.weight).abs().max().item()
    print(f"largest difference of the trained item rows: {gap:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
