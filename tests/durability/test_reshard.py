"""embedding_reshard through the real binaries: a 2-shard cluster of
embedding_server trains SparseAdam and Adagrad tables (the optimizers whose
updates depend on the step), saves and stops; its checkpoints are resharded
2 -> 3, a 3-shard cluster starts from them and holds every row as before
(each on shard g % 3), and the next pushes give the rows the same pushes
give on the original cluster; then 3 -> 2 likewise. A dynamic table moves
each id to shard SplitMix64(id) % 3 and trains alike afterwards, and is
refused when a shard could not hold its ids. Bad inputs make the command
fail with the code and a message naming the problem."""

import numpy as np

from embedding_client import Adagrad, Dynamic, EmbeddingClient, SparseAdam
from embedding_client.routing import hash_owner_shards
from tests.durability.harness import assert_same_bits
from tests.testing.cluster import Cluster
from tests.testing.reshard import reshard

NUM, DIM, PADDING = 101, 8, 3
OPTIMIZERS = {
    "adam": SparseAdam(lr=0.05),
    "adagrad": Adagrad(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1),
}


def shard_dirs(root, shards):
    return [root / f"shard-{k}" for k in range(shards)]


def create_tables(client):
    for table, optimizer in OPTIMIZERS.items():
        client.create_table(table, NUM, DIM, padding_idx=PADDING,
                            optimizer=optimizer, seed=11)


def train(client, seeds):
    """The same pushes whatever the cluster: repeated rows, the padding
    row, rows of every shard."""
    for seed in seeds:
        random = np.random.default_rng(seed)
        indices = random.integers(0, NUM, 40)
        indices[:3] = [PADDING, 7, 7]
        grad = random.standard_normal((indices.size, DIM)).astype(np.float32)
        for table in OPTIMIZERS:
            client.push_gradients(table, indices, grad)


def train_each(clusters, seeds, save=False):
    """The same pushes on each cluster (through a sharded client), then a
    checkpoint of each when `save`."""
    for cluster in clusters:
        with EmbeddingClient(cluster.addresses) as client:
            train(client, seeds)
            if save:
                client.save_checkpoint()


def state(cluster):
    """Every table's rows and step, read through the sharded client; checks
    on the way that each shard holds exactly its rows g % M == k and that
    the shards agree on the step."""
    shards = len(cluster.addresses)
    tables = {}
    with EmbeddingClient(cluster.addresses) as client:
        for table in OPTIMIZERS:
            tables[table] = (client.read_rows(table),
                             client.get_table(table).step)
    for k, address in enumerate(cluster.addresses):
        with EmbeddingClient(address) as shard:
            for table, (rows, step) in tables.items():
                ids, values = shard.read_rows(table, return_indices=True)
                np.testing.assert_array_equal(
                    ids, np.arange(k, NUM, shards),
                    err_msg=f"rows of shard {k} of {shards}")
                assert_same_bits(values, rows[ids],
                                 f"{table} on shard {k} of {shards}")
                assert shard.get_table(table).step == step, (
                    f"{table}: shard {k} of {shards} at another step")
    return tables


def assert_same_state(got, expected, what):
    for table, (rows, step) in expected.items():
        assert_same_bits(got[table][0], rows, f"{table} {what}")
        assert got[table][1] == step, f"{table} {what}: step"


def reshard_ok(from_root, from_shards, to, shards):
    result = reshard(shard_dirs(from_root, from_shards), to, shards)
    assert result.returncode == 0, result.stderr
    assert "2 tables resharded" in result.stdout, result.stdout
    assert sorted(p.name for p in to.iterdir()) == [
        f"shard-{k}" for k in range(shards)]


def test_two_to_three_to_two_keeps_rows_and_trains_alike(tmp_path):
    two_root, three_root, back_root = (tmp_path / "two", tmp_path / "three",
                                       tmp_path / "back")
    with Cluster(2, checkpoint_root=two_root) as two:
        with EmbeddingClient(two.addresses) as client:
            create_tables(client)
            train(client, range(1, 5))
            client.save_checkpoint()
        before = state(two)

    reshard_ok(two_root, 2, three_root, 3)
    with Cluster(3, checkpoint_root=three_root) as three, \
            Cluster(2, checkpoint_root=two_root) as original:
        assert_same_state(state(three), before, "resharded 2 -> 3")
        train_each((three, original), range(5, 7), save=True)
        after = state(original)
        assert_same_state(state(three), after,
                          "pushed after resharding 2 -> 3")

    reshard_ok(three_root, 3, back_root, 2)
    with Cluster(2, checkpoint_root=back_root) as back, \
            Cluster(2, checkpoint_root=two_root) as original:
        assert_same_state(state(back), after, "resharded 3 -> 2")
        train_each((back, original), [7])
        assert_same_state(state(back), state(original),
                          "pushed after resharding 3 -> 2")


