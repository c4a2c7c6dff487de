"""What a remote table puts in a model's state_dict, and rebuilding from it.

state_dict() of a RemoteEmbedding(Bag) holds, as nn.Embedding's does, its
rows under "<prefix>weight": a float32 [num_embeddings, embedding_dim]
tensor read from the server in bulk messages. So a state_dict of a model
with remote tables loads into the same model with local nn.Embedding
tables, and the other way round; load_state_dict() writes the rows back to
the server (the server's optimizer state stays as it is, as a torch
optimizer's does when a model's weights are loaded).

Tables above the module's state_dict_max_bytes (1 GiB by default) are too
big to copy into the trainer: state_dict() raises StateDictTooLargeError,
pointing at the server's checkpoints, rather than leaving the rows out
silently. A module built with state_dict_weights=False leaves them out on
purpose (its rows live in server checkpoints).

The table's identity (addresses, table name, spec, module options) is in
the state_dict's metadata (`state_dict._metadata[module name]`), which
torch.save keeps: remote_tables(state_dict) lists them and rebuild(identity)
makes the module again, in another process or on a fresh server.
"""

import torch

from embedding_client.errors import EmbeddingError, NotFoundError

# The key of a remote table's identity in its module's state_dict metadata.
IDENTITY_KEY = "embedding_client.remote_table"
IDENTITY_FORMAT = 1
_WEIGHT = "weight"


class StateDictTooLargeError(RuntimeError):
    """state_dict() of a table bigger than its module's
    state_dict_max_bytes."""


class StateDictUnavailableError(RuntimeError):
    """state_dict() or load_state_dict() of rows a server cannot move in
    bulk yet (a dynamic table's)."""


def _addresses(client):
    return list(getattr(client, "addresses", [client.address]))


def _refuse_dynamic(module, what):
    """Raises StateDictUnavailableError for a dynamic table's rows."""
    if getattr(module, "dynamic", None) is not None:  # Older pickles lack it.
        raise StateDictUnavailableError(
            f"remote table {module.table!r} is dynamic: {what} needs every "
            "row it holds, which the server does not serve for dynamic "
            "tables yet; build the module with state_dict_weights=False "
            "(its rows live in the server's checkpoints)")


def identity_of(module):
    """The identity of `module`'s table, as a plain dict."""
    identity = dict(
        format=IDENTITY_FORMAT, module=type(module).__name__,
        addresses=_addresses(module.client), table=module.table,
        num_embeddings=module.num_embeddings,
        embedding_dim=module.embedding_dim, padding_idx=module.padding_idx,
        max_norm=module.max_norm, norm_type=module.norm_type,
        scale_grad_by_freq=module.scale_grad_by_freq,
        optimizer=module.info().optimizer,
        dynamic=getattr(module, "dynamic", None),
        options=dict(push=module.push, wire_dtype=module.wire_dtype,
                     learning_rate=module.learning_rate,
                     max_pushes_in_flight=module.max_pushes_in_flight,
                     state_dict_weights=module.state_dict_weights,
                     state_dict_max_bytes=module.state_dict_max_bytes))
    for name in ("mode", "include_last_offset"):
        if hasattr(module, name):
            identity["options"][name] = getattr(module, name)
    return identity


def _weights(module):
    _refuse_dynamic(module, "state_dict()")
    size = 4 * module.num_embeddings * module.embedding_dim
    if size > module.state_dict_max_bytes:
        raise StateDictTooLargeError(
            f"remote table {module.table!r} holds {size} bytes of rows, more "
            f"than state_dict_max_bytes={module.state_dict_max_bytes}: a "
            "state_dict would copy them all into this process. Save it with "
            "the server's checkpoints instead (client.save_checkpoint(["
            f"{module.table!r}]) writes it to the server's "
            "--checkpoint_dir), and build the module with "
            "state_dict_weights=False so state_dict() keeps only its "
            "identity; or raise state_dict_max_bytes")
    return torch.from_numpy(module.client.read_rows(module.table))


def save_table(module, destination, prefix):
    """Module._save_to_state_dict of a remote table."""
    metadata = getattr(destination, "_metadata", None)
    if metadata is not None:
        metadata.setdefault(prefix[:-1], {})[IDENTITY_KEY] = identity_of(
            module)
    if module.state_dict_weights:
        destination[prefix + _WEIGHT] = _weights(module)


def _load_weights(module, key, value):
    """Writes `value` to the table; returns an error message or None."""
    _refuse_dynamic(module, "load_state_dict()")
    shape = (module.num_embeddings, module.embedding_dim)
    if not isinstance(value, torch.Tensor):
        return (f'While copying the parameter named "{key}", expected '
                f"torch.Tensor from checkpoint but received {type(value)}")
    if tuple(value.shape) != shape:
        return (f"size mismatch for {key}: copying a param with shape "
                f"{value.shape} from checkpoint, the shape of remote table "
                f"{module.table!r} is {torch.Size(shape)}.")
    try:
        module.client.write_rows(
            module.table, value.detach().to("cpu", torch.float32).numpy())
    except EmbeddingError as error:
        return (f"While writing {key} to remote table {module.table!r}: "
                f"{error}")
    return None


def load_table(module, state_dict, prefix, strict, missing_keys,
               unexpected_keys, error_msgs):
    """Module._load_from_state_dict of a remote table: the rows at
    "<prefix>weight" are written to the server."""
    key = prefix + _WEIGHT
    if key in state_dict:
        error = _load_weights(module, key, state_dict[key])
        if error:
            error_msgs.append(error)
    elif strict and module.state_dict_weights:
        missing_keys.append(key)
    if strict:
        unexpected_keys.extend(
            name for name in state_dict
            if name.startswith(prefix) and name != key)


def remote_tables(state_dict):
    """{module name: identity} of the remote tables in a state_dict (from
    its metadata; {} when the metadata was dropped)."""
    metadata = getattr(state_dict, "_metadata", {}) or {}
    return {name: entry[IDENTITY_KEY] for name, entry in metadata.items()
            if IDENTITY_KEY in entry}


def rebuild(identity, client=None, *, create=False, **client_options):
    """Returns the RemoteEmbedding(Bag) an identity names.

    client: the client to use (default: a new EmbeddingClient to the saved
    addresses, with client_options). create: when the table does not
    exist, create it with the saved spec and optimizer (load_state_dict
    then writes its rows).
    """
    from embedding_client.client import EmbeddingClient
    from embedding_client.nn import modules

    if identity.get("format") != IDENTITY_FORMAT:
        raise ValueError(f"unknown remote table identity format "
                         f"{identity.get('format')!r}")
    if client is None:
        client = EmbeddingClient(identity["addresses"], **client_options)
    if create:
        try:
            client.get_table(identity["table"])
        except NotFoundError:
            client.create_table(
                identity["table"], identity["num_embeddings"],
                identity["embedding_dim"], padding_idx=identity["padding_idx"],
                max_norm=identity["max_norm"], norm_type=identity["norm_type"],
                scale_grad_by_freq=identity["scale_grad_by_freq"],
                optimizer=identity["optimizer"],
                dynamic=identity.get("dynamic"))
    module_class = {"RemoteEmbedding": modules.RemoteEmbedding,
                    "RemoteEmbeddingBag": modules.RemoteEmbeddingBag}
    return module_class[identity["module"]](client, identity["table"],
                                            **identity["options"])
