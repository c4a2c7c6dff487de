"""EmbeddingClient: numpy in, numpy out, one method per RPC.

    from embedding_client import EmbeddingClient, Adagrad

    with EmbeddingClient("127.0.0.1:50051") as client:
        client.create_table("items", 10_000, 64, optimizer=Adagrad(lr=0.1))
        rows = client.lookup("items", [[1, 2], [3, 4]])      # (2, 2, 64)
        client.push_gradients("items", [[1, 2], [3, 4]], grad_of_rows)

The client follows client/CONTRACT.md, as the C++ client and the CLI do:
the defaults below, the retry rules and the error codes of each method.
Every failure raises an `EmbeddingError` subclass (see errors.py) carrying
the server's code and message; any call may also raise UnavailableError and
DeadlineExceededError. Bulk transfers (`write_rows`, `read_rows`,
`create_table(weights=...)`) are split into messages of at most
min(BULK_MESSAGE_BYTES, max_message_bytes), which should equal (or be below)
the server's --max_message_bytes.

Checkpoints: `save_checkpoint` saves tables to the server's
--checkpoint_dir. NumPy files: `export_npy` / `import_npy` move a whole
table to or from a float32 .npy file, one bulk message at a time;
`export_npz` / `import_npz` move the rows a table holds with their ids (a
dynamic table's, or any table's) to or from a .npz file.

An EmbeddingClient is thread-safe; share one per process.

Pickling (torch.save(model), spawned workers): a client pickles as the
recipe it was built from (address(es) and options) and is built again from
it when unpickled; the copy connects on its first call. It never carries
secrets or identity: see EmbeddingClient.__reduce__. copy.copy and
copy.deepcopy return the client itself. Use the "spawn" or "forkserver"
start method for worker processes: gRPC (without GRPC_ENABLE_FORK_SUPPORT)
does not survive fork(), not even with a channel made after the fork.
"""

import collections
import itertools
import math
import os
import secrets
import time

import grpc
import numpy as np

from embedding_client import malloc_tuning, npy, security, tensors
from embedding_client._stubs import pb, pb_grpc
from embedding_client.errors import (FailedPreconditionError, InternalError,
                                     InvalidArgumentError, from_rpc_error)
from embedding_client.options import (Constant, PushResult, SavedCheckpoint,
                                      TableInfo, dynamic_to_proto,
                                      initializer_to_proto,
                                      optimizer_to_proto)

# The defaults of client/CONTRACT.md (tests/contract checks them).
DEFAULT_ADDRESS = "127.0.0.1:50051"  # The server's default --listen_address.
DEFAULT_TIMEOUT_SECONDS = 30.0  # Deadline of each call (each attempt).
DEFAULT_MAX_MESSAGE_BYTES = 64 << 20  # The server's --max_message_bytes.
# Bulk transfers use messages of at most this size: measured 3x faster than
# 60 MiB messages for a 256 MiB ReadRows (gRPC Python pipelines them).
BULK_MESSAGE_BYTES = 4 << 20
DEFAULT_BAG_MODE = "mean"  # As nn.EmbeddingBag.
DEFAULT_LOOKUP_DTYPE = "float32"
DEFAULT_MAX_RETRIES = 3  # Retries of an UNAVAILABLE call after the first.
RETRY_BACKOFF_SECONDS = 0.05  # Retry k waits this times 2**k.

# Room left in each bulk message for the table name and framing.
_MESSAGE_HEADROOM = 16 << 10
# Bytes an index can take on the wire (a 10-byte varint plus slack).
_INDEX_BYTES = 11

_BAG_MODES = {"sum": pb.BAG_MODE_SUM, "mean": pb.BAG_MODE_MEAN,
              "max": pb.BAG_MODE_MAX}


def bag_mode(mode):
    """Returns the BagMode enum for "sum", "mean" or "max"."""
    try:
        return _BAG_MODES[mode]
    except KeyError:
        raise InvalidArgumentError(
            f"mode must be one of {sorted(_BAG_MODES)}, got {mode!r}"
        ) from None


def bag_inputs(indices, offsets):
    """Returns flat indices and offsets as nn.EmbeddingBag takes them.

    A 2-D `indices` (bags, n) without offsets is bags of equal size n.
    """
    indices = tensors.as_indices(indices)
    if indices.ndim == 2 and offsets is None:
        bags, size = indices.shape
        offsets = np.arange(0, bags * size, size, dtype=np.int64)
    elif indices.ndim != 1 or offsets is None:
        raise InvalidArgumentError(
            "lookup_bag takes 1-D indices with offsets, or 2-D indices "
            f"without offsets; got shape {indices.shape} and "
            f"{'no ' if offsets is None else ''}offsets")
    return indices.ravel(), tensors.as_indices(offsets).ravel()


