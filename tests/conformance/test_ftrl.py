"""FTRL-Proximal (issue 8) on the real server against oracle.Ftrl, the NumPy
form of TensorFlow's per-coordinate update: several hyper-parameter sets
compared after every push, l1 setting weights to exactly zero, out-of-range
hyper-parameters, and the server's TableInfo read by the Python client's
Ftrl. The cases every optimizer goes through (padding, scale_grad_by_freq,
max_norm, learning-rate override, SetOptimizer, bags) run FTRL from the
tables of test_optimizers.py and test_bags.py."""

import grpc
import numpy as np
import pytest

from embedding_client import Ftrl
from embedding_client.options import optimizer_from_proto
from tests.testing.errors import raises

from .oracle import Opt, TorchTable, check_push, check_training, read_rows

NUM, DIM = 12, 4
# Few rows and long index tensors, so that every push repeats rows.
SHAPES = [(20,), (4, 5), (2, 3, 4)]

HYPER_PARAMETERS = {
    "defaults": dict(),
    "sqrt_schedule": dict(lr=0.3),
    "lr_power_0.7": dict(lr=0.3, lr_power=-0.7),
    "fixed_rate": dict(lr=0.1, lr_power=0.0),  # n^0 = 1: sigma is 0.
    "l1": dict(lr=0.3, l1=0.5),
    "l2": dict(lr=0.3, l2=0.5),
    "beta": dict(lr=0.3, beta=2.0),
    "all": dict(lr=0.5, lr_power=-0.7, l1=0.3, l2=0.2, beta=1.0,
                initial_accumulator_value=0.5),
}


@pytest.mark.parametrize("name", HYPER_PARAMETERS)
def test_ftrl_matches_the_reference_after_every_push(stub, table, name):
    hyper_parameters = HYPER_PARAMETERS[name]
    ref = TorchTable(NUM, DIM, optimizer=Opt("ftrl", **hyper_parameters),
                     seed=41)
    info = ref.create_on(stub, table)
    # The server names every hyper-parameter, those not sent at the Python
    # client's defaults.
    assert optimizer_from_proto(info.spec.optimizer) == Ftrl(
        **hyper_parameters)
    check_training(stub, table, ref, np.random.default_rng(42), 12, SHAPES)
    if hyper_parameters.get("l1"):
        zeros = ref.weight.numpy() == 0
        assert zeros.any(), "l1 set no weight to zero: a weak test"
        np.testing.assert_array_equal(read_rows(stub, table).numpy() == 0,
                                      zeros)


def test_l1_above_the_gradient_makes_a_weight_exactly_zero(stub, table):
    # One row of zeros, so before the push w = 0 and z = 0 and the push
    # makes z = g - sigma * w = g. An element with |g| <= l1 then takes the
    # branch w = 0: exactly +0.0, not a rounded quotient. One with |g| > l1
    # gets (sign(z) * l1 - z) / ((beta + new_n^-lr_power) / lr + 2 * l2),
    # which is not zero; that one is compared with the reference.
    l1 = 0.5
    ref = TorchTable(1, 2, optimizer=Opt("ftrl", lr=0.1, l1=l1),
                     weight=np.zeros((1, 2)))
    ref.create_on(stub, table)
    grad = np.array([[0.6 * l1, -1.6 * l1]], np.float32)
    check_push(stub, table, ref, [0], grad, "one push")
    weights = read_rows(stub, table).numpy()
    assert weights[0, 0].view(np.uint32) == 0, weights  # +0.0, bit for bit.
    assert weights[0, 1] != 0 and ref.weight[0, 1] != 0


@pytest.mark.parametrize("bad", [
    dict(lr_power=0.5), dict(l1=-0.1), dict(l1=float("nan")), dict(l2=-0.1),
    dict(beta=-1.0), dict(initial_accumulator_value=-0.1), dict(lr=-0.01),
], ids=lambda bad: "_".join(f"{k}={v}" for k, v in bad.items()))
def test_out_of_range_hyper_parameter_is_invalid_argument(client, table,
                                                          bad):
    (name,) = bad
    names_it = rf"\b{name}\b"
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match=names_it):
        client.create_table(table, NUM, DIM, optimizer=Ftrl(**bad))
    client.create_table(table, NUM, DIM, optimizer=Ftrl())
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match=names_it):
        client.set_optimizer(table, Ftrl(**bad))
    assert client.get_table(table).optimizer == Ftrl()
