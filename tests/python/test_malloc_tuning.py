"""The client keeps its large buffers in glibc's heap unless the process
chose its own malloc settings (embedding_client/malloc_tuning.py)."""

import os
import subprocess
import sys

import pytest

# Makes a client (no server needed: the channel connects lazily) in a fresh
# process and prints whether the thresholds were set.
PROGRAM = """
from embedding_client import EmbeddingClient, malloc_tuning
EmbeddingClient("127.0.0.1:1")
print(malloc_tuning._tuned)  # Set by the client, not by this line.
"""


def tuned_in_fresh_process(**env_changes):
    env = dict(os.environ)
    for name in ("EMBEDDING_CLIENT_TUNE_MALLOC", "GLIBC_TUNABLES",
                 "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(name, None)
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[-1] == "True"


def test_a_client_sets_the_thresholds_once_per_process():
    assert tuned_in_fresh_process()


@pytest.mark.parametrize("env", [
    {"EMBEDDING_CLIENT_TUNE_MALLOC": "0"},
    {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"},
    {"MALLOC_MMAP_THRESHOLD_": "262144"},
    {"MALLOC_TRIM_THRESHOLD_": "262144"},
])
def test_the_process_own_malloc_settings_win(env):
    assert not tuned_in_fresh_process(**env)


def test_other_tunables_do_not_count_as_malloc_settings():
    assert tuned_in_fresh_process(GLIBC_TUNABLES="glibc.pthread.rseq=0")
