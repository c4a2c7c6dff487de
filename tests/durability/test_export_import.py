"""NumPy interchange: an export (Python client or CLI) is what numpy.load
reads as the table ([num_embeddings, dim] float32, equal to a ReadRows of
every row) and what nn.Embedding.from_pretrained serves the same lookups
from; a file numpy.save wrote imports into a new table; and a full
checkpoint's weights.npy memory-maps to the table without the server."""

import numpy as np
import pytest
import torch

from embedding_client import InvalidArgumentError
from tests.durability.checkpoint_files import load_checkpoint
from tests.durability.harness import assert_same_bits
from tests.e2e.cli_runner import Cli

# More than one bulk message (4 MiB): exports and imports go in chunks.
NUM, DIM = 150_000, 16


@pytest.fixture
def trained(durable, table):
    """A table of several messages' worth of rows, pushed to."""
    client = durable.client
    client.create_table(table, NUM, DIM, padding_idx=0, seed=51)
    rng = np.random.default_rng(52)
    indices = rng.integers(0, NUM, 5000)
    client.push_gradients(table, indices,
                          rng.standard_normal((5000, DIM)).astype(np.float32))
    return table


def _numpy_file(tmp_path, seed):
    """A [NUM, DIM] float32 file as numpy.save writes it, and its array."""
    array = np.random.default_rng(seed).standard_normal(
        (NUM, DIM)).astype(np.float32)
    path = tmp_path / f"weights-{seed}.npy"
    np.save(path, array)
    return path, array


def test_export_npy_loads_as_the_table_and_into_torch(durable, trained,
                                                      tmp_path):
    client = durable.client
    path = tmp_path / "export.npy"
    assert client.export_npy(trained, path) == NUM
    exported = np.load(path)
    assert_same_bits(exported, client.read_rows(trained), "export vs rows")

    embedding = torch.nn.Embedding.from_pretrained(torch.from_numpy(exported))
    indices = np.random.default_rng(53).integers(0, NUM, (64, 3))
    with torch.no_grad():
        local = embedding(torch.from_numpy(indices)).numpy()
    assert_same_bits(local, client.lookup(trained, indices),
                     "nn.Embedding.from_pretrained vs the server's lookup")


def test_numpy_saved_file_imports_into_new_table(durable, table, tmp_path):
    path, array = _numpy_file(tmp_path, 54)
    client = durable.client
    client.create_table(table, NUM, DIM)
    assert client.import_npy(table, path) == NUM
    assert_same_bits(client.read_rows(table), array, "imported rows")


def test_import_of_wrong_shape_names_the_file_and_writes_nothing(
        durable, table, tmp_path):
    client = durable.client
    client.create_table(table, 10, DIM)
    before = client.read_rows(table)
    path = tmp_path / "wrong.npy"
    np.save(path, np.zeros((11, DIM), np.float32))
    with pytest.raises(InvalidArgumentError, match=str(path)):
        client.import_npy(table, path)
    assert_same_bits(client.read_rows(table), before, "after a refused import")


def test_cli_export_and_import_round_trip(durable, trained, table, tmp_path):
    cli = Cli(durable.address)
    exported = tmp_path / "cli-export.npy"
    cli.ok("export", trained, str(exported))
    assert_same_bits(np.load(exported), durable.client.read_rows(trained),
                     "CLI export vs rows")

    path, array = _numpy_file(tmp_path, 55)
    imported = f"{table}.imported"
    durable.client.create_table(imported, NUM, DIM)
    cli.ok("import", imported, str(path))
    assert_same_bits(durable.client.read_rows(imported), array,
                     "CLI import")


def test_full_checkpoint_weights_memory_map_to_the_table(durable, trained):
    client = durable.client
    [saved] = client.save_checkpoint([trained])
    arrays = load_checkpoint(saved.path, mmap_mode="r")
    assert isinstance(arrays["weights"], np.memmap)
    assert_same_bits(arrays["weights"], client.read_rows(trained),
                     "weights.npy vs rows")
    assert_same_bits(arrays["rows"], np.arange(NUM, dtype=np.int64),
                     "rows.npy of a full checkpoint")
