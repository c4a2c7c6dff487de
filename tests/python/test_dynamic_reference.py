"""Dynamic tables (admit_after 1, LRU) against the reference model
(tests/testing/dynamic_model.py, torch as the optimizer oracle) over random
workloads on a real server: hot ids, 10**12 + k and negative ids, pushes
with repeats and the padding id, capacity 64 (one stripe) and 4096 (eight
stripes), long enough for many evictions. Every lookup, every push's
rows_updated / rows_admitted / rows_evicted / rows_dropped, the table's
step and its DynamicStats must equal the model's."""

import dataclasses

import numpy as np
import pytest

from embedding_client.options import Dynamic, Uniform
from tests.conformance.oracle import Opt, assert_close
from tests.testing.dynamic_model import DynamicModel, stripes_for

DIM = 6
INIT = Uniform(-1.0, 1.0)  # fill_rows is exact to the bit for uniform.

OPTIMIZERS = {
    "sgd": Opt("sgd", lr=0.3),
    "adagrad": Opt("adagrad", lr=0.3, lr_decay=0.01,
                   initial_accumulator_value=0.1, eps=1e-6),
    "sparse_adam": Opt("sparse_adam", lr=0.05, betas=(0.8, 0.95), eps=1e-6),
    "rowwise_adagrad": Opt("rowwise_adagrad", lr=0.3, eps=1e-6),
    "ftrl": Opt("ftrl", lr=0.2, l1=0.01, l2=0.1,
                initial_accumulator_value=0.2),
}

VARIANTS = {
    "plain": dict(),
    "padding_max_norm": dict(padding_idx=-7, max_norm=1.5),
    "scale_grad_by_freq": dict(scale_grad_by_freq=True, padding_idx=10**12),
}

# (capacity, distinct ids in the pool, positions per push, pushes).
WORKLOADS = {
    "one_stripe": (64, 300, 40, 30),
    "eight_stripes": (4096, 30000, 2000, 12),
}


def id_pool(rng, size):
    """Distinct ids of every kind: small, 10**12 + k, negative (also near
    INT64_MIN and INT64_MAX); the first 8 are the hot ones."""
    kinds = [np.arange(size), 10**12 + np.arange(size),
             -1 - np.arange(size), -(2**63) + 1 + np.arange(size),
             2**63 - 1 - np.arange(size)]
    pool = np.unique(np.concatenate(kinds).astype(np.int64))
    return rng.permutation(pool)[:size]


