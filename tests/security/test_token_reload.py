"""The token file re-read on SIGHUP (issue 12): a revoked token stops
working and a new one starts, without a restart; a broken file keeps the
tokens in use and logs why; SIGHUP never stops a server."""

import signal
import time

import grpc

from embedding.v1 import embedding_service_pb2 as pb
from tests.security.conftest import (bearer, code_of, new_tokens,
                                     open_channel, stub, write_tokens)
from tests.testing.server_process import SERVING, health_status

OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


def _code(server, token):
    with open_channel(server.address) as channel:
        return code_of(lambda: stub(channel).ListTables(
            pb.ListTablesRequest(), metadata=bearer(token), timeout=5))


def _wait_for_log(server, text, count=1):
    """Waits until `text` appears `count` times in the server's log (the
    reload runs when the main thread takes the signal)."""
    deadline = time.monotonic() + 30
    while server.log().count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} in:\n{server.log()}"
        time.sleep(0.05)


def test_sighup_revokes_and_adds_tokens(start_server, tmp_path):
    old, new = new_tokens(), new_tokens()
    path = write_tokens(tmp_path / "tokens", old)
    server = start_server(f"--auth_tokens_file={path}")
    assert _code(server, old["reader"]) == OK
    assert _code(server, new["reader"]) == UNAUTHENTICATED

    write_tokens(path, {"reader": new["reader"], "admin": old["admin"]})
    server.send_signal(signal.SIGHUP)
    _wait_for_log(server, "SIGHUP: authentication")
    assert _code(server, new["reader"]) == OK
    assert _code(server, old["admin"]) == OK
    assert _code(server, old["reader"]) == UNAUTHENTICATED
    assert _code(server, old["trainer"]) == UNAUTHENTICATED
    assert "2 tokens (1 reader, 0 trainer, 1 admin)" in server.log()
    for token in [*old.values(), *new.values()]:
        assert token not in server.log()


def test_broken_file_on_reload_keeps_the_old_tokens(start_server, tmp_path):
    tokens = new_tokens()
    path = write_tokens(tmp_path / "tokens", tokens)
    server = start_server(f"--auth_tokens_file={path}")
    path.write_text(f"reader {tokens['reader']}\nsuperuser x\n")
    server.send_signal(signal.SIGHUP)
    _wait_for_log(server, "SIGHUP: keeping the previous tokens")
    assert f"{path}:2: unknown role" in server.log()
    for role in ("reader", "trainer", "admin"):
        assert _code(server, tokens[role]) == OK, role

    path.unlink()
    server.send_signal(signal.SIGHUP)
    _wait_for_log(server, "SIGHUP: keeping the previous tokens", count=2)
    assert f"cannot read {path}" in server.log()
    assert _code(server, tokens["trainer"]) == OK


def test_sighup_without_a_token_file_changes_nothing(start_server):
    server = start_server()
    # One at a time: pending SIGHUPs would merge into one.
    for count in range(1, 4):
        server.send_signal(signal.SIGHUP)
        _wait_for_log(server, "SIGHUP: authentication off", count=count)
    assert server.running()
    assert health_status(server.address) == SERVING
    assert _code(server, None) == OK
