"""The server binary's lifecycle, seen from outside."""

import signal
import subprocess

from tests.e2e.cli_runner import Cli
from tests.testing.binaries import cli_binary
from tests.testing.server_process import ServerProcess


def test_sigterm_is_a_graceful_shutdown_with_exit_code_0():
    server = ServerProcess()
    server.start()
    cli = Cli(server.address)
    cli.ok("create-table", "t", "--num_embeddings=100", "--embedding_dim=8")
    cli.ok("lookup", "t", "--indices=1,2,3")
    assert server.stop() == 0


def test_sigint_is_a_graceful_shutdown_with_exit_code_0():
    server = ServerProcess()
    server.start()
    Cli(server.address).ok("list")
    assert server.stop(sig=signal.SIGINT) == 0


def test_cli_help_lists_every_command():
    result = subprocess.run([str(cli_binary()), "help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0
    # --help prints the same text and the flags (exit status 1, absl's way).
    flags_help = subprocess.run([str(cli_binary()), "--help"],
                                capture_output=True, text=True, timeout=60)
    assert result.stdout in flags_help.stdout
    assert "--num_embeddings" in flags_help.stdout
    for command in ("create-table", "list", "describe", "delete", "lookup",
                    "push", "write-rows", "read-rows", "set-optimizer",
                    "lookup-bag", "push-bag", "checkpoint", "export",
                    "import"):
        assert f"  {command} " in result.stdout or \
            f"  {command}\n" in result.stdout, command


def test_cli_without_command_prints_usage_and_exits_2():
    result = subprocess.run([str(cli_binary())], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "Usage: embedding_cli" in result.stderr