def random_ids(rng, pool, count, padding_idx):
    """`count` ids: half of them hot (so repeated), the rest from the whole
    pool, with the padding id at a few positions."""
    hot = rng.choice(pool[:8], size=count // 2)
    cold = rng.choice(pool, size=count - count // 2)
    ids = rng.permutation(np.concatenate([hot, cold]))
    if padding_idx is not None:
        ids[rng.integers(0, count, size=3)] = padding_idx
    return ids


def create(client, table, model, optimizer, **variant):
    client.create_table(table, None, DIM, optimizer=optimizer.proto(),
                        initializer=INIT, seed=model.seed,
                        dynamic=Dynamic(model.capacity), **variant)


def assert_stats(client, table, model, what):
    info = client.get_table(table)
    assert dataclasses.asdict(info.dynamic_stats) == model.stats(), what
    assert info.local_rows == model.stats()["rows_held"], what
    assert info.step == model.pushes, what


def check_push(client, table, model, ids, grad, what):
    result = client.push_gradients(table, ids, grad)
    expected = model.push(ids, grad)
    got = {name: getattr(result, name) for name in expected}
    assert got == expected, what


def check_lookup(client, table, model, ids, what):
    assert_close(client.lookup(table, ids), model.lookup(ids),
                 f"{what}: lookup")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_random_workload_matches_model(client, table, workload, optimizer,
                                       variant):
    capacity, pool_size, batch, pushes = WORKLOADS[workload]
    options = VARIANTS[variant]
    model = DynamicModel(capacity, DIM, optimizer=OPTIMIZERS[optimizer],
                         initializer=INIT, seed=41, max_admissions=1 << 15,
                         **options)
    create(client, table, model, OPTIMIZERS[optimizer], **options)
    rng = np.random.default_rng(42)
    pool = id_pool(rng, pool_size)
    padding = options.get("padding_idx")
    for step in range(pushes):
        what = f"push {step}"
        ids = random_ids(rng, pool, batch, padding)
        shape = (2, batch // 2) if step % 3 == 1 else (batch,)
        ids = ids.reshape(shape)
        # The forward pass of this push, then a lookup of other ids (some
        # held, some never pushed): neither creates rows.
        check_lookup(client, table, model, ids, what)
        check_lookup(client, table, model,
                     random_ids(rng, pool, batch // 4, padding), what)
        grad = rng.standard_normal(ids.shape + (DIM,)).astype(np.float32)
        check_push(client, table, model, ids, grad, what)
        assert_stats(client, table, model, what)
    # Every id of the pool: the held ones read their trained rows, the
    # evicted and never pushed ones FillRow again.
    check_lookup(client, table, model, pool, "whole pool")
    assert_stats(client, table, model, "end")
    stats = model.stats()
    assert stats["evictions"] > capacity, "the workload evicts too little"
    assert stats["rows_held"] == capacity


def test_full_stripe_evicts_least_recently_pushed(client, table):
    """One stripe of 64: after 64 admissions the next evicts the row pushed
    least recently (not the one admitted first, which was pushed again),
    and the evicted id reads FillRow again; admitted again it restarts
    from FillRow with fresh Adagrad state."""
    optimizer = Opt("adagrad", lr=0.5)
    model = DynamicModel(64, DIM, optimizer=optimizer, initializer=INIT,
                         seed=5)
    create(client, table, model, optimizer)
    assert stripes_for(64) == 1
    ids = 10**12 + np.arange(64)
    rng = np.random.default_rng(6)

    def push(batch, what):
        grad = rng.standard_normal((len(batch), DIM)).astype(np.float32)
        check_push(client, table, model, np.asarray(batch), grad, what)
        check_lookup(client, table, model, ids, what)
        assert_stats(client, table, model, what)

    push(ids, "fill")
    push(ids[:1], "push the first again")  # ids[1] is now the LRU row.
    push([-5], "admit one more")
    assert ids[1] not in model.held_ids() and ids[0] in model.held_ids()
    push([ids[1], ids[1]], "admit the evicted id again")
    assert model.stats()["evictions"] == 2


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_push_of_more_new_ids_than_a_stripe_holds(client, table, optimizer):
    """A push of 100 new ids into a stripe of 64: the first ones it admits
    are evicted by its own later admissions (rows_admitted 100,
    rows_evicted 36), and they read FillRow afterwards."""
    model = DynamicModel(64, DIM, optimizer=OPTIMIZERS[optimizer],
                         initializer=INIT, seed=7)
    create(client, table, model, OPTIMIZERS[optimizer])
    rng = np.random.default_rng(8)
    ids = -(10**12) - np.arange(100)
    grad = rng.standard_normal((100, DIM)).astype(np.float32)
    check_push(client, table, model, ids, grad, "push")
    check_lookup(client, table, model, ids, "after")
    assert_stats(client, table, model, "after")
    assert model.stats()["evictions"] == 36


def test_lookups_create_nothing(client, table):
    """Lookups of never pushed ids read FillRow and hold nothing."""
    model = DynamicModel(64, DIM, initializer=INIT, seed=9, padding_idx=3,
                         max_norm=0.5)
    create(client, table, model, Opt("sgd"), padding_idx=3, max_norm=0.5)
    ids = np.array([3, 0, -1, 10**12 + 1, 2**63 - 1, -(2**63) + 1, 0])
    for what in ("first", "again"):
        check_lookup(client, table, model, ids, what)
        assert_stats(client, table, model, what)
    assert model.stats()["rows_held"] == 0
