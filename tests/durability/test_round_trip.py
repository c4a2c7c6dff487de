"""A table of each optimizer (with padding_idx, max_norm and a SetOptimizer
change) survives a restart of the real server, by SIGTERM (its final
checkpoint) or by kill -9 after an explicit save: rows, optimizer state,
step, version, hyper-parameters and the exactly-once window; the next
push gives exactly what it gives on a server never restarted, and what
torch gives."""

import signal

import numpy as np
import pytest

from embedding_client import EmbeddingClient
from tests.conformance.oracle import TorchTable
from tests.conformance.test_optimizers import OPTIMIZERS, SET_OPTIMIZER
from tests.durability.checkpoint_files import load_checkpoint
from tests.durability.harness import (assert_same_bits,
                                      assert_same_checkpoint_arrays)
from tests.durability.twins import Twins

NUM, DIM = 40, 6
RESTARTS = {"sigterm": signal.SIGTERM, "kill9_after_save": signal.SIGKILL}


def _train_with_optimizer_change(twins, rng):
    twins.train(rng, 4)
    twins.set_optimizer(**SET_OPTIMIZER[twins.ref.opt.kind])
    twins.train(rng, 4)


@pytest.mark.parametrize("restart", RESTARTS)
@pytest.mark.parametrize("kind", SET_OPTIMIZER)
def test_restart_restores_table_state_and_next_push_matches(
        durable, control, table, kind, restart):
    twins = Twins(durable, control, table,
                  TorchTable(NUM, DIM, padding_idx=-1, max_norm=2.0,
                             optimizer=OPTIMIZERS[kind], seed=31))
    rng = np.random.default_rng(32)
    _train_with_optimizer_change(twins, rng)
    if restart == "kill9_after_save":
        [saved] = durable.client.save_checkpoint([table])
        assert (saved.table, saved.rows, saved.incremental) == (
            table, NUM, False)
    before = durable.client.get_table(table)
    rows = twins.rows()

    code = durable.restart(sig=RESTARTS[restart])

    if restart == "sigterm":
        assert code == 0, durable.log()
    after = durable.client.get_table(table)
    assert (after.version, after.step, after.optimizer, after.padding_idx,
            after.max_norm) == (before.version, before.step, before.optimizer,
                                before.padding_idx, before.max_norm)
    assert after.last_checkpoint.version == before.version
    assert not after.last_checkpoint.incremental
    assert_same_bits(twins.rows(), rows, "rows after the restart")

    # Optimizer state: a full save now writes what the restore read.
    restored = load_checkpoint(after.last_checkpoint.path)
    [resaved] = durable.client.save_checkpoint([table])
    assert resaved.version == before.version
    assert resaved.path != after.last_checkpoint.path
    assert_same_checkpoint_arrays(load_checkpoint(resaved.path), restored,
                                  "save after the restart vs restored one")

    indices, grad, sequence = twins.last_push
    retried = twins.push_client().push_gradients(table, indices, grad,
                                                 sequence=sequence)
    assert retried.duplicate, "a push retried across the restart was applied"
    assert durable.client.get_table(table).version == before.version
    assert_same_bits(twins.rows(), rows, "rows after the retried push")

    twins.train(rng, 3)
    assert durable.client.get_table(table).step == before.step + 3


def test_sigterm_with_a_client_connected_still_saves_final_checkpoint(
        durable_server, table):
    # A trainer keeps its channel open while the server shuts down; the
    # drain must leave the final checkpoint its time within the grace.
    durable = durable_server("--shutdown_grace_seconds=3")
    durable.client.create_table(table, 10, 4)
    durable.client.push_gradients(table, [1], np.ones((1, 4), np.float32))
    with EmbeddingClient(durable.address) as trainer:
        trainer.lookup(table, [1])
        assert durable.process.stop() == 0
    log = durable.log()
    assert "final checkpoint abandoned" not in log, log
    durable.start()
    assert durable.client.get_table(table).version == 1
