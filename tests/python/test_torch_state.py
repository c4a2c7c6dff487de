"""Saving and loading models with remote tables: state_dict, torch.save of a
whole model (pickling, also into a spawned process), copy.deepcopy.

The oracle is a local model with nn.Embedding tables: a remote model's
state_dict has the same keys and values, and loads into it (and back).
"""

import copy
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from embedding_client import SGD, Adagrad, EmbeddingClient
from embedding_client.nn import (RemoteEmbedding, RemoteEmbeddingBag,
                                 StateDictTooLargeError, rebuild,
                                 remote_tables)
from tests.testing.server_process import ServerProcess

ROWS, DIM = 40, 5
HERE = pathlib.Path(__file__).resolve().parent


class Model(nn.Module):
    """Two tables (one a bag) and a local layer."""

    def __init__(self, users, items):
        super().__init__()
        self.users = users
        self.items = items
        torch.manual_seed(1)
        self.head = nn.Linear(DIM, 1)

    def forward(self, users, items, offsets):
        return self.head(self.users(users) * self.items(items, offsets))


def _local_model(seed=0):
    torch.manual_seed(seed)
    return Model(nn.Embedding(ROWS, DIM, padding_idx=0),
                 nn.EmbeddingBag(ROWS, DIM, mode="sum"))


def _remote_model(client, prefix, push="backward", local=None, **options):
    local = local or _local_model()
    return Model(
        RemoteEmbedding.from_embedding(client, f"{prefix}.users", local.users,
                                       optimizer=SGD(lr=0.1), push=push,
                                       **options),
        RemoteEmbeddingBag.from_embedding(client, f"{prefix}.items",
                                          local.items,
                                          optimizer=Adagrad(lr=0.1),
                                          push=push, **options))


def _inputs():
    return (torch.tensor([1, 0, 7]), torch.tensor([2, 3, 9, 9, 11]),
            torch.tensor([0, 2, 4]))


def _train(model, steps=3):
    optimizer = torch.optim.SGD(model.head.parameters(), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        model(*_inputs()).pow(2).mean().backward()
        optimizer.step()


def _assert_same_state(got, expected):
    assert list(got) == list(expected)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], msg=key)


@pytest.mark.parametrize("push", ["backward", "step"])
def test_state_dict_is_the_local_models(client, table, push):
    local = _local_model()
    remote = _remote_model(client, table, push, local=_local_model())
    _assert_same_state(remote.state_dict(), local.state_dict())
    identities = remote_tables(remote.state_dict())
    assert set(identities) == {"users", "items"}
    users = identities["users"]
    assert (users["addresses"], users["table"], users["num_embeddings"],
            users["embedding_dim"], users["padding_idx"]) == (
                [client.address], f"{table}.users", ROWS, DIM, 0)
    assert users["options"]["push"] == push
    assert identities["items"]["options"]["mode"] == "sum"


def test_save_and_load_round_trip(client, table, tmp_path):
    model = _remote_model(client, table)
    _train(model)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    expected_output = model(*_inputs()).detach()
    expected_rows = client.read_rows(f"{table}.users")

    _train(model)  # Moves on: rows and head change.
    assert not np.array_equal(client.read_rows(f"{table}.users"),
                              expected_rows)
    model.load_state_dict(torch.load(tmp_path / "model.pt"))
    np.testing.assert_array_equal(client.read_rows(f"{table}.users"),
                                  expected_rows)
    torch.testing.assert_close(model(*_inputs()).detach(), expected_output)


def test_state_dicts_move_between_remote_and_local(client, table):
    remote = _remote_model(client, table)
    _train(remote)
    local = _local_model(seed=5)
    local.load_state_dict(remote.state_dict())  # strict
    torch.testing.assert_close(local(*_inputs()), remote(*_inputs()))

    trained_locally = _local_model(seed=6)
    remote.load_state_dict(trained_locally.state_dict())
    _assert_same_state(remote.state_dict(), trained_locally.state_dict())


