"""The `c` target: loop IR -> GNU C (vector extensions, OpenMP), built by the system C compiler.

Vectors are GCC vector types (`float32x8`); a bool vector is a mask of int32 lanes (0 or -1), as
GCC's vector comparisons produce. GCC wants a power-of-two vector size, so a 5-lane vector is
stored in 8 lanes; helpers that touch memory or may trap (loads, stores, integer division)
work on the logical lanes only. Vector loads and stores go through memcpy: no alignment assumed.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shlex
import subprocess
import tempfile

from lathe.codegen.cstyle import BYTES, CStyleRenderer
from lathe.errors import BuildError
from lathe.expr import Const, Load, lanes_of, scalar_of, with_lanes
from lathe.runtime.module import Kernel, param_specs
from lathe.target import Target
from lathe.tir.stmt import For, PrimFunc

CFLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11"]
LIBS = ["-lm"]


def _physical(lanes: int) -> int:
    return 1 << (lanes - 1).bit_length()


class CRenderer(CStyleRenderer):
    types = {"float32": "float", "float64": "double", "float16": "_Float16", "int32": "int32_t",
             "int64": "int64_t", "int8": "int8_t", "uint8": "uint8_t", "bool": "bool"}
    includes = "#include <math.h>\n#include <stdbool.h>\n#include <stdint.h>\n#include <stdlib.h>"
    kernel_prefix = '__attribute__((visibility("default"))) void'

    def loop_pragmas(self, s: For, parallel: bool) -> list[str]:
        if parallel:
            return [f"#pragma omp parallel for num_threads({self.threads}) schedule(static)"]
        if s.kind == "unroll":
            n = s.extent.value if isinstance(s.extent, Const) else 8  # GCC wants a constant
            return [f"#pragma GCC unroll {max(1, min(n, 64))}"]
        return ["#pragma omp simd"] if s.kind == "vectorize" else []

    def local_array(self, ctype: str, name: str, size: int) -> str:
        return f"_Alignas(64) {ctype} {name}[{size}];"

    def heap_alloc(self, ctype: str, name: str, nbytes: int) -> str:
        padded = -(-nbytes // 64) * 64  # aligned_alloc wants a multiple of the alignment
        return f"{ctype}* restrict {name} = ({ctype}*)aligned_alloc(64, {padded});"

    def heap_free(self, name: str) -> str:
        return f"free({name});"

    # ------------------------------------------------------------------ vectors
    def prefetch(self, load: Load) -> None:
        idx = self.expr(self.one_index(load.buffer, load.indices), 0)
        self.emit(f"__builtin_prefetch(&{self.lookup(load.buffer, 'buffer')}[{idx}], 0, 2);")

    def vector_type(self, dtype: str) -> str:
        s, n = scalar_of(dtype), lanes_of(dtype)
        elem, width = ("int32_t", 4) if s == "bool" else (self.types[s], BYTES[s])
        size = width * _physical(n)
        self.typedefs.setdefault(dtype, f"typedef {elem} {dtype} __attribute__((vector_size({size})));")
        return dtype

    def mask_type(self, lanes: int) -> str:
        return self.vector_type(with_lanes("bool", lanes))

    def per_lane(self, name: str, ret: str, params: str, lane: str, n: int) -> str:
        """A helper running the statement `lane` for each logical lane k; a non-void one returns `v`."""
        loop = f"for (int k = 0; k < {n}; k++) {lane};"
        return self.define(name, ret, params, loop if ret == "void" else f"{ret} v = {{0}}; {loop} return v;")

    @staticmethod
    def lane_in(s: str, x: str) -> str:  # an element read from memory, as a lane (bools become masks)
        return f"-(int32_t)({x} != 0)" if s == "bool" else x

    @staticmethod
    def lane_out(s: str, x: str) -> str:  # a lane, as the element written to memory
        return f"({x} != 0)" if s == "bool" else x

    def vector_load(self, buf_dtype: str, buf: str, base: str, dtype: str) -> str:
        T, n, s = self.type_name(dtype), lanes_of(dtype), scalar_of(buf_dtype)
        name, params = f"lathe_load_{dtype}", f"const {self.types[s]}* p"
        if s == "bool":
            self.per_lane(name, T, params, f"v[k] = {self.lane_in(s, 'p[k]')}", n)
        else:
            self.define(name, T, params, f"{T} v = {{0}}; __builtin_memcpy(&v, p, {n} * sizeof(*p)); "
                                         "return v;")
        return f"{name}({buf} + {base})"

    def vector_store(self, buf_dtype: str, buf: str, base: str, value: str, dtype: str) -> str:
        T, n, s = self.type_name(dtype), lanes_of(dtype), scalar_of(buf_dtype)
        name, params = f"lathe_store_{dtype}", f"{self.types[s]}* p, {T} v"
        if s == "bool":
            self.per_lane(name, "void", params, f"p[k] = {self.lane_out(s, 'v[k]')}", n)
        else:
            self.define(name, "void", params, f"__builtin_memcpy(p, &v, {n} * sizeof(*p));")
        return f"{name}({buf} + {base}, {value})"

    def vector_gather(self, buf_dtype: str, buf: str, index: str, dtype: str) -> str:
        T, n, s = self.type_name(dtype), lanes_of(dtype), scalar_of(buf_dtype)
        params = f"const {self.types[s]}* p, {self.type_name(with_lanes('int32', n))} i"
        fn = self.per_lane(f"lathe_gather_{dtype}", T, params, f"v[k] = {self.lane_in(s, 'p[i[k]]')}", n)
        return f"{fn}({buf}, {index})"

    def vector_scatter(self, buf_dtype: str, buf: str, index: str, value: str, dtype: str) -> str:
        T, n, s = self.type_name(dtype), lanes_of(dtype), scalar_of(buf_dtype)
        params = f"{self.types[s]}* p, {self.type_name(with_lanes('int32', n))} i, {T} v"
        lane = f"p[i[k]] = {self.lane_out(s, 'v[k]')}"
        fn = self.per_lane(f"lathe_scatter_{dtype}", "void", params, lane, n)
        return f"{fn}({buf}, {index}, {value})"

    def vector_splat(self, x: str, dtype: str) -> str:
        T, s, n = self.type_name(dtype), scalar_of(dtype), _physical(lanes_of(dtype))
        elem, lane = ("int32_t", "-(x != 0)") if s == "bool" else (self.types[s], "x")
        body = f"{elem} e = {lane}; return ({T}){{{', '.join(['e'] * n)}}};"
        return f"{self.define(f'lathe_splat_{dtype}', T, f'{elem} x', body)}({x})"

    def vector_ramp(self, base: str, stride: str, dtype: str) -> str:
        steps = f"({self.type_name(dtype)}){{{', '.join(map(str, range(_physical(lanes_of(dtype)))))}}}"
        return f"({steps} + {base})" if stride == "1" else f"({steps} * {stride} + {base})"

    def vector_logic(self, op: str, a: str, b: str, dtype: str) -> str:
        """Comparisons and and/or; GCC's comparison masks are as wide as the operands: make them int32."""
        if op in ("and", "or"):
            return f"({a} {'&' if op == 'and' else '|'} {b})"
        s = scalar_of(dtype)
        if s == "bool" or BYTES[s] == 4:
            return f"({a} {op} {b})"
        return f"__builtin_convertvector(({a} {op} {b}), {self.mask_type(lanes_of(dtype))})"

    def vector_not(self, a: str, dtype: str) -> str:
        if scalar_of(dtype) == "bool":
            return f"(~{a})"
        return f"__builtin_convertvector(({a} == 0) & 1, {self.type_name(dtype)})"  # logical not of ints

    def vector_select(self, cond: str, t: str, f: str, dtype: str) -> str:
        """GNU C has no vector ?: (only C++ does): blend with bit operations, or lane by lane."""
        T, n, s = self.type_name(dtype), lanes_of(dtype), scalar_of(dtype)
        name, M = f"lathe_select_{dtype}", self.mask_type(n)
        params = f"{M} m, {T} a, {T} b"
        if s == "bool" or BYTES[s] == 4:  # lanes as wide as the mask's
            self.define(name, T, params, f"return ({T})((({M})a & m) | (({M})b & ~m));")
        else:
            self.per_lane(name, T, params, "v[k] = m[k] ? a[k] : b[k]", n)
        return f"{name}({cond}, {t}, {f})"

    def vector_minmax(self, op: str, a: str, b: str, dtype: str) -> str:
        """Like fminf/fmaxf lane by lane (a NaN operand loses), so vector and scalar loops agree."""
        mask = self.vector_logic("<" if op == "min" else ">", "a", "b", dtype)
        if scalar_of(dtype).startswith("float"):
            mask = f"({mask} | {self.vector_logic('!=', 'b', 'b', dtype)})"
        T, body = self.type_name(dtype), f"return {self.vector_select(mask, 'a', 'b', dtype)};"
        return f"{self.define(f'lathe_{op}_{dtype}', T, f'{T} a, {T} b', body)}({a}, {b})"

    def vector_cast(self, a: str, src: str, dst: str) -> str:
        if scalar_of(dst) == "bool":
            return self.vector_logic("!=", a, "0", src)
        if scalar_of(src) == "bool":  # masks are -1: make them 1 first
            a = f"({a} & 1)"
        return f"__builtin_convertvector({a}, {self.type_name(dst)})"

    def vector_map(self, fn: str, args: list[str], dtype: str) -> str:
        """A scalar function applied lane by lane (math intrinsics, floor division)."""
        T, n, names = self.type_name(dtype), lanes_of(dtype), "abc"[:len(args)]
        base = fn.removeprefix("lathe_").removesuffix("_" + scalar_of(dtype))
        params = ", ".join(f"{T} {p}" for p in names)
        lane = f"v[k] = {fn}({', '.join(f'{p}[k]' for p in names)})"
        return f"{self.per_lane(f'lathe_{base}_{dtype}', T, params, lane, n)}({', '.join(args)})"


