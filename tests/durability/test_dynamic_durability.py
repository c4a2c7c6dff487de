"""Dynamic tables survive restarts (issue 15): a real server on a checkpoint
directory saves a dynamic table (full, then incremental) while its rows
churn, is killed with SIGKILL and restarts from the checkpoint directory.
The restored table equals a twin on a plain server that got exactly the
pushes acknowledged before the last save: same lookups (held rows and
initial values alike), same rows held, and the same admissions, drops,
evictions and expiries for the pushes that follow, which shows that ids,
touches, push counts and the admission sketch were all restored."""

import signal

import numpy as np
import pytest

from embedding_client import Adagrad, EmbeddingClient
from embedding_client.options import Dynamic, Uniform

DIM = 8
POOL = np.arange(-150, 150, dtype=np.int64) * 1_000_003 + 10**12


def create(client, name, eviction):
    client.create_table(name, None, DIM, optimizer=Adagrad(lr=0.1),
                        initializer=Uniform(-0.5, 0.5), seed=9,
                        dynamic=Dynamic(64, admit_after=2, eviction=eviction,
                                        ttl_pushes=25))


def pushes(seed, count):
    """`count` pushes of 16 ids from POOL (300 ids for 64 rows: churn)."""
    rng = np.random.default_rng(seed)
    return [(rng.choice(POOL, 16),
             rng.standard_normal((16, DIM)).astype(np.float32))
            for _ in range(count)]


def apply(client, name, batch):
    return [(r.rows_updated, r.rows_admitted, r.rows_dropped, r.rows_evicted)
            for r in (client.push_gradients(name, ids, grad)
                      for ids, grad in batch)]


@pytest.mark.parametrize("eviction", ["lru", "lfu"])
def test_dynamic_table_restarts_from_its_last_checkpoint(durable, server,
                                                         eviction):
    with EmbeddingClient(server.address) as twin:
        check_restart(durable, twin, f"twin_{eviction}", eviction)


def check_restart(durable, twin, twin_name, eviction):
    create(durable.client, "d", eviction)
    create(twin, twin_name, eviction)
    for batch, save in ((pushes(1, 30), {}),
                        (pushes(2, 20), {"incremental": True})):
        apply(durable.client, "d", batch)
        apply(twin, twin_name, batch)
        saved = durable.client.save_checkpoint(["d"], **save)
        assert saved[0].incremental == bool(save)
    apply(durable.client, "d", pushes(3, 10))  # Lost with the kill.

    assert durable.restart(sig=signal.SIGKILL) == -signal.SIGKILL
    np.testing.assert_array_equal(durable.client.lookup("d", POOL),
                                  twin.lookup(twin_name, POOL))
    restored = durable.client.get_table("d")
    assert restored.dynamic == twin.get_table(twin_name).dynamic
    assert (restored.dynamic_stats.rows_held ==
            twin.get_table(twin_name).dynamic_stats.rows_held)
    # Counted since the restore.
    assert restored.dynamic_stats.admissions == 0
    # The same pushes now admit, drop, evict and expire the same rows.
    after = pushes(4, 30)
    assert apply(durable.client, "d", after) == apply(twin, twin_name, after)
    np.testing.assert_array_equal(durable.client.lookup("d", POOL),
                                  twin.lookup(twin_name, POOL))
    twin.delete_table(twin_name)
