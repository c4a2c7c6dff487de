"""Starts the real embedding_server binary on a free loopback port for tests.

    with ServerProcess() as server:
        channel = grpc.insecure_channel(server.address)

    # Durability: a checkpoint directory, restarts on it, kill -9.
    server = ServerProcess(checkpoint_dir=path)
    server.start()                  # returns once health says SERVING
    server.restart(sig=signal.SIGKILL)
    server.close()

    # TLS: the health probe needs the client side of it (and, for a
    # certificate that does not name 127.0.0.1, the name to expect).
    server = ServerProcess(f"--tls_cert_file={crt}", f"--tls_key_file={key}",
                           tls=ProbeTls(grpc.ssl_channel_credentials(ca)))
    server = ServerProcess("--allow_insecure", listen_host="0.0.0.0")

    # Robustness: what the process holds, from /proc (see proc.py).
    server.peak_rss_bytes(); server.thread_count(); server.cpu_seconds()
    server.send_signal(signal.SIGTERM); server.wait_exit(timeout=3)

The binary comes from $EMBEDDING_SERVER (set by ctest) or build/server/
(see binaries.py). The server binds port 0 and reports the port it got
through --port_file, so parallel tests never race for a port.
"""

import dataclasses
import pathlib
import signal
import subprocess
import tempfile
import time

import grpc

from tests.testing import proc
from tests.testing.binaries import server_binary

# grpc.health.v1.Health/Check, spoken without generated stubs (grpcio's
# health package is not a Debian package): the request for service "" is
# empty; the reply is field 1, a ServingStatus varint (absent for UNKNOWN).
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = 1
NOT_SERVING = 2


def _serving_status(reply):
    if not reply:
        return 0
    assert reply[0] == 0x08 and len(reply) == 2, f"health reply {reply!r}"
    return reply[1]


@dataclasses.dataclass(frozen=True)
class ProbeTls:
    """How a client reaches a TLS server: its channel credentials and, when
    the server's certificate does not name the address, the name to expect
    (grpc.ssl_target_name_override)."""
    credentials: grpc.ChannelCredentials
    server_name: str = None

    def channel(self, address):
        options = ([("grpc.ssl_target_name_override", self.server_name)]
                   if self.server_name else [])
        return grpc.secure_channel(address, self.credentials, options)


def open_channel(address, tls=None):
    """A channel to `address`: plaintext, or over `tls` (a ProbeTls or
    grpc.ChannelCredentials)."""
    if tls is None:
        return grpc.insecure_channel(address)
    if isinstance(tls, grpc.ChannelCredentials):
        tls = ProbeTls(tls)
    return tls.channel(address)


def health_status(address, timeout=1.0, tls=None):
    """The server's health (SERVING, NOT_SERVING, 0 for UNKNOWN); raises
    grpc.RpcError when the call fails. tls: as open_channel."""
    with open_channel(address, tls) as channel:
        check = channel.unary_unary(
            _HEALTH_CHECK, request_serializer=lambda _: b"",
            response_deserializer=_serving_status)
        return check(None, timeout=timeout)


# SIGTERM the server when the test process dies, so a test run that aborts
# (e.g. inside torch) leaves no server behind. setpriv sets it before it
# execs the server: a preexec_fn would make subprocess fork() instead of
# vfork(), and gRPC's fork handlers abort a process whose channels are busy
# in other threads.
_DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "TERM", "--")


