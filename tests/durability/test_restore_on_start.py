"""Restore on start: until every table is restored, health says NOT_SERVING
and data calls are UNAVAILABLE (never NOT_FOUND, never a row of a table
half restored); then SERVING, with the table whole."""

import signal

import grpc
import numpy as np

from embedding_client import SGD, EmbeddingClient, UnavailableError
from tests.durability.harness import assert_same_bits
from tests.testing.server_process import NOT_SERVING, SERVING, health_status

# Big enough that the restore takes a while to watch (128 MiB).
NUM, DIM = 500_000, 64


def test_not_serving_and_unavailable_until_restored(durable, table):
    client = durable.client
    client.create_table(table, NUM, DIM, optimizer=SGD(), seed=61)
    client.push_gradients(table, [NUM - 1], np.ones((1, DIM), np.float32))
    [saved] = client.save_checkpoint([table])
    expected = client.read_rows(table, [0, NUM - 1])
    durable.stop(sig=signal.SIGKILL)

    durable.start(wait_serving=False)  # Returns once the port is known.
    seen = []
    # No retries: each lookup is one call, made while health said so.
    with EmbeddingClient(durable.address, max_retries=0) as watcher:
        while (status := health_status(durable.address)) != SERVING:
            assert status == NOT_SERVING, f"health {status} while restoring"
            try:
                # The restore may have ended since the health check; then
                # the row is the restored one.
                row = watcher.lookup(table, [NUM - 1])
                assert_same_bits(row, expected[1:], "a lookup while restoring")
            except UnavailableError as error:
                assert error.code == grpc.StatusCode.UNAVAILABLE
                seen.append(str(error))
    assert seen, "the restore ended before it could be watched"
    assert durable.client.get_table(table).version == saved.version
    assert_same_bits(durable.client.read_rows(table, [0, NUM - 1]), expected,
                     "rows once SERVING")
