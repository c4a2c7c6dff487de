"""PyTorch as the oracle for the conformance tests, plus the wire helpers.

A `TorchTable` is what the server's table should be: an nn.Embedding weight,
the matching torch optimizer and the table's flags. Each test drives the
server and a TorchTable with the same calls and compares every number:

    ref = TorchTable(20, 4, padding_idx=-1, optimizer=Opt("adagrad", lr=0.1))
    ref.create_on(stub, "t")
    got = lookup(stub, "t", idx)
    assert_close(got, ref.lookup(idx))
    push(stub, "t", idx, grad); ref.push(idx, grad)
    assert_close(read_rows(stub, "t"), ref.weight)

A TorchTable made with dynamic_capacity=C stands for a dynamic table of
capacity C >= num_embeddings (admit_after 1, so nothing is ever evicted)
trained on ids [0, num_embeddings): its spec asks for a Uniform(-1, 1)
initializer and the torch weight starts as FillRow of those ids
(tests/testing/initializer_model.py), the rows a dynamic table reads for ids
it does not hold; the padding id is sent normalised.

Tensors travel as raw little-endian bytes (`Tensor.data`).
"""


import numpy as np
import torch
import torch.nn.functional as F

from embedding.v1 import embedding_service_pb2 as pb
from tests.testing.initializer_model import fill_rows

RTOL = 1e-5
ATOL = 1e-5

_NP_DTYPES = {
    pb.DTYPE_UNSPECIFIED: "<f4",
    pb.DTYPE_FLOAT32: "<f4",
    pb.DTYPE_FLOAT16: "<f2",
    pb.DTYPE_BFLOAT16: "<u2",
}

BAG_MODES = {"sum": pb.BAG_MODE_SUM, "mean": pb.BAG_MODE_MEAN,
             "max": pb.BAG_MODE_MAX}


def f32(x):
    """Rounds a Python float through float32, as a proto `float` field does."""
    return float(np.float32(x))


# --- Tensor <-> proto --------------------------------------------------------

