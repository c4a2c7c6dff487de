"""Table options as small dataclasses: optimizers, initializers and TableInfo.

    client.create_table("items", 1000, 32,
                        optimizer=Ftrl(lr=0.05, l1=0.01),
                        initializer=Uniform(-0.1, 0.1))
    client.create_table("users", None, 32,
                        dynamic=Dynamic(capacity=1_000_000))  # any int64 id

Optimizers run on the server. Each is a frozen dataclass whose fields are its
hyper-parameters with their defaults, listed once in `OPTIMIZERS` with its
wire name and state size; the conversions to and from protobuf and the dict
form iterate that table, so adding an optimizer is a dataclass and one entry.
Anywhere an optimizer or initializer is accepted, the generated protobuf
message (`pb.Optimizer`, `pb.Initializer`) or a dict such as
`{"type": "adagrad", "lr": 0.05}` works too.
"""

import dataclasses
from typing import Callable, Mapping, Optional, Tuple

import numpy as np

from embedding_client._stubs import pb
from embedding_client.errors import InvalidArgumentError


class _Optimizer:
    """Gives every optimizer dataclass its `to_proto()`."""

    def to_proto(self):
        return optimizer_to_proto(self)


@dataclasses.dataclass(frozen=True)
class SGD(_Optimizer):
    """torch.optim.SGD without momentum."""
    lr: float = 0.01


@dataclasses.dataclass(frozen=True)
class Adagrad(_Optimizer):
    """torch.optim.Adagrad on sparse gradients."""
    lr: float = 0.01
    lr_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    eps: float = 1e-10


@dataclasses.dataclass(frozen=True)
class SparseAdam(_Optimizer):
    """torch.optim.SparseAdam (lazy: only the rows pushed move)."""
    lr: float = 0.001
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


@dataclasses.dataclass(frozen=True)
class RowwiseAdagrad(_Optimizer):
    """FBGEMM's row-wise Adagrad: one accumulator per row."""
    lr: float = 0.01
    eps: float = 1e-8


@dataclasses.dataclass(frozen=True)
class Ftrl(_Optimizer):
    """FTRL-Proximal per coordinate (McMahan et al. 2013), as TensorFlow's.

    lr is the paper's alpha and lr_power -0.5 its square-root schedule;
    l1 > 0 sets weights to exactly zero, which keeps sparse CTR models small.
    """
    lr: float = 0.01
    lr_power: float = -0.5
    l1: float = 0.0
    l2: float = 0.0
    beta: float = 0.0
    initial_accumulator_value: float = 0.1


@dataclasses.dataclass(frozen=True)
class OptimizerKind:
    """One optimizer described as data.

    name: its field in the pb.Optimizer oneof, also the dict form's "type"
    and the CLI's --optimizer. options: its dataclass, whose fields are the
    hyper-parameters and their defaults. state_floats(dim): floats of state
    the server keeps per row of a dim-wide table. wire_fields: the Python
    fields whose proto fields are named otherwise; a tuple field is spread
    over several (SparseAdam's betas are beta1 and beta2).
    """
    name: str
    options: type
    state_floats: Callable[[int], int]
    wire_fields: Mapping[str, Tuple[str, ...]] = dataclasses.field(
        default_factory=dict)

    def fields(self):
        """Yields (Python field, its proto fields, their defaults)."""
        for field in dataclasses.fields(self.options):
            wire = self.wire_fields.get(field.name, (field.name,))
            defaults = field.default if len(wire) > 1 else (field.default,)
            yield field.name, wire, defaults


# The first is the default, as in the proto.
OPTIMIZERS = (
    OptimizerKind("sgd", SGD, state_floats=lambda dim: 0),
    OptimizerKind("adagrad", Adagrad, state_floats=lambda dim: dim),
    OptimizerKind("sparse_adam", SparseAdam, state_floats=lambda dim: 2 * dim,
                  wire_fields={"betas": ("beta1", "beta2")}),
    OptimizerKind("rowwise_adagrad", RowwiseAdagrad,
                  state_floats=lambda dim: 1),
    OptimizerKind("ftrl", Ftrl, state_floats=lambda dim: 2 * dim),
)
_OPTIMIZER_CLASSES = {kind.name: kind.options for kind in OPTIMIZERS}


