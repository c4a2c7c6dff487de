"""Checks that the deployment files parse and agree with each other, for
scripts/container_test.sh (no cluster needed):

    check_manifests.py docker/compose.yaml docker/kubernetes/embedding-service.yaml

- compose: service shardK runs --shard_index=K --shard_count=<services>,
  publishes on 127.0.0.1 only, has a checkpoint volume of its own, runs
  under an init, health-checks with the Dockerfile's HEALTHCHECK command,
  and its stop_grace_period exceeds --shutdown_grace_seconds;
- Kubernetes: a headless Service named as the StatefulSet's serviceName,
  --shard_count equal to replicas, the shard index from the pod ordinal,
  a claim template mounted on the image's checkpoint directory, gRPC
  probes, and terminationGracePeriodSeconds above --shutdown_grace_seconds.
"""

import json
import pathlib
import re
import sys

import yaml

CHECKPOINT_DIR = "/var/lib/embedding"


def fail(message):
    raise SystemExit(f"check_manifests: FAIL: {message}")


def flag(args, name):
    """The value of --name=VALUE in args, or None."""
    for arg in args:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def seconds(duration):
    match = re.fullmatch(r"(\d+)s", str(duration))
    if not match:
        fail(f"duration {duration!r} is not in seconds")
    return int(match.group(1))


def dockerfile_healthcheck(dockerfile):
    text = dockerfile.read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.MULTILINE)
    if not match:
        fail(f"{dockerfile} has no HEALTHCHECK CMD [...]")
    return json.loads(match.group(1))


def check_compose(path, healthcheck):
    services = yaml.safe_load(path.read_text())["services"]
    count = len(services)
    volumes = set()
    for k in range(count):
        name = f"shard{k}"
        service = services.get(name) or fail(f"{path}: no service {name}")
        command = service["command"]
        if (flag(command, "shard_index"), flag(command, "shard_count")) != (
                str(k), str(count)):
            fail(f"{path}: {name} runs {command}, expected shard {k} of {count}")
        for port in service["ports"]:
            if not port.startswith("127.0.0.1:"):
                fail(f"{path}: {name} publishes {port} beyond 127.0.0.1")
        mounts = [v for v in service["volumes"]
                  if v.endswith(f":{CHECKPOINT_DIR}")]
        if len(mounts) != 1 or mounts[0] in volumes:
            fail(f"{path}: {name} needs a checkpoint volume of its own")
        volumes.add(mounts[0])
        if service.get("init") is not True:
            fail(f"{path}: {name} lacks init: true")
        if service["healthcheck"]["test"] != ["CMD", *healthcheck]:
            fail(f"{path}: {name}'s healthcheck differs from the Dockerfile's")
        grace = float(flag(command, "shutdown_grace_seconds") or 10)
        if seconds(service["stop_grace_period"]) <= grace:
            fail(f"{path}: {name}'s stop_grace_period does not exceed "
                 f"--shutdown_grace_seconds={grace}")
    print(f"{path}: {count} shards agree")


def check_kubernetes(path):
    documents = {d["kind"]: d for d in yaml.safe_load_all(path.read_text())}
    service, stateful = documents["Service"], documents["StatefulSet"]
    if service["spec"].get("clusterIP") != "None":
        fail(f"{path}: the Service is not headless")
    spec = stateful["spec"]
    if spec["serviceName"] != service["metadata"]["name"]:
        fail(f"{path}: serviceName {spec['serviceName']} is not the Service")
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    if flag(args, "shard_count") != str(spec["replicas"]):
        fail(f"{path}: --shard_count={flag(args, 'shard_count')} but "
             f"replicas: {spec['replicas']}")
    index_env = {e["name"]: e for e in container["env"]}.get("SHARD_INDEX")
    if (flag(args, "shard_index") != "$(SHARD_INDEX)" or
            "pod-index" not in json.dumps(index_env)):
        fail(f"{path}: --shard_index is not the pod ordinal")
    grace = float(flag(args, "shutdown_grace_seconds") or 10)
    if pod["terminationGracePeriodSeconds"] <= grace:
        fail(f"{path}: terminationGracePeriodSeconds does not exceed "
             f"--shutdown_grace_seconds={grace}")
    claims = [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    if len(claims) != 1 or mounts.get(claims[0]) != CHECKPOINT_DIR:
        fail(f"{path}: no claim template mounted on {CHECKPOINT_DIR}")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if "grpc" not in container.get(probe, {}):
            fail(f"{path}: {probe} is not a gRPC health probe")
    print(f"{path}: {spec['replicas']} shards agree")


def main(argv):
    compose, kubernetes = map(pathlib.Path, argv[1:3])
    check_compose(compose, dockerfile_healthcheck(compose.parent / "Dockerfile"))
    check_kubernetes(kubernetes)


if __name__ == "__main__":
    main(sys.argv)
