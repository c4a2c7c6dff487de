"""LookupBag / PushBagGradients on dynamic tables (issue 15) against
F.embedding_bag and a torch optimizer step, beyond test_bags.py's runs on
ids [0, NUM) (every mode, variant and optimizer): raw ids (10**12 + k) with
padding id -1 or a large one, MAX's RESERVED_ID (INT64_MIN) for empty bags
(-1 is an id of a dynamic table), bad input, and the clients on raw ids:
sharded by hash of the id (Python, and C++ through the CLI) and
RemoteEmbeddingBag."""

import grpc
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embedding.v1 import embedding_service_pb2 as pb
from embedding_client import SGD, EmbeddingClient, Uniform
from embedding_client.nn import RemoteEmbeddingBag
from embedding_client.options import RESERVED_ID, Dynamic
from tests.e2e.cli_runner import Cli
from tests.testing.cluster import Cluster
from tests.testing.initializer_model import fill_rows
from tests.testing.server_process import ServerProcess

from .oracle import (Opt, TorchTable, assert_close, lookup_bag, push_bag,
                     random_bags, random_grad, read_rows)
from .test_bags import BAGS, DIM, NUM, STEPS, DynamicTorchTable


# ---- raw ids ----------------------------------------------------------------

PADDING = 4  # The torch row that stands for the padding id.
RAW_CASES = {
    # Raw id of each torch row: 10**12 + row, the padding row -1; or the
    # padding row a large id and row 3 the id -1 (which MAX may report).
    "padding_minus_one": {PADDING: -1},
    "padding_large": {PADDING: 1 << 60, 3: -1},
}


def raw_ids(case):
    raw = 10**12 + np.arange(NUM, dtype=np.int64)
    for row, key in RAW_CASES[case].items():
        raw[row] = key
    return raw


@pytest.mark.parametrize("case", RAW_CASES)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_raw_ids_and_padding_ids_match_torch(stub, table, mode, case):
    """Bags of raw ids train as torch's rows they stand for; the padding id
    (-1, or 2**60 with -1 an ordinary id) is skipped; MAX reports raw ids
    and RESERVED_ID for empty bags."""
    raw = raw_ids(case)
    ref = DynamicTorchTable(
        NUM, DIM, optimizer=Opt("sgd", lr=0.5), seed=41, padding_idx=PADDING,
        weight=fill_rows("uniform", *TorchTable.DYNAMIC_INIT, 41, raw, DIM))
    spec = ref.spec(table)
    spec.padding_idx = int(raw[PADDING])
    stub.CreateTable(pb.CreateTableRequest(spec=spec))
    rng = np.random.default_rng(42)
    for step in range(STEPS):
        rows, offsets = random_bags(rng, NUM, BAGS, False, PADDING)
        got, got_max = lookup_bag(stub, table, raw[rows], offsets, mode)
        expected, expected_max = ref.lookup_bag(rows, offsets, mode)
        assert_close(got, expected, f"step {step}: pooled output")
        if mode == "max":
            expected_raw = torch.where(
                expected_max == RESERVED_ID, expected_max,
                torch.from_numpy(raw)[expected_max.clamp(min=0)])
            assert torch.equal(got_max, expected_raw), step
        grad = random_grad(rng, (BAGS, DIM))
        response = push_bag(stub, table, raw[rows], offsets, mode, grad,
                            max_indices=got_max)
        pushed = ref.push_bag(rows, offsets, mode, grad)
        assert response.rows_updated == len(pushed), step
        held = sorted(ref.pushed)
        assert_close(read_rows(stub, table, raw[held]), ref.weight[held],
                     f"step {step}: rows held")
    info = stub.GetTable(pb.GetTableRequest(name=table))
    assert info.dynamic_stats.rows_held == len(ref.pushed)
    assert PADDING not in ref.pushed


def _code(call):
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


