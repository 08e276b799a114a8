"""The `webgpu` target: loop IR -> WGSL compute shaders, one shader module per kernel.

The GPU renderer base (opencl.py) gives thread-bound loops, launch sizes, shared memory and
barriers; this file spells them in WGSL: kernel arguments are storage buffers of group 0 (read-only
unless the kernel writes them, since WebGPU forbids two writable bindings of one buffer), shared
arrays are module-scope `var<workgroup>`, locals are `var`/`let` with the type after the name, and
C's `c ? a : b` becomes `select(b, a, c)`. WGSL has no implicit conversions; the IR's casts are
explicit already. Buffers hold f32 or i32: int64, 8-bit and bool tensors are stored as i32 (the runtime
converts them), so int64 values must fit in 32 bits.
"""

from __future__ import annotations

import re

from lathe.codegen.cstyle import COMPARE, RESERVED, UnsupportedError
from lathe.codegen.glsl import stored_buffers
from lathe.codegen.opencl import GPURenderer
from lathe.expr import Binary, Cast, Select, lanes_of
from lathe.tir.stmt import Allocate, For, PrimFunc

WGSL_RESERVED = frozenset("""alias break case const const_assert continue continuing default diagnostic discard
else enable false fn for if let loop override requires return struct switch true var while array atomic bool f16
f32 i32 u32 ptr sampler vec2 vec3 vec4 mat2x2 mat3x3 mat4x4 NULL Self abstract active alignas alignof as asm async
attribute auto await become binding_array cast catch class co_await co_return co_yield coherent column_major common
compile compile_fragment concept const_cast consteval constexpr constinit crate debugger decltype delete demote
demote_to_helper do dynamic_cast enum explicit export extends extern external fallthrough filter final finally
friend from fxgroup get goto groupshared highp impl implements import inline instanceof interface layout lowp macro
macro_rules match mediump meta mod module move mut mutable namespace new nil noexcept noinline nointerpolation
noperspective null nullptr of operator package packoffset partition pass patch pixelfragment precise precision
premerge priv protected pub public readonly ref regardless register reinterpret_cast require resource restrict
self set shared sizeof smooth snorm static static_assert static_cast std subroutine super target template this
thread_local throw trait try type typedef typeid typename typeof union unless unorm unsafe unsized use using varying
virtual volatile wgsl where with writeonly yield select bitcast abs min max workgroupBarrier""".split())
STORAGE = ("float32", "int32", "int64", "int8", "uint8", "bool")  # all but float32 stored as i32
MAX_GROUPS = 65535  # WebGPU's default maxComputeWorkgroupsPerDimension