def optimizer_kind(optimizer):
    """Returns the OptimizerKind of an optimizer dataclass, or of its name."""
    for kind in OPTIMIZERS:
        if optimizer in (kind.name, kind.options) or isinstance(
                optimizer, kind.options):
            return kind
    raise InvalidArgumentError(
        f"optimizer must be one of {sorted(_OPTIMIZER_CLASSES)}, "
        f"got {optimizer!r}")


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


_INITIALIZERS = {"normal": Normal, "uniform": Uniform, "constant": Constant}


def _parameters(options):
    """'lr=0.01, eps=1e-08': a dataclass's fields with their defaults."""
    return ", ".join(f"{field.name}={field.default!r}"
                     for field in dataclasses.fields(options))


def _from_dict(fields, kinds, what):
    """Returns the dataclass that a {"type": name, field: value} dict names."""
    fields = dict(fields)
    name = fields.pop("type", None)
    if name not in kinds:
        raise InvalidArgumentError(
            f"{what} dict needs 'type' in {sorted(kinds)}, got {name!r}")
    options = kinds[name]
    unknown = set(fields) - {field.name
                             for field in dataclasses.fields(options)}
    if unknown:
        raise InvalidArgumentError(
            f"{name} takes {_parameters(options)}; got {sorted(unknown)}")
    # Tuple fields (betas) arrive as lists from JSON or YAML.
    return options(**{key: tuple(value) if isinstance(value, list) else value
                      for key, value in fields.items()})


def _to_proto(value, message_type, kinds, what, convert):
    """Returns `convert(dataclass)` for a dataclass of `kinds` or its dict
    form; a `message_type` message is returned as it is."""
    if isinstance(value, message_type):
        return value
    if isinstance(value, dict):
        value = _from_dict(value, kinds, what)
    if type(value) not in kinds.values():
        raise InvalidArgumentError(
            f"not an {what}: {value!r}; pass one of "
            f"{', '.join(kind.__name__ for kind in kinds.values())}, a dict "
            f"with 'type' in {sorted(kinds)} or a pb.{message_type.__name__}")
    return convert(value)


def _optimizer_message(optimizer):
    """The pb.Optimizer of an optimizer dataclass, every field set."""
    kind = optimizer_kind(optimizer)
    message = pb.Optimizer()
    options = getattr(message, kind.name)
    options.SetInParent()  # Names the kind even with no field set.
    for field, wire, _ in kind.fields():
        value = getattr(optimizer, field)
        try:
            values = tuple(value) if len(wire) > 1 else (value,)
            if len(values) != len(wire):
                raise ValueError
            for name, element in zip(wire, values):
                setattr(options, name, element)
        except (TypeError, ValueError):
            expected = ("a number" if len(wire) == 1 else
                        f"{len(wire)} numbers ({', '.join(wire)})")
            raise InvalidArgumentError(
                f"{kind.name} {field} must be {expected}, got {value!r}"
            ) from None
    return message


def optimizer_to_proto(optimizer):
    """Returns a pb.Optimizer for a dataclass, dict or pb.Optimizer."""
    return _to_proto(optimizer, pb.Optimizer, _OPTIMIZER_CLASSES, "optimizer",
                     _optimizer_message)


def initializer_to_proto(initializer):
    """Returns a pb.Initializer for a dataclass, dict or pb.Initializer."""
    return _to_proto(initializer, pb.Initializer, _INITIALIZERS,
                     "initializer", lambda options: options.to_proto())


def _f(value):
    """Returns a float32 wire value as the float it was written as (0.1)."""
    return float(str(np.float32(value)))


def _optional(message, field, default, convert=_f):
    if not message.HasField(field):
        return default
    return convert(getattr(message, field))


def _hyper_parameter(message, field, default):
    """A hyper-parameter's value; `default` when unset, which for a field
    without presence (lr) means zero, as the server reads it."""
    if message.DESCRIPTOR.fields_by_name[field].has_presence:
        return _optional(message, field, default)
    value = getattr(message, field)
    return _f(value) if value else default


