"""The plain-data encoding between a program and its judge: data round-trips as base types, and
the judge's decoder builds nothing else from what a program sends."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.executor.sandbox import wire


def round_trip(value: object) -> object:
    return wire.decode(wire.loads(wire.dumps(wire.encode(value)).encode()))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(10**100),
        2**62,
        1.5,
        -0.0,
        math.inf,
        1 + 2j,
        "",
        "é\ud800",
        b"\x00\xff",
        [1, [2, [3]]],
        (1, (2,)),
        {"a": 1, (1, 2): [3], 4: None},
        {1, "x", (2, 3)},
        frozenset({1, 2}),
        range(1, 10, 3),
    ],
)
def test_data_round_trips_with_its_type(value) -> None:
    got = round_trip(value)
    assert got == value and type(got) is type(value)


def test_subclasses_arrive_as_their_base_type_with_the_base_value() -> None:
    class Sly(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

        def __repr__(self):
            return "2"

    class Items(list):
        def __iter__(self):
            return iter([2])

    got = round_trip([Sly(0), Items([0]), type("S", (str,), {"__str__": lambda s: "2"})("0")])
    assert got == [0, [0], "0"]
    assert [type(v) for v in got] == [int, list, str]


def test_numpy_values_are_data() -> None:
    array = round_trip(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert isinstance(array, np.ndarray) and array.dtype == np.int32 and array.shape == (2, 3)
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]]
    scalar = round_trip(np.float64(2.5))
    assert type(scalar) is np.float64 and scalar == 2.5
    assert type(round_trip(np.bool_(True))) is np.bool_


def test_iterators_and_views_come_back_as_such() -> None:
    got = round_trip(x * 2 for x in range(3))
    assert iter(got) is got and list(got) == [0, 2, 4]
    assert list(round_trip({1: 2}.items())) == [(1, 2)]
    assert list(round_trip({1: 2}.keys())) == [1]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (object(), "object"),
        (lambda: 0, "function"),
        ([1, object()], "object"),
        (np.array([object()]), "numpy.ndarray of dtype object"),
    ],
)
def test_anything_else_is_not_data(value, kind) -> None:
    with pytest.raises(wire.NotData) as err:
        wire.encode(value)
    assert err.value.kind == kind


@pytest.mark.parametrize(
    "encoded",
    [
        {"x": 1},
        {"t": 1},
        {"d": [[[1], 2]]},  # an unhashable key
        {"d": [[1]]},
        {"i": "zz"},
        {"b": "abc"},
        {"r": [0, 1, 0]},
        {"nd": ["O", [1], [None]]},  # object arrays would run pickled code
        {"nd": ["<i8", [2], [1]]},
        {"ns": ["<f8", [1]]},
        {"c": ["1", 2]},
        {"t": [1], "s": [2]},
    ],
)
def test_the_decoder_refuses_what_the_encoder_never_writes(encoded) -> None:
    with pytest.raises(wire.Malformed):
        wire.decode(encoded)


def test_malformed_json_and_deep_nesting_are_refused() -> None:
    with pytest.raises(wire.Malformed):
        wire.loads(b"{not json")
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(wire.Malformed):
        wire.decode(wire.loads(deep.encode()))
