"""The `wasm` target: the C renderer's code compiled to WebAssembly (wasm32 + SIMD128) by Debian clang/lld.

A browser runs it as its CPU path (web/wasm.js). The module is freestanding: no libc. It imports the
math functions WebAssembly lacks (expf, logf, tanhf, powf, erff) from the page, and exports its memory,
every kernel, and `__heap_base`: the first byte the page may use for tensors (it grows the memory). One thread, so
a kernel's large temporaries are static arrays rather than heap allocations. Vectors are 4 lanes
(SIMD128), which the CPU schedules read from the target (`vector-bits=128`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

from lathe.codegen.c import CRenderer, _cache_dir
from lathe.errors import BuildError
from lathe.tir.stmt import For, PrimFunc

STACK_BYTES = 1 << 20  # locals up to the renderer's stack limit (64 KiB each) live on the wasm stack
CLANG_FLAGS = ["--target=wasm32", "-O3", "-msimd128", "-mbulk-memory", "-ffreestanding", "-nostdlib", "-std=gnu11",
               "-Wno-unknown-pragmas", "-Wno-pass-failed", "-Wl,--no-entry", "-Wl,--export-dynamic",
               "-Wl,--allow-undefined", "-Wl,--export=__heap_base",
               f"-Wl,-z,stack-size={STACK_BYTES}"]
# what <math.h> would give; clang turns sqrtf, fabsf, floorf, ceilf, fminf, fmaxf into wasm instructions
PRELUDE = """#include <stdbool.h>
#include <stdint.h>
#define INFINITY __builtin_inff()
#define NAN __builtin_nanf("")
float expf(float); float logf(float); float sqrtf(float); float tanhf(float); float erff(float);
float powf(float, float); float fabsf(float); float floorf(float); float ceilf(float);
float fminf(float, float); float fmaxf(float, float);
double exp(double); double log(double); double sqrt(double); double tanh(double); double erf(double);
double pow(double, double); double fabs(double); double floor(double); double ceil(double);
double fmin(double, double); double fmax(double, double);"""


class WasmRenderer(CRenderer):
    includes = PRELUDE

    def loop_pragmas(self, s: For, parallel: bool) -> list[str]:
        return super().loop_pragmas(s, False)  # one thread: a parallel loop is a plain one

    def heap_alloc(self, ctype: str, name: str, nbytes: int) -> str:
        count = -(-nbytes // self.bytes_of(ctype))
        return f"static _Alignas(16) {ctype} {name}_store[{count}];\n{ctype}* restrict {name} = {name}_store;"

    def heap_free(self, name: str) -> str:
        return ""

    def bytes_of(self, ctype: str) -> int:
        return {"double": 8, "int64_t": 8, "float": 4, "int32_t": 4, "_Float16": 2}.get(ctype, 1)


def clang_path() -> str | None:
    return shutil.which(os.environ.get("LATHE_CLANG", "clang"))


def compile_wasm(source: str, name: str = "model") -> bytes:
    """WebAssembly binary for C source from WasmRenderer (cached by source and flags)."""
    clang = clang_path()
    if clang is None or shutil.which("wasm-ld") is None:
        raise BuildError(f"{name}: the wasm target needs clang and lld (apt-get install clang lld)")
    key = hashlib.sha256("\0".join([clang, *CLANG_FLAGS, source]).encode()).hexdigest()
    out = os.path.join(_cache_dir(), f"lathe_wasm_{key[:40]}.wasm")
    if not os.path.exists(out):
        with tempfile.TemporaryDirectory(dir=_cache_dir()) as tmp:
            src, dst = os.path.join(tmp, f"{name}.c"), os.path.join(tmp, "out.wasm")
            with open(src, "w") as fh:
                fh.write(source)
            res = subprocess.run([clang, *CLANG_FLAGS, "-o", dst, src], capture_output=True, text=True)
            if res.returncode != 0:
                raise BuildError(f"{name}: clang could not build WebAssembly:\n"
                                 + "\n".join(res.stderr.splitlines()[:40]))
            os.replace(dst, out)
    with open(out, "rb") as fh:
        return fh.read()


def render_wasm_module(funcs: list[PrimFunc]) -> str:
    return WasmRenderer(1).render_module(funcs)
