"""The one expression language of lathe, shared by tensor expressions and the loop IR.

Nodes are small immutable objects compared by identity (variables are dict keys).
Arithmetic operators build nodes; `bool(expr)` is an error so that a Python `if` on a
symbolic value fails loudly instead of silently picking a branch.
dtypes are strings: "float32", "int32", "bool", ... and "float32x16" for a 16-lane vector.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any
from collections.abc import Callable

SCALAR_DTYPES = ("float32", "float16", "float64", "int32", "int64", "int8", "uint8", "bool")


def lanes_of(dtype: str) -> int:
    return int(dtype.split("x")[1]) if "x" in dtype else 1


def scalar_of(dtype: str) -> str:
    return dtype.split("x")[0]


def with_lanes(dtype: str, lanes: int) -> str:
    base = scalar_of(dtype)
    return base if lanes == 1 else f"{base}x{lanes}"


def is_float(dtype: str) -> bool:
    return scalar_of(dtype).startswith("float")


def check_dtype(dtype: str) -> str:
    if scalar_of(str(dtype)) not in SCALAR_DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; lathe knows {', '.join(SCALAR_DTYPES)}")
    return str(dtype)


class Expr:
    __slots__ = ("dtype",)
    dtype: str

    # arithmetic builds nodes; folding of constants happens here so that shapes stay ints
    def __add__(self, o): return binary("+", self, o)
    def __radd__(self, o): return binary("+", o, self)
    def __sub__(self, o): return binary("-", self, o)
    def __rsub__(self, o): return binary("-", o, self)
    def __mul__(self, o): return binary("*", self, o)
    def __rmul__(self, o): return binary("*", o, self)
    def __truediv__(self, o): return binary("/", self, o)
    def __rtruediv__(self, o): return binary("/", o, self)
    def __floordiv__(self, o): return binary("//", self, o)
    def __rfloordiv__(self, o): return binary("//", o, self)
    def __mod__(self, o): return binary("%", self, o)
    def __rmod__(self, o): return binary("%", o, self)
    def __neg__(self): return binary("-", zero_like(self), self)
    def __lt__(self, o): return binary("<", self, o)
    def __le__(self, o): return binary("<=", self, o)
    def __gt__(self, o): return binary(">", self, o)
    def __ge__(self, o): return binary(">=", self, o)
    def __eq__(self, o): return binary("==", self, o)  # type: ignore[override]
    def __ne__(self, o): return binary("!=", self, o)  # type: ignore[override]
    def __and__(self, o): return binary("and", self, o)
    def __or__(self, o): return binary("or", self, o)
    def __invert__(self): return Not(self)
    __hash__ = object.__hash__

    def __bool__(self):
        raise TypeError(f"symbolic expression {self} has no truth value; use te.if_then_else or te.all")

    def astype(self, dtype: str) -> Expr:
        return cast(self, dtype)

    def __repr__(self) -> str:
        from lathe.tir.printer import expr_str

        return expr_str(self)

    # generic traversal: each node lists its child expressions and rebuilds itself from new ones
    def children(self) -> tuple:
        return ()

    def rebuild(self, kids: list) -> Expr:
        return self


class Const(Expr):
    __slots__ = ("value",)

    def __init__(self, value, dtype: str):
        self.dtype = check_dtype(dtype)
        s = scalar_of(dtype)
        self.value = bool(value) if s == "bool" else (float(value) if is_float(s) else int(value))
        if s == "float32":  # hold what float32 holds, so a folded chain rounds like the kernel's arithmetic
            self.value = ctypes.c_float(self.value).value

    def __bool__(self):
        return bool(self.value)


class Var(Expr):
    __slots__ = ("name",)

    def __init__(self, name: str, dtype: str = "int32"):
        self.name, self.dtype = name, dtype


class IterVar(Var):
    """A loop variable with its domain [min, min+extent); kind is "data" or "reduce"."""

    __slots__ = ("min", "extent", "kind")

    def __init__(self, name: str, extent, kind: str = "data", min=0):
        super().__init__(name, "int32")
        self.min, self.extent, self.kind = convert(min), convert(extent), kind


class Binary(Expr):
    __slots__ = ("op", "a", "b")

    def __init__(self, op: str, a: Expr, b: Expr, dtype: str):
        self.op, self.a, self.b, self.dtype = op, a, b, dtype

    def children(self):
        return (self.a, self.b)

    def rebuild(self, kids):
        return binary(self.op, kids[0], kids[1])


class Not(Expr):
    __slots__ = ("a",)

    def __init__(self, a: Expr):
        self.a, self.dtype = a, a.dtype

    def children(self):
        return (self.a,)

    def rebuild(self, kids):
        return Not(kids[0])


class Select(Expr):
    __slots__ = ("cond", "t", "f")

    def __init__(self, cond: Expr, t: Expr, f: Expr):
        self.cond, self.t, self.f, self.dtype = cond, t, f, t.dtype

    def children(self):
        return (self.cond, self.t, self.f)

    def rebuild(self, kids):
        return Select(*kids)


class Cast(Expr):
    __slots__ = ("a",)

    def __init__(self, dtype: str, a: Expr):
        self.dtype, self.a = dtype, a

    def children(self):
        return (self.a,)

    def rebuild(self, kids):
        return Cast(self.dtype, kids[0])


class Call(Expr):
    """A pure math intrinsic (exp, log, sqrt, ...) applied elementwise."""

    __slots__ = ("name", "args")

    def __init__(self, name: str, args: tuple, dtype: str):
        self.name, self.args, self.dtype = name, tuple(args), dtype

    def children(self):
        return self.args

    def rebuild(self, kids):
        return Call(self.name, kids, self.dtype)


class TensorRead(Expr):
    """`T[i, j]` inside a tensor expression: reads a tensor produced by another operation."""

    __slots__ = ("tensor", "indices")

    def __init__(self, tensor, indices: tuple):
        self.tensor, self.indices, self.dtype = tensor, tuple(indices), tensor.dtype

    def children(self):
        return self.indices

    def rebuild(self, kids):
        return TensorRead(self.tensor, kids)


class Load(Expr):
    """Read of a loop-IR buffer; after storage flattening `indices` has one (maybe vector) entry."""

    __slots__ = ("buffer", "indices")

    def __init__(self, buffer, indices: tuple, dtype: str | None = None):
        self.buffer, self.indices = buffer, tuple(indices)
        lanes = max(lanes_of(i.dtype) for i in self.indices) if self.indices else 1
        self.dtype = dtype or with_lanes(buffer.dtype, lanes)

    def children(self):
        return self.indices

    def rebuild(self, kids):
        return Load(self.buffer, kids)


class Ramp(Expr):
    """The vector [base, base+stride, ..., base+(lanes-1)*stride]."""

    __slots__ = ("base", "stride", "lanes")

    def __init__(self, base: Expr, stride: Expr, lanes: int):
        self.base, self.stride, self.lanes = base, stride, lanes
        self.dtype = with_lanes(base.dtype, lanes)

    def children(self):
        return (self.base, self.stride)

    def rebuild(self, kids):
        return Ramp(kids[0], kids[1], self.lanes)


class Broadcast(Expr):
    __slots__ = ("value", "lanes")

    def __init__(self, value: Expr, lanes: int):
        self.value, self.lanes = value, lanes
        self.dtype = with_lanes(value.dtype, lanes)

    def children(self):
        return (self.value,)

    def rebuild(self, kids):
        return Broadcast(kids[0], self.lanes)


class Reduce(Expr):
    """A commutative reduction (sum, max, min) of `source` over reduce axes, optionally masked."""

    __slots__ = ("combiner", "source", "axes", "where")

    def __init__(self, combiner: str, source: Expr, axes: tuple, where: Expr | None = None):
        self.combiner, self.source, self.axes, self.where = combiner, source, tuple(axes), where
        self.dtype = source.dtype

    def children(self):
        return (self.source,) if self.where is None else (self.source, self.where)

    def rebuild(self, kids):
        return Reduce(self.combiner, kids[0], self.axes, kids[1] if len(kids) > 1 else None)

    def identity(self) -> Const:
        return reduce_identity(self.combiner, self.dtype)


INT_RANGE = {"int8": (-2**7, 2**7 - 1), "uint8": (0, 2**8 - 1), "int32": (-2**31, 2**31 - 1),
             "int64": (-2**63, 2**63 - 1), "bool": (0, 1)}


def reduce_identity(combiner: str, dtype: str) -> Const:
    """0 for sum; for max the smallest value of the type (-inf for floats), for min the largest."""
    if combiner == "sum":
        return Const(0, dtype)
    s = scalar_of(dtype)
    lo, hi = (-math.inf, math.inf) if is_float(s) else INT_RANGE[s]
    return Const(lo if combiner == "max" else hi, dtype)


def combine(combiner: str, acc: Expr, value: Expr) -> Expr:
    return acc + value if combiner == "sum" else binary(combiner, acc, value)


# ---------------------------------------------------------------------------- construction

def const(value, dtype: str | None = None) -> Const:
    if dtype is None:
        dtype = "bool" if isinstance(value, bool) else "int32" if isinstance(value, int) else "float32"
    return Const(value, dtype)


def convert(x) -> Expr:
    if isinstance(x, Expr):
        return x
    if isinstance(x, (bool, int, float)):
        return const(x)
    if hasattr(x, "dtype") and hasattr(x, "item"):  # numpy scalar
        return Const(x.item(), str(x.dtype))
    raise TypeError(f"cannot use {x!r} ({type(x).__name__}) in a tensor expression")


def zero_like(e: Expr) -> Const:
    return Const(0, e.dtype)


_ARITH = {"+", "-", "*", "/", "//", "%", "min", "max"}
_COMPARE = {"<", "<=", ">", ">=", "==", "!="}
_PY = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "min": min, "max": max, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b, "and": lambda a, b: a and b, "or": lambda a, b: a or b,
}


def unify(a: Expr, b: Expr) -> tuple[Expr, Expr]:
    """Constants adopt the other side's element type; a scalar meets a vector by broadcasting."""
    if a.dtype == b.dtype:
        return a, b
    if isinstance(a, Const) and isinstance(b, Const):  # two literals: the float one decides, as in Python
        dt = a.dtype if is_float(a.dtype) else b.dtype
        return Const(a.value, dt), Const(b.value, dt)
    if isinstance(a, Const):
        a = Const(a.value, scalar_of(b.dtype))
    elif isinstance(b, Const):
        b = Const(b.value, scalar_of(a.dtype))
    la, lb = lanes_of(a.dtype), lanes_of(b.dtype)
    if scalar_of(a.dtype) == scalar_of(b.dtype) and (la == lb or la == 1 or lb == 1):
        return (Broadcast(a, lb) if la < lb else a), (Broadcast(b, la) if lb < la else b)
    raise TypeError(f"dtype mismatch: {a} is {a.dtype} but {b} is {b.dtype}; use te.cast")


