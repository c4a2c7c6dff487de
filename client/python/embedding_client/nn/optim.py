"""RemoteOptimizer: steps the remote tables of push="step" modules.

    model = Model(users=RemoteEmbedding(client, "users", push="step"), ...)
    remote = RemoteOptimizer(model)                    # its remote tables
    dense = torch.optim.Adam(local_parameters(model))  # everything else
    for micro_batch in batches:                        # accumulation
        loss_of(model, micro_batch).backward()
    clip_grad_norm_(model.parameters(), 1.0)           # remote grads count
    dense.step(); remote.step()                        # one push per table
    dense.zero_grad(); remote.zero_grad()

The update itself is the table's optimizer, on the server (its kind and
hyper-parameters are the table's, see EmbeddingClient.set_optimizer);
step() pushes each table's accumulated gradient once, coalesced as torch
optimizers coalesce a sparse gradient, so the server applies exactly the
step a torch optimizer would apply to nn.Embedding(sparse=True).

lr: None (default) steps with each table's own learning rate (or the
module's learning_rate); a number sends it with every push, so a torch
learning-rate scheduler can drive it through param_groups[0]["lr"].

Data-parallel trainers: with process_group (a torch.distributed group),
step() averages the gradients of all its ranks, as DistributedDataParallel
averages dense ones; rank 0 of the group pushes the average and every rank
waits for that push before going on, so all ranks then read the same rows.
Every rank of the group must call step(). Without process_group, each
trainer's step() is a step of its own (as asynchronous parameter servers
do); see the README, "Coming from nn.Embedding".
"""

import torch

from embedding_client.nn import functional
from embedding_client.nn.modules import remote_modules


def _step_modules(modules):
    if isinstance(modules, torch.nn.Module):
        modules = remote_modules(modules)
    modules = list(modules)
    pushed_on_backward = [m.table for m in modules
                          if m.push != functional.PUSH_ON_STEP]
    if pushed_on_backward:
        raise ValueError(
            f"remote tables {pushed_on_backward} push on backward; "
            "RemoteOptimizer steps modules built with push='step'")
    if not modules:
        raise ValueError("RemoteOptimizer got no remote table to step")
    return modules


class RemoteOptimizer(torch.optim.Optimizer):
    """Pushes the accumulated gradient of push="step" remote tables.

    modules: a model (its RemoteEmbedding(Bag) modules are taken), or the
    modules themselves. lr, process_group: see the module docstring.
    """

    def __init__(self, modules, lr=None, *, process_group=None):
        modules = _step_modules(modules)
        self._module_of = {id(m.weight): m for m in modules}
        self.process_group = process_group
        super().__init__([m.weight for m in modules], dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        """Pushes each table's gradient (skipping tables without one);
        returns closure()'s loss when given a closure, as torch's do."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for weight in group["params"]:
                self._push(self._module_of[id(weight)], weight.grad,
                           group["lr"])
        if self.process_group is not None:
            torch.distributed.barrier(group=self.process_group)
        return loss

    def _push(self, module, grad, lr):
        gradient = self._gradient(module, grad)
        if gradient is None:
            return
        if (self.process_group is not None and
                torch.distributed.get_rank(self.process_group) != 0):
            return  # Rank 0 pushes the average for the group.
        module.client.push_gradients(
            module.table, gradient.indices()[0].numpy(),
            gradient.values().to(torch.float32).numpy(),
            learning_rate=module.learning_rate if lr is None else lr)

    def _gradient(self, module, grad):
        """The coalesced gradient to push (averaged over process_group);
        None when there is none."""
        if self.process_group is not None:
            grad = self._average(module, grad)
        if grad is None:
            return None
        grad = grad.coalesce()
        return grad if grad._nnz() else None

    def _average(self, module, grad):
        """The mean of the ranks' gradients. Every rank takes part, also
        one without a gradient (it adds nothing to the sum)."""
        group = self.process_group
        world = torch.distributed.get_world_size(group)
        parts = [None] * world
        # zero_grad() leaves an empty gradient of another sparse layout
        # (sparse_dim 2) that cannot be concatenated: it holds nothing.
        mine = None if grad is None or not grad._nnz() else grad.coalesce()
        torch.distributed.all_gather_object(
            parts, None if mine is None else (mine.indices(), mine.values()),
            group=group)
        parts = [part for part in parts if part is not None]
        if not parts:
            return None
        indices = torch.cat([index for index, _ in parts], dim=1)
        values = torch.cat([value for _, value in parts]) / world
        return torch.sparse_coo_tensor(
            indices, values, (module.num_embeddings, module.embedding_dim))
