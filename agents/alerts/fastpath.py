"""A pure-Python evaluator for the simple subset of CEL that alert rules mostly use.

Why: the ``cel`` library executes a compiled program in ~0.3 µs, but converting a
Python context into CEL values costs 1-3 µs per field (see benchmarks/bench_rules.py),
which caps the library path near 100k rule evals/s. Most rules are comparisons of
context fields with literals; this module evaluates those directly on the Python dict.

Contract: a compiled fast program either returns the bool CEL would return, or raises
:class:`Fallback`, and the engine then asks the real CEL library. Anything outside the
common, well-typed case falls back: a missing field, a null, a type mix CEL rejects,
NaN, division by zero, a non-bool result. Expressions using anything beyond the subset
(functions, macros, indexing, ``?:``, ``%``, escapes in strings, uint or hex literals)
get no fast program at all. ``tests/unit/alerts/test_alerts_fastpath.py`` checks the
fast path against the library on random contexts.

Subset: ``|| && ! == != < <= > >= in + - * /``, parentheses, ``has(a.b)``, field paths
from the scope variable / ``entity_id`` / ``ts_ms``, number, string, bool and null
literals, list literals (right of ``in``).

>>> f = compile_fast("snapshot.var_95_usd > 0.1 * snapshot.total_exposure_usd")
>>> f({"snapshot": {"var_95_usd": 20, "total_exposure_usd": 100.0}})
True
>>> try:
...     f({"snapshot": {"var_95_usd": None, "total_exposure_usd": 100.0}})
... except Fallback:
...     print("ask the CEL library")
ask the CEL library
>>> compile_fast("snapshot.tags.exists(t, t == 'x')") is None
True
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

Fn = Callable[[dict[str, Any]], Any]


class Fallback(Exception):
    """This evaluation needs the real CEL library."""


class _Unsupported(Exception):
    pass


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+(?![uUxX.\w]))
  | (?P<str>"[^"\\\n]*"|'[^'\\\n]*')
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/()\[\],.])
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
""", re.X)
_RESERVED = {"true", "false", "null", "in", "has"}
_MISSING = object()


def _tokens(src: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m:
            raise _Unsupported(src[pos:])
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group(kind)))
    out.append(("end", ""))
    return out


def _is_num(v: Any) -> bool:
    t = type(v)
    return t is float or t is int


def _norm(v: Any) -> Any:
    return float(v) if type(v) is int else v


class _Parser:
    def __init__(self, src: str, variables: frozenset[str]) -> None:
        self.toks = _tokens(src)
        self.i = 0
        self.variables = variables

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            raise _Unsupported(f"expected {value!r}")
        self.i += 1
        return tok

    def parse(self) -> Fn:
        fn = self.or_()
        if self.peek()[0] != "end":
            raise _Unsupported("trailing input")
        return fn

    def or_(self) -> Fn:
        left = self.and_()
        while self.peek()[1] == "||":
            self.take()
            left = _or(left, self.and_())
        return left

    def and_(self) -> Fn:
        left = self.rel()
        while self.peek()[1] == "&&":
            self.take()
            left = _and(left, self.rel())
        return left

    def rel(self) -> Fn:
        left = self.add()
        while self.peek()[1] in ("==", "!=", "<", "<=", ">", ">=", "in"):
            op = self.take()[1]
            left = _in(left, self.list_()) if op == "in" else _cmp(op, left, self.add())
        return left

    def add(self) -> Fn:
        left = self.mul()
        while self.peek()[1] in ("+", "-"):
            left = _arith(self.take()[1], left, self.mul())
        return left

    def mul(self) -> Fn:
        left = self.unary()
        while self.peek()[1] in ("*", "/"):
            left = _arith(self.take()[1], left, self.unary())
        return left

    def unary(self) -> Fn:
        tok = self.peek()[1]
        if tok == "!":
            self.take()
            return _not(self.unary())
        if tok == "-":
            self.take()
            return _neg(self.unary())
        return self.primary()

    def list_(self) -> list[Any]:
        self.take("[")
        items: list[Any] = []
        while self.peek()[1] != "]":
            kind, text = self.take()
            if kind not in ("num", "str") and text not in ("true", "false", "null"):
                raise _Unsupported("only literals in an 'in' list")
            items.append(_literal(kind, text))
            if self.peek()[1] == ",":
                self.take()
        self.take("]")
        return items

    def path(self) -> list[str]:
        kind, name = self.take()
        if kind != "id" or name in _RESERVED or name not in self.variables:
            raise _Unsupported(f"unknown name {name!r}")
        names = [name]
        while self.peek()[1] == ".":
            self.take()
            kind, field = self.take()
            if kind != "id":
                raise _Unsupported("bad field")
            names.append(field)
        if self.peek()[1] in ("(", "["):
            raise _Unsupported("call or index")
        return names

    def primary(self) -> Fn:
        kind, text = self.peek()
        if kind in ("num", "str") or text in ("true", "false", "null"):
            self.take()
            value = _literal(kind, text)

            def lit(env: dict[str, Any]) -> Any:
                return value

            lit.literal = (value,)  # type: ignore[attr-defined]
            return lit
        if text == "(":
            self.take()
            fn = self.or_()
            self.take(")")
            return fn
        if text == "has":
            self.take()
            self.take("(")
            names = self.path()
            self.take(")")
            if len(names) < 2:
                raise _Unsupported("has() needs a field")
            return _has(names)
        if kind == "id":
            return _path(self.path())
        raise _Unsupported(text)


