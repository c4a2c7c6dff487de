"""save_checkpoint and TableInfo.last_checkpoint against a real server with
--checkpoint_dir; the codes of a server without one and of unknown tables;
a restart on the same directory brings the tables back."""

import os

import grpc
import numpy as np
import pytest

from embedding_client import CheckpointInfo, EmbeddingClient, SavedCheckpoint
from tests.testing.errors import raises
from tests.testing.server_process import ServerProcess

ROWS, DIM = 50, 8


@pytest.fixture(scope="module")
def durable(tmp_path_factory):
    """A server with a checkpoint directory, restartable on it."""
    directory = tmp_path_factory.mktemp("checkpoints")
    server = ServerProcess(checkpoint_dir=directory)
    server.start()
    yield server, directory
    server.close()


@pytest.fixture
def durable_client(durable):
    server, _ = durable
    with EmbeddingClient(server.address) as connection:
        yield connection


def _push(client, table, rows):
    client.push_gradients(table, rows,
                          np.ones((len(rows), DIM), np.float32))


def test_save_returns_one_saved_checkpoint_per_table(durable, durable_client,
                                                     table):
    client = durable_client
    client.create_table(f"{table}.b", ROWS, DIM)
    client.create_table(f"{table}.a", ROWS, DIM)
    _push(client, f"{table}.a", [1, 2])
    saved = client.save_checkpoint([f"{table}.b", f"{table}.a"])
    assert [s.table for s in saved] == [f"{table}.b", f"{table}.a"]
    a = saved[1]
    assert isinstance(a, SavedCheckpoint)
    assert a.version == client.get_table(f"{table}.a").version == 1
    assert a.rows == ROWS and not a.incremental
    assert a.bytes_written > ROWS * DIM * 4
    assert a.path.startswith(os.fspath(durable[1]))
    assert a.time_unix_micros > 0

    expected = CheckpointInfo(version=a.version,
                              time_unix_micros=a.time_unix_micros,
                              path=a.path, incremental=False)
    assert client.get_table(f"{table}.a").last_checkpoint == expected
    listed = {info.name: info for info in client.list_tables()}
    assert listed[f"{table}.a"].last_checkpoint == expected


def test_every_table_by_default_and_one_name_as_a_string(durable_client,
                                                         table):
    client = durable_client
    client.create_table(table, ROWS, DIM)
    names = [s.table for s in client.save_checkpoint()]
    assert table in names and names == sorted(names)
    [saved] = client.save_checkpoint(table)
    assert saved.table == table


def test_incremental_save_holds_only_the_rows_changed(durable_client, table):
    client = durable_client
    client.create_table(table, ROWS, DIM)
    [full] = client.save_checkpoint([table])
    _push(client, table, [7])
    [delta] = client.save_checkpoint([table], incremental=True)
    assert delta.incremental and delta.rows == 1
    assert delta.bytes_written < full.bytes_written
    assert client.get_table(table).last_checkpoint.incremental


def test_unknown_table_is_not_found_and_nothing_is_saved(durable_client,
                                                         table):
    client = durable_client
    client.create_table(table, ROWS, DIM)
    assert client.get_table(table).last_checkpoint is None
    with raises(grpc.StatusCode.NOT_FOUND, match='table "nope" not found'):
        client.save_checkpoint([table, "nope"])
    assert client.get_table(table).last_checkpoint is None


def test_server_without_checkpoint_dir_is_failed_precondition(client, table):
    client.create_table(table, ROWS, DIM)
    with raises(grpc.StatusCode.FAILED_PRECONDITION,
                match="start it with --checkpoint_dir"):
        client.save_checkpoint()
    assert client.get_table(table).last_checkpoint is None


def test_restart_on_the_same_directory_has_the_table_back(durable, table):
    server, _ = durable
    with EmbeddingClient(server.address) as client:
        client.create_table(table, ROWS, DIM)
        _push(client, table, [3, 4])
        client.save_checkpoint([table])
        _push(client, table, [5])  # Saved by the shutdown's checkpoint.
        rows = client.read_rows(table)
    server.restart()
    with EmbeddingClient(server.address) as client:
        info = client.get_table(table)
        assert info.version == 2
        assert info.last_checkpoint.version == 2
        np.testing.assert_array_equal(client.read_rows(table), rows)
