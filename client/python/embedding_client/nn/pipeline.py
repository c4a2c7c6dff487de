"""Pipelined training: pushes in the background, lookups ahead of time.

A remote module's training step waits for the network twice: the lookup
before the forward pass and the push after backward(). Two options of
RemoteEmbedding(Bag) take them off the critical path; both are off by
default, and then training is exactly synchronous.

- max_pushes_in_flight=N (push="backward" only): backward() hands the
  push to a background sender and returns. The sender sends the module's
  pushes one at a time, in order; backward() blocks while N are queued or
  being sent. Each push carries its exactly-once sequence number, taken
  when it is sent, so the client's retries of an UNAVAILABLE push are
  applied once. A push that fails is raised by the module's next forward(),
  backward(), prefetch() or flush(). flush() waits until every push is
  applied (or raises the first failure).
- prefetch(next_input, ...) starts the lookup of the next batch in the
  background; the next forward() with the same input (equal indices,
  offsets and weights) takes its rows instead of calling the server.
  Another input discards the prefetched rows.

Staleness (how many of this module's own pushes a looked-up row may miss):
synchronous: 0. With max_pushes_in_flight=N: up to N (the pushes still
queued when forward() runs). With prefetch issued before the current
step's backward(): one more, the current step's push. So a row is at most
N + 1 steps stale, as in a bounded-staleness (stale synchronous) parameter
server with bound N + 1; pushes of other trainers are asynchronous in any
case. flush() after backward() and prefetch() after flush() make a step
exactly synchronous again.
"""

import concurrent.futures
import threading

import numpy as np


def _same_request(a, b):
    return len(a) == len(b) and all(
        (x is None and y is None) or
        (x is not None and y is not None and x.shape == y.shape and
         x.dtype == y.dtype and np.array_equal(x, y))
        for x, y in zip(a, b))


class Pipeline:
    """The background sender and the prefetched lookup of one module.

    Used from the training thread (forward, backward, prefetch, flush);
    the two worker threads only run the calls handed to them.
    """

    def __init__(self, max_pushes_in_flight):
        self._capacity = max(1, max_pushes_in_flight)
        self._slots = threading.Semaphore(self._capacity)
        self._lock = threading.Lock()
        self._error = None  # The first failed push, until raised.
        self._in_flight = 0
        self.most_in_flight = 0  # The largest number queued at once.
        self._sender = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="embedding-push")
        self._prefetcher = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="embedding-prefetch")
        self._prefetched = None  # (request, future) of the next lookup.
        # Lookups answered by a prefetch, and prefetches not used.
        self.prefetch_hits = 0
        self.prefetch_misses = 0

    def push(self, send):
        """Queues send(); blocks while the queue is full."""
        self.raise_failure()
        self._slots.acquire()
        with self._lock:
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
        self._sender.submit(self._send, send)

    def _send(self, send):
        try:
            send()
        except BaseException as error:  # Raised to the training thread.
            with self._lock:
                if self._error is None:
                    self._error = error
        finally:
            with self._lock:
                self._in_flight -= 1
            self._slots.release()

    def wait(self):
        """Waits until every queued push is sent (or failed)."""
        for _ in range(self._capacity):
            self._slots.acquire()
        for _ in range(self._capacity):
            self._slots.release()

    def flush(self):
        """wait(), then raises the first push that failed."""
        self.wait()
        self.raise_failure()

    def raise_failure(self):
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def prefetch(self, request, lookup):
        """Starts lookup() in the background for `request` (a tuple of
        numpy arrays or None), replacing an earlier prefetch."""
        self.raise_failure()
        self._prefetched = (request, self._prefetcher.submit(lookup))

    def lookup(self, request, lookup):
        """The rows of `request`: the prefetched ones when they are for
        this request, else lookup()'s."""
        self.raise_failure()
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None:
            if _same_request(prefetched[0], request):
                self.prefetch_hits += 1
                return prefetched[1].result()
            self.prefetch_misses += 1
        return lookup()
