"""Loop IR passes, each a small function PrimFunc -> PrimFunc, run in the order of PIPELINE.

`LATHE_DEBUG=lower` prints the IR after every pass.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

from lathe.expr import (
    Binary, Broadcast, Call, Cast, Const, Expr, Load, Not, Ramp, Select, Var, binary, lanes_of, transform,
    uses_any, with_lanes,
)
from lathe.tir.arith import Analyzer
from lathe.tir.stmt import (
    Allocate, ExprRewriter, For, IfThenElse, PrimFunc, Seq, Stmt, StmtMutator, Store, seq,
)

MAX_UNROLL = 256  # loops longer than this stay loops even when marked unroll


# ---------------------------------------------------------------------------- simplify

class _Simplify(StmtMutator):
    """Folds constants and index arithmetic, knowing each loop variable's range."""

    def __init__(self):
        self.an = Analyzer()

    def expr(self, e: Expr) -> Expr:
        return self.an.simplify(e)

    def visit_For(self, s: For):
        ext = self.expr(s.extent)
        if isinstance(ext, Const):
            self.an.ranges[s.var] = (0, ext.value - 1)
        body = self(s.body)
        self.an.ranges.pop(s.var, None)
        return replace(s, extent=ext, body=body)

    def visit_IfThenElse(self, s: IfThenElse):
        cond = self.expr(s.cond)
        if isinstance(cond, Const):
            taken = s.then if cond.value else s.else_
            return self(taken) if taken is not None else Seq([])
        return IfThenElse(cond, self(s.then), self(s.else_))


def simplify(f: PrimFunc) -> PrimFunc:
    return f.with_body(_Simplify()(f.body))


# ---------------------------------------------------------------------------- guard loads in selects

def guard_select_loads(f: PrimFunc) -> PrimFunc:
    """`select(c, A[i], 0)` evaluates both sides; read A[0] instead of A[i] when c is false.

    Padding is written as if_then_else(in_bounds, A[i - pad], 0): the load must not leave A.
    """

    def guard(branch: Expr, cond: Expr) -> Expr:
        return transform(branch, lambda n: Load(n.buffer, tuple(Select(cond, i, Const(0, i.dtype))
                                                                 for i in n.indices))
                         if isinstance(n, Load) else None)

    def fn(n: Expr):
        if isinstance(n, Select) and not isinstance(n.cond, Const):
            t, fl = transform(n.t, fn), transform(n.f, fn)
            return Select(n.cond, guard(t, n.cond), guard(fl, Not(n.cond)))
        return None

    return f.with_body(ExprRewriter(fn)(f.body))


# ---------------------------------------------------------------------------- flatten storage

def flatten_storage(f: PrimFunc) -> PrimFunc:
    """Multi-dimensional buffer accesses become one row-major index (or one over the buffer's strides)."""

    def flat(buffer, indices) -> tuple:
        if buffer.strides is not None:
            out: Expr = Const(0, "int32")
            for stride, i in zip(buffer.strides, indices):
                out = out + i * stride
            return (out,)
        if len(indices) == 1:
            return tuple(indices)
        out = Const(0, "int32")
        for dim, i in zip(buffer.shape, indices):
            out = out * dim + i
        return (out,)

    class Flatten(StmtMutator):
        def expr(self, e):
            return transform(e, lambda n: Load(n.buffer, flat(n.buffer, [self.expr(i) for i in n.indices]))
                             if isinstance(n, Load) else None)

        def visit_Store(self, s):
            return Store(s.buffer, flat(s.buffer, [self.expr(i) for i in s.indices]), self.expr(s.value))

    return f.with_body(Flatten()(f.body))


# ---------------------------------------------------------------------------- unroll

class _Unroll(StmtMutator):
    def visit_For(self, s: For):
        body = self(s.body)
        if s.kind == "unroll" and isinstance(s.extent, Const) and s.extent.value <= MAX_UNROLL:
            return seq(*[_subst_stmt(body, {s.var: Const(k, "int32")}) for k in range(s.extent.value)])
        return replace(s, body=body)


def _subst_stmt(s: Stmt, mapping: dict) -> Stmt:
    return ExprRewriter(lambda n: mapping.get(n) if isinstance(n, Var) else None)(s)


def unroll(f: PrimFunc) -> PrimFunc:
    return f.with_body(_Unroll()(f.body))


# ---------------------------------------------------------------------------- vectorize

class _CannotVectorize(Exception):
    pass


