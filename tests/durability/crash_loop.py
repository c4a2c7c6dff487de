"""Crash loop: kill -9 the real server at random moments while it saves,
under a steady load of lookups and pushes, restart it on the same
directory and check that the restored table is one complete checkpoint.

Each iteration starts the server on the directory (periodic incremental
saves every second, a full one every third), then runs three threads: a
saver calling SaveCheckpoint back to back (full and incremental in turn),
a reader doing lookups and a single pusher. After a random 0.3-1.2 s the
server gets SIGKILL; the next iteration's start restores the table.

How a restored table shows it is one complete checkpoint: every push adds
exactly 1.0 (SGD, lr 1, gradient -1) to a set of rows that is a function of
the push's number only (Ledger.rows_of), so the table at version V is known
exactly: start + how often each row was pushed in pushes 1..V. A mix of two
checkpoints, a torn row or a lost delta disagrees with that for some row.
The restored version must also be at least that of the last save
acknowledged before the kill, and at most that of the last push sent.

    python3 -m tests.durability.crash_loop --iterations 200   # long mode
    (scripts/crash_loop.sh N runs this from the build tree.)
"""

import argparse
import dataclasses
import pathlib
import random
import secrets
import sys
import tempfile
import threading
import time

import numpy as np

from embedding_client import (SGD, EmbeddingClient, EmbeddingError,
                              NotFoundError)
from tests.durability.checkpoint_files import stray_entries
from tests.durability.harness import DurableServer

TABLE = "crash_loop"
ROWS, DIM = 50_000, 16
ROWS_PER_PUSH = 500
FLAGS = ("--checkpoint_interval_s=1", "--full_checkpoint_every=3",
         "--checkpoint_keep=2")
KILL_AFTER_SECONDS = (0.3, 1.2)


class Ledger:
    """What the table holds after each push: push n (1-based, counted from
    the table's creation) adds 1.0 to ROWS_PER_PUSH distinct rows that
    depend on n only, so a retried push number touches the same rows."""

    # The rows of push n: an arithmetic progression mod ROWS whose step is
    # coprime with ROWS, so they are distinct.
    _STEP = 7
    _START = 7919

    def __init__(self):
        # Row r, column c starts at r + c / 32: distinct and exact in
        # float32 even after thousands of +1.0 (fewer than 24 bits).
        self.start = (np.arange(ROWS, dtype=np.float32)[:, None] +
                      np.arange(DIM, dtype=np.float32)[None, :] / 32)
        self.created_version = None

    def rows_of(self, pushes):
        """Rows of each push numbered in `pushes`, [len(pushes), n]."""
        first = (np.asarray(pushes, np.int64) * self._START) % ROWS
        return (first[:, None] +
                np.arange(ROWS_PER_PUSH, dtype=np.int64) * self._STEP) % ROWS

    def table_at(self, version):
        pushes = np.arange(1, version - self.created_version + 1)
        counts = np.bincount(self.rows_of(pushes).ravel(), minlength=ROWS)
        return self.start + counts.astype(np.float32)[:, None]


@dataclasses.dataclass
class Summary:
    iterations: int = 0
    failures: list = dataclasses.field(default_factory=list)
    kills_during_save: int = 0  # A SaveCheckpoint call was in flight.
    kills_mid_write: int = 0  # A checkpoint was half written on disk.
    saves: int = 0
    pushes: int = 0
    lookups: int = 0
    seconds: float = 0.0

    def add(self, load, during_save, seconds):
        """Counts an iteration that ended with the kill of `load`."""
        self.iterations += 1
        self.kills_during_save += during_save
        self.kills_mid_write += bool(load.leftovers)
        self.saves += load.saves
        self.pushes += load.pushes
        self.lookups += load.lookups
        self.seconds = seconds

    def __str__(self):
        return (f"{self.iterations} iterations, {len(self.failures)} "
                f"failures, {self.kills_during_save} kills during a save "
                f"({self.kills_mid_write} with a checkpoint half written), "
                f"{self.saves} saves, {self.pushes} pushes and "
                f"{self.lookups} lookups acknowledged, {self.seconds:.0f} s")


