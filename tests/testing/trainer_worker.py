"""Data-parallel trainer processes against a real embedding_server.

    trainers = start_trainers(Job(...), server.address, tmp_path)
    losses = trainers.results()   # [losses of rank 0, losses of rank 1]

Each trainer is a "spawn" process (a fresh interpreter, as
torch.multiprocessing workers and torchrun ranks are) that joins a gloo
process group through a file in tmp_path, connects its own EmbeddingClient
and trains the job's table on its share of every batch. results() returns
each rank's per-step losses, or raises TrainerError with the failed ranks'
tracebacks and exit codes; a trainer that hangs is killed after `timeout`.
"""

import dataclasses
import datetime
import multiprocessing
import queue
import traceback
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

# A collective or join that takes longer than this has hung.
TIMEOUT_SECONDS = 30

# What one rank trains on in one step: (indices, targets), or None when the
# rank skips the forward pass (its table gets no gradient in that step).
Share = Optional[Tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Job:
    """What the trainers do.

    push: "step" (RemoteOptimizer with the WORLD process group: averaged,
    one push per step by rank 0) or "backward" (each rank's backward pushes;
    the ranks go in lockstep: all look up, then all push).
    steps[s][rank]: that rank's Share of step s.
    """
    table: str
    push: str
    projection: np.ndarray
    steps: List[List[Share]]

    @property
    def world_size(self):
        return len(self.steps[0])


def loss_of(rows, projection, targets):
    """The mean squared error of a linear read-out of the looked-up rows:
    its gradient depends on the rows, so stale rows would show."""
    predictions = rows @ torch.as_tensor(projection)
    return ((predictions - torch.as_tensor(targets)) ** 2).mean()


class TrainerError(AssertionError):
    """A trainer process failed, hung or reported nothing."""


def _train_on_step(module, job, rank):
    """push="step": RemoteOptimizer averages over the group every step."""
    from embedding_client.nn import RemoteOptimizer

    optimizer = RemoteOptimizer(module, process_group=dist.group.WORLD)
    losses = []
    for shares in job.steps:
        share = shares[rank]
        if share is None:
            losses.append(None)
        else:
            indices, targets = share
            loss = loss_of(module(torch.as_tensor(indices)), job.projection,
                           targets)
            loss.backward()
            losses.append(loss.item())
        optimizer.step()
        optimizer.zero_grad()
    return losses


def _train_on_backward(module, job, rank):
    """push="backward" in lockstep: every rank looks up the same version of
    the table, then every rank pushes (one server step each)."""
    losses = []
    for shares in job.steps:
        indices, targets = shares[rank]
        rows = module(torch.as_tensor(indices))
        dist.barrier()  # All ranks have read before any pushes.
        loss = loss_of(rows, job.projection, targets)
        loss.backward()  # Pushes; returns once the server has applied it.
        losses.append(loss.item())
        dist.barrier()  # All pushes are applied before the next lookups.
    return losses


_TRAINERS = {"step": _train_on_step, "backward": _train_on_backward}


def _train(rank, job, address, init_file):
    from embedding_client import EmbeddingClient
    from embedding_client.nn import RemoteEmbedding

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank,
        world_size=job.world_size,
        timeout=datetime.timedelta(seconds=TIMEOUT_SECONDS))
    try:
        with EmbeddingClient(address) as client:
            module = RemoteEmbedding(client, job.table, push=job.push)
            return _TRAINERS[job.push](module, job, rank)
    finally:
        dist.destroy_process_group()


def trainer_main(rank, job, address, init_file, results):
    """A trainer process: puts (rank, losses, None) or (rank, None,
    traceback) on `results`, and exits 1 on failure."""
    try:
        results.put((rank, _train(rank, job, address, init_file), None))
    except BaseException:
        results.put((rank, None, traceback.format_exc()))
        raise


class Trainers:
    """The running trainer processes of one job."""

    def __init__(self, processes, results):
        self._processes = processes
        self._results = results

    def results(self, timeout=TIMEOUT_SECONDS):
        """Waits for every rank; returns [losses of each rank] or raises
        TrainerError (with every report received) when any failed. After a
        failure the other ranks are killed: they would wait for it in a
        collective until the process group's timeout."""
        world_size = len(self._processes)
        reports, problems = {}, []
        while len(reports) < world_size and not problems:
            try:
                rank, losses, error = self._results.get(timeout=timeout)
            except queue.Empty:
                silent = sorted(set(range(world_size)) - set(reports))
                problems.append(f"ranks {silent} reported nothing within "
                                f"{timeout} s")
                break
            reports[rank] = losses
            if error is not None:
                problems.append(f"rank {rank} raised:\n{error}")
        # After a failure, the others get a moment to report theirs.
        problems += self._stop(timeout if not problems else 2)
        if problems:
            raise TrainerError("\n".join(problems))
        return [reports[rank] for rank in range(world_size)]

    def _stop(self, timeout):
        """Joins every process (waiting up to `timeout` s each), killing
        those still running; returns what went wrong."""
        problems = []
        for rank, process in enumerate(self._processes):
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()
                problems.append(f"rank {rank} killed (still running)")
            elif process.exitcode != 0:
                problems.append(f"rank {rank} exited with {process.exitcode}")
        return problems


def start_trainers(job, address, directory):
    """Starts one spawned process per rank of `job`; init file in
    `directory`."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    init_file = directory / f"process_group_{job.table}"
    processes = [
        context.Process(target=trainer_main, name=f"trainer-{rank}",
                        args=(rank, job, address, str(init_file), results))
        for rank in range(job.world_size)]
    for process in processes:
        process.start()
    return Trainers(processes, results)
