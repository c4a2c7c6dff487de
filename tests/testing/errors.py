"""pytest.raises for the Python client's typed errors that checks the gRPC
code too (a test names the code it expects, never just that a call failed):

    with raises(grpc.StatusCode.NOT_FOUND, match="no_such_table") as error:
        client.get_table("no_such_table")
"""

import contextlib

import pytest

from embedding_client import EmbeddingError


@contextlib.contextmanager
def raises(code, match=None):
    """Expects an EmbeddingError with `code` whose "CODE: message" text
    matches the regex `match`; yields pytest's ExceptionInfo."""
    with pytest.raises(EmbeddingError, match=match) as error:
        yield error
    assert error.value.code == code, f"expected {code.name}, got {error.value}"
