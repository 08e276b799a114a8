"""The webgpu target from Python (WGSL through wgpu-native; Vulkan's lavapipe on a CPU machine) against
NumPy and ONNX Runtime: every operator case under the gpu schedules, shared memory with barriers,
device limits, WGSL's reserved names, and ResNet-18 / EfficientNet-Lite0 whole with their artifacts.
"""

from __future__ import annotations

import numpy as np
import pytest

import lathe
from lathe import te
from lathe.errors import BuildError

pytest.importorskip("wgpu", reason="the webgpu target needs the wgpu package (pip install wgpu)")
from lathe.runtime.webgpu import status  # noqa: E402

_ok, _why = status()
pytestmark = pytest.mark.skipif(not _ok, reason=f"no WebGPU adapter: {_why}")

import test_ops  # noqa: E402  (the operator cases, ONNX Runtime references and helpers)
from test_cuda import shared_matmul  # noqa: E402
from test_opencl import check_cat, check_resnet18_round_trip, gpu_schedule  # noqa: E402

from lathe.ops import gpu  # noqa: E402

@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in test_ops.CASES])
def test_op(case) -> None:
    phs, feeds, outs = test_ops.lathe_program(case)
    want = test_ops.expected(case)
    kernel = lathe.build(gpu_schedule(case, outs), phs + outs, target="webgpu", name="op")
    got = [np.full(t.shape, 7, t.dtype) for t in outs]  # poison: the kernel must overwrite it
    kernel(*feeds, *got)
    test_ops.compare(got, want, f"{case.id} on webgpu")


def test_cache_read_shared_with_barriers() -> None:
    rng = np.random.default_rng(0)
    s, args = shared_matmul(48, 8)
    k = lathe.build(s, args, target="webgpu")
    assert k.source.count("var<workgroup>") == 2 and k.source.count("workgroupBarrier()") == 3
    a, b = rng.standard_normal((48, 48)).astype("float32"), rng.standard_normal((48, 48)).astype("float32")
    c = np.full((48, 48), -7, np.float32)
    k(a, b, c)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_wgsl_reserved_names_and_read_only_inputs() -> None:
    """Tensors named like WGSL keywords get other identifiers; inputs bind read-only, so one buffer may be
    passed twice (WebGPU forbids aliasing writable bindings)."""
    A, B = te.placeholder((8,), name="var"), te.placeholder((8,), name="__fn")
    C = te.compute((8,), lambda i: A[i] * B[i] + 1.0, name="loop")
    s = te.create_schedule(C)
    gpu.schedule_injective(s, C, "webgpu")
    k = lathe.build(s, [A, B, C], target="webgpu")
    assert "var<storage, read> v_var" in k.source and "read_write> v_loop" in k.source and " __" not in k.source
    x = np.arange(8, dtype=np.float32)
    y = np.empty_like(x)
    k(x, x, y)
    np.testing.assert_array_equal(y, x * x + 1)


def test_workgroup_too_large_names_kernel_and_limit() -> None:
    from lathe.runtime.webgpu import device

    limit = device().limits["max-compute-invocations-per-workgroup"]
    A = te.placeholder((2 * limit,), name="A")
    B = te.compute((2 * limit,), lambda i: A[i] + 1.0, name="B")
    s = te.create_schedule(B)
    _, tx = s[B].split(B.op.axis[0], 2 * limit)
    s[B].bind(tx, "threadIdx.x")
    with pytest.raises(BuildError, match=f"kernel big_group: .*maxComputeInvocationsPerWorkgroup {limit}"):
        lathe.build(s, [A, B], target="webgpu", name="big_group")


def test_too_many_workgroups_names_kernel_and_limit() -> None:
    n = 65536 * 2
    A = te.placeholder((n,), name="A")
    B = te.compute((n,), lambda i: A[i] + 1.0, name="B")
    s = te.create_schedule(B)
    gpu.bind_flat(s[B], threads=1)
    with pytest.raises(BuildError, match="kernel wide: 131072 workgroups .*maxComputeWorkgroupsPerDimension 65535"):
        lathe.build(s, [A, B], target="webgpu", name="wide")


# ---------------------------------------------------------------------------- whole models

@pytest.fixture(scope="module")
def zoo_models():
    pytest.importorskip("onnxruntime")
    from lathe import zoo

    return zoo


def test_resnet18_matches_onnxruntime_and_round_trips(zoo_models, tmp_path) -> None:
    check_resnet18_round_trip(zoo_models, tmp_path, "webgpu", "kernels.wgsl", "@compute")


def test_efficientnet_lite0_classifies_the_cat(zoo_models) -> None:
    check_cat(zoo_models, "webgpu")


def test_opengl_still_runs_after_wgpu_starts() -> None:
    """wgpu-native makes its own EGL context current while it enumerates adapters; lathe's GL runtime must
    make its context current again (it failed with "cannot create program")."""
    from lathe.ops.gl import schedule_injective
    from lathe.runtime import opengl, webgpu

    if not opengl.status()[0]:
        pytest.skip(f"no OpenGL here: {opengl.status()[1]}")
    opengl.context()
    webgpu.device()
    A = te.placeholder((8,), name="A")
    B = te.compute((8,), lambda i: A[i] * 2.0 + 0.5, name="B")  # a shader no earlier test compiled
    s = te.create_schedule(B)
    schedule_injective(s, B, "opengl")
    k = lathe.build(s, [A, B], target="opengl")
    x, y = np.arange(8, dtype=np.float32), np.zeros(8, np.float32)
    k(x, y)
    np.testing.assert_array_equal(y, x * 2 + 0.5)


CONV_CASES = [c for c in test_ops.CASES if c.op == "Conv" and len(c.inputs[0].shape) == 4]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CONV_CASES])
@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
def test_conv_register_tiles(case, relu: bool) -> None:
    """schedule_conv's register tiles (4x4 by default on webgpu; a 1x1 C == M conv, depthwise, strides and
    dilations among the cases), alone and with an epilogue fused after the convolution."""
    phs, feeds, outs = test_ops.lathe_program(case)
    want = test_ops.expected(case)
    out = outs[0]
    if relu:
        out = te.compute(out.shape, lambda *i: te.max(outs[0][i], te.const(0.0, "float32")), name="relu")
        want = [np.maximum(w, 0) for w in want]
    s = te.create_schedule(out)
    gpu.schedule_conv(s, outs[0], out, "webgpu")
    kernel = lathe.build(s, phs + [out], target="webgpu", name="conv")
    got = [np.full(out.shape, 7, out.dtype)]
    kernel(*feeds, *got)
    test_ops.compare(got, want, f"{case.id} on webgpu with register tiles")
