"""The wasm target in real headless Chromium through lathe.rpc and web/wasm.js: every operator case of
test_ops.py under its CPU schedule, ResNet-18 and EfficientNet-Lite0 against ONNX Runtime.

The operator kernels are built as one WebAssembly module (one clang run, one browser load, one run), each case
checked with test_ops' tolerances. Whole models: 1e-3 of max |ORT output|, the issue's bound.
"""

from __future__ import annotations

import numpy as np
import pytest

import lathe
from lathe.codegen.wasm import clang_path
from lathe.rpc.server import chromium_path

pytest.importorskip("playwright", reason="the browser tests need Playwright (pip install lathe[web])")
pytestmark = [pytest.mark.skipif(chromium_path() is None, reason="no /usr/bin/chromium (apt-get install chromium)"),
              pytest.mark.skipif(clang_path() is None, reason="no clang (apt-get install clang lld)")]
ort = pytest.importorskip("onnxruntime")

import test_ops  # noqa: E402  (the operator cases, ONNX Runtime references and helpers)
from conftest import check_zoo_model_in_browser, op_outputs_in_browser  # noqa: E402

from lathe.ops import cpu  # noqa: E402
from lathe.runtime.wasm import build_plan, kernels_module  # noqa: E402
from lathe.target import Target  # noqa: E402




@pytest.fixture(scope="module")
def session(browser_session):  # one Chromium for every browser test file (conftest.py)
    return browser_session


@pytest.fixture(scope="module")
def op_outputs(session) -> dict:
    """Every case's kernel (its CPU schedule hook where it has one) in one module run once in the browser."""
    target = Target.parse("wasm")

    def schedule(case, outs):
        _, s, touts, post = test_ops.schedule_variants(case, target, outs)[:2][-1]
        assert post is None
        return s, touts

    saved, cpu.PARALLEL_MIN_WORK = cpu.PARALLEL_MIN_WORK, 0  # the parallel paths too (one thread in wasm)
    try:
        return op_outputs_in_browser(session, kernels_module, schedule)
    finally:
        cpu.PARALLEL_MIN_WORK = saved


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in test_ops.CASES])
def test_op(op_outputs, case) -> None:
    test_ops.compare(op_outputs[case.id], test_ops.expected(case), f"{case.id} on wasm in Chromium")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_zoo_model_matches_onnxruntime(session, name: str) -> None:
    mod, feeds = check_zoo_model_in_browser(session, name, "wasm")
    assert "float32x4" in mod.source  # SIMD128: the CPU schedules vectorize by 4 lanes
    times = mod.benchmark(feeds, repeat=2, warmup=0)  # timed inside the page
    assert len(times) == 2 and all(0 < t < 60 for t in times)


def test_plan_points_haloed_values_at_their_interior() -> None:
    spec = {"inputs": [{"name": "x", "shape": [1, 2], "dtype": "float32"}],
            "outputs": [{"name": "y", "shape": [1, 1, 2, 2, 4], "dtype": "float32"}],
            "values": {"h": {"shape": [1, 1, 2, 2, 4], "dtype": "float32", "halo": 1},
                       "y": {"shape": [1, 1, 2, 2, 4], "dtype": "float32"}},
            "slots": [4 * 4 * 4 * 4, 64], "slot_of": {"h": 0, "y": 1},
            "steps": [{"kernel": "k", "args": ["x", "h", "y"]}]}
    plan, blob = build_plan(spec, {"w": np.arange(3, dtype=np.float32)})
    assert blob[:12] == np.arange(3, dtype="<f4").tobytes()  # parameters first: the blob is their region's image
    x, h, y = plan["steps"][0]["args"]
    assert h == 64 + (1 * 4 + 1) * 4 * 4  # slot 0 after the params, then row 1, column 1 of the 4x4 stored pixels
    assert y == plan["outputs"][0]["offset"] and plan["inputs"][0]["offset"] == x and x >= y + 64


def test_no_clang_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("LATHE_CLANG", "no-such-clang")
    model = test_ops.build_model(test_ops.CASES[0])[0]
    with pytest.raises(lathe.BuildError, match="apt-get install clang lld"):
        lathe.compile(model, target="wasm")