class Load:
    """The saver, reader and pusher threads of one iteration, on a client
    of their own whose client_id is the same in every iteration (one
    trainer across the restarts). After the kill, `acked_save_version` is
    the newest version a save acknowledged and `sent_version` the highest
    version a push may have reached."""

    def __init__(self, address, client_id, ledger, version):
        self.client = EmbeddingClient(address, client_id=client_id)
        self.ledger = ledger
        self.version = version  # Acknowledged by the last push.
        self.sent_version = version
        self.acked_save_version = None
        self.saving = False
        self.leftovers = set()  # stray_entries() after the kill.
        self.saves = self.lookups = self.pushes = 0
        self.errors = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._guard, args=(run,))
                         for run in (self._save, self._look_up, self._push)]

    def start(self):
        for thread in self._threads:
            thread.start()

    def stop(self):
        """Right before the kill: the threads start no new call, and the
        errors of the calls in flight are the kill's, not failures."""
        self._stop.set()

    def join(self):
        for thread in self._threads:
            thread.join()
        self.client.close()

    def _guard(self, run):
        try:
            run()
        except EmbeddingError:
            if not self._stop.is_set():
                self.errors.append(f"{run.__name__}: {sys.exc_info()[1]}")

    def _save(self):
        while not self._stop.is_set():
            self.saving = True
            [saved] = self.client.save_checkpoint(
                [TABLE], incremental=self.saves % 2 == 1)
            self.saving = False
            self.acked_save_version = saved.version
            self.saves += 1

    def _look_up(self):
        rng = np.random.default_rng()
        while not self._stop.is_set():
            self.client.lookup(TABLE, rng.integers(0, ROWS, 256))
            self.lookups += 1

    def _push(self):
        """Push n carries sequence n: one sent before a kill but not in the
        restored table must not be taken for a duplicate when sent again
        (the exactly-once window is part of the same cut)."""
        grad = np.full((ROWS_PER_PUSH, DIM), -1.0, np.float32)
        while not self._stop.is_set():
            number = self.version + 1 - self.ledger.created_version
            self.sent_version = self.version + 1
            result = self.client.push_gradients(
                TABLE, self.ledger.rows_of([number])[0], grad,
                sequence=number)
            if result.duplicate or result.version != self.version + 1:
                self.errors.append(
                    f"push {number} got version {result.version} "
                    f"(duplicate: {result.duplicate}), expected "
                    f"{self.version + 1}")
                return
            self.version = result.version
            self.pushes += 1


def _check_restored(durable, ledger, previous):
    """The failures of the table restored after a kill (empty when it is
    one complete checkpoint); `previous` is the killed iteration's Load."""
    client = durable.client
    try:
        info = client.get_table(TABLE)
    except NotFoundError:
        if previous.acked_save_version is not None:
            return [f"table missing after a save of version "
                    f"{previous.acked_save_version} was acknowledged"]
        return []
    failures = []
    version = info.version
    if previous.acked_save_version is not None and \
            version < previous.acked_save_version:
        failures.append(f"restored version {version} is older than the "
                        f"acknowledged save of {previous.acked_save_version}")
    if version > previous.sent_version:
        failures.append(f"restored version {version} is past the last push "
                        f"sent ({previous.sent_version})")
    if info.last_checkpoint is None or info.last_checkpoint.version != version:
        failures.append(f"restored version {version}, last_checkpoint "
                        f"{info.last_checkpoint}")
    expected = ledger.table_at(version)
    rows = client.read_rows(TABLE)
    wrong = np.flatnonzero((rows != expected).any(axis=1))
    if wrong.size:
        pushes = np.round(rows[wrong[0]] - ledger.start[wrong[0]])
        failures.append(
            f"version {version} restored, but {wrong.size} rows differ from "
            f"it; row {wrong[0]} holds {pushes[0]:.0f} pushes, expected "
            f"{expected[wrong[0], 0] - ledger.start[wrong[0], 0]:.0f}: a "
            f"mix of checkpoints")
    # Saves may have begun since the start: only what the crash left counts.
    leftovers = previous.leftovers & stray_entries(durable.checkpoint_dir,
                                                   TABLE)
    if leftovers:
        failures.append(f"temporary entries the crash left are still there "
                        f"after the restart: {sorted(leftovers)}")
    return failures


def _create_table(client, ledger):
    info = client.create_table(TABLE, ROWS, DIM, optimizer=SGD(lr=1.0),
                               weights=ledger.start)
    ledger.created_version = info.version
    return info.version


def run(iterations, directory, seed=0, report=print):
    """Runs the loop on `directory`; returns a Summary. Every failure is
    recorded (with its iteration) and the loop goes on."""
    rng = random.Random(seed)
    ledger = Ledger()
    summary = Summary()
    begin = time.monotonic()
    durable = DurableServer(directory, *FLAGS)
    client_id = secrets.token_hex(16)
    previous = None
    def fail(where, failures):
        for failure in failures:
            summary.failures.append(f"{where}: {failure}")
            report(f"FAILED {where}: {failure}")

    try:
        for iteration in range(iterations):
            durable.start()
            if previous is not None:
                fail(f"iteration {iteration}",
                     _check_restored(durable, ledger, previous))
            try:
                version = durable.client.get_table(TABLE).version
            except NotFoundError:
                version = _create_table(durable.client, ledger)
            load = Load(durable.address, client_id, ledger, version)
            load.start()
            time.sleep(rng.uniform(*KILL_AFTER_SECONDS))
            during_save = load.saving
            load.stop()
            durable.kill()
            load.join()
            load.leftovers = stray_entries(directory, TABLE)
            fail(f"iteration {iteration}", load.errors)
            summary.add(load, during_save, time.monotonic() - begin)
            previous = load
            if (iteration + 1) % 10 == 0:
                report(f"after {iteration + 1} iterations: {summary}")
        durable.start()
        fail("final restart", _check_restored(durable, ledger, previous))
    finally:
        durable.close()
    summary.seconds = time.monotonic() - begin
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", help="checkpoint directory (default: a new "
                        "temporary one, removed afterwards)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crash-loop-") as scratch:
        directory = pathlib.Path(args.dir or scratch)
        directory.mkdir(parents=True, exist_ok=True)
        summary = run(args.iterations, directory, args.seed)
    print(f"crash loop: {summary}")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