def optimizer_from_proto(message):
    """Returns the dataclass for a pb.Optimizer (the default when unset)."""
    kind = optimizer_kind(message.WhichOneof("kind") or OPTIMIZERS[0].name)
    options = getattr(message, kind.name)
    values = {}
    for field, wire, defaults in kind.fields():
        got = tuple(_hyper_parameter(options, name, default)
                    for name, default in zip(wire, defaults))
        values[field] = got if len(wire) > 1 else got[0]
    return kind.options(**values)


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


# A dynamic table's limits, as the server checks them (table_spec.h).
MAX_DYNAMIC_CAPACITY = 1 << 40
MAX_ADMIT_AFTER = 255
# The id no dynamic table has (requests naming it are refused).
RESERVED_ID = -(1 << 63)
_EVICTIONS = {"lru": pb.DynamicTable.EVICTION_LRU,
              "lfu": pb.DynamicTable.EVICTION_LFU}


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Dynamic:
    """A dynamic table (create_table(name, None, dim, dynamic=...)): its ids
    are any int64 but RESERVED_ID, and an id gets a row only when pushed.

    capacity: most rows each server holds, in [1, 2**40]. admit_after:
    pushes of an id before it gets a row (0 and 1: the first), at most 255.
    eviction: "lru" (the row pushed least recently leaves when the table
    is full) or "lfu" (fewest pushes, then LRU). ttl_pushes: None, or > 0:
    a row not pushed in that many pushes to the table reads as absent.
    Checked when the table is created, with the server's messages.
    """
    capacity: int
    admit_after: int = 1
    eviction: str = "lru"
    ttl_pushes: Optional[int] = None

    def to_proto(self):
        """The pb.DynamicTable; raises InvalidArgumentError as the server
        would refuse the options."""
        if not _is_int(self.capacity) or not (
                1 <= self.capacity <= MAX_DYNAMIC_CAPACITY):
            raise InvalidArgumentError(
                f"dynamic capacity must be in [1, {MAX_DYNAMIC_CAPACITY}], "
                f"got {self.capacity!r}")
        if not _is_int(self.admit_after) or self.admit_after < 0:
            raise InvalidArgumentError(
                f"dynamic admit_after must be an int in [0, "
                f"{MAX_ADMIT_AFTER}], got {self.admit_after!r}")
        if self.admit_after > MAX_ADMIT_AFTER:
            raise InvalidArgumentError(
                f"dynamic admit_after must be at most {MAX_ADMIT_AFTER}, "
                f"got {self.admit_after!r}")
        if self.eviction not in _EVICTIONS:
            raise InvalidArgumentError(
                f"dynamic eviction must be one of {sorted(_EVICTIONS)}, got "
                f"{self.eviction!r}")
        message = pb.DynamicTable(capacity=int(self.capacity),
                                  admit_after=int(self.admit_after),
                                  eviction=_EVICTIONS[self.eviction])
        if self.ttl_pushes is not None:
            if not _is_int(self.ttl_pushes) or self.ttl_pushes <= 0:
                raise InvalidArgumentError(
                    "dynamic ttl_pushes must be > 0 when set, got "
                    f"{self.ttl_pushes!r}")
            message.ttl_pushes = int(self.ttl_pushes)
        return message

    @classmethod
    def from_proto(cls, message):
        eviction = {value: name for name, value in _EVICTIONS.items()}
        return cls(capacity=message.capacity,
                   admit_after=max(1, message.admit_after),
                   eviction=eviction.get(message.eviction, "lru"),
                   ttl_pushes=_optional(message, "ttl_pushes", None, int))


