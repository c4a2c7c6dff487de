"""client/CONTRACT.md's defaults table against the Python client and the CLI.

Every row between the contract-defaults markers is checked against at least
one client: the Python signatures and module constants, and the CLI's flag
defaults as `embedding_cli --helpfull` prints them (absl: `default: "..."`).
The C++ ClientOptions defaults are checked by a C++ test in tests/client.
A row the table gains fails test_every_contract_row_is_checked until a
check is added here.
"""

import inspect
import pathlib
import re
import subprocess

import pytest

from embedding_client import EmbeddingClient
from embedding_client import client as python_client
from embedding_client import nn as remote
from tests.testing.binaries import cli_binary

CONTRACT = (pathlib.Path(__file__).resolve().parents[2] / "client" /
            "CONTRACT.md")
_BEGIN = "<!-- contract-defaults:begin -->"
_END = "<!-- contract-defaults:end -->"


def contract_defaults():
    """{key: value} of the contract's defaults table, values as written."""
    text = CONTRACT.read_text()
    assert text.count(_BEGIN) == 1 and text.count(_END) == 1, (
        f"{CONTRACT} needs one {_BEGIN} ... {_END} block")
    lines = text.split(_BEGIN)[1].split(_END)[0].strip().splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:2] == ["key", "value"], lines[0]
    rows = {}
    for line in lines[2:]:  # After the header and its |---| line.
        key, value = (cell.strip() for cell in line.strip("|").split("|")[:2])
        rows[key] = value
    return rows


DEFAULTS = contract_defaults()


# key -> the Python client's module constant holding it, and the parameters
# (function, name) defaulting to it.
PYTHON = {
    "address": ("DEFAULT_ADDRESS", [(EmbeddingClient.__init__, "address")]),
    "timeout_seconds": ("DEFAULT_TIMEOUT_SECONDS",
                        [(EmbeddingClient.__init__, "timeout")]),
    "max_message_bytes": ("DEFAULT_MAX_MESSAGE_BYTES",
                          [(EmbeddingClient.__init__, "max_message_bytes")]),
    "bulk_message_bytes": ("BULK_MESSAGE_BYTES", []),
    "bag_mode": ("DEFAULT_BAG_MODE", [
        (EmbeddingClient.lookup_bag, "mode"),
        (EmbeddingClient.push_bag_gradients, "mode"),
        (remote.RemoteEmbeddingBag.__init__, "mode")]),
    "lookup_dtype": ("DEFAULT_LOOKUP_DTYPE", [
        (EmbeddingClient.lookup, "dtype"),
        (EmbeddingClient.lookup_bag, "dtype"),
        (remote.RemoteEmbedding.__init__, "wire_dtype")]),
    "max_retries": ("DEFAULT_MAX_RETRIES",
                    [(EmbeddingClient.__init__, "max_retries")]),
    "retry_backoff_ms": ("RETRY_BACKOFF_SECONDS", []),
}

# key -> the embedding_cli flag whose default it is.
CLI_FLAGS = {
    "address": "server",
    "timeout_seconds": "timeout",
    "max_message_bytes": "max_message_bytes",
    "max_retries": "max_retries",
    "bag_mode": "mode",
    "lookup_dtype": "dtype",
}

_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3,
                   "us": 1e-6, "ns": 1e-9}


def _seconds(duration):
    """Seconds of an absl Duration as a flag prints it ("30s", "1m30s")."""
    parts = re.findall(r"(\d+(?:\.\d*)?)(h|ms|us|ns|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, (
        f"not an absl Duration: {duration!r}")
    return sum(float(number) * _DURATION_UNITS[unit]
               for number, unit in parts)


def _as_contract_value(key, value):
    """A client's default in the contract's unit, for comparison."""
    if key == "timeout_seconds" and isinstance(value, str):
        return _seconds(value)  # The CLI's absl Duration.
    if key == "retry_backoff_ms":
        return value * 1000  # The Python constant is in seconds.
    return value


def _expected(contract_value, actual):
    """The contract's value, parsed as the type of the client's."""
    if isinstance(actual, float):
        return pytest.approx(float(contract_value))
    return type(actual)(contract_value)


def test_every_contract_row_is_checked():
    assert set(DEFAULTS) == set(PYTHON) | set(CLI_FLAGS)


@pytest.mark.parametrize("key", PYTHON)
def test_python_client_default_matches_the_contract(key):
    constant, parameters = PYTHON[key]
    places = {constant: getattr(python_client, constant)}
    for function, name in parameters:
        places[f"{function.__qualname__}({name}=)"] = inspect.signature(
            function).parameters[name].default
    for place, value in places.items():
        value = _as_contract_value(key, value)
        assert value == _expected(DEFAULTS[key], value), (
            f"{place} is {value!r}; client/CONTRACT.md says {key} = "
            f"{DEFAULTS[key]}")


@pytest.fixture(scope="module")
def cli_help():
    """What `embedding_cli --helpfull` prints (absl exits 1 after help)."""
    binary = cli_binary()
    assert binary.exists(), f"no embedding_cli at {binary}: build it first"
    result = subprocess.run([str(binary), "--helpfull"], capture_output=True,
                            text=True, timeout=60)
    return result.stdout + result.stderr


def _flag_default(help_text, flag):
    """The default absl prints for --flag, unquoted; None without the flag."""
    # The help may wrap before "default:", but never runs into another flag.
    found = re.findall(
        rf"^\s*--{flag} \((?:(?!\n\s*--).)*?\);\s+default: (.*?);$",
        help_text, re.MULTILINE | re.DOTALL)
    assert len(found) <= 1, f"--{flag} is listed {len(found)} times"
    if not found:
        return None
    value = found[0]
    return value[1:-1] if value.startswith('"') else value


@pytest.mark.parametrize("key", CLI_FLAGS)
def test_cli_flag_default_matches_the_contract(cli_help, key):
    flag = CLI_FLAGS[key]
    printed = _flag_default(cli_help, flag)
    assert printed is not None, f"embedding_cli --helpfull lists no --{flag}"
    value = _as_contract_value(key, printed)
    assert value == _expected(DEFAULTS[key], value), (
        f"embedding_cli --{flag} defaults to {printed!r}; client/CONTRACT.md "
        f"says {key} = {DEFAULTS[key]}")
