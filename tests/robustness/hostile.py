"""Generators of hostile requests for test_hostile_corpus.py.

Each case is a function of its own random.Random, so case i of seed s is
the same on every run whatever the threads do:

    case = make_case(random.Random(f"{seed}/{i}"))
    case.method, case.payload, case.expected, case.what

A case carries one thing wrong (so its code is not a matter of which check
runs first), or nothing wrong (OK, and the mutating ones only touch the
scratch table). Payloads are bytes: serialized messages, or bytes built by
hand where a message would cost too much Python (millions of indices) or
cannot be built (invalid wire format).

The tables the cases know are TABLES; the test creates them.
"""

import dataclasses
import math
import string
import warnings

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from embedding.v1 import embedding_service_pb2 as pb
from tests.robustness import limits
from tests.robustness.wire import METHODS, field_bytes

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    rows: int
    dim: int
    optimizer: pb.Optimizer
    padding_idx: int = None

    def spec(self):
        return pb.TableSpec(name=self.name, num_embeddings=self.rows,
                            embedding_dim=self.dim, optimizer=self.optimizer,
                            padding_idx=self.padding_idx, seed=3)


SGD = pb.Optimizer(sgd=pb.SgdOptions(lr=0.05))
ADAGRAD = pb.Optimizer(adagrad=pb.AdagradOptions(lr=0.1))
# Every kind, for specs whose size depends on the optimizer's state.
OPTIMIZERS = (SGD, ADAGRAD, pb.Optimizer(sparse_adam=pb.SparseAdamOptions()),
              pb.Optimizer(rowwise_adagrad=pb.RowwiseAdagradOptions()),
              pb.Optimizer(ftrl=pb.FtrlOptions()))
# Read only: no case changes them (the test compares them before and after).
KNOWN = (Table("a", 1000, 8, SGD), Table("b", 5000, 3, ADAGRAD, padding_idx=0))
# Where the valid mutating cases go.
SCRATCH = Table("scratch", 100, 8, SGD)
TABLES = KNOWN + (SCRATCH,)


@dataclasses.dataclass
class Case:
    """method: a METHODS name, or "LookupStream". payload: the request's
    bytes (LookupStream: a list of them). expected: the codes it may end
    with. answers: LookupStream only, the responses due before its end.
    what: the generator and its choices, for failure messages."""
    method: str
    payload: object
    expected: frozenset
    what: str
    answers: int = 0


def _case(method, message, expected, what):
    payload = message if isinstance(message, bytes) else \
        message.SerializeToString()
    return Case(method, payload, frozenset(expected), what)


# ---- pieces --------------------------------------------------------------

def _indices(rng, table, count):
    return [rng.randrange(table.rows) for _ in range(count)]


def _count(rng):
    return rng.choice([1, 1, 2, 3, rng.randrange(1, 50),
                       rng.randrange(1, 2000)])


def _floats(rng, count, scale=1.0):
    return (np.random.default_rng(rng.getrandbits(64)).standard_normal(
        count, np.float32) * np.float32(scale))


def _tensor(values, shape, dtype=pb.DTYPE_FLOAT32):
    return pb.Tensor(dtype=dtype, shape=shape,
                     data=np.asarray(values, np.float32).tobytes())


def _bags(rng, count):
    """Valid offsets for `count` indices (include_last_offset False)."""
    bags = rng.randrange(1, count + 2)
    cuts = sorted(rng.randrange(count + 1) for _ in range(bags - 1))
    return [0] + cuts


def _bad_index(rng, table):
    return rng.choice([
        table.rows, table.rows + rng.randrange(1, 1000),
        rng.randrange(table.rows, 2**63), -1, -rng.randrange(1, 2**63),
        -2**63, 2**63 - 1])


def _unknown_name(rng):
    alphabet = string.ascii_letters + string.digits + "_.-"
    while True:
        name = "".join(rng.choice(alphabet)
                       for _ in range(rng.randrange(1, 129)))
        if name not in {t.name for t in TABLES}:
            return name


def _long_name(rng):
    return rng.choice(string.ascii_letters) * rng.choice(
        [129, 1000, 8000, 10_000, rng.randrange(129, 100_000)])