def dynamic_to_proto(dynamic):
    """Returns a pb.DynamicTable for a Dynamic, its dict form
    ({"capacity": 1000, ...}) or a pb.DynamicTable."""
    if isinstance(dynamic, pb.DynamicTable):
        return dynamic
    if isinstance(dynamic, dict):
        names = {field.name for field in dataclasses.fields(Dynamic)}
        if not set(dynamic) <= names or "capacity" not in dynamic:
            raise InvalidArgumentError(
                f"a dynamic dict takes capacity and optionally "
                f"{sorted(names - {'capacity'})}; got {sorted(dynamic)}")
        dynamic = Dynamic(**dynamic)
    if not isinstance(dynamic, Dynamic):
        raise InvalidArgumentError(
            f"not dynamic table options: {dynamic!r}; pass a Dynamic, a dict "
            "with its fields or a pb.DynamicTable")
    return dynamic.to_proto()


@dataclasses.dataclass(frozen=True)
class DynamicStats:
    """What a dynamic table holds and did on a server (summed over the
    servers of a sharded table), since it was created or restored."""
    rows_held: int
    capacity: int
    admissions: int  # Rows created by pushes.
    evictions: int  # Rows removed to make room.
    expirations: int  # Rows that expired (ttl_pushes) and were reclaimed.
    dropped_rows: int  # Gradient rows of ids not yet admitted.
    absent_rows_looked_up: int  # Looked-up ids that held no row.

    @classmethod
    def from_proto(cls, message):
        return cls(**{field.name: getattr(message, field.name)
                      for field in dataclasses.fields(cls)})

    @classmethod
    def summed(cls, stats):
        """The stats of several servers added up."""
        return cls(**{field.name: sum(getattr(one, field.name)
                                      for one in stats)
                      for field in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint of one table on the server's disk."""
    version: int  # The pushes and writes it holds (the table's version).
    time_unix_micros: int  # When its save began.
    path: str  # Its directory on the server.
    incremental: bool  # Only the rows changed since the checkpoint before.

    @classmethod
    def from_proto(cls, message):
        return cls(version=message.version,
                   time_unix_micros=message.time_unix_micros,
                   path=message.path, incremental=message.incremental)


@dataclasses.dataclass(frozen=True)
class SavedCheckpoint:
    """What save_checkpoint wrote for one table."""
    table: str
    version: int
    time_unix_micros: int
    path: str
    incremental: bool
    bytes_written: int  # Data and metadata.
    rows: int

    @classmethod
    def from_proto(cls, saved):
        checkpoint = CheckpointInfo.from_proto(saved.checkpoint)
        return cls(table=saved.table, **dataclasses.asdict(checkpoint),
                   bytes_written=saved.bytes_written, rows=saved.rows)


@dataclasses.dataclass(frozen=True)
class TableInfo:
    """A table's spec and state as the server reports it.

    last_checkpoint: the newest checkpoint this server saved or restored of
    the table (CheckpointInfo), None when it has none. A dynamic table has
    num_embeddings None, its options in `dynamic` (Dynamic) and its counts
    in `dynamic_stats` (DynamicStats; local_rows is its rows held); both
    are None for a dense table.
    """
    name: str
    num_embeddings: Optional[int]
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
    last_checkpoint: Optional[CheckpointInfo] = None
    dynamic: Optional[Dynamic] = None
    dynamic_stats: Optional[DynamicStats] = None

    @classmethod
    def from_proto(cls, info):
        spec = info.spec
        dynamic = spec.HasField("dynamic")
        return cls(
            name=spec.name,
            num_embeddings=None if dynamic else spec.num_embeddings,
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
            step=info.step,
            last_checkpoint=(CheckpointInfo.from_proto(info.last_checkpoint)
                             if info.HasField("last_checkpoint") else None),
            dynamic=Dynamic.from_proto(spec.dynamic) if dynamic else None,
            dynamic_stats=(DynamicStats.from_proto(info.dynamic_stats)
                           if info.HasField("dynamic_stats") else None))


@dataclasses.dataclass(frozen=True)
class PushResult:
    """Outcome of a gradient push. Dynamic tables also count the ids the
    push gave a row (rows_admitted), those whose gradient it dropped (not
    yet admitted: rows_dropped) and the rows it evicted (rows_evicted);
    these are 0 for a dense table."""
    rows_updated: int
    version: int
    duplicate: bool
    rows_admitted: int = 0
    rows_dropped: int = 0
    rows_evicted: int = 0
