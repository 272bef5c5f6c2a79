"""Values as plain data between the program and its judge: a tagged JSON encoding that cannot
execute code, and the strict decoder the judge reads the program's answers with.

Only data crosses: None, bool, int, float, str (JSON as is), list (a JSON array), and tagged
objects for the rest: ``{"i": hex}`` (an int too big for a JSON number), ``{"t": [...]}`` tuple,
``{"d": [[k, v], ...]}`` dict, ``{"s": [...]}`` set, ``{"f": [...]}`` frozenset, ``{"b": hex}``
bytes, ``{"c": [re, im]}`` complex, ``{"r": [start, stop, step]}`` range, ``{"it": [...]}`` an
iterator (materialised; it comes back as an iterator), ``{"dk"|"dv"|"di": [...]}`` dict views,
``{"nd": [dtype, shape, [...]]}`` a numpy array and ``{"ns": [dtype, value]}`` a numpy scalar.
A subclass of a data type is encoded as its base type, with the base type's methods, so an
``int`` subclass's ``__eq__`` (or ``__repr__``, ``__iter__``) never votes. Anything else is not
data (:class:`NotData` on the encoding side).

The encoder runs on both sides; the program may replace its own copy, which is why the decoder
trusts nothing: the judge decodes with :func:`decode`, which builds only the types above and
raises :class:`Malformed` for anything else.
"""

from __future__ import annotations

import json
import re

# Bound at import, before any program runs: the program may rebind these in builtins, and the
# servant encodes with this module in the program's process.
from builtins import (  # noqa: A004, UP029
    all,
    bool,
    bytes,
    complex,
    dict,
    enumerate,
    filter,
    format,
    frozenset,
    getattr,
    int,
    isinstance,
    iter,
    len,
    list,
    map,
    range,
    reversed,
    set,
    str,
    tuple,
    type,
    zip,
)

SMALL_INT = 1 << 62
MAX_DEPTH = 200
MAX_ITEMS = 10_000_000  # elements of one array; a sanity bound, memory is capped anyway
_DTYPE = re.compile(r"[<>|=]?[biufcUS][0-9]{1,3}")
_INT = re.compile(r"-?[0-9a-f]{1,100000}")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")

try:  # numpy is in the prelude of both sides; the encoding still works without it
    import numpy as _np
except ImportError:  # pragma: no cover - the sandbox interpreter has numpy
    _np = None