# ---------------------------------------------------------------------------- entry points

def render_c(func: PrimFunc, threads: int) -> str:
    """C source for one kernel; `threads` is the OpenMP team size of its parallel loops."""
    return CRenderer(threads).render(func)


def render_c_module(funcs: list[PrimFunc], threads: int) -> str:
    """C source for several kernels sharing one preamble (a whole model)."""
    return CRenderer(threads).render_module(funcs)


def _cache_dir() -> str:
    path = os.environ.get("LATHE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lathe")
    os.makedirs(path, exist_ok=True)
    return path


def _host_cpu_id() -> str:
    from lathe.codegen.llvm import host_cpu

    return " ".join(host_cpu())


def compile_c(source: str, name: str | None = None) -> str:
    """Compile C source to a shared library in the cache; returns its path. Same source, same file."""
    cc = shlex.split(os.environ.get("CC", "cc"))
    name = name or ", ".join(re.findall(r'visibility\("default"\)\)\) void (\w+)\(', source)) or "<unnamed>"
    # -march=native code is only valid on this CPU: the key names it, so a shared cache stays safe
    key = hashlib.sha256("\0".join([*cc, *CFLAGS, *LIBS, _host_cpu_id(), source]).encode()).hexdigest()
    cache = _cache_dir()
    out = os.path.join(cache, f"lathe_c_{key[:40]}.so")
    if os.path.exists(out):
        return out
    fd, src = tempfile.mkstemp(suffix=".c", prefix="lathe_", dir=cache)
    with os.fdopen(fd, "w") as fh:
        fh.write(source)
    fd, tmp = tempfile.mkstemp(suffix=".so.tmp", prefix="lathe_", dir=cache)
    os.close(fd)
    try:
        res = subprocess.run([*cc, *CFLAGS, "-o", tmp, src, *LIBS], capture_output=True, text=True)
        if res.returncode != 0:
            err = "\n".join(res.stderr.replace(src, f"{name}.c").splitlines()[:40])
            raise BuildError(f"kernel {name}: the C compiler ({' '.join(cc)}) failed:\n{err}")
        os.replace(tmp, out)  # atomic: a concurrent build of the same source finds a whole file
    except FileNotFoundError:
        raise BuildError(f"kernel {name}: no C compiler {cc[0]!r}; install gcc or set $CC") from None
    finally:
        for path in (src, tmp):
            if os.path.exists(path):
                os.unlink(path)
    return out


def build_c(func: PrimFunc, target: Target) -> Kernel:
    """Render, compile and load one kernel for the `c` target; returns a callable Kernel."""
    source = render_c(func, target.threads)
    path = compile_c(source, func.name)
    lib = ctypes.CDLL(path)
    cfunc = getattr(lib, func.name)
    return Kernel(func.name, param_specs(func), cfunc, path, source, func, str(target), lib)
