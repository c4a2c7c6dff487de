"""ShardedClient: one EmbeddingClient over a table split across M servers.

    client = EmbeddingClient(["10.0.0.1:50051", "10.0.0.2:50051",
                              "10.0.0.3:50051"])   # shard 0, 1, 2
    client.create_table("items", 10_000_000, 64)   # on every shard
    rows = client.lookup("items", batch)           # routed, in parallel

Global row g lives on shard g % M; a dynamic table's id x (any int64) on
shard SplitMix64(x) % M (routing.py). The client has the plain client's
methods and returns what one server holding the whole table would, bit for
bit (client/CONTRACT.md, "Sharded clients", is the contract it shares with
the C++ client): it takes each table's spec from the shards that answer
its first use and checks each shard the first time a call needs it (so a
shard that is down fails only the calls that need it), checks every
request against the table's spec before sending anything,
sends one sub-request per shard involved in parallel and reassembles the
replies in the caller's order. Bags are pooled in the client (bags.py);
pushes reach every shard, with the same client_id and sequence. Errors of a
shard keep the server's code, their message prefixed
"shard K (ADDRESS): ".

A push after a partial failure is retried with the sequence of the raised
error: shards that applied it answer duplicate, the others apply it.

    try:
        client.push_gradients("items", batch, grad)
    except EmbeddingError as error:
        client.push_gradients("items", batch, grad, sequence=error.sequence)

Thread-safe; share one per process.
"""

import concurrent.futures
import dataclasses
import itertools
import queue
import secrets
import threading

import numpy as np

from embedding_client import bags, routing, security, tensors
from embedding_client.client import (DEFAULT_BAG_MODE, DEFAULT_LOOKUP_DTYPE,
                                     DEFAULT_MAX_MESSAGE_BYTES,
                                     DEFAULT_MAX_RETRIES,
                                     DEFAULT_TIMEOUT_SECONDS, EmbeddingClient,
                                     _pickle_recipe, bag_inputs, bag_mode,
                                     empty_rows)
from embedding_client.errors import (DeadlineExceededError, EmbeddingError,
                                     FailedPreconditionError,
                                     InvalidArgumentError, UnavailableError,
                                     combined)
from embedding_client.options import (RESERVED_ID, CheckpointInfo,
                                      DynamicStats, PushResult)

# Ends a queue of lookup_stream's router.
_END = object()

# TableInfo fields that differ from shard to shard by design.
_PER_SHARD_FIELDS = ("shard_index", "shard_count", "local_rows",
                     "memory_bytes", "version", "step", "last_checkpoint",
                     "dynamic_stats")


def _merge_checkpoints(checkpoints):
    """One CheckpointInfo for the shards' (None unless all have one)."""
    if any(checkpoint is None for checkpoint in checkpoints):
        return None
    return CheckpointInfo(
        version=sum(c.version for c in checkpoints),
        time_unix_micros=min(c.time_unix_micros for c in checkpoints),
        path=checkpoints[0].path,
        incremental=any(c.incremental for c in checkpoints))


def _merge_infos(infos):
    """One TableInfo for a table's shards (in shard order)."""
    return dataclasses.replace(
        infos[0], shard_index=0, shard_count=len(infos),
        local_rows=sum(info.local_rows for info in infos),
        memory_bytes=sum(info.memory_bytes for info in infos),
        version=sum(info.version for info in infos),
        step=max(info.step for info in infos),
        last_checkpoint=_merge_checkpoints(
            [info.last_checkpoint for info in infos]),
        dynamic_stats=(None if infos[0].dynamic_stats is None else
                       DynamicStats.summed(
                           [info.dynamic_stats for info in infos])))


def _check_indices(info, indices):
    """Raises InvalidArgumentError as a server does (EmbeddingTable::
    ValidateIndices) for the first of the flat `indices` it would refuse:
    outside [0, num_embeddings), or in a dynamic table the reserved id;
    positions are the caller's."""
    if info.dynamic is None:
        routing.check_indices(indices, info.num_embeddings)
        return
    reserved = indices == RESERVED_ID
    if reserved.any():
        position = int(np.argmax(reserved))
        raise InvalidArgumentError(
            f"index {RESERVED_ID} at position {position} is reserved: no id "
            "of a dynamic table")