def to_proto(array):
    """float32 Tensor message from an array-like (numpy or torch)."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.ascontiguousarray(array, dtype="<f4")
    return pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=list(array.shape),
                     data=array.tobytes())


def from_proto(tensor):
    """torch tensor (float32, float16 or bfloat16) of a Tensor message."""
    shape = tuple(tensor.shape)
    flat = np.frombuffer(tensor.data, dtype=_NP_DTYPES[tensor.dtype])
    assert flat.size == int(np.prod(shape, dtype=np.int64)), (
        f"Tensor of shape {shape} carries {flat.size} elements")
    flat = flat.copy().reshape(shape)
    if tensor.dtype == pb.DTYPE_BFLOAT16:
        return torch.from_numpy(flat.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(flat)


def assert_close(got, expected, what=""):
    """Within 1e-5, relative where values are large."""
    got = got.float().numpy() if isinstance(got, torch.Tensor) else got
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().float().numpy()
    assert np.shape(got) == np.shape(expected), (
        f"{what}: shape {np.shape(got)} != {np.shape(expected)}")
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL,
                               err_msg=what)


# --- Optimizers --------------------------------------------------------------

class RowwiseAdagrad(torch.optim.Optimizer):
    """FBGEMM's row-wise Adagrad, the reference for `rowwise_adagrad`.

    Per row r with coalesced gradient g (a dense gradient counts every row;
    a zero row is a no-op): acc[r] += mean(g * g);
    w[r] -= lr * g / (sqrt(acc[r]) + eps).
    """

    def __init__(self, params, lr=0.01, eps=1e-8):
        super().__init__(params, dict(lr=lr, eps=eps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                else:
                    rows, values = torch.arange(p.shape[0]), grad
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros(p.shape[0])
                acc = state["sum"]
                acc[rows] += (values * values).mean(dim=1)
                scale = group["lr"] / (acc[rows].sqrt() + group["eps"])
                p[rows] -= scale[:, None] * values


class Ftrl(torch.optim.Optimizer):
    """FTRL-Proximal per coordinate, the reference for `ftrl` (torch has
    none): TensorFlow's ApplyFtrl with TF2's beta, defaults as TF's.

    For the gradient g of an element with weight w, accumulator n (starting
    at initial_accumulator_value) and linear term z (starting at 0), with
    p = -lr_power:
        new_n = n + g^2;  z += g - (new_n^p - n^p) / lr * w;  n = new_n
        w = 0 if |z| <= l1 else
            (sign(z) * l1 - z) / ((beta + new_n^p) / lr + 2 * l2)
    Only the rows of the (sparse, coalesced) gradient step, but every
    element of them: one with g = 0 still gets w recomputed from z, as in
    TF. NumPy float64 with float32 weights, so it is the exact update of the
    weights the server holds; the server's float32 state stays within
    assert_close's 1e-5 of it over the suites' few dozen steps.
    """

    def __init__(self, params, lr=0.01, lr_power=-0.5, l1=0.0, l2=0.0,
                 beta=0.0, initial_accumulator_value=0.1):
        super().__init__(params, dict(
            lr=lr, lr_power=lr_power, l1=l1, l2=l2, beta=beta,
            initial_accumulator_value=initial_accumulator_value))
        # As torch.optim.Adagrad: state starts here, so a later change of
        # initial_accumulator_value (SetOptimizer) does not reset it.
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["n"] = np.full(
                    p.shape, group["initial_accumulator_value"], np.float64)
                self.state[p]["z"] = np.zeros(p.shape, np.float64)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, power = group["lr"], -group["lr_power"]
            l1, l2, beta = group["l1"], group["l2"], group["beta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.coalesce()
                index = grad.indices()[0]
                rows = index.numpy()
                g = grad.values().double().numpy()
                state = self.state[p]
                n, z = state["n"][rows], state["z"][rows]
                w = p[index].double().numpy()
                new_n = n + g * g
                z = z + g - (new_n ** power - n ** power) / lr * w
                w = np.where(np.abs(z) <= l1, 0.0,
                             (np.sign(z) * l1 - z)
                             / ((beta + new_n ** power) / lr + 2 * l2))
                state["n"][rows], state["z"][rows] = new_n, z
                p[index] = torch.from_numpy(w).float()


class Opt:
    """One optimizer described once, for both the server and torch.

    Hyper-parameters use torch's names (betas for SparseAdam); only those
    given are sent, so the server's defaults are tested against torch's.
    """

    _TORCH = {
        "sgd": torch.optim.SGD,
        "adagrad": torch.optim.Adagrad,
        "sparse_adam": torch.optim.SparseAdam,
        "rowwise_adagrad": RowwiseAdagrad,
        "ftrl": Ftrl,
    }
    # Defaults the server documents where torch has none (SGD's lr) or
    # differs (the proto's lr defaults).
    _DEFAULT_LR = {"sgd": 0.01, "adagrad": 0.01, "sparse_adam": 0.001,
                   "rowwise_adagrad": 0.01, "ftrl": 0.01}
    # Those that take only the rows pushed: a row with a zero gradient is
    # not a no-op for them.
    _SPARSE = {"sparse_adam", "ftrl"}

    def __init__(self, kind, **hparams):
        assert kind in self._TORCH, kind
        self.kind = kind
        self.hparams = {
            k: tuple(f32(b) for b in v) if k == "betas" else f32(v)
            for k, v in hparams.items()}

    def __repr__(self):
        return f"Opt({self.kind}, {self.hparams})"

    @property
    def needs_sparse_grad(self):
        return self.kind in self._SPARSE

    def proto(self):
        hp = dict(self.hparams)
        if "betas" in hp:
            hp["beta1"], hp["beta2"] = hp.pop("betas")
        return pb.Optimizer(**{self.kind: hp})

    def torch_kwargs(self):
        return {"lr": self._DEFAULT_LR[self.kind], **self.hparams}

    def make_torch(self, params):
        return self._TORCH[self.kind](params, **self.torch_kwargs())


# --- The oracle --------------------------------------------------------------

def _long(indices):
    return torch.as_tensor(np.asarray(indices), dtype=torch.long)


def _float(values):
    return torch.as_tensor(np.asarray(values), dtype=torch.float32)


def _bag_inputs(indices, offsets, per_sample_weights, include_last_offset):
    """Bag arguments as tensors. With include_last_offset, indices past the
    last offset belong to no bag and are dropped: torch 1.13 on CPU
    mishandles them (MEAN divides by a wrong count, MAX corrupts the heap,
    the backward reads uninitialised memory), and would renorm their rows
    with max_norm although no bag uses them."""
    idx, off = _long(indices), _long(offsets)
    psw = None if per_sample_weights is None else _float(per_sample_weights)
    if include_last_offset:
        idx = idx[:int(off[-1])]
        psw = None if psw is None else psw[:len(idx)]
    return idx, off, psw


def sparse_rows(dense_grad, rows):
    """The sparse gradient holding `rows` of a dense one, as torch's
    sparse=True backward would build it (rows that got a gradient)."""
    rows = torch.as_tensor(sorted(set(int(r) for r in rows)), dtype=torch.long)
    return torch.sparse_coo_tensor(rows[None, :], dense_grad[rows],
                                   dense_grad.shape).coalesce()


class TorchTable:
    """What a server table should hold: nn.Embedding + a torch optimizer.

    Constructor arguments mirror nn.Embedding and TableSpec; `padding_idx`
    is sent to the server as given (negative counts from the end), except
    to a dynamic table (dynamic_capacity set: see the module's doc).
    """

    # A dynamic table's initializer: FillRow is exact for uniform.
    DYNAMIC_INIT = (-1.0, 1.0)

    def __init__(self, num_embeddings, embedding_dim, *, padding_idx=None,
                 max_norm=None, norm_type=None, scale_grad_by_freq=False,
                 optimizer=None, seed=0, weight=None, dynamic_capacity=None):
        self.given_padding_idx = padding_idx
        self.max_norm = None if max_norm is None else f32(max_norm)
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.opt = optimizer
        self.seed = seed
        self.dynamic_capacity = dynamic_capacity
        self.pushed = set()  # Rows that got a gradient (a dynamic table's).
        if dynamic_capacity is not None and weight is None:
            weight = fill_rows("uniform", *self.DYNAMIC_INIT, seed,
                               np.arange(num_embeddings), embedding_dim)
        torch.manual_seed(seed)
        self.module = torch.nn.Embedding(
            num_embeddings, embedding_dim, padding_idx=padding_idx,
            max_norm=self.max_norm,
            norm_type=2.0 if norm_type is None else norm_type,
            scale_grad_by_freq=scale_grad_by_freq)
        if weight is not None:
            # The padding row starts as zeros even in uploaded weights (the
            # contract; nn.Embedding.from_pretrained would keep it).
            with torch.no_grad():
                self.module.weight.copy_(_float(weight))
                if self.padding_idx is not None:
                    self.module.weight[self.padding_idx] = 0
        self.optimizer = (optimizer or Opt("sgd")).make_torch(
            self.module.parameters())
        self.pushes = 0

    @property
    def padding_idx(self):
        """Normalised (non-negative) padding index, or None."""
        return self.module.padding_idx

    @property
    def weight(self):
        return self.module.weight.detach().clone()

    def spec(self, name, **extra):
        spec = pb.TableSpec(
            name=name, num_embeddings=self.module.num_embeddings,
            embedding_dim=self.module.embedding_dim,
            scale_grad_by_freq=self.scale_grad_by_freq, **extra)
        if self.given_padding_idx is not None:
            spec.padding_idx = self.given_padding_idx
        if self.dynamic_capacity is not None:
            spec.num_embeddings = 0
            spec.dynamic.capacity = self.dynamic_capacity
            low, high = self.DYNAMIC_INIT
            spec.initializer.uniform.low, spec.initializer.uniform.high = (
                low, high)
            spec.seed = self.seed
            if self.padding_idx is not None:
                spec.padding_idx = self.padding_idx  # An id, not counted.
        if self.max_norm is not None:
            spec.max_norm = self.max_norm
        if self.norm_type is not None:
            spec.norm_type = self.norm_type
        if self.opt is not None:
            spec.optimizer.CopyFrom(self.opt.proto())
        return spec

    def create_on(self, stub, name):
        """Creates the table on the server with this module's weights (a
        dynamic table: with the initializer they were drawn from)."""
        if self.dynamic_capacity is not None:
            return stub.CreateTable(pb.CreateTableRequest(
                spec=self.spec(name)))
        return stub.CreateTable(pb.CreateTableRequest(
            spec=self.spec(name), initial_weights=to_proto(self.weight)))

    # Forward passes renorm rows in place, as F.embedding does with max_norm.
    def lookup(self, indices):
        with torch.no_grad():
            return self.module(_long(indices))

    def lookup_bag(self, indices, offsets, mode, per_sample_weights=None,
                   include_last_offset=False):
        """F.embedding_bag output, and for MAX the winning row per element
        as the server reports it (-1 for empty bags)."""
        weight = self.module.weight
        idx, off, psw = _bag_inputs(indices, offsets, per_sample_weights,
                                    include_last_offset)
        with torch.no_grad():
            out = F.embedding_bag(
                idx, weight, off, max_norm=self.max_norm,
                norm_type=self.module.norm_type, mode=mode,
                per_sample_weights=psw,
                include_last_offset=include_last_offset,
                padding_idx=self.padding_idx)
        if mode != "max":
            return out, None
        return out, self._max_winners(idx, off, include_last_offset)

    def _max_winners(self, idx, off, include_last_offset):
        """[bags, dim] row that won each element in MAX mode, -1 for empty
        bags (torch reports 0 there and routes no gradient)."""
        with torch.no_grad():
            out, _, bag_size, max_indices = torch.embedding_bag(
                self.module.weight, idx, off, False, 2, False, None,
                include_last_offset, self.padding_idx)
        bags = out.shape[0]
        max_indices = max_indices[:bags].clone()
        max_indices[bag_size[:bags] == 0] = -1
        return max_indices

    def push(self, indices, grad, learning_rate=None):
        """Backward of F.embedding plus one optimizer step; returns the rows
        that got a gradient."""
        idx = _long(indices)
        weight = self.module.weight
        weight.grad = None
        # torch refuses sparse gradients with scale_grad_by_freq.
        out = F.embedding(idx, weight, padding_idx=self.padding_idx,
                          scale_grad_by_freq=self.scale_grad_by_freq,
                          sparse=not self.scale_grad_by_freq)
        out.backward(_float(grad).reshape(out.shape))
        rows = set(idx.flatten().tolist()) - {self.padding_idx}
        self._step(rows, learning_rate)
        return rows

    def push_bag(self, indices, offsets, mode, grad, per_sample_weights=None,
                 include_last_offset=False, learning_rate=None):
        """Backward of F.embedding_bag plus one optimizer step; returns the
        rows that got a gradient."""
        idx, off, psw = _bag_inputs(indices, offsets, per_sample_weights,
                                    include_last_offset)
        weight = self.module.weight
        weight.grad = None
        bag = dict(mode=mode, per_sample_weights=psw,
                   include_last_offset=include_last_offset)
        if self.scale_grad_by_freq:
            self._scaled_bag_backward(idx, off, _float(grad), **bag)
        else:
            # torch refuses sparse gradients with MAX.
            out = F.embedding_bag(idx, weight, off, sparse=mode != "max",
                                  padding_idx=self.padding_idx, **bag)
            out.backward(_float(grad))
        if mode == "max":
            winners = self._max_winners(idx, off, include_last_offset)
            rows = set(winners.flatten().tolist()) - {-1}
        else:
            rows = set(idx.tolist()) - {self.padding_idx}
        self._step(rows, learning_rate)
        return rows

    def _scaled_bag_backward(self, idx, off, grad, **bag):
        """Bag backward with scale_grad_by_freq, as nn.Embedding's.

        torch 1.13's CPU embedding_bag divides by the wrong count here
        (pytorch/pytorch#190063: counts[indices_data[i]] with i the unique
        group number), so: F.embedding_bag over per-position copies of the
        rows gives the gradient of each position, and F.embedding's backward
        (correct) scales and sums it by row. torch refuses MAX here.
        """
        assert bag["mode"] != "max"
        n = len(idx)
        positions = torch.arange(n)
        padding = None
        if self.padding_idx is not None:
            padding = n  # One extra zero row stands for the padding row.
            positions[idx == self.padding_idx] = padding
        copies = torch.zeros(n + 1, self.module.embedding_dim,
                             requires_grad=True)
        F.embedding_bag(positions, copies, off, padding_idx=padding,
                        **bag).backward(grad)
        F.embedding(idx, self.module.weight, padding_idx=self.padding_idx,
                    scale_grad_by_freq=True).backward(copies.grad[:n])

    def set_hparams(self, **hparams):
        """SetOptimizer: new hyper-parameters, state kept."""
        new = Opt(self.opt.kind, **hparams)
        for group in self.optimizer.param_groups:
            group.update(new.torch_kwargs())
        self.opt = new

    def _step(self, rows, learning_rate):
        self.pushed |= rows
        weight = self.module.weight
        if not weight.grad.is_sparse and (self.opt and
                                          self.opt.needs_sparse_grad):
            weight.grad = sparse_rows(weight.grad, rows)
        groups = self.optimizer.param_groups
        saved = [g["lr"] for g in groups]
        if learning_rate is not None:
            for g in groups:
                g["lr"] = f32(learning_rate)
        self.optimizer.step()
        for g, lr in zip(groups, saved):
            g["lr"] = lr
        self.pushes += 1


# --- Server calls ------------------------------------------------------------

def lookup(stub, table, indices, dtype=pb.DTYPE_FLOAT32):
    """Lookup of an index array of any shape; returns a torch tensor."""
    indices = np.asarray(indices)
    response = stub.Lookup(pb.LookupRequest(
        table=table, indices=indices.flatten().tolist(),
        shape=list(indices.shape), dtype=dtype))
    _check_dtype(response.embeddings, dtype)
    return from_proto(response.embeddings)


def _check_dtype(tensor, dtype):
    got = tensor.dtype or pb.DTYPE_FLOAT32
    assert got == dtype, f"asked for dtype {dtype}, got {got}"


def push(stub, table, indices, grad, learning_rate=None):
    indices = np.asarray(indices)
    request = pb.PushGradientsRequest(
        table=table, indices=indices.flatten().tolist(), grad=to_proto(grad))
    if learning_rate is not None:
        request.learning_rate = learning_rate
    return stub.PushGradients(request)


def _bag_fields(indices, offsets, mode, per_sample_weights,
                include_last_offset):
    fields = dict(indices=np.asarray(indices).tolist(),
                  offsets=np.asarray(offsets).tolist(), mode=BAG_MODES[mode],
                  include_last_offset=include_last_offset)
    if per_sample_weights is not None:
        fields["per_sample_weights"] = np.asarray(per_sample_weights).tolist()
    return fields


def lookup_bag(stub, table, indices, offsets, mode, per_sample_weights=None,
               include_last_offset=False, dtype=pb.DTYPE_FLOAT32):
    """Returns (embeddings, max_indices as a [bags, dim] tensor or None)."""
    response = stub.LookupBag(pb.LookupBagRequest(
        table=table, dtype=dtype,
        **_bag_fields(indices, offsets, mode, per_sample_weights,
                      include_last_offset)))
    _check_dtype(response.embeddings, dtype)
    out = from_proto(response.embeddings)
    if mode != "max":
        assert not response.max_indices
        return out, None
    return out, torch.tensor(list(response.max_indices)).reshape(out.shape)


def push_bag(stub, table, indices, offsets, mode, grad,
             per_sample_weights=None, include_last_offset=False,
             max_indices=None, learning_rate=None):
    request = pb.PushBagGradientsRequest(
        table=table, grad=to_proto(grad),
        **_bag_fields(indices, offsets, mode, per_sample_weights,
                      include_last_offset))
    if max_indices is not None:
        request.max_indices.extend(max_indices.flatten().tolist())
    if learning_rate is not None:
        request.learning_rate = learning_rate
    return stub.PushBagGradients(request)


def read_rows(stub, table, indices=None):
    """The table's rows (all, or `indices`) as a float32 torch tensor."""
    request = pb.ReadRowsRequest(table=table)
    if indices is not None:
        request.indices.extend(np.asarray(indices).tolist())
    got_indices, chunks = [], []
    for response in stub.ReadRows(request):
        got_indices.extend(response.indices)
        chunks.append(from_proto(response.values))
    if indices is not None:
        assert got_indices == list(np.asarray(indices).tolist())
    else:
        assert got_indices == list(range(len(got_indices)))
    return torch.cat(chunks)


