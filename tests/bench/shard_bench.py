"""Scale-out benchmark (issue 11): one client over 1 server and over M
shards on loopback, one run, medians of the repetitions (interleaved).

    PYTHONPATH=build/python:client/python:. /usr/bin/python3 \\
        tests/bench/shard_bench.py [--shards 3 --rows 1000000 --reps 3]

Targets, each a table of --rows x --dim float32 rows:
- "1 server, raw": embedding_bench's own async client (2 channels, 4
  requests in flight), the path of BENCHMARKS.md's main tables;
- "1 server, library" and "M shards, library": through
  ShardedEmbeddingClient (one address: the plain client; M addresses:
  routing, parallel sub-calls, reassembly), 4 callers with one call each
  in flight, so the two differ only by the fan-out.
Throughput is at each --batches size (closed loop); latency is one caller,
one call in flight. Also the servers' resident memory once the tables
exist. Prints a Markdown section for BENCHMARKS.md. Binaries from build/
(or $EMBEDDING_SERVER / $EMBEDDING_BENCH).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.testing.binaries import bench_binary  # noqa: E402
from tests.testing.cluster import Cluster  # noqa: E402
from tests.testing.server_process import ServerProcess  # noqa: E402

MiB = 1 << 20


def bench(addresses, *, batch, library, callers, args, workload="lookup",
          extra=()):
    """One embedding_bench run (`extra`: more of its flags); returns its
    JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            str(bench_binary()), "--target=service", f"--workload={workload}",
            f"--address={','.join(addresses)}", f"--batch={batch}",
            f"--table_rows={args.rows}", f"--dim={args.dim}",
            f"--duration_s={args.duration}", f"--warmup_s={args.warmup}",
            "--threads=1", f"--outstanding={callers}", f"--json={out.name}",
            *extra]
        if library:
            command.append("--client_library")
        else:
            command.append("--channels=2")
        subprocess.run(command, check=True, capture_output=True, text=True)
        result = json.loads(pathlib.Path(out.name).read_text())
    if result["errors"]:
        raise RuntimeError(f"{command}: {result['first_error']}")
    return result


def median_of(results, key):
    def value(result):
        for part in key.split("."):
            result = result[part]
        return result
    return statistics.median(value(r) for r in results)


def fmt_rate(rate):
    return f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batches", default="64,1024,4096")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    flags = ("--log_level=warn",)
    with ServerProcess(*flags) as single, \
            Cluster(args.shards, *flags) as cluster:
        one, many = [single.address], cluster.addresses
        targets = {"1 server, raw": (one, False),
                   "1 server, library": (one, True),
                   f"{args.shards} shards, library": (many, True)}
        # The first run of each creates the table (and checks the bytes).
        for addresses, library in targets.values():
            bench(addresses, batch=1, library=library, callers=1,
                  args=args)
        memory = {"1 server": single.rss_bytes(),
                  f"each of {args.shards} shards": max(
                      s.rss_bytes() for s in cluster.servers)}
        tput = {}
        latency = {}
        for _ in range(args.reps):
            for name, (addresses, library) in targets.items():
                for batch in batches:
                    tput.setdefault((name, batch), []).append(bench(
                        addresses, batch=batch, library=library, callers=4,
                        args=args))
                if library:
                    latency.setdefault(name, []).append(bench(
                        addresses, batch=64, library=True, callers=1,
                        args=args))
    lines = [
        "## Scale-out: one client over 1 server and over "
        f"{args.shards} shards", "",
        f"`{' '.join(['tests/bench/shard_bench.py', *sys.argv[1:]])}`: "
        f"{args.rows} x {args.dim} float32 table, uniform random ids, "
        f"lookups, {args.duration} s per run after {args.warmup} s warm-up, "
        f"medians of {args.reps} interleaved repetitions, one run; all "
        "servers and the client on the same 2 cores.", "",
        "| batch | " + " | ".join(targets) + " | shards / 1 server "
        "(library) |", "|---:|" + "---:|" * (len(targets) + 1)]
    names = list(targets)
    for batch in batches:
        rates = [median_of(tput[(n, batch)], "rows_per_s") for n in names]
        lines.append(f"| {batch} | " + " | ".join(map(fmt_rate, rates)) +
                     f" | {rates[2] / rates[1]:.2f}x |")
    lines += ["", "One caller, one call of 64 ids in flight (library):", "",
              "| target | p50 (us) | p99 (us) |", "|---|---:|---:|"]
    for name, results in latency.items():
        lines.append(f"| {name} | {median_of(results, 'latency_us.p50'):.0f}"
                     f" | {median_of(results, 'latency_us.p99'):.0f} |")
    lines += ["", "Resident memory with the table created: " + ", ".join(
        f"{name} {rss / MiB:.0f} MiB" for name, rss in memory.items()), ""]
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
