"""A TCP proxy that adds a fixed one-way delay in each direction: a link
with a round-trip time on one machine (no `tc netem` needed).

    /usr/bin/python3 tests/bench/delay_proxy.py --target 127.0.0.1:50051 \\
        --one_way_ms 2.5 [--port 0] [--port_file PATH]

listens on 127.0.0.1 (--port, 0: any free port, written to --port_file
and printed) and forwards every connection's bytes to --target and back,
each byte leaving the proxy --one_way_ms after it arrived, in order: a
round trip through it takes 2 x one_way_ms more than a direct one. The
link's bandwidth is not limited (only delayed). Any TCP protocol runs over
it unchanged (gRPC's HTTP/2 included).

From Python:

    with DelayProxy("127.0.0.1:50051", one_way_ms=2.5) as proxy:
        client = EmbeddingClient(proxy.address)      # threads, in-process

    with spawn_proxy("127.0.0.1:50051", one_way_ms=2.5) as address:
        ...                                           # its own process

A benchmark should use spawn_proxy: the in-process proxy's threads take
the caller's GIL between socket calls.

Each direction of a connection is one thread: it waits in select() for
bytes to read or for the next chunk to fall due (microsecond timeouts),
time-stamps what it reads, and sends each chunk once it is due. A full
destination blocks the send, and so the reading: the link's buffer is
TCP's, as on a real link. (Also tried, and no better within this
machine's noise: a reader and a writer thread per direction handing chunks
over a queue, and one select() loop for all connections. On a busy
machine, each direction's wake-up comes a few tenths of a millisecond
late: time a 1-row call through the proxy to know the real round trip.)

Measured on this 2-core machine, busy with builds (a Python client's
Lookups against embedding_server, medians): zero delay costs 1-row calls
~0.1-0.2 ms and 1 MiB replies ~0.7 ms (0.9x the direct rows/s at batch
4096); a --one_way_ms of 0.5 and 2.5 gave 1-row calls of ~1.7 and ~6.2 ms
(direct: ~0.25 ms). 1 MiB replies pay more than one round trip through
it, as on a real link: HTTP/2 flow control waits for window updates.
"""

import argparse
import collections
import contextlib
import functools
import pathlib
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

# Bytes read at once: a 1 MiB reply crosses in a few reads.
CHUNK = 1 << 18


def _split_address(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _shut(sock, how=socket.SHUT_RDWR):
    with contextlib.suppress(OSError):
        sock.shutdown(how)


def _forward(source, destination, delay_s):
    """Copies source's bytes to destination, each delay_s after it was
    read, until source ends (then ends destination's side too)."""
    chunks = collections.deque()  # (due, bytes), in order.
    ended = False
    while not ended or chunks:
        now = time.monotonic()
        while chunks and chunks[0][0] <= now:
            destination.sendall(chunks.popleft()[1])
        wait = max(0.0, chunks[0][0] - now) if chunks else None
        if ended:
            time.sleep(wait or 0.0)
            continue
        if select.select([source], [], [], wait)[0]:
            data = source.recv(CHUNK)
            if data:
                chunks.append((time.monotonic() + delay_s, data))
            else:
                ended = True
    _shut(destination, socket.SHUT_WR)


class DelayProxy:
    """The proxy, served by threads of this process (see the module's
    docstring). address: "127.0.0.1:port" to connect to."""

    def __init__(self, target, one_way_ms=0.0, port=0):
        if one_way_ms < 0:
            raise ValueError(f"one_way_ms must be >= 0, got {one_way_ms}")
        self.target = _split_address(target)
        self.one_way_ms = one_way_ms
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._sockets = set()  # Open connections' sockets, for close().
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # close()d.
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            pair = (client, server)
            with self._lock:
                self._sockets.update(pair)
            for sock in pair:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            finished = threading.Barrier(
                2, action=functools.partial(self._close, pair))
            for source, destination in (pair, pair[::-1]):
                threading.Thread(target=self._direction, daemon=True,
                                 args=(source, destination, pair,
                                       finished)).start()

    def _direction(self, source, destination, pair, finished):
        try:
            _forward(source, destination, self.one_way_ms / 1e3)
        except OSError:  # Ends the other direction too.
            for sock in pair:
                _shut(sock)
        finished.wait()  # The last direction to end closes both.

    def _close(self, pair):
        with self._lock:
            self._sockets.difference_update(pair)
        for sock in pair:
            sock.close()

    def close(self):
        """Stops accepting and ends open connections."""
        _shut(self._listener)
        self._listener.close()
        self._accepting.join()
        with self._lock:
            for sock in self._sockets:
                _shut(sock)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def spawn_proxy(target, one_way_ms, timeout=10.0):
    """Runs this file as a script (its own process, its own GIL) and yields
    its address; stops it on exit."""
    with tempfile.TemporaryDirectory() as scratch:
        port_file = pathlib.Path(scratch, "port")
        process = subprocess.Popen(
            [sys.executable, __file__, f"--target={target}",
             f"--one_way_ms={one_way_ms}", f"--port_file={port_file}"],
            stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + timeout
            while not (port_file.exists() and port_file.read_text()):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"delay_proxy for {target} did not "
                                       "start (see its stderr)")
                time.sleep(0.01)
            yield f"127.0.0.1:{int(port_file.read_text())}"
        finally:
            process.terminate()
            process.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True,
                        help="host:port to forward to")
    parser.add_argument("--one_way_ms", type=float, default=0.0,
                        help="delay of each direction, milliseconds")
    parser.add_argument("--port", type=int, default=0,
                        help="loopback port to listen on (0: any free one)")
    parser.add_argument("--port_file",
                        help="where to write the port listened on")
    args = parser.parse_args()
    proxy = DelayProxy(args.target, args.one_way_ms, args.port)
    if args.port_file:
        # Written whole, then renamed: a reader never sees half a number.
        partial = pathlib.Path(args.port_file + ".partial")
        partial.write_text(str(proxy.port))
        partial.rename(args.port_file)
    print(f"{proxy.address} -> {args.target}, {args.one_way_ms} ms each "
          "way", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    proxy.close()


if __name__ == "__main__":
    main()
