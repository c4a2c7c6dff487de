"""Dynamic tables against the reference model (tests/testing/dynamic_model.py,
torch as the optimizer oracle) over random workloads on a real server: hot
ids, 10**12 + k and negative ids, pushes with repeats and the padding id,
capacity 64 (one stripe) and 4096 (eight stripes), long enough for many
evictions; with admit_after 1 and LRU for every optimizer, and with
admit_after 2 and 3 (the admission sketch, bit for bit), LFU, ttl_pushes
and all of them together. Every lookup, every push's rows_updated /
rows_admitted / rows_evicted / rows_dropped, the table's step and its
DynamicStats must equal the model's."""

import dataclasses

import numpy as np
import pytest

from embedding_client.options import Uniform
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


def random_ids(rng, pool, count, padding_idx, hot=8):
    """`count` ids: half of them among the `hot` first of the pool (so
    repeated), the rest from the whole pool, with the padding id at a few
    positions."""
    hot = rng.choice(pool[:hot], size=count // 2)
    cold = rng.choice(pool, size=count - count // 2)
    ids = rng.permutation(np.concatenate([hot, cold]))
    if padding_idx is not None:
        ids[rng.integers(0, count, size=3)] = padding_idx
    return ids


def create(client, table, model, optimizer, **variant):
    client.create_table(table, None, DIM, optimizer=optimizer.proto(),
                        initializer=INIT, seed=model.seed,
                        dynamic=model.dynamic(), **variant)


def assert_stats(client, table, model, what):
    info = client.get_table(table)
    assert dataclasses.asdict(info.dynamic_stats) == model.stats(), what
    assert info.local_rows == model.stats()["rows_held"], what
    assert info.step == model.pushes, what


def start_workload(client, table, capacity, optimizer, pool_size, seed,
                   options, policy=None):
    """The model of a table of `capacity` rows with `options` (table
    options) and `policy` (admit_after, eviction, ttl_pushes), the table on
    the server, a random generator and a pool of `pool_size` ids from it."""
    model = DynamicModel(capacity, DIM, optimizer=OPTIMIZERS[optimizer],
                         initializer=INIT, seed=seed, max_admissions=1 << 15,
                         **(policy or {}), **options)
    create(client, table, model, OPTIMIZERS[optimizer], **options)
    rng = np.random.default_rng(seed + 1)
    return model, rng, id_pool(rng, pool_size)


def check_push(client, table, model, ids, grad, what, sequence=None):
    result = client.push_gradients(table, ids, grad, sequence=sequence)
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
    model, rng, pool = start_workload(client, table, capacity, optimizer,
                                      pool_size, 41, options)
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


# Admission, eviction and expiry policies: DynamicModel's keyword arguments
# (and the table's options), and what the workload must show of them.
POLICIES = {
    "admit_after_2": dict(admit_after=2),
    "admit_after_3": dict(admit_after=3),
    "lfu": dict(eviction="lfu"),
    "ttl_5": dict(ttl_pushes=5),
    "ttl_20": dict(ttl_pushes=20),
    "admit_2_lfu_ttl_8": dict(admit_after=2, eviction="lfu", ttl_pushes=8),
}

# (capacity, distinct ids in the pool, hot ids, positions per busy push,
# busy pushes in a row): cold ids are pushed about 1 to 4 times each, so
# that admission counts matter.
POLICY_WORKLOADS = {
    "one_stripe": (64, 150, 8, 40, 10),
    "eight_stripes": (4096, 8000, 64, 2000, 5),
}


def busy_schedule(busy, ttl_pushes):
    """Whether each push is busy: 3 runs of `busy` busy pushes, with runs
    of quiet ones (a few hot ids) between them long enough for the rows of
    the busy ones to expire, so that the next run reclaims them."""
    quiet = 2 if ttl_pushes is None else ttl_pushes + 1
    return ([True] * busy + [False] * quiet) * 2 + [True] * busy


def assert_policies_exercised(stats, policy):
    """The workload admitted, and dropped, evicted and expired rows as its
    policy allows: else it tests too little."""
    assert stats["admissions"] > 0, stats
    if policy.get("admit_after", 1) > 1:
        assert stats["dropped_rows"] > 0, stats
    if "ttl_pushes" in policy:
        assert stats["expirations"] > 0, stats
    elif policy.get("admit_after", 1) == 1:
        assert stats["evictions"] > 0, stats


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("workload", POLICY_WORKLOADS)
def test_policies_match_model(client, table, workload, policy, optimizer):
    """Random pushes with lookups of the whole pool between them (rows that
    just expired read FillRow), padding id and max_norm in the combined
    policy."""
    capacity, pool_size, hot, batch, busy = POLICY_WORKLOADS[workload]
    options = dict(padding_idx=-7, max_norm=1.5) if (
        policy == "admit_2_lfu_ttl_8") else {}
    model, rng, pool = start_workload(client, table, capacity, optimizer,
                                      pool_size, 43, options,
                                      POLICIES[policy])
    padding = options.get("padding_idx")
    schedule = busy_schedule(busy, POLICIES[policy].get("ttl_pushes"))
    for step, is_busy in enumerate(schedule):
        what = f"push {step}"
        ids = (random_ids(rng, pool, batch, padding, hot) if is_busy else
               rng.choice(pool[:hot], size=4))
        check_lookup(client, table, model, ids, what)
        grad = rng.standard_normal(ids.shape + (DIM,)).astype(np.float32)
        check_push(client, table, model, ids, grad, what)
        check_lookup(client, table, model, pool, f"{what}: whole pool")
        assert_stats(client, table, model, what)
    assert_policies_exercised(model.stats(), POLICIES[policy])


def test_admission_sketch_admits_early_as_modelled(client, table):
    """admit_after 2, one stripe of 64 (a sketch of 4 x 256 counters,
    halved every 128 counts): 600 new ids pushed once each, in pushes of
    50, are admitted early exactly where the model's sketch collides, and
    pushed again each one is admitted unless its counts were halved away."""
    model = DynamicModel(64, DIM, initializer=INIT, seed=11, admit_after=2,
                         max_admissions=1 << 12)
    create(client, table, model, Opt("sgd"))
    rng = np.random.default_rng(12)
    ids = 10**12 + rng.permutation(10**6)[:600]
    for what, order in (("once", ids), ("again", ids[::-1])):
        for begin in range(0, len(order), 50):
            batch = order[begin:begin + 50]
            grad = rng.standard_normal((len(batch), DIM)).astype(np.float32)
            check_push(client, table, model, batch, grad, what)
            assert_stats(client, table, model, what)
        check_lookup(client, table, model, ids, what)
    stats = model.stats()
    assert 0 < stats["admissions"] < stats["dropped_rows"], stats


def test_lfu_keeps_the_most_pushed_rows(client, table):
    """LFU, one stripe of 64: ids pushed 3 times survive a flood of ids
    pushed once, which evict each other (LRU would evict the former)."""
    optimizer = Opt("sgd", lr=0.5)
    model = DynamicModel(64, DIM, optimizer=optimizer, initializer=INIT,
                         seed=13, eviction="lfu")
    create(client, table, model, optimizer)
    rng = np.random.default_rng(14)
    frequent = np.arange(32)
    for what, batch in [("frequent", frequent)] * 3 + [
            (f"flood {k}", -1 - np.arange(100 * k, 100 * k + 100))
            for k in range(3)]:
        grad = rng.standard_normal((len(batch), DIM)).astype(np.float32)
        check_push(client, table, model, batch, grad, what)
        check_lookup(client, table, model, frequent, what)
        assert_stats(client, table, model, what)
    assert set(frequent.tolist()) <= model.held_ids()
    assert model.stats()["evictions"] == 300 - 32


def test_expired_rows_read_absent_and_are_reclaimed(client, table):
    """ttl_pushes 3, one stripe of 4 rows: rows expire 3 pushes after
    their last, read FillRow, stay held until reclaimed (expirations, not
    evictions), and their own id starts over from FillRow; retries have no
    step, so they neither refresh nor age any row."""
    optimizer = Opt("adagrad", lr=0.5)
    model = DynamicModel(4, DIM, optimizer=optimizer, initializer=INIT,
                         seed=15, ttl_pushes=3)
    create(client, table, model, optimizer)
    rng = np.random.default_rng(16)
    ids = np.arange(1, 7)
    sequence = 0

    def push(batch, what, retry=False):
        nonlocal sequence
        batch = np.asarray(batch, np.int64)
        grad = rng.standard_normal((len(batch), DIM)).astype(np.float32)
        if retry:
            result = client.push_gradients(table, batch, grad,
                                           sequence=sequence)
            assert result.duplicate and result.rows_updated == 0, what
        else:
            sequence += 1
            check_push(client, table, model, batch, grad, what, sequence)
        check_lookup(client, table, model, ids, what)
        assert_stats(client, table, model, what)

    for key in (1, 2, 3, 4):
        push([key], f"admit {key}")
    assert model.live_ids() == {2, 3, 4}
    push([4], "a retry", retry=True)
    assert model.live_ids() == {2, 3, 4}
    push([5], "reclaims 1")
    push([3, 4, 5], "refresh")
    push([2, 6], "2 starts over in its row, 6 evicts 3 (none expired)")
    assert model.held_ids() == {2, 4, 5, 6}
    stats = model.stats()
    assert (stats["expirations"], stats["evictions"]) == (2, 1), stats
    assert stats["rows_held"] == 4
