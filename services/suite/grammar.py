"""The grammar of the suite: operations, the constants they take, and the families they form.

A task is a pipeline over one variable: a few *steps* (``xs = [x * 3 for x in xs]``), then one
*final* (``return sum(xs)``). Each operation has a phrase and a line of code that line up almost
token for token ("multiply each element by 3" / ``[x * 3 for x in xs]``), so a small transformer
can learn the mapping from description to body.

Some operations are *lessons*: they never occur in the pretraining or retention pools, only in
the distillation, validation and held-out pools. The pretrained student therefore fails tasks
that use one, usually on that one line only (a near miss), and distillation on the lesson
transfers to held-out compositions. Lessons are either new code made of known pieces (rotate:
``xs[k:] + xs[:k]``) or a new phrasing of known code ("triple each element").

Constants: each (operation, constant) pair belongs, by a fixed hash, to the training pools, the
held-out pool or the validation pool. A held-out task always has at least one pair that no
training task contains ("multiply each element by 7" when training only ever multiplied by other
values), while every value itself is familiar to the student from other operations.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

from services.suite.hashing import constant_bucket


class Domain(StrEnum):
    """What kind of constant an operation takes."""

    INT = "int"  # 1..30
    SMALL = "small"  # 2..9: divisors, multipliers, slice lengths
    TINY = "tiny"  # 2..3: repeat counts (outputs stay short)
    CHAR = "char"  # one lower-case letter
    WORD = "word"  # two lower-case letters


class Family(StrEnum):
    LIST = "list"
    STRING = "string"
    INTEGER = "integer"


_ALL_INTS = {Domain.INT: range(1, 31), Domain.SMALL: range(2, 10), Domain.TINY: range(2, 4)}
_LETTERS = string.ascii_lowercase


class ConstantSet(StrEnum):
    """Who may use an (operation, constant) pair: training pools, or one evaluation pool."""

    TRAIN = "train"
    HELDOUT = "heldout"
    VALIDATION = "validation"


def domain_values(domain: Domain) -> list[Any]:
    if domain in _ALL_INTS:
        return list(_ALL_INTS[domain])
    if domain is Domain.CHAR:
        return list(_LETTERS)
    return [a + b for a in _LETTERS for b in _LETTERS if a != b]


@dataclass(frozen=True)
class Op:
    """One operation. ``phrase`` and ``code`` are ``str.format`` templates over the constants
    (``{0}``, ``{1}``); ``fn(value, *constants)`` computes it so tests need no ``exec``."""

    family: Family
    name: str
    phrase: str
    code: str
    fn: Callable[..., Any]
    domains: tuple[Domain, ...] = ()
    final: bool = False
    lesson: bool = False
    returns: str = ""  # a final's return type hint

    def render_phrase(self, consts: tuple[Any, ...]) -> str:
        return self.phrase.format(*(repr(c) if isinstance(c, str) else c for c in consts))

    def render_code(self, consts: tuple[Any, ...]) -> str:
        return self.code.format(*(repr(c) for c in consts))


@dataclass(frozen=True)
class FamilySpec:
    family: Family
    var: str  # the one variable the pipeline rewrites
    param_type: str
    entry_point: str

    def header(self, returns: str) -> str:
        return f"def {self.entry_point}({self.var}: {self.param_type}) -> {returns}:"


def owner(op: Op, slot: int, value: Any) -> ConstantSet:
    """Which pools may use ``value`` as ``op``'s constant number ``slot``: a fixed hash, one pair
    in ten for the held-out pool, one in ten for validation, the rest for training. Every value
    occurs in training with most operations (so the student knows it); the pair itself does not."""
    bucket = constant_bucket(f"{op.family.value}:{op.name}:{slot}", repr(value))
    return {0: ConstantSet.HELDOUT, 1: ConstantSet.VALIDATION}.get(bucket, ConstantSet.TRAIN)


@cache
def constant_values(op: Op, slot: int, cs: ConstantSet) -> tuple[Any, ...]:
    """The values a pool drawing from ``cs`` may give ``op``'s constant ``slot``: training values,
    plus the evaluation pool's own reserved ones (never the other evaluation pool's)."""
    allowed = {ConstantSet.TRAIN, cs}
    return tuple(v for v in domain_values(op.domains[slot]) if owner(op, slot, v) in allowed)


FAMILIES: dict[Family, FamilySpec] = {
    Family.LIST: FamilySpec(Family.LIST, "xs", "list[int]", "solve_list"),
    Family.STRING: FamilySpec(Family.STRING, "s", "str", "solve_text"),
    Family.INTEGER: FamilySpec(Family.INTEGER, "n", "int", "solve_number"),
}

L, S, N = Family.LIST, Family.STRING, Family.INTEGER
IN, SM, T, C, W = Domain.INT, Domain.SMALL, Domain.TINY, Domain.CHAR, Domain.WORD


def _digits(n: int) -> str:
    return str(abs(n))


OPS: tuple[Op, ...] = (
    # --- list steps -----------------------------------------------------------------------
    Op(L, "add", "add {0} to each element", "[x + {0} for x in xs]",
       lambda v, k: [x + k for x in v], (IN,)),
    Op(L, "sub", "subtract {0} from each element", "[x - {0} for x in xs]",
       lambda v, k: [x - k for x in v], (IN,)),
    Op(L, "mul", "multiply each element by {0}", "[x * {0} for x in xs]",
       lambda v, k: [x * k for x in v], (SM,)),
    Op(L, "floordiv", "divide each element by {0} rounding down", "[x // {0} for x in xs]",
       lambda v, k: [x // k for x in v], (SM,)),
    Op(L, "mod", "take each element modulo {0}", "[x % {0} for x in xs]",
       lambda v, k: [x % k for x in v], (SM,)),
    Op(L, "square", "square each element", "[x * x for x in xs]",
       lambda v: [x * x for x in v]),
    Op(L, "negate", "negate each element", "[-x for x in xs]", lambda v: [-x for x in v]),
    Op(L, "abs", "take the absolute value of each element", "[abs(x) for x in xs]",
       lambda v: [abs(x) for x in v]),
    Op(L, "atleast", "raise each element to at least {0}", "[max(x, {0}) for x in xs]",
       lambda v, k: [max(x, k) for x in v], (IN,)),
    Op(L, "atmost", "cap each element at {0}", "[min(x, {0}) for x in xs]",
       lambda v, k: [min(x, k) for x in v], (IN,)),
    Op(L, "even", "keep the even elements", "[x for x in xs if x % 2 == 0]",
       lambda v: [x for x in v if x % 2 == 0]),
    Op(L, "odd", "keep the odd elements", "[x for x in xs if x % 2 == 1]",
       lambda v: [x for x in v if x % 2 == 1]),
    Op(L, "gt", "keep the elements greater than {0}", "[x for x in xs if x > {0}]",
       lambda v, k: [x for x in v if x > k], (IN,)),
    Op(L, "lt", "keep the elements less than {0}", "[x for x in xs if x < {0}]",
       lambda v, k: [x for x in v if x < k], (IN,)),
    Op(L, "divisible", "keep the elements divisible by {0}", "[x for x in xs if x % {0} == 0]",
       lambda v, k: [x for x in v if x % k == 0], (SM,)),
    Op(L, "remove", "remove every {0}", "[x for x in xs if x != {0}]",
       lambda v, k: [x for x in v if x != k], (IN,)),
    Op(L, "sort", "sort it", "sorted(xs)", sorted),
    Op(L, "sortdesc", "sort it in descending order", "sorted(xs, reverse=True)",
       lambda v: sorted(v, reverse=True)),
    Op(L, "reverse", "reverse it", "xs[::-1]", lambda v: v[::-1]),
    Op(L, "take", "keep the first {0} elements", "xs[:{0}]", lambda v, k: v[:k], (SM,)),
    Op(L, "drop", "drop the first {0} elements", "xs[{0}:]", lambda v, k: v[k:], (SM,)),
    Op(L, "dedup", "remove duplicates", "list(dict.fromkeys(xs))",
       lambda v: list(dict.fromkeys(v))),
    Op(L, "append", "append {0}", "xs + [{0}]", lambda v, k: v + [k], (IN,)),
    Op(L, "prepend", "prepend {0}", "[{0}] + xs", lambda v, k: [k] + v, (IN,)),
    # list lessons
    Op(L, "rotate", "rotate it left by {0}", "xs[{0}:] + xs[:{0}]",
       lambda v, k: v[k:] + v[:k], (SM,), lesson=True),
    Op(L, "triple", "triple each element", "[x * 3 for x in xs]",
       lambda v: [x * 3 for x in v], lesson=True),
    Op(L, "everyother", "keep every second element", "xs[::2]", lambda v: v[::2], lesson=True),
    Op(L, "clamp0", "replace negative elements by 0", "[max(x, 0) for x in xs]",
       lambda v: [max(x, 0) for x in v], lesson=True),
    # list finals
    Op(L, "ret", "return the list", "xs", lambda v: v, final=True, returns="list[int]"),
    Op(L, "sum", "return the sum", "sum(xs)", sum, final=True, returns="int"),
    Op(L, "len", "return the count", "len(xs)", len, final=True, returns="int"),
    Op(L, "max", "return the largest element or {0} if empty", "max(xs, default={0})",
       lambda v, k: max(v, default=k), (IN,), final=True, returns="int"),
    Op(L, "min", "return the smallest element or {0} if empty", "min(xs, default={0})",
       lambda v, k: min(v, default=k), (IN,), final=True, returns="int"),
    Op(L, "first", "return the first element or {0} if empty", "xs[0] if xs else {0}",
       lambda v, k: v[0] if v else k, (IN,), final=True, returns="int"),
    Op(L, "sumsq", "return the sum of squares", "sum(x * x for x in xs)",
       lambda v: sum(x * x for x in v), final=True, lesson=True, returns="int"),
    # --- string steps ---------------------------------------------------------------------
    Op(S, "upper", "convert it to upper case", "s.upper()", str.upper),
    Op(S, "lower", "convert it to lower case", "s.lower()", str.lower),
    Op(S, "swapcase", "swap the case of each letter", "s.swapcase()", str.swapcase),
    Op(S, "reverse", "reverse it", "s[::-1]", lambda v: v[::-1]),
    Op(S, "strip", "strip the surrounding spaces", "s.strip()", str.strip),
    Op(S, "replace", "replace every {0} with {1}", "s.replace({0}, {1})",
       lambda v, a, b: v.replace(a, b), (C, C)),
    Op(S, "remove", "remove every {0}", "s.replace({0}, '')", lambda v, a: v.replace(a, ""),
       (C,)),
    Op(S, "take", "keep the first {0} characters", "s[:{0}]", lambda v, k: v[:k], (SM,)),
    Op(S, "drop", "drop the first {0} characters", "s[{0}:]", lambda v, k: v[k:], (SM,)),
    Op(S, "suffix", "append {0}", "s + {0}", lambda v, w: v + w, (W,)),
    Op(S, "prefix", "prepend {0}", "{0} + s", lambda v, w: w + v, (W,)),
    Op(S, "repeat", "repeat it {0} times", "s * {0}", lambda v, k: v * k, (T,)),
    Op(S, "letters", "keep only the letters", "''.join(c for c in s if c.isalpha())",
       lambda v: "".join(c for c in v if c.isalpha())),
    Op(S, "sortchars", "sort its characters", "''.join(sorted(s))",
       lambda v: "".join(sorted(v))),
    # string lessons
    Op(S, "double", "double each character", "''.join(c * 2 for c in s)",
       lambda v: "".join(c * 2 for c in v), lesson=True),
    Op(S, "everyother", "keep every second character", "s[::2]", lambda v: v[::2],
       lesson=True),
    Op(S, "rotate", "rotate it left by {0}", "s[{0}:] + s[:{0}]", lambda v, k: v[k:] + v[:k],
       (SM,), lesson=True),
    Op(S, "nospace", "delete the spaces", "s.replace(' ', '')", lambda v: v.replace(" ", ""),
       lesson=True),
    # string finals
    Op(S, "ret", "return the string", "s", lambda v: v, final=True, returns="str"),
    Op(S, "len", "return its length", "len(s)", len, final=True, returns="int"),
    Op(S, "count", "return how many {0} it contains", "s.count({0})",
       lambda v, a: v.count(a), (C,), final=True, returns="int"),
    Op(S, "vowels", "return the number of vowels", "sum(c in 'aeiou' for c in s)",
       lambda v: sum(c in "aeiou" for c in v), final=True, lesson=True, returns="int"),
    # --- integer steps --------------------------------------------------------------------
    Op(N, "add", "add {0}", "n + {0}", lambda v, k: v + k, (IN,)),
    Op(N, "sub", "subtract {0}", "n - {0}", lambda v, k: v - k, (IN,)),
    Op(N, "mul", "multiply it by {0}", "n * {0}", lambda v, k: v * k, (SM,)),
    Op(N, "floordiv", "divide it by {0} rounding down", "n // {0}", lambda v, k: v // k, (SM,)),
    Op(N, "mod", "take it modulo {0}", "n % {0}", lambda v, k: v % k, (SM,)),
    Op(N, "square", "square it", "n * n", lambda v: v * v),
    Op(N, "negate", "negate it", "-n", lambda v: -v),
    Op(N, "abs", "take its absolute value", "abs(n)", abs),
    Op(N, "atleast", "raise it to at least {0}", "max(n, {0})", lambda v, k: max(v, k), (IN,)),
    Op(N, "atmost", "cap it at {0}", "min(n, {0})", lambda v, k: min(v, k), (IN,)),
    Op(N, "digitsum", "replace it by its digit sum", "sum(int(d) for d in str(abs(n)))",
       lambda v: sum(int(d) for d in _digits(v))),
    Op(N, "revdigits", "reverse its digits", "int(str(abs(n))[::-1])",
       lambda v: int(_digits(v)[::-1])),
    # integer lessons
    Op(N, "double", "double it", "n * 2", lambda v: v * 2, lesson=True),
    Op(N, "lastdigit", "keep its last digit", "abs(n) % 10", lambda v: abs(v) % 10,
       lesson=True),
    Op(N, "ndigits", "replace it by its number of digits", "len(str(abs(n)))",
       lambda v: len(_digits(v)), lesson=True),
    Op(N, "round10", "round it down to a multiple of 10", "n - n % 10", lambda v: v - v % 10,
       lesson=True),
    # integer finals
    Op(N, "ret", "return it", "n", lambda v: v, final=True, returns="int"),
    Op(N, "iseven", "return whether it is even", "n % 2 == 0", lambda v: v % 2 == 0,
       final=True, returns="bool"),
    Op(N, "isgt", "return whether it is greater than {0}", "n > {0}", lambda v, k: v > k, (IN,),
       final=True, returns="bool"),
    Op(N, "str", "return it as a string", "str(n)", str, final=True, returns="str"),
    Op(N, "isodd", "return whether it is odd", "n % 2 == 1", lambda v: v % 2 == 1,
       final=True, lesson=True, returns="bool"),
)  # fmt: skip

OPS_BY_KEY: dict[tuple[Family, str], Op] = {(op.family, op.name): op for op in OPS}


@cache
def ops_of(family: Family, *, final: bool, lessons: bool | None) -> tuple[Op, ...]:
    """The family's steps or finals; ``lessons`` True/False selects only/none, None both."""
    return tuple(
        op
        for op in OPS
        if op.family is family and op.final is final and (lessons is None or op.lesson is lessons)
    )
