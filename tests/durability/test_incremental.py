"""Incremental checkpoints: a delta holds exactly the rows changed since the
checkpoint before it; a restore applies base + deltas and gives the live
table (rows, optimizer state: the next push matches a server never
restarted); periodic saves are deltas with a full one every
--full_checkpoint_every; --checkpoint_keep prunes whole chains; and a push
touching 1% of the rows makes a delta of about 1% of a full save's bytes."""

import signal
import time

import numpy as np
import pytest

from embedding_client import Adagrad
from tests.conformance.oracle import Opt, TorchTable
from tests.durability.checkpoint_files import (checkpoints, is_incremental,
                                               load_checkpoint)
from tests.durability.harness import assert_same_bits
from tests.durability.twins import Twins


def _adagrad_twins(durable, control, table):
    return Twins(durable, control, table,
                 TorchTable(60, 6, padding_idx=3,
                            optimizer=Opt("adagrad", lr=0.3, lr_decay=0.05),
                            seed=41))


def _changed_rows(twins, pushes):
    """The rows the last `pushes` pushes of `twins` changed (sorted)."""
    return sorted(set(np.concatenate([np.ravel(i) for i in pushes]).tolist())
                  - {twins.ref.padding_idx})


def test_explicit_deltas_hold_changed_rows_and_restore_live_table(
        durable, control, table):
    twins = _adagrad_twins(durable, control, table)
    rng = np.random.default_rng(42)
    twins.train(rng, 2)
    [full] = durable.client.save_checkpoint([table], incremental=True)
    assert not full.incremental, "a table's first checkpoint must be full"
    for _ in range(3):
        pushed = []
        for _ in range(2):
            twins.train(rng, 1)
            pushed.append(twins.last_push[0])
        [delta] = durable.client.save_checkpoint([table], incremental=True)
        assert delta.incremental
        changed = _changed_rows(twins, pushed)
        assert delta.rows == len(changed)
        assert load_checkpoint(delta.path)["rows"].tolist() == changed
    rows = twins.rows()
    version = durable.client.get_table(table).version

    durable.restart(sig=signal.SIGKILL)

    info = durable.client.get_table(table)
    assert info.version == version
    assert info.last_checkpoint.path == delta.path
    assert info.last_checkpoint.incremental
    assert_same_bits(twins.rows(), rows, "base + deltas vs the live table")
    twins.train(rng, 3)  # State restored too: pushes match the control.


def _wait_for_checkpoint(client, table, version, timeout=10):
    """The table's last_checkpoint once it holds `version` (periodic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checkpoint = client.get_table(table).last_checkpoint
        if checkpoint is not None and checkpoint.version == version:
            return checkpoint
        time.sleep(0.05)
    last = client.get_table(table).last_checkpoint
    pytest.fail(f"no periodic checkpoint of version {version} within "
                f"{timeout} s; the last one: {last}")


def test_periodic_saves_are_deltas_and_restore_live_table(
        durable_server, control, table):
    durable = durable_server("--checkpoint_interval_s=1",
                             "--full_checkpoint_every=8")
    twins = _adagrad_twins(durable, control, table)
    rng = np.random.default_rng(43)
    kinds = []
    for _ in range(3):
        twins.train(rng, 2)
        version = durable.client.get_table(table).version
        kinds.append(_wait_for_checkpoint(durable.client, table,
                                          version).incremental)
    # The first may have been full (or caught between the first pushes).
    assert kinds[1:] == [True, True]
    rows = twins.rows()

    durable.restart(sig=signal.SIGKILL)

    assert_same_bits(twins.rows(), rows, "restored from periodic deltas")
    twins.train(rng, 2)


def test_full_checkpoint_every_and_keep_prune_whole_chains(durable_server,
                                                           table):
    durable = durable_server("--full_checkpoint_every=2",
                             "--checkpoint_keep=2")
    client = durable.client
    client.create_table(table, 50, 4, optimizer=Adagrad(lr=0.1))
    kinds = []
    for step in range(8):
        client.push_gradients(table, [step], np.ones((1, 4), np.float32))
        [saved] = client.save_checkpoint([table], incremental=True)
        kinds.append(saved.incremental)
    # Full, two deltas, full, two deltas, ...
    assert kinds == [False, True, True, False, True, True, False, True]
    # Two complete chains are kept; the oldest went with its deltas.
    on_disk = checkpoints(durable.checkpoint_dir, table)
    assert [is_incremental(path) for path in on_disk] == [
        False, True, True, False, True]
    assert str(on_disk[-1]) == saved.path


def test_push_to_one_percent_of_rows_writes_one_percent_of_bytes(durable,
                                                                 table):
    num, dim = 100_000, 32
    client = durable.client
    client.create_table(table, num, dim, optimizer=Adagrad(lr=0.1), seed=44)
    [full] = client.save_checkpoint([table])
    rows = np.random.default_rng(45).choice(num, num // 100, replace=False)
    client.push_gradients(table, rows, np.ones((len(rows), dim), np.float32))
    [delta] = client.save_checkpoint([table], incremental=True)
    assert (full.rows, delta.rows) == (num, num // 100)
    ratio = delta.bytes_written / full.bytes_written
    assert 0.009 <= ratio <= 0.012, (
        f"delta of 1% of the rows wrote {delta.bytes_written} bytes, "
        f"{ratio:.2%} of the full save's {full.bytes_written}")
