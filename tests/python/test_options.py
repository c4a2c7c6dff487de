"""The optimizer table (embedding_client.options.OPTIMIZERS) against the
proto: one entry per kind of pb.Optimizer whose fields cover its options
message, the dict form, pass-through of pb.Optimizer and the messages for
bad descriptions. Needs no server; the round trips through the server are
in test_client_tables.py."""

import dataclasses

import grpc
import pytest

from embedding_client import OPTIMIZERS, SGD, Ftrl, SparseAdam
from embedding_client._stubs import pb
from embedding_client.options import optimizer_from_proto, optimizer_to_proto
from tests.testing.errors import raises

_KINDS = dict(ids=lambda kind: kind.name)


def test_every_kind_of_the_proto_has_one_entry():
    oneof = pb.Optimizer.DESCRIPTOR.oneofs_by_name["kind"]
    assert sorted(kind.name for kind in OPTIMIZERS) == sorted(
        field.name for field in oneof.fields)


@pytest.mark.parametrize("kind", OPTIMIZERS, **_KINDS)
def test_fields_cover_the_options_message(kind):
    message = pb.Optimizer.DESCRIPTOR.fields_by_name[kind.name].message_type
    wire = [name for _, names, _ in kind.fields() for name in names]
    assert sorted(wire) == sorted(message.fields_by_name)


@pytest.mark.parametrize("kind", OPTIMIZERS, **_KINDS)
def test_dict_form_is_the_dataclass(kind):
    optimizer = kind.options()
    # As JSON would give it: tuples become lists.
    described = {"type": kind.name, **{
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(optimizer).items()}}
    assert optimizer_to_proto(described) == optimizer_to_proto(optimizer)
    assert optimizer.to_proto() == optimizer_to_proto(optimizer)


def test_messages_pass_through_and_unset_is_sgd():
    message = pb.Optimizer(ftrl=pb.FtrlOptions(l1=0.5))
    assert optimizer_to_proto(message) is message
    assert optimizer_from_proto(message) == Ftrl(l1=0.5)
    assert optimizer_from_proto(pb.Optimizer()) == SGD()


@pytest.mark.parametrize("optimizer, message", [
    ({"type": "lbfgs"}, r"'type' in \['adagrad', 'ftrl'"),
    ({"lr": 0.1}, "'type' in"),
    ({"type": "ftrl", "alpha": 0.1}, r"ftrl takes lr=0.01, lr_power=-0.5.*"
                                     r"got \['alpha'\]"),
    (SparseAdam(betas=(0.9,)), r"betas must be 2 numbers \(beta1, beta2\)"),
    (Ftrl(l1="strong"), "ftrl l1 must be a number, got 'strong'"),
    ("ftrl", "not an optimizer: 'ftrl'; pass one of SGD, .*Ftrl"),
], ids=["unknown_type", "no_type", "unknown_field", "betas_length",
        "not_a_number", "a_name"])
def test_bad_descriptions_are_invalid_argument(optimizer, message):
    with raises(grpc.StatusCode.INVALID_ARGUMENT, match=message):
        optimizer_to_proto(optimizer)