def _finite_check(values, what):
    """The server's CheckFinite: InvalidArgumentError at the first NaN/Inf
    of [rows, dim] `values`."""
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise InvalidArgumentError(
            f"{what} has a non-finite value ({values[row, column]}) at row "
            f"{row}, column {column}")


def _rows_shape_check(values, rows, dim, what):
    """The server's RowsView: `values` must be [..., dim] with `rows` rows."""
    shape = values.shape
    if len(shape) < 2 or shape[-1] != dim or int(np.prod(shape[:-1])) != rows:
        raise InvalidArgumentError(
            f"{what} has shape [{', '.join(map(str, shape))}], expected "
            f"[{rows}, {dim}]")
    return values.reshape(rows, dim)


@dataclasses.dataclass(frozen=True)
class _CheckedTable:
    """A table's spec as shard `reference` reported it, and the shards
    that passed the cluster check against it."""
    info: object  # The reference shard's TableInfo.
    reference: int
    checked: frozenset


class ShardedClient(EmbeddingClient):
    """An EmbeddingClient over M servers; `addresses[k]` is shard k.

    The keyword arguments are EmbeddingClient's and apply to every shard;
    all shards share one client_id. Made by EmbeddingClient(list of two or
    more addresses). Pickles as EmbeddingClient does (the addresses and
    options, a fresh client_id, no token), unpickling to a ShardedClient.
    """

    def __init__(self, addresses, *, timeout=DEFAULT_TIMEOUT_SECONDS,
                 token=None, tls=None, metadata=(), credentials=None,
                 max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
                 max_retries=DEFAULT_MAX_RETRIES, client_id=None,
                 channel_options=()):
        self.addresses = list(addresses)
        self.address = ",".join(self.addresses)
        self.timeout = timeout
        channel_options = tuple(channel_options)
        self.metadata = security.call_metadata(token, metadata)  # As shards'.
        self._recipe = _pickle_recipe(
            self.addresses, token, self.metadata, credentials,
            timeout=timeout, tls=tls, max_message_bytes=max_message_bytes,
            max_retries=max_retries, channel_options=channel_options)
        self.max_message_bytes = max_message_bytes
        self.max_retries = max_retries
        self.client_id = client_id or secrets.token_hex(16)
        self._sequences = itertools.count(1)
        self.shards = [
            EmbeddingClient(address, timeout=timeout, token=token, tls=tls,
                            metadata=metadata, credentials=credentials,
                            max_message_bytes=max_message_bytes,
                            max_retries=max_retries, client_id=self.client_id,
                            channel_options=channel_options)
            for address in self.addresses]
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=4 * len(self.shards),
            thread_name_prefix="embedding-shard")
        self._lock = threading.Lock()
        self._tables = {}  # Table name -> _CheckedTable.

    def close(self):
        """Closes every channel; the client is unusable afterwards."""
        self._pool.shutdown(wait=False)
        for shard in self.shards:
            shard.close()

    def __repr__(self):
        return f"EmbeddingClient({self.addresses!r})"

    # ---- plumbing ---------------------------------------------------------

    def _prefix(self, shard):
        return f"shard {shard} ({self.addresses[shard]}): "

    def _run_all(self, calls):
        """Runs calls {shard: f(shard client)} in parallel; returns
        ({shard: result}, {shard: EmbeddingError})."""
        futures = {shard: self._pool.submit(call, self.shards[shard])
                   for shard, call in calls.items()}
        results, errors = {}, {}
        for shard, future in futures.items():
            try:
                results[shard] = future.result()
            except EmbeddingError as error:
                errors[shard] = error
        return results, errors

    def _raise(self, errors, **attributes):
        """Raises one error for the failing shards (in shard order)."""
        error = combined({self._prefix(shard): errors[shard]
                          for shard in sorted(errors)})
        for name, value in attributes.items():
            setattr(error, name, value)
        raise error

    def _run(self, calls, **attributes):
        """As _run_all, raising the failing shards' error (with
        `attributes` set on it) if any failed."""
        results, errors = self._run_all(calls)
        if errors:
            self._raise(errors, **attributes)
        return results

    def _on_every_shard(self, call):
        return self._run({shard: call for shard in range(len(self.shards))})

    def _check_shard(self, table, shard, info):
        """FailedPreconditionError unless `shard` says it is shard `shard`
        of M and holds the spec of `table` (a _CheckedTable)."""
        count = len(self.shards)
        if (info.shard_index, info.shard_count) != (shard, count):
            raise FailedPreconditionError(
                f"{self._prefix(shard)}reports shard_index "
                f"{info.shard_index} of shard_count {info.shard_count}, "
                f"expected {shard} of {count}")
        for field in dataclasses.fields(info):
            if field.name in _PER_SHARD_FIELDS:
                continue
            mine = getattr(info, field.name)
            expected = getattr(table.info, field.name)
            if mine != expected:
                raise FailedPreconditionError(
                    f"{self._prefix(shard)}table {info.name!r} differs "
                    f"from shard {table.reference} in {field.name}: "
                    f"{mine!r} vs {expected!r}")

    def _check_cluster(self, name, infos):
        """Checks the shards of `infos` ({shard: TableInfo}) in shard order
        against the lowest one's spec and remembers them as checked."""
        reference = min(infos)
        table = _CheckedTable(infos[reference], reference, frozenset(infos))
        for shard in sorted(infos):
            self._check_shard(table, shard, infos[shard])
        with self._lock:
            self._tables[name] = table
        return table

    def _ask_tables(self, name, shards, timeout):
        """({shard: TableInfo of `name`}, {shard: EmbeddingError}) of
        `shards`, asked at once."""
        return self._run_all({
            shard: lambda client: client.get_table(name, timeout=timeout)
            for shard in shards})

    def _shard_infos(self, name, timeout):
        """Every shard's TableInfo of `name`, all checked and remembered."""
        infos, errors = self._ask_tables(name, range(len(self.shards)),
                                         timeout)
        if errors:
            self._raise(errors)
        self._check_cluster(name, infos)
        return [infos[shard] for shard in range(len(self.shards))]

    def _spec(self, name, timeout):
        """The spec (a TableInfo) of `name`."""
        return self._table(name, timeout).info

    def _table(self, name, timeout):
        """The _CheckedTable of `name`. On first use every shard is
        asked at once; those that answer are checked, and those that are
        down (UNAVAILABLE, DEADLINE_EXCEEDED) are left for _check_shards,
        unless none answers. Any other failure is raised."""
        with self._lock:
            table = self._tables.get(name)
        if table is not None:
            return table
        infos, errors = self._ask_tables(name, range(len(self.shards)),
                                         timeout)
        down = (UnavailableError, DeadlineExceededError)
        if not infos or not all(isinstance(error, down)
                                for error in errors.values()):
            self._raise(errors)
        return self._check_cluster(name, infos)

    def _check_shards(self, name, shards, timeout):
        """Checks those of `shards` that `name` has not had checked yet
        (asked at once); their errors are raised as a call's."""
        table = self._table(name, timeout)
        missing = [shard for shard in shards if shard not in table.checked]
        if not missing:
            return
        infos, errors = self._ask_tables(name, missing, timeout)
        if errors:
            self._raise(errors)
        for shard in missing:
            self._check_shard(table, shard, infos[shard])
        with self._lock:
            current = self._tables.get(name)
            if current is not None and current.info is table.info:
                self._tables[name] = dataclasses.replace(
                    current, checked=current.checked | frozenset(missing))

    def _split(self, info, indices):
        """routing.Split of flat `indices` of the table `info` describes."""
        return routing.Split(indices, len(self.shards),
                             hashed=info.dynamic is not None)

    def _forget(self, table):
        with self._lock:
            self._tables.pop(table, None)

    # ---- tables -----------------------------------------------------------

    def create_table(self, name, num_embeddings, embedding_dim,
                     padding_idx=None, max_norm=None, norm_type=2.0,
                     scale_grad_by_freq=False, *, optimizer=None,
                     initializer=None, seed=0, weights=None, dynamic=None,
                     timeout=None):
        """Creates the table on every shard, as EmbeddingClient's. Weights
        go to every shard whole (each keeps its rows); a dynamic table's
        capacity is each shard's. When a shard fails
        or reports another cluster, the table is deleted again where this
        call created it and the shard's error is raised."""
        self._forget(name)
        infos, errors = self._run_all({
            shard: lambda client: client.create_table(
                name, num_embeddings, embedding_dim, padding_idx, max_norm,
                norm_type, scale_grad_by_freq, optimizer=optimizer,
                initializer=initializer, seed=seed, weights=weights,
                dynamic=dynamic, timeout=timeout)
            for shard in range(len(self.shards))})
        try:
            if errors:
                self._raise(errors)
            self._check_cluster(name, infos)
        except EmbeddingError:
            # Best effort: the creation's error is the one to report.
            self._run_all({shard: lambda client: client.delete_table(name)
                           for shard in infos})
            raise
        return _merge_infos([infos[shard] for shard in sorted(infos)])

    def get_table(self, name, *, timeout=None):
        """Returns the table's TableInfo merged over the shards (rows,
        memory and version summed, step the largest); checks the cluster."""
        return _merge_infos(self._shard_infos(name, timeout))

    def shard_tables(self, name, *, timeout=None):
        """Returns each shard's own TableInfo of `name`, in shard order."""
        return self._shard_infos(name, timeout)

    def list_tables(self, *, timeout=None):
        """Returns a merged TableInfo for each table every shard holds."""
        lists = self._on_every_shard(
            lambda shard: shard.list_tables(timeout=timeout))
        by_name = [{info.name: info for info in lists[shard]}
                   for shard in range(len(self.shards))]
        return [_merge_infos([tables[name] for tables in by_name])
                for name in by_name[0]
                if all(name in tables for tables in by_name)]

    def delete_table(self, name, *, timeout=None):
        """Deletes the table on every shard, carrying on past failures;
        raises the failing shards' error."""
        self._forget(name)
        self._on_every_shard(
            lambda shard: shard.delete_table(name, timeout=timeout))

    def set_optimizer(self, table, optimizer, *, timeout=None):
        """Sets the optimizer on every shard; returns the merged TableInfo."""
        self._forget(table)
        infos = self._on_every_shard(
            lambda shard: shard.set_optimizer(table, optimizer,
                                              timeout=timeout))
        return _merge_infos([infos[shard] for shard in sorted(infos)])

    # ---- lookups ----------------------------------------------------------

    def lookup(self, table, indices, *, dtype=DEFAULT_LOOKUP_DTYPE,
               timeout=None, copy=True):
        """As EmbeddingClient.lookup; contacts only the shards holding
        some of the rows. The result is always an array of its own (the
        shards' rows are put back in order into it): `copy` is accepted
        for the plain client's signature."""
        indices = tensors.as_indices(indices)
        tensors.wire_dtype(dtype)
        info = self._spec(table, timeout)
        flat = indices.ravel()
        _check_indices(info, flat)
        if flat.size == 0:
            return empty_rows(indices.shape, info.embedding_dim, dtype)
        split = self._split(info, flat)
        self._check_shards(table, split.shards(), timeout)
        parts = self._run({
            shard: lambda client, part=flat[split.positions[shard]]:
                client.lookup(table, part, dtype=dtype, timeout=timeout,
                              copy=False)
            for shard in split.shards()})
        rows = split.gather(parts, (info.embedding_dim,),
                            next(iter(parts.values())).dtype)
        return rows.reshape(indices.shape + (info.embedding_dim,))

    # Batches a sharded lookup_stream routes ahead of the replies.
    STREAM_WINDOW = 8

    def lookup_stream(self, table, batches, *, dtype=DEFAULT_LOOKUP_DTYPE,
                      timeout=None, copy=True):
        """As EmbeddingClient.lookup_stream (results are arrays of their own
        whatever `copy` says, as lookup's): a thread routes each batch as
        `batches` yields it (up to STREAM_WINDOW batches ahead of the
        replies) to one LookupStream per shard, opened when a batch first
        needs that shard; the replies are reassembled in order. Errors of
        a shard carry its prefix; an error ends the iteration after the
        results of the batches before it."""
        tensors.wire_dtype(dtype)
        info = self._spec(table, timeout)
        count = len(self.shards)
        plans = queue.Queue(self.STREAM_WINDOW)  # (shape, split) per batch.
        parts = [queue.Queue() for _ in range(count)]  # Per shard, in order.
        stop = threading.Event()

        def route():
            try:
                for batch in batches:
                    if stop.is_set():
                        return
                    indices = tensors.as_indices(batch)
                    flat = indices.ravel()
                    if flat.size == 0:  # As the server says it.
                        raise InvalidArgumentError("indices is empty")
                    _check_indices(info, flat)
                    split = self._split(info, flat)
                    self._check_shards(table, split.shards(), timeout)
                    plans.put((indices.shape, split))
                    for shard in split.shards():
                        parts[shard].put(flat[split.positions[shard]])
                plans.put(_END)
            except BaseException as error:  # The caller raises it in order.
                plans.put(error)
            finally:
                for part in parts:
                    part.put(_END)

        def shard_batches(shard):
            while (part := parts[shard].get()) is not _END:
                yield part

        streams = {}  # Shard -> its lookup_stream, once a batch needs it.

        def next_rows(shard):
            if shard not in streams:
                streams[shard] = self.shards[shard].lookup_stream(
                    table, shard_batches(shard), dtype=dtype, timeout=timeout,
                    copy=False)
            try:
                return next(streams[shard])
            except EmbeddingError as error:
                self._raise({shard: error})

        threading.Thread(target=route, daemon=True,
                         name="embedding-stream-router").start()
        try:
            while (plan := plans.get()) is not _END:
                if isinstance(plan, BaseException):
                    raise plan
                shape, split = plan
                rows = {shard: next_rows(shard) for shard in split.shards()}
                out = split.gather(rows, (info.embedding_dim,),
                                   next(iter(rows.values())).dtype)
                yield out.reshape(shape + (info.embedding_dim,))
        finally:
            stop.set()
            while True:  # Unblocks the router if it waits to put a plan.
                try:
                    plans.get_nowait()
                except queue.Empty:
                    break
            for stream in streams.values():
                stream.close()  # Cancels its call.

    def _bag_batch(self, table, indices, offsets, mode, per_sample_weights,
                   include_last_offset, timeout):
        """(BagBatch, spec), checked as the server checks a bag request."""
        bag_mode(mode)
        indices, offsets = bag_inputs(indices, offsets)
        info = self._spec(table, timeout)
        batch = bags.BagBatch(indices, offsets, mode, per_sample_weights,
                              include_last_offset, info.padding_idx,
                              bags.empty_bag_marker(info.dynamic is not None))
        if mode == "max" and info.scale_grad_by_freq:
            raise InvalidArgumentError(
                "mode MAX does not support scale_grad_by_freq (torch "
                "refuses it too)")
        _check_indices(info, indices)
        return batch, info

    def lookup_bag(self, table, indices, offsets=None, *,
                   mode=DEFAULT_BAG_MODE, per_sample_weights=None,
                   include_last_offset=False, dtype=DEFAULT_LOOKUP_DTYPE,
                   return_max_indices=False, timeout=None):
        """As EmbeddingClient.lookup_bag: the rows are looked up (routed)
        and pooled here exactly as the server pools them."""
        tensors.wire_dtype(dtype)
        batch, info = self._bag_batch(table, indices, offsets, mode,
                                      per_sample_weights,
                                      include_last_offset, timeout)
        kept = batch.indices[batch.kept]
        if info.max_norm is None:  # Each distinct row once.
            distinct, inverse = np.unique(kept, return_inverse=True)
            rows = self.lookup(table, distinct, timeout=timeout)[inverse]
        else:  # Renorm reads every position, as the server's do.
            rows = self.lookup(table, kept, timeout=timeout)
        if rows.ndim == 1:
            rows = rows.reshape(0, info.embedding_dim)
        pooled, max_indices = batch.pool(rows)
        pooled = tensors.round_to_wire(pooled, dtype)
        return (pooled, max_indices) if return_max_indices else pooled

    # ---- training ---------------------------------------------------------

    def push_gradients(self, table, indices, grad, *, learning_rate=None,
                       sequence=None, timeout=None):
        """As EmbeddingClient.push_gradients. Every shard gets a sub-push
        (an empty one where it holds none of the rows), all with this
        client's id and the same sequence. A failure names the failing
        shards and carries `.sequence`: retry with it."""
        indices = tensors.as_indices(indices)
        info = self._spec(table, timeout)
        flat = indices.ravel()
        grad = _rows_shape_check(tensors.as_float32(grad), flat.size,
                                 info.embedding_dim, "grad")
        _check_indices(info, flat)
        _finite_check(grad, "grad")
        return self._push_rows(table, flat, grad, learning_rate, sequence,
                               timeout)

    def push_bag_gradients(self, table, indices, offsets, grad, *,
                           mode=DEFAULT_BAG_MODE, per_sample_weights=None,
                           include_last_offset=False, max_indices=None,
                           learning_rate=None, sequence=None, timeout=None):
        """As EmbeddingClient.push_bag_gradients: the bag gradient becomes
        the per-row gradient the server would accumulate, pushed as
        push_gradients pushes."""
        batch, info = self._bag_batch(table, indices, offsets, mode,
                                      per_sample_weights,
                                      include_last_offset, timeout)
        grad = _rows_shape_check(tensors.as_float32(grad), batch.bags,
                                 info.embedding_dim, "grad")
        _finite_check(grad, "grad")
        rows, row_grads = batch.scatter(grad, max_indices,
                                        info.embedding_dim)
        return self._push_rows(table, rows, row_grads, learning_rate,
                               sequence, timeout)

    def _push_rows(self, table, flat, grad, learning_rate, sequence,
                   timeout):
        self._check_shards(table, range(len(self.shards)), timeout)
        sequence = self._next_sequence(sequence)
        split = self._split(self._spec(table, timeout), flat)
        results = self._run({
            shard: lambda client, positions=split.positions[shard]:
                client.push_gradients(
                    table, flat[positions], grad[positions],
                    learning_rate=learning_rate, sequence=sequence,
                    timeout=timeout)
            for shard in range(len(self.shards))}, sequence=sequence)
        return PushResult(
            rows_updated=sum(r.rows_updated for r in results.values()),
            version=sum(r.version for r in results.values()),
            duplicate=all(r.duplicate for r in results.values()),
            rows_admitted=sum(r.rows_admitted for r in results.values()),
            rows_dropped=sum(r.rows_dropped for r in results.values()),
            rows_evicted=sum(r.rows_evicted for r in results.values()))

    # ---- bulk rows ----------------------------------------------------------

    def write_rows(self, table, values, indices=None, *, start_row=0,
                   timeout=None):
        """As EmbeddingClient.write_rows, routed by index (a range becomes
        its indices). Checked whole before anything is sent; shards write
        in parallel, so a failure may leave other shards' rows written."""
        values = tensors.as_float32(values)
        if values.ndim != 2:
            raise InvalidArgumentError(
                f"values must be [rows, dim], got shape {list(values.shape)}")
        info = self._spec(table, timeout)
        rows = info.num_embeddings
        if values.shape[1] != info.embedding_dim:
            raise InvalidArgumentError(
                f"values has {values.size} elements, expected "
                f"[{len(values)}, {info.embedding_dim}] = "
                f"{len(values) * info.embedding_dim}")
        if indices is None and info.dynamic is not None:
            raise InvalidArgumentError(
                f"table {table} is dynamic: it has no row range to write; "
                "pass the ids (indices=)")
        if indices is None:
            if not 0 <= start_row <= rows - len(values) or not len(values):
                raise InvalidArgumentError(
                    f"{len(values)} rows from row {start_row} are not "
                    f"within [0, {rows})")
            indices = np.arange(start_row, start_row + len(values))
        else:
            indices = tensors.as_indices(indices).ravel()
            if len(indices) != len(values):
                raise InvalidArgumentError(
                    f"{len(indices)} indices for {len(values)} rows")
            _check_indices(info, indices)
            _, first = np.unique(indices, return_index=True)
            if len(first) != len(indices):
                again = np.ones(len(indices), bool)
                again[first] = False
                position = int(np.argmax(again))
                raise InvalidArgumentError(
                    f"index {indices[position]} at position {position} is "
                    "written twice in one request")
        _finite_check(values, "values")
        split = self._split(info, indices)
        self._check_shards(table, split.shards(), timeout)
        written = self._run({
            shard: lambda client, positions=split.positions[shard]:
                client.write_rows(table, values[positions],
                                  indices[positions], timeout=timeout)
            for shard in split.shards()})
        return sum(written.values())

    def read_rows(self, table, indices=None, *, start_row=0, end_row=None,
                  return_indices=False, timeout=None):
        """As EmbeddingClient.read_rows over the whole table: indices are
        routed, a range is read from every shard and merged in order."""
        info = self._spec(table, timeout)
        dim, rows = info.embedding_dim, info.num_embeddings
        if indices is not None:
            ids = tensors.as_indices(indices).ravel()
            _check_indices(info, ids)
            split = self._split(info, ids)
            self._check_shards(table, split.shards(), timeout)
            parts = self._run({
                shard: lambda client, part=ids[split.positions[shard]]:
                    client._read_rows(table, dim, part,
                                           timeout=timeout)[1]
                for shard in split.shards()})
            values = split.gather(parts, (dim,), np.float32)
        elif info.dynamic is not None:
            if start_row or end_row:
                raise InvalidArgumentError(
                    f"table {table!r} is dynamic: it has no row range; read "
                    "it whole or by ids")
            # Every shard's held rows, with their ids, shard after shard.
            self._check_shards(table, range(len(self.shards)), timeout)
            parts = self._on_every_shard(
                lambda client: client._read_rows(table, dim, timeout=timeout))
            ids = np.concatenate([parts[k][0] for k in sorted(parts)])
            values = np.concatenate([parts[k][1] for k in sorted(parts)])
        else:
            end = end_row or rows
            if not 0 <= start_row <= end <= rows:
                raise InvalidArgumentError(
                    f"row range [{start_row}, {end}) is not within [0, "
                    f"{rows}]")
            ids = np.arange(start_row, end, dtype=np.int64)
            values = self._read_range(table, dim, start_row, end, timeout)
        return (ids, values) if return_indices else values

    def _read_range(self, table, dim, start, end, timeout):
        """Rows [start, end) in order, each shard's read in parallel."""
        self._check_shards(table, range(len(self.shards)), timeout)
        parts = self._on_every_shard(
            lambda client: client._read_rows(
                table, dim, start_row=start, end_row=end, timeout=timeout))
        values = np.empty((end - start, dim), np.float32)
        for ids, part in parts.values():
            values[ids - start] = part
        return values

    def _table_chunks(self, info, timeout):
        """Yields (ids, rows) over the whole table in order, one window of
        a bulk message per shard at a time (export_npy)."""
        window = self._rows_per_message(info.embedding_dim) * len(
            self.shards)
        for start in range(0, info.num_embeddings, window):
            end = min(start + window, info.num_embeddings)
            yield (np.arange(start, end),
                   self._read_range(info.name, info.embedding_dim, start,
                                    end, timeout))

    def _held_rows(self, info, timeout):
        """(ids, rows) of every row of every shard (export_npz)."""
        return self.read_rows(info.name, return_indices=True, timeout=timeout)

    # ---- checkpoints --------------------------------------------------------

    def save_checkpoint(self, tables=None, *, incremental=False,
                        timeout=None):
        """Saves on every shard; returns one SavedCheckpoint per table
        (version, bytes and rows summed, shard 0's path, earliest time)."""
        saved = self._on_every_shard(
            lambda shard: shard.save_checkpoint(
                tables, incremental=incremental, timeout=timeout))
        by_table = {}
        for shard in sorted(saved):
            for one in saved[shard]:
                by_table.setdefault(one.table, []).append(one)
        merged = []
        for table, parts in by_table.items():
            checkpoint = _merge_checkpoints(parts)
            merged.append(dataclasses.replace(
                parts[0], **dataclasses.asdict(checkpoint),
                bytes_written=sum(p.bytes_written for p in parts),
                rows=sum(p.rows for p in parts)))
        return merged
