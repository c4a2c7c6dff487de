"""Python client benchmark (issue 14): the Python client's lookup and push
rows/s beside the C++ client's, and training steps of RemoteEmbedding
(synchronous and pipelined) beside the C++ client's two calls and a local
nn.Embedding, against one server, in the same run.

    PYTHONPATH=build/python:client/python:. /usr/bin/python3 \\
        tests/bench/python_bench.py \\
        --server_binary build/server/embedding_server \\
        [--bench_binary build/tests/bench/embedding_bench --reps 5]

It starts one embedding_server (--server_binary, else $EMBEDDING_SERVER,
else build/), lets embedding_bench create its --rows x --dim float32 tables
(one for lookups, an SGD one for pushes), then measures each MEASURES entry
at each batch size: one caller, one call in flight, a closed loop of
--duration s after --warmup s, over uniform random ids (a pool of 64
pre-built batches cycled, as embedding_bench does). "C++ client" is
embedding_bench --client_library --threads=1 --outstanding=1 (the C++
EmbeddingClient); "C++ stub" is embedding_bench's own client (generated
stub, pre-built requests, no client library) with one call in flight.
Repetitions are interleaved (every measure of a repetition before the next
repetition); the medians are printed as a Markdown table with each
measure's ratio to the C++ client and to the C++ stub doing the same
operation.

Training steps count the rows of a batch once per step (a lookup and a
push of them). To add a measure: write `def measure_x(run, batch) ->
rows/s` and list it in MEASURES with the operation it is compared on
("lookup", "push" or "step").

Across a link with a round-trip time: `--rtt_ms 0,1,5` measures only the
training steps (STEP_MEASURES), at each round-trip time, through a
delay_proxy.py process (its own process: --rtt_ms / 2 each way; 0 is the
direct connection) between the clients and the server, and prints one
table row per batch and round-trip time, with the time a 1-row lookup
took on that path. The local step does not cross the link: it is measured
once per batch and repetition.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from embedding_client import EmbeddingClient  # noqa: E402
from tests.bench.delay_proxy import spawn_proxy  # noqa: E402
from tests.testing.binaries import bench_binary  # noqa: E402
from tests.testing.server_process import ServerProcess  # noqa: E402

# Distinct batches cycled through, as embedding_bench's --request_pool.
POOL = 64
# The C++ side's workload for each operation.
CPP_WORKLOADS = {"lookup": "lookup", "push": "push_sgd"}


@dataclasses.dataclass
class Run:
    """What every measure gets: the server, its tables (operation -> name),
    a Python client and the command-line arguments."""
    address: str
    tables: dict
    client: EmbeddingClient
    args: argparse.Namespace


def cpp_bench(run, operation, batch, duration, warmup, library=True):
    """One embedding_bench run, one thread with one call in flight, through
    the C++ client library or (library=False) the bench's own stub client;
    returns its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            str(bench_binary()), "--target=service",
            "--client_library" if library else "--channels=1",
            f"--workload={CPP_WORKLOADS[operation]}",
            f"--address={run.address}", f"--batch={batch}",
            f"--table_rows={run.args.rows}", f"--dim={run.args.dim}",
            f"--duration_s={duration}", f"--warmup_s={warmup}",
            "--threads=1", "--outstanding=1", f"--json={out.name}"]
        subprocess.run(command, check=True, capture_output=True, text=True)
        result = json.loads(pathlib.Path(out.name).read_text())
    if result["errors"]:
        raise RuntimeError(f"{command}: {result['first_error']}")
    return result


def closed_loop(call, batch, args):
    """rows/s of call(k) (k counting up) in a loop, one at a time, after
    args.warmup seconds of the same."""
    k = 0
    end = time.perf_counter() + args.warmup
    while time.perf_counter() < end:
        call(k)
        k += 1
    calls = 0
    start = time.perf_counter()
    end = start + args.duration
    while time.perf_counter() < end:
        call(k + calls)
        calls += 1
    return calls * batch / (time.perf_counter() - start)


def id_pool(batch, args):
    rng = np.random.default_rng(7)
    return [rng.integers(0, args.rows, batch, dtype=np.int64)
            for _ in range(POOL)]


def measure_cpp_lookup(run, batch):
    return cpp_bench(run, "lookup", batch, run.args.duration,
                     run.args.warmup)["rows_per_s"]


def measure_cpp_push(run, batch):
    return cpp_bench(run, "push", batch, run.args.duration,
                     run.args.warmup)["rows_per_s"]


def measure_stub_lookup(run, batch):
    return cpp_bench(run, "lookup", batch, run.args.duration,
                     run.args.warmup, library=False)["rows_per_s"]


def measure_stub_push(run, batch):
    return cpp_bench(run, "push", batch, run.args.duration,
                     run.args.warmup, library=False)["rows_per_s"]


def measure_python_lookup(run, batch):
    ids = id_pool(batch, run.args)
    table = run.tables["lookup"]
    return closed_loop(lambda k: run.client.lookup(table, ids[k % POOL]),
                       batch, run.args)


