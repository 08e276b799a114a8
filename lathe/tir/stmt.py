"""Loop IR statements: the one input of every code generator.

Loops are normalised to start at 0. Buffers are multi-dimensional until `flatten_storage`,
after which every Load/Store has a single (possibly vector) index.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import prod

from lathe.expr import Expr, Var, transform


class Buffer:
    """A named array: a function parameter or an allocation in `scope` (global/local/shared)."""

    def __init__(self, name: str, shape: tuple, dtype: str, scope: str = "global", strides: tuple | None = None):
        self.name, self.shape, self.dtype, self.scope = name, tuple(shape), dtype, scope
        # element strides per axis when the array lives inside a larger one (a tensor with a zero halo);
        # None: row-major over shape
        self.strides = tuple(strides) if strides is not None else None
        self.data = Var(name, "handle")  # the pointer, so free-variable analysis sees buffers too

    @property
    def size(self) -> int:
        return prod(self.shape)

    def __repr__(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(map(str, self.shape))}]"


class Stmt:
    def __repr__(self) -> str:
        from lathe.tir.printer import stmt_str

        return stmt_str(self)


@dataclass(eq=False, repr=False)
class For(Stmt):
    var: Var
    extent: Expr
    kind: str  # "serial" | "parallel" | "vectorize" | "unroll" | "thread"
    body: Stmt
    thread_tag: str = ""


@dataclass(eq=False, repr=False)
class Seq(Stmt):
    stmts: list


@dataclass(eq=False, repr=False)
class IfThenElse(Stmt):
    cond: Expr
    then: Stmt
    else_: Stmt | None = None


@dataclass(eq=False, repr=False)
class Allocate(Stmt):
    buffer: Buffer
    body: Stmt


@dataclass(eq=False, repr=False)
class Store(Stmt):
    buffer: Buffer
    indices: tuple
    value: Expr


@dataclass(eq=False, repr=False)
class Evaluate(Stmt):
    """An expression run for its effect, e.g. a barrier call on GPUs."""

    value: Expr


@dataclass(eq=False, repr=False)
class PrimFunc:
    name: str
    params: list  # list[Buffer]
    body: Stmt
    attrs: dict = field(default_factory=dict)

    def with_body(self, body: Stmt) -> PrimFunc:
        return replace(self, body=body)

    def __repr__(self) -> str:
        from lathe.tir.printer import func_str

        return func_str(self)

    __str__ = __repr__


def seq(*stmts) -> Stmt:
    """A Seq flattened of nested Seqs and Nones; a single statement stays itself."""
    flat: list = []
    for s in stmts:
        if s is None:
            continue
        if isinstance(s, Seq):
            flat.extend(s.stmts)
        else:
            flat.append(s)
    return flat[0] if len(flat) == 1 else Seq(flat)


class StmtMutator:
    """Rebuilds a statement tree; override `expr` to rewrite expressions, `visit_X` for nodes."""

    def expr(self, e: Expr) -> Expr:
        return e

    def __call__(self, s: Stmt | None) -> Stmt | None:
        return None if s is None else getattr(self, "visit_" + type(s).__name__)(s)

    def visit_For(self, s: For):
        return replace(s, extent=self.expr(s.extent), body=self(s.body))

    def visit_Seq(self, s: Seq):
        return seq(*[self(x) for x in s.stmts])

    def visit_IfThenElse(self, s: IfThenElse):
        return IfThenElse(self.expr(s.cond), self(s.then), self(s.else_))

    def visit_Allocate(self, s: Allocate):
        return Allocate(s.buffer, self(s.body))

    def visit_Store(self, s: Store):
        return Store(s.buffer, tuple(self.expr(i) for i in s.indices), self.expr(s.value))

    def visit_Evaluate(self, s: Evaluate):
        return Evaluate(self.expr(s.value))


class ExprRewriter(StmtMutator):
    """Applies one bottom-up expression rewrite (see lathe.expr.transform) everywhere."""

    def __init__(self, fn):
        self.fn = fn

    def expr(self, e: Expr) -> Expr:
        return transform(e, self.fn)


def walk(s: Stmt | None, fn) -> None:
    """Call fn on every statement, parents first."""
    if s is None:
        return
    fn(s)
    if isinstance(s, Seq):
        for x in s.stmts:
            walk(x, fn)
    elif isinstance(s, (For, Allocate)):
        walk(s.body, fn)
    elif isinstance(s, IfThenElse):
        walk(s.then, fn)
        walk(s.else_, fn)


def stmt_exprs(s: Stmt) -> list:
    """The expressions held directly by one statement."""
    if isinstance(s, For):
        return [s.extent]
    if isinstance(s, IfThenElse):
        return [s.cond]
    if isinstance(s, Store):
        return [*s.indices, s.value]
    if isinstance(s, Evaluate):
        return [s.value]
    return []
