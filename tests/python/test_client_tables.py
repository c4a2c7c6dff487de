"""EmbeddingClient table management: create / get / list / delete /
set_optimizer, the options round trip, and the typed errors."""

import grpc
import numpy as np
import pytest

from embedding_client import (OPTIMIZERS, SGD, Adagrad, AlreadyExistsError,
                              Constant, EmbeddingClient, EmbeddingError,
                              FailedPreconditionError, InvalidArgumentError,
                              Normal, NotFoundError, ResourceExhaustedError,
                              SparseAdam, Uniform, UnavailableError)
from embedding_client._stubs import pb
from tests.testing.errors import raises
from tests.testing.server_process import ServerProcess


def test_create_table_returns_spec_as_given(client, table):
    info = client.create_table(table, 10, 4, padding_idx=-2, max_norm=1.5,
                               norm_type=3.0, scale_grad_by_freq=True,
                               optimizer=Adagrad(lr=0.5, lr_decay=0.1,
                                                 initial_accumulator_value=0.2,
                                                 eps=1e-6),
                               initializer=Uniform(-0.5, 0.5), seed=7)
    assert (info.name, info.num_embeddings, info.embedding_dim) == (table, 10,
                                                                    4)
    assert info.padding_idx == 8  # Normalised, as torch does.
    assert info.max_norm == 1.5 and info.norm_type == 3.0
    assert info.scale_grad_by_freq
    assert info.optimizer == Adagrad(lr=0.5, lr_decay=0.1,
                                     initial_accumulator_value=0.2, eps=1e-6)
    assert info.initializer == Uniform(-0.5, 0.5)
    assert info.seed == 7
    assert (info.local_rows, info.version, info.step) == (10, 0, 0)
    assert info.memory_bytes >= 2 * 10 * 4 * 4  # Weights + accumulators.


def _away_from_defaults(kind):
    """The kind's dataclass with every field moved off its default, inside
    every optimizer's valid range, as float32 fields hold it."""
    values = {}
    for field, wire, defaults in kind.fields():
        moved = tuple(float(str(np.float32(default / 2 + 0.125)))
                      for default in defaults)
        values[field] = moved if len(wire) > 1 else moved[0]
    return kind.options(**values)


@pytest.mark.parametrize("kind", OPTIMIZERS, ids=lambda kind: kind.name)
def test_every_optimizer_round_trips(client, table, kind):
    optimizer = _away_from_defaults(kind)
    info = client.create_table(table, 3, 2, optimizer=optimizer)
    assert info.optimizer == optimizer
    assert client.get_table(table).optimizer == optimizer


@pytest.mark.parametrize("kind", OPTIMIZERS, ids=lambda kind: kind.name)
def test_unsent_hyper_parameters_take_the_clients_defaults(client, table,
                                                          kind):
    info = client.create_table(table, 3, 2, optimizer=pb.Optimizer(
        **{kind.name: {}}))
    assert info.optimizer == kind.options()


def test_dict_form_names_the_optimizer(client, table):
    info = client.create_table(
        table, 3, 2, optimizer={"type": "sparse_adam", "lr": 0.5,
                                "betas": [0.8, 0.9]})
    assert info.optimizer == SparseAdam(lr=0.5, betas=(0.8, 0.9))


@pytest.mark.parametrize("kind", OPTIMIZERS, ids=lambda kind: kind.name)
def test_state_floats_are_what_the_server_holds(client, table, kind):
    rows, dim = 5, 3
    info = client.create_table(table, rows, dim, optimizer=kind.options())
    assert info.memory_bytes == 4 * rows * (dim + kind.state_floats(dim))


def test_defaults_are_sgd_and_normal(client, table):
    info = client.create_table(table, 3, 2)
    assert info.optimizer == SGD(lr=0.01)
    assert info.initializer == Normal(0.0, 1.0)
    assert info.padding_idx is None and info.max_norm is None
    assert info.norm_type == 2.0


def test_initializer_is_a_function_of_the_seed(client, table):
    client.create_table(table + "a", 50, 8, seed=3, initializer=Normal(0, 2))
    client.create_table(table + "b", 50, 8, seed=3, initializer=Normal(0, 2))
    client.create_table(table + "c", 50, 8, initializer=Constant(0.25))
    first = client.read_rows(table + "a")
    np.testing.assert_array_equal(first, client.read_rows(table + "b"))
    assert 1.5 < first.std() < 2.5
    np.testing.assert_array_equal(client.read_rows(table + "c"),
                                  np.full((50, 8), 0.25, np.float32))


