"""Checkpoint benchmarks (issue 9), one run, medians of the repetitions:

1. full save speed: bytes_written / wall time of SaveCheckpoint of an
   Adagrad table, beside a plain sequential write of as many bytes to the
   same directory (`dd if=/dev/zero bs=1M conv=fsync`), run in turn;
   target >= 0.5x;
2. lookups and pushes (embedding_bench, closed loop) while full saves of
   the table they use run back to back, against the same without saves;
   targets >= 0.7x (lookups) and >= 0.5x (pushes);
3. restore: kill -9 after a save, start again, time to SERVING (from the
   process start, and from the port file) beside the bytes read.

    PYTHONPATH=build/python:client/python:. /usr/bin/python3 \\
        tests/bench/checkpoint_bench.py [--rows 1000000 --dim 64 --reps 3]

Prints the results as a Markdown section for BENCHMARKS.md ("Checkpoints")
and, with --json FILE, as JSON. Binaries from build/ (tests/testing/
binaries.py). The checkpoint directory is a new one under --dir (default
/tmp), removed afterwards.
"""

import argparse
import json
import os
import pathlib
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from embedding_client import Adagrad, EmbeddingClient  # noqa: E402
from tests.testing.binaries import bench_binary  # noqa: E402
from tests.testing.server_process import ServerProcess  # noqa: E402

TABLE = "checkpoint_bench"
TARGETS = {"full save vs dd": 0.5, "lookup": 0.7, "push_adagrad": 0.5}


def median(values):
    return statistics.median(values)


def _parent(pid):
    with open(f"/proc/{pid}/stat") as file:
        return int(file.read().rsplit(")", 1)[1].split()[1])


class Background:
    """Calls self.step() over and over in a thread while the `with` block
    runs (the step under way when it ends is finished)."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.step()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class OthersMonitor(Background):
    """Samples, twice a second, the processes of others (not this one's
    descendants, nor kernel threads) that use a CPU (state R): the machine
    is shared, and the report says how quiet it was."""

    def __init__(self):
        super().__init__()
        self.samples = 0
        self.busy_samples = 0
        self.seen = set()

    def _ignored(self, pid):
        """This process's descendants, and kernel threads (kthreadd's)."""
        while pid > 2:
            if pid == os.getpid():
                return True
            pid = _parent(pid)
        return pid == 2

    def _sample(self):
        busy = set()
        for entry in os.listdir("/proc"):
            try:
                pid = int(entry)
                with open(f"/proc/{pid}/stat") as file:
                    name, rest = file.read().rsplit(")", 1)
                if rest.split()[0] == "R" and not self._ignored(pid):
                    busy.add(name.split("(", 1)[1])
            except (ValueError, OSError):  # Not a pid, or gone.
                continue
        return busy - {"ps"}

    def step(self):
        if self._stop.wait(0.5):
            return
        busy = self._sample()
        self.samples += 1
        self.busy_samples += bool(busy)
        self.seen |= busy

    def __str__(self):
        if not self.busy_samples:
            return "no other process was running in any of the " \
                   f"{self.samples} samples taken during the run"
        return (f"other processes were running in {self.busy_samples} of "
                f"{self.samples} samples taken during the run "
                f"({', '.join(sorted(self.seen))})")


def dd_seconds(directory, megabytes):
    """Wall time of a sequential write of `megabytes` MiB, fsynced."""
    path = directory / "dd.anchor"
    command = ["dd", "if=/dev/zero", f"of={path}", "bs=1M",
               f"count={megabytes}", "conv=fsync", "status=none"]
    os.sync()  # Neither measure pays for the other's writeback.
    begin = time.monotonic()
    subprocess.run(command, check=True)
    seconds = time.monotonic() - begin
    path.unlink()
    return seconds, " ".join(shlex.quote(c) for c in command)


def timed_save(client, table):
    os.sync()
    begin = time.monotonic()
    [saved] = client.save_checkpoint([table])
    return saved, time.monotonic() - begin


def bench_save_speed(client, directory, reps):
    """[(save bytes/s, dd bytes/s)] per repetition, and the dd command."""
    saved, _ = timed_save(client, TABLE)  # Warm-up: the directory exists.
    megabytes = -(-saved.bytes_written // (1 << 20))
    results = []
    for _ in range(reps):
        dd, command = dd_seconds(directory, megabytes)
        saved, seconds = timed_save(client, TABLE)
        results.append((saved.bytes_written / seconds,
                        megabytes * (1 << 20) / dd))
    return saved.bytes_written, results, command


class SaveLoop(Background):
    """Full saves of `table` back to back while the `with` block runs."""

    def __init__(self, address, table):
        super().__init__()
        self._client = EmbeddingClient(address, timeout=600)
        self._table = table
        self.saves = 0

    def step(self):
        self._client.save_checkpoint([self._table])
        self.saves += 1

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self._client.close()


def run_bench(address, workload, args, setup=False):
    flags = [f"--address={address}", f"--workload={workload}",
             f"--table_rows={args.rows}", f"--dim={args.dim}",
             f"--batch={args.batch}", "--threads=1", "--channels=2",
             "--outstanding=4",
             f"--duration_s={0.1 if setup else args.seconds}",
             f"--warmup_s={0 if setup else 0.5}", "--json=-"]
    result = subprocess.run([str(bench_binary()), *flags],
                            capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert report["errors"] == 0, report["first_error"]
    return report, f"embedding_bench {' '.join(flags[1:])}"


def bench_table(workload, args):
    """embedding_bench's default table name for the workload."""
    kind = "lookup" if workload == "lookup" else workload
    return f"bench_{kind}_{args.rows}x{args.dim}_s1"