def binary(op: str, a, b) -> Expr:
    a, b = unify(convert(a), convert(b))
    if isinstance(a, Const) and isinstance(b, Const):
        folded = fold(op, a.value, b.value, a.dtype)
        if folded is not None:
            return folded
    trivial = _identity(op, a, b)
    if trivial is not None:
        return trivial
    dtype = a.dtype if op in _ARITH else with_lanes("bool", lanes_of(a.dtype))
    if op in ("and", "or") and scalar_of(a.dtype) != "bool":
        raise TypeError(f"'{op}' needs boolean operands, got {a.dtype}")
    return Binary(op, a, b, dtype)


def _identity(op: str, a: Expr, b: Expr) -> Expr | None:
    """x + 0, 0 + x, x - 0, x * 1, 1 * x (and x * 0 for ints): keep raw lowered IR readable."""
    for x, c, commutes in ((a, b, True), (b, a, False)):
        if not isinstance(c, Const) or lanes_of(c.dtype) > 1:
            continue
        if c.value == 0 and (op == "+" or (op == "-" and commutes)) and not is_float(x.dtype):
            return x
        if c.value == 1 and op == "*":
            return x
        if c.value == 0 and op == "*" and not is_float(x.dtype):
            return c
    return None


def fold(op: str, x, y, dtype: str) -> Const | None:
    """Evaluate op on two Python constants with the semantics of the loop IR (floor division)."""
    try:
        if op == "/":
            v = x / y if is_float(dtype) else None
        elif op == "//":
            v = math.floor(x / y) if is_float(dtype) else x // y
        elif op == "%":
            v = x - math.floor(x / y) * y if is_float(dtype) else x % y  # floor modulo, like the codegens
        else:
            v = _PY[op](x, y)
    except ZeroDivisionError:
        return None
    if v is None:
        return None
    return Const(v, "bool" if op in _COMPARE else dtype)


