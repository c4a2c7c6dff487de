"""Exceptions raised by the client: one class per gRPC status code it expects.

Every error the server returns is raised as an `EmbeddingError` subclass that
carries the gRPC code and the server's message:

    try:
        client.lookup("missing", [1, 2])
    except NotFoundError as e:
        print(e.code, e.message)   # StatusCode.NOT_FOUND, "table 'missing' ..."

The classes also derive from the closest built-in exception (ValueError,
LookupError, TimeoutError, PermissionError, ...) so generic handlers keep working.
"""

import grpc


class EmbeddingError(Exception):
    """A failed call. `code` is a grpc.StatusCode, `message` the server's text."""

    default_code = grpc.StatusCode.UNKNOWN

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code

    def __str__(self):
        return f"{self.code.name}: {self.message}"


class InvalidArgumentError(EmbeddingError, ValueError):
    """Bad input: index out of range, shape or dtype mismatch, NaN gradient."""
    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(EmbeddingError, LookupError):
    """The table does not exist."""
    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(EmbeddingError):
    """A table of that name already exists."""
    default_code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhaustedError(EmbeddingError):
    """A limit was hit: request or message size, memory budget."""
    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(EmbeddingError):
    """The request does not fit the table's state (e.g. an evicted sequence)."""
    default_code = grpc.StatusCode.FAILED_PRECONDITION


class UnavailableError(EmbeddingError, ConnectionError):
    """The server cannot be reached, or is starting or stopping."""
    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(EmbeddingError, TimeoutError):
    """The call did not finish within its timeout."""
    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(EmbeddingError):
    """The call was cancelled: a checkpoint the server shut down before."""
    default_code = grpc.StatusCode.CANCELLED


class UnauthenticatedError(EmbeddingError, PermissionError):
    """No token, or one the server does not know (never retried)."""
    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(EmbeddingError, PermissionError):
    """The token's role may not make this call, e.g. a reader's push (never
    retried)."""
    default_code = grpc.StatusCode.PERMISSION_DENIED


class InternalError(EmbeddingError):
    """A bug in the server."""
    default_code = grpc.StatusCode.INTERNAL


_BY_CODE = {cls.default_code: cls for cls in (
    InvalidArgumentError, NotFoundError, AlreadyExistsError,
    ResourceExhaustedError, FailedPreconditionError, UnavailableError,
    DeadlineExceededError, CancelledError, UnauthenticatedError,
    PermissionDeniedError, InternalError)}


def from_rpc_error(error):
    """Returns the EmbeddingError for a grpc.RpcError raised by a stub."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    return _BY_CODE.get(code, EmbeddingError)(message or "", code)


def combined(errors):
    """One error for several failed parts of a call: `errors` maps a prefix
    (e.g. "shard 1 (host:port): ") to its EmbeddingError. The class and
    code are the first's; the message lists every part, "; "-separated."""
    prefixes = list(errors)
    first = errors[prefixes[0]]
    message = "; ".join(f"{prefix}{errors[prefix].message}"
                        for prefix in prefixes)
    return type(first)(message, first.code)