class NotData(TypeError):
    """The value is not plain data (its type's name is in ``kind``)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Malformed(ValueError):
    """An encoded value that the encoder would never produce."""


_ITERATORS = (
    type(iter([])),
    type(iter(())),
    type(iter("")),
    type(iter(range(0))),
    type(iter({})),
    type(iter(set())),
    type(x for x in ()),
    map,
    filter,
    zip,
    enumerate,
    reversed,
)
_KEYS = type({}.keys())
_VALUES = type({}.values())
_ITEMS = type({}.items())


def _type_name(value: object) -> str:
    name = getattr(type(value), "__name__", None)
    return name if isinstance(name, str) else "object"


def encode(value: object, depth: int = 0) -> object:
    """The JSON-ready form of ``value``; raises :class:`NotData`."""
    if depth > MAX_DEPTH:
        raise NotData("nesting too deep")
    cls = type(value)
    if value is None or cls is bool:
        return value
    if _np is not None:
        if isinstance(value, _np.ndarray):
            return _encode_array(value, depth)
        if isinstance(value, _np.generic):
            return _encode_scalar(value, depth)
    if isinstance(value, int):
        number = int.__index__(value)
        return number if -SMALL_INT < number < SMALL_INT else {"i": format(number, "x")}
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, complex):
        return {"c": [complex.real.__get__(value), complex.imag.__get__(value)]}
    if isinstance(value, bytes):
        return {"b": bytes.hex(value)}
    if isinstance(value, list):
        return [encode(v, depth + 1) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"t": [encode(v, depth + 1) for v in tuple.__iter__(value)]}
    if isinstance(value, dict):
        items = dict.items(value)
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in items]}
    if isinstance(value, frozenset):
        return {"f": [encode(v, depth + 1) for v in frozenset.__iter__(value)]}
    if isinstance(value, set):
        return {"s": [encode(v, depth + 1) for v in set.__iter__(value)]}
    if cls is range:
        return {"r": [value.start, value.stop, value.step]}
    if cls is _KEYS:
        return {"dk": [encode(v, depth + 1) for v in value]}
    if cls is _VALUES:
        return {"dv": [encode(v, depth + 1) for v in value]}
    if cls is _ITEMS:
        return {"di": [encode(v, depth + 1) for v in value]}
    if cls in _ITERATORS:
        return {"it": [encode(v, depth + 1) for v in value]}
    raise NotData(_type_name(value))


def _encode_array(value, depth: int) -> object:
    array = _np.asarray(value)  # an ndarray subclass becomes a plain array
    if array.dtype.kind not in "biufcUS":
        raise NotData(f"numpy.ndarray of dtype {array.dtype}")
    flat = [encode(v, depth + 1) for v in array.ravel().tolist()]
    return {"nd": [array.dtype.str, list(array.shape), flat]}


def _encode_scalar(value, depth: int) -> object:
    dtype = _np.asarray(value).dtype
    if dtype.kind not in "biufcUS":
        raise NotData(f"numpy.{_type_name(value)}")
    return {"ns": [dtype.str, encode(value.item(), depth + 1)]}


# Encoder and decoder objects, not json.dumps/json.loads: those look up isinstance in builtins at
# call time, which a program can replace; iterencode(_one_shot) and decode go straight to C.
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False)
_DECODER = json.JSONDecoder()


def dumps(value: object) -> str:
    return "".join(_ENCODER.iterencode(value, _one_shot=True))


# --------------------------------------------------------------------------- decoding


def decode(data: object, depth: int = 0) -> object:
    """The value an encoded form stands for, built from base types only."""
    if depth > MAX_DEPTH + 2:
        raise Malformed("nesting too deep")
    cls = type(data)
    if data is None or cls in (bool, int, float, str):
        return data
    if cls is list:
        return [decode(v, depth + 1) for v in data]
    if cls is not dict or len(data) != 1:
        raise Malformed("an unknown value")
    ((tag, body),) = data.items()
    if tag == "i":
        if type(body) is not str or not _INT.fullmatch(body):
            raise Malformed("a bad int")
        return int(body, 16)
    if tag == "b":
        if type(body) is not str or not _HEX.fullmatch(body):
            raise Malformed("bad bytes")
        return bytes.fromhex(body)
    if tag == "ns":
        return _decode_scalar(body, depth)
    if tag == "nd":
        return _decode_array(body, depth)
    if type(body) is not list:
        raise Malformed("a bad container")
    if tag == "c":
        if len(body) != 2 or not all(type(v) in (int, float) for v in body):
            raise Malformed("a bad complex")
        return complex(body[0], body[1])
    if tag == "r":
        if len(body) != 3 or not all(type(v) is int for v in body) or body[2] == 0:
            raise Malformed("a bad range")
        return range(*body)
    items = [decode(v, depth + 1) for v in body]
    try:
        if tag == "t":
            return tuple(items)
        if tag == "s":
            return set(items)
        if tag == "f":
            return frozenset(items)
        if tag == "it":
            return iter(items)
        if tag == "dk":
            return dict.fromkeys(items).keys()
        if tag == "dv":
            return dict(enumerate(items)).values()
        if tag == "di":
            return _pairs(items).items()
        if tag == "d":
            return _pairs(items)
    except TypeError:  # an unhashable key: a list where only a tuple could be
        raise Malformed("an unhashable key") from None
    raise Malformed(f"an unknown tag {tag[:20]!r}")


def _pairs(items: list) -> dict:
    if not all(type(p) is tuple and len(p) == 2 for p in items) and not all(
        type(p) is list and len(p) == 2 for p in items
    ):
        raise Malformed("a bad dict")
    return {p[0]: p[1] for p in items}


def _dtype(text: object):
    if _np is None or type(text) is not str or not _DTYPE.fullmatch(text):
        raise Malformed("a bad dtype")
    return _np.dtype(text)


def _decode_scalar(body: object, depth: int) -> object:
    if type(body) is not list or len(body) != 2:
        raise Malformed("a bad numpy scalar")
    dtype = _dtype(body[0])
    value = decode(body[1], depth + 1)
    if type(value) not in (bool, int, float, complex, str, bytes):
        raise Malformed("a bad numpy scalar")
    try:
        return dtype.type(value)
    except (TypeError, ValueError, OverflowError):
        raise Malformed("a bad numpy scalar") from None


def _decode_array(body: object, depth: int) -> object:
    if type(body) is not list or len(body) != 3:
        raise Malformed("a bad numpy array")
    dtype = _dtype(body[0])
    shape, flat = body[1], body[2]
    if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
        raise Malformed("a bad numpy shape")
    size = 1
    for n in shape:
        size *= n
    if type(flat) is not list or len(flat) != size or size > MAX_ITEMS:
        raise Malformed("a bad numpy array")
    values = [decode(v, depth + 1) for v in flat]
    if not all(type(v) in (bool, int, float, complex, str, bytes) for v in values):
        raise Malformed("a bad numpy array")
    try:
        return _np.array(values, dtype=dtype).reshape(shape)
    except (TypeError, ValueError, OverflowError):
        raise Malformed("a bad numpy array") from None


def loads(line: bytes) -> object:
    try:
        return _DECODER.decode(line.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Malformed("not JSON") from None
