"""Security overhead benchmark (issue 12): lookups against a plain server,
against servers with TLS, token auth or the Prometheus endpoint alone, and
against one with all three, in one run, medians of interleaved
repetitions.

    PYTHONPATH=build/python:client/python:. /usr/bin/python3 \\
        tests/bench/security_bench.py [--reps 5 --batches 64,4096]

Both servers hold a --rows x --dim float32 table; embedding_bench's own
async client (2 channels, 4 requests in flight, one thread) drives each in
turn, with --tls_ca_file and --token_file for the secured one (an admin's
token: the first run creates the table; every role costs the same check). Targets: >= 0.9x of plain at batch 4096, >= 0.8x at 64.
Prints a Markdown section for BENCHMARKS.md. Binaries from build/ (or
$EMBEDDING_SERVER / $EMBEDDING_BENCH).
"""

import argparse
import contextlib
import os
import pathlib
import sys
import tempfile

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from tests.bench.shard_bench import bench, fmt_rate, median_of  # noqa: E402
from tests.testing import certs  # noqa: E402
from tests.testing.server_process import ProbeTls, ServerProcess  # noqa: E402

TARGETS = {4096: 0.9, 64: 0.8}
TOKEN = "bench-admin-token-0123456789abcdef"
ALL = "TLS + token + metrics"


def variants(directory):
    """{name: (server flags, client flags, health probe TLS)}: plain, each
    protection alone, and all of them, with the certificates and files
    made in `directory`."""
    pki = certs.make_pki(directory)
    tokens = directory / "tokens"
    tokens.write_text(f"admin {TOKEN}\n")
    token_file = directory / "token"
    token_file.write_text(TOKEN + "\n")
    probe = ProbeTls(grpc.ssl_channel_credentials(pki.ca.cert.read_bytes()))
    tls = ((f"--tls_cert_file={pki.server.cert}",
            f"--tls_key_file={pki.server.key}"),
           (f"--tls_ca_file={pki.ca.cert}", "--tls_server_name=localhost"),
           probe)
    token = ((f"--auth_tokens_file={tokens}",),
             (f"--token_file={token_file}",), None)
    metrics = (("--metrics_address=127.0.0.1:0",), (), None)
    return {
        "plain": ((), (), None),
        "metrics": metrics,
        "token": token,
        "TLS": tls,
        ALL: (tls[0] + token[0] + metrics[0], tls[1] + token[1], probe),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batches", default="64,4096")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3)
    parser.add_argument("--warmup", type=float, default=0.5)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as scratch, \
            contextlib.ExitStack() as stack:
        targets = {}
        for name, (server, client, probe) in variants(
                pathlib.Path(scratch)).items():
            process = stack.enter_context(
                ServerProcess("--log_level=warn", *server, tls=probe))
            targets[name] = (process.address, client)
        for address, client in targets.values():  # Creates the tables.
            bench([address], batch=1, library=False, callers=1, args=args,
                  extra=client)
        tput = {}
        for _ in range(args.reps):
            for batch in batches:
                for name, (address, client) in targets.items():
                    tput.setdefault((name, batch), []).append(bench(
                        [address], batch=batch, library=False, callers=4,
                        args=args, extra=client))
    names = list(targets)
    lines = [
        "## Security overhead: TLS, token auth and metrics against plain "
        "(issue 12)", "",
        f"`{' '.join(['tests/bench/security_bench.py', *sys.argv[1:]])}`: "
        f"{args.rows} x {args.dim} float32 table on each of "
        f"{len(names)} servers (plain, each protection alone, all three), "
        "uniform random ids, lookups through embedding_bench's async "
        f"client (2 channels, 4 in flight), {args.duration} s per run after "
        f"{args.warmup} s warm-up, medians of {args.reps} interleaved "
        "repetitions, one run; the servers and the client on the same 2 "
        "cores. TLS: --tls_cert_file/--tls_key_file (TLS 1.3, P-256 "
        "certificate); token: --auth_tokens_file, the client sends a "
        "bearer token; metrics: --metrics_address.", "",
        "| batch | " + " | ".join(names) + " | all / plain | target |",
        "|---:|" + "---:|" * (len(names) + 1) + "---|"]
    for batch in batches:
        rates = {name: median_of(tput[(name, batch)], "rows_per_s")
                 for name in names}
        plain = rates["plain"]
        cells = [fmt_rate(rates["plain"])] + [
            f"{fmt_rate(rates[n])} ({rates[n] / plain:.2f}x)"
            for n in names[1:]]
        ratio = rates[ALL] / plain
        target = TARGETS.get(batch)
        verdict = ("" if target is None else
                   f">= {target}x: {'met' if ratio >= target else 'not met'}")
        lines.append(f"| {batch} | " + " | ".join(cells) +
                     f" | {ratio:.2f}x | {verdict} |")
    print("\n".join(lines + [""]))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
