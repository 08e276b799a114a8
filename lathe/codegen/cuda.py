"""The `cuda` target: loop IR -> CUDA C++, compiled with NVRTC at run time (lathe/runtime/cuda.py).

The GPU parts (thread-bound loops, launch sizes, shared memory, barriers) are the OpenCL
renderer's base; this file names CUDA's spellings. Kernels are `extern "C"` so the module
looks them up by their plain names.
"""

from __future__ import annotations

from lathe.codegen.cstyle import RESERVED
from lathe.codegen.opencl import GPURenderer
from lathe.tir.stmt import PrimFunc

CXX_KEYWORDS = frozenset("""alignas alignof and asm catch class constexpr delete explicit export friend mutable
namespace new noexcept not operator or private protected public template this throw try typeid typename using
virtual wchar_t xor blockIdx threadIdx blockDim gridDim warpSize""".split())


class CUDARenderer(GPURenderer):
    types = {"float32": "float", "float64": "double", "float16": "__half", "int32": "int", "int64": "long long",
             "int8": "signed char", "uint8": "unsigned char", "bool": "bool"}
    infinity, nan = "__int_as_float(0x7f800000)", "__int_as_float(0x7fffffff)"  # NVRTC has no math.h macros
    helper_prefix = "static __device__ __forceinline__"
    kernel_prefix = 'extern "C" __global__ void'
    pointer_qualifier = "__restrict__"
    index_names = {tag: tag for tag in ("blockIdx.x", "blockIdx.y", "blockIdx.z", "threadIdx.x", "threadIdx.y",
                                        "threadIdx.z")}
    shared_qualifier = "__shared__"
    barrier_call = "__syncthreads()"
    extra_reserved = CXX_KEYWORDS | RESERVED


def render_cuda(funcs: list[PrimFunc]) -> tuple[str, dict]:
    """CUDA C++ for several kernels sharing one preamble, and each kernel's launch (see opencl.launch_of)."""
    r = CUDARenderer()
    return r.render_module(funcs), r.launch