def measure_python_push(run, batch):
    ids = id_pool(batch, run.args)
    rng = np.random.default_rng(8)
    grads = [rng.normal(0, 1e-3, (batch, run.args.dim)).astype(np.float32)
             for _ in range(POOL)]
    table = run.tables["push"]
    return closed_loop(
        lambda k: run.client.push_gradients(table, ids[k % POOL],
                                            grads[k % POOL]),
        batch, run.args)


def measure_cpp_step(run, batch):
    """A training step's two calls through the C++ client, one after the
    other: a step takes the time of a lookup plus the time of a push."""
    return 1 / (1 / measure_cpp_lookup(run, batch) +
                1 / measure_cpp_push(run, batch))


def _remote_module(run, **options):
    # Imported here: the client measures need no torch.
    from embedding_client.nn import RemoteEmbedding
    return RemoteEmbedding(run.client, run.tables["push"], **options)


def _index_tensors(batch, args):
    import torch
    return [torch.from_numpy(ids) for ids in id_pool(batch, args)]


def measure_remote_step(run, batch):
    """RemoteEmbedding forward + backward (the lookup, then the push),
    synchronous: the default."""
    module, ids = _remote_module(run), _index_tensors(batch, run.args)
    return closed_loop(lambda k: module(ids[k % POOL]).sum().backward(),
                       batch, run.args)


def measure_pipelined_step(run, batch):
    """The same step pipelined: up to --pushes_in_flight pushes queued in
    the background and the next batch prefetched before this one's
    backward."""
    module = _remote_module(run,
                            max_pushes_in_flight=run.args.pushes_in_flight)
    ids = _index_tensors(batch, run.args)

    def step(k):
        rows = module(ids[k % POOL])
        module.prefetch(ids[(k + 1) % POOL])
        rows.sum().backward()

    rate = closed_loop(step, batch, run.args)
    module.flush()
    return rate


def measure_local_step(run, batch):
    """The same step on a local nn.Embedding(sparse=True) of the same size,
    stepped by torch.optim.SGD."""
    import torch
    local = torch.nn.Embedding(run.args.rows, run.args.dim, sparse=True)
    optimizer = torch.optim.SGD(local.parameters(), lr=0.01)
    ids = _index_tensors(batch, run.args)

    def step(k):
        optimizer.zero_grad()
        local(ids[k % POOL]).sum().backward()
        optimizer.step()

    return closed_loop(step, batch, run.args)


def one_row_lookup_ms(run):
    """Median milliseconds of a 1-row Python lookup: the path's round trip
    (the link's, the server's and the client's)."""
    table, ids = run.tables["lookup"], np.zeros(1, dtype=np.int64)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        run.client.lookup(table, ids)
        times.append(time.perf_counter() - start)
    return statistics.median(times[20:]) * 1e3


# (name, operation, measure). BASES: the ones the ratios divide by.
MEASURES = [
    ("C++ client lookup", "lookup", measure_cpp_lookup),
    ("C++ stub lookup", "lookup", measure_stub_lookup),
    ("Python client.lookup", "lookup", measure_python_lookup),
    ("C++ client push", "push", measure_cpp_push),
    ("C++ stub push", "push", measure_stub_push),
    ("Python client.push_gradients", "push", measure_python_push),
    ("C++ client lookup then push", "step", measure_cpp_step),
    ("RemoteEmbedding step, synchronous", "step", measure_remote_step),
    ("RemoteEmbedding step, pipelined", "step", measure_pipelined_step),
    ("local nn.Embedding step", "step", measure_local_step),
]
BASES = {"C++ client": {"lookup": "C++ client lookup",
                        "push": "C++ client push",
                        "step": "C++ client lookup then push"},
         "C++ stub": {"lookup": "C++ stub lookup", "push": "C++ stub push"},
         "synchronous step": {"step": "RemoteEmbedding step, synchronous"}}
# What --rtt_ms measures: the steps. LOCAL_STEP does not cross the link.
STEP_MEASURES = [entry for entry in MEASURES if entry[1] == "step"]
LOCAL_STEP = "local nn.Embedding step"
ONE_ROW = "1-row lookup ms"


def fmt_rate(rate):
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k"


def report(medians, batches, args):
    lines = [
        "## Python client against the C++ client",
        "",
        f"`{' '.join(['tests/bench/python_bench.py', *sys.argv[1:]])}`: "
        f"{args.rows} x {args.dim} float32 table, uniform random ids, one "
        f"caller with one call in flight, {args.duration} s per run after "
        f"{args.warmup} s warm-up, medians of {args.reps} interleaved "
        "repetitions, one run; the server and the client on the same "
        "machine.",
        "",
        "| measure | " + " | ".join(f"batch {b}" for b in batches) + " | " +
        " | ".join(f"/ {base} at {b}" for base in BASES for b in batches) +
        " |",
        "|---|" + "---:|" * (len(batches) * (1 + len(BASES)))]
    for name, operation, _ in MEASURES:
        cells = [fmt_rate(medians[name, b]) for b in batches]
        cells += [(f"{medians[name, b] / medians[base[operation], b]:.2f}x"
                   if operation in base else "")
                  for base in BASES.values() for b in batches]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_step(rate, batch):
    """rows/s and the step's time."""
    return f"{fmt_rate(rate)} ({batch / rate * 1e3:.2f} ms)"


