"""embedding_reshard for the tests (binaries.py finds it).

    result = reshard([root / "shard-0", root / "shard-1"], out, shards=3)
    assert result.returncode == 0, result.stderr
"""

import subprocess

from tests.testing.binaries import reshard_binary


def reshard(from_dirs, to, shards, *flags, timeout=300):
    """Runs embedding_reshard --from=DIR,... --to=TO --shards=SHARDS; returns
    the CompletedProcess (text stdout and stderr)."""
    command = [str(reshard_binary()),
               "--from=" + ",".join(str(d) for d in from_dirs),
               f"--to={to}", f"--shards={shards}", *flags]
    return subprocess.run(command, capture_output=True, text=True,
                          timeout=timeout, check=False)
