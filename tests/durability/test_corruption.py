"""Damaged checkpoints on disk: bytes flipped at random offsets and
truncation at random lengths in each file, a wrong magic, a future format
version (checksum fixed up, so only the version is wrong) and a missing
file. The server starts anyway, logs the refusal naming the checkpoint and
the file, restores the previous good checkpoint (its rows, version and
optimizer state) and keeps running; the next save does not collide with the
damaged one."""

import pathlib
import shutil
import signal

import numpy as np
import pytest

from embedding_client import Adagrad, NotFoundError
from tests.durability.checkpoint_files import (FILES, METADATA,
                                               rewrite_metadata_header)
from tests.durability.harness import assert_same_bits, assert_serving

NUM, DIM = 300, 8
SEEDS = range(3)


def _flip_bytes(path, rng):
    data = bytearray(path.read_bytes())
    for offset in rng.integers(0, len(data), 3):
        data[offset] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))


def _truncate(path, rng):
    with open(path, "r+b") as file:
        file.truncate(int(rng.integers(0, path.stat().st_size)))


DAMAGES = {"flipped_bytes": _flip_bytes, "truncated": _truncate}


class SavedHistory:
    """An Adagrad table saved `count` times, with pushes in between; then
    the server is killed (no final save). rows[i] and versions[i] are the
    table at checkpoints[i]."""

    def __init__(self, durable, table, count=2, incremental=False):
        self.durable = durable
        self.table = table
        client = durable.client
        client.create_table(table, NUM, DIM, optimizer=Adagrad(lr=0.5),
                            seed=7)
        rng = np.random.default_rng(8)
        self.checkpoints, self.rows, self.versions = [], [], []
        for i in range(count):
            indices = rng.integers(0, NUM, 40)
            client.push_gradients(
                table, indices, rng.standard_normal((40, DIM)).astype(
                    np.float32))
            [saved] = client.save_checkpoint(
                [table], incremental=incremental and i > 0)
            self.checkpoints.append(saved)
            self.rows.append(client.read_rows(table))
            self.versions.append(saved.version)
        durable.kill()

    def path(self, index):
        return pathlib.Path(self.checkpoints[index].path)

    def file(self, index, name):
        return self.path(index) / name

    def assert_restores(self, index, refused, file=""):
        """Starts the server: it restores checkpoint `index`, having logged
        that checkpoint `refused` was refused naming `file` in it, and keeps
        serving."""
        durable = self.durable
        durable.start()
        log = durable.log()
        path = str(self.file(refused, file))
        assert path in log, f"the refusal does not name {path}:\n{log}"
        info = durable.client.get_table(self.table)
        assert info.version == self.versions[index]
        assert info.last_checkpoint.path == self.checkpoints[index].path
        assert_same_bits(durable.client.read_rows(self.table),
                         self.rows[index], "rows restored by the fallback")
        assert_serving(durable.client, self.table)
        assert durable.process.running()
        return log

    def assert_next_save_restores(self):
        """The save after a fallback is a full one (a delta would build on
        what was refused), under a new name; the next start restores it."""
        client = self.durable.client
        [saved] = client.save_checkpoint([self.table], incremental=True)
        assert not saved.incremental
        assert saved.path not in [c.path for c in self.checkpoints]
        rows = client.read_rows(self.table)
        self.durable.restart(sig=signal.SIGKILL)
        assert self.durable.client.get_table(
            self.table).last_checkpoint.path == saved.path
        assert_same_bits(self.durable.client.read_rows(self.table), rows,
                         "rows of the save after the fallback")


@pytest.fixture
def saved_twice(durable, table):
    return SavedHistory(durable, table)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_file_is_refused_and_previous_restored(saved_twice, damage,
                                                       name, seed):
    DAMAGES[damage](saved_twice.file(1, name), np.random.default_rng(seed))
    saved_twice.assert_restores(0, refused=1, file=name)
    saved_twice.assert_next_save_restores()


@pytest.mark.parametrize("name", FILES)
def test_missing_file_is_refused_and_previous_restored(saved_twice, name):
    saved_twice.file(1, name).unlink()
    saved_twice.assert_restores(0, refused=1, file=name)


def test_wrong_magic_is_refused_and_previous_restored(saved_twice):
    rewrite_metadata_header(saved_twice.path(1), magic=b"NOTACKPT")
    log = saved_twice.assert_restores(0, refused=1, file=METADATA)
    assert "magic" in log, log


def test_npy_without_its_magic_is_refused_and_previous_restored(saved_twice):
    path = saved_twice.file(1, "weights.npy")
    data = bytearray(path.read_bytes())
    data[:6] = b"NOTNPY"
    path.write_bytes(bytes(data))
    saved_twice.assert_restores(0, refused=1, file="weights.npy")


def test_future_format_version_is_refused_and_previous_restored(saved_twice):
    path = saved_twice.path(1)
    # Versions 1 (dense tables) and 2 (dynamic tables) are read.
    future = 3
    rewrite_metadata_header(path, version=future)
    log = saved_twice.assert_restores(0, refused=1, file=METADATA)
    assert f"version {future}" in log, log
    saved_twice.assert_next_save_restores()


def test_damaged_newest_delta_falls_back_to_the_delta_before(durable, table):
    chain = SavedHistory(durable, table, count=3, incremental=True)
    assert [c.incremental for c in chain.checkpoints] == [False, True, True]
    _flip_bytes(chain.file(2, "weights.npy"), np.random.default_rng(9))
    chain.assert_restores(1, refused=2, file="weights.npy")
    chain.assert_next_save_restores()


def test_checkpoint_of_another_table_is_refused_and_previous_restored(
        saved_twice, table):
    # Another table's checkpoint, copied in as this table's newest one.
    saved_twice.durable.start()
    other = SavedHistory(saved_twice.durable, f"{table}.other", count=1)
    newest = saved_twice.path(1)
    shutil.rmtree(newest)
    shutil.copytree(other.path(0), newest)
    saved_twice.assert_restores(0, refused=1, file=METADATA)


def test_damaged_only_checkpoint_leaves_no_table_and_server_up(durable,
                                                               table):
    only = SavedHistory(durable, table, count=1)
    _truncate(only.file(0, METADATA), np.random.default_rng(10))
    durable.start()
    assert only.checkpoints[0].path in durable.log()
    with pytest.raises(NotFoundError):
        durable.client.get_table(table)
    assert durable.process.running()
    # The name is free again: a new table of that name saves and restores.
    durable.client.create_table(table, NUM, DIM)
    [saved] = durable.client.save_checkpoint([table])
    durable.restart(sig=signal.SIGKILL)
    assert durable.client.get_table(table).last_checkpoint.path == saved.path
