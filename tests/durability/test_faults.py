"""Disk faults during a save: a full disk (a small tmpfs; a file size limit
on the server), a read-only directory (a read-only bind mount; a 0555
directory and a server without CAP_DAC_OVERRIDE) and the checkpoint
directory deleted under the server. Each save fails with the code the
proto names and a message naming the file and the OS error; the server
goes on serving; the previous checkpoint stays the newest one on disk (no
temporary directory is left, none is taken for a checkpoint) and a
restart restores it; once the fault is gone, saves work again."""

import contextlib
import errno
import os
import re
import resource
import shutil
import signal
import subprocess

import grpc
import numpy as np
import pytest

from embedding_client import Adagrad
from tests.durability.checkpoint_files import entries, table_dir
from tests.durability.harness import assert_same_bits, assert_serving
from tests.testing.errors import raises

NUM, DIM = 2000, 32  # A checkpoint of about 530 KB (Adagrad).
NO_CAPABILITIES = ("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--")


def _mount(*args):
    """Runs mount; skips the test where mounting is not allowed here."""
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here: mount {' '.join(args)}: "
                    f"{result.stderr.strip()}")


def _umount(path):
    subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MiB tmpfs: room for a few checkpoints of the table, then full."""
    path = tmp_path / "tmpfs"
    path.mkdir()
    _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path))
    yield path
    _umount(path)


@contextlib.contextmanager
def _read_only_bind_mount(path):
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,ro,bind", str(path))
        yield
    finally:
        _umount(path)


@contextlib.contextmanager
def _mode(paths, mode):
    old = [p.stat().st_mode & 0o7777 for p in paths]
    for path in paths:
        path.chmod(mode)
    try:
        yield
    finally:
        for path, was in zip(paths, old):
            path.chmod(was)


@contextlib.contextmanager
def _disk_full_but(path, free_bytes):
    """Fills the filesystem mounted at `path` up to `free_bytes` left."""
    stat = os.statvfs(path)
    filler = path / "filler"
    with open(filler, "wb") as file:
        remaining = stat.f_bavail * stat.f_frsize - free_bytes
        block = b"\0" * (1 << 16)
        while remaining > 0:
            remaining -= file.write(block[:remaining])
    try:
        yield
    finally:
        filler.unlink()


def _limit_file_size(pid, limit):
    """RLIMIT_FSIZE on the running server, for the rest of its life: writes
    past `limit` bytes fail with EFBIG (the server ignores SIGXFSZ)."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))


class Saved:
    """A table with one good checkpoint, then more pushes: what a failed
    save must leave as it was."""

    def __init__(self, durable, table):
        self.durable = durable
        self.table = table
        client = durable.client
        client.create_table(table, NUM, DIM, padding_idx=0,
                            optimizer=Adagrad(lr=0.1), seed=5)
        rng = np.random.default_rng(6)
        self.push(rng)
        [self.checkpoint] = client.save_checkpoint([table])
        self.rows = client.read_rows(table)
        self.entries = entries(durable.checkpoint_dir, table)
        self.push(rng)

    def push(self, rng):
        indices = rng.integers(0, NUM, 300)
        self.durable.client.push_gradients(
            self.table, indices,
            rng.standard_normal((300, DIM)).astype(np.float32))

    def assert_save_fails(self, code, error_number, incremental=False):
        """A save fails with `code`, naming a path in the checkpoint
        directory and strerror(error_number); nothing else changed."""
        with raises(code, match=re.escape(os.strerror(error_number))) as error:
            self.durable.client.save_checkpoint([self.table],
                                                incremental=incremental)
        message = str(error.value)
        assert str(self.durable.checkpoint_dir) in message, message
        assert self.table in message, message
        info = self.durable.client.get_table(self.table)
        assert info.last_checkpoint.path == self.checkpoint.path
        assert_serving(self.durable.client, self.table)
        return message

    def assert_previous_kept(self):
        assert entries(self.durable.checkpoint_dir, self.table) == \
            self.entries, "a failed save changed the table's directory"

    def assert_restart_restores_previous(self):
        """SIGTERM (whose final save may fail too) and a start on the same
        directory restore the good checkpoint."""
        self.durable.restart(sig=signal.SIGTERM)
        info = self.durable.client.get_table(self.table)
        assert info.version == self.checkpoint.version
        assert info.last_checkpoint.path == self.checkpoint.path
        assert_same_bits(self.durable.client.read_rows(self.table), self.rows,
                         "rows restored after the failed save")

    def assert_saves_again(self):
        [saved] = self.durable.client.save_checkpoint([self.table])
        assert saved.version == self.durable.client.get_table(
            self.table).version
        assert os.path.isdir(saved.path)


@pytest.mark.parametrize("incremental", [False, True])
def test_full_tmpfs_fails_save_with_enospc_and_keeps_previous(
        tmpfs, durable_server, table, incremental):
    directory = tmpfs / "checkpoints"
    directory.mkdir()
    durable = durable_server(directory=directory)
    saved = Saved(durable, table)
    # Room for part of a checkpoint (even a delta): it fails in the middle.
    with _disk_full_but(tmpfs, 16 << 10):
        saved.assert_save_fails(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                errno.ENOSPC, incremental=incremental)
        saved.assert_previous_kept()
        saved.assert_restart_restores_previous()
        saved.assert_previous_kept()
    saved.assert_saves_again()


def test_file_size_limit_fails_save_with_efbig_and_keeps_previous(
        durable, table):
    saved = Saved(durable, table)
    # weights.npy (NUM * DIM * 4 bytes) cannot be written; rows.npy can.
    _limit_file_size(durable.process.pid, NUM * DIM * 2)
    saved.assert_save_fails(grpc.StatusCode.RESOURCE_EXHAUSTED, errno.EFBIG)
    saved.assert_previous_kept()
    saved.assert_restart_restores_previous()  # The new process has no limit.
    saved.assert_saves_again()


def test_read_only_mount_fails_save_with_erofs_and_keeps_previous(
        durable, table):
    saved = Saved(durable, table)
    with _read_only_bind_mount(durable.checkpoint_dir):
        saved.assert_save_fails(grpc.StatusCode.FAILED_PRECONDITION,
                                errno.EROFS)
        saved.assert_previous_kept()
        saved.assert_restart_restores_previous()
    saved.assert_saves_again()


def test_unwritable_directory_fails_save_with_eacces_and_keeps_previous(
        durable_server, table):
    # As root, mode bits stop nobody: the server runs without capabilities.
    durable = durable_server(command_prefix=NO_CAPABILITIES)
    saved = Saved(durable, table)
    with _mode([durable.checkpoint_dir,
                table_dir(durable.checkpoint_dir, table)], 0o555):
        saved.assert_save_fails(grpc.StatusCode.FAILED_PRECONDITION,
                                errno.EACCES)
        saved.assert_previous_kept()
        saved.assert_restart_restores_previous()
    saved.assert_saves_again()


def test_deleted_directory_fails_save_with_enoent_then_saves_when_back(
        durable, table):
    saved = Saved(durable, table)
    shutil.rmtree(durable.checkpoint_dir)
    saved.assert_save_fails(grpc.StatusCode.FAILED_PRECONDITION, errno.ENOENT)
    durable.checkpoint_dir.mkdir()
    saved.assert_saves_again()
    rows = durable.client.read_rows(table)
    durable.restart(sig=signal.SIGKILL)
    assert_same_bits(durable.client.read_rows(table), rows,
                     "rows restored from the save after the directory "
                     "came back")