def _odd_name(rng):
    """A name no table can have: empty, too long, or with other
    characters."""
    return rng.choice([
        "", _long_name(rng), "a b", "a/b", "a\x00", "ä", "名前", "a\nb",
        "../a", "a" * 127 + "!"])


def _garbage(rng, request_type):
    """Bytes `request_type` does not parse: random, a valid request cut or
    flipped, or random after an invalid first byte."""
    for _ in range(50):
        size = rng.choice([rng.randrange(1, 16), rng.randrange(1, 300),
                           rng.randrange(1, 70_000)])
        candidate = rng.randbytes(size)
        if rng.random() < 0.3:  # A varint that never ends.
            candidate = candidate[:rng.randrange(len(candidate) + 1)] + \
                b"\xff" * rng.randrange(11, 30)
        try:
            with warnings.catch_warnings():
                # upb warns of some bytes it parses only in part.
                warnings.simplefilter("ignore", RuntimeWarning)
                request_type.FromString(candidate)
        except DecodeError:
            return candidate
    return b"\x00" + rng.randbytes(rng.randrange(0, 100))  # Field 0.


# ---- valid requests, one per method, for a table --------------------------

def valid_lookup(rng, table, count=None):
    count = count or _count(rng)
    request = pb.LookupRequest(
        table=table.name, indices=_indices(rng, table, count),
        dtype=rng.choice([0, 1, 2, 3]))
    if rng.random() < 0.3:
        split = [d for d in range(1, count + 1) if count % d == 0]
        first = rng.choice(split)
        request.shape.extend([first, count // first])
    return request


def valid_bag(rng, table, bag_type=pb.LookupBagRequest):
    count = _count(rng)
    request = bag_type(table=table.name,
                       indices=_indices(rng, table, count),
                       offsets=_bags(rng, count),
                       mode=rng.choice([0, 1]))
    if request.mode == pb.BAG_MODE_SUM and rng.random() < 0.5:
        request.per_sample_weights.extend(_floats(rng, count).tolist())
    if bag_type is pb.LookupBagRequest:
        request.dtype = rng.choice([0, 1, 2, 3])
    else:
        request.grad.CopyFrom(_tensor(_floats(rng, len(request.offsets) *
                                              table.dim),
                                      [len(request.offsets), table.dim]))
    return request


def valid_push(rng, table):
    count = _count(rng)
    return pb.PushGradientsRequest(
        table=table.name, indices=_indices(rng, table, count),
        grad=_tensor(_floats(rng, count * table.dim, 0.1),
                     [count, table.dim]))


def valid_write(rng, table):
    rows = rng.sample(range(table.rows), min(_count(rng), table.rows))
    return pb.WriteRowsRequest(
        table=table.name, indices=rows,
        values=_tensor(_floats(rng, len(rows) * table.dim),
                       [len(rows), table.dim]))


def valid_read(rng, table):
    if rng.random() < 0.5:
        return pb.ReadRowsRequest(table=table.name,
                                  indices=_indices(rng, table, _count(rng)))
    start = rng.randrange(table.rows)
    return pb.ReadRowsRequest(
        table=table.name, start_row=start,
        end_row=rng.choice([0, rng.randrange(start, table.rows + 1)]),
        rows_per_message=rng.choice([0, 1, 7, 1000]))


VALID = {
    "Lookup": valid_lookup,
    "LookupBag": valid_bag,
    "PushGradients": valid_push,
    "PushBagGradients": lambda rng, table: valid_bag(
        rng, table, pb.PushBagGradientsRequest),
    "WriteRows": valid_write,
    "ReadRows": valid_read,
    "GetTable": lambda rng, table: pb.GetTableRequest(name=table.name),
    "DeleteTable": lambda rng, table: pb.DeleteTableRequest(name=table.name),
    "SetOptimizer": lambda rng, table: pb.SetOptimizerRequest(
        table=table.name, optimizer=table.optimizer),
}
# Methods that change a table when valid.
MUTATING = {"PushGradients", "PushBagGradients", "WriteRows", "SetOptimizer",
            "DeleteTable"}
WITH_INDICES = ("Lookup", "LookupBag", "PushGradients", "PushBagGradients",
                "WriteRows", "ReadRows")


def _set_table(request, name):
    if hasattr(request, "table"):
        request.table = name
    else:
        request.name = name


# ---- the generators: (weight, function(rng) -> Case) ----------------------

def gen_valid_read_only(rng):
    table = rng.choice(TABLES)
    method = rng.choice(["Lookup", "LookupBag", "ReadRows", "GetTable"])
    return _case(method, VALID[method](rng, table), {OK},
                 f"valid {method} on {table.name}")


def gen_valid_mutation(rng):
    method = rng.choice(["PushGradients", "PushBagGradients", "WriteRows",
                         "SetOptimizer"])
    request = VALID[method](rng, SCRATCH)
    if method == "PushGradients" and rng.random() < 0.5:
        request.client_id = f"corpus-{rng.getrandbits(64):x}"
        request.sequence = rng.randrange(1, 2**64)
    return _case(method, request, {OK}, f"valid {method} on scratch")


def gen_list_tables(rng):
    return _case("ListTables", pb.ListTablesRequest(), {OK}, "ListTables")


def gen_garbage(rng):
    method = rng.choice(sorted(METHODS))
    return _case(method, _garbage(rng, METHODS[method][0]), {INVALID},
                 f"random bytes to {method}")


def gen_unknown_table(rng):
    method = rng.choice(sorted(VALID))
    request = VALID[method](rng, rng.choice(KNOWN))
    name = rng.choice([_unknown_name(rng), _long_name(rng), _odd_name(rng)])
    _set_table(request, name)
    return _case(method, request, {NOT_FOUND},
                 f"{method} on unknown table of {len(name)} chars")


def gen_bad_index(rng):
    method = rng.choice(WITH_INDICES)
    table = rng.choice(KNOWN)
    if method == "ReadRows":
        request = pb.ReadRowsRequest(table=table.name,
                                     indices=_indices(rng, table,
                                                      _count(rng)))
    else:
        request = VALID[method](rng, table)
    for _ in range(rng.choice([1, 1, 2, 10])):
        position = rng.randrange(len(request.indices))
        request.indices[position] = _bad_index(rng, table)
    return _case(method, request, {INVALID},
                 f"{method} on {table.name} with an index out of range")


def gen_bad_shape(rng):
    table = rng.choice(TABLES)
    request = valid_lookup(rng, table)
    count = len(request.indices)
    del request.shape[:]
    kind = rng.choice(["deep", "mismatch", "negative", "overflow", "zero"])
    if kind == "deep":
        request.shape.extend([1] * rng.choice(
            [limits.MAX_SHAPE_RANK + 1, 64, rng.randrange(17, 100_000)]))
        request.shape[0] = count
    elif kind == "mismatch":
        request.shape.extend([count + rng.randrange(1, 100)] +
                             [1] * rng.randrange(0, 3))
    elif kind == "negative":
        request.shape.extend([-count, -1] if rng.random() < 0.5
                             else [-1, -count])
    elif kind == "overflow":
        big = rng.choice([2**31, 2**32, 2**62, 2**63 - 1])
        request.shape.extend([big] * rng.randrange(2, 5) + [count])
    else:
        request.shape.extend([0, count])
    return _case("Lookup", request, {INVALID}, f"Lookup with a {kind} shape")


def gen_bad_enum(rng):
    table = rng.choice(TABLES)
    value = rng.choice([4, 5, 100, 2**31 - 1, -1, -2**31])
    if rng.random() < 0.5:
        request = valid_lookup(rng, table)
        request.dtype = value
        return _case("Lookup", request, {INVALID}, f"Lookup dtype {value}")
    method = rng.choice(["LookupBag", "PushBagGradients"])
    request = VALID[method](rng, table if method == "LookupBag" else SCRATCH)
    del request.per_sample_weights[:]
    request.mode = rng.choice([3, 4, 100, 2**31 - 1, -1])
    if method == "LookupBag" and rng.random() < 0.5:
        request.mode = 0
        request.dtype = value
    return _case(method, request, {INVALID},
                 f"{method} with an unknown mode or dtype")


def gen_bad_offsets(rng):
    method = rng.choice(["LookupBag", "PushBagGradients"])
    table = rng.choice(KNOWN)
    request = VALID[method](rng, table)
    count = len(request.indices)
    kind = rng.choice(["first", "decreasing", "past_end", "empty",
                       "last_offset"])
    offsets = list(request.offsets)
    if kind == "first":
        offsets[0] = rng.choice([1, -1, count + 1, 2**63 - 1, -2**63])
    elif kind == "decreasing":
        offsets = [0, count, rng.randrange(count)] if count > 0 else [0, 1, 0]
    elif kind == "past_end":
        offsets.append(count + rng.randrange(1, 2**62))
    elif kind == "empty":
        offsets = []
    else:
        offsets = [0]
        request.include_last_offset = True
    del request.offsets[:]
    request.offsets.extend(offsets)
    if method == "PushBagGradients":
        bags = max(len(offsets) - request.include_last_offset, 1)
        request.grad.CopyFrom(_tensor(_floats(rng, bags * table.dim),
                                      [bags, table.dim]))
    return _case(method, request, {INVALID},
                 f"{method} on {table.name} with {kind} offsets")


def gen_bad_weights(rng):
    table = rng.choice(KNOWN)
    request = valid_bag(rng, table)
    count = len(request.indices)
    kind = rng.choice(["count", "mode", "nan"])
    del request.per_sample_weights[:]
    if kind == "count":
        request.mode = pb.BAG_MODE_SUM
        wrong = rng.choice([count + 1, count + 5] +
                           ([count - 1] if count > 1 else []))
        request.per_sample_weights.extend([1.0] * wrong)
    elif kind == "mode":
        request.mode = rng.choice([pb.BAG_MODE_MEAN, pb.BAG_MODE_MAX])
        request.per_sample_weights.extend([1.0] * count)
    else:
        request.mode = pb.BAG_MODE_SUM
        weights = [1.0] * count
        weights[rng.randrange(count)] = rng.choice(
            [math.nan, math.inf, -math.inf])
        request.per_sample_weights.extend(weights)
    return _case("LookupBag", request, {INVALID},
                 f"LookupBag per_sample_weights: {kind}")


def gen_non_finite(rng):
    table = rng.choice(KNOWN)
    bad = rng.choice([math.nan, math.inf, -math.inf])
    method = rng.choice(["PushGradients", "WriteRows", "WriteRowRange",
                         "learning_rate", "PushBagGradients"])
    if method == "learning_rate":
        request = valid_push(rng, table)
        request.learning_rate = rng.choice([bad, 0.0, -0.1])
        return _case("PushGradients", request, {INVALID},
                     f"PushGradients learning_rate {request.learning_rate}")
    if method == "WriteRowRange":
        rows = rng.randrange(1, 20)
        values = _floats(rng, rows * table.dim)
        values[rng.randrange(values.size)] = bad
        request = pb.WriteRowsRequest(
            table=table.name, start_row=rng.randrange(table.rows - rows),
            values=_tensor(values, [rows, table.dim]))
        return _case("WriteRows", request, {INVALID},
                     f"WriteRows range with {bad}")
    request = VALID[method](rng, table)
    tensor = request.values if method == "WriteRows" else request.grad
    values = np.frombuffer(tensor.data, np.float32).copy()
    values[rng.randrange(values.size)] = bad
    tensor.data = values.tobytes()
    return _case(method, request, {INVALID}, f"{method} with {bad}")


def gen_mismatched_tensor(rng):
    table = rng.choice(KNOWN)
    method = rng.choice(["PushGradients", "WriteRows", "PushBagGradients"])
    request = VALID[method](rng, table)
    tensor = request.values if method == "WriteRows" else request.grad
    rows, dim = tensor.shape
    kind = rng.choice(["rows", "dim", "bytes", "odd_bytes", "dtype",
                       "deep", "no_shape", "overflow"])
    if kind == "rows":
        tensor.shape[0] = rows + rng.choice([-rows, 1, 2**40])
    elif kind == "dim":
        tensor.shape[1] = dim + rng.choice([-dim, 1, -1 if dim > 1 else 2])
    elif kind == "bytes":
        tensor.data = tensor.data[:-4] if rng.random() < 0.5 else \
            tensor.data + b"\0\0\0\0"
    elif kind == "odd_bytes":
        tensor.data = tensor.data + b"\0"
    elif kind == "dtype":
        tensor.dtype = rng.choice([pb.DTYPE_FLOAT16, pb.DTYPE_BFLOAT16, 9,
                                   -3])
    elif kind == "deep":
        del tensor.shape[:]
        tensor.shape.extend([rows, dim] + [1] * rng.randrange(
            limits.MAX_SHAPE_RANK, 5000))
    elif kind == "no_shape":
        del tensor.shape[:]
    else:
        del tensor.shape[:]
        tensor.shape.extend([2**62, 2**62, dim])
    return _case(method, request, {INVALID},
                 f"{method} on {table.name}: tensor {kind} mismatch")


def gen_long_client_id(rng):
    table = rng.choice(KNOWN)
    request = valid_push(rng, table)
    if rng.random() < 0.7:
        request.client_id = "c" * rng.choice(
            [limits.MAX_CLIENT_ID_BYTES + 1, 8000, 10_000,
             rng.randrange(257, 1_000_000)])
        request.sequence = rng.randrange(1, 2**64)
        what = f"client_id of {len(request.client_id)} bytes"
    else:
        request.client_id = "corpus-zero-sequence"
        request.sequence = 0
        what = "client_id with sequence 0"
    return _case("PushGradients", request, {INVALID}, f"PushGradients {what}")


def gen_too_many_indices(rng):
    table = rng.choice(KNOWN)
    count = limits.MAX_INDICES_PER_REQUEST + rng.choice(
        [1, 1000, rng.randrange(1, 1_000_000)])
    indices = field_bytes(2, b"\x00" * count)  # All index 0.
    method = rng.choice(["Lookup", "LookupBag", "ReadRows"])
    payload = field_bytes(1, table.name.encode()) + indices
    if method == "LookupBag":
        payload += field_bytes(3, b"\x00")  # offsets [0]
    return _case(method, payload, {EXHAUSTED},
                 f"{method} with {count} indices")


def gen_response_too_large(rng):
    # 3M rows of 8 float32 (96 MB) or 3M empty bags: past 64 MiB.
    table = KNOWN[0]
    count = 3_000_000
    if rng.random() < 0.5:
        payload = (field_bytes(1, table.name.encode()) +
                   field_bytes(2, b"\x00" * count) + b"\x20\x01")
        return _case("Lookup", payload, {EXHAUSTED},
                     "Lookup of a 96 MB response")
    payload = (field_bytes(1, table.name.encode()) +
               field_bytes(2, b"\x00") + field_bytes(3, b"\x00" * count))
    return _case("LookupBag", payload, {EXHAUSTED},
                 "LookupBag of 3M empty bags")


def gen_message_too_large(rng):
    method = rng.choice(sorted(METHODS))
    payload = field_bytes(999, b"\x00" * (limits.MAX_MESSAGE_BYTES + 1))
    return _case(method, payload, {EXHAUSTED},
                 f"{method} message past 64 MiB")


def gen_bad_write(rng):
    table = rng.choice(KNOWN)
    kind = rng.choice(["duplicate", "range_start", "range_end", "range_rank",
                       "empty"])
    if kind == "duplicate":
        request = valid_write(rng, table)
        if len(request.indices) < 2:
            request = pb.WriteRowsRequest(
                table=table.name, indices=[5, 5],
                values=_tensor(_floats(rng, 2 * table.dim), [2, table.dim]))
        else:
            request.indices[-1] = request.indices[0]
    elif kind in ("range_start", "range_end"):
        rows = rng.randrange(1, 10)
        # Near 2**63 too: start_row + rows must not wrap.
        start = (rng.choice([-1, -2**63, -rows]) if kind == "range_start"
                 else rng.choice([table.rows - rows + rng.randrange(1, 2**62),
                                  2**63 - 1, 2**63 - rows]))
        request = pb.WriteRowsRequest(
            table=table.name, start_row=start,
            values=_tensor(_floats(rng, rows * table.dim), [rows, table.dim]))
    elif kind == "range_rank":
        request = pb.WriteRowsRequest(
            table=table.name, start_row=0,
            values=_tensor(_floats(rng, table.dim), [table.dim]))
    else:
        request = pb.WriteRowsRequest(table=table.name,
                                      values=_tensor([], [0, table.dim]))
    return _case("WriteRows", request, {INVALID},
                 f"WriteRows on {table.name}: {kind}")


def gen_bad_read_range(rng):
    table = rng.choice(KNOWN)
    kind = rng.choice(["negative_start", "end_before_start", "end_past",
                       "start_past"])
    start, end = {
        "negative_start": (rng.choice([-1, -2**63]), 0),
        "end_before_start": (10, rng.randrange(1, 10)),
        "end_past": (rng.choice([0, 2**63 - 2]),
                     rng.choice([table.rows + rng.randrange(1, 2**62),
                                 2**63 - 1])),
        "start_past": (rng.choice([table.rows + rng.randrange(1, 2**62),
                                   2**63 - 1]), 0),
    }[kind]
    return _case("ReadRows", pb.ReadRowsRequest(
        table=table.name, start_row=start, end_row=end), {INVALID},
        f"ReadRows on {table.name}: {kind}")


def gen_bad_optimizer(rng):
    table = rng.choice(KNOWN)
    if rng.random() < 0.5:
        other = ADAGRAD if table.optimizer == SGD else SGD
        return _case("SetOptimizer", pb.SetOptimizerRequest(
            table=table.name, optimizer=other), {PRECONDITION},
            f"SetOptimizer changing the kind of {table.name}")
    optimizer = pb.Optimizer()
    optimizer.CopyFrom(table.optimizer)
    options = optimizer.sgd if optimizer.HasField("sgd") else \
        optimizer.adagrad
    options.lr = rng.choice([math.nan, math.inf, -1.0, -math.inf])
    return _case("SetOptimizer", pb.SetOptimizerRequest(
        table=table.name, optimizer=optimizer), {INVALID},
        f"SetOptimizer lr {options.lr} on {table.name}")


def gen_bad_create(rng):
    request = pb.CreateTableRequest(spec=pb.TableSpec(
        name=f"x-{rng.getrandbits(48):x}",
        num_embeddings=rng.randrange(1, 1000),
        embedding_dim=rng.randrange(1, 64)))
    spec = request.spec  # A reference: changes go into the request.
    kind = rng.choice(["rows", "dim", "big_dim", "name", "padding",
                       "max_norm", "norm_type", "init_nan", "uniform",
                       "std", "weights", "exists", "budget", "overflow",
                       "optimizer"])
    expected = {INVALID}
    if kind in ("big_dim", "budget", "overflow"):
        spec.optimizer.CopyFrom(rng.choice(OPTIMIZERS))
    if kind == "rows":
        spec.num_embeddings = rng.choice([0, -1, -2**63])
    elif kind == "dim":
        spec.embedding_dim = rng.choice([0, -1, -2**63])
    elif kind == "big_dim":
        spec.num_embeddings = 1
        spec.embedding_dim = rng.choice([limits.MAX_EMBEDDING_DIM + 1,
                                         2**31, 2**62, 2**63 - 1])
    elif kind == "name":
        spec.name = _odd_name(rng)
    elif kind == "padding":
        spec.padding_idx = rng.choice([spec.num_embeddings,
                                       -spec.num_embeddings - 1, 2**63 - 1,
                                       -2**63])
    elif kind == "max_norm":
        spec.max_norm = rng.choice([0.0, -1.0, math.nan, math.inf])
    elif kind == "norm_type":
        spec.norm_type = rng.choice([0.0, -2.0, math.nan])
    elif kind == "init_nan":
        spec.initializer.constant.value = rng.choice([math.nan, math.inf])
    elif kind == "uniform":
        spec.initializer.uniform.low = 1.0
        spec.initializer.uniform.high = rng.choice([0.5, -math.inf])
    elif kind == "std":
        spec.initializer.normal.std = rng.choice([-1.0, math.nan])
    elif kind == "weights":
        rows, dim = spec.num_embeddings, spec.embedding_dim
        shape = rng.choice([[rows + 1, dim], [rows, dim + 1], [rows * dim],
                            [rows, dim]])
        elements = rows * dim + (0 if shape != [rows, dim] else 1)
        request.initial_weights.CopyFrom(_tensor(
            _floats(rng, elements), shape))
    elif kind == "exists":
        known = rng.choice(TABLES)
        spec.name = known.name
        spec.num_embeddings = known.rows
        spec.embedding_dim = known.dim
        expected = {EXISTS}
    elif kind == "budget":
        spec.num_embeddings = rng.choice([10**8, 10**9, 2**40])
        spec.embedding_dim = rng.randrange(1, 64)
        expected = {EXHAUSTED}
    elif kind == "overflow":
        # Past 64 bits of bytes: said as either (README: INVALID_ARGUMENT
        # for an overflow, RESOURCE_EXHAUSTED for the budget).
        spec.num_embeddings = rng.choice([2**62, 2**63 - 1])
        spec.embedding_dim = rng.choice([2, 1000, limits.MAX_EMBEDDING_DIM])
        expected = {INVALID, EXHAUSTED}
    else:
        spec.optimizer.adagrad.eps = rng.choice([-1.0, math.nan])
    return _case("CreateTable", request, expected, f"CreateTable: {kind}")


def gen_delete_unknown(rng):
    name = rng.choice([_unknown_name(rng), _long_name(rng)])
    return _case("DeleteTable", pb.DeleteTableRequest(name=name),
                 {NOT_FOUND}, "DeleteTable of an unknown table")


def gen_save_checkpoint(rng):
    # The corpus server has no --checkpoint_dir.
    return _case("SaveCheckpoint", pb.SaveCheckpointRequest(
        tables=[rng.choice([t.name for t in TABLES] + [_long_name(rng)])],
        incremental=rng.random() < 0.5), {PRECONDITION}, "SaveCheckpoint")


def gen_lookup_stream(rng):
    """A few valid lookups, then maybe one bad request, in one stream."""
    table = rng.choice(TABLES)
    valid = [valid_lookup(rng, table).SerializeToString()
             for _ in range(rng.randrange(0, 5))]
    ending = rng.choice(["none", "garbage", "index", "table", "shape"])
    expected, last = {OK}, []
    if ending == "garbage":
        last, expected = [_garbage(rng, pb.LookupRequest)], {INVALID}
    elif ending == "index":
        bad = valid_lookup(rng, table)
        del bad.shape[:]
        bad.indices[0] = _bad_index(rng, table)
        last, expected = [bad.SerializeToString()], {INVALID}
    elif ending == "table":
        bad = valid_lookup(rng, table)
        bad.table = rng.choice([_unknown_name(rng), _long_name(rng)])
        last, expected = [bad.SerializeToString()], {NOT_FOUND}
    elif ending == "shape":
        bad = valid_lookup(rng, table)
        del bad.shape[:]
        bad.shape.extend([1] * 17)
        last, expected = [bad.SerializeToString()], {INVALID}
    # Requests after a bad one are never answered.
    after = [valid[0]] * rng.randrange(0, 3) if last and valid else []
    case = Case("LookupStream", valid + last + after, frozenset(expected),
                f"LookupStream: {len(valid)} valid, then {ending}")
    case.answers = len(valid)
    return case


GENERATORS = [
    (10, gen_valid_read_only),
    (5, gen_valid_mutation),
    (1, gen_list_tables),
    (14, gen_garbage),
    (8, gen_unknown_table),
    (10, gen_bad_index),
    (7, gen_bad_shape),
    (4, gen_bad_enum),
    (6, gen_bad_offsets),
    (3, gen_bad_weights),
    (6, gen_non_finite),
    (7, gen_mismatched_tensor),
    (4, gen_long_client_id),
    (0.8, gen_too_many_indices),
    (0.4, gen_response_too_large),
    (0.1, gen_message_too_large),
    (3, gen_bad_write),
    (3, gen_bad_read_range),
    (3, gen_bad_optimizer),
    (7, gen_bad_create),
    (1, gen_delete_unknown),
    (1, gen_save_checkpoint),
    (6, gen_lookup_stream),
]


def make_case(rng):
    """One case, its generator drawn by weight."""
    weights = [weight for weight, _ in GENERATORS]
    (_, generator), = rng.choices(GENERATORS, weights)
    return generator(rng)
