"""Readable text for expressions and loop IR: what `lathe.lower` prints."""

from __future__ import annotations

from lathe.expr import (
    Binary, Broadcast, Call, Cast, Const, Expr, Load, Not, Ramp, Reduce, Select, TensorRead, Var,
)

_PREC = {"or": 1, "and": 2, "==": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4, "+": 5, "-": 5,
         "*": 6, "/": 6, "//": 6, "%": 6}


def expr_str(e: Expr, prec: int = 0) -> str:
    if isinstance(e, Const):
        if e.dtype == "bool":
            return str(e.value).lower()
        if e.dtype == "float32":
            return repr(e.value) + "f"
        return repr(e.value) if e.dtype == "int32" else f"{e.dtype}({e.value!r})"
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Binary):
        if e.op in ("min", "max"):
            return f"{e.op}({expr_str(e.a)}, {expr_str(e.b)})"
        p = _PREC[e.op]
        s = f"{expr_str(e.a, p)} {e.op} {expr_str(e.b, p + 1)}"
        return f"({s})" if p < prec else s
    if isinstance(e, Not):
        return f"!{expr_str(e.a, 9)}"
    if isinstance(e, Select):
        return f"select({expr_str(e.cond)}, {expr_str(e.t)}, {expr_str(e.f)})"
    if isinstance(e, Cast):
        return f"{e.dtype}({expr_str(e.a)})"
    if isinstance(e, Call):
        return f"{e.name}({', '.join(expr_str(a) for a in e.args)})"
    if isinstance(e, TensorRead):
        return f"{e.tensor.name}[{', '.join(expr_str(i) for i in e.indices)}]"
    if isinstance(e, Load):
        return f"{e.buffer.name}[{', '.join(expr_str(i) for i in e.indices)}]"
    if isinstance(e, Ramp):
        return f"ramp({expr_str(e.base)}, {expr_str(e.stride)}, {e.lanes})"
    if isinstance(e, Broadcast):
        return f"x{e.lanes}({expr_str(e.value)})"
    if isinstance(e, Reduce):
        axes = ", ".join(a.name for a in e.axes)
        where = "" if e.where is None else f", where={expr_str(e.where)}"
        return f"{e.combiner}({expr_str(e.source)}, axis=[{axes}]{where})"
    return f"<{type(e).__name__}>"


def stmt_str(s, indent: int = 0) -> str:
    from lathe.tir.stmt import Allocate, Evaluate, For, IfThenElse, Seq, Store

    pad = "  " * indent
    if isinstance(s, Seq):
        return "\n".join(stmt_str(x, indent) for x in s.stmts)
    if isinstance(s, For):
        head = {"serial": "for", "parallel": "parallel for", "vectorize": "vectorized for",
                "unroll": "unrolled for", "thread": f"launch {s.thread_tag}"}[s.kind]
        return f"{pad}{head} {s.var.name} in 0..{expr_str(s.extent)}:\n{stmt_str(s.body, indent + 1)}"
    if isinstance(s, IfThenElse):
        out = f"{pad}if {expr_str(s.cond)}:\n{stmt_str(s.then, indent + 1)}"
        if s.else_ is not None:
            out += f"\n{pad}else:\n{stmt_str(s.else_, indent + 1)}"
        return out
    if isinstance(s, Allocate):
        b = s.buffer
        return (f"{pad}allocate {b.name}: {b.dtype}[{', '.join(map(str, b.shape))}] in {b.scope}\n"
                + stmt_str(s.body, indent))
    if isinstance(s, Store):
        idx = ", ".join(expr_str(i) for i in s.indices)
        return f"{pad}{s.buffer.name}[{idx}] = {expr_str(s.value)}"
    if isinstance(s, Evaluate):
        return f"{pad}{expr_str(s.value)}"
    return f"{pad}<{type(s).__name__}>"


def func_str(f) -> str:
    params = ", ".join(f"{b.name}: {b.dtype}[{', '.join(map(str, b.shape))}]" for b in f.params)
    return f"func {f.name}({params}):\n{stmt_str(f.body, 1)}"