def _literal(kind: str, text: str) -> Any:
    if kind == "num":
        return int(text) if text.isdigit() else float(text)
    if kind == "str":
        return text[1:-1]
    return {"true": True, "false": False, "null": None}[text]


def _lookup(env: dict[str, Any], names: list[str]) -> Any:
    v = env.get(names[0], _MISSING)
    for n in names[1:]:
        if type(v) is not dict:
            raise Fallback
        v = v.get(n, _MISSING)
    if v is _MISSING:
        raise Fallback
    return v


def _path(names: list[str]) -> Fn:
    if len(names) == 2:
        root, field = names

        def get2(env: dict[str, Any]) -> Any:
            d = env[root]
            if type(d) is not dict:
                raise Fallback
            v = d.get(field, _MISSING)
            if v is _MISSING:
                raise Fallback
            return float(v) if type(v) is int else v

        get2.path = (root, field)  # type: ignore[attr-defined]
        return get2
    return lambda env: _norm(_lookup(env, names))


def _has(names: list[str]) -> Fn:
    prefix, last = names[:-1], names[-1]

    def has(env: dict[str, Any]) -> bool:
        d = _lookup(env, prefix)
        if type(d) is not dict:
            raise Fallback
        return last in d

    return has


def _bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    raise Fallback


def _and(a: Fn, b: Fn) -> Fn:
    def and_(env: dict[str, Any]) -> bool:
        x = a(env)
        if x is False:
            return False
        if x is not True:
            raise Fallback
        y = b(env)
        if y is True or y is False:
            return y
        raise Fallback

    return and_


def _or(a: Fn, b: Fn) -> Fn:
    return lambda env: _bool(a(env)) or _bool(b(env))


def _not(a: Fn) -> Fn:
    return lambda env: not _bool(a(env))


def _neg(a: Fn) -> Fn:
    def neg(env: dict[str, Any]) -> Any:
        v = a(env)
        if type(v) is not float:
            raise Fallback
        return -v

    return neg


def _arith(op: str, a: Fn, b: Fn) -> Fn:
    def arith(env: dict[str, Any]) -> float:
        x, y = a(env), b(env)
        if type(x) is not float or type(y) is not float:
            raise Fallback  # CEL: no int/double mixing; int overflow rules: library
        if op == "+":
            return x + y
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if y == 0.0:
            raise Fallback
        return x / y

    return arith


def _comparable(x: Any, y: Any) -> bool:
    if _is_num(x) and _is_num(y):
        return not (x != x or y != y)  # NaN: library
    tx = type(x)
    return tx is type(y) and tx in (str, bool, type(None))


_CMP = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}


def _cmp_field_literal(op: str, root: str, field: str, lit: Any) -> Fn:
    """``scope.field OP literal``, the commonest rule shape, in one closure."""
    f = _CMP[op]
    if _is_num(lit) and lit == lit:

        def num(env: dict[str, Any]) -> bool:
            d = env[root]
            if type(d) is not dict:
                raise Fallback
            v = d.get(field, _MISSING)
            t = type(v)
            if (t is float or t is int) and v == v and not (math.isinf(v) and math.isinf(lit)):
                return f(v, lit)
            raise Fallback

        return num
    if type(lit) is str:

        def text(env: dict[str, Any]) -> bool:
            d = env[root]
            if type(d) is not dict:
                raise Fallback
            v = d.get(field, _MISSING)
            if type(v) is str:
                return f(v, lit)
            raise Fallback

        return text
    raise _Unsupported("literal kind")


def _cmp(op: str, a: Fn, b: Fn) -> Fn:
    f = _CMP[op]
    ordered = op not in ("==", "!=")
    if hasattr(a, "path") and hasattr(b, "literal"):
        try:
            root, field = a.path
            return _cmp_field_literal(op, root, field, b.literal[0])
        except _Unsupported:
            pass

    def cmp(env: dict[str, Any]) -> bool:
        x, y = a(env), b(env)
        tx, ty = type(x), type(y)
        if (tx is float or tx is int) and (ty is float or ty is int):
            if x != x or y != y or (math.isinf(x) and math.isinf(y)):
                raise Fallback
            return bool(f(x, y))
        if tx is not ty or tx not in (str, bool, type(None)):
            raise Fallback
        if ordered and tx is not str:
            raise Fallback
        return bool(f(x, y))

    return cmp


def _in(a: Fn, items: list[Any]) -> Fn:
    def contains(env: dict[str, Any]) -> bool:
        x = a(env)
        for it in items:
            if not _comparable(x, it):
                raise Fallback
            if x == it:
                return True
        return False

    return contains


def compile_fast(expr: str, variables: frozenset[str] = frozenset(
        {"snapshot", "strategy", "source", "asset", "system", "entity_id", "ts_ms"})
                 ) -> Fn | None:
    """A fast evaluator for ``expr`` (returns a bool or raises :class:`Fallback`), or
    None when the expression is outside the subset."""
    try:
        fn = _Parser(expr, variables).parse()
    except (_Unsupported, IndexError, KeyError, ValueError):
        return None

    def run(env: dict[str, Any]) -> bool:
        r = fn(env)
        if r is True or r is False:
            return r
        raise Fallback

    return run