def empty_rows(shape, dim, dtype):
    """What a lookup of no indices of `shape` returns, as F.embedding."""
    return np.zeros(shape + (dim,),
                    np.float16 if dtype == "float16" else np.float32)


class EmbeddingClient:
    """A connection to one embedding_server, or to a cluster of them.

    address: "host:port", or a list of them in shard-index order for a
    table split over several servers: the client is then a
    sharded.ShardedClient, with these methods and the results of one
    server holding the whole table (a list of one is the plain client).
    timeout: default deadline of each call in seconds
    (None: no deadline); a retried call gives each attempt its own.
    token: the bearer token sent as `authorization: Bearer TOKEN` with
    every call (None: $EMBEDDING_TOKEN if set; "": none). tls: a
    security.TlsOptions (CA file, client certificate and key for mutual
    TLS, server name override) turns TLS on (default: plaintext).
    metadata: (key, value) pairs sent with every call, after the token's.
    credentials: ready-made grpc.ChannelCredentials instead of `tls`.
    max_message_bytes: the largest message sent or accepted; bulk transfers
    are chunked below it. max_retries: retries of a call that failed with
    UNAVAILABLE, for the methods that are safe to repeat: reads, and pushes
    (each carries client_id and a sequence number, so the server applies it
    once). client_id: this client's exactly-once id (default: random).

    Picklable (unless built with `credentials`); see __reduce__.
    """

    def __init__(self, address=DEFAULT_ADDRESS, *,
                 timeout=DEFAULT_TIMEOUT_SECONDS, token=None, tls=None,
                 metadata=(), credentials=None,
                 max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
                 max_retries=DEFAULT_MAX_RETRIES, client_id=None,
                 channel_options=()):
        if not isinstance(address, str):
            (address,) = address  # A list of one; more make a ShardedClient.
        channel_options = tuple(channel_options)
        # Checked before the channel exists: a bad option leaves nothing open.
        self.metadata = security.call_metadata(token, metadata)
        self._recipe = _pickle_recipe(
            address, token, self.metadata, credentials, timeout=timeout,
            tls=tls, max_message_bytes=max_message_bytes,
            max_retries=max_retries, channel_options=channel_options)
        credentials, tls_options = security.channel_security(tls, credentials)
        malloc_tuning.tune_once()
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes),
                   *tls_options, *channel_options]
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options)
        else:
            self._channel = grpc.secure_channel(address, credentials, options)
        self._stub = pb_grpc.EmbeddingServiceStub(self._channel)
        # Lookups whose replies arrive as bytes: tensors.rows_of_reply reads
        # the rows from them without parsing a message (two copies fewer).
        service = "/" + pb.DESCRIPTOR.services_by_name[
            "EmbeddingService"].full_name
        self._lookup_raw = self._channel.unary_unary(
            f"{service}/Lookup",
            request_serializer=pb.LookupRequest.SerializeToString)
        self._lookup_stream_raw = self._channel.stream_stream(
            f"{service}/LookupStream",
            request_serializer=pb.LookupRequest.SerializeToString)
        self.address = address
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self.max_retries = max_retries
        self.client_id = client_id or secrets.token_hex(16)  # 128 bits.
        self._sequences = itertools.count(1)  # next() is atomic under the GIL.

    def __new__(cls, address=DEFAULT_ADDRESS, *args, **kwargs):
        if (cls is EmbeddingClient and not isinstance(address, str) and
                len(address) > 1):
            from embedding_client.sharded import ShardedClient
            return super().__new__(ShardedClient)  # Python then inits it.
        return super().__new__(cls)

    def close(self):
        """Closes the channel; the client is unusable afterwards."""
        self._channel.close()

    def __reduce__(self):
        """Pickles the client as its recipe: unpickling calls
        EmbeddingClient(address(es), **options) again, which makes the same
        class (a ShardedClient for 2+ addresses) with the same timeout,
        tls (file paths: the files are read again where it is unpickled),
        metadata, max_message_bytes, max_retries and channel_options.

        Left out: the token (the copy takes $EMBEDDING_TOKEN of the process
        that unpickles it; spawned workers inherit the parent's
        environment, so set os.environ["EMBEDDING_TOKEN"] before starting
        them; token="" stays "") and "authorization" metadata; the
        client_id (the copy gets a fresh one: it counts sequences from 1,
        and under the same id the server would drop its pushes as
        duplicates). The channel is not connected until the copy's first
        call, so unpickling succeeds while the servers are down.
        Raises TypeError for a client built with `credentials`.
        """
        if self._recipe is None:
            raise TypeError(
                f"cannot pickle {self!r}: it was built with credentials= "
                "(grpc.ChannelCredentials cannot be pickled); build it with "
                "tls=TlsOptions(...) instead")
        return _rebuild, self._recipe

    def __copy__(self):
        """Returns the client itself: a client is a thread-safe connection,
        like a file handle, so copies of a model share it (token too)."""
        return self

    def __deepcopy__(self, memo):
        """Returns the client itself, as __copy__."""
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"EmbeddingClient({self.address!r})"

    # ---- plumbing ---------------------------------------------------------

    def _with_retries(self, attempt, retry):
        """Returns attempt(); with `retry`, calls it again after an
        UNAVAILABLE, up to max_retries times, retry k after
        RETRY_BACKOFF_SECONDS * 2**k. Raises EmbeddingError."""
        retries = self.max_retries if retry else 0
        for k in itertools.count():
            try:
                return attempt()
            except grpc.RpcError as error:
                if k < retries and error.code() == grpc.StatusCode.UNAVAILABLE:
                    time.sleep(RETRY_BACKOFF_SECONDS * 2 ** k)
                    continue
                raise from_rpc_error(error) from None

    def _call(self, method, request, timeout=None, retry=False):
        """Calls a unary RPC; raises EmbeddingError on failure."""
        return self._with_retries(
            lambda: method(request, timeout=self._timeout(timeout),
                           metadata=self.metadata), retry)

    def _timeout(self, timeout):
        return self.timeout if timeout is None else timeout

    def _rows_per_message(self, dim, with_indices=True):
        """Rows of `dim` floats that fit one bulk message."""
        limit = min(self.max_message_bytes, BULK_MESSAGE_BYTES)
        row_bytes = 4 * dim + (_INDEX_BYTES if with_indices else 0)
        return max(1, (limit - _MESSAGE_HEADROOM) // row_bytes)

    def _next_sequence(self, sequence):
        return next(self._sequences) if sequence is None else sequence

    # ---- tables -----------------------------------------------------------

    def create_table(self, name, num_embeddings, embedding_dim,
                     padding_idx=None, max_norm=None, norm_type=2.0,
                     scale_grad_by_freq=False, *, optimizer=None,
                     initializer=None, seed=0, weights=None, dynamic=None,
                     timeout=None):
        """Creates a table; the arguments mirror nn.Embedding.

        optimizer: a dataclass of options.OPTIMIZERS (default SGD()), its
        dict form or a pb.Optimizer. initializer: Normal (default), Uniform
        or Constant, drawn from `seed`. weights: optional float32
        [num_embeddings, embedding_dim] starting rows (the padding row is
        zeroed); uploads larger than one message are written in chunks
        after the table is created, and the table is deleted again if that
        fails (raising the upload's error). dynamic: options.Dynamic (or
        its dict form) makes a dynamic table, of any int64 ids: pass
        num_embeddings None and no weights; padding_idx is then an id,
        taken as it is. Not retried.
        Raises InvalidArgumentError (bad spec or weights),
        AlreadyExistsError, ResourceExhaustedError (memory budget).
        """
        spec = pb.TableSpec(name=name,
                            num_embeddings=_rows_of_spec(num_embeddings,
                                                         dynamic, weights),
                            embedding_dim=embedding_dim,
                            norm_type=norm_type,
                            scale_grad_by_freq=scale_grad_by_freq, seed=seed)
        if dynamic is not None:
            spec.dynamic.CopyFrom(dynamic_to_proto(dynamic))
        if padding_idx is not None:
            spec.padding_idx = padding_idx
        if max_norm is not None:
            spec.max_norm = max_norm
        if optimizer is not None:
            spec.optimizer.CopyFrom(optimizer_to_proto(optimizer))
        if initializer is not None:
            spec.initializer.CopyFrom(initializer_to_proto(initializer))
        request = pb.CreateTableRequest(spec=spec)  # Copies spec.
        if weights is None:
            return TableInfo.from_proto(
                self._call(self._stub.CreateTable, request, timeout))

        weights = tensors.as_float32(weights)
        if weights.shape != (num_embeddings, embedding_dim):
            raise InvalidArgumentError(
                f"weights have shape {list(weights.shape)}, expected "
                f"[{num_embeddings}, {embedding_dim}]")
        if num_embeddings <= self._rows_per_message(embedding_dim, False):
            tensors.to_tensor(weights, request.initial_weights)
            return TableInfo.from_proto(
                self._call(self._stub.CreateTable, request, timeout))

        # Too big for one message: create it zeroed, then write the rows.
        request.spec.initializer.CopyFrom(Constant(0.0).to_proto())
        self._call(self._stub.CreateTable, request, timeout)
        try:
            if padding_idx is not None:
                weights = weights.copy()
                weights[padding_idx] = 0.0
            self.write_rows(name, weights, timeout=timeout)
        except BaseException:
            try:
                self.delete_table(name)
            except Exception:  # Report the upload's failure, not this one.
                pass
            raise
        return self.get_table(name, timeout=timeout)

    def get_table(self, name, *, timeout=None):
        """Returns the TableInfo of `name`. Raises NotFoundError."""
        return TableInfo.from_proto(self._call(
            self._stub.GetTable, pb.GetTableRequest(name=name), timeout,
            retry=True))

    def list_tables(self, *, timeout=None):
        """Returns a TableInfo for every table on the server. Raises only
        UnavailableError and DeadlineExceededError."""
        response = self._call(self._stub.ListTables, pb.ListTablesRequest(),
                              timeout, retry=True)
        return [TableInfo.from_proto(info) for info in response.tables]

    def delete_table(self, name, *, timeout=None):
        """Deletes a table and its optimizer state. Not retried.

        Raises NotFoundError.
        """
        self._call(self._stub.DeleteTable, pb.DeleteTableRequest(name=name),
                   timeout)

    def set_optimizer(self, table, optimizer, *, timeout=None):
        """Replaces the hyper-parameters of the table's optimizer.

        The kind must stay the same (its state is kept); returns TableInfo.
        Not retried. Raises NotFoundError, InvalidArgumentError (a
        hyper-parameter out of range), FailedPreconditionError (another
        optimizer kind: the table's state would not fit).
        """
        request = pb.SetOptimizerRequest(
            table=table, optimizer=optimizer_to_proto(optimizer))
        return TableInfo.from_proto(
            self._call(self._stub.SetOptimizer, request, timeout))

    # ---- lookups ----------------------------------------------------------

    def lookup(self, table, indices, *, dtype=DEFAULT_LOOKUP_DTYPE,
               timeout=None, copy=True):
        """Returns the rows at `indices` (any shape) as `shape + (dim,)`.

        dtype: wire format, "float32", "float16" (returned as np.float16) or
        "bfloat16" (returned widened to float32). copy=False returns
        float32 and float16 rows as a read-only view of the reply's bytes
        (no copy at all); by default they are copied once into an array of
        their own. Tables with max_norm renorm the rows they return, as
        F.embedding. Raises NotFoundError,
        InvalidArgumentError (an index out of range, with its position; an
        unknown dtype), ResourceExhaustedError (too many indices, reply over
        the message limit).
        """
        indices = tensors.as_indices(indices)
        request = pb.LookupRequest(table=table,
                                   dtype=tensors.wire_dtype(dtype))
        if indices.size == 0:  # As F.embedding; the server wants indices.
            dim = self.get_table(table, timeout=timeout).embedding_dim
            return empty_rows(indices.shape, dim, dtype)
        _set_lookup_indices(request, indices)
        reply = self._call(self._lookup_raw, request, timeout, retry=True)
        return _lookup_rows(tensors.rows_of_reply(reply, writable=copy),
                            indices.shape)

    def lookup_stream(self, table, batches, *, dtype=DEFAULT_LOOKUP_DTYPE,
                      timeout=None, copy=True):
        """Yields lookup(table, batch) for each index array of `batches`,
        in order, over one LookupStream call: each batch is sent as soon as
        `batches` yields it, without waiting for the replies before it, so
        a stream of lookups does not pay a round trip per batch.

        Each batch must hold at least one index. copy: as lookup's.
        timeout: of the whole stream. Not retried: an error (a bad batch,
        the server going away) ends the iteration with its EmbeddingError,
        after the results of the batches before it. Stopping the iteration
        early cancels the call.
        """
        wire_dtype = tensors.wire_dtype(dtype)
        shapes = collections.deque()  # Appended by gRPC's sending thread.

        def requests():
            for batch in batches:
                indices = tensors.as_indices(batch)
                request = pb.LookupRequest(table=table, dtype=wire_dtype)
                _set_lookup_indices(request, indices)
                shapes.append(indices.shape)
                yield request

        call = self._lookup_stream_raw(requests(),
                                       timeout=self._timeout(timeout),
                                       metadata=self.metadata)
        try:
            for reply in call:
                yield _lookup_rows(tensors.rows_of_reply(reply, writable=copy),
                                   shapes.popleft())
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    def lookup_bag(self, table, indices, offsets=None, *,
                   mode=DEFAULT_BAG_MODE, per_sample_weights=None,
                   include_last_offset=False, dtype=DEFAULT_LOOKUP_DTYPE,
                   return_max_indices=False, timeout=None):
        """Returns pooled rows [bags, dim], as F.embedding_bag.

        indices: 1-D with `offsets` (start of each bag), or 2-D (bags, n)
        without. mode: "sum", "mean" or "max". per_sample_weights: one per
        index, "sum" only. With return_max_indices, returns (rows,
        max_indices) where max_indices [bags, dim] is what push_bag_gradients
        needs in "max" mode (None in the other modes). Raises as lookup,
        plus InvalidArgumentError for bad offsets, per_sample_weights
        outside "sum", and "max" on a scale_grad_by_freq table.
        """
        indices, offsets = bag_inputs(indices, offsets)
        request = pb.LookupBagRequest(
            table=table, mode=bag_mode(mode),
            include_last_offset=include_last_offset,
            dtype=tensors.wire_dtype(dtype))
        self._fill_bag(request, indices, offsets, per_sample_weights)
        response = self._call(self._stub.LookupBag, request, timeout,
                              retry=True)
        rows = tensors.from_tensor(response.embeddings)
        if not return_max_indices:
            return rows
        if not response.max_indices:  # Not "max" mode.
            return rows, None
        return rows, tensors.indices_array(response.max_indices).reshape(
            rows.shape)

    @staticmethod
    def _fill_bag(request, indices, offsets, per_sample_weights):
        # Not indices_le: a server older than it would read a request of
        # one bag (offsets [0]) as one empty bag instead of refusing it.
        tensors.fill_indices(request.indices, indices)
        tensors.fill_indices(request.offsets, offsets)
        if per_sample_weights is not None:
            request.per_sample_weights.extend(
                tensors.as_float32(per_sample_weights).ravel().tolist())

    # ---- training ---------------------------------------------------------

    def push_gradients(self, table, indices, grad, *, learning_rate=None,
                       sequence=None, timeout=None):
        """Pushes the gradient of `lookup(table, indices)`: one optimizer step.

        grad: float32 `indices.shape + (dim,)`. Rows repeated in `indices`
        have their gradients summed. sequence: exactly-once id of this push
        for this client (default: the next one, counting from 1); a retry
        sends the same one. Returns PushResult. Raises NotFoundError,
        InvalidArgumentError (gradient shape or dtype, NaN/Inf, bad index),
        ResourceExhaustedError (too many indices), FailedPreconditionError
        (a sequence older than the server's exactly-once window).
        """
        indices = tensors.as_indices(indices)
        grad = tensors.as_float32(grad)
        if grad.shape[:-1] == indices.shape:  # Else the server says why not.
            grad = grad.reshape(indices.size, grad.shape[-1])
        request = pb.PushGradientsRequest(
            table=table, client_id=self.client_id,
            sequence=self._next_sequence(sequence),
            indices_le=tensors.packed_indices(indices))
        tensors.to_tensor(grad, request.grad)
        if learning_rate is not None:
            request.learning_rate = learning_rate
        return self._push(self._stub.PushGradients, request, timeout)

    def push_bag_gradients(self, table, indices, offsets, grad, *,
                           mode=DEFAULT_BAG_MODE, per_sample_weights=None,
                           include_last_offset=False, max_indices=None,
                           learning_rate=None, sequence=None, timeout=None):
        """Pushes the gradient [bags, dim] of a `lookup_bag`: one step.

        Pass the lookup's arguments again, and in "max" mode the max_indices
        it returned. Returns PushResult; raises as push_gradients, plus
        InvalidArgumentError for the lookup_bag checks and max_indices that
        do not match the bags.
        """
        indices, offsets = bag_inputs(indices, offsets)
        request = pb.PushBagGradientsRequest(
            table=table, mode=bag_mode(mode),
            include_last_offset=include_last_offset,
            client_id=self.client_id,
            sequence=self._next_sequence(sequence))
        self._fill_bag(request, indices, offsets, per_sample_weights)
        tensors.to_tensor(grad, request.grad)
        if max_indices is not None:
            tensors.fill_indices(request.max_indices,
                                 tensors.as_indices(max_indices))
        if learning_rate is not None:
            request.learning_rate = learning_rate
        return self._push(self._stub.PushBagGradients, request, timeout)

    def _push(self, method, request, timeout):
        response = self._call(method, request, timeout, retry=True)
        return PushResult(rows_updated=response.rows_updated,
                          version=response.version,
                          duplicate=response.duplicate,
                          rows_admitted=response.rows_admitted,
                          rows_dropped=response.rows_dropped,
                          rows_evicted=response.rows_evicted)

    # ---- bulk rows ----------------------------------------------------------

    def write_rows(self, table, values, indices=None, *, start_row=0,
                   timeout=None):
        """Overwrites rows: at `indices`, or rows [start_row, start_row + n).

        values: float32 [n, dim]. Sent in as many messages as the size limit
        needs, in order; each message is applied atomically, the whole call
        is not: a failure stops the upload, earlier messages stay written.
        Optimizer state is left as it is. Returns the rows written. Not
        retried. Raises NotFoundError, InvalidArgumentError (shape, repeated
        index, NaN/Inf, rows outside the table).
        """
        values = tensors.as_float32(values)
        if values.ndim != 2:
            raise InvalidArgumentError(
                f"values must be [rows, dim], got shape {list(values.shape)}")
        if indices is not None:
            indices = tensors.as_indices(indices).ravel()
            if len(indices) != len(values):
                raise InvalidArgumentError(
                    f"{len(indices)} indices for {len(values)} rows")
        step = self._rows_per_message(values.shape[1], indices is not None)
        written = 0
        for begin in range(0, len(values), step):
            request = pb.WriteRowsRequest(table=table)
            if indices is None:
                request.start_row = start_row + begin
            else:
                tensors.fill_indices(request.indices,
                                     indices[begin:begin + step])
            tensors.to_tensor(values[begin:begin + step], request.values)
            written += self._call(self._stub.WriteRows, request,
                                  timeout).rows_written
        return written

    def read_rows(self, table, indices=None, *, start_row=0, end_row=None,
                  return_indices=False, timeout=None):
        """Returns rows float32 [n, dim]: at `indices`, or [start_row, end_row).

        end_row None reads to the end of the table. Does not renorm (unlike
        lookup). With return_indices, returns (global row ids, rows) — on a
        sharded server a range yields only the rows it holds. An UNAVAILABLE
        starts the whole read again. Raises NotFoundError,
        InvalidArgumentError (index or range outside the table).
        """
        dim = self.get_table(table, timeout=timeout).embedding_dim
        ids, values = self._read_rows(table, dim, indices, start_row=start_row,
                                      end_row=end_row, timeout=timeout)
        if return_indices:
            return ids, values
        return values

    def _read_rows(self, table, dim, indices=None, *, start_row=0,
                   end_row=None, timeout=None):
        """read_rows of a table of `dim` columns: (ids, rows)."""
        rows_per_message = self._rows_per_message(dim)
        if indices is None:
            requests = [pb.ReadRowsRequest(
                table=table, start_row=start_row, end_row=end_row or 0,
                rows_per_message=rows_per_message)]
        else:
            # Requests carry indices only; their rows stream back in chunks.
            indices = tensors.as_indices(indices).ravel()
            per_request = self._rows_per_message(0)
            requests = []
            for begin in range(0, len(indices), per_request):
                request = pb.ReadRowsRequest(
                    table=table, rows_per_message=rows_per_message)
                tensors.fill_indices(request.indices,
                                     indices[begin:begin + per_request])
                requests.append(request)
        return self._with_retries(
            lambda: self._read(requests, dim, timeout), retry=True)

    def _read(self, requests, dim, timeout):
        """One attempt of read_rows: (ids, rows) of every reply in order.
        Raises grpc.RpcError."""
        ids = [np.zeros(0, np.int64)]
        rows = [np.zeros((0, dim), np.float32)]
        for request in requests:
            for response in self._stub.ReadRows(
                    request, timeout=self._timeout(timeout),
                    metadata=self.metadata):
                chunk_ids, chunk_rows = _read_reply(response)
                ids.append(chunk_ids)
                rows.append(chunk_rows)
        # Chunks are concatenated (a copy) unless there is just one.
        values = np.concatenate(rows) if len(rows) > 2 else rows[-1].copy()
        return np.concatenate(ids), values

    def _row_chunks(self, table, start_row, end_row, dim, timeout):
        """Yields (ids, rows) of each ReadRows reply of the range, rows a
        read-only view of the reply: one chunk in memory at a time. An
        UNAVAILABLE resumes after the last row yielded (up to max_retries
        times). Raises EmbeddingError."""
        next_row = start_row
        for k in itertools.count():
            call = self._stub.ReadRows(
                pb.ReadRowsRequest(table=table, start_row=next_row,
                                   end_row=end_row,
                                   rows_per_message=self._rows_per_message(
                                       dim)),
                timeout=self._timeout(timeout), metadata=self.metadata)
            try:
                for response in call:
                    ids, rows = _read_reply(response)
                    if len(ids):
                        next_row = int(ids[-1]) + 1
                        yield ids, rows
                return
            except grpc.RpcError as error:
                if (k < self.max_retries and
                        error.code() == grpc.StatusCode.UNAVAILABLE):
                    time.sleep(RETRY_BACKOFF_SECONDS * 2 ** k)
                    continue
                raise from_rpc_error(error) from None
            finally:
                call.cancel()  # A consumer that stops early ends the stream.

    # ---- checkpoints and NumPy files ----------------------------------------

    def save_checkpoint(self, tables=None, *, incremental=False,
                        timeout=None):
        """Saves tables to the server's --checkpoint_dir while lookups and
        pushes go on; returns a SavedCheckpoint per table saved.

        tables: names (or one name); None saves every table. incremental:
        write only the rows changed since each table's last checkpoint (the
        server writes a full one when due). Not retried: after a lost reply
        a repeat would write another checkpoint (get_table's
        last_checkpoint tells whether the first landed). Raises
        FailedPreconditionError (no --checkpoint_dir; the directory missing
        or not writable), NotFoundError (an unknown table; nothing is
        written), ResourceExhaustedError (disk full), UnavailableError
        (another I/O error), CancelledError (the server shut down first).
        """
        if isinstance(tables, str):
            tables = [tables]
        request = pb.SaveCheckpointRequest(tables=tables or [],
                                           incremental=incremental)
        response = self._call(self._stub.SaveCheckpoint, request, timeout)
        return [SavedCheckpoint.from_proto(saved) for saved in response.saved]

    def export_npy(self, table, path, *, timeout=None):
        """Writes every row of `table` to the .npy file `path`, float32
        [num_embeddings, embedding_dim] in C order: numpy.load reads it, and
        torch.from_numpy turns it into nn.Embedding.from_pretrained weights.

        Streamed: the header first, then each ReadRows chunk as it arrives,
        never more than one chunk in memory. The file is written as
        `path`.partial and renamed when complete. Rows read while pushes go
        on are each as of one update, not all as of one instant. Returns the
        rows written. Raises as read_rows, FailedPreconditionError for a
        table split over several servers (this one holds only some rows),
        and OSError when the file cannot be written.
        """
        info = self.get_table(table, timeout=timeout)
        _refuse_dynamic(info, "export_npy")
        rows, dim = info.num_embeddings, info.embedding_dim
        chunks = self._table_chunks(info, timeout)
        with npy.partial_file(os.fspath(path)) as file:
            npy.write_header(file, rows, dim)
            next_row = 0
            for ids, values in chunks:
                # Rows go to the file by position: they must be in order.
                if ids[0] != next_row or ids[-1] != next_row + len(ids) - 1:
                    raise InternalError(
                        f"server sent rows [{ids[0]}, {ids[-1]}] where "
                        f"row {next_row} was due")
                file.write(values.data)
                next_row += len(ids)
                # Let go of this chunk before the next one arrives.
                del ids, values
            if next_row != rows:
                raise InternalError(f"server sent {next_row} of {rows} "
                                    f"rows of table {table}")
        return rows

    def _table_chunks(self, info, timeout):
        """Yields (ids, rows) of the whole table in order (export_npy).
        Raises FailedPreconditionError when this server holds one shard."""
        if info.shard_count > 1:
            raise FailedPreconditionError(
                f"table {info.name} is split over {info.shard_count} servers "
                f"and this one holds shard {info.shard_index} only; an "
                "export needs the whole table")
        return self._row_chunks(info.name, 0, info.num_embeddings,
                                info.embedding_dim, timeout)

    def import_npy(self, table, path, *, timeout=None):
        """Overwrites every row of the existing `table` with the .npy file
        `path` (float32 [num_embeddings, embedding_dim], C order, as
        numpy.save writes it); optimizer state is left as it is.

        Streamed: the file is memory-mapped and sent one WriteRows chunk at
        a time. Returns the rows written. Not retried. Raises
        InvalidArgumentError naming the file when it is not such a file
        (not float32, not 2-D, Fortran order, truncated) or its shape is
        not the table's, all before anything is written; OSError when it
        cannot be read; and as write_rows (a failure part way leaves the
        earlier chunks written).
        """
        path = os.fspath(path)
        rows, dim = npy.check_file(path)
        info = self.get_table(table, timeout=timeout)
        _refuse_dynamic(info, "import_npy")
        if (rows, dim) != (info.num_embeddings, info.embedding_dim):
            raise InvalidArgumentError(
                f"{path}: shape ({rows}, {dim}) does not match table {table} "
                f"[{info.num_embeddings}, {info.embedding_dim}]")
        weights = np.load(path, mmap_mode="r")
        step = self._rows_per_message(dim, with_indices=False)
        written = 0
        for begin in range(0, rows, step):
            # One chunk of the file in memory: write_rows sends it as one
            # message, since it uses this same step.
            written += self.write_rows(table, weights[begin:begin + step],
                                       start_row=begin, timeout=timeout)
        return written

    def export_npz(self, table, path, *, timeout=None):
        """Writes the rows `table` holds, with their ids, to the .npz file
        `path`: `ids` int64 [n] and `weights` float32 [n, embedding_dim],
        as numpy.savez writes them (numpy.load reads it). A dynamic table's
        rows are those it holds (admitted, not expired), in no particular
        order; a dense table's are rows [0, num_embeddings).

        Read whole into memory, then written as `path`.partial and renamed.
        Rows read while pushes go on are each as of one update, not all as
        of one instant (a checkpoint is a cut). Returns the rows written.
        Raises as read_rows, FailedPreconditionError for a table split over
        several servers (this one holds only some rows), and OSError when
        the file cannot be written.
        """
        info = self.get_table(table, timeout=timeout)
        ids, weights = self._held_rows(info, timeout)
        npy.save_npz(os.fspath(path), ids, weights)
        return len(ids)

    def _held_rows(self, info, timeout):
        """(ids, rows) of every row the table holds (export_npz). Raises
        FailedPreconditionError when this server holds one shard."""
        if info.shard_count > 1:
            raise FailedPreconditionError(
                f"table {info.name} is split over {info.shard_count} servers "
                f"and this one holds shard {info.shard_index} only; an "
                "export needs the whole table")
        return self.read_rows(info.name, return_indices=True, timeout=timeout)

    def import_npz(self, table, path, *, timeout=None):
        """Writes the rows of the .npz file `path` (`ids` int64 [n],
        `weights` float32 [n, embedding_dim], as export_npz writes them) to
        the existing `table` at their ids, as write_rows: a dynamic table
        admits the ids it does not hold (evicting by its policy when full)
        with fresh optimizer state; a held row keeps its state.

        Returns the rows written. Not retried. Raises InvalidArgumentError
        naming the file when it is not such a file or its dim is not the
        table's, before anything is written; OSError when it cannot be
        read; and as write_rows (a failure part way leaves the earlier
        chunks written).
        """
        path = os.fspath(path)
        ids, weights = npy.load_npz(path)
        info = self.get_table(table, timeout=timeout)
        if weights.shape[1] != info.embedding_dim:
            raise InvalidArgumentError(
                f"{path}: weights have {weights.shape[1]} columns; table "
                f"{table} has embedding_dim {info.embedding_dim}")
        if not len(ids):
            return 0
        return self.write_rows(table, weights, indices=ids, timeout=timeout)


def _rows_of_spec(num_embeddings, dynamic, weights):
    """TableSpec.num_embeddings: 0 for a dynamic table. Raises
    InvalidArgumentError when the arguments do not say which kind."""
    if dynamic is None:
        if num_embeddings is None:
            raise InvalidArgumentError(
                "num_embeddings is None: pass the table's rows, or "
                "dynamic=Dynamic(capacity) for a table of any int64 ids")
        return num_embeddings
    if num_embeddings is not None:
        raise InvalidArgumentError(
            f"num_embeddings must be None for a dynamic table (its ids are "
            f"any int64), got {num_embeddings!r}")
    if weights is not None:
        raise InvalidArgumentError(
            "a dynamic table starts empty: it takes no weights (rows are "
            "admitted by pushes)")
    return 0


def _refuse_dynamic(info, what):
    """FailedPreconditionError for a .npy transfer of a dynamic table: its
    rows have ids, which a .npy file does not carry."""
    if info.dynamic is not None:
        raise FailedPreconditionError(
            f"table {info.name} is dynamic: {what} needs a .npy file of "
            "rows [0, num_embeddings), and a dynamic table has none; use a "
            ".npz file (export_npz, import_npz), which carries the ids")


def _pickle_recipe(address, token, metadata, credentials, **options):
    """(address, options) that EmbeddingClient.__reduce__ pickles, or None
    for a client built with `credentials` (not picklable). `metadata` is
    the client's call metadata; its "authorization" pairs are left out, as
    is the token (None: the copy reads $EMBEDDING_TOKEN; "" stays "")."""
    if credentials is not None:
        return None
    options["metadata"] = tuple(pair for pair in metadata
                                if pair[0].lower() != "authorization")
    options["token"] = "" if token == "" else None
    return address, options


def _rebuild(address, options):
    """Unpickles a client: a new one from its recipe (see _pickle_recipe)."""
    return EmbeddingClient(address, **options)


def _set_lookup_indices(request, indices):
    """Puts an index array of any shape into a LookupRequest: packed
    (indices_le), with its shape when it is not 1-D."""
    request.indices_le = tensors.packed_indices(indices)
    if indices.ndim > 1:
        request.shape.extend(indices.shape)


def _lookup_rows(rows, shape):
    """A Lookup reply's rows shaped as the index `shape` + [dim]. Raises
    InternalError when the reply does not hold one row per index."""
    count = math.prod(shape)
    if rows.ndim == 0 or rows.size != count * rows.shape[-1]:
        raise InternalError(
            f"server sent rows of shape {list(rows.shape)} for {count} "
            "indices")
    return rows.reshape(shape + rows.shape[-1:])


def _read_reply(response):
    """(ids, rows) of a ReadRows reply; rows view the reply's bytes."""
    return (tensors.indices_array(response.indices),
            tensors.from_tensor(response.values, writable=False))
