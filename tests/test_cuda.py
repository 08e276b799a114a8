"""The cuda target: CUDA C++ rendered from the loop IR compiles with nvcc (no GPU needed); with CuPy and
a GPU, kernels and ResNet-18 run and match NumPy / ONNX Runtime."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import lathe
from lathe import te
from lathe.codegen.cuda import render_cuda
from lathe.ops import gpu
from lathe.runtime.cuda import status

NVCC = shutil.which("nvcc")
HAS_GPU, WHY_NO_GPU = status()


def shared_matmul(n: int, tile: int):
    """C = A B with A and B tiles staged in shared memory, each tile copied by the whole work-group."""
    A, B = te.placeholder((n, n), name="A"), te.placeholder((n, n), name="B")
    k = te.reduce_axis((0, n), name="k")
    C = te.compute((n, n), lambda i, j: te.sum(A[i, k] * B[k, j], axis=k), name="C")
    s = te.create_schedule(C)
    CL = s.cache_write(C, "local")
    AA, BB = s.cache_read(A, "shared", [CL]), s.cache_read(B, "shared", [CL])
    i, j = s[C].op.axis
    bi, ti = s[C].split(i, tile)
    bj, tj = s[C].split(j, tile)
    s[C].reorder(bi, bj, ti, tj)
    for ax, tag in ((bi, "blockIdx.y"), (bj, "blockIdx.x"), (ti, "threadIdx.y"), (tj, "threadIdx.x")):
        s[C].bind(ax, tag)
    s[CL].compute_at(s[C], tj)
    ko, ki = s[CL].split(s[CL].op.reduce_axis[0], tile)
    s[CL].unroll(ki)
    for T in (AA, BB):
        s[T].compute_at(s[CL], ko)
        a0, a1 = s[T].op.axis
        s[T].bind(a0, "threadIdx.y")
        s[T].bind(a1, "threadIdx.x")
    return s, [A, B, C]


def programs() -> dict:
    """name -> (schedule, args): an injective kernel, a softmax, a conv with a fused ReLU, the shared matmul."""
    from lathe.ops.registry import call

    out = {}
    x = te.placeholder((2, 3, 9, 9), name="x")
    y = te.compute(x.shape, lambda *i: te.exp(x[i]) * 0.5 + te.max(x[i], te.const(0.0, "float32")), name="y")
    s = te.create_schedule(y)
    gpu.schedule_injective(s, y)
    out["injective"] = (s, [x, y])
    (sm,) = call("Softmax", [x], {"axis": 1})
    s = te.create_schedule(sm)
    gpu.SCHEDULES["reduce"](s, sm, sm)
    out["softmax"] = (s, [x, sm])
    w = te.placeholder((4, 3, 3, 3), name="w")
    (conv,) = call("Conv", [x, w], {"pads": [1, 1, 1, 1]})
    relu = te.compute(conv.shape, lambda *i: te.max(conv[i], te.const(0.0, "float32")), name="relu")
    s = te.create_schedule(relu)
    gpu.SCHEDULES["conv"](s, conv, relu)
    out["conv_relu"] = (s, [x, w, relu])
    out["shared_matmul"] = shared_matmul(32, 8)
    return out


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
@pytest.mark.parametrize("name", ["injective", "softmax", "conv_relu", "shared_matmul"])
def test_cuda_source_compiles_with_nvcc(name, tmp_path) -> None:
    s, args = programs()[name]
    source, launch = render_cuda([lathe.lower(s, args, name)])
    assert f'extern "C" __global__ void {name}(' in source and "threadIdx.x" in source
    if name == "shared_matmul":
        assert source.count("__syncthreads()") == 3 and launch[name]["shared_bytes"] == 2 * 8 * 8 * 4
    (tmp_path / "k.cu").write_text(source)
    res = subprocess.run([NVCC, "--ptx", "-arch=sm_80", "-o", str(tmp_path / "k.ptx"), str(tmp_path / "k.cu")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f".entry {name}(" in (tmp_path / "k.ptx").read_text()


@pytest.mark.skipif(not HAS_GPU, reason=f"no CUDA GPU here: {WHY_NO_GPU}")
def test_cuda_kernels_run_on_the_gpu(rng) -> None:
    progs = programs()
    x = rng.standard_normal((2, 3, 9, 9)).astype("float32")
    s, args = progs["softmax"]
    got = np.empty_like(x)
    lathe.build(s, args, target="cuda")(x, got)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    s, args = progs["shared_matmul"]
    a, b = rng.standard_normal((32, 32)).astype("float32"), rng.standard_normal((32, 32)).astype("float32")
    c = np.empty_like(a)
    lathe.build(s, args, target="cuda")(a, b, c)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not HAS_GPU, reason=f"no CUDA GPU here: {WHY_NO_GPU}")
def test_resnet18_on_the_gpu_matches_onnxruntime(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from lathe import zoo

    proto = zoo.get_model("resnet18")
    mod = lathe.compile(proto, "cuda")
    feed = {i["name"]: np.random.default_rng(0).standard_normal(i["shape"]).astype(i["dtype"])
            for i in mod.spec["inputs"]}
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    got = mod.run(feed)[0]
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-4
    mod.save(str(tmp_path / "r18"))
    again = lathe.load(str(tmp_path / "r18")).run(feed)[0]  # from PTX: the driver's JIT may contract differently
    assert np.max(np.abs(again - got)) / np.max(np.abs(got)) <= 1e-5