def test_bad_inputs_fail_naming_the_problem(tmp_path):
    root = tmp_path / "three"
    with Cluster(3, checkpoint_root=root) as three:
        with EmbeddingClient(three.addresses) as client:
            create_tables(client)
            train(client, [1])
            client.save_checkpoint()
    out = tmp_path / "out"

    missing = reshard(shard_dirs(root, 2), out, 2)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: FAILED_PRECONDITION: "), (
        missing.stderr)
    assert ("was saved on 3 shards but 2 input directories were given: "
            "shard 2 is missing") in missing.stderr
    assert not out.exists()

    shards = shard_dirs(root, 3)
    swapped = reshard([shards[0], shards[2], shards[1]], out, 2)
    assert swapped.returncode == 1
    assert "expected shard 1: give the directories in shard-index order" in (
        swapped.stderr)

    out.mkdir()
    (out / "precious").write_text("x")
    occupied = reshard(shards, out, 2)
    assert occupied.returncode == 1
    assert f"output directory {out} is not empty" in occupied.stderr
    assert [p.name for p in out.iterdir()] == ["precious"]


# Dynamic tables: ids move to shard SplitMix64(id) % M'.

DYNAMIC_POOL = np.arange(-300, 300, dtype=np.int64) * 7_919 + 10**12


def dynamic_train(client, seeds):
    """Pushes of ids from a pool of 600 (admit_after 2: some are only
    counted), through a sharded client."""
    for seed in seeds:
        random = np.random.default_rng(seed)
        ids = random.choice(DYNAMIC_POOL, 64)
        grad = random.standard_normal((ids.size, DIM)).astype(np.float32)
        client.push_gradients("dyn", ids, grad)


def dynamic_state(cluster):
    """Lookups of the whole pool, the rows held and the step; checks that
    each shard holds only ids it owns by hash."""
    with EmbeddingClient(cluster.addresses) as client:
        rows = client.lookup("dyn", DYNAMIC_POOL)
        info = client.get_table("dyn")
    shards = len(cluster.addresses)
    owners = hash_owner_shards(DYNAMIC_POOL, shards)
    for k, address in enumerate(cluster.addresses):
        with EmbeddingClient(address) as shard:
            mine = DYNAMIC_POOL[owners == k]
            assert_same_bits(shard.lookup("dyn", mine), rows[owners == k],
                             f"ids of shard {k} of {shards}")
    return rows, info.dynamic_stats.rows_held, info.step


def test_dynamic_table_reshards_by_hash_of_the_id(tmp_path):
    two_root, three_root = tmp_path / "two", tmp_path / "three"
    with Cluster(2, checkpoint_root=two_root) as two:
        with EmbeddingClient(two.addresses) as client:
            client.create_table("dyn", None, DIM, optimizer=Adagrad(lr=0.1),
                                seed=4, dynamic=Dynamic(4096, admit_after=2))
            dynamic_train(client, range(20))
            client.save_checkpoint()
        before = dynamic_state(two)
    assert before[1] > 100

    result = reshard(shard_dirs(two_root, 2), three_root, 3)
    assert result.returncode == 0, result.stderr
    with Cluster(3, checkpoint_root=three_root) as three, \
            Cluster(2, checkpoint_root=two_root) as original:
        after = dynamic_state(three)
        assert_same_bits(after[0], before[0], "resharded 2 -> 3")
        assert after[1:] == before[1:]
        # The same pushes train alike (the sketches were merged, so an id
        # counted once on its old shard is admitted by its next push).
        for cluster in (three, original):
            with EmbeddingClient(cluster.addresses) as client:
                dynamic_train(client, range(20, 25))
        three_rows, original_rows = (dynamic_state(three)[0],
                                     dynamic_state(original)[0])
        assert_same_bits(three_rows, original_rows, "pushed after 2 -> 3")


def test_dynamic_table_over_capacity_is_refused(tmp_path):
    root, out = tmp_path / "two", tmp_path / "one"
    with Cluster(2, checkpoint_root=root) as two:
        with EmbeddingClient(two.addresses) as client:
            client.create_table("dyn", None, DIM, seed=4,
                                dynamic=Dynamic(200))
            ids = DYNAMIC_POOL[:300]
            client.push_gradients("dyn", ids,
                                  np.ones((ids.size, DIM), np.float32))
            client.save_checkpoint()
    result = reshard(shard_dirs(root, 2), out, 1)
    assert result.returncode == 1
    assert "error: FAILED_PRECONDITION: " in result.stderr, result.stderr
    assert ('table "dyn": output shard 0 of 1 cannot hold its rows within '
            "the table's capacity") in result.stderr, result.stderr
    assert not out.exists()
