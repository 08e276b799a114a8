"""Loop IR -> LLVM IR (llvmlite), compiled in-process for the host or a given -mcpu.

Vector expressions become LLVM vector types; `parallel` loops are outlined into a function
that libgomp's GOMP_parallel runs on its thread pool (the same runtime the C target uses).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import tempfile
import warnings

from llvmlite import ir

from lathe.errors import BuildError
from lathe.expr import (
    Binary, Broadcast, Call, Cast, Const, Expr, Load, Not, Ramp, Select, Var, free_vars, is_float, lanes_of,
    post_order, scalar_of,
)
from lathe.runtime.module import Kernel, param_specs
from lathe.target import Target
from lathe.tir.stmt import Allocate, Evaluate, For, IfThenElse, PrimFunc, Seq, Stmt, Store, stmt_exprs, walk

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import llvmlite.binding as llvm

STACK_LIMIT = 64 * 1024  # bytes; larger allocations go to the heap
I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
PTR = ir.PointerType()
SCALAR = {"float32": ir.FloatType(), "float16": ir.HalfType(), "float64": ir.DoubleType(), "int32": I32,
          "int64": I64, "int8": I8, "uint8": I8, "bool": I1}
LLVM_MATH = {"exp", "log", "sqrt", "fabs", "floor", "ceil", "pow"}  # LLVM intrinsics; others call libm
PREFETCH_LOCALITY = 2  # into L2 and below: measured better than L1 (3) for weight streams
FCMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}


def ltype(dtype: str) -> ir.Type:
    base = SCALAR[scalar_of(dtype)]
    n = lanes_of(dtype)
    return base if n == 1 else ir.VectorType(base, n)


def mem_type(dtype: str) -> ir.Type:
    """How an element is stored: bools are bytes in memory (as in NumPy), i1 only in registers."""
    return I8 if scalar_of(dtype) == "bool" else SCALAR[scalar_of(dtype)]


_initialized = False
_have_mvec = False
MVEC = {"exp": "expf", "log": "logf", "tanh": "tanhf", "erf": "erff", "pow": "powf"}  # float32 only


def _init() -> None:
    global _initialized
    if not _initialized:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        gomp = ctypes.util.find_library("gomp") or "libgomp.so.1"
        llvm.load_library_permanently(gomp)
        global _have_mvec
        try:  # glibc's vector math (>= 2.35 has exp/log/pow/tanh/erf in SSE/AVX2/AVX-512 widths)
            llvm.load_library_permanently(ctypes.util.find_library("mvec") or "libmvec.so.1")
            _have_mvec = True
        except RuntimeError:
            _have_mvec = False
        _initialized = True


def host_cpu() -> tuple[str, str]:
    _init()
    return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()


def target_machine(target: Target, jit: bool = False):
    """The LLVM target machine: position-independent code for shared libraries, or for the in-process JIT
    the large code model, whose absolute addresses reach data however far from the code MCJIT maps it. The
    small model's 32-bit offsets aborted the process (RuntimeDyldELF `isInt<32>(RealOffset)`) once
    OpenGL, Vulkan and a browser had filled the address space between the two."""
    _init()
    cpu = target.attrs.get("mcpu")
    if cpu is None:
        cpu, features = host_cpu()
    else:
        features = target.attrs.get("mattr", "")
    triple = target.attrs.get("mtriple") or llvm.get_process_triple()
    tm = llvm.Target.from_triple(triple).create_target_machine(
        cpu=cpu, features=features, opt=3, codemodel="large" if jit else "default", reloc="static" if jit else "pic")
    return tm, cpu, features


class _Codegen:
    def __init__(self, target: Target, vector_bits: int, name: str):
        self.target, self.vector_bits = target, vector_bits
        self.module = ir.Module(name=name)
        self.in_parallel = False
        self._memo: dict = {}

    # ------------------------------------------------------------------ functions
    def add(self, func: PrimFunc) -> None:
        self.func, self.values, self.n_outlined = func, {}, 0  # values: Var -> ir.Value, Buffer -> pointer
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR] * len(func.params)), func.name)
        for arg, buf in zip(fn.args, func.params):
            arg.name = buf.name
            arg.add_attribute("noalias")
            self.values[buf] = arg
        self._emit_function(fn, func.body)

    def text(self) -> str:
        attrs = f'"prefer-vector-width"="{self.vector_bits}" "min-legal-vector-width"="{self.vector_bits}"'
        return str(self.module).replace(") nounwind\n", f") nounwind {attrs}\n")

    def _emit_function(self, fn: ir.Function, body: Stmt) -> None:
        fn.attributes.add("nounwind")
        entry = fn.append_basic_block("entry")
        start = fn.append_basic_block("start")
        self.alloca_builder = ir.IRBuilder(entry)
        self.b = ir.IRBuilder(start)
        self.stmt(body)
        self.b.ret_void()
        self.alloca_builder.branch(start)

    # ------------------------------------------------------------------ statements
    def stmt(self, s: Stmt) -> None:
        self._memo = {}  # a statement may store to what an earlier one loaded: values are reused within one only
        getattr(self, "stmt_" + type(s).__name__)(s)

    def stmt_Seq(self, s: Seq) -> None:
        for x in s.stmts:
            self.stmt(x)

    def stmt_Evaluate(self, s: Evaluate) -> None:
        if isinstance(s.value, Call) and s.value.name == "prefetch":
            return self._prefetch(s.value.args[0])
        self.expr(s.value)

    def _prefetch(self, load: Load) -> None:
        """llvm.prefetch(read, locality 2 = keep in L2 and below, data cache) of one element's address."""
        (idx,) = load.indices
        ptr = self.b.gep(self.values[load.buffer], [self.b.sext(self.expr(idx), I64)],
                         source_etype=mem_type(load.buffer.dtype))
        fn = self._declare("llvm.prefetch.p0", ir.FunctionType(ir.VoidType(), [PTR, I32, I32, I32]))
        self.b.call(fn, [ptr, ir.Constant(I32, 0), ir.Constant(I32, PREFETCH_LOCALITY), ir.Constant(I32, 1)])

    def stmt_Store(self, s: Store) -> None:
        value = self.expr(s.value)
        (idx,) = s.indices
        self._access(s.buffer, idx, value)

    def stmt_IfThenElse(self, s: IfThenElse) -> None:
        cond = self.expr(s.cond)
        if s.else_ is None:
            with self.b.if_then(cond):
                self.stmt(s.then)
        else:
            with self.b.if_else(cond) as (then, other):
                with then:
                    self.stmt(s.then)
                with other:
                    self.stmt(s.else_)

    def stmt_Allocate(self, s: Allocate) -> None:
        buf = s.buffer
        elem = mem_type(buf.dtype)
        nbytes = buf.size * max(1, elem.width // 8 if isinstance(elem, ir.IntType) else _fbytes(buf.dtype))
        if nbytes <= STACK_LIMIT:
            ptr = self.alloca_builder.alloca(elem, size=ir.Constant(I32, buf.size), name=buf.name)
            ptr.align = 64
            self.values[buf] = ptr
            self.stmt(s.body)
            return
        malloc = self._declare("malloc", ir.FunctionType(PTR, [I64]))
        free = self._declare("free", ir.FunctionType(ir.VoidType(), [PTR]))
        ptr = self.b.call(malloc, [ir.Constant(I64, nbytes)], name=buf.name)
        self.values[buf] = ptr
        self.stmt(s.body)
        self.b.call(free, [ptr])

    def stmt_For(self, s: For) -> None:
        if s.kind == "parallel" and not self.in_parallel:
            return self._parallel_for(s)
        if s.kind == "thread":
            raise BuildError(f"kernel {self.func.name}: loop {s.var.name} is bound to {s.thread_tag}, "
                             "which only GPU targets have; remove the bind for llvm")
        self._loop(s.var, ir.Constant(I32, 0), self.expr(s.extent), s.body)

    def _loop(self, var: Var, begin, end, body: Stmt) -> None:
        pre = self.b.block
        head = self.b.append_basic_block(f"{var.name}.head")
        loop = self.b.append_basic_block(f"{var.name}.body")
        done = self.b.append_basic_block(f"{var.name}.done")
        self.b.branch(head)
        self.b.position_at_end(head)
        i = self.b.phi(I32, name=var.name)
        i.add_incoming(begin, pre)
        self.b.cbranch(self.b.icmp_signed("<", i, end), loop, done)
        self.b.position_at_end(loop)
        self.values[var] = i
        self.stmt(body)
        nxt = self.b.add(i, ir.Constant(I32, 1), flags=["nsw"])
        i.add_incoming(nxt, self.b.block)
        self.b.branch(head)
        self.b.position_at_end(done)

    def _parallel_for(self, s: For) -> None:
        """Outline the loop body; each libgomp thread runs a contiguous chunk of iterations."""
        captured = self._captured(s)
        types = [PTR if not isinstance(k, Var) else ltype(k.dtype) for k in captured]
        ctx_t = ir.LiteralStructType(types)
        name = f"{self.func.name}_parallel{self.n_outlined}"
        self.n_outlined += 1
        worker = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR]), name)
        worker.linkage = "internal"
        # fill the context in the caller
        ctx = self.alloca_builder.alloca(ctx_t)  # a typed pointer: gep finds each slot's type
        for k, key in enumerate(captured):
            slot = self.b.gep(ctx, [ir.Constant(I32, 0), ir.Constant(I32, k)], inbounds=True)
            self.b.store(self.values[key], slot)
        gomp = self._declare("GOMP_parallel", ir.FunctionType(ir.VoidType(), [PTR, PTR, I32, I32]))
        self.b.call(gomp, [worker, ctx, ir.Constant(I32, self.target.threads), ir.Constant(I32, 0)])
        # emit the worker with its own builders and values
        saved = (self.b, self.alloca_builder, dict(self.values))
        self.in_parallel = True
        worker.attributes.add("nounwind")
        entry = worker.append_basic_block("entry")
        start = worker.append_basic_block("start")
        self.alloca_builder, self.b = ir.IRBuilder(entry), ir.IRBuilder(start)
        for k, key in enumerate(captured):
            slot = self.b.gep(worker.args[0], [ir.Constant(I32, 0), ir.Constant(I32, k)], inbounds=True,
                              source_etype=ctx_t)
            self.values[key] = self.b.load(slot, typ=types[k])
        ext = self.expr(s.extent)  # extents use only captured values
        tid = self.b.call(self._declare("omp_get_thread_num", ir.FunctionType(I32, [])), [])
        nthr = self.b.call(self._declare("omp_get_num_threads", ir.FunctionType(I32, [])), [])
        chunk = self.b.sdiv(self.b.sub(self.b.add(ext, nthr), ir.Constant(I32, 1)), nthr)
        begin = self.b.mul(tid, chunk)
        end = self.b.add(begin, chunk)
        end = self.b.select(self.b.icmp_signed("<", end, ext), end, ext)
        self._loop(s.var, begin, end, s.body)
        self.b.ret_void()
        self.alloca_builder.branch(start)
        self.b, self.alloca_builder, self.values = saved
        self.in_parallel = False

    def _captured(self, s: For) -> list:
        """Variables and buffers the loop uses that are defined outside it."""
        inner_defs, used = set(), []

        def visit(st):
            if isinstance(st, For):
                inner_defs.add(st.var)
            if isinstance(st, Allocate):
                inner_defs.add(st.buffer)
            if isinstance(st, Store):
                used.append(st.buffer)
            for e in stmt_exprs(st):
                used.extend(free_vars(e))
                _collect_buffers(e, used)

        walk(s.body, visit)
        used.extend(free_vars(s.extent))
        out, seen = [], set()
        for key in used:
            if key in inner_defs or key is s.var or id(key) in seen:
                continue
            seen.add(id(key))
            out.append(key)
        return out

    def _declare(self, name: str, ftype: ir.FunctionType) -> ir.Function:
        if name in self.module.globals:
            return self.module.globals[name]
        return ir.Function(self.module, ftype, name)

    # ------------------------------------------------------------------ memory
    def _access(self, buffer, idx: Expr, value=None):
        """Load (value is None) or store at idx: contiguous vectors directly, other vectors lane by lane."""
        is_bool = scalar_of(buffer.dtype) == "bool"
        if value is not None and is_bool:
            value = self.b.zext(value, I8 if not isinstance(value.type, ir.VectorType)
                                else ir.VectorType(I8, value.type.count))
        out = self._memory(buffer, idx, value)
        if value is None and is_bool:
            out = self.b.icmp_unsigned("!=", out, ir.Constant(out.type, None))
        return out

    def _memory(self, buffer, idx: Expr, value):
        base = self.values[buffer]
        elem = mem_type(buffer.dtype)
        n = lanes_of(idx.dtype)
        align = max(1, elem.width // 8) if isinstance(elem, ir.IntType) else _fbytes(buffer.dtype)
        if n == 1 or (isinstance(idx, Ramp) and isinstance(idx.stride, Const) and idx.stride.value == 1):
            first = idx.base if n > 1 else idx
            ptr = self.b.gep(base, [self.b.sext(self.expr(first), I64)], inbounds=True, source_etype=elem)
            vt = elem if n == 1 else ir.VectorType(elem, n)
            if not ptr.type.is_opaque and n > 1:  # an alloca's typed pointer: view it as a vector pointer
                ptr = self.b.bitcast(ptr, vt.as_pointer())
            if value is None:
                return self.b.load(ptr, typ=vt, align=align)
            return self.b.store(value, ptr, align=align)
        lanes = self.expr(idx)
        out = ir.Constant(ir.VectorType(elem, n), None) if value is None else None
        for k in range(n):
            i = self.b.extract_element(lanes, ir.Constant(I32, k))
            ptr = self.b.gep(base, [self.b.sext(i, I64)], inbounds=True, source_etype=elem)
            if value is None:
                out = self.b.insert_element(out, self.b.load(ptr, typ=elem, align=align), ir.Constant(I32, k))
            else:
                self.b.store(self.b.extract_element(value, ir.Constant(I32, k)), ptr, align=align)
        return out

    # ------------------------------------------------------------------ expressions
    def expr(self, e: Expr):
        if isinstance(e, (Const, Var)):
            return getattr(self, "expr_" + ("Var" if isinstance(e, Var) else "Const"))(e)
        # Inlined stages share subexpressions (resize weights, softmax sums): emit each shared node once,
        # or the walk is exponential in the nesting. Reuse only within the same basic block (dominance).
        hit = self._memo.get(id(e))
        if hit is not None and hit[0] is e and hit[1] is self.b.block:
            return hit[2]
        value = getattr(self, "expr_" + type(e).__name__)(e)
        self._memo[id(e)] = (e, self.b.block, value)
        return value

    def expr_Const(self, e: Const):
        t = ltype(e.dtype)
        return ir.Constant(t, int(e.value) if not is_float(e.dtype) else float(e.value))

    def expr_Var(self, e: Var):
        if e not in self.values:
            raise BuildError(f"kernel {self.func.name}: variable {e.name} is used outside its loop")
        return self.values[e]

    def expr_Load(self, e: Load):
        return self._access(e.buffer, e.indices[0])

    def expr_Broadcast(self, e: Broadcast):
        v = self.expr(e.value)
        vt = ir.VectorType(v.type, e.lanes)
        one = self.b.insert_element(ir.Constant(vt, None), v, ir.Constant(I32, 0))
        mask = ir.Constant(ir.VectorType(I32, e.lanes), [0] * e.lanes)
        return self.b.shuffle_vector(one, ir.Constant(vt, None), mask)

    def expr_Ramp(self, e: Ramp):
        base = self.expr_Broadcast(Broadcast(e.base, e.lanes))
        stride = self.expr_Broadcast(Broadcast(e.stride, e.lanes))
        steps = ir.Constant(ir.VectorType(I32, e.lanes), list(range(e.lanes)))
        return self.b.add(base, self.b.mul(steps, stride))

    def expr_Not(self, e: Not):
        return self.b.not_(self.expr(e.a))

    def expr_Select(self, e: Select):
        return self.b.select(self.expr(e.cond), self.expr(e.t), self.expr(e.f))

    def expr_Cast(self, e: Cast):
        v, src, dst = self.expr(e.a), scalar_of(e.a.dtype), scalar_of(e.dtype)
        t = ltype(e.dtype)
        if dst == "bool":
            zero = ir.Constant(v.type, None)
            return self.b.fcmp_unordered("!=", v, zero) if is_float(src) else self.b.icmp_signed("!=", v, zero)
        if is_float(src) and is_float(dst):
            return self.b.fpext(v, t) if _fbytes(dst) > _fbytes(src) else self.b.fptrunc(v, t)
        if is_float(src):
            return self.b.fptoui(v, t) if dst == "uint8" else self.b.fptosi(v, t)
        unsigned = src in ("bool", "uint8")
        if is_float(dst):
            return self.b.uitofp(v, t) if unsigned else self.b.sitofp(v, t)
        sw, dw = SCALAR[src].width, SCALAR[dst].width
        if dw == sw:
            return v
        if dw < sw:
            return self.b.trunc(v, t)
        return self.b.zext(v, t) if unsigned else self.b.sext(v, t)

    def expr_Call(self, e: Call):
        args = [self.expr(a) for a in e.args]
        t = ltype(e.dtype)
        n = lanes_of(e.dtype)
        widths = [w for w in (16, 8) if w <= self.vector_bits // 32 and n % w == 0]
        if _have_mvec and e.name in MVEC and scalar_of(e.dtype) == "float32" and widths:
            return self._mvec_call(e.name, args, n, widths[0])
        if e.name in LLVM_MATH:
            name = "fabs" if e.name == "fabs" else e.name
            fn = self._declare(f"llvm.{name}.{_suffix(e.dtype)}", ir.FunctionType(t, [t] * len(args)))
            return self.b.call(fn, args)
        # tanh, erf without libmvec, or odd widths: libm, lane by lane
        st = SCALAR[scalar_of(e.dtype)]
        cname = e.name + ("f" if scalar_of(e.dtype) == "float32" else "")
        fn = self._declare(cname, ir.FunctionType(st, [st] * len(args)))
        if n == 1:
            return self.b.call(fn, args)
        out = ir.Constant(t, None)
        for k in range(n):
            lane = [self.b.extract_element(a, ir.Constant(I32, k)) for a in args]
            out = self.b.insert_element(out, self.b.call(fn, lane), ir.Constant(I32, k))
        return out

    def _mvec_call(self, name: str, args: list, n: int, width: int):
        """libmvec's vector function, one call per `width` lanes (LLVM would call libm per lane)."""
        isa = "e" if width == 16 else "d"  # AVX-512 or AVX2 variant; glibc picks the code at load time
        vt = ir.VectorType(ir.FloatType(), width)
        fn = self._declare(f"_ZGV{isa}N{width}{'v' * len(args)}_{MVEC[name]}", ir.FunctionType(vt, [vt] * len(args)))
        if n == width:
            return self.b.call(fn, args)
        out = ir.Constant(ir.VectorType(ir.FloatType(), n), None)
        for k in range(0, n, width):
            take = ir.Constant(ir.VectorType(I32, width), list(range(k, k + width)))
            chunk = [self.b.shuffle_vector(a, ir.Constant(a.type, None), take) for a in args]
            part = self.b.call(fn, chunk)
            widen = ir.Constant(ir.VectorType(I32, n), [i if i < width else 0 for i in range(n)])
            wide = self.b.shuffle_vector(part, ir.Constant(vt, None), widen)
            blend = [n + j - k if k <= j < k + width else j for j in range(n)]  # lanes k..k+width from `wide`
            out = self.b.shuffle_vector(out, wide, ir.Constant(ir.VectorType(I32, n), blend))
        return out

    def expr_Binary(self, e: Binary):
        a, b = self.expr(e.a), self.expr(e.b)
        op, fl = e.op, is_float(e.a.dtype)
        B = self.b
        if op in FCMP:
            return B.fcmp_ordered(op, a, b) if fl and op != "!=" else (
                B.fcmp_unordered(op, a, b) if fl else
                (B.icmp_unsigned(op, a, b) if scalar_of(e.a.dtype) in ("uint8", "bool") else B.icmp_signed(op, a, b)))
        if op == "and":
            return B.and_(a, b)
        if op == "or":
            return B.or_(a, b)
        if op in ("min", "max"):
            pick = ("<" if op == "min" else ">")
            unsigned = scalar_of(e.a.dtype) in ("uint8", "bool")
            c = B.fcmp_ordered(pick, a, b) if fl else (B.icmp_unsigned if unsigned else B.icmp_signed)(pick, a, b)
            return B.select(c, a, b)
        if fl:
            if op == "//":
                return self._call_math("floor", B.fdiv(a, b), e.dtype)
            if op == "%":
                q = self._call_math("floor", B.fdiv(a, b), e.dtype)
                return B.fsub(a, B.fmul(q, b))
            # `contract` lets LLVM fuse a*b+c into one FMA, as BLAS and ONNX Runtime do
            return {"+": B.fadd, "-": B.fsub, "*": B.fmul, "/": B.fdiv}[op](a, b, flags=("contract",))
        if op in ("+", "-", "*"):
            return {"+": B.add, "-": B.sub, "*": B.mul}[op](a, b, flags=["nsw"])
        if op in ("//", "%", "/"):
            return self._floor_divmod("%" if op == "%" else "//", a, b)
        raise BuildError(f"kernel {self.func.name}: operator {op} on {e.dtype} is not supported")

    def _floor_divmod(self, op: str, a, b):
        """Floor division/modulo (Python semantics) from LLVM's truncating sdiv/srem."""
        B = self.b
        zero = ir.Constant(a.type, None)
        q, r = B.sdiv(a, b), B.srem(a, b)
        # the sign of r differs from b's (and r != 0): truncation rounded the wrong way
        fix = B.and_(B.icmp_signed("!=", r, zero), B.icmp_signed("<", B.xor(r, b), zero))
        if op == "//":
            return B.sub(q, B.zext(fix, a.type) if not isinstance(a.type, ir.VectorType) else B.select(
                fix, ir.Constant(a.type, [1] * a.type.count), zero))
        return B.select(fix, B.add(r, b), r)

    def _call_math(self, name: str, v, dtype: str):
        t = v.type
        return self.b.call(self._declare(f"llvm.{name}.{_suffix(dtype)}", ir.FunctionType(t, [t])), [v])


def _suffix(dtype: str) -> str:
    """LLVM intrinsic type suffix: f32, v16f32, ..."""
    n = lanes_of(dtype)
    return (f"v{n}" if n > 1 else "") + {"float32": "f32", "float64": "f64", "float16": "f16"}[scalar_of(dtype)]


def _fbytes(dtype: str) -> int:
    return {"float32": 4, "float64": 8, "float16": 2}.get(scalar_of(dtype), 4)


def _collect_buffers(e: Expr, out: list) -> None:
    post_order(e, lambda n: out.append(n.buffer) if isinstance(n, Load) else None)


class LLVMLibrary:
    """Owns the JIT engine (keeps the code alive) and can write the code as a shared library."""

    def __init__(self, module_ref, tm, engine):
        self.module_ref, self.tm, self.engine = module_ref, tm, engine

    def object_code(self) -> bytes:
        return self.tm.emit_object(self.module_ref)


def vector_bits_for(features: str) -> int:
    """Widest vector the CPU has; with -mcpu and no feature list, assume AVX2-class 256 bits."""
    return 512 if "+avx512f" in features else 256 if "+avx" in features or not features else 128


def compile_llvm(funcs: list, target: Target, name: str = "module") -> tuple:
    """Compile PrimFuncs into one LLVM module: (LLVMLibrary, {function name: address}, IR text)."""
    tm, _, features = target_machine(target)
    bits = int(target.attrs.get("vector-bits", 0)) or vector_bits_for(features)
    gen = _Codegen(target, bits, name)
    for f in funcs:
        gen.add(f)
    text = gen.text()
    try:
        mod = llvm.parse_assembly(text)
        mod.verify()
    except RuntimeError as err:
        raise BuildError(f"{name}: LLVM rejected the generated IR: {err}") from None
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
    pb.getModulePassManager().run(mod, pb)
    engine = llvm.create_mcjit_compiler(mod, target_machine(target, jit=True)[0])
    engine.finalize_object()
    addrs = {f.name: engine.get_function_address(f.name) for f in funcs}
    return LLVMLibrary(mod, tm, engine), addrs, text


def cfunc_at(addr: int, nargs: int):
    return ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * nargs)(addr)


def build_llvm(func: PrimFunc, target: Target) -> Kernel:
    lib, addrs, text = compile_llvm([func], target, func.name)
    cfunc = cfunc_at(addrs[func.name], len(func.params))
    return Kernel(func.name, param_specs(func), cfunc, None, text, func, str(target), lib)


def link_shared(lib: LLVMLibrary, name: str) -> str:
    """Write the kernel as a shared library (object code linked by the system C compiler)."""
    cache = os.environ.get("LATHE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lathe")
    os.makedirs(cache, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".o", dir=cache, delete=False) as fh:
        fh.write(lib.object_code())
        obj = fh.name
    out = obj[:-2] + ".so"
    cc = os.environ.get("CC", "cc")
    res = subprocess.run([cc, "-shared", "-o", out, obj, "-lgomp", "-lmvec", "-lm"], capture_output=True, text=True)
    os.unlink(obj)
    if res.returncode != 0:
        raise BuildError(f"kernel {name}: linking the shared library failed:\n{res.stderr[:2000]}")
    return out