class ServerProcess:
    """A running embedding_server; stops it (SIGTERM) on exit.

    flags: extra command-line flags. checkpoint_dir: passed as
    --checkpoint_dir (it must exist). command_prefix: a command the server
    runs under (e.g. setpriv dropping capabilities). tls: how the health
    probe reaches a TLS server (ProbeTls or grpc.ChannelCredentials; pass
    the server's TLS flags in `flags`). listen_host: the host of
    --listen_address (`address` still connects through 127.0.0.1). Each
    start writes its own log; log() reads the latest one.
    """

    def __init__(self, *flags, startup_timeout=30.0, checkpoint_dir=None,
                 command_prefix=(), tls=None, listen_host="127.0.0.1"):
        self._flags = list(flags)
        if checkpoint_dir is not None:
            self._flags.append(f"--checkpoint_dir={checkpoint_dir}")
        self._startup_timeout = startup_timeout
        self._command_prefix = list(command_prefix)
        self.tls = tls
        self._listen_host = listen_host
        self._process = None
        self._dir = None
        self._log = None
        self._starts = 0
        self.port = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self._process.pid

    def running(self):
        """True while the server process has not exited."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self, wait_serving=True, same_port=False):
        """Starts the server and waits for its port; with wait_serving, also
        until health reports SERVING (a restore on start comes before).
        same_port: listen on the port of the previous start (a restarted
        shard keeps its address in its cluster's list)."""
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="embedding-server-")
        self._starts += 1
        port_file = pathlib.Path(self._dir.name) / f"port.{self._starts}"
        self._log = open(
            pathlib.Path(self._dir.name) / f"server.{self._starts}.log", "w+")
        self._process = subprocess.Popen(
            [*self._command_prefix, *_DIE_WITH_PARENT, str(server_binary()),
             f"--listen_address={self._listen_host}:"
             f"{self.port if same_port else 0}",
             f"--port_file={port_file}",
             *self._flags],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            self._check_alive("exited while starting")
            text = port_file.read_text() if port_file.exists() else ""
            if text.strip():
                self.port = int(text)
                if wait_serving:
                    self.wait_serving(deadline - time.monotonic())
                return
            time.sleep(0.02)
        self.stop(sig=signal.SIGKILL)
        raise RuntimeError(f"embedding_server did not start:\n{self.log()}")

    def wait_serving(self, timeout=30.0):
        """Waits until health reports SERVING; returns the seconds waited.
        Raises RuntimeError if the server exits or the time runs out."""
        begin = time.monotonic()
        while time.monotonic() - begin < timeout:
            self._check_alive("exited before SERVING")
            try:
                if health_status(self.address, tls=self.tls) == SERVING:
                    return time.monotonic() - begin
            except grpc.RpcError:
                pass
            time.sleep(0.01)
        raise RuntimeError(
            f"embedding_server not SERVING after {timeout:.0f} s:\n"
            f"{self.log()}")

    def _check_alive(self, what):
        if self._process.poll() is not None:
            raise RuntimeError(
                f"embedding_server {what} with {self._process.returncode}:"
                f"\n{self.log()}")

    def rss_bytes(self):
        """The server's resident set size now (VmRSS), in bytes."""
        return proc.rss_bytes(self.pid)

    def peak_rss_bytes(self):
        """The largest resident set size the server has had (VmHWM)."""
        return proc.peak_rss_bytes(self.pid)

    def thread_count(self):
        """The server's threads now."""
        return proc.thread_count(self.pid)

    def cpu_seconds(self):
        """User plus system CPU time the server has used so far."""
        return proc.cpu_seconds(self.pid)

    def send_signal(self, sig):
        """Sends `sig` and returns at once (stop() also waits)."""
        self._process.send_signal(sig)

    def wait_exit(self, timeout):
        """Waits up to `timeout` seconds for the server to exit; returns its
        exit code (a negative signal number when a signal killed it), or
        None if it still runs. The process stays this object's until
        stop()."""
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log(self):
        """The output of the latest start."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def stop(self, timeout=20.0, sig=signal.SIGTERM):
        """Sends `sig` (SIGTERM by default) and returns the exit code (a
        negative signal number when a signal killed it). The logs stay
        readable until close()."""
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
        return code

    def kill(self):
        """kill -9: no final checkpoint, no cleanup."""
        return self.stop(sig=signal.SIGKILL)

    def restart(self, sig=signal.SIGTERM, wait_serving=True,
                same_port=False):
        """Stops the server with `sig` and starts it again with the same
        flags (so on the same checkpoint directory); returns the exit code
        of the stop."""
        code = self.stop(sig=sig)
        self.start(wait_serving=wait_serving, same_port=same_port)
        return code

    def close(self):
        """Stops the server (SIGTERM) and removes its logs."""
        self.stop()
        if self._log is not None:
            self._log.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