def bench_during_saves(address, args):
    """{workload: [(rows/s with saves, rows/s without, saves)]}."""
    results = {}
    commands = []
    for workload in ("lookup", "push_adagrad"):
        run_bench(address, workload, args, setup=True)  # Creates the table.
        results[workload] = []
        for _ in range(args.reps):
            alone, command = run_bench(address, workload, args)
            with SaveLoop(address, bench_table(workload, args)) as saves:
                during, _ = run_bench(address, workload, args)
            results[workload].append((during["rows_per_s"],
                                      alone["rows_per_s"], saves.saves))
        commands.append(command)
    return results, commands


def bench_restore(server, reps):
    """[(seconds from start to SERVING, from the port file, bytes read)]."""
    results = []
    for _ in range(reps):
        server.stop(sig=signal.SIGKILL)
        begin = time.monotonic()
        server.start(wait_serving=False)
        listening = time.monotonic()
        server.wait_serving(timeout=600)
        serving = time.monotonic()
        match = re.search(r'restored table "' + TABLE + r'": .* (\d+) bytes '
                          r"read", server.log())
        assert match, server.log()
        results.append((serving - begin, serving - listening,
                        int(match.group(1))))
    return results


def ratio_row(name, got, anchor, unit, target):
    ratio = got / anchor
    verdict = "met" if ratio >= target else "**not met**"
    return (f"| {name} | {got:{unit}} | {anchor:{unit}} | {ratio:.2f}x | "
            f">= {target}x: {verdict} |")


def markdown(args, saved_bytes, save, save_command, during, bench_commands,
             restore, conditions):
    mb = (1 << 20)
    save_speed = median(s for s, _ in save)
    dd_speed = median(d for _, d in save)
    lines = [
        "## Checkpoints",
        "",
        f"Generated by `tests/bench/checkpoint_bench.py --rows {args.rows} "
        f"--dim {args.dim} --reps {args.reps} --seconds {args.seconds} "
        f"--batch {args.batch}` on {time.strftime('%Y-%m-%d')}; medians of "
        f"{args.reps} repetitions from one run, ratios within that run. "
        "scripts/run_benchmarks.sh does not regenerate this section.",
        "",
        f"- Conditions: {conditions}",
        f"- Table: {args.rows} x {args.dim} float32, Adagrad (weights + one "
        f"accumulator per weight); a full checkpoint of it is "
        f"{saved_bytes / mb:.0f} MiB.",
        "",
        "| measure | with checkpoints | anchor | ratio | target |",
        "|---|---:|---:|---:|---|",
        ratio_row("full save MiB/s vs `dd conv=fsync` MiB/s, same directory",
                  save_speed / mb, dd_speed / mb, ".0f",
                  TARGETS["full save vs dd"]),
    ]
    for workload, runs in during.items():
        lines.append(ratio_row(
            f"{workload} rows/s during back-to-back full saves vs without "
            f"(batch {args.batch})", median(r[0] for r in runs),
            median(r[1] for r in runs), ",.0f", TARGETS[workload]))
    to_serving = median(r[0] for r in restore)
    from_port = median(r[1] for r in restore)
    read = median(r[2] for r in restore)
    lines += [
        "",
        f"Restore of the {args.rows} x {args.dim} Adagrad table after "
        f"kill -9: SERVING {to_serving:.2f} s after the process started "
        f"({from_port:.2f} s after its port file), {read / mb:.0f} MiB read "
        f"({read / mb / to_serving:.0f} MiB/s over the whole start).",
        "",
        "Every repetition (save MiB/s, dd MiB/s; rows/s with, without saves, "
        "saves during the run; restore s to SERVING, s from the port file):",
        "",
        "- save: " + ", ".join(f"{s / mb:.0f} / {d / mb:.0f}"
                               for s, d in save),
    ]
    for workload, runs in during.items():
        lines.append(f"- {workload}: " + ", ".join(
            f"{w:,.0f} / {a:,.0f} ({n} saves)" for w, a, n in runs))
    lines += [
        "- restore: " + ", ".join(f"{t:.2f} s / {p:.2f} s"
                                  for t, p, _ in restore),
        "",
        "Commands: the server ran as `embedding_server --checkpoint_dir=DIR "
        "--checkpoint_keep=1`; the anchor was "
        f"`{save_command.replace(str(args.directory), 'DIR')}`; the loads "
        "were " + ", ".join(f"`{c}`" for c in bench_commands) + ".",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3,
                        help="measured seconds of each load run")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dir", default="/tmp",
                        help="where the checkpoint directory is made")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="checkpoint-bench-",
                                     dir=args.dir) as scratch, \
            OthersMonitor() as others:
        args.directory = pathlib.Path(scratch)
        server = ServerProcess("--checkpoint_keep=1", startup_timeout=600,
                               checkpoint_dir=args.directory)
        server.start()
        try:
            with EmbeddingClient(server.address, timeout=600) as client:
                client.create_table(TABLE, args.rows, args.dim,
                                    optimizer=Adagrad(lr=0.1))
                saved_bytes, save, save_command = bench_save_speed(
                    client, args.directory, args.reps)
            restore = bench_restore(server, args.reps)
            during, bench_commands = bench_during_saves(server.address, args)
        finally:
            server.stop(sig=signal.SIGKILL)
            server.close()
    conditions = (f"{os.cpu_count()} cores; checkpoint directory on "
                  f"{args.dir} (warm page cache); {others}")
    print(markdown(args, saved_bytes, save, save_command, during,
                   bench_commands, restore, conditions))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(dict(
            saved_bytes=saved_bytes, save=save, during=during,
            restore=restore), indent=1))


if __name__ == "__main__":
    main()
