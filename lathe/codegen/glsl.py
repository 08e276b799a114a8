"""Loop IR -> a GLSL fragment shader (desktop 330 core, or GLSL ES 3.00 for WebGL2).

The GL schedule (ops/gl.py) binds the fused output axes to "fragment": that loop becomes the flat
index of the fragment's texel, texel (x, y) of a W-wide texture holding element y*W + x. Every
tensor is an R32F texture laid out the same way (tex_shape), read with texelFetch; the one Store
into the output buffer becomes the fragment's color. Integers are explicit casts everywhere (the ES
rules have no implicit int/float conversion), so one renderer serves both dialects.
"""

from __future__ import annotations

import re

from lathe.codegen.cstyle import RESERVED, CStyleRenderer, UnsupportedError
from lathe.errors import BuildError
from lathe.expr import Cast, lanes_of
from lathe.tir.stmt import Allocate, For, IfThenElse, PrimFunc, Seq, Store

TEX_WIDTH = 4096  # texels per row; well inside every GL_MAX_TEXTURE_SIZE (>= 4096 on ES 3.00 devices too)
GLSL_RESERVED = frozenset("""in out inout uniform layout texture sample input output vec2 vec3 vec4 ivec2 ivec3
ivec4 mix discard main precision highp mediump lowp sampler2D attribute varying smooth flat centroid
invariant texelFetch active common filter""".split())
DIALECTS = {"330": "#version 330 core", "es": "#version 300 es\nprecision highp float;\nprecision highp int;\n"
            "precision highp sampler2D;"}


