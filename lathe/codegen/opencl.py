"""The `opencl` target: loop IR -> OpenCL C, and the GPU renderer base that CUDA shares.

A loop bound to a thread tag (`s[T].bind(ax, "threadIdx.x")`) is not a loop on a GPU: it reads
its index from the hardware. The launch size of each tag is the largest extent bound to it in
the kernel; a loop shorter than that is guarded (`if (v < extent)`). A kernel records its launch
(work-groups and work-group size per dimension) and its shared (`__local`) bytes in `self.launch`.
"""

from __future__ import annotations

from lathe.codegen.cstyle import BYTES, RESERVED, CStyleRenderer, UnsupportedError
from lathe.errors import BuildError
from lathe.expr import Call, Const, is_float, lanes_of, scalar_of
from lathe.tir.stmt import Allocate, Evaluate, For, PrimFunc, walk

DIMS = {"x": 0, "y": 1, "z": 2}


def launch_of(func: PrimFunc) -> dict:
    """{"groups": [gx, gy, gz], "local": [lx, ly, lz], "shared_bytes": n} of a lowered kernel."""
    groups, local, shared = [1, 1, 1], [1, 1, 1], [0]

    def visit(s) -> None:
        if isinstance(s, For) and s.kind == "thread" and s.thread_tag != "vthread":
            if not isinstance(s.extent, Const):
                raise BuildError(f"kernel {func.name}: loop {s.var.name} bound to {s.thread_tag} needs a "
                                 "constant extent")
            dims = groups if s.thread_tag.startswith("block") else local
            d = DIMS[s.thread_tag[-1]]
            dims[d] = max(dims[d], s.extent.value)
        if isinstance(s, Allocate) and s.buffer.scope == "shared":
            shared[0] += s.buffer.size * BYTES[scalar_of(s.buffer.dtype)] * lanes_of(s.buffer.dtype)

    walk(func.body, visit)
    return {"groups": groups, "local": local, "shared_bytes": shared[0]}


class GPURenderer(CStyleRenderer):
    """Thread-bound loops, shared memory and barriers; subclasses name the language's spellings."""

    index_names: dict = {}  # thread tag -> the expression that reads it
    shared_qualifier = ""
    barrier_call = ""
    extra_reserved: frozenset = frozenset()
    hoist_shared = False  # OpenCL wants __local arrays at kernel scope
    plain_counter_division = True  # a GPU compiler strength-reduces / and % by constants

    def __init__(self, threads: int = 1):
        super().__init__(threads)
        self.launch: dict[str, dict] = {}

    def reserved(self, name: str) -> bool:
        return name in self.extra_reserved or super().reserved(name)

    def function(self, func: PrimFunc) -> str:
        self.launch[func.name] = launch_of(func)
        self.hoisted: list[str] = []
        text = super().function(func)
        if self.hoisted:  # the declarations go first in the kernel body
            head, rest = text.split("\n", 1)
            text = "\n".join([head, *self.hoisted, rest])
        return text

    def stmt_For(self, s: For) -> None:
        if s.kind != "thread" or s.thread_tag == "vthread":
            return super().stmt_For(s.__class__(s.var, s.extent, "serial" if s.kind == "thread" else s.kind,
                                                s.body))
        launch = self.launch[self.func.name]
        size = (launch["groups"] if s.thread_tag.startswith("block") else launch["local"])[DIMS[s.thread_tag[-1]]]
        self.emit("{")
        self.depth += 1
        v = self.name(s.var, s.var.name)
        self.emit(self.declare(s.var.dtype, v, self.index_names[s.thread_tag]))
        if s.extent.value < size:
            self.emit(f"if ({v} < {s.extent.value}) {{")
            self.block(s.body)
            self.emit("}")
        else:
            self.stmt(s.body)
        self.depth -= 1
        self.emit("}")

    def stmt_Allocate(self, s: Allocate) -> None:
        buf = s.buffer
        if buf.scope == "global":
            raise BuildError(f"kernel {self.func.name}: intermediate {buf.name} ({buf.size} elements) would need "
                             "global memory allocated inside a GPU kernel; inline it or compute_at it inside "
                             "a thread loop")
        if buf.scope == "local":
            return super().stmt_Allocate(s)
        name = self.name(buf, buf.name)
        decl = f"{self.shared_qualifier} {self.type_name(buf.dtype)} {name}[{buf.size}];"
        if self.hoist_shared:
            self.hoisted.append("  " + decl)
            self.stmt(s.body)
        else:
            self.emit("{")
            self.depth += 1
            self.emit(decl)
            self.stmt(s.body)
            self.depth -= 1
            self.emit("}")

    def stmt_Evaluate(self, s: Evaluate) -> None:
        if isinstance(s.value, Call) and s.value.name == "barrier":
            return self.emit(self.barrier_call + ";")
        super().stmt_Evaluate(s)


