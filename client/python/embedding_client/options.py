"""Table options as small dataclasses: optimizers, initializers and TableInfo.

    client.create_table("items", 1000, 32,
                        optimizer=Adagrad(lr=0.05),
                        initializer=Uniform(-0.1, 0.1))

Optimizers run on the server and mirror torch.optim on sparse gradients.
Anywhere an optimizer or initializer is accepted, the generated protobuf
message (`pb.Optimizer`, `pb.Initializer`) or a dict such as
`{"type": "adagrad", "lr": 0.05}` works too.
"""

import dataclasses
from typing import Optional, Tuple

import numpy as np

from embedding_client._stubs import pb
from embedding_client.errors import InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class SGD:
    """torch.optim.SGD without momentum."""
    lr: float = 0.01

    def to_proto(self):
        return pb.Optimizer(sgd=pb.SgdOptions(lr=self.lr))


@dataclasses.dataclass(frozen=True)
class Adagrad:
    """torch.optim.Adagrad on sparse gradients."""
    lr: float = 0.01
    lr_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    eps: float = 1e-10

    def to_proto(self):
        return pb.Optimizer(adagrad=pb.AdagradOptions(
            lr=self.lr, lr_decay=self.lr_decay,
            initial_accumulator_value=self.initial_accumulator_value,
            eps=self.eps))


@dataclasses.dataclass(frozen=True)
class SparseAdam:
    """torch.optim.SparseAdam (lazy: only the rows pushed move)."""
    lr: float = 0.001
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def to_proto(self):
        return pb.Optimizer(sparse_adam=pb.SparseAdamOptions(
            lr=self.lr, beta1=self.betas[0], beta2=self.betas[1],
            eps=self.eps))


@dataclasses.dataclass(frozen=True)
class RowwiseAdagrad:
    """FBGEMM's row-wise Adagrad: one accumulator per row."""
    lr: float = 0.01
    eps: float = 1e-8

    def to_proto(self):
        return pb.Optimizer(rowwise_adagrad=pb.RowwiseAdagradOptions(
            lr=self.lr, eps=self.eps))


@dataclasses.dataclass(frozen=True)
class Normal:
    """Rows drawn from normal(mean, std); nn.Embedding's default."""
    mean: float = 0.0
    std: float = 1.0

    def to_proto(self):
        return pb.Initializer(normal=pb.Initializer.Normal(
            mean=self.mean, std=self.std))


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Rows drawn from uniform(low, high)."""
    low: float = 0.0
    high: float = 1.0

    def to_proto(self):
        return pb.Initializer(uniform=pb.Initializer.Uniform(
            low=self.low, high=self.high))


@dataclasses.dataclass(frozen=True)
class Constant:
    """Every element set to `value`."""
    value: float = 0.0

    def to_proto(self):
        return pb.Initializer(constant=pb.Initializer.Constant(
            value=self.value))


_OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "sparse_adam": SparseAdam,
               "rowwise_adagrad": RowwiseAdagrad}
_INITIALIZERS = {"normal": Normal, "uniform": Uniform, "constant": Constant}


def _to_proto(value, message_type, kinds, what):
    if isinstance(value, message_type):
        return value
    if isinstance(value, dict):
        fields = dict(value)
        kind = fields.pop("type", None)
        if kind not in kinds:
            raise InvalidArgumentError(
                f"{what} dict needs 'type' in {sorted(kinds)}, got {kind!r}")
        if "betas" in fields:
            fields["betas"] = tuple(fields["betas"])
        value = kinds[kind](**fields)
    if not hasattr(value, "to_proto"):
        raise InvalidArgumentError(f"not a {what}: {value!r}")
    return value.to_proto()


def optimizer_to_proto(optimizer):
    """Returns a pb.Optimizer for a dataclass, dict or pb.Optimizer."""
    return _to_proto(optimizer, pb.Optimizer, _OPTIMIZERS, "optimizer")


def initializer_to_proto(initializer):
    """Returns a pb.Initializer for a dataclass, dict or pb.Initializer."""
    return _to_proto(initializer, pb.Initializer, _INITIALIZERS, "initializer")


def _f(value):
    """Returns a float32 wire value as the float it was written as (0.1)."""
    return float(str(np.float32(value)))


def _optional(message, field, default, convert=_f):
    if not message.HasField(field):
        return default
    return convert(getattr(message, field))


def optimizer_from_proto(message):
    """Returns the dataclass for a pb.Optimizer (SGD() when unset)."""
    kind = message.WhichOneof("kind")
    if kind == "adagrad":
        m = message.adagrad
        return Adagrad(lr=_f(m.lr or 0.01), lr_decay=_f(m.lr_decay),
                       initial_accumulator_value=_f(
                           m.initial_accumulator_value),
                       eps=_optional(m, "eps", 1e-10))
    if kind == "sparse_adam":
        m = message.sparse_adam
        return SparseAdam(lr=_f(m.lr or 0.001),
                          betas=(_optional(m, "beta1", 0.9),
                                 _optional(m, "beta2", 0.999)),
                          eps=_optional(m, "eps", 1e-8))
    if kind == "rowwise_adagrad":
        m = message.rowwise_adagrad
        return RowwiseAdagrad(lr=_f(m.lr or 0.01),
                              eps=_optional(m, "eps", 1e-8))
    return SGD(lr=_f(message.sgd.lr or 0.01))


def initializer_from_proto(message):
    """Returns the dataclass for a pb.Initializer (Normal() when unset)."""
    kind = message.WhichOneof("kind")
    if kind == "uniform":
        return Uniform(_f(message.uniform.low), _f(message.uniform.high))
    if kind == "constant":
        return Constant(_f(message.constant.value))
    if kind == "normal":
        return Normal(_f(message.normal.mean), _f(message.normal.std))
    return Normal()


@dataclasses.dataclass(frozen=True)
class TableInfo:
    """A table's spec and state as the server reports it."""
    name: str
    num_embeddings: int
    embedding_dim: int
    padding_idx: Optional[int]
    max_norm: Optional[float]
    norm_type: float
    scale_grad_by_freq: bool
    initializer: object
    optimizer: object
    seed: int
    shard_index: int
    shard_count: int
    local_rows: int
    memory_bytes: int
    version: int
    step: int

    @classmethod
    def from_proto(cls, info):
        spec = info.spec
        return cls(
            name=spec.name,
            num_embeddings=spec.num_embeddings,
            embedding_dim=spec.embedding_dim,
            padding_idx=_optional(spec, "padding_idx", None, int),
            max_norm=_optional(spec, "max_norm", None),
            norm_type=_optional(spec, "norm_type", 2.0),
            scale_grad_by_freq=spec.scale_grad_by_freq,
            initializer=initializer_from_proto(spec.initializer),
            optimizer=optimizer_from_proto(spec.optimizer),
            seed=spec.seed,
            shard_index=spec.shard_index,
            shard_count=spec.shard_count,
            local_rows=info.local_rows,
            memory_bytes=info.memory_bytes,
            version=info.version,
            step=info.step)


@dataclasses.dataclass(frozen=True)
class PushResult:
    """Outcome of a gradient push."""
    rows_updated: int
    version: int
    duplicate: bool