def test_bad_bags_are_invalid_argument_and_change_nothing(stub, table):
    ref = DynamicTorchTable(NUM, DIM, seed=43)
    ref.create_on(stub, table)
    grad = np.ones((1, DIM), np.float32)
    code, details = _code(lambda: lookup_bag(
        stub, table, [1, RESERVED_ID], [0], "sum"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == (f"index {RESERVED_ID} at position 1 is reserved: no "
                       "id of a dynamic table")
    code, _ = _code(lambda: push_bag(stub, table, [RESERVED_ID], [0], "mean",
                                     grad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # A dense table's empty-bag marker names no row of the batch here.
    code, details = _code(lambda: push_bag(
        stub, table, [5], [0, 0], "max", np.ones((2, DIM), np.float32),
        max_indices=np.array([-1] * DIM + [5] * DIM)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "max_indices[0] = -1 is not one of the batch's indices"
    info = stub.GetTable(pb.GetTableRequest(name=table))
    assert info.step == 0 and info.version == 0
    assert info.dynamic_stats.rows_held == 0
    assert info.dynamic_stats.absent_rows_looked_up == 0


# ---- clients: sharded by hash (Python, C++ CLI), RemoteEmbeddingBag --------

@pytest.fixture(scope="module")
def servers():
    """(the addresses of a 3-server cluster, the address of one server)."""
    with Cluster(3) as cluster, ServerProcess() as server:
        yield ",".join(cluster.addresses), server.address


@pytest.fixture(scope="module")
def clients(servers):
    """(a client of the cluster, a client of the one server)."""
    with EmbeddingClient(servers[0].split(",")) as sharded, \
            EmbeddingClient(servers[1]) as single:
        yield sharded, single


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_sharded_bags_equal_one_server(clients, table, mode):
    """The sharded client pools raw ids routed by hash exactly as one
    server pools them: outputs, max_indices and pushes, bit for bit."""
    sharded, single = clients
    raw = raw_ids("padding_large")
    for client in (sharded, single):
        client.create_table(table, None, DIM, padding_idx=int(raw[PADDING]),
                            optimizer=SGD(lr=0.3),
                            initializer=Uniform(-1.0, 1.0),
                            seed=44, dynamic=Dynamic(64))
    rng = np.random.default_rng(45)
    for step in range(STEPS):
        last = step % 2 == 1
        rows, offsets = random_bags(rng, NUM, BAGS, last, PADDING)
        weights = (rng.standard_normal(len(rows)).astype(np.float32)
                   if mode == "sum" else None)
        bag = dict(mode=mode, per_sample_weights=weights,
                   include_last_offset=last)
        got = sharded.lookup_bag(table, raw[rows], offsets,
                                 return_max_indices=True, **bag)
        expected = single.lookup_bag(table, raw[rows], offsets,
                                     return_max_indices=True, **bag)
        np.testing.assert_array_equal(got[0], expected[0])
        if mode == "max":
            np.testing.assert_array_equal(got[1], expected[1])
            assert (got[1] == RESERVED_ID).any()  # Empty bags.
        grad = random_grad(rng, (BAGS, DIM))
        results = [client.push_bag_gradients(
            table, raw[rows], offsets, grad, max_indices=got[1], **bag)
            for client in (sharded, single)]
        assert results[0].rows_updated == results[1].rows_updated
        assert results[0].rows_admitted == results[1].rows_admitted
    np.testing.assert_array_equal(sharded.lookup(table, raw),
                                  single.lookup(table, raw))
    assert (sharded.get_table(table).dynamic_stats.rows_held ==
            single.get_table(table).dynamic_stats.rows_held)


@pytest.mark.parametrize("mode", ["sum", "max"])
def test_remote_embedding_bag_trains_raw_ids_as_local(clients, table, mode):
    """RemoteEmbeddingBag (push="backward") over 3 shards on raw ids equals
    a local nn.EmbeddingBag whose rows start as FillRow of those ids."""
    sharded, _ = clients
    raw = raw_ids("padding_minus_one")
    sharded.create_table(table, None, DIM, padding_idx=-1,
                         optimizer=SGD(lr=0.5),
                         initializer=Uniform(-1.0, 1.0), seed=46,
                         dynamic=Dynamic(64))
    remote = RemoteEmbeddingBag(sharded, table, mode=mode)
    weight = torch.from_numpy(fill_rows("uniform", -1.0, 1.0, 46, raw, DIM))
    weight[PADDING] = 0
    local = torch.nn.Parameter(weight)
    rng = np.random.default_rng(47)
    for step in range(STEPS):
        rows, offsets = random_bags(rng, NUM, BAGS, False, PADDING)
        target = torch.from_numpy(random_grad(rng, (BAGS, DIM)))
        got = remote(torch.from_numpy(raw[rows]), torch.from_numpy(offsets))
        expected = F.embedding_bag(torch.from_numpy(rows), local,
                                   torch.from_numpy(offsets), mode=mode,
                                   padding_idx=PADDING)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        ((got - target) ** 2).sum().backward()
        ((expected - target) ** 2).sum().backward()
        with torch.no_grad():
            local -= 0.5 * local.grad
            local.grad = None
    torch.testing.assert_close(
        torch.from_numpy(sharded.lookup(table, raw)), local.detach(),
        rtol=1e-5, atol=1e-5)


def test_cli_sharded_bags_equal_one_server(servers, clients, table):
    """The C++ sharded client (the CLI over 3 servers) pools and pushes bags
    of raw ids as one server does: same printout, same rows after."""
    sharded, single = clients
    raw = raw_ids("padding_large")
    for client in (sharded, single):
        client.create_table(table, None, DIM, padding_idx=int(raw[PADDING]),
                            optimizer=SGD(lr=0.3),
                            initializer=Uniform(-1.0, 1.0), seed=48,
                            dynamic=Dynamic(64))
    clis = [Cli(address) for address in servers]
    # Bag 1 is empty; -1 (row 3) and the padding id are in bag 0.
    indices = "--indices=" + ",".join(str(raw[k]) for k in (3, 4, 0, 3, 7))
    grad = "--grad=" + ",".join(str(0.1 * i - 0.7) for i in range(3 * DIM))
    for mode in ("sum", "mean", "max"):
        bag = (table, indices, "--offsets=0,3,3", f"--mode={mode}")
        outputs = [cli.ok("lookup-bag", *bag) for cli in clis]
        assert outputs[0] == outputs[1], mode
        if mode == "max":
            assert str(RESERVED_ID) in outputs[0]
        pushed = [cli.ok("push-bag", *bag, grad) for cli in clis]
        assert pushed[0].split("version")[0] == pushed[1].split("version")[0]
    np.testing.assert_array_equal(sharded.lookup(table, raw),
                                  single.lookup(table, raw))
