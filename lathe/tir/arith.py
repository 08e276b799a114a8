"""Integer arithmetic on index expressions: linear forms, constant ranges, simplification.

Index expressions are mostly affine in loop variables (i*64 + j*4 + k). Writing them as a
linear form {atom: coefficient} + constant lets us cancel terms, fold floor division and
modulo when the remainder's range is known, and prove guards always true or false.
"""

from __future__ import annotations

import math

from lathe.expr import (
    Binary, Broadcast, Cast, Const, Expr, Load, Not, Ramp, Select, Var, binary, is_float, transform,
)

INF = math.inf
Range = tuple  # (lo, hi) inclusive, numbers or +-inf


def skey(e: Expr, memo: dict | None = None):
    """A hashable structural key: equal keys mean the same value (variables by identity)."""
    if isinstance(e, Var):
        return ("v", id(e))
    if isinstance(e, Const):
        return ("c", e.value, e.dtype)
    if isinstance(e, Load):
        return ("ld", id(e.buffer), tuple(skey(i) for i in e.indices))
    head = (type(e).__name__, getattr(e, "op", None) or getattr(e, "name", None), e.dtype,
            getattr(e, "lanes", None))
    return head + tuple(skey(c) for c in e.children())


class Linear:
    """sum(coeff * atom) + const over int32 atoms that are not themselves sums."""

    __slots__ = ("terms", "const")

    def __init__(self, terms: dict | None = None, const: int = 0):
        self.terms = terms or {}  # skey -> [atom, coeff]
        self.const = const

    def add(self, other: Linear, scale: int = 1) -> Linear:
        terms = {k: list(v) for k, v in self.terms.items()}
        for k, (atom, c) in other.terms.items():
            if k in terms:
                terms[k][1] += c * scale
                if terms[k][1] == 0:
                    del terms[k]
            else:
                terms[k] = [atom, c * scale]
        return Linear(terms, self.const + other.const * scale)

    def scale(self, c: int) -> Linear:
        if c == 0:
            return Linear()
        return Linear({k: [a, v * c] for k, (a, v) in self.terms.items()}, self.const * c)

    def to_expr(self) -> Expr:
        """Positive terms, then a positive constant, then subtractions: `i*4 + j + 3 - k`, `16 - i*4`."""
        def term(atom, c):
            return atom if c == 1 else Binary("*", atom, Const(c, "int32"), "int32")

        pos = [term(a, c) for a, c in self.terms.values() if c > 0]
        neg = [term(a, -c) for a, c in self.terms.values() if c < 0]
        const = self.const
        if not pos:  # start from the constant (possibly 0)
            out: Expr = Const(const, "int32")
            const = 0
        else:
            out = pos[0]
            for t in pos[1:]:
                out = Binary("+", out, t, "int32")
            if const > 0:
                out, const = Binary("+", out, Const(const, "int32"), "int32"), 0
        for t in neg:
            out = Binary("-", out, t, "int32")
        if const < 0:
            out = Binary("-", out, Const(-const, "int32"), "int32")
        return out


