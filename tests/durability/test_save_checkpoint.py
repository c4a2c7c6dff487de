"""SaveCheckpoint's contract on the real server: what it saves, what it
reports (and GetTable/ListTables after it), its errors, and which tables a
restart brings back."""

import signal
import time

import grpc

from embedding_client import EmbeddingClient
from tests.durability.checkpoint_files import checkpoints
from tests.testing.errors import raises
from tests.testing.server_process import ServerProcess


def test_save_of_no_names_saves_every_table_and_reports_it(durable, table):
    client = durable.client
    names = [f"{table}.b", f".{table}.a", f"{table}.c"]  # A leading '.'.
    for name in names:
        client.create_table(name, 10, 4)
    begin = time.time()
    saved = client.save_checkpoint()
    end = time.time()
    assert [s.table for s in saved] == sorted(names)
    for s in saved:
        assert (s.version, s.rows, s.incremental) == (0, 10, False)
        assert begin * 1e6 <= s.time_unix_micros <= end * 1e6
        assert [str(p) for p in checkpoints(durable.checkpoint_dir,
                                             s.table)] == [s.path]
    reported = {info.name: info.last_checkpoint
                for info in client.list_tables()}
    for s in saved:
        assert reported[s.table] == client.get_table(s.table).last_checkpoint
        assert (reported[s.table].path, reported[s.table].time_unix_micros) \
            == (s.path, s.time_unix_micros)

    durable.restart(sig=signal.SIGKILL)
    assert sorted(info.name for info in durable.client.list_tables()) == \
        sorted(names)


def test_save_naming_an_unknown_table_is_not_found_and_writes_nothing(
        durable, table):
    durable.client.create_table(table, 10, 4)
    with raises(grpc.StatusCode.NOT_FOUND, match="no_such_table"):
        durable.client.save_checkpoint([table, "no_such_table"])
    assert checkpoints(durable.checkpoint_dir, table) == []
    assert durable.client.get_table(table).last_checkpoint is None


def test_save_without_checkpoint_dir_is_failed_precondition():
    with ServerProcess() as server, EmbeddingClient(server.address) as client:
        with raises(grpc.StatusCode.FAILED_PRECONDITION,
                    match="--checkpoint_dir"):
            client.save_checkpoint()


def test_deleted_table_stays_deleted_after_restart(durable, table):
    durable.client.create_table(table, 10, 4)
    durable.client.save_checkpoint([table])
    durable.client.delete_table(table)
    assert checkpoints(durable.checkpoint_dir, table) == []
    durable.restart(sig=signal.SIGTERM)
    assert [info.name for info in durable.client.list_tables()] == []
