"""Loop IR -> a GLSL fragment shader (desktop 330 core, or GLSL ES 3.00 for WebGL2).

Every tensor is an RGBA32F texture holding four consecutive elements (row-major flat order) per
texel: element i is component i % 4 of texel i / 4, and texel t sits at (t % W, t / W) of a W-wide
texture (tex_shape). The GL schedule (ops/gl.py) binds the output's texel loop to "fragment": that
loop becomes the fragment's texel index, derived from gl_FragCoord, and the stores into the output
become components of the fragment's vec4 color. A four-lane load that starts on a texel boundary is
one texelFetch; a scalar load whose component is known at compile time is one texelFetch and a
swizzle. Integers are explicit casts everywhere (the ES rules have no implicit int/float conversion),
so one renderer serves both dialects.
"""

from __future__ import annotations

import math
import re

from lathe.codegen.cstyle import RESERVED, CStyleRenderer, UnsupportedError, contiguous_base
from lathe.errors import BuildError
from lathe.expr import (
    Binary, Broadcast, Call, Cast, Const, Expr, Load, Not, Ramp, Select, binary, lanes_of, post_order, scalar_of,
    with_lanes,
)
from lathe.tir.arith import skey
from lathe.tir.stmt import Allocate, For, IfThenElse, PrimFunc, Seq, Store, walk

TEX_WIDTH = 4096  # texels per row; well inside every GL_MAX_TEXTURE_SIZE (>= 4096 on ES 3.00 devices too)
TEXEL = 4  # elements per RGBA32F texel
SWIZZLE = "xyzw"
GLSL_RESERVED = frozenset("""in out inout uniform layout texture sample input output vec2 vec3 vec4 ivec2 ivec3
ivec4 bvec2 bvec3 bvec4 uvec2 uvec3 uvec4 mix discard main precision highp mediump lowp sampler2D attribute
varying smooth flat centroid invariant texelFetch active common filter not equal""".split())
DIALECTS = {"330": "#version 330 core", "es": "#version 300 es\nprecision highp float;\nprecision highp int;\n"
            "precision highp sampler2D;", "430": "#version 430 core"}
COMPUTE_GROUP = (8, 8)  # invocations per work group of a compute shader, one per output texel
COMPARE_FN = {"<": "lessThan", "<=": "lessThanEqual", ">": "greaterThan", ">=": "greaterThanEqual",
              "==": "equal", "!=": "notEqual"}
VECTOR_BUILTINS = {"exp", "log", "sqrt", "tanh", "abs", "floor", "ceil", "min", "max"}  # take genType


