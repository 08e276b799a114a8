"""The webgl target in real headless Chromium (SwiftShader WebGL2) against ONNX Runtime, and the static page.

Tolerance: 1e-3 of max |ORT output|, the issue's bound (measured on SwiftShader: ~5e-7). One browser per
test session (conftest.browser_session); SwiftShader runs ResNet-18 in ~12-30 s on two shared cores,
EfficientNet in ~5-10 s.
"""

import functools
import http.server
import os
import threading

import numpy as np
import pytest

import lathe
from lathe.rpc.server import chromium_path

pytest.importorskip("playwright", reason="the browser tests need Playwright (pip install lathe[web])")
pytestmark = pytest.mark.skipif(chromium_path() is None, reason="no /usr/bin/chromium (apt-get install chromium)")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


@pytest.fixture
def session(browser_session):
    return browser_session


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the page's requests are not news
        pass


def matches_ort(model, feeds: dict, session, what: str) -> None:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    got = lathe.compile(model, target="webgl").attach(session).run(feeds)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        err = np.abs(g - w).max() / max(np.abs(w).max(), 1e-6)
        assert err <= 1e-3, f"{what} on webgl: max error {err:.3g} of max |ORT output|"


def test_operator_subset_matches_onnxruntime(session) -> None:
    rng = np.random.default_rng(0)
    init = lambda name, a: helper.make_tensor(name, TensorProto.FLOAT, a.shape, a.ravel())  # noqa: E731
    w, b = rng.standard_normal((8, 3, 3, 3)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    fc, fb = rng.standard_normal((10, 8)).astype(np.float32), rng.standard_normal(10).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Sigmoid", ["p"], ["s"]), helper.make_node("Mul", ["p", "s"], ["m"]),
             helper.make_node("GlobalAveragePool", ["m"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fb"], ["y0"], transB=1),
             helper.make_node("Softmax", ["y0"], ["y"], axis=-1), helper.make_node("Tanh", ["m"], ["t"])]
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 17, 19])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10]),
                               helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 8, 8, 9])],
                              [init("w", w), init("b", b), init("fc", fc), init("fb", fb)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    matches_ort(model, {"x": rng.standard_normal((1, 3, 17, 19)).astype(np.float32)}, session, "operator subset")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_zoo_model_matches_onnxruntime(session, name: str) -> None:
    zoo = pytest.importorskip("lathe.zoo")
    model = zoo.get_model(name)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    matches_ort(model, {model.graph.input[0].name: x}, session, name)


def test_tensors_in_parts_match_onnxruntime(session, monkeypatch) -> None:
    """Values taller than the plan's texture rows live in several textures: pretend WebGL allows 64 rows, so
    EfficientNet-Lite0's activations (196 rows) and weights come in parts; the JS runtime writes, draws and
    reads them part by part."""
    from lathe.runtime import glplan

    monkeypatch.setattr(glplan, "ROWS", 64)
    zoo = pytest.importorskip("lathe.zoo")
    model = zoo.get_model("efficientnet_lite0")
    plan = lathe.compile(model, target="webgl").plan
    assert max(len(v["textures"]) for v in plan["values"].values()) >= 4 and plan["rows"] == 64
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    matches_ort(model, {model.graph.input[0].name: x}, session, "efficientnet_lite0 in 64-row textures")


def test_benchmark_times_in_browser(session) -> None:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5000])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5000])])
    mod = lathe.compile(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), target="webgl")
    times = mod.attach(session).benchmark({"x": np.ones((1, 5000), np.float32)}, repeat=7, warmup=1)
    assert len(times) == 7 and all(0 < t < 10 for t in times)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The exported EfficientNet-Lite0 page, served on a free loopback port: its base URL."""
    from lathe.web_export import export_web

    out = export_web("efficientnet_lite0", str(tmp_path_factory.mktemp("site")))
    handler = functools.partial(Quiet, directory=out)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


NO_WEBGPU = "Object.defineProperty(Navigator.prototype, 'gpu', {get: () => undefined})"


def classify_on_page(session, url: str, init_script: str = ""):
    """Open the exported page (after `init_script`), wait for it to classify the cat; returns the open page."""
    page = session.page.context.new_page()
    if init_script:
        page.add_init_script(init_script)
    page.goto(url)
    page.wait_for_selector("body[data-done]", timeout=120_000)
    assert page.get_attribute("body", "data-done") == "1", page.inner_text("#error")
    labels = page.locator("td.label").all_inner_texts()
    assert labels[0] == "tiger cat", f"top-5 on the page: {labels}"
    assert "classified in" in page.inner_text("#status")
    return page


def test_static_page_classifies_the_cat(session, site, tmp_path) -> None:
    out, url = site
    expected = ["app.js", "cat.png", "index.html", "labels.json", "lathe.js", "model", "wasm.js", "webgpu.js"]
    assert sorted(os.listdir(out)) == expected
    # a browser without WebGPU (test_webgpu_browser.py runs the page with it): the page falls back to WebGL2
    page = classify_on_page(session, url, NO_WEBGPU)
    try:
        assert page.get_attribute("body", "data-backend") == "webgl"
        assert page.inner_text("#backend").startswith("WebGL2 (no WebGPU: lathe: this browser has no WebGPU")
        # the README's picture: refreshed on request only, so a test run leaves the checkout clean
        shot = str(tmp_path / "page.png")
        if os.environ.get("LATHE_UPDATE_DOCS"):
            shot = os.path.join(DOCS, "webgl-static.png")
        page.screenshot(path=shot, full_page=True)
        assert os.path.getsize(shot) > 10_000
    finally:
        page.close()


def test_static_page_falls_back_to_wasm(session, site) -> None:
    from lathe.codegen.wasm import clang_path

    if clang_path() is None:
        pytest.skip("no clang/lld: the page was exported without its wasm artifact")
    _, url = site
    # no WebGPU, and WebGL2 without float render targets: the CPU path, saying why
    no_float_targets = ("const get = WebGL2RenderingContext.prototype.getExtension;"
                        "WebGL2RenderingContext.prototype.getExtension = function (name) {"
                        "  return name === 'EXT_color_buffer_float' ? null : get.call(this, name); };")
    page = classify_on_page(session, url, NO_WEBGPU + ";" + no_float_targets)
    try:
        assert page.get_attribute("body", "data-backend") == "wasm"
        why = page.inner_text("#backend")
        assert why.startswith("WebAssembly (CPU) (no WebGPU:")
        assert "no WebGL2: lathe: WebGL2 here lacks EXT_color_buffer_float" in why
    finally:
        page.close()
    page = classify_on_page(session, url + "?backend=wasm")  # forced, though WebGL2 and WebGPU work
    try:
        assert page.get_attribute("body", "data-backend") == "wasm"
        assert page.inner_text("#backend") == "WebAssembly (CPU)"
    finally:
        page.close()


def test_export_web_command_writes_a_verified_artifact(tmp_path) -> None:
    import hashlib
    import json

    from lathe.cli import main

    assert main(["export-web", "efficientnet_lite0", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "model" / "webgpu" / "kernels.wgsl").read_text().count("@compute") > 10
    from lathe.codegen.wasm import clang_path

    if clang_path():  # the CPU fallback's artifact
        wasm = tmp_path / "model" / "wasm"
        assert (wasm / "kernels.wasm").read_bytes()[:4] == b"\0asm"
        assert json.loads((wasm / "graph.json").read_text())["format"] == "lathe-wasm-1"
    model = tmp_path / "model" / "webgl"
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["format"] == "lathe-webgl-3"
    for f, digest in manifest["sha256"].items():
        assert hashlib.sha256((model / f).read_bytes()).hexdigest() == digest
    plan = json.loads((model / "graph.json").read_text())
    programs = json.loads((model / "kernels.json").read_text())
    assert all(src.startswith("#version 300 es") for src in programs)
    assert {st["program"] for st in plan["steps"]} == set(range(len(programs)))
    assert len(json.loads((tmp_path / "labels.json").read_text())) == 1000
