"""Loop IR -> C-like source: the shared base of the C, OpenCL and CUDA (later GLSL/WGSL) renderers.

The base walks a flattened PrimFunc (every Load/Store has one index) and renders scalar code.
What differs between languages is a class attribute or a small method a subclass overrides:
type names, math function names, the kernel signature, loop pragmas, local arrays, the
preamble, and every vector form (the `vector_*` hooks, which the base does not support).
Operations that would repeat an operand's text (floor division, int min/max, vector select)
become small helper functions, emitted once each into the preamble.
"""

from __future__ import annotations

import ctypes
import math
import re

from lathe.errors import BuildError
from lathe.expr import (
    Binary, Broadcast, Call, Cast, Const, Expr, Load, Not, Ramp, Select, Var, is_float, lanes_of, post_order,
    scalar_of,
)
from lathe.tir.arith import skey
from lathe.tir.stmt import Allocate, Evaluate, For, IfThenElse, PrimFunc, Seq, Stmt, Store, stmt_exprs, walk

RESERVED = frozenset("""auto break case char const continue default do double else enum extern float for
goto if inline int long register restrict return short signed sizeof static struct switch typedef union
unsigned void volatile while bool true false half malloc free aligned_alloc""".split())  # C keywords, libc
COMPARE = ("<", "<=", ">", ">=", "==", "!=")
C_PREC = {"*": 13, "/": 13, "+": 12, "-": 12, "<": 10, "<=": 10, ">": 10, ">=": 10, "==": 9, "!=": 9,
          "&&": 5, "||": 4}  # C operator precedence: parenthesize only where C needs it
BYTES = {"float32": 4, "float64": 8, "float16": 2, "int32": 4, "int64": 8, "int8": 1, "uint8": 1, "bool": 1}


class UnsupportedError(BuildError, NotImplementedError):
    """The IR uses something this language cannot express (e.g. a GPU thread loop in C)."""


def contiguous_base(index: Expr) -> Expr | None:
    """The first element's index when a vector access touches adjacent elements (one vector load/store
    does it): a unit-stride Ramp, or a scalar index with a vector dtype. None for a gather/scatter."""
    if lanes_of(index.dtype) == 1:
        return index
    if isinstance(index, Ramp) and isinstance(index.stride, Const) and index.stride.value == 1:
        return index.base
    return None


def nonneg(e) -> bool:
    """True when e is built from loop variables (which count up from 0) and non-negative constants."""
    if isinstance(e, Const):
        return e.value >= 0
    if isinstance(e, Var):
        return e.dtype.startswith("int")  # in lowered IR the only integer variables are loop counters
    if isinstance(e, Binary) and e.op in ("+", "*", "//", "%", "min", "max"):
        return nonneg(e.a) and nonneg(e.b)
    return False