def tex_shape(n: int) -> tuple[int, int]:
    """(width, height) in texels of the texture holding n elements: about square, the width a power of two
    (texel coordinates are a mask and a shift) up to TEX_WIDTH. Not one long row: GPUs and SwiftShader
    shade 2x2 quads of fragments, half of which a 1-row texture leaves idle. A value may live in a larger
    texture (the runtime's pool) in its own top-left width x height corner."""
    texels = max(-(-n // TEXEL), 1)
    w = min(TEX_WIDTH, 1 << (math.isqrt(texels - 1)).bit_length())
    return w, -(-texels // w)


def row_parts(h: int, rows: int | None) -> list[tuple[int, int]]:
    """(first row, rows) of each texture holding h texel rows when one texture may have at most `rows`."""
    return [(r, min(rows, h - r)) for r in range(0, h, rows)] if rows else [(0, h)]


def multiple_of(e: Expr, k: int) -> bool:
    """e is visibly a multiple of k: sums and products of constant multiples (and guarded selects of them)."""
    if isinstance(e, Const):
        return e.value % k == 0
    if isinstance(e, Binary) and e.op in ("+", "-"):
        return multiple_of(e.a, k) and multiple_of(e.b, k)
    if isinstance(e, Binary) and e.op == "*":
        return multiple_of(e.a, k) or multiple_of(e.b, k)
    return isinstance(e, Select) and multiple_of(e.t, k) and multiple_of(e.f, k)


def split_index(i: Expr) -> tuple[Expr, int, int] | None:
    """(base, offset, component) when element i is component `component` of texel base / 4 + offset, with
    the component known at compile time (base a multiple of 4); else None.

    A guarded index select(c, i, 0) (tir's guard_select_loads: the value is used only where c holds)
    stays a select of the base; _texel reads it unguarded but never below texel 0."""
    if isinstance(i, Select) and isinstance(i.f, Const) and i.f.value == 0:
        inner = split_index(i.t)
        return None if inner is None else (Select(i.cond, inner[0], i.f), *inner[1:])
    c = 0
    if isinstance(i, Binary) and i.op in ("+", "-") and isinstance(i.b, Const):
        i, c = i.a, i.b.value if i.op == "+" else -i.b.value
    return (i, c // TEXEL, c % TEXEL) if multiple_of(i, TEXEL) else None


def lane(e: Expr, k: int) -> Expr:
    """Lane k of a vector expression, as a scalar expression."""
    if lanes_of(e.dtype) == 1:
        return e
    if isinstance(e, Ramp):
        return binary("+", e.base, binary("*", e.stride, Const(k, e.stride.dtype)))
    if isinstance(e, Broadcast):
        return e.value
    if isinstance(e, Const):
        return Const(e.value, scalar_of(e.dtype))
    if isinstance(e, Load):
        return Load(e.buffer, tuple(lane(x, k) for x in e.indices), scalar_of(e.dtype))
    if isinstance(e, Binary):
        return Binary(e.op, lane(e.a, k), lane(e.b, k), scalar_of(e.dtype))
    if isinstance(e, Select):
        return Select(lane(e.cond, k), lane(e.t, k), lane(e.f, k))
    if isinstance(e, Cast):
        return Cast(scalar_of(e.dtype), lane(e.a, k))
    if isinstance(e, Not):
        return Not(lane(e.a, k))
    if isinstance(e, Call):
        return Call(e.name, tuple(lane(a, k) for a in e.args), scalar_of(e.dtype))
    raise BuildError(f"cannot take a lane of {type(e).__name__}")


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

    def __init__(self, dialect: str = "330", rows: int | None = None):
        """`rows`: the most texel rows one texture may have (GL_MAX_TEXTURE_SIZE). A tensor with more lives in
        parts of `rows` rows, textures `<name>_p0`, `<name>_p1`, ...: reads pick the part by row, and the
        output is drawn one part at a time, `uniform int lathe_row0` its first row (see parts())."""
        super().__init__()
        if dialect not in DIALECTS:
            raise BuildError(f"GLSL dialect {dialect!r}: use one of {sorted(DIALECTS)}")
        self.dialect, self.rows = dialect, rows

    def parts(self, buffer) -> int:
        """How many textures hold `buffer`."""
        return len(row_parts(tex_shape(buffer.size)[1], self.rows))

    def samplers(self, buffer) -> list[str]:
        """The shader's sampler names for an input, one per part."""
        name = self.names[id(buffer)][1]
        return [name] if self.parts(buffer) == 1 else [f"{name}_p{j}" for j in range(self.parts(buffer))]

    def render(self, func: PrimFunc) -> str:
        body = self.function(func)
        split = ["uniform int lathe_row0;"] if self.parts(self.outputs[0]) > 1 else []
        if self.dialect != "430":
            return "\n".join([DIALECTS[self.dialect], *self.uniforms, *split, "out vec4 lathe_out;",
                              *(h.strip() for h in self.helpers.values()), body]) + "\n"
        # a compute shader: the same body, one invocation per output texel, stored with imageStore. Why
        # compute on desktop GL: some GPUs shade pixels on a few of their units only (the H100 on 2 of 66
        # TPCs) but run compute shaders on all of them
        w, h = tex_shape(self.outputs[0].size)
        inside = f"lathe_row0 + lathe_xy.y >= {h} || lathe_xy.y >= {self.rows}" if split else f"lathe_xy.y >= {h}"
        main = ("void main() {\n  lathe_xy = ivec2(gl_GlobalInvocationID.xy);\n"
                f"  if (lathe_xy.x >= {w} || {inside}) return;\n"
                "  if (lathe_main()) imageStore(lathe_image, lathe_xy, lathe_out);\n}")
        return "\n".join([DIALECTS["430"], "layout(local_size_x = {}, local_size_y = {}) in;".format(*COMPUTE_GROUP),
                          "layout(rgba32f, binding = 0) uniform writeonly image2D lathe_image;", *self.uniforms,
                          *split, "ivec2 lathe_xy;", "vec4 lathe_out;", *(h.strip() for h in self.helpers.values()),
                          body.replace("void main()", "bool lathe_main()", 1)[:-1] + "  return true;\n}",
                          main]) + "\n"

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
        self.fragments, self.packed, self.shared = 0, set(), {}
        text = super().function(func)
        if self.fragments != 1 and not (self.fragments == 0 and self.outputs[0].size <= TEXEL):
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
        w, rows, parts = tex_shape(buffer.size)[0], self.rows, self.parts(buffer)
        shift = w.bit_length() - 1
        if parts == 1:
            self.define(f"lathe_texel_{name}", "vec4", "int t",
                        f"return texelFetch({name}, ivec2(t & {w - 1}, t >> {shift}), 0);")
            return f"uniform highp sampler2D {name};"
        pick = " ".join(f"if (p == {j}) return texelFetch({name}_p{j}, xy, 0);" for j in range(parts - 1))
        self.define(f"lathe_texel_{name}", "vec4", "int t",
                    f"int r = t >> {shift}; int p = r / {rows}; ivec2 xy = ivec2(t & {w - 1}, r - p * {rows}); "
                    f"{pick} return texelFetch({name}_p{parts - 1}, xy, 0);")
        return "\n".join(f"uniform highp sampler2D {name}_p{j};" for j in range(parts))

    # ------------------------------------------------------------------ statements
    def stmt_For(self, s: For) -> None:
        if s.kind != "thread" or s.thread_tag != "fragment":
            return super().stmt_For(s) if s.kind != "thread" else self._bad_thread(s)
        self.fragments += 1
        n = s.extent.value
        w = tex_shape(self.outputs[0].size)[0]
        v = self.name(s.var, s.var.name)
        x, y = ("lathe_xy.x", "lathe_xy.y") if self.dialect == "430" else ("int(gl_FragCoord.x)", "int(gl_FragCoord.y)")
        row = f"(lathe_row0 + {y})" if self.parts(self.outputs[0]) > 1 else y
        self.emit(f"int {v} = {row} * {w} + {x};")
        if n % w:
            self.emit(f"if ({v} >= {n}) {'return false' if self.dialect == '430' else 'discard'};")
        self.stmt(s.body)

    def stmt_Seq(self, s: Seq) -> None:
        """What several statements of this sequence compute alike is computed once, before the first of them:
        a texel they read (the four channels of an input pixel in an unrolled convolution) is fetched into a
        local, and a texel index they share up to a constant (a weight row) is computed into one. Shader
        JITs such as SwiftShader's merge neither. Textures are read-only and counters do not change inside
        a sequence, so this is exact."""
        first: dict = {}
        for k, st in enumerate(s.stmts):
            for buffer, base, offset in self._texels(st):
                unguarded = base.t if isinstance(base, Select) else base
                for key, what in (((id(buffer), skey(base), offset), (buffer, base, offset)),
                                  (("base", skey(unguarded)), unguarded)):
                    first.setdefault(key, [k, what, 0])[2] += 1
        shared = {key: (k, what) for key, (k, what, uses) in first.items() if uses > 1}
        for k, st in enumerate(s.stmts):
            for key, (at, what) in sorted(shared.items(), key=lambda kv: kv[0][0] != "base"):
                if at != k or (key[0] == "base" and isinstance(what, Const)):
                    continue
                self.temps = {}  # no earlier statement's temporaries
                if key[0] == "base":
                    name, value = self.fresh("tx"), f"int {{}} = ({self.expr(what, 0)}) >> 2;"
                else:
                    name, value = self.fresh("texel"), f"vec4 {{}} = {self._texel(what[0], *what[1:], True)};"
                self.emit(value.format(name))
                self.shared[key] = name
            self.stmt(st)
        for key in shared:
            self.shared.pop(key, None)

    def _texels(self, st) -> list:
        """(buffer, base, offset) of each whole-texel or known-component texture read of a Store's value."""
        if not isinstance(st, Store):
            return []
        found = []

        def visit(e: Expr) -> None:
            if isinstance(e, Load) and e.buffer in self.func.params and e.buffer not in self.outputs:
                t = self._texel_of(self.one_index(e.buffer, e.indices), lanes_of(e.dtype))
                if t is not None:
                    found.append((e.buffer, *t[:2]))

        post_order(st.value, visit)
        return found

    def _texel_of(self, i: Expr, n: int) -> tuple | None:
        """(base, offset[, component]) of a scalar access with a known component, or of an aligned 4-lane one."""
        if n == 1:
            return split_index(i)
        base = contiguous_base(i) if n == TEXEL else None
        t = split_index(base) if base is not None else None
        return t[:2] if t is not None and t[2] == 0 else None

    def _bad_thread(self, s: For) -> None:
        raise UnsupportedError(f"kernel {self.func.name}: loop {s.var.name} is bound to {s.thread_tag}; "
                               "GLSL kernels bind their output axes to \"fragment\" only")

    def stmt_Allocate(self, s: Allocate) -> None:
        # a local that vector code stores into is an array of vec4s, indexed by texel like the textures
        vector = []
        walk(s.body, lambda x: vector.append(x) if isinstance(x, Store) and x.buffer is s.buffer
             and lanes_of(x.value.dtype) > 1 else None)
        if vector:
            self.packed.add(id(s.buffer))
        self._declaring = s.buffer if vector else None
        super().stmt_Allocate(s)

    def local_array(self, ctype: str, name: str, size: int) -> str:
        buf, self._declaring = self._declaring, None
        if buf is not None:
            return f"{self.vector_type(with_lanes(buf.dtype, TEXEL))} {name}[{-(-size // TEXEL)}];"
        return f"{ctype} {name}[{size}];"

    def stmt_Store(self, s: Store) -> None:
        output = s.buffer in self.outputs
        if not output and id(s.buffer) not in self.packed:
            return super().stmt_Store(s)
        idx, n = self.one_index(s.buffer, s.indices), lanes_of(s.value.dtype)
        target = "lathe_out" if output else self.lookup(s.buffer, "buffer")
        if n == 1:
            return self.emit(self._put(target, idx, output, self._stored(s.value, output)))
        t = self._texel_of(idx, n)
        if t is not None:
            return self.emit(f"{target if output else self._texel(s.buffer, *t, False)} = "
                             f"{self._stored(s.value, output)};")
        tmp = self.fresh("lanes")  # unaligned or scattered lanes: one element at a time
        self.emit(self.declare(s.value.dtype, tmp, self.expr(s.value, 0)))
        for k in range(n):
            self.emit(self._put(target, lane(idx, k), output, f"{'float' if output else ''}({tmp}[{k}])"))

    def _stored(self, value: Expr, output: bool) -> str:
        if not output or scalar_of(value.dtype) == "float32":
            return self.expr(value, 0)
        return f"{'float' if lanes_of(value.dtype) == 1 else 'vec4'}({self.expr(value, 0)})"

    def _put(self, array: str, i: Expr, output: bool, value: str) -> str:
        """The statement storing `value` into element i of the output color or of a packed local."""
        t = split_index(i)
        if t is not None:  # a swizzle when the component is known
            return f"{array if output else self._texel(None, *t[:2], False, array)}.{SWIZZLE[t[2]]} = {value};"
        text = self.expr(i, 0)
        if output:  # ES allows no variable index into a fragment output: a lane mask picks the component
            fn = self.define("lathe_put", "vec4", "vec4 color, int i, float v",
                             "return mix(color, vec4(v), equal(ivec4(0, 1, 2, 3), ivec4(i & 3)));")
            return f"{array} = {fn}({array}, {text}, {value});"
        return f"{self._element(array, text)} = {value};"

    # ------------------------------------------------------------------ loads
    def expr_Load(self, e: Load) -> str:
        if e.buffer in self.outputs:
            raise UnsupportedError(f"kernel {self.func.name}: reads its output {e.buffer.name}; a fragment "
                                   "cannot read its own target (cache_write into a local first)")
        texture, n = e.buffer in self.func.params, lanes_of(e.dtype)
        if not texture and id(e.buffer) not in self.packed:
            if n == 1:
                return super().expr_Load(e)
            return f"{self.vector_type(e.dtype)}({', '.join(self.expr(lane(e, k), 0) for k in range(n))})"
        idx = self.one_index(e.buffer, e.indices)
        if n == 1:
            return self._scalar_load(e.buffer, idx, texture)
        t = self._texel_of(idx, n)
        if t is None:  # unaligned or gathered lanes: one element at a time
            lanes = ", ".join(self._scalar_load(e.buffer, lane(idx, k), texture) for k in range(n))
            return f"{self.vector_type(e.dtype)}({lanes})"
        return self._convert(self._texel(e.buffer, *t, texture), e.buffer.dtype, TEXEL)

    def _texel(self, buffer, base: Expr, offset: int, texture: bool, array: str = "") -> str:
        """Texel base / 4 + offset of a texture (fetched, or the local it was fetched into) or packed local."""
        if texture and (id(buffer), skey(base), offset) in self.shared:
            return self.shared[(id(buffer), skey(base), offset)]
        guarded = isinstance(base, Select)
        base = base.t if guarded else base
        t = (str(base.value // TEXEL) if isinstance(base, Const) else self.shared.get(("base", skey(base)))
             or f"({self.expr(base, 0)}) >> 2")
        t = f"({t}) {'+' if offset > 0 else '-'} {abs(offset)}" if offset else t
        # a guarded read (padding) is used only where its guard holds: elsewhere any texel will do, but not a
        # negative one. Not `guard ? t : 0`: SwiftShader (Chromium 156) computed wrong results with a guard
        # in the texel index of a convolution.
        t = f"max({t}, 0)" if guarded else t
        name = array or self.lookup(buffer, "buffer")
        return f"lathe_texel_{name}({t})" if texture else f"{name}[{t}]"

    def _scalar_load(self, buffer, i: Expr, texture: bool) -> str:
        t = split_index(i)
        if t is not None:
            value = f"{self._texel(buffer, *t[:2], texture)}.{SWIZZLE[t[2]]}"
        elif texture:  # the component known only at run time
            name = self.lookup(buffer, "buffer")
            fn = self.define(f"lathe_load_{name}", "float", "int i", f"return lathe_texel_{name}(i >> 2)[i & 3];")
            value = f"{fn}({self.expr(i, 0)})"
        else:
            value = self._element(self.lookup(buffer, "buffer"), self.expr(i, 0))
        return self._convert(value, buffer.dtype, 1) if texture else value

    @staticmethod
    def _element(array: str, index: str) -> str:
        """Element `index` (known only at run time) of a packed vec4 local."""
        return f"{array}[({index}) >> 2][({index}) & 3]"

    def _convert(self, value: str, dtype: str, n: int) -> str:
        """Texture values are floats; integer and bool tensors convert on load."""
        if dtype == "float32":
            return value
        if dtype == "bool":
            return f"({value} != 0.0)" if n == 1 else f"notEqual({value}, vec4(0.0))"
        return f"int({value})" if n == 1 else f"ivec4({value})"

    # ------------------------------------------------------------------ expressions
    def const(self, v, dtype: str) -> str:
        if dtype == "bool":
            return "true" if v else "false"
        return super().const(v, "int32" if dtype == "int64" else dtype)

    def expr_Cast(self, e: Cast) -> str:
        if lanes_of(e.dtype) > 1:
            return self.vector_cast(self.expr(e.a), e.a.dtype, e.dtype)
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

    def expr_Binary(self, e: Binary, prec: int = 99) -> str:
        if e.op != "/" or scalar_of(e.dtype) != "float32" or self.dialect != "430":
            return super().expr_Binary(e, prec)
        # GLSL lets a / b be 2.5 ulp off, and NVIDIA computes a * (1 / b): (1 + 0.5) / 1.5 came out above 1,
        # moving a Resize's exact rounding tie. One correction step by the exact residual of an fma (GLSL
        # 4.00) gives the correctly rounded quotient. (The fragment dialects have no fma; a residual
        # without one did not help on NVIDIA)
        t = self.vector_type(e.dtype) if lanes_of(e.dtype) > 1 else "float"
        fn = self.define(f"lathe_div_{t}", t, f"{t} a, {t} b", f"{t} q = a / b; return q + fma(-q, b, a) / b;")
        return f"{fn}({self.expr(e.a)}, {self.expr(e.b)})"

    def floor_divmod(self, op: str, a: str, b: str, dtype: str) -> str:
        if scalar_of(dtype) not in ("int32", "int64"):
            return super().floor_divmod(op, a, b, dtype)
        # GLSL leaves % of negative operands undefined: derive both from truncating division
        q = "int q = a / b; if (q * b != a && ((a < 0) != (b < 0))) q -= 1;"
        if op == "//":
            fn = self.define("lathe_floordiv", "int", "int a, int b", f"{q} return q;")
        else:
            fn = self.define("lathe_floormod", "int", "int a, int b", f"{q} return a - q * b;")
        return f"{fn}({a}, {b})" if lanes_of(dtype) == 1 else self.vector_map(fn, [a, b], dtype)

    def minmax(self, op: str, a: str, b: str, dtype: str) -> str:
        return f"{op}({a}, {b})"

    # ------------------------------------------------------------------ vectors: vecN, ivecN, bvecN
    def vector_type(self, dtype: str) -> str:
        n = lanes_of(dtype)
        if n > 4:
            raise UnsupportedError(f"kernel {self.func.name}: GLSL vectors have at most 4 lanes, not {n}")
        return {"float32": "", "float64": "", "bool": "b"}.get(scalar_of(dtype), "i") + f"vec{n}"

    def vector_splat(self, x: str, dtype: str) -> str:
        return f"{self.vector_type(dtype)}({x})"

    def vector_ramp(self, base: str, stride: str, dtype: str) -> str:
        t = self.vector_type(dtype)
        return f"({t}({', '.join(map(str, range(lanes_of(dtype))))}) * {stride} + {base})"

    def vector_map(self, fn: str, args: list[str], dtype: str) -> str:
        if fn in VECTOR_BUILTINS:
            return f"{fn}({', '.join(args)})"
        t, n = self.vector_type(dtype), lanes_of(dtype)  # an overload applying the scalar helper lane by lane
        params = ", ".join(f"{t} a{k}" for k in range(len(args)))
        lanes = ", ".join(f"{fn}({', '.join(f'a{k}[{c}]' for k in range(len(args)))})" for c in range(n))
        self.helpers.setdefault(f"{fn}:{t}", f"{t} {fn}({params}) {{ return {t}({lanes}); }}")
        return f"{fn}({', '.join(args)})"

    def vector_minmax(self, op: str, a: str, b: str, dtype: str) -> str:
        return f"{op}({a}, {b})"

    def vector_logic(self, op: str, a: str, b: str, dtype: str) -> str:
        if op in COMPARE_FN:
            return f"{COMPARE_FN[op]}({a}, {b})"
        n = lanes_of(dtype)  # and/or of masks, through unsigned bits
        return f"bvec{n}(uvec{n}({a}) {'&' if op == 'and' else '|'} uvec{n}({b}))"

    def vector_not(self, a: str, dtype: str) -> str:
        return f"not({a})"

    def vector_select(self, cond: str, t: str, f: str, dtype: str) -> str:
        if scalar_of(dtype) in ("float32", "float64"):
            return f"mix({f}, {t}, {cond})"  # a boolean mix picks lanes, no arithmetic
        vt, n = self.vector_type(dtype), lanes_of(dtype)
        lanes = ", ".join(f"c[{k}] ? t[{k}] : f[{k}]" for k in range(n))
        self.helpers.setdefault(f"lathe_select:{vt}", f"{vt} lathe_select(bvec{n} c, {vt} t, {vt} f) "
                                f"{{ return {vt}({lanes}); }}")
        return f"lathe_select({cond}, {t}, {f})"

    def vector_cast(self, a: str, src: str, dst: str) -> str:
        if scalar_of(dst) == "bool":
            return f"notEqual({a}, {self.vector_type(src)}(0))"
        return f"{self.vector_type(dst)}({a})"


def render_glsl(func: PrimFunc, dialect: str = "330") -> str:
    """The fragment shader source of one GL-scheduled kernel."""
    return GLSLRenderer(dialect).render(func)
