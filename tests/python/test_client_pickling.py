"""Pickling and copying EmbeddingClient (issue 13: torch.save(model),
copy.deepcopy(model) and spawned workers of a model holding a client).

A pickled client is its recipe (address(es) and options): the copy is
built again from it, connects on its first call, gets a fresh client_id
and takes its token from $EMBEDDING_TOKEN. copy/deepcopy share the client.
"""

import copy
import io
import multiprocessing
import pickle
import socket

import grpc
import numpy as np
import pytest

from embedding_client import (SGD, EmbeddingClient, InvalidArgumentError,
                              TlsOptions, UnauthenticatedError,
                              UnavailableError)
from embedding_client.sharded import ShardedClient
from tests.security.conftest import TOKENS, write_tokens
from tests.testing.certs import make_pki
from tests.testing.cluster import Cluster
from tests.testing.server_process import ServerProcess

INDICES = [[0, 3], [7, 3]]


def _round_trip(client):
    return pickle.loads(pickle.dumps(client))


def _step(client, table):
    return client.get_table(table).step


def _push(client, table, seed):
    grad = np.random.default_rng(seed).normal(size=(2, 2, 4))
    return client.push_gradients(table, INDICES, grad.astype(np.float32))


@pytest.fixture
def no_environment_token(monkeypatch):
    monkeypatch.delenv("EMBEDDING_TOKEN", raising=False)


def test_round_trip_keeps_address_and_options(server, no_environment_token):
    options = dict(timeout=7.5, metadata=[("x-trace", "abc")],
                   max_message_bytes=3 << 20, max_retries=5,
                   channel_options=[("grpc.keepalive_time_ms", 60000)])
    with EmbeddingClient(server.address, token="secret-token-1",
                         **options) as client:
        data = pickle.dumps(client)
        with pickle.loads(data) as restored:
            assert type(restored) is EmbeddingClient
            assert restored.address == client.address
            assert restored.timeout == 7.5
            assert restored.max_message_bytes == 3 << 20
            assert restored.max_retries == 5
            assert restored.metadata == (("x-trace", "abc"),)
            assert restored._recipe == client._recipe
            assert restored.client_id != client.client_id
    assert b"secret-token-1" not in data


def test_explicit_client_id_is_not_kept(server):
    with EmbeddingClient(server.address, client_id="trainer-7") as client:
        with _round_trip(client) as restored:
            assert restored.client_id != "trainer-7"
            assert len(restored.client_id) == 32  # A fresh 128-bit hex id.


def test_authorization_metadata_is_not_pickled(server):
    with EmbeddingClient(server.address, token="",
                         metadata=[("Authorization", "Bearer meta-secret"),
                                   ("x-trace", "1")]) as client:
        data = pickle.dumps(client)
        with pickle.loads(data) as restored:
            assert restored.metadata == (("x-trace", "1"),)
    assert b"meta-secret" not in data


def test_copy_pushes_are_applied_beside_the_original(client, table):
    client.create_table(table, 10, 4, optimizer=SGD(lr=0.1))
    with _round_trip(client) as restored:
        steps = [_step(client, table)]
        # Both count sequences from 1 here; under one id the copy's pushes
        # would be dropped as duplicates.
        for seed, pusher in enumerate([client, restored, client, restored]):
            assert not _push(pusher, table, seed).duplicate
            steps.append(_step(client, table))
    assert steps == list(range(steps[0], steps[0] + 5))


def test_unpickled_client_takes_the_environment_token(tmp_path, monkeypatch):
    tokens_file = write_tokens(tmp_path / "tokens", TOKENS)
    monkeypatch.delenv("EMBEDDING_TOKEN", raising=False)
    with ServerProcess(f"--auth_tokens_file={tokens_file}") as server:
        with EmbeddingClient(server.address, token=TOKENS["admin"],
                             max_retries=0) as client:
            client.list_tables()
            data = pickle.dumps(client)
            without_token = EmbeddingClient(server.address, token="")
            no_token_data = pickle.dumps(without_token)
            without_token.close()
        assert TOKENS["admin"].encode() not in data

        with pickle.loads(data) as restored:  # No $EMBEDDING_TOKEN.
            with pytest.raises(UnauthenticatedError):
                restored.list_tables()
        monkeypatch.setenv("EMBEDDING_TOKEN", TOKENS["reader"])
        with pickle.loads(data) as restored:
            assert restored.list_tables() == []
        with pickle.loads(no_token_data) as restored:  # token="" stays "".
            with pytest.raises(UnauthenticatedError):
                restored.list_tables()