def cast(x, dtype: str) -> Expr:
    x = convert(x)
    dtype = with_lanes(check_dtype(dtype), lanes_of(x.dtype))
    if x.dtype == dtype:
        return x
    if isinstance(x, Const):
        return Const(x.value, dtype)
    return Cast(dtype, x)


# ---------------------------------------------------------------------------- traversal

def post_order(e: Expr, visit: Callable[[Expr], Any]) -> None:
    stack, seen = [e], set()
    out = []
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        out.append(n)
        stack.extend(n.children())
    for n in reversed(out):
        visit(n)


def transform(e: Expr, fn: Callable[[Expr], Expr | None], memo: dict | None = None) -> Expr:
    """Bottom-up rewrite: `fn(node)` returns a replacement or None to keep the (rebuilt) node.

    `fn` is first offered the original node (top-down); if it declines, children are
    rewritten and the node is rebuilt only when one of them changed. Shared nodes are rewritten
    once; pass `memo` to share that across calls (it holds each node, so ids are never reused).
    """
    memo = {} if memo is None else memo

    def go(n: Expr) -> Expr:
        hit = memo.get(id(n))
        if hit is not None and hit[0] is n:
            return hit[1]
        r = fn(n)
        if r is None:
            kids = n.children()
            new = [go(k) for k in kids]
            r = n.rebuild(new) if any(a is not b for a, b in zip(kids, new)) else n
        memo[id(n)] = (n, r)
        return r

    return go(e)


def substitute(e: Expr, mapping: dict) -> Expr:
    if not mapping:
        return e
    return transform(e, lambda n: mapping.get(n) if isinstance(n, Var) else None)


def index_of(items: list, x) -> int:
    """list.index by identity: `==` on expressions builds a comparison node."""
    for k, item in enumerate(items):
        if item is x:
            return k
    raise ValueError(f"{x!r} is not in the list")


def contains(items, x) -> bool:
    return any(item is x for item in items)


def free_vars(e: Expr) -> set:
    out: set = set()
    post_order(e, lambda n: out.add(n) if isinstance(n, Var) else None)
    return out


def uses_any(e: Expr, vars_: set) -> bool:
    return any(v in vars_ for v in free_vars(e))