def test_rebuild_on_a_fresh_server(client, table, tmp_path):
    """A model saved from one server is rebuilt on an empty one from the
    identities in its state_dict, then loaded."""
    model = _remote_model(client, table)
    _train(model)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    saved = torch.load(tmp_path / "model.pt")
    with ServerProcess() as fresh, EmbeddingClient(fresh.address) as other:
        identities = remote_tables(saved)
        rebuilt = Model(*(rebuild(identities[name], other, create=True)
                          for name in ("users", "items")))
        rebuilt.load_state_dict(saved)
        torch.testing.assert_close(rebuilt(*_inputs()), model(*_inputs()))
        info = other.get_table(f"{table}.items")
        assert info.optimizer == Adagrad(lr=0.1)  # The saved spec.
        assert rebuilt.items.mode == "sum"


def test_tables_too_big_for_a_state_dict(client, table):
    model = _remote_model(client, table, state_dict_max_bytes=100)
    with pytest.raises(StateDictTooLargeError, match="save_checkpoint"):
        model.state_dict()


def test_state_dict_without_weights_keeps_the_identity(client, table):
    model = _remote_model(client, table, state_dict_weights=False)
    state = model.state_dict()
    assert list(state) == ["head.weight", "head.bias"]
    assert set(remote_tables(state)) == {"users", "items"}
    rows = client.read_rows(f"{table}.users")
    model.load_state_dict(state)  # strict: no weight expected
    np.testing.assert_array_equal(client.read_rows(f"{table}.users"), rows)


def test_load_of_a_wrong_shape_changes_nothing(client, table):
    model = _remote_model(client, table)
    state = model.state_dict()
    state["users.weight"] = torch.zeros(ROWS + 1, DIM)
    rows = client.read_rows(f"{table}.users")
    with pytest.raises(RuntimeError, match="size mismatch for users.weight"):
        model.load_state_dict(state)
    np.testing.assert_array_equal(client.read_rows(f"{table}.users"), rows)
    state = model.state_dict()
    state["users.extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="users.extra"):
        model.load_state_dict(state)


def test_deepcopy_shares_the_remote_table(client, table):
    model = _remote_model(client, table, push="step")
    twin = copy.deepcopy(model)
    assert twin.users.client is model.users.client
    assert twin.users.weight is not model.users.weight
    assert twin.head.weight is not model.head.weight
    twin.users(torch.tensor([1, 2])).sum().backward()
    assert model.users.weight.grad is None  # Gradients are the copy's.
    torch.testing.assert_close(twin(*_inputs()), model(*_inputs()))


_CHILD = """
import sys
import numpy as np
import torch
sys.path.insert(0, sys.argv[3])  # Where the Model class is, as pytest has it.
model = torch.load(sys.argv[1])
users, items, offsets = (torch.tensor([1, 0, 7]), torch.tensor([2, 3, 9, 9, 11]),
                         torch.tensor([0, 2, 4]))
np.save(sys.argv[2], model(users, items, offsets).detach().numpy())
model(users, items, offsets).sum().backward()   # A push from the child.
"""


def test_whole_model_pickles_into_another_process(client, table, tmp_path):
    """torch.save(model) keeps the addresses and table names; a fresh
    process unpickles it, connects, looks up the same rows and pushes."""
    model = _remote_model(client, table)
    _train(model)
    torch.save(model, tmp_path / "model.pt")
    expected = model(*_inputs()).detach()  # Before the child's push.
    subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "model.pt"),
                    str(tmp_path / "out.npy"), str(HERE)], check=True,
                   timeout=120)
    torch.testing.assert_close(
        torch.from_numpy(np.load(tmp_path / "out.npy")), expected)
    assert model.users.info().step == 3 + 1


def test_whole_model_pickles_into_a_spawned_worker(client, table):
    model = _remote_model(client, table)
    context = torch.multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        rows = pool.apply(_lookup_in_worker, (model, [1, 0, 7]))
    np.testing.assert_array_equal(rows, model.users(
        torch.tensor([1, 0, 7])).detach().numpy())


def _lookup_in_worker(model, indices):
    with torch.no_grad():
        return model.users(torch.tensor(indices)).numpy()


