"""Targets, kernels as callables, lathe.nd arrays, timing, saving and loading shared libraries."""

import numpy as np
import pytest

import lathe
from lathe import te
from lathe.runtime import load_module


def add_one(n=37):
    A = te.placeholder((n,), name="A")
    B = te.compute((n,), lambda i: A[i] + 1.0, name="B")
    return te.create_schedule(B), [A, B]


def test_target_strings_parse():
    t = lathe.Target.parse("llvm -mcpu=skylake-avx512 -threads=2")
    assert t.kind == "llvm" and t.attrs["mcpu"] == "skylake-avx512" and t.threads == 2


@pytest.mark.parametrize("bad", ["", "vulkan", "llvm threads", "llvm -threads=zero"])
def test_bad_target_strings_are_clear_errors(bad):
    with pytest.raises(lathe.TargetError):
        lathe.Target.parse(bad)


@pytest.mark.parametrize("kind", ["webgl", "wasm"])
def test_whole_model_targets_refuse_single_kernels_clearly(kind):
    s, args = add_one()
    with pytest.raises(lathe.TargetError, match="whole models only"):
        lathe.build(s, args, target=kind)


def test_kernel_takes_numpy_and_lathe_arrays(target):
    s, args = add_one()
    kern = lathe.build(s, args, target=target)
    a = lathe.nd.array(np.arange(37, dtype="float32"))
    b = lathe.nd.empty((37,), "float32")
    kern(a, b)
    np.testing.assert_array_equal(b.numpy(), np.arange(37) + 1)
    out = np.empty(37, "float32")
    kern(a.numpy(), out)
    np.testing.assert_array_equal(out, np.arange(37) + 1)
    assert kern.source and "B[" in kern.ir


def test_mcpu_is_honoured():
    s, args = add_one()
    kern = lathe.build(s, args, target="llvm -mcpu=x86-64")  # baseline SSE2 code still runs here
    b = np.empty(37, "float32")
    kern(np.ones(37, "float32"), b)
    assert (b == 2).all()


def test_export_and_load_shared_library(tmp_path, target):
    s, args = add_one()
    kern = lathe.build(s, args, target=target, name="add_one")
    path = str(tmp_path / "add_one.so")
    kern.export_library(path)
    loaded = load_module(path)
    b = np.empty(37, "float32")
    loaded(np.full(37, 2, "float32"), b)
    assert (b == 3).all()
    with pytest.raises(lathe.ArgumentError, match="shape"):
        loaded(np.ones(5, "float32"), b)


def test_time_reports_median_and_spread():
    s, args = add_one()
    kern = lathe.build(s, args)
    t = kern.time(np.ones(37, "float32"), np.empty(37, "float32"), repeat=7)
    assert len(t.times) == 7 and t.p10 <= t.median <= t.p90 and t.median > 0


def test_float16_on_llvm():
    A = te.placeholder((64,), name="A", dtype="float16")
    B = te.compute((64,), lambda i: A[i] * A[i], name="B")
    s = te.create_schedule(B)
    _, xi = s[B].split(B.op.axis[0], 16)
    s[B].vectorize(xi)
    kern = lathe.build(s, [A, B])
    a = np.linspace(-2, 2, 64).astype("float16")
    b = np.empty(64, "float16")
    kern(a, b)
    np.testing.assert_allclose(b, a * a, rtol=1e-3)


def test_vector_math_uses_libmvec_and_survives_export(tmp_path):
    """Vector exp/tanh call glibc's libmvec (not libm once per lane) when it is there; same results."""
    A = te.placeholder((96,), name="A")
    B = te.compute((96,), lambda i: te.exp(A[i]) + te.tanh(A[i]), name="B")
    s = te.create_schedule(B)
    _, xi = s[B].split(B.op.axis[0], 32)
    s[B].vectorize(xi)
    kern = lathe.build(s, [A, B], name="vmath")
    from lathe.codegen import llvm

    if not llvm._have_mvec:
        pytest.skip("this C library has no libmvec (glibc < 2.35)")
    assert "_ZGV" in kern.source
    a = np.linspace(-3, 3, 96).astype("float32")
    b = np.empty(96, "float32")
    kern(a, b)
    np.testing.assert_allclose(b, np.exp(a) + np.tanh(a), rtol=1e-5, atol=1e-6)
    path = str(tmp_path / "vmath.so")
    kern.export_library(path)
    b2 = np.empty(96, "float32")
    load_module(path)(a, b2)
    np.testing.assert_array_equal(b, b2)


@pytest.mark.parametrize("target", ["llvm", "opencl", "opengl", "cuda"])
def test_profile_times_every_kernel_in_order(target):
    """GraphModule.profile on every runtime: one row per step, in execution order, each timed alone."""
    import importlib

    from onnx import TensorProto, helper, numpy_helper

    if target != "llvm":
        ok, why = importlib.import_module(f"lathe.runtime.{target}").status()
        if not ok:
            pytest.skip(f"no {target} device: {why}")
    w = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 1, 1])],
                          [numpy_helper.from_array(w, "w")])
    mod = lathe.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), target)
    rows = mod.profile({"x": np.ones((1, 3, 16, 16), np.float32)}, repeat=3)
    assert [r["kernel"] for r in rows] == [st["kernel"] for st in mod.spec["steps"]] and len(rows) >= 2
    assert all(r["ms"] > 0 for r in rows) and abs(sum(r["percent"] for r in rows) - 100) < 1e-6


def test_benchmark_json_records_its_commit(tmp_path, monkeypatch):
    """Results name the commit they ran: git's HEAD and whether tracked files differ from it, or LATHE_COMMIT
    where the tree is a copy whose .git is stale (the GPU machine)."""
    import json
    import subprocess

    from lathe.benchmark import save_json

    monkeypatch.delenv("LATHE_COMMIT", raising=False)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    got = json.load(open(save_json(str(tmp_path / "a.json"), "t", {"x": 1})))
    assert got["commit"] == head and isinstance(got.get("dirty", False), bool) and got["x"] == 1
    monkeypatch.setenv("LATHE_COMMIT", "924de88")
    got = json.load(open(save_json(str(tmp_path / "b.json"), "t", {})))
    assert got["commit"] == "924de88" and "dirty" not in got
