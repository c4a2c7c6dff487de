"""Cluster: M real embedding_server processes on loopback, shard k started
with --shard_index=k --shard_count=M, as a sharded client sees them.

    with Cluster(3, "--memory_budget_bytes=100000000",
                 checkpoint_root=tmp_path) as cluster:
        client = EmbeddingClient(cluster.addresses)
        cluster.servers[1].kill()                  # shard 1 down
        cluster.servers[1].start(same_port=True)   # back, same address

checkpoint_root: a directory; shard k checkpoints to checkpoint_root/shard-k
(created here)."""

import contextlib
import pathlib

from tests.testing.server_process import ServerProcess


class Cluster:
    """M servers of one cluster; stops them all (SIGTERM) on exit."""

    def __init__(self, shards, *flags, checkpoint_root=None):
        self.checkpoint_dirs = []
        if checkpoint_root is not None:
            for k in range(shards):
                directory = pathlib.Path(checkpoint_root) / f"shard-{k}"
                directory.mkdir(parents=True, exist_ok=True)
                self.checkpoint_dirs.append(directory)
        self.servers = [
            ServerProcess(
                f"--shard_index={k}", f"--shard_count={shards}", *flags,
                checkpoint_dir=(self.checkpoint_dirs[k]
                                if self.checkpoint_dirs else None))
            for k in range(shards)]
        self._stack = contextlib.ExitStack()

    @property
    def addresses(self):
        """ "host:port" of each shard, in shard-index order."""
        return [server.address for server in self.servers]

    def __enter__(self):
        with contextlib.ExitStack() as stack:
            for server in self.servers:
                stack.enter_context(server)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc):
        self._stack.close()