class OpenCLRenderer(GPURenderer):
    types = {"float32": "float", "float64": "double", "float16": "half", "int32": "int", "int64": "long",
             "int8": "char", "uint8": "uchar", "bool": "uchar"}  # bool cannot be a kernel argument's type
    float_suffix: dict = {}  # OpenCL's math functions are overloaded: exp(float) is single precision
    includes = "#pragma OPENCL EXTENSION cl_khr_fp64 : enable"
    helper_prefix = "inline"
    kernel_prefix = "__kernel void"
    index_names = {"blockIdx.x": "get_group_id(0)", "blockIdx.y": "get_group_id(1)", "blockIdx.z": "get_group_id(2)",
                   "threadIdx.x": "get_local_id(0)", "threadIdx.y": "get_local_id(1)",
                   "threadIdx.z": "get_local_id(2)"}
    shared_qualifier = "__local"
    barrier_call = "barrier(CLK_LOCAL_MEM_FENCE)"
    hoist_shared = True
    extra_reserved = frozenset("""kernel global local private constant read_only write_only uchar ushort uint
    ulong barrier""".split()) | RESERVED

    def param(self, buffer, name: str) -> str:
        return f"__global {self.type_name(buffer.dtype)}* restrict {name}"

    # ---- vectors: OpenCL's floatN/intN (N = 2, 4, 8, 16) of 32-bit lanes; operators and math work lane-wise
    def vector_type(self, dtype: str) -> str:
        s, n = scalar_of(dtype), lanes_of(dtype)
        if n not in (2, 4, 8, 16) or (s not in ("float32", "int32", "bool")):
            raise UnsupportedError(f"kernel {self.func.name}: OpenCL vectors here are 2/4/8/16 lanes of float32 "
                                   f"or int32, not {dtype}; vectorize such a loop by 2, 4, 8 or 16")
        return ("float" if s == "float32" else "int") + str(n)  # a bool vector is a mask: int lanes 0 or -1

    def vector_load(self, buf_dtype: str, buf: str, base: str, dtype: str) -> str:
        self.vector_type(buf_dtype + f"x{lanes_of(dtype)}" if buf_dtype != "bool" else "float16x3")  # 32-bit
        return f"vload{lanes_of(dtype)}(0, {buf} + {base})"

    def vector_store(self, buf_dtype: str, buf: str, base: str, value: str, dtype: str) -> str:
        self.vector_type(buf_dtype + f"x{lanes_of(dtype)}" if buf_dtype != "bool" else "float16x3")  # 32-bit
        return f"vstore{lanes_of(dtype)}({value}, 0, {buf} + {base})"

    def _lanes(self, n: int) -> list[str]:
        return [f"s{k:x}" for k in range(n)]

    def vector_gather(self, buf_dtype: str, buf: str, index: str, dtype: str) -> str:
        return f"({self.type_name(dtype)})({', '.join(f'{buf}[({index}).{c}]' for c in self._lanes(lanes_of(dtype)))})"

    def vector_splat(self, x: str, dtype: str) -> str:
        return f"(({self.type_name(dtype)})({x}))"

    def vector_ramp(self, base: str, stride: str, dtype: str) -> str:
        steps = f"({self.type_name(dtype)})({', '.join(map(str, range(lanes_of(dtype))))})"
        return f"({steps} * {stride} + {base})"

    def vector_map(self, fn: str, args: list[str], dtype: str) -> str:
        if not fn.startswith("lathe_"):  # OpenCL's math functions take vectors
            return f"{fn}({', '.join(args)})"
        lanes = [f"{fn}({', '.join(f'({a}).{c}' for a in args)})" for c in self._lanes(lanes_of(dtype))]
        return f"({self.type_name(dtype)})({', '.join(lanes)})"

    def vector_minmax(self, op: str, a: str, b: str, dtype: str) -> str:
        return f"{'f' if is_float(dtype) else ''}{op}({a}, {b})"

    def vector_logic(self, op: str, a: str, b: str, dtype: str) -> str:
        return f"({a} {self.binops[op]} {b})"  # comparisons of vectors give int masks (-1 or 0)

    def vector_not(self, a: str, dtype: str) -> str:
        return f"(!{a})"

    def vector_select(self, cond: str, t: str, f: str, dtype: str) -> str:
        return f"select({f}, {t}, {cond})"  # the mask's lanes pick t where their top bit is set

    def vector_cast(self, a: str, src: str, dst: str) -> str:
        if scalar_of(dst) == "bool":
            return f"({a} != 0)"
        if scalar_of(src) == "bool":
            a = f"(-{a})"  # masks are -1: make them 1
        return f"convert_{self.type_name(dst)}({a})"


def render_opencl(funcs: list[PrimFunc]) -> tuple[str, dict]:
    """OpenCL C for several kernels sharing one preamble, and each kernel's launch (see launch_of)."""
    r = OpenCLRenderer()
    return r.render_module(funcs), r.launch
