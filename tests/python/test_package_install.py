"""`pip install --no-deps --no-build-isolation client/python` works offline and
bundles the stubs it generates, so the installed package needs no build tree.

The package is copied out of the source tree first, so the test leaves no
build/ or egg-info behind, and installed with --target into a temp dir.
"""

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("pip") is None,
                    reason="pip is not installed (apt-get install python3-pip)")
def test_offline_install_bundles_the_stubs(tmp_path, server):
    source, site = tmp_path / "source", tmp_path / "site"
    shutil.copytree(REPO / "client" / "python", source,
                    ignore=shutil.ignore_patterns(
                        "build", "*.egg-info", "_proto", "__pycache__"))
    env = dict(os.environ, EMBEDDING_PROTO_DIR=str(REPO / "proto"),
               PIP_NO_INDEX="1", PIP_NO_CACHE_DIR="1")
    env.pop("PYTHONPATH", None)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps",
         "--no-build-isolation", "--target", str(site), str(source)],
        env=env, cwd=tmp_path, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    assert (site / "embedding_client" / "_proto" / "embedding" / "v1" /
            "embedding_service_pb2_grpc.py").exists()

    program = ("import embedding_client, embedding_client._stubs as s\n"
               f"c = embedding_client.EmbeddingClient({server.address!r})\n"
               "c.create_table('installed', 3, 2)\n"
               "print(s.pb_grpc.__name__, c.lookup('installed', [1]).shape)\n")
    run = subprocess.run([sys.executable, "-c", program],
                         env=dict(env, PYTHONPATH=str(site)), cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [
        "embedding_client._proto.embedding.v1.embedding_service_pb2_grpc",
        "(1,", "2)"]