def test_get_list_delete(client, table):
    client.create_table(table, 5, 3)
    assert client.get_table(table).embedding_dim == 3
    assert table in [info.name for info in client.list_tables()]
    client.delete_table(table)
    assert table not in [info.name for info in client.list_tables()]


@pytest.mark.parametrize("call", [
    lambda c, t: c.get_table(t),
    lambda c, t: c.delete_table(t),
    lambda c, t: c.set_optimizer(t, SGD(0.1)),
    lambda c, t: c.lookup(t, [0]),
    lambda c, t: c.lookup_bag(t, [0, 1], [0]),
    lambda c, t: c.push_gradients(t, [0], np.ones((1, 2))),
    lambda c, t: c.push_bag_gradients(t, [0, 1], [0], np.ones((1, 2))),
    lambda c, t: c.write_rows(t, np.ones((1, 2)), [0]),
    lambda c, t: c.read_rows(t),
], ids=["get_table", "delete_table", "set_optimizer", "lookup", "lookup_bag",
        "push_gradients", "push_bag_gradients", "write_rows", "read_rows"])
def test_unknown_table_is_not_found(client, call):
    with pytest.raises(NotFoundError) as error:
        call(client, "no_such_table")
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    assert "no_such_table" in error.value.message
    assert isinstance(error.value, (EmbeddingError, LookupError))
    assert str(error.value) == f"NOT_FOUND: {error.value.message}"


def test_duplicate_name_is_already_exists(client, table):
    client.create_table(table, 2, 2)
    with pytest.raises(AlreadyExistsError) as error:
        client.create_table(table, 2, 2)
    assert error.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert table in error.value.message


@pytest.mark.parametrize("kwargs, words", [
    (dict(num_embeddings=0, embedding_dim=2), "num_embeddings"),
    (dict(num_embeddings=4, embedding_dim=0), "embedding_dim"),
    (dict(num_embeddings=4, embedding_dim=2, padding_idx=4), "padding_idx"),
])
def test_bad_spec_is_invalid_argument(client, table, kwargs, words):
    with pytest.raises(InvalidArgumentError) as error:
        client.create_table(table, **kwargs)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert words in error.value.message


def test_bad_name_is_invalid_argument(client):
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match="name"):
        client.create_table("bad name!", 2, 2)


def test_weights_of_the_wrong_shape_are_refused_by_the_client(client, table):
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match=r"\[3, 2\]"):
        client.create_table(table, 4, 2, weights=np.zeros((3, 2)))
    with raises(grpc.StatusCode.NOT_FOUND):
        client.get_table(table)


def test_set_optimizer_replaces_hyper_parameters(client, table):
    client.create_table(table, 4, 2, optimizer=Adagrad(lr=0.1))
    info = client.set_optimizer(table, Adagrad(lr=0.5, lr_decay=0.25))
    assert info.optimizer == Adagrad(lr=0.5, lr_decay=0.25)
    assert client.get_table(table).optimizer == info.optimizer


def test_set_optimizer_of_another_kind_is_failed_precondition(client, table):
    client.create_table(table, 4, 2, optimizer=Adagrad(lr=0.1))
    with pytest.raises(FailedPreconditionError) as error:
        client.set_optimizer(table, SGD(lr=0.1))
    assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "adagrad" in error.value.message


def test_bad_optimizer_arguments_are_refused_by_the_client(client, table):
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match="type"):
        client.create_table(table, 2, 2, optimizer={"type": "lbfgs"})
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match="optimizer"):
        client.create_table(table, 2, 2, optimizer="sgd")


def test_limits_are_resource_exhausted(table):
    with ServerProcess("--memory_budget_bytes=100000",
                       "--max_indices_per_request=100") as server:
        with EmbeddingClient(server.address) as client:
            with pytest.raises(ResourceExhaustedError) as error:
                client.create_table(table, 100_000, 64)
            assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            client.create_table(table, 10, 2)
            with raises(grpc.StatusCode.RESOURCE_EXHAUSTED, match="101"):
                client.lookup(table, np.zeros(101, np.int64))


def test_unreachable_server_is_unavailable():
    with EmbeddingClient("127.0.0.1:1", timeout=5, max_retries=1) as client:
        with pytest.raises(UnavailableError) as error:
            client.list_tables()
    assert error.value.code == grpc.StatusCode.UNAVAILABLE
    assert isinstance(error.value, ConnectionError)


def test_metadata_and_timeout_are_accepted(server):
    with EmbeddingClient(server.address, timeout=10,
                         metadata=[("x-trainer", "7")]) as client:
        assert isinstance(client.list_tables(timeout=5), list)