def assert_table_matches(stub, table, ref, what=""):
    if ref.dynamic_capacity is None:
        assert_close(read_rows(stub, table), ref.weight,
                     f"{what}: table weights")
        return
    # A dynamic table holds the rows pushed (ReadRows: as stored); the
    # others it reads as FillRow, renormed by lookups under max_norm as
    # torch renorms its rows in place (and a push admits them so).
    held = sorted(ref.pushed)
    if held:
        assert_close(read_rows(stub, table, held), ref.weight[held],
                     f"{what}: rows held")
    absent = sorted(set(range(ref.module.num_embeddings)) - ref.pushed)
    if absent:
        assert_close(lookup(stub, table, absent), ref.lookup(absent),
                     f"{what}: rows not held")


# --- Random inputs -----------------------------------------------------------

def random_indices(rng, num_embeddings, shape, padding_idx=None):
    """Indices with duplicates (drawn from few rows) and, when a padding row
    exists, at least one occurrence of it."""
    indices = rng.integers(0, num_embeddings, size=shape)
    if padding_idx is not None:
        flat = indices.reshape(-1)
        flat[rng.integers(0, flat.size)] = padding_idx
    return indices


def random_bags(rng, num_embeddings, bags, include_last_offset,
                padding_idx=None):
    """(indices, offsets) for `bags` bags of 0-4 rows, including an empty
    first, middle and last bag. With include_last_offset the last offset is
    len(indices) (torch 1.13 mishandles indices past it in the backward)."""
    sizes = rng.integers(1, 5, size=bags)
    sizes[[0, bags // 2, bags - 1]] = 0
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    indices = random_indices(rng, num_embeddings, int(offsets[-1]),
                             padding_idx)
    if not include_last_offset:
        offsets = offsets[:-1]
    return indices, offsets


def random_grad(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


# --- One step on both sides --------------------------------------------------

def check_lookup(stub, table, ref, indices, what):
    """Lookup on both; compares the rows and (max_norm) the table after."""
    assert_close(lookup(stub, table, indices), ref.lookup(indices),
                 f"{what}: lookup")
    if ref.max_norm is not None:
        assert_table_matches(stub, table, ref, f"{what}: after lookup")


def check_push(stub, table, ref, indices, grad, what, learning_rate=None):
    """PushGradients on both; compares rows_updated and the whole table."""
    response = push(stub, table, indices, grad, learning_rate)
    rows = ref.push(indices, grad, learning_rate)
    assert response.rows_updated == len(rows), what
    assert_table_matches(stub, table, ref, f"{what}: after push")


def check_training(stub, table, ref, rng, steps, shapes, learning_rates=None):
    """`steps` lookups and pushes of random indices (shapes in turn, with
    repeats and the padding row) on both; compares after each.
    learning_rates(step) overrides the rate of that push when not None."""
    dim = ref.module.embedding_dim
    for step in range(steps):
        idx = random_indices(rng, ref.module.num_embeddings,
                             shapes[step % len(shapes)], ref.padding_idx)
        check_lookup(stub, table, ref, idx, f"step {step}")
        lr = learning_rates(step) if learning_rates else None
        check_push(stub, table, ref, idx, random_grad(rng, idx.shape + (dim,)),
                   f"step {step}", learning_rate=lr)


def check_bag_step(stub, table, ref, rng, what, *, mode, bags=None,
                   batch=None, include_last_offset=False, weighted=False,
                   learning_rate=None):
    """LookupBag + PushBagGradients on both of `bags` random bags or of the
    given (indices, offsets) `batch`; compares the pooled output, MAX's
    winners, rows_updated and the table after each."""
    num, dim = ref.module.weight.shape
    indices, offsets = batch or random_bags(rng, num, bags,
                                            include_last_offset,
                                            ref.padding_idx)
    weights = (rng.standard_normal(len(indices)).astype(np.float32)
               if weighted else None)
    bag = dict(per_sample_weights=weights,
               include_last_offset=include_last_offset)
    got, got_max = lookup_bag(stub, table, indices, offsets, mode, **bag)
    expected, expected_max = ref.lookup_bag(indices, offsets, mode, **bag)
    assert_close(got, expected, f"{what}: pooled output")
    if mode == "max":
        assert torch.equal(got_max, expected_max), (
            f"{what}: max_indices {got_max} != {expected_max}")
    if ref.max_norm is not None:
        assert_table_matches(stub, table, ref, f"{what}: after lookup")
    grad = random_grad(rng, (len(expected), dim))
    response = push_bag(stub, table, indices, offsets, mode, grad,
                        max_indices=got_max, learning_rate=learning_rate,
                        **bag)
    rows = ref.push_bag(indices, offsets, mode, grad,
                        learning_rate=learning_rate, **bag)
    assert response.rows_updated == len(rows), what
    assert_table_matches(stub, table, ref, f"{what}: after push")
