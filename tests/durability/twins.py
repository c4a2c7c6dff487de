"""One table three times: on the durable server (the one restarted), on a
control server that is never restarted, and in torch (the oracle of
tests/conformance/oracle.py). Every call goes to all three; the durable
table must equal the control one to the bit and torch's within the
oracle's tolerance. So after a restore, "the next push gives exactly what
it gives without the restart" is one more call.

    twins = Twins(durable, control_stub, "t", TorchTable(40, 6, ...))
    twins.train(rng, steps=4)
    durable.restart(signal.SIGKILL)
    twins.train(rng, steps=2)
"""

import secrets

from embedding.v1 import embedding_service_pb2 as pb
from embedding_client import EmbeddingClient
from tests.conformance.oracle import (assert_close, lookup, push,
                                      random_grad, random_indices, read_rows)
from tests.durability.harness import assert_same_bits


class Twins:
    """Pushes to the durable table come from one trainer that outlives the
    server's restarts: one client_id, sequence numbers counted here, so a
    push retried after a restart repeats one (push_client())."""

    def __init__(self, durable, control_stub, name, ref):
        self.durable = durable
        self.control = control_stub
        self.name = name
        self.ref = ref
        self.client_id = secrets.token_hex(16)
        self.sequence = 0
        self.last_push = None  # (indices, grad, sequence)
        self._client = None
        ref.create_on(durable.stub, name)
        ref.create_on(control_stub, name)

    def push_client(self):
        """The trainer's EmbeddingClient, connected to the server's current
        address (each start has a port of its own)."""
        if self._client is None or \
                self._client.address != self.durable.address:
            if self._client is not None:
                self._client.close()
            self._client = EmbeddingClient(self.durable.address,
                                           client_id=self.client_id)
        return self._client

    def rows(self):
        """The durable table's rows (numpy float32), after checking them
        against the control table and torch."""
        got = read_rows(self.durable.stub, self.name).numpy()
        assert_same_bits(got, read_rows(self.control, self.name).numpy(),
                         f"{self.name}: durable vs control table")
        assert_close(got, self.ref.weight, f"{self.name}: table vs torch")
        return got

    def lookup(self, indices):
        got = lookup(self.durable.stub, self.name, indices).numpy()
        assert_same_bits(got, lookup(self.control, self.name, indices).numpy(),
                         f"{self.name}: lookup, durable vs control")
        assert_close(got, self.ref.lookup(indices), f"{self.name}: lookup")

    def push(self, indices, grad):
        self.sequence += 1
        result = self.push_client().push_gradients(
            self.name, indices, grad, sequence=self.sequence)
        assert not result.duplicate
        push(self.control, self.name, indices, grad)
        self.ref.push(indices, grad)
        self.last_push = (indices, grad, self.sequence)
        return result

    def train(self, rng, steps, shapes=((12,), (3, 4))):
        """`steps` lookups and pushes of random indices (repeats and the
        padding row included), checking all three after each."""
        num, dim = self.ref.weight.shape
        for step in range(steps):
            indices = random_indices(rng, num, shapes[step % len(shapes)],
                                     self.ref.padding_idx)
            self.lookup(indices)
            self.push(indices, random_grad(rng, indices.shape + (dim,)))
            self.rows()

    def set_optimizer(self, **hparams):
        """SetOptimizer on all three (new hyper-parameters, state kept)."""
        self.ref.set_hparams(**hparams)
        self.durable.client.set_optimizer(self.name, self.ref.opt.proto())
        self.control.SetOptimizer(pb.SetOptimizerRequest(
            table=self.name, optimizer=self.ref.opt.proto()))