class Analyzer:
    """Simplifies scalar expressions given constant ranges of variables."""

    def __init__(self, ranges: dict | None = None):
        self.ranges: dict[Var, Range] = dict(ranges or {})
        self._memo: dict | None = None  # set during an outermost simplify()

    # ------------------------------------------------------------------ ranges
    def range_of(self, e: Expr) -> Range:
        if isinstance(e, Const):
            return (e.value, e.value) if not isinstance(e.value, bool) else (int(e.value), int(e.value))
        if isinstance(e, Var):
            return self.ranges.get(e, (-INF, INF))
        if e.dtype != "int32":
            return (-INF, INF)
        if isinstance(e, Binary):
            a, b = self.range_of(e.a), self.range_of(e.b)
            if e.op == "+":
                return (a[0] + b[0], a[1] + b[1])
            if e.op == "-":
                return (a[0] - b[1], a[1] - b[0])
            if e.op == "*":
                ps = [_mul(x, y) for x in a for y in b]
                return (min(ps), max(ps))
            if e.op == "min":
                return (min(a[0], b[0]), min(a[1], b[1]))
            if e.op == "max":
                return (max(a[0], b[0]), max(a[1], b[1]))
            if e.op in ("//", "%") and b[0] == b[1] and b[0] > 0:
                c = b[0]
                if e.op == "//":
                    return (_fdiv(a[0], c), _fdiv(a[1], c))
                if a[0] >= 0 and a[1] < c:
                    return a
                return (0, c - 1)
        if isinstance(e, Select):
            t, f = self.range_of(e.t), self.range_of(e.f)
            return (min(t[0], f[0]), max(t[1], f[1]))
        return (-INF, INF)

    def linear_range(self, lin: Linear) -> Range:
        lo = hi = lin.const
        for atom, c in lin.terms.values():
            a = self.range_of(atom)
            lo, hi = lo + min(_mul(a[0], c), _mul(a[1], c)), hi + max(_mul(a[0], c), _mul(a[1], c))
        return (lo, hi)

    # ------------------------------------------------------------------ linear forms
    def linear(self, e: Expr) -> Linear:
        if isinstance(e, Const) and e.dtype == "int32":
            return Linear(const=e.value)
        if isinstance(e, Binary) and e.dtype == "int32":
            if e.op in ("+", "-"):
                return self.linear(e.a).add(self.linear(e.b), 1 if e.op == "+" else -1)
            if e.op == "*":
                a, b = self.linear(e.a), self.linear(e.b)
                if not b.terms:
                    return a.scale(b.const)
                if not a.terms:
                    return b.scale(a.const)
            if e.op in ("//", "%"):
                folded = self._divmod(e)
                if folded is not None:
                    return folded
        atom = self._atom(e)
        if isinstance(atom, Const):
            return Linear(const=atom.value)
        return Linear({skey(atom): [atom, 1]})

    def _atom(self, e: Expr) -> Expr:
        if isinstance(e, (Var, Const)):
            return e
        kids = e.children()
        new = [self.simplify(k) for k in kids]
        return e.rebuild(new) if any(a is not b for a, b in zip(kids, new)) else e

    def _divmod(self, e: Binary) -> Linear | None:
        b = self.linear(e.b)
        if b.terms or b.const <= 0:
            return None
        c = b.const
        a = self.linear(e.a)
        q, r = Linear(), Linear(const=a.const % c)
        q.const = a.const // c
        for k, (atom, coeff) in a.terms.items():
            if coeff % c == 0:
                q.terms[k] = [atom, coeff // c]
            else:
                r.terms[k] = [atom, coeff]
        lo, hi = self.linear_range(r)
        if lo == -INF or hi == INF:
            if not q.terms and q.const == 0:
                return None
            # keep the divisible part outside: (c*q + r) // c == q + r // c, (..) % c == r % c
            rest = Binary(e.op, r.to_expr(), Const(c, "int32"), "int32")
            rl = Linear({skey(rest): [rest, 1]})
            return q.add(rl) if e.op == "//" else rl
        k = _fdiv(lo, c)
        if _fdiv(hi, c) != k:
            if not q.terms and q.const == 0:
                return None
            rest = Binary(e.op, r.to_expr(), Const(c, "int32"), "int32")
            rl = Linear({skey(rest): [rest, 1]})
            return q.add(rl) if e.op == "//" else rl
        if e.op == "//":
            return q.add(Linear(const=k))
        return r.add(Linear(const=-k * c))

    # ------------------------------------------------------------------ simplification
    def simplify(self, e: Expr) -> Expr:
        # _rewrite simplifies children through here: one memo per outermost call keeps shared
        # subexpressions (inlined resize weights, softmax sums) from being rewritten exponentially often
        outer = self._memo is None
        if outer:
            self._memo = {}
        try:
            return transform(e, self._rewrite, self._memo)
        finally:
            if outer:
                self._memo = None

    def _rewrite(self, e: Expr) -> Expr | None:
        if isinstance(e, (Const, Var)):
            return e
        if e.dtype == "int32" and isinstance(e, Binary) and e.op in ("+", "-", "*", "//", "%"):
            return self.linear(e).to_expr()
        kids = e.children()
        new = [self.simplify(k) for k in kids]
        e = e.rebuild(new) if any(a is not b for a, b in zip(kids, new)) else e
        if isinstance(e, Binary):
            return self._binary(e)
        if isinstance(e, Select) and isinstance(e.cond, Const):
            return e.t if e.cond.value else e.f
        if isinstance(e, Not) and isinstance(e.a, Const):
            return Const(not e.a.value, "bool")
        if isinstance(e, Cast) and isinstance(e.a, Const):
            return Const(e.a.value, e.dtype)
        if isinstance(e, Ramp) and isinstance(e.stride, Const) and e.stride.value == 0:
            return Broadcast(e.base, e.lanes)
        return e

    def _binary(self, e: Binary) -> Expr:
        op, a, b = e.op, e.a, e.b
        if op in ("and", "or"):
            for x, y in ((a, b), (b, a)):
                if isinstance(x, Const):
                    return y if x.value == (op == "and") else x
            return e
        if e.a.dtype != "int32":
            if is_float(e.dtype) and isinstance(b, Const):
                if (op == "*" and b.value == 1) or (op in ("+", "-") and b.value == 0):
                    return a
            return e
        ra, rb = self.range_of(a), self.range_of(b)
        if op == "min":
            return a if ra[1] <= rb[0] else b if rb[1] <= ra[0] else e
        if op == "max":
            return a if ra[0] >= rb[1] else b if rb[0] >= ra[1] else e
        if op in ("<", "<=", ">", ">=", "==", "!="):
            lo, hi = self.linear_range(self.linear(a).add(self.linear(b), -1))
            truth = _compare(op, lo, hi)
            return Const(truth, "bool") if truth is not None else e
        return e

    def can_prove(self, cond: Expr) -> bool:
        c = self.simplify(cond)
        return isinstance(c, Const) and bool(c.value)


def _compare(op: str, lo, hi) -> bool | None:
    """Decide `d op 0` for d in [lo, hi], or None when it depends."""
    table = {
        "<": (hi < 0, lo >= 0), "<=": (hi <= 0, lo > 0), ">": (lo > 0, hi <= 0),
        ">=": (lo >= 0, hi < 0), "==": (lo == hi == 0, lo > 0 or hi < 0), "!=": (lo > 0 or hi < 0, lo == hi == 0),
    }
    yes, no = table[op]
    return True if yes else False if no else None


def _mul(x, c):
    if x == 0 or c == 0:
        return 0
    return x * c


def _fdiv(x, c):
    return x if x in (INF, -INF) else x // c


def simplify(e: Expr, ranges: dict | None = None) -> Expr:
    return Analyzer(ranges).simplify(e)


def as_const(e: Expr) -> int | None:
    return e.value if isinstance(e, Const) else None


__all__ = ["Analyzer", "Linear", "simplify", "skey", "as_const", "binary"]
