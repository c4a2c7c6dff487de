"""Smoke run of the benchmark tools: no timing assertions, only that they run
and that what they report is valid and adds up.

Starts a real embedding_server and the bare_server on free loopback ports,
drives each workload for about a second on a small table with
embedding_bench, and runs the engine micro-benchmark briefly.

  smoke_test.py --server S --bare_server B --bench E --engine_benchmark G
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TABLE_ROWS = 5000
DIM = 16


def start(binary, directory, name, extra):
    port_file = os.path.join(directory, name + ".port")
    log = open(os.path.join(directory, name + ".log"), "w")
    process = subprocess.Popen(
        [binary, "--listen_address=127.0.0.1:0", "--port_file=" + port_file]
        + extra,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while not os.path.exists(port_file):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(name + " did not start")
        time.sleep(0.05)
    with open(port_file) as f:
        return process, "127.0.0.1:" + f.read().strip()


def run_bench(bench, **flags):
    args = [bench, "--json=-"] + [
        "--%s=%s" % (key, value) for key, value in flags.items()
    ]
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            "%s failed (%d): %s" % (args, result.returncode, result.stderr)
        )
    return json.loads(result.stdout)


def check_result(result, batch, expect_verified):
    where = "%s/%s" % (result["target"], result["workload"])
    assert result["errors"] == 0, (where, result["first_error"])
    assert result["requests"] > 0, where
    assert result["rows"] == result["requests"] * batch, where
    assert result["batch"] == batch, where
    assert result["rows_per_s"] > 0, where
    assert result["payload_bytes"] > 0, where
    latency = result["latency_us"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["p999"], where
    assert latency["p999"] <= latency["max"], where
    if expect_verified:
        assert result["verified"] is True, where


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--bare_server", required=True)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--engine_benchmark", required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        processes = []
        try:
            server, service_address = start(
                args.server, directory, "server", ["--log_level=warn"]
            )
            processes.append(server)
            bare, bare_address = start(args.bare_server, directory, "bare", [])
            processes.append(bare)
            common = dict(table_rows=TABLE_ROWS, dim=DIM, warmup_s=0.2)
            runs = [
                (dict(target="service", address=service_address,
                      workload="lookup", batch=64, channels=2, outstanding=2,
                      duration_s=1.5, verify_address=bare_address), True),
                (dict(target="bare", address=bare_address, workload="lookup",
                      batch=64, duration_s=1, verify_address=service_address),
                 True),
                (dict(target="service", address=service_address,
                      workload="lookup", batch=16, rate=300, duration_s=1),
                 False),
                (dict(target="service", address=service_address,
                      workload="lookup_stream", batch=32, channels=2,
                      outstanding=4, duration_s=0.5), False),
                (dict(target="service", address=service_address,
                      workload="bag", batch=64, bag_size=8, duration_s=0.5),
                 False),
                (dict(target="service", address=service_address,
                      workload="push_sgd", batch=64, duration_s=0.5), False),
                (dict(target="service", address=service_address,
                      workload="push_adagrad", batch=32, duration_s=0.5),
                 False),
                (dict(target="local", workload="lookup", batch=128,
                      duration_s=0.3, verify_address=service_address), True),
            ]
            for flags, verified in runs:
                result = run_bench(args.bench, **common, **flags)
                check_result(result, flags["batch"], verified)
                print("ok %s %s: %d requests" % (
                    flags["target"], flags["workload"], result["requests"]))
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()

    engine = subprocess.run(
        [args.engine_benchmark, "--benchmark_min_time=0.01",
         "--benchmark_format=json", "--benchmark_filter=/64/"],
        capture_output=True, text=True, timeout=60, check=True,
        env=dict(os.environ, EMBEDDING_BENCH_ROWS=str(TABLE_ROWS)),
    )
    report = json.loads(engine.stdout)
    names = [b["name"] for b in report["benchmarks"]]
    for expected in ("BM_MemcpyGather", "BM_EngineLookup",
                     "BM_EngineLookupMaxNorm", "BM_EnginePushSgd",
                     "BM_EnginePushAdagrad"):
        assert any(n.startswith(expected + "/") for n in names), expected
    for b in report["benchmarks"]:
        assert b.get("error_occurred") is not True, b["name"]
        assert b["items_per_second"] > 0, b["name"]
    print("ok engine_benchmark: %d runs" % len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