def _vec(e: Expr, v: Var, n: int) -> Expr:
    """Rewrite e with v = ramp(0, 1, n): ramps stay ramps where the index is affine in v. A shared
    subexpression is rewritten once and stays shared (a DAG must not become a tree)."""
    memo: dict = {}

    def go(x: Expr) -> Expr:
        if id(x) not in memo:
            memo[id(x)] = (x, rewrite(x))  # x kept alive: its id is not reused while the memo lives
        return memo[id(x)][1]

    def rewrite(x: Expr) -> Expr:
        if x is v:
            return Ramp(Const(0, "int32"), Const(1, "int32"), n)
        if not uses_any(x, {v}):
            return x
        if isinstance(x, Binary):
            a, b = go(x.a), go(x.b)
            ra, rb = isinstance(a, Ramp), isinstance(b, Ramp)
            sa, sb = lanes_of(a.dtype) == 1, lanes_of(b.dtype) == 1
            if x.op in ("+", "-") and (ra or sa) and (rb or sb) and (ra or rb):
                base = binary(x.op, a.base if ra else a, b.base if rb else b)
                stride = (a.stride if ra else Const(0, "int32"))
                stride = binary(x.op, stride, b.stride if rb else Const(0, "int32"))
                return Ramp(base, stride, n)
            if x.op == "*" and ((ra and sb) or (rb and sa)):
                r, c = (a, b) if ra else (b, a)
                return Ramp(r.base * c, r.stride * c, n)
            return Binary(x.op, _widen(a, n), _widen(b, n), with_lanes(x.dtype, n))
        if isinstance(x, Load):
            return Load(x.buffer, tuple(g if (g := guarded_ramp(i)) is not None else go(i) for i in x.indices))
        if isinstance(x, Select):
            return Select(_widen(go(x.cond), n), _widen(go(x.t), n), _widen(go(x.f), n))
        if isinstance(x, Cast):
            return Cast(f"{x.dtype}x{n}", _widen(go(x.a), n))
        if isinstance(x, Call):
            return Call(x.name, tuple(_widen(go(a), n) for a in x.args), f"{x.dtype}x{n}")
        if isinstance(x, Not):
            return Not(_widen(go(x.a), n))
        raise _CannotVectorize(type(x).__name__)

    def guarded_ramp(i: Expr) -> Expr | None:
        # guard_select_loads' select(c, i, 0) with c the same for every lane: one contiguous load from
        # select(c, base, 0). Lanes past 0 stay in bounds: i's own ramp starts at base >= 0 with this stride.
        if not (isinstance(i, Select) and isinstance(i.f, Const) and i.f.value == 0 and not uses_any(i.cond, {v})):
            return None
        t = go(i.t)
        if isinstance(t, Ramp) and isinstance(t.stride, Const) and t.stride.value >= 0:
            return Ramp(Select(i.cond, t.base, i.f), t.stride, n)
        return None

    return go(e)


def _widen(e: Expr, n: int) -> Expr:
    if lanes_of(e.dtype) == n:
        return e
    return Broadcast(e, n)


def _vec_stmt(s: Stmt, v: Var, n: int) -> Stmt:
    if isinstance(s, Store):
        idx = tuple(_vec(i, v, n) for i in s.indices)
        if all(lanes_of(i.dtype) == 1 for i in idx):
            raise _CannotVectorize("store does not depend on the vectorized loop")
        return Store(s.buffer, idx, _widen(_vec(s.value, v, n), n))
    if isinstance(s, Seq):
        return seq(*[_vec_stmt(x, v, n) for x in s.stmts])
    if isinstance(s, IfThenElse) and not uses_any(s.cond, {v}):
        return IfThenElse(s.cond, _vec_stmt(s.then, v, n), s.else_ and _vec_stmt(s.else_, v, n))
    raise _CannotVectorize(type(s).__name__)


class _Vectorize(StmtMutator):
    def visit_For(self, s: For):
        body = self(s.body)
        if s.kind != "vectorize":
            return replace(s, body=body)
        if isinstance(s.extent, Const) and s.extent.value > 1:
            try:
                return _vec_stmt(body, s.var, s.extent.value)
            except _CannotVectorize:
                pass  # a guard or dependence inside: leave a plain loop for LLVM to try
        return replace(s, kind="serial", body=body)


def vectorize(f: PrimFunc) -> PrimFunc:
    return f.with_body(_Vectorize()(f.body))


# ---------------------------------------------------------------------------- remove no-ops

class _RemoveNoop(StmtMutator):
    def visit_For(self, s: For):
        if isinstance(s.extent, Const) and s.extent.value <= 0:
            return Seq([])
        body = self(s.body)
        if _empty(body):
            return Seq([])
        if isinstance(s.extent, Const) and s.extent.value == 1 and s.kind != "thread":
            return _subst_stmt(body, {s.var: Const(0, "int32")})
        return replace(s, body=body)

    def visit_IfThenElse(self, s: IfThenElse):
        then, else_ = self(s.then), self(s.else_)
        if isinstance(s.cond, Const):
            return then if s.cond.value else (else_ or Seq([]))
        if _empty(then) and (else_ is None or _empty(else_)):
            return Seq([])
        return IfThenElse(s.cond, then, None if else_ is not None and _empty(else_) else else_)

    def visit_Allocate(self, s: Allocate):
        body = self(s.body)
        return Seq([]) if _empty(body) else Allocate(s.buffer, body)


def _empty(s: Stmt) -> bool:
    return isinstance(s, Seq) and not s.stmts


def remove_noop(f: PrimFunc) -> PrimFunc:
    return f.with_body(_RemoveNoop()(f.body))


# ---------------------------------------------------------------------------- pipeline

PIPELINE = [
    ("simplify", simplify),
    ("remove_noop", remove_noop),
    ("flatten_storage", flatten_storage),
    ("unroll", unroll),
    ("simplify", simplify),
    ("guard_select_loads", guard_select_loads),
    ("vectorize", vectorize),
    ("simplify", simplify),
    ("remove_noop", remove_noop),
]


def run_pipeline(f: PrimFunc, passes=None) -> PrimFunc:
    debug = "lower" in os.environ.get("LATHE_DEBUG", "").split(",")
    if debug:
        print(f"== {f.name}: lowered from the schedule\n{f}", file=sys.stderr)
    for name, p in passes or PIPELINE:
        f = p(f)
        if debug:
            print(f"== {f.name}: after {name}\n{f}", file=sys.stderr)
    return f


__all__ = ["PIPELINE", "run_pipeline", "simplify", "flatten_storage", "unroll", "vectorize", "remove_noop",
           "guard_select_loads"]