class CStyleRenderer:
    # ---- the language table: subclasses override these
    types = {"float32": "float", "float64": "double", "float16": "half", "int32": "int", "int64": "long",
             "int8": "char", "uint8": "unsigned char", "bool": "bool"}
    math_funcs = ("exp", "log", "sqrt", "tanh", "erf", "pow", "fabs", "floor", "ceil", "fmin", "fmax")
    float_suffix = {"float32": "f", "float16": "f"}  # expf for float32; exp for float64
    infinity, nan = "INFINITY", "NAN"
    includes = ""
    helper_prefix = "static inline"
    kernel_prefix = "void"
    pointer_qualifier = "restrict"
    binops = {"+": "+", "-": "-", "*": "*", "/": "/", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
              "==": "==", "!=": "!=", "and": "&&", "or": "||"}
    stack_limit = 64 * 1024  # bytes; larger local allocations go to the heap
    # index math on loop counters is never negative, so floor division by a positive constant may be the
    # language's own / and % instead of the sign-safe helper functions
    plain_counter_division = False

    def __init__(self, threads: int = 1):
        self.threads = threads
        self.typedefs: dict[str, str] = {}  # shared by every function of one module
        self.helpers: dict[str, str] = {}

    # ------------------------------------------------------------------ module and functions
    def render(self, func: PrimFunc) -> str:
        """Source for one kernel, preamble included."""
        return self.render_module([func])

    def render_module(self, funcs: list[PrimFunc]) -> str:
        """One source holding several kernels: one preamble, each helper emitted once."""
        bodies = [self.function(f) for f in funcs]
        return "\n\n".join([self.preamble(), *bodies]) + "\n"

    def preamble(self) -> str:
        return "\n".join(p for p in [self.includes, *self.typedefs.values(), *self.helpers.values()] if p)

    def function(self, func: PrimFunc) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", func.name) or func.name in RESERVED:
            raise BuildError(f"kernel name {func.name!r} is not a valid C identifier")
        self.func, self.lines, self.depth, self.in_parallel = func, [], 1, False
        self.names: dict[int, tuple] = {}  # id(Var or Buffer) -> (object, C name): by identity, not by name
        self.taken = {func.name}
        self.temps: dict[int, str] = {}  # id(shared subexpression) -> its temporary, for the current statement
        self.invariants: dict[int, str] = {}  # id(index arithmetic hoisted out of an enclosing loop) -> its local
        params = [self.param(b, self.name(b, b.name)) for b in func.params]
        self.stmt(func.body)
        return "\n".join([f"{self.kernel_signature(func.name, params)} {{", *self.lines, "}"])

    def kernel_signature(self, name: str, params: list[str]) -> str:
        return f"{self.kernel_prefix} {name}({', '.join(params)})"

    def param(self, buffer, name: str) -> str:
        return f"{self.type_name(buffer.dtype)}* {self.pointer_qualifier} {name}"

    # ------------------------------------------------------------------ names, types, helpers
    def reserved(self, name: str) -> bool:
        funcs = {m + sfx for m in self.math_funcs for sfx in ("", "f")}  # a local must not hide expf
        return (name in RESERVED or name in self.types.values() or name in (self.infinity, self.nan)
                or name in funcs or name.startswith("lathe_")
                or bool(re.fullmatch(r"[a-z]+\d*x\d+|\w+_t", name)))  # vector typedefs, stdint types

    def name(self, obj, hint: str) -> str:
        """A unique C identifier for a Var or Buffer; two objects with one name get two identifiers."""
        if id(obj) not in self.names:
            base = re.sub(r"[^A-Za-z0-9_]", "_", hint) or "v"
            if base[0].isdigit() or self.reserved(base):
                base = "v_" + base
            name, k = base, 1
            while name in self.taken:
                name, k = f"{base}_{k}", k + 1
            self.taken.add(name)
            self.names[id(obj)] = (obj, name)  # holding obj keeps its id from being reused
            if hasattr(obj, "data"):  # a Buffer: its pointer Var renders as the same name
                self.names[id(obj.data)] = (obj.data, name)
        return self.names[id(obj)][1]

    def lookup(self, obj, what: str) -> str:
        if id(obj) not in self.names:
            raise BuildError(f"kernel {self.func.name}: {what} {obj.name} is used outside its loop "
                             "or allocation")
        return self.names[id(obj)][1]

    def type_name(self, dtype: str) -> str:
        return self.types[dtype] if lanes_of(dtype) == 1 else self.vector_type(dtype)

    def define(self, name: str, ret: str, params: str, body: str) -> str:
        """A helper function, emitted once into the preamble; returns its name to call."""
        self.helpers.setdefault(name, f"{self.helper_prefix} {ret} {name}({params}) {{ {body} }}")
        return name

    def math_name(self, name: str, dtype: str) -> str:
        return name + self.float_suffix.get(scalar_of(dtype), "")

    # ------------------------------------------------------------------ statements
    def emit(self, line: str) -> None:
        self.lines.append("  " * self.depth + line)

    def block(self, s: Stmt) -> None:
        self.depth += 1
        self.stmt(s)
        self.depth -= 1

    def stmt(self, s: Stmt | None) -> None:
        if s is None:  # passes use None for "no statement" (StmtMutator, seq)
            return
        roots = ([s.value, *s.indices] if isinstance(s, Store) else [s.value] if isinstance(s, Evaluate)
                 else [s.cond] if isinstance(s, IfThenElse) else [])
        self.temps = self.let_shared(roots)
        getattr(self, "stmt_" + type(s).__name__)(s)

    def let_shared(self, roots: list) -> dict:
        """Declare large subexpressions that a statement uses more than once as local temporaries; returns
        {id(node): name}. An expression DAG printed as a tree can grow exponentially (a normalised cubic
        antialias filter shares every tap's weight sum: PoCL took 80 s to compile one such kernel). A
        temporary is evaluated even where a select (or && / ||) would have skipped it, so a node inside
        such a branch moves out only if it cannot trap: no loads (a guarded padding load), no integer
        division by a variable."""
        size, safe, parents, order = {}, {}, {}, []

        def visit(e: Expr) -> None:
            if id(e) in size:
                return
            kids = e.children()
            for k in kids:
                visit(k)
                parents[id(k)] = parents.get(id(k), 0) + 1
            size[id(e)] = min(1 + sum(size[id(k)] for k in kids), 1 << 20)
            divides = isinstance(e, Binary) and e.op in ("/", "//", "%") and not is_float(e.dtype)
            trap = isinstance(e, Load) or (divides and not (isinstance(e.b, Const) and e.b.value != 0))
            safe[id(e)] = not trap and all(safe[id(k)] for k in kids)
            order.append(e)  # post-order: a temporary's operands are declared before it

        for r in roots:
            visit(r)
        eager, todo = set(), list(roots)  # the nodes evaluated whatever the conditions say
        while todo:
            e = todo.pop()
            if id(e) not in eager:
                eager.add(id(e))
                todo += ([e.cond] if isinstance(e, Select) else [e.a] if isinstance(e, Binary)
                         and e.op in ("and", "or") else e.children())
        temps: dict = {}
        self.temps = temps
        for e in order:
            if (parents.get(id(e), 0) > 1 and size[id(e)] >= 16 and (safe[id(e)] or id(e) in eager)
                    and scalar_of(e.dtype) != "bool" and not isinstance(e, (Var, Const, Ramp, Broadcast))):
                name = self.fresh("cse")
                self.emit(self.declare(e.dtype, name, self.expr(e, 0)))
                temps[id(e)] = name  # after rendering: the declaration spells the node out once
        return temps

    def declare(self, dtype: str, name: str, value: str) -> str:
        """A local that is assigned once."""
        return f"{self.type_name(dtype)} {name} = {value};"

    def fresh(self, hint: str) -> str:
        name, k = hint, 1
        while name in self.taken:
            name, k = f"{hint}{k}", k + 1
        self.taken.add(name)
        return name

    def stmt_Seq(self, s: Seq) -> None:
        for x in s.stmts:
            self.stmt(x)

    def stmt_Evaluate(self, s: Evaluate) -> None:
        if isinstance(s.value, Call) and s.value.name == "prefetch":
            return self.prefetch(s.value.args[0])
        self.emit(self.expr(s.value, 0) + ";")

    def prefetch(self, load: Load) -> None:
        """A cache hint for the element `load` reads; languages without one drop it."""

    def stmt_IfThenElse(self, s: IfThenElse) -> None:
        self.emit(f"if ({self.expr(s.cond, 0)}) {{")
        self.block(s.then)
        if s.else_ is not None:
            self.emit("} else {")
            self.block(s.else_)
        self.emit("}")

    def stmt_For(self, s: For) -> None:
        if s.kind == "thread":
            raise UnsupportedError(f"kernel {self.func.name}: loop {s.var.name} is bound to {s.thread_tag}, "
                                   f"which only GPU targets have")
        parallel = s.kind == "parallel" and not self.in_parallel  # nested parallel loops run serially
        hoisted = self.hoist_invariants(s)
        for line in self.loop_pragmas(s, parallel):
            self.emit(line)
        v, extent = self.name(s.var, s.var.name), self.expr(s.extent)
        self.emit(f"for ({self.type_name(s.var.dtype)} {v} = 0; {v} < {extent}; ++{v}) {{")
        outer, self.in_parallel = self.in_parallel, self.in_parallel or parallel
        self.block(s.body)
        self.in_parallel = outer
        self.emit("}")
        self.drop_invariants(hoisted)

    def hoist_invariants(self, loop: For) -> list:
        """Declare before `loop` the integer index arithmetic in its body that involves division, modulo or
        a product of variables, and the conditions (padding tests), that use no variable of this loop or of a
        loop inside it: the output coordinates a work-item recomputes in every step of its reduction. GPU
        compilers hoist it themselves; browsers' shader JITs (SwiftShader's Subzero) do not (a ResNet-18
        convolution in WGSL: 1.35x). Only what cannot trap moves: no loads, no division by a variable.
        Returns the hoisted nodes' ids."""
        inner: set = set()
        walk(loop, lambda x: inner.add(id(x.var)) if isinstance(x, For) else None)
        info: dict = {}  # id -> (varies or unsafe, worth hoisting)

        def visit(e: Expr) -> tuple:
            if id(e) not in info:
                kids = [visit(k) for k in e.children()]
                bad = (isinstance(e, (Load, Ramp, Broadcast)) or (isinstance(e, Var) and id(e) in inner)
                       or (isinstance(e, Binary) and e.op in ("/", "//", "%")
                           and not (isinstance(e.b, Const) and e.b.value != 0)))
                worth = isinstance(e, Binary) and (e.op in ("/", "//", "%", "and", "or", *COMPARE) or (
                    e.op == "*" and not isinstance(e.a, Const) and not isinstance(e.b, Const)))
                info[id(e)] = (bad or any(k[0] for k in kids), worth or any(k[1] for k in kids))
            return info[id(e)]

        found: dict = {}
        picked: set = set()

        def pick(e: Expr) -> None:  # the largest invariant subtrees worth a local (each node once: a DAG)
            if id(e) in picked or id(e) in self.invariants or isinstance(e, (Var, Const)):
                return
            picked.add(id(e))
            varies, worth = visit(e)
            if not varies and worth and e.dtype in ("int32", "int64", "bool"):
                found.setdefault(skey(e), []).append(e)
                return
            for k in e.children():
                pick(k)

        roots: list = []
        walk(loop.body, lambda x: roots.extend(stmt_exprs(x)))
        for r in roots:
            pick(r)
        hoisted, names = [], {}

        def reuse(x: Expr) -> None:  # a part equal to an earlier local is spelled as that local
            if isinstance(x, Binary) and id(x) not in self.invariants and skey(x) in names:
                self.invariants[id(x)] = names[skey(x)]
                hoisted.append(id(x))

        for key, nodes in found.items():
            for n in nodes:
                post_order(n, reuse)
            name = names[key] = self.fresh("inv")
            self.emit(self.declare(nodes[0].dtype, name, self.expr(nodes[0], 0)))
            for n in nodes:
                self.invariants[id(n)] = name
                hoisted.append(id(n))
        return hoisted

    def drop_invariants(self, hoisted: list) -> None:
        for i in hoisted:
            self.invariants.pop(i, None)

    def loop_pragmas(self, s: For, parallel: bool) -> list[str]:
        return []

    def stmt_Allocate(self, s: Allocate) -> None:
        buf = s.buffer
        name, size = self.name(buf, buf.name), buf.size
        nbytes = size * BYTES[scalar_of(buf.dtype)] * lanes_of(buf.dtype)
        stack = nbytes <= self.stack_limit
        self.emit("{")  # a scope of its own: the array's lifetime, and no clash with a sibling allocation
        self.depth += 1
        ctype = self.type_name(buf.dtype)
        self.emit(self.local_array(ctype, name, size) if stack else self.heap_alloc(ctype, name, nbytes))
        self.stmt(s.body)
        if not stack:
            self.emit(self.heap_free(name))
        self.depth -= 1
        self.emit("}")

    def local_array(self, ctype: str, name: str, size: int) -> str:
        return f"{ctype} {name}[{size}];"

    def heap_alloc(self, ctype: str, name: str, nbytes: int) -> str:
        raise UnsupportedError(f"kernel {self.func.name}: {nbytes} bytes for {name} is too large "
                               "a local array")

    def heap_free(self, name: str) -> str:
        return ""

    def stmt_Store(self, s: Store) -> None:
        idx = self.one_index(s.buffer, s.indices)
        buf, lanes = self.lookup(s.buffer, "buffer"), max(lanes_of(idx.dtype), lanes_of(s.value.dtype))
        value = s.value if lanes_of(s.value.dtype) == lanes else Broadcast(s.value, lanes)
        if lanes == 1:
            return self.emit(f"{buf}[{self.expr(idx, 0)}] = {self.expr(value, 0)};")
        base, val = contiguous_base(idx), self.expr(value)
        if base is not None:
            self.emit(self.vector_store(s.buffer.dtype, buf, self.expr(base), val, value.dtype) + ";")
        else:
            self.emit(self.vector_scatter(s.buffer.dtype, buf, self.expr(idx), val, value.dtype) + ";")

    def one_index(self, buffer, indices: tuple) -> Expr:
        if len(indices) != 1:
            raise BuildError(f"kernel {self.func.name}: access to {buffer.name} has {len(indices)} indices; "
                             "run flatten_storage before code generation")
        return indices[0]

    # ------------------------------------------------------------------ expressions
    def expr(self, e: Expr, prec: int = 99) -> str:
        """C text for e, safe as an operand of an operator of precedence `prec` (99: of anything)."""
        if id(e) in self.temps:
            return self.temps[id(e)]
        if id(e) in self.invariants:
            return self.invariants[id(e)]
        if isinstance(e, Binary):
            return self.expr_Binary(e, prec)
        method = getattr(self, "expr_" + ("Var" if isinstance(e, Var) else type(e).__name__), None)
        if method is None:
            raise BuildError(f"kernel {self.func.name}: {type(e).__name__} cannot appear in lowered loop IR")
        return method(e)

    def expr_Var(self, e: Var) -> str:
        return self.lookup(e, "variable")

    def expr_Const(self, e: Const) -> str:
        if lanes_of(e.dtype) > 1:
            return self.vector_splat(self.const(e.value, scalar_of(e.dtype)), e.dtype)
        return self.const(e.value, e.dtype)

    def const(self, v, dtype: str) -> str:
        if dtype == "bool":
            return "1" if v else "0"
        if not is_float(dtype):
            text = "(-2147483647 - 1)" if dtype == "int32" and v == -2**31 else str(v)
            return f"({text})" if v < 0 else text
        if math.isnan(v):
            return self.nan
        if dtype != "float64":
            v = ctypes.c_float(v).value  # the value float32 holds, so the decimal text is exact
        if math.isinf(v):
            return self.infinity if v > 0 else f"(-{self.infinity})"
        text = repr(v) + ("" if dtype == "float64" else "f")
        if dtype == "float16":
            text = f"(({self.types['float16']}){text})"
        return f"({text})" if v < 0 else text

    def expr_Load(self, e: Load) -> str:
        idx = self.one_index(e.buffer, e.indices)
        buf = self.lookup(e.buffer, "buffer")
        if lanes_of(e.dtype) == 1:
            return f"{buf}[{self.expr(idx, 0)}]"
        base = contiguous_base(idx)
        if base is not None:
            return self.vector_load(e.buffer.dtype, buf, self.expr(base), e.dtype)
        return self.vector_gather(e.buffer.dtype, buf, self.expr(idx), e.dtype)

    def expr_Ramp(self, e: Ramp) -> str:
        return self.vector_ramp(self.expr(e.base), self.expr(e.stride), e.dtype)

    def expr_Broadcast(self, e: Broadcast) -> str:
        return self.vector_splat(self.expr(e.value), e.dtype)

    def expr_Not(self, e: Not) -> str:
        a = self.expr(e.a)
        return f"(!{a})" if lanes_of(e.dtype) == 1 else self.vector_not(a, e.dtype)

    def expr_Select(self, e: Select) -> str:
        lanes = lanes_of(e.dtype)
        if lanes == 1:
            return f"({self.expr(e.cond)} ? {self.expr(e.t)} : {self.expr(e.f)})"
        cond = e.cond if lanes_of(e.cond.dtype) == lanes else Broadcast(e.cond, lanes)
        return self.vector_select(self.expr(cond), self.expr(e.t), self.expr(e.f), e.dtype)

    def expr_Cast(self, e: Cast) -> str:
        a = self.expr(e.a)
        if lanes_of(e.dtype) > 1:
            return self.vector_cast(a, e.a.dtype, e.dtype)
        return f"({a} != 0)" if e.dtype == "bool" else f"(({self.types[e.dtype]}){a})"

    def expr_Call(self, e: Call) -> str:
        if e.name not in self.math_funcs:
            raise BuildError(f"kernel {self.func.name}: no C function for intrinsic {e.name!r} "
                             f"(known: {', '.join(self.math_funcs)})")
        fn = self.math_name(e.name, e.dtype)
        args = [self.expr(a) for a in e.args]
        return f"{fn}({', '.join(args)})" if lanes_of(e.dtype) == 1 else self.vector_map(fn, args, e.dtype)

    def expr_Binary(self, e: Binary, prec: int = 99) -> str:
        op, dtype, vector = e.op, e.a.dtype, lanes_of(e.a.dtype) > 1
        if (self.plain_counter_division and op in ("//", "%") and not is_float(e.dtype) and not vector
                and isinstance(e.b, Const) and e.b.value > 0 and nonneg(e.a)):
            text = f"{self.expr(e.a, 13)} {'/' if op == '//' else '%'} {self.expr(e.b, 14)}"
            return text if prec <= 13 else f"({text})"
        if op in ("//", "%") or (op == "/" and not is_float(dtype)):  # ints divide with floor semantics
            return self.floor_divmod("%" if op == "%" else "//", self.expr(e.a), self.expr(e.b), dtype)
        if op in ("min", "max"):
            minmax = self.vector_minmax if vector else self.minmax
            return minmax(op, self.expr(e.a), self.expr(e.b), dtype)
        if vector and op not in ("+", "-", "*", "/"):  # comparisons, and, or: masks
            return self.vector_logic(op, self.expr(e.a), self.expr(e.b), dtype)
        c_op = self.binops[op]  # infix: a child needs parentheses only below this precedence
        p = C_PREC.get(c_op, 0)
        text = f"{self.expr(e.a, p)} {c_op} {self.expr(e.b, p + 1)}"
        return text if p >= prec else f"({text})"

    def floor_divmod(self, op: str, a: str, b: str, dtype: str) -> str:
        """Floor division/modulo (Python's, the IR's) from C's truncating / and %."""
        s = scalar_of(dtype)
        t, kind = self.types[s], "floordiv" if op == "//" else "floormod"
        if s in ("uint8", "bool"):  # unsigned: truncation is floor
            body = f"return a {op[0]} b;"
        elif is_float(s):
            fl = self.math_name("floor", s)
            body = f"return {fl}(a / b);" if op == "//" else f"return a - {fl}(a / b) * b;"
        elif op == "//":  # truncation rounded up when the remainder is nonzero and the signs differ
            body = f"{t} q = a / b; return (a % b != 0 && ((a ^ b) < 0)) ? q - 1 : q;"
        else:
            body = f"{t} r = a % b; return (r != 0 && ((r ^ b) < 0)) ? r + b : r;"
        fn = self.define(f"lathe_{kind}_{s}", t, f"{t} a, {t} b", body)
        return f"{fn}({a}, {b})" if lanes_of(dtype) == 1 else self.vector_map(fn, [a, b], dtype)

    def minmax(self, op: str, a: str, b: str, dtype: str) -> str:
        if is_float(dtype):
            return f"{self.math_name('f' + op, dtype)}({a}, {b})"
        t, cmp = self.types[dtype], "<" if op == "min" else ">"
        fn = self.define(f"lathe_{op}_{dtype}", t, f"{t} a, {t} b", f"return a {cmp} b ? a : b;")
        return f"{fn}({a}, {b})"

    # ------------------------------------------------------------------ vector hooks (per language)
    def unsupported_vector(self, *args) -> str:
        raise UnsupportedError(f"kernel {self.func.name}: {type(self).__name__} does not render vector code; "
                               "do not vectorize for this target")

    vector_type = vector_load = vector_store = vector_gather = vector_scatter = unsupported_vector
    vector_ramp = vector_splat = vector_not = vector_select = vector_cast = unsupported_vector
    vector_map = vector_minmax = vector_logic = unsupported_vector
