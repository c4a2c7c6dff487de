"""Starts the real embedding_server binary on a free loopback port for tests.

    with ServerProcess() as server:
        channel = grpc.insecure_channel(server.address)

The binary comes from $EMBEDDING_SERVER (set by ctest) or build/server/
(see binaries.py). The server binds port 0 and reports the port it got
through --port_file, so parallel tests never race for a port.
"""

import ctypes
import pathlib
import signal
import subprocess
import tempfile
import time

from tests.testing.binaries import server_binary

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """Runs in the child: SIGTERM it when the test process dies, so a test
    run that aborts (e.g. inside torch) leaves no server behind."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ServerProcess:
    """A running embedding_server; stops it (SIGTERM) on exit."""

    def __init__(self, *flags, startup_timeout=30.0):
        self._flags = list(flags)
        self._startup_timeout = startup_timeout
        self._process = None
        self._dir = None
        self.port = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self._dir = tempfile.TemporaryDirectory(prefix="embedding-server-")
        port_file = pathlib.Path(self._dir.name) / "port"
        self._log = open(pathlib.Path(self._dir.name) / "server.log", "w+")
        self._process = subprocess.Popen(
            [str(server_binary()), "--listen_address=127.0.0.1:0",
             f"--port_file={port_file}", *self._flags],
            stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"embedding_server exited with {self._process.returncode}:"
                    f"\n{self.log()}")
            text = port_file.read_text() if port_file.exists() else ""
            if text.strip():
                self.port = int(text)
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"embedding_server did not start:\n{self.log()}")

    def log(self):
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def stop(self, timeout=20.0, sig=signal.SIGTERM):
        """Sends `sig` (SIGTERM by default) and returns the exit code."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(sig)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        code = self._process.returncode
        self._process = None
        self._log.close()
        self._dir.cleanup()
        return code