class WGSLRenderer(GPURenderer):
    types = {"float32": "f32", "int32": "i32", "bool": "bool", "int64": "i32", "int8": "i32", "uint8": "i32",
             "float64": "f32"}  # WGSL has no f64: float64 temporaries (int Pow's) compute in f32
    math_funcs = ("exp", "log", "sqrt", "tanh", "erf", "pow", "fabs", "floor", "ceil", "fmin", "fmax")
    wgsl_math = {"fabs": "abs", "fmin": "min", "fmax": "max"}
    float_suffix: dict = {}
    infinity, nan = "lathe_inf()", "lathe_nan()"  # functions: browsers (Tint) refuse constant expressions
    special_bits = {"lathe_inf": "0x7f800000u", "lathe_nan": "0x7fc00000u"}  # that evaluate to inf or NaN
    index_names = {"blockIdx.x": "i32(lathe_group.x)", "blockIdx.y": "i32(lathe_group.y)",
                   "blockIdx.z": "i32(lathe_group.z)", "threadIdx.x": "i32(lathe_local.x)",
                   "threadIdx.y": "i32(lathe_local.y)", "threadIdx.z": "i32(lathe_local.z)"}
    barrier_call = "workgroupBarrier()"
    extra_reserved = WGSL_RESERVED | RESERVED

    def render(self, func: PrimFunc) -> str:
        """The shader module of one kernel: its bindings, workgroup arrays, helpers and entry point."""
        self.module_vars: list[str] = []
        self.bindings = 0
        body = self.function(func)
        launch = self.launch[func.name]
        launch["bindings"], launch["written"] = len(func.params), sorted(self.written)  # for the bind group layout
        groups = launch["groups"]
        if max(groups) > MAX_GROUPS:
            raise UnsupportedError(f"kernel {func.name}: {max(groups)} workgroups in one dimension exceed WebGPU's "
                                   f"maxComputeWorkgroupsPerDimension {MAX_GROUPS}; bind fewer, larger groups")
        for fn, bits in self.special_bits.items():  # a load from a var is no constant expression
            if f"{fn}()" in body or any(f"{fn}()" in h for h in self.helpers.values()):
                self.define(fn, "f32", "", f"var bits = {bits}; return bitcast<f32>(bits);")
        return "\n".join([*self.module_vars, *self.helpers.values(), body]) + "\n"

    def name(self, obj, hint: str) -> str:  # WGSL reserves identifiers that start with "__"
        return super().name(obj, re.sub(r"_{2,}", "_", re.sub(r"[^A-Za-z0-9_]", "_", hint)).strip("_") or "v")

    def function(self, func: PrimFunc) -> str:
        stored = stored_buffers(func.body)
        self.written = {k for k, p in enumerate(func.params) if id(p) in stored}
        return super().function(func)

    def kernel_signature(self, name: str, params: list[str]) -> str:
        size = ", ".join(map(str, self.launch[name]["local"]))
        return (f"@compute @workgroup_size({size})\nfn {name}(@builtin(workgroup_id) lathe_group: vec3<u32>, "
                "@builtin(local_invocation_id) lathe_local: vec3<u32>)")

    def param(self, buffer, name: str) -> str:
        if buffer.dtype not in STORAGE:
            raise UnsupportedError(f"kernel {self.func.name}: {buffer.name} is {buffer.dtype}; WebGPU storage buffers "
                                   f"here hold {', '.join(STORAGE)}")
        k = self.bindings
        access = "read_write" if k in self.written else "read"
        elem = "f32" if buffer.dtype == "float32" else "i32"
        # a sized array lets the browser's bounds clamping use a constant, not the binding's runtime length
        # (1.13x on a ResNet-18 conv under Dawn/SwiftShader); a strided view spans more than its shape
        count = f", {max(1, int(buffer.size))}" if buffer.strides is None else ""
        self.module_vars.append(f"@group(0) @binding({k}) var<storage, {access}> {name}: array<{elem}{count}>;")
        self.bindings += 1
        return name

    # ------------------------------------------------------------------ statements
    def declare(self, dtype: str, name: str, value: str) -> str:
        return f"let {name}: {self.type_name(dtype)} = {value};"

    def stmt_For(self, s: For) -> None:
        if s.kind == "thread" and s.thread_tag != "vthread":
            return super().stmt_For(s)
        hoisted = self.hoist_invariants(s)
        v, extent = self.name(s.var, s.var.name), self.expr(s.extent)
        self.emit(f"for (var {v}: i32 = 0; {v} < {extent}; {v}++) {{")
        self.block(s.body)
        self.emit("}")
        self.drop_invariants(hoisted)

    def stmt_Allocate(self, s: Allocate) -> None:
        buf = s.buffer
        if buf.scope != "shared":
            return super().stmt_Allocate(s)
        name = self.name(buf, buf.name)
        self.module_vars.append(f"var<workgroup> {name}: array<{self.type_name(buf.dtype)}, {buf.size}>;")
        self.stmt(s.body)

    def stmt_Store(self, s) -> None:
        if s.buffer.dtype == "bool" and s.buffer in self.func.params:  # bool tensors are stored as i32 0/1
            idx = self.one_index(s.buffer, s.indices)
            value = f"select(0, 1, {self.expr(s.value)})"
            return self.emit(f"{self.lookup(s.buffer, 'buffer')}[{self.expr(idx, 0)}] = {value};")
        super().stmt_Store(s)

    def expr_Load(self, e) -> str:
        text = super().expr_Load(e)
        return f"({text} != 0)" if e.buffer.dtype == "bool" and e.buffer in self.func.params else text

    def local_array(self, ctype: str, name: str, size: int) -> str:
        return f"var {name}: array<{ctype}, {size}>;"

    # ------------------------------------------------------------------ expressions
    def const(self, v, dtype: str) -> str:
        if dtype == "bool":
            return "true" if v else "false"
        return super().const(v, "int32" if dtype == "int64" else dtype)

    def expr_Binary(self, e: Binary, prec: int = 99) -> str:
        if e.op in COMPARE or e.op in ("and", "or"):  # WGSL lets no comparison or logic op chain unparenthesized
            return f"({self.expr(e.a, 11)} {self.binops[e.op]} {self.expr(e.b, 11)})"
        return super().expr_Binary(e, prec)

    def expr_Select(self, e: Select) -> str:
        if lanes_of(e.dtype) > 1:
            return self.unsupported_vector()
        return f"select({self.expr(e.f)}, {self.expr(e.t)}, {self.expr(e.cond)})"

    def expr_Cast(self, e: Cast) -> str:
        if lanes_of(e.dtype) > 1:
            return self.unsupported_vector()
        a = self.expr(e.a)
        if e.dtype == "bool":
            return f"({a} != {self.const(0, e.a.dtype)})"
        return f"{self.types[e.dtype]}({a})"

    def define(self, name: str, ret: str, params: str, body: str) -> str:
        self.helpers.setdefault(name, f"fn {name}({params}) -> {ret} {{ {body} }}")
        return name

    def math_name(self, name: str, dtype: str) -> str:
        if name == "erf":  # WGSL has no erf: Abramowitz-Stegun 7.1.26, |error| < 1.5e-7
            return self.define("lathe_erf", "f32", "x: f32", "let t = 1.0 / (1.0 + 0.3275911 * abs(x)); "
                               "let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t "
                               "- 0.284496736) * t + 0.254829592) * t) * exp(-x * x); return sign(x) * y;")
        if name == "pow":  # WGSL's pow is undefined for x < 0, and for x == 0 with y <= 0; C's is not
            return self.define("lathe_pow", "f32", "a: f32, b: f32", "if (b == 0.0) { return 1.0; } "
                               f"if (a < 0.0) {{ if (floor(b) != b) {{ return {self.nan}; }} let r = pow(-a, b); "
                               "if (b - 2.0 * floor(b / 2.0) == 1.0) { return -r; } return r; } "
                               "if (a == 0.0) { if (b < 0.0) { return " + self.infinity + "; } return 0.0; } "
                               "return pow(a, b);")
        return self.wgsl_math.get(name, name)

    def floor_divmod(self, op: str, a: str, b: str, dtype: str) -> str:
        if dtype not in ("int32", "int64"):
            if dtype == "float32":  # floor division of floats
                return f"floor({a} / {b})" if op == "//" else f"({a} - floor({a} / {b}) * {b})"
            raise UnsupportedError(f"kernel {self.func.name}: no WGSL floor division for {dtype}")
        # WGSL's / and % truncate (and x / 0 is x): derive floor semantics from truncation
        q = "var q = a / b; if (q * b != a && ((a < 0) != (b < 0))) { q = q - 1; }"
        if op == "//":
            fn = self.define("lathe_floordiv", "i32", "a: i32, b: i32", f"{q} return q;")
        else:
            fn = self.define("lathe_floormod", "i32", "a: i32, b: i32", f"{q} return a - q * b;")
        return f"{fn}({a}, {b})"

    def minmax(self, op: str, a: str, b: str, dtype: str) -> str:
        return f"{op}({a}, {b})"


def render_wgsl(func: PrimFunc) -> tuple[str, dict]:
    """The WGSL module of one kernel and its launch ({"groups", "local", "shared_bytes", "bindings": storage
    buffers, "written": the positions bound read_write})."""
    r = WGSLRenderer()
    return r.render(func), r.launch[func.name]