def test_tls_files_are_pickled_as_paths_and_read_again(tmp_path):
    pki = make_pki(tmp_path / "pki")
    tls = TlsOptions(ca_file=str(pki.ca.cert), cert_file=str(pki.client.cert),
                     key_file=str(pki.client.key), server_name="localhost")
    with EmbeddingClient("127.0.0.1:1", tls=tls) as client:
        data = pickle.dumps(client)
    with pickle.loads(data) as restored:
        assert restored._recipe[1]["tls"] == tls
    assert pki.client.key.read_bytes() not in data
    pki.client.key.unlink()
    with pytest.raises(InvalidArgumentError, match="key_file"):
        pickle.loads(data)


def _look_up_in_child(client, table, results):
    """Runs in a spawned process: looks up INDICES and pushes once."""
    try:
        results.put((client.lookup(table, INDICES),
                     _push(client, table, 0).duplicate))
    except BaseException as error:  # Reported to the parent.
        results.put(error)


def test_spawned_worker_looks_up_what_the_parent_reads(client, table):
    client.create_table(table, 10, 4, optimizer=SGD(lr=0.1))
    expected = client.lookup(table, INDICES)
    step = _step(client, table)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    worker = context.Process(target=_look_up_in_child,
                             args=(client, table, results))
    worker.start()
    try:
        result = results.get(timeout=120)
    finally:
        worker.join(timeout=60)
    assert not isinstance(result, BaseException), result
    rows, duplicate = result
    np.testing.assert_array_equal(rows, expected)
    assert not duplicate
    assert worker.exitcode == 0
    assert _step(client, table) == step + 1
    _push(client, table, 1)  # The parent pushes on, applied too.
    assert _step(client, table) == step + 2


def test_sharded_client_round_trip(table):
    with Cluster(2) as cluster:
        with EmbeddingClient(cluster.addresses, timeout=9.0,
                             max_retries=1) as client:
            client.create_table(table, 10, 4, optimizer=SGD(lr=0.1))
            with _round_trip(client) as restored:
                assert type(restored) is ShardedClient
                assert restored.addresses == cluster.addresses
                assert restored.timeout == 9.0
                assert restored.max_retries == 1
                assert restored.client_id != client.client_id
                assert all(shard.client_id == restored.client_id
                           for shard in restored.shards)
                np.testing.assert_array_equal(
                    restored.lookup(table, INDICES),
                    client.lookup(table, INDICES))
                _push(client, table, 0)
                assert not _push(restored, table, 1).duplicate
                assert client.get_table(table).step == 2


@pytest.mark.parametrize("addresses", [["127.0.0.1:1"],
                                       ["127.0.0.1:1", "127.0.0.1:2"]])
def test_client_with_credentials_is_not_picklable(addresses):
    credentials = grpc.ssl_channel_credentials()
    with EmbeddingClient(addresses, credentials=credentials) as client:
        with pytest.raises(TypeError,
                           match=r"credentials=.*tls=TlsOptions\(\.\.\.\)"):
            pickle.dumps(client)


def test_copies_share_the_client(client):
    assert copy.copy(client) is client
    assert copy.deepcopy(client) is client
    model = {"layer": client, "weights": [1.0]}
    copied = copy.deepcopy(model)
    assert copied["layer"] is client and copied["weights"] is not \
        model["weights"]


def _unused_address():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{listener.getsockname()[1]}"


def test_unpickling_does_not_connect():
    with EmbeddingClient(_unused_address(), max_retries=0,
                         timeout=10) as client:
        data = pickle.dumps(client)
    with pickle.loads(data) as restored:  # Nothing listens: no error yet.
        with pytest.raises(UnavailableError):
            restored.list_tables()


def test_torch_save_and_deepcopy_of_a_module_holding_a_client(client, table):
    torch = pytest.importorskip("torch")
    client.create_table(table, 10, 4)
    model = torch.nn.Linear(4, 2)
    model.client = client  # As a remote embedding module holds it.
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    assert loaded.client is not client
    np.testing.assert_array_equal(loaded.client.lookup(table, INDICES),
                                  client.lookup(table, INDICES))
    loaded.client.close()
    copied = copy.deepcopy(model)
    assert copied.client is client
    assert copied.weight is not model.weight