def rtt_report(medians, batches, rtts, args):
    names = [name for name, _, _ in STEP_MEASURES]
    sync, pipelined, cpp = (BASES["synchronous step"]["step"],
                            "RemoteEmbedding step, pipelined",
                            BASES["C++ client"]["step"])
    lines = [
        "## Training steps across a link with a round-trip time",
        "",
        f"`{' '.join(['tests/bench/python_bench.py', *sys.argv[1:]])}`: "
        f"{args.rows} x {args.dim} float32 table, uniform random ids, one "
        f"caller, {args.duration} s per run after {args.warmup} s warm-up, "
        f"medians of {args.reps} interleaved repetitions, one run; the "
        "server and the client on the same machine, connected through "
        "tests/bench/delay_proxy.py (RTT / 2 each way; RTT 0: directly). "
        "Pipelined: max_pushes_in_flight="
        f"{args.pushes_in_flight}, the next batch prefetched before each "
        "backward(). rows/s, and (in brackets) the time of a step; the "
        "local step does not cross the link.",
        "",
        "| batch | RTT | 1-row lookup | " + " | ".join(names) +
        " | pipelined / synchronous | synchronous / C++ client |",
        "|---:|---:|---:|" + "---:|" * (len(names) + 2)]
    for batch in batches:
        for rtt in rtts:
            cells = [str(batch), f"{rtt:g} ms",
                     f"{medians[ONE_ROW, rtt]:.2f} ms"]
            rate = {name: medians[name, batch, rtt] for name in names}
            cells += [fmt_step(rate[name], batch) for name in names]
            cells += [f"{rate[pipelined] / rate[sync]:.2f}x",
                      f"{rate[sync] / rate[cpp]:.2f}x"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure_all(run, batches, samples):
    """One repetition of every measure at every batch size."""
    for batch in batches:
        for name, _, measure in MEASURES:
            samples.setdefault((name, batch), []).append(measure(run, batch))


def measure_steps(runs, batches, samples):
    """One repetition of the steps at every batch size through every link
    (runs: round-trip time -> Run); the local step once per batch."""
    for batch in batches:
        for rtt, run in runs.items():
            samples.setdefault((ONE_ROW, rtt), []).append(
                one_row_lookup_ms(run))
            for name, _, measure in STEP_MEASURES:
                if name != LOCAL_STEP or rtt == next(iter(runs)):
                    samples.setdefault((name, batch, rtt), []).append(
                        measure(run, batch))
        for rtt in runs:  # The same local samples in every row.
            samples[LOCAL_STEP, batch, rtt] = samples[
                LOCAL_STEP, batch, next(iter(runs))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server_binary",
                        help="embedding_server to start (default: "
                        "$EMBEDDING_SERVER, else build/)")
    parser.add_argument("--bench_binary",
                        help="embedding_bench (default: $EMBEDDING_BENCH, "
                        "else build/)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batches", default="64,4096")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rtt_ms",
                        help="comma-separated round-trip times (ms): "
                        "measure only the training steps, through a "
                        "delay_proxy.py at each (0: directly)")
    parser.add_argument("--pushes_in_flight", type=int, default=2,
                        help="the pipelined step's max_pushes_in_flight")
    args = parser.parse_args()
    # binaries.py and ServerProcess find the binaries through these.
    if args.server_binary:
        os.environ["EMBEDDING_SERVER"] = os.path.abspath(args.server_binary)
    if args.bench_binary:
        os.environ["EMBEDDING_BENCH"] = os.path.abspath(args.bench_binary)
    batches = [int(b) for b in args.batches.split(",")]
    rtts = ([float(r) for r in args.rtt_ms.split(",")] if args.rtt_ms
            else None)
    samples = {}
    with ServerProcess("--log_level=warn") as server, \
            EmbeddingClient(server.address) as client, \
            contextlib.ExitStack() as links:
        run = Run(server.address, {}, client, args)
        # embedding_bench creates its tables; the Python measures use them.
        for operation in CPP_WORKLOADS:
            run.tables[operation] = cpp_bench(run, operation, 1, 0.1,
                                              0)["table"]
        runs = {}
        for rtt in rtts or []:
            runs[rtt] = run
            if rtt > 0:
                address = links.enter_context(
                    spawn_proxy(server.address, rtt / 2))
                runs[rtt] = dataclasses.replace(
                    run, address=address,
                    client=links.enter_context(EmbeddingClient(address)))
        for rep in range(args.reps):
            if rtts:
                measure_steps(runs, batches, samples)
            else:
                measure_all(run, batches, samples)
            print(f"repetition {rep + 1} of {args.reps} done",
                  file=sys.stderr)
    medians = {key: statistics.median(values)
               for key, values in samples.items()}
    print(json.dumps({" @ ".join(map(str, key)): value
                      for key, value in medians.items()}, indent=1),
          file=sys.stderr)  # The raw medians, for the record.
    print(rtt_report(medians, batches, rtts, args) if rtts
          else report(medians, batches, args))


if __name__ == "__main__":
    main()