def tex_shape(n: int) -> tuple[int, int]:
    """(width, height) of the texture holding n elements in row-major texel order. One width for every
    tensor, so values that are never live together can share one texture (the runtime's pool)."""
    return TEX_WIDTH, -(-max(n, 1) // TEX_WIDTH)


def stored_buffers(s) -> set:
    """ids of the buffers a statement stores into."""
    if isinstance(s, Store):
        return {id(s.buffer)}
    kids = (s.stmts if isinstance(s, Seq) else [s.body] if isinstance(s, (For, Allocate))
            else [s.then, s.else_] if isinstance(s, IfThenElse) else [])
    return set().union(*(stored_buffers(k) for k in kids if k is not None))


class GLSLRenderer(CStyleRenderer):
    types = {"float32": "float", "int32": "int", "bool": "bool", "int64": "int", "int8": "int", "uint8": "int",
             "float64": "float"}  # ES has no double: float64 temporaries (int Pow's) compute in fp32
    math_funcs = ("exp", "log", "sqrt", "tanh", "erf", "pow", "fabs", "floor", "ceil", "fmin", "fmax")
    glsl_math = {"fabs": "abs", "fmin": "min", "fmax": "max"}
    float_suffix: dict = {}
    infinity, nan = "uintBitsToFloat(0x7F800000u)", "uintBitsToFloat(0x7FC00000u)"
    helper_prefix = ""
    plain_counter_division = True  # the sign-branching helpers ran in the innermost loops (3x on the H100)

    def __init__(self, dialect: str = "330"):
        super().__init__()
        if dialect not in DIALECTS:
            raise BuildError(f"GLSL dialect {dialect!r}: use one of {sorted(DIALECTS)}")
        self.dialect = dialect

    def render(self, func: PrimFunc) -> str:
        body = self.function(func)
        return "\n".join([DIALECTS[self.dialect], *self.uniforms, "out float lathe_out;",
                          *(h.strip() for h in self.helpers.values()), body]) + "\n"

    def reserved(self, name: str) -> bool:
        return name in GLSL_RESERVED or name in RESERVED or super().reserved(name) or name.startswith("gl_")

    def name(self, obj, hint: str) -> str:
        # GLSL reserves every identifier containing "__" (NVIDIA's compiler enforces it, Mesa does not):
        # ONNX names such as "onnx::Conv_12" would otherwise become onnx__Conv_12
        return super().name(obj, re.sub(r"_{2,}", "_", re.sub(r"[^A-Za-z0-9_]", "_", hint)).strip("_") or "v")

    def function(self, func: PrimFunc) -> str:
        stored = stored_buffers(func.body)
        self.outputs = ([b for b in func.params if id(b) in stored]
                        or [b for b in func.params[-1:] if b.size == 0])  # an empty output: nothing to store
        if len(self.outputs) != 1:
            raise UnsupportedError(f"kernel {func.name}: a fragment shader writes one output, this kernel "
                                   f"writes {len(self.outputs)}")
        self.fragments = 0
        text = super().function(func)
        if self.fragments != 1 and not (self.fragments == 0 and self.outputs[0].size <= 1):
            raise UnsupportedError(f"kernel {func.name}: no loop bound to \"fragment\"; schedule it with "
                                   "the gl family (lathe/ops/gl.py)")
        return text

    def kernel_signature(self, name: str, params: list[str]) -> str:
        self.uniforms = [p for p in params if p]
        return "void main()"

    def param(self, buffer, name: str) -> str:
        if buffer in self.outputs:
            return ""
        if buffer.dtype not in self.types or buffer.dtype == "float64":
            raise UnsupportedError(f"kernel {self.func.name}: {buffer.name} is {buffer.dtype}; GL textures hold "
                                   f"float32, and integers exactly within +-2^24")
        w = tex_shape(buffer.size)[0]
        shift = w.bit_length() - 1  # w is a power of two and i >= 0: a mask and a shift, no division
        load = f"texelFetch({name}, ivec2(i & {w - 1}, i >> {shift}), 0).r"
        if buffer.dtype != "float32":
            load = f"{self.types[buffer.dtype]}({load})"
        self.define(f"lathe_load_{name}", self.types[buffer.dtype], "int i", f"return {load};")
        return f"uniform highp sampler2D {name};"

    # ------------------------------------------------------------------ statements
    def stmt_For(self, s: For) -> None:
        if s.kind != "thread" or s.thread_tag != "fragment":
            return super().stmt_For(s) if s.kind != "thread" else self._bad_thread(s)
        self.fragments += 1
        n = s.extent.value
        w = tex_shape(n)[0]
        v = self.name(s.var, s.var.name)
        self.emit(f"int {v} = int(gl_FragCoord.y) * {w} + int(gl_FragCoord.x);")
        if n % w:
            self.emit(f"if ({v} >= {n}) discard;")
        self.stmt(s.body)

    def _bad_thread(self, s: For) -> None:
        raise UnsupportedError(f"kernel {self.func.name}: loop {s.var.name} is bound to {s.thread_tag}; "
                               "GLSL kernels bind their output axes to \"fragment\" only")

    def stmt_Store(self, s: Store) -> None:
        if s.buffer not in self.outputs:
            return super().stmt_Store(s)
        if lanes_of(s.value.dtype) != 1:
            raise UnsupportedError(f"kernel {self.func.name}: vector stores are not supported in GLSL")
        value = s.value if s.value.dtype == "float32" else Cast("float32", s.value)
        self.emit(f"lathe_out = {self.expr(value, 0)};")

    def expr_Load(self, e) -> str:
        if e.buffer in self.outputs:
            raise UnsupportedError(f"kernel {self.func.name}: reads its output {e.buffer.name}; a fragment "
                                   "cannot read its own target (cache_write into a local first)")
        if id(e.buffer) not in self.names or e.buffer not in self.func.params:
            return super().expr_Load(e)
        if lanes_of(e.dtype) != 1:
            raise UnsupportedError(f"kernel {self.func.name}: vector loads are not supported in GLSL")
        idx = self.one_index(e.buffer, e.indices)
        return f"lathe_load_{self.lookup(e.buffer, 'buffer')}({self.expr(idx, 0)})"

    # ------------------------------------------------------------------ expressions
    def const(self, v, dtype: str) -> str:
        if dtype == "bool":
            return "true" if v else "false"
        return super().const(v, "int32" if dtype == "int64" else dtype)

    def expr_Cast(self, e: Cast) -> str:
        if lanes_of(e.dtype) > 1:
            return self.unsupported_vector()
        a = self.expr(e.a)
        if e.dtype == "bool":
            return f"({a} != {self.const(0, e.a.dtype)})"
        return f"{self.types[e.dtype]}({a})"

    def math_name(self, name: str, dtype: str) -> str:
        if name == "erf":  # GLSL has no erf: Abramowitz-Stegun 7.1.26, |error| < 1.5e-7
            return self.define("lathe_erf", "float", "float x", "float t = 1.0 / (1.0 + 0.3275911 * abs(x)); "
                               "float y = 1.0 - (((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t "
                               "- 0.284496736) * t + 0.254829592) * t) * exp(-x * x); return sign(x) * y;")
        if name == "pow":  # GLSL's pow is undefined for x < 0, and for x == 0 with y <= 0; C's is not
            return self.define("lathe_pow", "float", "float a, float b", "if (b == 0.0) return 1.0; "
                               f"if (a < 0.0) {{ if (floor(b) != b) return {self.nan}; float r = pow(-a, b); "
                               "return mod(b, 2.0) == 1.0 ? -r : r; } return pow(a, b);")
        return self.glsl_math.get(name, name)

    def floor_divmod(self, op: str, a: str, b: str, dtype: str) -> str:
        if dtype != "int32" and dtype != "int64":
            return super().floor_divmod(op, a, b, dtype)
        # GLSL leaves % of negative operands undefined: derive both from truncating division
        q = "int q = a / b; if (q * b != a && ((a < 0) != (b < 0))) q -= 1;"
        if op == "//":
            fn = self.define("lathe_floordiv", "int", "int a, int b", f"{q} return q;")
        else:
            fn = self.define("lathe_floormod", "int", "int a, int b", f"{q} return a - q * b;")
        return f"{fn}({a}, {b})"

    def minmax(self, op: str, a: str, b: str, dtype: str) -> str:
        return f"{op}({a}, {b})"


def render_glsl(func: PrimFunc, dialect: str = "330") -> str:
    """The fragment shader source of one GL-scheduled kernel."""
    return GLSLRenderer(dialect).render(func)
